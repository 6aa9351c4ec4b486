/* ggml-quant-ref: llama.cpp's reference quantizers as a filter, for tests
 * that compare qiao's with them (built by ggml_quants.sh, never linked into
 * qiao). stdin to stdout:
 *   ggml-quant-ref quantize TYPE    f32 rows in, TYPE blocks out
 *   ggml-quant-ref dequantize TYPE  TYPE blocks in, f32 out
 *   ggml-quant-ref list             TYPE BLOCK_ELEMS BLOCK_BYTES per line */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGML_COMMON_DECL_C
#include "ggml-common.h"
#include "ggml-quants.h"

/* ggml-quants.c refers to these for functions the driver never calls. */
void ggml_abort(const char *file, int line, const char *fmt, ...) {
  fprintf(stderr, "ggml-quant-ref: ggml_abort at %s:%d (%s)\n", file, line, fmt);
  abort();
}
size_t ggml_row_size(enum ggml_type type, int64_t ne) {
  (void)type, (void)ne;
  abort();
}
const char *ggml_type_name(enum ggml_type type) {
  (void)type;
  return "?";
}
size_t ggml_type_size(enum ggml_type type) {
  (void)type;
  abort();
}

typedef void (*quant_fn)(const float *, void *, int64_t);
typedef void (*dequant_fn)(const void *, float *, int64_t);
#define TYPE(name, elems, block, deq)                                                              \
  { #name, elems, sizeof(block), (quant_fn)quantize_row_##name##_ref, (dequant_fn)(deq) }
static const struct {
  const char *name;
  size_t elems, bytes;
  quant_fn quantize;
  dequant_fn dequantize;
} types[] = {
    TYPE(q4_0, QK4_0, block_q4_0, dequantize_row_q4_0),
    TYPE(q4_1, QK4_1, block_q4_1, dequantize_row_q4_1),
    TYPE(q5_0, QK5_0, block_q5_0, dequantize_row_q5_0),
    TYPE(q5_1, QK5_1, block_q5_1, dequantize_row_q5_1),
    TYPE(q8_0, QK8_0, block_q8_0, dequantize_row_q8_0),
    TYPE(q2_K, QK_K, block_q2_K, dequantize_row_q2_K),
    TYPE(q3_K, QK_K, block_q3_K, dequantize_row_q3_K),
    TYPE(q4_K, QK_K, block_q4_K, dequantize_row_q4_K),
    TYPE(q5_K, QK_K, block_q5_K, dequantize_row_q5_K),
    TYPE(q6_K, QK_K, block_q6_K, dequantize_row_q6_K),
    TYPE(q8_K, QK_K, block_q8_K, NULL),
    TYPE(iq4_nl, QK4_NL, block_iq4_nl, dequantize_row_iq4_nl),
    TYPE(iq4_xs, QK_K, block_iq4_xs, dequantize_row_iq4_xs),
};

static unsigned char *read_all(size_t *n) {
  size_t cap = 1 << 16, len = 0;
  unsigned char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + len, 1, cap - len, stdin)) > 0) {
    len += got;
    if (len == cap) buf = realloc(buf, cap *= 2);
  }
  *n = len;
  return buf;
}

int main(int argc, char **argv) {
  size_t n_types = sizeof(types) / sizeof(types[0]);
  if (argc == 2 && strcmp(argv[1], "list") == 0) {
    for (size_t i = 0; i < n_types; i++)
      printf("%s %zu %zu\n", types[i].name, types[i].elems, types[i].bytes);
    return 0;
  }
  size_t t = 0;
  while (argc == 3 && t < n_types && strcmp(types[t].name, argv[2]) != 0)
    t++;
  int quant = argc == 3 && strcmp(argv[1], "quantize") == 0;
  int dequant = argc == 3 && strcmp(argv[1], "dequantize") == 0;
  if (t == n_types || !(quant || (dequant && types[t].dequantize))) {
    fprintf(stderr,
            "usage: ggml-quant-ref quantize|dequantize TYPE < in > out; ggml-quant-ref list\n");
    return 2;
  }
  size_t len = 0;
  unsigned char *in = read_all(&len);
  size_t unit = quant ? types[t].elems * sizeof(float) : types[t].bytes;
  if (in == NULL || len % unit != 0) {
    fprintf(stderr, "ggml-quant-ref: %zu bytes of input are not whole %s blocks\n", len, argv[2]);
    return 1;
  }
  size_t blocks = len / unit, elems = blocks * types[t].elems;
  size_t out_len = quant ? blocks * types[t].bytes : elems * sizeof(float);
  void *out = malloc(out_len ? out_len : 1);
  if (out == NULL) return 1;
  if (quant)
    types[t].quantize((const float *)in, out, (int64_t)elems);
  else
    types[t].dequantize(in, out, (int64_t)elems);
  int ok = fwrite(out, 1, out_len, stdout) == out_len && fflush(stdout) == 0;
  free(in);
  free(out);
  return ok ? 0 : 1;
}
