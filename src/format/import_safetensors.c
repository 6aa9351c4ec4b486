/* safetensors: an 8-byte little-endian header length, a JSON object
 *   { "<tensor name>": {"dtype": "F32", "shape": [rows, cols],
 *                       "data_offsets": [begin, end]}, ...,
 *     "__metadata__": {"key": "value", ...} }
 * then the data section, which the tensors' [begin, end) ranges (relative to
 * the start of the data section) must cover exactly, without overlaps.
 *
 * Everything here is untrusted: the header length, every number in the JSON
 * and every range is checked before use, and the JSON nesting is bounded. */
#include "format/import_safetensors.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"

#define MAX_JSON_DEPTH 64

typedef struct range_entry {
  uint64_t begin, end; /* relative to the data section */
  uint64_t index;      /* into the table */
} range_entry;

void qiao__st_table_free(qiao_st_table *table) {
  if (table == NULL) return;
  for (uint64_t i = 0; i < table->count; i++)
    free(table->tensors[i].name);
  free(table->tensors);
  table->tensors = NULL;
  table->count = 0;
}

/* Maps a safetensors dtype string; the formats qiao does not store are
 * refused by name. F8_E4M3 (DeepSeek-V3 and Qwen3-FP8 checkpoints) is
 * marked as such: it becomes f8_e4m3_b128 once paired with its scales. */
static qiao_status *parse_dtype(const char *file, const char *tensor, json_object *value,
                                qiao_dtype *out, bool *out_f8) {
  if (value == NULL || !json_object_is_type(value, json_type_string))
    return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': dtype: missing or not a string", file,
                       tensor);
  const char *s = json_object_get_string(value);
  *out_f8 = false;
  if (strcmp(s, "F8_E4M3") == 0) {
    *out = QIAO_DTYPE_UNKNOWN;
    *out_f8 = true;
  } else if (strcmp(s, "F32") == 0) {
    *out = QIAO_DTYPE_F32;
  } else if (strcmp(s, "F16") == 0) {
    *out = QIAO_DTYPE_F16;
  } else if (strcmp(s, "BF16") == 0) {
    *out = QIAO_DTYPE_BF16;
  } else {
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: tensor '%s': dtype '%.32s' is not supported (F32, F16, BF16, F8_E4M3)",
                       file, tensor, s);
  }
  return NULL;
}

/* Reads a non-negative JSON integer. json-c saturates integers beyond
 * int64 range, which then fail the bounds checks of the caller. */
static bool get_u64(json_object *value, uint64_t *out) {
  if (value == NULL || !json_object_is_type(value, json_type_int)) return false;
  int64_t v = json_object_get_int64(value);
  if (v < 0) return false;
  *out = (uint64_t)v;
  return true;
}

static qiao_status *parse_shape(const char *file, const char *tensor, json_object *value,
                                qiao_st_tensor *t, uint64_t *out_elems) {
  if (value == NULL || !json_object_is_type(value, json_type_array))
    return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': shape: missing or not an array", file,
                       tensor);
  size_t n = json_object_array_length(value);
  if (n == 0 || n > QIAO_MAX_DIMS)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: tensor '%s': shape: %zu dimensions (qiao stores 1 to %d)", file, tensor,
                       n, QIAO_MAX_DIMS);
  uint64_t elems = 1;
  for (size_t d = 0; d < n; d++) {
    uint64_t dim = 0;
    if (!get_u64(json_object_array_get_idx(value, d), &dim))
      return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': shape[%zu]: not a non-negative integer",
                         file, tensor, d);
    if (dim == 0)
      return qiao__error(QIAO_UNSUPPORTED,
                         "%s: tensor '%s': shape[%zu]: empty tensors are not supported", file,
                         tensor, d);
    if (!qiao__mul_u64(elems, dim, &elems))
      return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': shape: element count overflows", file,
                         tensor);
    t->shape[d] = dim;
  }
  t->n_dims = (uint32_t)n;
  *out_elems = elems;
  return NULL;
}

/* Checks one header entry and fills `t` (except data, set once the data
 * section is known) and its range. */
