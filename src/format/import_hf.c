/* A Hugging Face model directory -> a qiao model (see import_hf_internal.h
 * for the files read). config.json and the weights are required; the
 * tokenizer and generation files are optional. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "format/import_hf_fp8.h"
#include "format/import_hf_internal.h"
#include "format/import_tokenizer.h"

#define MAX_JSON_DEPTH 64

qiao_status *qiao__hf_join(const char *dir, const char *file, char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%s/%s", dir, file);
  if (n < 0 || (size_t)n >= cap)
    return qiao__error(QIAO_LIMIT, "%s: path of %s is too long", dir, file);
  return NULL;
}

qiao_status *qiao__hf_read_json(qiao_model *model, const char *dir, const char *file, bool required,
                                json_object **out) {
  char path[4096];
  QIAO__TRY(qiao__hf_join(dir, file, path, sizeof(path)));
  *out = NULL;
  struct stat sb;
  if (stat(path, &sb) != 0) {
    if (errno == ENOENT && !required) return NULL;
    return qiao__error(errno == ENOENT ? QIAO_NOT_FOUND : QIAO_IO, "%s: cannot open: %s", path,
                       strerror(errno));
  }
  if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > QIAO__HF_MAX_JSON_BYTES)
    return qiao__error(QIAO_LIMIT, "%s: %llu bytes (limit %u)", path,
                       (unsigned long long)sb.st_size, QIAO__HF_MAX_JSON_BYTES);
  const uint8_t *data;
  uint64_t size;
  QIAO__TRY(qiao__model_map_file(model, path, &data, &size));
  if (size > QIAO__HF_MAX_JSON_BYTES)
    return qiao__error(QIAO_LIMIT, "%s: %llu bytes (limit %u)", path, (unsigned long long)size,
                       QIAO__HF_MAX_JSON_BYTES);
  json_tokener *tok = json_tokener_new_ex(MAX_JSON_DEPTH);
  if (tok == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
  json_object *root = json_tokener_parse_ex(tok, (const char *)data, (int)size);
  enum json_tokener_error err = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  bool trailing = false;
  for (uint64_t i = end; root != NULL && i < size; i++)
    trailing |= data[i] != ' ' && data[i] != '\n' && data[i] != '\r' && data[i] != '\t';
  if (root == NULL || err != json_tokener_success || trailing) {
    json_object_put(root);
    return qiao__error(QIAO_MALFORMED, "%s: not valid JSON (%s) at byte offset %zu", path,
                       trailing                       ? "unexpected bytes after the value"
                       : err == json_tokener_continue ? "unexpected end"
                                                      : json_tokener_error_desc(err),
                       end);
  }
  if (!json_object_is_type(root, json_type_object)) {
    json_object_put(root);
    return qiao__error(QIAO_MALFORMED, "%s: not a JSON object", path);
  }
  *out = root;
  return NULL;
}

/* generation_config.json: sampling defaults and eos ids. */
qiao_status *qiao__hf_read_generation(qiao_model *model, const char *dir, json_object *gen,
                                      hf_config *cfg) {
  static const char *const floats[] = {"temperature", "top_p", "min_p", "repetition_penalty"};
  char key[64];
  for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(gen, floats[i], &v) || json_object_is_type(v, json_type_null))
      continue;
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
      return qiao__error(QIAO_MALFORMED, "%s/generation_config.json: %s: not a number", dir,
                         floats[i]);
    double x = json_object_get_double(v);
    if (!isfinite(x) || x < 0 || x > 1e6)
      return qiao__error(QIAO_MALFORMED, "%s/generation_config.json: %s: %g is out of range", dir,
                         floats[i], x);
    snprintf(key, sizeof(key), "generation.%s", floats[i]);
    QIAO__TRY(qiao__model_set_f32(model, key, (float)x));
  }
  json_object *top_k = NULL;
  if (json_object_object_get_ex(gen, "top_k", &top_k) &&
      !json_object_is_type(top_k, json_type_null)) {
    int64_t k = json_object_is_type(top_k, json_type_int) ? json_object_get_int64(top_k) : -1;
    if (k < 0 || k > (int64_t)UINT32_MAX)
      return qiao__error(QIAO_MALFORMED, "%s/generation_config.json: top_k: not a count", dir);
    QIAO__TRY(qiao__model_set_u32(model, "generation.top_k", (uint32_t)k));
  }
  /* generation_config's eos ids come before config.json's: they are what
   * generate() uses. */
  uint32_t ids[QIAO__HF_MAX_EOS_IDS];
  uint32_t n = 0;
  char what[4200];
  snprintf(what, sizeof(what), "%s/generation_config.json: eos_token_id", dir);
  json_object *eos = NULL;
  json_object_object_get_ex(gen, "eos_token_id", &eos);
  QIAO__TRY(qiao__hf_append_ids(what, eos, ids, &n));
  for (uint32_t i = 0; i < cfg->n_eos; i++)
    qiao__hf_add_id(ids, &n, cfg->eos_ids[i]);
  memcpy(cfg->eos_ids, ids, n * sizeof(ids[0]));
  cfg->n_eos = n;
  return NULL;
}

