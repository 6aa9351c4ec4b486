/* The model level (docs/spec/device-abi.md §12.3): the tiny reference models
 * of real architectures and stories260K, end to end through the engine on the
 * target backend: prompt logits and the greedy continuation against the
 * transformers references (for stories260K, transformers' greedy ids equal
 * llama2.c's: shared/README.md). The CPU backend's run is recorded beside
 * them for comparison; it decides nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/harness.h"
#include "core/status_internal.h"
#include "qiao/engine.h"
#include "qiao/model.h"

/* Max row error of the prompt logits against transformers (float64, or float32
 * for qwen3_moe): what a correct f32 engine on a conforming backend meets. */
#define MODEL_LOGITS_BUDGET 1e-3
#define GREEDY_STEPS 24

typedef struct model_ref {
  const char *name, *model_dir, *reference_json, *logits;
} model_ref;

static const model_ref models[] = {
    {"stories260K", "models/stories260K/hf", "reference/stories260K/hf_reference.json",
     "reference/stories260K/hf_logits.f32"},
    {"tiny/llama2", "reference/tiny/llama2", "reference/tiny/llama2/reference.json",
     "reference/tiny/llama2/logits.f32"},
    {"tiny/llama3", "reference/tiny/llama3", "reference/tiny/llama3/reference.json",
     "reference/tiny/llama3/logits.f32"},
    {"tiny/qwen2", "reference/tiny/qwen2", "reference/tiny/qwen2/reference.json",
     "reference/tiny/qwen2/logits.f32"},
    {"tiny/qwen3", "reference/tiny/qwen3", "reference/tiny/qwen3/reference.json",
     "reference/tiny/qwen3/logits.f32"},
    {"tiny/qwen3_moe", "reference/tiny/qwen3_moe", "reference/tiny/qwen3_moe/reference.json",
     "reference/tiny/qwen3_moe/logits.f32"},
};

static qiao_status *read_all(const char *path, char **out, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return qiao__error(QIAO_NOT_FOUND, "%s: cannot open", path);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 65536;
      if (cap > ((size_t)64 << 20)) {
        free(buf);
        fclose(f);
        return qiao__error(QIAO_LIMIT, "%s: larger than 64 MiB", path);
      }
      char *grown = realloc(buf, cap + 1);
      if (grown == NULL) {
        free(buf);
        fclose(f);
        return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", path);
      }
      buf = grown;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) break;
  }
  fclose(f);
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return NULL;
}

