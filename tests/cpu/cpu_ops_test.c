/* Every op of the CPU backend against a naive double-precision reference
 * written here, on random inputs and edge shapes, for one kernel set (the
 * argument: scalar, avx2 or avx512; exit 77 when the processor lacks it)
 * beside the scalar one, and for 1 and 3 threads: results must
 * be within a tight tolerance of the reference, the SIMD kernels within
 * tolerance of the scalar ones, and 3 threads bit-identical to 1. */
#include "cpu_test.h"

enum { MAX_ENVS = 6 };
static env envs[MAX_ENVS];
static int n_envs = 0;

/* Checks outputs of every env: vs the reference (rel * scale), env pairs
 * (same ISA, 1 and 3 threads) bit-identical, every env vs env 0 (scalar). */
static void check_outputs(const char *what, float *const *outs, const double *want,
                          const double *scale, uint64_t n, double rel) {
  for (int e = 0; e < n_envs; e++) {
    int bad = 0;
    for (uint64_t i = 0; i < n && bad < 3; i++)
      if (!close_to(outs[e][i], want[i], scale[i], rel, what, i)) bad++;
    if (bad) {
      fprintf(stderr, "  (%s, env %s/%d)\n", what, envs[e].isa, e % 2 ? 3 : 1);
      failures++;
    }
    if (e % 2 == 1 && memcmp(outs[e], outs[e - 1], n * sizeof(float)) != 0) {
      fprintf(stderr, "%s: %s with 3 threads differs from 1 thread\n", what, envs[e].isa);
      failures++;
    }
    for (uint64_t i = 0; i < n; i++)
      if (fabs((double)outs[e][i] - outs[0][i]) > 2 * rel * scale[i] + 1e-6) {
        fprintf(stderr, "%s[%llu]: %s %.9g vs scalar %.9g\n", what, (unsigned long long)i,
                envs[e].isa, outs[e][i], outs[0][i]);
        failures++;
        break;
      }
  }
}

static float **alloc_outs(uint64_t n) {
  float **outs = malloc(MAX_ENVS * sizeof(float *));
  for (int e = 0; e < MAX_ENVS; e++)
    outs[e] = calloc(n + 1, sizeof(float));
  return outs;
}
static void free_outs(float **outs) {
  for (int e = 0; e < MAX_ENVS; e++)
    free(outs[e]);
  free(outs);
}

/* ---- matmul ----------------------------------------------------------------- */
static void test_matmul(qiao_dev_dtype dt, uint64_t n, uint64_t k, uint64_t m, int with_bias,
                        int accumulate) {
  char what[96];
  snprintf(what, sizeof(what), "matmul %s n=%llu k=%llu m=%llu bias=%d acc=%d",
           qiao_cpu_get_api() ? (const char *[]){"F32", "F16", "BF16", "Q8_0", "Q4_0"}[dt] : "",
           (unsigned long long)n, (unsigned long long)k, (unsigned long long)m, with_bias,
           accumulate);
  float *x = rnd_floats(n * k, 1.0f), *wf = rnd_floats(m * k, 0.5f);
  float *bias = rnd_floats(m, 1.0f), *init = rnd_floats(n * m, 1.0f);
  uint8_t *w = encode(dt, wf, m, k);
  uint64_t rb = row_bytes(dt, k);
  double *want = malloc(n * m * sizeof(double)), *scale = malloc(n * m * sizeof(double));
  for (uint64_t i = 0; i < n; i++)
    for (uint64_t j = 0; j < m; j++) {
      double s = 0, a = 0;
      for (uint64_t q = 0; q < k; q++) {
        double term = decode_at(dt, w + j * rb, q) * x[i * k + q];
        s += term;
        a += fabs(term);
      }
      if (with_bias) s += bias[j], a += fabs(bias[j]);
      if (accumulate) s += init[i * m + j], a += fabs(init[i * m + j]);
      want[i * m + j] = s;
      scale[i * m + j] = a;
    }
  float **outs = alloc_outs(n * m);
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    /* x and out share one buffer, at offsets, to exercise offsets. */
    uint64_t x_off = 64, out_off = x_off + n * k * 4 + 12;
    qiao_dev_buffer *xo = buf(t, NULL, out_off + n * m * 4);
    EXPECT_OK(api->upload(t->queue, (qiao_dev_ref){xo, x_off}, x, n * k * 4));
    EXPECT_OK(api->upload(t->queue, (qiao_dev_ref){xo, out_off}, init, n * m * 4));
    qiao_dev_buffer *wb = buf(t, w, m * rb), *bb = buf(t, bias, m * 4);
    qiao_dev_matmul_args a = {sizeof(a),
                              n,
                              k,
                              m,
                              {xo, x_off},
                              dt,
                              ref(wb),
                              with_bias ? ref(bb) : (qiao_dev_ref){NULL, 0},
                              {xo, out_off},
                              (uint32_t)accumulate,
                              QIAO_DEV_PRECISION_EXACT};
    EXPECT_OK(api->matmul(t->queue, &a));
    EXPECT_OK(api->download(t->queue, outs[e], (qiao_dev_ref){xo, out_off}, n * m * 4));
    api->buffer_destroy(xo);
    api->buffer_destroy(wb);
    api->buffer_destroy(bb);
  }
  check_outputs(what, outs, want, scale, n * m, 1e-5);
  free_outs(outs);
  free(x), free(wf), free(bias), free(init), free(w), free(want), free(scale);
}

