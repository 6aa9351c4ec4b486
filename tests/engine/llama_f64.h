/* A float64 reference forward pass of a Hugging Face LLaMA/Mistral model,
 * written for clarity, not speed, and independent of qiao: it reads
 * config.json and model.safetensors (F32) itself, in Hugging Face's layout
 * (rows [out, in], rotate-half RoPE on the unpermuted q/k rows), and
 * computes every position of one sequence with causal attention limited to
 * the last `window` keys (window 0: all): query i sees keys j with
 * i - window < j <= i, as transformers' Mistral masks. Header-only.
 *
 *   llama_f64 m;
 *   if (llama_f64_load(&m, dir) != 0) fail;
 *   llama_f64_forward(&m, ids, n, window, logits, hidden); // logits [n, vocab]
 * (hidden: NULL, or [n, dim] for the final normed states the output matrix
 * multiplies)
 *   llama_f64_free(&m); */
#ifndef QIAO_TEST_LLAMA_F64_H
#define QIAO_TEST_LLAMA_F64_H

#include <json-c/json.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

typedef struct llama_f64 {
  int dim, hidden, n_layers, n_heads, n_kv_heads, head_dim, vocab;
  double eps, theta;
  char *file; /* model.safetensors, whole */
  size_t file_len;
  json_object *header; /* the safetensors header */
  size_t data_start;
} llama_f64;

static int f64_json_int(json_object *o, const char *key, int fallback) {
  json_object *v = NULL;
  return json_object_object_get_ex(o, key, &v) && v ? json_object_get_int(v) : fallback;
}

static double f64_json_double(json_object *o, const char *key, double fallback) {
  json_object *v = NULL;
  return json_object_object_get_ex(o, key, &v) && v ? json_object_get_double(v) : fallback;
}

/* Reads the hyperparameters and maps the weights; 0 on success. */
static inline int llama_f64_load(llama_f64 *m, const char *dir) {
  memset(m, 0, sizeof(*m));
  char path[8192];
  snprintf(path, sizeof(path), "%s/config.json", dir);
  char *text = test_read_file(path, NULL);
  json_object *c = json_tokener_parse(text);
  free(text);
  if (c == NULL) return -1;
  m->dim = f64_json_int(c, "hidden_size", 0);
  m->hidden = f64_json_int(c, "intermediate_size", 0);
  m->n_layers = f64_json_int(c, "num_hidden_layers", 0);
  m->n_heads = f64_json_int(c, "num_attention_heads", 0);
  m->n_kv_heads = f64_json_int(c, "num_key_value_heads", m->n_heads);
  m->head_dim = f64_json_int(c, "head_dim", m->n_heads ? m->dim / m->n_heads : 0);
  m->vocab = f64_json_int(c, "vocab_size", 0);
  m->eps = f64_json_double(c, "rms_norm_eps", 1e-6);
  json_object *rope = NULL;
  m->theta = json_object_object_get_ex(c, "rope_parameters", &rope)
                 ? f64_json_double(rope, "rope_theta", 10000.0)
                 : f64_json_double(c, "rope_theta", 10000.0);
  json_object_put(c);
  snprintf(path, sizeof(path), "%s/model.safetensors", dir);
  m->file = test_read_file(path, &m->file_len);
  uint64_t n = 0;
  memcpy(&n, m->file, 8); /* little-endian host */
  if (m->file_len < 8 || n > m->file_len - 8) return -1;
  char *json = malloc(n + 1);
  memcpy(json, m->file + 8, n);
  json[n] = '\0';
  m->header = json_tokener_parse(json);
  free(json);
  m->data_start = 8 + n;
  return m->header && m->dim && m->n_layers && m->n_heads && m->vocab ? 0 : -1;
}

static inline void llama_f64_free(llama_f64 *m) {
  json_object_put(m->header);
  free(m->file);
}

