/* SentencePiece tokenizer.model -> canonical tokenizer.* metadata ("spm").
 *
 * The file is a protobuf ModelProto. Only three messages matter here (the
 * pieces, TrainerSpec and NormalizerSpec) and only a dozen scalar fields of
 * them, so a small bounds-checked wire-format reader (varints and
 * length-delimited fields) is simpler and safer than a protobuf dependency
 * and its generated code. Field numbers are those of sentencepiece_model.proto:
 *   ModelProto      1 pieces (repeated), 2 trainer_spec, 3 normalizer_spec
 *   SentencePiece   1 piece (string), 2 score (float), 3 type (enum, default 1)
 *   TrainerSpec     3 model_type (2 = BPE), 35 byte_fallback,
 *                   40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id
 *   NormalizerSpec  1 name, 2 precompiled_charsmap, 3 add_dummy_prefix,
 *                   4 remove_extra_whitespaces, 5 escape_whitespaces */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "format/import_tokenizer.h"

typedef struct reader {
  const uint8_t *p;
  uint64_t pos, end;
} reader;

typedef struct field {
  uint32_t number;
  uint32_t wire;        /* 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
  uint64_t value;       /* varint / fixed values */
  uint64_t offset, len; /* length-delimited: payload position in the file */
} field;

static qiao_status *varint(reader *r, const char *file, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->pos >= r->end)
      return qiao__error(QIAO_MALFORMED, "%s: truncated varint at byte offset %llu", file,
                         (unsigned long long)r->pos);
    uint8_t b = r->p[r->pos++];
    v |= (uint64_t)(b & 0x7F) << shift;
    if (b < 0x80) {
      *out = v;
      return NULL;
    }
  }
  return qiao__error(QIAO_MALFORMED, "%s: varint longer than 10 bytes at byte offset %llu", file,
                     (unsigned long long)r->pos);
}

/* Reads the next field; false at the end of the message. */
static qiao_status *next_field(reader *r, const char *file, field *f, bool *more) {
  *more = r->pos < r->end;
  if (!*more) return NULL;
  uint64_t at = r->pos, key = 0;
  QIAO__TRY(varint(r, file, &key));
  f->number = (uint32_t)(key >> 3);
  f->wire = (uint32_t)(key & 7);
  f->value = 0;
  f->offset = f->len = 0;
  switch (f->wire) {
  case 0: return varint(r, file, &f->value);
  case 1:
  case 5: {
    uint64_t n = f->wire == 1 ? 8 : 4;
    if (!qiao__range_ok(r->pos, n, r->end)) break;
    for (uint64_t i = 0; i < n; i++)
      f->value |= (uint64_t)r->p[r->pos + i] << (8 * i);
    r->pos += n;
    return NULL;
  }
  case 2:
    QIAO__TRY(varint(r, file, &f->len));
    if (!qiao__range_ok(r->pos, f->len, r->end)) break;
    f->offset = r->pos;
    r->pos += f->len;
    return NULL;
  default:
    return qiao__error(QIAO_MALFORMED,
                       "%s: protobuf field %u: unsupported wire type %u at byte offset %llu", file,
                       f->number, f->wire, (unsigned long long)at);
  }
  return qiao__error(QIAO_MALFORMED,
                     "%s: protobuf field %u: runs past its message at byte offset %llu", file,
                     f->number, (unsigned long long)at);
}

static reader sub(const reader *r, const field *f) {
  return (reader){r->p, f->offset, f->offset + f->len};
}

typedef struct spec {
  int64_t model_type, unk_id, bos_id, eos_id, pad_id;
  bool byte_fallback, add_dummy_prefix, remove_extra_ws;
  const uint8_t *norm_name;
  uint64_t norm_name_len, charsmap_len;
} spec;

static qiao_status *read_trainer(const reader *r0, const char *file, spec *s) {
  reader r = *r0;
  field f;
  bool more;
  for (;;) {
    QIAO__TRY(next_field(&r, file, &f, &more));
    if (!more) return NULL;
    if (f.wire != 0) continue;
    int64_t v = (int64_t)(int32_t)(uint32_t)f.value; /* int32 fields, negatives sign-extended */
    switch (f.number) {
    case 3: s->model_type = v; break;
    case 35: s->byte_fallback = f.value != 0; break;
    case 40: s->unk_id = v; break;
    case 41: s->bos_id = v; break;
    case 42: s->eos_id = v; break;
    case 43: s->pad_id = v; break;
    default: break;
    }
  }
}

