/* The llama2.c tokenizer file (tok.bin): int32 max_token_length, then for
 * each token id in order: f32 score, int32 length, `length` bytes of text.
 * It is a SentencePiece BPE vocab with byte fallback: ids 3..258 are the
 * byte tokens "<0x00>".."<0xFF>", 0 is <unk>, 1 <s> and 2 </s> (which
 * llama2.c spells "\n<s>\n" and "\n</s>\n" for printing; they are stored
 * here under their usual names, like GGUF vocabularies do). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "format/import_llama2c.h"

enum { TYPE_NORMAL = 1, TYPE_UNKNOWN = 2, TYPE_CONTROL = 3, TYPE_BYTE = 6 };

static bool is_hex(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

static bool is_byte_token(const uint8_t *text, uint64_t len) {
  return len == 6 && memcmp(text, "<0x", 3) == 0 && is_hex(text[3]) && is_hex(text[4]) &&
         text[5] == '>';
}

static int32_t read_i32(const uint8_t *p) {
  uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  int32_t out;
  memcpy(&out, &v, sizeof(out));
  return out;
}

static int32_t token_type(uint32_t id, const uint8_t *text, uint64_t len) {
  if (id == 0) return TYPE_UNKNOWN;
  if (id == 1 || id == 2) return TYPE_CONTROL;
  if (id >= 3 && id <= 258 && is_byte_token(text, len)) return TYPE_BYTE;
  return TYPE_NORMAL;
}

/* The SentencePiece piece of a tok.bin entry, written to `out` (room for
 * 3 * len bytes): llama2.c's exporter replaced the piece's U+2581 (the SPM
 * space marker) by ' ' and wrote <s> and </s> as "\n<s>\n" and "\n</s>\n";
 * both are undone so that the vocab equals the SentencePiece one (and that
 * of GGUF files). SentencePiece pieces never hold a plain space, so the
 * mapping is exact. */
static uint64_t spm_piece(uint32_t id, const uint8_t *text, uint64_t len, char *out) {
  static const char *const names[3] = {NULL, "<s>", "</s>"};
  if (id == 1 || id == 2) {
    uint64_t n = strlen(names[id]);
    if (len == n + 2 && text[0] == '\n' && text[len - 1] == '\n' &&
        memcmp(text + 1, names[id], n) == 0) {
      memcpy(out, names[id], n);
      return n;
    }
  }
  uint64_t o = 0;
  for (uint64_t i = 0; i < len; i++) {
    if (text[i] == ' ') {
      memcpy(out + o, "\xe2\x96\x81", 3);
      o += 3;
    } else {
      out[o++] = (char)text[i];
    }
  }
  return o;
}

typedef struct tok_arrays {
  char *pool; /* the pieces' bytes */
  uint64_t pool_used;
  qiao_string *tokens;
  float *scores;
  int32_t *types;
} tok_arrays;

static qiao_status *parse_tokens(const uint8_t *data, uint64_t size, const char *file,
                                 uint32_t vocab_size, tok_arrays *a) {
  if (size < 4)
    return qiao__error(QIAO_MALFORMED, "%s: %llu bytes, too short for max_token_length", file,
                       (unsigned long long)size);
  int32_t max_len = read_i32(data);
  if (max_len <= 0 || (uint32_t)max_len > QIAO__MAX_STRING_LEN)
    return qiao__error(QIAO_MALFORMED, "%s: max_token_length: %d out of range at byte offset 0",
                       file, max_len);
  uint64_t offset = 4;
  for (uint32_t id = 0; id < vocab_size; id++) {
    if (!qiao__range_ok(offset, 8, size))
      return qiao__error(QIAO_MALFORMED,
                         "%s: token %u: truncated at byte offset %llu (the model has %u "
                         "tokens)",
                         file, id, (unsigned long long)offset, vocab_size);
    float score;
    memcpy(&score, data + offset, 4);
    int32_t len = read_i32(data + offset + 4);
    if (isnan(score))
      return qiao__error(QIAO_MALFORMED, "%s: token %u: score: NaN at byte offset %llu", file, id,
                         (unsigned long long)offset);
    if (len < 0 || len > max_len)
      return qiao__error(QIAO_MALFORMED,
                         "%s: token %u: length: %d is outside 0..%d at byte offset %llu", file, id,
                         len, max_len, (unsigned long long)(offset + 4));
    offset += 8;
    if (!qiao__range_ok(offset, (uint64_t)len, size))
      return qiao__error(QIAO_MALFORMED,
                         "%s: token %u: %d bytes of text at byte offset %llu run past the end "
                         "of the %llu byte file",
                         file, id, len, (unsigned long long)offset, (unsigned long long)size);
    /* Each piece grows at most 3x; the pool was sized for that. */
    uint64_t n = spm_piece(id, data + offset, (uint64_t)len, a->pool + a->pool_used);
    a->tokens[id] = (qiao_string){a->pool + a->pool_used, n};
    a->pool_used += n;
    a->scores[id] = score;
    a->types[id] = token_type(id, data + offset, (uint64_t)len);
    offset += (uint64_t)len;
  }
  if (offset != size)
    return qiao__error(QIAO_MALFORMED,
                       "%s: %llu unexpected bytes after token %u at byte offset %llu (the "
                       "model has %u tokens)",
                       file, (unsigned long long)(size - offset), vocab_size - 1,
                       (unsigned long long)offset, vocab_size);
  return NULL;
}

