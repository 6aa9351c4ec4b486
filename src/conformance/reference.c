/* The float64 reference of the op level (see reference.h). Each op reads its
 * inputs from the case's host operands, exactly as docs/spec/device-abi.md
 * §11.3 defines it, accumulates in double and rounds once at the end. */
#include "conformance/reference.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"

/* ---- Values (§9) ----------------------------------------------------------- */

/* An IEEE binary16 value from its fields. */
static double f16_value(uint16_t h) {
  double sign = (h & 0x8000) ? -1.0 : 1.0;
  int exponent = (h >> 10) & 31, mantissa = h & 1023;
  if (exponent == 0) return sign * ldexp(mantissa, -24); /* subnormal */
  if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
  return sign * ldexp(1024 + mantissa, exponent - 25);
}

static uint16_t u16_at(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}

/* The block types of ABI 1.3 (format.md §4.1), element i of a row, in
 * float64 from the spec's formulas. Each product is exact in float64 (at
 * most 25 significant bits), and so is the difference of two of them unless
 * the two scales are more than 2^28 apart, so rounding it once gives the
 * spec's binary32 value. */

/* 6-bit pair t (0..7) of the 12 packed scale bytes of q4_k / q5_k: the
 * scale when which == 0, the min when 1. */
static int k4_six_bits(const uint8_t *s, int t, int which) {
  if (t < 4) return s[t + 4 * which] & 63;
  int low = which ? s[t + 4] >> 4 : s[t + 4] & 15;
  return low | (s[t - 4 * (1 - which)] >> 6) << 4;
}

static double ref_k_element(const uint8_t *p, qiao_dev_dtype dtype, uint64_t i) {
  static const uint64_t bytes[] = {[QIAO_DEV_Q4_K] = 144,
                                   [QIAO_DEV_Q5_K] = 176,
                                   [QIAO_DEV_Q6_K] = 210,
                                   [QIAO_DEV_Q2_K] = 84,
                                   [QIAO_DEV_Q3_K] = 110};
  const uint8_t *b = p + (i / 256) * bytes[dtype];
  int e = (int)(i % 256);
  int sub32 = e / 32, l = e % 32;            /* 32-element group and place in it */
  int half = e / 128, pair = (e % 128) / 32; /* for the 16-element sub-block types */
  int sub16 = 8 * half + 2 * pair + l / 16;
  switch (dtype) {
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K: {
    const uint8_t *qs = b + (dtype == QIAO_DEV_Q5_K ? 48 : 16);
    int byte = qs[32 * (sub32 / 2) + l];
    int q = sub32 % 2 ? byte >> 4 : byte & 15;
    if (dtype == QIAO_DEV_Q5_K && (b[16 + l] >> sub32) & 1) q += 16;
    return f16_value(u16_at(b)) * k4_six_bits(b + 4, sub32, 0) * q -
           f16_value(u16_at(b + 2)) * k4_six_bits(b + 4, sub32, 1);
  }
  case QIAO_DEV_Q6_K: {
    int byte = b[64 * half + 32 * (pair % 2) + l];
    int q = (pair < 2 ? byte & 15 : byte >> 4) + 16 * ((b[128 + 32 * half + l] >> (2 * pair)) & 3);
    return f16_value(u16_at(b + 208)) * (int8_t)b[192 + sub16] * (q - 32);
  }
  case QIAO_DEV_Q2_K: {
    int q = (b[16 + 32 * half + l] >> (2 * pair)) & 3;
    return f16_value(u16_at(b + 80)) * (b[sub16] & 15) * q -
           f16_value(u16_at(b + 82)) * (b[sub16] >> 4);
  }
  case QIAO_DEV_Q3_K: {
    int q = (b[32 + 32 * half + l] >> (2 * pair)) & 3;
    if (!((b[l] >> (4 * half + pair)) & 1)) q -= 4;
    int low = sub16 < 8 ? b[96 + sub16] & 15 : b[96 + sub16 - 8] >> 4;
    int high = (b[104 + sub16 % 4] >> (2 * (sub16 / 4))) & 3;
    return f16_value(u16_at(b + 108)) * (low + 16 * high - 32) * q;
  }
  default: return NAN;
  }
}

