/* Matrix products and table lookups: embed, matmul, matmul_experts.
 *
 * matmul splits the output columns (weight rows, m) across threads in
 * contiguous ranges (handing out small chunks on demand measured slower:
 * the threads' memory streams then interleave). Within a range, weight
 * rows are taken in tiles that stay in cache while every block of
 * TOKEN_BLOCK rows of x is multiplied with them, so a prefill reads each
 * weight once per tile rather than once per token. Three paths:
 *   - decode (one row of x): gemv, each weight row streamed once;
 *   - prefill: tiles converted exactly to f32 and packed by element for a
 *     GEMM kernel (packed_range); with kernels that lack one, quantized
 *     tiles are kept as f32 rows for the dot kernels;
 *   - otherwise the dot kernels on the weights as they are.
 * The blocks of x rows follow from n alone and a kernel's result from its
 * inputs and block (cpu_internal.h), so results are bit-identical for any
 * thread count.
 *
 * Batch-invariant mode (device opened with QIAO_DEV_OPEN_BATCH_INVARIANT):
 * the paths above sum in different orders (gemv: 16 lanes then a
 * horizontal sum, with the scale applied per block for quantized weights;
 * the GEMM: chains of FMAs over chunks of 128), so a row's result would
 * depend on how many rows share the call. In that mode every n takes the
 * path a prefill takes: tiles converted to f32 (for the GEMM, or the F32
 * dot kernels without one) wherever that path exists for the dtype and k,
 * and otherwise (float weights with k % 32 != 0, or no GEMM) the dot
 * kernels, whose results for float weights do not depend on the number of
 * rows in a block (cpu_internal.h). Never gemv, and a quantized dot only
 * where it gives the tile path's bits for every number of rows
 * (quant_dot_any_nr: the scalar and AVX2 sets, whose ordinary paths are
 * therefore already invariant). A decode (up to 4 rows) would spend most of
 * its time writing and reading the tiles, so where the kernels have
 * gemv_packed it computes the same sums straight from the weights.
 *
 * Repacked weights (batch-invariant mode, Q8_0 and Q4_0, kernels with
 * gemm_repacked: AVX-512): converting every tile per call cost most of a
 * batched decode step, so the CPU backend keeps a repacked copy of
 * quantized weights in this mode: made by the first matmul that multiplies
 * a matrix, in tiles of QIAO__CPU_GEMM_COLS rows of int8 quants by element
 * with f32 scales (cpu_internal.h; about the size of Q8_0 weights, twice
 * that of Q4_0 ones), and used by every later matmul of any n (one row of
 * x: two tiles at a time, for more independent FMA chains). Its kernel
 * gives the packed path's bits exactly, so whether a copy exists (or could
 * be allocated) changes no result. The cache is per device, keyed by
 * (buffer, offset, m, k, dtype), guarded by a mutex; an entry is dropped
 * when anything writes into its bytes (operand_get with the write flag) or
 * its buffer is destroyed, and freed once no matmul still uses it.
 * matmul_experts does not use it.
 *
 * Q8 activations (x_precision = QIAO_DEV_PRECISION_Q8 from a 1.2 runtime,
 * Q8_0 and Q4_0 weights, kernels with gemm_q8): each row of x is quantized
 * once per call (cpu_q8_activations.c) and multiplied with a copy of the
 * weights in the dtype's int8 tile layout (cpu_internal.h: bytes for Q8_0,
 * the stored nibbles for Q4_0, f32 scales; 1.06x and 1.11x the size of the
 * weights), kept in the same cache in either mode. Every n takes this
 * path, except a single row of Q8_0 outside batch-invariant mode where the
 * kernels have a gemv (decode reads the weights as stored, fewer bytes); a
 * row's result depends on that row alone, so the path is batch-invariant.
 *
 * The block types of ABI 1.3 (Q4_K .. Q5_1): exactly, the tile path with
 * their exact dequantization (every n in the SIMD sets, which have no dot
 * kernel for them); with Q8 activations, a vec_q8 kernel (cpu_internal.h)
 * straight on the stored blocks, ROW_TILE weight rows at a time against
 * every block of x rows: decode reads each weight byte once, as stored.
 *
 * matmul_experts with Q8 activations (x_precision from a 1.5 runtime):
 * every dtype with a vec_q8 kernel, Q8_0 and Q4_0 included, takes that path
 * on the stored blocks (no tile copies: they would double a MoE model's
 * memory), each row of x quantized once per call; other dtypes compute
 * exactly. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "cpu_ops.h"

enum {
  ROW_TILE = 16,                    /* weight rows kept hot while x streams */
  TOKEN_BLOCK = QIAO__CPU_MAX_ROWS, /* x rows per kernel call */
  VEC_Q8_WROWS = 4,                 /* weight rows per vec_q8_rows call */
  PARALLEL_MACS = 1 << 15           /* below this, dispatching costs more than it saves */
};

#define FLOAT_DTYPES ((1u << QIAO_DEV_F32) | (1u << QIAO_DEV_F16) | (1u << QIAO_DEV_BF16))
static bool quantized_dtype(qiao_dev_dtype dtype) {
  return dtype == QIAO_DEV_Q8_0 || dtype == QIAO_DEV_Q4_0 || qiao__cpu_new_block_dtype(dtype);
}
#define WEIGHT_DTYPES                                                                              \
  (FLOAT_DTYPES | (1u << QIAO_DEV_Q8_0) | (1u << QIAO_DEV_Q4_0) | QIAO__CPU_NEW_BLOCK_DTYPES)

/* out rows[r][j] for j in [lo, hi) of one weight matrix times n rows of x.
 * Row r of x is x + (x_rows ? x_rows[r] : r) * k, likewise for out. */
