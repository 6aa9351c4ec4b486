/* A whole model whose weights are k-quant and q4_1/q5_0/q5_1 blocks made by
 * llama.cpp's own reference quantizers (built at test time from
 * shared/peers by ggml_quants.sh), run by the engine on the CPU backend:
 *   - written as .qiao (format 1.1) and .gguf and read back, its blocks
 *     unchanged;
 *   - with exact activations its logits equal, within binary32 rounding
 *     (1e-5 relative L2), those of the same model whose weights are
 *     llama.cpp's dequantize_row_* of the blocks stored as f32, and its 16
 *     greedy ids are the same: the engine and kernels add nothing to the
 *     format's own error (the dequantization itself is checked bit for bit
 *     by peers_dequant_llamacpp);
 *   - with Q8 activations (the default) the logits are printed beside, for
 *     information (their distance is the quantization of the activations,
 *     bounded per matmul by device-abi.md §11.4, not through the network).
 * The reference models of shared/reference/tiny have rows of 64 and 176
 * elements, which no 256-element super-block fits, so the model here is a
 * random LLaMA of dim 256 and ffn 512 (stories260K's tokenizer and metadata)
 * in three variants: all q4_k (q6_k output, as a Q4_K_M file), all q6_k, and
 * every type of 1.1 spread over the tensors. */
#include <stdlib.h>

#include "peers/ggml_ref.h"
#include "twin_model.h"

static const struct {
  qiao_dtype dtype;
  const char *ggml;
} kinds[] = {{QIAO_DTYPE_Q4_K, "q4_K"}, {QIAO_DTYPE_Q5_K, "q5_K"}, {QIAO_DTYPE_Q6_K, "q6_K"},
             {QIAO_DTYPE_Q2_K, "q2_K"}, {QIAO_DTYPE_Q3_K, "q3_K"}, {QIAO_DTYPE_Q4_1, "q4_1"},
             {QIAO_DTYPE_Q5_0, "q5_0"}, {QIAO_DTYPE_Q5_1, "q5_1"}};

static const char *ref_program;

/* variant 0: q4_k (output q6_k); 1: q6_k; 2: every type in turn. */
static int kind_of(int variant, int tensor) {
  if (variant == 0) return tensor == 0 ? 2 : 0;
  if (variant == 1) return 2;
  return tensor % (int)(sizeof(kinds) / sizeof(kinds[0]));
}

/* twin_add_matrix_fn: `rows` x `cols` random weights to q (the variant's
 * type, made by llama.cpp's quantizer) and to d (llama.cpp's dequantization, f32). */
static void add_matrix(qiao_model *q, qiao_model *d, const char *name, uint64_t rows, uint64_t cols,
                       int tensor, float scale, void *user) {
  const int kind = kind_of(*(const int *)user, tensor);
  uint64_t n = rows * cols, shape[2] = {rows, cols}, bytes = 0;
  float *x = malloc(n * 4), *back = twin_keep(malloc(n * 4));
  for (uint64_t i = 0; i < n; i++)
    x[i] = twin_uniform(-scale, scale) * (i % 61 == 0 ? 4.0f : 1.0f);
  CHECK_OK(qiao_dtype_row_bytes(kinds[kind].dtype, n, &bytes));
  uint8_t *blocks = twin_keep(malloc(bytes));
  CHECK(ggml_ref_run(ref_program, "quantize", kinds[kind].ggml, x, n * 4, blocks, bytes) == 0);
  CHECK(ggml_ref_run(ref_program, "dequantize", kinds[kind].ggml, blocks, bytes, back, n * 4) == 0);
  CHECK_OK(qiao__model_add_tensor(q, name, kinds[kind].dtype, 2, shape, blocks, bytes));
  CHECK_OK(qiao__model_add_tensor(d, name, QIAO_DTYPE_F32, 2, shape, back, n * 4));
  free(x);
}

int main(void) {
  ref_program = ggml_ref_program();
  if (ref_program == NULL) return 1;
  qiao_model *src = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &src));
  if (src == NULL) TEST_END();
  char dir[] = "/tmp/qiao_kquant_model_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  static const char *const names[] = {"q4_k", "q6_k", "mixed"};
  for (int v = 0; v < 3; v++)
    twin_model_run(src, dir, names[v], add_matrix, &v, 0);
  rmdir(dir);
  qiao_model_close(src);
  TEST_END();
}
