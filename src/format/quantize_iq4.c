/* Quantizers for iq4_nl and iq4_xs (see quantize_iq4.h).
 *
 * A group of 32 values x is stored as a scale s and 32 nibbles q, value =
 * s * T[q] with T the 16 levels. For a given s the best nibbles are the
 * nearest levels of x / s; for given nibbles the best s is the least-squares
 * sum(x T[q]) / sum(T[q]^2). The search tries steps s = m / t for the value
 * m of largest magnitude and t over a range of targets around T's ends
 * (-127 and 113, so that m lands on either extreme level or a bit inside
 * it), refines each by least squares on its nibbles, and keeps the pair of
 * least squared error, measured with the stored (f16, or for iq4_xs
 * integer sub-block) scales as the dequantizer computes them.
 *
 * Since T is nearly symmetric, a group has two good scales of opposite
 * signs (m on level -127 or on 113); both are kept. iq4_xs writes each
 * sub-block scale as d * (ls - 32), ls in 0..63: d is tried as the largest
 * sub-block scale (of either kind) over -32 and over 31, each ls as the
 * neighbours of both its scales' ratios to d, and the d of least total
 * error is kept (so sub-blocks may take whichever sign d favours). */
#include "format/quantize_iq4.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "format/dtype_convert.h"

static const int8_t levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};

#define F16_MAX 65504.0f

static float as_f16(float x) {
  if (!(x == x)) return 0.0f;
  if (x > F16_MAX) x = F16_MAX;
  if (x < -F16_MAX) x = -F16_MAX;
  return qiao__f16_to_f32(qiao__f32_to_f16(x));
}

static void store_f16(uint8_t *p, float x) {
  uint16_t h = qiao__f32_to_f16(as_f16(x));
  p[0] = (uint8_t)h;
  p[1] = (uint8_t)(h >> 8);
}

/* The midpoints between neighbouring levels (exact in binary32). */
static const float mids[15] = {-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                               7.0f,    19.0f,  31.5f,  45.5f,  61.0f,  79.0f,  101.0f};

/* The index of the level nearest v, ties to the lower level (NaN gives 8,
 * level 1): the count of midpoints below v, without branches. */
static int nearest(float v) {
  if (!(v == v)) return 8;
  int k = 0;
  for (int j = 0; j < 15; j++)
    k += v > mids[j];
  return k;
}

/* Nibbles of the 32 values x under scale s (all 8 when s is 0) and the
 * squared error with the values s * T[q] as the dequantizer computes them. */
static double group_error(const float *x, float s, uint8_t *q) {
  double err = 0;
  float inv = s != 0.0f ? 1.0f / s : 0.0f;
  for (int i = 0; i < 32; i++) {
    int k = s != 0.0f ? nearest(x[i] * inv) : 8;
    if (q) q[i] = (uint8_t)k;
    double d = (double)(s * (float)levels[k]) - (double)x[i];
    err += d * d;
  }
  return err;
}

/* The best scales for one group of 32 (before they are stored), by the
 * search above: out[0] with the value of largest magnitude m near T's
 * negative end (-127), out[1] near its positive end (113); the two have
 * opposite signs. `round_scale` maps a candidate to the value it will be
 * stored as. Returns the index (0 or 1) of the one of least error. */
static int best_scales(const float *x, float (*round_scale)(float), float out[2], double err[2]) {
  float amax = 0.0f, m = 0.0f;
  for (int i = 0; i < 32; i++) {
    float a = fabsf(x[i]);
    if (a > amax && a <= 3.0e38f) amax = a, m = x[i];
  }
  out[0] = out[1] = 0.0f;
  err[0] = err[1] = group_error(x, 0.0f, NULL);
  if (amax == 0.0f) return 0;
  for (int end = 0; end < 2; end++)
    for (int t = -4; t <= 4; t++) {
      float target = end == 0 ? -127.0f + 2.5f * (float)t : 113.0f + 2.5f * (float)t;
      float sc = round_scale(m / target);
      uint8_t q[32];
      double e = group_error(x, sc, q);
      if (e < err[end]) err[end] = e, out[end] = sc;
      /* least squares on these nibbles */
      double sxq = 0, sqq = 0;
      for (int i = 0; i < 32; i++) {
        double l = levels[q[i]];
        sxq += (double)x[i] * l, sqq += l * l;
      }
      float ls = sqq > 0 ? round_scale((float)(sxq / sqq)) : 0.0f;
      e = group_error(x, ls, NULL);
      if (e < err[end] && (ls == 0.0f || (ls < 0.0f) == (out[end] < 0.0f) || out[end] == 0.0f))
        err[end] = e, out[end] = ls;
    }
  return err[1] < err[0] ? 1 : 0;
}

static float keep(float s) {
  return s;
}

static void pack_nibbles(const uint8_t *q, uint8_t *qs) {
  for (int j = 0; j < 16; j++)
    qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
}

static void quantize_nl_block(const float *x, uint8_t *blk) {
  float s[2];
  double err[2];
  float d = s[best_scales(x, as_f16, s, err)];
  uint8_t q[32];
  group_error(x, d, q);
  store_f16(blk, d);
  pack_nibbles(q, blk + 2);
}

