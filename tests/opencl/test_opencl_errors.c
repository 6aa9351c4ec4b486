/* The OpenCL plugin's contract beyond the math: its table, properties,
 * capabilities, handle and argument validation, and out-of-range indices in
 * device data reported by queue_synchronize (and the queue usable afterwards). */
#include <stddef.h>

#include "opencl_harness.h"

static dev D;

static void test_table(const qiao_dev_api *api) {
  CHECK(api->struct_size == sizeof(qiao_dev_api));
  CHECK(api->abi_major == QIAO_DEVICE_ABI_MAJOR);
  CHECK(strcmp(api->name, "opencl") == 0);
  CHECK(api->buffer_wrap_host == NULL); /* no QIAO_DEV_FLAG_HOST_MEMORY */
  /* every other entry is set */
  const unsigned char *first = (const unsigned char *)&api->error_code;
  const unsigned char *end = (const unsigned char *)api + sizeof(*api);
  for (const unsigned char *p = first; p < end; p += sizeof(void (*)(void))) {
    void (*fn)(void);
    memcpy(&fn, p, sizeof(fn));
    if (p != (const unsigned char *)&api->buffer_wrap_host) CHECK(fn != NULL);
  }
  qiao_dev_backend *b = NULL;
  qiao_dev_backend_options bad = {sizeof(bad), QIAO_DEVICE_ABI_MAJOR + 1, 0};
  dev tmp = {.label = "opencl", .api = api};
  DEV_ERR(&tmp, api->backend_open(&bad, &b), QIAO_DEV_UNSUPPORTED, "ABI major");
  CHECK(b == NULL);
}

static void test_properties(void) {
  qiao_dev_properties p;
  memset(&p, 0, sizeof(p));
  p.struct_size = sizeof(p);
  DEV_OK(&D, D.api->device_get_properties(D.backend, 0, &p));
  CHECK(p.name[0] != '\0');
  CHECK(p.memory_bytes > 0 && p.max_buffer_bytes > 0 && p.compute_units > 0);
  CHECK(p.flags == QIAO_DEV_FLAG_BATCH_INVARIANT); /* no host memory; batch-invariant mode */
  /* an older, smaller struct: nothing past it is written */
  memset(&p, 0x7f, sizeof(p));
  p.struct_size = offsetof(qiao_dev_properties, vendor);
  DEV_OK(&D, D.api->device_get_properties(D.backend, 0, &p));
  CHECK(p.name[0] != 0x7f && (unsigned char)p.vendor[0] == 0x7f && p.flags == 0x7f7f7f7fu);
  DEV_ERR(&D, D.api->device_get_properties(D.backend, 1000, &p), QIAO_DEV_INVALID_ARGUMENT,
          "out of range");
  qiao_dev_device *dv = NULL;
  DEV_ERR(&D, D.api->device_open(D.backend, 1000, NULL, &dv), QIAO_DEV_INVALID_ARGUMENT,
          "out of range");
}

static void test_capabilities(void) {
  for (int op = 0; op < QIAO_DEV_OP_COUNT + 2; op++)
    for (int t = 0; t < QIAO_DEV_DTYPE_COUNT + 1; t++) {
      uint32_t got = 7, want = 0;
      /* the block types of 1.3, FP8 of 1.4 and IQ4_NL / IQ4_XS of 1.5 */
      int weights = t <= QIAO_DEV_Q4_0 || (t >= QIAO_DEV_Q4_K && t <= QIAO_DEV_IQ4_XS);
      int cache = t == QIAO_DEV_F32 || t == QIAO_DEV_F16;
      switch (op) {
      case QIAO_DEV_OP_EMBED:
      case QIAO_DEV_OP_MATMUL:
      case QIAO_DEV_OP_MATMUL_EXPERTS: want = (uint32_t)weights; break;
      case QIAO_DEV_OP_KV_WRITE:
      case QIAO_DEV_OP_ATTENTION:
      case QIAO_DEV_OP_LATENT_WRITE: /* (1.4) */
      case QIAO_DEV_OP_ATTENTION_LATENT: want = (uint32_t)cache; break;
      case QIAO_DEV_OP_COUNT:
      case QIAO_DEV_OP_COUNT + 1: want = 0; break;
      default: want = t == QIAO_DEV_F32;
      }
      DEV_OK(&D, D.api->op_supported(D.device, (qiao_dev_op)op, (qiao_dev_dtype)t, &got));
      if (got != want) {
        fprintf(stderr, "op_supported(%d, %d) = %u, want %u\n", op, t, got, want);
        test_failures++;
      }
    }
}

