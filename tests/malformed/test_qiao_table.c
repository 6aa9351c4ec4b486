/* Targeted malformed .qiao tensor tables (docs/spec/format.md §4): one field
 * of one entry changed in place (every length unchanged), then header_hash
 * recomputed (§6.1), so that the header check passes and only the check under
 * test can refuse the file. Each case must fail with the code the spec gives
 * and a message naming the field (or the tensor and the problem). */
#include <unistd.h>
#include <xxhash.h>

#include "malformed_util.h"

static uint8_t *file;
static size_t file_len;

static uint64_t u64_at(const uint8_t *p, uint64_t at) {
  uint64_t v;
  memcpy(&v, p + at, 8);
  return v;
}

/* Where the fields of one table entry are. */
typedef struct entry {
  uint64_t name_at, name_len, dtype_at, n_dims_at, shape_at, block_bytes_at, offset_at, n_bytes_at;
  uint32_t n_dims;
  char name[300];
} entry;

static entry entries[64];
static size_t n_entries = 0;

static uint64_t skip_string(uint64_t at) {
  return at + 8 + u64_at(file, at);
}

static void walk_table(void) {
  uint64_t at = u64_at(file, 48), end = u64_at(file, 56); /* table_offset, table_end */
  while (at < end && n_entries < 64) {
    entry *e = &entries[n_entries++];
    e->name_len = u64_at(file, at);
    e->name_at = at + 8;
    snprintf(e->name, sizeof(e->name), "%.*s", (int)e->name_len, (const char *)file + at + 8);
    at = skip_string(at);
    e->dtype_at = at;
    e->n_dims_at = at + 4;
    memcpy(&e->n_dims, file + at + 4, 4);
    e->shape_at = at + 8;
    at += 8 + 8 * (uint64_t)e->n_dims;
    e->block_bytes_at = at + 4;        /* after block_elems */
    at += 12;                          /* block_elems, block_bytes, bits */
    at = skip_string(skip_string(at)); /* scale_type, layout */
    e->offset_at = at;
    e->n_bytes_at = at + 8;
    at += 24;                   /* offset, n_bytes, hash */
    at += 8 + u64_at(file, at); /* extra */
  }
  CHECK(at == end);
}

static const entry *named(const char *name) {
  for (size_t i = 0; i < n_entries; i++)
    if (strcmp(entries[i].name, name) == 0) return &entries[i];
  fprintf(stderr, "no tensor %s\n", name);
  exit(1);
}

/* A copy with `n` bytes of `value` at `at`, re-hashed, opened and validated. */
/* A second change made together with the one under test (at == 0: none). */
static uint64_t also_at[2], also_value[2];

static void patched(const char *what, uint64_t at, const void *value, size_t n, qiao_code code,
                    const char *field) {
  uint8_t *copy = exact_copy(file, file_len);
  memcpy(copy + at, value, n);
  for (int i = 0; i < 2; i++)
    if (also_at[i]) memcpy(copy + also_at[i], &also_value[i], 8);
  also_at[0] = also_at[1] = 0;
  uint64_t table_end = u64_at(copy, 56), zero = 0;
  memcpy(copy + 80, &zero, 8);
  uint64_t hash = XXH3_64bits(copy, table_end);
  memcpy(copy + 80, &hash, 8);
  qiao_status *st = try_open_exact(copy, file_len);
  if (code == QIAO_OK) {
    CHECK_OK(st);
  } else {
    expect_field = field;
    expect_code(what, st, code);
  }
  free(copy);
}
static void patched64(const char *what, uint64_t at, uint64_t v, qiao_code code,
                      const char *field) {
  patched(what, at, &v, 8, code, field);
}
static void patched32(const char *what, uint64_t at, uint32_t v, qiao_code code,
                      const char *field) {
  patched(what, at, &v, 4, code, field);
}

int main(void) {
  char path[] = "/tmp/qiao-malformed-table-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 1;
  close(fd);
  qiao_model *gguf = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &gguf));
  if (gguf == NULL) return 1;
  qiao_convert_options opts = {sizeof(opts), QIAO_FILE_QIAO, QIAO_DTYPE_COUNT, false};
  CHECK_OK(qiao_model_write(gguf, path, &opts));
  qiao_model_close(gguf);
  file = (uint8_t *)test_read_file(path, &file_len);
  unlink(path);
  walk_table();
  /* the unchanged file, re-hashed the same way, opens and validates */
  patched("control (nothing changed)", 0, file, 4, QIAO_OK, NULL);

  const entry *q = named("blk.0.attn_q.weight"), *k = named("blk.0.attn_k.weight");
  const entry *norm = named("output_norm.weight");
  const entry *last = &entries[n_entries - 1];

  /* names: a NUL byte inside, a duplicate (k renamed q: same length) */
  patched("NUL byte in a tensor name", q->name_at + 3, "\0", 1, QIAO_MALFORMED, "NUL");
  patched("duplicate tensor name", k->name_at + k->name_len - 8, "q", 1, QIAO_MALFORMED,
          "duplicate");
  /* shapes and descriptors */
  /* a dimension of 0 with n_bytes 0 and the hash of no bytes, so that the
   * size and hash checks agree with the shape: only the dimension check can
   * refuse it, outermost and innermost */
  for (uint32_t d = 0; d < q->n_dims; d += q->n_dims - 1) {
    also_at[0] = q->n_bytes_at, also_value[0] = 0;
    also_at[1] = q->n_bytes_at + 8, also_value[1] = XXH3_64bits("", 0);
    char need[64];
    snprintf(need, sizeof(need), "dimension %u is zero", d);
    patched64(d ? "the row dimension 0" : "the outer dimension 0", q->shape_at + 8 * d, 0,
              QIAO_MALFORMED, need);
  }
  patched32("n_dims 0", q->n_dims_at, 0, QIAO_MALFORMED, "0 dimensions");
  patched32("block_bytes of f32 is not 4", norm->block_bytes_at, 8, QIAO_MALFORMED, "descriptor");
  patched32("unknown dtype", norm->dtype_at, 99, QIAO_UNSUPPORTED, "99");
  patched64("n_bytes one less than the shape gives", q->n_bytes_at, u64_at(file, q->n_bytes_at) - 1,
            QIAO_MALFORMED, "bytes, but its shape");
  patched64("n_bytes one more than the shape gives", q->n_bytes_at, u64_at(file, q->n_bytes_at) + 1,
            QIAO_MALFORMED, "bytes, but its shape");
  /* offsets */
  patched64("offset not aligned", q->offset_at, u64_at(file, q->offset_at) + 4, QIAO_MALFORMED,
            "misaligned");
  patched64("offsets overlapping", q->offset_at, u64_at(file, k->offset_at), QIAO_MALFORMED,
            "overlap");
  patched64("data past data_size", last->offset_at, u64_at(file, last->offset_at) + 4096,
            QIAO_MALFORMED, last->name);
  patched64("offset huge", last->offset_at, 1ull << 63, QIAO_MALFORMED, last->name);

  fprintf(stderr, ".qiao tensor table: %d cases\n", cases_run);
  free(file);
  TEST_END();
}