/* ---- matmul_experts --------------------------------------------------------- */
static void test_matmul_experts(qiao_dev_dtype dt, uint64_t n_tokens, uint64_t k,
                                uint64_t n_experts, uint64_t in_dim, uint64_t out_dim,
                                int x_per_slot) {
  char what[96];
  snprintf(what, sizeof(what), "matmul_experts dt=%d t=%llu k=%llu e=%llu per_slot=%d", dt,
           (unsigned long long)n_tokens, (unsigned long long)k, (unsigned long long)n_experts,
           x_per_slot);
  uint64_t n_pairs = n_tokens * k, x_rows = x_per_slot ? n_pairs : n_tokens;
  float *x = rnd_floats(x_rows * in_dim, 1.0f),
        *wf = rnd_floats(n_experts * out_dim * in_dim, 0.5f);
  uint8_t *w = encode(dt, wf, n_experts * out_dim, in_dim);
  uint64_t rb = row_bytes(dt, in_dim);
  int32_t *ids = malloc(n_pairs * 4);
  for (uint64_t p = 0; p < n_pairs; p++)
    ids[p] = (int32_t)(rnd_u32() % n_experts);
  double *want = malloc(n_pairs * out_dim * sizeof(double)), *scale = malloc(n_pairs * out_dim * 8);
  for (uint64_t p = 0; p < n_pairs; p++) {
    const float *xr = x + (x_per_slot ? p : p / k) * in_dim;
    for (uint64_t j = 0; j < out_dim; j++) {
      const uint8_t *wr = w + ((uint64_t)ids[p] * out_dim + j) * rb;
      double s = 0, a = 0;
      for (uint64_t q = 0; q < in_dim; q++) {
        double term = decode_at(dt, wr, q) * xr[q];
        s += term, a += fabs(term);
      }
      want[p * out_dim + j] = s, scale[p * out_dim + j] = a;
    }
  }
  float **outs = alloc_outs(n_pairs * out_dim);
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *xb = buf(t, x, x_rows * in_dim * 4), *wb = buf(t, w, n_experts * out_dim * rb);
    qiao_dev_buffer *ib = buf(t, ids, n_pairs * 4), *ob = buf(t, NULL, n_pairs * out_dim * 4);
    qiao_dev_matmul_experts_args a = {
        sizeof(a), n_tokens, k,  n_experts, in_dim,  out_dim, (uint32_t)x_per_slot,
        0,         ref(xb),  dt, ref(wb),   ref(ib), ref(ob)};
    EXPECT_OK(api->matmul_experts(t->queue, &a));
    get(t, outs[e], ob, n_pairs * out_dim * 4);
    api->buffer_destroy(xb), api->buffer_destroy(wb), api->buffer_destroy(ib),
        api->buffer_destroy(ob);
  }
  check_outputs(what, outs, want, scale, n_pairs * out_dim, 1e-5);
  free_outs(outs);
  free(x), free(wf), free(w), free(ids), free(want), free(scale);
}

