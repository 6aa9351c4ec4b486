/* The op level (docs/spec/device-abi.md §12.1): for every op x dtype the
 * target claims, cases with random inputs and the shapes kernels get wrong:
 * size 1, sizes that are not multiples of block or vector widths, rows of
 * 4096+, many tokens and sequences, KV lengths that cross block boundaries,
 * sliding windows and GQA ratios. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/op_runner.h"
#include "conformance/reference.h"

#define BIND(c, member, index) qiao__cf_bind((c), offsetof(cf_args, member), (index))
#define SHAPE(c, ...) snprintf((c)->shape, sizeof((c)->shape), __VA_ARGS__)

typedef struct ctx {
  qiao_conformance_report *report;
  cf_device *target, *reference;
  cf_rng rng;
  const char *mode; /* appended to every shape: the device mode under test, or "" */
} ctx;

static float *f32s(ctx *x, uint64_t n, float lo, float hi) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (p)
    for (uint64_t i = 0; i < n; i++)
      p[i] = qiao__cf_uniform(&x->rng, lo, hi);
  return p;
}

/* Outputs that must be fully written start as NaN: reading them shows. */
static float *nans(uint64_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (p)
    for (uint64_t i = 0; i < n; i++)
      p[i] = NAN;
  return p;
}

static int32_t *i32s(uint64_t n, int32_t fill) {
  int32_t *p = malloc((n ? n : 1) * sizeof(int32_t));
  if (p)
    for (uint64_t i = 0; i < n; i++)
      p[i] = fill;
  return p;
}

static void run_case(ctx *x, cf_case *c) {
  size_t used = strlen(c->shape);
  snprintf(c->shape + used, sizeof(c->shape) - used, "%s", x->mode);
  qiao__cf_case_run(x->report, x->target, x->reference, c);
  qiao__cf_case_free(c);
}

static void start(cf_case *c, qiao_dev_op op, qiao_dev_dtype dtype) {
  memset(c, 0, sizeof(*c));
  c->op = op;
  c->dtype = dtype;
}

static bool quantized(qiao_dev_dtype d) {
  return qiao__cf_block_elems(d) > 1;
}

/* A row length: `quant` (a multiple of 32) for quantized dtypes, scaled to
 * whole super-blocks for those of 256 elements, `plain` for float ones. */
static uint64_t kq(qiao_dev_dtype d, uint64_t quant, uint64_t plain) {
  return qiao__cf_row_len(d, quant, plain);
}

/* Makes every weight of a random tensor >= 0 (sign bits cleared, Q8_0 quants
 * made positive, Q4_0 nibbles moved to 8..15). A case with a single output
 * element takes positive x and w: a random dot product can cancel to almost
 * nothing, and with one element there is no other row to floor the relative
 * error (§11.1), so F32 rounding alone would fail it (seen at k = 32: sum
 * 5.6e-6 of products of size 1). */
/* The same for one block of a 1.3 dtype: scales made >= 0, mins <= 0 (they
 * are subtracted), every quant minus its offset >= 0. */
static void nonnegative_block(qiao_dev_dtype dt, uint8_t *b) {
  switch (dt) {
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_1: b[1] &= 0x7f, b[3] &= 0x7f; break;
  case QIAO_DEV_Q5_0: b[1] &= 0x7f, memset(b + 2, 0xff, 4); break; /* q - 16 >= 0 */
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K: b[1] &= 0x7f, b[3] |= 0x80; break;
  case QIAO_DEV_Q6_K:
    b[209] &= 0x7f;
    for (int j = 0; j < 16; j++)
      b[192 + j] &= 0x7f;
    for (int j = 0; j < 64; j++) /* the top bit of every 6-bit quant: q - 32 >= 0 */
      b[128 + j] |= 0xaa;
    break;
  case QIAO_DEV_Q2_K: b[81] &= 0x7f, b[83] |= 0x80; break;
  case QIAO_DEV_Q3_K:
    b[109] &= 0x7f;
    memset(b, 0xff, 32);        /* high bits set: no - 4 */
    for (int j = 0; j < 4; j++) /* the top bit of every 6-bit scale: scale - 32 >= 0 */
      b[104 + j] |= 0xaa;
    break;
  case QIAO_DEV_IQ4_NL: /* (1.5) d >= 0, every nibble >= 8 (levels >= 1) */
    b[1] &= 0x7f;
    for (int j = 0; j < 16; j++)
      b[2 + j] |= 0x88;
    break;
  case QIAO_DEV_IQ4_XS: /* (1.5) and every 6-bit scale >= 32 (its top bit) */
    b[1] &= 0x7f, b[2] |= 0xaa, b[3] |= 0xaa;
    for (int j = 0; j < 128; j++)
      b[8 + j] |= 0x88;
    break;
  case QIAO_DEV_F8_E4M3_B128: /* (1.4) the sign bits of the F32 scale and of every code */
    b[3] &= 0x7f;
    for (int j = 0; j < 128; j++)
      b[4 + j] &= 0x7f;
    break;
  default: break;
  }
}

static void nonnegative(qiao_dev_dtype dt, void *w, uint64_t count) {
  uint8_t *p = w;
  for (uint64_t i = 0; p && i < count; i++)
    switch (dt) {
    case QIAO_DEV_F32: p[4 * i + 3] &= 0x7f; break;
    case QIAO_DEV_F16:
    case QIAO_DEV_BF16: p[2 * i + 1] &= 0x7f; break;
    case QIAO_DEV_Q8_0: {
      uint8_t *block = p + (i / 32) * 34;
      if (i % 32 == 0) block[1] &= 0x7f;
      int8_t q = (int8_t)block[2 + i % 32];
      block[2 + i % 32] = (uint8_t)(q == -128 ? 127 : q < 0 ? -q : q);
      break;
    }
    case QIAO_DEV_Q4_0: {
      uint8_t *block = p + (i / 32) * 18;
      if (i % 32 == 0) block[1] &= 0x7f;
      if (i % 32 < 16) block[2 + i % 32] |= 0x88; /* both nibbles of the byte */
      break;
    }
    default:
      if (i % qiao__cf_block_elems(dt) == 0)
        nonnegative_block(dt, p + i / qiao__cf_block_elems(dt) *
                                      qiao__cf_dtype_bytes(dt, qiao__cf_block_elems(dt)));
      break;
    }
}

static void nonnegative_f32(float *x, uint64_t count) {
  for (uint64_t i = 0; x && i < count; i++)
    x[i] = fabsf(x[i]);
}

/* ---- embed ---------------------------------------------------------------- */

static void embed_case(ctx *x, qiao_dev_dtype dt, uint64_t n, uint64_t vocab, uint64_t dim) {
  cf_case c;
  start(&c, QIAO_DEV_OP_EMBED, dt);
  SHAPE(&c, "n_tokens=%llu vocab=%llu dim=%llu", (unsigned long long)n, (unsigned long long)vocab,
        (unsigned long long)dim);
  int32_t *ids = i32s(n, 0);
  for (uint64_t t = 0; ids && t < n; t++)
    ids[t] = (int32_t)qiao__cf_below(&x->rng, vocab);
  if (ids && n > 1) ids[0] = (int32_t)(vocab - 1), ids[n - 1] = 0; /* both ends of the table */
  qiao_dev_embed_args *a = &c.args.embed;
  *a = (qiao_dev_embed_args){
      .struct_size = sizeof(*a), .n_tokens = n, .vocab = vocab, .dim = dim, .table_dtype = dt};
  BIND(&c, embed.table,
       qiao__cf_operand(&c, "table", qiao__cf_random_weights(&x->rng, dt, vocab * dim),
                        qiao__cf_dtype_bytes(dt, vocab * dim), CF_INPUT, 0));
  BIND(&c, embed.ids, qiao__cf_operand(&c, "ids", ids, n * 4, CF_INPUT, 0));
  BIND(&c, embed.out, qiao__cf_operand(&c, "out", nans(n * dim), n * dim * 4, CF_OUT_F32, dim));
  run_case(x, &c);
}

/* ---- F8_E4M3_B128 (1.4): every code ---------------------------------------
 * `count` elements (a multiple of 128) whose codes run through all 256 in
 * order, the two NaN codes replaced by +0 and -0 (so negative zero appears),
 * and whose block scales cycle through `scales`: 1, extremes (the smallest
 * subnormal-producing, a subnormal scale, a large one), -0 and negatives. */
static void *f8_all_codes(uint64_t count) {
  static const float scales[] = {1.0f,     0x1p-120f, 1e-39f, 0x1p100f, -0.0f,
                                 -0.0625f, 3.0f,      -7e-3f, 0x1p-8f};
  uint8_t *p = malloc(count / 128 * 132);
  for (uint64_t b = 0; p && b < count / 128; b++) {
    memcpy(p + 132 * b, &scales[b % (sizeof(scales) / sizeof(scales[0]))], 4);
    for (uint64_t j = 0; j < 128; j++) {
      uint8_t q = (uint8_t)(b * 128 + j);
      p[132 * b + 4 + j] = q == 0x7f ? 0x00 : q == 0xff ? 0x80 : q;
    }
  }
  return p;
}

