/* cpu_internal.h: what the files of the CPU backend share: the handle
 * structs, errors, argument checks, the thread pool and the kernel table.
 * Only qiao/device.h, libc and pthreads are used, so the backend builds
 * with nothing but the public header. */
#ifndef QIAO_CPU_INTERNAL_H
#define QIAO_CPU_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "qiao/device.h"

#define QIAO__CPU_VERSION "0.1.0"

/* Magic numbers put in every handle so a foreign or destroyed handle is
 * reported as QIAO_DEV_BAD_HANDLE where that is cheaply detectable. */
enum {
  QIAO__CPU_MAGIC_ERROR = 0x45555043u,   /* "CPUE" */
  QIAO__CPU_MAGIC_BACKEND = 0x42555043u, /* "CPUB" */
  QIAO__CPU_MAGIC_DEVICE = 0x44555043u,  /* "CPUD" */
  QIAO__CPU_MAGIC_BUFFER = 0x4d555043u,  /* "CPUM" */
  QIAO__CPU_MAGIC_QUEUE = 0x51555043u,   /* "CPUQ" */
  QIAO__CPU_MAGIC_DEAD = 0xdeadc0deu
};

struct qiao_dev_error {
  uint32_t magic;
  qiao_dev_code code;
  int is_static;       /* the preallocated out-of-memory error; never freed */
  const char *message; /* storage[] or a static string */
  char storage[];
};

struct qiao_dev_backend {
  uint32_t magic;
  uint32_t runtime_minor; /* the runtime's ABI minor: device_open reads flags from 1 */
};

/* ---- Kernels --------------------------------------------------------------
 * dot: out[r] = sum_i w[i] * x[r][i] for r < nr (nr <= QIAO__CPU_MAX_ROWS),
 * with w one row of k elements in the kernel's dtype (k % 32 == 0 for
 * Q8_0/Q4_0). A result is a function of (w, x[r], k, nr) only: callers form
 * the groups of rows from the shapes, never from the thread count, so
 * results are bit-identical for any number of threads. For F32, F16 and
 * BF16 weights it is a function of (w, x[r], k) alone, nr included (every
 * set keeps separate accumulators per row; batch-invariant mode relies on
 * it and tests/cpu checks it); for quantized weights the AVX-512 set's
 * nr == 1 case sums differently (d * sum(q * x) per block).
 * dot2 (optional, NULL when a kernel set lacks it): the same for two weight
 * rows w0, w1 at once, each result bit-identical to dot's for the same nr.
 * gemv (optional): out[j] = dot(w + j * row_bytes, {x}, 1) for j < m, one
 * row of x against m consecutive weight rows (decode), each result
 * bit-identical to dot's; one call for many rows instead of one per row.
 * pack + gemm (optional, both or neither), for prefill on a tile of
 * QIAO__CPU_GEMM_COLS weight rows exactly dequantized to f32: pack turns 16
 * rows (row-major, k floats each) into columns 16 * half .. 16 * half + 15 of
 * the packed tile wp[i * QIAO__CPU_GEMM_COLS + c] (element i of row c; k %
 * 16 == 0); gemm then writes out[r * QIAO__CPU_GEMM_COLS + c] = sum over i
 * of x[r][i] * wp[...] for r < nr <= QIAO__CPU_MAX_ROWS, in an order fixed
 * by k alone (the AVX-512 kernel: FMA chains over chunks of 128 elements,
 * the chunks added in order). A result depends on (row c, x[r], k) only.
 * axpy: y[i] += a * x[i] for x F32 or F16 (index 0 / 1).
 * For rows of x beyond the first group, a quantized dot kernel computes the
 * same as the F32 kernel on the exactly dequantized row (what matmul uses to
 * dequantize a tile of weight rows once for a whole prefill). */
#define QIAO__CPU_MAX_ROWS 8
typedef void (*qiao__cpu_dot_fn)(const uint8_t *w, const float *const *x, int nr, uint64_t k,
                                 float *out);
typedef void (*qiao__cpu_dot2_fn)(const uint8_t *w0, const uint8_t *w1, const float *const *x,
                                  int nr, uint64_t k, float *out0, float *out1);