/* The F32 tensor `name` as doubles (malloc'd), checking its element count. */
static double *f64_tensor(const llama_f64 *m, const char *name, size_t want) {
  json_object *t = NULL, *offs = NULL, *dtype = NULL;
  if (!json_object_object_get_ex(m->header, name, &t) ||
      !json_object_object_get_ex(t, "data_offsets", &offs) ||
      !json_object_object_get_ex(t, "dtype", &dtype) ||
      strcmp(json_object_get_string(dtype), "F32") != 0) {
    fprintf(stderr, "llama_f64: no F32 tensor %s\n", name);
    exit(1);
  }
  size_t begin = (size_t)json_object_get_int64(json_object_array_get_idx(offs, 0));
  size_t end = (size_t)json_object_get_int64(json_object_array_get_idx(offs, 1));
  if (end - begin != want * 4 || m->data_start + end > m->file_len) {
    fprintf(stderr, "llama_f64: %s has %zu bytes, %zu expected\n", name, end - begin, want * 4);
    exit(1);
  }
  double *out = malloc(want * sizeof(double));
  for (size_t i = 0; i < want; i++) {
    float f;
    memcpy(&f, m->file + m->data_start + begin + 4 * i, 4);
    out[i] = f;
  }
  return out;
}

static double *f64_layer_tensor(const llama_f64 *m, int layer, const char *what, size_t want) {
  char name[256];
  snprintf(name, sizeof(name), "model.layers.%d.%s.weight", layer, what);
  return f64_tensor(m, name, want);
}

/* out[r] = sum_c w[r][c] x[c], w of `rows` rows of `cols`. */
static void f64_matvec(const double *w, const double *x, double *out, int rows, int cols) {
  for (int r = 0; r < rows; r++) {
    double s = 0;
    for (int c = 0; c < cols; c++)
      s += w[(size_t)r * cols + c] * x[c];
    out[r] = s;
  }
}

static void f64_rmsnorm(const double *x, const double *w, double *out, int n, double eps) {
  double ss = 0;
  for (int i = 0; i < n; i++)
    ss += x[i] * x[i];
  double scale = 1.0 / sqrt(ss / n + eps);
  for (int i = 0; i < n; i++)
    out[i] = x[i] * scale * w[i];
}

/* Rotate-half RoPE on one head of `hd` values at position `pos`. */
static void f64_rope(double *v, int hd, int pos, double theta) {
  for (int i = 0; i < hd / 2; i++) {
    double angle = pos * pow(theta, -2.0 * i / hd), c = cos(angle), s = sin(angle);
    double a = v[i], b = v[i + hd / 2];
    v[i] = a * c - b * s;
    v[i + hd / 2] = b * c + a * s;
  }
}

/* Logits [n, vocab] of every position of ids[0..n), and, when `hidden` is
 * not NULL, the final normed states [n, dim]. */
