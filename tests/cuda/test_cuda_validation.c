/* cuda_validation: the CUDA backend's host-side argument checks, without a
 * GPU. The backend's C files are linked with stub launchers (below) and fed
 * handles built by hand, so every check of docs/spec/device-abi.md §6-§11
 * that happens before the first CUDA call runs here. A call that passes
 * validation then reaches cudaSetDevice: without a GPU that fails, and the
 * error says so ("cudaSetDevice"); with a GPU the stub launcher runs. */
#include <string.h>

#include "cuda_internal.h"
#include "test_util.h"

/* ---- stub launchers: count the launches, touch nothing */
static int launches;
static cuq_status stub(void) {
  launches++;
  cuq_status st = {NULL, 0, 0};
  return st;
}
cuq_status cuq_embed(cudaStream_t s, qiao_dev_dtype dtype, const void *table, uint64_t row_bytes,
                     const int32_t *ids, float *out, uint64_t n_tokens, uint64_t vocab,
                     uint64_t dim, int *flags) {
  return stub();
}
cuq_status cuq_rmsnorm(cudaStream_t s, const float *x, const float *weight, float *out,
                       uint64_t rows, uint64_t cols, float eps) {
  return stub();
}
cuq_status cuq_rope(cudaStream_t s, float *x, const int32_t *positions, const float *freqs,
                    uint64_t n_tokens, uint64_t n_heads, uint64_t head_dim, uint64_t half,
                    int neox) {
  return stub();
}
cuq_status cuq_kv_write(cudaStream_t s, int cache_f16, const float *k, const float *v,
                        const int32_t *slots, void *k_cache, void *v_cache, uint64_t n_tokens,
                        uint64_t kv_dim, uint64_t n_slots, int *flags) {
  return stub();
}
cuq_status cuq_swiglu(cudaStream_t s, const float *gate, const float *up, float *out, uint64_t n) {
  return stub();
}
cuq_status cuq_add(cudaStream_t s, const float *a, const float *b, float *out, uint64_t n) {
  return stub();
}
cuq_status cuq_argmax(cudaStream_t s, const float *x, int32_t *out, uint64_t rows, uint64_t cols) {
  return stub();
}
cuq_status cuq_moe_gate(cudaStream_t s, const float *logits, int32_t *ids, float *weights,
                        uint64_t n_tokens, uint64_t n_experts, uint64_t k, int normalize) {
  return stub();
}
cuq_status cuq_moe_combine(cudaStream_t s, const float *x, const float *weights, float *out,
                           uint64_t n_tokens, uint64_t k, uint64_t dim, int accumulate) {
  return stub();
}
cuq_status cuq_matmul_small(cudaStream_t s, qiao_dev_dtype dtype, const float *x, const void *w,
                            uint64_t row_bytes, const float *bias, float *out, uint64_t n,
                            uint64_t k, uint64_t m, int accumulate) {
  return stub();
}
cuq_status cuq_matmul_tiled(cudaStream_t s, qiao_dev_dtype dtype, const float *x, const void *w,
                            uint64_t row_bytes, const float *bias, float *out, uint64_t n,
                            uint64_t k, uint64_t m, int accumulate) {
  return stub();
}
uint64_t cuq_matmul_cublas_scratch(qiao_dev_dtype dtype, uint64_t n, uint64_t k, uint64_t m,
                                   uint64_t *rows_per_chunk) {
  *rows_per_chunk = n;
  return 0;
}
cuq_status cuq_matmul_cublas(cudaStream_t s, void *cublas_handle, qiao_dev_dtype dtype,
                             const float *x, const void *w, const float *bias, float *out,
                             uint64_t n, uint64_t k, uint64_t m, int accumulate, void *scratch,
                             uint64_t rows_per_chunk) {
  return stub();
}
cuq_status cuq_matmul_experts(cudaStream_t s, qiao_dev_dtype dtype, const float *x, const void *w,
                              uint64_t row_bytes, uint64_t expert_bytes, const int32_t *ids,
                              float *out, uint64_t n_tokens, uint64_t k, uint64_t n_experts,
                              uint64_t in_dim, uint64_t out_dim, int x_per_slot, int *flags) {
  return stub();
}
uint64_t cuq_attention_scratch(const cuq_attention_dims *d) {
  return 0;
}
cuq_status cuq_attention(cudaStream_t s, int cache_f16, const cuq_attention_dims *d, const float *q,
                         const void *k_cache, const void *v_cache, const int32_t *block_table,
                         const int32_t *token_seq, const int32_t *token_pos, float *out,
                         void *scratch, int *flags) {
  return stub();
}
cuq_status cuq_latent_write(cudaStream_t s, int cache_f16, const float *latent, const float *rope,
                            const int32_t *slots, void *cache, uint64_t n_tokens,
                            uint64_t latent_dim, uint64_t rope_dim, uint64_t n_slots, int *flags) {
  return stub();
}
uint64_t cuq_attention_latent_scratch(const cuq_latent_dims *d) {
  return 0;
}
cuq_status cuq_attention_latent(cudaStream_t s, int cache_f16, const cuq_latent_dims *d,
                                const float *q_latent, const float *q_rope, const void *cache,
                                const int32_t *block_table, const int32_t *token_seq,
                                const int32_t *token_pos, float *out, void *scratch, int *flags) {
  return stub();
}
cuq_status cuq_moe_route(cudaStream_t s, const float *logits, const float *bias, int32_t *ids,
                         float *weights, float *scratch, uint64_t n_tokens, uint64_t n_experts,
                         uint64_t k, int sigmoid, int normalize, uint64_t n_groups,
                         uint64_t topk_groups, int top2_sum, float scale) {
  return stub();
}

