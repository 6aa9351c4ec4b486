/* The conformance harness: devices, randomness, number formats, the error
 * metric and the failure list. */
#include "conformance/harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"

qiao_status *qiao__cf_dev_status(const cf_device *dev, qiao_dev_error *error, const char *what) {
  return qiao_backend_status(dev->backend, error, what);
}

qiao_status *qiao__cf_device_open(const char *backend, uint32_t index, const char *role,
                                  cf_device *out) {
  return qiao__cf_device_open_flags(backend, index, role, 0, out);
}

qiao_status *qiao__cf_device_open_flags(const char *backend, uint32_t index, const char *role,
                                        uint32_t flags, cf_device *out) {
  cf_device dev = {0};
  dev.role = role;
  QIAO__TRY(qiao_backend_load(backend, &dev.backend));
  dev.api = qiao_backend_api(dev.backend);
  uint32_t count = 0;
  qiao_status *st = qiao__cf_dev_status(
      &dev, dev.api->device_count(qiao_backend_handle(dev.backend), &count), "device_count");
  if (st == NULL && index >= count)
    st = qiao__error(QIAO_NOT_FOUND, "backend %s has %u device(s); there is no device %u",
                     qiao_backend_name(dev.backend), count, index);
  qiao_dev_device_options options = {.struct_size = sizeof(options), .flags = flags};
  if (st == NULL)
    st = qiao__cf_dev_status(
        &dev, dev.api->device_open(qiao_backend_handle(dev.backend), index, &options, &dev.device),
        "device_open");
  if (st == NULL)
    st = qiao__cf_dev_status(&dev, dev.api->queue_create(dev.device, &dev.queue), "queue_create");
  if (st != NULL) {
    qiao__cf_device_close(&dev);
    return qiao__annotate(st, "%s backend", role);
  }
  *out = dev;
  return NULL;
}

void qiao__cf_device_close(cf_device *dev) {
  if (dev->api != NULL) {
    if (dev->queue != NULL) dev->api->queue_destroy(dev->queue);
    if (dev->device != NULL) dev->api->device_close(dev->device);
  }
  qiao_backend_unload(dev->backend);
  memset(dev, 0, sizeof(*dev));
}

/* ---- Randomness ---------------------------------------------------------- */

uint64_t qiao__cf_next(cf_rng *rng) {
  uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

float qiao__cf_uniform(cf_rng *rng, float lo, float hi) {
  float u = (float)(qiao__cf_next(rng) >> 40) / (float)(1u << 24); /* [0, 1) */
  return lo + (hi - lo) * u;
}

uint64_t qiao__cf_below(cf_rng *rng, uint64_t n) {
  return n ? qiao__cf_next(rng) % n : 0;
}

/* ---- Number formats ------------------------------------------------------ */

uint16_t qiao__cf_f32_to_f16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t exp = (u >> 23) & 0xffu, man = u & 0x7fffffu;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0)); /* inf, nan */
  int e = (int)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* overflow -> inf */
  if (e <= 0) {                                   /* subnormal half (or zero) */
    if (e < -10) return sign;
    man |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - e);
    uint32_t half = man >> shift, rest = man & ((1u << shift) - 1u), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++; /* may carry into inf */
  return (uint16_t)(sign | half);
}

float qiao__cf_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = ldexpf((float)man, -24);
    if (sign) f = -f;
    return f;
  }
  uint32_t u = exp == 31 ? (sign | 0x7f800000u | (man << 13))
                         : (sign | ((exp - 15 + 127) << 23) | (man << 13));
  memcpy(&f, &u, 4);
  return f;
}

uint64_t qiao__cf_dtype_bytes(qiao_dev_dtype dtype, uint64_t count) {
  switch (dtype) {
  case QIAO_DEV_F32:
  case QIAO_DEV_I32: return count * 4;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: return count * 2;
  case QIAO_DEV_Q8_0: return count / 32 * 34;
  case QIAO_DEV_Q4_0: return count / 32 * 18;
  case QIAO_DEV_Q4_1: return count / 32 * 20;
  case QIAO_DEV_Q5_0: return count / 32 * 22;
  case QIAO_DEV_Q5_1: return count / 32 * 24;
  case QIAO_DEV_Q4_K: return count / 256 * 144;
  case QIAO_DEV_Q5_K: return count / 256 * 176;
  case QIAO_DEV_Q6_K: return count / 256 * 210;
  case QIAO_DEV_Q2_K: return count / 256 * 84;
  case QIAO_DEV_Q3_K: return count / 256 * 110;
  case QIAO_DEV_F8_E4M3_B128: return count / 128 * 132; /* 1.4 */
  case QIAO_DEV_IQ4_NL: return count / 32 * 18;         /* 1.5 */
  case QIAO_DEV_IQ4_XS: return count / 256 * 136;       /* 1.5 */
  default: return 0;
  }
}

