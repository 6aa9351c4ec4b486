/* Building a tokenizer from a model's canonical tokenizer.* metadata
 * (docs/spec/format.md 7.3), the accessors, and encoding with special
 * tokens. Everything read from the model is checked: ids within the vocab,
 * array lengths equal to the vocab, merges naming real tokens. */
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "format/model_internal.h"
#include "tokenizer/tokenizer_internal.h"

/* ---- reading metadata ---------------------------------------------------- */

static bool str_eq(qiao_string s, const char *lit) {
  size_t n = strlen(lit);
  return s.len == n && memcmp(s.data, lit, n) == 0;
}

static qiao_status *find_array(const qiao_model *m, const char *key, qiao_value_type want,
                               const qiao_kv **out) {
  const qiao_kv *kv = qiao_model_kv_find(m, key);
  *out = NULL;
  if (kv == NULL) return NULL;
  if (kv->type != QIAO_VALUE_ARRAY || (want != QIAO_VALUE_ARRAY && kv->elem_type != want))
    return qiao__error(QIAO_MALFORMED, "%s: wrong type (expected an array)", key);
  *out = kv;
  return NULL;
}

/* Element i of an integer array of any integer type. */
static bool int_elem(const qiao_kv *kv, uint64_t i, int64_t *out) {
  const void *a = kv->v.array;
  switch (kv->elem_type) {
  case QIAO_VALUE_U8: *out = ((const uint8_t *)a)[i]; return true;
  case QIAO_VALUE_I8: *out = ((const int8_t *)a)[i]; return true;
  case QIAO_VALUE_U16: *out = ((const uint16_t *)a)[i]; return true;
  case QIAO_VALUE_I16: *out = ((const int16_t *)a)[i]; return true;
  case QIAO_VALUE_U32: *out = ((const uint32_t *)a)[i]; return true;
  case QIAO_VALUE_I32: *out = ((const int32_t *)a)[i]; return true;
  case QIAO_VALUE_U64: {
    uint64_t v = ((const uint64_t *)a)[i];
    *out = v > INT64_MAX ? INT64_MAX : (int64_t)v;
    return true;
  }
  case QIAO_VALUE_I64: *out = ((const int64_t *)a)[i]; return true;
  default: return false;
  }
}

/* An optional token id: -1 when absent; an error when outside the vocab. */
static qiao_status *get_id(const qiao_model *m, const char *key, uint32_t n_vocab, int32_t *out) {
  uint32_t v;
  qiao_status *st = qiao_model_get_u32(m, key, &v);
  *out = -1;
  if (qiao_status_code(st) == QIAO_NOT_FOUND) {
    qiao_status_free(st);
    return NULL;
  }
  QIAO__TRY(st);
  if (v == UINT32_MAX) return NULL; /* GGUF writers use -1 for "none" */
  if (v >= n_vocab)
    return qiao__error(QIAO_MALFORMED, "%s: id %u outside the vocabulary of %u tokens", key, v,
                       n_vocab);
  *out = (int32_t)v;
  return NULL;
}

static qiao_status *get_bool(const qiao_model *m, const char *key, bool dflt, bool *out) {
  qiao_status *st = qiao_model_get_bool(m, key, out);
  if (qiao_status_code(st) == QIAO_NOT_FOUND) {
    qiao_status_free(st);
    *out = dflt;
    return NULL;
  }
  return st;
}

/* ---- building ------------------------------------------------------------ */

static bool is_byte_piece(const char *s, size_t len, unsigned *out) {
  static const char hex[] = "0123456789ABCDEF";
  if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
  const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
  if (h == NULL || l == NULL || s[3] == '\0' || s[4] == '\0') return false;
  *out = (unsigned)((h - hex) * 16 + (l - hex));
  return true;
}

