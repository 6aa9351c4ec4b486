/* The CPU backend's objects and error paths: the function table and the
 * plugin library, backend/device lifetimes and properties, op_supported,
 * buffers (accounting, absurd sizes, wrapped host memory), data movement
 * range checks, foreign handles, and argument validation of every op:
 * bad dtypes, NULL refs, out-of-range or overflowing sizes, out-of-range
 * ids/slots/block table entries (device data checked at run time). */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

#include "cpu_internal.h"
#include "cpu_test.h"

static void test_table(void) {
  const qiao_dev_api *a = qiao_cpu_get_api();
  EXPECT(a->struct_size == sizeof(qiao_dev_api));
  EXPECT(a->abi_major == QIAO_DEVICE_ABI_MAJOR && a->abi_minor == QIAO_DEVICE_ABI_MINOR);
  EXPECT(strcmp(a->name, "cpu") == 0 && a->version != NULL);
  /* Every entry after the version string is a function pointer; none NULL. */
  size_t first = offsetof(qiao_dev_api, error_code), last = offsetof(qiao_dev_api, moe_combine);
  for (size_t off = first; off <= last; off += sizeof(void (*)(void))) {
    void (*fn)(void);
    memcpy(&fn, (const char *)a + off, sizeof(fn));
    EXPECT(fn != NULL);
  }
}

static void test_plugin(void) {
  const char *dir = getenv("QIAO_BUILD_DIR");
  char path[4096];
  snprintf(path, sizeof(path), "%s/libqiao-cpu.so", dir ? dir : ".");
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "cannot dlopen %s: %s\n", path, dlerror());
    failures++;
    return;
  }
  qiao_device_get_api_fn entry;
  void *sym = dlsym(lib, QIAO_DEVICE_ENTRY_POINT);
  memcpy(&entry, &sym, sizeof(entry));
  EXPECT(entry != NULL);
  EXPECT(dlsym(lib, "qiao_cpu_get_api") == NULL); /* only the entry point is exported */
  if (entry != NULL) {
    const qiao_dev_api *p = entry();
    EXPECT(p != NULL && strcmp(p->name, "cpu") == 0 && p->abi_major == QIAO_DEVICE_ABI_MAJOR);
    /* The plugin's own copy works end to end. */
    qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
    qiao_dev_backend *b = NULL;
    qiao_dev_device *d = NULL;
    EXPECT(p->backend_open(&bo, &b) == NULL);
    EXPECT(p->device_open(b, 0, NULL, &d) == NULL);
    p->device_close(d);
    p->backend_close(b);
  }
  dlclose(lib);
}

