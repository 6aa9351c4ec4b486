/* The ABI level's argument rules (docs/spec/device-abi.md §3, §6, §7,
 * §11.3): NULL arguments, handles the backend did not create, the options
 * structs and runtime_abi_major, the order in which an op's checks run,
 * shape rules, zero-sized work (count, reduction and range dimensions),
 * read-only wrapped memory, alignment, and asynchronous errors. Each check's
 * name is the one §12.6 of the spec lists beside the MUST it covers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/abi_check.h"

#define INVALID QIAO_DEV_INVALID_ARGUMENT
#define BAD QIAO_DEV_BAD_HANDLE
#define UNSUP QIAO_DEV_UNSUPPORTED
#define F32 QIAO_DEV_F32

enum { BUF = 4096, POISON = 0x7b };

static bool claimed(const actx *x, qiao_dev_op op, qiao_dev_dtype dt) {
  return x->report->claimed[op][dt];
}

/* The code a call with a failing argument check of op (F32) gets. */
static qiao_dev_code op_code(const actx *x, qiao_dev_op op, qiao_dev_dtype dt, qiao_dev_code c) {
  return qiao__cf_unless_unclaimed(x, op, dt, c);
}

/* The call must succeed. Destroys the error. */
static bool expect_ok(actx *x, const char *name, qiao_dev_error *e, const char *what) {
  bool ok = e == NULL;
  qiao__cf_check(x, name, ok, "%s: %s", what, e ? x->api->error_message(e) : "ok");
  if (e) x->api->error_destroy(e);
  return ok;
}

/* Fills the buffer with POISON bytes (and synchronizes). */
static bool poison(actx *x, qiao_dev_buffer *b) {
  unsigned char host[BUF];
  memset(host, POISON, sizeof(host));
  qiao_dev_error *e = x->api->upload(x->dev->queue, (qiao_dev_ref){b, 0}, host, BUF);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e) x->api->error_destroy(e);
  return e == NULL;
}

/* Whether every byte of the buffer outside [lo, hi) still holds POISON. */
static bool untouched(actx *x, qiao_dev_buffer *b, uint64_t lo, uint64_t hi) {
  unsigned char host[BUF];
  qiao__cf_drain(x);
  qiao_dev_error *e = x->api->download(x->dev->queue, host, (qiao_dev_ref){b, 0}, BUF);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e) {
    x->api->error_destroy(e);
    return false;
  }
  for (uint64_t i = 0; i < BUF; i++)
    if ((i < lo || i >= hi) && host[i] != POISON) return false;
  return true;
}

static qiao_dev_ref at(qiao_dev_buffer *b, uint64_t offset) {
  return (qiao_dev_ref){b, offset};
}

/* ---- backend_open and the options structs (§3) ------------------------------ */