typedef struct rows_job {
  qiao__cpu_dot_fn dot;
  qiao__cpu_dot2_fn dot2; /* NULL: one weight row at a time */
  qiao__cpu_gemv_fn gemv; /* NULL: dot row by row when n == 1 */
  const uint8_t *w;       /* (m, k) */
  uint64_t row_bytes, k, m, n;
  const float *x;
  const uint64_t *x_rows; /* NULL: identity */
  float *out;
  const uint64_t *out_rows; /* NULL: identity */
  const float *bias;        /* (m) or NULL */
  int accumulate;
  /* Prefill (n > 4, see tile_scratch): each thread converts a tile of
   * weight rows to f32 into its part of scratch once and multiplies every
   * block of x rows with it: packed for gemm, or ROW_TILE rows for the F32
   * dot kernels (the same values and sums as the quantized ones:
   * cpu_internal.h). NULL otherwise. */
  float *scratch;
  qiao__cpu_dequant_fn dequant;
  qiao__cpu_dot_fn dot_f32;
  qiao__cpu_dot2_fn dot2_f32;
  /* With pack and gemm (both or NULL) the tile is QIAO__CPU_GEMM_COLS rows,
   * packed by element for the GEMM kernel (packed_range). */
  qiao__cpu_pack_fn pack;
  qiao__cpu_gemm_fn gemm;
  /* Batch-invariant mode, n <= QIAO__CPU_GEMV_PACKED_ROWS: the GEMM's sums
   * straight from the weights (no scratch); NULL otherwise. */
  qiao__cpu_gemv_packed_fn gemv_packed;
  /* Batch-invariant mode with a repacked copy of w (repack_get): its tiles,
   * tile_bytes apart, for gemm_repacked; NULL otherwise. Threads then take
   * whole tiles (matmul_task). */
  const uint8_t *tiles;
  uint64_t tile_bytes;
  qiao__cpu_gemm_repacked_fn gemm_repacked;
  qiao__cpu_gemm2_repacked_fn gemm2_repacked; /* optional: n == 1, two tiles at once */
  /* Q8 activations: the quantized rows of x (row r of the job is
   * q8_rows[r]), with `tiles` in the Q8 layout; NULL otherwise. */
  const qiao__cpu_q8_row *q8_rows;
  qiao__cpu_gemm_q8_fn gemm_q8;
  /* Q8 activations on the stored blocks of a 1.3 dtype (no tiles, no
   * copy): q8_rows as above; NULL otherwise. */
  qiao__cpu_vec_q8_fn vec_q8;
  qiao__cpu_vec_q8_rows_fn vec_q8_rows; /* optional, with vec_q8 */
} rows_job;

/* Floats of scratch per thread and per element of k: a tile of ROW_TILE
 * rows, or the 16 rows that one pack call takes plus the packed tile. */
enum { PACKED_SCRATCH_PER_K = 16 + QIAO__CPU_GEMM_COLS };
static uint64_t scratch_per_k(const qiao__cpu_kernels *kernels) {
  return kernels->gemm ? PACKED_SCRATCH_PER_K : ROW_TILE;
}

/* The x and out rows of the block of x rows that starts at row t0 (row r
 * of x is x + (x_rows ? x_rows[r] : r) * k, likewise out); returns their
 * number, at most TOKEN_BLOCK. */
static int block_rows(const rows_job *job, uint64_t t0, const float **xs, float **os) {
  int nr = job->n - t0 < TOKEN_BLOCK ? (int)(job->n - t0) : TOKEN_BLOCK;
  for (int r = 0; r < nr; r++) {
    xs[r] = job->x + (job->x_rows ? job->x_rows[t0 + r] : t0 + r) * job->k;
    os[r] = job->out + (job->out_rows ? job->out_rows[t0 + r] : t0 + r) * job->m;
  }
  return nr;
}

/* Output j of one out row: the dot product plus the bias, plus what the
 * row held when accumulating. */
static inline void put(const rows_job *job, float *row, uint64_t j, float v) {
  if (job->bias) v += job->bias[j];
  if (job->accumulate) v += row[j];
  row[j] = v;
}

/* Outputs j0 .. j0 + count of nr out rows from a tile's results
 * out[r * QIAO__CPU_GEMM_COLS + c]. */
static void put_tile(const rows_job *job, float *const *os, int nr, uint64_t j0, uint64_t count,
                     const float *out) {
  for (int r = 0; r < nr; r++)
    for (uint64_t c = 0; c < count; c++)
      put(job, os[r], j0 + c, out[r * QIAO__CPU_GEMM_COLS + c]);
}

/* rows_range for one row of x with a gemv kernel (decode): the weight rows
 * stream once from memory, GEMV_CHUNK at a time into a local array. */
static void gemv_range(const rows_job *job, uint64_t lo, uint64_t hi) {
  enum { GEMV_CHUNK = 64 };
  float dots[GEMV_CHUNK];
  const float *x;
  float *out;
  block_rows(job, 0, &x, &out);
  for (uint64_t j0 = lo; j0 < hi; j0 += GEMV_CHUNK) {
    uint64_t count = hi - j0 < GEMV_CHUNK ? hi - j0 : GEMV_CHUNK;
    job->gemv(job->w + j0 * job->row_bytes, job->row_bytes, count, x, job->k, dots);
    for (uint64_t i = 0; i < count; i++)
      put(job, out, j0 + i, dots[i]);
  }
}

/* rows_range for a prefill with the packed GEMM kernel: a tile of
 * QIAO__CPU_GEMM_COLS weight rows is dequantized (16 rows at a time) and
 * packed once, then every block of TOKEN_BLOCK rows of x is multiplied with
 * it, with no horizontal sums and x read once per tile. */
static void packed_range(const rows_job *job, uint64_t lo, uint64_t hi, uint32_t ith) {
  const uint64_t k = job->k, cols = QIAO__CPU_GEMM_COLS;
  float *rows = job->scratch + (uint64_t)ith * PACKED_SCRATCH_PER_K * k; /* (16, k) */
  float *packed = rows + 16 * k;                                         /* (k, cols) */
  const float *xs[TOKEN_BLOCK];
  float *os[TOKEN_BLOCK];
  float out[TOKEN_BLOCK * QIAO__CPU_GEMM_COLS];
  for (uint64_t j0 = lo; j0 < hi; j0 += cols) {
    uint64_t count = hi - j0 < cols ? hi - j0 : cols;
    for (int half = 0; half < 2; half++) {
      for (uint64_t c = 0; c < 16; c++) {
        uint64_t j = j0 + 16 * (uint64_t)half + c;
        if (j < j0 + count)
          job->dequant(job->w + j * job->row_bytes, k, rows + c * k);
        else /* past the last row: zero columns, never stored */
          memset(rows + c * k, 0, k * sizeof(float));
      }
      job->pack(rows, k, half, packed);
    }
    for (uint64_t t0 = 0; t0 < job->n; t0 += TOKEN_BLOCK) {
      int nr = block_rows(job, t0, xs, os);
      job->gemm(packed, xs, nr, k, out);
      put_tile(job, os, nr, j0, count, out);
    }
  }
}

/* rows_range for a few rows of x in batch-invariant mode: the packed path's
 * results, a tile of QIAO__CPU_GEMM_COLS weight rows at a time, computed by
 * gemv_packed straight from the weights. */
