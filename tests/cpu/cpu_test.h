/* Shared helpers of the CPU backend tests: opening a device with a chosen
 * ISA and thread count, buffers from host arrays, random data, GGUF
 * quantization (f32 -> Q8_0/Q4_0) and an independent f16 codec. */
#ifndef QIAO_CPU_TEST_H
#define QIAO_CPU_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "qiao/device.h"

static int failures = 0;
#define EXPECT(cond)                                                                               \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

static const qiao_dev_api *api;

/* Fails the test (and prints the message) unless e is NULL. */
#define EXPECT_OK(expr)                                                                            \
  do {                                                                                             \
    qiao_dev_error *e_ = (expr);                                                                   \
    if (e_ != NULL) {                                                                              \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,                         \
              api->error_message(e_));                                                             \
      api->error_destroy(e_);                                                                      \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

/* Expects error `code` whose message contains `part` (NULL: any). */
#define EXPECT_ERR(expr, code, part)                                                               \
  do {                                                                                             \
    qiao_dev_error *e_ = (expr);                                                                   \
    if (api->error_code(e_) != (code)) {                                                           \
      fprintf(stderr, "%s:%d: %s: expected code %d, got %d (%s)\n", __FILE__, __LINE__, #expr,     \
              (int)(code), (int)api->error_code(e_), e_ ? api->error_message(e_) : "success");     \
      failures++;                                                                                  \
    } else if ((part) != NULL && strstr(api->error_message(e_), (part) ? (part) : "") == NULL) {   \
      fprintf(stderr, "%s:%d: %s: message '%s' lacks '%s'\n", __FILE__, __LINE__, #expr,           \
              api->error_message(e_), (part) ? (part) : "");                                       \
      failures++;                                                                                  \
    }                                                                                              \
    api->error_destroy(e_);                                                                        \
  } while (0)

typedef struct env {
  qiao_dev_backend *backend;
  qiao_dev_device *device;
  qiao_dev_queue *queue;
  const char *isa;
} env;

/* Opens device 0 of the backend `api` points to, as a runtime of ABI minor
 * `runtime_minor`, with device_open `flags`; `isa` names the CPU kernel set (QIAO_CPU_ISA:
 * "scalar", "avx2", "avx512") and labels messages. Returns 0 when device_open fails with
 * UNSUPPORTED (a processor without that ISA). */
static inline int env_open_minor(env *t, const char *isa, uint32_t n_threads, uint32_t flags,
                                 uint32_t runtime_minor) {
  memset(t, 0, sizeof(*t));
  t->isa = isa;
  qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, runtime_minor};
  EXPECT_OK(api->backend_open(&bo, &t->backend));
  setenv("QIAO_CPU_ISA", isa, 1);
  qiao_dev_device_options opt = {
      .struct_size = sizeof(opt), .n_threads = n_threads, .flags = flags};
  qiao_dev_error *e = api->device_open(t->backend, 0, &opt, &t->device);
  unsetenv("QIAO_CPU_ISA");
  if (e != NULL) {
    EXPECT(api->error_code(e) == QIAO_DEV_UNSUPPORTED);
    api->error_destroy(e);
    api->backend_close(t->backend);
    return 0;
  }
  EXPECT_OK(api->queue_create(t->device, &t->queue));
  return 1;
}

/* The same as a runtime of this header's ABI minor. */
static inline int env_open_flags(env *t, const char *isa, uint32_t n_threads, uint32_t flags) {
  return env_open_minor(t, isa, n_threads, flags, QIAO_DEVICE_ABI_MINOR);
}

/* The CPU backend's device with kernels `isa`, in its ordinary mode. */
static inline int env_open(env *t, const char *isa, uint32_t n_threads) {
  api = qiao_cpu_get_api();
  return env_open_flags(t, isa, n_threads, 0);
}

static inline void env_close(env *t) {
  api->queue_destroy(t->queue);
  api->device_close(t->device);
  api->backend_close(t->backend);
}

/* A device buffer holding a copy of `bytes` bytes of host data (or zeros). */
static inline qiao_dev_buffer *buf(env *t, const void *data, uint64_t bytes) {
  qiao_dev_buffer *b = NULL;
  EXPECT_OK(api->buffer_create(t->device, bytes, &b));
  if (data != NULL && b != NULL)
    EXPECT_OK(api->upload(t->queue, (qiao_dev_ref){b, 0}, data, bytes));
  return b;
}

static inline void get(env *t, void *dst, qiao_dev_buffer *b, uint64_t bytes) {
  EXPECT_OK(api->download(t->queue, dst, (qiao_dev_ref){b, 0}, bytes));
  EXPECT_OK(api->queue_synchronize(t->queue));
}

static inline qiao_dev_ref ref(qiao_dev_buffer *b) {
  return (qiao_dev_ref){b, 0};
}

/* ---- Random data ------------------------------------------------------------ */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static inline uint32_t rnd_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 32);
}
static inline float rnd(void) {
  return (float)rnd_u32() / 2147483648.0f - 1.0f;
} /* [-1, 1) */
static inline float *rnd_floats(uint64_t n, float scale) {
  float *v = malloc(n * sizeof(float) + 4);
  for (uint64_t i = 0; i < n; i++)
    v[i] = rnd() * scale;
  return v;
}