static void options(actx *x) {
  const qiao_dev_api *api = x->api;
  qiao_dev_backend *b = NULL;
  const qiao_dev_backend_options o = {sizeof(o), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
  /* a backend opened where the call should have failed is closed again */
#define CLOSE_IF_OPENED()                                                                          \
  do {                                                                                             \
    if (b != NULL) api->backend_close(b);                                                          \
    b = NULL;                                                                                      \
  } while (0)
  qiao__cf_expect(x, "backend_open_null_options", api->backend_open(NULL, &b), INVALID);
  CLOSE_IF_OPENED();
  qiao__cf_expect(x, "backend_open_null_out", api->backend_open(&o, NULL), INVALID);
  qiao_dev_backend_options small = o;
  small.struct_size = 8;
  qiao__cf_expect(x, "backend_open_options_below_1_0", api->backend_open(&small, &b), INVALID);
  CLOSE_IF_OPENED();
  qiao_dev_backend_options other = o;
  other.runtime_abi_major = QIAO_DEVICE_ABI_MAJOR + 1;
  qiao__cf_expect(x, "backend_open_other_major_refused", api->backend_open(&other, &b), UNSUP);
  qiao__cf_check(x, "backend_open_failed_out_untouched", b == NULL, "out-parameter %s",
                 b ? "was written" : "untouched");
  CLOSE_IF_OPENED();
#undef CLOSE_IF_OPENED
  struct {
    qiao_dev_backend_options o;
    unsigned char future[16];
  } newer;
  memset(&newer, 0, sizeof(newer));
  newer.o = o;
  newer.o.struct_size = sizeof(newer);
  newer.o.runtime_abi_minor = QIAO_DEVICE_ABI_MINOR + 7;
  qiao_dev_error *e = api->backend_open(&newer.o, &b);
  qiao__cf_check(x, "backend_open_newer_minor_accepted", e == NULL && b != NULL,
                 "runtime ABI %u.%u, struct_size %zu: %s", QIAO_DEVICE_ABI_MAJOR,
                 QIAO_DEVICE_ABI_MINOR + 7, sizeof(newer), e ? api->error_message(e) : "ok");
  if (e) api->error_destroy(e);
  if (b != NULL) api->backend_close(b);

  qiao_dev_backend *handle = qiao_backend_handle(x->dev->backend);
  qiao_dev_device_options dso = {.struct_size = 8};
  qiao_dev_device *d = NULL;
  qiao__cf_expect(x, "device_open_options_below_1_0",
                  api->device_open(handle, x->device_index, &dso, &d), INVALID);
  if (d != NULL) api->device_close(d);
}

/* ---- NULL arguments (§6) ------------------------------------------------------ */

static void null_arguments(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_backend *handle = qiao_backend_handle(x->dev->backend);
  qiao_dev_device *dev = x->dev->device;
  qiao_dev_queue *q = x->dev->queue;
  uint32_t count = 0, s = 0;
  qiao_dev_buffer *none = NULL;
  unsigned char host[16] = {0};
  qiao__cf_expect(x, "device_count_null_backend", api->device_count(NULL, &count), INVALID);
  qiao__cf_expect(x, "device_count_null_out", api->device_count(handle, NULL), INVALID);
  qiao__cf_expect(x, "device_get_properties_null_props",
                  api->device_get_properties(handle, x->device_index, NULL), INVALID);
  qiao__cf_expect(x, "device_open_null_backend", api->device_open(NULL, 0, NULL, NULL), INVALID);
  qiao__cf_expect(x, "device_open_null_out", api->device_open(handle, x->device_index, NULL, NULL),
                  INVALID);
  qiao__cf_expect(x, "op_supported_null_device", api->op_supported(NULL, 0, F32, &s), INVALID);
  qiao__cf_expect(x, "op_supported_null_out", api->op_supported(dev, 0, F32, NULL), INVALID);
  qiao__cf_expect(x, "buffer_create_null_device", api->buffer_create(NULL, 64, &none), INVALID);
  qiao__cf_expect(x, "buffer_create_null_out", api->buffer_create(dev, 64, NULL), INVALID);
  qiao__cf_expect(x, "queue_create_null_device", api->queue_create(NULL, NULL), INVALID);
  qiao__cf_expect(x, "queue_create_null_out", api->queue_create(dev, NULL), INVALID);
  qiao__cf_expect(x, "queue_synchronize_null_queue", api->queue_synchronize(NULL), INVALID);
  qiao__cf_expect(x, "transfer_null_queue", api->upload(NULL, at(b, 0), host, 4), INVALID);
  qiao__cf_expect(x, "download_null_destination", api->download(q, NULL, at(b, 0), 4), INVALID);
  qiao_dev_add_args add = {sizeof(add), 4, at(b, 0), at(b, 16), at(b, 32)};
  qiao__cf_expect(x, "op_null_queue", api->add(NULL, &add), INVALID);
  if (x->host_memory && api->buffer_wrap_host != NULL)
    qiao__cf_expect(x, "buffer_wrap_host_null_host", api->buffer_wrap_host(dev, NULL, 64, &none),
                    INVALID);
  qiao__cf_check(x, "null_argument_out_untouched", none == NULL, "out-parameter %s",
                 none ? "was written" : "untouched");
  if (none != NULL) api->buffer_destroy(none);
}

/* ---- Handles the backend did not create (§6 BAD_HANDLE) ---------------------- */

static void foreign_handles(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  unsigned char host[16] = {0};
  /* 256 readable bytes: zeros, and a pattern */
  void *fakes[2] = {calloc(1, 256), malloc(256)};
  if (fakes[0] == NULL || fakes[1] == NULL) goto done;
  memset(fakes[1], 0xa5, 256);
  for (int i = 0; i < 2; i++) {
    void *f = fakes[i];
    char name[96];
    uint32_t count = 0, s = 0;
    qiao_dev_device *d = NULL;
    qiao_dev_buffer *nb = NULL;
    qiao_dev_queue *nq = NULL;
    const char *kind = i == 0 ? "zeros" : "pattern";
#define FOREIGN(what, call)                                                                        \
  snprintf(name, sizeof(name), "foreign_%s_handle_%s", what, kind);                                \
  qiao__cf_expect(x, name, call, BAD)
    FOREIGN("backend", api->device_count((qiao_dev_backend *)f, &count));
    FOREIGN("backend_device_open", api->device_open((qiao_dev_backend *)f, 0, NULL, &d));
    FOREIGN("device", api->op_supported((qiao_dev_device *)f, 0, F32, &s));
    FOREIGN("device_buffer_create", api->buffer_create((qiao_dev_device *)f, 64, &nb));
    FOREIGN("device_queue_create", api->queue_create((qiao_dev_device *)f, &nq));
    FOREIGN("queue", api->queue_synchronize((qiao_dev_queue *)f));
    FOREIGN("queue_upload", api->upload((qiao_dev_queue *)f, at(b, 0), host, 4));
    FOREIGN("buffer", api->upload(q, at((qiao_dev_buffer *)f, 0), host, 4));
#undef FOREIGN
    qiao__cf_check(
        x, i == 0 ? "foreign_handle_out_untouched_zeros" : "foreign_handle_out_untouched_pattern",
        d == NULL && nb == NULL && nq == NULL, "out-parameters %s",
        d || nb || nq ? "were written" : "untouched");
  }
  /* one of its own handles of another kind */
  qiao__cf_expect(x, "handle_of_another_kind",
                  api->upload(q, at((qiao_dev_buffer *)(void *)q, 0), host, 4), BAD);
  qiao_dev_add_args add = {sizeof(add), 4, at((qiao_dev_buffer *)fakes[0], 0), at(b, 16),
                           at(b, 32)};
  qiao__cf_expect(x, "op_foreign_buffer_handle", api->add(q, &add),
                  op_code(x, QIAO_DEV_OP_ADD, F32, BAD));
  /* a buffer of another device (the same device opened again) */
  qiao_dev_device *other = NULL;
  qiao_dev_buffer *ob = NULL;
  qiao_dev_error *e =
      api->device_open(qiao_backend_handle(x->dev->backend), x->device_index, NULL, &other);
  if (e == NULL) e = api->buffer_create(other, 64, &ob);
  if (e == NULL)
    qiao__cf_expect(x, "buffer_of_another_device", api->upload(q, at(ob, 0), host, 4), INVALID);
  else
    qiao__cf_check(x, "buffer_of_another_device", false,
                   "could not open the device a second time: %s", api->error_message(e));
  if (e) api->error_destroy(e);
  qiao__cf_drain(x);
  api->buffer_destroy(ob);
  api->device_close(other);
done:
  free(fakes[0]);
  free(fakes[1]);
}

/* ---- Shape rules, enum values and the order of the checks (§6, §11.3) -------- */

static void shape_rules(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  qiao_dev_attention_args at0 = {.struct_size = sizeof(at0),
                                 .n_tokens = 1,
                                 .n_heads = 2,
                                 .n_kv_heads = 1,
                                 .head_dim = 4,
                                 .n_seqs = 1,
                                 .max_blocks_per_seq = 1,
                                 .block_size = 4,
                                 .n_slots = 4,
                                 .scale = 1,
                                 .cache_dtype = F32,
                                 .q = at(b, 0),
                                 .k_cache = at(b, 512),
                                 .v_cache = at(b, 1024),
                                 .block_table = at(b, 1536),
                                 .token_seq = at(b, 2048),
                                 .token_pos = at(b, 2560),
                                 .out = at(b, 3072)};
  qiao_dev_code att = op_code(x, QIAO_DEV_OP_ATTENTION, F32, INVALID);
  qiao_dev_attention_args a = at0;
  a.block_size = 0;
  qiao__cf_expect(x, "attention_block_size_0", api->attention(q, &a), att);
  a.n_tokens = 0;
  qiao__cf_expect(x, "attention_block_size_0_without_work", api->attention(q, &a), att);
  a = at0;
  a.n_kv_heads = 0;
  qiao__cf_expect(x, "attention_n_kv_heads_0", api->attention(q, &a), att);
  a.n_heads = 0;
  qiao__cf_expect(x, "attention_n_kv_heads_0_without_work", api->attention(q, &a), att);
  a = at0;
  a.cache_dtype = QIAO_DEV_BF16; /* not defined for attention */
  qiao__cf_expect(x, "op_undefined_dtype_unsupported", api->attention(q, &a), UNSUP);

  qiao_dev_code am = op_code(x, QIAO_DEV_OP_ARGMAX, F32, INVALID);
  qiao_dev_argmax_args arg = {sizeof(arg), 1, 0, at(b, 0), at(b, 512)};
  qiao__cf_expect(x, "argmax_cols_0", api->argmax(q, &arg), am);
  arg.rows = 0;
  qiao__cf_expect(x, "argmax_cols_0_without_work", api->argmax(q, &arg), am);
  arg.cols = (uint64_t)INT32_MAX + 1;
  qiao__cf_expect(x, "argmax_cols_above_int32_max", api->argmax(q, &arg), am);

  qiao_dev_code mg = op_code(x, QIAO_DEV_OP_MOE_GATE, F32, INVALID);
  qiao_dev_moe_gate_args gate = {.struct_size = sizeof(gate),
                                 .n_tokens = 1,
                                 .n_experts = 4,
                                 .k = 0,
                                 .logits = at(b, 0),
                                 .ids = at(b, 512),
                                 .weights = at(b, 1024)};
  qiao__cf_expect(x, "moe_gate_k_0", api->moe_gate(q, &gate), mg);
  gate.n_tokens = 0;
  qiao__cf_expect(x, "moe_gate_k_0_without_work", api->moe_gate(q, &gate), mg);

  qiao_dev_rope_args rope = {.struct_size = sizeof(rope),
                             .n_tokens = 1,
                             .n_heads = 1,
                             .head_dim = 4,
                             .rot_dim = 4,
                             .style = (qiao_dev_rope_style)7,
                             .x = at(b, 0),
                             .positions = at(b, 512),
                             .freqs = at(b, 1024)};
  qiao__cf_expect(x, "rope_invalid_style", api->rope(q, &rope),
                  op_code(x, QIAO_DEV_OP_ROPE, F32, INVALID));

  qiao_dev_rmsnorm_args rms = {sizeof(rms), 1, 8, -1.0f, at(b, 0), at(b, 512), at(b, 1024)};
  qiao_dev_code rc = op_code(x, QIAO_DEV_OP_RMSNORM, F32, INVALID);
  qiao__cf_expect(x, "rmsnorm_negative_eps", api->rmsnorm(q, &rms), rc);
  rms.eps = NAN;
  qiao__cf_expect(x, "rmsnorm_nan_eps", api->rmsnorm(q, &rms), rc);

  qiao_dev_matmul_args mm0 = {.struct_size = sizeof(mm0),
                              .n = 1,
                              .k = 32,
                              .m = 2,
                              .x = at(b, 0),
                              .w_dtype = F32,
                              .w = at(b, 512),
                              .out = at(b, 1024)};
  qiao_dev_code mc = op_code(x, QIAO_DEV_OP_MATMUL, F32, INVALID);
  qiao_dev_matmul_args mm = mm0;
  mm.bias = (qiao_dev_ref){NULL, 8};
  qiao__cf_expect(x, "optional_operand_null_with_offset", api->matmul(q, &mm), mc);
  if (x->api->abi_minor >= 2) {
    mm = mm0;
    mm.x_precision = 9;
    qiao__cf_expect(x, "matmul_invalid_x_precision", api->matmul(q, &mm), mc);
  }
  if (x->api->abi_minor >= 5) { /* padding before 1.5 (§15.1) */
    qiao_dev_matmul_experts_args me = {.struct_size = sizeof(me),
                                       .n_tokens = 1,
                                       .k = 1,
                                       .n_experts = 1,
                                       .in_dim = 32,
                                       .out_dim = 2,
                                       .x_precision = 2,
                                       .x = at(b, 0),
                                       .w_dtype = F32,
                                       .w = at(b, 512),
                                       .ids = at(b, 1024),
                                       .out = at(b, 1536)};
    qiao__cf_expect(x, "matmul_experts_invalid_x_precision", api->matmul_experts(q, &me),
                    op_code(x, QIAO_DEV_OP_MATMUL_EXPERTS, F32, INVALID));
  }
  mm = mm0;
  mm.w_dtype = (qiao_dev_dtype)0x4000; /* no version defines it */
  qiao__cf_expect(x, "op_unknown_dtype_unsupported", api->matmul(q, &mm), UNSUP);
  qiao_dev_embed_args emb = {.struct_size = sizeof(emb),
                             .n_tokens = 1,
                             .vocab = 1,
                             .dim = 4,
                             .table_dtype = QIAO_DEV_I32, /* not defined for embed */
                             .table = at(b, 0),
                             .ids = at(b, 512),
                             .out = at(b, 1024)};
  qiao__cf_expect(x, "op_undefined_table_dtype_unsupported", api->embed(q, &emb), UNSUP);

  /* which error wins (§6): the queue, then the args, then the capability,
   * then the shape rules, then the operands */
  void *fake = calloc(1, 256);
  if (fake != NULL) {
    qiao__cf_expect(x, "order_queue_before_args", api->matmul((qiao_dev_queue *)fake, NULL), BAD);
    mm = mm0;
    mm.struct_size = 8;
    mm.w_dtype = (qiao_dev_dtype)0x4000;
    qiao__cf_expect(x, "order_args_before_capability", api->matmul(q, &mm), INVALID);
    mm = mm0;
    mm.w_dtype = (qiao_dev_dtype)0x4000;
    mm.n = mm.k = (uint64_t)1 << 40; /* overflows */
    mm.x = (qiao_dev_ref){NULL, 0};
    mm.w = at((qiao_dev_buffer *)fake, 0);
    qiao__cf_expect(x, "order_capability_before_shape", api->matmul(q, &mm), UNSUP);
    a = at0;
    a.n_kv_heads = 0;
    a.q = at((qiao_dev_buffer *)fake, 0);
    a.out = (qiao_dev_ref){NULL, 0};
    qiao__cf_expect(x, "order_shape_before_operands", api->attention(q, &a), att);
    free(fake);
  }
  qiao__cf_drain(x);
}

/* ---- Wrapped host memory is read-only (§4) and its alignment (§7) ------------- */

static void read_only(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  if (!x->host_memory || api->buffer_wrap_host == NULL) return;
  qiao_dev_queue *q = x->dev->queue;
  enum { N = 4096 };
  unsigned char *host = aligned_alloc(4096, 2 * N), *copy = malloc(N);
  qiao_dev_buffer *w = NULL, *w64 = NULL;
  qiao_dev_error *e = NULL;
  if (host == NULL || copy == NULL) goto done;
  for (int i = 0; i < 2 * N; i++)
    host[i] = (unsigned char)(i * 7 + 3);
  memcpy(copy, host, N);
  e = api->buffer_wrap_host(x->dev->device, host, N, &w);
  if (!qiao__cf_check(x, "buffer_wrap_host_page_aligned", e == NULL, "%s",
                      e ? api->error_message(e) : "ok"))
    goto done;
  qiao_dev_code ac = op_code(x, QIAO_DEV_OP_ADD, F32, INVALID);
  qiao_dev_add_args add = {sizeof(add), 4, at(b, 0), at(b, 16), at(w, 64)};
  qiao__cf_expect(x, "op_output_in_wrapped_buffer_refused", api->add(q, &add), ac);
  add.n = 0;
  qiao__cf_expect(x, "op_output_in_wrapped_buffer_refused_without_work", api->add(q, &add), ac);
  qiao_dev_matmul_args mm = {.struct_size = sizeof(mm),
                             .n = 1,
                             .k = 32,
                             .m = 2,
                             .x = at(b, 0),
                             .w_dtype = F32,
                             .w = at(b, 512),
                             .out = at(w, 0)};
  qiao__cf_expect(x, "matmul_output_in_wrapped_buffer_refused", api->matmul(q, &mm),
                  op_code(x, QIAO_DEV_OP_MATMUL, F32, INVALID));
  qiao__cf_expect(x, "upload_zero_bytes_into_wrapped_refused", api->upload(q, at(w, 0), copy, 0),
                  INVALID);
  qiao__cf_drain(x);
  qiao__cf_check(x, "wrapped_memory_unchanged_by_refused_writes", memcmp(host, copy, N) == 0,
                 "the wrapped host memory %s",
                 memcmp(host, copy, N) == 0 ? "was not written" : "was written");
  /* any 32-byte aligned pointer is accepted (the engine wraps each tensor
   * in place when its data is 32-byte aligned) */
  e = api->buffer_wrap_host(x->dev->device, host + 32, N, &w64);
  qiao__cf_check(x, "buffer_wrap_host_32_byte_aligned", e == NULL, "host + 32: %s",
                 e ? api->error_message(e) : "ok");
done:
  if (e) api->error_destroy(e);
  qiao__cf_drain(x);
  api->buffer_destroy(w64);
  api->buffer_destroy(w);
  free(host);
  free(copy);
}

/* ---- Alignment of operand offsets (§7) ------------------------------------- */

static void alignment(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  /* transfers are byte-granular */
  const unsigned char in[5] = {1, 2, 3, 4, 5};
  unsigned char back[7] = {0};
  qiao_dev_error *e = api->upload(q, at(b, 3), in, 5);
  if (e == NULL) e = api->download(q, back, at(b, 2), 7);
  if (e == NULL) e = api->queue_synchronize(q);
  qiao__cf_check(x, "transfers_byte_granular", e == NULL && memcmp(back + 1, in, 5) == 0,
                 "5 bytes uploaded at offset 3, read back from offset 2: %s",
                 e                              ? api->error_message(e)
                 : memcmp(back + 1, in, 5) == 0 ? "equal"
                                                : "differ");
  if (e) api->error_destroy(e);
  if (!claimed(x, QIAO_DEV_OP_ADD, F32)) return;
  /* an F32 operand at an offset that is not a multiple of 4: refused, or
   * read right */
  float a[4] = {1, 2, 3, 4}, bb[4] = {10, 20, 30, 40}, out[4] = {0};
  e = api->upload(q, at(b, 2), a, sizeof(a));
  if (e == NULL) e = api->upload(q, at(b, 64), bb, sizeof(bb));
  if (e == NULL) e = api->queue_synchronize(q);
  if (e != NULL) {
    qiao__cf_check(x, "misaligned_operand_refused_or_right", false, "%s", api->error_message(e));
    api->error_destroy(e);
    return;
  }
  qiao_dev_add_args add = {sizeof(add), 4, at(b, 2), at(b, 64), at(b, 128)};
  e = api->add(q, &add);
  if (e != NULL) {
    qiao__cf_expect(x, "misaligned_operand_refused_or_right", e, INVALID);
  } else {
    e = api->download(q, out, at(b, 128), sizeof(out));
    if (e == NULL) e = api->queue_synchronize(q);
    bool right = e == NULL && out[0] == 11 && out[1] == 22 && out[2] == 33 && out[3] == 44;
    qiao__cf_check(x, "misaligned_operand_refused_or_right", right,
                   "add with a at offset 2 was accepted and gave %g %g %g %g (expected 11 22 33 "
                   "44)%s%s",
                   (double)out[0], (double)out[1], (double)out[2], (double)out[3], e ? ": " : "",
                   e ? api->error_message(e) : "");
    if (e) api->error_destroy(e);
  }
  qiao__cf_drain(x);
}

/* ---- Zero-sized work (§7, §11.3) ------------------------------------------- */

static void zero_transfers(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  unsigned char host[4] = {0};
  qiao__cf_expect(x, "transfer_zero_bytes_beyond_end", api->upload(q, at(b, BUF + 1), host, 0),
                  INVALID);
  qiao__cf_expect(x, "transfer_zero_bytes_null_buffer",
                  api->upload(q, (qiao_dev_ref){NULL, 0}, host, 0), INVALID);
  qiao_dev_error *e = api->upload(q, at(b, 0), NULL, 0);
  if (e == NULL) e = api->download(q, NULL, at(b, 0), 0);
  if (e == NULL) e = api->copy(q, at(b, 0), at(b, BUF), 0);
  if (e == NULL) e = api->queue_synchronize(q);
  expect_ok(x, "transfer_zero_bytes_null_host", e, "0-byte upload, download and copy");
}

/* One op call with a count dimension of 0: it must succeed and write nothing. */
static void zero_count(actx *x, qiao_dev_buffer *b, qiao_dev_op op, const char *suffix,
                       qiao_dev_error *(*call)(actx *, qiao_dev_buffer *)) {
  if (!claimed(x, op, F32)) return;
  char name[64];
  snprintf(name, sizeof(name), "zero_count_%s%s", qiao_dev_op_name(op), suffix);
  if (!poison(x, b)) {
    qiao__cf_check(x, name, false, "could not fill the buffer");
    return;
  }
  qiao_dev_error *e = call(x, b);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e != NULL) {
    qiao__cf_check(x, name, false, "failed: %s", x->api->error_message(e));
    x->api->error_destroy(e);
    return;
  }
  bool same = untouched(x, b, 0, 0);
  qiao__cf_check(x, name, same, "succeeded and %s", same ? "wrote nothing" : "wrote to a buffer");
}

