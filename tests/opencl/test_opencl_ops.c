/* Every op of the OpenCL backend, op by op, against the CPU reference backend
 * on the same random inputs: all claimed dtypes except the block types of
 * 1.3 (conformance's float64 cases cover those, and every FP8 code), edge
 * shapes (n = 1, k = 32, odd m, long rows, several sequences, KV crossing
 * block boundaries, GQA, sliding windows, DeepSeek's latent rows and
 * routing), operands at non-zero buffer offsets. Tolerances are f32-level
 * (relative L2 per row 1e-5); ids and copied values are exact. */
#include <stdarg.h>

#include "cpu_backend.h"
#include "opencl_harness.h"

#define TOL 1e-5

static dev devs[2]; /* [0] OpenCL, [1] CPU */

static void label(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void label(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
}

/* ---- embed */
static void test_embed(qiao_dev_dtype t, size_t n_tokens, size_t vocab, size_t dim) {
  size_t wb = weight_bytes(t, vocab, dim), ob = n_tokens * dim * 4;
  unsigned char *table = rand_weights(t, vocab, dim);
  int32_t *ids = malloc(n_tokens * 4);
  for (size_t i = 0; i < n_tokens; i++)
    ids[i] = (int32_t)(rnd() % vocab);
  ids[0] = (int32_t)(vocab - 1);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_embed_args a = {.struct_size = sizeof(a),
                             .n_tokens = n_tokens,
                             .vocab = vocab,
                             .dim = dim,
                             .table_dtype = t,
                             .table = up(D, table, wb),
                             .ids = up(D, ids, n_tokens * 4),
                             .out = up(D, NULL, ob)};
    DEV_OK(D, D->api->embed(D->queue, &a));
    out[d] = malloc(ob);
    get(D, a.out, out[d], ob);
    dev_reset(D);
  }
  char what[128];
  label(what, sizeof(what), "embed %s n_tokens=%zu vocab=%zu dim=%zu", dtype_name(t), n_tokens,
        vocab, dim);
  compare_exact(what, out[0], out[1], ob);
  free(table), free(ids), free(out[0]), free(out[1]);
}

/* ---- matmul */
static void test_matmul(qiao_dev_dtype t, size_t n, size_t k, size_t m, int bias, int acc) {
  size_t wb = weight_bytes(t, m, k), ob = n * m * 4;
  unsigned char *w = rand_weights(t, m, k);
  float *x = rand_f32(n * k, 1.0f), *b = rand_f32(m, 1.0f), *o0 = rand_f32(n * m, 1.0f);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                              .n = n,
                              .k = k,
                              .m = m,
                              .x = up(D, x, n * k * 4),
                              .w_dtype = t,
                              .w = up(D, w, wb),
                              .out = up(D, o0, ob),
                              .accumulate = (uint32_t)acc};
    if (bias) a.bias = up(D, b, m * 4);
    DEV_OK(D, D->api->matmul(D->queue, &a));
    out[d] = malloc(ob);
    get(D, a.out, out[d], ob);
    dev_reset(D);
  }
  char what[128];
  label(what, sizeof(what), "matmul %s n=%zu k=%zu m=%zu bias=%d acc=%d", dtype_name(t), n, k, m,
        bias, acc);
  compare_rows(what, out[0], out[1], n, m, TOL);
  free(w), free(x), free(b), free(o0), free(out[0]), free(out[1]);
}

/* ---- matmul_experts */
static void test_experts(qiao_dev_dtype t, size_t n_tokens, size_t k, size_t n_experts,
                         size_t in_dim, size_t out_dim, int x_per_slot) {
  size_t slots = n_tokens * k, wb = weight_bytes(t, n_experts * out_dim, in_dim);
  size_t xb = (x_per_slot ? slots : n_tokens) * in_dim * 4, ob = slots * out_dim * 4;
  unsigned char *w = rand_weights(t, n_experts * out_dim, in_dim);
  float *x = rand_f32(xb / 4, 1.0f);
  int32_t *ids = malloc(slots * 4);
  for (size_t i = 0; i < slots; i++)
    ids[i] = (int32_t)(rnd() % n_experts);
  ids[slots - 1] = (int32_t)(n_experts - 1);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                      .n_tokens = n_tokens,
                                      .k = k,
                                      .n_experts = n_experts,
                                      .in_dim = in_dim,
                                      .out_dim = out_dim,
                                      .x_per_slot = (uint32_t)x_per_slot,
                                      .x = up(D, x, xb),
                                      .w_dtype = t,
                                      .w = up(D, w, wb),
                                      .ids = up(D, ids, slots * 4),
                                      .out = up(D, NULL, ob)};
    DEV_OK(D, D->api->matmul_experts(D->queue, &a));
    out[d] = malloc(ob);
    get(D, a.out, out[d], ob);
    dev_reset(D);
  }
  char what[160];
  label(what, sizeof(what),
        "matmul_experts %s tokens=%zu k=%zu experts=%zu in=%zu out=%zu per_slot=%d", dtype_name(t),
        n_tokens, k, n_experts, in_dim, out_dim, x_per_slot);
  compare_rows(what, out[0], out[1], slots, out_dim, TOL);
  free(w), free(x), free(ids), free(out[0]), free(out[1]);
}