/* ---- embed (dequantization is exact, so the comparison is too) -------------- */
static void test_embed(qiao_dev_dtype dt, uint64_t vocab, uint64_t dim, uint64_t n_tokens) {
  float *tf = rnd_floats(vocab * dim, 2.0f);
  uint8_t *table = encode(dt, tf, vocab, dim);
  uint64_t rb = row_bytes(dt, dim);
  int32_t *ids = malloc(n_tokens * 4);
  for (uint64_t t = 0; t < n_tokens; t++)
    ids[t] = (int32_t)(rnd_u32() % vocab);
  ids[0] = (int32_t)vocab - 1;
  float *out = malloc(n_tokens * dim * 4);
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *tb = buf(t, table, vocab * rb), *ib = buf(t, ids, n_tokens * 4);
    qiao_dev_buffer *ob = buf(t, NULL, n_tokens * dim * 4);
    qiao_dev_embed_args a = {sizeof(a), n_tokens, vocab, dim, dt, ref(tb), ref(ib), ref(ob)};
    EXPECT_OK(api->embed(t->queue, &a));
    get(t, out, ob, n_tokens * dim * 4);
    int bad = 0;
    for (uint64_t i = 0; i < n_tokens * dim && !bad; i++)
      if (out[i] != (float)decode_at(dt, table + (uint64_t)ids[i / dim] * rb, i % dim)) {
        fprintf(stderr, "embed dt=%d [%llu]: %g\n", dt, (unsigned long long)i, out[i]);
        bad = 1;
        failures++;
      }
    api->buffer_destroy(tb), api->buffer_destroy(ib), api->buffer_destroy(ob);
  }
  free(tf), free(table), free(ids), free(out);
}

/* ---- rmsnorm ------------------------------------------------------------------ */
static void test_rmsnorm(uint64_t rows, uint64_t cols, int in_place) {
  float *x = rnd_floats(rows * cols, 3.0f), *w = rnd_floats(cols, 1.0f);
  float eps = 1e-6f;
  double *want = malloc(rows * cols * 8), *scale = malloc(rows * cols * 8);
  for (uint64_t r = 0; r < rows; r++) {
    double ss = 0;
    for (uint64_t i = 0; i < cols; i++)
      ss += (double)x[r * cols + i] * x[r * cols + i];
    double inv = 1.0 / sqrt(ss / (double)cols + eps);
    for (uint64_t i = 0; i < cols; i++) {
      want[r * cols + i] = x[r * cols + i] * inv * w[i];
      scale[r * cols + i] = fabs(want[r * cols + i]);
    }
  }
  float **outs = alloc_outs(rows * cols);
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *xb = buf(t, x, rows * cols * 4), *wb = buf(t, w, cols * 4);
    qiao_dev_buffer *ob = in_place ? xb : buf(t, NULL, rows * cols * 4);
    qiao_dev_rmsnorm_args a = {sizeof(a), rows, cols, eps, ref(xb), ref(wb), ref(ob)};
    EXPECT_OK(api->rmsnorm(t->queue, &a));
    get(t, outs[e], ob, rows * cols * 4);
    api->buffer_destroy(xb), api->buffer_destroy(wb);
    if (!in_place) api->buffer_destroy(ob);
  }
  check_outputs("rmsnorm", outs, want, scale, rows * cols, 1e-6);
  free_outs(outs);
  free(x), free(w), free(want), free(scale);
}

