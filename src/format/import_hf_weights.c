/* The weights of a Hugging Face directory: model.safetensors, or the shards
 * that model.safetensors.index.json names in its weight_map
 * ({"tensor name": "shard file name"}). Each shard is mapped into the model
 * and parsed; every tensor must sit in the shard the index names, and every
 * indexed tensor must be found. Shard names must be plain file names inside
 * the directory. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/import_hf_internal.h"

#define INDEX "model.safetensors.index.json"
#define SINGLE "model.safetensors"

void qiao__hf_weights_free(hf_weights *w) {
  if (w == NULL) return;
  for (uint64_t i = 0; i < w->n_tables; i++)
    qiao__st_table_free(&w->tables[i]);
  free(w->tables);
  w->tables = NULL;
  w->n_tables = 0;
}

static bool file_exists(const char *dir, const char *file) {
  char path[4096];
  struct stat st;
  return qiao__hf_join(dir, file, path, sizeof(path)) == NULL && stat(path, &st) == 0;
}

/* Maps and parses one shard into `table`. */
static qiao_status *load_shard(qiao_model *model, const char *dir, const char *file,
                               qiao_st_table *table) {
  char path[4096];
  QIAO__TRY(qiao__hf_join(dir, file, path, sizeof(path)));
  const uint8_t *data;
  uint64_t size;
  QIAO__TRY(qiao__model_map_file(model, path, &data, &size));
  return qiao__st_parse(data, size, path, table);
}

static qiao_status *check_shard_name(const char *dir, const char *tensor, const char *shard) {
  size_t len = strlen(shard);
  if (len == 0 || len > 255 || strchr(shard, '/') != NULL || strchr(shard, '\\') != NULL ||
      strcmp(shard, ".") == 0 || strcmp(shard, "..") == 0)
    return qiao__error(QIAO_MALFORMED,
                       "%s/" INDEX ": weight_map.%s: '%.64s' is not a plain file name "
                       "in the directory",
                       dir, tensor, shard);
  return NULL;
}

