/* qiao_model_write: choose each tensor's output dtype, write the file under
 * a temporary name next to the destination, fsync, and rename it into place
 * only when everything succeeded. Tensors are streamed (and converted) a
 * chunk at a time, so memory stays bounded whatever the model size. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/checked.h"
#include "format/dtype_convert.h"
#include "format/model_write.h"

/* Elements converted per step: 4 MiB of floats. A multiple of every block. */
#define CHUNK_ELEMS (1u << 20)

static uint64_t n_elements(const qiao_tensor *t) {
  uint64_t n = 1;
  for (uint32_t d = 0; d < t->n_dims; d++)
    n *= t->shape[d]; /* checked when added */
  return n;
}

/* Weight matrices (2-D) and expert stacks (3-D) take the requested dtype
 * when their rows fit its blocks (else f16); 1-D tensors (norms, biases)
 * become f32; integer tensors stay as they are. */
static qiao_dtype plan_dtype(const qiao_tensor *t, qiao_dtype want, bool *fell_back) {
  *fell_back = false;
  if (want == QIAO_DTYPE_COUNT || t->dtype == QIAO_DTYPE_I32) return t->dtype;
  if (t->n_dims == 1) return QIAO_DTYPE_F32;
  if (t->shape[t->n_dims - 1] % qiao_dtype_get_info(want)->block_elems != 0) {
    *fell_back = true;
    return QIAO_DTYPE_F16;
  }
  return want;
}

static double seconds_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Streams one tensor: a plain copy when the dtype is unchanged, otherwise
 * through f32 a chunk at a time. */
static qiao_status *write_one(const qiao_model *model, qiao__writer *w, qiao__tensor_plan *p,
                              XXH3_state_t *hash, XXH3_state_t *src_hash, float *floats,
                              uint8_t *out) {
  const qiao_tensor *t = p->src;
  XXH3_64bits_reset(hash);
  /* A source that stores a hash of the tensor (.qiao) is checked as it is
   * read (in the same pass), so that corrupt data is never written out
   * under a fresh hash; the temporary file is removed on the error. */
  uint64_t index = qiao__model_tensor_index(model, t->name);
  const qiao__tensor_origin *origin =
      index == UINT64_MAX ? NULL : qiao__model_tensor_origin(model, index);
  bool check = origin != NULL && origin->has_hash && qiao_model_tensor_at(model, index) == t;
  XXH3_64bits_reset(src_hash);
  if (p->dtype == t->dtype) {
    const uint8_t *src = t->data;
    for (uint64_t done = 0; done < t->n_bytes && w->error == NULL;) {
      uint64_t k = t->n_bytes - done < 4 * (uint64_t)CHUNK_ELEMS ? t->n_bytes - done
                                                                 : 4 * (uint64_t)CHUNK_ELEMS;
      qiao__w_bytes(w, src + done, k);
      XXH3_64bits_update(hash, src + done, (size_t)k);
      qiao__model_release_pages(model, src + done, k);
      done += k;
    }
  } else {
    const qiao_dtype_info *in = qiao_dtype_get_info(t->dtype), *to = qiao_dtype_get_info(p->dtype);
    uint64_t total = n_elements(t);
    for (uint64_t done = 0; done < total && w->error == NULL;) {
      uint64_t k = total - done < CHUNK_ELEMS ? total - done : CHUNK_ELEMS;
      const uint8_t *src = (const uint8_t *)t->data + done / in->block_elems * in->block_bytes;
      if (check) XXH3_64bits_update(src_hash, src, (size_t)(k / in->block_elems * in->block_bytes));
      qiao__dtype_to_f32(t->dtype, src, floats, k);
      qiao__model_release_pages(model, src, k / in->block_elems * in->block_bytes);
      qiao__dtype_from_f32(p->dtype, floats, out, k);
      uint64_t out_bytes = k / to->block_elems * to->block_bytes;
      qiao__w_bytes(w, out, out_bytes);
      XXH3_64bits_update(hash, out, (size_t)out_bytes);
      done += k;
    }
  }
  p->hash = XXH3_64bits_digest(hash);
  if (check && w->error == NULL) {
    /* a plain copy hashed the source bytes themselves */
    uint64_t h = p->dtype == t->dtype ? p->hash : XXH3_64bits_digest(src_hash);
    if (h != origin->hash)
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor %s: data hash %016llx does not match the stored %016llx "
                         "(corrupt data) at byte offset %llu",
                         qiao_model_path(model), t->name, (unsigned long long)h,
                         (unsigned long long)origin->hash, (unsigned long long)origin->offset);
  }
  return NULL;
}