/* embed: every code and scale, exactly (budget 0); matmul and
 * matmul_experts: the same weights in products. */
static void f8_code_cases(ctx *x, qiao_dev_op op) {
  const qiao_dev_dtype dt = QIAO_DEV_F8_E4M3_B128;
  cf_case c;
  start(&c, op, dt);
  if (op == QIAO_DEV_OP_EMBED) {
    uint64_t vocab = 9, dim = 256, n = 9;
    SHAPE(&c, "n_tokens=%llu vocab=%llu dim=%llu every-code", (unsigned long long)n,
          (unsigned long long)vocab, (unsigned long long)dim);
    int32_t *ids = i32s(n, 0);
    for (uint64_t t = 0; ids && t < n; t++)
      ids[t] = (int32_t)((t * 4 + 3) % vocab);
    c.args.embed = (qiao_dev_embed_args){.struct_size = sizeof(qiao_dev_embed_args),
                                         .n_tokens = n,
                                         .vocab = vocab,
                                         .dim = dim,
                                         .table_dtype = dt};
    BIND(&c, embed.table,
         qiao__cf_operand(&c, "table", f8_all_codes(vocab * dim),
                          qiao__cf_dtype_bytes(dt, vocab * dim), CF_INPUT, 0));
    BIND(&c, embed.ids, qiao__cf_operand(&c, "ids", ids, n * 4, CF_INPUT, 0));
    BIND(&c, embed.out, qiao__cf_operand(&c, "out", nans(n * dim), n * dim * 4, CF_OUT_F32, dim));
  } else if (op == QIAO_DEV_OP_MATMUL) {
    uint64_t n = 3, k = 256, m = 9;
    SHAPE(&c, "n=%llu k=%llu m=%llu every-code", (unsigned long long)n, (unsigned long long)k,
          (unsigned long long)m);
    c.args.matmul = (qiao_dev_matmul_args){
        .struct_size = sizeof(qiao_dev_matmul_args), .n = n, .k = k, .m = m, .w_dtype = dt};
    BIND(&c, matmul.x, qiao__cf_operand(&c, "x", f32s(x, n * k, -1, 1), n * k * 4, CF_INPUT, 0));
    BIND(&c, matmul.w,
         qiao__cf_operand(&c, "w", f8_all_codes(m * k), qiao__cf_dtype_bytes(dt, m * k), CF_INPUT,
                          0));
    BIND(&c, matmul.out, qiao__cf_operand(&c, "out", nans(n * m), n * m * 4, CF_OUT_F32, m));
  } else {
    uint64_t n = 2, k = 2, e = 3, in_dim = 256, out_dim = 3;
    SHAPE(&c, "n_tokens=%llu k=%llu n_experts=%llu in_dim=%llu out_dim=%llu every-code",
          (unsigned long long)n, (unsigned long long)k, (unsigned long long)e,
          (unsigned long long)in_dim, (unsigned long long)out_dim);
    c.args.matmul_experts =
        (qiao_dev_matmul_experts_args){.struct_size = sizeof(qiao_dev_matmul_experts_args),
                                       .n_tokens = n,
                                       .k = k,
                                       .n_experts = e,
                                       .in_dim = in_dim,
                                       .out_dim = out_dim,
                                       .w_dtype = dt};
    uint64_t nw = e * out_dim * in_dim;
    BIND(&c, matmul_experts.x,
         qiao__cf_operand(&c, "x", f32s(x, n * in_dim, -1, 1), n * in_dim * 4, CF_INPUT, 0));
    BIND(&c, matmul_experts.w,
         qiao__cf_operand(&c, "w", f8_all_codes(nw), qiao__cf_dtype_bytes(dt, nw), CF_INPUT, 0));
    int32_t *ids = i32s(n * k, 0);
    if (ids) ids[0] = 2, ids[1] = 0, ids[2] = 1, ids[3] = 2;
    BIND(&c, matmul_experts.ids, qiao__cf_operand(&c, "ids", ids, n * k * 4, CF_INPUT, 0));
    BIND(&c, matmul_experts.out,
         qiao__cf_operand(&c, "out", nans(n * k * out_dim), n * k * out_dim * 4, CF_OUT_F32,
                          out_dim));
  }
  run_case(x, &c);
}

static void embed_cases(ctx *x, qiao_dev_dtype dt) {
  if (dt == QIAO_DEV_F8_E4M3_B128) f8_code_cases(x, QIAO_DEV_OP_EMBED);
  embed_case(x, dt, 1, 1, kq(dt, 32, 1));
  embed_case(x, dt, 7, 33, kq(dt, 96, 67));
  embed_case(x, dt, 3, 50, kq(dt, 4128, 4099));
  embed_case(x, dt, 64, 1000, kq(dt, 64, 48));
}

/* ---- matmul --------------------------------------------------------------- */

static void matmul_case(ctx *x, qiao_dev_dtype dt, uint64_t n, uint64_t k, uint64_t m, bool bias,
                        bool accumulate) {
  cf_case c;
  start(&c, QIAO_DEV_OP_MATMUL, dt);
  SHAPE(&c, "n=%llu k=%llu m=%llu%s%s", (unsigned long long)n, (unsigned long long)k,
        (unsigned long long)m, bias ? " bias" : "", accumulate ? " accumulate" : "");
  qiao_dev_matmul_args *a = &c.args.matmul;
  *a = (qiao_dev_matmul_args){
      .struct_size = sizeof(*a), .n = n, .k = k, .m = m, .w_dtype = dt, .accumulate = accumulate};
  float *xs = f32s(x, n * k, -1, 1);
  void *w = qiao__cf_random_weights(&x->rng, dt, m * k);
  if (n * m == 1) nonnegative_f32(xs, n * k), nonnegative(dt, w, m * k);
  BIND(&c, matmul.x, qiao__cf_operand(&c, "x", xs, n * k * 4, CF_INPUT, 0));
  BIND(&c, matmul.w, qiao__cf_operand(&c, "w", w, qiao__cf_dtype_bytes(dt, m * k), CF_INPUT, 0));
  if (bias)
    BIND(&c, matmul.bias, qiao__cf_operand(&c, "bias", f32s(x, m, -1, 1), m * 4, CF_INPUT, 0));
  float *out = accumulate ? f32s(x, n * m, -2, 2) : nans(n * m);
  BIND(&c, matmul.out, qiao__cf_operand(&c, "out", out, n * m * 4, CF_OUT_F32, m));
  run_case(x, &c);
}

static void matmul_cases(ctx *x, qiao_dev_dtype dt) {
  bool q = quantized(dt);
  if (dt == QIAO_DEV_F8_E4M3_B128) f8_code_cases(x, QIAO_DEV_OP_MATMUL);
  matmul_case(x, dt, 1, kq(dt, 32, 32), 1, false, false);
  if (!q) matmul_case(x, dt, 2, 1, 3, false, false);
  matmul_case(x, dt, 3, kq(dt, 64, 33), 5, true, false);
  matmul_case(x, dt, 5, kq(dt, 96, 67), 37, false, true);
  matmul_case(x, dt, 2, kq(dt, 4128, 4103), 61, true, true);
  matmul_case(x, dt, 17, kq(dt, 256, 256), 67, false, false);
  /* every count of x rows a GEMM kernel call may get (1..8 here and as the
   * remainder of 8 + r), each a separate kernel path */
  matmul_case(x, dt, 4, kq(dt, 128, 129), 35, true, false);
  matmul_case(x, dt, 6, kq(dt, 96, 95), 40, false, false);
  matmul_case(x, dt, 7, kq(dt, 64, 64), 33, false, true);
  matmul_case(x, dt, 14, kq(dt, 160, 161), 70, true, false);
  matmul_case(x, dt, 23, kq(dt, 96, 96), 48, false, false);
  matmul_case(x, dt, 1, kq(dt, 512, 515), 300, false, false);
}

/* ---- rmsnorm -------------------------------------------------------------- */

static void rmsnorm_case(ctx *x, uint64_t rows, uint64_t cols, float eps, bool in_place,
                         float magnitude) {
  cf_case c;
  start(&c, QIAO_DEV_OP_RMSNORM, QIAO_DEV_F32);
  SHAPE(&c, "rows=%llu cols=%llu eps=%g%s", (unsigned long long)rows, (unsigned long long)cols,
        (double)eps, in_place ? " in-place" : "");
  qiao_dev_rmsnorm_args *a = &c.args.rmsnorm;
  *a = (qiao_dev_rmsnorm_args){.struct_size = sizeof(*a), .rows = rows, .cols = cols, .eps = eps};
  uint64_t n = rows * cols;
  int xi = qiao__cf_operand(&c, "x", f32s(x, n, -magnitude, magnitude), n * 4,
                            in_place ? CF_OUT_F32 : CF_INPUT, cols);
  BIND(&c, rmsnorm.x, xi);
  BIND(&c, rmsnorm.weight,
       qiao__cf_operand(&c, "weight", f32s(x, cols, -2, 2), cols * 4, CF_INPUT, 0));
  BIND(&c, rmsnorm.out,
       in_place ? xi : qiao__cf_operand(&c, "out", nans(n), n * 4, CF_OUT_F32, cols));
  run_case(x, &c);
}

