/* Reading and storing metadata entries in the GGUF value encoding (also
 * that of .qiao): u32 type, then the value; a string is u64 length + bytes;
 * an array is u32 element type, u64 count, elements. */
#include "format/kv_codec.h"

#include <stdio.h>
#include <stdlib.h>

static void decode_scalar(qiao_value_type t, const uint8_t *p, qiao_kv *kv) {
  switch (t) {
  case QIAO_VALUE_U8: kv->v.u = p[0]; break;
  case QIAO_VALUE_I8: kv->v.i = (int8_t)p[0]; break;
  case QIAO_VALUE_U16: kv->v.u = le(p, 2); break;
  case QIAO_VALUE_I16: kv->v.i = (int16_t)le(p, 2); break;
  case QIAO_VALUE_U32: kv->v.u = le(p, 4); break;
  case QIAO_VALUE_I32: kv->v.i = (int32_t)le(p, 4); break;
  case QIAO_VALUE_U64: kv->v.u = le(p, 8); break;
  case QIAO_VALUE_I64: kv->v.i = (int64_t)le(p, 8); break;
  case QIAO_VALUE_BOOL: kv->v.b = p[0] != 0; break;
  case QIAO_VALUE_F32: {
    uint32_t bits = (uint32_t)le(p, 4);
    float f;
    memcpy(&f, &bits, 4);
    kv->v.f = f;
    break;
  }
  case QIAO_VALUE_F64: {
    uint64_t bits = le(p, 8);
    double f;
    memcpy(&f, &bits, 8);
    kv->v.f = f;
    break;
  }
  default: break;
  }
}

static qiao_status *read_value(reader *r, qiao__raw_kv *kv) {
  uint32_t type;
  QIAO__TRY(read_u32(r, kv->key, &type));
  if (type > QIAO_VALUE_F64)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key %s: unknown value type %u at byte offset %llu", r->name,
                       kv->key, type, (unsigned long long)(r->pos - 4));
  kv->v.type = (qiao_value_type)type;
  if (type == QIAO_VALUE_STRING) return read_string(r, kv->key, &kv->v.v.str);
  if (type != QIAO_VALUE_ARRAY) {
    const uint8_t *p;
    QIAO__TRY(take(r, qiao__value_size(kv->v.type), kv->key, &p));
    if (type == QIAO_VALUE_BOOL && p[0] > 1)
      return qiao__error(QIAO_MALFORMED, "%s: metadata key %s: bool value %u at byte offset %llu",
                         r->name, kv->key, p[0], (unsigned long long)(r->pos - 1));
    decode_scalar(kv->v.type, p, &kv->v);
    return NULL;
  }
  uint32_t elem;
  QIAO__TRY(read_u32(r, kv->key, &elem));
  if (elem == QIAO_VALUE_ARRAY)
    return qiao__error(
        QIAO_UNSUPPORTED,
        "%s: metadata key %s: arrays of arrays are not supported at byte offset %llu", r->name,
        kv->key, (unsigned long long)(r->pos - 4));
  if (elem > QIAO_VALUE_F64)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key %s: unknown array element type %u at byte offset %llu",
                       r->name, kv->key, elem, (unsigned long long)(r->pos - 4));
  uint64_t n;
  QIAO__TRY(read_u64(r, kv->key, &n));
  if (n > QIAO__MAX_ARRAY_LEN)
    return qiao__error(
        QIAO_LIMIT, "%s: metadata key %s: array of %llu elements is too long at byte offset %llu",
        r->name, kv->key, (unsigned long long)n, (unsigned long long)(r->pos - 8));
  kv->v.elem_type = (qiao_value_type)elem;
  kv->v.array_len = n;
  kv->v.v.array = r->data + r->pos;
  if (elem == QIAO_VALUE_STRING) {
    for (uint64_t i = 0; i < n; i++) {
      qiao_string s;
      QIAO__TRY(read_string(r, kv->key, &s));
    }
    return NULL;
  }
  const uint8_t *p;
  QIAO__TRY(take(r, n * qiao__value_size(kv->v.elem_type), kv->key, &p));
  if (elem == QIAO_VALUE_BOOL)
    for (uint64_t i = 0; i < n; i++)
      if (p[i] > 1)
        return qiao__error(QIAO_MALFORMED, "%s: metadata key %s: element %llu: bool value %u",
                           r->name, kv->key, (unsigned long long)i, p[i]);
  return NULL;
}

