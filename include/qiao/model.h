/* qiao/model.h: opening models in any supported format, reading their
 * metadata and tensors, and writing .qiao / .gguf files.
 *
 * A qiao_model is the same in-memory view whatever the file it came from
 * (.qiao, .gguf, a Hugging Face directory, a llama2.c .bin): metadata under
 * the canonical keys of docs/spec/format.md and tensors under the canonical
 * tensor names, shapes row-major with the outermost dimension first.
 *
 * Ownership: everything a qiao_model returns (keys, strings, arrays, tensor
 * data) is owned by the model and valid until qiao_model_close().
 * Thread-safety: an open model is read-only; any number of threads may read
 * it at once. */
#ifndef QIAO_MODEL_H
#define QIAO_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_model qiao_model;

/* Tensor element types; values equal qiao_dev_dtype of qiao/device.h. */
typedef enum qiao_dtype {
  QIAO_DTYPE_F32 = 0,
  QIAO_DTYPE_F16 = 1,
  QIAO_DTYPE_BF16 = 2,
  QIAO_DTYPE_Q8_0 = 3,
  QIAO_DTYPE_Q4_0 = 4,
  QIAO_DTYPE_I32 = 5,
  /* Added in format 1.1: GGUF's k-quant and older block types (format.md
   * §4.1 has their layouts and dequantization formulas). */
  QIAO_DTYPE_Q4_K = 6,
  QIAO_DTYPE_Q5_K = 7,
  QIAO_DTYPE_Q6_K = 8,
  QIAO_DTYPE_Q2_K = 9,
  QIAO_DTYPE_Q3_K = 10,
  QIAO_DTYPE_Q4_1 = 11,
  QIAO_DTYPE_Q5_0 = 12,
  QIAO_DTYPE_Q5_1 = 13,
  /* Added in format 1.2: block-scaled FP8 E4M3, 128 elements per block with
   * an F32 scale (format.md §4.1; its HF import in §4.2). */
  QIAO_DTYPE_F8_E4M3_B128 = 14,
  /* Added in format 1.3: GGUF's non-linear 4-bit types, each nibble an
   * index into a fixed table of 16 levels (format.md §4.1). */
  QIAO_DTYPE_IQ4_NL = 15,
  QIAO_DTYPE_IQ4_XS = 16,
  QIAO_DTYPE_COUNT = 17,
  /* A tensor whose element type this version of the library does not know
   * (one a later 1.x minor version of the format adds): it is listed, its
   * number is in qiao_tensor.stored_dtype, and any use of it fails naming
   * the tensor and the type. It has no qiao_dev_dtype counterpart. */
  QIAO_DTYPE_UNKNOWN = 0x7ffffffe
} qiao_dtype;

/* How a dtype is laid out: `block_elems` elements are stored in
 * `block_bytes` bytes (1 and sizeof(element) for plain types). */
typedef struct qiao_dtype_info {
  const char *name; /* "f32", "f16", "bf16", "q8_0", "q4_0", "i32", "q4_k", ... */
  uint32_t block_elems;
  uint32_t block_bytes;
  uint32_t bits;          /* bits per stored element value (8 for q8_0, 4 for q4_0) */
  const char *scale_type; /* "f16" for q8_0/q4_0/q4_1/q5_0/q5_1, "f16+u6" for
                           * q4_k/q5_k, "f16+i8" for q6_k, "f16+u4" for q2_k,
                           * "f16+i6" for q3_k, "f32" for f8_e4m3_b128,
                           * "f16" for iq4_nl, "f16+i6" for iq4_xs, "none"
                           * otherwise */
} qiao_dtype_info;

/* Layout of `dtype`, or NULL for a value outside the enum. */
const qiao_dtype_info *qiao_dtype_get_info(qiao_dtype dtype);

/* Looks a dtype up by name ("q8_0"). */
qiao_status *qiao_dtype_from_name(const char *name, qiao_dtype *out_dtype);

/* Bytes of a row of `n_elems` elements; fails when n_elems is not a multiple
 * of the block size or the result overflows. */