static inline void llama_f64_forward(const llama_f64 *m, const int32_t *ids, int n, int window,
                                     float *logits, double *hidden) {
  int D = m->dim, H = m->hidden, hd = m->head_dim, nh = m->n_heads, nkv = m->n_kv_heads;
  int qd = nh * hd, kvd = nkv * hd;
  double *h = calloc((size_t)n * D, sizeof(double));      /* [n, D] residual stream */
  double *x = malloc(sizeof(double) * (D > H ? D : H));   /* [D] normed */
  double *q = malloc(sizeof(double) * (size_t)n * qd);    /* [n, qd] */
  double *k = malloc(sizeof(double) * (size_t)n * kvd);   /* [n, kvd] */
  double *v = malloc(sizeof(double) * (size_t)n * kvd);   /* [n, kvd] */
  double *att = malloc(sizeof(double) * (size_t)n * qd);  /* [n, qd] */
  double *tmp = malloc(sizeof(double) * (D > H ? D : H)); /* [max(D, H)] */
  double *g = malloc(sizeof(double) * H), *u = malloc(sizeof(double) * H);
  double *score = malloc(sizeof(double) * n);

  double *embed = f64_tensor(m, "model.embed_tokens.weight", (size_t)m->vocab * D);
  for (int t = 0; t < n; t++)
    memcpy(h + (size_t)t * D, embed + (size_t)ids[t] * D, D * sizeof(double));
  free(embed);
  for (int l = 0; l < m->n_layers; l++) {
    double *wn1 = f64_layer_tensor(m, l, "input_layernorm", D);
    double *wq = f64_layer_tensor(m, l, "self_attn.q_proj", (size_t)qd * D);
    double *wk = f64_layer_tensor(m, l, "self_attn.k_proj", (size_t)kvd * D);
    double *wv = f64_layer_tensor(m, l, "self_attn.v_proj", (size_t)kvd * D);
    double *wo = f64_layer_tensor(m, l, "self_attn.o_proj", (size_t)D * qd);
    double *wn2 = f64_layer_tensor(m, l, "post_attention_layernorm", D);
    double *wg = f64_layer_tensor(m, l, "mlp.gate_proj", (size_t)H * D);
    double *wu = f64_layer_tensor(m, l, "mlp.up_proj", (size_t)H * D);
    double *wd = f64_layer_tensor(m, l, "mlp.down_proj", (size_t)D * H);
    for (int t = 0; t < n; t++) {
      f64_rmsnorm(h + (size_t)t * D, wn1, x, D, m->eps);
      f64_matvec(wq, x, q + (size_t)t * qd, qd, D);
      f64_matvec(wk, x, k + (size_t)t * kvd, kvd, D);
      f64_matvec(wv, x, v + (size_t)t * kvd, kvd, D);
      for (int a = 0; a < nh; a++)
        f64_rope(q + (size_t)t * qd + a * hd, hd, t, m->theta);
      for (int a = 0; a < nkv; a++)
        f64_rope(k + (size_t)t * kvd + a * hd, hd, t, m->theta);
    }
    /* attention: query t, head a, sees keys j in (t - window, t] of KV head
     * a / (nh / nkv) */
    for (int t = 0; t < n; t++)
      for (int a = 0; a < nh; a++) {
        int kv = a / (nh / nkv), lo = window > 0 && t + 1 > window ? t + 1 - window : 0;
        const double *qa = q + (size_t)t * qd + a * hd;
        double mx = -INFINITY, sum = 0;
        for (int j = lo; j <= t; j++) {
          double s = 0;
          for (int i = 0; i < hd; i++)
            s += qa[i] * k[(size_t)j * kvd + kv * hd + i];
          score[j] = s / sqrt((double)hd);
          if (score[j] > mx) mx = score[j];
        }
        for (int j = lo; j <= t; j++)
          sum += score[j] = exp(score[j] - mx);
        double *o = att + (size_t)t * qd + a * hd;
        for (int i = 0; i < hd; i++) {
          double s = 0;
          for (int j = lo; j <= t; j++)
            s += score[j] / sum * v[(size_t)j * kvd + kv * hd + i];
          o[i] = s;
        }
      }
    for (int t = 0; t < n; t++) {
      double *ht = h + (size_t)t * D;
      f64_matvec(wo, att + (size_t)t * qd, tmp, D, qd);
      for (int i = 0; i < D; i++)
        ht[i] += tmp[i];
      f64_rmsnorm(ht, wn2, x, D, m->eps);
      f64_matvec(wg, x, g, H, D);
      f64_matvec(wu, x, u, H, D);
      for (int i = 0; i < H; i++)
        g[i] = g[i] / (1.0 + exp(-g[i])) * u[i]; /* silu(gate) * up */
      f64_matvec(wd, g, tmp, D, H);
      for (int i = 0; i < D; i++)
        ht[i] += tmp[i];
    }
    free(wn1), free(wq), free(wk), free(wv), free(wo), free(wn2), free(wg), free(wu), free(wd);
  }
  double *wn = f64_tensor(m, "model.norm.weight", D);
  json_object *unused = NULL;
  double *head = json_object_object_get_ex(m->header, "lm_head.weight", &unused)
                     ? f64_tensor(m, "lm_head.weight", (size_t)m->vocab * D)
                     : f64_tensor(m, "model.embed_tokens.weight", (size_t)m->vocab * D);
  double *row = malloc(sizeof(double) * m->vocab);
  for (int t = 0; t < n; t++) {
    f64_rmsnorm(h + (size_t)t * D, wn, x, D, m->eps);
    if (hidden) memcpy(hidden + (size_t)t * D, x, D * sizeof(double));
    f64_matvec(head, x, row, m->vocab, D);
    for (int i = 0; i < m->vocab; i++)
      logits[(size_t)t * m->vocab + i] = (float)row[i];
  }
  free(row), free(head), free(wn);
  free(h), free(x), free(q), free(k), free(v), free(att), free(tmp), free(g), free(u), free(score);
}

#endif
