/* Malformed .qiao files: stories260K.gguf converted with qiao_model_write,
 * then truncated and corrupted in memory. Each must fail (open, then
 * validate) with the stated code.
 *
 * Truncation coverage: every length from 0 to 64 bytes past the start of the
 * first tensor's data (the whole header and metadata region, byte by byte),
 * every length within 16 bytes of every tensor's start/end, a stride of 257
 * bytes elsewhere, and size-1. Each attempt uses one copy of the file with
 * everything after the cut poisoned for ASan, so any read past the cut is
 * reported.
 * Corruption: one flipped byte in the middle of every tensor's data must be
 * caught by validate (the tensor hashes). */
#include <unistd.h>

#include "malformed_util.h"

static uint8_t *file;
static size_t file_len;

static void convert(const char *path) {
  qiao_model *gguf = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &gguf));
  if (gguf == NULL) exit(1);
  qiao_convert_options opts = {sizeof(opts), QIAO_FILE_QIAO, QIAO_DTYPE_COUNT, false};
  CHECK_OK(qiao_model_write(gguf, path, &opts));
  qiao_model_close(gguf);
  file = (uint8_t *)test_read_file(path, &file_len);
}

int main(void) {
  char path[] = "/tmp/qiao-malformed-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 1;
  close(fd);
  convert(path);
  unlink(path);

  /* Where the tensors lie, from the control open. */
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_open_buffer(file, file_len, "stories260K.qiao", &m));
  if (m == NULL) return 1;
  CHECK_OK(qiao_model_validate(m));
  uint64_t n = qiao_model_tensor_count(m);
  uint64_t *bounds = calloc(2 * n + 1, sizeof(uint64_t));
  uint64_t first_data = file_len;
  for (uint64_t i = 0; i < n; i++) {
    const qiao_tensor *t = qiao_model_tensor_at(m, i);
    uint64_t offset = (uint64_t)((const uint8_t *)t->data - file);
    bounds[2 * i] = offset;
    bounds[2 * i + 1] = offset + t->n_bytes;
    if (offset < first_data) first_data = offset;
  }

  /* A flipped byte inside each tensor. */
  for (uint64_t i = 0; i < n; i++) {
    const qiao_tensor *t = qiao_model_tensor_at(m, i);
    uint8_t *copy = exact_copy(file, file_len);
    copy[bounds[2 * i] + t->n_bytes / 2] ^= 0x5a;
    char what[128];
    snprintf(what, sizeof(what), "flipped byte in %s", t->name);
    expect_code(what, try_open_exact(copy, file_len), QIAO_MALFORMED);
    free(copy);
  }
  qiao_model_close(m);

  uint8_t *copy = exact_copy(file, file_len);
  copy[0] = 'X'; /* not a .qiao any more: read as a llama2.c header */
  expect_code("bad magic", try_open_exact(copy, file_len), QIAO_MALFORMED);
  free(copy);

  int tried = 0, failures_before = test_failures;
  for (size_t len = 0; len < file_len; len++) {
    if (!(len <= first_data + 64 || near_boundary(len, bounds, 2 * n, 16) || len % 257 == 0 ||
          len == file_len - 1))
      continue;
    tried++;
    qiao_status *st = with_prefix(file, file_len, len, 0, try_open_exact);
    if (qiao_status_code(st) != QIAO_MALFORMED) {
      char what[64];
      snprintf(what, sizeof(what), ".qiao truncated to %zu bytes", len);
      expect_code(what, st, QIAO_MALFORMED);
      if (test_failures - failures_before > 5) break;
    } else {
      cases_run++;
      qiao_status_free(st);
    }
  }
  fprintf(stderr, ".qiao: %d truncation lengths tried, %d cases\n", tried, cases_run);
  free(bounds);
  free(file);
  TEST_END();
}