static void test_backend_and_device(void) {
  api = qiao_cpu_get_api();
  qiao_dev_backend *b = NULL;
  qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
  EXPECT_ERR(api->backend_open(NULL, &b), QIAO_DEV_INVALID_ARGUMENT, "backend_open");
  qiao_dev_backend_options old = {sizeof(size_t), 1, 0};
  EXPECT_ERR(api->backend_open(&old, &b), QIAO_DEV_INVALID_ARGUMENT, "struct_size");
  qiao_dev_backend_options v2 = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR + 1, 0};
  EXPECT_ERR(api->backend_open(&v2, &b), QIAO_DEV_UNSUPPORTED, "major 2");
  EXPECT_OK(api->backend_open(&bo, &b));

  uint32_t count = 0;
  EXPECT_OK(api->device_count(b, &count));
  EXPECT(count == 1);
  qiao_dev_properties props;
  memset(&props, 0, sizeof(props));
  props.struct_size = sizeof(props);
  EXPECT_OK(api->device_get_properties(b, 0, &props));
  EXPECT(props.name[0] != '\0' && props.memory_bytes > 0 && props.compute_units >= 1);
  EXPECT(props.max_buffer_bytes > 0 && props.max_buffer_bytes <= props.memory_bytes);
  /* Q8 activations where the chosen kernels have them (AVX512-VNNI here;
   * tests/cpu/cpu_q8_activations_test.c checks the scalar set's claim). */
  EXPECT((props.flags & ~(uint32_t)QIAO_DEV_FLAG_Q8_ACTIVATIONS) ==
         (QIAO_DEV_FLAG_HOST_MEMORY | QIAO_DEV_FLAG_BATCH_INVARIANT));
  EXPECT(strlen(props.name) < sizeof(props.name) && strlen(props.vendor) < sizeof(props.vendor));
  /* An older, shorter struct: nothing at or beyond its struct_size is written. */
  memset(&props, 0xab, sizeof(props));
  props.struct_size = offsetof(qiao_dev_properties, memory_bytes);
  EXPECT_OK(api->device_get_properties(b, 0, &props));
  EXPECT(props.name[0] != (char)0xab);
  EXPECT(props.memory_bytes == 0xababababababababull && props.flags == 0xababababu);
  EXPECT_ERR(api->device_get_properties(b, 1, &props), QIAO_DEV_INVALID_ARGUMENT, "index 1");

  qiao_dev_device *d = NULL;
  qiao_dev_device_options many = {.struct_size = sizeof(many), .n_threads = 5000};
  EXPECT_ERR(api->device_open(b, 0, &many, &d), QIAO_DEV_INVALID_ARGUMENT, "n_threads 5000");
  EXPECT_ERR(api->device_open(b, 1, NULL, &d), QIAO_DEV_INVALID_ARGUMENT, "index 1");
  setenv("QIAO_CPU_ISA", "sse9", 1);
  EXPECT_ERR(api->device_open(b, 0, NULL, &d), QIAO_DEV_INVALID_ARGUMENT, "QIAO_CPU_ISA");
  unsetenv("QIAO_CPU_ISA");
  EXPECT_OK(api->device_open(b, 0, NULL, &d)); /* default threads */

  /* op_supported: exactly the documented matrix. */
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++)
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
      uint32_t s = 7;
      EXPECT_OK(api->op_supported(d, (qiao_dev_op)op, (qiao_dev_dtype)dt, &s));
      uint32_t want;
      if (op == QIAO_DEV_OP_EMBED || op == QIAO_DEV_OP_MATMUL || op == QIAO_DEV_OP_MATMUL_EXPERTS)
        want = dt <= QIAO_DEV_Q4_0 || (dt >= QIAO_DEV_Q4_K && dt <= QIAO_DEV_Q5_1) || /* 1.3 */
               dt == QIAO_DEV_F8_E4M3_B128 ||                                         /* 1.4 */
               dt == QIAO_DEV_IQ4_NL || dt == QIAO_DEV_IQ4_XS;                        /* 1.5 */
      else if (op == QIAO_DEV_OP_KV_WRITE || op == QIAO_DEV_OP_ATTENTION ||
               op == QIAO_DEV_OP_LATENT_WRITE || op == QIAO_DEV_OP_ATTENTION_LATENT) /* 1.4 */
        want = dt == QIAO_DEV_F32 || dt == QIAO_DEV_F16;
      else
        want = dt == QIAO_DEV_F32;
      EXPECT(s == want);
    }
  /* Values of a later minor version: not supported, no error. */
  uint32_t s = 7;
  EXPECT_OK(api->op_supported(d, QIAO_DEV_OP_COUNT, QIAO_DEV_F32, &s));
  EXPECT(s == 0);
  s = 7;
  EXPECT_OK(api->op_supported(d, QIAO_DEV_OP_ADD, (qiao_dev_dtype)77, &s));
  EXPECT(s == 0);
  EXPECT_ERR(api->op_supported(d, QIAO_DEV_OP_ADD, QIAO_DEV_F32, NULL), QIAO_DEV_INVALID_ARGUMENT,
             NULL);

  /* Foreign handles. */
  uint64_t fake[16] = {0};
  EXPECT_ERR(api->device_count((qiao_dev_backend *)(void *)fake, &count), QIAO_DEV_BAD_HANDLE,
             NULL);
  EXPECT_ERR(api->op_supported((qiao_dev_device *)(void *)fake, QIAO_DEV_OP_ADD, QIAO_DEV_F32, &s),
             QIAO_DEV_BAD_HANDLE, NULL);
  EXPECT_ERR(api->queue_synchronize((qiao_dev_queue *)(void *)fake), QIAO_DEV_BAD_HANDLE, NULL);
  qiao_dev_buffer *bb = NULL;
  EXPECT_ERR(api->buffer_create((qiao_dev_device *)(void *)fake, 16, &bb), QIAO_DEV_BAD_HANDLE,
             NULL);
  api->buffer_destroy((qiao_dev_buffer *)(void *)fake); /* ignored, no crash */
  api->device_close(d);
  api->backend_close(b);
  api->device_close(NULL);
  api->backend_close(NULL);
  api->queue_destroy(NULL);
  api->buffer_destroy(NULL);
  api->error_destroy(NULL);
  EXPECT(api->error_code(NULL) == QIAO_DEV_OK);
}