/* ---- rope ----------------------------------------------------------------------- */
static void test_rope(qiao_dev_rope_style style, uint64_t n_tokens, uint64_t n_heads,
                      uint64_t head_dim, uint64_t rot_dim) {
  uint64_t n = n_tokens * n_heads * head_dim, half = rot_dim / 2;
  float *x = rnd_floats(n, 2.0f), *freqs = malloc(half * 4 + 4);
  int32_t *pos = malloc(n_tokens * 4);
  for (uint64_t i = 0; i < half; i++)
    freqs[i] = powf(10000.0f, -2.0f * (float)i / (float)rot_dim);
  for (uint64_t t = 0; t < n_tokens; t++)
    pos[t] = (int32_t)(t == 0 ? 0 : rnd_u32() % 5000);
  double *want = malloc(n * 8), *scale = malloc(n * 8);
  for (uint64_t i = 0; i < n; i++)
    want[i] = x[i], scale[i] = fabs(x[i]);
  for (uint64_t t = 0; t < n_tokens; t++)
    for (uint64_t h = 0; h < n_heads; h++)
      for (uint64_t i = 0; i < half; i++) {
        uint64_t base = (t * n_heads + h) * head_dim;
        uint64_t i0 = base + (style == QIAO_DEV_ROPE_NORMAL ? 2 * i : i);
        uint64_t i1 = base + (style == QIAO_DEV_ROPE_NORMAL ? 2 * i + 1 : i + half);
        double angle = (float)pos[t] * freqs[i], c = cos(angle), s = sin(angle);
        want[i0] = x[i0] * c - x[i1] * s;
        want[i1] = x[i0] * s + x[i1] * c;
        scale[i0] = scale[i1] = fabs(x[i0]) + fabs(x[i1]);
      }
  float **outs = alloc_outs(n);
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *xb = buf(t, x, n * 4), *pb = buf(t, pos, n_tokens * 4),
                    *fb = buf(t, freqs, half * 4);
    qiao_dev_rope_args a = {sizeof(a), n_tokens, n_heads, head_dim, rot_dim,
                            style,     ref(xb),  ref(pb), ref(fb)};
    EXPECT_OK(api->rope(t->queue, &a));
    get(t, outs[e], xb, n * 4);
    api->buffer_destroy(xb), api->buffer_destroy(pb), api->buffer_destroy(fb);
  }
  check_outputs(style == QIAO_DEV_ROPE_NORMAL ? "rope normal" : "rope neox", outs, want, scale, n,
                1e-6);
  free_outs(outs);
  free(x), free(freqs), free(pos), free(want), free(scale);
}

/* ---- kv_write + attention --------------------------------------------------------- */
typedef struct attn_case {
  qiao_dev_dtype cache;
  uint64_t n_heads, n_kv_heads, head_dim, block_size, window;
  uint64_t n_seqs;
  uint64_t seq_len[4]; /* cached length of each sequence (its positions 0..len-1) */
  uint64_t n_query[4]; /* how many of its last positions are queried */
} attn_case;

