/* Bounds-checked little-endian reading of untrusted bytes, shared by the
 * GGUF and .qiao readers. Every read checks the bytes are there and names
 * the field and the byte offset when they are not. */
#ifndef QIAO_BYTE_READER_H
#define QIAO_BYTE_READER_H

#include <stdint.h>
#include <string.h>

#include "core/checked.h"
#include "format/model_internal.h"

typedef struct reader {
  const uint8_t *data;
  uint64_t size, pos;
  const char *name;
} reader;

static inline qiao_status *truncated(const reader *r, const char *field) {
  return qiao__error(QIAO_MALFORMED, "%s: %s: file ends early at byte offset %llu", r->name, field,
                     (unsigned long long)r->pos);
}

static inline qiao_status *take(reader *r, uint64_t n, const char *field, const uint8_t **out) {
  if (!qiao__range_ok(r->pos, n, r->size)) {
    *out = NULL; /* never used on failure; keeps -Wmaybe-uninitialized quiet */
    return truncated(r, field);
  }
  *out = r->data + r->pos;
  r->pos += n;
  return NULL;
}

static inline uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static inline qiao_status *read_u32(reader *r, const char *field, uint32_t *out) {
  const uint8_t *p;
  *out = 0;
  QIAO__TRY(take(r, 4, field, &p));
  *out = (uint32_t)le(p, 4);
  return NULL;
}

static inline qiao_status *read_u64(reader *r, const char *field, uint64_t *out) {
  const uint8_t *p;
  *out = 0;
  QIAO__TRY(take(r, 8, field, &p));
  *out = le(p, 8);
  return NULL;
}

static inline qiao_status *read_string(reader *r, const char *field, qiao_string *out) {
  uint64_t len;
  *out = (qiao_string){NULL, 0};
  QIAO__TRY(read_u64(r, field, &len));
  if (len > QIAO__MAX_STRING_LEN)
    return qiao__error(QIAO_LIMIT, "%s: %s: string of %llu bytes is too long at byte offset %llu",
                       r->name, field, (unsigned long long)len, (unsigned long long)(r->pos - 8));
  const uint8_t *p;
  QIAO__TRY(take(r, len, field, &p));
  *out = (qiao_string){(const char *)p, len};
  return NULL;
}

#endif
