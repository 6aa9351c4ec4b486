/* libqiao-cpubroken.so: the CPU backend with one op deliberately broken, to
 * prove that conformance catches the kind of bug a new backend has. The
 * breakage is chosen by $QIAO_CPUBROKEN when the table is first fetched:
 *   rope_pair    rope rotates the other pairing (normal <-> neox)
 *   f16_ulp      matmul reads every F16 weight one ULP larger in magnitude
 *   q8_0_ulp     matmul reads every Q8_0 quant one step larger (a dequant bug)
 *   window       attention's sliding window is one token too wide
 *   split_k      matmul of a single row (n == 1) sums k in two halves, as a
 *                split-K decode kernel would, while the device still claims
 *                QIAO_DEV_FLAG_BATCH_INVARIANT: each result is within the
 *                budget, but a row alone no longer equals that row in a batch
 *   q8_round     matmul with Q8 activations (ABI 1.2) rounds every activation
 *                up, as a quantizer that truncates x / d + 1/2 would
 *   q8_round_experts  (1.5) the same in matmul_experts with Q8 activations
 *   moe_tie      moe_gate ranks experts by binary32 p instead of by logit, so
 *                logits that differ but round to the same p tie to the
 *                smaller index
 *   latent_rope  (1.4) attention_latent ignores the rotary part of the
 *                scores (q_rope . C[j, latent_dim:])
 *   route_bias   (1.4) moe_route ignores the selection bias
 *   route_inf    (1.4) moe_route gives the experts of the groups not kept
 *                c = -inf instead of 0, so when every kept expert's c is
 *                negative it still picks kept ones (transformers picks the
 *                masked ones: masked_fill with 0.0)
 * and, for the ABI level (each breaks one rule of device-abi.md):
 *   abi_major    backend_open ignores runtime_abi_major
 *   small_options backend_open and device_open accept options structs
 *                smaller than 1.0's 16 bytes
 *   null_args    backend_open(NULL options) opens with defaults, and
 *                buffer_create / queue_create accept a NULL out-parameter
 *   bad_handle   handles it did not create are reported as INVALID_ARGUMENT
 *                (error_code never says BAD_HANDLE)
 *   wrap_write   buffer_wrap_host returns a writable copy: writes into a
 *                wrapped buffer are accepted
 *   block_size0  attention accepts block_size 0 (and does nothing)
 *   argmax_cols0 argmax accepts cols 0 (and does nothing)
 *   moe_k0       moe_gate accepts k 0 (and does nothing)
 *   rope_style   rope reads an unknown style as normal
 *   misaligned   add accepts misaligned F32 offsets and computes nothing
 *   async_sticky queue_synchronize returns an asynchronous error again on the
 *                next call instead of clearing it
 *   zero_count   add with n = 0 writes 4 bytes into out
 *   zero_k       matmul with k = 0 leaves out as it was (no bias, no zeros)
 *   null_offset  an optional operand {NULL, nonzero offset} is read as absent
 *   dtype_code   an unknown weight dtype value is INVALID_ARGUMENT, not
 *                UNSUPPORTED
 *   check_order  matmul checks byte-size overflow before the capability
 *   kv_clamp     kv_write clamps out-of-range slots to slot 0, writing where
 *                a cache of 0 slots has no bytes
 *   foreign_device upload writes into a buffer of another device
 *   zero_transfer 0-byte transfers succeed without any check (a NULL
 *                buffer, an offset beyond the end)
 *   props_overwrite device_get_properties writes the whole struct whatever
 *                the caller's struct_size
 *   route_groups (1.4) moe_route accepts n_experts not divisible by
 *                n_groups (and routes without groups)
 * Anything else (or unset) breaks nothing. The wrappers use only the ABI,
 * but for errors (made by the CPU backend's own constructor) and
 * foreign_device (which writes through the CPU backend's buffer struct, as a
 * backend without the check would). */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cpu_internal.h"
#include "qiao/device.h"

static qiao_dev_api table;
static const qiao_dev_api *cpu;
static char mode[32];
/* The devices open now, the last opened on top: a perturbed copy of an
 * operand is made on last_device (conformance opens the device under test,
 * and closes any other before it goes on with it). */
static qiao_dev_device *open_devices[16];
static int n_open;
static qiao_dev_device *last_device;

