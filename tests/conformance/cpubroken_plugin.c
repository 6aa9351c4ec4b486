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
 * Anything else (or unset) breaks nothing. The wrappers use only the ABI. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
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
  }
  return &table;
}
