/* A growable byte buffer (response text, SSE output waiting to be sent). */
#ifndef QIAO_SERVE_BUF_H
#define QIAO_SERVE_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct serve_buf {
  char *data; /* NUL-terminated when not NULL */
  size_t len, cap;
} serve_buf;

/* False when memory runs out (the buffer is left as it was). */
bool serve_buf_append(serve_buf *b, const char *data, size_t len);
void serve_buf_free(serve_buf *b);

#endif