__attribute__((noinline)) static void test_attention(const attn_case *c) {
  uint64_t hd = c->head_dim, kv_dim = c->n_kv_heads * hd, q_dim = c->n_heads * hd;
  uint64_t max_blocks = 0, n_cached = 0, n_tokens = 0;
  for (uint64_t s = 0; s < c->n_seqs; s++) {
    uint64_t b = (c->seq_len[s] + c->block_size - 1) / c->block_size;
    if (b > max_blocks) max_blocks = b;
    n_cached += c->seq_len[s];
    n_tokens += c->n_query[s];
  }
  uint64_t n_blocks = c->n_seqs * max_blocks + 3, n_slots = n_blocks * c->block_size;
  /* A random permutation of the blocks, handed out to sequences. */
  int32_t *perm = malloc(n_blocks * 4);
  for (uint64_t i = 0; i < n_blocks; i++)
    perm[i] = (int32_t)i;
  for (uint64_t i = n_blocks - 1; i > 0; i--) {
    uint64_t j = rnd_u32() % (i + 1);
    int32_t tmp = perm[i];
    perm[i] = perm[j], perm[j] = tmp;
  }
  uint64_t table_n = c->n_seqs * max_blocks;
  if (table_n > (1u << 20)) abort(); /* (keeps the compiler's size analysis calm) */
  int32_t *table = malloc(table_n * 4 + 4);
  for (uint64_t i = 0; i < c->n_seqs * max_blocks; i++)
    table[i] = perm[i];
  /* Every cached token's K and V (written with kv_write), and the queries. */
  float *k = rnd_floats(n_cached * kv_dim, 1.0f), *v = rnd_floats(n_cached * kv_dim, 1.0f);
  int32_t *slots = malloc(n_cached * 4), *tseq = malloc(n_tokens * 4), *tpos = malloc(n_tokens * 4);
  uint64_t *first = malloc(c->n_seqs * 8); /* index of a sequence's first cached token */
  for (uint64_t s = 0, i = 0, t = 0; s < c->n_seqs; s++) {
    first[s] = i;
    for (uint64_t j = 0; j < c->seq_len[s]; j++, i++)
      slots[i] = table[s * max_blocks + j / c->block_size] * (int32_t)c->block_size +
                 (int32_t)(j % c->block_size);
    for (uint64_t j = c->seq_len[s] - c->n_query[s]; j < c->seq_len[s]; j++, t++)
      tseq[t] = (int32_t)s, tpos[t] = (int32_t)j;
  }
  float *q = rnd_floats(n_tokens * q_dim, 1.0f);
  float scale_f = 1.0f / sqrtf((float)hd) * 2.0f;
  /* The reference reads K/V as the cache stores them. */
  double *want = malloc(n_tokens * q_dim * 8), *scale = malloc(n_tokens * q_dim * 8);
  for (uint64_t t = 0; t < n_tokens; t++)
    for (uint64_t h = 0; h < c->n_heads; h++) {
      uint64_t s = (uint64_t)tseq[t], p = (uint64_t)tpos[t], kvh = h / (c->n_heads / c->n_kv_heads);
      uint64_t lo = c->window > 0 && p + 1 > c->window ? p + 1 - c->window : 0;
      double *sc = malloc((p + 1) * 8), mx = -INFINITY, sum = 0;
      for (uint64_t j = lo; j <= p; j++) {
        const float *kr = k + (first[s] + j) * kv_dim + kvh * hd;
        double d = 0;
        for (uint64_t i = 0; i < hd; i++) {
          double kv = c->cache == QIAO_DEV_F16 ? from_f16(to_f16(kr[i])) : kr[i];
          d += q[(t * c->n_heads + h) * hd + i] * kv;
        }
        sc[j] = d * scale_f;
        if (sc[j] > mx) mx = sc[j];
      }
      for (uint64_t j = lo; j <= p; j++)
        sum += (sc[j] = exp(sc[j] - mx));
      for (uint64_t i = 0; i < hd; i++) {
        double o = 0, a = 0;
        for (uint64_t j = lo; j <= p; j++) {
          float vf = v[(first[s] + j) * kv_dim + kvh * hd + i];
          double vv = c->cache == QIAO_DEV_F16 ? from_f16(to_f16(vf)) : vf;
          o += sc[j] / sum * vv;
          a += sc[j] / sum * fabs(vv);
        }
        want[(t * c->n_heads + h) * hd + i] = o;
        scale[(t * c->n_heads + h) * hd + i] = a;
      }
      free(sc);
    }
  float **outs = alloc_outs(n_tokens * q_dim);
  uint64_t elt = c->cache == QIAO_DEV_F16 ? 2 : 4;
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *kb = buf(t, k, n_cached * kv_dim * 4), *vb = buf(t, v, n_cached * kv_dim * 4);
    qiao_dev_buffer *sb = buf(t, slots, n_cached * 4);
    qiao_dev_buffer *kc = buf(t, NULL, n_slots * kv_dim * elt),
                    *vc = buf(t, NULL, n_slots * kv_dim * elt);
    qiao_dev_kv_write_args w = {sizeof(w), n_cached, kv_dim,  n_slots, c->cache,
                                ref(kb),   ref(vb),  ref(sb), ref(kc), ref(vc)};
    EXPECT_OK(api->kv_write(t->queue, &w));
    qiao_dev_buffer *qb = buf(t, q, n_tokens * q_dim * 4),
                    *tb = buf(t, table, c->n_seqs * max_blocks * 4);
    qiao_dev_buffer *seqb = buf(t, tseq, n_tokens * 4), *posb = buf(t, tpos, n_tokens * 4);
    qiao_dev_buffer *ob = buf(t, NULL, n_tokens * q_dim * 4);
    qiao_dev_attention_args a = {sizeof(a), n_tokens,   c->n_heads,    c->n_kv_heads, hd,
                                 c->n_seqs, max_blocks, c->block_size, n_slots,       c->window,
                                 scale_f,   c->cache,   ref(qb),       ref(kc),       ref(vc),
                                 ref(tb),   ref(seqb),  ref(posb),     ref(ob)};
    EXPECT_OK(api->attention(t->queue, &a));
    get(t, outs[e], ob, n_tokens * q_dim * 4);
    qiao_dev_buffer *all[] = {kb, vb, sb, kc, vc, qb, tb, seqb, posb, ob};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
      api->buffer_destroy(all[i]);
  }
  char what[128];
  snprintf(what, sizeof(what), "attention cache=%d heads=%llu/%llu hd=%llu bs=%llu window=%llu",
           c->cache, (unsigned long long)c->n_heads, (unsigned long long)c->n_kv_heads,
           (unsigned long long)hd, (unsigned long long)c->block_size,
           (unsigned long long)c->window);
  check_outputs(what, outs, want, scale, n_tokens * q_dim, 2e-5);
  free_outs(outs);
  free(perm), free(table), free(k), free(v), free(slots), free(tseq), free(tpos), free(first);
  free(q), free(want), free(scale);
}