static void gemv_packed_range(const rows_job *job, uint64_t lo, uint64_t hi) {
  const float *xs[TOKEN_BLOCK];
  float *os[TOKEN_BLOCK];
  float out[QIAO__CPU_GEMV_PACKED_ROWS * QIAO__CPU_GEMM_COLS];
  int nr = block_rows(job, 0, xs, os); /* n <= QIAO__CPU_GEMV_PACKED_ROWS */
  for (uint64_t j0 = lo; j0 < hi; j0 += QIAO__CPU_GEMM_COLS) {
    uint64_t count = hi - j0 < QIAO__CPU_GEMM_COLS ? hi - j0 : QIAO__CPU_GEMM_COLS;
    job->gemv_packed(job->w + j0 * job->row_bytes, job->row_bytes, count, xs, nr, job->k, out);
    put_tile(job, os, nr, j0, count, out);
  }
}

/* rows_range on a repacked copy of the weights (either layout): lo is a
 * multiple of QIAO__CPU_GEMM_COLS, each tile multiplied with every block of
 * x rows. */
static void repacked_range(const rows_job *job, uint64_t lo, uint64_t hi) {
  const float *xs[TOKEN_BLOCK];
  float *os[TOKEN_BLOCK];
  float out[TOKEN_BLOCK * QIAO__CPU_GEMM_COLS];
  for (uint64_t j0 = lo; j0 < hi; j0 += QIAO__CPU_GEMM_COLS) {
    uint64_t count = hi - j0 < QIAO__CPU_GEMM_COLS ? hi - j0 : QIAO__CPU_GEMM_COLS;
    const uint8_t *tile = job->tiles + j0 / QIAO__CPU_GEMM_COLS * job->tile_bytes;
    if (job->n == 1 && job->q8_rows == NULL && job->gemm2_repacked != NULL &&
        hi - j0 >= 2 * QIAO__CPU_GEMM_COLS) {
      float out2[2 * QIAO__CPU_GEMM_COLS];
      block_rows(job, 0, xs, os);
      job->gemm2_repacked(tile, xs[0], job->k, out2);
      for (uint64_t c = 0; c < 2 * QIAO__CPU_GEMM_COLS; c++)
        put(job, os[0], j0 + c, out2[c]);
      j0 += QIAO__CPU_GEMM_COLS; /* and the loop's step: two tiles */
      continue;
    }
    for (uint64_t t0 = 0; t0 < job->n; t0 += TOKEN_BLOCK) {
      int nr = block_rows(job, t0, xs, os);
      if (job->q8_rows != NULL)
        job->gemm_q8(tile, job->q8_rows + t0, nr, job->k, out);
      else
        job->gemm_repacked(tile, xs, nr, job->k, out);
      put_tile(job, os, nr, j0, count, out);
    }
  }
}

/* rows_range with Q8 activations on the weights as stored: ROW_TILE weight
 * rows stay in cache while every block of x rows passes them. */
static void vec_q8_range(const rows_job *job, uint64_t lo, uint64_t hi) {
  const float *xs[TOKEN_BLOCK];
  float *os[TOKEN_BLOCK];
  float dots[TOKEN_BLOCK], wdots[VEC_Q8_WROWS * TOKEN_BLOCK];
  for (uint64_t j0 = lo; j0 < hi; j0 += ROW_TILE) {
    uint64_t j1 = hi - j0 < ROW_TILE ? hi : j0 + ROW_TILE;
    for (uint64_t t0 = 0; t0 < job->n; t0 += TOKEN_BLOCK) {
      int nr = block_rows(job, t0, xs, os);
      /* Prefill: weight rows in fours share each x load. Decode (one x row)
       * stays on vec_q8: a single stream of weights measured faster there
       * (Q4_0 experts of DeepSeek-V2-Lite too: 22.2 against 19.6 tokens/s). */
      if (job->vec_q8_rows != NULL && job->n > 1) {
        for (uint64_t j = j0; j < j1; j += VEC_Q8_WROWS) {
          int nw = j1 - j < VEC_Q8_WROWS ? (int)(j1 - j) : VEC_Q8_WROWS;
          job->vec_q8_rows(job->w + j * job->row_bytes, job->row_bytes, nw, job->q8_rows + t0, nr,
                           job->k, wdots);
          for (int i = 0; i < nw; i++)
            for (int r = 0; r < nr; r++)
              put(job, os[r], j + (uint64_t)i, wdots[i * nr + r]);
        }
        continue;
      }
      for (uint64_t j = j0; j < j1; j++) {
        job->vec_q8(job->w + j * job->row_bytes, job->q8_rows + t0, nr, job->k, dots);
        for (int r = 0; r < nr; r++)
          put(job, os[r], j, dots[r]);
      }
    }
  }
}

static void rows_range(const rows_job *job, uint64_t lo, uint64_t hi, uint32_t ith) {
  if (job->vec_q8 != NULL) {
    vec_q8_range(job, lo, hi);
    return;
  }
  if (job->tiles != NULL) {
    repacked_range(job, lo, hi);
    return;
  }
  if (job->gemv_packed != NULL) {
    gemv_packed_range(job, lo, hi);
    return;
  }
  if (job->n == 1 && job->gemv != NULL && job->scratch == NULL) {
    gemv_range(job, lo, hi);
    return;
  }
  if (job->scratch != NULL && job->gemm != NULL) {
    packed_range(job, lo, hi, ith);
    return;
  }
  const float *xs[TOKEN_BLOCK];
  float *os[TOKEN_BLOCK];
  float dots[TOKEN_BLOCK], dots2[TOKEN_BLOCK];
  float *tile = job->scratch ? job->scratch + (uint64_t)ith * ROW_TILE * job->k : NULL;
  qiao__cpu_dot_fn dot = tile ? job->dot_f32 : job->dot;
  /* Two weight rows per call share each load of x: a gain where the rows
   * are cache resident (a tile, or any matrix met by more than one block of
   * x rows). Streamed once from memory (decode), two interleaved row streams
   * measured 20-40% slower than one (bench_cpu_matmul model), so there the
   * rows go one at a time. The sums are the same either way. */
  qiao__cpu_dot2_fn dot2 = tile ? job->dot2_f32 : job->n > TOKEN_BLOCK ? job->dot2 : NULL;
  uint64_t stride = tile ? job->k * 4 : job->row_bytes;
  for (uint64_t j0 = lo; j0 < hi; j0 += ROW_TILE) {
    uint64_t j1 = hi - j0 < ROW_TILE ? hi : j0 + ROW_TILE;
    const uint8_t *w = job->w + j0 * job->row_bytes;
    if (tile) {
      for (uint64_t j = j0; j < j1; j++)
        job->dequant(job->w + j * job->row_bytes, job->k, tile + (j - j0) * job->k);
      w = (const uint8_t *)tile;
    }
    for (uint64_t t0 = 0; t0 < job->n; t0 += TOKEN_BLOCK) {
      int nr = block_rows(job, t0, xs, os);
      for (uint64_t j = j0; j < j1; j++) {
        const uint8_t *wj = w + (j - j0) * stride;
        int two = dot2 != NULL && j + 1 < j1;
        if (two)
          dot2(wj, wj + stride, xs, nr, job->k, dots, dots2);
        else
          dot(wj, xs, nr, job->k, dots);
        for (int pass = 0; pass <= two; pass++) {
          const float *d = pass ? dots2 : dots;
          uint64_t jj = j + (uint64_t)pass;
          for (int r = 0; r < nr; r++)
            put(job, os[r], jj, d[r]);
        }
        j += (uint64_t)two;
      }
    }
  }
}