static qiao_dev_error *z_embed(actx *x, qiao_dev_buffer *b) {
  qiao_dev_embed_args a = {sizeof(a), 0, 4, 32, F32, at(b, 0), at(b, 512), at(b, 1024)};
  return x->api->embed(x->dev->queue, &a);
}
static qiao_dev_error *z_matmul_n(actx *x, qiao_dev_buffer *b) {
  qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                            .n = 0,
                            .k = 32,
                            .m = 3,
                            .x = at(b, 0),
                            .w_dtype = F32,
                            .w = at(b, 512),
                            .bias = at(b, 1024),
                            .out = at(b, 1536)};
  return x->api->matmul(x->dev->queue, &a);
}
static qiao_dev_error *z_matmul_m(actx *x, qiao_dev_buffer *b) {
  qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                            .n = 2,
                            .k = 32,
                            .m = 0,
                            .x = at(b, 0),
                            .w_dtype = F32,
                            .w = at(b, 512),
                            .bias = at(b, 1024),
                            .out = at(b, 1536),
                            .accumulate = 1};
  return x->api->matmul(x->dev->queue, &a);
}
static qiao_dev_error *z_rmsnorm(actx *x, qiao_dev_buffer *b) {
  qiao_dev_rmsnorm_args a = {sizeof(a), 0, 8, 1e-5f, at(b, 0), at(b, 512), at(b, 1024)};
  return x->api->rmsnorm(x->dev->queue, &a);
}
static qiao_dev_error *z_rope(actx *x, qiao_dev_buffer *b) {
  qiao_dev_rope_args a = {sizeof(a),          0,        2,          8,          8,
                          QIAO_DEV_ROPE_NEOX, at(b, 0), at(b, 512), at(b, 1024)};
  return x->api->rope(x->dev->queue, &a);
}
static qiao_dev_error *z_kv_write(actx *x, qiao_dev_buffer *b) {
  qiao_dev_kv_write_args a = {sizeof(a), 0,          8,           4,           F32,
                              at(b, 0),  at(b, 512), at(b, 1024), at(b, 1536), at(b, 2048)};
  return x->api->kv_write(x->dev->queue, &a);
}
static qiao_dev_error *z_attention(actx *x, qiao_dev_buffer *b) {
  qiao_dev_attention_args a = {.struct_size = sizeof(a),
                               .n_tokens = 0,
                               .n_heads = 2,
                               .n_kv_heads = 1,
                               .head_dim = 8,
                               .n_seqs = 1,
                               .max_blocks_per_seq = 1,
                               .block_size = 4,
                               .n_slots = 4,
                               .scale = 1,
                               .cache_dtype = F32,
                               .q = at(b, 0),
                               .k_cache = at(b, 512),
                               .v_cache = at(b, 1024),
                               .block_table = at(b, 1536),
                               .token_seq = at(b, 2048),
                               .token_pos = at(b, 2560),
                               .out = at(b, 3072)};
  return x->api->attention(x->dev->queue, &a);
}
static qiao_dev_error *z_swiglu(actx *x, qiao_dev_buffer *b) {
  qiao_dev_swiglu_args a = {sizeof(a), 0, at(b, 0), at(b, 512), at(b, 1024)};
  return x->api->swiglu(x->dev->queue, &a);
}
static qiao_dev_error *z_add(actx *x, qiao_dev_buffer *b) {
  qiao_dev_add_args a = {sizeof(a), 0, at(b, 0), at(b, 512), at(b, 1024)};
  return x->api->add(x->dev->queue, &a);
}
static qiao_dev_error *z_argmax(actx *x, qiao_dev_buffer *b) {
  qiao_dev_argmax_args a = {sizeof(a), 0, 4, at(b, 0), at(b, 512)};
  return x->api->argmax(x->dev->queue, &a);
}
static qiao_dev_error *z_moe_gate(actx *x, qiao_dev_buffer *b) {
  qiao_dev_moe_gate_args a = {sizeof(a), 0, 4, 2, 1, at(b, 0), at(b, 512), at(b, 1024)};
  return x->api->moe_gate(x->dev->queue, &a);
}
static qiao_dev_error *z_matmul_experts(actx *x, qiao_dev_buffer *b) {
  qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                    .n_tokens = 0,
                                    .k = 2,
                                    .n_experts = 2,
                                    .in_dim = 32,
                                    .out_dim = 3,
                                    .x = at(b, 0),
                                    .w_dtype = F32,
                                    .w = at(b, 512),
                                    .ids = at(b, 1536),
                                    .out = at(b, 2048)};
  return x->api->matmul_experts(x->dev->queue, &a);
}
static qiao_dev_error *z_moe_combine(actx *x, qiao_dev_buffer *b) {
  qiao_dev_moe_combine_args a = {sizeof(a), 0, 2, 8, 1, at(b, 0), at(b, 512), at(b, 1024)};
  return x->api->moe_combine(x->dev->queue, &a);
}