uint64_t qiao__cf_block_elems(qiao_dev_dtype dtype) {
  switch (dtype) {
  case QIAO_DEV_Q8_0:
  case QIAO_DEV_Q4_0:
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_0:
  case QIAO_DEV_Q5_1:
  case QIAO_DEV_IQ4_NL: return 32;
  case QIAO_DEV_IQ4_XS:
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K:
  case QIAO_DEV_Q6_K:
  case QIAO_DEV_Q2_K:
  case QIAO_DEV_Q3_K: return 256;
  case QIAO_DEV_F8_E4M3_B128: return 128;
  default: return 1;
  }
}

uint64_t qiao__cf_row_len(qiao_dev_dtype dtype, uint64_t quant, uint64_t plain) {
  uint64_t block = qiao__cf_block_elems(dtype);
  if (block == 1) return plain;
  if (block == 32) return quant;
  if (block == 128) return quant * 4 > 4352 ? 4352 : quant * 4;
  return quant * 8 > 4352 ? 4352 : quant * 8;
}

/* The byte offsets of the f16 scales of a block of a quantized dtype (-1:
 * none), for random weights with scales of a sane size. */
static void scale_offsets(qiao_dev_dtype dtype, int out[2]) {
  out[0] = 0, out[1] = -1;
  switch (dtype) {
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_1:
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K: out[1] = 2; break;
  case QIAO_DEV_Q6_K: out[0] = 208; break;
  case QIAO_DEV_Q2_K: out[0] = 80, out[1] = 82; break;
  case QIAO_DEV_Q3_K: out[0] = 108; break;
  default: break;
  }
}

void *qiao__cf_random_weights(cf_rng *rng, qiao_dev_dtype dtype, uint64_t count) {
  uint64_t bytes = qiao__cf_dtype_bytes(dtype, count);
  uint8_t *p = malloc(bytes ? bytes : 1);
  if (p == NULL) return NULL;
  if (dtype == QIAO_DEV_F32) {
    for (uint64_t i = 0; i < count; i++) {
      float v = qiao__cf_uniform(rng, -1, 1);
      memcpy(p + 4 * i, &v, 4);
    }
  } else if (dtype == QIAO_DEV_F16 || dtype == QIAO_DEV_BF16) {
    for (uint64_t i = 0; i < count; i++) {
      float v = qiao__cf_uniform(rng, -1, 1);
      uint32_t u;
      memcpy(&u, &v, 4);
      uint16_t h = dtype == QIAO_DEV_F16 ? qiao__cf_f32_to_f16(v) : (uint16_t)(u >> 16);
      memcpy(p + 2 * i, &h, 2);
    }
  } else if (dtype == QIAO_DEV_F8_E4M3_B128) {
    /* (1.4) an F32 scale of either sign, then any code but the NaNs (0x7F,
     * 0xFF, which a file never holds) */
    for (uint64_t b = 0; b < count / 128; b++) {
      uint8_t *blk = p + b * 132;
      float d = qiao__cf_uniform(rng, 0.0005f, 0.01f) * (qiao__cf_next(rng) & 1 ? -1.0f : 1.0f);
      memcpy(blk, &d, 4);
      for (int j = 0; j < 128; j++) {
        uint8_t q = (uint8_t)qiao__cf_next(rng);
        blk[4 + j] = (q & 0x7f) == 0x7f ? (uint8_t)(q - 1) : q;
      }
    }
  } else { /* quantized: f16 scales of either sign, then random bytes (every
            * possible quant and sub-block scale) */
    uint64_t elems = qiao__cf_block_elems(dtype), block = qiao__cf_dtype_bytes(dtype, elems);
    int scales[2];
    scale_offsets(dtype, scales);
    for (uint64_t b = 0; b < count / elems; b++) {
      uint8_t *blk = p + b * block;
      for (int s = 0; s < 2 && scales[s] >= 0; s++) {
        float d = qiao__cf_uniform(rng, 0.002f, 0.05f) * (qiao__cf_next(rng) & 1 ? -1.0f : 1.0f);
        uint16_t h = qiao__cf_f32_to_f16(d);
        memcpy(blk + scales[s], &h, 2);
      }
      for (uint64_t j = 0; j < block; j++) {
        bool scale = false;
        for (int s = 0; s < 2; s++)
          scale |= scales[s] >= 0 && (j == (uint64_t)scales[s] || j == (uint64_t)scales[s] + 1);
        if (!scale) blk[j] = (uint8_t)qiao__cf_next(rng);
      }
    }
  }
  return p;
}

/* ---- The metric ---------------------------------------------------------- */

