/* opencl_harness.h: a small harness that runs device-ABI ops on any backend
 * table (the OpenCL plugin, loaded with dlopen, and the CPU reference
 * backend) with host data in and host data out, plus the data generators and
 * comparisons the OpenCL tests share. Header-only, test code. */
#ifndef QIAO_OPENCL_HARNESS_H
#define QIAO_OPENCL_HARNESS_H

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qiao/device.h"
#include "test_util.h" /* CHECK, test_failures, TEST_END */

/* Operands live at this byte offset in their buffers, so every op is tested
 * with non-zero offsets (a multiple of 4: aligned for every dtype). */
#define PAD 12
/* Bytes of 0xa5 after every operand; dev_reset checks that no op wrote into
 * them (or into the PAD bytes before the operand). */
#define GUARD 64
#define MAX_BUFS 64

typedef struct dev {
  const char *label;
  const qiao_dev_api *api;
  qiao_dev_backend *backend;
  qiao_dev_device *device;
  qiao_dev_queue *queue;
  qiao_dev_buffer *bufs[MAX_BUFS]; /* freed by dev_reset */
  uint64_t buf_bytes[MAX_BUFS];    /* the operand's bytes in each */
  int n_bufs;
} dev;

/* Reports a device error (if any) and destroys it; returns 1 on success. */
static inline int dev_ok_at(dev *d, qiao_dev_error *e, const char *expr, int line) {
  if (e == NULL) return 1;
  fprintf(stderr, "line %d: [%s] %s failed: %s\n", line, d->label, expr, d->api->error_message(e));
  d->api->error_destroy(e);
  test_failures++;
  return 0;
}
#define DEV_OK(d, expr) dev_ok_at((d), (expr), #expr, __LINE__)

/* Expects `expr` to fail with `code`, and its message to contain `needle` (if non-NULL). */
static inline void dev_err_at(dev *d, qiao_dev_error *e, qiao_dev_code code, const char *needle,
                              const char *expr, int line) {
  if (e == NULL) {
    fprintf(stderr, "line %d: [%s] %s: expected error %d, got success\n", line, d->label, expr,
            (int)code);
    test_failures++;
    return;
  }
  const char *msg = d->api->error_message(e);
  if (d->api->error_code(e) != code || (needle != NULL && strstr(msg, needle) == NULL)) {
    fprintf(stderr, "line %d: [%s] %s: expected code %d with '%s', got %d: %s\n", line, d->label,
            expr, (int)code, needle ? needle : "", (int)d->api->error_code(e), msg);
    test_failures++;
  }
  d->api->error_destroy(e);
}
#define DEV_ERR(d, expr, code, needle) dev_err_at((d), (expr), (code), (needle), #expr, __LINE__)

static inline int dev_open_api(dev *d, const char *label, const qiao_dev_api *api) {
  memset(d, 0, sizeof(*d));
  d->label = label;
  d->api = api;
  qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
  if (!DEV_OK(d, api->backend_open(&bo, &d->backend))) return 0;
  uint32_t n = 0;
  if (!DEV_OK(d, api->device_count(d->backend, &n)) || n == 0) {
    fprintf(stderr, "[%s] no device\n", label);
    test_failures++;
    return 0;
  }
  qiao_dev_device_options dopt = {.struct_size = sizeof(dopt), .n_threads = 0};
  if (!DEV_OK(d, api->device_open(d->backend, 0, &dopt, &d->device))) return 0;
  return DEV_OK(d, api->queue_create(d->device, &d->queue));
}

/* Loads the OpenCL plugin from `path`. */
static inline const qiao_dev_api *load_plugin(const char *path) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
    exit(1);
  }
  qiao_device_get_api_fn get = (qiao_device_get_api_fn)dlsym(lib, QIAO_DEVICE_ENTRY_POINT);
  if (get == NULL) {
    fprintf(stderr, "%s: no %s\n", path, QIAO_DEVICE_ENTRY_POINT);
    exit(1);
  }
  return get();
}

static inline void dev_reset(dev *d) {
  if (d->queue) DEV_OK(d, d->api->queue_synchronize(d->queue));
  for (int i = 0; i < d->n_bufs; i++) {
    uint64_t n = d->buf_bytes[i];
    unsigned char *all = malloc(PAD + n + GUARD);
    DEV_OK(d, d->api->download(d->queue, all, (qiao_dev_ref){d->bufs[i], 0}, PAD + n + GUARD));
    DEV_OK(d, d->api->queue_synchronize(d->queue));
    for (uint64_t j = 0; j < PAD + n + GUARD; j++) {
      if (j == PAD) j += n;
      if (j < PAD + n + GUARD && all[j] != 0xa5) {
        fprintf(stderr, "[%s] buffer %d: a write outside the operand, at byte %lld of it\n",
                d->label, i, (long long)j - PAD);
        test_failures++;
        break;
      }
    }
    free(all);
    d->api->buffer_destroy(d->bufs[i]);
  }
  d->n_bufs = 0;
}

static inline void dev_close(dev *d) {
  dev_reset(d);
  d->api->queue_destroy(d->queue);
  d->api->device_close(d->device);
  d->api->backend_close(d->backend);
}