qiao_status *qiao_dtype_row_bytes(qiao_dtype dtype, uint64_t n_elems, uint64_t *out_bytes);

/* ---- Metadata ---------------------------------------------------------- */

/* Value types; numbering equals GGUF's value types. */
typedef enum qiao_value_type {
  QIAO_VALUE_U8 = 0,
  QIAO_VALUE_I8 = 1,
  QIAO_VALUE_U16 = 2,
  QIAO_VALUE_I16 = 3,
  QIAO_VALUE_U32 = 4,
  QIAO_VALUE_I32 = 5,
  QIAO_VALUE_F32 = 6,
  QIAO_VALUE_BOOL = 7,
  QIAO_VALUE_STRING = 8,
  QIAO_VALUE_ARRAY = 9,
  QIAO_VALUE_U64 = 10,
  QIAO_VALUE_I64 = 11,
  QIAO_VALUE_F64 = 12
} qiao_value_type;

typedef struct qiao_string {
  const char *data; /* not NUL-terminated in general; may contain any bytes */
  uint64_t len;
} qiao_string;

/* One metadata entry. Scalars: the matching union member (all integer types
 * widen to `i` or `u`, floats to `f`). Strings: `str`. Arrays: `array` holds
 * `array_len` elements of `elem_type` (not ARRAY): for STRING elements a
 * qiao_string[], for BOOL a uint8_t[], for the others the native C type
 * (e.g. float[] for F32, int32_t[] for I32). */
typedef struct qiao_kv {
  const char *key; /* NUL-terminated */
  qiao_value_type type;
  qiao_value_type elem_type;
  uint64_t array_len;
  union {
    uint64_t u;
    int64_t i;
    double f;
    bool b;
    qiao_string str;
    const void *array;
  } v;
} qiao_kv;

uint64_t qiao_model_kv_count(const qiao_model *model);
const qiao_kv *qiao_model_kv_at(const qiao_model *model, uint64_t index);
/* NULL when absent. */
const qiao_kv *qiao_model_kv_find(const qiao_model *model, const char *key);

/* Typed getters: fail with QIAO_NOT_FOUND when the key is absent and
 * QIAO_MALFORMED (naming the key) when its type or range does not fit. Any
 * integer type in range is accepted for the integer getters. */
qiao_status *qiao_model_get_u32(const qiao_model *model, const char *key, uint32_t *out);
qiao_status *qiao_model_get_f32(const qiao_model *model, const char *key, float *out);
qiao_status *qiao_model_get_bool(const qiao_model *model, const char *key, bool *out);
/* The string is owned by the model. */
qiao_status *qiao_model_get_string(const qiao_model *model, const char *key, qiao_string *out);

/* ---- Tensors ------------------------------------------------------------ */

#define QIAO_MAX_DIMS 4

typedef struct qiao_tensor {
  const char *name; /* canonical name, NUL-terminated */
  qiao_dtype dtype;
  uint32_t n_dims;
  uint64_t shape[QIAO_MAX_DIMS]; /* outermost first; shape[n_dims-1] is the row */
  uint64_t n_bytes;
  const void *data; /* n_bytes bytes: in the mapped file, or owned by the model */
  /* The element type number as stored in the file: equals dtype, except
   * that for dtype QIAO_DTYPE_UNKNOWN it is the file's number. */
  uint32_t stored_dtype;
  /* The layout name of the type (qiao_dtype_info.name); for an unknown type,
   * the layout its .qiao descriptor names ("" when the source gave none). */
  const char *layout;
} qiao_tensor;

uint64_t qiao_model_tensor_count(const qiao_model *model);
const qiao_tensor *qiao_model_tensor_at(const qiao_model *model, uint64_t index);
/* NULL when absent. */
const qiao_tensor *qiao_model_tensor_find(const qiao_model *model, const char *name);
/* NULL when this library can use the tensor's element type; otherwise
 * QIAO_UNSUPPORTED naming the file, the tensor, its type number and layout
 * (a type of a later 1.x minor version: the file opens, the tensor cannot be
 * used). */