static double ref_32_element(const uint8_t *p, qiao_dev_dtype dtype, uint64_t i) {
  uint64_t block_bytes = dtype == QIAO_DEV_Q4_1 ? 20 : dtype == QIAO_DEV_Q5_0 ? 22 : 24;
  const uint8_t *b = p + (i / 32) * block_bytes;
  int j = (int)(i % 32);
  int quants = dtype == QIAO_DEV_Q4_1 ? 4 : dtype == QIAO_DEV_Q5_0 ? 6 : 8;
  int q = j < 16 ? b[quants + j] & 15 : b[quants + j - 16] >> 4;
  if (dtype != QIAO_DEV_Q4_1) q += 16 * ((b[quants - 4 + j / 8] >> (j % 8)) & 1);
  double d = f16_value(u16_at(b));
  if (dtype == QIAO_DEV_Q5_0) return d * (q - 16);
  return d * q + f16_value(u16_at(b + 2));
}

/* (1.4) F8_E4M3_B128, element i of a row: blocks of 128 in 132 bytes, an
 * F32 scale d then E4M3 codes (sign, exponent e of 4 bits with bias 7,
 * mantissa m of 3 bits; e = 0: m/8 * 2^-6; else (1 + m/8) * 2^(e-7); 0x7F
 * and 0xFF NaN). d * value is exact in float64 (24 + 4 significant bits). */
static double ref_f8_element(const uint8_t *p, uint64_t i) {
  const uint8_t *b = p + (i / 128) * 132;
  unsigned q = b[4 + i % 128], e = (q >> 3) & 15, m = q & 7;
  if ((q & 0x7f) == 0x7f) return NAN;
  double v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, (int)e - 10);
  float d;
  memcpy(&d, b, 4);
  return (double)d * (q & 0x80 ? -v : v);
}

/* (1.5) IQ4_NL and IQ4_XS, element i of a row: a nibble indexes 16 fixed
 * levels. IQ4_NL: blocks of 32 in 18 bytes, f16 d then 16 bytes (element j
 * < 16 the low nibble of byte j, j + 16 its high nibble); d * level.
 * IQ4_XS: blocks of 256 in 136 bytes: f16 d, u16 scales_h, 4 bytes
 * scales_l, 128 bytes; sub-block s = j / 32 has the 6-bit scale ls (low 4
 * bits: nibble s % 2 of scales_l[s / 2]; high 2: bits 2s, 2s+1 of
 * scales_h) and its 16 bytes nibbled as IQ4_NL's; d * (ls - 32) * level. */
static double ref_iq4_element(const uint8_t *p, qiao_dev_dtype dtype, uint64_t i) {
  static const int levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};
  if (dtype == QIAO_DEV_IQ4_NL) {
    const uint8_t *b = p + (i / 32) * 18;
    int j = (int)(i % 32);
    int q = j < 16 ? b[2 + j] & 15 : b[2 + j - 16] >> 4;
    return f16_value(u16_at(b)) * levels[q];
  }
  const uint8_t *b = p + (i / 256) * 136;
  int j = (int)(i % 256), s = j / 32, l = j % 32;
  int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 15) | ((u16_at(b + 2) >> (2 * s)) & 3) << 4;
  const uint8_t *qs = b + 8 + 16 * s;
  int q = l < 16 ? qs[l] & 15 : qs[l - 16] >> 4;
  return f16_value(u16_at(b)) * (ls - 32) * levels[q];
}

double qiao__cf_ref_element(const void *data, qiao_dev_dtype dtype, uint64_t i) {
  const uint8_t *p = data;
  switch (dtype) {
  case QIAO_DEV_F32: {
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
  }
  case QIAO_DEV_F16: return f16_value(u16_at(p + 2 * i));
  case QIAO_DEV_BF16: { /* the upper half of a binary32 */
    uint32_t bits = (uint32_t)u16_at(p + 2 * i) << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
  }
  case QIAO_DEV_Q8_0: { /* f16 d; int8 q[32] */
    const uint8_t *block = p + (i / 32) * 34;
    return f16_value(u16_at(block)) * (int8_t)block[2 + i % 32];
  }
  case QIAO_DEV_Q4_0: { /* f16 d; byte j: element j low nibble, j+16 high */
    const uint8_t *block = p + (i / 32) * 18;
    uint64_t j = i % 32;
    int nibble = j < 16 ? block[2 + j] & 15 : block[2 + j - 16] >> 4;
    return f16_value(u16_at(block)) * (nibble - 8);
  }
  case QIAO_DEV_I32: {
    int32_t v;
    memcpy(&v, p + 4 * i, 4);
    return v;
  }
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K:
  case QIAO_DEV_Q6_K:
  case QIAO_DEV_Q2_K:
  case QIAO_DEV_Q3_K: return ref_k_element(p, dtype, i);
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_0:
  case QIAO_DEV_Q5_1: return ref_32_element(p, dtype, i);
  case QIAO_DEV_F8_E4M3_B128: return ref_f8_element(p, i);
  case QIAO_DEV_IQ4_NL:
  case QIAO_DEV_IQ4_XS: return ref_iq4_element(p, dtype, i);
  default: return NAN;
  }
}