static void rmsnorm_cases(ctx *x) {
  rmsnorm_case(x, 1, 1, 1e-5f, false, 1);
  rmsnorm_case(x, 3, 4099, 1e-6f, false, 3);
  rmsnorm_case(x, 7, 64, 1e-5f, true, 0.01f);
  rmsnorm_case(x, 33, 96, 1e-6f, false, 100);
}

/* ---- rope ----------------------------------------------------------------- */

static void rope_case(ctx *x, uint64_t n_tokens, uint64_t n_heads, uint64_t head_dim,
                      uint64_t rot_dim, qiao_dev_rope_style style, int32_t max_pos, double theta) {
  cf_case c;
  start(&c, QIAO_DEV_OP_ROPE, QIAO_DEV_F32);
  SHAPE(&c, "n_tokens=%llu n_heads=%llu head_dim=%llu rot_dim=%llu style=%s max_pos=%d theta=%g",
        (unsigned long long)n_tokens, (unsigned long long)n_heads, (unsigned long long)head_dim,
        (unsigned long long)rot_dim, style == QIAO_DEV_ROPE_NEOX ? "neox" : "normal", max_pos,
        theta);
  qiao_dev_rope_args *a = &c.args.rope;
  *a = (qiao_dev_rope_args){.struct_size = sizeof(*a),
                            .n_tokens = n_tokens,
                            .n_heads = n_heads,
                            .head_dim = head_dim,
                            .rot_dim = rot_dim,
                            .style = style};
  uint64_t n = n_tokens * n_heads * head_dim;
  BIND(&c, rope.x, qiao__cf_operand(&c, "x", f32s(x, n, -1, 1), n * 4, CF_OUT_F32, head_dim));
  int32_t *pos = i32s(n_tokens, 0);
  for (uint64_t t = 0; pos && t < n_tokens; t++)
    pos[t] = (int32_t)qiao__cf_below(&x->rng, (uint64_t)max_pos + 1);
  if (pos && n_tokens > 1) pos[0] = max_pos, pos[1] = 0;
  BIND(&c, rope.positions, qiao__cf_operand(&c, "positions", pos, n_tokens * 4, CF_INPUT, 0));
  float *freqs = nans(rot_dim / 2);
  for (uint64_t i = 0; freqs && i < rot_dim / 2; i++)
    freqs[i] = (float)pow(theta, -2.0 * (double)i / (double)rot_dim);
  BIND(&c, rope.freqs, qiao__cf_operand(&c, "freqs", freqs, rot_dim / 2 * 4, CF_INPUT, 0));
  run_case(x, &c);
}

static void rope_cases(ctx *x) {
  rope_case(x, 1, 1, 2, 2, QIAO_DEV_ROPE_NORMAL, 0, 10000);
  rope_case(x, 5, 3, 64, 64, QIAO_DEV_ROPE_NORMAL, 511, 10000);
  rope_case(x, 5, 3, 64, 64, QIAO_DEV_ROPE_NEOX, 511, 10000);
  rope_case(x, 4, 2, 128, 64, QIAO_DEV_ROPE_NEOX, 4100, 1e6);
  rope_case(x, 3, 2, 80, 32, QIAO_DEV_ROPE_NORMAL, 100, 10000);
  rope_case(x, 37, 4, 32, 32, QIAO_DEV_ROPE_NEOX, 32767, 500000);
  rope_case(x, 2, 1, 6, 6, QIAO_DEV_ROPE_NEOX, 9, 10000);
}

/* ---- kv_write ------------------------------------------------------------- */

/* Random cache contents in the cache dtype. */
static void *cache_values(ctx *x, qiao_dev_dtype dt, uint64_t n) {
  return qiao__cf_random_weights(&x->rng, dt, n);
}