/* ---- swiglu, add ---------------------------------------------------------------- */
static void test_binary(int swiglu, uint64_t n, int in_place) {
  float *a = rnd_floats(n, 6.0f), *b = rnd_floats(n, 2.0f);
  double *want = malloc(n * 8), *scale = malloc(n * 8);
  for (uint64_t i = 0; i < n; i++) {
    want[i] = swiglu ? a[i] / (1.0 + exp(-(double)a[i])) * b[i] : (double)a[i] + b[i];
    scale[i] = swiglu ? fabs(want[i]) * 2 : fabs(a[i]) + fabs(b[i]);
  }
  float **outs = alloc_outs(n);
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *ab = buf(t, a, n * 4), *bb = buf(t, b, n * 4);
    qiao_dev_buffer *ob = in_place == 1 ? ab : in_place == 2 ? bb : buf(t, NULL, n * 4);
    if (swiglu) {
      qiao_dev_swiglu_args s = {sizeof(s), n, ref(ab), ref(bb), ref(ob)};
      EXPECT_OK(api->swiglu(t->queue, &s));
    } else {
      qiao_dev_add_args s = {sizeof(s), n, ref(ab), ref(bb), ref(ob)};
      EXPECT_OK(api->add(t->queue, &s));
    }
    get(t, outs[e], ob, n * 4);
    api->buffer_destroy(ab), api->buffer_destroy(bb);
    if (!in_place) api->buffer_destroy(ob);
  }
  check_outputs(swiglu ? "swiglu" : "add", outs, want, scale, n, 1e-6);
  free_outs(outs);
  free(a), free(b), free(want), free(scale);
}

/* ---- argmax ------------------------------------------------------------------------ */
static void test_argmax(uint64_t rows, uint64_t cols) {
  float *x = rnd_floats(rows * cols, 1.0f);
  int32_t *want = malloc(rows * 4), *got = malloc(rows * 4);
  for (uint64_t r = 0; r < rows; r++) {
    if (r % 2 == 1 && cols > 3) { /* a tie: the smaller index wins */
      x[r * cols + cols - 1] = 5.0f;
      x[r * cols + cols / 2] = 5.0f;
    }
    uint64_t best = 0;
    for (uint64_t i = 1; i < cols; i++)
      if (x[r * cols + i] > x[r * cols + best]) best = i;
    want[r] = (int32_t)best;
  }
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *xb = buf(t, x, rows * cols * 4), *ob = buf(t, NULL, rows * 4);
    qiao_dev_argmax_args a = {sizeof(a), rows, cols, ref(xb), ref(ob)};
    EXPECT_OK(api->argmax(t->queue, &a));
    get(t, got, ob, rows * 4);
    EXPECT(memcmp(got, want, rows * 4) == 0);
    api->buffer_destroy(xb), api->buffer_destroy(ob);
  }
  free(x), free(want), free(got);
}