/* Uploads floats to b at offset (no synchronize). */
static qiao_dev_error *put(actx *x, qiao_dev_buffer *b, uint64_t offset, const void *v,
                           uint64_t bytes) {
  return x->api->upload(x->dev->queue, at(b, offset), v, bytes);
}

/* A reduction dimension of 0 follows the formula: the empty sum is 0. */
static void zero_reductions(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  const float bias[3] = {1, 2, 3}, nan3[6] = {NAN, NAN, NAN, NAN, NAN, NAN},
              prev[6] = {10, 20, 30, 40, 50, 60};
  float out[6];
  if (claimed(x, QIAO_DEV_OP_MATMUL, F32)) {
    qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                              .n = 2,
                              .k = 0,
                              .m = 3,
                              .x = at(b, 0),
                              .w_dtype = F32,
                              .w = at(b, 512),
                              .bias = at(b, 1024),
                              .out = at(b, 1536)};
    qiao_dev_error *e = put(x, b, 1024, bias, sizeof(bias));
    if (e == NULL) e = put(x, b, 1536, nan3, sizeof(nan3));
    if (e == NULL) e = api->matmul(q, &a);
    if (e == NULL) e = api->download(q, out, at(b, 1536), sizeof(out));
    if (e == NULL) e = api->queue_synchronize(q);
    bool ok = e == NULL;
    for (int i = 0; ok && i < 6; i++)
      ok = out[i] == bias[i % 3];
    a.accumulate = 1;
    if (ok) e = put(x, b, 1536, prev, sizeof(prev));
    if (ok && e == NULL) e = api->matmul(q, &a);
    if (ok && e == NULL) e = api->download(q, out, at(b, 1536), sizeof(out));
    if (ok && e == NULL) e = api->queue_synchronize(q);
    for (int i = 0; ok && i < 6; i++)
      ok = e == NULL && out[i] == prev[i] + bias[i % 3];
    qiao__cf_check(x, "zero_reduction_matmul_k", ok,
                   "matmul with k=0 must give out = (accumulate ? out : 0) + bias%s%s",
                   e ? ": " : "", e ? api->error_message(e) : "");
    if (e) api->error_destroy(e);
  }
  if (claimed(x, QIAO_DEV_OP_MOE_COMBINE, F32)) {
    qiao_dev_moe_combine_args a = {sizeof(a), 2, 0, 3, 0, at(b, 0), at(b, 512), at(b, 1536)};
    qiao_dev_error *e = put(x, b, 1536, nan3, sizeof(nan3));
    if (e == NULL) e = api->moe_combine(q, &a);
    if (e == NULL) e = api->download(q, out, at(b, 1536), sizeof(out));
    if (e == NULL) e = api->queue_synchronize(q);
    bool ok = e == NULL;
    for (int i = 0; ok && i < 6; i++)
      ok = out[i] == 0;
    qiao__cf_check(x, "zero_reduction_moe_combine_k", ok,
                   "moe_combine with k=0 must write zeros%s%s", e ? ": " : "",
                   e ? api->error_message(e) : "");
    if (e) api->error_destroy(e);
  }
  if (claimed(x, QIAO_DEV_OP_MATMUL_EXPERTS, F32)) {
    const int32_t ids[2] = {1, 0};
    qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                      .n_tokens = 1,
                                      .k = 2,
                                      .n_experts = 2,
                                      .in_dim = 0,
                                      .out_dim = 3,
                                      .x = at(b, 0),
                                      .w_dtype = F32,
                                      .w = at(b, 512),
                                      .ids = at(b, 1024),
                                      .out = at(b, 1536)};
    qiao_dev_error *e = put(x, b, 1024, ids, sizeof(ids));
    if (e == NULL) e = put(x, b, 1536, nan3, sizeof(nan3));
    if (e == NULL) e = api->matmul_experts(q, &a);
    if (e == NULL) e = api->download(q, out, at(b, 1536), sizeof(out));
    if (e == NULL) e = api->queue_synchronize(q);
    bool ok = e == NULL;
    for (int i = 0; ok && i < 6; i++)
      ok = out[i] == 0;
    qiao__cf_check(x, "zero_reduction_matmul_experts_in_dim", ok,
                   "matmul_experts with in_dim=0 must write zeros%s%s", e ? ": " : "",
                   e ? api->error_message(e) : "");
    if (e) api->error_destroy(e);
  }
  qiao__cf_drain(x);
}