uint16_t qiao__cf_ref_to_f16(double x) {
  uint16_t sign = signbit(x) ? 0x8000 : 0;
  double a = fabs(x);
  if (isnan(x)) return 0x7e00;
  if (a == 0) return sign;
  /* the spacing of f16 values at a's binade (2^-24 below the normal range) */
  int e = 0;
  frexp(a, &e); /* a in [2^(e-1), 2^e) */
  int binade = e - 1 < -14 ? -14 : e - 1;
  double step = ldexp(1.0, binade - 10);
  double rounded = nearbyint(a / step) * step;  /* ties to even: the default mode */
  if (rounded >= 65536.0) return sign | 0x7c00; /* beyond the largest finite, 65504 */
  if (rounded < ldexp(1.0, -14)) return sign | (uint16_t)(rounded / ldexp(1.0, -24));
  frexp(rounded, &e); /* rounding may have carried into the next binade */
  double significand = rounded / ldexp(1.0, e - 1); /* in [1, 2) */
  return sign | (uint16_t)((e - 1 + 15) << 10) | (uint16_t)((significand - 1) * 1024);
}

/* ---- Operands -------------------------------------------------------------- */

typedef struct ref {
  const cf_case *c;
  uint8_t **expected;
  bool out_of_memory;
} ref;

/* The operand bound to the qiao_dev_ref at `offset` of the args, or -1. */
static int operand_at(const ref *r, size_t offset) {
  for (size_t i = 0; i < r->c->n_refs; i++)
    if (r->c->refs[i].offset == offset) return r->c->refs[i].operand;
  return -1;
}
#define AT(r, member) operand_at((r), offsetof(cf_args, member))

/* Element i of operand `index` as it was before the op. */
static double in(const ref *r, int index, qiao_dev_dtype dtype, uint64_t i) {
  return qiao__cf_ref_element(r->c->operands[index].host, dtype, i);
}
static int32_t in_i32(const ref *r, int index, uint64_t i) {
  int32_t v;
  memcpy(&v, (const uint8_t *)r->c->operands[index].host + 4 * i, 4);
  return v;
}

/* Stores a result: F32 rounded once from float64. */
static void out_f32(const ref *r, int index, uint64_t i, double v) {
  float f = (float)v;
  memcpy(r->expected[index] + 4 * i, &f, 4);
}
static void out_i32(const ref *r, int index, uint64_t i, int32_t v) {
  memcpy(r->expected[index] + 4 * i, &v, 4);
}

/* ---- The ops (§11.3) ------------------------------------------------------- */

static void embed(ref *r) {
  const qiao_dev_embed_args *a = &r->c->args.embed;
  int table = AT(r, embed.table), ids = AT(r, embed.ids), out = AT(r, embed.out);
  for (uint64_t t = 0; t < a->n_tokens; t++)
    for (uint64_t j = 0; j < a->dim; j++) {
      uint64_t row = (uint64_t)in_i32(r, ids, t);
      out_f32(r, out, t * a->dim + j, in(r, table, a->table_dtype, row * a->dim + j));
    }
}

static void matmul(ref *r) {
  const qiao_dev_matmul_args *a = &r->c->args.matmul;
  int x = AT(r, matmul.x), w = AT(r, matmul.w), bias = AT(r, matmul.bias), out = AT(r, matmul.out);
  for (uint64_t i = 0; i < a->n; i++)
    for (uint64_t j = 0; j < a->m; j++) {
      double sum = 0;
      for (uint64_t p = 0; p < a->k; p++)
        sum += in(r, x, QIAO_DEV_F32, i * a->k + p) * in(r, w, a->w_dtype, j * a->k + p);
      if (bias >= 0) sum += in(r, bias, QIAO_DEV_F32, j);
      if (a->accumulate) sum += in(r, out, QIAO_DEV_F32, i * a->m + j);
      out_f32(r, out, i * a->m + j, sum);
    }
}

