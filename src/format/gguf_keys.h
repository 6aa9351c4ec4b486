/* The correspondence between GGUF metadata keys and qiao's canonical keys
 * (docs/spec/format.md §10), shared by the GGUF reader and writer. */
#ifndef QIAO_GGUF_KEYS_H
#define QIAO_GGUF_KEYS_H

#include <stdbool.h>
#include <stdint.h>

/* How a value is converted between the two. */
typedef enum qiao__gguf_conv {
  QIAO__CONV_U32, /* any integer in range <-> u32 */
  QIAO__CONV_F32, /* any number <-> f32 */
  QIAO__CONV_BOOL,
  QIAO__CONV_STRING,
  QIAO__CONV_TOKEN_ID,  /* integer; -1 / 0xffffffff mean "none" and are dropped */
  QIAO__CONV_EOS_ID,    /* eos/eot/eom ids, gathered into tokenizer.eos_ids */
  QIAO__CONV_TOK_MODEL, /* "llama" <-> "spm", "gpt2" <-> "bpe" */
  QIAO__CONV_TOK_PRE,   /* "gpt-2" <-> "gpt2", "llama-bpe" <-> "llama3", others as is */
  QIAO__CONV_STR_ARRAY,
  QIAO__CONV_F32_ARRAY, /* must be an array of f32 */
  QIAO__CONV_I32_ARRAY  /* any integer array, stored as i32 */
} qiao__gguf_conv;

typedef struct qiao__gguf_key {
  const char *gguf; /* full key, or the part after "{arch}." when per_arch */
  const char *canonical;
  qiao__gguf_conv conv;
  int per_arch;
} qiao__gguf_key;

/* The table; ends with an entry whose `gguf` is NULL. */
extern const qiao__gguf_key qiao__gguf_keys[];

/* The table entry for the GGUF key `key` in a file of architecture `arch`
 * (may be NULL), or NULL when the key has no canonical name. */
const qiao__gguf_key *qiao__gguf_key_from_gguf(const char *arch, const char *key);

/* deepseek2 files come in two forms: with attn_kv_b (key_length = the
 * query/key width per head, value_length = v_head_dim) or with
 * attn_k_b/attn_v_b ("MLA form": key_length_mla and value_length_mla hold
 * those; key_length, value_length and head_count_kv describe the latent as
 * one shared head and are derived). For such a key of a deepseek2 file:
 * its canonical name, "" when it is derived (dropped), NULL when it is an
 * ordinary key. expert_gating_func (1 softmax, 2 sigmoid) maps to
 * model.moe.gating. */
const char *qiao__gguf_deepseek2_key(const char *arch, const char *key, bool mla_form);

/* tokenizer.ggml.pre values that differ from qiao's tokenizer.pre; NULL
 * when the value is the same in both. */
const char *qiao__gguf_pre_to_canonical(const char *value, uint64_t len);
const char *qiao__gguf_pre_from_canonical(const char *value, uint64_t len);

/* GGML tensor type numbers (GGUF tensor infos) and their names. */
#define QIAO__GGML_F32 0u
#define QIAO__GGML_F16 1u
#define QIAO__GGML_Q4_0 2u
#define QIAO__GGML_Q4_1 3u
#define QIAO__GGML_Q5_0 6u
#define QIAO__GGML_Q5_1 7u
#define QIAO__GGML_Q8_0 8u
#define QIAO__GGML_Q2_K 10u
#define QIAO__GGML_Q3_K 11u
#define QIAO__GGML_Q4_K 12u
#define QIAO__GGML_Q5_K 13u
#define QIAO__GGML_Q6_K 14u
#define QIAO__GGML_IQ4_NL 20u
#define QIAO__GGML_IQ4_XS 23u
#define QIAO__GGML_I32 26u
#define QIAO__GGML_BF16 30u
const char *qiao__ggml_type_name(uint32_t type); /* NULL when unknown */

#endif
