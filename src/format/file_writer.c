/* Little-endian byte sinks for the writers (see model_write.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "format/model_write.h"

static void fail(qiao__writer *w, qiao_status *st) {
  if (w->error == NULL)
    w->error = st;
  else
    qiao_status_free(st);
}

void qiao__w_bytes(qiao__writer *w, const void *data, uint64_t n) {
  if (w->error != NULL || n == 0) return;
  if (w->file != NULL) {
    if (fwrite(data, 1, (size_t)n, w->file) != n) {
      fail(w, qiao__error(QIAO_IO, "%s: write failed at byte offset %llu: %s", w->path,
                          (unsigned long long)w->pos, strerror(errno)));
      return;
    }
  } else {
    uint64_t need;
    if (!qiao__add_u64(w->pos, n, &need) || need > SIZE_MAX / 2) {
      fail(w, qiao__error(QIAO_LIMIT, "%s: metadata too large", w->path));
      return;
    }
    if (need > w->cap) {
      uint64_t cap = w->cap ? w->cap : 4096;
      while (cap < need)
        cap *= 2;
      uint8_t *grown = realloc(w->buf, (size_t)cap);
      if (grown == NULL) {
        fail(w, qiao__error(QIAO_OUT_OF_MEMORY, "out of memory"));
        return;
      }
      w->buf = grown;
      w->cap = cap;
    }
    memcpy(w->buf + w->pos, data, (size_t)n);
  }
  w->pos += n;
}

void qiao__w_zeros(qiao__writer *w, uint64_t n) {
  static const uint8_t zeros[4096];
  while (n > 0 && w->error == NULL) {
    uint64_t k = n < sizeof(zeros) ? n : sizeof(zeros);
    qiao__w_bytes(w, zeros, k);
    n -= k;
  }
}

static void put_le(qiao__writer *w, uint64_t v, int n) {
  uint8_t b[8];
  for (int i = 0; i < n; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  qiao__w_bytes(w, b, (uint64_t)n);
}

void qiao__w_u16(qiao__writer *w, uint16_t v) {
  put_le(w, v, 2);
}
void qiao__w_u32(qiao__writer *w, uint32_t v) {
  put_le(w, v, 4);
}
void qiao__w_u64(qiao__writer *w, uint64_t v) {
  put_le(w, v, 8);
}

void qiao__w_string(qiao__writer *w, const char *data, uint64_t len) {
  qiao__w_u64(w, len);
  qiao__w_bytes(w, data, len);
}

void qiao__w_align(qiao__writer *w, uint64_t alignment) {
  uint64_t rem = w->pos % alignment;
  if (rem) qiao__w_zeros(w, alignment - rem);
}

/* One scalar of `type` from a qiao_kv-style union. */
static void put_scalar(qiao__writer *w, qiao_value_type type, uint64_t u, int64_t i, double f,
                       bool b) {
  switch (type) {
  case QIAO_VALUE_U8: put_le(w, u, 1); break;
  case QIAO_VALUE_I8: put_le(w, (uint64_t)i, 1); break;
  case QIAO_VALUE_U16: put_le(w, u, 2); break;
  case QIAO_VALUE_I16: put_le(w, (uint64_t)i, 2); break;
  case QIAO_VALUE_U32: put_le(w, u, 4); break;
  case QIAO_VALUE_I32: put_le(w, (uint64_t)i, 4); break;
  case QIAO_VALUE_U64: put_le(w, u, 8); break;
  case QIAO_VALUE_I64: put_le(w, (uint64_t)i, 8); break;
  case QIAO_VALUE_BOOL: put_le(w, b ? 1 : 0, 1); break;
  case QIAO_VALUE_F32: {
    float x = (float)f;
    uint32_t bits;
    memcpy(&bits, &x, 4);
    put_le(w, bits, 4);
    break;
  }
  case QIAO_VALUE_F64: {
    uint64_t bits;
    memcpy(&bits, &f, 8);
    put_le(w, bits, 8);
    break;
  }
  default: break;
  }
}

/* Element i of a native array (see qiao_kv) as one scalar. */
static void put_elem(qiao__writer *w, qiao_value_type t, const void *array, uint64_t i) {
  const uint8_t *p = (const uint8_t *)array + i * qiao__value_size(t);
  switch (t) {
  case QIAO_VALUE_STRING: {
    const qiao_string *s = (const qiao_string *)p;
    qiao__w_string(w, s->data, s->len);
    return;
  }
  case QIAO_VALUE_F32: {
    float f;
    memcpy(&f, p, 4);
    put_scalar(w, t, 0, 0, f, false);
    return;
  }
  case QIAO_VALUE_F64: {
    double f;
    memcpy(&f, p, 8);
    put_scalar(w, t, 0, 0, f, false);
    return;
  }
  default: {
    /* integers and bools: load the native value, store it little-endian */
    size_t n = qiao__value_size(t);
    uint64_t v;
    if (n == 1)
      v = *p;
    else if (n == 2) {
      uint16_t x;
      memcpy(&x, p, 2);
      v = x;
    } else if (n == 4) {
      uint32_t x;
      memcpy(&x, p, 4);
      v = x;
    } else {
      memcpy(&v, p, 8);
    }
    put_le(w, v, (int)n);
    return;
  }
  }
}

void qiao__w_kv_value(qiao__writer *w, const qiao_kv *kv) {
  qiao__w_u32(w, (uint32_t)kv->type);
  switch (kv->type) {
  case QIAO_VALUE_STRING: qiao__w_string(w, kv->v.str.data, kv->v.str.len); break;
  case QIAO_VALUE_ARRAY:
    qiao__w_u32(w, (uint32_t)kv->elem_type);
    qiao__w_u64(w, kv->array_len);
    for (uint64_t i = 0; i < kv->array_len; i++)
      put_elem(w, kv->elem_type, kv->v.array, i);
    break;
  case QIAO_VALUE_BOOL: put_scalar(w, kv->type, 0, 0, 0, kv->v.b); break;
  case QIAO_VALUE_F32:
  case QIAO_VALUE_F64: put_scalar(w, kv->type, 0, 0, kv->v.f, false); break;
  default:
    if (qiao__kv_is_signed(kv->type))
      put_scalar(w, kv->type, 0, kv->v.i, 0, false);
    else
      put_scalar(w, kv->type, kv->v.u, 0, 0, false);
    break;
  }
}

void qiao__w_release(qiao__writer *w) {
  free(w->buf);
  w->buf = NULL;
  qiao_status_free(w->error);
  w->error = NULL;
}