static qiao_status *read_normalizer(const reader *r0, const char *file, spec *s) {
  reader r = *r0;
  field f;
  bool more;
  for (;;) {
    QIAO__TRY(next_field(&r, file, &f, &more));
    if (!more) return NULL;
    if (f.number == 1 && f.wire == 2)
      s->norm_name = r.p + f.offset, s->norm_name_len = f.len;
    else if (f.number == 2 && f.wire == 2)
      s->charsmap_len = f.len;
    else if (f.number == 3 && f.wire == 0)
      s->add_dummy_prefix = f.value != 0;
    else if (f.number == 4 && f.wire == 0)
      s->remove_extra_ws = f.value != 0;
  }
}

typedef struct pieces {
  qiao_string *text;
  float *scores;
  int32_t *types;
  uint64_t n, cap;
} pieces;

static qiao_status *read_piece(const reader *r0, const char *file, uint64_t index, pieces *ps) {
  if (ps->n == ps->cap) {
    uint64_t cap = ps->cap ? ps->cap * 2 : 1024;
    if (cap > QIAO__MAX_ARRAY_LEN) cap = QIAO__MAX_ARRAY_LEN;
    if (ps->n >= cap)
      return qiao__error(QIAO_LIMIT, "%s: pieces: more than %u pieces", file, QIAO__MAX_ARRAY_LEN);
    qiao_string *t = realloc(ps->text, cap * sizeof(*t));
    if (t) ps->text = t;
    float *sc = realloc(ps->scores, cap * sizeof(*sc));
    if (sc) ps->scores = sc;
    int32_t *ty = realloc(ps->types, cap * sizeof(*ty));
    if (ty) ps->types = ty;
    if (!t || !sc || !ty) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", file);
    ps->cap = cap;
  }
  reader r = *r0;
  field f;
  bool more, have_piece = false;
  qiao_string text = {"", 0};
  float score = 0.0f;
  int32_t type = 1; /* NORMAL */
  for (;;) {
    QIAO__TRY(next_field(&r, file, &f, &more));
    if (!more) break;
    if (f.number == 1 && f.wire == 2) {
      text = (qiao_string){(const char *)r.p + f.offset, f.len};
      have_piece = true;
    } else if (f.number == 2 && f.wire == 5) {
      uint32_t bits = (uint32_t)f.value;
      memcpy(&score, &bits, sizeof(score));
      if (score != score)
        return qiao__error(QIAO_MALFORMED, "%s: pieces[%llu].score is NaN", file,
                           (unsigned long long)index);
    } else if (f.number == 3 && f.wire == 0) {
      if (f.value < 1 || f.value > 6)
        return qiao__error(QIAO_MALFORMED, "%s: pieces[%llu].type: %llu outside 1..6", file,
                           (unsigned long long)index, (unsigned long long)f.value);
      type = (int32_t)f.value;
    }
  }
  if (!have_piece)
    return qiao__error(QIAO_MALFORMED, "%s: pieces[%llu]: no piece text", file,
                       (unsigned long long)index);
  ps->text[ps->n] = text;
  ps->scores[ps->n] = score;
  ps->types[ps->n] = type;
  ps->n++;
  return NULL;
}

static qiao_status *set_optional_id(qiao_model *m, const char *file, const char *key,
                                    const char *field_name, int64_t id, uint64_t n) {
  if (id < 0) return NULL; /* -1: the model has none */
  if ((uint64_t)id >= n)
    return qiao__error(QIAO_MALFORMED, "%s: trainer_spec.%s: id %lld beyond the %llu pieces", file,
                       field_name, (long long)id, (unsigned long long)n);
  return qiao__model_set_u32(m, key, (uint32_t)id);
}