static qiao_dev_error *remembering_device_open(qiao_dev_backend *b, uint32_t index,
                                               const qiao_dev_device_options *o,
                                               qiao_dev_device **out) {
  qiao_dev_error *e = cpu->device_open(b, index, o, out);
  if (e == NULL && n_open < 16) last_device = open_devices[n_open++] = *out;
  return e;
}

static void forgetting_device_close(qiao_dev_device *device) {
  for (int i = 0; i < n_open; i++)
    if (open_devices[i] == device) {
      memmove(open_devices + i, open_devices + i + 1,
              (size_t)(n_open - i - 1) * sizeof(*open_devices));
      n_open--;
      break;
    }
  last_device = n_open > 0 ? open_devices[n_open - 1] : NULL;
  cpu->device_close(device);
}

static qiao_dev_error *broken_rope(qiao_dev_queue *q, const qiao_dev_rope_args *a) {
  qiao_dev_rope_args b = *a;
  b.style = a->style == QIAO_DEV_ROPE_NORMAL ? QIAO_DEV_ROPE_NEOX : QIAO_DEV_ROPE_NORMAL;
  return cpu->rope(q, &b);
}

static qiao_dev_error *broken_attention(qiao_dev_queue *q, const qiao_dev_attention_args *a) {
  qiao_dev_attention_args b = *a;
  if (b.window > 0) b.window++;
  return cpu->attention(q, &b);
}

/* Runs the real matmul with one operand, the weights or x, replaced by a
 * copy (`bytes` of it) that `perturb` changed, made on the device last
 * opened (the one under test). */
static qiao_dev_error *matmul_on_copy(qiao_dev_queue *q, const qiao_dev_matmul_args *a, bool of_x,
                                      uint64_t bytes, void (*perturb)(uint8_t *, uint64_t)) {
  uint8_t *data = malloc(bytes ? bytes : 1);
  if (data == NULL || last_device == NULL) {
    free(data);
    return cpu->matmul(q, a);
  }
  qiao_dev_error *e = cpu->queue_synchronize(q);
  if (e == NULL) e = cpu->download(q, data, of_x ? a->x : a->w, bytes);
  if (e == NULL) e = cpu->queue_synchronize(q);
  if (e != NULL) {
    free(data);
    return e;
  }
  perturb(data, bytes);
  qiao_dev_buffer *copy = NULL;
  e = cpu->buffer_create(last_device, bytes, &copy);
  if (e == NULL) e = cpu->upload(q, (qiao_dev_ref){copy, 0}, data, bytes);
  qiao_dev_matmul_args b = *a;
  if (of_x)
    b.x = (qiao_dev_ref){copy, 0};
  else
    b.w = (qiao_dev_ref){copy, 0};
  if (e == NULL) e = cpu->matmul(q, &b);
  qiao_dev_error *s = cpu->queue_synchronize(q);
  if (e == NULL)
    e = s;
  else if (s != NULL)
    cpu->error_destroy(s);
  cpu->buffer_destroy(copy);
  free(data);
  return e;
}

/* Every finite, nonzero, non-maximal F16 weight one ULP larger in magnitude. */
static void f16_ulp(uint8_t *w, uint64_t bytes) {
  for (uint64_t i = 0; i < bytes / 2; i++) {
    uint16_t h;
    memcpy(&h, w + 2 * i, 2);
    if ((h & 0x7fffu) != 0 && (h & 0x7c00u) != 0x7c00u && (h & 0x7fffu) != 0x7bffu) h++;
    memcpy(w + 2 * i, &h, 2);
  }
}

/* Every Q8_0 quant one step larger (but 127). */
static void q8_0_ulp(uint8_t *w, uint64_t bytes) {
  for (uint64_t b = 0; b < bytes / 34; b++)
    for (int j = 0; j < 32; j++) {
      int8_t v = (int8_t)w[b * 34 + 2 + j];
      if (v < 127) w[b * 34 + 2 + j] = (uint8_t)(int8_t)(v + 1);
    }
}

static qiao_dev_error *broken_matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  if (strcmp(mode, "f16_ulp") == 0 && a->w_dtype == QIAO_DEV_F16)
    return matmul_on_copy(q, a, false, a->m * a->k * 2, f16_ulp);
  if (strcmp(mode, "q8_0_ulp") == 0 && a->w_dtype == QIAO_DEV_Q8_0)
    return matmul_on_copy(q, a, false, a->m * a->k / 32 * 34, q8_0_ulp);
  return cpu->matmul(q, a);
}