static void rmsnorm(ref *r) {
  const qiao_dev_rmsnorm_args *a = &r->c->args.rmsnorm;
  int x = AT(r, rmsnorm.x), weight = AT(r, rmsnorm.weight), out = AT(r, rmsnorm.out);
  for (uint64_t row = 0; row < a->rows; row++) {
    double squares = 0;
    for (uint64_t j = 0; j < a->cols; j++) {
      double v = in(r, x, QIAO_DEV_F32, row * a->cols + j);
      squares += v * v;
    }
    double inv = 1 / sqrt(squares / (double)a->cols + (double)a->eps);
    for (uint64_t j = 0; j < a->cols; j++)
      out_f32(r, out, row * a->cols + j,
              in(r, x, QIAO_DEV_F32, row * a->cols + j) * inv * in(r, weight, QIAO_DEV_F32, j));
  }
}

static void rope(ref *r) {
  const qiao_dev_rope_args *a = &r->c->args.rope;
  int x = AT(r, rope.x), positions = AT(r, rope.positions), freqs = AT(r, rope.freqs);
  uint64_t half = a->rot_dim / 2;
  for (uint64_t t = 0; t < a->n_tokens; t++)
    for (uint64_t h = 0; h < a->n_heads; h++) {
      uint64_t base = (t * a->n_heads + h) * a->head_dim;
      for (uint64_t d = 0; d < a->head_dim; d++) /* dimensions past rot_dim stay */
        out_f32(r, x, base + d, in(r, x, QIAO_DEV_F32, base + d));
      for (uint64_t i = 0; i < half; i++) {
        /* the angle is one binary32 product, correctly rounded (§11.3) */
        float angle = (float)in_i32(r, positions, t) * (float)in(r, freqs, QIAO_DEV_F32, i);
        uint64_t i0 = a->style == QIAO_DEV_ROPE_NEOX ? i : 2 * i;
        uint64_t i1 = a->style == QIAO_DEV_ROPE_NEOX ? i + half : 2 * i + 1;
        double x0 = in(r, x, QIAO_DEV_F32, base + i0), x1 = in(r, x, QIAO_DEV_F32, base + i1);
        double c = cos((double)angle), s = sin((double)angle);
        out_f32(r, x, base + i0, x0 * c - x1 * s);
        out_f32(r, x, base + i1, x0 * s + x1 * c);
      }
    }
}

static void kv_write(ref *r) {
  const qiao_dev_kv_write_args *a = &r->c->args.kv_write;
  int src[2] = {AT(r, kv_write.k), AT(r, kv_write.v)};
  int dst[2] = {AT(r, kv_write.k_cache), AT(r, kv_write.v_cache)};
  int slots = AT(r, kv_write.slots);
  for (int which = 0; which < 2; which++)
    for (uint64_t t = 0; t < a->n_tokens; t++) {
      uint64_t slot = (uint64_t)in_i32(r, slots, t);
      for (uint64_t j = 0; j < a->kv_dim; j++) {
        double v = in(r, src[which], QIAO_DEV_F32, t * a->kv_dim + j);
        uint64_t e = slot * a->kv_dim + j;
        if (a->cache_dtype == QIAO_DEV_F16) {
          uint16_t h = qiao__cf_ref_to_f16(v);
          memcpy(r->expected[dst[which]] + 2 * e, &h, 2);
        } else {
          out_f32(r, dst[which], e, v);
        }
      }
    }
}