static void test_memory(void) {
  qiao_dev_buffer *b = NULL;
  DEV_ERR(&D, D.api->buffer_create(D.device, 0, &b), QIAO_DEV_INVALID_ARGUMENT, "size");
  DEV_ERR(&D, D.api->buffer_create(D.device, UINT64_MAX, &b), QIAO_DEV_OUT_OF_MEMORY, NULL);
  CHECK(b == NULL);
  D.api->buffer_destroy(NULL);
  D.api->queue_destroy(NULL);
  D.api->error_destroy(NULL);

  struct {
    uint32_t magic;
    char rest[60];
  } fake = {0, {0}};
  unsigned char host[64] = {0}, back[64];
  for (int i = 0; i < 64; i++)
    host[i] = (unsigned char)i;
  DEV_ERR(&D, D.api->upload(D.queue, (qiao_dev_ref){(qiao_dev_buffer *)&fake, 0}, host, 4),
          QIAO_DEV_BAD_HANDLE, "not an OpenCL buffer");
  DEV_ERR(&D, D.api->queue_synchronize((qiao_dev_queue *)&fake), QIAO_DEV_BAD_HANDLE, NULL);
  DEV_ERR(&D, D.api->buffer_create((qiao_dev_device *)&fake, 4, &b), QIAO_DEV_BAD_HANDLE, NULL);

  qiao_dev_ref r = up(&D, NULL, 32); /* bytes [PAD, PAD + 32) of a PAD + 32 + GUARD buffer */
  qiao_dev_ref whole = {r.buffer, 0};
  uint64_t size = PAD + 32 + GUARD;
  DEV_ERR(&D, D.api->upload(D.queue, (qiao_dev_ref){r.buffer, size - 3}, host, 4),
          QIAO_DEV_INVALID_ARGUMENT, "exceed");
  DEV_ERR(&D, D.api->upload(D.queue, (qiao_dev_ref){r.buffer, UINT64_MAX}, host, 4),
          QIAO_DEV_INVALID_ARGUMENT, "exceed");
  DEV_ERR(&D, D.api->download(D.queue, back, (qiao_dev_ref){r.buffer, 8}, UINT64_MAX - 4),
          QIAO_DEV_INVALID_ARGUMENT, "exceed");
  DEV_ERR(&D, D.api->upload(D.queue, whole, NULL, 4), QIAO_DEV_INVALID_ARGUMENT, "NULL");
  DEV_ERR(&D, D.api->copy(D.queue, (qiao_dev_ref){r.buffer, 4}, whole, 8),
          QIAO_DEV_INVALID_ARGUMENT, "overlap");
  /* round trip through upload, copy and download */
  DEV_OK(&D, D.api->upload(D.queue, (qiao_dev_ref){r.buffer, 0}, host, 16));
  DEV_OK(&D, D.api->copy(D.queue, (qiao_dev_ref){r.buffer, 40}, whole, 16));
  DEV_OK(&D, D.api->download(D.queue, back, (qiao_dev_ref){r.buffer, 40}, 16));
  DEV_OK(&D, D.api->queue_synchronize(D.queue));
  CHECK(memcmp(back, host, 16) == 0);
  DEV_OK(&D, D.api->upload(D.queue, whole, host, 0)); /* size 0: nothing to do */
  /* restore the guard pattern the harness checks */
  unsigned char pat[PAD + 32 + GUARD];
  memset(pat, 0xa5, sizeof(pat));
  DEV_OK(&D, D.api->upload(D.queue, whole, pat, sizeof(pat)));
  dev_reset(&D);
}