static qiao_status *parse_entry(const char *file, const char *tensor, json_object *desc,
                                uint64_t data_size, qiao_st_tensor *t, range_entry *range) {
  if (!json_object_is_type(desc, json_type_object))
    return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': description is not an object", file,
                       tensor);
  json_object *dtype = NULL, *shape = NULL, *offsets = NULL;
  json_object_object_get_ex(desc, "dtype", &dtype);
  json_object_object_get_ex(desc, "shape", &shape);
  json_object_object_get_ex(desc, "data_offsets", &offsets);
  QIAO__TRY(parse_dtype(file, tensor, dtype, &t->dtype, &t->f8_e4m3));
  uint64_t elems = 0;
  QIAO__TRY(parse_shape(file, tensor, shape, t, &elems));

  if (offsets == NULL || !json_object_is_type(offsets, json_type_array) ||
      json_object_array_length(offsets) != 2)
    return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': data_offsets: missing or not [begin, end]",
                       file, tensor);
  uint64_t begin = 0, end = 0;
  if (!get_u64(json_object_array_get_idx(offsets, 0), &begin) ||
      !get_u64(json_object_array_get_idx(offsets, 1), &end))
    return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': data_offsets: not non-negative integers",
                       file, tensor);
  if (begin > end)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor '%s': data_offsets: begin %llu is after end %llu", file, tensor,
                       (unsigned long long)begin, (unsigned long long)end);
  if (end > data_size)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor '%s': data_offsets: end %llu is past the end of the "
                       "data section (%llu bytes)",
                       file, tensor, (unsigned long long)end, (unsigned long long)data_size);
  const qiao_dtype_info *info = t->f8_e4m3 ? NULL : qiao_dtype_get_info(t->dtype);
  uint32_t elem_bytes = info ? info->block_bytes : 1;
  uint64_t want;
  if (!qiao__mul_u64(elems, elem_bytes, &want) || want != end - begin)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor '%s': data_offsets: [%llu, %llu) holds %llu bytes but "
                       "the shape and dtype %s need %llu elements x %u bytes",
                       file, tensor, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)(end - begin), info ? info->name : "F8_E4M3",
                       (unsigned long long)elems, elem_bytes);
  t->n_bytes = end - begin;
  range->begin = begin;
  range->end = end;
  return NULL;
}

static int compare_ranges(const void *a, const void *b) {
  const range_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* The sorted ranges must tile [0, data_size) exactly. */
static qiao_status *check_coverage(const char *file, const qiao_st_table *table,
                                   range_entry *ranges, uint64_t data_start, uint64_t data_size) {
  qsort(ranges, table->count, sizeof(*ranges), compare_ranges);
  uint64_t covered = 0;
  for (uint64_t i = 0; i < table->count; i++) {
    const char *tensor = table->tensors[ranges[i].index].name;
    if (ranges[i].begin < covered)
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor '%s': data_offsets: bytes [%llu, %llu) overlap "
                         "tensor '%s' (file offset %llu)",
                         file, tensor, (unsigned long long)ranges[i].begin,
                         (unsigned long long)covered, table->tensors[ranges[i - 1].index].name,
                         (unsigned long long)(data_start + ranges[i].begin));
    if (ranges[i].begin > covered)
      return qiao__error(QIAO_MALFORMED,
                         "%s: data bytes [%llu, %llu) (file offset %llu) belong to no tensor", file,
                         (unsigned long long)covered, (unsigned long long)ranges[i].begin,
                         (unsigned long long)(data_start + covered));
    covered = ranges[i].end;
  }
  if (covered != data_size)
    return qiao__error(QIAO_MALFORMED,
                       "%s: data bytes [%llu, %llu) (file offset %llu) belong to no tensor", file,
                       (unsigned long long)covered, (unsigned long long)data_size,
                       (unsigned long long)(data_start + covered));
  return NULL;
}

/* Parses the header bytes into a JSON object, refusing anything but one
 * object followed by optional whitespace. */
static qiao_status *parse_json(const char *file, const char *text, uint64_t len,
                               json_object **out) {
  json_tokener *tok = json_tokener_new_ex(MAX_JSON_DEPTH);
  if (tok == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", file);
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
  json_object *root = json_tokener_parse_ex(tok, text, (int)len);
  enum json_tokener_error err = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  if (root == NULL || err != json_tokener_success) {
    json_object_put(root);
    return qiao__error(
        QIAO_MALFORMED, "%s: header: not valid JSON (%s) at byte offset %zu", file,
        err == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(err), 8 + end);
  }
  for (uint64_t i = end; i < len; i++) {
    char c = text[i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      json_object_put(root);
      return qiao__error(QIAO_MALFORMED,
                         "%s: header: unexpected bytes after the JSON object at byte offset %llu",
                         file, (unsigned long long)(8 + i));
    }
  }
  if (!json_object_is_type(root, json_type_object)) {
    json_object_put(root);
    return qiao__error(QIAO_MALFORMED, "%s: header: the JSON is not an object", file);
  }
  *out = root;
  return NULL;
}

static qiao_status *parse_tensors(const char *file, json_object *root, const uint8_t *data_section,
                                  uint64_t data_start, uint64_t data_size, qiao_st_table *table) {
  uint64_t n = (uint64_t)json_object_object_length(root);
  if (n > QIAO__MAX_TENSORS)
    return qiao__error(QIAO_LIMIT, "%s: header: %llu entries (limit %u)", file,
                       (unsigned long long)n, QIAO__MAX_TENSORS);
  table->tensors = calloc(n ? n : 1, sizeof(*table->tensors));
  range_entry *ranges = calloc(n ? n : 1, sizeof(*ranges));
  if (table->tensors == NULL || ranges == NULL) {
    free(ranges);
    return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory for %llu tensors", file,
                       (unsigned long long)n);
  }
  qiao_status *st = NULL;
  json_object_object_foreach(root, key, desc) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_object_is_type(desc, json_type_object)) {
        st = qiao__error(QIAO_MALFORMED, "%s: __metadata__: not an object", file);
        break;
      }
      /* the safetensors library reads it as a map of strings to strings */
      json_object_object_foreach(desc, mkey, mvalue) {
        if (!json_object_is_type(mvalue, json_type_string)) {
          st = qiao__error(QIAO_MALFORMED, "%s: __metadata__: '%s': the value is not a string",
                           file, mkey);
          break;
        }
      }
      if (st != NULL) break;
      continue;
    }
    size_t key_len = strlen(key);
    if (key_len == 0 || key_len > QIAO__MAX_TENSOR_NAME_LEN) {
      st = qiao__error(QIAO_MALFORMED, "%s: header: tensor name of %zu bytes (1 to %u allowed)",
                       file, key_len, QIAO__MAX_TENSOR_NAME_LEN);
      break;
    }
    qiao_st_tensor *t = &table->tensors[table->count];
    range_entry *range = &ranges[table->count];
    st = parse_entry(file, key, desc, data_size, t, range);
    if (st != NULL) break;
    t->name = strdup(key);
    if (t->name == NULL) {
      st = qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", file);
      break;
    }
    t->data = data_section + range->begin;
    t->file_offset = data_start + range->begin;
    range->index = table->count;
    table->count++;
  }
  if (st == NULL) st = check_coverage(file, table, ranges, data_start, data_size);
  free(ranges);
  return st;
}

