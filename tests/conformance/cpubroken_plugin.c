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
 * Anything else (or unset) breaks nothing. The wrappers use only the ABI. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "qiao/device.h"

static qiao_dev_api table;
static const qiao_dev_api *cpu;
static char mode[32];
static qiao_dev_device *last_device;

static qiao_dev_error *remembering_device_open(qiao_dev_backend *b, uint32_t index,
                                               const qiao_dev_device_options *o,
                                               qiao_dev_device **out) {
  qiao_dev_error *e = cpu->device_open(b, index, o, out);
  if (e == NULL) last_device = *out;
  return e;
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

/* Downloads the weights, perturbs them, runs the real matmul on the copy. */
static qiao_dev_error *broken_matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  bool f16 = strcmp(mode, "f16_ulp") == 0 && a->w_dtype == QIAO_DEV_F16;
  bool q8 = strcmp(mode, "q8_0_ulp") == 0 && a->w_dtype == QIAO_DEV_Q8_0;
  if (!f16 && !q8) return cpu->matmul(q, a);
  uint64_t bytes = f16 ? a->m * a->k * 2 : a->m * a->k / 32 * 34;
  uint8_t *w = malloc(bytes ? bytes : 1);
  if (w == NULL || last_device == NULL) {
    free(w);
    return cpu->matmul(q, a);
  }
  qiao_dev_error *e = cpu->queue_synchronize(q);
  if (e == NULL) e = cpu->download(q, w, a->w, bytes);
  if (e == NULL) e = cpu->queue_synchronize(q);
  if (e != NULL) {
    free(w);
    return e;
  }
  if (f16) {
    for (uint64_t i = 0; i < bytes / 2; i++) {
      uint16_t h;
      memcpy(&h, w + 2 * i, 2);
      if ((h & 0x7fffu) != 0 && (h & 0x7c00u) != 0x7c00u && (h & 0x7fffu) != 0x7bffu) h++;
      memcpy(w + 2 * i, &h, 2);
    }
  } else {
    for (uint64_t b = 0; b < bytes / 34; b++)
      for (int j = 0; j < 32; j++) {
        int8_t v = (int8_t)w[b * 34 + 2 + j];
        if (v < 127) w[b * 34 + 2 + j] = (uint8_t)(int8_t)(v + 1);
      }
  }
  /* the perturbed copy, on the device last opened (the one under test) */
  qiao_dev_buffer *copy = NULL;
  e = cpu->buffer_create(last_device, bytes, &copy);
  if (e == NULL) e = cpu->upload(q, (qiao_dev_ref){copy, 0}, w, bytes);
  qiao_dev_matmul_args b = *a;
  b.w = (qiao_dev_ref){copy, 0};
  if (e == NULL) e = cpu->matmul(q, &b);
  qiao_dev_error *s = cpu->queue_synchronize(q);
  if (e == NULL)
    e = s;
  else if (s != NULL)
    cpu->error_destroy(s);
  cpu->buffer_destroy(copy);
  free(w);
  return e;
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

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  if (cpu == NULL) {
    cpu = qiao_cpu_get_api();
    table = *cpu;
    table.name = "cpubroken";
    table.device_open = remembering_device_open;
    const char *m = getenv("QIAO_CPUBROKEN");
    snprintf(mode, sizeof(mode), "%s", m ? m : "");
    if (strcmp(mode, "rope_pair") == 0) table.rope = broken_rope;
    if (strcmp(mode, "f16_ulp") == 0 || strcmp(mode, "q8_0_ulp") == 0) table.matmul = broken_matmul;
    if (strcmp(mode, "window") == 0) table.attention = broken_attention;
    if (strcmp(mode, "split_k") == 0) table.matmul = split_k_matmul;
  }
  return &table;
}