/* ---- rmsnorm */
static void test_rmsnorm(size_t rows, size_t cols, int in_place) {
  size_t xb = rows * cols * 4;
  float *x = rand_f32(rows * cols, 3.0f), *w = rand_f32(cols, 1.0f);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_rmsnorm_args a = {.struct_size = sizeof(a),
                               .rows = rows,
                               .cols = cols,
                               .eps = 1e-5f,
                               .x = up(D, x, xb),
                               .weight = up(D, w, cols * 4)};
    a.out = in_place ? a.x : up(D, NULL, xb);
    DEV_OK(D, D->api->rmsnorm(D->queue, &a));
    out[d] = malloc(xb);
    get(D, a.out, out[d], xb);
    dev_reset(D);
  }
  char what[96];
  label(what, sizeof(what), "rmsnorm rows=%zu cols=%zu in_place=%d", rows, cols, in_place);
  compare_rows(what, out[0], out[1], rows, cols, TOL);
  free(x), free(w), free(out[0]), free(out[1]);
}

/* ---- rope */
static void test_rope(size_t n_tokens, size_t n_heads, size_t head_dim, size_t rot_dim,
                      qiao_dev_rope_style style) {
  size_t xb = n_tokens * n_heads * head_dim * 4;
  float *x = rand_f32(xb / 4, 1.0f), *freqs = malloc(rot_dim / 2 * 4 + 4);
  int32_t *pos = malloc(n_tokens * 4);
  for (size_t i = 0; i < rot_dim / 2; i++)
    freqs[i] = powf(10000.0f, -2.0f * (float)i / (float)rot_dim);
  for (size_t t = 0; t < n_tokens; t++)
    pos[t] = t == 0 ? 0 : (int32_t)(rnd() % 3000);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_rope_args a = {.struct_size = sizeof(a),
                            .n_tokens = n_tokens,
                            .n_heads = n_heads,
                            .head_dim = head_dim,
                            .rot_dim = rot_dim,
                            .style = style,
                            .x = up(D, x, xb),
                            .positions = up(D, pos, n_tokens * 4),
                            .freqs = up(D, freqs, rot_dim / 2 * 4)};
    DEV_OK(D, D->api->rope(D->queue, &a));
    out[d] = malloc(xb);
    get(D, a.x, out[d], xb);
    dev_reset(D);
  }
  char what[128];
  label(what, sizeof(what), "rope %s tokens=%zu heads=%zu head_dim=%zu rot_dim=%zu",
        style == QIAO_DEV_ROPE_NEOX ? "neox" : "normal", n_tokens, n_heads, head_dim, rot_dim);
  compare_rows(what, out[0], out[1], n_tokens * n_heads, head_dim, TOL);
  free(x), free(freqs), free(pos), free(out[0]), free(out[1]);
}

/* Random cache contents in the cache dtype. */
static void *rand_cache(qiao_dev_dtype t, size_t n) {
  if (t == QIAO_DEV_F32) return rand_f32(n, 1.0f);
  uint16_t *h = malloc(n * 2 + 2);
  for (size_t i = 0; i < n; i++)
    h[i] = f2h(rndf());
  return h;
}

/* ---- kv_write */
static void test_kv_write(qiao_dev_dtype t, size_t n_tokens, size_t kv_dim, size_t n_slots) {
  size_t es = t == QIAO_DEV_F32 ? 4 : 2, cb = n_slots * kv_dim * es, ib = n_tokens * kv_dim * 4;
  float *k = rand_f32(n_tokens * kv_dim, 2.0f), *v = rand_f32(n_tokens * kv_dim, 2.0f);
  void *kc0 = rand_cache(t, n_slots * kv_dim), *vc0 = rand_cache(t, n_slots * kv_dim);
  int32_t *slots = malloc(n_tokens * 4);
  for (size_t i = 0; i < n_tokens; i++)
    slots[i] = (int32_t)((i * 7 + 3) % n_slots); /* distinct */
  unsigned char *kc[2], *vc[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_kv_write_args a = {.struct_size = sizeof(a),
                                .n_tokens = n_tokens,
                                .kv_dim = kv_dim,
                                .n_slots = n_slots,
                                .cache_dtype = t,
                                .k = up(D, k, ib),
                                .v = up(D, v, ib),
                                .slots = up(D, slots, n_tokens * 4),
                                .k_cache = up(D, kc0, cb),
                                .v_cache = up(D, vc0, cb)};
    DEV_OK(D, D->api->kv_write(D->queue, &a));
    kc[d] = malloc(cb), vc[d] = malloc(cb);
    get(D, a.k_cache, kc[d], cb);
    get(D, a.v_cache, vc[d], cb);
    dev_reset(D);
  }
  char what[96];
  label(what, sizeof(what), "kv_write %s tokens=%zu kv_dim=%zu", dtype_name(t), n_tokens, kv_dim);
  compare_exact(what, kc[0], kc[1], cb);
  compare_exact(what, vc[0], vc[1], cb);
  free(k), free(v), free(kc0), free(vc0), free(slots);
  for (int d = 0; d < 2; d++)
    free(kc[d]), free(vc[d]);
}