/* Whether a job of n rows of x takes the tile path (rows_job): quantized
 * weights always (dequantizing per use would cost more than the product),
 * float weights where the packed GEMM makes it pay; k % 32 == 0 and the
 * kernels must convert the dtype. Outside batch-invariant mode only for a
 * prefill (n > 4): fewer rows are faster on the weights as they are. */
static bool tiled(const qiao_dev_device *dev, qiao_dev_dtype dtype, uint64_t n, uint64_t k) {
  const qiao__cpu_kernels *kernels = dev->kernels;
  bool quantized = quantized_dtype(dtype);
  if (n == 0 || k % 32 != 0 || kernels->dequant[dtype] == NULL ||
      (!quantized && kernels->gemm == NULL))
    return false;
  /* The SIMD sets have no dot kernel for the block types of 1.3 (their
   * speed is in the Q8 path): every n takes the tiles. */
  if (kernels->dot[dtype] == NULL) return true;
  /* Batch-invariant mode: every n takes the tile path, unless the direct
   * path gives the same bits (no GEMM, quantized dot = F32 dot). */
  if (dev->batch_invariant && !(kernels->gemm == NULL && kernels->quant_dot_any_nr)) return true;
  return n > 4;
}

/* In batch-invariant mode, a job of few rows whose kernels compute the
 * packed path's sums straight from the weights (gemv_packed): no tile. */
static bool packed_direct(const qiao_dev_device *dev, qiao_dev_dtype dtype, uint64_t n,
                          uint64_t k) {
  return dev->batch_invariant && n <= QIAO__CPU_GEMV_PACKED_ROWS &&
         dev->kernels->gemv_packed[dtype] != NULL && dev->kernels->gemm != NULL &&
         tiled(dev, dtype, n, k);
}

/* Sets up the tile path of rows_job (see there) for `jobs` sharing one
 * scratch; *out_scratch is NULL when no job of up to n rows takes it. */
static qiao_dev_error *tile_scratch(qiao_dev_device *dev, const char *op, qiao_dev_dtype dtype,
                                    uint64_t n, uint64_t k, float **out_scratch) {
  *out_scratch = NULL;
  if (!tiled(dev, dtype, n, k) || packed_direct(dev, dtype, n, k)) return NULL;
  const qiao__cpu_kernels *kernels = dev->kernels;
  uint64_t per_k = scratch_per_k(kernels);
  if (k > (SIZE_MAX - 63) / sizeof(float) / per_k / dev->n_threads)
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: k %llu is too large for scratch", op,
                           (unsigned long long)k);
  size_t bytes = ((size_t)k * sizeof(float) * per_k * dev->n_threads + 63) / 64 * 64;
  *out_scratch = aligned_alloc(64, bytes);
  if (*out_scratch == NULL)
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: no memory for a %llu x %llu tile", op,
                           (unsigned long long)per_k, (unsigned long long)k);
  return NULL;
}

static void use_tiles(rows_job *job, const qiao_dev_device *dev, qiao_dev_dtype dtype,
                      float *scratch) {
  if (packed_direct(dev, dtype, job->n, job->k)) {
    job->gemv_packed = dev->kernels->gemv_packed[dtype];
    return;
  }
  if (scratch == NULL || !tiled(dev, dtype, job->n, job->k)) return;
  const qiao__cpu_kernels *kernels = dev->kernels;
  job->scratch = scratch;
  job->dequant = kernels->dequant[dtype];
  job->dot_f32 = kernels->dot[QIAO_DEV_F32];
  job->dot2_f32 = kernels->dot2[QIAO_DEV_F32];
  job->pack = kernels->pack;
  job->gemm = kernels->gemm;
}

static void matmul_task(void *ctx, uint32_t ith, uint32_t nth) {
  const rows_job *job = ctx;
  uint64_t lo = 0, hi = 0;
  if (job->tiles != NULL) { /* whole tiles of the repacked copy */
    uint64_t cols = QIAO__CPU_GEMM_COLS;
    qiao__cpu_split((job->m + cols - 1) / cols, ith, nth, &lo, &hi);
    lo *= cols;
    hi = hi * cols < job->m ? hi * cols : job->m;
  } else {
    qiao__cpu_split(job->m, ith, nth, &lo, &hi);
  }
  rows_range(job, lo, hi, ith);
}

/* ---- The repack cache (see the top of the file) ---------------------------- */
/* The two tile layouts a copy may have (cpu_internal.h). */
typedef enum { LAYOUT_F32_GEMM, LAYOUT_Q8 } tile_layout;

struct qiao__cpu_repacked {
  struct qiao__cpu_repacked *next;
  const qiao_dev_buffer *buffer;
  uint64_t offset, bytes, m, k; /* the source: bytes [offset, offset + bytes) */
  qiao_dev_dtype dtype;
  tile_layout layout;
  uint8_t *tiles;
  uint64_t tile_bytes;
  uint64_t users; /* matmuls using it, plus 1 while it is in the cache */
};
typedef struct qiao__cpu_repacked repacked;

static void repacked_unref(repacked *e) { /* under repack_lock */
  if (--e->users == 0) {
    free(e->tiles);
    free(e);
  }
}

typedef struct repack_job {
  qiao__cpu_repack_fn repack; /* NULL: the Q8 layout, of dtype */
  qiao_dev_dtype dtype;
  const uint8_t *w;
  uint64_t row_bytes, m, k;
  uint8_t *tiles;
  uint64_t tile_bytes;
} repack_job;