/* The inputs of the range and index checks, not poison (a write of poison
 * over poison would not show): floats at [0, 64) and [256, 320) (q, k, v),
 * the index 0 at 512, 1024, 2048 and 2560 (ids, slots, token_seq,
 * token_pos, block_table). */
static qiao_dev_error *fill_inputs(actx *x, qiao_dev_buffer *b) {
  float v[16];
  for (int i = 0; i < 16; i++)
    v[i] = 1.5f + (float)i;
  int32_t zero = 0;
  qiao_dev_error *e = put(x, b, 0, v, sizeof(v));
  if (e == NULL) e = put(x, b, 256, v, sizeof(v));
  if (e == NULL) e = put(x, b, 512, &zero, 4);
  if (e == NULL) e = put(x, b, 1024, &zero, 4);
  if (e == NULL) e = put(x, b, 2048, &zero, 4);
  if (e == NULL) e = put(x, b, 2560, &zero, 4);
  /* the host data lives in this frame: it must stay valid until the queue
   * is synchronized (§4) */
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  return e;
}

/* Whether every byte outside the inputs of fill_inputs (and the extra input
 * range [in_lo, in_hi)) and outside the outputs [out_lo, out_hi) still holds
 * POISON. *detail gets why not. */
static bool only_outputs_written(actx *x, qiao_dev_buffer *b, uint64_t in_lo, uint64_t in_hi,
                                 uint64_t out_lo, uint64_t out_hi, const char **detail) {
  unsigned char host[BUF];
  qiao_dev_error *e = x->api->download(x->dev->queue, host, at(b, 0), BUF);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e != NULL) {
    x->api->error_destroy(e);
    *detail = "the buffer could not be read back after it";
    return false;
  }
  for (uint64_t i = 0; i < BUF; i++) {
    bool input = i < 64 || (i >= 256 && i < 320) || (i >= 512 && i < 516) ||
                 (i >= 1024 && i < 1028) || (i >= 2048 && i < 2052) || (i >= 2560 && i < 2564) ||
                 (i >= in_lo && i < in_hi);
    if (!input && (i < out_lo || i >= out_hi) && host[i] != POISON) {
      *detail = "bytes outside the outputs changed";
      return false;
    }
  }
  *detail = "nothing written outside the outputs";
  return true;
}