typedef void (*qiao__cpu_gemv_fn)(const uint8_t *w, uint64_t row_bytes, uint64_t m, const float *x,
                                  uint64_t k, float *out);
#define QIAO__CPU_GEMM_COLS 32
typedef void (*qiao__cpu_pack_fn)(const float *rows, uint64_t k, int half, float *wp);
typedef void (*qiao__cpu_gemm_fn)(const float *wp, const float *const *x, int nr, uint64_t k,
                                  float *out);
/* gemv_packed (optional, only with pack + gemm), for few rows of x in
 * batch-invariant mode: for the tile of count <= QIAO__CPU_GEMM_COLS weight
 * rows at w (row_bytes apart, k % 32 == 0) and nr <= 4 rows of x, writes
 * out[r * QIAO__CPU_GEMM_COLS + c] for c < count bit-identical to what
 * dequant + pack + gemm give, reading the weights as they are. */
#define QIAO__CPU_GEMV_PACKED_ROWS 4
typedef void (*qiao__cpu_gemv_packed_fn)(const uint8_t *w, uint64_t row_bytes, uint64_t count,
                                         const float *const *x, int nr, uint64_t k, float *out);
/* repack + gemm_repacked (optional, both or neither), for Q8_0 and Q4_0
 * weights in batch-invariant mode (cpu_matmul.c): repack writes the tile of
 * count <= QIAO__CPU_GEMM_COLS weight rows at w (row_bytes apart, k % 32 ==
 * 0) as QIAO__CPU_REPACK_BLOCK bytes per block b of 32 elements of k: the
 * 32 columns' scales as f32 (exact), then the quants as int8 by element
 * (element i of the block: the 32 columns' values; Q4_0: nibble - 8); the
 * columns at or past count are zero. gemm_repacked then writes
 * out[r * QIAO__CPU_GEMM_COLS + c] for nr <= QIAO__CPU_MAX_ROWS rows of x,
 * bit-identical to dequant + pack + gemm on the same rows (w = d * q as an
 * f32 product, the same sums in the same order). */
#define QIAO__CPU_REPACK_BLOCK (QIAO__CPU_GEMM_COLS * 4 + QIAO__CPU_GEMM_COLS * 32)
typedef void (*qiao__cpu_repack_fn)(const uint8_t *w, uint64_t row_bytes, uint64_t count,
                                    uint64_t k, uint8_t *tile);
typedef void (*qiao__cpu_gemm_repacked_fn)(const uint8_t *tile, const float *const *x, int nr,
                                           uint64_t k, float *out);
/* gemm2_repacked (optional, with repack): one row of x against the two
 * consecutive tiles at tile (both full), out[t * QIAO__CPU_GEMM_COLS + c]
 * for column c of tile t, each bit-identical to gemm_repacked's. */
typedef void (*qiao__cpu_gemm2_repacked_fn)(const uint8_t *tile, const float *x, uint64_t k,
                                            float *out);
/* Q8 activations (device ABI 1.2, x_precision = QIAO_DEV_PRECISION_Q8;
 * cpu_q8_activations.c). A row of x quantized per block b of 32 elements:
 * q[i] int8, d[b] = amax / 127 (NaN when the block holds a non-finite
 * value), sum[b] = the sum of its 32 quants. The weights are then kept as
 * tiles of QIAO__CPU_GEMM_COLS rows, qiao__cpu_q8_block_bytes(dtype) bytes
 * per block b: the 32 columns' scales as f32, then the quants as unsigned
 * bytes u[c][i] = w + offset for column c, element i:
 *   Q8_0 (offset 128): for each group g of 4 elements (8 per block) and
 *     each column c, 4 bytes: elements 4g .. 4g + 3;
 *   Q4_0 (offset 8, the stored nibble): for each group g of 4 (4 per
 *     block) and each column c, 4 bytes: the block's bytes 4g .. 4g + 3 as
 *     stored, low nibbles elements 4g + j, high nibbles 16 + 4g + j.
 * Columns at or past the last row are zero. gemm_q8[dtype] writes
 * out[r * QIAO__CPU_GEMM_COLS + c] for nr <= QIAO__CPU_MAX_ROWS rows of x as
 *   acc = 0; for each block b in order:
 *     acc = fmaf((float)(sum_i u[c][i] * q[i] - offset * sum[b]), d_w[c] * d[b], acc)
 * (the integer sum exact), so every kernel set that has it gives the same
 * bits, and a row's bits do not depend on nr. */