/* Bytes of the first `cols` elements of a weight row (cols a block multiple
 * for quantized dtypes). */
static uint64_t row_part_bytes(qiao_dev_dtype dt, uint64_t cols) {
  switch (dt) {
  case QIAO_DEV_F32: return 4 * cols;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: return 2 * cols;
  case QIAO_DEV_Q8_0: return cols / 32 * 34;
  default: return cols / 32 * 18;
  }
}

/* n == 1: out = x[:h] . w[:, :h] (+ bias), then out += x[h:] . w[:, h:], the
 * two halves of each weight row copied into buffers of their own. */
static qiao_dev_error *split_k_matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  bool quant = a->w_dtype == QIAO_DEV_Q8_0 || a->w_dtype == QIAO_DEV_Q4_0;
  uint64_t h = quant ? a->k / 64 * 32 : a->k / 2;
  if (a->n != 1 || h == 0 || last_device == NULL || a->m == 0) return cpu->matmul(q, a);
  uint64_t row = row_part_bytes(a->w_dtype, a->k), lo = row_part_bytes(a->w_dtype, h);
  uint8_t *w = malloc(a->m * row), *parts = malloc(a->m * row);
  if (w == NULL || parts == NULL) {
    free(w);
    free(parts);
    return cpu->matmul(q, a);
  }
  qiao_dev_error *e = cpu->queue_synchronize(q);
  if (e == NULL) e = cpu->download(q, w, a->w, a->m * row);
  if (e == NULL) e = cpu->queue_synchronize(q);
  for (uint64_t j = 0; e == NULL && j < a->m; j++) { /* (m, h) then (m, k - h) */
    memcpy(parts + j * lo, w + j * row, lo);
    memcpy(parts + a->m * lo + j * (row - lo), w + j * row + lo, row - lo);
  }
  qiao_dev_buffer *buf = NULL;
  if (e == NULL) e = cpu->buffer_create(last_device, a->m * row, &buf);
  if (e == NULL) e = cpu->upload(q, (qiao_dev_ref){buf, 0}, parts, a->m * row);
  qiao_dev_matmul_args first = *a, second = *a;
  first.k = h;
  first.w = (qiao_dev_ref){buf, 0};
  second.k = a->k - h;
  second.x.offset += h * 4;
  second.w = (qiao_dev_ref){buf, a->m * lo};
  second.bias = (qiao_dev_ref){NULL, 0};
  second.accumulate = 1;
  if (e == NULL) e = cpu->matmul(q, &first);
  if (e == NULL) e = cpu->matmul(q, &second);
  qiao_dev_error *s = cpu->queue_synchronize(q);
  if (e == NULL)
    e = s;
  else if (s != NULL)
    cpu->error_destroy(s);
  cpu->buffer_destroy(buf);
  free(w);
  free(parts);
  return e;
}

/* Each activation moved up by half its block's quant step (d / 2, d = amax
 * / 127) before the real matmul quantizes it, so about half of them land
 * one step higher than round-to-nearest puts them. */
static void half_step_up(uint8_t *bytes, uint64_t n_bytes) {
  float *x = (float *)(void *)bytes;
  for (uint64_t b = 0; b < n_bytes / 4 / 32; b++) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++)
      amax = fabsf(x[b * 32 + i]) > amax ? fabsf(x[b * 32 + i]) : amax;
    for (int i = 0; i < 32; i++)
      x[b * 32 + i] += amax / 127.0f / 2.0f;
  }
}

static qiao_dev_error *q8_round_matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  if (a->x_precision != QIAO_DEV_PRECISION_Q8 || a->k % 32 != 0) return cpu->matmul(q, a);
  return matmul_on_copy(q, a, true, a->n * a->k * 4, half_step_up);
}