static void test_arguments(void) {
  float x[64] = {0};
  qiao_dev_ref rx = up(&D, x, sizeof(x)), rw = up(&D, x, sizeof(x)), ro = up(&D, NULL, sizeof(x));
  qiao_dev_matmul_args m = {.struct_size = sizeof(m),
                            .n = 1,
                            .k = 32,
                            .m = 2,
                            .x = rx,
                            .w_dtype = QIAO_DEV_F32,
                            .w = rw,
                            .out = ro};
  DEV_OK(&D, D.api->matmul(D.queue, &m));
  qiao_dev_matmul_args bad = m;
  bad.x.offset += 2;
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_INVALID_ARGUMENT, "multiple of 4");
  bad = m, bad.m = 3; /* 3 rows of 32 f32 weights exceed w */
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_INVALID_ARGUMENT, "matmul: w");
  bad = m, bad.w_dtype = QIAO_DEV_Q8_0, bad.k = 48;
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_INVALID_ARGUMENT, "multiple of the block");
  bad = m, bad.w_dtype = QIAO_DEV_I32;
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_UNSUPPORTED, NULL);
  bad = m, bad.out = rx;
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  bad = m, bad.n = UINT64_MAX / 2;
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_INVALID_ARGUMENT, "overflows");
  bad = m, bad.struct_size = sizeof(m) - 8;
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_INVALID_ARGUMENT, "struct_size");
  bad = m, bad.bias = (qiao_dev_ref){NULL, 4};
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_INVALID_ARGUMENT, "bias");
  DEV_ERR(&D, D.api->matmul(D.queue, NULL), QIAO_DEV_INVALID_ARGUMENT, NULL);

  qiao_dev_attention_args at = {.struct_size = sizeof(at),
                                .n_tokens = 1,
                                .n_heads = 2,
                                .n_kv_heads = 1,
                                .head_dim = 8,
                                .n_seqs = 1,
                                .max_blocks_per_seq = 1,
                                .block_size = 4,
                                .n_slots = 4,
                                .scale = 1,
                                .cache_dtype = QIAO_DEV_BF16,
                                .q = rx,
                                .k_cache = rw,
                                .v_cache = rw,
                                .block_table = rw,
                                .token_seq = rw,
                                .token_pos = rw,
                                .out = ro};
  DEV_ERR(&D, D.api->attention(D.queue, &at), QIAO_DEV_UNSUPPORTED, NULL);
  at.cache_dtype = QIAO_DEV_F32, at.n_kv_heads = 3;
  DEV_ERR(&D, D.api->attention(D.queue, &at), QIAO_DEV_INVALID_ARGUMENT, "n_kv_heads");
  at.n_kv_heads = 1, at.head_dim = 1024;
  DEV_ERR(&D, D.api->attention(D.queue, &at), QIAO_DEV_UNSUPPORTED, "head_dim");

  qiao_dev_moe_gate_args g = {.struct_size = sizeof(g),
                              .n_tokens = 1,
                              .n_experts = 4,
                              .k = 5,
                              .logits = rx,
                              .ids = ro,
                              .weights = rw};
  DEV_ERR(&D, D.api->moe_gate(D.queue, &g), QIAO_DEV_INVALID_ARGUMENT, "k 5");
  qiao_dev_rmsnorm_args rn = {.struct_size = sizeof(rn),
                              .rows = 1,
                              .cols = 8,
                              .eps = 1e-5f,
                              .x = rx,
                              .weight = rw,
                              .out = {rx.buffer, rx.offset + 4}};
  DEV_ERR(&D, D.api->rmsnorm(D.queue, &rn), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  qiao_dev_rope_args rp = {.struct_size = sizeof(rp),
                           .n_tokens = 1,
                           .n_heads = 1,
                           .head_dim = 4,
                           .rot_dim = 6,
                           .x = rx,
                           .positions = rw,
                           .freqs = ro};
  DEV_ERR(&D, D.api->rope(D.queue, &rp), QIAO_DEV_INVALID_ARGUMENT, "rot_dim");

  /* (1.4) the shared checks reach the new ops */
  qiao_dev_latent_write_args lw = {.struct_size = sizeof(lw),
                                   .n_tokens = 1,
                                   .latent_dim = 4,
                                   .rope_dim = 0,
                                   .n_slots = 2,
                                   .cache_dtype = QIAO_DEV_F16,
                                   .latent = rx,
                                   .rope = rw,
                                   .slots = rw,
                                   .cache = ro};
  DEV_ERR(&D, D.api->latent_write(D.queue, &lw), QIAO_DEV_INVALID_ARGUMENT, "rope_dim");
  lw.rope_dim = 2, lw.cache = rx;
  DEV_ERR(&D, D.api->latent_write(D.queue, &lw), QIAO_DEV_INVALID_ARGUMENT, "overlaps");
  qiao_dev_attention_latent_args al = {.struct_size = sizeof(al),
                                       .n_tokens = 1,
                                       .n_heads = 2,
                                       .latent_dim = 4,
                                       .rope_dim = 2,
                                       .n_seqs = 1,
                                       .max_blocks_per_seq = 1,
                                       .block_size = 4,
                                       .n_slots = 2,
                                       .scale = 1,
                                       .cache_dtype = QIAO_DEV_BF16,
                                       .q_latent = rx,
                                       .q_rope = rx,
                                       .cache = rw,
                                       .block_table = rw,
                                       .token_seq = rw,
                                       .token_pos = rw,
                                       .out = ro};
  DEV_ERR(&D, D.api->attention_latent(D.queue, &al), QIAO_DEV_UNSUPPORTED, NULL);
  al.cache_dtype = QIAO_DEV_F32, al.struct_size = sizeof(al) - 8;
  DEV_ERR(&D, D.api->attention_latent(D.queue, &al), QIAO_DEV_INVALID_ARGUMENT, "struct_size");
  qiao_dev_moe_route_args mr = {.struct_size = sizeof(mr),
                                .n_tokens = 1,
                                .n_experts = 8,
                                .k = 2,
                                .n_groups = 3,
                                .topk_groups = 1,
                                .scale = 1,
                                .logits = rx,
                                .ids = ro,
                                .weights = rw};
  DEV_ERR(&D, D.api->moe_route(D.queue, &mr), QIAO_DEV_INVALID_ARGUMENT, "n_groups");
  bad = m, bad.w_dtype = QIAO_DEV_F8_E4M3_B128, bad.k = 64; /* FP8 rows are 128-element blocks */
  DEV_ERR(&D, D.api->matmul(D.queue, &bad), QIAO_DEV_INVALID_ARGUMENT, "multiple of the block");
  dev_reset(&D);
}