typedef struct qiao__cpu_q8_row {
  const int8_t *q;
  const float *d;
  const int32_t *sum;
} qiao__cpu_q8_row;
static inline uint64_t qiao__cpu_q8_block_bytes(qiao_dev_dtype dtype) {
  return QIAO__CPU_GEMM_COLS * 4 + QIAO__CPU_GEMM_COLS * (dtype == QIAO_DEV_Q4_0 ? 16 : 32);
}
typedef void (*qiao__cpu_gemm_q8_fn)(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                     uint64_t k, float *out);
/* quantize_q8: qiao__cpu_quantize_q8 (below), the same bits, faster. */
typedef void (*qiao__cpu_quantize_q8_fn)(const float *x, uint64_t k, int8_t *q, float *d,
                                         int32_t *sum);
typedef void (*qiao__cpu_dequant_fn)(const uint8_t *w, uint64_t k, float *out);
typedef void (*qiao__cpu_axpy_fn)(float *y, float a, const uint8_t *x, uint64_t n);

typedef struct qiao__cpu_kernels {
  const char *name; /* "scalar", "avx2", "avx512" */
  /* 1 when a quantized dot result equals the F32 dot on the exactly
   * dequantized row for every nr (no single-row shortcut): then the tile
   * and the direct paths of matmul give the same bits. */
  int quant_dot_any_nr;
  qiao__cpu_dot_fn dot[QIAO_DEV_DTYPE_COUNT];                 /* NULL for I32 */
  qiao__cpu_dot2_fn dot2[QIAO_DEV_DTYPE_COUNT];               /* optional */
  qiao__cpu_gemv_fn gemv[QIAO_DEV_DTYPE_COUNT];               /* optional */
  qiao__cpu_pack_fn pack;                                     /* optional */
  qiao__cpu_gemm_fn gemm;                                     /* optional */
  qiao__cpu_gemv_packed_fn gemv_packed[QIAO_DEV_DTYPE_COUNT]; /* optional, with gemm */
  qiao__cpu_repack_fn repack[QIAO_DEV_DTYPE_COUNT];           /* optional: Q8_0, Q4_0 */
  qiao__cpu_gemm_repacked_fn gemm_repacked;                   /* optional, with repack */
  qiao__cpu_gemm2_repacked_fn gemm2_repacked;                 /* optional, with repack */
  qiao__cpu_gemm_q8_fn gemm_q8[QIAO_DEV_DTYPE_COUNT]; /* optional: Q8 activations, Q8_0/Q4_0 */
  qiao__cpu_quantize_q8_fn quantize_q8;               /* optional, with gemm_q8 */
  /* Q8 activations on the 1.3 dtypes' stored blocks (optional, per dtype;
   * qiao__cpu_vec_q8_fn below); Q8_0 and Q4_0 for matmul_experts only. */
  void (*vec_q8[QIAO_DEV_DTYPE_COUNT])(const uint8_t *w, const qiao__cpu_q8_row *x, int nr,
                                       uint64_t k, float *out);
  /* The same on nw consecutive weight rows (qiao__cpu_vec_q8_rows_fn below):
   * optional, per dtype, the same results as vec_q8. */
  void (*vec_q8_rows[QIAO_DEV_DTYPE_COUNT])(const uint8_t *w, uint64_t row_bytes, int nw,
                                            const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                            float *out);
  /* Exact conversion of one row to f32, by dtype: Q8_0 and Q4_0 always; the
   * float types optionally, for the packed prefill path (k % 32 == 0). */
  qiao__cpu_dequant_fn dequant[QIAO_DEV_DTYPE_COUNT];
  qiao__cpu_axpy_fn axpy[2]; /* F32, F16 */
} qiao__cpu_kernels;

const qiao__cpu_kernels *qiao__cpu_kernels_scalar(void);
/* NULL when the processor (or the build's architecture) lacks the ISA. */
const qiao__cpu_kernels *qiao__cpu_kernels_avx2(void);
const qiao__cpu_kernels *qiao__cpu_kernels_avx512(void);