static void repack_task(void *ctx, uint32_t ith, uint32_t nth) {
  const repack_job *job = ctx;
  const uint64_t cols = QIAO__CPU_GEMM_COLS;
  uint64_t lo = 0, hi = 0;
  qiao__cpu_split((job->m + cols - 1) / cols, ith, nth, &lo, &hi);
  for (uint64_t t = lo; t < hi; t++) {
    uint64_t j0 = t * cols, count = job->m - j0 < cols ? job->m - j0 : cols;
    const uint8_t *w = job->w + j0 * job->row_bytes;
    uint8_t *tile = job->tiles + t * job->tile_bytes;
    if (job->repack != NULL)
      job->repack(w, job->row_bytes, count, job->k, tile);
    else
      qiao__cpu_repack_q8(job->dtype, w, job->row_bytes, count, job->k, tile);
  }
}

/* Memory for a copy: large ones in 2 MiB pages where the kernel allows
 * (transparent huge pages on request): a first touch of 4 KiB pages costs
 * about as much as the repacking itself on a VM, and the copies are read
 * on every matmul, where huge pages also spare TLB misses. */
static uint8_t *tiles_alloc(size_t bytes) {
  enum { HUGE = 2u << 20 };
  if (bytes < HUGE) return aligned_alloc(64, (bytes + 63) / 64 * 64);
  uint8_t *p = aligned_alloc(HUGE, (bytes + HUGE - 1) / HUGE * HUGE);
  if (p != NULL) madvise(p, (bytes + HUGE - 1) / HUGE * HUGE, MADV_HUGEPAGE); /* a hint */
  return p;
}

/* The copy of weight operand w (m rows of k elements) in `layout`, made now
 * if the cache lacks it, with one use counted (repack_put gives it back);
 * NULL where the mode, kernels, dtype or k have none, or memory is short:
 * the caller then takes the path whose bits it reproduces (LAYOUT_F32_GEMM)
 * or computes exactly (LAYOUT_Q8, which is within its budget). */
static repacked *repack_get(qiao_dev_device *dev, const qiao__cpu_operand *w, qiao_dev_dtype dtype,
                            uint64_t m, uint64_t k, tile_layout layout) {
  const qiao__cpu_kernels *kernels = dev->kernels;
  if (w->buffer == NULL || m == 0 || k == 0 || k % 32 != 0) return NULL;
  if (layout == LAYOUT_Q8 && (!quantized_dtype(dtype) || kernels->gemm_q8[dtype] == NULL))
    return NULL;
  if (layout == LAYOUT_F32_GEMM &&
      (!dev->batch_invariant || kernels->gemm_repacked == NULL || kernels->repack[dtype] == NULL ||
       kernels->gemm == NULL || kernels->dequant[dtype] == NULL))
    return NULL;
  const uint64_t cols = QIAO__CPU_GEMM_COLS, n_tiles = (m + cols - 1) / cols;
  const uint64_t tile_bytes =
      k / 32 * (layout == LAYOUT_Q8 ? qiao__cpu_q8_block_bytes(dtype) : QIAO__CPU_REPACK_BLOCK);
  if (tile_bytes > (SIZE_MAX - 63) / n_tiles) return NULL;
  pthread_mutex_lock(&dev->repack_lock);
  repacked *e = dev->repacked;
  for (; e != NULL; e = e->next)
    if (e->buffer == w->buffer && e->offset == w->offset && e->m == m && e->k == k &&
        e->dtype == dtype && e->layout == layout)
      break;
  if (e == NULL) {
    /* Made under the lock: once, even when several queues ask at once. */
    e = calloc(1, sizeof(*e));
    uint8_t *tiles = e ? tiles_alloc((size_t)(n_tiles * tile_bytes)) : NULL;
    if (tiles == NULL) {
      free(e);
      pthread_mutex_unlock(&dev->repack_lock);
      return NULL;
    }
    *e = (repacked){.next = dev->repacked,
                    .buffer = w->buffer,
                    .offset = w->offset,
                    .bytes = w->bytes,
                    .m = m,
                    .k = k,
                    .dtype = dtype,
                    .layout = layout,
                    .tiles = tiles,
                    .tile_bytes = tile_bytes,
                    .users = 1};
    repack_job job = {layout == LAYOUT_Q8 ? NULL : kernels->repack[dtype],
                      dtype,
                      w->ptr,
                      w->bytes / m,
                      m,
                      k,
                      tiles,
                      tile_bytes};
    qiao__cpu_run(dev, repack_task, &job, n_tiles > 1);
    dev->repacked = e;
    atomic_fetch_add(&((qiao_dev_buffer *)(uintptr_t)w->buffer)->repacked, 1);
  }
  e->users++;
  pthread_mutex_unlock(&dev->repack_lock);
  return e;
}

static void repack_put(qiao_dev_device *dev, repacked *e) {
  pthread_mutex_lock(&dev->repack_lock);
  repacked_unref(e);
  pthread_mutex_unlock(&dev->repack_lock);
}

void qiao__cpu_repack_invalidate(qiao_dev_buffer *buffer, uint64_t offset, uint64_t bytes) {
  qiao_dev_device *dev = buffer->device;
  pthread_mutex_lock(&dev->repack_lock);
  for (repacked **at = &dev->repacked; *at != NULL;) {
    repacked *e = *at;
    bool overlaps =
        e->offset >= offset ? e->offset - offset < bytes : offset - e->offset < e->bytes;
    if (e->buffer == buffer && overlaps) {
      *at = e->next;
      atomic_fetch_sub(&buffer->repacked, 1);
      repacked_unref(e);
    } else {
      at = &e->next;
    }
  }
  pthread_mutex_unlock(&dev->repack_lock);
}

void qiao__cpu_repack_clear(qiao_dev_device *device) {
  pthread_mutex_lock(&device->repack_lock);
  while (device->repacked != NULL) {
    repacked *e = device->repacked;
    device->repacked = e->next;
    /* Its buffer is live (destroying one drops its entries first). */
    atomic_fetch_sub(&((qiao_dev_buffer *)(uintptr_t)e->buffer)->repacked, 1);
    repacked_unref(e);
  }
  pthread_mutex_unlock(&device->repack_lock);
}

static int worth_parallel(uint64_t n, uint64_t k, uint64_t m) {
  /* n, k, m are bounded by buffer sizes, but their product may not be. */
  double macs = (double)n * (double)k * (double)m;
  return macs >= PARALLEL_MACS;
}

#define TRY(expr)                                                                                  \
  do {                                                                                             \
    qiao_dev_error *try_error_ = (expr);                                                           \
    if (try_error_ != NULL) return try_error_;                                                     \
  } while (0)

/* Rows of x quantized for the Q8 path: q (n, k) int8, then d and sum
 * (n, k / 32) each, and the row views; one allocation. */
