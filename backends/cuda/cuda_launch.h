/* cuda_launch.h: the kernel launchers, called by the C host code (cuda_ops.c)
 * after it has validated every argument, and implemented in kernels_*.cu.
 *
 * Every launcher only enqueues work on `stream`; pointers are device pointers
 * that already include the operand's byte offset, and every size has been
 * checked on the host (the operands lie inside their buffers). Values inside
 * device memory (ids, slots, positions, block tables) are checked by the
 * kernels: an out-of-range value sets flags[op] (an int per qiao_dev_op) and
 * the kernel skips that work instead of reading or writing out of bounds.
 *
 * A launcher returns {NULL, 0, 0} on success, else the call that failed and
 * its cudaError_t or cublasStatus_t. */
#ifndef QIAO_CUDA_LAUNCH_H
#define QIAO_CUDA_LAUNCH_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cuq_status {
  const char *call; /* NULL on success, else e.g. "cudaLaunchKernel(matmul_small)" */
  int cuda_error;   /* a cudaError_t, 0 when the failure is cuBLAS's */
  int cublas_error; /* a cublasStatus_t */
} cuq_status;

/* Decode matmul (one warp per output row, quantized blocks read directly) is
 * used up to this many rows of x; beyond it, cuBLAS or the tiled kernel. */
#define CUQ_SMALL_N 8
/* Largest attention head_dim the kernels hold in registers (ABI minimum 256). */
#define CUQ_MAX_HEAD_DIM 256

/* ---- elementwise and row ops (kernels_elementwise.cu) */
cuq_status cuq_embed(cudaStream_t s, qiao_dev_dtype dtype, const void *table, uint64_t row_bytes,
                     const int32_t *ids, float *out, uint64_t n_tokens, uint64_t vocab,
                     uint64_t dim, int *flags);
cuq_status cuq_rmsnorm(cudaStream_t s, const float *x, const float *weight, float *out,
                       uint64_t rows, uint64_t cols, float eps);
cuq_status cuq_rope(cudaStream_t s, float *x, const int32_t *positions, const float *freqs,
                    uint64_t n_tokens, uint64_t n_heads, uint64_t head_dim, uint64_t half,
                    int neox);
cuq_status cuq_kv_write(cudaStream_t s, int cache_f16, const float *k, const float *v,
                        const int32_t *slots, void *k_cache, void *v_cache, uint64_t n_tokens,
                        uint64_t kv_dim, uint64_t n_slots, int *flags);
cuq_status cuq_swiglu(cudaStream_t s, const float *gate, const float *up, float *out, uint64_t n);
cuq_status cuq_add(cudaStream_t s, const float *a, const float *b, float *out, uint64_t n);
cuq_status cuq_argmax(cudaStream_t s, const float *x, int32_t *out, uint64_t rows, uint64_t cols);
cuq_status cuq_moe_gate(cudaStream_t s, const float *logits, int32_t *ids, float *weights,
                        uint64_t n_tokens, uint64_t n_experts, uint64_t k, int normalize);
cuq_status cuq_moe_combine(cudaStream_t s, const float *x, const float *weights, float *out,
                           uint64_t n_tokens, uint64_t k, uint64_t dim, int accumulate);

/* ---- matmul (kernels_matmul.cu). row_bytes: bytes of one weight row. */
/* n <= CUQ_SMALL_N, any weight dtype. */
cuq_status cuq_matmul_small(cudaStream_t s, qiao_dev_dtype dtype, const float *x, const void *w,
                            uint64_t row_bytes, const float *bias, float *out, uint64_t n,
                            uint64_t k, uint64_t m, int accumulate);
/* Any n, any weight dtype: 64x64 output tiles, weights dequantized into shared memory. */
cuq_status cuq_matmul_tiled(cudaStream_t s, qiao_dev_dtype dtype, const float *x, const void *w,
                            uint64_t row_bytes, const float *bias, float *out, uint64_t n,
                            uint64_t k, uint64_t m, int accumulate);
/* cuBLAS for F32, F16 and BF16 weights. The scratch it needs for n rows of x
 * (processed in chunks of *rows_per_chunk) is returned by
 * cuq_matmul_cublas_scratch; `scratch` must hold that many bytes. */
uint64_t cuq_matmul_cublas_scratch(qiao_dev_dtype dtype, uint64_t n, uint64_t k, uint64_t m,
                                   uint64_t *rows_per_chunk);