/* ---- Thread pool ----------------------------------------------------------
 * run() calls fn(ctx, ith, nth) once for every ith < nth, the caller being
 * thread 0, and returns when all are done. Calls are serialized. */
typedef struct qiao__cpu_pool qiao__cpu_pool;
typedef void (*qiao__cpu_task_fn)(void *ctx, uint32_t ith, uint32_t nth);
qiao_dev_error *qiao__cpu_pool_create(uint32_t n_threads, qiao__cpu_pool **out_pool);
void qiao__cpu_pool_destroy(qiao__cpu_pool *pool);
void qiao__cpu_pool_run(qiao__cpu_pool *pool, qiao__cpu_task_fn fn, void *ctx);

/* [lo, hi): thread ith's contiguous share of total items. */
static inline void qiao__cpu_split(uint64_t total, uint32_t ith, uint32_t nth, uint64_t *lo,
                                   uint64_t *hi) {
  uint64_t base = total / nth, extra = total % nth;
  *lo = ith * base + (ith < extra ? ith : extra);
  *hi = *lo + base + (ith < extra ? 1 : 0);
}

/* ---- Handles --------------------------------------------------------------- */
struct qiao_dev_device {
  uint32_t magic;
  uint32_t n_threads;
  qiao_dev_backend *backend;
  const qiao__cpu_kernels *kernels;
  /* Opened with QIAO_DEV_OPEN_BATCH_INVARIANT: matmul and matmul_experts
   * take one summation order per (kernels, dtype, k), whatever the number
   * of rows (cpu_matmul.c); the other ops always do. */
  int batch_invariant;
  qiao__cpu_pool *pool; /* NULL when n_threads == 1 */
  uint64_t max_buffer_bytes;
  /* Batch-invariant mode: repacked copies of quantized weight matrices
   * (cpu_matmul.c), a list guarded by repack_lock. */
  pthread_mutex_t repack_lock;
  struct qiao__cpu_repacked *repacked;
  _Atomic uint64_t live_buffers, live_bytes; /* allocation accounting */
};

struct qiao_dev_buffer {
  uint32_t magic;
  uint32_t read_only; /* wrapped host memory: never written by the device */
  qiao_dev_device *device;
  uint8_t *data;
  uint64_t size;
  /* Entries of the device's repack cache made from this buffer: a write
   * into it or its destruction drops those it overlaps. */
  _Atomic uint32_t repacked;
};

struct qiao_dev_queue {
  uint32_t magic;
  qiao_dev_device *device;
  qiao_dev_error *pending; /* the first asynchronous error, for queue_synchronize */
};

/* Runs fn over the device's threads; single-threaded (inline) when
 * `parallel` is 0 or the device has one thread. */
void qiao__cpu_run(qiao_dev_device *device, qiao__cpu_task_fn fn, void *ctx, int parallel);

/* The repack cache (cpu_matmul.c): drops the entries made from bytes
 * [offset, offset + bytes) of buffer (called before anything writes there,
 * and with the whole buffer when it is destroyed); frees them all. */
void qiao__cpu_repack_invalidate(qiao_dev_buffer *buffer, uint64_t offset, uint64_t bytes);
void qiao__cpu_repack_clear(qiao_dev_device *device);

/* Live buffers and their bytes (for conformance tests: balance after close). */
void qiao__cpu_live_buffers(const qiao_dev_device *device, uint64_t *out_count,
                            uint64_t *out_bytes);