/* The "prompt" and "greedy" id arrays of a reference.json. */
static qiao_status *read_ids(const char *path, const char *key, int32_t **out, size_t *out_n) {
  char *text = NULL;
  size_t len = 0;
  QIAO__TRY(read_all(path, &text, &len));
  json_tokener *tok = json_tokener_new_ex(8);
  json_object *root = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
  if (tok) json_tokener_free(tok);
  free(text);
  json_object *arr = NULL;
  if (root == NULL || !json_object_object_get_ex(root, key, &arr) ||
      !json_object_is_type(arr, json_type_array)) {
    json_object_put(root);
    return qiao__error(QIAO_MALFORMED, "%s: field %s: missing or not an array", path, key);
  }
  size_t n = json_object_array_length(arr);
  int32_t *ids = malloc((n ? n : 1) * sizeof(*ids));
  for (size_t i = 0; ids && i < n; i++)
    ids[i] = (int32_t)json_object_get_int(json_object_array_get_idx(arr, i));
  json_object_put(root);
  if (ids == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", path);
  *out = ids;
  *out_n = n;
  return NULL;
}

/* Runs the prompt (all positions wanted) then GREEDY_STEPS greedy decode
 * steps; with `fallback`, ops the backend does not claim run on the CPU
 * backend (qiao_engine_options.allow_fallback, `--allow-fallback`). */
static qiao_status *run_model(const qiao_model *model, const char *backend, bool fallback,
                              const int32_t *prompt, size_t n_prompt, uint32_t vocab, float *logits,
                              int32_t *greedy) {
  qiao_engine_options o = {.struct_size = sizeof(o),
                           .backend = backend,
                           .max_context = (uint32_t)(n_prompt + GREEDY_STEPS + 8),
                           .max_seqs = 1,
                           .allow_fallback = fallback};
  qiao_engine *engine = NULL;
  QIAO__TRY(qiao_engine_create(model, &o, &engine));
  int32_t seq = 0;
  qiao_status *st = qiao_engine_seq_create(engine, &seq);
  int32_t *seqs = calloc(n_prompt, sizeof(int32_t)), *pos = calloc(n_prompt, sizeof(int32_t));
  uint8_t *want = calloc(n_prompt, 1);
  int32_t *argmax = calloc(n_prompt, sizeof(int32_t));
  if (st == NULL && (!seqs || !pos || !want || !argmax))
    st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  if (st == NULL) {
    for (size_t i = 0; i < n_prompt; i++)
      seqs[i] = seq, pos[i] = (int32_t)i, want[i] = 1;
    qiao_batch b = {n_prompt, prompt, seqs, pos, want};
    st = qiao_engine_forward(engine, &b, logits, argmax);
  }
  int32_t next = argmax ? argmax[n_prompt - 1] : 0;
  for (int s = 0; st == NULL && s < GREEDY_STEPS; s++) {
    greedy[s] = next;
    int32_t p = (int32_t)(n_prompt + (size_t)s);
    qiao_batch b = {1, &next, &seq, &p, NULL};
    int32_t id = 0;
    st = qiao_engine_forward(engine, &b, NULL, &id);
    next = id;
  }
  (void)vocab;
  free(seqs);
  free(pos);
  free(want);
  free(argmax);
  qiao_engine_destroy(engine);
  return st;
}

static void model_check(qiao_conformance_report *report, const char *backend, const char *shared,
                        const model_ref *m) {
  char dir[4096], refpath[4096], logitspath[4096];
  snprintf(dir, sizeof(dir), "%s/%s", shared, m->model_dir);
  snprintf(refpath, sizeof(refpath), "%s/%s", shared, m->reference_json);
  snprintf(logitspath, sizeof(logitspath), "%s/%s", shared, m->logits);
  json_object *j = json_object_new_object();
  json_object_array_add(report->models, j);
  json_object_object_add(j, "model", json_object_new_string(m->name));
  report->area_models.checks++;
  qiao__cf_progress(report, "models: %s", m->name);

  int32_t *prompt = NULL, *hf_greedy = NULL;
  size_t n_prompt = 0, n_hf = 0, ref_len = 0;
  char *ref_logits = NULL;
  qiao_model *model = NULL;
  float *logits = NULL, *cpu_logits = NULL;
  int32_t greedy[GREEDY_STEPS] = {0}, cpu_greedy[GREEDY_STEPS] = {0};
  qiao_hparams hp;
  qiao_status *st = read_ids(refpath, "prompt", &prompt, &n_prompt);
  if (st == NULL) st = read_ids(refpath, "greedy", &hf_greedy, &n_hf);
  if (st == NULL) st = read_all(logitspath, &ref_logits, &ref_len);
  if (st == NULL) st = qiao_model_open(dir, NULL, &model);
  if (st == NULL) st = qiao_model_get_hparams(model, &hp);
  if (st == NULL && (n_prompt == 0 || ref_len != n_prompt * hp.vocab_size * sizeof(float)))
    st = qiao__error(QIAO_MALFORMED, "%s: %zu bytes, expected %zu prompt positions x vocab %u",
                     logitspath, ref_len, n_prompt, hp.vocab_size);
  if (st == NULL) {
    logits = malloc(n_prompt * hp.vocab_size * sizeof(float));
    cpu_logits = malloc(n_prompt * hp.vocab_size * sizeof(float));
    if (!logits || !cpu_logits) st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  }
  if (st == NULL)
    st = qiao__annotate(
        run_model(model, "cpu", false, prompt, n_prompt, hp.vocab_size, cpu_logits, cpu_greedy),
        "the reference (cpu) engine");
  if (st == NULL)
    st = run_model(model, backend, false, prompt, n_prompt, hp.vocab_size, logits, greedy);
  /* A model that needs an op the backend does not claim is skipped, not
   * failed (§12.3): the engine refuses it with QIAO_UNSUPPORTED naming the
   * op. It is run again with fallback (those ops on the CPU backend), which
   * still checks the backend's claimed ops and transfers inside a model. */
  bool fallback = false;
  if (st != NULL && qiao_status_code(st) == QIAO_UNSUPPORTED &&
      strstr(qiao_status_message(st), "does not support") != NULL) {
    json_object_object_add(j, "skipped", json_object_new_string(qiao_status_message(st)));
    qiao__cf_progress(report, "models: %s: skipped (%s); run again with fallback", m->name,
                      qiao_status_message(st));
    report->models_skipped++;
    qiao_status_free(st);
    fallback = true;
    st = run_model(model, backend, true, prompt, n_prompt, hp.vocab_size, logits, greedy);
  }
  json_object_object_add(j, "fallback", json_object_new_boolean(fallback));
  if (st != NULL) {
    json_object_object_add(j, "result", json_object_new_string("fail"));
    json_object_object_add(j, "error", json_object_new_string(qiao_status_message(st)));
    qiao__cf_fail(report, &report->area_models, "model %s%s: %s", m->name,
                  fallback ? " (with fallback)" : "", qiao_status_message(st));
  } else {
    float *ref = malloc(ref_len);
    memcpy(ref, ref_logits, ref_len);
    uint64_t row = 0, cpu_row = 0;
    double err = qiao__cf_row_error(logits, ref, n_prompt, hp.vocab_size, &row);
    double cpu_err = qiao__cf_row_error(cpu_logits, ref, n_prompt, hp.vocab_size, &cpu_row);
    free(ref);
    int first_diff = -1, hf_diff = -1;
    for (int s = 0; s < GREEDY_STEPS; s++) {
      if (first_diff < 0 && greedy[s] != cpu_greedy[s]) first_diff = s;
      if (hf_diff < 0 && ((size_t)s >= n_hf || greedy[s] != hf_greedy[s])) hf_diff = s;
    }
    bool ok = err <= MODEL_LOGITS_BUDGET && hf_diff < 0;
    json_object_object_add(j, "result",
                           json_object_new_string(!ok        ? "fail"
                                                  : fallback ? "pass with fallback"
                                                             : "pass"));
    json_object_object_add(j, "prompt_tokens", json_object_new_int64((int64_t)n_prompt));
    json_object_object_add(j, "logits_error_vs_transformers",
                           json_object_new_double(isfinite(err) ? err : 1e308));
    json_object_object_add(j, "cpu_logits_error_vs_transformers",
                           json_object_new_double(isfinite(cpu_err) ? cpu_err : 1e308));
    json_object_object_add(j, "budget", json_object_new_double(MODEL_LOGITS_BUDGET));
    json_object_object_add(j, "worst_position", json_object_new_int64((int64_t)row));
    json_object_object_add(j, "greedy_equal_cpu", json_object_new_boolean(first_diff < 0));
    json_object_object_add(j, "greedy_equal_transformers", json_object_new_boolean(hf_diff < 0));
    json_object *ids = json_object_new_array();
    for (int s = 0; s < GREEDY_STEPS; s++)
      json_object_array_add(ids, json_object_new_int(greedy[s]));
    json_object_object_add(j, "greedy", ids);
    if (err > MODEL_LOGITS_BUDGET)
      qiao__cf_fail(report, &report->area_models,
                    "model %s: prompt logits error %.3g vs transformers > budget %.3g (position "
                    "%llu of %zu)",
                    m->name, err, MODEL_LOGITS_BUDGET, (unsigned long long)row, n_prompt);
    if (hf_diff >= 0)
      qiao__cf_fail(report, &report->area_models,
                    "model %s: greedy id %d differs from transformers' (%d vs %d; the CPU "
                    "backend's: %d)",
                    m->name, hf_diff, greedy[hf_diff],
                    (size_t)hf_diff < n_hf ? hf_greedy[hf_diff] : -1, cpu_greedy[hf_diff]);
  }
  qiao_status_free(st);
  qiao_model_close(model);
  free(prompt);
  free(hf_greedy);
  free(ref_logits);
  free(logits);
  free(cpu_logits);
}

void qiao__cf_run_models(qiao_conformance_report *report, const char *backend, const char *shared) {
  report->area_models.ran = true;
  for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
    model_check(report, backend, shared, &models[i]);
}