qiao_status *qiao__write_tensors(const qiao_model *model, qiao__writer *w, qiao__tensor_plan *plans,
                                 uint64_t n, uint64_t data_start, bool progress) {
  float *floats = malloc(CHUNK_ELEMS * sizeof(float));
  uint8_t *out = malloc(CHUNK_ELEMS * sizeof(float));
  XXH3_state_t *hash = XXH3_createState(), *src_hash = XXH3_createState();
  qiao_status *st = NULL;
  if (floats == NULL || out == NULL || hash == NULL || src_hash == NULL)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  double start = seconds_now();
  uint64_t written = 0;
  /* On a terminal one line rewritten in place; in a log, one line each. */
  const char *end_of_line = isatty(fileno(stderr)) ? " " : "\n";
  const char *start_of_line = *end_of_line == '\n' ? "" : "\r";
  for (uint64_t i = 0; i < n && st == NULL; i++) {
    qiao__tensor_plan *p = &plans[i];
    uint64_t at = data_start + p->offset;
    if (at < w->pos) {
      st = qiao__error(QIAO_INTERNAL, "tensor %s: planned offset is behind the write position",
                       p->src->name);
      break;
    }
    qiao__w_zeros(w, at - w->pos);
    if (progress)
      fprintf(stderr, "%s[%llu/%llu] %-40s %s -> %s%s", start_of_line, (unsigned long long)(i + 1),
              (unsigned long long)n, p->src->name, qiao_dtype_get_info(p->src->dtype)->name,
              qiao_dtype_get_info(p->dtype)->name, end_of_line);
    st = write_one(model, w, p, hash, src_hash, floats, out);
    if (st == NULL && w->error != NULL) {
      st = w->error;
      w->error = NULL;
    }
    if (st) st = qiao__annotate(st, "tensor %s", p->src->name);
    written += p->n_bytes;
  }
  if (progress && st == NULL) {
    double secs = seconds_now() - start;
    fprintf(stderr, "%swrote %llu tensors, %.1f MB in %.2f s (%.1f MB/s)%30s\n", start_of_line,
            (unsigned long long)n, (double)written / 1e6, secs,
            secs > 0 ? (double)written / 1e6 / secs : 0.0, "");
  }
  free(floats);
  free(out);
  XXH3_freeState(hash);
  XXH3_freeState(src_hash);
  return st;
}

/* ---- The temporary file ---------------------------------------------------- */

static qiao_status *open_temp(const char *path, char **out_tmp, FILE **out_file) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 16);
  if (tmp == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  memcpy(tmp, path, len);
  memcpy(tmp + len, ".tmp-XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    qiao_status *st =
        qiao__error(QIAO_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
    free(tmp);
    return st;
  }
  fchmod(fd, 0644);
  FILE *f = fdopen(fd, "wb");
  if (f == NULL) {
    qiao_status *st = qiao__error(QIAO_IO, "%s: cannot open: %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    free(tmp);
    return st;
  }
  *out_tmp = tmp;
  *out_file = f;
  return NULL;
}

/* Makes the rename durable too. */
static void sync_parent_dir(const char *path) {
  char *copy = strdup(path);
  if (copy == NULL) return;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(copy);
}

static qiao_status *finish_temp(FILE *f, const char *tmp, const char *path) {
  if (fflush(f) != 0 || fsync(fileno(f)) != 0)
    return qiao__error(QIAO_IO, "%s: write failed: %s", tmp, strerror(errno));
  return NULL;
}

qiao_status *qiao_model_write(const qiao_model *model, const char *path,
                              const qiao_convert_options *options) {
  if (model == NULL || path == NULL || options == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "qiao_model_write: model, path and options are required");
  if (options->format != QIAO_FILE_QIAO && options->format != QIAO_FILE_GGUF)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_model_write: unknown file format %d",
                       (int)options->format);
  qiao_dtype want = options->weight_dtype;
  if (want != QIAO_DTYPE_COUNT && (qiao_dtype_get_info(want) == NULL || want == QIAO_DTYPE_I32))
    return qiao__error(
        QIAO_INVALID_ARGUMENT,
        "qiao_model_write: weights can be converted to f32, f16, bf16, q8_0 or q4_0");

  uint64_t n = qiao_model_tensor_count(model);
  qiao__tensor_plan *plans = calloc(n ? (size_t)n : 1, sizeof(*plans));
  if (plans == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  qiao_status *st = NULL;
  for (uint64_t i = 0; i < n && st == NULL; i++) {
    const qiao_tensor *t = qiao_model_tensor_at(model, i);
    /* A type of a later minor version cannot be converted or copied into a
     * file that claims this version. */
    st = qiao_model_tensor_check(model, t);
    if (st) break;
    bool fell_back; /* said on stderr by `qiao convert` */
    plans[i].src = t;
    plans[i].dtype = plan_dtype(t, want, &fell_back);
    st = qiao__tensor_bytes(plans[i].dtype, t->n_dims, t->shape, &plans[i].n_bytes);
  }
  char *tmp = NULL;
  FILE *f = NULL;
  if (st == NULL) st = open_temp(path, &tmp, &f);
  if (st == NULL) {
    qiao__writer w = {.file = f, .path = tmp};
    st = options->format == QIAO_FILE_QIAO
             ? qiao__write_qiao(model, plans, n, &w, options->progress)
             : qiao__write_gguf(model, plans, n, &w, options->progress);
    if (st == NULL && w.error != NULL) {
      st = w.error;
      w.error = NULL;
    }
    if (st == NULL) st = finish_temp(f, tmp, path);
    if (fclose(f) != 0 && st == NULL)
      st = qiao__error(QIAO_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (st == NULL && rename(tmp, path) != 0)
      st = qiao__error(QIAO_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
    if (st != NULL)
      unlink(tmp);
    else
      sync_parent_dir(path);
    qiao__w_release(&w);
  }
  free(tmp);
  free(plans);
  return st;
}