qiao_status *qiao_model_tensor_check(const qiao_model *model, const qiao_tensor *tensor);

/* ---- Architecture ------------------------------------------------------- */

typedef enum qiao_rope_scaling {
  QIAO_ROPE_SCALING_NONE = 0,
  QIAO_ROPE_SCALING_LINEAR = 1,
  QIAO_ROPE_SCALING_LLAMA3 = 2,
  QIAO_ROPE_SCALING_YARN = 3
} qiao_rope_scaling;

/* The hyperparameters of a decoder, read from the canonical keys. */
typedef struct qiao_hparams {
  char architecture[32]; /* "llama", "qwen2", "qwen3", "qwen3moe", "deepseek2" */
  uint32_t vocab_size;
  uint32_t context_length;
  uint32_t dim; /* model (embedding) width */
  uint32_t n_layers;
  uint32_t n_heads;
  uint32_t n_kv_heads;
  uint32_t head_dim;
  uint32_t ffn_dim; /* dense FFN width (0 when every layer is MoE) */
  float norm_eps;
  float rope_theta;
  uint32_t rope_dim;  /* rotated dimensions per head */
  uint32_t rope_neox; /* 1: pairs (i, i+rope_dim/2); 0: pairs (2i, 2i+1) */
  qiao_rope_scaling rope_scaling;
  float rope_factor;
  float rope_low_freq_factor;
  float rope_high_freq_factor;
  uint32_t rope_original_context;
  uint32_t sliding_window; /* 0 = none */
  bool tied_embeddings;
  bool qkv_bias;
  bool qk_norm;
  uint32_t n_experts; /* 0 = dense */
  uint32_t n_experts_used;
  uint32_t expert_ffn_dim;
  bool expert_norm_topk;
  /* Appended for DeepSeek-V2/V3 ("deepseek2"): multi-head latent attention
   * (MLA) when kv_lora_rank > 0. Then head_dim is the query/key width per
   * head (nope part head_dim - rope_dim, then the rope part rope_dim), and
   * v_head_dim the value width per head. */
  uint32_t q_lora_rank;  /* 0: q straight from x (attn_q) */
  uint32_t kv_lora_rank; /* L: the latent per token; 0 = not MLA */
  uint32_t v_head_dim;
  float attn_scale_mul; /* attention scale multiplier (YaRN mscale^2); 1 when none */
  float rope_yarn_beta_fast, rope_yarn_beta_slow; /* YaRN ramp (rope.scaling.type yarn) */
  /* DeepSeekMoE routing (format.md §7.2 model.moe.*) */
  uint32_t n_shared_experts; /* always-on experts, one MLP of n * expert_ffn_dim */
  uint32_t n_dense_lead;     /* leading dense layers (informational) */
  uint32_t expert_gating;    /* 0 softmax, 1 sigmoid (QIAO_DEV_MOE_SCORE_*) */
  uint32_t expert_groups;    /* 0 or 1: no group limit */
  uint32_t expert_groups_used;
  uint32_t expert_group_score; /* 0 max, 1 sum of the top two (QIAO_DEV_MOE_GROUP_*) */
  float expert_scale;          /* routed scaling factor applied to the weights; 1 = none */
} qiao_hparams;

/* Reads and checks the hyperparameters (non-zero counts, heads divisible by
 * KV heads, ...). Does not look at tensors; see qiao_model_validate. */
qiao_status *qiao_model_get_hparams(const qiao_model *model, qiao_hparams *out);

/* ---- Opening ------------------------------------------------------------ */

typedef struct qiao_model_open_options {
  size_t struct_size;
  /* llama2.c .bin models: the tok.bin tokenizer to attach; NULL for none. */
  const char *tokenizer_path;
  /* Show progress on stderr for slow opens. */
  bool progress;
} qiao_model_open_options;

/* Opens `path`: a .qiao or .gguf file, a Hugging Face directory, or a
 * llama2.c .bin. The format is detected from the content, not the name.
 * Pickle checkpoints are refused. `options` may be NULL. */