/* ---- attention: n_seqs sequences of lengths lens[], each with its last
 * q_per_seq positions as query tokens (in an interleaved order), blocks of
 * block_size slots scattered over the cache by a permuted block table. */
static void test_attention(qiao_dev_dtype t, size_t n_heads, size_t n_kv, size_t hd, size_t bs,
                           size_t n_seqs, const int *lens, int q_per_seq, size_t window) {
  size_t max_len = 0, n_tokens = 0;
  for (size_t s = 0; s < n_seqs; s++) {
    if ((size_t)lens[s] > max_len) max_len = (size_t)lens[s];
    n_tokens += (size_t)(q_per_seq < lens[s] ? q_per_seq : lens[s]);
  }
  size_t max_blocks = (max_len + bs - 1) / bs + 1, n_blocks = n_seqs * max_blocks;
  size_t n_slots = n_blocks * bs, kv_elems = n_slots * n_kv * hd;
  size_t es = t == QIAO_DEV_F32 ? 4 : 2, cb = kv_elems * es;
  int32_t *bt = malloc(n_blocks * 4);
  for (size_t i = 0; i < n_blocks; i++)
    bt[i] = (int32_t)i;
  for (size_t i = n_blocks - 1; i > 0; i--) { /* shuffle */
    size_t j = rnd() % (i + 1);
    int32_t tmp = bt[i];
    bt[i] = bt[j], bt[j] = tmp;
  }
  int32_t *seq = malloc(n_tokens * 4), *pos = malloc(n_tokens * 4);
  size_t n = 0;
  for (int i = 0; i < q_per_seq; i++) /* interleave the sequences' tokens */
    for (size_t s = 0; s < n_seqs; s++)
      if (i < lens[s]) {
        int first = lens[s] - (q_per_seq < lens[s] ? q_per_seq : lens[s]);
        seq[n] = (int32_t)s, pos[n] = first + i, n++;
      }
  void *kc = rand_cache(t, kv_elems), *vc = rand_cache(t, kv_elems);
  /* Slots no token attends to hold NaN (beyond each sequence's length, before
   * the window of its first query token); table entries past the last block are -1. */
  size_t kv_dim = n_kv * hd;
  for (size_t s = 0; s < n_seqs; s++) {
    int first = lens[s] - (q_per_seq < lens[s] ? q_per_seq : lens[s]);
    long lo = window > 0 ? (long)first - (long)window + 1 : 0;
    for (size_t j = 0; j < max_blocks * bs; j++) {
      if ((long)j >= lo && j < (size_t)lens[s]) continue;
      size_t slot = (size_t)bt[s * max_blocks + j / bs] * bs + j % bs;
      for (size_t c = 0; c < kv_dim; c++) {
        if (t == QIAO_DEV_F32) {
          ((float *)kc)[slot * kv_dim + c] = NAN;
          ((float *)vc)[slot * kv_dim + c] = NAN;
        } else {
          ((uint16_t *)kc)[slot * kv_dim + c] = 0x7e00;
          ((uint16_t *)vc)[slot * kv_dim + c] = 0x7e00;
        }
      }
    }
    for (size_t b = ((size_t)lens[s] + bs - 1) / bs; b < max_blocks; b++)
      bt[s * max_blocks + b] = -1;
  }
  size_t qb = n_tokens * n_heads * hd * 4;
  float *q = rand_f32(qb / 4, 2.0f);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_attention_args a = {.struct_size = sizeof(a),
                                 .n_tokens = n_tokens,
                                 .n_heads = n_heads,
                                 .n_kv_heads = n_kv,
                                 .head_dim = hd,
                                 .n_seqs = n_seqs,
                                 .max_blocks_per_seq = max_blocks,
                                 .block_size = bs,
                                 .n_slots = n_slots,
                                 .window = window,
                                 .scale = 1.0f / sqrtf((float)hd),
                                 .cache_dtype = t,
                                 .q = up(D, q, qb),
                                 .k_cache = up(D, kc, cb),
                                 .v_cache = up(D, vc, cb),
                                 .block_table = up(D, bt, n_blocks * 4),
                                 .token_seq = up(D, seq, n_tokens * 4),
                                 .token_pos = up(D, pos, n_tokens * 4),
                                 .out = up(D, NULL, qb)};
    DEV_OK(D, D->api->attention(D->queue, &a));
    out[d] = malloc(qb);
    get(D, a.out, out[d], qb);
    dev_reset(D);
  }
  char what[160];
  label(what, sizeof(what), "attention %s heads=%zu/%zu head_dim=%zu block=%zu seqs=%zu window=%zu",
        dtype_name(t), n_heads, n_kv, hd, bs, n_seqs, window);
  compare_rows(what, out[0], out[1], n_tokens * n_heads, hd, TOL);
  free(bt), free(seq), free(pos), free(kc), free(vc), free(q), free(out[0]), free(out[1]);
}