static qiao_dev_error *q8_round_experts(qiao_dev_queue *q, const qiao_dev_matmul_experts_args *a) {
  uint64_t rows = a->x_per_slot ? a->n_tokens * a->k : a->n_tokens;
  if (a->x_precision != QIAO_DEV_PRECISION_Q8 || a->in_dim % 32 != 0 || last_device == NULL ||
      rows > (UINT64_MAX / 4) / (a->in_dim ? a->in_dim : 1))
    return cpu->matmul_experts(q, a);
  uint64_t bytes = rows * a->in_dim * 4;
  uint8_t *data = malloc(bytes ? bytes : 1);
  if (data == NULL) return cpu->matmul_experts(q, a);
  qiao_dev_error *e = cpu->queue_synchronize(q);
  if (e == NULL) e = cpu->download(q, data, a->x, bytes);
  if (e == NULL) e = cpu->queue_synchronize(q);
  qiao_dev_buffer *copy = NULL;
  if (e == NULL) {
    half_step_up(data, bytes);
    e = cpu->buffer_create(last_device, bytes ? bytes : 1, &copy);
  }
  if (e == NULL) e = cpu->upload(q, (qiao_dev_ref){copy, 0}, data, bytes);
  qiao_dev_matmul_experts_args b = *a;
  b.x = (qiao_dev_ref){copy, 0};
  if (e == NULL) e = cpu->matmul_experts(q, &b);
  qiao_dev_error *s = cpu->queue_synchronize(q);
  if (e == NULL)
    e = s;
  else if (s != NULL)
    cpu->error_destroy(s);
  cpu->buffer_destroy(copy);
  free(data);
  return e;
}

/* ---- moe_tie: experts ranked by binary32 p, ties to the smaller index ---- */

static qiao_dev_error *tie_by_p_moe_gate(qiao_dev_queue *q, const qiao_dev_moe_gate_args *a) {
  qiao_dev_error *e = cpu->moe_gate(q, a); /* every check, and the result to replace */
  if (e != NULL || a->n_tokens == 0) return e;
  uint64_t ne = a->n_experts, k = a->k, n = a->n_tokens;
  float *l = malloc(n * ne * 4), *p = malloc(ne * 4), *w = malloc(n * k * 4);
  int32_t *ids = malloc(n * k * 4);
  bool *taken = malloc(ne);
  if (l && p && w && ids && taken) e = cpu->download(q, l, a->logits, n * ne * 4);
  if (l && p && w && ids && taken && e == NULL) e = cpu->queue_synchronize(q);
  for (uint64_t t = 0; e == NULL && l && p && w && ids && taken && t < n; t++) {
    float max = l[t * ne], sum = 0, chosen = 0;
    for (uint64_t i = 1; i < ne; i++)
      max = l[t * ne + i] > max ? l[t * ne + i] : max;
    for (uint64_t i = 0; i < ne; i++)
      sum += p[i] = expf(l[t * ne + i] - max), taken[i] = false;
    for (uint64_t j = 0; j < k; j++) {
      uint64_t best = ne;
      for (uint64_t i = 0; i < ne; i++)
        if (!taken[i] && (best == ne || p[i] > p[best])) best = i;
      taken[best] = true;
      ids[t * k + j] = (int32_t)best;
      chosen += w[t * k + j] = p[best] / sum;
    }
    for (uint64_t j = 0; a->normalize && j < k; j++)
      w[t * k + j] /= chosen;
  }
  if (e == NULL && ids && w) e = cpu->upload(q, a->ids, ids, n * k * 4);
  if (e == NULL && ids && w) e = cpu->upload(q, a->weights, w, n * k * 4);
  if (e == NULL) e = cpu->queue_synchronize(q);
  free(l);
  free(p);
  free(w);
  free(ids);
  free(taken);
  return e;
}

/* ---- ABI-level breakages ------------------------------------------------- */

static qiao_dev_error *ignoring_major_backend_open(const qiao_dev_backend_options *o,
                                                   qiao_dev_backend **out) {
  if (o == NULL) return cpu->backend_open(o, out);
  qiao_dev_backend_options mine = *o;
  mine.runtime_abi_major = QIAO_DEVICE_ABI_MAJOR;
  return cpu->backend_open(&mine, out);
}

static const qiao_dev_backend_options defaults = {sizeof(qiao_dev_backend_options),
                                                  QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};

static qiao_dev_error *small_options_backend_open(const qiao_dev_backend_options *o,
                                                  qiao_dev_backend **out) {
  if (o != NULL && o->struct_size < sizeof(*o)) return cpu->backend_open(&defaults, out);
  return cpu->backend_open(o, out);
}

static qiao_dev_error *small_options_device_open(qiao_dev_backend *b, uint32_t index,
                                                 const qiao_dev_device_options *o,
                                                 qiao_dev_device **out) {
  if (o != NULL && o->struct_size < sizeof(*o)) o = NULL;
  return remembering_device_open(b, index, o, out);
}

static qiao_dev_error *null_args_backend_open(const qiao_dev_backend_options *o,
                                              qiao_dev_backend **out) {
  return cpu->backend_open(o == NULL ? &defaults : o, out);
}