typedef struct q8_activations {
  void *storage;
  qiao__cpu_q8_row *rows;
} q8_activations;

typedef struct quantize_job {
  qiao__cpu_quantize_q8_fn quantize;
  const float *x;
  uint64_t n, k;
  qiao__cpu_q8_row *rows;
} quantize_job;

static void quantize_task(void *ctx, uint32_t ith, uint32_t nth) {
  const quantize_job *job = ctx;
  uint64_t lo = 0, hi = 0;
  qiao__cpu_split(job->n, ith, nth, &lo, &hi);
  for (uint64_t r = lo; r < hi; r++) {
    qiao__cpu_q8_row *row = &job->rows[r];
    job->quantize(job->x + r * job->k, job->k, (int8_t *)(uintptr_t)row->q,
                  (float *)(uintptr_t)row->d, (int32_t *)(uintptr_t)row->sum);
  }
}

static qiao_dev_error *quantize_rows(qiao_dev_device *dev, const char *op, const float *x,
                                     uint64_t n, uint64_t k, q8_activations *out) {
  /* n * k * 4 bytes of x exist, so none of these sizes overflows. */
  uint64_t blocks = n * (k / 32);
  size_t bytes = (size_t)(n * k + blocks * 8 + n * sizeof(qiao__cpu_q8_row));
  uint8_t *storage = malloc(bytes ? bytes : 1);
  if (storage == NULL)
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY,
                           "%s: no memory for %llu quantized rows of x (%zu bytes)", op,
                           (unsigned long long)n, bytes);
  qiao__cpu_q8_row *rows = (qiao__cpu_q8_row *)(void *)storage; /* first: aligned */
  float *d = (float *)(void *)(storage + n * sizeof(qiao__cpu_q8_row));
  int32_t *sum = (int32_t *)(void *)(d + blocks);
  int8_t *q = (int8_t *)(void *)(sum + blocks);
  for (uint64_t r = 0; r < n; r++)
    rows[r] = (qiao__cpu_q8_row){q + r * k, d + r * (k / 32), sum + r * (k / 32)};
  qiao__cpu_quantize_q8_fn quantize =
      dev->kernels->quantize_q8 ? dev->kernels->quantize_q8 : qiao__cpu_quantize_q8;
  quantize_job job = {quantize, x, n, k, rows};
  qiao__cpu_run(dev, quantize_task, &job, n * k >= PARALLEL_MACS);
  *out = (q8_activations){storage, rows};
  return NULL;
}

qiao_dev_error *qiao__cpu_matmul(qiao_dev_queue *queue, const qiao_dev_matmul_args *a) {
  const char *op = "matmul";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  TRY(qiao__cpu_check_dtype(op, "w_dtype", a->w_dtype, WEIGHT_DTYPES));
  uint64_t x_bytes = 0, w_bytes = 0, bias_bytes = 0, out_bytes = 0;
  TRY(qiao__cpu_extent(op, "x", QIAO_DEV_F32, a->n, a->k, &x_bytes));
  TRY(qiao__cpu_extent(op, "w", a->w_dtype, a->m, a->k, &w_bytes));
  TRY(qiao__cpu_extent(op, "bias", QIAO_DEV_F32, 1, a->m, &bias_bytes));
  TRY(qiao__cpu_extent(op, "out", QIAO_DEV_F32, a->n, a->m, &out_bytes));
  qiao__cpu_operand x, w, bias, out;
  TRY(qiao__cpu_operand_get(dev, op, "x", a->x, x_bytes, QIAO_DEV_F32, 0, &x));
  TRY(qiao__cpu_operand_get(dev, op, "w", a->w, w_bytes, a->w_dtype, 0, &w));
  TRY(qiao__cpu_operand_get(dev, op, "bias", a->bias, bias_bytes, QIAO_DEV_F32,
                            QIAO__CPU_REF_OPTIONAL, &bias));
  TRY(qiao__cpu_operand_get(dev, op, "out", a->out, out_bytes, QIAO_DEV_F32, QIAO__CPU_REF_WRITE,
                            &out));
  TRY(qiao__cpu_no_overlap(op, &out, &x, 0));
  TRY(qiao__cpu_no_overlap(op, &out, &w, 0));
  TRY(qiao__cpu_no_overlap(op, &out, &bias, 0));
  uint64_t row_bytes = a->m ? w_bytes / a->m : 0;
  rows_job job = {.dot = dev->kernels->dot[a->w_dtype],
                  .dot2 = dev->kernels->dot2[a->w_dtype],
                  .gemv = dev->batch_invariant ? NULL : dev->kernels->gemv[a->w_dtype],
                  .w = w.ptr,
                  .row_bytes = row_bytes,
                  .k = a->k,
                  .m = a->m,
                  .n = a->n,
                  .x = (const float *)(const void *)x.ptr,
                  .out = (float *)(void *)out.ptr,
                  .bias = (const float *)(const void *)bias.ptr,
                  .accumulate = a->accumulate != 0};
  /* x_precision lies in 1.0's tail padding: it counts only from a 1.2
   * runtime (device-abi.md §3), as EXACT otherwise. */
  uint32_t precision = dev->backend->runtime_minor >= 2 ? a->x_precision : QIAO_DEV_PRECISION_EXACT;
  if (precision > QIAO_DEV_PRECISION_Q8)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: x_precision %u is not a precision", op,
                           precision);
  /* The block types of 1.3 with Q8 activations: on the stored blocks (no
   * copy), any n, either mode (a row's result depends on that row alone). */
  if (precision == QIAO_DEV_PRECISION_Q8 && a->n > 0 && qiao__cpu_new_block_dtype(a->w_dtype) &&
      dev->kernels->vec_q8[a->w_dtype] != NULL) {
    q8_activations xq = {NULL, NULL};
    TRY(quantize_rows(dev, op, job.x, a->n, a->k, &xq));
    job.q8_rows = xq.rows;
    job.vec_q8 = dev->kernels->vec_q8[a->w_dtype];
    job.vec_q8_rows = dev->kernels->vec_q8_rows[a->w_dtype];
    qiao__cpu_run(dev, matmul_task, &job, worth_parallel(a->n, a->k, a->m));
    free(xq.storage);
    return NULL;
  }
  /* Outside batch-invariant mode a single row (decode) is bound by reading
   * the weights: for Q8_0 the gemv on them as stored is faster than the
   * tiles (decode measured 0.87x on the tiles); Q4_0's gemv is bound by
   * unpacking nibbles in f32, and its tiles were 1.03-1.3x faster. */
  bool q8 = precision == QIAO_DEV_PRECISION_Q8 && a->n > 0 &&
            !(a->n == 1 && a->w_dtype == QIAO_DEV_Q8_0 && !dev->batch_invariant &&
              dev->kernels->gemv[a->w_dtype] != NULL);
  repacked *copy = q8 ? repack_get(dev, &w, a->w_dtype, a->m, a->k, LAYOUT_Q8) : NULL;
  if (copy != NULL) {
    q8_activations xq = {NULL, NULL};
    qiao_dev_error *error = quantize_rows(dev, op, job.x, a->n, a->k, &xq);
    if (error == NULL) {
      job.tiles = copy->tiles;
      job.tile_bytes = copy->tile_bytes;
      job.q8_rows = xq.rows;
      job.gemm_q8 = dev->kernels->gemm_q8[a->w_dtype];
      qiao__cpu_run(dev, matmul_task, &job, worth_parallel(a->n, a->k, a->m));
      free(xq.storage);
    }
    repack_put(dev, copy);
    return error;
  }
  copy = a->n > 0 ? repack_get(dev, &w, a->w_dtype, a->m, a->k, LAYOUT_F32_GEMM) : NULL;
  if (copy != NULL) {
    job.tiles = copy->tiles;
    job.tile_bytes = copy->tile_bytes;
    job.gemm_repacked = dev->kernels->gemm_repacked;
    job.gemm2_repacked = dev->kernels->gemm2_repacked;
    qiao__cpu_run(dev, matmul_task, &job, worth_parallel(a->n, a->k, a->m));
    repack_put(dev, copy);
    return NULL;
  }
  float *scratch = NULL;
  TRY(tile_scratch(dev, op, a->w_dtype, a->n, a->k, &scratch));
  use_tiles(&job, dev, a->w_dtype, scratch);
  qiao__cpu_run(dev, matmul_task, &job, worth_parallel(a->n, a->k, a->m));
  free(scratch);
  return NULL;
}