/* ---- Errors and argument checks ------------------------------------------- */
qiao_dev_error *qiao__cpu_error(qiao_dev_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void qiao__cpu_error_free(qiao_dev_error *error); /* accepts NULL and the static error */

/* Errors found in device data (ids, slots, positions, block tables) are
 * asynchronous (device-abi.md §6): the op skips its work, the first such
 * error is kept and returned by the next queue_synchronize. Returns NULL. */
qiao_dev_error *qiao__cpu_defer(qiao_dev_queue *queue, qiao_dev_error *error);

const char *qiao__cpu_dtype_name(qiao_dev_dtype dtype);

/* Checks the queue handle and the args struct (non-NULL, struct_size >=
 * `size`); on success *out_device is the queue's device. */
qiao_dev_error *qiao__cpu_begin(const char *op, qiao_dev_queue *queue, const void *args,
                                size_t size, qiao_dev_device **out_device);

/* Checks that `dtype` is a dtype and one of `allowed` (a mask of 1u << dtype):
 * INVALID_ARGUMENT when it is not a dtype, UNSUPPORTED when not allowed. */
qiao_dev_error *qiao__cpu_check_dtype(const char *op, const char *arg, qiao_dev_dtype dtype,
                                      uint32_t allowed);

/* *out_bytes = rows * the bytes of `cols` elements of dtype, overflow-checked;
 * quantized dtypes need cols % 32 == 0. */
qiao_dev_error *qiao__cpu_extent(const char *op, const char *arg, qiao_dev_dtype dtype,
                                 uint64_t rows, uint64_t cols, uint64_t *out_bytes);

enum { QIAO__CPU_REF_OPTIONAL = 1, QIAO__CPU_REF_WRITE = 2 };
/* A dtype for operand_get meaning raw bytes (no alignment). */
#define QIAO__CPU_BYTES ((qiao_dev_dtype)QIAO_DEV_DTYPE_COUNT)

/* A resolved operand: its place and extent, for range and overlap checks. */
typedef struct qiao__cpu_operand {
  const char *name;
  const qiao_dev_buffer *buffer; /* NULL when an optional operand is absent */
  uint64_t offset, bytes;
  uint8_t *ptr;
} qiao__cpu_operand;

/* Resolves `ref` as operand `name` of `bytes` bytes with the alignment of
 * `dtype`: the buffer must be a live buffer of `device`, the range inside it,
 * and writable when flags has QIAO__CPU_REF_WRITE. */
qiao_dev_error *qiao__cpu_operand_get(qiao_dev_device *device, const char *op, const char *name,
                                      qiao_dev_ref ref, uint64_t bytes, qiao_dev_dtype dtype,
                                      unsigned flags, qiao__cpu_operand *out);

/* a * b in *out, or INVALID_ARGUMENT naming both when it overflows. */
qiao_dev_error *qiao__cpu_mul_dims(const char *op, const char *a_name, uint64_t a,
                                   const char *b_name, uint64_t b, uint64_t *out);

/* The paged-cache rules of attention and attention_latent, checked on the
 * device data before anything is read through it: every token's sequence
 * (token_seq, in [0, n_seqs)), position (token_pos, >= 0, its block within
 * max_blocks_per_seq) and the block-table entries of its visible positions
 * (in [0, n_slots / block_size)). INVALID_ARGUMENT naming the first bad one. */
qiao_dev_error *qiao__cpu_check_paged_tokens(const char *op, const int32_t *token_seq,
                                             const int32_t *token_pos, const int32_t *block_table,
                                             uint64_t n_tokens, uint64_t n_seqs,
                                             uint64_t max_blocks_per_seq, uint64_t block_size,
                                             uint64_t n_slots, uint64_t window);

/* INVALID_ARGUMENT when out overlaps in (exactly equal ranges are allowed
 * when allow_equal). */
qiao_dev_error *qiao__cpu_no_overlap(const char *op, const qiao__cpu_operand *out,
                                     const qiao__cpu_operand *in, int allow_equal);

/* ---- Scalar conversions (exact) -------------------------------------------- */
static inline float qiao__cpu_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13); /* inf / nan */
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else { /* subnormal: normalize */
    exp = 113;
    while ((man & 0x400u) == 0) {
      man <<= 1;
      exp--;
    }
    bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* Round to nearest, ties to even; overflow to inf; nan stays nan. */
static inline uint16_t qiao__cpu_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u, abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
  if (abs >= 0x38800000u) {                                  /* normal half */
    uint32_t r = abs - 0x38000000u;                          /* rebias 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
  }
  if (abs < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
  uint32_t e = abs >> 23, man = (abs & 0x7fffffu) | 0x800000u;
  uint32_t shift = 126 - e; /* 14..24 */
  uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (q & 1u))) q++;
  return (uint16_t)(sign | q);
}

static inline float qiao__cpu_bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static inline uint16_t qiao__cpu_load_u16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