qiao_status *qiao_model_open(const char *path, const qiao_model_open_options *options,
                             qiao_model **out_model);

/* Closes a model and unmaps its files. Accepts NULL. */
void qiao_model_close(qiao_model *model);

/* "qiao", "gguf", "hf" or "llama2c". */
const char *qiao_model_format(const qiao_model *model);

/* The path the model was opened from. */
const char *qiao_model_path(const qiao_model *model);

/* Full structural and semantic check: hyperparameters against tensor shapes,
 * tokenizer ids within the vocab, and, for .qiao files, every hash. The first
 * problem is returned, naming the file, the field and, where it applies, the
 * byte offset. */
qiao_status *qiao_model_validate(const qiao_model *model);

/* qiao_model_validate without the data hashes: reads no tensor data. What
 * `qiao convert` requires of its input, so that it never writes a file that
 * qiao_model_validate refuses. */
qiao_status *qiao_model_check(const qiao_model *model);

/* ---- Writing ------------------------------------------------------------ */

typedef enum qiao_file_format { QIAO_FILE_QIAO = 0, QIAO_FILE_GGUF = 1 } qiao_file_format;

/* llama.cpp's named per-tensor mixes (docs/spec/format.md §4.2): the base
 * type is qiao_convert_options.weight_dtype (q4_k for Q4_K_*, q5_k for
 * Q5_K_*); output.weight (or tied embeddings), a share of attn_v and ffn_down
 * and some others get a higher type. */
typedef enum qiao_quant_mix {
  QIAO_MIX_NONE = 0, /* every weight matrix weight_dtype */
  QIAO_MIX_Q4_K_M = 1,
  QIAO_MIX_Q4_K_S = 2,
  QIAO_MIX_Q5_K_M = 3,
  QIAO_MIX_Q5_K_S = 4,
} qiao_quant_mix;

typedef struct qiao_convert_options {
  size_t struct_size;
  qiao_file_format format;
  /* Convert weight matrices to this dtype; QIAO_DTYPE_COUNT keeps each as is.
   * Norm weights, biases and other 1-D tensors stay F32. */
  qiao_dtype weight_dtype;
  bool progress; /* progress on stderr */
} qiao_convert_options;

/* What qiao_model_write_quantized adds to qiao_convert_options; set
 * struct_size to sizeof(qiao_quantize_options). */
typedef struct qiao_quantize_options {
  size_t struct_size;
  qiao_quant_mix mix; /* QIAO_MIX_Q4_K_* with weight_dtype q4_k, Q5_K_* with q5_k */
  bool report_error;  /* each converted tensor's RMS reconstruction error on stderr */
} qiao_quantize_options;

/* The dtype qiao_model_write(_quantized) gives tensor `index` under
 * `options` and `quant` (may be NULL) in *out_dtype, and the one asked for
 * it in *out_wanted: they differ when the tensor's rows are not whole blocks
 * of the wanted type and it falls back (docs/spec/format.md §4.2). Errors:
 * QIAO_INVALID_ARGUMENT for an index out of range or a mix without its base
 * type. Reads `model` only: safe to call from several threads. */
qiao_status *qiao_convert_tensor_dtype(const qiao_model *model, const qiao_convert_options *options,
                                       const qiao_quantize_options *quant, uint64_t index,
                                       qiao_dtype *out_dtype, qiao_dtype *out_wanted);

/* Writes `model` to `path`, streaming one tensor at a time (memory stays
 * bounded). Writes `path`.tmp-XXXX and renames it over `path` only on
 * success; on failure nothing is left behind. */
qiao_status *qiao_model_write(const qiao_model *model, const char *path,
                              const qiao_convert_options *options);

/* qiao_model_write with a per-tensor mix and error report (`quant` may be
 * NULL: then it is qiao_model_write). Same ownership and errors. */
qiao_status *qiao_model_write_quantized(const qiao_model *model, const char *path,
                                        const qiao_convert_options *options,
                                        const qiao_quantize_options *quant);

#ifdef __cplusplus
}
#endif
#endif
