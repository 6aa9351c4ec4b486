/* qiao_tokenizer_open: a standalone tokenizer file becomes canonical
 * metadata on a temporary model (by the importers in src/format), from which
 * the tokenizer is built; the model is closed again. The kind of file is
 * told by its content: '{' is a tokenizer.json, a run of llama2.c records up
 * to the end of the file a tok.bin, a protobuf starting with field 1 a
 * SentencePiece tokenizer.model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/checked.h"
#include "format/import_llama2c.h"
#include "format/import_tokenizer.h"
#include "format/model_internal.h"
#include "tokenizer/tokenizer_internal.h"

/* tok.bin does not store its vocab size: count the records up to the end. */
static qiao_status *count_tok_bin(const uint8_t *data, uint64_t size, const char *path,
                                  uint32_t *out) {
  uint64_t off = 4, n = 0;
  if (size < 4) return qiao__error(QIAO_MALFORMED, "file %s: too short for a tokenizer", path);
  while (off < size) {
    if (!qiao__range_ok(off, 8, size))
      return qiao__error(QIAO_MALFORMED, "file %s: token %llu: truncated at byte offset %llu", path,
                         (unsigned long long)n, (unsigned long long)off);
    uint32_t len = (uint32_t)data[off + 4] | (uint32_t)data[off + 5] << 8 |
                   (uint32_t)data[off + 6] << 16 | (uint32_t)data[off + 7] << 24;
    if (len > (1u << 20) || !qiao__range_ok(off + 8, len, size))
      return qiao__error(QIAO_MALFORMED,
                         "file %s: token %llu: length %u at byte offset %llu runs past the end",
                         path, (unsigned long long)n, len, (unsigned long long)(off + 4));
    off += 8 + len;
    if (++n > QIAO__MAX_ARRAY_LEN)
      return qiao__error(QIAO_LIMIT, "file %s: more than %u tokens", path, QIAO__MAX_ARRAY_LEN);
  }
  *out = (uint32_t)n;
  return NULL;
}

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) return strdup(".");
  if (slash == path) return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static bool exists(const char *path) {
  struct stat s;
  return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

static qiao_status *import_file(qiao_model *m, const char *path) {
  const uint8_t *data;
  uint64_t size;
  QIAO__TRY(qiao__model_map_file(m, path, &data, &size));
  uint64_t i = 0;
  if (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) i = 3; /* UTF-8 BOM */
  while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'))
    i++;
  if (i < size && data[i] == '{') {
    char *dir = dir_of(path);
    if (dir == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    qiao_status *st = qiao__import_tokenizer_json(m, path, dir);
    free(dir);
    return st;
  }
  /* A tok.bin's records end exactly at the end of the file; a protobuf
   * starting with field 1 (pieces, length-delimited: byte 0x0A) is taken as
   * a tokenizer.model otherwise (a tok.bin may start with 0x0A too). */
  uint32_t n = 0;
  qiao_status *st = count_tok_bin(data, size, path, &n);
  if (st != NULL && size > 0 && data[0] == 0x0A) {
    qiao_status_free(st);
    return qiao__import_spm_model_buffer(m, data, size, path);
  }
  QIAO__TRY(st);
  return qiao__llama2c_add_tokenizer(m, data, size, path, n);
}

qiao_status *qiao_tokenizer_open(const char *path, qiao_tokenizer **out) {
  if (path == NULL || out == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_tokenizer_open: NULL argument");
  char *file = NULL;
  struct stat s;
  if (stat(path, &s) != 0) return qiao__error(QIAO_NOT_FOUND, "file %s: not found", path);
  if (S_ISDIR(s.st_mode)) { /* a folder: its tokenizer.json, else tokenizer.model */
    file = join(path, "tokenizer.json");
    if (file && !exists(file)) {
      free(file);
      file = join(path, "tokenizer.model");
      if (file && !exists(file)) {
        free(file);
        return qiao__error(QIAO_NOT_FOUND, "folder %s: no tokenizer.json or tokenizer.model", path);
      }
    }
  } else {
    file = strdup(path);
  }
  if (file == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  qiao_model *m = NULL;
  qiao_status *st = qiao__model_create(file, "hf", &m);
  if (st == NULL) st = import_file(m, file);
  if (st == NULL) st = qiao_tokenizer_create_from_model(m, out);
  qiao_model_close(m);
  free(file);
  return st;
}