/* Q8 activations (cpu_q8_activations.c): quantizes one row of k floats (k %
 * 32 == 0) into q (k int8), d and sum (k / 32 each), as described above
 * qiao__cpu_q8_row; writes the tile of count <= QIAO__CPU_GEMM_COLS Q8_0 or
 * Q4_0 weight rows at w (row_bytes apart) in that dtype's tile layout; and
 * the portable gemm_q8 of each. */
void qiao__cpu_quantize_q8(const float *x, uint64_t k, int8_t *q, float *d, int32_t *sum);
void qiao__cpu_repack_q8(qiao_dev_dtype dtype, const uint8_t *w, uint64_t row_bytes, uint64_t count,
                         uint64_t k, uint8_t *tile);
void qiao__cpu_gemm_q8_scalar_q8_0(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                   uint64_t k, float *out);
void qiao__cpu_gemm_q8_scalar_q4_0(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                   uint64_t k, float *out);

/* Dequantizes one row of n elements (n a multiple of the block) to f32. */
void qiao__cpu_dequantize_row(qiao_dev_dtype dtype, const uint8_t *row, uint64_t n, float *out);

/* Scale and min of sub-block j (0..7) of a Q4_K or Q5_K super-block, from
 * its 12 bytes of packed 6-bit pairs s (format.md section 4.1). */
static inline void qiao__cpu_k4_scale_min(const uint8_t *s, int j, int *scale, int *min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

/* ---- The block types of ABI 1.3 (cpu_kquants.c) ----------------------------
 * Elements and bytes of one block of a quantized dtype (1 and the element
 * size for the float ones, 0 for a value that is not a dtype). */
static inline uint64_t qiao__cpu_block_elems(qiao_dev_dtype dtype) {
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
  case QIAO_DEV_F32:
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16:
  case QIAO_DEV_I32: return 1;
  default: return 0;
  }
}
static inline uint64_t qiao__cpu_block_bytes(qiao_dev_dtype dtype) {
  switch (dtype) {
  case QIAO_DEV_F32:
  case QIAO_DEV_I32: return 4;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: return 2;
  case QIAO_DEV_Q8_0: return 34;
  case QIAO_DEV_Q4_0: return 18;
  case QIAO_DEV_Q4_K: return 144;
  case QIAO_DEV_Q5_K: return 176;
  case QIAO_DEV_Q6_K: return 210;
  case QIAO_DEV_Q2_K: return 84;
  case QIAO_DEV_Q3_K: return 110;
  case QIAO_DEV_Q4_1: return 20;
  case QIAO_DEV_Q5_0: return 22;
  case QIAO_DEV_Q5_1: return 24;
  case QIAO_DEV_F8_E4M3_B128: return 132;
  case QIAO_DEV_IQ4_NL: return 18;
  case QIAO_DEV_IQ4_XS: return 136;
  default: return 0;
  }
}
/* The block dtypes of 1.3, 1.4 (F8_E4M3_B128) and 1.5 (IQ4_NL, IQ4_XS): all
 * quantized, none with the older kernels' tables. */
static inline int qiao__cpu_new_block_dtype(qiao_dev_dtype dtype) {
  return (dtype >= QIAO_DEV_Q4_K && dtype <= QIAO_DEV_Q5_1) || dtype == QIAO_DEV_F8_E4M3_B128 ||
         dtype == QIAO_DEV_IQ4_NL || dtype == QIAO_DEV_IQ4_XS;
}
#define QIAO__CPU_NEW_BLOCK_DTYPES                                                                 \
  ((1u << QIAO_DEV_Q4_K) | (1u << QIAO_DEV_Q5_K) | (1u << QIAO_DEV_Q6_K) | (1u << QIAO_DEV_Q2_K) | \
   (1u << QIAO_DEV_Q3_K) | (1u << QIAO_DEV_Q4_1) | (1u << QIAO_DEV_Q5_0) | (1u << QIAO_DEV_Q5_1) | \
   (1u << QIAO_DEV_F8_E4M3_B128) | (1u << QIAO_DEV_IQ4_NL) | (1u << QIAO_DEV_IQ4_XS))
/* Elements [c, c + 32) of a row of a 1.3, 1.4 or 1.5 block dtype (c % 32 ==
 * 0) to f32, exactly. */
