/* A bump allocator: values of one render (or the AST of one template) live
 * until the whole arena is freed, which keeps the interpreter free of
 * reference counting. The arena counts every byte it hands out and, past its
 * budget, jumps to the owner's error handler instead of returning. */
#include <stdlib.h>
#include <string.h>

#include "template_internal.h"

struct tpl_block {
  tpl_block *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
};

enum { BLOCK_SIZE = 64 * 1024 };

static _Noreturn void arena_jump(tpl_arena *a, int code) {
  *a->oom_code = code;
  longjmp(*a->oom, 1);
}

void *tpl_alloc(tpl_arena *a, size_t size) {
  size = (size + 15) & ~(size_t)15;
  if (size == 0) size = 16;
  if (size > ((size_t)1 << 40)) arena_jump(a, 1);
  if (a->limit && a->used + size > a->limit) arena_jump(a, 1);
  tpl_block *b = a->head;
  if (b == NULL || b->cap - b->used < size) {
    size_t cap = size > BLOCK_SIZE / 4 ? size : BLOCK_SIZE;
    tpl_block *nb = malloc(sizeof(tpl_block) + cap);
    if (nb == NULL) arena_jump(a, 2);
    nb->used = 0;
    nb->cap = cap;
    if (cap == size && b != NULL) { /* a big one: keep filling the current block */
      nb->next = b->next;
      b->next = nb;
    } else {
      nb->next = b;
      a->head = nb;
    }
    b = nb;
  }
  void *p = b->data + b->used;
  b->used += size;
  a->used += size;
  memset(p, 0, size);
  return p;
}

char *tpl_strdup(tpl_arena *a, const char *s, size_t len) {
  char *p = tpl_alloc(a, len + 1);
  if (len) memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

void tpl_arena_free(tpl_arena *a) {
  tpl_block *b = a->head;
  while (b) {
    tpl_block *next = b->next;
    free(b);
    b = next;
  }
  a->head = NULL;
  a->used = 0;
}

void tpl_buf_append(tpl_ctx *ctx, tpl_buf *b, const char *s, size_t n) {
  if (n == 0) return;
  if (n > ctx->max_output || b->len > ctx->max_output - n)
    tpl_fail(ctx, QIAO_LIMIT, "output budget exceeded (more than %llu bytes)",
             (unsigned long long)ctx->max_output);
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    /* arena-backed so that an error jump leaks nothing; doubling keeps the
     * waste under the final size */
    char *p = tpl_alloc(&ctx->arena, cap);
    if (b->len) memcpy(p, b->data, b->len);
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  tpl_charge(ctx, n / 256);
}

void tpl_buf_putc(tpl_ctx *ctx, tpl_buf *b, char c) {
  tpl_buf_append(ctx, b, &c, 1);
}