/* The distinct shard names of the weight map, in first-seen order. */
static qiao_status *list_shards(const char *dir, json_object *weight_map, const char ***out,
                                uint64_t *out_n) {
  size_t n_entries = (size_t)json_object_object_length(weight_map);
  if (n_entries > QIAO__MAX_TENSORS)
    return qiao__error(QIAO_LIMIT, "%s/" INDEX ": weight_map: %zu entries (limit %u)", dir,
                       n_entries, QIAO__MAX_TENSORS);
  const char **shards = calloc(n_entries ? n_entries : 1, sizeof(*shards));
  if (shards == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  uint64_t n = 0;
  json_object_object_foreach(weight_map, tensor, value) {
    if (!json_object_is_type(value, json_type_string)) {
      free(shards);
      return qiao__error(QIAO_MALFORMED, "%s/" INDEX ": weight_map.%s: not a string", dir, tensor);
    }
    const char *shard = json_object_get_string(value);
    qiao_status *st = check_shard_name(dir, tensor, shard);
    if (st == NULL && strlen(shard) != (size_t)json_object_get_string_len(value))
      st = qiao__error(QIAO_MALFORMED, "%s/" INDEX ": weight_map.%s: NUL in the name", dir, tensor);
    if (st) {
      free(shards);
      return st;
    }
    bool seen = false;
    for (uint64_t i = n; i-- > 0 && !seen;)
      seen = strcmp(shards[i], shard) == 0;
    if (!seen) shards[n++] = shard;
  }
  *out = shards;
  *out_n = n;
  return NULL;
}

/* Every tensor of the shard must be indexed under this shard. */
static qiao_status *check_shard_tensors(const char *dir, json_object *weight_map, const char *shard,
                                        const qiao_st_table *table) {
  for (uint64_t i = 0; i < table->count; i++) {
    json_object *where = NULL;
    const char *name = table->tensors[i].name;
    if (!json_object_object_get_ex(weight_map, name, &where))
      return qiao__error(QIAO_MALFORMED, "%s/%s: tensor '%s' is not in " INDEX, dir, shard, name);
    if (strcmp(json_object_get_string(where), shard) != 0)
      return qiao__error(QIAO_MALFORMED, "%s/%s: tensor '%s' is indexed in shard '%s'", dir, shard,
                         name, json_object_get_string(where));
  }
  return NULL;
}

static qiao_status *load_sharded(qiao_model *model, const char *dir, hf_weights *w) {
  json_object *index = NULL;
  QIAO__TRY(qiao__hf_read_json(model, dir, INDEX, true, &index));
  json_object *weight_map = NULL;
  if (!json_object_is_type(index, json_type_object) ||
      !json_object_object_get_ex(index, "weight_map", &weight_map) ||
      !json_object_is_type(weight_map, json_type_object)) {
    json_object_put(index);
    return qiao__error(QIAO_MALFORMED, "%s/" INDEX ": weight_map: missing or not an object", dir);
  }
  const char **shards = NULL;
  uint64_t n_shards = 0;
  qiao_status *st = list_shards(dir, weight_map, &shards, &n_shards);
  if (st == NULL) {
    w->tables = calloc(n_shards ? n_shards : 1, sizeof(*w->tables));
    if (w->tables == NULL) st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  }
  uint64_t found = 0;
  for (uint64_t s = 0; st == NULL && s < n_shards; s++) {
    st = load_shard(model, dir, shards[s], &w->tables[s]);
    if (st == NULL) {
      w->n_tables++;
      st = check_shard_tensors(dir, weight_map, shards[s], &w->tables[s]);
      found += w->tables[s].count;
    }
  }
  if (st == NULL && found != (uint64_t)json_object_object_length(weight_map)) {
    /* Name the first indexed tensor that no shard held (a hash set of the
     * held names keeps this linear). */
    json_object *held = json_object_new_object();
    for (uint64_t s = 0; held != NULL && s < w->n_tables; s++)
      for (uint64_t i = 0; i < w->tables[s].count; i++)
        json_object_object_add(held, w->tables[s].tensors[i].name, NULL);
    json_object_object_foreach(weight_map, tensor, value) {
      if (held != NULL && !json_object_object_get_ex(held, tensor, NULL)) {
        st = qiao__error(QIAO_MALFORMED, "%s/" INDEX ": tensor '%s' is not in shard '%s'", dir,
                         tensor, json_object_get_string(value));
        break;
      }
    }
    if (st == NULL)
      st = qiao__error(QIAO_MALFORMED, "%s/" INDEX ": some indexed tensors are missing", dir);
    json_object_put(held);
  }
  free(shards);
  json_object_put(index);
  return st;
}

qiao_status *qiao__hf_load_weights(qiao_model *model, const char *dir, hf_weights *out) {
  hf_weights w = {0};
  qiao_status *st;
  if (file_exists(dir, INDEX)) {
    st = load_sharded(model, dir, &w);
  } else if (file_exists(dir, SINGLE)) {
    w.tables = calloc(1, sizeof(*w.tables));
    st = w.tables ? load_shard(model, dir, SINGLE, &w.tables[0])
                  : qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    if (st == NULL) w.n_tables = 1;
  } else if (file_exists(dir, "pytorch_model.bin") ||
             file_exists(dir, "pytorch_model.bin.index.json")) {
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: only PyTorch pickle weights (pytorch_model.bin); pickle files "
                       "can execute code when loaded, so qiao refuses them: convert to safetensors",
                       dir);
  } else {
    return qiao__error(QIAO_NOT_FOUND, "%s: no " SINGLE " or " INDEX, dir);
  }
  if (st) {
    qiao__hf_weights_free(&w);
    return st;
  }
  *out = w;
  return NULL;
}