static void attention(ref *r) {
  const qiao_dev_attention_args *a = &r->c->args.attention;
  int q = AT(r, attention.q), kc = AT(r, attention.k_cache), vc = AT(r, attention.v_cache);
  int table = AT(r, attention.block_table), seqs = AT(r, attention.token_seq);
  int positions = AT(r, attention.token_pos), out = AT(r, attention.out);
  uint64_t kv_dim = a->n_kv_heads * a->head_dim, group = a->n_heads / a->n_kv_heads;
  for (uint64_t t = 0; t < a->n_tokens; t++) {
    uint64_t s = (uint64_t)in_i32(r, seqs, t), p = (uint64_t)in_i32(r, positions, t);
    uint64_t lo = a->window > 0 && p + 1 > a->window ? p + 1 - a->window : 0;
    double *score = malloc((p - lo + 1) * sizeof(double));
    if (score == NULL) {
      r->out_of_memory = true;
      return;
    }
    for (uint64_t h = 0; h < a->n_heads; h++) {
      uint64_t g = h / group, qbase = (t * a->n_heads + h) * a->head_dim;
      double max = -INFINITY, total = 0;
      for (uint64_t j = lo; j <= p; j++) {
        uint64_t block = (uint64_t)in_i32(r, table, s * a->max_blocks_per_seq + j / a->block_size);
        uint64_t kbase = (block * a->block_size + j % a->block_size) * kv_dim + g * a->head_dim;
        double dot = 0;
        for (uint64_t d = 0; d < a->head_dim; d++)
          dot += in(r, q, QIAO_DEV_F32, qbase + d) * in(r, kc, a->cache_dtype, kbase + d);
        score[j - lo] = (double)a->scale * dot;
        if (score[j - lo] > max) max = score[j - lo];
      }
      for (uint64_t j = lo; j <= p; j++)
        total += score[j - lo] = exp(score[j - lo] - max);
      for (uint64_t d = 0; d < a->head_dim; d++) {
        double sum = 0;
        for (uint64_t j = lo; j <= p; j++) {
          uint64_t block =
              (uint64_t)in_i32(r, table, s * a->max_blocks_per_seq + j / a->block_size);
          uint64_t vbase = (block * a->block_size + j % a->block_size) * kv_dim + g * a->head_dim;
          sum += score[j - lo] / total * in(r, vc, a->cache_dtype, vbase + d);
        }
        out_f32(r, out, qbase + d, sum);
      }
    }
    free(score);
  }
}

static void swiglu(ref *r) {
  const qiao_dev_swiglu_args *a = &r->c->args.swiglu;
  int gate = AT(r, swiglu.gate), up = AT(r, swiglu.up), out = AT(r, swiglu.out);
  for (uint64_t i = 0; i < a->n; i++) {
    double g = in(r, gate, QIAO_DEV_F32, i);
    out_f32(r, out, i, g / (1 + exp(-g)) * in(r, up, QIAO_DEV_F32, i));
  }
}

/* Rounding the exact double sum of two binary32 values to binary32 gives the
 * correctly rounded binary32 sum (double has more than 2 * 24 + 2 bits). */
static void add(ref *r) {
  const qiao_dev_add_args *a = &r->c->args.add;
  int x = AT(r, add.a), y = AT(r, add.b), out = AT(r, add.out);
  for (uint64_t i = 0; i < a->n; i++)
    out_f32(r, out, i, in(r, x, QIAO_DEV_F32, i) + in(r, y, QIAO_DEV_F32, i));
}

static void argmax(ref *r) {
  const qiao_dev_argmax_args *a = &r->c->args.argmax;
  int x = AT(r, argmax.x), out = AT(r, argmax.out);
  for (uint64_t row = 0; row < a->rows; row++) {
    int32_t best = 0; /* a row of NaN only gives 0 */
    double best_value = NAN;
    for (uint64_t j = 0; j < a->cols; j++) {
      double v = in(r, x, QIAO_DEV_F32, row * a->cols + j);
      if (!isnan(v) && (isnan(best_value) || v > best_value)) best = (int32_t)j, best_value = v;
    }
    out_i32(r, out, row, best);
  }
}