/* ---- moe_gate, moe_combine -------------------------------------------------------- */
static void test_moe_gate(uint64_t n_tokens, uint64_t n_experts, uint64_t k, int normalize) {
  float *logits = rnd_floats(n_tokens * n_experts, 3.0f);
  if (n_experts >= 4) /* ties in token 0: experts 1 and 3 equal and largest */
    logits[1] = logits[3] = 10.0f;
  int32_t *want_ids = malloc(n_tokens * k * 4), *got_ids = malloc(n_tokens * k * 4);
  double *want_w = malloc(n_tokens * k * 8);
  float *got_w = malloc(n_tokens * k * 4);
  for (uint64_t t = 0; t < n_tokens; t++) {
    const float *l = logits + t * n_experts;
    double mx = -INFINITY, sum = 0, chosen = 0;
    double *p = malloc(n_experts * 8);
    char *taken = calloc(n_experts, 1);
    for (uint64_t e = 0; e < n_experts; e++)
      mx = fmax(mx, l[e]);
    for (uint64_t e = 0; e < n_experts; e++)
      sum += (p[e] = exp(l[e] - mx));
    for (uint64_t e = 0; e < n_experts; e++)
      p[e] /= sum;
    for (uint64_t i = 0; i < k; i++) {
      uint64_t best = 0;
      while (taken[best])
        best++;
      for (uint64_t e = 0; e < n_experts; e++)
        if (!taken[e] && l[e] > l[best]) best = e;
      taken[best] = 1;
      want_ids[t * k + i] = (int32_t)best;
      want_w[t * k + i] = p[best];
      chosen += p[best];
    }
    if (normalize)
      for (uint64_t i = 0; i < k; i++)
        want_w[t * k + i] /= chosen;
    free(p), free(taken);
  }
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *lb = buf(t, logits, n_tokens * n_experts * 4);
    qiao_dev_buffer *ib = buf(t, NULL, n_tokens * k * 4), *wb = buf(t, NULL, n_tokens * k * 4);
    qiao_dev_moe_gate_args a = {sizeof(a),           n_tokens, n_experts, k,
                                (uint32_t)normalize, ref(lb),  ref(ib),   ref(wb)};
    EXPECT_OK(api->moe_gate(t->queue, &a));
    get(t, got_ids, ib, n_tokens * k * 4);
    get(t, got_w, wb, n_tokens * k * 4);
    EXPECT(memcmp(got_ids, want_ids, n_tokens * k * 4) == 0);
    for (uint64_t i = 0; i < n_tokens * k; i++)
      if (!close_to(got_w[i], want_w[i], want_w[i], 1e-6, "moe_gate weights", i)) {
        failures++;
        break;
      }
    api->buffer_destroy(lb), api->buffer_destroy(ib), api->buffer_destroy(wb);
  }
  free(logits), free(want_ids), free(got_ids), free(want_w), free(got_w);
}

static void test_moe_combine(uint64_t n_tokens, uint64_t k, uint64_t dim, int accumulate) {
  float *x = rnd_floats(n_tokens * k * dim, 1.0f), *w = rnd_floats(n_tokens * k, 1.0f);
  float *init = rnd_floats(n_tokens * dim, 1.0f);
  double *want = malloc(n_tokens * dim * 8), *scale = malloc(n_tokens * dim * 8);
  for (uint64_t t = 0; t < n_tokens; t++)
    for (uint64_t d = 0; d < dim; d++) {
      double s = accumulate ? init[t * dim + d] : 0, a = fabs(s);
      for (uint64_t i = 0; i < k; i++) {
        double term = (double)w[t * k + i] * x[(t * k + i) * dim + d];
        s += term, a += fabs(term);
      }
      want[t * dim + d] = s, scale[t * dim + d] = a;
    }
  float **outs = alloc_outs(n_tokens * dim);
  for (int e = 0; e < n_envs; e++) {
    env *t = &envs[e];
    qiao_dev_buffer *xb = buf(t, x, n_tokens * k * dim * 4), *wb = buf(t, w, n_tokens * k * 4);
    qiao_dev_buffer *ob = buf(t, init, n_tokens * dim * 4);
    qiao_dev_moe_combine_args a = {sizeof(a), n_tokens, k,      dim, (uint32_t)accumulate,
                                   ref(xb),   ref(wb),  ref(ob)};
    EXPECT_OK(api->moe_combine(t->queue, &a));
    get(t, outs[e], ob, n_tokens * dim * 4);
    api->buffer_destroy(xb), api->buffer_destroy(wb), api->buffer_destroy(ob);
  }
  check_outputs("moe_combine", outs, want, scale, n_tokens * dim, 1e-6);
  free_outs(outs);
  free(x), free(w), free(init), free(want), free(scale);
}