/* ---- swiglu and add; alias: 0 = separate out, 1 = out is the first input, 2 = the second */
static void test_binary(int is_add, size_t n, int alias) {
  float *a0 = rand_f32(n, 6.0f), *b0 = rand_f32(n, 2.0f);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_ref ra = up(D, a0, n * 4), rb = up(D, b0, n * 4);
    qiao_dev_ref ro = alias == 1 ? ra : alias == 2 ? rb : up(D, NULL, n * 4);
    if (is_add) {
      qiao_dev_add_args a = {sizeof(a), n, ra, rb, ro};
      DEV_OK(D, D->api->add(D->queue, &a));
    } else {
      qiao_dev_swiglu_args a = {sizeof(a), n, ra, rb, ro};
      DEV_OK(D, D->api->swiglu(D->queue, &a));
    }
    out[d] = malloc(n * 4);
    get(D, ro, out[d], n * 4);
    dev_reset(D);
  }
  char what[64];
  label(what, sizeof(what), "%s n=%zu alias=%d", is_add ? "add" : "swiglu", n, alias);
  compare_rows(what, out[0], out[1], 1, n, TOL);
  free(a0), free(b0), free(out[0]), free(out[1]);
}

/* ---- argmax; ties 1: copies of the maximum at several places; 2: NaNs (at
 * index 0 and elsewhere; the last row all NaN), which never win */
static void test_argmax(size_t rows, size_t cols, int ties) {
  float *x = rand_f32(rows * cols, 10.0f);
  for (size_t r = 0; r < rows && ties == 1; r++) {
    size_t a = rnd() % cols, b = rnd() % cols;
    x[r * cols + a] = x[r * cols + b] = 100.0f + (float)(r % 2);
  }
  for (size_t r = 0; r < rows && ties == 2; r++) {
    x[r * cols] = NAN;
    x[r * cols + rnd() % cols] = NAN;
    for (size_t c = 0; c < cols && r == rows - 1; c++)
      x[r * cols + c] = NAN;
  }
  int32_t out[2][64];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_argmax_args a = {sizeof(a), rows, cols, up(D, x, rows * cols * 4),
                              up(D, NULL, rows * 4)};
    DEV_OK(D, D->api->argmax(D->queue, &a));
    get(D, a.out, out[d], rows * 4);
    dev_reset(D);
  }
  char what[64];
  label(what, sizeof(what), "argmax rows=%zu cols=%zu ties=%d", rows, cols, ties);
  compare_exact(what, out[0], out[1], rows * 4);
  free(x);
}

/* ---- moe_gate; ties: equal logits */
static void test_moe_gate(size_t n_tokens, size_t n_experts, size_t k, int normalize, int ties) {
  float *logits = rand_f32(n_tokens * n_experts, 4.0f);
  for (size_t t = 0; t < n_tokens && ties; t++)
    for (size_t e = 0; e < n_experts; e += 2)
      logits[t * n_experts + e] = (float)((e / 2) % 3);
  int32_t *ids[2];
  float *w[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_moe_gate_args a = {.struct_size = sizeof(a),
                                .n_tokens = n_tokens,
                                .n_experts = n_experts,
                                .k = k,
                                .normalize = (uint32_t)normalize,
                                .logits = up(D, logits, n_tokens * n_experts * 4),
                                .ids = up(D, NULL, n_tokens * k * 4),
                                .weights = up(D, NULL, n_tokens * k * 4)};
    DEV_OK(D, D->api->moe_gate(D->queue, &a));
    ids[d] = malloc(n_tokens * k * 4), w[d] = malloc(n_tokens * k * 4);
    get(D, a.ids, ids[d], n_tokens * k * 4);
    get(D, a.weights, w[d], n_tokens * k * 4);
    dev_reset(D);
  }
  char what[96];
  label(what, sizeof(what), "moe_gate tokens=%zu experts=%zu k=%zu normalize=%d ties=%d", n_tokens,
        n_experts, k, normalize, ties);
  compare_exact(what, ids[0], ids[1], n_tokens * k * 4);
  compare_rows(what, w[0], w[1], n_tokens, k, TOL);
  free(logits);
  for (int d = 0; d < 2; d++)
    free(ids[d]), free(w[d]);
}

