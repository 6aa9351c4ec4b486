#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool serve_buf_append(serve_buf *b, const char *data, size_t len) {
  if (len > SIZE_MAX / 2 - b->len - 1) return false;
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + len + 1)
      cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) return false;
    b->data = p;
    b->cap = cap;
  }
  if (len > 0) memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return true;
}

void serve_buf_free(serve_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