/* A dimension of 0 is no work: the call succeeds (refs are still checked) and
 * writes nothing (the harness's guard check covers the operands). */
static void test_zero_dims(void) {
  float x[64];
  for (int i = 0; i < 64; i++)
    x[i] = 1.0f;
  qiao_dev_ref r = up(&D, x, sizeof(x)), o = up(&D, x, sizeof(x));
  qiao_dev_embed_args e = {.struct_size = sizeof(e),
                           .n_tokens = 0,
                           .vocab = 0,
                           .dim = 32,
                           .table_dtype = QIAO_DEV_Q8_0,
                           .table = r,
                           .ids = r,
                           .out = o};
  DEV_OK(&D, D.api->embed(D.queue, &e));
  qiao_dev_matmul_args m = {.struct_size = sizeof(m),
                            .n = 0,
                            .k = 32,
                            .m = 2,
                            .x = r,
                            .w_dtype = QIAO_DEV_Q4_0,
                            .w = r,
                            .out = o};
  DEV_OK(&D, D.api->matmul(D.queue, &m));
  m.n = 1, m.m = 0;
  DEV_OK(&D, D.api->matmul(D.queue, &m));
  qiao_dev_rmsnorm_args rn = {
      .struct_size = sizeof(rn), .rows = 3, .cols = 0, .x = r, .weight = r, .out = o};
  DEV_OK(&D, D.api->rmsnorm(D.queue, &rn));
  qiao_dev_attention_args at = {.struct_size = sizeof(at),
                                .n_tokens = 0,
                                .n_heads = 4,
                                .n_kv_heads = 2,
                                .head_dim = 8,
                                .block_size = 16,
                                .cache_dtype = QIAO_DEV_F16,
                                .q = r,
                                .k_cache = r,
                                .v_cache = r,
                                .block_table = r,
                                .token_seq = r,
                                .token_pos = r,
                                .out = o};
  DEV_OK(&D, D.api->attention(D.queue, &at));
  qiao_dev_kv_write_args kw = {.struct_size = sizeof(kw),
                               .n_tokens = 0,
                               .kv_dim = 8,
                               .cache_dtype = QIAO_DEV_F32,
                               .k = r,
                               .v = r,
                               .slots = r,
                               .k_cache = o,
                               .v_cache = {o.buffer, o.offset + 128}};
  DEV_OK(&D, D.api->kv_write(D.queue, &kw));
  qiao_dev_add_args ad = {sizeof(ad), 0, r, r, o};
  DEV_OK(&D, D.api->add(D.queue, &ad));
  qiao_dev_argmax_args am = {sizeof(am), 0, 5, r, o};
  DEV_OK(&D, D.api->argmax(D.queue, &am));
  qiao_dev_matmul_experts_args me = {.struct_size = sizeof(me),
                                     .n_tokens = 0,
                                     .k = 2,
                                     .n_experts = 0,
                                     .in_dim = 32,
                                     .out_dim = 4,
                                     .x = r,
                                     .w_dtype = QIAO_DEV_F32,
                                     .w = r,
                                     .ids = r,
                                     .out = o};
  DEV_OK(&D, D.api->matmul_experts(D.queue, &me));
  qiao_dev_moe_combine_args mc = {
      .struct_size = sizeof(mc), .n_tokens = 2, .k = 3, .dim = 0, .x = r, .weights = r, .out = o};
  DEV_OK(&D, D.api->moe_combine(D.queue, &mc));
  qiao_dev_latent_write_args lw = {.struct_size = sizeof(lw),
                                   .n_tokens = 0,
                                   .latent_dim = 8,
                                   .rope_dim = 4,
                                   .n_slots = 1,
                                   .cache_dtype = QIAO_DEV_F16,
                                   .latent = r,
                                   .rope = r,
                                   .slots = r,
                                   .cache = o};
  DEV_OK(&D, D.api->latent_write(D.queue, &lw));
  qiao_dev_attention_latent_args al = {.struct_size = sizeof(al),
                                       .n_tokens = 1,
                                       .n_heads = 0,
                                       .latent_dim = 8,
                                       .rope_dim = 4,
                                       .block_size = 16,
                                       .cache_dtype = QIAO_DEV_F32,
                                       .q_latent = r,
                                       .q_rope = r,
                                       .cache = r,
                                       .block_table = r,
                                       .token_seq = r,
                                       .token_pos = r,
                                       .out = o};
  DEV_OK(&D, D.api->attention_latent(D.queue, &al));
  qiao_dev_moe_route_args mr = {.struct_size = sizeof(mr),
                                .n_tokens = 0,
                                .n_experts = 4,
                                .k = 2,
                                .scale = 1,
                                .logits = r,
                                .ids = o,
                                .weights = {o.buffer, o.offset + 32}};
  DEV_OK(&D, D.api->moe_route(D.queue, &mr));
  float back[64];
  get(&D, o, back, sizeof(back));
  CHECK(memcmp(back, x, sizeof(x)) == 0);
  dev_reset(&D);
}