/* A range dimension of 0 (vocab, n_slots, n_seqs) makes every index out of
 * range (§6): an error now or at synchronize, or success; never a write
 * outside the outputs, and the queue stays usable. */
static void zero_range(actx *x, qiao_dev_buffer *b, const char *name, qiao_dev_op op,
                       uint64_t out_lo, uint64_t out_hi,
                       qiao_dev_error *(*call)(actx *, qiao_dev_buffer *)) {
  if (!claimed(x, op, F32)) return;
  if (!poison(x, b)) {
    qiao__cf_check(x, name, false, "could not fill the buffer");
    return;
  }
  qiao_dev_error *e = fill_inputs(x, b);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e != NULL) {
    qiao__cf_check(x, name, false, "%s", x->api->error_message(e));
    x->api->error_destroy(e);
    return;
  }
  qiao_dev_error *now = call(x, b), *later = x->api->queue_synchronize(x->dev->queue);
  bool codes = (now == NULL || x->api->error_code(now) == INVALID) &&
               (later == NULL || x->api->error_code(later) == INVALID);
  char how[256];
  snprintf(how, sizeof(how), "call: %s; synchronize: %s", now ? x->api->error_message(now) : "ok",
           later ? x->api->error_message(later) : "ok");
  if (now) x->api->error_destroy(now);
  if (later) x->api->error_destroy(later);
  const char *detail = "";
  bool same = only_outputs_written(x, b, 0, 0, out_lo, out_hi, &detail);
  qiao__cf_check(x, name, codes && same, "%s; %s", how, detail);
}

