/* Hugging Face tokenizer.json (+ tokenizer_config.json) -> canonical
 * tokenizer.* metadata (docs/spec/format.md 7.3).
 *
 * Byte-level BPE files give tokenizer.model "bpe": the vocab and the added
 * tokens by id (special added tokens are control tokens, the others
 * user-defined), the merges as "left right" strings, the pre-tokenizer family
 * recognised from its Split regex(es) (an unknown single regex is kept in
 * tokenizer.pre_regex), the NFC normalizer, bos/eos, add_bos and the chat
 * template. SentencePiece-style files (BPE with byte_fallback and the "▁"
 * space marker) give "spm", with scores that replay the merge order. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "format/import_tokenizer.h"

#define MAX_JSON_DEPTH 64
#define MAX_TOKENIZER_JSON_BYTES (1024ull << 20)

enum {
  TYPE_NORMAL = 1,
  TYPE_UNKNOWN = 2,
  TYPE_CONTROL = 3,
  TYPE_USER = 4,
  TYPE_UNUSED = 5,
  TYPE_BYTE = 6
};

/* The regexes of the known families, as tokenizer.json spells them. */
static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char llama3_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* DeepSeek-V3's three Split regexes, in order. */
static const char *const deepseek_v3_regexes[] = {
    "\\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
static const char qwen2_regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct ctx {
  const char *file; /* for messages */
  qiao_model *model;
  json_object *root, *config;
  json_object *vocab; /* model.vocab */
  /* tokens by id */
  uint32_t cap, n;
  const char **text;
  uint32_t *len;
  int32_t *types;
  bool spm;
} ctx;

static json_object *get(json_object *o, const char *key) {
  json_object *v = NULL;
  if (o == NULL || !json_object_is_type(o, json_type_object)) return NULL;
  if (!json_object_object_get_ex(o, key, &v)) return NULL;
  return v;
}

static const char *get_str(json_object *o, const char *key) {
  json_object *v = get(o, key);
  return v != NULL && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static qiao_status *parse(const char *text, size_t len, const char *file, json_object **out) {
  if (len > MAX_TOKENIZER_JSON_BYTES || len > INT32_MAX)
    return qiao__error(QIAO_LIMIT, "%s: %zu bytes is too large for a tokenizer", file, len);
  json_tokener *tok = json_tokener_new_ex(MAX_JSON_DEPTH);
  if (tok == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", file);
  json_object *root = json_tokener_parse_ex(tok, text, (int)len);
  enum json_tokener_error err = json_tokener_get_error(tok);
  size_t off = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  if (root == NULL || err != json_tokener_success) {
    json_object_put(root);
    if (err == json_tokener_continue) err = json_tokener_error_parse_eof;
    return qiao__error(QIAO_MALFORMED, "%s: invalid JSON (%s) at byte offset %zu", file,
                       json_tokener_error_desc(err), off);
  }
  if (!json_object_is_type(root, json_type_object)) {
    json_object_put(root);
    return qiao__error(QIAO_MALFORMED, "%s: the top level is not a JSON object", file);
  }
  *out = root;
  return NULL;
}

/* ---- tokens by id ---------------------------------------------------------- */

static qiao_status *put_token(ctx *c, int64_t id, const char *s, uint32_t len, int32_t type,
                              const char *field) {
  if (id < 0 || id >= (int64_t)c->cap)
    return qiao__error(QIAO_MALFORMED,
                       "%s: %s: id %lld of \"%.*s\" is beyond the vocabulary of %u tokens", c->file,
                       field, (long long)id, (int)(len > 64 ? 64 : len), s, c->cap);
  if (c->text[id] != NULL) {
    if (c->len[id] != len || memcmp(c->text[id], s, len) != 0)
      return qiao__error(QIAO_MALFORMED, "%s: %s: duplicate id %lld (\"%.*s\" and \"%.*s\")",
                         c->file, field, (long long)id, (int)(c->len[id] > 64 ? 64 : c->len[id]),
                         c->text[id], (int)(len > 64 ? 64 : len), s);
    if (type != TYPE_NORMAL) c->types[id] = type; /* an added token re-declaring a vocab entry */
    return NULL;
  }
  c->text[id] = s;
  c->len[id] = len;
  c->types[id] = type;
  if ((uint32_t)id + 1 > c->n) c->n = (uint32_t)id + 1;
  return NULL;
}

static qiao_status *read_vocab(ctx *c) {
  json_object *model = get(c->root, "model");
  if (model == NULL) return qiao__error(QIAO_MALFORMED, "%s: model: missing", c->file);
  const char *type = get_str(model, "type");
  if (type != NULL && strcmp(type, "BPE") != 0)
    return qiao__error(QIAO_UNSUPPORTED, "%s: model.type: \"%s\" is not supported (only BPE)",
                       c->file, type);
  c->vocab = get(model, "vocab");
  if (c->vocab == NULL || !json_object_is_type(c->vocab, json_type_object))
    return qiao__error(QIAO_MALFORMED, "%s: model.vocab: missing or not an object", c->file);
  json_object *added = get(c->root, "added_tokens");
  json_object *decl = get(c->config, "added_tokens_decoder");
  uint64_t cap = (uint64_t)json_object_object_length(c->vocab);
  if (added && json_object_is_type(added, json_type_array)) cap += json_object_array_length(added);
  if (decl && json_object_is_type(decl, json_type_object)) cap += json_object_object_length(decl);
  if (cap == 0 || cap > QIAO__MAX_ARRAY_LEN)
    return qiao__error(QIAO_MALFORMED, "%s: model.vocab: %llu tokens (expected 1..%u)", c->file,
                       (unsigned long long)cap, QIAO__MAX_ARRAY_LEN);
  c->cap = (uint32_t)cap;
  c->text = calloc(cap, sizeof(*c->text));
  c->len = calloc(cap, sizeof(*c->len));
  c->types = calloc(cap, sizeof(*c->types));
  if (c->text == NULL || c->len == NULL || c->types == NULL)
    return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", c->file);

  json_object_object_foreach(c->vocab, key, val) {
    if (!json_object_is_type(val, json_type_int))
      return qiao__error(QIAO_MALFORMED, "%s: model.vocab[\"%.64s\"]: not an integer id", c->file,
                         key);
    QIAO__TRY(put_token(c, json_object_get_int64(val), key, (uint32_t)strlen(key), TYPE_NORMAL,
                        "model.vocab"));
  }
  if (added && json_object_is_type(added, json_type_array)) {
    for (size_t i = 0; i < json_object_array_length(added); i++) {
      json_object *a = json_object_array_get_idx(added, i);
      json_object *id = get(a, "id"), *content = get(a, "content"), *special = get(a, "special");
      if (id == NULL || !json_object_is_type(id, json_type_int) || content == NULL ||
          !json_object_is_type(content, json_type_string))
        return qiao__error(QIAO_MALFORMED, "%s: added_tokens[%zu]: needs id and content", c->file,
                           i);
      char field[64];
      snprintf(field, sizeof(field), "added_tokens[%zu]", i);
      QIAO__TRY(put_token(c, json_object_get_int64(id), json_object_get_string(content),
                          (uint32_t)json_object_get_string_len(content),
                          special && json_object_get_boolean(special) ? TYPE_CONTROL : TYPE_USER,
                          field));
    }
  }
  if (decl && json_object_is_type(decl, json_type_object)) {
    json_object_object_foreach(decl, key, val) {
      char *end;
      long long id = strtoll(key, &end, 10);
      json_object *content = get(val, "content"), *special = get(val, "special");
      if (*key == '\0' || *end != '\0' || content == NULL ||
          !json_object_is_type(content, json_type_string))
        return qiao__error(QIAO_MALFORMED,
                           "tokenizer_config.json: added_tokens_decoder[\"%.32s\"]: "
                           "needs a numeric id and content",
                           key);
      QIAO__TRY(put_token(c, id, json_object_get_string(content),
                          (uint32_t)json_object_get_string_len(content),
                          special && json_object_get_boolean(special) ? TYPE_CONTROL : TYPE_USER,
                          "tokenizer_config.json: added_tokens_decoder"));
    }
  }
  for (uint32_t i = 0; i < c->n; i++)
    if (c->text[i] == NULL)
      return qiao__error(QIAO_MALFORMED, "%s: model.vocab: id %u has no token (ids run to %u)",
                         c->file, i, c->n - 1);
  return NULL;
}

static int64_t token_id(ctx *c, const char *s) {
  json_object *v = get(c->vocab, s);
  if (v != NULL) return json_object_get_int64(v);
  size_t len = strlen(s);
  for (uint32_t i = 0; i < c->n; i++)
    if (c->types[i] != TYPE_NORMAL && c->len[i] == len && memcmp(c->text[i], s, len) == 0) return i;
  return -1;
}

/* ---- merges ------------------------------------------------------------------ */

typedef struct merges {
  qiao_string *items;
  char **owned; /* strings built from the [left, right] form */
  size_t n;
} merges;

static void merges_free(merges *m) {
  if (m->owned)
    for (size_t i = 0; i < m->n; i++)
      free(m->owned[i]);
  free(m->owned);
  free(m->items);
}

/* Checks that "left right" names two tokens whose concatenation is one. */
static qiao_status *check_merge(ctx *c, size_t i, const char *s, size_t len, char *tmp) {
  for (size_t sp = 0; sp < len; sp++) {
    if (s[sp] != ' ') continue;
    memcpy(tmp, s, sp);
    tmp[sp] = '\0';
    if (get(c->vocab, tmp) == NULL) continue;
    memcpy(tmp, s + sp + 1, len - sp - 1);
    tmp[len - sp - 1] = '\0';
    if (get(c->vocab, tmp) == NULL) continue;
    memcpy(tmp, s, sp);
    memcpy(tmp + sp, s + sp + 1, len - sp - 1);
    tmp[len - 1] = '\0';
    if (get(c->vocab, tmp) != NULL) return NULL;
    return qiao__error(QIAO_MALFORMED,
                       "%s: model.merges[%zu]: \"%.*s\": the merged token is not in "
                       "the vocabulary",
                       c->file, i, (int)(len > 80 ? 80 : len), s);
  }
  return qiao__error(QIAO_MALFORMED,
                     "%s: model.merges[%zu]: \"%.*s\" names a token missing from the "
                     "vocabulary",
                     c->file, i, (int)(len > 80 ? 80 : len), s);
}

static qiao_status *read_merges(ctx *c, merges *m) {
  json_object *arr = get(get(c->root, "model"), "merges");
  if (arr == NULL) return NULL;
  if (!json_object_is_type(arr, json_type_array))
    return qiao__error(QIAO_MALFORMED, "%s: model.merges: not an array", c->file);
  size_t n = json_object_array_length(arr);
  if (n > QIAO__MAX_ARRAY_LEN)
    return qiao__error(QIAO_LIMIT, "%s: model.merges: %zu merges", c->file, n);
  m->items = calloc(n ? n : 1, sizeof(qiao_string));
  m->owned = calloc(n ? n : 1, sizeof(char *));
  if (m->items == NULL || m->owned == NULL)
    return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", c->file);
  char *tmp = NULL;
  size_t tmp_cap = 0;
  qiao_status *st = NULL;
  for (size_t i = 0; i < n && st == NULL; i++) {
    json_object *e = json_object_array_get_idx(arr, i);
    const char *s;
    size_t len;
    if (json_object_is_type(e, json_type_string)) {
      s = json_object_get_string(e);
      len = (size_t)json_object_get_string_len(e);
    } else if (json_object_is_type(e, json_type_array) && json_object_array_length(e) == 2 &&
               json_object_is_type(json_object_array_get_idx(e, 0), json_type_string) &&
               json_object_is_type(json_object_array_get_idx(e, 1), json_type_string)) {
      json_object *l = json_object_array_get_idx(e, 0), *r = json_object_array_get_idx(e, 1);
      size_t ll = (size_t)json_object_get_string_len(l), rl = (size_t)json_object_get_string_len(r);
      char *b = malloc(ll + rl + 2);
      if (b == NULL) {
        st = qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", c->file);
        break;
      }
      memcpy(b, json_object_get_string(l), ll);
      b[ll] = ' ';
      memcpy(b + ll + 1, json_object_get_string(r), rl);
      b[ll + rl + 1] = '\0';
      m->owned[i] = b;
      s = b;
      len = ll + rl + 1;
    } else {
      st = qiao__error(QIAO_MALFORMED, "%s: model.merges[%zu]: neither \"a b\" nor [\"a\", \"b\"]",
                       c->file, i);
      break;
    }
    m->n = i + 1;
    m->items[i] = (qiao_string){s, len};
    if (len + 1 > tmp_cap) {
      free(tmp);
      tmp_cap = 2 * len + 16;
      tmp = malloc(tmp_cap);
      if (tmp == NULL) {
        st = qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", c->file);
        break;
      }
    }
    st = check_merge(c, i, s, len, tmp);
  }
  free(tmp);
  return st;
}

/* ---- pre-tokenizer and normalizer ------------------------------------------ */

static const char *split_regex(json_object *p) {
  const char *type = get_str(p, "type");
  if (type == NULL || strcmp(type, "Split") != 0) return NULL;
  const char *behavior = get_str(p, "behavior");
  json_object *invert = get(p, "invert");
  if (behavior == NULL || strcmp(behavior, "Isolated") != 0) return NULL;
  if (invert != NULL && json_object_get_boolean(invert)) return NULL;
  return get_str(get(p, "pattern"), "Regex");
}

static bool is_byte_level(json_object *p, bool want_regex) {
  const char *type = get_str(p, "type");
  if (type == NULL || strcmp(type, "ByteLevel") != 0) return false;
  json_object *prefix = get(p, "add_prefix_space"), *use_regex = get(p, "use_regex");
  if (prefix != NULL && json_object_get_boolean(prefix)) return false;
  bool uses = use_regex == NULL || json_object_get_boolean(use_regex); /* default true */
  return uses == want_regex;
}

static qiao_status *read_pre_tokenizer(ctx *c, const char **pre, const char **regex) {
  json_object *p = get(c->root, "pre_tokenizer");
  *regex = NULL;
  if (is_byte_level(p, true)) {
    *pre = "gpt2";
    return NULL;
  }
  const char *type = get_str(p, "type");
  json_object *list = get(p, "pretokenizers");
  if (type != NULL && strcmp(type, "Sequence") == 0 && list != NULL &&
      json_object_is_type(list, json_type_array)) {
    size_t n = json_object_array_length(list);
    const char *regexes[8];
    size_t n_regex = 0;
    bool byte_level = false, digits = false, ok = n > 0;
    for (size_t i = 0; i < n && ok; i++) {
      json_object *e = json_object_array_get_idx(list, i);
      const char *r = split_regex(e);
      const char *et = get_str(e, "type");
      if (r != NULL && n_regex < 8 && !byte_level)
        regexes[n_regex++] = r;
      else if (et != NULL && strcmp(et, "Digits") == 0 && !byte_level)
        digits = true;
      else if (i == n - 1 && is_byte_level(e, false))
        byte_level = true;
      else
        ok = false;
    }
    if (ok && byte_level && n_regex == 1 && !digits) {
      if (strcmp(regexes[0], llama3_regex) == 0)
        *pre = "llama3";
      else if (strcmp(regexes[0], qwen2_regex) == 0)
        *pre = "qwen2";
      else if (strcmp(regexes[0], gpt2_regex) == 0)
        *pre = "gpt2";
      else
        *pre = "regex", *regex = regexes[0];
      return NULL;
    }
    if (ok && byte_level && n_regex == 3 && !digits &&
        strcmp(regexes[0], deepseek_v3_regexes[0]) == 0 &&
        strcmp(regexes[1], deepseek_v3_regexes[1]) == 0 &&
        strcmp(regexes[2], deepseek_v3_regexes[2]) == 0) {
      *pre = "deepseek-v3";
      return NULL;
    }
    if (ok && byte_level && n_regex >= 2 && strcmp(regexes[0], "[\r\n]") == 0) {
      if (strncmp(regexes[1], "\\s?[A-Za-z", 10) == 0) {
        *pre = "deepseek-llm";
        return NULL;
      }
      if (strcmp(regexes[1], "\\s?\\p{L}+") == 0) {
        *pre = "deepseek-coder";
        return NULL;
      }
    }
  }
  return qiao__error(QIAO_UNSUPPORTED,
                     "%s: pre_tokenizer: this pre-tokenizer is not supported (known: "
                     "ByteLevel, or Split regex + ByteLevel of GPT-2, LLaMA 3, Qwen2, DeepSeek, or "
                     "one custom Split regex)",
                     c->file);
}

static qiao_status *read_normalizer(ctx *c, const char **norm) {
  json_object *n = get(c->root, "normalizer");
  const char *type = get_str(n, "type");
  *norm = "none";
  if (n == NULL || json_object_is_type(n, json_type_null)) return NULL;
  if (type != NULL && strcmp(type, "NFC") == 0) {
    *norm = "nfc";
    return NULL;
  }
  json_object *list = get(n, "normalizers");
  if (type != NULL && strcmp(type, "Sequence") == 0 && list != NULL &&
      json_object_is_type(list, json_type_array)) {
    size_t k = json_object_array_length(list);
    if (k == 0) return NULL;
    const char *t0 = get_str(json_object_array_get_idx(list, 0), "type");
    if (k == 1 && t0 != NULL && strcmp(t0, "NFC") == 0) {
      *norm = "nfc";
      return NULL;
    }
  }
  return qiao__error(QIAO_UNSUPPORTED, "%s: normalizer: only NFC (or none) is supported for BPE",
                     c->file);
}

/* SentencePiece-style: Metaspace pre-tokenizer, or Prepend("▁") + Replace(" ", "▁"). */
static qiao_status *read_spm_style(ctx *c, bool *add_prefix) {
  json_object *p = get(c->root, "pre_tokenizer"), *n = get(c->root, "normalizer");
  bool pre_null = p == NULL || json_object_is_type(p, json_type_null);
  bool norm_null = n == NULL || json_object_is_type(n, json_type_null);
  const char *pt = get_str(p, "type");
  if (!pre_null && pt != NULL && strcmp(pt, "Metaspace") == 0 && norm_null) {
    const char *rep = get_str(p, "replacement"), *scheme = get_str(p, "prepend_scheme");
    json_object *split = get(p, "split");
    if (rep != NULL && strcmp(rep, "\xE2\x96\x81") == 0 &&
        (split == NULL || !json_object_get_boolean(split))) {
      *add_prefix = scheme == NULL || strcmp(scheme, "never") != 0;
      return NULL;
    }
  }
  if (pre_null && !norm_null) {
    json_object *list = get(n, "normalizers");
    const char *nt = get_str(n, "type");
    if (nt != NULL && strcmp(nt, "Sequence") == 0 && list != NULL &&
        json_object_is_type(list, json_type_array)) {
      bool prepend = false, replace = false, other = false;
      for (size_t i = 0; i < json_object_array_length(list); i++) {
        json_object *e = json_object_array_get_idx(list, i);
        const char *et = get_str(e, "type");
        if (et && strcmp(et, "Prepend") == 0 && get_str(e, "prepend") &&
            strcmp(get_str(e, "prepend"), "\xE2\x96\x81") == 0)
          prepend = true;
        else if (et && strcmp(et, "Replace") == 0 && get_str(get(e, "pattern"), "String") &&
                 strcmp(get_str(get(e, "pattern"), "String"), " ") == 0 && get_str(e, "content") &&
                 strcmp(get_str(e, "content"), "\xE2\x96\x81") == 0)
          replace = true;
        else
          other = true;
      }
      if (replace && !other) {
        *add_prefix = prepend;
        return NULL;
      }
    }
  }
  return qiao__error(QIAO_UNSUPPORTED,
                     "%s: a SentencePiece-style tokenizer.json with this normalizer / "
                     "pre_tokenizer is not supported (use its tokenizer.model)",
                     c->file);
}

/* ---- special tokens from tokenizer_config.json ------------------------------ */

static const char *token_content(json_object *v) {
  if (v == NULL) return NULL;
  if (json_object_is_type(v, json_type_string)) return json_object_get_string(v);
  return get_str(v, "content");
}

static qiao_status *set_id(ctx *c, const char *key, const char *content, const char *field) {
  if (content == NULL) return NULL;
  int64_t id = token_id(c, content);
  if (id < 0)
    return qiao__error(QIAO_MALFORMED, "%s: %s: token \"%.64s\" is not in the vocabulary", c->file,
                       field, content);
  return qiao__model_set_u32(c->model, key, (uint32_t)id);
}

static qiao_status *write_specials(ctx *c) {
  const char *bos = token_content(get(c->config, "bos_token"));
  const char *eos = token_content(get(c->config, "eos_token"));
  QIAO__TRY(set_id(c, "tokenizer.bos_id", bos, "tokenizer_config.json: bos_token"));
  const char *unk = token_content(get(c->config, "unk_token"));
  if (unk != NULL)
    QIAO__TRY(set_id(c, "tokenizer.unk_id", unk, "tokenizer_config.json: unk_token"));
  else
    QIAO__TRY(set_id(c, "tokenizer.unk_id", get_str(get(c->root, "model"), "unk_token"),
                     "model.unk_token"));
  QIAO__TRY(set_id(c, "tokenizer.pad_id", token_content(get(c->config, "pad_token")),
                   "tokenizer_config.json: pad_token"));

  /* eos first, then the usual end-of-turn tokens the vocab declares special */
  static const char *const enders[] = {"<|im_end|>",      "<|endoftext|>", "<|eot_id|>",
                                       "<|end_of_text|>", "<|eom_id|>",    "</s>"};
  uint32_t eos_ids[8];
  size_t n_eos = 0;
  if (eos != NULL) {
    int64_t id = token_id(c, eos);
    if (id < 0)
      return qiao__error(QIAO_MALFORMED,
                         "%s: tokenizer_config.json: eos_token: \"%.64s\" is not in the "
                         "vocabulary",
                         c->file, eos);
    eos_ids[n_eos++] = (uint32_t)id;
  }
  for (size_t i = 0; i < sizeof(enders) / sizeof(enders[0]); i++) {
    int64_t id = token_id(c, enders[i]);
    if (id < 0 || c->types[id] != TYPE_CONTROL) continue;
    bool seen = false;
    for (size_t k = 0; k < n_eos; k++)
      seen = seen || eos_ids[k] == (uint32_t)id;
    if (!seen) eos_ids[n_eos++] = (uint32_t)id;
  }
  if (n_eos > 0)
    QIAO__TRY(qiao__model_set_array(c->model, "tokenizer.eos_ids", QIAO_VALUE_U32, n_eos, eos_ids));

  /* add_bos: the config says so, or the post-processor starts with a special token */
  json_object *add_bos = get(c->config, "add_bos_token");
  bool adds = false;
  if (add_bos != NULL && json_object_is_type(add_bos, json_type_boolean)) {
    adds = json_object_get_boolean(add_bos);
  } else if (!c->spm) {
    json_object *pp = get(c->root, "post_processor");
    const char *ppt = get_str(pp, "type");
    json_object *single = get(pp, "single");
    if (ppt && strcmp(ppt, "TemplateProcessing") == 0 && single &&
        json_object_is_type(single, json_type_array) && json_object_array_length(single) > 0) {
      const char *first = get_str(get(json_object_array_get_idx(single, 0), "SpecialToken"), "id");
      if (first != NULL) {
        adds = true;
        if (bos == NULL)
          QIAO__TRY(set_id(c, "tokenizer.bos_id", first, "post_processor.single[0]"));
      }
    }
  } else {
    adds = true; /* SentencePiece models of the LLaMA family add <s> */
  }
  QIAO__TRY(qiao__model_set_bool(c->model, "tokenizer.add_bos", adds));

  json_object *tmpl = get(c->config, "chat_template");
  const char *chat = NULL;
  if (tmpl != NULL && json_object_is_type(tmpl, json_type_string)) {
    chat = json_object_get_string(tmpl);
  } else if (tmpl != NULL && json_object_is_type(tmpl, json_type_array)) {
    for (size_t i = 0; i < json_object_array_length(tmpl); i++) {
      json_object *e = json_object_array_get_idx(tmpl, i);
      const char *name = get_str(e, "name");
      if (chat == NULL || (name && strcmp(name, "default") == 0)) chat = get_str(e, "template");
    }
  }
  if (chat != NULL)
    QIAO__TRY(qiao__model_set_string(c->model, "tokenizer.chat_template", chat, strlen(chat)));
  return NULL;
}

/* ---- writing ---------------------------------------------------------------- */

static qiao_status *write_tokens(ctx *c, const float *scores) {
  qiao_string *toks = malloc((size_t)c->n * sizeof(qiao_string));
  if (toks == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", c->file);
  for (uint32_t i = 0; i < c->n; i++)
    toks[i] = (qiao_string){c->text[i], c->len[i]};
  qiao_status *st =
      qiao__model_set_array(c->model, "tokenizer.tokens", QIAO_VALUE_STRING, c->n, toks);
  free(toks);
  QIAO__TRY(st);
  QIAO__TRY(
      qiao__model_set_array(c->model, "tokenizer.token_types", QIAO_VALUE_I32, c->n, c->types));
  if (scores != NULL)
    QIAO__TRY(qiao__model_set_array(c->model, "tokenizer.scores", QIAO_VALUE_F32, c->n, scores));
  return NULL;
}

static bool byte_piece(const char *s, uint32_t len) {
  return len == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>';
}

static size_t utf8_chars(const char *s, uint32_t len) {
  size_t n = 0;
  for (uint32_t i = 0; i < len; i++)
    n += ((uint8_t)s[i] & 0xC0) != 0x80;
  return n;
}

/* SentencePiece scores that replay the merge order: the token made by merge
 * r gets -r; longer tokens no merge makes can never be formed (unused). */
static qiao_status *write_spm(ctx *c, const merges *m, bool add_prefix) {
  float *scores = malloc((size_t)c->n * sizeof(float));
  if (scores == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", c->file);
  bool *made = calloc(c->n, 1);
  if (made == NULL) {
    free(scores);
    return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", c->file);
  }
  for (uint32_t i = 0; i < c->n; i++)
    scores[i] = 0.0f;
  char *tmp = NULL;
  size_t cap = 0;
  qiao_status *st = NULL;
  for (size_t r = 0; r < m->n; r++) {
    qiao_string s = m->items[r];
    if (s.len + 1 > cap) {
      free(tmp);
      cap = 2 * s.len + 16;
      tmp = malloc(cap);
      if (tmp == NULL) {
        st = qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", c->file);
        break;
      }
    }
    /* the merged text is the merge without its separating space */
    const char *sp = memchr(s.data, ' ', s.len);
    if (sp == NULL) continue;
    size_t at = (size_t)(sp - s.data);
    memcpy(tmp, s.data, at);
    memcpy(tmp + at, s.data + at + 1, s.len - at - 1);
    tmp[s.len - 1] = '\0';
    int64_t id = token_id(c, tmp);
    if (id >= 0 && !made[id]) {
      made[id] = true;
      scores[id] = -(float)r;
    }
  }
  free(tmp);
  for (uint32_t i = 0; st == NULL && i < c->n; i++) {
    if (c->types[i] != TYPE_NORMAL) continue;
    if (byte_piece(c->text[i], c->len[i]))
      c->types[i] = TYPE_BYTE;
    else if (!made[i] && utf8_chars(c->text[i], c->len[i]) > 1)
      c->types[i] = TYPE_UNUSED;
    if (!made[i]) scores[i] = -1e9f;
  }
  const char *unk = get_str(get(c->root, "model"), "unk_token");
  if (st == NULL && unk != NULL) {
    int64_t id = token_id(c, unk);
    if (id >= 0) c->types[id] = TYPE_UNKNOWN;
  }
  if (st == NULL) st = qiao__model_set_string(c->model, "tokenizer.model", "spm", 3);
  if (st == NULL) st = write_tokens(c, scores);
  if (st == NULL) st = qiao__model_set_bool(c->model, "tokenizer.add_space_prefix", add_prefix);
  free(made);
  free(scores);
  return st;
}

static qiao_status *import(ctx *c) {
  QIAO__TRY(read_vocab(c));
  json_object *fallback = get(get(c->root, "model"), "byte_fallback");
  c->spm = fallback != NULL && json_object_get_boolean(fallback);
  merges m = {0};
  qiao_status *st = read_merges(c, &m);
  if (st == NULL && c->spm) {
    bool add_prefix = true;
    st = read_spm_style(c, &add_prefix);
    if (st == NULL) st = write_spm(c, &m, add_prefix);
  } else if (st == NULL) {
    const char *pre = NULL, *regex = NULL, *norm = NULL;
    st = read_pre_tokenizer(c, &pre, &regex);
    if (st == NULL) st = read_normalizer(c, &norm);
    if (st == NULL) st = qiao__model_set_string(c->model, "tokenizer.model", "bpe", 3);
    if (st == NULL) st = qiao__model_set_string(c->model, "tokenizer.pre", pre, strlen(pre));
    if (st == NULL && regex != NULL)
      st = qiao__model_set_string(c->model, "tokenizer.pre_regex", regex, strlen(regex));
    if (st == NULL) st = write_tokens(c, NULL);
    if (st == NULL)
      st = qiao__model_set_array(c->model, "tokenizer.merges", QIAO_VALUE_STRING, m.n, m.items);
    if (st == NULL)
      st = qiao__model_set_string(c->model, "tokenizer.normalizer", norm, strlen(norm));
    json_object *ignore = get(get(c->root, "model"), "ignore_merges");
    if (st == NULL && ignore != NULL && json_object_get_boolean(ignore))
      st = qiao__model_set_bool(c->model, "tokenizer.ignore_merges", true);
  }
  merges_free(&m);
  QIAO__TRY(st);
  return write_specials(c);
}

qiao_status *qiao__import_tokenizer_json_buffer(qiao_model *model, const char *json, size_t len,
                                                const char *config, size_t config_len,
                                                const char *name) {
  ctx c = {.file = name ? name : "tokenizer.json", .model = model};
  qiao_status *st = parse(json, len, c.file, &c.root);
  if (st == NULL && config != NULL)
    st = parse(config, config_len, "tokenizer_config.json", &c.config);
  if (st == NULL) st = import(&c);
  free(c.text);
  free(c.len);
  free(c.types);
  json_object_put(c.config);
  json_object_put(c.root);
  return st;
}

/* Reads a whole (bounded) file; *out is NULL when it does not exist. */
static qiao_status *read_file(const char *path, bool optional, char **out, size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    if (optional) return NULL;
    return qiao__error(QIAO_NOT_FOUND, "%s: cannot open", path);
  }
  qiao_status *st = NULL;
  long n = -1;
  if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
  if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
    st = qiao__error(QIAO_IO, "%s: cannot seek", path);
  else if ((unsigned long long)n > MAX_TOKENIZER_JSON_BYTES)
    st = qiao__error(QIAO_LIMIT, "%s: %ld bytes is too large", path, n);
  char *buf = st ? NULL : malloc((size_t)n + 1);
  if (st == NULL && buf == NULL) st = qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", path);
  if (st == NULL && fread(buf, 1, (size_t)n, f) != (size_t)n)
    st = qiao__error(QIAO_IO, "%s: read failed", path);
  fclose(f);
  if (st != NULL) {
    free(buf);
    return st;
  }
  buf[n] = '\0';
  *out = buf;
  *out_len = (size_t)n;
  return NULL;
}

qiao_status *qiao__import_tokenizer_json(qiao_model *model, const char *tokenizer_json_path,
                                         const char *dir_or_null) {
  char *json = NULL, *config = NULL;
  size_t len = 0, config_len = 0;
  qiao_status *st = read_file(tokenizer_json_path, false, &json, &len);
  if (st == NULL && dir_or_null != NULL) {
    size_t n = strlen(dir_or_null) + sizeof("/tokenizer_config.json");
    char *path = malloc(n);
    if (path == NULL)
      st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    else {
      snprintf(path, n, "%s/tokenizer_config.json", dir_or_null);
      st = read_file(path, true, &config, &config_len);
      free(path);
    }
  }
  if (st == NULL)
    st = qiao__import_tokenizer_json_buffer(model, json, len, config, config_len,
                                            tokenizer_json_path);
  free(json);
  free(config);
  return st;
}