static void moe_gate(ref *r) {
  const qiao_dev_moe_gate_args *a = &r->c->args.moe_gate;
  int logits = AT(r, moe_gate.logits), ids = AT(r, moe_gate.ids);
  int weights = AT(r, moe_gate.weights);
  double *p = malloc(a->n_experts * sizeof(double));
  bool *taken = malloc(a->n_experts);
  uint64_t *picked = malloc(a->k * sizeof(uint64_t));
  if (p == NULL || taken == NULL || picked == NULL) r->out_of_memory = true;
  for (uint64_t t = 0; p && taken && picked && t < a->n_tokens; t++) {
    double max = -INFINITY, total = 0, chosen = 0;
    for (uint64_t e = 0; e < a->n_experts; e++)
      max = fmax(max, in(r, logits, QIAO_DEV_F32, t * a->n_experts + e));
    for (uint64_t e = 0; e < a->n_experts; e++) {
      total += p[e] = exp(in(r, logits, QIAO_DEV_F32, t * a->n_experts + e) - max);
      taken[e] = false;
    }
    /* ranked by logit (§11.3: not by p, whose binary32 rounding can tie
     * different logits), the smaller index on ties */
    for (uint64_t i = 0; i < a->k; i++) {
      uint64_t best = a->n_experts, row = t * a->n_experts;
      for (uint64_t e = 0; e < a->n_experts; e++)
        if (!taken[e] && (best == a->n_experts || in(r, logits, QIAO_DEV_F32, row + e) >
                                                      in(r, logits, QIAO_DEV_F32, row + best)))
          best = e;
      taken[best] = true;
      picked[i] = best;
      chosen += p[best] / total;
    }
    for (uint64_t i = 0; i < a->k; i++) {
      double weight = p[picked[i]] / total;
      out_i32(r, ids, t * a->k + i, (int32_t)picked[i]);
      out_f32(r, weights, t * a->k + i, a->normalize ? weight / chosen : weight);
    }
  }
  free(p);
  free(taken);
  free(picked);
}

static void matmul_experts(ref *r) {
  const qiao_dev_matmul_experts_args *a = &r->c->args.matmul_experts;
  int x = AT(r, matmul_experts.x), w = AT(r, matmul_experts.w);
  int ids = AT(r, matmul_experts.ids), out = AT(r, matmul_experts.out);
  for (uint64_t t = 0; t < a->n_tokens; t++)
    for (uint64_t i = 0; i < a->k; i++) {
      uint64_t expert = (uint64_t)in_i32(r, ids, t * a->k + i);
      uint64_t xrow = a->x_per_slot ? t * a->k + i : t;
      for (uint64_t o = 0; o < a->out_dim; o++) {
        double sum = 0;
        for (uint64_t d = 0; d < a->in_dim; d++)
          sum += in(r, x, QIAO_DEV_F32, xrow * a->in_dim + d) *
                 in(r, w, a->w_dtype, (expert * a->out_dim + o) * a->in_dim + d);
        out_f32(r, out, (t * a->k + i) * a->out_dim + o, sum);
      }
    }
}

static void moe_combine(ref *r) {
  const qiao_dev_moe_combine_args *a = &r->c->args.moe_combine;
  int x = AT(r, moe_combine.x), weights = AT(r, moe_combine.weights);
  int out = AT(r, moe_combine.out);
  for (uint64_t t = 0; t < a->n_tokens; t++)
    for (uint64_t d = 0; d < a->dim; d++) {
      double sum = a->accumulate ? in(r, out, QIAO_DEV_F32, t * a->dim + d) : 0;
      for (uint64_t i = 0; i < a->k; i++)
        sum += in(r, weights, QIAO_DEV_F32, t * a->k + i) *
               in(r, x, QIAO_DEV_F32, (t * a->k + i) * a->dim + d);
      out_f32(r, out, t * a->dim + d, sum);
    }
}

/* ---- The ops of ABI 1.4 ---------------------------------------------------- */

/* Stores v into element e of a cache of dtype F32 or F16 (rounded once). */
static void out_cache(const ref *r, int index, qiao_dev_dtype dtype, uint64_t e, double v) {
  if (dtype == QIAO_DEV_F16) {
    uint16_t h = qiao__cf_ref_to_f16(v);
    memcpy(r->expected[index] + 2 * e, &h, 2);
  } else {
    out_f32(r, index, e, v);
  }
}

static void latent_write(ref *r) {
  const qiao_dev_latent_write_args *a = &r->c->args.latent_write;
  int latent = AT(r, latent_write.latent), rope = AT(r, latent_write.rope);
  int slots = AT(r, latent_write.slots), cache = AT(r, latent_write.cache);
  uint64_t row = a->latent_dim + a->rope_dim;
  for (uint64_t t = 0; t < a->n_tokens; t++) {
    uint64_t slot = (uint64_t)in_i32(r, slots, t);
    for (uint64_t j = 0; j < a->latent_dim; j++)
      out_cache(r, cache, a->cache_dtype, slot * row + j,
                in(r, latent, QIAO_DEV_F32, t * a->latent_dim + j));
    for (uint64_t j = 0; j < a->rope_dim; j++)
      out_cache(r, cache, a->cache_dtype, slot * row + a->latent_dim + j,
                in(r, rope, QIAO_DEV_F32, t * a->rope_dim + j));
  }
}