void qiao__cpu_dequant_chunk(qiao_dev_dtype dtype, const uint8_t *row, uint64_t c, float *out);
/* F8_E4M3_B128 (cpu_fp8.c): the 256 E4M3 values (NaN for 0x7F, 0xFF), the
 * chunk conversion, and the whole-row one for the kernel tables. */
const float *qiao__cpu_e4m3_table(void);
void qiao__cpu_dequant_chunk_f8(const uint8_t *row, uint64_t c, float *out);
void qiao__cpu_dequant_f8_e4m3_b128(const uint8_t *w, uint64_t k, float *out);
/* IQ4_NL and IQ4_XS (cpu_iq4.c): the 16 levels a nibble indexes, the
 * 6-bit scale minus 32 of sub-block ib (0..7) of an IQ4_XS super-block, the
 * chunk conversion, the whole-row ones, and the Q8-activation kernels
 * (portable; AVX2 in cpu_iq4_x86.c). */
extern const int8_t qiao__cpu_iq4_levels[16];
int qiao__cpu_iq4_xs_scale(const uint8_t *block, int ib);
void qiao__cpu_dequant_chunk_iq4(qiao_dev_dtype dtype, const uint8_t *row, uint64_t c, float *out);
void qiao__cpu_dequant_iq4_nl(const uint8_t *w, uint64_t k, float *out);
void qiao__cpu_dequant_iq4_xs(const uint8_t *w, uint64_t k, float *out);
/* qiao__cpu_dequant_fn of each, for the kernel tables' dequant entries. */
void qiao__cpu_dequant_q4_k(const uint8_t *w, uint64_t k, float *out);
void qiao__cpu_dequant_q5_k(const uint8_t *w, uint64_t k, float *out);
void qiao__cpu_dequant_q6_k(const uint8_t *w, uint64_t k, float *out);
void qiao__cpu_dequant_q2_k(const uint8_t *w, uint64_t k, float *out);
void qiao__cpu_dequant_q3_k(const uint8_t *w, uint64_t k, float *out);
void qiao__cpu_dequant_q4_1(const uint8_t *w, uint64_t k, float *out);
void qiao__cpu_dequant_q5_0(const uint8_t *w, uint64_t k, float *out);
void qiao__cpu_dequant_q5_1(const uint8_t *w, uint64_t k, float *out);
/* Q8 activations on the 1.3 dtypes, straight from the stored blocks (no
 * copy of the weights): vec_q8 writes out[r] = the product of one weight row
 * of k elements at w with the quantized x row x[r] for r < nr <=
 * QIAO__CPU_MAX_ROWS. Each 32-element chunk of the row is exactly
 * a * v - m (a and m per 16 elements, v small integers: cpu_kquants.c), so
 * the integer sums sum(v * q) and sum(q) per 16 elements are exact and the
 * result is d_x * (a * sum(v * q) - m * sum(q)) summed over the chunks in
 * f32. Each kernel set sums in its own fixed order; a result depends on
 * (w, x[r], k) only, never on nr or threads. */
typedef void (*qiao__cpu_vec_q8_fn)(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                    float *out);
/* vec_q8 on nw weight rows, row_bytes apart: out[j * nr + r] = the product
 * of weight row j with x[r], bit for bit what vec_q8 gives for that row (the
 * weight rows only share the loads of x in prefill). */
