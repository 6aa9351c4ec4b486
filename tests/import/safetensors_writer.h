/* Test helper: builds safetensors files in memory (and on disk), with full
 * control over the header so that tests can also write broken ones.
 * Header-only; the buffers are malloc'd and owned by the caller. */
#ifndef QIAO_TEST_SAFETENSORS_WRITER_H
#define QIAO_TEST_SAFETENSORS_WRITER_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable byte buffer. */
typedef struct st_buf {
  uint8_t *data;
  size_t len, cap;
} st_buf;

static inline void st_buf_put(st_buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    b->data = realloc(b->data, cap);
    if (b->data == NULL) abort();
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
}

static inline void st_buf_printf(st_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void st_buf_printf(st_buf *b, const char *fmt, ...) {
  char tmp[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  st_buf_put(b, tmp, (size_t)n);
}

/* A safetensors file from a JSON header text and a data section: the
 * 8-byte length, the header, the data. */
static inline uint8_t *st_assemble(const char *header, size_t header_len, const void *data,
                                   size_t data_len, size_t *out_len) {
  st_buf b = {0};
  uint8_t len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
  st_buf_put(&b, len8, 8);
  st_buf_put(&b, header, header_len);
  st_buf_put(&b, data, data_len);
  *out_len = b.len;
  return b.data;
}

/* One tensor to write. */
typedef struct st_entry {
  const char *name;
  const char *dtype; /* "F32" */
  int n_dims;
  uint64_t shape[4];
  const void *data;
  size_t n_bytes;
} st_entry;

/* A well-formed safetensors file holding `entries` in order. */
static inline uint8_t *st_write(const st_entry *entries, size_t n, size_t *out_len) {
  st_buf header = {0}, data = {0};
  st_buf_printf(&header, "{\"__metadata__\":{\"format\":\"pt\"}");
  for (size_t i = 0; i < n; i++) {
    const st_entry *e = &entries[i];
    st_buf_printf(&header, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e->name, e->dtype);
    for (int d = 0; d < e->n_dims; d++)
      st_buf_printf(&header, "%s%llu", d ? "," : "", (unsigned long long)e->shape[d]);
    st_buf_printf(&header, "],\"data_offsets\":[%zu,%zu]}", data.len, data.len + e->n_bytes);
    st_buf_put(&data, e->data, e->n_bytes);
  }
  st_buf_printf(&header, "}");
  while (header.len % 8)
    st_buf_put(&header, " ", 1);
  uint8_t *out = st_assemble((const char *)header.data, header.len, data.data, data.len, out_len);
  free(header.data);
  free(data.data);
  return out;
}

static inline void st_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(data, 1, len, f) != len) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  fclose(f);
}

#endif