int main(int argc, char **argv) {
  /* cpu_ops_test ISA: the scalar kernels (env 0, the baseline of
   * check_outputs) and, for avx2 or avx512, that set too. CTest runs one test
   * per set; a set the processor lacks exits 77 (shown as skipped). */
  size_t n_isas = sizeof(isas) / sizeof(isas[0]), want = 0;
  while (argc == 2 && want < n_isas && strcmp(isas[want], argv[1]) != 0)
    want++;
  if (argc != 2 || want == n_isas) {
    fprintf(stderr, "usage: cpu_ops_test scalar|avx2|avx512\n");
    return 2;
  }
  for (size_t i = 0; i < n_isas; i++) {
    if (i != 0 && i != want) continue;
    if (!env_open(&envs[n_envs], isas[i], 1)) {
      printf("%s: not supported by this processor, skipped\n", isas[i]);
      for (int e = 0; e < n_envs; e++)
        env_close(&envs[e]);
      return failures ? 1 : 77;
    }
    EXPECT(env_open(&envs[n_envs + 1], isas[i], 3));
    n_envs += 2;
  }
  EXPECT(n_envs >= 2);

  for (size_t d = 0; d < 5; d++) {
    qiao_dev_dtype dt = weight_dtypes[d];
    int is_float = dt == QIAO_DEV_F32 || dt == QIAO_DEV_F16 || dt == QIAO_DEV_BF16;
    test_matmul(dt, 1, 32, 1, 0, 0);
    test_matmul(dt, 3, 96, 17, 1, 0);
    test_matmul(dt, 9, 4096, 5, 0, 1);
    test_matmul(dt, 19, 256, 40, 1, 1);
    test_matmul(dt, 1, 896, 70, 1, 0);
    if (is_float) {
      test_matmul(dt, 1, 1, 3, 0, 0);
      test_matmul(dt, 5, 11, 7, 1, 0);
      test_matmul(dt, 10, 37, 9, 0, 1);
      test_matmul(dt, 2, 1000, 13, 0, 0);
      test_matmul(dt, 3, 4099, 3, 1, 0);
    }
    test_matmul_experts(dt, 1, 4, 8, 64, 24, 0);
    test_matmul_experts(dt, 13, 2, 5, 96, 16, 1);
    test_embed(dt, 11, is_float ? 40 : 96, 7);
    if (is_float) test_embed(dt, 3, 5, 4);
  }
  test_rmsnorm(1, 896, 0);
  test_rmsnorm(5, 37, 1);
  test_rmsnorm(70, 1024, 0);
  test_rope(QIAO_DEV_ROPE_NORMAL, 3, 4, 64, 64);
  test_rope(QIAO_DEV_ROPE_NEOX, 5, 2, 64, 32);
  test_rope(QIAO_DEV_ROPE_NORMAL, 2, 3, 10, 6);
  test_rope(QIAO_DEV_ROPE_NEOX, 1, 14, 64, 64);

  const attn_case cases[] = {
      /* decode: one query per sequence, several sequences, KV crossing blocks */
      {QIAO_DEV_F32, 4, 4, 64, 16, 0, 3, {17, 1, 40}, {1, 1, 1}},
      {QIAO_DEV_F16, 4, 2, 64, 16, 0, 3, {17, 33, 40}, {1, 1, 1}},
      {QIAO_DEV_F32, 8, 2, 40, 5, 0, 2, {150, 23}, {1, 1}},
      /* prefill: many queries of one sequence (causal), long (> one chunk) */
      {QIAO_DEV_F16, 14, 2, 64, 16, 0, 1, {140}, {12}},
      {QIAO_DEV_F32, 6, 6, 72, 8, 0, 2, {70, 9}, {9, 9}},
      /* sliding window */
      {QIAO_DEV_F32, 4, 1, 32, 4, 7, 2, {30, 5}, {6, 5}},
      {QIAO_DEV_F16, 8, 2, 80, 16, 20, 4, {90, 3, 21, 64}, {2, 3, 1, 4}},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    test_attention(&cases[i]);

  test_binary(1, 100, 0);
  test_binary(1, 70001, 1);
  test_binary(1, 33, 2);
  test_binary(0, 100, 0);
  test_binary(0, 70001, 2);
  test_binary(0, 7, 1);
  test_argmax(4, 1000);
  test_argmax(3, 1);
  test_moe_gate(5, 8, 2, 1);
  test_moe_gate(3, 60, 4, 0);
  test_moe_gate(2, 4, 4, 1);
  test_moe_combine(3, 2, 64, 0);
  test_moe_combine(4, 8, 37, 1);

  for (int e = 0; e < n_envs; e++)
    env_close(&envs[e]);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