/* Indices inside device buffers: the op is accepted, synchronize reports it. */
static void test_device_checks(void) {
  float table[4 * 32], x[64];
  for (int i = 0; i < 4 * 32; i++)
    table[i] = (float)i;
  for (int i = 0; i < 64; i++)
    x[i] = 1.0f;
  int32_t bad_ids[2] = {1, 4}, good_ids[2] = {3, 0};
  qiao_dev_ref rt = up(&D, table, sizeof(table)), rbad = up(&D, bad_ids, 8),
               rgood = up(&D, good_ids, 8), ro = up(&D, NULL, 2 * 32 * 4);
  qiao_dev_embed_args e = {.struct_size = sizeof(e),
                           .n_tokens = 2,
                           .vocab = 4,
                           .dim = 32,
                           .table_dtype = QIAO_DEV_F32,
                           .table = rt,
                           .ids = rbad,
                           .out = ro};
  DEV_OK(&D, D.api->embed(D.queue, &e));
  DEV_ERR(&D, D.api->queue_synchronize(D.queue), QIAO_DEV_INVALID_ARGUMENT, "embed");
  DEV_OK(&D, D.api->queue_synchronize(D.queue)); /* reported once */
  e.ids = rgood;                                 /* the queue still works */
  DEV_OK(&D, D.api->embed(D.queue, &e));
  float out[64];
  get(&D, ro, out, sizeof(out));
  CHECK(out[0] == 96.0f && out[31] == 127.0f && out[32] == 0.0f);

  qiao_dev_matmul_experts_args me = {.struct_size = sizeof(me),
                                     .n_tokens = 1,
                                     .k = 2,
                                     .n_experts = 4,
                                     .in_dim = 32,
                                     .out_dim = 1,
                                     .x = up(&D, x, 32 * 4),
                                     .w_dtype = QIAO_DEV_F32,
                                     .w = rt,
                                     .ids = rbad,
                                     .out = up(&D, NULL, 8)};
  DEV_OK(&D, D.api->matmul_experts(D.queue, &me));
  DEV_ERR(&D, D.api->queue_synchronize(D.queue), QIAO_DEV_INVALID_ARGUMENT, "matmul_experts");

  int32_t slots[2] = {0, -1};
  qiao_dev_kv_write_args kw = {.struct_size = sizeof(kw),
                               .n_tokens = 2,
                               .kv_dim = 8,
                               .n_slots = 4,
                               .cache_dtype = QIAO_DEV_F16,
                               .k = up(&D, x, 64),
                               .v = up(&D, x, 64),
                               .slots = up(&D, slots, 8),
                               .k_cache = up(&D, NULL, 64),
                               .v_cache = up(&D, NULL, 64)};
  DEV_OK(&D, D.api->kv_write(D.queue, &kw));
  DEV_ERR(&D, D.api->queue_synchronize(D.queue), QIAO_DEV_INVALID_ARGUMENT, "kv_write");

  int32_t bt[1] = {5}, seq[1] = {0}, pos[1] = {2}, bad_seq[1] = {1};
  qiao_dev_ref rq = up(&D, x, 2 * 8 * 4), rk = up(&D, x, 4 * 8 * 4);
  qiao_dev_attention_args at = {.struct_size = sizeof(at),
                                .n_tokens = 1,
                                .n_heads = 2,
                                .n_kv_heads = 2,
                                .head_dim = 4,
                                .n_seqs = 1,
                                .max_blocks_per_seq = 1,
                                .block_size = 4,
                                .n_slots = 4,
                                .scale = 0.5f,
                                .cache_dtype = QIAO_DEV_F32,
                                .q = rq,
                                .k_cache = rk,
                                .v_cache = rk,
                                .block_table = up(&D, bt, 4),
                                .token_seq = up(&D, seq, 4),
                                .token_pos = up(&D, pos, 4),
                                .out = up(&D, NULL, 2 * 4 * 4)};
  DEV_OK(&D, D.api->attention(D.queue, &at)); /* block 5 of a 4-slot cache */
  DEV_ERR(&D, D.api->queue_synchronize(D.queue), QIAO_DEV_INVALID_ARGUMENT, "attention");
  at.token_seq = up(&D, bad_seq, 4);
  DEV_OK(&D, D.api->attention(D.queue, &at)); /* sequence 1 of 1 */
  DEV_ERR(&D, D.api->queue_synchronize(D.queue), QIAO_DEV_INVALID_ARGUMENT, "attention");
  float zero[8];
  get(&D, at.out, zero, sizeof(zero));
  for (int i = 0; i < 8; i++)
    CHECK(zero[i] == 0.0f);

  /* (1.4) the latent cache: a slot out of range is not written */
  int32_t lslots[2] = {1, 4};
  qiao_dev_latent_write_args lw = {.struct_size = sizeof(lw),
                                   .n_tokens = 2,
                                   .latent_dim = 4,
                                   .rope_dim = 2,
                                   .n_slots = 4,
                                   .cache_dtype = QIAO_DEV_F32,
                                   .latent = up(&D, x, 2 * 4 * 4),
                                   .rope = up(&D, x, 2 * 2 * 4),
                                   .slots = up(&D, lslots, 8),
                                   .cache = up(&D, NULL, 4 * 6 * 4)};
  DEV_OK(&D, D.api->latent_write(D.queue, &lw));
  DEV_ERR(&D, D.api->queue_synchronize(D.queue), QIAO_DEV_INVALID_ARGUMENT, "latent_write");
  float lc[4 * 6];
  get(&D, lw.cache, lc, sizeof(lc));
  for (int i = 0; i < 4 * 6; i++)
    CHECK(lc[i] == (i >= 6 && i < 12 ? 1.0f : 0.0f)); /* slot 1 only */
  qiao_dev_attention_latent_args al = {.struct_size = sizeof(al),
                                       .n_tokens = 1,
                                       .n_heads = 2,
                                       .latent_dim = 4,
                                       .rope_dim = 2,
                                       .n_seqs = 1,
                                       .max_blocks_per_seq = 1,
                                       .block_size = 4,
                                       .n_slots = 4,
                                       .scale = 0.5f,
                                       .cache_dtype = QIAO_DEV_F32,
                                       .q_latent = up(&D, x, 2 * 4 * 4),
                                       .q_rope = up(&D, x, 2 * 2 * 4),
                                       .cache = lw.cache,
                                       .block_table = at.block_table, /* block 5 */
                                       .token_seq = up(&D, seq, 4),
                                       .token_pos = at.token_pos,
                                       .out = up(&D, NULL, 2 * 4 * 4)};
  DEV_OK(&D, D.api->attention_latent(D.queue, &al));
  DEV_ERR(&D, D.api->queue_synchronize(D.queue), QIAO_DEV_INVALID_ARGUMENT, "attention_latent");
  al.token_seq = at.token_seq; /* sequence 1 of 1 */
  DEV_OK(&D, D.api->attention_latent(D.queue, &al));
  DEV_ERR(&D, D.api->queue_synchronize(D.queue), QIAO_DEV_INVALID_ARGUMENT, "attention_latent");
  get(&D, al.out, zero, sizeof(zero));
  for (int i = 0; i < 8; i++)
    CHECK(zero[i] == 0.0f);
  dev_reset(&D);
}

int main(void) {
  const qiao_dev_api *api = load_plugin(QIAO_OPENCL_PLUGIN);
  test_table(api);
  if (!dev_open_api(&D, "opencl", api)) return 1;
  test_properties();
  test_capabilities();
  test_memory();
  test_arguments();
  test_zero_dims();
  test_device_checks();
  dev_close(&D);
  TEST_END();
}