static void kv_write_case(ctx *x, qiao_dev_dtype dt, uint64_t n_tokens, uint64_t kv_dim,
                          uint64_t n_slots) {
  cf_case c;
  start(&c, QIAO_DEV_OP_KV_WRITE, dt);
  SHAPE(&c, "n_tokens=%llu kv_dim=%llu n_slots=%llu", (unsigned long long)n_tokens,
        (unsigned long long)kv_dim, (unsigned long long)n_slots);
  qiao_dev_kv_write_args *a = &c.args.kv_write;
  *a = (qiao_dev_kv_write_args){.struct_size = sizeof(*a),
                                .n_tokens = n_tokens,
                                .kv_dim = kv_dim,
                                .n_slots = n_slots,
                                .cache_dtype = dt};
  uint64_t n = n_tokens * kv_dim;
  float *k = f32s(x, n, -1, 1), *v = f32s(x, n, -1, 1);
  /* values where rounding to F16 is a tie, tiny ones (F16 subnormals), large ones */
  static const float special[] = {1.00048828125f,  1.00146484375f, -2.0009765625f, 3e-6f,
                                  -5.96046448e-8f, 1e-7f,          60000.0f,       -65504.0f,
                                  -0.0f,           65520.0f,       -2.9802322e-8f, 1e-30f};
  for (size_t i = 0; k && v && i < sizeof(special) / sizeof(special[0]) && i < n; i++)
    k[i] = special[i], v[n - 1 - i] = special[i];
  BIND(&c, kv_write.k, qiao__cf_operand(&c, "k", k, n * 4, CF_INPUT, 0));
  BIND(&c, kv_write.v, qiao__cf_operand(&c, "v", v, n * 4, CF_INPUT, 0));
  /* distinct slots: a random permutation's prefix */
  int32_t *perm = i32s(n_slots, 0), *slots = i32s(n_tokens, 0);
  for (uint64_t i = 0; perm && i < n_slots; i++)
    perm[i] = (int32_t)i;
  for (uint64_t i = 0; perm && i + 1 < n_slots; i++) {
    uint64_t j = i + qiao__cf_below(&x->rng, n_slots - i);
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (uint64_t t = 0; perm && slots && t < n_tokens; t++)
    slots[t] = perm[t];
  free(perm);
  BIND(&c, kv_write.slots, qiao__cf_operand(&c, "slots", slots, n_tokens * 4, CF_INPUT, 0));
  cf_role role = dt == QIAO_DEV_F16 ? CF_OUT_F16 : CF_OUT_F32;
  uint64_t cache = n_slots * kv_dim;
  BIND(&c, kv_write.k_cache,
       qiao__cf_operand(&c, "k_cache", cache_values(x, dt, cache), qiao__cf_dtype_bytes(dt, cache),
                        role, kv_dim));
  BIND(&c, kv_write.v_cache,
       qiao__cf_operand(&c, "v_cache", cache_values(x, dt, cache), qiao__cf_dtype_bytes(dt, cache),
                        role, kv_dim));
  run_case(x, &c);
}

static void kv_write_cases(ctx *x, qiao_dev_dtype dt) {
  kv_write_case(x, dt, 1, 1, 1);
  kv_write_case(x, dt, 4, 64, 37);
  kv_write_case(x, dt, 9, 4100, 20);
  kv_write_case(x, dt, 100, 24, 128);
}

/* ---- attention ------------------------------------------------------------ */

/* The paged layout of an attention call over n_seqs sequences, each holding
 * seq_len[i] positions of which the last new_tokens[i] are in the call: the
 * tokens, the block table's width (one unused entry at the end), the
 * physical blocks (3 that nobody uses) and "new/len" of each for the shape. */
static void paged_counts(uint64_t n_seqs, const uint64_t *seq_len, const uint64_t *new_tokens,
                         uint64_t block_size, uint64_t *n_tokens, uint64_t *max_blocks,
                         uint64_t *total_blocks, char *lens, size_t cap) {
  *n_tokens = 0;
  *max_blocks = 1;
  *total_blocks = 3;
  lens[0] = '\0';
  for (uint64_t i = 0; i < n_seqs; i++) {
    *n_tokens += new_tokens[i];
    uint64_t blocks = (seq_len[i] + block_size - 1) / block_size;
    if (blocks + 1 > *max_blocks) *max_blocks = blocks + 1;
    *total_blocks += blocks;
    size_t used = strlen(lens);
    snprintf(lens + used, cap - used, "%s%llu/%llu", i ? "," : "",
             (unsigned long long)new_tokens[i], (unsigned long long)seq_len[i]);
  }
}

/* Fills the block table (physical blocks in a random order; unused entries
 * stay -1), each token's sequence and position (the sequences' new tokens
 * interleaved round robin) and which slots some token attends (window
 * included). */
static void paged_fill(ctx *x, uint64_t n_seqs, const uint64_t *seq_len, const uint64_t *new_tokens,
                       uint64_t block_size, uint64_t window, uint64_t max_blocks,
                       uint64_t total_blocks, uint64_t n_tokens, int32_t *table, int32_t *seq,
                       int32_t *pos, bool *attended) {
  int32_t *perm = i32s(total_blocks, 0);
  if (perm == NULL) return;
  for (uint64_t i = 0; i < total_blocks; i++)
    perm[i] = (int32_t)i;
  for (uint64_t i = 0; i + 1 < total_blocks; i++) {
    uint64_t j = i + qiao__cf_below(&x->rng, total_blocks - i);
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  uint64_t next = 0, t = 0;
  for (uint64_t i = 0; i < n_seqs; i++) {
    uint64_t blocks = (seq_len[i] + block_size - 1) / block_size;
    for (uint64_t b = 0; b < blocks; b++)
      table[i * max_blocks + b] = perm[next++];
  }
  uint64_t done[4] = {0};
  while (t < n_tokens)
    for (uint64_t i = 0; i < n_seqs; i++)
      if (done[i] < new_tokens[i]) {
        uint64_t p = seq_len[i] - new_tokens[i] + done[i]++;
        seq[t] = (int32_t)i;
        pos[t] = (int32_t)p;
        uint64_t lo = window && p + 1 > window ? p + 1 - window : 0;
        for (uint64_t j = lo; j <= p; j++)
          attended[(uint64_t)table[i * max_blocks + j / block_size] * block_size + j % block_size] =
              true;
        t++;
      }
  free(perm);
}

typedef struct attn_shape {
  uint64_t n_heads, n_kv_heads, head_dim, block_size, window;
  uint64_t n_seqs;
  uint64_t seq_len[4];    /* positions each sequence holds after this call */
  uint64_t new_tokens[4]; /* of which the last new_tokens[s] are in the call */
} attn_shape;

static void attention_case(ctx *x, qiao_dev_dtype dt, const attn_shape *s) {
  cf_case c;
  start(&c, QIAO_DEV_OP_ATTENTION, dt);
  uint64_t n_tokens, max_blocks, total_blocks;
  char lens[96];
  paged_counts(s->n_seqs, s->seq_len, s->new_tokens, s->block_size, &n_tokens, &max_blocks,
               &total_blocks, lens, sizeof(lens));
  uint64_t n_slots = total_blocks * s->block_size, kv_dim = s->n_kv_heads * s->head_dim;
  SHAPE(&c,
        "n_tokens=%llu heads=%llu kv_heads=%llu head_dim=%llu block_size=%llu window=%llu "
        "seqs(new/len)=%s n_slots=%llu",
        (unsigned long long)n_tokens, (unsigned long long)s->n_heads,
        (unsigned long long)s->n_kv_heads, (unsigned long long)s->head_dim,
        (unsigned long long)s->block_size, (unsigned long long)s->window, lens,
        (unsigned long long)n_slots);
  qiao_dev_attention_args *a = &c.args.attention;
  *a = (qiao_dev_attention_args){.struct_size = sizeof(*a),
                                 .n_tokens = n_tokens,
                                 .n_heads = s->n_heads,
                                 .n_kv_heads = s->n_kv_heads,
                                 .head_dim = s->head_dim,
                                 .n_seqs = s->n_seqs,
                                 .max_blocks_per_seq = max_blocks,
                                 .block_size = s->block_size,
                                 .n_slots = n_slots,
                                 .window = s->window,
                                 .scale = 1.0f / sqrtf((float)s->head_dim),
                                 .cache_dtype = dt};
  int32_t *table = i32s(s->n_seqs * max_blocks, -1);
  int32_t *seq = i32s(n_tokens, 0), *pos = i32s(n_tokens, 0);
  bool *attended = calloc(n_slots, 1);
  if (table && seq && pos && attended)
    paged_fill(x, s->n_seqs, s->seq_len, s->new_tokens, s->block_size, s->window, max_blocks,
               total_blocks, n_tokens, table, seq, pos, attended);
  uint64_t nq = n_tokens * s->n_heads * s->head_dim;
  BIND(&c, attention.q, qiao__cf_operand(&c, "q", f32s(x, nq, -3, 3), nq * 4, CF_INPUT, 0));
  /* the cache: random where attended, NaN everywhere else (it must not be read) */
  uint64_t nc = n_slots * kv_dim;
  float *kf = f32s(x, nc, -1, 1), *vf = f32s(x, nc, -1, 1);
  for (uint64_t i = 0; kf && vf && attended && i < nc; i++)
    if (!attended[i / kv_dim]) kf[i] = vf[i] = NAN;
  free(attended);
  void *kc = kf, *vc = vf;
  if (dt == QIAO_DEV_F16 && kf && vf) {
    uint16_t *kh = malloc(nc * 2 + 2), *vh = malloc(nc * 2 + 2);
    for (uint64_t i = 0; kh && vh && i < nc; i++)
      kh[i] = qiao__cf_f32_to_f16(kf[i]), vh[i] = qiao__cf_f32_to_f16(vf[i]);
    free(kf);
    free(vf);
    kc = kh;
    vc = vh;
  }
  BIND(&c, attention.k_cache,
       qiao__cf_operand(&c, "k_cache", kc, qiao__cf_dtype_bytes(dt, nc), CF_INPUT, 0));
  BIND(&c, attention.v_cache,
       qiao__cf_operand(&c, "v_cache", vc, qiao__cf_dtype_bytes(dt, nc), CF_INPUT, 0));
  BIND(&c, attention.block_table,
       qiao__cf_operand(&c, "block_table", table, s->n_seqs * max_blocks * 4, CF_INPUT, 0));
  BIND(&c, attention.token_seq, qiao__cf_operand(&c, "token_seq", seq, n_tokens * 4, CF_INPUT, 0));
  BIND(&c, attention.token_pos, qiao__cf_operand(&c, "token_pos", pos, n_tokens * 4, CF_INPUT, 0));
  BIND(&c, attention.out, qiao__cf_operand(&c, "out", nans(nq), nq * 4, CF_OUT_F32, s->head_dim));
  run_case(x, &c);
}

static void attention_cases(ctx *x, qiao_dev_dtype dt) {
  static const attn_shape shapes[] = {
      /* heads kv dim block window seqs lens new */
      {1, 1, 1, 1, 0, 1, {1}, {1}},                          /* everything 1 */
      {8, 2, 64, 16, 0, 3, {6, 17, 33}, {1, 1, 1}},          /* decode, GQA 4, crossing blocks */
      {4, 4, 32, 16, 0, 1, {40}, {40}},                      /* prefill, MHA */
      {6, 3, 48, 8, 7, 2, {30, 9}, {5, 9}},                  /* sliding window, GQA 2 */
      {2, 1, 64, 32, 0, 1, {4100}, {1}},                     /* long context, MQA */
      {4, 1, 128, 16, 0, 3, {14, 1, 71}, {4, 1, 1}},         /* chunked prefill + decode mixed */
      {12, 4, 40, 5, 16, 4, {23, 3, 50, 16}, {3, 3, 2, 16}}, /* odd block size, window, GQA 3 */
      {16, 2, 32, 16, 0, 2, {20, 3}, {4, 3}},                /* GQA 8, prefill + decode */
      {8, 1, 64, 8, 5, 1, {19}, {19}},                       /* GQA 8 on one KV head, window */
      {2, 1, 256, 16, 0, 1, {40}, {8}},                      /* head_dim 256: the §10.3 limit */
  };
  for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
    attention_case(x, dt, &shapes[i]);
}

/* ---- elementwise: swiglu, add --------------------------------------------- */

static void swiglu_case(ctx *x, uint64_t n, int alias) {
  cf_case c;
  start(&c, QIAO_DEV_OP_SWIGLU, QIAO_DEV_F32);
  SHAPE(&c, "n=%llu%s", (unsigned long long)n,
        alias == 1   ? " out=gate"
        : alias == 2 ? " out=up"
                     : "");
  c.args.swiglu = (qiao_dev_swiglu_args){.struct_size = sizeof(qiao_dev_swiglu_args), .n = n};
  int g =
      qiao__cf_operand(&c, "gate", f32s(x, n, -8, 8), n * 4, alias == 1 ? CF_OUT_F32 : CF_INPUT, n);
  int u =
      qiao__cf_operand(&c, "up", f32s(x, n, -2, 2), n * 4, alias == 2 ? CF_OUT_F32 : CF_INPUT, n);
  BIND(&c, swiglu.gate, g);
  BIND(&c, swiglu.up, u);
  BIND(&c, swiglu.out,
       alias == 1   ? g
       : alias == 2 ? u
                    : qiao__cf_operand(&c, "out", nans(n), n * 4, CF_OUT_F32, n));
  run_case(x, &c);
}

static void add_case(ctx *x, uint64_t n, int alias) {
  cf_case c;
  start(&c, QIAO_DEV_OP_ADD, QIAO_DEV_F32);
  SHAPE(&c, "n=%llu%s", (unsigned long long)n, alias == 1 ? " out=a" : alias == 2 ? " out=b" : "");
  c.args.add = (qiao_dev_add_args){.struct_size = sizeof(qiao_dev_add_args), .n = n};
  float *a = f32s(x, n, -4, 4), *b = f32s(x, n, -1, 1);
  /* sums whose bits an approximate add gets wrong: -0 + -0 = -0, x + -x =
   * +0, overflow to inf, a tie that rounds to even, the sign of a tiny sum */
  static const float pairs[][2] = {{-0.0f, -0.0f},   {1.5f, -1.5f},      {3e38f, 3e38f},
                                   {1.0f, 0x1p-24f}, {1.0f, 0x1.8p-23f}, {-1e-45f, 0.0f}};
  for (size_t i = 0; a && b && i < sizeof(pairs) / sizeof(pairs[0]) && i < n; i++)
    a[n - 1 - i] = pairs[i][0], b[n - 1 - i] = pairs[i][1];
  int ai = qiao__cf_operand(&c, "a", a, n * 4, alias == 1 ? CF_OUT_F32 : CF_INPUT, n);
  int bi = qiao__cf_operand(&c, "b", b, n * 4, alias == 2 ? CF_OUT_F32 : CF_INPUT, n);
  BIND(&c, add.a, ai);
  BIND(&c, add.b, bi);
  BIND(&c, add.out,
       alias == 1   ? ai
       : alias == 2 ? bi
                    : qiao__cf_operand(&c, "out", nans(n), n * 4, CF_OUT_F32, n));
  run_case(x, &c);
}

/* ---- argmax --------------------------------------------------------------- */

static void argmax_case(ctx *x, uint64_t rows, uint64_t cols) {
  cf_case c;
  start(&c, QIAO_DEV_OP_ARGMAX, QIAO_DEV_F32);
  SHAPE(&c, "rows=%llu cols=%llu", (unsigned long long)rows, (unsigned long long)cols);
  c.args.argmax = (qiao_dev_argmax_args){
      .struct_size = sizeof(qiao_dev_argmax_args), .rows = rows, .cols = cols};
  float *v = f32s(x, rows * cols, -10, 10);
  if (v) {
    /* planted cases: a tie (the smaller index wins), a constant row, the max
     * at the last column, a row of -inf but one, NaNs */
    for (uint64_t r = 0; r < rows; r++) {
      float *row = v + r * cols;
      switch (r % 5) {
      case 0:
        if (cols > 2) row[cols / 3] = row[cols - 2] = 11.0f;
        break;
      case 1:
        for (uint64_t j = 0; j < cols; j++)
          row[j] = -0.5f;
        break;
      case 2: row[cols - 1] = 12.0f; break;
      case 3:
        for (uint64_t j = 0; j < cols; j++)
          row[j] = -INFINITY;
        row[cols / 2] = -1e30f;
        break;
      case 4: /* NaN never wins (§11.3) */
        row[0] = NAN;
        if (cols > 3) row[cols - 1] = NAN;
        break;
      }
    }
  }
  BIND(&c, argmax.x, qiao__cf_operand(&c, "x", v, rows * cols * 4, CF_INPUT, 0));
  BIND(&c, argmax.out, qiao__cf_operand(&c, "out", i32s(rows, -7), rows * 4, CF_OUT_I32, 1));
  run_case(x, &c);
}

/* ---- moe_gate, matmul_experts, moe_combine -------------------------------- */

static void moe_gate_case(ctx *x, uint64_t n_tokens, uint64_t n_experts, uint64_t k,
                          bool normalize) {
  cf_case c;
  start(&c, QIAO_DEV_OP_MOE_GATE, QIAO_DEV_F32);
  SHAPE(&c, "n_tokens=%llu n_experts=%llu k=%llu%s", (unsigned long long)n_tokens,
        (unsigned long long)n_experts, (unsigned long long)k, normalize ? " normalize" : "");
  c.args.moe_gate = (qiao_dev_moe_gate_args){.struct_size = sizeof(qiao_dev_moe_gate_args),
                                             .n_tokens = n_tokens,
                                             .n_experts = n_experts,
                                             .k = k,
                                             .normalize = normalize};
  /* distinct logits 1/16 apart (the ranking cannot depend on rounding), with
   * exact ties planted in token 0, and in token 1 logits that differ but
   * give equal binary32 p ({0, 1e-8}: the ranking is by logit, §11.3) */
  float *logits = nans(n_tokens * n_experts);
  int32_t *perm = i32s(n_experts, 0);
  for (uint64_t t = 0; logits && perm && t < n_tokens; t++) {
    for (uint64_t i = 0; i < n_experts; i++)
      perm[i] = (int32_t)i;
    for (uint64_t i = 0; i + 1 < n_experts; i++) {
      uint64_t j = i + qiao__cf_below(&x->rng, n_experts - i);
      int32_t tmp = perm[i];
      perm[i] = perm[j];
      perm[j] = tmp;
    }
    for (uint64_t i = 0; i < n_experts; i++)
      logits[t * n_experts + i] = ((float)perm[i] - (float)n_experts / 2) / 16.0f;
    if (t == 0 && n_experts >= 3) logits[1] = logits[n_experts - 1] = 5.0f;
    if (t == 1 && n_experts >= 4) {
      static const float close[4] = {0.0f, 1e-8f, -1.0f, -2.0f};
      for (uint64_t i = 0; i < n_experts; i++)
        logits[n_experts + i] = i < 4 ? close[i] : -8.0f - (float)i / 16.0f;
    }
  }
  free(perm);
  BIND(&c, moe_gate.logits,
       qiao__cf_operand(&c, "logits", logits, n_tokens * n_experts * 4, CF_INPUT, 0));
  BIND(&c, moe_gate.ids,
       qiao__cf_operand(&c, "ids", i32s(n_tokens * k, -7), n_tokens * k * 4, CF_OUT_I32, k));
  BIND(&c, moe_gate.weights,
       qiao__cf_operand(&c, "weights", nans(n_tokens * k), n_tokens * k * 4, CF_OUT_F32, k));
  run_case(x, &c);
}

static void matmul_experts_case(ctx *x, qiao_dev_dtype dt, uint64_t n_tokens, uint64_t k,
                                uint64_t n_experts, uint64_t in_dim, uint64_t out_dim,
                                bool x_per_slot) {
  cf_case c;
  start(&c, QIAO_DEV_OP_MATMUL_EXPERTS, dt);
  SHAPE(&c, "n_tokens=%llu k=%llu n_experts=%llu in_dim=%llu out_dim=%llu%s",
        (unsigned long long)n_tokens, (unsigned long long)k, (unsigned long long)n_experts,
        (unsigned long long)in_dim, (unsigned long long)out_dim, x_per_slot ? " x_per_slot" : "");
  c.args.matmul_experts =
      (qiao_dev_matmul_experts_args){.struct_size = sizeof(qiao_dev_matmul_experts_args),
                                     .n_tokens = n_tokens,
                                     .k = k,
                                     .n_experts = n_experts,
                                     .in_dim = in_dim,
                                     .out_dim = out_dim,
                                     .x_per_slot = x_per_slot,
                                     .w_dtype = dt};
  uint64_t xrows = x_per_slot ? n_tokens * k : n_tokens;
  uint64_t nw = n_experts * out_dim * in_dim;
  float *xs = f32s(x, xrows * in_dim, -1, 1);
  void *w = qiao__cf_random_weights(&x->rng, dt, nw);
  if (n_tokens * k * out_dim == 1) nonnegative_f32(xs, xrows * in_dim), nonnegative(dt, w, nw);
  BIND(&c, matmul_experts.x, qiao__cf_operand(&c, "x", xs, xrows * in_dim * 4, CF_INPUT, 0));
  BIND(&c, matmul_experts.w,
       qiao__cf_operand(&c, "w", w, qiao__cf_dtype_bytes(dt, nw), CF_INPUT, 0));
  int32_t *ids = i32s(n_tokens * k, 0);
  for (uint64_t t = 0; ids && t < n_tokens; t++) /* k distinct experts per token */
    for (uint64_t i = 0; i < k; i++) {
      int32_t e;
      bool again;
      do {
        e = (int32_t)qiao__cf_below(&x->rng, n_experts);
        again = false;
        for (uint64_t j = 0; j < i; j++)
          again |= ids[t * k + j] == e;
      } while (again);
      ids[t * k + i] = e;
    }
  if (ids && n_tokens * k >= 2) ids[0] = (int32_t)(n_experts - 1); /* the last expert too */
  if (ids && k >= 2 && ids[1] == ids[0]) ids[1] = 0;
  BIND(&c, matmul_experts.ids, qiao__cf_operand(&c, "ids", ids, n_tokens * k * 4, CF_INPUT, 0));
  uint64_t no = n_tokens * k * out_dim;
  BIND(&c, matmul_experts.out, qiao__cf_operand(&c, "out", nans(no), no * 4, CF_OUT_F32, out_dim));
  run_case(x, &c);
}

static void matmul_experts_cases(ctx *x, qiao_dev_dtype dt) {
  if (dt == QIAO_DEV_F8_E4M3_B128) f8_code_cases(x, QIAO_DEV_OP_MATMUL_EXPERTS);
  matmul_experts_case(x, dt, 1, 1, 1, kq(dt, 32, 32), 1, false);
  matmul_experts_case(x, dt, 3, 2, 8, kq(dt, 64, 64), 48, false);
  matmul_experts_case(x, dt, 3, 2, 8, kq(dt, 96, 97), 33, true);
  matmul_experts_case(x, dt, 2, 4, 16, kq(dt, 4128, 4099), 9, false);
  matmul_experts_case(x, dt, 9, 8, 64, kq(dt, 64, 64), 17, true);
}

static void moe_combine_case(ctx *x, uint64_t n_tokens, uint64_t k, uint64_t dim, bool accumulate) {
  cf_case c;
  start(&c, QIAO_DEV_OP_MOE_COMBINE, QIAO_DEV_F32);
  SHAPE(&c, "n_tokens=%llu k=%llu dim=%llu%s", (unsigned long long)n_tokens, (unsigned long long)k,
        (unsigned long long)dim, accumulate ? " accumulate" : "");
  c.args.moe_combine = (qiao_dev_moe_combine_args){.struct_size = sizeof(qiao_dev_moe_combine_args),
                                                   .n_tokens = n_tokens,
                                                   .k = k,
                                                   .dim = dim,
                                                   .accumulate = accumulate};
  uint64_t nx = n_tokens * k * dim, no = n_tokens * dim;
  BIND(&c, moe_combine.x, qiao__cf_operand(&c, "x", f32s(x, nx, -2, 2), nx * 4, CF_INPUT, 0));
  BIND(&c, moe_combine.weights,
       qiao__cf_operand(&c, "weights", f32s(x, n_tokens * k, 0, 1), n_tokens * k * 4, CF_INPUT, 0));
  BIND(&c, moe_combine.out,
       qiao__cf_operand(&c, "out", accumulate ? f32s(x, no, -1, 1) : nans(no), no * 4, CF_OUT_F32,
                        dim));
  run_case(x, &c);
}

/* ---- latent_write and attention_latent (1.4) ------------------------------- */

static void latent_write_case(ctx *x, qiao_dev_dtype dt, uint64_t n_tokens, uint64_t latent_dim,
                              uint64_t rope_dim, uint64_t n_slots) {
  cf_case c;
  start(&c, QIAO_DEV_OP_LATENT_WRITE, dt);
  SHAPE(&c, "n_tokens=%llu latent_dim=%llu rope_dim=%llu n_slots=%llu",
        (unsigned long long)n_tokens, (unsigned long long)latent_dim, (unsigned long long)rope_dim,
        (unsigned long long)n_slots);
  uint64_t row = latent_dim + rope_dim;
  qiao_dev_latent_write_args *a = &c.args.latent_write;
  *a = (qiao_dev_latent_write_args){.struct_size = sizeof(*a),
                                    .n_tokens = n_tokens,
                                    .latent_dim = latent_dim,
                                    .rope_dim = rope_dim,
                                    .n_slots = n_slots,
                                    .cache_dtype = dt};
  uint64_t nl = n_tokens * latent_dim, nr = n_tokens * rope_dim;
  float *latent = f32s(x, nl, -1, 1), *rope = f32s(x, nr, -4, 4);
  /* values where rounding to F16 is a tie, F16 subnormals, large ones */
  static const float special[] = {1.00048828125f, -2.0009765625f, 3e-6f, -5.96046448e-8f,
                                  60000.0f,       -65504.0f,      -0.0f, 65520.0f};
  for (size_t i = 0; latent && rope && i < sizeof(special) / sizeof(special[0]); i++) {
    if (i < nl) latent[i] = special[i];
    if (i < nr) rope[nr - 1 - i] = special[i];
  }
  BIND(&c, latent_write.latent, qiao__cf_operand(&c, "latent", latent, nl * 4, CF_INPUT, 0));
  BIND(&c, latent_write.rope, qiao__cf_operand(&c, "rope", rope, nr * 4, CF_INPUT, 0));
  /* distinct slots: a random permutation's prefix (the other rows must stay) */
  int32_t *perm = i32s(n_slots, 0), *slots = i32s(n_tokens, 0);
  for (uint64_t i = 0; perm && i < n_slots; i++)
    perm[i] = (int32_t)i;
  for (uint64_t i = 0; perm && i + 1 < n_slots; i++) {
    uint64_t j = i + qiao__cf_below(&x->rng, n_slots - i);
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (uint64_t t = 0; perm && slots && t < n_tokens; t++)
    slots[t] = perm[t];
  free(perm);
  BIND(&c, latent_write.slots, qiao__cf_operand(&c, "slots", slots, n_tokens * 4, CF_INPUT, 0));
  uint64_t cache = n_slots * row;
  BIND(&c, latent_write.cache,
       qiao__cf_operand(&c, "cache", cache_values(x, dt, cache), qiao__cf_dtype_bytes(dt, cache),
                        dt == QIAO_DEV_F16 ? CF_OUT_F16 : CF_OUT_F32, row));
  run_case(x, &c);
}

static void latent_write_cases(ctx *x, qiao_dev_dtype dt) {
  latent_write_case(x, dt, 1, 1, 1, 1);
  latent_write_case(x, dt, 4, 32, 8, 37);   /* the tiny reference model's L and R */
  latent_write_case(x, dt, 9, 512, 64, 20); /* DeepSeek-V2/V3's */
  latent_write_case(x, dt, 100, 33, 7, 128);
}

typedef struct latent_shape {
  uint64_t n_heads, latent_dim, rope_dim, block_size, window;
  uint64_t n_seqs;
  uint64_t seq_len[4];    /* positions each sequence holds after this call */
  uint64_t new_tokens[4]; /* of which the last new_tokens[s] are in the call */
} latent_shape;

static void attention_latent_case(ctx *x, qiao_dev_dtype dt, const latent_shape *s) {
  cf_case c;
  start(&c, QIAO_DEV_OP_ATTENTION_LATENT, dt);
  uint64_t n_tokens, max_blocks, total_blocks;
  char lens[96];
  paged_counts(s->n_seqs, s->seq_len, s->new_tokens, s->block_size, &n_tokens, &max_blocks,
               &total_blocks, lens, sizeof(lens));
  uint64_t n_slots = total_blocks * s->block_size, row = s->latent_dim + s->rope_dim;
  SHAPE(&c,
        "n_tokens=%llu heads=%llu latent_dim=%llu rope_dim=%llu block_size=%llu window=%llu "
        "seqs(new/len)=%s n_slots=%llu",
        (unsigned long long)n_tokens, (unsigned long long)s->n_heads,
        (unsigned long long)s->latent_dim, (unsigned long long)s->rope_dim,
        (unsigned long long)s->block_size, (unsigned long long)s->window, lens,
        (unsigned long long)n_slots);
  qiao_dev_attention_latent_args *a = &c.args.attention_latent;
  /* a scale like DeepSeek's 1 / sqrt(qk_nope_head_dim + qk_rope_head_dim),
   * with latent_dim / 4 for the nope part (DeepSeek: 512 / 4 = 128) */
  *a = (qiao_dev_attention_latent_args){.struct_size = sizeof(*a),
                                        .n_tokens = n_tokens,
                                        .n_heads = s->n_heads,
                                        .latent_dim = s->latent_dim,
                                        .rope_dim = s->rope_dim,
                                        .n_seqs = s->n_seqs,
                                        .max_blocks_per_seq = max_blocks,
                                        .block_size = s->block_size,
                                        .n_slots = n_slots,
                                        .window = s->window,
                                        .scale =
                                            1.0f / sqrtf((float)(s->latent_dim / 4 + s->rope_dim)),
                                        .cache_dtype = dt};
  int32_t *table = i32s(s->n_seqs * max_blocks, -1);
  int32_t *seq = i32s(n_tokens, 0), *pos = i32s(n_tokens, 0);
  bool *attended = calloc(n_slots, 1);
  if (table && seq && pos && attended)
    paged_fill(x, s->n_seqs, s->seq_len, s->new_tokens, s->block_size, s->window, max_blocks,
               total_blocks, n_tokens, table, seq, pos, attended);
  uint64_t nl = n_tokens * s->n_heads * s->latent_dim, nr = n_tokens * s->n_heads * s->rope_dim;
  BIND(&c, attention_latent.q_latent,
       qiao__cf_operand(&c, "q_latent", f32s(x, nl, -1, 1), nl * 4, CF_INPUT, 0));
  /* the rope part large enough to matter: a kernel that drops it fails */
  BIND(&c, attention_latent.q_rope,
       qiao__cf_operand(&c, "q_rope", f32s(x, nr, -3, 3), nr * 4, CF_INPUT, 0));
  /* the cache: random where attended, NaN everywhere else (it must not be read) */
  uint64_t nc = n_slots * row;
  float *cf = f32s(x, nc, -1, 1);
  for (uint64_t i = 0; cf && attended && i < nc; i++)
    if (!attended[i / row]) cf[i] = NAN;
  free(attended);
  void *cache = cf;
  if (dt == QIAO_DEV_F16 && cf) {
    uint16_t *ch = malloc(nc * 2 + 2);
    for (uint64_t i = 0; ch && i < nc; i++)
      ch[i] = qiao__cf_f32_to_f16(cf[i]);
    free(cf);
    cache = ch;
  }
  BIND(&c, attention_latent.cache,
       qiao__cf_operand(&c, "cache", cache, qiao__cf_dtype_bytes(dt, nc), CF_INPUT, 0));
  BIND(&c, attention_latent.block_table,
       qiao__cf_operand(&c, "block_table", table, s->n_seqs * max_blocks * 4, CF_INPUT, 0));
  BIND(&c, attention_latent.token_seq,
       qiao__cf_operand(&c, "token_seq", seq, n_tokens * 4, CF_INPUT, 0));
  BIND(&c, attention_latent.token_pos,
       qiao__cf_operand(&c, "token_pos", pos, n_tokens * 4, CF_INPUT, 0));
  BIND(&c, attention_latent.out,
       qiao__cf_operand(&c, "out", nans(nl), nl * 4, CF_OUT_F32, s->latent_dim));
  run_case(x, &c);
}

static void attention_latent_cases(ctx *x, qiao_dev_dtype dt) {
  static const latent_shape shapes[] = {
      /* heads latent rope block window seqs lens new */
      {1, 1, 1, 1, 0, 1, {1}, {1}},                           /* everything 1 */
      {4, 32, 8, 16, 0, 3, {6, 17, 33}, {1, 1, 1}},           /* tiny model: decode, 3 seqs */
      {4, 32, 8, 16, 0, 1, {40}, {40}},                       /* tiny model: prefill */
      {16, 64, 16, 8, 7, 2, {30, 9}, {5, 9}},                 /* sliding window, many heads */
      {128, 512, 64, 16, 0, 2, {5, 3}, {2, 3}},               /* DeepSeek-V2/V3's size, small T */
      {128, 512, 64, 16, 0, 1, {70}, {1}},                    /* the same, decode */
      {20, 40, 12, 5, 16, 4, {23, 3, 50, 16}, {3, 3, 2, 16}}, /* odd block size, window, 4 seqs */
      {3, 33, 7, 32, 0, 1, {1100}, {1}},                      /* long context, odd dims */
      {9, 16, 2, 4, 0, 2, {12, 5}, {12, 5}},                  /* two prefills, odd heads */
  };
  for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
    attention_latent_case(x, dt, &shapes[i]);
}

/* ---- moe_route (1.4) -------------------------------------------------------- */

typedef struct route_shape {
  uint64_t n_tokens, n_experts, k;
  uint32_t scoring, normalize, n_groups, topk_groups, group_score;
  float scale;
  int bias;  /* 0 none, 1 small (a correction bias), 2 negative: every c < 0 */
  bool ties; /* exact ties planted in token 0 */
} route_shape;

/* The choice as the spec defines it, in double, for token t: whether every
 * comparison that decides ids (the group boundary, the order of the top k
 * and the boundary after them) is either an exact tie or at least `gap`
 * apart, so that no binary32 rounding can flip it. */
static bool route_separated(const route_shape *s, const float *l, const float *bias, double gap) {
  uint64_t ne = s->n_experts, ng = s->n_groups > 1 ? s->n_groups : 1, per = ne / ng;
  double p[256], c[256], gs[256], sorted[257];
  double max = -INFINITY, total = 0;
  for (uint64_t e = 0; e < ne; e++)
    max = fmax(max, l[e]);
  for (uint64_t e = 0; e < ne; e++)
    total += p[e] =
        s->scoring == QIAO_DEV_MOE_SCORE_SOFTMAX ? exp(l[e] - max) : 1 / (1 + exp(-l[e]));
  for (uint64_t e = 0; e < ne; e++) {
    if (s->scoring == QIAO_DEV_MOE_SCORE_SOFTMAX) p[e] /= total;
    c[e] = p[e] + (bias ? bias[e] : 0);
  }
  /* descending insertion sort of n values into sorted[] */
#define SORT_DESC(src, n)                                                                          \
  for (uint64_t i_ = 0; i_ < (n); i_++) {                                                          \
    uint64_t j_ = i_;                                                                              \
    while (j_ > 0 && sorted[j_ - 1] < (src)[i_]) {                                                 \
      sorted[j_] = sorted[j_ - 1];                                                                 \
      j_--;                                                                                        \
    }                                                                                              \
    sorted[j_] = (src)[i_];                                                                        \
  }
#define APART(a, b) ((a) == (b) || fabs((a) - (b)) >= gap)
  if (ng > 1) {
    for (uint64_t g = 0; g < ng; g++) {
      SORT_DESC(c + g * per, per);
      if (per > 1 && !APART(sorted[0], sorted[1])) return false; /* which is second */
      if (per > 2 && s->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM && !APART(sorted[1], sorted[2]))
        return false;
      gs[g] = sorted[0] + (s->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM ? sorted[1] : 0);
    }
    SORT_DESC(gs, ng);
    if (s->topk_groups < ng && !APART(sorted[s->topk_groups - 1], sorted[s->topk_groups]))
      return false;
    double cut = sorted[s->topk_groups - 1];
    for (uint64_t g = 0; g < ng; g++)
      if (gs[g] < cut)
        for (uint64_t e = 0; e < per; e++)
          c[g * per + e] = 0;
  }
  SORT_DESC(c, ne);
  for (uint64_t i = 0; i + 1 < ne && i < s->k; i++)
    if (!APART(sorted[i], sorted[i + 1])) return false;
#undef APART
#undef SORT_DESC
  return true;
}

static void moe_route_case(ctx *x, const route_shape *s) {
  cf_case c;
  start(&c, QIAO_DEV_OP_MOE_ROUTE, QIAO_DEV_F32);
  static const char *const bias_names[] = {"", " bias", " negative-bias"};
  SHAPE(
      &c, "n_tokens=%llu n_experts=%llu k=%llu %s groups=%u/%u%s%s scale=%g%s%s",
      (unsigned long long)s->n_tokens, (unsigned long long)s->n_experts, (unsigned long long)s->k,
      s->scoring == QIAO_DEV_MOE_SCORE_SIGMOID ? "sigmoid" : "softmax", s->topk_groups, s->n_groups,
      s->n_groups > 1 ? (s->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM ? " top2_sum" : " max") : "",
      s->normalize ? " normalize" : "", (double)s->scale, bias_names[s->bias],
      s->ties ? " ties" : "");
  c.args.moe_route = (qiao_dev_moe_route_args){.struct_size = sizeof(qiao_dev_moe_route_args),
                                               .n_tokens = s->n_tokens,
                                               .n_experts = s->n_experts,
                                               .k = s->k,
                                               .scoring = s->scoring,
                                               .normalize = s->normalize,
                                               .n_groups = s->n_groups,
                                               .topk_groups = s->topk_groups,
                                               .group_score = s->group_score,
                                               .scale = s->scale};
  uint64_t ne = s->n_experts, ng = s->n_groups > 1 ? s->n_groups : 1, per = ne / ng;
  float *bias = NULL;
  if (s->bias == 1) bias = f32s(x, ne, -0.05f, 0.05f);
  if (s->bias == 2) bias = f32s(x, ne, -1.6f, -1.5f);
  if (bias && s->ties && ng > 1) /* the last group a copy of the first, bias included */
    memcpy(bias + (ng - 1) * per, bias, per * sizeof(float));
  if (bias && s->ties && ng == 1 && ne >= 3) bias[ne - 1] = bias[1];
  float *logits = nans(s->n_tokens * ne);
  for (uint64_t t = 0; logits && t < s->n_tokens; t++) {
    float *l = logits + t * ne;
    for (int tries = 0; tries < 1000; tries++) {
      for (uint64_t e = 0; e < ne; e++)
        l[e] = qiao__cf_uniform(&x->rng, -4, 4);
      if (t == 0 && s->ties && ng > 1) { /* two equal top groups: ties at both levels */
        for (uint64_t e = 0; e < per; e++)
          l[(ng - 1) * per + e] = l[e] += 3;
      } else if (t == 0 && s->ties && ne >= 3) { /* two equal top experts */
        l[1] = l[ne - 1] = 6;
      }
      if (route_separated(s, l, bias, 1e-5)) break;
    }
  }
  BIND(&c, moe_route.logits,
       qiao__cf_operand(&c, "logits", logits, s->n_tokens * ne * 4, CF_INPUT, 0));
  if (bias) BIND(&c, moe_route.bias, qiao__cf_operand(&c, "bias", bias, ne * 4, CF_INPUT, 0));
  uint64_t nk = s->n_tokens * s->k;
  BIND(&c, moe_route.ids, qiao__cf_operand(&c, "ids", i32s(nk, -7), nk * 4, CF_OUT_I32, s->k));
  BIND(&c, moe_route.weights, qiao__cf_operand(&c, "weights", nans(nk), nk * 4, CF_OUT_F32, s->k));
  run_case(x, &c);
}

static void moe_route_cases(ctx *x) {
  enum { SOFTMAX = QIAO_DEV_MOE_SCORE_SOFTMAX, SIGMOID = QIAO_DEV_MOE_SCORE_SIGMOID };
  enum { MAX = QIAO_DEV_MOE_GROUP_MAX, TOP2 = QIAO_DEV_MOE_GROUP_TOP2_SUM };
  static const route_shape shapes[] = {
      /* tokens experts k scoring normalize groups topk score scale bias ties */
      {1, 1, 1, SOFTMAX, 1, 0, 0, MAX, 1.0f, 0, false},     /* everything 1 */
      {5, 64, 6, SOFTMAX, 0, 0, 0, MAX, 1.0f, 0, true},     /* DeepSeek-V2-Lite: greedy */
      {4, 160, 6, SOFTMAX, 0, 8, 3, MAX, 16.0f, 0, true},   /* DeepSeek-V2: group_limited_greedy */
      {7, 256, 8, SIGMOID, 1, 8, 4, TOP2, 2.5f, 1, true},   /* DeepSeek-V3: noaux_tc */
      {6, 64, 8, SIGMOID, 1, 8, 2, TOP2, 1.0f, 2, false},   /* masked experts (c = 0) win */
      {3, 16, 4, SIGMOID, 0, 0, 0, MAX, 1.5f, 1, false},    /* sigmoid + bias, no groups */
      {6, 32, 4, SOFTMAX, 1, 4, 2, MAX, 1.0f, 1, true},     /* softmax + bias + groups */
      {4, 16, 3, SIGMOID, 1, 4, 4, TOP2, 1.0f, 1, false},   /* every group kept */
      {3, 12, 2, SIGMOID, 1, 1, 0, TOP2, 1.0f, 0, true},    /* n_groups 1: no group limit */
      {2, 8, 8, SOFTMAX, 1, 0, 0, MAX, 1.0f, 0, false},     /* k = n_experts */
      {3, 24, 5, SIGMOID, 0, 8, 2, TOP2, 1.0f, 1, false},   /* k > one group's experts */
      {300, 64, 6, SIGMOID, 1, 8, 3, TOP2, 2.5f, 1, false}, /* many tokens */
  };
  for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
    moe_route_case(x, &shapes[i]);
}

/* ---- The level ------------------------------------------------------------ */

static void run_op(ctx *x, qiao_dev_op op, qiao_dev_dtype dt) {
  switch (op) {
  case QIAO_DEV_OP_EMBED: embed_cases(x, dt); break;
  case QIAO_DEV_OP_MATMUL: matmul_cases(x, dt); break;
  case QIAO_DEV_OP_RMSNORM: rmsnorm_cases(x); break;
  case QIAO_DEV_OP_ROPE: rope_cases(x); break;
  case QIAO_DEV_OP_KV_WRITE: kv_write_cases(x, dt); break;
  case QIAO_DEV_OP_ATTENTION: attention_cases(x, dt); break;
  case QIAO_DEV_OP_SWIGLU:
    swiglu_case(x, 1, 0);
    swiglu_case(x, 4099, 0);
    swiglu_case(x, 64, 1);
    swiglu_case(x, 33, 2);
    break;
  case QIAO_DEV_OP_ADD:
    add_case(x, 1, 0);
    add_case(x, 4103, 0);
    add_case(x, 64, 1);
    add_case(x, 33, 2);
    break;
  case QIAO_DEV_OP_ARGMAX:
    argmax_case(x, 1, 1);
    argmax_case(x, 4, 4099);
    argmax_case(x, 8, 37);
    argmax_case(x, 2, 151936);
    break;
  case QIAO_DEV_OP_MOE_GATE:
    moe_gate_case(x, 1, 1, 1, true);
    moe_gate_case(x, 5, 8, 2, true);
    moe_gate_case(x, 3, 60, 4, false);
    moe_gate_case(x, 4, 128, 8, true);
    moe_gate_case(x, 2, 1024, 64, false); /* the limits of §10.3 */
    break;
  case QIAO_DEV_OP_MATMUL_EXPERTS: matmul_experts_cases(x, dt); break;
  case QIAO_DEV_OP_MOE_COMBINE:
    moe_combine_case(x, 1, 1, 1, false);
    moe_combine_case(x, 5, 2, 64, false);
    moe_combine_case(x, 3, 8, 4099, true);
    break;
  case QIAO_DEV_OP_LATENT_WRITE: latent_write_cases(x, dt); break;
  case QIAO_DEV_OP_ATTENTION_LATENT: attention_latent_cases(x, dt); break;
  case QIAO_DEV_OP_MOE_ROUTE: moe_route_cases(x); break;
  default: break;
  }
}

void qiao__cf_run_ops(qiao_conformance_report *report, cf_device *target, cf_device *reference,
                      uint64_t seed, uint32_t op_mask) {
  ctx x = {report, target, reference, {seed}, ""};
  report->area_ops.ran = true;
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++)
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
      /* an op or dtype of a later minor version than the plugin's, or an
       * appended op whose function its table leaves NULL: never asked */
      if (!qiao_backend_may_ask(target->backend, (qiao_dev_op)op, (qiao_dev_dtype)dt)) continue;
      uint32_t supported = 0;
      qiao_status *st =
          qiao__cf_dev_status(target,
                              target->api->op_supported(target->device, (qiao_dev_op)op,
                                                        (qiao_dev_dtype)dt, &supported),
                              "op_supported");
      const char *on = qiao_dev_op_name((qiao_dev_op)op),
                 *dn = qiao_dev_dtype_name((qiao_dev_dtype)dt);
      if (st != NULL) {
        report->area_ops.checks++;
        qiao__cf_fail(report, &report->area_ops, "%s %s: %s", on, dn, qiao_status_message(st));
        qiao_status_free(st);
        continue;
      }
      report->claimed[op][dt] = supported != 0;
      if (!supported || (op_mask != 0 && !(op_mask & (1u << op)))) continue;
      if (!qiao__cf_defined((qiao_dev_op)op, (qiao_dev_dtype)dt)) {
        report->area_ops.checks++;
        report->failed[op][dt] = true;
        qiao__cf_fail(report, &report->area_ops,
                      "%s %s: claimed, but the device ABI does not define this op for this dtype",
                      on, dn);
        continue;
      }
      /* the reference must implement it, or nothing can be compared: the
       * float64 one defines every op of 1.0 (reference.c) */
      uint32_t ref_supported = qiao__cf_ref_has((qiao_dev_op)op);
      if (!ref_supported) {
        qiao_dev_error *e = reference->api->op_supported(reference->device, (qiao_dev_op)op,
                                                         (qiao_dev_dtype)dt, &ref_supported);
        if (e != NULL) reference->api->error_destroy(e);
      }
      if (!ref_supported) {
        report->area_ops.checks++;
        report->failed[op][dt] = true;
        qiao__cf_fail(report, &report->area_ops, "%s %s: the reference CPU backend lacks it", on,
                      dn);
        continue;
      }
      uint32_t before = report->area_ops.failed;
      qiao__cf_progress(report, "ops: %s %s", on, dn);
      run_op(&x, (qiao_dev_op)op, (qiao_dev_dtype)dt);
      if (report->area_ops.failed != before) report->failed[op][dt] = true;
    }
}

void qiao__cf_run_ops_in_mode(qiao_conformance_report *report, cf_device *target, uint64_t seed,
                              uint32_t op_mask, const char *mode) {
  ctx x = {report, target, NULL, {seed ^ 0x5eedu}, mode};
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++)
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
      if (!qiao_backend_may_ask(target->backend, (qiao_dev_op)op, (qiao_dev_dtype)dt)) continue;
      uint32_t supported = 0;
      qiao_dev_error *e = target->api->op_supported(target->device, (qiao_dev_op)op,
                                                    (qiao_dev_dtype)dt, &supported);
      if (e != NULL) target->api->error_destroy(e);
      if (!supported || (op_mask != 0 && !(op_mask & (1u << op))) ||
          !qiao__cf_defined((qiao_dev_op)op, (qiao_dev_dtype)dt) ||
          !qiao__cf_ref_has((qiao_dev_op)op))
        continue; /* the ordinary level reports these */
      uint32_t before = report->area_ops.failed;
      qiao__cf_progress(report, "ops: %s %s%s", qiao_dev_op_name((qiao_dev_op)op),
                        qiao_dev_dtype_name((qiao_dev_dtype)dt), mode);
      run_op(&x, (qiao_dev_op)op, (qiao_dev_dtype)dt);
      if (report->area_ops.failed != before) report->failed[op][dt] = true;
    }
}