static qiao_status *build_vocab(qiao_tokenizer *t, const qiao_kv *tokens) {
  if (tokens->array_len == 0 || tokens->array_len > QIAO__MAX_ARRAY_LEN)
    return qiao__error(QIAO_MALFORMED, "tokenizer.tokens: %llu tokens (expected 1..%u)",
                       (unsigned long long)tokens->array_len, QIAO__MAX_ARRAY_LEN);
  t->n_vocab = (uint32_t)tokens->array_len;
  const qiao_string *strs = tokens->v.array;
  uint64_t total = 0;
  for (uint32_t i = 0; i < t->n_vocab; i++)
    if (!qiao__add_u64(total, strs[i].len + 1, &total) || total > (1ull << 32))
      return qiao__error(QIAO_LIMIT, "tokenizer.tokens: more than 4 GiB of text");
  t->text = malloc(total);
  t->offsets = malloc(((size_t)t->n_vocab + 1) * sizeof(uint64_t));
  t->types = malloc(t->n_vocab);
  uint64_t cap = 1;
  while (cap < 2ull * t->n_vocab)
    cap <<= 1;
  t->map.slots = malloc(cap * sizeof(int32_t));
  t->map.mask = cap - 1;
  if (t->text == NULL || t->offsets == NULL || t->types == NULL || t->map.slots == NULL)
    return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory for %u tokens", t->n_vocab);
  memset(t->map.slots, 0xff, cap * sizeof(int32_t));
  uint64_t off = 0;
  for (uint32_t i = 0; i < t->n_vocab; i++) {
    t->offsets[i] = off;
    if (strs[i].len) memcpy(t->text + off, strs[i].data, strs[i].len);
    off += strs[i].len;
    t->text[off++] = '\0';
  }
  t->offsets[t->n_vocab] = off;
  for (uint32_t i = 0; i < t->n_vocab; i++) {
    size_t len;
    const char *s = qiao__tok_text(t, (int32_t)i, &len);
    uint64_t h = qiao__hash_bytes(s, len) & t->map.mask;
    bool dup = false;
    while (t->map.slots[h] >= 0) {
      size_t ol;
      const char *o = qiao__tok_text(t, t->map.slots[h], &ol);
      if (ol == len && memcmp(o, s, len) == 0) { /* keep the first id of a repeated text */
        dup = true;
        break;
      }
      h = (h + 1) & t->map.mask;
    }
    if (!dup) t->map.slots[h] = (int32_t)i;
  }
  return NULL;
}

static qiao_status *build_types(qiao_tokenizer *t, const qiao_model *m) {
  const qiao_kv *kv;
  QIAO__TRY(find_array(m, "tokenizer.token_types", QIAO_VALUE_ARRAY, &kv));
  if (kv != NULL) {
    if (kv->array_len != t->n_vocab)
      return qiao__error(QIAO_MALFORMED, "tokenizer.token_types: %llu entries for %u tokens",
                         (unsigned long long)kv->array_len, t->n_vocab);
    for (uint32_t i = 0; i < t->n_vocab; i++) {
      int64_t v;
      if (!int_elem(kv, i, &v))
        return qiao__error(QIAO_MALFORMED, "tokenizer.token_types: not an integer array");
      /* 0 (undefined in GGUF) and unknown values count as normal tokens */
      t->types[i] = (v >= 1 && v <= 6) ? (uint8_t)v : QIAO__TOK_NORMAL;
    }
    return NULL;
  }
  /* No types (a bare vocabulary): infer the usual SentencePiece layout. */
  for (uint32_t i = 0; i < t->n_vocab; i++) {
    size_t len;
    const char *s = qiao__tok_text(t, (int32_t)i, &len);
    unsigned b;
    t->types[i] = QIAO__TOK_NORMAL;
    if (t->kind != QIAO__TOK_SPM) continue;
    if ((int32_t)i == t->unk_id || (len == 5 && memcmp(s, "<unk>", 5) == 0))
      t->types[i] = QIAO__TOK_UNKNOWN;
    else if ((len == 3 && memcmp(s, "<s>", 3) == 0) || (len == 4 && memcmp(s, "</s>", 4) == 0))
      t->types[i] = QIAO__TOK_CONTROL;
    else if (is_byte_piece(s, len, &b))
      t->types[i] = QIAO__TOK_BYTE;
  }
  return NULL;
}