typedef void (*qiao__cpu_vec_q8_rows_fn)(const uint8_t *w, uint64_t row_bytes, int nw,
                                         const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_rows_512_q4_k(const uint8_t *w, uint64_t row_bytes, int nw,
                                    const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_rows_512_q5_k(const uint8_t *w, uint64_t row_bytes, int nw,
                                    const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_rows_512_q5_0(const uint8_t *w, uint64_t row_bytes, int nw,
                                    const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_rows_512_q4_1(const uint8_t *w, uint64_t row_bytes, int nw,
                                    const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_rows_512_q5_1(const uint8_t *w, uint64_t row_bytes, int nw,
                                    const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_scalar(qiao_dev_dtype dtype, const uint8_t *w, const qiao__cpu_q8_row *x,
                             int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_q4_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_q5_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_q6_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_q2_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_q3_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_q4_1(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_q5_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_q5_1(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
/* Q8_0 and Q4_0 on their stored blocks (element = d * v, v an integer):
 * for matmul_experts (ABI 1.5), which has no tile copies; matmul takes
 * them only for the 1.3 dtypes. Portable (cpu_kquants.c), AVX-512 VNNI and
 * AVX2 (cpu_vec_q8_x86.c). */
void qiao__cpu_vec_q8_q8_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_q4_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out);
void qiao__cpu_vec_q8_512_q8_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_512_q4_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q8_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q4_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_rows_512_q4_0(const uint8_t *w, uint64_t row_bytes, int nw,
                                    const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_iq4_nl(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                             float *out);
void qiao__cpu_vec_q8_iq4_xs(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                             float *out);
void qiao__cpu_vec_q8_256_iq4_nl(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                 float *out);
void qiao__cpu_vec_q8_256_iq4_xs(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                 float *out);
void qiao__cpu_vec_q8_512_iq4_nl(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                 float *out);
void qiao__cpu_vec_q8_512_iq4_xs(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                 float *out);
void qiao__cpu_vec_q8_rows_512_iq4_nl(const uint8_t *w, uint64_t row_bytes, int nw,
                                      const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
void qiao__cpu_vec_q8_rows_512_iq4_xs(const uint8_t *w, uint64_t row_bytes, int nw,
                                      const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out);
/* AVX-512 VNNI (cpu_kquants_x86.c; x86-64 only). */
void qiao__cpu_vec_q8_512_q4_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_512_q5_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_512_q6_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_512_q5_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
/* Q2_K, Q3_K (cpu_q2_k_q3_k_x86.c), Q4_1, Q5_1 (cpu_q4_1_q5_1_x86.c). */
void qiao__cpu_vec_q8_512_q2_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_512_q3_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_512_q4_1(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_512_q5_1(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
/* AVX2+FMA+F16C (cpu_kquants_x86.c; x86-64 only). */
void qiao__cpu_vec_q8_256_q4_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q5_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q6_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q5_0(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q2_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q3_k(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q4_1(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
void qiao__cpu_vec_q8_256_q5_1(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                               float *out);
#define QIAO__CPU_NEW_BLOCK_VEC_Q8                                                                 \
  [QIAO_DEV_Q4_K] = qiao__cpu_vec_q8_q4_k, [QIAO_DEV_Q5_K] = qiao__cpu_vec_q8_q5_k,                \
  [QIAO_DEV_Q6_K] = qiao__cpu_vec_q8_q6_k, [QIAO_DEV_Q2_K] = qiao__cpu_vec_q8_q2_k,                \
  [QIAO_DEV_Q3_K] = qiao__cpu_vec_q8_q3_k, [QIAO_DEV_Q4_1] = qiao__cpu_vec_q8_q4_1,                \
  [QIAO_DEV_Q5_0] = qiao__cpu_vec_q8_q5_0, [QIAO_DEV_Q5_1] = qiao__cpu_vec_q8_q5_1,                \
  [QIAO_DEV_IQ4_NL] = qiao__cpu_vec_q8_iq4_nl, [QIAO_DEV_IQ4_XS] = qiao__cpu_vec_q8_iq4_xs
#define QIAO__CPU_NEW_BLOCK_DEQUANT                                                                \
  [QIAO_DEV_Q4_K] = qiao__cpu_dequant_q4_k, [QIAO_DEV_Q5_K] = qiao__cpu_dequant_q5_k,              \
  [QIAO_DEV_Q6_K] = qiao__cpu_dequant_q6_k, [QIAO_DEV_Q2_K] = qiao__cpu_dequant_q2_k,              \
  [QIAO_DEV_Q3_K] = qiao__cpu_dequant_q3_k, [QIAO_DEV_Q4_1] = qiao__cpu_dequant_q4_1,              \
  [QIAO_DEV_Q5_0] = qiao__cpu_dequant_q5_0, [QIAO_DEV_Q5_1] = qiao__cpu_dequant_q5_1,              \
  [QIAO_DEV_IQ4_NL] = qiao__cpu_dequant_iq4_nl, [QIAO_DEV_IQ4_XS] = qiao__cpu_dequant_iq4_xs
/* (each kernel set adds its own [QIAO_DEV_F8_E4M3_B128] dequant: the SIMD
 * sets convert 16 or 8 codes at a time, to the same bits) */

#endif