cuq_status cuq_matmul_cublas(cudaStream_t s, void *cublas_handle, qiao_dev_dtype dtype,
                             const float *x, const void *w, const float *bias, float *out,
                             uint64_t n, uint64_t k, uint64_t m, int accumulate, void *scratch,
                             uint64_t rows_per_chunk);
/* matmul_experts: one warp per (slot, output row). */
cuq_status cuq_matmul_experts(cudaStream_t s, qiao_dev_dtype dtype, const float *x, const void *w,
                              uint64_t row_bytes, uint64_t expert_bytes, const int32_t *ids,
                              float *out, uint64_t n_tokens, uint64_t k, uint64_t n_experts,
                              uint64_t in_dim, uint64_t out_dim, int x_per_slot, int *flags);

/* ---- attention (kernels_attention.cu) */
typedef struct cuq_attention_dims {
  uint64_t n_tokens, n_heads, n_kv_heads, head_dim;
  uint64_t n_seqs, max_blocks_per_seq, block_size, n_blocks; /* n_blocks = n_slots / block_size */
  uint64_t window;                                           /* 0 = unlimited, else <= 2^31 */
  float scale;
  uint32_t n_split; /* >= 1: the KV positions of a token are split in n_split chunks */
  uint64_t chunk;   /* positions per chunk (split s covers [s*chunk, (s+1)*chunk)) */
} cuq_attention_dims;
/* Scratch bytes for n_split > 1 (the partial results), 0 when n_split == 1. */
uint64_t cuq_attention_scratch(const cuq_attention_dims *d);
cuq_status cuq_attention(cudaStream_t s, int cache_f16, const cuq_attention_dims *d, const float *q,
                         const void *k_cache, const void *v_cache, const int32_t *block_table,
                         const int32_t *token_seq, const int32_t *token_pos, float *out,
                         void *scratch, int *flags);

/* Combines the d->n_split partial results (m, l, acc of head_dim values) of
 * each (token, head) into out: the second kernel of flash-decoding, shared
 * with attention_latent. */
cuq_status cuq_attention_merge(cudaStream_t s, const cuq_attention_dims *d, const float *partial,
                               float *out);

/* ---- (ABI 1.4) multi-head latent attention (kernels_latent.cu) */
/* Largest latent_dim and rope_dim the kernels hold in registers: the ABI's
 * minimum limits (spec §14.3; DeepSeek-V2/V3 use 512 and 64). */
#define CUQ_MAX_LATENT_DIM 1024
#define CUQ_MAX_LATENT_ROPE_DIM 128
cuq_status cuq_latent_write(cudaStream_t s, int cache_f16, const float *latent, const float *rope,
                            const int32_t *slots, void *cache, uint64_t n_tokens,
                            uint64_t latent_dim, uint64_t rope_dim, uint64_t n_slots, int *flags);
typedef struct cuq_latent_dims {
  uint64_t n_tokens, n_heads, latent_dim, rope_dim;
  uint64_t n_seqs, max_blocks_per_seq, block_size, n_blocks; /* n_blocks = n_slots / block_size */
  uint64_t window;                                           /* 0 = unlimited, else <= 2^31 */
  float scale;
  uint32_t n_split; /* as cuq_attention_dims */
  uint64_t chunk;
} cuq_latent_dims;
/* Scratch bytes for n_split > 1 (the partial results), 0 when n_split == 1. */
uint64_t cuq_attention_latent_scratch(const cuq_latent_dims *d);
cuq_status cuq_attention_latent(cudaStream_t s, int cache_f16, const cuq_latent_dims *d,
                                const float *q_latent, const float *q_rope, const void *cache,
                                const int32_t *block_table, const int32_t *token_seq,
                                const int32_t *token_pos, float *out, void *scratch, int *flags);

/* ---- (ABI 1.4) moe_route (kernels_elementwise.cu). scratch: n_tokens *
 * (n_experts + n_groups) floats (the biased scores c and the group scores). */
cuq_status cuq_moe_route(cudaStream_t s, const float *logits, const float *bias, int32_t *ids,
                         float *weights, float *scratch, uint64_t n_tokens, uint64_t n_experts,
                         uint64_t k, int sigmoid, int normalize, uint64_t n_groups,
                         uint64_t topk_groups, int top2_sum, float scale);

#ifdef __cplusplus
}
#endif
#endif