/* Appends the ids of `kv` (a u32 array) to ids[*n], skipping repeats. */
static void merge_ids(const qiao_kv *kv, uint32_t *ids, uint32_t *n) {
  if (kv == NULL || kv->type != QIAO_VALUE_ARRAY || kv->elem_type != QIAO_VALUE_U32) return;
  const uint32_t *src = kv->v.array;
  for (uint64_t i = 0; i < kv->array_len; i++)
    qiao__hf_add_id(ids, n, src[i]);
}

/* tokenizer.json (with tokenizer_config.json) or, failing that, a
 * SentencePiece tokenizer.model, imported by the tokenizer importers into a
 * scratch model and copied over, so that the eos ids can be merged: the
 * tokenizer's first, then generation_config.json's and config.json's (all
 * of which end generation). Without tokenizer files the ids of the JSON
 * configs are set alone. */
static qiao_status *import_tokenizer(qiao_model *model, const char *dir, const hf_config *cfg) {
  char path[4096];
  struct stat sb;
  qiao_model *tok = NULL;
  QIAO__TRY(qiao__model_create(dir, "hf", &tok));
  qiao_status *st = qiao__hf_join(dir, "tokenizer.json", path, sizeof(path));
  if (st == NULL && stat(path, &sb) == 0) {
    st = qiao__import_tokenizer_json(tok, path, dir);
  } else if (st == NULL) {
    st = qiao__hf_join(dir, "tokenizer.model", path, sizeof(path));
    if (st == NULL && stat(path, &sb) == 0) st = qiao__import_spm_model(tok, path);
  }
  uint32_t eos[QIAO__HF_MAX_EOS_IDS];
  uint32_t n_eos = 0;
  merge_ids(qiao_model_kv_find(tok, "tokenizer.eos_ids"), eos, &n_eos);
  for (uint32_t i = 0; i < cfg->n_eos; i++)
    qiao__hf_add_id(eos, &n_eos, cfg->eos_ids[i]);
  for (uint64_t i = 0; st == NULL && i < qiao_model_kv_count(tok); i++) {
    const qiao_kv *kv = qiao_model_kv_at(tok, i);
    if (strcmp(kv->key, "tokenizer.eos_ids") != 0) st = qiao__model_set_kv(model, kv);
  }
  if (st == NULL && cfg->has_bos && qiao_model_kv_find(tok, "tokenizer.bos_id") == NULL)
    st = qiao__model_set_u32(model, "tokenizer.bos_id", cfg->bos_id);
  if (st == NULL && n_eos > 0)
    st = qiao__model_set_array(model, "tokenizer.eos_ids", QIAO_VALUE_U32, n_eos, eos);
  qiao_model_close(tok);
  return st;
}

static qiao_status *import_dir(qiao_model *model, const char *dir, hf_weights *weights) {
  json_object *config = NULL;
  hf_config cfg;
  QIAO__TRY(qiao__hf_read_json(model, dir, "config.json", true, &config));
  qiao_status *st = qiao__hf_parse_config(dir, config, &cfg);
  json_object_put(config);
  QIAO__TRY(st);

  QIAO__TRY(qiao__hf_load_weights(model, dir, weights));
  QIAO__TRY(qiao__hf_fp8_pair(model, dir, weights)); /* FP8 checkpoints */
  QIAO__TRY(qiao__hf_add_tensors(model, dir, &cfg, weights));
  QIAO__TRY(qiao__hf_set_hparams(model, dir, &cfg));

  json_object *gen = NULL;
  QIAO__TRY(qiao__hf_read_json(model, dir, "generation_config.json", false, &gen));
  if (gen != NULL) {
    st = qiao__hf_read_generation(model, dir, gen, &cfg);
    json_object_put(gen);
    QIAO__TRY(st);
  }
  return import_tokenizer(model, dir, &cfg);
}

qiao_status *qiao__import_hf(qiao_model *model, const char *dir) {
  hf_weights weights = {0};
  qiao_status *st = import_dir(model, dir, &weights);
  qiao__hf_weights_free(&weights);
  return st;
}
