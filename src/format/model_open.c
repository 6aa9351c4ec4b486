/* Opening a model: the format is detected from the content, never from the
 * file name. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/model_internal.h"

typedef enum source_kind { SOURCE_QIAO, SOURCE_GGUF, SOURCE_PICKLE, SOURCE_LLAMA2C } source_kind;

/* Decides from the first bytes. A PyTorch checkpoint is a zip archive (since
 * torch 1.6) or a bare pickle stream (PROTO opcode 0x80 then the protocol
 * 2..5, then another opcode, which is never 0x00). A llama2.c .bin starts
 * with its int32 `dim`, whose third byte is 0 for any dim < 65536, so the
 * two cannot be confused. */
static source_kind detect(const uint8_t *head, uint64_t n) {
  if (n >= 4 && memcmp(head, "QIAO", 4) == 0) return SOURCE_QIAO;
  if (n >= 4 && memcmp(head, "GGUF", 4) == 0) return SOURCE_GGUF;
  if (n >= 4 && memcmp(head, "PK\x03\x04", 4) == 0) return SOURCE_PICKLE;
  if (n >= 3 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5 && head[2] != 0)
    return SOURCE_PICKLE;
  return SOURCE_LLAMA2C;
}

static qiao_status *pickle_refused(const char *name) {
  return qiao__error(QIAO_UNSUPPORTED,
                     "%s: a PyTorch pickle checkpoint; pickle files can execute arbitrary "
                     "code when loaded, so qiao refuses them: convert it to safetensors first",
                     name);
}

static const char *kind_format(source_kind kind) {
  switch (kind) {
  case SOURCE_QIAO: return "qiao";
  case SOURCE_GGUF: return "gguf";
  default: return "llama2c";
  }
}

static qiao_status *import_bytes(qiao_model *model, source_kind kind, const uint8_t *data,
                                 uint64_t size, const char *name, const char *tokenizer_path) {
  switch (kind) {
  case SOURCE_QIAO: return qiao__import_qiao(model, data, size, name);
  case SOURCE_GGUF: return qiao__import_gguf(model, data, size, name);
  case SOURCE_PICKLE: return pickle_refused(name);
  case SOURCE_LLAMA2C: return qiao__import_llama2c(model, data, size, name, tokenizer_path);
  }
  return qiao__error(QIAO_INTERNAL, "unknown source kind");
}

qiao_status *qiao__model_open_buffer(const uint8_t *data, uint64_t size, const char *name,
                                     qiao_model **out) {
  if (data == NULL && size > 0)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao__model_open_buffer: no data");
  source_kind kind = detect(data, size);
  if (kind == SOURCE_PICKLE) return pickle_refused(name);
  qiao_model *model;
  QIAO__TRY(qiao__model_create(name, kind_format(kind), &model));
  qiao_status *st = import_bytes(model, kind, data, size, name, NULL);
  if (st) {
    qiao_model_close(model);
    return st;
  }
  *out = model;
  return NULL;
}

static qiao_status *read_head(const char *path, uint8_t *head, uint64_t *n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return qiao__error(errno == ENOENT ? QIAO_NOT_FOUND : QIAO_IO, "%s: cannot open: %s", path,
                       strerror(errno));
  ssize_t got = pread(fd, head, 8, 0);
  int e = errno;
  close(fd);
  if (got < 0) return qiao__error(QIAO_IO, "%s: cannot read: %s", path, strerror(e));
  *n = (uint64_t)got;
  return NULL;
}

qiao_status *qiao_model_open(const char *path, const qiao_model_open_options *options,
                             qiao_model **out_model) {
  if (path == NULL || out_model == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_model_open: path and out_model are required");
  const char *tokenizer_path = NULL;
  if (options != NULL && options->struct_size >= offsetof(qiao_model_open_options, tokenizer_path) +
                                                     sizeof(const char *))
    tokenizer_path = options->tokenizer_path;

  struct stat st_buf;
  if (stat(path, &st_buf) != 0)
    return qiao__error(errno == ENOENT ? QIAO_NOT_FOUND : QIAO_IO, "%s: cannot open: %s", path,
                       strerror(errno));
  qiao_model *model = NULL;
  qiao_status *st;
  if (S_ISDIR(st_buf.st_mode)) {
    QIAO__TRY(qiao__model_create(path, "hf", &model));
    st = qiao__import_hf(model, path);
  } else {
    uint8_t head[8];
    uint64_t n_head = 0;
    QIAO__TRY(read_head(path, head, &n_head));
    source_kind kind = detect(head, n_head);
    if (kind == SOURCE_PICKLE) return pickle_refused(path);
    /* Detection is by content; the name only makes the message precise
     * when a file called .qiao or .gguf lacks its magic. */
    size_t len = strlen(path);
    bool named_qiao = len > 5 && strcmp(path + len - 5, ".qiao") == 0,
         named_gguf = len > 5 && strcmp(path + len - 5, ".gguf") == 0;
    if (kind == SOURCE_LLAMA2C && (named_qiao || named_gguf)) {
      char magic[4 * 4 + 1] = "";
      for (uint64_t i = 0; i < n_head && i < 4; i++)
        snprintf(magic + 4 * i, sizeof(magic) - 4 * i, "\\x%02x", head[i]);
      return qiao__error(QIAO_MALFORMED,
                         "%s: header magic: not a %s file (the first bytes are %s, expected %s) "
                         "at byte offset 0",
                         path, named_qiao ? ".qiao" : ".gguf", magic, named_qiao ? "QIAO" : "GGUF");
    }
    if (kind != SOURCE_LLAMA2C && tokenizer_path != NULL)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "%s: --tokenizer applies only to llama2.c .bin models", path);
    QIAO__TRY(qiao__model_create(path, kind_format(kind), &model));
    const uint8_t *data;
    uint64_t size;
    st = qiao__model_map_file(model, path, &data, &size);
    if (st == NULL) st = import_bytes(model, kind, data, size, path, tokenizer_path);
  }
  if (st) {
    qiao_model_close(model);
    return st;
  }
  *out_model = model;
  return NULL;
}