static void test_buffers_and_movement(env *t) {
  uint64_t n0, bytes0, n1, bytes1;
  qiao__cpu_live_buffers(t->device, &n0, &bytes0);
  qiao_dev_buffer *a = NULL, *b = NULL, *z = NULL;
  EXPECT_ERR(api->buffer_create(t->device, UINT64_MAX, &a), QIAO_DEV_OUT_OF_MEMORY,
             "buffer_create");
  EXPECT_ERR(api->buffer_create(t->device, (uint64_t)1 << 62, &a), QIAO_DEV_OUT_OF_MEMORY, NULL);
  EXPECT_ERR(api->buffer_create(t->device, 16, NULL), QIAO_DEV_INVALID_ARGUMENT, NULL);
  EXPECT_OK(api->buffer_create(t->device, 100, &a));
  EXPECT_OK(api->buffer_create(t->device, 64, &b));
  EXPECT_OK(api->buffer_create(t->device, 0, &z));
  qiao__cpu_live_buffers(t->device, &n1, &bytes1);
  EXPECT(n1 == n0 + 3 && bytes1 == bytes0 + 164);

  uint8_t src[100], dst[100];
  for (int i = 0; i < 100; i++)
    src[i] = (uint8_t)i;
  EXPECT_OK(api->upload(t->queue, (qiao_dev_ref){a, 0}, src, 100));
  EXPECT_ERR(api->upload(t->queue, (qiao_dev_ref){a, 1}, src, 100), QIAO_DEV_INVALID_ARGUMENT,
             "upload: dst needs 100 bytes at offset 1 but its buffer has 100");
  EXPECT_ERR(api->upload(t->queue, (qiao_dev_ref){a, UINT64_MAX}, src, 2),
             QIAO_DEV_INVALID_ARGUMENT, NULL);
  EXPECT_ERR(api->upload(t->queue, (qiao_dev_ref){a, 2}, src, UINT64_MAX),
             QIAO_DEV_INVALID_ARGUMENT, NULL);
  EXPECT_ERR(api->upload(t->queue, (qiao_dev_ref){NULL, 0}, src, 1), QIAO_DEV_INVALID_ARGUMENT,
             "NULL");
  EXPECT_ERR(api->upload(t->queue, (qiao_dev_ref){a, 0}, NULL, 1), QIAO_DEV_INVALID_ARGUMENT, NULL);
  EXPECT_OK(api->upload(t->queue, (qiao_dev_ref){z, 0}, NULL, 0));
  /* copy within one buffer overlaps like memmove */
  EXPECT_OK(api->copy(t->queue, (qiao_dev_ref){a, 10}, (qiao_dev_ref){a, 0}, 50));
  EXPECT_OK(api->download(t->queue, dst, (qiao_dev_ref){a, 0}, 100));
  EXPECT_OK(api->queue_synchronize(t->queue));
  EXPECT(memcmp(dst, src, 10) == 0 && memcmp(dst + 10, src, 50) == 0 &&
         memcmp(dst + 60, src + 60, 40) == 0);
  EXPECT_ERR(api->copy(t->queue, (qiao_dev_ref){b, 0}, (qiao_dev_ref){a, 50}, 64),
             QIAO_DEV_INVALID_ARGUMENT, "src");
  EXPECT_ERR(api->download(t->queue, dst, (qiao_dev_ref){b, 60}, 5), QIAO_DEV_INVALID_ARGUMENT,
             NULL);

  /* Wrapped host memory: zero-copy, read by the device, never written. */
  float host[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  qiao_dev_buffer *w = NULL;
  EXPECT_ERR(api->buffer_wrap_host(t->device, NULL, 8, &w), QIAO_DEV_INVALID_ARGUMENT, NULL);
  EXPECT_OK(api->buffer_wrap_host(t->device, host, sizeof(host), &w));
  float back[8];
  EXPECT_OK(api->download(t->queue, back, (qiao_dev_ref){w, 0}, sizeof(back)));
  EXPECT(memcmp(back, host, sizeof(host)) == 0);
  EXPECT_ERR(api->upload(t->queue, (qiao_dev_ref){w, 0}, back, 4), QIAO_DEV_INVALID_ARGUMENT,
             "read-only");
  qiao_dev_add_args add = {sizeof(add), 8, {w, 0}, {w, 0}, {w, 0}};
  EXPECT_ERR(api->add(t->queue, &add), QIAO_DEV_INVALID_ARGUMENT, "read-only");
  add.out = (qiao_dev_ref){b, 0}; /* reading it is fine */
  qiao_dev_buffer *ob = NULL;
  EXPECT_OK(api->buffer_create(t->device, 32, &ob));
  add.out = (qiao_dev_ref){ob, 0};
  EXPECT_OK(api->add(t->queue, &add));
  EXPECT_OK(api->download(t->queue, back, (qiao_dev_ref){ob, 0}, sizeof(back)));
  EXPECT(back[7] == 16.0f);

  /* A buffer of another device is a valid handle misused: INVALID_ARGUMENT
   * (device-abi.md §6). */
  env other;
  EXPECT(env_open(&other, "scalar", 1));
  qiao_dev_buffer *foreign = buf(&other, NULL, 64);
  EXPECT_ERR(api->copy(t->queue, (qiao_dev_ref){b, 0}, (qiao_dev_ref){foreign, 0}, 8),
             QIAO_DEV_INVALID_ARGUMENT, "another device");
  api->buffer_destroy(foreign);
  env_close(&other);

  api->buffer_destroy(a), api->buffer_destroy(b), api->buffer_destroy(z);
  api->buffer_destroy(w), api->buffer_destroy(ob);
  qiao__cpu_live_buffers(t->device, &n1, &bytes1);
  EXPECT(n1 == n0 && bytes1 == bytes0);
}

/* An error in device data: the op call succeeds, synchronize reports it. */
#define EXPECT_ASYNC_ERR(expr, code, part)                                                         \
  do {                                                                                             \
    EXPECT_OK(expr);                                                                               \
    EXPECT_ERR(api->queue_synchronize(q), code, part);                                             \
    EXPECT_OK(api->queue_synchronize(q)); /* cleared */                                            \
  } while (0)

static void test_op_errors(env *t) {
  qiao_dev_buffer *big = buf(t, NULL, 1 << 16), *small = buf(t, NULL, 64);
  qiao_dev_buffer *other = buf(t, NULL, 1 << 16);
  qiao_dev_queue *q = t->queue;

  /* matmul */
  qiao_dev_matmul_args m = {sizeof(m),   2,         64,         8, {big, 0}, QIAO_DEV_F32,
                            {big, 4096}, {NULL, 0}, {other, 0}, 0, 0};
  EXPECT_OK(api->matmul(q, &m));
  EXPECT_ERR(api->matmul(q, NULL), QIAO_DEV_INVALID_ARGUMENT, "args is NULL");
  EXPECT_ERR(api->matmul(NULL, &m), QIAO_DEV_INVALID_ARGUMENT, "queue");
  qiao_dev_matmul_args e = m;
  e.struct_size = 8;
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "struct_size");
  e = m, e.w_dtype = (qiao_dev_dtype)QIAO_DEV_DTYPE_COUNT; /* the first of a later version */
  /* an unknown dtype value is an unclaimed pair (device-abi.md §6, §10.1) */
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_UNSUPPORTED, "matmul: w_dtype 17 is not a dtype");
  e = m, e.w_dtype = QIAO_DEV_I32;
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_UNSUPPORTED, "w_dtype I32");
  e = m, e.w_dtype = QIAO_DEV_Q8_0, e.k = 48;
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "multiple of 32");
  e = m, e.x.buffer = NULL;
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "matmul: x buffer is NULL");
  e = m, e.bias = (qiao_dev_ref){NULL, 8};
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "bias");
  e = m, e.n = 3, e.out = (qiao_dev_ref){small, 0};
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT,
             "matmul: out needs 96 bytes at offset 0 but its buffer has 64");
  e = m, e.out = (qiao_dev_ref){small, 4};
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "out needs");
  e = m, e.x.offset = 2;
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "aligned");
  e = m, e.n = (uint64_t)1 << 62, e.k = (uint64_t)1 << 62;
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "overflows");
  e = m, e.n = (uint64_t)1 << 40;
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "x needs");
  e = m, e.out = (qiao_dev_ref){big, 256};
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  uint64_t fake[16] = {0};
  e = m, e.w.buffer = (qiao_dev_buffer *)(void *)fake;
  EXPECT_ERR(api->matmul(q, &e), QIAO_DEV_BAD_HANDLE, "matmul: w buffer");
  EXPECT_ERR(api->matmul((qiao_dev_queue *)(void *)fake, &m), QIAO_DEV_BAD_HANDLE, "queue");

  /* embed: ids are device data, checked at run time */
  int32_t ids[3] = {0, 12, -1};
  EXPECT_OK(api->upload(q, (qiao_dev_ref){small, 0}, ids, sizeof(ids)));
  qiao_dev_embed_args em = {sizeof(em), 1, 12, 32, QIAO_DEV_Q4_0, {big, 0}, {small, 0}, {other, 0}};
  EXPECT_OK(api->embed(q, &em));
  em.n_tokens = 2;
  EXPECT_ASYNC_ERR(api->embed(q, &em), QIAO_DEV_INVALID_ARGUMENT, "embed: ids[1] = 12 >= vocab 12");
  em.ids.offset = 8, em.n_tokens = 1;
  EXPECT_ASYNC_ERR(api->embed(q, &em), QIAO_DEV_INVALID_ARGUMENT, "ids[0] = -1 is negative");

  /* kv_write */
  int32_t slots[2] = {3, 16};
  EXPECT_OK(api->upload(q, (qiao_dev_ref){small, 16}, slots, sizeof(slots)));
  qiao_dev_kv_write_args kv = {sizeof(kv), 1,         8,           16,         QIAO_DEV_F16,
                               {big, 0},   {big, 64}, {small, 16}, {other, 0}, {other, 1024}};
  EXPECT_OK(api->kv_write(q, &kv));
  kv.n_tokens = 2;
  EXPECT_ASYNC_ERR(api->kv_write(q, &kv), QIAO_DEV_INVALID_ARGUMENT,
                   "kv_write: slots[1] = 16 >= n_slots 16");
  kv.n_tokens = 1, kv.cache_dtype = QIAO_DEV_BF16;
  EXPECT_ERR(api->kv_write(q, &kv), QIAO_DEV_UNSUPPORTED, "cache_dtype BF16");
  kv.cache_dtype = QIAO_DEV_F16, kv.v_cache = (qiao_dev_ref){other, 128};
  EXPECT_ERR(api->kv_write(q, &kv), QIAO_DEV_INVALID_ARGUMENT, "overlaps");

  /* attention: 2 sequences x 4 blocks of 4 slots; 12 blocks in the cache */
  int32_t table[8] = {0, 1, 2, 3, 4, 5, 6, 99};
  int32_t tseq[1] = {1}, tpos[1] = {13};
  qiao_dev_buffer *tb = buf(t, table, sizeof(table)), *sb = buf(t, tseq, 4), *pb = buf(t, tpos, 4);
  qiao_dev_attention_args at = {sizeof(at), 1,          4,
                                2,          8,          2,
                                4,          4,          48,
                                0,          0.3f,       QIAO_DEV_F32,
                                {big, 0},   {other, 0}, {other, 8192},
                                {tb, 0},    {sb, 0},    {pb, 0},
                                {big, 1024}};
  EXPECT_ASYNC_ERR(api->attention(q, &at), QIAO_DEV_INVALID_ARGUMENT,
                   "attention: block_table[1,3] = 99 >= n_blocks 12");
  table[7] = 7;
  EXPECT_OK(api->upload(q, (qiao_dev_ref){tb, 0}, table, sizeof(table)));
  EXPECT_OK(api->attention(q, &at));
  at.window = 2; /* only block 3 is read */
  table[4] = -5;
  EXPECT_OK(api->upload(q, (qiao_dev_ref){tb, 0}, table, sizeof(table)));
  EXPECT_OK(api->attention(q, &at));
  at.window = 0;
  EXPECT_ASYNC_ERR(api->attention(q, &at), QIAO_DEV_INVALID_ARGUMENT,
                   "block_table[1,0] = -5 is negative");
  at.n_kv_heads = 3;
  EXPECT_ERR(api->attention(q, &at), QIAO_DEV_INVALID_ARGUMENT, "n_kv_heads 3");
  at.n_kv_heads = 0;
  EXPECT_ERR(api->attention(q, &at), QIAO_DEV_INVALID_ARGUMENT, "n_kv_heads 0");
  at.n_kv_heads = 2, at.n_seqs = 1;
  EXPECT_ASYNC_ERR(api->attention(q, &at), QIAO_DEV_INVALID_ARGUMENT, "token_seq[0] = 1");
  at.n_seqs = 2, at.max_blocks_per_seq = 3;
  EXPECT_ASYNC_ERR(api->attention(q, &at), QIAO_DEV_INVALID_ARGUMENT, "max_blocks_per_seq 3");
  at.max_blocks_per_seq = 4, at.block_size = 0;
  EXPECT_ERR(api->attention(q, &at), QIAO_DEV_INVALID_ARGUMENT, "block_size");
  at.block_size = 4;
  tpos[0] = -1;
  EXPECT_OK(api->upload(q, (qiao_dev_ref){pb, 0}, tpos, 4));
  EXPECT_ASYNC_ERR(api->attention(q, &at), QIAO_DEV_INVALID_ARGUMENT, "token_pos[0] = -1");
  at.cache_dtype = QIAO_DEV_Q8_0;
  EXPECT_ERR(api->attention(q, &at), QIAO_DEV_UNSUPPORTED, "cache_dtype Q8_0");

  /* rope */
  qiao_dev_rope_args r = {sizeof(r),  1,          2,       8, 8, QIAO_DEV_ROPE_NORMAL,
                          {other, 0}, {small, 0}, {big, 0}};
  EXPECT_OK(api->rope(q, &r));
  r.rot_dim = 7;
  EXPECT_ERR(api->rope(q, &r), QIAO_DEV_INVALID_ARGUMENT, "rot_dim 7");
  r.rot_dim = 10;
  EXPECT_ERR(api->rope(q, &r), QIAO_DEV_INVALID_ARGUMENT, "rot_dim 10");
  r.rot_dim = 8, r.style = (qiao_dev_rope_style)5;
  EXPECT_ERR(api->rope(q, &r), QIAO_DEV_INVALID_ARGUMENT, "style 5");

  /* matmul_experts */
  int32_t eids[2] = {7, 8};
  EXPECT_OK(api->upload(q, (qiao_dev_ref){small, 32}, eids, sizeof(eids)));
  qiao_dev_matmul_experts_args me = {sizeof(me),  1,           2,         8,        32,
                                     4,           0,           0,         {big, 0}, QIAO_DEV_Q8_0,
                                     {big, 1024}, {small, 32}, {other, 0}};
  EXPECT_ASYNC_ERR(api->matmul_experts(q, &me), QIAO_DEV_INVALID_ARGUMENT,
                   "matmul_experts: ids[0,1] = 8 >= n_experts 8");
  me.k = 1;
  EXPECT_OK(api->matmul_experts(q, &me));
  me.n_experts = (uint64_t)1 << 62;
  EXPECT_ERR(api->matmul_experts(q, &me), QIAO_DEV_INVALID_ARGUMENT, NULL);

  /* moe_gate, argmax, rmsnorm, moe_combine */
  qiao_dev_moe_gate_args g = {sizeof(g), 1, 8, 0, 1, {big, 0}, {other, 0}, {other, 64}};
  EXPECT_ERR(api->moe_gate(q, &g), QIAO_DEV_INVALID_ARGUMENT, "k 0");
  g.k = 9;
  EXPECT_ERR(api->moe_gate(q, &g), QIAO_DEV_INVALID_ARGUMENT, "k 9");
  g.k = 2, g.weights = (qiao_dev_ref){other, 4};
  EXPECT_ERR(api->moe_gate(q, &g), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  qiao_dev_argmax_args am = {sizeof(am), 1, 0, {big, 0}, {other, 0}};
  EXPECT_ERR(api->argmax(q, &am), QIAO_DEV_INVALID_ARGUMENT, "cols 0");
  qiao_dev_rmsnorm_args rn = {sizeof(rn), 2, 16, 1e-6f, {big, 0}, {big, 4096}, {big, 4}};
  EXPECT_ERR(api->rmsnorm(q, &rn), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  rn.out = rn.x;
  EXPECT_OK(api->rmsnorm(q, &rn));
  rn.eps = -1.0f;
  EXPECT_ERR(api->rmsnorm(q, &rn), QIAO_DEV_INVALID_ARGUMENT, "eps");
  qiao_dev_moe_combine_args mc = {sizeof(mc), 2, 3, 16, 0, {big, 0}, {small, 0}, {big, 128}};
  EXPECT_ERR(api->moe_combine(q, &mc), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  qiao_dev_swiglu_args sw = {sizeof(sw), 16, {big, 0}, {big, 64}, {big, 32}};
  EXPECT_ERR(api->swiglu(q, &sw), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  EXPECT_ERR(api->swiglu(q, NULL), QIAO_DEV_INVALID_ARGUMENT, "swiglu: args is NULL");

  /* Two device-data errors before a synchronize: the first is reported. */
  em.ids.offset = 0, em.n_tokens = 2;
  EXPECT_OK(api->embed(q, &em));
  em.ids.offset = 8, em.n_tokens = 1;
  EXPECT_OK(api->embed(q, &em));
  EXPECT_ERR(api->queue_synchronize(q), QIAO_DEV_INVALID_ARGUMENT, "ids[1] = 12");
  EXPECT_OK(api->queue_synchronize(q));

  /* A dimension of 0 is no work, but every check still runs (device-abi.md
   * §7, §11.3): a required operand names a buffer even when it has 0 bytes,
   * and only the optional bias may be {NULL, 0}. */
  qiao_dev_matmul_args none = {sizeof(none), 0,         64,       8, {big, 0}, QIAO_DEV_Q8_0,
                               {big, 0},     {NULL, 0}, {big, 0}, 0, 0};
  EXPECT_OK(api->matmul(q, &none));
  none.w_dtype = QIAO_DEV_F32, none.m = 0;
  EXPECT_OK(api->matmul(q, &none));
  none.x = (qiao_dev_ref){NULL, 0};
  EXPECT_ERR(api->matmul(q, &none), QIAO_DEV_INVALID_ARGUMENT, "matmul: x buffer is NULL");
  EXPECT_OK(api->upload(q, (qiao_dev_ref){big, 0}, NULL, 0));
  EXPECT_ERR(api->upload(q, (qiao_dev_ref){NULL, 0}, NULL, 0), QIAO_DEV_INVALID_ARGUMENT,
             "upload: dst buffer is NULL");
  qiao_dev_add_args add0 = {sizeof(add0), 0, {big, 0}, {big, 0}, {big, 0}};
  EXPECT_OK(api->add(q, &add0));
  add0.a = (qiao_dev_ref){NULL, 0};
  EXPECT_ERR(api->add(q, &add0), QIAO_DEV_INVALID_ARGUMENT, "add: a buffer is NULL");

  qiao_dev_buffer *all[] = {big, small, other, tb, sb, pb};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    api->buffer_destroy(all[i]);
}

/* The thread pool under many quick dispatches from two host threads, each
 * with its own queue on one device (the device serializes its pool). */
typedef struct stress {
  env *t;
  qiao_dev_buffer *x, *w, *out;
  const float *want;
  int bad;
} stress;

static void *stress_main(void *arg) {
  stress *s = arg;
  qiao_dev_queue *q = NULL;
  if (api->queue_create(s->t->device, &q) != NULL) {
    s->bad = 1;
    return NULL;
  }
  float got[512];
  for (int i = 0; i < 300 && !s->bad; i++) {
    qiao_dev_matmul_args m = {sizeof(m), 1,         64,          512, ref(s->x), QIAO_DEV_F16,
                              ref(s->w), {NULL, 0}, ref(s->out), 0,   0};
    qiao_dev_error *e = api->matmul(q, &m);
    if (e == NULL) e = api->download(q, got, ref(s->out), sizeof(got));
    if (e != NULL || memcmp(got, s->want, sizeof(got)) != 0) s->bad = 1;
    api->error_destroy(e);
  }
  api->queue_destroy(q);
  return NULL;
}

static void test_pool_stress(void) {
  env t;
  EXPECT(env_open(&t, "auto", 4));
  float *x = rnd_floats(64, 1.0f), *wf = rnd_floats(512 * 64, 1.0f), want[512];
  uint8_t *w = encode(QIAO_DEV_F16, wf, 512, 64);
  stress s[2];
  for (int i = 0; i < 2; i++) {
    s[i] = (stress){&t, buf(&t, x, 64 * 4), buf(&t, w, 512 * 128), buf(&t, NULL, 512 * 4), want, 0};
  }
  qiao_dev_matmul_args m = {
      sizeof(m),     1, 64, 512, ref(s[0].x), QIAO_DEV_F16, ref(s[0].w), {NULL, 0},
      ref(s[0].out), 0, 0};
  EXPECT_OK(api->matmul(t.queue, &m));
  get(&t, want, s[0].out, sizeof(want));
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    EXPECT(pthread_create(&th[i], NULL, stress_main, &s[i]) == 0);
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    EXPECT(!s[i].bad);
    api->buffer_destroy(s[i].x), api->buffer_destroy(s[i].w), api->buffer_destroy(s[i].out);
  }
  env_close(&t);
  free(x), free(wf), free(w);
}

int main(void) {
  api = qiao_cpu_get_api();
  test_table();
  test_plugin();
  test_backend_and_device();
  test_pool_stress();
  env t;
  EXPECT(env_open(&t, "auto", 2));
  test_buffers_and_movement(&t);
  test_op_errors(&t);
  uint64_t n, bytes;
  qiao__cpu_live_buffers(t.device, &n, &bytes);
  EXPECT(n == 0 && bytes == 0);
  env_close(&t);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