qiao_status *qiao__st_parse(const uint8_t *data, uint64_t size, const char *name,
                            qiao_st_table *out) {
  const char *file = name ? name : "(buffer)";
  if (size < 8)
    return qiao__error(QIAO_MALFORMED, "%s: %llu bytes, too short for the 8-byte header length",
                       file, (unsigned long long)size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; i--)
    header_len = (header_len << 8) | data[i];
  if (header_len > QIAO__SAFETENSORS_MAX_HEADER)
    return qiao__error(QIAO_LIMIT, "%s: header length: %llu bytes (limit %u) at byte offset 0",
                       file, (unsigned long long)header_len, QIAO__SAFETENSORS_MAX_HEADER);
  if (header_len < 2 || header_len > size - 8)
    return qiao__error(QIAO_MALFORMED,
                       "%s: header length: %llu bytes does not fit the %llu byte file "
                       "at byte offset 0",
                       file, (unsigned long long)header_len, (unsigned long long)size);
  uint64_t data_start = 8 + header_len;
  json_object *root = NULL;
  QIAO__TRY(parse_json(file, (const char *)data + 8, header_len, &root));
  qiao_st_table table = {0};
  qiao_status *st =
      parse_tensors(file, root, data + data_start, data_start, size - data_start, &table);
  json_object_put(root);
  if (st != NULL) {
    qiao__st_table_free(&table);
    return st;
  }
  *out = table;
  return NULL;
}

qiao_status *qiao__st_add_tensor(qiao_model *model, const qiao_st_tensor *t, const char *name) {
  if (t->f8_e4m3)
    return qiao__error(QIAO_UNSUPPORTED,
                       "tensor '%s': F8_E4M3 weights are used with their block scales "
                       "('%s_scale_inv'): open the Hugging Face directory that holds both",
                       t->name, t->name);
  const void *data = t->data;
  /* an element's size; the F32 scales of f8_e4m3_b128 blocks (132 bytes) */
  uint32_t align =
      t->dtype == QIAO_DTYPE_F8_E4M3_B128 ? 4 : qiao_dtype_get_info(t->dtype)->block_bytes;
  if ((uintptr_t)data % align != 0) {
    void *copy;
    QIAO__TRY(qiao__model_alloc(model, t->n_bytes, &copy));
    memcpy(copy, t->data, t->n_bytes);
    data = copy;
  }
  QIAO__TRY(qiao__model_add_tensor(model, name ? name : t->name, t->dtype, t->n_dims, t->shape,
                                   data, t->n_bytes));
  qiao__tensor_origin *origin =
      qiao__model_tensor_origin(model, qiao_model_tensor_count(model) - 1);
  if (origin != NULL) origin->offset = t->file_offset;
  return NULL;
}

qiao_status *qiao__import_safetensors(qiao_model *model, const uint8_t *data, uint64_t size,
                                      const char *name) {
  qiao_st_table table = {0};
  QIAO__TRY(qiao__st_parse(data, size, name, &table));
  qiao_status *st = NULL;
  for (uint64_t i = 0; i < table.count && st == NULL; i++)
    st = qiao__st_add_tensor(model, &table.tensors[i], NULL);
  qiao__st_table_free(&table);
  return st;
}