qiao_status *qiao__read_raw_kv(reader *r, qiao__raw_kv *kv) {
  kv->offset = r->pos;
  qiao_string key;
  QIAO__TRY(read_string(r, "metadata key", &key));
  if (key.len == 0 || key.len > QIAO__MAX_KEY_LEN || !qiao__utf8_ok(key.data, key.len))
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key: empty, longer than %u bytes, not UTF-8 or with a NUL "
                       "byte at byte offset %llu",
                       r->name, QIAO__MAX_KEY_LEN, (unsigned long long)kv->offset);
  memcpy(kv->key, key.data, key.len);
  kv->key[key.len] = '\0';
  kv->v.key = kv->key;
  return read_value(r, kv);
}

bool qiao__kv_is_int(qiao_value_type t) {
  return qiao__kv_is_unsigned(t) || qiao__kv_is_signed(t);
}

/* Integer array element i of `kv` as int64. */
int64_t qiao__raw_int_elem(const qiao_kv *kv, uint64_t i) {
  qiao_kv tmp = {0};
  size_t es = qiao__value_size(kv->elem_type);
  decode_scalar(kv->elem_type, (const uint8_t *)kv->v.array + i * es, &tmp);
  return qiao__kv_is_unsigned(kv->elem_type) ? (int64_t)tmp.v.u : tmp.v.i;
}

qiao_status *qiao__raw_wrong_type(const char *name, const qiao__raw_kv *kv, const char *expected) {
  const char *found = qiao__value_type_name(kv->v.type);
  char buf[48];
  if (kv->v.type == QIAO_VALUE_ARRAY) {
    snprintf(buf, sizeof(buf), "array of %s", qiao__value_type_name(kv->v.elem_type));
    found = buf;
  }
  return qiao__error(QIAO_MALFORMED,
                     "%s: metadata key %s: expected %s, found %s at byte offset %llu", name,
                     kv->key, expected, found, (unsigned long long)kv->offset);
}

qiao_status *qiao__raw_strings(const qiao__raw_kv *kv, const char *name, qiao_string **out) {
  uint64_t n = kv->v.array_len;
  qiao_string *s = calloc(n ? (size_t)n : 1, sizeof(*s));
  if (s == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  /* Already bounds-checked by read_value: re-read with an unlimited reader. */
  reader r = {kv->v.v.array, UINT64_MAX - 1, 0, name};
  for (uint64_t i = 0; i < n; i++) {
    qiao_status *st = read_string(&r, kv->key, &s[i]);
    if (st) {
      free(s);
      return st;
    }
  }
  *out = s;
  return NULL;
}

/* Collected eos/eot/eom ids, kept in that preference order. */

qiao_status *qiao__raw_kv_store(qiao_model *model, const char *key, const qiao__raw_kv *kv,
                                const char *file) {
  qiao_kv v = kv->v;
  v.key = key;
  if (v.type != QIAO_VALUE_ARRAY) return qiao__model_set_kv(model, &v);
  uint64_t n = v.array_len;
  if (v.elem_type == QIAO_VALUE_STRING) {
    qiao_string *s;
    QIAO__TRY(qiao__raw_strings(kv, file, &s));
    qiao_status *st = qiao__model_set_array(model, key, QIAO_VALUE_STRING, n, s);
    free(s);
    return st;
  }
  /* Decode little-endian elements into native values. */
  size_t es = qiao__value_size(v.elem_type);
  uint8_t *native = malloc(n ? (size_t)n * es : 1);
  if (native == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  const uint8_t *raw = v.v.array;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t x = le(raw + i * es, (int)es);
    switch (es) {
    case 1: native[i] = (uint8_t)x; break;
    case 2: ((uint16_t *)native)[i] = (uint16_t)x; break;
    case 4: ((uint32_t *)native)[i] = (uint32_t)x; break;
    default: ((uint64_t *)native)[i] = x; break;
    }
  }
  qiao_status *st = qiao__model_set_array(model, key, v.elem_type, n, native);
  free(native);
  return st;
}