/* ---- checks */

static void expect(qiao_dev_error *e, qiao_dev_code code, const char *needle, int line) {
  if (e == NULL) {
    fprintf(stderr, "line %d: expected code %d, got success\n", line, (int)code);
    test_failures++;
    return;
  }
  const char *msg = plugin__error_message(e);
  if (plugin__error_code(e) != code || msg[0] == '\0' ||
      (needle != NULL && strstr(msg, needle) == NULL)) {
    fprintf(stderr, "line %d: expected code %d with '%s', got %d: %s\n", line, (int)code,
            needle ? needle : "", (int)plugin__error_code(e), msg);
    test_failures++;
  }
  plugin__error_destroy(e);
}
#define EXPECT(e, code, needle) expect((e), (code), (needle), __LINE__)

/* A call that passed validation: success (GPU: the stub ran) or the first
 * CUDA call failing for want of a device. */
static void passes(qiao_dev_error *e, int line) {
  if (e == NULL) return;
  const char *msg = plugin__error_message(e);
  if (strstr(msg, "cudaSetDevice") == NULL) {
    fprintf(stderr, "line %d: expected to pass validation, got: %s\n", line, msg);
    test_failures++;
  }
  plugin__error_destroy(e);
}
#define PASSES(e) passes((e), __LINE__)