/* ---- f16 / bf16 through the compiler's _Float16 (independent of the backend) */
static inline uint16_t to_f16(float f) {
  _Float16 h = (_Float16)f;
  uint16_t u;
  memcpy(&u, &h, 2);
  return u;
}
static inline double from_f16(uint16_t u) {
  _Float16 h;
  memcpy(&h, &u, 2);
  return (double)h;
}
static inline uint16_t to_bf16(float f) { /* round to nearest even */
  uint32_t b;
  memcpy(&b, &f, 4);
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
static inline double from_bf16(uint16_t u) {
  uint32_t b = (uint32_t)u << 16;
  float f;
  memcpy(&f, &b, 4);
  return f;
}

/* ---- GGUF quantization of rows of k (k % 32 == 0) ---------------------------- */
static inline void quantize_q8_0(const float *x, uint64_t k, uint8_t *out) {
  for (uint64_t b = 0; b < k / 32; b++) {
    const float *v = x + 32 * b;
    float amax = 0.0f;
    for (int i = 0; i < 32; i++)
      amax = fmaxf(amax, fabsf(v[i]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t dh = to_f16(d);
    uint8_t *blk = out + 34 * b;
    memcpy(blk, &dh, 2);
    for (int i = 0; i < 32; i++)
      blk[2 + i] = (uint8_t)(int8_t)roundf(v[i] * id);
  }
}

static inline void quantize_q4_0(const float *x, uint64_t k, uint8_t *out) {
  for (uint64_t b = 0; b < k / 32; b++) {
    const float *v = x + 32 * b;
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < 32; i++)
      if (fabsf(v[i]) > amax) {
        amax = fabsf(v[i]);
        max = v[i];
      }
    float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t dh = to_f16(d);
    uint8_t *blk = out + 18 * b;
    memcpy(blk, &dh, 2);
    for (int j = 0; j < 16; j++) {
      int lo = (int)(v[j] * id + 8.5f), hi = (int)(v[j + 16] * id + 8.5f);
      lo = lo > 15 ? 15 : lo;
      hi = hi > 15 ? 15 : hi;
      blk[2 + j] = (uint8_t)(lo | (hi << 4));
    }
  }
}

static inline uint64_t row_bytes(qiao_dev_dtype dt, uint64_t k) {
  switch (dt) {
  case QIAO_DEV_F32: return 4 * k;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: return 2 * k;
  case QIAO_DEV_Q8_0: return k / 32 * 34;
  case QIAO_DEV_Q4_0: return k / 32 * 18;
  default: return 4 * k;
  }
}

/* Encodes rows x (rows, k) in dtype; returns malloc'd bytes. */
static inline uint8_t *encode(qiao_dev_dtype dt, const float *x, uint64_t rows, uint64_t k) {
  uint64_t rb = row_bytes(dt, k);
  uint8_t *out = malloc(rows * rb + 1);
  for (uint64_t r = 0; r < rows; r++) {
    const float *v = x + r * k;
    uint8_t *o = out + r * rb;
    switch (dt) {
    case QIAO_DEV_F32: memcpy(o, v, 4 * k); break;
    case QIAO_DEV_F16:
      for (uint64_t i = 0; i < k; i++) {
        uint16_t h = to_f16(v[i]);
        memcpy(o + 2 * i, &h, 2);
      }
      break;
    case QIAO_DEV_BF16:
      for (uint64_t i = 0; i < k; i++) {
        uint16_t h = to_bf16(v[i]);
        memcpy(o + 2 * i, &h, 2);
      }
      break;
    case QIAO_DEV_Q8_0: quantize_q8_0(v, k, o); break;
    default: quantize_q4_0(v, k, o); break;
    }
  }
  return out;
}

/* Element i of an encoded row, exactly, in double. */
static inline double decode_at(qiao_dev_dtype dt, const uint8_t *row, uint64_t i) {
  uint16_t h;
  switch (dt) {
  case QIAO_DEV_F32: {
    float f;
    memcpy(&f, row + 4 * i, 4);
    return f;
  }
  case QIAO_DEV_F16: memcpy(&h, row + 2 * i, 2); return from_f16(h);
  case QIAO_DEV_BF16: memcpy(&h, row + 2 * i, 2); return from_bf16(h);
  case QIAO_DEV_Q8_0: {
    const uint8_t *blk = row + 34 * (i / 32);
    memcpy(&h, blk, 2);
    return from_f16(h) * (double)(int8_t)blk[2 + i % 32];
  }
  default: {
    const uint8_t *blk = row + 18 * (i / 32);
    memcpy(&h, blk, 2);
    uint64_t j = i % 32;
    int nib = j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4);
    return from_f16(h) * (double)(nib - 8);
  }
  }
}

static const qiao_dev_dtype weight_dtypes[] = {QIAO_DEV_F32, QIAO_DEV_F16, QIAO_DEV_BF16,
                                               QIAO_DEV_Q8_0, QIAO_DEV_Q4_0};
static const char *const isas[] = {"scalar", "avx2", "avx512"};

/* |got - want| <= rel * scale + abs_tol, reported once per call site. */
static inline int close_to(double got, double want, double scale, double rel, const char *what,
                           uint64_t index) {
  double err = fabs(got - want);
  if (err <= rel * scale + 1e-6 && got == got) return 1;
  fprintf(stderr, "%s[%llu]: got %.9g want %.9g (err %.3g, scale %.3g)\n", what,
          (unsigned long long)index, got, want, err, scale);
  return 0;
}

#endif