static qiao_dev_error *null_args_buffer_create(qiao_dev_device *d, uint64_t size,
                                               qiao_dev_buffer **out) {
  return out == NULL ? NULL : cpu->buffer_create(d, size, out);
}

static qiao_dev_error *null_args_queue_create(qiao_dev_device *d, qiao_dev_queue **out) {
  return out == NULL ? NULL : cpu->queue_create(d, out);
}

static qiao_dev_code no_bad_handle_error_code(const qiao_dev_error *e) {
  qiao_dev_code c = cpu->error_code(e);
  return c == QIAO_DEV_BAD_HANDLE ? QIAO_DEV_INVALID_ARGUMENT : c;
}

static qiao_dev_error *writable_wrap(qiao_dev_device *d, const void *host, uint64_t size,
                                     qiao_dev_buffer **out) {
  if (host == NULL || out == NULL) return cpu->buffer_wrap_host(d, host, size, out);
  qiao_dev_buffer *b = NULL;
  qiao_dev_queue *q = NULL;
  qiao_dev_error *e = cpu->buffer_create(d, size, &b);
  if (e == NULL) e = cpu->queue_create(d, &q);
  if (e == NULL) e = cpu->upload(q, (qiao_dev_ref){b, 0}, host, size);
  if (e == NULL) e = cpu->queue_synchronize(q);
  cpu->queue_destroy(q);
  if (e != NULL) {
    cpu->buffer_destroy(b);
    return e;
  }
  *out = b;
  return NULL;
}

static qiao_dev_error *lax_attention(qiao_dev_queue *q, const qiao_dev_attention_args *a) {
  if (a != NULL && a->struct_size >= sizeof(*a) && a->block_size == 0) return NULL;
  return cpu->attention(q, a);
}

static qiao_dev_error *lax_argmax(qiao_dev_queue *q, const qiao_dev_argmax_args *a) {
  if (a != NULL && a->struct_size >= sizeof(*a) && a->cols == 0) return NULL;
  return cpu->argmax(q, a);
}

static qiao_dev_error *lax_moe_gate(qiao_dev_queue *q, const qiao_dev_moe_gate_args *a) {
  if (a != NULL && a->struct_size >= sizeof(*a) && a->k == 0) return NULL;
  return cpu->moe_gate(q, a);
}

static qiao_dev_error *lax_rope(qiao_dev_queue *q, const qiao_dev_rope_args *a) {
  if (a == NULL || a->struct_size < sizeof(*a) || a->style == QIAO_DEV_ROPE_NORMAL ||
      a->style == QIAO_DEV_ROPE_NEOX)
    return cpu->rope(q, a);
  qiao_dev_rope_args b = *a;
  b.style = QIAO_DEV_ROPE_NORMAL;
  return cpu->rope(q, &b);
}

static qiao_dev_error *lax_add(qiao_dev_queue *q, const qiao_dev_add_args *a) {
  if (a != NULL && a->struct_size >= sizeof(*a) && a->n > 0 &&
      (a->a.offset % 4 || a->b.offset % 4 || a->out.offset % 4))
    return NULL;
  return cpu->add(q, a);
}

static qiao_dev_error *zero_count_add(qiao_dev_queue *q, const qiao_dev_add_args *a) {
  qiao_dev_error *e = cpu->add(q, a);
  if (e == NULL && a->n == 0) {
    const float junk = 42.0f;
    e = cpu->upload(q, a->out, &junk, 4);
  }
  return e;
}

static qiao_dev_error *zero_k_matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  if (a != NULL && a->struct_size >= sizeof(*a) && a->k == 0) return NULL;
  return cpu->matmul(q, a);
}

static qiao_dev_error *null_offset_matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  if (a == NULL || a->struct_size < sizeof(*a) || a->bias.buffer != NULL) return cpu->matmul(q, a);
  qiao_dev_matmul_args b = *a;
  b.bias.offset = 0;
  return cpu->matmul(q, &b);
}

static qiao_dev_error *dtype_code_matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  if (q != NULL && a != NULL && a->struct_size >= sizeof(*a) &&
      (unsigned)a->w_dtype >= QIAO_DEV_DTYPE_COUNT)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "matmul: w_dtype %u is not a dtype",
                           (unsigned)a->w_dtype);
  return cpu->matmul(q, a);
}