int main(void) {
  /* The backend the shared checks ask for the runtime's ABI minor (fields
   * of later versions are read only from a runtime that knows them). */
  qiao_dev_backend backend;
  memset(&backend, 0, sizeof(backend));
  backend.magic = CUQ_MAGIC_BACKEND;
  backend.runtime_minor = QIAO_DEVICE_ABI_MINOR;
  qiao_dev_device dev, other;
  memset(&dev, 0, sizeof(dev));
  dev.magic = CUQ_MAGIC_DEVICE;
  dev.backend = &backend;
  dev.info.memory_bytes = 1ull << 30;
  dev.info.sm_count = 1;
  other = dev;
  /* Buffers whose pointers are never dereferenced on the host. */
  qiao_dev_buffer big = {CUQ_MAGIC_BUFFER, &dev, (void *)0x10000, 1u << 20};
  qiao_dev_buffer out = {CUQ_MAGIC_BUFFER, &dev, (void *)0x200000, 1u << 20};
  qiao_dev_buffer foreign = {CUQ_MAGIC_BUFFER, &other, (void *)0x400000, 1u << 20};
  qiao_dev_queue q;
  memset(&q, 0, sizeof(q));
  q.magic = CUQ_MAGIC_QUEUE;
  q.device = &dev;
  qiao_dev_ref B = {&big, 0}, O = {&out, 0};

  /* matmul: every operand's range, alignment, dtype, block multiple, overlap, overflow. */
  qiao_dev_matmul_args mm = {sizeof(mm),   2,         64, 16, B, QIAO_DEV_F32,
                             {&big, 4096}, {NULL, 0}, O,  0,  0};
  PASSES(cuq__matmul(&q, &mm));
  EXPECT(cuq__matmul(&q, NULL), QIAO_DEV_INVALID_ARGUMENT, "args is NULL");
  qiao_dev_matmul_args a = mm;
  a.struct_size = 8;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "struct_size");
  a = mm, a.x.offset = (1u << 20) - 4;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "exceed");
  a = mm, a.x.offset = UINT64_MAX - 3;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "exceed");
  a = mm, a.x.offset = 2;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "multiple");
  a = mm, a.x.buffer = NULL;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "NULL");
  a = mm, a.x.buffer = &foreign;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "another device");
  a = mm, a.w_dtype = (qiao_dev_dtype)77;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_UNSUPPORTED, NULL);
  a = mm, a.w_dtype = QIAO_DEV_Q8_0, a.k = 48;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "multiple of the block size");
  a = mm, a.w_dtype = QIAO_DEV_Q4_0, a.w.offset = 4097;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "multiple");
  a = mm, a.w_dtype = QIAO_DEV_Q4_0, a.w.offset = 4098;
  PASSES(cuq__matmul(&q, &a));
  a = mm, a.out = B;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  a = mm, a.n = 1ull << 62;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "overflows");
  a = mm, a.bias = (qiao_dev_ref){NULL, 8};
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "bias");
  a = mm, a.n = 0;
  launches = 0;
  CHECK(cuq__matmul(&q, &a) == NULL && launches == 0); /* no work, no CUDA call */
  /* A required operand needs a buffer even when it has 0 bytes (device-abi.md §7). */
  a = mm, a.n = 0, a.x = (qiao_dev_ref){NULL, 0};
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "x: buffer is NULL");
  qiao_dev_queue bad = q;
  bad.magic = 0;
  EXPECT(cuq__matmul(&bad, &mm), QIAO_DEV_BAD_HANDLE, NULL);
  qiao_dev_buffer dead = big;
  dead.magic = CUQ_MAGIC_DEAD;
  a = mm, a.w.buffer = &dead;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_BAD_HANDLE, NULL);

  /* (1.3) The block types: rows of whole blocks (256 for the k-quants, 32
   * for Q4_1/Q5_0/Q5_1), operands aligned to 2 bytes, all three weight ops. */
  const qiao_dev_dtype k_quants[] = {QIAO_DEV_Q4_K, QIAO_DEV_Q5_K, QIAO_DEV_Q6_K, QIAO_DEV_Q2_K,
                                     QIAO_DEV_Q3_K};
  for (size_t i = 0; i < sizeof(k_quants) / sizeof(k_quants[0]); i++) {
    a = mm, a.w_dtype = k_quants[i], a.k = 256, a.x = (qiao_dev_ref){&out, 8192};
    PASSES(cuq__matmul(&q, &a));
    a.k = 128;
    EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "multiple of the block size");
    a.k = 256, a.w.offset = 4097;
    EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "multiple");
  }
  const qiao_dev_dtype small_blocks[] = {QIAO_DEV_Q4_1, QIAO_DEV_Q5_0, QIAO_DEV_Q5_1};
  for (size_t i = 0; i < sizeof(small_blocks) / sizeof(small_blocks[0]); i++) {
    a = mm, a.w_dtype = small_blocks[i], a.k = 96, a.x = (qiao_dev_ref){&out, 8192};
    PASSES(cuq__matmul(&q, &a));
    a.k = 48;
    EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "multiple of the block size");
  }
  /* (1.4) FP8: rows of whole 128-element blocks of 132 bytes, operands aligned to 4. */
  a = mm, a.w_dtype = QIAO_DEV_F8_E4M3_B128, a.k = 256, a.x = (qiao_dev_ref){&out, 8192};
  PASSES(cuq__matmul(&q, &a));
  a.k = 192;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "multiple of the block size");
  a.k = 256, a.w.offset = 4098;
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "multiple");
  a = mm, a.w_dtype = QIAO_DEV_Q6_K, a.k = 256, a.m = 5000; /* 5000 rows of 210 bytes > 1 MiB */
  EXPECT(cuq__matmul(&q, &a), QIAO_DEV_INVALID_ARGUMENT, "exceed");

  /* rope: rot_dim even and <= head_dim; style known. */
  qiao_dev_rope_args rp = {sizeof(rp), 3, 2, 8, 8, QIAO_DEV_ROPE_NEOX, O, B, {&big, 64}};
  PASSES(cuq__rope(&q, &rp));
  qiao_dev_rope_args r = rp;
  r.rot_dim = 5;
  EXPECT(cuq__rope(&q, &r), QIAO_DEV_INVALID_ARGUMENT, "rot_dim");
  r = rp, r.rot_dim = 10;
  EXPECT(cuq__rope(&q, &r), QIAO_DEV_INVALID_ARGUMENT, "rot_dim");
  r = rp, r.style = (qiao_dev_rope_style)9;
  EXPECT(cuq__rope(&q, &r), QIAO_DEV_INVALID_ARGUMENT, "style");

  /* attention: GQA ratio, head_dim limit, block_size, cache dtype. */
  qiao_dev_attention_args at = {.struct_size = sizeof(at),
                                .n_tokens = 2,
                                .n_heads = 4,
                                .n_kv_heads = 2,
                                .head_dim = 16,
                                .n_seqs = 1,
                                .max_blocks_per_seq = 4,
                                .block_size = 8,
                                .n_slots = 32,
                                .scale = 0.25f,
                                .cache_dtype = QIAO_DEV_F16,
                                .q = B,
                                .k_cache = {&big, 8192},
                                .v_cache = {&big, 16384},
                                .block_table = {&big, 32768},
                                .token_seq = {&big, 33000},
                                .token_pos = {&big, 33100},
                                .out = O};
  PASSES(cuq__attention(&q, &at));
  qiao_dev_attention_args t = at;
  t.n_kv_heads = 3;
  EXPECT(cuq__attention(&q, &t), QIAO_DEV_INVALID_ARGUMENT, "n_kv_heads");
  t = at, t.n_kv_heads = 0;
  EXPECT(cuq__attention(&q, &t), QIAO_DEV_INVALID_ARGUMENT, "n_kv_heads");
  t = at, t.head_dim = 300;
  EXPECT(cuq__attention(&q, &t), QIAO_DEV_UNSUPPORTED, "head_dim");
  t = at, t.block_size = 0;
  EXPECT(cuq__attention(&q, &t), QIAO_DEV_INVALID_ARGUMENT, "block_size");
  t = at, t.cache_dtype = QIAO_DEV_BF16;
  EXPECT(cuq__attention(&q, &t), QIAO_DEV_UNSUPPORTED, "cache dtype");
  t = at, t.n_slots = 1ull << 40;
  EXPECT(cuq__attention(&q, &t), QIAO_DEV_INVALID_ARGUMENT, "exceed");

  /* moe_gate k in [1, n_experts]; argmax cols >= 1; in-place add allowed, partial overlap not. */
  qiao_dev_moe_gate_args mg = {sizeof(mg), 2, 8, 2, 1, B, O, {&out, 64}};
  PASSES(cuq__moe_gate(&q, &mg));
  qiao_dev_moe_gate_args g = mg;
  g.k = 9;
  EXPECT(cuq__moe_gate(&q, &g), QIAO_DEV_INVALID_ARGUMENT, "n_experts");
  g = mg, g.k = 0;
  EXPECT(cuq__moe_gate(&q, &g), QIAO_DEV_INVALID_ARGUMENT, "n_experts");
  qiao_dev_argmax_args am = {sizeof(am), 2, 0, B, O};
  EXPECT(cuq__argmax(&q, &am), QIAO_DEV_INVALID_ARGUMENT, "cols");
  qiao_dev_add_args ad = {sizeof(ad), 16, B, {&big, 64}, B};
  PASSES(cuq__add(&q, &ad));
  ad.out.offset = 4;
  EXPECT(cuq__add(&q, &ad), QIAO_DEV_INVALID_ARGUMENT, "overlaps");

  /* kv_write, embed, matmul_experts, moe_combine, swiglu, rmsnorm: a good call and a bad one each.
   */
  qiao_dev_kv_write_args kv = {sizeof(kv), 2,           16,          8, QIAO_DEV_F32,
                               B,          {&big, 128}, {&big, 256}, O, {&out, 4096}};
  PASSES(cuq__kv_write(&q, &kv));
  kv.v_cache.offset = 100;
  EXPECT(cuq__kv_write(&q, &kv), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  qiao_dev_embed_args em = {sizeof(em), 2, 10, 32, QIAO_DEV_Q8_0, B, {&big, 4096}, O};
  PASSES(cuq__embed(&q, &em));
  em.vocab = UINT64_MAX / 2;
  EXPECT(cuq__embed(&q, &em), QIAO_DEV_INVALID_ARGUMENT, NULL);
  qiao_dev_matmul_experts_args me = {
      sizeof(me), 2, 2, 4, 32, 8, 1, 0, B, QIAO_DEV_Q4_0, {&big, 4096}, {&big, 8192}, O};
  PASSES(cuq__matmul_experts(&q, &me));
  me.in_dim = 40;
  EXPECT(cuq__matmul_experts(&q, &me), QIAO_DEV_INVALID_ARGUMENT, "block size");
  me.in_dim = 256, me.w_dtype = QIAO_DEV_Q5_K, me.x = (qiao_dev_ref){&out, 8192};
  PASSES(cuq__matmul_experts(&q, &me));
  em.vocab = 10, em.dim = 512, em.table_dtype = QIAO_DEV_Q3_K;
  PASSES(cuq__embed(&q, &em));
  em.dim = 500;
  EXPECT(cuq__embed(&q, &em), QIAO_DEV_INVALID_ARGUMENT, "block size");
  qiao_dev_moe_combine_args mc = {sizeof(mc), 2, 2, 8, 0, B, {&big, 4096}, O};
  PASSES(cuq__moe_combine(&q, &mc));
  mc.dim = 1ull << 62;
  EXPECT(cuq__moe_combine(&q, &mc), QIAO_DEV_INVALID_ARGUMENT, NULL);
  qiao_dev_swiglu_args sw = {sizeof(sw), 8, B, {&big, 32}, B};
  PASSES(cuq__swiglu(&q, &sw));
  qiao_dev_rmsnorm_args rn = {sizeof(rn), 2, 8, 1e-5f, B, {&big, 64}, B};
  PASSES(cuq__rmsnorm(&q, &rn));
  rn.out.offset = 4;
  EXPECT(cuq__rmsnorm(&q, &rn), QIAO_DEV_INVALID_ARGUMENT, "overlaps");

  /* (1.4) latent_write: latent_dim and rope_dim >= 1, the cache's dtype and range, overlaps. */
  qiao_dev_latent_write_args lw = {.struct_size = sizeof(lw),
                                   .n_tokens = 2,
                                   .latent_dim = 32,
                                   .rope_dim = 8,
                                   .n_slots = 16,
                                   .cache_dtype = QIAO_DEV_F16,
                                   .latent = B,
                                   .rope = {&big, 4096},
                                   .slots = {&big, 8192},
                                   .cache = O};
  PASSES(cuq__latent_write(&q, &lw));
  qiao_dev_latent_write_args w = lw;
  w.latent_dim = 0;
  EXPECT(cuq__latent_write(&q, &w), QIAO_DEV_INVALID_ARGUMENT, "latent_dim");
  w = lw, w.cache_dtype = QIAO_DEV_BF16;
  EXPECT(cuq__latent_write(&q, &w), QIAO_DEV_UNSUPPORTED, "cache dtype");
  w = lw, w.cache = (qiao_dev_ref){&big, 4000};
  EXPECT(cuq__latent_write(&q, &w), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  w = lw, w.n_slots = 1u << 20;
  EXPECT(cuq__latent_write(&q, &w), QIAO_DEV_INVALID_ARGUMENT, "exceed");
  w = lw, w.struct_size = sizeof(lw) - 8;
  EXPECT(cuq__latent_write(&q, &w), QIAO_DEV_INVALID_ARGUMENT, "struct_size");
  w = lw, w.n_tokens = 0;
  launches = 0;
  CHECK(cuq__latent_write(&q, &w) == NULL && launches == 0);

  /* (1.4) attention_latent: the shape rules, then this backend's limits (latent_dim <= 1024,
   * rope_dim <= 128: UNSUPPORTED, with or without work). */
  qiao_dev_attention_latent_args al = {.struct_size = sizeof(al),
                                       .n_tokens = 2,
                                       .n_heads = 4,
                                       .latent_dim = 32,
                                       .rope_dim = 8,
                                       .n_seqs = 1,
                                       .max_blocks_per_seq = 4,
                                       .block_size = 8,
                                       .n_slots = 32,
                                       .scale = 0.125f,
                                       .cache_dtype = QIAO_DEV_F32,
                                       .q_latent = B,
                                       .q_rope = {&big, 4096},
                                       .cache = {&big, 8192},
                                       .block_table = {&big, 65536},
                                       .token_seq = {&big, 65600},
                                       .token_pos = {&big, 65700},
                                       .out = O};
  PASSES(cuq__attention_latent(&q, &al));
  qiao_dev_attention_latent_args l = al;
  l.block_size = 0;
  EXPECT(cuq__attention_latent(&q, &l), QIAO_DEV_INVALID_ARGUMENT, "block_size");
  l = al, l.rope_dim = 0;
  EXPECT(cuq__attention_latent(&q, &l), QIAO_DEV_INVALID_ARGUMENT, "rope_dim");
  l = al, l.cache_dtype = QIAO_DEV_Q8_0;
  EXPECT(cuq__attention_latent(&q, &l), QIAO_DEV_UNSUPPORTED, "cache dtype");
  l = al, l.out = (qiao_dev_ref){&big, 8192};
  EXPECT(cuq__attention_latent(&q, &l), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  l = al, l.latent_dim = 1025, l.q_rope.offset = 32768, l.cache.offset = 98304;
  EXPECT(cuq__attention_latent(&q, &l), QIAO_DEV_UNSUPPORTED, "latent_dim");
  l.n_tokens = 0;
  EXPECT(cuq__attention_latent(&q, &l), QIAO_DEV_UNSUPPORTED, "latent_dim");
  l = al, l.rope_dim = 129, l.cache.offset = 16384;
  EXPECT(cuq__attention_latent(&q, &l), QIAO_DEV_UNSUPPORTED, "rope_dim");
  l = al, l.latent_dim = 512, l.rope_dim = 64, l.n_tokens = 1, l.n_heads = 2, l.n_slots = 16;
  l.q_rope.offset = 8192, l.cache.offset = 16384, l.block_table.offset = 65536 + 4096;
  PASSES(cuq__attention_latent(&q, &l)); /* DeepSeek-V3's dimensions */
  l = al, l.n_heads = 0;
  launches = 0;
  CHECK(cuq__attention_latent(&q, &l) == NULL && launches == 0);

  /* (1.4) moe_route: k, scoring, normalize, groups, the optional bias. */
  qiao_dev_moe_route_args mr = {.struct_size = sizeof(mr),
                                .n_tokens = 2,
                                .n_experts = 8,
                                .k = 2,
                                .scoring = QIAO_DEV_MOE_SCORE_SIGMOID,
                                .normalize = 1,
                                .n_groups = 4,
                                .topk_groups = 2,
                                .group_score = QIAO_DEV_MOE_GROUP_TOP2_SUM,
                                .scale = 2.5f,
                                .logits = B,
                                .bias = {&big, 4096},
                                .ids = O,
                                .weights = {&out, 64}};
  PASSES(cuq__moe_route(&q, &mr));
  qiao_dev_moe_route_args m = mr;
  m.bias = (qiao_dev_ref){NULL, 0}, m.n_groups = 0, m.scoring = QIAO_DEV_MOE_SCORE_SOFTMAX;
  PASSES(cuq__moe_route(&q, &m));
  m = mr, m.n_groups = 3;
  EXPECT(cuq__moe_route(&q, &m), QIAO_DEV_INVALID_ARGUMENT, "n_groups");
  m = mr, m.k = 5; /* more than the 2 kept groups' 4 experts */
  EXPECT(cuq__moe_route(&q, &m), QIAO_DEV_INVALID_ARGUMENT, "kept groups");
  m = mr, m.scoring = 7;
  EXPECT(cuq__moe_route(&q, &m), QIAO_DEV_INVALID_ARGUMENT, "scoring");
  m = mr, m.k = 0;
  EXPECT(cuq__moe_route(&q, &m), QIAO_DEV_INVALID_ARGUMENT, "k 0");
  m = mr, m.bias = (qiao_dev_ref){NULL, 8};
  EXPECT(cuq__moe_route(&q, &m), QIAO_DEV_INVALID_ARGUMENT, "bias");
  m = mr, m.weights = (qiao_dev_ref){&out, 4};
  EXPECT(cuq__moe_route(&q, &m), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  m = mr, m.n_tokens = 0;
  launches = 0;
  CHECK(cuq__moe_route(&q, &m) == NULL && launches == 0);

  /* Data movement: ranges, NULL host pointers, overlap, size 0. */
  char host[16] = {0};
  EXPECT(cuq__upload(&q, (qiao_dev_ref){&big, (1u << 20) - 8}, host, 16), QIAO_DEV_INVALID_ARGUMENT,
         "exceed");
  EXPECT(cuq__upload(&q, B, NULL, 16), QIAO_DEV_INVALID_ARGUMENT, "src is NULL");
  EXPECT(cuq__download(&q, NULL, B, 16), QIAO_DEV_INVALID_ARGUMENT, "dst is NULL");
  EXPECT(cuq__copy(&q, B, (qiao_dev_ref){&big, 8}, 16), QIAO_DEV_INVALID_ARGUMENT, "overlap");
  CHECK(cuq__upload(&q, B, NULL, 0) == NULL);

  /* Capabilities: claimed pairs only, unknown values answer 0. */
  CHECK(plugin__claims(QIAO_DEV_OP_MATMUL, QIAO_DEV_Q4_0));
  CHECK(plugin__claims(QIAO_DEV_OP_ATTENTION, QIAO_DEV_F16));
  CHECK(!plugin__claims(QIAO_DEV_OP_ATTENTION, QIAO_DEV_BF16));
  CHECK(!plugin__claims(QIAO_DEV_OP_ADD, QIAO_DEV_F16));
  CHECK(!plugin__claims(QIAO_DEV_OP_MATMUL, QIAO_DEV_I32));
  CHECK(!plugin__claims(QIAO_DEV_OP_COUNT, QIAO_DEV_F32));
  uint32_t yes = 5;
  CHECK(cuq__op_supported(&dev, QIAO_DEV_OP_COUNT, (qiao_dev_dtype)77, &yes) == NULL && yes == 0);
  yes = 5;
  CHECK(cuq__op_supported(&dev, QIAO_DEV_OP_MATMUL, QIAO_DEV_DTYPE_COUNT, &yes) == NULL &&
        yes == 0);
  /* (1.3, 1.4, 1.5) every block type for the three weight ops, and for nothing else */
  for (int dt = QIAO_DEV_Q4_K; dt <= QIAO_DEV_IQ4_XS; dt++) {
    const qiao_dev_op weight_ops[] = {QIAO_DEV_OP_EMBED, QIAO_DEV_OP_MATMUL,
                                      QIAO_DEV_OP_MATMUL_EXPERTS};
    for (int o = 0; o < 3; o++) {
      yes = 0;
      CHECK(cuq__op_supported(&dev, weight_ops[o], (qiao_dev_dtype)dt, &yes) == NULL && yes == 1);
    }
    yes = 5;
    CHECK(cuq__op_supported(&dev, QIAO_DEV_OP_ATTENTION, (qiao_dev_dtype)dt, &yes) == NULL &&
          yes == 0);
  }
  /* (1.4) the latent cache ops on F32 and F16 caches, moe_route on F32 */
  const struct {
    qiao_dev_op op;
    qiao_dev_dtype dtype;
    uint32_t claimed;
  } claims[] = {{QIAO_DEV_OP_LATENT_WRITE, QIAO_DEV_F32, 1},
                {QIAO_DEV_OP_LATENT_WRITE, QIAO_DEV_F16, 1},
                {QIAO_DEV_OP_LATENT_WRITE, QIAO_DEV_BF16, 0},
                {QIAO_DEV_OP_ATTENTION_LATENT, QIAO_DEV_F32, 1},
                {QIAO_DEV_OP_ATTENTION_LATENT, QIAO_DEV_F16, 1},
                {QIAO_DEV_OP_ATTENTION_LATENT, QIAO_DEV_Q8_0, 0},
                {QIAO_DEV_OP_MOE_ROUTE, QIAO_DEV_F32, 1},
                {QIAO_DEV_OP_MOE_ROUTE, QIAO_DEV_F16, 0}};
  for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
    yes = 5;
    CHECK(cuq__op_supported(&dev, claims[i].op, claims[i].dtype, &yes) == NULL &&
          yes == claims[i].claimed);
  }
  qiao_dev_buffer *nb = NULL;
  EXPECT(cuq__buffer_create(&dev, UINT64_MAX, &nb), QIAO_DEV_OUT_OF_MEMORY, NULL);
  EXPECT(cuq__buffer_create(&dev, 1ull << 62, &nb), QIAO_DEV_OUT_OF_MEMORY, NULL);
  EXPECT(cuq__buffer_create(&dev, 0, &nb), QIAO_DEV_INVALID_ARGUMENT, NULL);
  CHECK(nb == NULL);
  TEST_END();
}
