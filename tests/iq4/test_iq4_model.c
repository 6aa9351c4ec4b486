/* A whole model whose weights are IQ4_NL and IQ4_XS blocks, run by the
 * engine on the CPU backend against its f32 twin (the same blocks
 * dequantized by the format's reference conversion, an implementation
 * separate from the backend's kernels):
 *   - written as .qiao (format 1.3) and .gguf and read back, its blocks
 *     unchanged;
 *   - with exact activations its logits equal the twin's within binary32
 *     rounding (1e-5 relative L2), and its 16 greedy ids are the same;
 *   - with Q8 activations (the default for quantized weights) the distance
 *     to the twin's logits is printed (the activations' quantization,
 *     bounded per matmul by device-abi.md §11.4, not through the network:
 *     measured 2.1e-2 .. 2.6e-2 relative L2) and only held under 1e-1, a
 *     bound a wrong kernel (O(1)) cannot meet; the kernels themselves are
 *     held to the definition by cpu_iq4_test and the conformance suite.
 * The blocks are random (any nibble, any 6-bit scale, f16 scales of either
 * sign), so no quantizer is needed. The model is a random LLaMA of dim 256
 * and ffn 512 (rows that whole IQ4_XS super-blocks fit) with stories260K's
 * tokenizer and metadata, in three variants: all iq4_nl, all iq4_xs, and
 * the two alternating over the tensors. */
#include <stdlib.h>

#include "format/dtype_convert.h"
#include "twin_model.h"

/* variant 0: all iq4_nl; 1: all iq4_xs; 2: the two alternating. */
static qiao_dtype dtype_of(int variant, int tensor) {
  if (variant < 2) return variant == 0 ? QIAO_DTYPE_IQ4_NL : QIAO_DTYPE_IQ4_XS;
  return tensor % 2 ? QIAO_DTYPE_IQ4_NL : QIAO_DTYPE_IQ4_XS;
}

/* twin_add_matrix_fn: `rows` x `cols` random blocks of the variant's dtype to q and their f32
 * values to d; `scale` is about the weights' RMS. */
static void add_matrix(qiao_model *q, qiao_model *d, const char *name, uint64_t rows, uint64_t cols,
                       int tensor, float scale, void *user) {
  const qiao_dtype dtype = dtype_of(*(const int *)user, tensor);
  uint64_t n = rows * cols, shape[2] = {rows, cols}, bytes = 0;
  CHECK_OK(qiao_dtype_row_bytes(dtype, n, &bytes));
  uint8_t *blocks = twin_keep(malloc(bytes));
  float *back = twin_keep(malloc(n * 4));
  bool nl = dtype == QIAO_DTYPE_IQ4_NL;
  uint64_t block = nl ? 18 : 136;
  /* the levels' RMS is about 62, an IQ4_XS sub-block scale's |ls - 32| 18 */
  float dmax = nl ? scale / 62.0f : scale / (62.0f * 18.0f);
  for (uint64_t b = 0; b < bytes / block; b++) {
    uint8_t *blk = blocks + b * block;
    for (uint64_t j = 2; j < block; j++)
      blk[j] = (uint8_t)twin_next();
    uint16_t h =
        qiao__f32_to_f16(twin_uniform(0.5f, 1.5f) * dmax * (twin_next() & 1 ? -1.0f : 1.0f));
    memcpy(blk, &h, 2);
  }
  qiao__dtype_to_f32(dtype, blocks, back, n);
  CHECK_OK(qiao__model_add_tensor(q, name, dtype, 2, shape, blocks, bytes));
  CHECK_OK(qiao__model_add_tensor(d, name, QIAO_DTYPE_F32, 2, shape, back, n * 4));
}

int main(void) {
  qiao_model *src = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &src));
  if (src == NULL) TEST_END();
  char dir[] = "/tmp/qiao_iq4_model_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  static const char *const names[] = {"iq4_nl", "iq4_xs", "mixed"};
  for (int v = 0; v < 3; v++)
    twin_model_run(src, dir, names[v], add_matrix, &v, 1e-1);
  rmdir(dir);
  qiao_model_close(src);
  TEST_END();
}
