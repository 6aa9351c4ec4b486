/* qiao/tokenizer.h: text <-> token ids, exactly as each model's own
 * tokenizer does it (SentencePiece BPE and byte-level BPE).
 *
 * Ownership: a tokenizer copies what it needs from its source; it does not
 * keep the model open. Thread-safety: a tokenizer is read-only after creation
 * and may be shared by threads; a qiao_detokenizer belongs to one thread. */
#ifndef QIAO_TOKENIZER_H
#define QIAO_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/model.h"
#include "qiao/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_tokenizer qiao_tokenizer;

/* From a model's tokenizer.* metadata (docs/spec/format.md 7.3). Fails with
 * QIAO_NOT_FOUND when the model has no tokenizer (tokenizer.model = "none" or
 * absent), QIAO_MALFORMED naming the key when the metadata is inconsistent
 * (ids outside the vocab, array lengths, merges naming missing tokens, a
 * pre-tokenizer regex that does not compile) and QIAO_UNSUPPORTED for an
 * unknown tokenizer.model / tokenizer.pre / tokenizer.normalizer. */
qiao_status *qiao_tokenizer_create_from_model(const qiao_model *model, qiao_tokenizer **out);

/* From a standalone file, recognised by its content: a Hugging Face
 * tokenizer.json (its directory's tokenizer_config.json is read too when
 * present), a SentencePiece tokenizer.model, or a llama2.c tok.bin; or a
 * folder holding tokenizer.json or tokenizer.model. */
qiao_status *qiao_tokenizer_open(const char *path, qiao_tokenizer **out);

/* Accepts NULL. */
void qiao_tokenizer_destroy(qiao_tokenizer *tokenizer);

uint32_t qiao_tokenizer_vocab_size(const qiao_tokenizer *tokenizer);
/* -1 when the model has none. */
int32_t qiao_tokenizer_bos_id(const qiao_tokenizer *tokenizer);
/* Whether the model's own settings add BOS when encoding. */
bool qiao_tokenizer_adds_bos(const qiao_tokenizer *tokenizer);
/* True for every end-of-sequence id of the model (e.g. <|im_end|> and <|endoftext|>). */
bool qiao_tokenizer_is_eos(const qiao_tokenizer *tokenizer, int32_t id);
/* The ids that end generation, in the model's order of preference. */
size_t qiao_tokenizer_eos_ids(const qiao_tokenizer *tokenizer, const int32_t **out_ids);
/* The text of a token as stored in the vocabulary (byte-level BPE stores
 * GPT-2's printable form, e.g. "Ġthe"; SentencePiece "▁the"); NULL when out
 * of range. Valid as long as the tokenizer. */
const char *qiao_tokenizer_token_text(const qiao_tokenizer *tokenizer, int32_t id);
/* The id of an exact vocabulary entry (e.g. "<|im_end|>"), or -1. */
int32_t qiao_tokenizer_find_token(const qiao_tokenizer *tokenizer, const char *text, size_t len);

/* True for control tokens (<|im_start|>, </s>, <s>): markup that encoding
 * ordinary text never produces. */
bool qiao_tokenizer_is_control(const qiao_tokenizer *tokenizer, int32_t id);
/* The raw bytes that token `id` adds to a text it does not start (as
 * qiao_tokenizer_decode writes them before its UTF-8 check; a byte token
 * gives its byte, a control token of SentencePiece none). *out_len is always
 * set; the bytes are copied to buf only when they fit in `cap`
 * (QIAO_LIMIT otherwise). QIAO_INVALID_ARGUMENT for an id outside the vocab. */
qiao_status *qiao_tokenizer_token_bytes(const qiao_tokenizer *tokenizer, int32_t id, char *buf,
                                        size_t cap, size_t *out_len);

typedef struct qiao_encode_options {
  size_t struct_size;
  /* Prepend BOS when the model has a BOS id (whatever its own setting; use
   * qiao_tokenizer_adds_bos() for the model's default). */
  bool add_bos;
  /* Match control tokens such as <|im_start|> in the text (longest first).
   * User-defined added tokens (e.g. Qwen's <think>) are always matched, as
   * the reference tokenizers do; ordinary BPE never produces either. */
  bool parse_special;
} qiao_encode_options;

/* Encodes `len` bytes of `text` (any bytes; invalid UTF-8 goes through the
 * byte fallback). `options` NULL means the model's add_bos and
 * parse_special = true. On success *out_ids is a malloc'd array the caller
 * frees (never NULL, even for 0 ids). */
qiao_status *qiao_tokenizer_encode(const qiao_tokenizer *tokenizer, const char *text, size_t len,
                                   const qiao_encode_options *options, int32_t **out_ids,
                                   size_t *out_n);

/* Decodes ids to text in one go (invalid UTF-8 becomes U+FFFD, one per
 * maximal invalid sequence). SentencePiece: "▁" is a space, <0xXX> the byte,
 * control tokens (<s>, </s>) give no text, the dummy-prefix space of the
 * first piece is dropped; byte-level BPE: GPT-2's byte mapping reversed,
 * added tokens (<|im_end|>) as their text. An id outside the vocab is
 * QIAO_INVALID_ARGUMENT. *out_text is malloc'd and NUL-terminated; *out_len
 * excludes the NUL. */
qiao_status *qiao_tokenizer_decode(const qiao_tokenizer *tokenizer, const int32_t *ids, size_t n,
                                   char **out_text, size_t *out_len);

/* Streaming decode: push ids one at a time and get back the text that is
 * complete so far; bytes of an unfinished UTF-8 character are held until it
 * completes. The concatenated pieces plus the final flush equal
 * qiao_tokenizer_decode() of the same ids. The tokenizer must outlive it. */
typedef struct qiao_detokenizer qiao_detokenizer;
qiao_status *qiao_detokenizer_create(const qiao_tokenizer *tokenizer, qiao_detokenizer **out);
void qiao_detokenizer_destroy(qiao_detokenizer *detokenizer); /* accepts NULL */
/* *out_text points into the detokenizer and is valid until the next call;
 * *out_len may be 0. */
qiao_status *qiao_detokenizer_push(qiao_detokenizer *detokenizer, int32_t id, const char **out_text,
                                   size_t *out_len);
/* Returns what is still held (as U+FFFD for an unfinished character) and resets. */
qiao_status *qiao_detokenizer_flush(qiao_detokenizer *detokenizer, const char **out_text,
                                    size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