static void attention_latent(ref *r) {
  const qiao_dev_attention_latent_args *a = &r->c->args.attention_latent;
  int ql = AT(r, attention_latent.q_latent), qr = AT(r, attention_latent.q_rope);
  int cache = AT(r, attention_latent.cache), table = AT(r, attention_latent.block_table);
  int seqs = AT(r, attention_latent.token_seq), positions = AT(r, attention_latent.token_pos);
  int out = AT(r, attention_latent.out);
  uint64_t L = a->latent_dim, R = a->rope_dim, row = L + R;
  for (uint64_t t = 0; t < a->n_tokens; t++) {
    uint64_t s = (uint64_t)in_i32(r, seqs, t), p = (uint64_t)in_i32(r, positions, t);
    uint64_t lo = a->window > 0 && p + 1 > a->window ? p + 1 - a->window : 0;
    double *score = malloc((p - lo + 1) * sizeof(double));
    uint64_t *base = malloc((p - lo + 1) * sizeof(uint64_t));
    if (score == NULL || base == NULL) {
      free(score);
      free(base);
      r->out_of_memory = true;
      return;
    }
    for (uint64_t j = lo; j <= p; j++) {
      uint64_t block = (uint64_t)in_i32(r, table, s * a->max_blocks_per_seq + j / a->block_size);
      base[j - lo] = (block * a->block_size + j % a->block_size) * row;
    }
    for (uint64_t h = 0; h < a->n_heads; h++) {
      uint64_t lbase = (t * a->n_heads + h) * L, rbase = (t * a->n_heads + h) * R;
      double max = -INFINITY, total = 0;
      for (uint64_t j = lo; j <= p; j++) {
        double dot = 0;
        for (uint64_t d = 0; d < L; d++)
          dot +=
              in(r, ql, QIAO_DEV_F32, lbase + d) * in(r, cache, a->cache_dtype, base[j - lo] + d);
        for (uint64_t d = 0; d < R; d++)
          dot += in(r, qr, QIAO_DEV_F32, rbase + d) *
                 in(r, cache, a->cache_dtype, base[j - lo] + L + d);
        score[j - lo] = (double)a->scale * dot;
        if (score[j - lo] > max) max = score[j - lo];
      }
      for (uint64_t j = lo; j <= p; j++)
        total += score[j - lo] = exp(score[j - lo] - max);
      for (uint64_t d = 0; d < L; d++) {
        double sum = 0;
        for (uint64_t j = lo; j <= p; j++)
          sum += score[j - lo] / total * in(r, cache, a->cache_dtype, base[j - lo] + d);
        out_f32(r, out, lbase + d, sum);
      }
    }
    free(score);
    free(base);
  }
}

/* Index of the largest of v[0..n) not yet taken; ties to the smaller index. */
static uint64_t ref_best(const double *v, const bool *taken, uint64_t n) {
  uint64_t best = n;
  for (uint64_t i = 0; i < n; i++)
    if (!taken[i] && (best == n || v[i] > v[best])) best = i;
  return best;
}