/* A buffer holding `bytes` of `host` (zeros when host is NULL) at offset PAD. */
static inline qiao_dev_ref up(dev *d, const void *host, uint64_t bytes) {
  qiao_dev_ref r = {NULL, PAD};
  if (d->n_bufs == MAX_BUFS) {
    fprintf(stderr, "too many buffers\n");
    exit(1);
  }
  if (!DEV_OK(d, d->api->buffer_create(d->device, bytes + PAD + GUARD, &r.buffer))) exit(1);
  d->bufs[d->n_bufs] = r.buffer;
  d->buf_bytes[d->n_bufs++] = bytes;
  unsigned char *tmp = calloc(1, bytes + PAD + GUARD);
  memset(tmp, 0xa5, bytes + PAD + GUARD); /* garbage around the operand */
  if (host)
    memcpy(tmp + PAD, host, bytes);
  else
    memset(tmp + PAD, 0, bytes);
  DEV_OK(d, d->api->upload(d->queue, (qiao_dev_ref){r.buffer, 0}, tmp, bytes + PAD + GUARD));
  DEV_OK(d, d->api->queue_synchronize(d->queue));
  free(tmp);
  return r;
}

/* Downloads `bytes` from `r` and synchronizes. */
static inline void get(dev *d, qiao_dev_ref r, void *host, uint64_t bytes) {
  DEV_OK(d, d->api->download(d->queue, host, r, bytes));
  DEV_OK(d, d->api->queue_synchronize(d->queue));
}

/* ---- data */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static inline float rndf(void) {
  return (float)(rnd() % 2000001) / 1000000.0f - 1.0f;
} /* [-1, 1] */

static inline float *rand_f32(size_t n, float scale) {
  float *v = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++)
    v[i] = rndf() * scale;
  return v;
}

/* f32 -> f16 bits, round to nearest even (normal range; tiny values flush to 0). */
static inline uint16_t f2h(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int e = (int)((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffff;
  if (e <= 0) return (uint16_t)sign;
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  uint32_t h = sign | ((uint32_t)e << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return (uint16_t)h;
}

static inline const char *dtype_name(qiao_dev_dtype t) {
  static const char *names[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "i32"};
  if (t == QIAO_DEV_F8_E4M3_B128) return "f8_e4m3_b128";
  return (unsigned)t < 6 ? names[t] : "?";
}

/* Bytes of `rows` rows of `cols` weights. */
static inline size_t weight_bytes(qiao_dev_dtype t, size_t rows, size_t cols) {
  switch (t) {
  case QIAO_DEV_F32: return rows * cols * 4;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: return rows * cols * 2;
  case QIAO_DEV_Q8_0: return rows * (cols / 32) * 34;
  case QIAO_DEV_Q4_0: return rows * (cols / 32) * 18;
  case QIAO_DEV_F8_E4M3_B128: return rows * (cols / 128) * 132;
  default: return 0;
  }
}

/* Random, finite weights in dtype t: block scales are f16 in [0.002, 0.05)
 * (F8_E4M3_B128: f32 in [0.0005, 0.01), the NaN codes 0x7f/0xff never). */
static inline unsigned char *rand_weights(qiao_dev_dtype t, size_t rows, size_t cols) {
  size_t bytes = weight_bytes(t, rows, cols);
  unsigned char *w = malloc(bytes ? bytes : 1);
  size_t n = rows * cols;
  if (t == QIAO_DEV_F32) {
    for (size_t i = 0; i < n; i++)
      ((float *)w)[i] = rndf();
  } else if (t == QIAO_DEV_F16) {
    for (size_t i = 0; i < n; i++) {
      uint16_t h = f2h(rndf());
      memcpy(w + 2 * i, &h, 2);
    }
  } else if (t == QIAO_DEV_BF16) {
    for (size_t i = 0; i < n; i++) {
      float f = rndf();
      uint32_t x;
      memcpy(&x, &f, 4);
      uint16_t b = (uint16_t)(x >> 16);
      memcpy(w + 2 * i, &b, 2);
    }
  } else if (t == QIAO_DEV_F8_E4M3_B128) {
    for (size_t b = 0; b < n / 128; b++) {
      float d = 0.0005f + (float)(rnd() % 1000) * 0.0000095f;
      memcpy(w + b * 132, &d, 4);
      for (size_t j = 4; j < 132; j++) {
        unsigned char q = (unsigned char)rnd();
        w[b * 132 + j] = (q & 0x7f) == 0x7f ? (unsigned char)(q - 1) : q;
      }
    }
  } else {
    size_t bs = t == QIAO_DEV_Q8_0 ? 34 : 18, nb = n / 32;
    for (size_t b = 0; b < nb; b++) {
      uint16_t d = f2h(0.002f + (float)(rnd() % 1000) * 0.000048f);
      memcpy(w + b * bs, &d, 2);
      for (size_t j = 2; j < bs; j++)
        w[b * bs + j] = (unsigned char)rnd();
    }
  }
  return w;
}

/* Relative L2 error of each row of `got` against `want`; reports the worst
 * row over `tol`. A row whose reference is all zero must match within tol. */
static inline void compare_rows(const char *what, const float *got, const float *want, size_t rows,
                                size_t cols, double tol) {
  for (size_t r = 0; r < rows; r++) {
    double num = 0, den = 0;
    for (size_t c = 0; c < cols; c++) {
      double dlt = (double)got[r * cols + c] - (double)want[r * cols + c];
      num += dlt * dlt;
      den += (double)want[r * cols + c] * want[r * cols + c];
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    if (!(rel <= tol)) {
      fprintf(stderr, "%s: row %zu: relative L2 error %.3g > %.3g (got[0]=%.9g want[0]=%.9g)\n",
              what, r, rel, tol, (double)got[r * cols], (double)want[r * cols]);
      test_failures++;
      return;
    }
  }
}

static inline void compare_exact(const char *what, const void *got, const void *want,
                                 size_t bytes) {
  if (memcmp(got, want, bytes) != 0) {
    const unsigned char *a = got, *b = want;
    size_t i = 0;
    while (a[i] == b[i])
      i++;
    fprintf(stderr, "%s: differs at byte %zu of %zu\n", what, i, bytes);
    test_failures++;
  }
}

#endif