static qiao_dev_error *overflow_first_matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  uint64_t bytes;
  if (q != NULL && a != NULL && a->struct_size >= sizeof(*a) &&
      (__builtin_mul_overflow(a->n, a->k, &bytes) || __builtin_mul_overflow(bytes, 4, &bytes)))
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "matmul: x overflows");
  return cpu->matmul(q, a);
}

/* async_sticky: the error is returned by this synchronize and the next. */
static bool sticky;

static qiao_dev_error *sticky_synchronize(qiao_dev_queue *q) {
  qiao_dev_error *e = cpu->queue_synchronize(q);
  if (e != NULL) {
    sticky = true;
  } else if (sticky) {
    sticky = false;
    e = qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "an asynchronous error, again");
  }
  return e;
}

/* kv_clamp: each out-of-range slot written to slot 0 (then the real op,
 * which reports it). */
static qiao_dev_error *clamping_kv_write(qiao_dev_queue *q, const qiao_dev_kv_write_args *a) {
  if (a == NULL || a->struct_size < sizeof(*a) || a->n_tokens == 0 || a->kv_dim == 0 ||
      a->cache_dtype != QIAO_DEV_F32 || a->k_cache.buffer == NULL)
    return cpu->kv_write(q, a);
  int32_t *slots = malloc(a->n_tokens * 4);
  float *row = malloc(a->kv_dim * 4);
  qiao_dev_error *e = slots && row ? cpu->download(q, slots, a->slots, a->n_tokens * 4) : NULL;
  if (e == NULL && slots && row) e = cpu->queue_synchronize(q);
  for (uint64_t t = 0; e == NULL && slots && row && t < a->n_tokens; t++)
    if (slots[t] < 0 || (uint64_t)slots[t] >= a->n_slots) {
      qiao_dev_ref src = a->k;
      src.offset += t * a->kv_dim * 4;
      e = cpu->download(q, row, src, a->kv_dim * 4);
      if (e == NULL) e = cpu->queue_synchronize(q);
      if (e == NULL) e = cpu->upload(q, a->k_cache, row, a->kv_dim * 4);
    }
  free(slots);
  free(row);
  if (e != NULL) return e;
  return cpu->kv_write(q, a);
}

/* foreign_device: a buffer of another device is written like one of ours. */
static qiao_dev_error *any_device_upload(qiao_dev_queue *q, qiao_dev_ref dst, const void *src,
                                         uint64_t size) {
  if (q != NULL && q->magic == QIAO__CPU_MAGIC_QUEUE && dst.buffer != NULL &&
      dst.buffer->magic == QIAO__CPU_MAGIC_BUFFER && dst.buffer->device != q->device && src &&
      dst.offset <= dst.buffer->size && size <= dst.buffer->size - dst.offset) {
    memcpy(dst.buffer->data + dst.offset, src, size);
    return NULL;
  }
  return cpu->upload(q, dst, src, size);
}

/* zero_transfer: size 0 returns before any check. */
static qiao_dev_error *unchecked_zero_upload(qiao_dev_queue *q, qiao_dev_ref dst, const void *src,
                                             uint64_t size) {
  return size == 0 ? NULL : cpu->upload(q, dst, src, size);
}
static qiao_dev_error *unchecked_zero_download(qiao_dev_queue *q, void *dst, qiao_dev_ref src,
                                               uint64_t size) {
  return size == 0 ? NULL : cpu->download(q, dst, src, size);
}
static qiao_dev_error *unchecked_zero_copy(qiao_dev_queue *q, qiao_dev_ref dst, qiao_dev_ref src,
                                           uint64_t size) {
  return size == 0 ? NULL : cpu->copy(q, dst, src, size);
}

/* props_overwrite: the whole struct, whatever the caller's struct_size. */
static qiao_dev_error *overwriting_properties(qiao_dev_backend *b, uint32_t index,
                                              qiao_dev_properties *p) {
  if (p == NULL || p->struct_size < sizeof(size_t)) return cpu->device_get_properties(b, index, p);
  qiao_dev_properties full = {.struct_size = sizeof(full)};
  qiao_dev_error *e = cpu->device_get_properties(b, index, &full);
  if (e == NULL) {
    full.struct_size = p->struct_size;
    memcpy(p, &full, sizeof(full));
  }
  return e;
}