double qiao__cf_row_error(const float *a, const float *b, uint64_t rows, uint64_t row_len,
                          uint64_t *out_row) {
  double total = 0;
  for (uint64_t i = 0; i < rows * row_len; i++)
    if (isfinite(b[i])) total += (double)b[i] * b[i];
  double floor_norm = rows ? sqrt(total / (double)rows) : 0;
  double worst = 0;
  uint64_t worst_row = 0;
  for (uint64_t r = 0; r < rows; r++) {
    double diff = 0, norm = 0;
    for (uint64_t j = 0; j < row_len; j++) {
      double x = a[r * row_len + j], y = b[r * row_len + j];
      if (isnan(x) && isnan(y)) continue;
      if (!isfinite(x) || !isfinite(y)) {
        if (x == y) continue; /* the same infinity */
        diff = INFINITY;
        break;
      }
      diff += (x - y) * (x - y);
      norm += y * y;
    }
    double denom = fmax(sqrt(norm), floor_norm);
    double err = diff == 0 ? 0 : (isinf(diff) || denom == 0 ? INFINITY : sqrt(diff) / denom);
    if (err > worst || (r == 0 && err == worst)) {
      worst = err;
      worst_row = r;
    }
  }
  if (out_row) *out_row = worst_row;
  return worst;
}

/* ---- Capabilities and budgets (docs/spec/device-abi.md §10, §11) -------- */

bool qiao__cf_defined(qiao_dev_op op, qiao_dev_dtype dtype) {
  bool weight = dtype == QIAO_DEV_F32 || dtype == QIAO_DEV_F16 || dtype == QIAO_DEV_BF16 ||
                dtype == QIAO_DEV_Q8_0 || dtype == QIAO_DEV_Q4_0 ||
                (dtype >= QIAO_DEV_Q4_K && dtype <= QIAO_DEV_Q5_1) || /* 1.3 */
                dtype == QIAO_DEV_F8_E4M3_B128 ||                     /* 1.4 */
                dtype == QIAO_DEV_IQ4_NL || dtype == QIAO_DEV_IQ4_XS; /* 1.5 */
  switch (op) {
  case QIAO_DEV_OP_EMBED:
  case QIAO_DEV_OP_MATMUL:
  case QIAO_DEV_OP_MATMUL_EXPERTS: return weight;
  case QIAO_DEV_OP_KV_WRITE:
  case QIAO_DEV_OP_ATTENTION:
  case QIAO_DEV_OP_LATENT_WRITE: /* 1.4 */
  case QIAO_DEV_OP_ATTENTION_LATENT: return dtype == QIAO_DEV_F32 || dtype == QIAO_DEV_F16;
  case QIAO_DEV_OP_RMSNORM:
  case QIAO_DEV_OP_ROPE:
  case QIAO_DEV_OP_SWIGLU:
  case QIAO_DEV_OP_ADD:
  case QIAO_DEV_OP_ARGMAX:
  case QIAO_DEV_OP_MOE_GATE:
  case QIAO_DEV_OP_MOE_COMBINE:
  case QIAO_DEV_OP_MOE_ROUTE: return dtype == QIAO_DEV_F32; /* (1.4) */
  default: return false;
  }
}

double qiao__cf_budget(qiao_dev_op op, qiao_dev_dtype dtype) {
  switch (op) {
  case QIAO_DEV_OP_EMBED:
  case QIAO_DEV_OP_KV_WRITE:
  case QIAO_DEV_OP_ADD:
  case QIAO_DEV_OP_ARGMAX:
  case QIAO_DEV_OP_LATENT_WRITE: return 0; /* exact */
  case QIAO_DEV_OP_MATMUL:
  case QIAO_DEV_OP_MATMUL_EXPERTS:
  case QIAO_DEV_OP_ATTENTION:
  case QIAO_DEV_OP_ATTENTION_LATENT: return 1e-4;
  case QIAO_DEV_OP_RMSNORM:
  case QIAO_DEV_OP_ROPE:
  case QIAO_DEV_OP_SWIGLU:
  case QIAO_DEV_OP_MOE_GATE:
  case QIAO_DEV_OP_MOE_COMBINE:
  case QIAO_DEV_OP_MOE_ROUTE: return 1e-5;
  default: return 0;
  }
}

/* ---- Report helpers ------------------------------------------------------ */

void qiao__cf_fail(qiao_conformance_report *report, cf_area *area, const char *fmt, ...) {
  area->failed++;
  va_list ap;
  va_start(ap, fmt);
  char *line = NULL;
  if (vasprintf(&line, fmt, ap) < 0) line = NULL;
  va_end(ap);
  if (report->progress && line) fprintf(report->progress, "  FAIL %s\n", line);
  if (line == NULL) return;
  if (report->n_failures == report->cap_failures) {
    size_t cap = report->cap_failures ? report->cap_failures * 2 : 16;
    char **grown = realloc(report->failures, cap * sizeof(*grown));
    if (grown == NULL) {
      free(line);
      return;
    }
    report->failures = grown;
    report->cap_failures = cap;
  }
  report->failures[report->n_failures++] = line;
}

void qiao__cf_progress(qiao_conformance_report *report, const char *fmt, ...) {
  if (report->progress == NULL) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(report->progress, fmt, ap);
  va_end(ap);
  fputc('\n', report->progress);
  fflush(report->progress);
}
