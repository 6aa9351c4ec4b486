/* Helpers of the engine tests: reference JSON, logits comparison, greedy
 * generation through the KV cache. Header-only. */
#ifndef QIAO_ENGINE_TEST_UTIL_H
#define QIAO_ENGINE_TEST_UTIL_H

#include <json-c/json.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "qiao/engine.h"
#include "test_util.h"

/* Reads an int array field of a reference.json; returns the count. */
static inline size_t ref_ids(const char *json_path, const char *field, int32_t *out, size_t cap) {
  char *text = test_read_file(json_path, NULL);
  json_object *root = json_tokener_parse(text);
  free(text);
  json_object *arr = NULL;
  size_t n = 0;
  if (root && json_object_object_get_ex(root, field, &arr)) {
    n = json_object_array_length(arr);
    if (n > cap) n = cap;
    for (size_t i = 0; i < n; i++)
      out[i] = json_object_get_int(json_object_array_get_idx(arr, i));
  }
  json_object_put(root);
  return n;
}

/* ||a - b|| / ||b|| over n floats, in double. */
static inline double rel_l2(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Logits of every position of `ids` in one sequence (one forward call). */
static inline qiao_status *all_logits(qiao_engine *e, const int32_t *ids, size_t n, float *out) {
  if (n > 512) return qiao_engine_forward(e, NULL, NULL, NULL); /* an error: too long here */
  int32_t seq = -1;
  qiao_status *st = qiao_engine_seq_create(e, &seq);
  if (st) return st;
  int32_t seqs[512], pos[512];
  uint8_t want[512];
  for (size_t i = 0; i < n; i++) {
    seqs[i] = seq;
    pos[i] = (int32_t)i;
    want[i] = 1;
  }
  qiao_batch b = {n, ids, seqs, pos, want};
  st = qiao_engine_forward(e, &b, out, NULL);
  qiao_engine_seq_free(e, seq);
  return st;
}

/* Greedy: prefill the prompt, then one token per call through the cache;
 * the argmax is computed on the device. */
static inline qiao_status *greedy(qiao_engine *e, const int32_t *prompt, size_t n_prompt,
                                  int32_t *out, size_t n_out) {
  if (n_prompt > 512) return qiao_engine_forward(e, NULL, NULL, NULL); /* too long here */
  int32_t seq = -1;
  qiao_status *st = qiao_engine_seq_create(e, &seq);
  if (st) return st;
  int32_t seqs[512], pos[512], next = 0;
  for (size_t i = 0; i < n_prompt; i++) {
    seqs[i] = seq;
    pos[i] = (int32_t)i;
  }
  qiao_batch b = {n_prompt, prompt, seqs, pos, NULL};
  st = qiao_engine_forward(e, &b, NULL, &next);
  for (size_t i = 0; st == NULL && i < n_out; i++) {
    out[i] = next;
    if (i + 1 == n_out) break;
    int32_t p = (int32_t)(n_prompt + i), token = next;
    qiao_batch one = {1, &token, &seq, &p, NULL};
    st = qiao_engine_forward(e, &one, NULL, &next);
  }
  qiao_engine_seq_free(e, seq);
  return st;
}

/* Runs a shell command; says on stderr which one failed. */
static inline int run_command(const char *cmd) {
  int rc = system(cmd);
  if (rc != 0) fprintf(stderr, "failed (%d): %s\n", rc, cmd);
  return rc;
}

/* Logits of every prompt position (max 64) and n_ids greedy ids of model m,
 * with exact activations: what a converted model is compared on. */
static inline void evaluate_exact(qiao_model *m, const int32_t *prompt, size_t n_prompt,
                                  float *logits, int32_t *ids, size_t n_ids) {
  qiao_engine *e = NULL;
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.max_context = 64;
  o.exact_matmul = true;
  CHECK_OK(qiao_engine_create(m, &o, &e));
  if (e == NULL) return;
  CHECK_OK(all_logits(e, prompt, n_prompt, logits));
  CHECK_OK(greedy(e, prompt, n_prompt, ids, n_ids));
  qiao_engine_destroy(e);
}

#endif