/* Reads an I32 id from device data and checks it is in [0, limit). */
/* Device data out of range: the op does nothing, synchronize reports it. */
#define DEFER(expr)                                                                                \
  do {                                                                                             \
    qiao_dev_error *defer_error_ = (expr);                                                         \
    if (defer_error_ != NULL) return qiao__cpu_defer(queue, defer_error_);                         \
  } while (0)

static qiao_dev_error *check_id(const char *op, const char *what, uint64_t index, uint64_t index2,
                                int two_d, int32_t value, uint64_t limit, const char *limit_name) {
  if (value >= 0 && (uint64_t)value < limit) return NULL;
  char where[64];
  if (two_d)
    snprintf(where, sizeof(where), "%s[%llu,%llu]", what, (unsigned long long)index,
             (unsigned long long)index2);
  else
    snprintf(where, sizeof(where), "%s[%llu]", what, (unsigned long long)index);
  if (value < 0)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: %s = %d is negative", op, where, value);
  return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: %s = %d >= %s %llu", op, where, value,
                         limit_name, (unsigned long long)limit);
}

qiao_dev_error *qiao__cpu_embed(qiao_dev_queue *queue, const qiao_dev_embed_args *a) {
  const char *op = "embed";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  TRY(qiao__cpu_check_dtype(op, "table_dtype", a->table_dtype, WEIGHT_DTYPES));
  uint64_t table_bytes = 0, ids_bytes = 0, out_bytes = 0;
  TRY(qiao__cpu_extent(op, "table", a->table_dtype, a->vocab, a->dim, &table_bytes));
  TRY(qiao__cpu_extent(op, "ids", QIAO_DEV_I32, 1, a->n_tokens, &ids_bytes));
  TRY(qiao__cpu_extent(op, "out", QIAO_DEV_F32, a->n_tokens, a->dim, &out_bytes));
  qiao__cpu_operand table, ids, out;
  TRY(qiao__cpu_operand_get(dev, op, "table", a->table, table_bytes, a->table_dtype, 0, &table));
  TRY(qiao__cpu_operand_get(dev, op, "ids", a->ids, ids_bytes, QIAO_DEV_I32, 0, &ids));
  TRY(qiao__cpu_operand_get(dev, op, "out", a->out, out_bytes, QIAO_DEV_F32, QIAO__CPU_REF_WRITE,
                            &out));
  TRY(qiao__cpu_no_overlap(op, &out, &table, 0));
  TRY(qiao__cpu_no_overlap(op, &out, &ids, 0));
  const int32_t *id = (const int32_t *)(const void *)ids.ptr;
  for (uint64_t t = 0; t < a->n_tokens; t++)
    DEFER(check_id(op, "ids", t, 0, 0, id[t], a->vocab, "vocab"));
  uint64_t row_bytes = a->vocab ? table_bytes / a->vocab : 0;
  float *o = (float *)(void *)out.ptr;
  for (uint64_t t = 0; t < a->n_tokens; t++)
    qiao__cpu_dequantize_row(a->table_dtype, table.ptr + (uint64_t)id[t] * row_bytes, a->dim,
                             o + t * a->dim);
  return NULL;
}

/* ---- matmul_experts: the (token, slot) pairs grouped by expert, so each
 * expert's weights are read once for all the tokens routed to it. */
typedef struct experts_job {
  rows_job *per_expert; /* the experts that have at least one pair */
  uint64_t n_jobs, out_dim;
} experts_job;

static void experts_task(void *ctx, uint32_t ith, uint32_t nth) {
  const experts_job *job = ctx;
  uint64_t lo = 0, hi = 0;
  qiao__cpu_split(job->out_dim, ith, nth, &lo, &hi);
  for (uint64_t e = 0; e < job->n_jobs; e++)
    rows_range(&job->per_expert[e], lo, hi, ith);
}

static int compare_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