/* latent_rope: the scores without their rotary part (q_rope read as zeros). */
static qiao_dev_error *ropeless_attention_latent(qiao_dev_queue *q,
                                                 const qiao_dev_attention_latent_args *a) {
  uint64_t bytes = a->n_tokens * a->n_heads * a->rope_dim * 4;
  qiao_dev_buffer *zeros = NULL;
  if (last_device == NULL || cpu->buffer_create(last_device, bytes, &zeros) != NULL)
    return cpu->attention_latent(q, a);
  qiao_dev_attention_latent_args b = *a;
  b.q_rope = (qiao_dev_ref){zeros, 0}; /* buffer_create zero-fills */
  qiao_dev_error *e = cpu->attention_latent(q, &b);
  qiao_dev_error *s = cpu->queue_synchronize(q);
  if (e == NULL)
    e = s;
  else if (s != NULL)
    cpu->error_destroy(s);
  cpu->buffer_destroy(zeros);
  return e;
}

/* route_bias: as if no bias were given. */
static qiao_dev_error *biasless_moe_route(qiao_dev_queue *q, const qiao_dev_moe_route_args *a) {
  qiao_dev_moe_route_args b = *a;
  b.bias = (qiao_dev_ref){NULL, 0};
  return cpu->moe_route(q, &b);
}

/* route_groups: n_groups that do not divide n_experts read as no groups. */
static qiao_dev_error *lax_moe_route(qiao_dev_queue *q, const qiao_dev_moe_route_args *a) {
  qiao_dev_moe_route_args b = *a;
  if (b.n_groups > 1 && b.n_experts % b.n_groups != 0) b.n_groups = 0;
  return cpu->moe_route(q, &b);
}

/* route_inf: the real op (its checks and outputs), then each token routed
 * again on the host with -inf in the groups not kept, written over them
 * (through the CPU backend's buffer structs: its queues run at once). */
