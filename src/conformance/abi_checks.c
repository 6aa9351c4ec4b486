/* The ABI level (docs/spec/device-abi.md §12.2): the behaviour the header
 * promises beyond the math: version fields, property writes bounded by
 * struct_size, error paths that return errors instead of crashing, balanced
 * allocation, in-order queues, and readable error objects. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/abi_check.h"

#define check qiao__cf_check

const char *qiao__cf_code_name(qiao_dev_code code) {
  switch (code) {
  case QIAO_DEV_OK: return "OK (0)";
  case QIAO_DEV_INVALID_ARGUMENT: return "INVALID_ARGUMENT (1)";
  case QIAO_DEV_BAD_HANDLE: return "BAD_HANDLE (2)";
  case QIAO_DEV_OUT_OF_MEMORY: return "OUT_OF_MEMORY (3)";
  case QIAO_DEV_UNSUPPORTED: return "UNSUPPORTED (4)";
  case QIAO_DEV_DEVICE_LOST: return "DEVICE_LOST (5)";
  case QIAO_DEV_INTERNAL: return "INTERNAL (6)";
  default: return "not a qiao_dev_code";
  }
}

bool qiao__cf_check(actx *x, const char *name, bool ok, const char *fmt, ...) {
  char detail[512] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof(detail), fmt, ap);
  va_end(ap);
  json_object *j = json_object_new_object();
  json_object_object_add(j, "check", json_object_new_string(name));
  json_object_object_add(j, "result", json_object_new_string(ok ? "pass" : "fail"));
  if (detail[0]) json_object_object_add(j, "detail", json_object_new_string(detail));
  json_object_array_add(x->report->abi, j);
  x->report->area_abi.checks++;
  if (!ok) qiao__cf_fail(x->report, &x->report->area_abi, "abi %s: %s", name, detail);
  return ok;
}

void qiao__cf_expect2(actx *x, const char *name, qiao_dev_error *e, qiao_dev_code a,
                      qiao_dev_code b) {
  char expected[96];
  if (a == b)
    snprintf(expected, sizeof(expected), "%s", qiao__cf_code_name(a));
  else
    snprintf(expected, sizeof(expected), "%s or %s", qiao__cf_code_name(a), qiao__cf_code_name(b));
  if (e == NULL) {
    check(x, name, false, "succeeded; expected %s", expected);
    return;
  }
  qiao_dev_code code = x->api->error_code(e);
  const char *msg = x->api->error_message(e);
  bool code_ok = code == a || code == b, msg_ok = msg != NULL && msg[0] != '\0';
  if (code_ok && msg_ok)
    check(x, name, true, "%s: '%s'", qiao__cf_code_name(code), msg);
  else if (!code_ok)
    check(x, name, false, "%s, expected %s: '%s'", qiao__cf_code_name(code), expected,
          msg ? msg : "(null)");
  else
    check(x, name, false, "%s with an empty message", qiao__cf_code_name(code));
  x->api->error_destroy(e);
}

void qiao__cf_expect(actx *x, const char *name, qiao_dev_error *e, qiao_dev_code code) {
  qiao__cf_expect2(x, name, e, code, code);
}

qiao_dev_code qiao__cf_unless_unclaimed(const actx *x, qiao_dev_op op, qiao_dev_dtype dtype,
                                        qiao_dev_code code) {
  return x->report->claimed[op][dtype] ? code : QIAO_DEV_UNSUPPORTED;
}

void qiao__cf_drain(actx *x) {
  qiao_dev_error *e = x->api->queue_synchronize(x->dev->queue);
  if (e != NULL) x->api->error_destroy(e);
}

#define drain qiao__cf_drain
#define INVALID QIAO_DEV_INVALID_ARGUMENT
#define UNLESS_UNCLAIMED(op, dt, code) qiao__cf_unless_unclaimed(x, op, dt, code)
/* One code; the second only where the spec allows either. */
#define expect_error(x, name, e, a, b) qiao__cf_expect2(x, name, e, a, b)