static qiao_status *build_merges(qiao_tokenizer *t, const qiao_model *m) {
  const qiao_kv *kv;
  QIAO__TRY(find_array(m, "tokenizer.merges", QIAO_VALUE_STRING, &kv));
  if (kv == NULL || kv->array_len == 0) return NULL;
  if (kv->array_len > QIAO__MAX_ARRAY_LEN || kv->array_len >= UINT32_MAX)
    return qiao__error(QIAO_LIMIT, "tokenizer.merges: %llu merges",
                       (unsigned long long)kv->array_len);
  uint64_t cap = 1;
  while (cap < 2 * kv->array_len)
    cap <<= 1;
  t->pairs = malloc(cap * sizeof(qiao__pair_entry));
  if (t->pairs == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  t->pair_mask = cap - 1;
  for (uint64_t i = 0; i < cap; i++)
    t->pairs[i].key = UINT64_MAX;
  const qiao_string *merges = kv->v.array;
  char *buf = NULL;
  size_t buf_cap = 0;
  qiao_status *st = NULL;
  for (uint64_t r = 0; r < kv->array_len && st == NULL; r++) {
    qiao_string mg = merges[r];
    /* "left right": tokens of byte-level BPE never hold a plain space, but
     * try every space so that other vocabularies work too */
    int32_t left = -1, right = -1, result = -1;
    for (uint64_t sp = 0; sp < mg.len && result < 0; sp++) {
      if (mg.data[sp] != ' ') continue;
      left = qiao__token_map_find(t, mg.data, sp);
      right = qiao__token_map_find(t, mg.data + sp + 1, mg.len - sp - 1);
      if (left < 0 || right < 0) continue;
      if (mg.len > buf_cap) {
        free(buf);
        buf_cap = mg.len * 2;
        buf = malloc(buf_cap);
        if (buf == NULL) {
          st = qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
          break;
        }
      }
      memcpy(buf, mg.data, sp);
      memcpy(buf + sp, mg.data + sp + 1, mg.len - sp - 1);
      result = qiao__token_map_find(t, buf, mg.len - 1);
    }
    if (st != NULL) break;
    if (result < 0) {
      st = qiao__error(QIAO_MALFORMED,
                       "tokenizer.merges[%llu]: \"%.*s\" does not name two tokens whose "
                       "concatenation is a token",
                       (unsigned long long)r, (int)(mg.len > 80 ? 80 : mg.len), mg.data);
      break;
    }
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    uint64_t h = qiao__hash_bytes((const char *)&key, sizeof(key)) & t->pair_mask;
    while (t->pairs[h].key != UINT64_MAX && t->pairs[h].key != key)
      h = (h + 1) & t->pair_mask;
    if (t->pairs[h].key == UINT64_MAX) /* a repeated merge keeps its first rank */
      t->pairs[h] = (qiao__pair_entry){key, (uint32_t)r, result};
  }
  free(buf);
  return st;
}

/* Added tokens that encoding matches in the text, by first byte, longest first. */
static int special_cmp(const void *a, const void *b, void *ctx) {
  const qiao_tokenizer *t = ctx;
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  size_t lx, ly;
  const char *sx = qiao__tok_text(t, x, &lx), *sy = qiao__tok_text(t, y, &ly);
  if ((uint8_t)sx[0] != (uint8_t)sy[0]) return (uint8_t)sx[0] < (uint8_t)sy[0] ? -1 : 1;
  if (lx != ly) return lx > ly ? -1 : 1;
  return x < y ? -1 : x > y;
}

static bool is_special_type(uint8_t type) {
  return type == QIAO__TOK_CONTROL || type == QIAO__TOK_USER_DEFINED || type == QIAO__TOK_UNKNOWN;
}

static qiao_status *build_specials(qiao_tokenizer *t) {
  size_t n = 0;
  for (uint32_t i = 0; i < t->n_vocab; i++)
    if (is_special_type(t->types[i]) && t->offsets[i + 1] - t->offsets[i] > 1) n++;
  t->special_ids = malloc((n ? n : 1) * sizeof(int32_t));
  if (t->special_ids == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  n = 0;
  for (uint32_t i = 0; i < t->n_vocab; i++)
    if (is_special_type(t->types[i]) && t->offsets[i + 1] - t->offsets[i] > 1)
      t->special_ids[n++] = (int32_t)i;
  qsort_r(t->special_ids, n, sizeof(int32_t), special_cmp, t);
  size_t k = 0;
  for (unsigned b = 0; b <= 256; b++) {
    t->special_start[b] = (uint32_t)k;
    while (b < 256 && k < n && (uint8_t)t->text[t->offsets[t->special_ids[k]]] == b)
      k++;
  }
  return NULL;
}

static qiao_status *build(qiao_tokenizer *t, const qiao_model *m) {
  qiao_string model_name;
  qiao_status *st = qiao_model_get_string(m, "tokenizer.model", &model_name);
  if (qiao_status_code(st) == QIAO_NOT_FOUND) {
    qiao_status_free(st);
    return qiao__error(QIAO_NOT_FOUND, "the model has no tokenizer (tokenizer.model is absent)");
  }
  QIAO__TRY(st);
  if (str_eq(model_name, "none"))
    return qiao__error(QIAO_NOT_FOUND, "the model has no tokenizer (tokenizer.model is \"none\")");
  if (str_eq(model_name, "spm") || str_eq(model_name, "llama"))
    t->kind = QIAO__TOK_SPM;
  else if (str_eq(model_name, "bpe") || str_eq(model_name, "gpt2"))
    t->kind = QIAO__TOK_BPE;
  else
    return qiao__error(QIAO_UNSUPPORTED, "tokenizer.model: \"%.*s\" is not supported (spm, bpe)",
                       (int)(model_name.len > 64 ? 64 : model_name.len), model_name.data);

  const qiao_kv *tokens;
  QIAO__TRY(find_array(m, "tokenizer.tokens", QIAO_VALUE_STRING, &tokens));
  if (tokens == NULL) return qiao__error(QIAO_MALFORMED, "tokenizer.tokens: missing");
  QIAO__TRY(build_vocab(t, tokens));

  QIAO__TRY(get_id(m, "tokenizer.bos_id", t->n_vocab, &t->bos_id));
  QIAO__TRY(get_id(m, "tokenizer.unk_id", t->n_vocab, &t->unk_id));
  QIAO__TRY(build_types(t, m));
  QIAO__TRY(get_bool(m, "tokenizer.add_bos", t->kind == QIAO__TOK_SPM, &t->add_bos));
  QIAO__TRY(get_bool(m, "tokenizer.add_space_prefix", true, &t->add_space_prefix));
  QIAO__TRY(get_bool(m, "tokenizer.ignore_merges", false, &t->ignore_merges));

  const qiao_kv *eos;
  QIAO__TRY(find_array(m, "tokenizer.eos_ids", QIAO_VALUE_ARRAY, &eos));
  if (eos != NULL && eos->array_len > 0) {
    if (eos->array_len > 1024)
      return qiao__error(QIAO_LIMIT, "tokenizer.eos_ids: %llu ids",
                         (unsigned long long)eos->array_len);
    t->eos_ids = malloc(eos->array_len * sizeof(int32_t));
    if (t->eos_ids == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
    for (uint64_t i = 0; i < eos->array_len; i++) {
      int64_t v;
      if (!int_elem(eos, i, &v))
        return qiao__error(QIAO_MALFORMED, "tokenizer.eos_ids: not an integer array");
      if (v < 0 || v >= t->n_vocab)
        return qiao__error(QIAO_MALFORMED,
                           "tokenizer.eos_ids[%llu]: id %lld outside the "
                           "vocabulary of %u tokens",
                           (unsigned long long)i, (long long)v, t->n_vocab);
      t->eos_ids[t->n_eos++] = (int32_t)v;
    }
  }

  for (int b = 0; b < 256; b++)
    t->byte_token[b] = -1;
  if (t->kind == QIAO__TOK_SPM) {
    const qiao_kv *scores;
    QIAO__TRY(find_array(m, "tokenizer.scores", QIAO_VALUE_F32, &scores));
    if (scores == NULL) return qiao__error(QIAO_MALFORMED, "tokenizer.scores: missing (spm)");
    if (scores->array_len != t->n_vocab)
      return qiao__error(QIAO_MALFORMED, "tokenizer.scores: %llu entries for %u tokens",
                         (unsigned long long)scores->array_len, t->n_vocab);
    t->scores = malloc(t->n_vocab * sizeof(float));
    if (t->scores == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
    memcpy(t->scores, scores->v.array, t->n_vocab * sizeof(float));
    t->spm_word_split = true;
    for (uint32_t i = 0; i < t->n_vocab; i++) {
      size_t len;
      const char *s = qiao__tok_text(t, (int32_t)i, &len);
      unsigned b;
      if (t->types[i] == QIAO__TOK_BYTE && is_byte_piece(s, len, &b) && t->byte_token[b] < 0)
        t->byte_token[b] = (int32_t)i;
      if (t->types[i] != QIAO__TOK_NORMAL && t->types[i] != QIAO__TOK_USER_DEFINED) continue;
      for (size_t k = 1; k + 3 <= len; k++)
        if (memcmp(s + k, "\xE2\x96\x81", 3) == 0 &&
            (k < 3 || memcmp(s + k - 3, "\xE2\x96\x81", 3) != 0))
          t->spm_word_split = false; /* e.g. "a▁b": words may merge */
    }
  } else {
    for (int b = 0; b < 256; b++) {
      char c[2];
      size_t n = qiao__byte_to_unicode((uint8_t)b, c);
      t->byte_token[b] = qiao__token_map_find(t, c, n);
    }
    QIAO__TRY(build_merges(t, m));
    qiao_string pre = {"gpt2", 4}, regex = {NULL, 0}, norm = {NULL, 0};
    st = qiao_model_get_string(m, "tokenizer.pre", &pre);
    if (qiao_status_code(st) == QIAO_NOT_FOUND) qiao_status_free(st), st = NULL;
    QIAO__TRY(st);
    st = qiao_model_get_string(m, "tokenizer.pre_regex", &regex);
    if (qiao_status_code(st) == QIAO_NOT_FOUND) qiao_status_free(st), st = NULL;
    QIAO__TRY(st);
    QIAO__TRY(qiao__pretok_init(t, pre.data, pre.len, regex.data, regex.len));
    /* LLaMA 3 uses a whole pre-token that is in the vocab as is (its
     * tokenizer.json sets ignore_merges; GGUF files do not say so). */
    if (str_eq(pre, "llama3") || str_eq(pre, "llama-bpe")) t->ignore_merges = true;
    st = qiao_model_get_string(m, "tokenizer.normalizer", &norm);
    if (qiao_status_code(st) == QIAO_NOT_FOUND) qiao_status_free(st), st = NULL;
    QIAO__TRY(st);
    if (norm.data == NULL) /* Qwen2/2.5/3 normalize to NFC; GGUF files do not say so */
      norm = str_eq(pre, "qwen2") ? (qiao_string){"nfc", 3} : (qiao_string){"none", 4};
    if (str_eq(norm, "nfc"))
      t->nfc = true;
    else if (!str_eq(norm, "none"))
      return qiao__error(QIAO_UNSUPPORTED, "tokenizer.normalizer: \"%.*s\" (supported: none, nfc)",
                         (int)(norm.len > 64 ? 64 : norm.len), norm.data);
  }
  return build_specials(t);
}

qiao_status *qiao_tokenizer_create_from_model(const qiao_model *model, qiao_tokenizer **out) {
  if (model == NULL || out == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_tokenizer_create_from_model: NULL argument");
  qiao_tokenizer *t = calloc(1, sizeof(*t));
  if (t == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  t->bos_id = t->unk_id = -1;
  qiao_status *st = build(t, model);
  if (st != NULL) {
    qiao_tokenizer_destroy(t);
    const char *path = qiao_model_path(model);
    return qiao__annotate(st, "%s", path ? path : "model");
  }
  *out = t;
  return NULL;
}

void qiao_tokenizer_destroy(qiao_tokenizer *t) {
  if (t == NULL) return;
  qiao__pretok_free(t);
  free(t->text);
  free(t->offsets);
  free(t->scores);
  free(t->types);
  free(t->map.slots);
  free(t->pairs);
  free(t->special_ids);
  free(t->eos_ids);
  free(t);
}

/* ---- accessors ------------------------------------------------------------ */

uint32_t qiao_tokenizer_vocab_size(const qiao_tokenizer *t) {
  return t->n_vocab;
}
int32_t qiao_tokenizer_bos_id(const qiao_tokenizer *t) {
  return t->bos_id;
}
bool qiao_tokenizer_adds_bos(const qiao_tokenizer *t) {
  return t->add_bos && t->bos_id >= 0;
}

bool qiao_tokenizer_is_eos(const qiao_tokenizer *t, int32_t id) {
  for (size_t i = 0; i < t->n_eos; i++)
    if (t->eos_ids[i] == id) return true;
  return false;
}

size_t qiao_tokenizer_eos_ids(const qiao_tokenizer *t, const int32_t **out_ids) {
  *out_ids = t->eos_ids;
  return t->n_eos;
}

const char *qiao_tokenizer_token_text(const qiao_tokenizer *t, int32_t id) {
  if (id < 0 || (uint32_t)id >= t->n_vocab) return NULL;
  return t->text + t->offsets[id];
}

int32_t qiao_tokenizer_find_token(const qiao_tokenizer *t, const char *text, size_t len) {
  return qiao__token_map_find(t, text, len);
}

/* ---- encoding ------------------------------------------------------------- */

/* The longest added token that starts at text[pos] and may be matched. */
static int32_t match_special(const qiao_tokenizer *t, const char *text, size_t len, size_t pos,
                             bool parse_special, size_t *out_len) {
  uint8_t b = (uint8_t)text[pos];
  for (uint32_t k = t->special_start[b]; k < t->special_start[b + 1]; k++) {
    int32_t id = t->special_ids[k];
    if (!parse_special && t->types[id] != QIAO__TOK_USER_DEFINED) continue;
    size_t sl;
    const char *s = qiao__tok_text(t, id, &sl);
    if (sl <= len - pos && memcmp(s, text + pos, sl) == 0) {
      *out_len = sl;
      return id;
    }
  }
  return -1;
}

static qiao_status *encode_text(const qiao_tokenizer *t, const char *s, size_t len,
                                bool after_special, qiao__ids *out) {
  if (t->kind == QIAO__TOK_SPM)
    return qiao__spm_encode(t, s, len, t->add_space_prefix && after_special, out);
  return qiao__bpe_encode(t, s, len, out);
}

qiao_status *qiao_tokenizer_encode(const qiao_tokenizer *t, const char *text, size_t len,
                                   const qiao_encode_options *options, int32_t **out_ids,
                                   size_t *out_n) {
  if (t == NULL || (text == NULL && len > 0) || out_ids == NULL || out_n == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_tokenizer_encode: NULL argument");
  bool add_bos = t->add_bos, parse_special = true;
  if (options != NULL) {
    if (options->struct_size < sizeof(qiao_encode_options))
      return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_tokenizer_encode: options.struct_size %zu",
                         options->struct_size);
    add_bos = options->add_bos;
    parse_special = options->parse_special;
  }
  qiao__ids ids = {0};
  qiao_status *st = NULL;
  if (add_bos && t->bos_id >= 0) st = qiao__ids_push(&ids, t->bos_id);
  /* Cut the text at added tokens; the plain text between them is encoded
   * piece by piece. SentencePiece gives each piece that starts the text or
   * follows an added token the dummy-prefix space (as llama.cpp does). */
  size_t piece = 0;
  bool after_special = true;
  for (size_t i = 0; i < len && st == NULL;) {
    size_t sl;
    int32_t id = t->special_start[(uint8_t)text[i]] < t->special_start[(uint8_t)text[i] + 1]
                     ? match_special(t, text, len, i, parse_special, &sl)
                     : -1;
    if (id < 0) {
      i++;
      continue;
    }
    if (i > piece) st = encode_text(t, text + piece, i - piece, after_special, &ids);
    if (st == NULL) st = qiao__ids_push(&ids, id);
    after_special = true;
    i += sl;
    piece = i;
  }
  if (st == NULL && len > piece)
    st = encode_text(t, text + piece, len - piece, after_special, &ids);
  if (st != NULL) {
    free(ids.data);
    return st;
  }
  if (ids.data == NULL) { /* an empty result is still a valid allocation */
    ids.data = malloc(sizeof(int32_t));
    if (ids.data == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  }
  *out_ids = ids.data;
  *out_n = ids.n;
  return NULL;
}