static qiao_dev_error *minus_inf_moe_route(qiao_dev_queue *q, const qiao_dev_moe_route_args *a) {
  qiao_dev_error *e = cpu->moe_route(q, a);
  if (e != NULL || a->n_groups <= 1 || a->n_tokens == 0) return e;
  uint64_t ne = a->n_experts, ng = a->n_groups, per = ne / ng;
  const float *logits = (const float *)(void *)(a->logits.buffer->data + a->logits.offset);
  const float *bias =
      a->bias.buffer ? (const float *)(void *)(a->bias.buffer->data + a->bias.offset) : NULL;
  int32_t *ids = (int32_t *)(void *)(a->ids.buffer->data + a->ids.offset);
  float *weights = (float *)(void *)(a->weights.buffer->data + a->weights.offset);
  float *p = malloc(ne * sizeof(float)), *c = malloc(ne * sizeof(float));
  float *gs = malloc(ng * sizeof(float));
  bool *taken = calloc(ne + ng, 1);
  for (uint64_t t = 0; p && c && gs && taken && t < a->n_tokens; t++) {
    const float *l = logits + t * ne;
    float max = l[0];
    double sum = 0;
    for (uint64_t i = 1; i < ne; i++)
      max = l[i] > max ? l[i] : max;
    for (uint64_t i = 0; i < ne; i++) {
      p[i] =
          a->scoring == QIAO_DEV_MOE_SCORE_SIGMOID ? 1.0f / (1.0f + expf(-l[i])) : expf(l[i] - max);
      sum += p[i];
    }
    for (uint64_t i = 0; i < ne; i++) {
      if (a->scoring != QIAO_DEV_MOE_SCORE_SIGMOID) p[i] = (float)(p[i] / sum);
      c[i] = p[i] + (bias ? bias[i] : 0.0f);
      taken[i] = false;
    }
    bool *kept = taken + ne;
    for (uint64_t g = 0; g < ng; g++) {
      float first = -INFINITY, second = -INFINITY;
      for (uint64_t i = g * per; i < (g + 1) * per; i++)
        if (c[i] > first) {
          second = first;
          first = c[i];
        } else if (c[i] > second) {
          second = c[i];
        }
      gs[g] = a->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM ? first + second : first;
      kept[g] = false;
    }
    for (uint32_t k = 0; k < a->topk_groups; k++) {
      uint64_t best = ng;
      for (uint64_t g = 0; g < ng; g++)
        if (!kept[g] && (best == ng || gs[g] > gs[best])) best = g;
      kept[best] = true;
    }
    for (uint64_t i = 0; i < ne; i++)
      if (!kept[i / per]) c[i] = -INFINITY; /* the bug: transformers fills 0.0 */
    double chosen = 0;
    for (uint64_t k = 0; k < a->k; k++) {
      uint64_t best = ne;
      for (uint64_t i = 0; i < ne; i++)
        if (!taken[i] && (best == ne || c[i] > c[best])) best = i;
      taken[best] = true;
      ids[t * a->k + k] = (int32_t)best;
      weights[t * a->k + k] = p[best];
      chosen += p[best];
    }
    for (uint64_t k = 0; k < a->k; k++)
      weights[t * a->k + k] =
          (float)(weights[t * a->k + k] / (a->normalize ? chosen + 1e-20 : 1.0) * a->scale);
  }
  free(p);
  free(c);
  free(gs);
  free(taken);
  return NULL;
}

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  if (cpu == NULL) {
    cpu = qiao_cpu_get_api();
    table = *cpu;
    table.name = "cpubroken";
    table.device_open = remembering_device_open;
    table.device_close = forgetting_device_close;
    const char *m = getenv("QIAO_CPUBROKEN");
    snprintf(mode, sizeof(mode), "%s", m ? m : "");
    if (strcmp(mode, "rope_pair") == 0) table.rope = broken_rope;
    if (strcmp(mode, "f16_ulp") == 0 || strcmp(mode, "q8_0_ulp") == 0) table.matmul = broken_matmul;
    if (strcmp(mode, "window") == 0) table.attention = broken_attention;
    if (strcmp(mode, "split_k") == 0) table.matmul = split_k_matmul;
    if (strcmp(mode, "q8_round") == 0) table.matmul = q8_round_matmul;
    if (strcmp(mode, "q8_round_experts") == 0) table.matmul_experts = q8_round_experts;
    if (strcmp(mode, "moe_tie") == 0) table.moe_gate = tie_by_p_moe_gate;
    if (strcmp(mode, "abi_major") == 0) table.backend_open = ignoring_major_backend_open;
    if (strcmp(mode, "small_options") == 0) {
      table.backend_open = small_options_backend_open;
      table.device_open = small_options_device_open;
    }
    if (strcmp(mode, "null_args") == 0) {
      table.backend_open = null_args_backend_open;
      table.buffer_create = null_args_buffer_create;
      table.queue_create = null_args_queue_create;
    }
    if (strcmp(mode, "bad_handle") == 0) table.error_code = no_bad_handle_error_code;
    if (strcmp(mode, "wrap_write") == 0) table.buffer_wrap_host = writable_wrap;
    if (strcmp(mode, "block_size0") == 0) table.attention = lax_attention;
    if (strcmp(mode, "argmax_cols0") == 0) table.argmax = lax_argmax;
    if (strcmp(mode, "moe_k0") == 0) table.moe_gate = lax_moe_gate;
    if (strcmp(mode, "rope_style") == 0) table.rope = lax_rope;
    if (strcmp(mode, "misaligned") == 0) table.add = lax_add;
    if (strcmp(mode, "async_sticky") == 0) table.queue_synchronize = sticky_synchronize;
    if (strcmp(mode, "zero_count") == 0) table.add = zero_count_add;
    if (strcmp(mode, "zero_k") == 0) table.matmul = zero_k_matmul;
    if (strcmp(mode, "null_offset") == 0) table.matmul = null_offset_matmul;
    if (strcmp(mode, "dtype_code") == 0) table.matmul = dtype_code_matmul;
    if (strcmp(mode, "check_order") == 0) table.matmul = overflow_first_matmul;
    if (strcmp(mode, "kv_clamp") == 0) table.kv_write = clamping_kv_write;
    if (strcmp(mode, "foreign_device") == 0) table.upload = any_device_upload;
    if (strcmp(mode, "zero_transfer") == 0) {
      table.upload = unchecked_zero_upload;
      table.download = unchecked_zero_download;
      table.copy = unchecked_zero_copy;
    }
    if (strcmp(mode, "props_overwrite") == 0) table.device_get_properties = overwriting_properties;
    if (strcmp(mode, "latent_rope") == 0) table.attention_latent = ropeless_attention_latent;
    if (strcmp(mode, "route_bias") == 0) table.moe_route = biasless_moe_route;
    if (strcmp(mode, "route_inf") == 0) table.moe_route = minus_inf_moe_route;
    if (strcmp(mode, "route_groups") == 0) table.moe_route = lax_moe_route;
  }
  return &table;
}