static void moe_route(ref *r) {
  const qiao_dev_moe_route_args *a = &r->c->args.moe_route;
  int logits = AT(r, moe_route.logits), bias = AT(r, moe_route.bias);
  int ids = AT(r, moe_route.ids), weights = AT(r, moe_route.weights);
  uint64_t ne = a->n_experts, ng = a->n_groups > 1 ? a->n_groups : 1, per = ne / ng;
  double *p = malloc(ne * sizeof(double)), *c = malloc(ne * sizeof(double));
  double *gs = malloc(ng * sizeof(double));
  bool *taken = malloc(ne + ng);
  uint64_t *picked = malloc(a->k * sizeof(uint64_t));
  if (!p || !c || !gs || !taken || !picked) r->out_of_memory = true;
  for (uint64_t t = 0; !r->out_of_memory && t < a->n_tokens; t++) {
    double max = -INFINITY, total = 0;
    for (uint64_t e = 0; e < ne; e++)
      max = fmax(max, in(r, logits, QIAO_DEV_F32, t * ne + e));
    for (uint64_t e = 0; e < ne; e++) {
      double l = in(r, logits, QIAO_DEV_F32, t * ne + e);
      if (a->scoring == QIAO_DEV_MOE_SCORE_SOFTMAX)
        total += p[e] = exp(l - max);
      else
        p[e] = 1 / (1 + exp(-l));
    }
    for (uint64_t e = 0; e < ne; e++) {
      if (a->scoring == QIAO_DEV_MOE_SCORE_SOFTMAX) p[e] /= total;
      c[e] = p[e] + (bias >= 0 ? in(r, bias, QIAO_DEV_F32, e) : 0);
      taken[e] = false;
    }
    if (ng > 1) { /* group scores, the kept groups, c = 0 in the others */
      bool *kept = taken + ne;
      for (uint64_t g = 0; g < ng; g++) {
        uint64_t first = ref_best(c + g * per, taken + g * per, per);
        gs[g] = c[g * per + first];
        if (a->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM) {
          taken[g * per + first] = true;
          gs[g] += c[g * per + ref_best(c + g * per, taken + g * per, per)];
          taken[g * per + first] = false;
        }
        kept[g] = false;
      }
      for (uint32_t i = 0; i < a->topk_groups; i++)
        kept[ref_best(gs, kept, ng)] = true;
      for (uint64_t e = 0; e < ne; e++)
        if (!kept[e / per]) c[e] = 0;
    }
    double chosen = 0;
    for (uint64_t i = 0; i < a->k; i++) {
      picked[i] = ref_best(c, taken, ne);
      taken[picked[i]] = true;
      chosen += p[picked[i]];
    }
    for (uint64_t i = 0; i < a->k; i++) {
      double w = a->normalize ? p[picked[i]] / (chosen + 1e-20) : p[picked[i]];
      out_i32(r, ids, t * a->k + i, (int32_t)picked[i]);
      out_f32(r, weights, t * a->k + i, w * (double)a->scale);
    }
  }
  free(p);
  free(c);
  free(gs);
  free(taken);
  free(picked);
}

/* ---- Entry point ----------------------------------------------------------- */

bool qiao__cf_ref_has(qiao_dev_op op) {
  return op >= QIAO_DEV_OP_EMBED && op <= QIAO_DEV_OP_MOE_ROUTE;
}

bool qiao__cf_ref_covers(const cf_case *c) {
  if (c->op == QIAO_DEV_OP_MATMUL && c->args.matmul.x_precision != QIAO_DEV_PRECISION_EXACT)
    return false;
  return qiao__cf_ref_has(c->op);
}

qiao_status *qiao__cf_reference_run(const cf_case *c, uint8_t *expected[]) {
  if (!qiao__cf_ref_covers(c))
    return qiao__error(QIAO_UNSUPPORTED, "the float64 reference does not define op %s",
                       qiao_dev_op_name(c->op));
  for (size_t i = 0; i < c->n_operands; i++) {
    expected[i] = malloc(c->operands[i].bytes ? c->operands[i].bytes : 1);
    if (expected[i] == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "reference: out of memory");
    memcpy(expected[i], c->operands[i].host, c->operands[i].bytes);
  }
  ref r = {c, expected, false};
  switch (c->op) {
  case QIAO_DEV_OP_EMBED: embed(&r); break;
  case QIAO_DEV_OP_MATMUL: matmul(&r); break;
  case QIAO_DEV_OP_RMSNORM: rmsnorm(&r); break;
  case QIAO_DEV_OP_ROPE: rope(&r); break;
  case QIAO_DEV_OP_KV_WRITE: kv_write(&r); break;
  case QIAO_DEV_OP_ATTENTION: attention(&r); break;
  case QIAO_DEV_OP_SWIGLU: swiglu(&r); break;
  case QIAO_DEV_OP_ADD: add(&r); break;
  case QIAO_DEV_OP_ARGMAX: argmax(&r); break;
  case QIAO_DEV_OP_MOE_GATE: moe_gate(&r); break;
  case QIAO_DEV_OP_MATMUL_EXPERTS: matmul_experts(&r); break;
  case QIAO_DEV_OP_MOE_COMBINE: moe_combine(&r); break;
  case QIAO_DEV_OP_LATENT_WRITE: latent_write(&r); break;
  case QIAO_DEV_OP_ATTENTION_LATENT: attention_latent(&r); break;
  case QIAO_DEV_OP_MOE_ROUTE: moe_route(&r); break;
  default: break;
  }
  return r.out_of_memory ? qiao__error(QIAO_OUT_OF_MEMORY, "reference: out of memory") : NULL;
}