static qiao_status *import(qiao_model *model, const uint8_t *data, uint64_t size, const char *file,
                           pieces *ps) {
  spec s = {.model_type = 1,
            .unk_id = 0,
            .bos_id = 1,
            .eos_id = 2,
            .pad_id = -1,
            .add_dummy_prefix = true,
            .remove_extra_ws = true};
  reader r = {data, 0, size};
  field f;
  bool more;
  for (;;) {
    QIAO__TRY(next_field(&r, file, &f, &more));
    if (!more) break;
    if (f.wire != 2) continue;
    reader m = sub(&r, &f);
    if (f.number == 1)
      QIAO__TRY(read_piece(&m, file, ps->n, ps));
    else if (f.number == 2)
      QIAO__TRY(read_trainer(&m, file, &s));
    else if (f.number == 3)
      QIAO__TRY(read_normalizer(&m, file, &s));
  }
  if (ps->n == 0) return qiao__error(QIAO_MALFORMED, "%s: pieces: no pieces", file);
  if (s.model_type != 2)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: trainer_spec.model_type: %lld (only BPE = 2 is supported; "
                       "unigram models are not)",
                       file, (long long)s.model_type);
  bool identity =
      s.norm_name == NULL || (s.norm_name_len == 8 && memcmp(s.norm_name, "identity", 8) == 0);
  if (!identity || s.charsmap_len > 0)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: normalizer_spec.name: \"%.*s\" (only the identity "
                       "normalizer is supported)",
                       file, (int)(s.norm_name_len > 32 ? 32 : s.norm_name_len),
                       s.norm_name ? (const char *)s.norm_name : "");
  if (s.remove_extra_ws)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: normalizer_spec.remove_extra_whitespaces: true is not "
                       "supported",
                       file);
  QIAO__TRY(qiao__model_set_string(model, "tokenizer.model", "spm", 3));
  QIAO__TRY(qiao__model_set_array(model, "tokenizer.tokens", QIAO_VALUE_STRING, ps->n, ps->text));
  QIAO__TRY(qiao__model_set_array(model, "tokenizer.scores", QIAO_VALUE_F32, ps->n, ps->scores));
  QIAO__TRY(
      qiao__model_set_array(model, "tokenizer.token_types", QIAO_VALUE_I32, ps->n, ps->types));
  QIAO__TRY(set_optional_id(model, file, "tokenizer.bos_id", "bos_id", s.bos_id, ps->n));
  QIAO__TRY(set_optional_id(model, file, "tokenizer.unk_id", "unk_id", s.unk_id, ps->n));
  QIAO__TRY(set_optional_id(model, file, "tokenizer.pad_id", "pad_id", s.pad_id, ps->n));
  if (s.eos_id >= 0) {
    if ((uint64_t)s.eos_id >= ps->n)
      return qiao__error(QIAO_MALFORMED,
                         "%s: trainer_spec.eos_id: id %lld beyond the "
                         "%llu pieces",
                         file, (long long)s.eos_id, (unsigned long long)ps->n);
    uint32_t eos = (uint32_t)s.eos_id;
    QIAO__TRY(qiao__model_set_array(model, "tokenizer.eos_ids", QIAO_VALUE_U32, 1, &eos));
  }
  /* sentencepiece itself adds no BOS; the LLaMA-family convention is to add it */
  QIAO__TRY(qiao__model_set_bool(model, "tokenizer.add_bos", s.bos_id >= 0));
  QIAO__TRY(qiao__model_set_bool(model, "tokenizer.add_space_prefix", s.add_dummy_prefix));
  return NULL;
}

qiao_status *qiao__import_spm_model_buffer(qiao_model *model, const uint8_t *data, uint64_t size,
                                           const char *name) {
  pieces ps = {0};
  const char *file = name ? name : "tokenizer.model";
  qiao_status *st = import(model, data, size, file, &ps);
  free(ps.text);
  free(ps.scores);
  free(ps.types);
  return st;
}

qiao_status *qiao__import_spm_model(qiao_model *model, const char *tokenizer_model_path) {
  const uint8_t *data;
  uint64_t size;
  QIAO__TRY(qiao__model_map_file(model, tokenizer_model_path, &data, &size));
  return qiao__import_spm_model_buffer(model, data, size, tokenizer_model_path);
}