/* ---- moe_combine */
static void test_moe_combine(size_t n_tokens, size_t k, size_t dim, int acc) {
  float *x = rand_f32(n_tokens * k * dim, 1.0f), *w = rand_f32(n_tokens * k, 1.0f);
  float *o0 = rand_f32(n_tokens * dim, 1.0f);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_moe_combine_args a = {.struct_size = sizeof(a),
                                   .n_tokens = n_tokens,
                                   .k = k,
                                   .dim = dim,
                                   .accumulate = (uint32_t)acc,
                                   .x = up(D, x, n_tokens * k * dim * 4),
                                   .weights = up(D, w, n_tokens * k * 4),
                                   .out = up(D, o0, n_tokens * dim * 4)};
    DEV_OK(D, D->api->moe_combine(D->queue, &a));
    out[d] = malloc(n_tokens * dim * 4);
    get(D, a.out, out[d], n_tokens * dim * 4);
    dev_reset(D);
  }
  char what[96];
  label(what, sizeof(what), "moe_combine tokens=%zu k=%zu dim=%zu acc=%d", n_tokens, k, dim, acc);
  compare_rows(what, out[0], out[1], n_tokens, dim, TOL);
  free(x), free(w), free(o0), free(out[0]), free(out[1]);
}

/* ---- (1.4) latent_write */
static void test_latent_write(qiao_dev_dtype t, size_t n_tokens, size_t L, size_t R,
                              size_t n_slots) {
  size_t row = L + R, es = t == QIAO_DEV_F32 ? 4 : 2, cb = n_slots * row * es;
  float *lat = rand_f32(n_tokens * L, 3.0f), *rope = rand_f32(n_tokens * R, 3.0f);
  void *c0 = rand_cache(t, n_slots * row);
  int32_t *slots = malloc(n_tokens * 4);
  for (size_t i = 0; i < n_tokens; i++)
    slots[i] = (int32_t)((i * 7 + 3) % n_slots); /* distinct */
  unsigned char *c[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_latent_write_args a = {.struct_size = sizeof(a),
                                    .n_tokens = n_tokens,
                                    .latent_dim = L,
                                    .rope_dim = R,
                                    .n_slots = n_slots,
                                    .cache_dtype = t,
                                    .latent = up(D, lat, n_tokens * L * 4),
                                    .rope = up(D, rope, n_tokens * R * 4),
                                    .slots = up(D, slots, n_tokens * 4),
                                    .cache = up(D, c0, cb)};
    DEV_OK(D, D->api->latent_write(D->queue, &a));
    c[d] = malloc(cb);
    get(D, a.cache, c[d], cb);
    dev_reset(D);
  }
  char what[96];
  label(what, sizeof(what), "latent_write %s tokens=%zu latent=%zu rope=%zu", dtype_name(t),
        n_tokens, L, R);
  compare_exact(what, c[0], c[1], cb);
  free(lat), free(rope), free(c0), free(slots), free(c[0]), free(c[1]);
}

/* ---- (1.4) attention_latent: sequences, queries, block table and NaN in
 * every slot no query attends to, as in test_attention; a cache row is
 * (latent_dim + rope_dim). */