/* ls in 0..63 nearest s / d (32 when d is 0 or the ratio is not finite). */
static int nearest_ls(float s, float d) {
  float r = d != 0.0f ? s / d : 0.0f;
  if (!(r == r)) return 32;
  return (int)lrintf(fminf(fmaxf(r, -32.0f), 31.0f)) + 32;
}

/* For super-block scale d: each sub-block's ls among the neighbours of its
 * two scales' ratios to d, the least error; returns the total error. */
static double choose_ls(const float *x, float d, float s[8][2], int ls[8]) {
  double total = 0;
  for (int ib = 0; ib < 8; ib++) {
    double best = INFINITY;
    ls[ib] = 32;
    for (int w = 0; w < 2; w++)
      for (int c = nearest_ls(s[ib][w], d) - 1; c <= nearest_ls(s[ib][w], d) + 1; c++) {
        if (c < 0 || c > 63) continue;
        double e = group_error(x + 32 * ib, d * (float)(c - 32), NULL);
        if (e < best) best = e, ls[ib] = c;
      }
    total += best;
  }
  return total;
}

static void quantize_xs_block(const float *x, uint8_t *blk) {
  /* each sub-block's two scales; the super-block scale candidates map the
   * largest (preferred, negative-side or positive-side) scale to ls - 32 =
   * -32 or 31 */
  float s[8][2], pick[3] = {0, 0, 0}, amax[3] = {0, 0, 0};
  for (int ib = 0; ib < 8; ib++) {
    double err[2];
    int b = best_scales(x + 32 * ib, keep, s[ib], err);
    float c[3] = {s[ib][b], s[ib][0], s[ib][1]};
    for (int k = 0; k < 3; k++)
      if (fabsf(c[k]) > amax[k]) amax[k] = fabsf(c[k]), pick[k] = c[k];
  }
  float cands[6];
  for (int k = 0; k < 3; k++)
    cands[2 * k] = as_f16(pick[k] / -32.0f), cands[2 * k + 1] = as_f16(pick[k] / 31.0f);
  float d = 0.0f;
  int ls[8];
  double best = INFINITY;
  for (int k = 0; k < 6; k++) {
    int l[8];
    double e = choose_ls(x, cands[k], s, l);
    if (e < best) best = e, d = cands[k], memcpy(ls, l, sizeof(ls));
  }
  if (!(best < INFINITY)) d = 0.0f, choose_ls(x, 0.0f, s, ls);
  memset(blk, 0, 136);
  store_f16(blk, d);
  uint16_t scales_h = 0;
  for (int ib = 0; ib < 8; ib++) {
    uint8_t q[32];
    group_error(x + 32 * ib, d * (float)(ls[ib] - 32), q);
    pack_nibbles(q, blk + 8 + 16 * ib);
    blk[4 + ib / 2] |= (uint8_t)((ls[ib] & 15) << (4 * (ib % 2)));
    scales_h |= (uint16_t)((ls[ib] >> 4) << (2 * ib));
  }
  blk[2] = (uint8_t)scales_h;
  blk[3] = (uint8_t)(scales_h >> 8);
}

typedef struct {
  qiao_dtype dtype;
  const float *src;
  uint8_t *dst;
  uint64_t first, count; /* blocks */
} job;

static void *run_job(void *arg) {
  const job *j = arg;
  for (uint64_t b = j->first; b < j->first + j->count; b++)
    if (j->dtype == QIAO_DTYPE_IQ4_NL)
      quantize_nl_block(j->src + 32 * b, j->dst + 18 * b);
    else
      quantize_xs_block(j->src + 256 * b, j->dst + 136 * b);
  return NULL;
}

/* Large inputs are split across threads by whole blocks: a block's bytes
 * depend on its own values only, so the output does not depend on the
 * thread count. */
#define MAX_THREADS 16
#define BLOCKS_PER_THREAD 64

void qiao__quantize_iq4(qiao_dtype dtype, const float *src, void *dst, uint64_t n) {
  if (dtype != QIAO_DTYPE_IQ4_NL && dtype != QIAO_DTYPE_IQ4_XS) return;
  uint64_t blocks = n / (dtype == QIAO_DTYPE_IQ4_NL ? 32 : 256);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  uint64_t n_threads = cpus > 1 ? (uint64_t)cpus : 1;
  if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
  if (n_threads > blocks / BLOCKS_PER_THREAD) n_threads = blocks / BLOCKS_PER_THREAD;
  if (n_threads < 1) n_threads = 1;
  pthread_t threads[MAX_THREADS];
  job jobs[MAX_THREADS];
  bool started[MAX_THREADS] = {false};
  uint64_t per = blocks / n_threads, extra = blocks % n_threads, at = 0;
  for (uint64_t i = 0; i < n_threads; i++) {
    uint64_t count = per + (i < extra ? 1 : 0);
    jobs[i] = (job){dtype, src, dst, at, count};
    at += count;
    /* the first range runs on this thread; one that cannot start, too */
    if (i > 0) started[i] = pthread_create(&threads[i], NULL, run_job, &jobs[i]) == 0;
  }
  for (uint64_t i = 0; i < n_threads; i++)
    if (!started[i]) run_job(&jobs[i]);
  for (uint64_t i = 1; i < n_threads; i++)
    if (started[i]) pthread_join(threads[i], NULL);
}
