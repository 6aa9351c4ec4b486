/* qiao_model_write: choose each tensor's output dtype, write the file under
 * a temporary name next to the destination, fsync, and rename it into place
 * only when everything succeeded. Tensors are streamed (and converted) a
 * chunk at a time, so memory stays bounded whatever the model size. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/checked.h"
#include "format/dtype_convert.h"
#include "format/fp8.h"
#include "format/model_write.h"

/* Elements converted per step: 4 MiB of floats. A multiple of every block. */
#define CHUNK_ELEMS (1u << 20)

static uint64_t n_elements(const qiao_tensor *t) {
  uint64_t n = 1;
  for (uint32_t d = 0; d < t->n_dims; d++)
    n *= t->shape[d]; /* checked when added */
  return n;
}

static double seconds_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Squared reconstruction error and squared values of a converted tensor. */
typedef struct {
  double err, sum_sq;
} error_sums;

static void add_error(error_sums *e, const float *x, const float *y, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    double d = (double)y[i] - (double)x[i];
    e->err += d * d;
    e->sum_sq += (double)x[i] * (double)x[i];
  }
}

/* Streams one tensor: a plain copy when the dtype is unchanged, otherwise
 * through f32 a chunk at a time (`back`, when not NULL: the chunk read back,
 * to add its error to `errors`). */
static qiao_status *write_one(const qiao_model *model, qiao__writer *w, qiao__tensor_plan *p,
                              XXH3_state_t *hash, XXH3_state_t *src_hash, float *floats,
                              uint8_t *out, float *back, error_sums *errors) {
  const qiao_tensor *t = p->src;
  XXH3_64bits_reset(hash);
  /* FP8 data never holds a NaN code (format.md §4.1): neither copied nor
   * converted into a file */
  if (t->dtype == QIAO_DTYPE_F8_E4M3_B128)
    for (uint64_t b = 0; b < t->n_bytes / QIAO__F8_BLOCK_BYTES; b++) {
      const uint8_t *codes = (const uint8_t *)t->data + b * QIAO__F8_BLOCK_BYTES + 4;
      uint64_t j = qiao__e4m3_find_nan(codes, QIAO__F8_BLOCK);
      if (j < QIAO__F8_BLOCK)
        return qiao__error(QIAO_MALFORMED, "%s: element %llu is the FP8 NaN code 0x%02x",
                           qiao_model_path(model), (unsigned long long)(b * QIAO__F8_BLOCK + j),
                           codes[j]);
    }
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
      if (back != NULL) { /* --verbose: what a reader will see */
        qiao__dtype_to_f32(p->dtype, out, back, k);
        add_error(errors, floats, back, k);
      }
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
  float *back = w->report_error ? malloc(CHUNK_ELEMS * sizeof(float)) : NULL;
  XXH3_state_t *hash = XXH3_createState(), *src_hash = XXH3_createState();
  qiao_status *st = NULL;
  if (floats == NULL || out == NULL || hash == NULL || src_hash == NULL ||
      (w->report_error && back == NULL))
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
    error_sums errors = {0};
    st = write_one(model, w, p, hash, src_hash, floats, out, back, &errors);
    if (st == NULL && back != NULL && p->dtype != p->src->dtype) {
      uint64_t elems = p->src->n_bytes / qiao_dtype_get_info(p->src->dtype)->block_bytes *
                       qiao_dtype_get_info(p->src->dtype)->block_elems;
      fprintf(stderr, "%s%s: %s -> %s: RMS error %.4g, relative %.4g\n", start_of_line,
              p->src->name, qiao_dtype_get_info(p->src->dtype)->name,
              qiao_dtype_get_info(p->dtype)->name, elems ? sqrt(errors.err / (double)elems) : 0.0,
              errors.sum_sq > 0 ? sqrt(errors.err / errors.sum_sq) : 0.0);
    }
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
  free(back);
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
  return qiao_model_write_quantized(model, path, options, NULL);
}

qiao_status *qiao_model_write_quantized(const qiao_model *model, const char *path,
                                        const qiao_convert_options *options,
                                        const qiao_quantize_options *quant) {
  if (model == NULL || path == NULL || options == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "qiao_model_write: model, path and options are required");
  if (options->format != QIAO_FILE_QIAO && options->format != QIAO_FILE_GGUF)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_model_write: unknown file format %d",
                       (int)options->format);
  qiao_dtype want = options->weight_dtype;
  if (want != QIAO_DTYPE_COUNT && (qiao_dtype_get_info(want) == NULL || want == QIAO_DTYPE_I32))
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "qiao_model_write: weights can be converted to f32, f16, bf16, q8_0, "
                       "q4_0, q4_k, q5_k, q6_k, q2_k, q3_k, q4_1, q5_0, q5_1, f8_e4m3_b128, "
                       "iq4_nl or iq4_xs");
  qiao_quant_mix mix = quant ? quant->mix : QIAO_MIX_NONE;
  bool report_error = quant && quant->report_error;

  uint64_t n = qiao_model_tensor_count(model);
  qiao__tensor_plan *plans = calloc(n ? (size_t)n : 1, sizeof(*plans));
  qiao_dtype *dtypes = calloc(n ? (size_t)n * 2 : 1, sizeof(*dtypes));
  if (plans == NULL || dtypes == NULL) {
    free(plans);
    free(dtypes);
    return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  }
  qiao_status *st = NULL;
  for (uint64_t i = 0; i < n && st == NULL; i++)
    /* A type of a later minor version cannot be converted or copied into a
     * file that claims this version. */
    st = qiao_model_tensor_check(model, qiao_model_tensor_at(model, i));
  /* the fallbacks are said on stderr by `qiao convert` */
  if (st == NULL) st = qiao__plan_dtypes(model, want, mix, dtypes, dtypes + n);
  for (uint64_t i = 0; i < n && st == NULL; i++) {
    const qiao_tensor *t = qiao_model_tensor_at(model, i);
    plans[i].src = t;
    plans[i].dtype = dtypes[i];
    st = qiao__tensor_bytes(plans[i].dtype, t->n_dims, t->shape, &plans[i].n_bytes);
    /* GGUF has no block-scaled FP8 type: such weights need a --type */
    if (st == NULL && options->format == QIAO_FILE_GGUF &&
        plans[i].dtype == QIAO_DTYPE_F8_E4M3_B128)
      st = qiao__error(QIAO_UNSUPPORTED,
                       "%s: tensor %s: GGUF has no type for f8_e4m3_b128 (block-scaled FP8) "
                       "weights; convert them with --type (for example q8_0, bf16 or q4_k_m)",
                       path, t->name);
  }
  free(dtypes);
  char *tmp = NULL;
  FILE *f = NULL;
  if (st == NULL) st = open_temp(path, &tmp, &f);
  if (st == NULL) {
    qiao__writer w = {.file = f, .path = tmp, .report_error = report_error};
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