static void test_attention_latent(qiao_dev_dtype t, size_t n_heads, size_t L, size_t R, size_t bs,
                                  size_t n_seqs, const int *lens, int q_per_seq, size_t window) {
  size_t max_len = 0, n_tokens = 0, row = L + R;
  for (size_t s = 0; s < n_seqs; s++) {
    if ((size_t)lens[s] > max_len) max_len = (size_t)lens[s];
    n_tokens += (size_t)(q_per_seq < lens[s] ? q_per_seq : lens[s]);
  }
  size_t max_blocks = (max_len + bs - 1) / bs + 1, n_blocks = n_seqs * max_blocks;
  size_t n_slots = n_blocks * bs, es = t == QIAO_DEV_F32 ? 4 : 2, cb = n_slots * row * es;
  int32_t *bt = malloc(n_blocks * 4);
  for (size_t i = 0; i < n_blocks; i++)
    bt[i] = (int32_t)i;
  for (size_t i = n_blocks - 1; i > 0; i--) { /* shuffle */
    size_t j = rnd() % (i + 1);
    int32_t tmp = bt[i];
    bt[i] = bt[j], bt[j] = tmp;
  }
  int32_t *seq = malloc(n_tokens * 4), *pos = malloc(n_tokens * 4);
  size_t n = 0;
  for (int i = 0; i < q_per_seq; i++)
    for (size_t s = 0; s < n_seqs; s++)
      if (i < lens[s]) {
        int first = lens[s] - (q_per_seq < lens[s] ? q_per_seq : lens[s]);
        seq[n] = (int32_t)s, pos[n] = first + i, n++;
      }
  void *cache = rand_cache(t, n_slots * row);
  for (size_t s = 0; s < n_seqs; s++) {
    int first = lens[s] - (q_per_seq < lens[s] ? q_per_seq : lens[s]);
    long lo = window > 0 ? (long)first - (long)window + 1 : 0;
    for (size_t j = 0; j < max_blocks * bs; j++) {
      if ((long)j >= lo && j < (size_t)lens[s]) continue;
      size_t slot = (size_t)bt[s * max_blocks + j / bs] * bs + j % bs;
      for (size_t c = 0; c < row; c++) {
        if (t == QIAO_DEV_F32)
          ((float *)cache)[slot * row + c] = NAN;
        else
          ((uint16_t *)cache)[slot * row + c] = 0x7e00;
      }
    }
    for (size_t b = ((size_t)lens[s] + bs - 1) / bs; b < max_blocks; b++)
      bt[s * max_blocks + b] = -1;
  }
  size_t qlb = n_tokens * n_heads * L * 4, qrb = n_tokens * n_heads * R * 4;
  float *ql = rand_f32(qlb / 4, 1.0f), *qr = rand_f32(qrb / 4, 2.0f);
  float *out[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_attention_latent_args a = {.struct_size = sizeof(a),
                                        .n_tokens = n_tokens,
                                        .n_heads = n_heads,
                                        .latent_dim = L,
                                        .rope_dim = R,
                                        .n_seqs = n_seqs,
                                        .max_blocks_per_seq = max_blocks,
                                        .block_size = bs,
                                        .n_slots = n_slots,
                                        .window = window,
                                        .scale = 1.0f / sqrtf((float)(L / 4 + R)),
                                        .cache_dtype = t,
                                        .q_latent = up(D, ql, qlb),
                                        .q_rope = up(D, qr, qrb),
                                        .cache = up(D, cache, cb),
                                        .block_table = up(D, bt, n_blocks * 4),
                                        .token_seq = up(D, seq, n_tokens * 4),
                                        .token_pos = up(D, pos, n_tokens * 4),
                                        .out = up(D, NULL, qlb)};
    DEV_OK(D, D->api->attention_latent(D->queue, &a));
    out[d] = malloc(qlb);
    get(D, a.out, out[d], qlb);
    dev_reset(D);
  }
  char what[160];
  label(what, sizeof(what),
        "attention_latent %s heads=%zu latent=%zu rope=%zu block=%zu seqs=%zu window=%zu",
        dtype_name(t), n_heads, L, R, bs, n_seqs, window);
  compare_rows(what, out[0], out[1], n_tokens * n_heads, L, TOL);
  free(bt), free(seq), free(pos), free(cache), free(ql), free(qr), free(out[0]), free(out[1]);
}

/* ---- (1.4) moe_route; ties: logits and bias that depend only on (e / 2) % 3,
 * so experts tie in pairs and groups of 4 or 6 tie with each other */
static void test_moe_route(size_t n_tokens, size_t n_experts, size_t k, uint32_t scoring,
                           uint32_t normalize, uint32_t n_groups, uint32_t topk_groups,
                           uint32_t group_score, int bias, float scale, int ties) {
  float *logits = rand_f32(n_tokens * n_experts, 4.0f), *b = rand_f32(n_experts, 0.5f);
  for (size_t e = 0; e < n_experts && ties; e++) {
    b[e] = 0.125f * (float)((e / 2) % 3);
    for (size_t t = 0; t < n_tokens; t++)
      logits[t * n_experts + e] = (float)((e / 2) % 3) - (float)(t % 2);
  }
  size_t ob = n_tokens * k * 4;
  int32_t *ids[2];
  float *w[2];
  for (int d = 0; d < 2; d++) {
    dev *D = &devs[d];
    qiao_dev_moe_route_args a = {.struct_size = sizeof(a),
                                 .n_tokens = n_tokens,
                                 .n_experts = n_experts,
                                 .k = k,
                                 .scoring = scoring,
                                 .normalize = normalize,
                                 .n_groups = n_groups,
                                 .topk_groups = topk_groups,
                                 .group_score = group_score,
                                 .scale = scale,
                                 .logits = up(D, logits, n_tokens * n_experts * 4),
                                 .ids = up(D, NULL, ob),
                                 .weights = up(D, NULL, ob)};
    if (bias) a.bias = up(D, b, n_experts * 4);
    DEV_OK(D, D->api->moe_route(D->queue, &a));
    ids[d] = malloc(ob), w[d] = malloc(ob);
    get(D, a.ids, ids[d], ob);
    get(D, a.weights, w[d], ob);
    dev_reset(D);
  }
  char what[192];
  label(what, sizeof(what),
        "moe_route tokens=%zu experts=%zu k=%zu %s normalize=%u groups=%u/%u %s bias=%d "
        "scale=%g ties=%d",
        n_tokens, n_experts, k, scoring == QIAO_DEV_MOE_SCORE_SIGMOID ? "sigmoid" : "softmax",
        normalize, topk_groups, n_groups,
        group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM ? "top2_sum" : "max", bias, (double)scale, ties);
  compare_exact(what, ids[0], ids[1], ob);
  compare_rows(what, w[0], w[1], n_tokens, k, TOL);
  free(logits), free(b);
  for (int d = 0; d < 2; d++)
    free(ids[d]), free(w[d]);
}