static qiao_status *set_keys(qiao_model *model, uint32_t vocab_size, const tok_arrays *a) {
  const uint32_t eos = 2;
  QIAO__TRY(qiao__model_set_string(model, "tokenizer.model", "spm", 3));
  QIAO__TRY(
      qiao__model_set_array(model, "tokenizer.tokens", QIAO_VALUE_STRING, vocab_size, a->tokens));
  QIAO__TRY(
      qiao__model_set_array(model, "tokenizer.scores", QIAO_VALUE_F32, vocab_size, a->scores));
  QIAO__TRY(
      qiao__model_set_array(model, "tokenizer.token_types", QIAO_VALUE_I32, vocab_size, a->types));
  QIAO__TRY(qiao__model_set_u32(model, "tokenizer.bos_id", 1));
  QIAO__TRY(qiao__model_set_array(model, "tokenizer.eos_ids", QIAO_VALUE_U32, 1, &eos));
  QIAO__TRY(qiao__model_set_u32(model, "tokenizer.unk_id", 0));
  QIAO__TRY(qiao__model_set_bool(model, "tokenizer.add_bos", true));
  QIAO__TRY(qiao__model_set_bool(model, "tokenizer.add_space_prefix", true));
  return NULL;
}

qiao_status *qiao__llama2c_add_tokenizer(qiao_model *model, const uint8_t *data, uint64_t size,
                                         const char *name, uint32_t vocab_size) {
  const char *file = name ? name : "(buffer)";
  if (size > QIAO__LLAMA2C_MAX_TOKENIZER_BYTES)
    return qiao__error(QIAO_LIMIT, "%s: %llu bytes (limit %u)", file, (unsigned long long)size,
                       QIAO__LLAMA2C_MAX_TOKENIZER_BYTES);
  /* The file is checked before anything is allocated for it. */
  if (vocab_size < 3 || vocab_size > QIAO__MAX_ARRAY_LEN)
    return qiao__error(QIAO_MALFORMED, "%s: a vocab of %u tokens cannot hold <unk> <s> </s>", file,
                       vocab_size);
  if ((uint64_t)vocab_size * 8 > size)
    return qiao__error(QIAO_MALFORMED,
                       "%s: %llu bytes cannot hold the model's %u tokens (8 bytes each at "
                       "least)",
                       file, (unsigned long long)size, vocab_size);
  /* Token text is at most the file size, and grows at most 3x. */
  tok_arrays a = {malloc(3 * size + 1), 0, calloc(vocab_size, sizeof(qiao_string)),
                  calloc(vocab_size, sizeof(float)), calloc(vocab_size, sizeof(int32_t))};
  qiao_status *st = NULL;
  if (a.pool == NULL || a.tokens == NULL || a.scores == NULL || a.types == NULL)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory for %u tokens", file, vocab_size);
  if (st == NULL) st = parse_tokens(data, size, file, vocab_size, &a);
  if (st == NULL) st = set_keys(model, vocab_size, &a);
  free(a.pool);
  free(a.tokens);
  free(a.scores);
  free(a.types);
  return st;
}