static qiao_dev_error *r_embed(actx *x, qiao_dev_buffer *b) {
  qiao_dev_embed_args a = {sizeof(a), 1, 0, 32, F32, at(b, 0), at(b, 512), at(b, 1536)};
  return x->api->embed(x->dev->queue, &a);
}
static qiao_dev_error *r_kv_write(actx *x, qiao_dev_buffer *b) {
  qiao_dev_kv_write_args a = {sizeof(a), 1,          8,          0,           F32,
                              at(b, 0),  at(b, 256), at(b, 512), at(b, 1536), at(b, 2048)};
  return x->api->kv_write(x->dev->queue, &a);
}
static qiao_dev_error *r_attention(actx *x, qiao_dev_buffer *b) {
  qiao_dev_attention_args a = {.struct_size = sizeof(a),
                               .n_tokens = 1,
                               .n_heads = 2,
                               .n_kv_heads = 1,
                               .head_dim = 8,
                               .n_seqs = 0,
                               .max_blocks_per_seq = 1,
                               .block_size = 4,
                               .n_slots = 4,
                               .scale = 1,
                               .cache_dtype = F32,
                               .q = at(b, 0),
                               .k_cache = at(b, 3200),
                               .v_cache = at(b, 3400),
                               .block_table = at(b, 1024),
                               .token_seq = at(b, 2048),
                               .token_pos = at(b, 2560),
                               .out = at(b, 3072)};
  return x->api->attention(x->dev->queue, &a);
}