/* QIAO_TEST_ONLY=<op> runs one op's cases (for debugging). */
static int want(const char *op) {
  const char *only = getenv("QIAO_TEST_ONLY");
  return only == NULL || *only == '\0' || strcmp(only, op) == 0;
}

int main(void) {
  if (!dev_open_api(&devs[0], "opencl", load_plugin(QIAO_OPENCL_PLUGIN))) return 1;
  if (!dev_open_api(&devs[1], "cpu", qiao_cpu_get_api())) return 1;

  static const qiao_dev_dtype wtypes[] = {QIAO_DEV_F32, QIAO_DEV_F16, QIAO_DEV_BF16, QIAO_DEV_Q8_0,
                                          QIAO_DEV_Q4_0};
  for (int i = 0; i < 5; i++) {
    qiao_dev_dtype t = wtypes[i];
    int quant = t == QIAO_DEV_Q8_0 || t == QIAO_DEV_Q4_0;
    if (want("embed")) test_embed(t, 1, 5, 32);
    if (want("embed")) test_embed(t, 7, 300, 96);
    if (want("matmul")) test_matmul(t, 1, 32, 1, 0, 0);
    if (want("matmul")) test_matmul(t, 1, 64, 37, 1, 0);
    if (want("matmul")) test_matmul(t, 5, 96, 33, 0, 1);
    if (want("matmul")) test_matmul(t, 9, 128, 17, 1, 1);
    if (want("matmul")) test_matmul(t, 3, 4096, 5, 0, 0);          /* long rows */
    if (!quant && want("matmul")) test_matmul(t, 6, 45, 11, 1, 0); /* k not a multiple of 8 */
    if (want("matmul_experts")) test_experts(t, 1, 1, 1, 32, 3, 0);
    if (want("matmul_experts")) test_experts(t, 3, 2, 4, 64, 9, 0);
    if (want("matmul_experts")) test_experts(t, 4, 3, 5, 96, 7, 1);
  }
  if (want("rmsnorm")) test_rmsnorm(1, 1, 0);
  if (want("rmsnorm")) test_rmsnorm(3, 64, 0);
  if (want("rmsnorm")) test_rmsnorm(4, 300, 1);
  if (want("rmsnorm")) test_rmsnorm(2, 5000, 0);
  for (int style = 0; style < 2; style++) {
    if (want("rope")) test_rope(1, 1, 2, 2, (qiao_dev_rope_style)style);
    if (want("rope")) test_rope(3, 4, 16, 16, (qiao_dev_rope_style)style);
    if (want("rope")) test_rope(5, 3, 64, 32, (qiao_dev_rope_style)style); /* partial rotation */
    if (want("rope")) test_rope(2, 2, 128, 128, (qiao_dev_rope_style)style);
  }
  static const qiao_dev_dtype ctypes[] = {QIAO_DEV_F32, QIAO_DEV_F16};
  for (int i = 0; i < 2; i++) {
    qiao_dev_dtype t = ctypes[i];
    if (want("kv_write")) test_kv_write(t, 1, 8, 4);
    if (want("kv_write")) test_kv_write(t, 5, 24, 16);
    static const int one[] = {1}, lens3[] = {5, 17, 9}, lens2[] = {150, 70},
                     lens4[] = {3, 33, 1, 12}, lens5[] = {70, 9};
    if (want("attention")) test_attention(t, 1, 1, 16, 4, 1, one, 1, 0);   /* the first token */
    if (want("attention")) test_attention(t, 8, 2, 16, 4, 3, lens3, 4, 0); /* GQA, prefill chunks */
    if (want("attention"))
      test_attention(t, 4, 4, 80, 16, 2, lens2, 2, 0); /* > one work-group of keys */
    if (want("attention")) test_attention(t, 6, 3, 32, 8, 4, lens4, 3, 5);   /* sliding window */
    if (want("attention")) test_attention(t, 2, 1, 64, 1, 2, lens5, 1, 100); /* block_size 1 */
  }
  for (int alias = 0; alias < 3; alias++) {
    if (want("swiglu")) test_binary(0, 1, alias);
    if (want("swiglu")) test_binary(0, 1000, alias);
    if (want("add")) test_binary(1, 1, alias);
    if (want("add")) test_binary(1, 777, alias);
  }
  if (want("argmax")) test_argmax(1, 1, 0);
  if (want("argmax")) test_argmax(3, 512, 0);
  if (want("argmax")) test_argmax(5, 3000, 1);
  if (want("argmax")) test_argmax(2, 7, 1);
  if (want("argmax")) test_argmax(4, 300, 2);
  if (want("moe_gate")) test_moe_gate(1, 1, 1, 0, 0);
  if (want("moe_gate")) test_moe_gate(5, 8, 2, 1, 0);
  if (want("moe_gate")) test_moe_gate(4, 8, 2, 0, 0);
  if (want("moe_gate")) test_moe_gate(3, 60, 4, 1, 0);
  if (want("moe_gate")) test_moe_gate(3, 16, 5, 1, 1);
  if (want("moe_gate")) test_moe_gate(2, 16, 16, 0, 1);
  if (want("moe_combine")) test_moe_combine(1, 1, 1, 0);
  if (want("moe_combine")) test_moe_combine(3, 2, 64, 1);
  if (want("moe_combine")) test_moe_combine(4, 8, 100, 0);

  /* (1.4) */
  const qiao_dev_dtype F8 = QIAO_DEV_F8_E4M3_B128; /* rows of 128-element blocks */
  if (want("embed")) test_embed(F8, 1, 5, 128);
  if (want("embed")) test_embed(F8, 7, 300, 384);
  if (want("matmul")) test_matmul(F8, 1, 128, 1, 0, 0);
  if (want("matmul")) test_matmul(F8, 5, 256, 33, 1, 1);
  if (want("matmul")) test_matmul(F8, 9, 384, 17, 0, 1);
  if (want("matmul")) test_matmul(F8, 3, 4096, 5, 1, 0); /* long rows */
  if (want("matmul_experts")) test_experts(F8, 1, 1, 1, 128, 3, 0);
  if (want("matmul_experts")) test_experts(F8, 3, 2, 4, 256, 9, 0);
  if (want("matmul_experts")) test_experts(F8, 4, 3, 5, 128, 7, 1);
  for (int i = 0; i < 2; i++) {
    qiao_dev_dtype t = ctypes[i];
    static const int one[] = {1}, lens3[] = {5, 17, 9}, lens2[] = {150, 70},
                     lens4[] = {3, 33, 1, 12};
    if (want("latent_write")) test_latent_write(t, 1, 32, 8, 4);
    if (want("latent_write")) test_latent_write(t, 5, 512, 64, 16); /* DeepSeek's row */
    if (want("attention_latent")) test_attention_latent(t, 1, 32, 8, 4, 1, one, 1, 0);
    if (want("attention_latent")) test_attention_latent(t, 4, 32, 8, 4, 3, lens3, 4, 0);
    if (want("attention_latent"))
      test_attention_latent(t, 3, 512, 64, 16, 2, lens2, 2, 0); /* > one work-group of keys */
    if (want("attention_latent"))
      test_attention_latent(t, 2, 40, 24, 8, 4, lens4, 3, 5); /* window */
  }
  const uint32_t SM = QIAO_DEV_MOE_SCORE_SOFTMAX, SG = QIAO_DEV_MOE_SCORE_SIGMOID;
  const uint32_t MAX = QIAO_DEV_MOE_GROUP_MAX, TOP2 = QIAO_DEV_MOE_GROUP_TOP2_SUM;
  if (want("moe_route")) test_moe_route(1, 1, 1, SM, 0, 0, 0, MAX, 0, 1.0f, 0);
  if (want("moe_route")) test_moe_route(5, 16, 4, SM, 0, 0, 0, MAX, 0, 1.0f, 0); /* V2 greedy */
  if (want("moe_route"))
    test_moe_route(4, 64, 6, SM, 0, 8, 3, MAX, 0, 16.0f, 0); /* V2 group-limited */
  if (want("moe_route")) test_moe_route(4, 256, 8, SG, 1, 8, 4, TOP2, 1, 2.5f, 0); /* V3 */
  if (want("moe_route")) test_moe_route(3, 32, 4, SG, 1, 1, 1, MAX, 1, 1.0f, 0);   /* n_groups 1 */
  if (want("moe_route")) test_moe_route(2, 24, 6, SG, 0, 4, 2, TOP2, 1, 1.0f, 1);  /* ties */
  if (want("moe_route")) test_moe_route(2, 24, 5, SM, 1, 6, 2, MAX, 0, 1.0f, 1);   /* ties */
  if (want("moe_route")) test_moe_route(3, 16, 16, SM, 1, 0, 0, MAX, 1, 1.0f, 1); /* every expert */

  dev_close(&devs[0]);
  dev_close(&devs[1]);
  TEST_END();
}