qiao_dev_error *qiao__cpu_matmul_experts(qiao_dev_queue *queue,
                                         const qiao_dev_matmul_experts_args *a) {
  const char *op = "matmul_experts";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  TRY(qiao__cpu_check_dtype(op, "w_dtype", a->w_dtype, WEIGHT_DTYPES));
  /* x_precision was padding before 1.5 (device-abi.md §15.1): it counts
   * only from a 1.5 runtime, as EXACT otherwise. */
  uint32_t precision = dev->backend->runtime_minor >= 5 ? a->x_precision : QIAO_DEV_PRECISION_EXACT;
  if (precision > QIAO_DEV_PRECISION_Q8)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: x_precision %u is not a precision", op,
                           precision);
  uint64_t x_bytes = 0, w_bytes = 0, ids_bytes = 0, out_bytes = 0, expert_bytes = 0;
  TRY(qiao__cpu_extent(op, "ids", QIAO_DEV_I32, a->n_tokens, a->k, &ids_bytes));
  uint64_t n_pairs = ids_bytes / 4;
  TRY(qiao__cpu_extent(op, "x", QIAO_DEV_F32, a->x_per_slot ? n_pairs : a->n_tokens, a->in_dim,
                       &x_bytes));
  TRY(qiao__cpu_extent(op, "w", a->w_dtype, a->out_dim, a->in_dim, &expert_bytes));
  if (a->n_experts != 0 && expert_bytes > UINT64_MAX / a->n_experts)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "%s: w shape (%llu, %llu, %llu) overflows 64-bit bytes", op,
                           (unsigned long long)a->n_experts, (unsigned long long)a->out_dim,
                           (unsigned long long)a->in_dim);
  w_bytes = expert_bytes * a->n_experts;
  TRY(qiao__cpu_extent(op, "out", QIAO_DEV_F32, n_pairs, a->out_dim, &out_bytes));
  qiao__cpu_operand x, w, ids, out;
  TRY(qiao__cpu_operand_get(dev, op, "x", a->x, x_bytes, QIAO_DEV_F32, 0, &x));
  TRY(qiao__cpu_operand_get(dev, op, "w", a->w, w_bytes, a->w_dtype, 0, &w));
  TRY(qiao__cpu_operand_get(dev, op, "ids", a->ids, ids_bytes, QIAO_DEV_I32, 0, &ids));
  TRY(qiao__cpu_operand_get(dev, op, "out", a->out, out_bytes, QIAO_DEV_F32, QIAO__CPU_REF_WRITE,
                            &out));
  TRY(qiao__cpu_no_overlap(op, &out, &x, 0));
  TRY(qiao__cpu_no_overlap(op, &out, &w, 0));
  TRY(qiao__cpu_no_overlap(op, &out, &ids, 0));
  if (n_pairs > UINT32_MAX)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: %llu routing pairs is more than 2^32",
                           op, (unsigned long long)n_pairs);
  const int32_t *id = (const int32_t *)(const void *)ids.ptr;
  for (uint64_t p = 0; p < n_pairs; p++)
    DEFER(check_id(op, "ids", p / a->k, p % a->k, 1, id[p], a->n_experts, "n_experts"));
  if (n_pairs == 0 || a->out_dim == 0) return NULL;

  /* Sort the pairs by (expert, pair): keys are unique, so pair order is kept
   * within an expert and the grouping depends on the ids only. */
  uint64_t *keys = malloc(3 * n_pairs * sizeof(uint64_t));
  rows_job *jobs = malloc(n_pairs * sizeof(rows_job)); /* at most one per pair */
  if (keys == NULL || jobs == NULL) {
    free(keys);
    free(jobs);
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: no memory for %llu routing pairs", op,
                           (unsigned long long)n_pairs);
  }
  /* Q8 activations: every row of x quantized once for the whole call (not
   * once per expert), then viewed per pair in the experts' order; each
   * expert's weights read as stored by vec_q8 (cpu_vec_q8_x86.c), in either
   * mode: a pair's result depends on its row of x and its expert alone. */
  qiao__cpu_vec_q8_fn vec_q8 = precision == QIAO_DEV_PRECISION_Q8 && a->in_dim % 32 == 0
                                   ? dev->kernels->vec_q8[a->w_dtype]
                                   : NULL;
  q8_activations xq = {NULL, NULL};
  qiao__cpu_q8_row *pair_q8 = NULL;
  if (vec_q8 != NULL) {
    qiao_dev_error *error = quantize_rows(dev, op, (const float *)(const void *)x.ptr,
                                          a->x_per_slot ? n_pairs : a->n_tokens, a->in_dim, &xq);
    pair_q8 = error == NULL ? malloc(n_pairs * sizeof(*pair_q8)) : NULL;
    if (pair_q8 == NULL) {
      free(xq.storage);
      free(keys);
      free(jobs);
      return error ? error
                   : qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: no memory for %llu routing pairs",
                                     op, (unsigned long long)n_pairs);
    }
  }
  uint64_t *x_rows = keys + n_pairs, *out_rows = keys + 2 * n_pairs, n_jobs = 0;
  for (uint64_t p = 0; p < n_pairs; p++)
    keys[p] = ((uint64_t)id[p] << 32) | p;
  qsort(keys, n_pairs, sizeof(uint64_t), compare_u64);
  uint64_t row_bytes = expert_bytes / a->out_dim;
  for (uint64_t start = 0, end; start < n_pairs; start = end) {
    uint64_t e = keys[start] >> 32;
    for (end = start; end < n_pairs && keys[end] >> 32 == e; end++) {
      uint64_t q = keys[end] & 0xffffffffu;
      x_rows[end] = a->x_per_slot ? q : q / a->k;
      out_rows[end] = q;
      if (pair_q8 != NULL) pair_q8[end] = xq.rows[x_rows[end]];
    }
    jobs[n_jobs++] =
        (rows_job){.dot = dev->kernels->dot[a->w_dtype],
                   .dot2 = dev->kernels->dot2[a->w_dtype],
                   .gemv = dev->batch_invariant ? NULL : dev->kernels->gemv[a->w_dtype],
                   .w = w.ptr + e * expert_bytes,
                   .row_bytes = row_bytes,
                   .k = a->in_dim,
                   .m = a->out_dim,
                   .n = end - start,
                   .x = (const float *)(const void *)x.ptr,
                   .x_rows = x_rows + start,
                   .out = (float *)(void *)out.ptr,
                   .out_rows = out_rows + start,
                   .q8_rows = pair_q8 != NULL ? pair_q8 + start : NULL,
                   .vec_q8 = vec_q8,
                   .vec_q8_rows = vec_q8 != NULL ? dev->kernels->vec_q8_rows[a->w_dtype] : NULL};
  }
  float *scratch = NULL;
  qiao_dev_error *error =
      vec_q8 ? NULL : tile_scratch(dev, op, a->w_dtype, n_pairs, a->in_dim, &scratch);
  if (error == NULL) {
    for (uint64_t i = 0; i < n_jobs && vec_q8 == NULL; i++)
      use_tiles(&jobs[i], dev, a->w_dtype, scratch);
    experts_job job = {jobs, n_jobs, a->out_dim};
    qiao__cpu_run(dev, experts_task, &job, worth_parallel(n_pairs, a->in_dim, a->out_dim));
  }
  free(scratch);
  free(pair_q8);
  free(xq.storage);
  free(keys);
  free(jobs);
  return error;
}