/* ---- Version fields and properties ---------------------------------------- */

static void versions(actx *x, uint32_t device_index) {
  const qiao_dev_api *api = x->api;
  check(x, "abi_major", api->abi_major == QIAO_DEVICE_ABI_MAJOR, "abi_major %u", api->abi_major);
  check(x, "name", api->name && api->name[0] && strlen(api->name) < 64, "name '%s'",
        api->name ? api->name : "(null)");
  check(x, "version", api->version && api->version[0], "version '%s'",
        api->version ? api->version : "(null)");

  qiao_dev_backend *handle = qiao_backend_handle(x->dev->backend);
  uint32_t count = 0;
  qiao_dev_error *e = api->device_count(handle, &count);
  check(x, "device_count", e == NULL && count >= 1, "%u device(s)", count);
  if (e) api->error_destroy(e);

  /* The caller's struct_size bounds what the backend writes: give it the 1.0
   * size inside a larger, poisoned struct and check nothing beyond changed. */
  unsigned char raw[sizeof(qiao_dev_properties) + 64];
  memset(raw, 0x5A, sizeof(raw));
  qiao_dev_properties *p = (qiao_dev_properties *)(void *)raw;
  p->struct_size = sizeof(qiao_dev_properties);
  e = api->device_get_properties(handle, device_index, p);
  bool tail_ok = true;
  for (size_t i = sizeof(qiao_dev_properties); i < sizeof(raw); i++)
    tail_ok &= raw[i] == 0x5A;
  if (check(x, "device_get_properties", e == NULL, "%s", e ? api->error_message(e) : "ok")) {
    check(x, "properties_bounded_by_struct_size", tail_ok, "bytes beyond struct_size %s",
          tail_ok ? "untouched" : "were written");
    check(x, "properties_name",
          memchr(p->name, 0, sizeof(p->name)) != NULL && p->name[0] != '\0' &&
              memchr(p->vendor, 0, sizeof(p->vendor)) != NULL &&
              memchr(p->driver_version, 0, sizeof(p->driver_version)) != NULL,
          "name, vendor and driver_version are NUL-terminated, name non-empty");
    check(x, "properties_sizes",
          p->memory_bytes > 0 && p->max_buffer_bytes > 0 &&
              p->max_buffer_bytes <= p->memory_bytes && p->compute_units >= 1,
          "memory %llu, max buffer %llu, compute units %u", (unsigned long long)p->memory_bytes,
          (unsigned long long)p->max_buffer_bytes, p->compute_units);
    bool host = (p->flags & QIAO_DEV_FLAG_HOST_MEMORY) != 0;
    x->host_memory = host;
    check(x, "host_memory_wrap", !host || api->buffer_wrap_host != NULL,
          "flags 0x%x, buffer_wrap_host %s", p->flags, api->buffer_wrap_host ? "set" : "NULL");
    snprintf(x->report->device_name, sizeof(x->report->device_name), "%.127s", p->name);
  }
  if (e) api->error_destroy(e);

  /* An older runtime's smaller struct: only the fields up to memory_bytes. */
  memset(raw, 0x5A, sizeof(raw));
  p->struct_size = offsetof(qiao_dev_properties, memory_bytes);
  e = api->device_get_properties(handle, device_index, p);
  tail_ok = true;
  for (size_t i = offsetof(qiao_dev_properties, memory_bytes); i < sizeof(raw); i++)
    tail_ok &= raw[i] == 0x5A;
  check(x, "properties_smaller_struct_size", e == NULL && tail_ok,
        "struct_size %zu: %s, bytes beyond it %s", offsetof(qiao_dev_properties, memory_bytes),
        e ? api->error_message(e) : "ok", tail_ok ? "untouched" : "were written");
  if (e) api->error_destroy(e);

  qiao_dev_properties q = {.struct_size = sizeof(q)};
  expect_error(x, "properties_bad_index", api->device_get_properties(handle, count, &q),
               QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
  qiao_dev_device *d = NULL;
  qiao_dev_device_options o = {.struct_size = sizeof(o), .n_threads = 0};
  expect_error(x, "device_open_bad_index", api->device_open(handle, count + 5, &o, &d),
               QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
  check(x, "device_open_bad_index_out_untouched", d == NULL, "out-parameter %s",
        d ? "was written" : "untouched");

  /* Unknown ops and dtypes (a newer runtime asking) read as unsupported. */
  uint32_t s = 7;
  e = api->op_supported(x->dev->device, (qiao_dev_op)QIAO_DEV_OP_COUNT, QIAO_DEV_F32, &s);
  check(x, "op_supported_unknown_op", e == NULL && s == 0, "%s, supported=%u",
        e ? api->error_message(e) : "ok", s);
  if (e) api->error_destroy(e);
  s = 7;
  e = api->op_supported(x->dev->device, QIAO_DEV_OP_MATMUL, (qiao_dev_dtype)77, &s);
  check(x, "op_supported_unknown_dtype", e == NULL && s == 0, "%s, supported=%u",
        e ? api->error_message(e) : "ok", s);
  if (e) api->error_destroy(e);
}

/* ---- Wrapped host memory (devices with QIAO_DEV_FLAG_HOST_MEMORY) ---------- */

static void wrap_host(actx *x, bool host_memory) {
  const qiao_dev_api *api = x->api;
  if (!host_memory || api->buffer_wrap_host == NULL) return;
  enum { N = 1024 };
  float *host = aligned_alloc(4096, N * sizeof(float)), *back = malloc(N * sizeof(float));
  qiao_dev_buffer *wrapped = NULL, *b = NULL;
  qiao_dev_error *e = NULL;
  if (host == NULL || back == NULL) goto done;
  for (int i = 0; i < N; i++)
    host[i] = (float)i * 0.5f;
  e = api->buffer_wrap_host(x->dev->device, host, N * sizeof(float), &wrapped);
  if (!e) e = api->buffer_create(x->dev->device, N * sizeof(float), &b);
  if (!e) e = api->copy(x->dev->queue, (qiao_dev_ref){b, 0}, (qiao_dev_ref){wrapped, 0}, N * 4);
  if (!e) e = api->download(x->dev->queue, back, (qiao_dev_ref){b, 0}, N * 4);
  if (!e) e = api->queue_synchronize(x->dev->queue);
  if (check(x, "buffer_wrap_host_reads_host_memory",
            e == NULL && memcmp(host, back, N * sizeof(float)) == 0, "%s",
            e ? api->error_message(e) : "a copy out of the wrapped buffer equals the host data")) {
    /* wrapped buffers are read-only: writes are refused at enqueue time */
    expect_error(x, "buffer_wrap_host_upload_refused",
                 api->upload(x->dev->queue, (qiao_dev_ref){wrapped, 0}, back, 16),
                 QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
    expect_error(x, "buffer_wrap_host_copy_into_refused",
                 api->copy(x->dev->queue, (qiao_dev_ref){wrapped, 0}, (qiao_dev_ref){b, 0}, 16),
                 QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
    drain(x);
    bool same = true;
    for (int i = 0; i < N; i++)
      same &= host[i] == (float)i * 0.5f;
    check(x, "buffer_wrap_host_memory_unchanged", same, "the host memory %s",
          same ? "was not written" : "was written");
  }
  if (e) api->error_destroy(e);
done:
  drain(x);
  api->buffer_destroy(b);
  api->buffer_destroy(wrapped);
  free(host);
  free(back);
}

/* ---- Error paths ---------------------------------------------------------- */

static void error_paths(actx *x) {
  const qiao_dev_api *api = x->api;
  qiao_dev_device *dev = x->dev->device;
  qiao_dev_queue *q = x->dev->queue;
  qiao_dev_buffer *b = NULL, *none = NULL;

  api->error_destroy(NULL);
  api->buffer_destroy(NULL);
  api->queue_destroy(NULL);
  api->device_close(NULL);
  check(x, "destroy_accepts_null", true, "error/buffer/queue/device destroy(NULL) returned");

  expect_error(x, "buffer_create_absurd_size", api->buffer_create(dev, UINT64_MAX, &none),
               QIAO_DEV_OUT_OF_MEMORY, QIAO_DEV_INVALID_ARGUMENT);
  expect_error(x, "buffer_create_2^62", api->buffer_create(dev, (uint64_t)1 << 62, &none),
               QIAO_DEV_OUT_OF_MEMORY, QIAO_DEV_INVALID_ARGUMENT);
  check(x, "buffer_create_failed_out_untouched", none == NULL, "out-parameter %s",
        none ? "was written" : "untouched");

  qiao_dev_error *e = api->buffer_create(dev, 256, &b);
  if (!check(x, "buffer_create", e == NULL && b != NULL, "%s", e ? api->error_message(e) : "ok")) {
    if (e) api->error_destroy(e);
    return;
  }
  uint8_t host[512] = {0};
  expect_error(x, "upload_out_of_range", api->upload(q, (qiao_dev_ref){b, 200}, host, 100),
               QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
  expect_error(x, "upload_offset_overflow",
               api->upload(q, (qiao_dev_ref){b, UINT64_MAX - 3}, host, 8),
               QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
  expect_error(x, "download_out_of_range", api->download(q, host, (qiao_dev_ref){b, 0}, 257),
               QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
  expect_error(x, "copy_out_of_range",
               api->copy(q, (qiao_dev_ref){b, 0}, (qiao_dev_ref){b, 255}, 2),
               QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
  expect_error(x, "upload_null_buffer", api->upload(q, (qiao_dev_ref){NULL, 0}, host, 4),
               QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);
  expect_error(x, "upload_null_source", api->upload(q, (qiao_dev_ref){b, 0}, NULL, 4),
               QIAO_DEV_INVALID_ARGUMENT, QIAO_DEV_INVALID_ARGUMENT);

  /* ops: NULL args, a wrong struct_size, refs outside the buffer, sizes whose
   * byte counts overflow uint64 */
  expect_error(x, "op_null_args", api->add(q, NULL), QIAO_DEV_INVALID_ARGUMENT,
               QIAO_DEV_INVALID_ARGUMENT);
  qiao_dev_add_args add = {sizeof(add), 64, {b, 0}, {b, 0}, {b, 0}};
  qiao_dev_add_args bad = add;
  bad.struct_size = 8;
  expect_error(x, "op_struct_size_too_small", api->add(q, &bad), QIAO_DEV_INVALID_ARGUMENT,
               QIAO_DEV_INVALID_ARGUMENT);
  bad = add;
  bad.n = 65; /* 260 bytes > 256 */
  const qiao_dev_code add_invalid = UNLESS_UNCLAIMED(QIAO_DEV_OP_ADD, QIAO_DEV_F32, INVALID);
  expect_error(x, "op_ref_out_of_range", api->add(q, &bad), add_invalid, add_invalid);
  bad = add;
  bad.n = (uint64_t)1 << 62; /* n * 4 overflows */
  expect_error(x, "op_size_overflow", api->add(q, &bad), add_invalid, add_invalid);
  bad = add;
  bad.out.offset = UINT64_MAX - 7;
  expect_error(x, "op_offset_overflow", api->add(q, &bad), add_invalid, add_invalid);
  bad = add;
  bad.b.buffer = NULL;
  expect_error(x, "op_null_required_operand", api->add(q, &bad), add_invalid, add_invalid);
  qiao_dev_matmul_args mm = {.struct_size = sizeof(mm),
                             .n = (uint64_t)1 << 40,
                             .k = (uint64_t)1 << 40,
                             .m = 1,
                             .x = {b, 0},
                             .w_dtype = QIAO_DEV_F32,
                             .w = {b, 0},
                             .out = {b, 0}};
  qiao_dev_code code = UNLESS_UNCLAIMED(QIAO_DEV_OP_MATMUL, QIAO_DEV_F32, INVALID);
  expect_error(x, "matmul_size_overflow", api->matmul(q, &mm), code, code);
  mm = (qiao_dev_matmul_args){.struct_size = sizeof(mm),
                              .n = 1,
                              .k = 48,
                              .m = 1,
                              .x = {b, 0},
                              .w_dtype = QIAO_DEV_Q8_0,
                              .w = {b, 0},
                              .out = {b, 0}};
  code = UNLESS_UNCLAIMED(QIAO_DEV_OP_MATMUL, QIAO_DEV_Q8_0, INVALID);
  expect_error(x, "matmul_quantized_k_not_multiple_of_32", api->matmul(q, &mm), code, code);
  qiao_dev_rope_args rope = {.struct_size = sizeof(rope),
                             .n_tokens = 1,
                             .n_heads = 1,
                             .head_dim = 4,
                             .rot_dim = 3,
                             .x = {b, 0},
                             .positions = {b, 16},
                             .freqs = {b, 32}};
  code = UNLESS_UNCLAIMED(QIAO_DEV_OP_ROPE, QIAO_DEV_F32, INVALID);
  expect_error(x, "rope_odd_rot_dim", api->rope(q, &rope), code, code);
  rope.rot_dim = 8;
  expect_error(x, "rope_rot_dim_above_head_dim", api->rope(q, &rope), code, code);
  qiao_dev_attention_args at = {.struct_size = sizeof(at),
                                .n_tokens = 1,
                                .n_heads = 3,
                                .n_kv_heads = 2,
                                .head_dim = 4,
                                .n_seqs = 1,
                                .max_blocks_per_seq = 1,
                                .block_size = 4,
                                .n_slots = 4,
                                .scale = 1,
                                .cache_dtype = QIAO_DEV_F32,
                                .q = {b, 0},
                                .k_cache = {b, 0},
                                .v_cache = {b, 0},
                                .block_table = {b, 0},
                                .token_seq = {b, 0},
                                .token_pos = {b, 0},
                                .out = {b, 0}};
  code = UNLESS_UNCLAIMED(QIAO_DEV_OP_ATTENTION, QIAO_DEV_F32, INVALID);
  expect_error(x, "attention_heads_not_multiple_of_kv_heads", api->attention(q, &at), code, code);
  qiao_dev_moe_gate_args gate = {.struct_size = sizeof(gate),
                                 .n_tokens = 1,
                                 .n_experts = 2,
                                 .k = 3,
                                 .logits = {b, 0},
                                 .ids = {b, 16},
                                 .weights = {b, 32}};
  code = UNLESS_UNCLAIMED(QIAO_DEV_OP_MOE_GATE, QIAO_DEV_F32, INVALID);
  expect_error(x, "moe_gate_k_above_n_experts", api->moe_gate(q, &gate), code, code);

  /* Zero-sized work succeeds and does nothing (§11.3). */
  qiao_dev_add_args add0 = {sizeof(add0), 0, {b, 0}, {b, 0}, {b, 0}};
  qiao_dev_error *z = NULL;
  if (x->report->claimed[QIAO_DEV_OP_ADD][QIAO_DEV_F32]) {
    z = api->add(q, &add0);
    check(x, "op_zero_elements", z == NULL, "add with n=0: %s", z ? api->error_message(z) : "ok");
    if (z) api->error_destroy(z);
  }
  qiao_dev_matmul_args mm0 = {.struct_size = sizeof(mm0),
                              .n = 0,
                              .k = 32,
                              .m = 2,
                              .x = {b, 0},
                              .w_dtype = QIAO_DEV_F32,
                              .w = {b, 0},
                              .out = {b, 0}};
  if (x->report->claimed[QIAO_DEV_OP_MATMUL][QIAO_DEV_F32]) {
    z = api->matmul(q, &mm0);
    check(x, "op_zero_rows", z == NULL, "matmul with n=0: %s", z ? api->error_message(z) : "ok");
    if (z) api->error_destroy(z);
  }
  z = api->upload(q, (qiao_dev_ref){b, 256}, host, 0);
  check(x, "transfer_zero_bytes", z == NULL, "upload of 0 bytes at the end: %s",
        z ? api->error_message(z) : "ok");
  if (z) api->error_destroy(z);
  drain(x);

  /* An args struct of a newer minor version (larger struct_size, zero in the
   * fields this backend does not know) is accepted and read as 1.0 (§3). */
  if (x->report->claimed[QIAO_DEV_OP_ADD][QIAO_DEV_F32]) {
    struct {
      qiao_dev_add_args a;
      unsigned char future[40];
    } newer;
    memset(&newer, 0, sizeof(newer));
    newer.a = (qiao_dev_add_args){sizeof(newer), 4, {b, 0}, {b, 16}, {b, 32}};
    const float in[8] = {1, 2, 3, 4, 10, 20, 30, 40};
    float sum[4] = {0};
    qiao_dev_error *ne = api->upload(q, (qiao_dev_ref){b, 0}, in, sizeof(in));
    if (!ne) ne = api->add(q, &newer.a);
    if (!ne) ne = api->download(q, sum, (qiao_dev_ref){b, 32}, sizeof(sum));
    if (!ne) ne = api->queue_synchronize(q);
    check(x, "args_of_a_newer_minor_accepted",
          ne == NULL && sum[0] == 11 && sum[1] == 22 && sum[2] == 33 && sum[3] == 44,
          "add with struct_size %zu: %s", sizeof(newer), ne ? api->error_message(ne) : "ok");
    if (ne) api->error_destroy(ne);
    drain(x);
  }

  /* The queue stays usable after refused calls. */
  drain(x);
  float one = 1.0f, back = 0;
  e = api->upload(q, (qiao_dev_ref){b, 4}, &one, 4);
  if (e == NULL) e = api->download(q, &back, (qiao_dev_ref){b, 4}, 4);
  if (e == NULL) e = api->queue_synchronize(q);
  check(x, "queue_usable_after_errors", e == NULL && back == 1.0f, "%s",
        e ? api->error_message(e) : "ok");
  if (e) api->error_destroy(e);
  api->buffer_destroy(b);

  /* An op the device does not claim returns UNSUPPORTED (for the first such
   * combination among the defined ones). */
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++)
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
      if (!qiao__cf_defined((qiao_dev_op)op, (qiao_dev_dtype)dt) || x->report->claimed[op][dt] ||
          op != QIAO_DEV_OP_MATMUL ||
          api->abi_minor < qiao_dev_dtype_abi_minor((qiao_dev_dtype)dt)) /* (1.3) never passed */
        continue;
      qiao_dev_buffer *w = NULL;
      qiao_dev_error *ce = api->buffer_create(dev, 4096, &w);
      if (ce) {
        api->error_destroy(ce);
        continue;
      }
      qiao_dev_matmul_args m = {.struct_size = sizeof(m),
                                .n = 1,
                                .k = qiao__cf_row_len((qiao_dev_dtype)dt, 32, 32),
                                .m = 1,
                                .x = {w, 0},
                                .w_dtype = (qiao_dev_dtype)dt,
                                .w = {w, 256},
                                .out = {w, 2048}};
      char name[64];
      snprintf(name, sizeof(name), "unclaimed_matmul_%s_unsupported",
               qiao_dev_dtype_name((qiao_dev_dtype)dt));
      expect_error(x, name, api->matmul(q, &m), QIAO_DEV_UNSUPPORTED, QIAO_DEV_UNSUPPORTED);
      drain(x);
      api->buffer_destroy(w);
    }
}

/* ---- Allocation balance --------------------------------------------------- */

static void allocation(actx *x, uint64_t seed) {
  const qiao_dev_api *api = x->api;
  cf_rng rng = {seed ^ 0xabcdefull};
  enum { N = 256 };
  qiao_dev_buffer *bufs[N] = {0};
  qiao_dev_error *e = NULL;
  int created = 0;
  for (int round = 0; round < 4 && e == NULL; round++) {
    for (int i = 0; i < N && e == NULL; i++) {
      e = api->buffer_create(x->dev->device, 1 + qiao__cf_below(&rng, 1 << 16), &bufs[i]);
      if (e == NULL) created++;
    }
    for (int i = 0; i < N; i++) {
      api->buffer_destroy(bufs[i]);
      bufs[i] = NULL;
    }
  }
  check(x, "buffers_create_destroy_1024", e == NULL, "%d created and destroyed%s%s", created,
        e ? ": " : "", e ? api->error_message(e) : "");
  if (e) api->error_destroy(e);

  e = NULL;
  int queues = 0;
  for (int i = 0; i < 32 && e == NULL; i++) {
    qiao_dev_queue *q = NULL;
    e = api->queue_create(x->dev->device, &q);
    if (e == NULL) queues++;
    api->queue_destroy(q);
  }
  check(x, "queues_create_destroy_32", e == NULL, "%d queues%s%s", queues, e ? ": " : "",
        e ? api->error_message(e) : "");
  if (e) api->error_destroy(e);

  /* Many large-ish buffers at once, up to 64 MiB in all, then all freed, then
   * again: a leak would show as OUT_OF_MEMORY on a device with little memory. */
  e = NULL;
  for (int round = 0; round < 3 && e == NULL; round++) {
    int i = 0;
    for (; i < 64 && e == NULL; i++)
      e = api->buffer_create(x->dev->device, 1 << 20, &bufs[i]);
    for (int j = 0; j < 64; j++) {
      api->buffer_destroy(bufs[j]);
      bufs[j] = NULL;
    }
  }
  check(x, "buffers_64MiB_three_times", e == NULL, "%s", e ? api->error_message(e) : "ok");
  if (e) api->error_destroy(e);
}

/* ---- Queue ordering ------------------------------------------------------- */

/* x := 1..n; then 40 times: x = x + x (in place) interleaved with copies
 * x -> y -> x and re-uploads of a second buffer; the result is exact only if
 * everything ran in submission order. */
static void ordering(actx *x) {
  const qiao_dev_api *api = x->api;
  if (!x->report->claimed[QIAO_DEV_OP_ADD][QIAO_DEV_F32]) {
    check(x, "queue_in_order", true, "skipped: the device does not claim add f32");
    return;
  }
  qiao_dev_queue *q = x->dev->queue;
  enum { N = 1000, STEPS = 40 };
  size_t bytes = N * sizeof(float);
  qiao_dev_buffer *bx = NULL, *by = NULL, *bz = NULL;
  float *init = malloc(bytes), *ones = malloc(bytes), *ones2 = malloc(bytes), *out = malloc(bytes);
  qiao_dev_error *e = NULL;
  if (!init || !ones || !ones2 || !out) goto done;
  for (int i = 0; i < N; i++)
    init[i] = (float)(i % 97), ones[i] = 1.0f, ones2[i] = 3.0f;
  e = api->buffer_create(x->dev->device, bytes, &bx);
  if (!e) e = api->buffer_create(x->dev->device, bytes, &by);
  if (!e) e = api->buffer_create(x->dev->device, bytes, &bz);
  if (!e) e = api->upload(q, (qiao_dev_ref){bx, 0}, init, bytes);
  for (int s = 0; s < STEPS && !e; s++) {
    /* z := ones (or threes); x := x + z; y := x; x := y + y ... */
    e = api->upload(q, (qiao_dev_ref){bz, 0}, s % 2 ? ones2 : ones, bytes);
    qiao_dev_add_args a = {sizeof(a), N, {bx, 0}, {bz, 0}, {bx, 0}};
    if (!e) e = api->add(q, &a);
    if (!e) e = api->copy(q, (qiao_dev_ref){by, 0}, (qiao_dev_ref){bx, 0}, bytes);
    qiao_dev_add_args d = {sizeof(d), N, {by, 0}, {by, 0}, {bx, 0}};
    if (!e && s % 5 == 4) e = api->add(q, &d); /* doubles now and then */
  }
  if (!e) e = api->download(q, out, (qiao_dev_ref){bx, 0}, bytes);
  if (!e) e = api->queue_synchronize(q);
  if (!e) {
    int bad = -1;
    for (int i = 0; i < N && bad < 0; i++) {
      double v = init[i];
      for (int s = 0; s < STEPS; s++) {
        v += s % 2 ? 3.0 : 1.0;
        if (s % 5 == 4) v *= 2;
      }
      if ((float)v != out[i]) bad = i;
    }
    check(x, "queue_in_order", bad < 0, "%d uploads, adds and copies on one queue%s", STEPS * 4,
          bad < 0 ? "" : ": result differs from in-order execution");
  } else {
    check(x, "queue_in_order", false, "%s", api->error_message(e));
    api->error_destroy(e);
  }
done:
  drain(x);
  api->buffer_destroy(bx);
  api->buffer_destroy(by);
  api->buffer_destroy(bz);
  free(init);
  free(ones);
  free(ones2);
  free(out);
}

/* ---- Threads: buffers and queues from several threads at once ------------- */

typedef struct worker {
  const qiao_dev_api *api;
  qiao_dev_device *device;
  int failures;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  qiao_dev_queue *q = NULL;
  qiao_dev_error *e = w->api->queue_create(w->device, &q);
  if (e) {
    w->api->error_destroy(e);
    w->failures++;
    return NULL;
  }
  for (int i = 0; i < 50; i++) {
    qiao_dev_buffer *b = NULL;
    float v = (float)i, back = -1;
    e = w->api->buffer_create(w->device, 64, &b);
    if (!e) e = w->api->upload(q, (qiao_dev_ref){b, 8}, &v, 4);
    if (!e) e = w->api->download(q, &back, (qiao_dev_ref){b, 8}, 4);
    if (!e) e = w->api->queue_synchronize(q);
    if (e || back != v) w->failures++;
    if (e) w->api->error_destroy(e);
    w->api->buffer_destroy(b);
  }
  w->api->queue_destroy(q);
  return NULL;
}

static void threads(actx *x) {
  enum { T = 4 };
  pthread_t tid[T];
  worker w[T];
  int started = 0, failures = 0;
  for (int i = 0; i < T; i++) {
    w[i] = (worker){x->api, x->dev->device, 0};
    if (pthread_create(&tid[i], NULL, work, &w[i]) == 0)
      started++;
    else
      break;
  }
  for (int i = 0; i < started; i++) {
    pthread_join(tid[i], NULL);
    failures += w[i].failures;
  }
  check(x, "device_shared_by_threads", failures == 0 && started == T,
        "%d threads, each its own queue, 50 buffers each: %d failures", started, failures);
}

void qiao__cf_run_abi(qiao_conformance_report *report, cf_device *target, const char *backend,
                      uint32_t device_index, uint64_t seed) {
  actx x = {report, target, target->api, false, device_index};
  report->area_abi.ran = true;
  qiao__cf_progress(report, "abi: versions and properties");
  versions(&x, device_index);
  wrap_host(&x, x.host_memory);
  qiao__cf_progress(report, "abi: error paths");
  error_paths(&x);
  qiao__cf_progress(report, "abi: argument rules");
  qiao__cf_abi_rules(&x);
  qiao__cf_progress(report, "abi: allocation balance");
  allocation(&x, seed);
  qiao__cf_progress(report, "abi: queue ordering and threads");
  ordering(&x);
  threads(&x);
  (void)backend;
}