/* ---- Asynchronous errors (§6) ------------------------------------------------ */

static void async_errors(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  if (!claimed(x, QIAO_DEV_OP_KV_WRITE, F32)) return;
  if (!poison(x, b)) return;
  const int32_t slots[2] = {4 + 3, -1}; /* n_slots is 4: both out of range */
  qiao_dev_kv_write_args a = {sizeof(a), 2,          8,          4,           F32,
                              at(b, 0),  at(b, 256), at(b, 512), at(b, 1536), at(b, 2048)};
  qiao_dev_error *e = fill_inputs(x, b);
  if (e == NULL) e = put(x, b, 512, slots, sizeof(slots));
  if (e == NULL) e = api->queue_synchronize(q);
  if (e != NULL) {
    qiao__cf_check(x, "async_error_cleared_by_synchronize", false, "%s", api->error_message(e));
    api->error_destroy(e);
    return;
  }
  qiao_dev_error *now = api->kv_write(q, &a), *first = api->queue_synchronize(q);
  qiao_dev_error *second = api->queue_synchronize(q);
  bool codes = (now == NULL || api->error_code(now) == INVALID) &&
               (first == NULL || api->error_code(first) == INVALID);
  qiao__cf_check(x, "out_of_range_index_code", codes,
                 "kv_write with slots 7 and -1 of 4: call %s, synchronize %s",
                 now ? qiao__cf_code_name(api->error_code(now)) : "ok",
                 first ? qiao__cf_code_name(api->error_code(first)) : "ok");
  qiao__cf_check(x, "async_error_cleared_by_synchronize", second == NULL,
                 "a second synchronize: %s", second ? api->error_message(second) : "ok");
  if (now) api->error_destroy(now);
  if (first) api->error_destroy(first);
  if (second) api->error_destroy(second);
  /* the caches must be unchanged */
  const char *detail = "";
  bool same = only_outputs_written(x, b, 512, 520, 0, 0, &detail);
  qiao__cf_check(x, "out_of_range_index_writes_nothing", same, "kv_write with slots 7 and -1: %s",
                 detail);
  float one = 1.0f, back = 0;
  e = api->upload(q, at(b, 8), &one, 4);
  if (e == NULL) e = api->download(q, &back, at(b, 8), 4);
  if (e == NULL) e = api->queue_synchronize(q);
  qiao__cf_check(x, "queue_usable_after_async_error", e == NULL && back == 1.0f, "%s",
                 e ? api->error_message(e) : "ok");
  if (e) api->error_destroy(e);
}

void qiao__cf_abi_rules(actx *x) {
  const qiao_dev_api *api = x->api;
  qiao_dev_buffer *b = NULL;
  options(x);
  qiao_dev_error *e = api->buffer_create(x->dev->device, BUF, &b);
  if (e != NULL) {
    qiao__cf_check(x, "argument_rules", false, "buffer_create(%d): %s", BUF, api->error_message(e));
    api->error_destroy(e);
    return;
  }
  null_arguments(x, b);
  foreign_handles(x, b);
  shape_rules(x, b);
  read_only(x, b);
  alignment(x, b);
  zero_transfers(x, b);
  zero_count(x, b, QIAO_DEV_OP_EMBED, "", z_embed);
  zero_count(x, b, QIAO_DEV_OP_MATMUL, "_n", z_matmul_n);
  zero_count(x, b, QIAO_DEV_OP_MATMUL, "_m", z_matmul_m);
  zero_count(x, b, QIAO_DEV_OP_RMSNORM, "", z_rmsnorm);
  zero_count(x, b, QIAO_DEV_OP_ROPE, "", z_rope);
  zero_count(x, b, QIAO_DEV_OP_KV_WRITE, "", z_kv_write);
  zero_count(x, b, QIAO_DEV_OP_ATTENTION, "", z_attention);
  zero_count(x, b, QIAO_DEV_OP_SWIGLU, "", z_swiglu);
  zero_count(x, b, QIAO_DEV_OP_ADD, "", z_add);
  zero_count(x, b, QIAO_DEV_OP_ARGMAX, "", z_argmax);
  zero_count(x, b, QIAO_DEV_OP_MOE_GATE, "", z_moe_gate);
  zero_count(x, b, QIAO_DEV_OP_MATMUL_EXPERTS, "", z_matmul_experts);
  zero_count(x, b, QIAO_DEV_OP_MOE_COMBINE, "", z_moe_combine);
  zero_reductions(x, b);
  zero_range(x, b, "zero_range_embed_vocab", QIAO_DEV_OP_EMBED, 1536, 1536 + 128, r_embed);
  zero_range(x, b, "zero_range_kv_write_n_slots", QIAO_DEV_OP_KV_WRITE, 0, 0, r_kv_write);
  zero_range(x, b, "zero_range_attention_n_seqs", QIAO_DEV_OP_ATTENTION, 3072, 3072 + 64,
             r_attention);
  async_errors(x, b);
  qiao__cf_drain(x);
  api->buffer_destroy(b);
  qiao__cf_abi_rules_1_4(x);
}
