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
  qiao_dev_device dev, other;
  memset(&dev, 0, sizeof(dev));
  dev.magic = CUQ_MAGIC_DEVICE;
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
      sizeof(me), 2, 2, 4, 32, 8, 1, B, QIAO_DEV_Q4_0, {&big, 4096}, {&big, 8192}, O};
  PASSES(cuq__matmul_experts(&q, &me));
  me.in_dim = 40;
  EXPECT(cuq__matmul_experts(&q, &me), QIAO_DEV_INVALID_ARGUMENT, "block size");
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
  CHECK(!plugin__claims((qiao_dev_op)12, QIAO_DEV_F32));
  uint32_t yes = 5;
  CHECK(cuq__op_supported(&dev, (qiao_dev_op)12, (qiao_dev_dtype)77, &yes) == NULL && yes == 0);
  qiao_dev_buffer *nb = NULL;
  EXPECT(cuq__buffer_create(&dev, UINT64_MAX, &nb), QIAO_DEV_OUT_OF_MEMORY, NULL);
  EXPECT(cuq__buffer_create(&dev, 1ull << 62, &nb), QIAO_DEV_OUT_OF_MEMORY, NULL);
  EXPECT(cuq__buffer_create(&dev, 0, &nb), QIAO_DEV_INVALID_ARGUMENT, NULL);
  CHECK(nb == NULL);
  TEST_END();
}
