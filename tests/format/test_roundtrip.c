/* Round trips: stories260K.gguf -> .qiao -> .gguf -> .qiao keeps every
 * tensor byte for byte and every metadata entry; each file validates. */
#include <string.h>

#include "format/model_internal.h"
#include "format_test_util.h"

static qiao_convert_options opts_for(qiao_file_format format, qiao_dtype dtype) {
  return (qiao_convert_options){.struct_size = sizeof(qiao_convert_options),
                                .format = format,
                                .weight_dtype = dtype,
                                .progress = false};
}

int main(void) {
  const char *dir = scratch_dir("format_roundtrip");
  const char *src = test_shared_path("models/stories260K/stories260K.gguf");
  const char *q1 = scratch_file(dir, "a.qiao"), *g = scratch_file(dir, "b.gguf"),
             *q2 = scratch_file(dir, "c.qiao");

  qiao_model *orig = NULL, *m1 = NULL, *mg = NULL, *m2 = NULL;
  CHECK_OK(qiao_model_open(src, NULL, &orig));
  if (orig == NULL) TEST_END();
  CHECK_OK(qiao_model_validate(orig));

  qiao_convert_options to_qiao = opts_for(QIAO_FILE_QIAO, QIAO_DTYPE_COUNT);
  qiao_convert_options to_gguf = opts_for(QIAO_FILE_GGUF, QIAO_DTYPE_COUNT);
  CHECK_OK(qiao_model_write(orig, q1, &to_qiao));
  CHECK_OK(qiao_model_open(q1, NULL, &m1));
  if (m1 == NULL) TEST_END();
  CHECK(strcmp(qiao_model_format(m1), "qiao") == 0);
  CHECK_OK(qiao_model_validate(m1));
  CHECK(tensors_identical(orig, m1) == 0);
  CHECK(kvs_identical(orig, m1, "") == 0);
  CHECK(kvs_identical(m1, orig, "") == 0);
  /* data is page-aligned in the file and every tensor 64-byte aligned */
  for (uint64_t i = 0; i < qiao_model_tensor_count(m1); i++)
    CHECK(((uintptr_t)qiao_model_tensor_at(m1, i)->data) % 64 == 0);

  CHECK_OK(qiao_model_write(m1, g, &to_gguf));
  CHECK_OK(qiao_model_open(g, NULL, &mg));
  if (mg == NULL) TEST_END();
  CHECK(strcmp(qiao_model_format(mg), "gguf") == 0);
  CHECK_OK(qiao_model_validate(mg));
  CHECK(tensors_identical(m1, mg) == 0);
  CHECK(kvs_identical(m1, mg, "") == 0);
  CHECK(kvs_identical(mg, m1, "") == 0);

  CHECK_OK(qiao_model_write(mg, q2, &to_qiao));
  CHECK_OK(qiao_model_open(q2, NULL, &m2));
  if (m2 == NULL) TEST_END();
  CHECK_OK(qiao_model_validate(m2));
  CHECK(tensors_identical(orig, m2) == 0);
  CHECK(kvs_identical(orig, m2, "tokenizer.") == 0);
  CHECK(kvs_identical(orig, m2, "model.") == 0);

  /* Writing over an existing file replaces it; no temporary is left. */
  CHECK_OK(qiao_model_write(orig, q2, &to_qiao));
  char cmd[700];
  snprintf(cmd, sizeof(cmd), "test -z \"$(ls %s | grep tmp-)\"", dir);
  CHECK(system(cmd) == 0);
  /* A write into a missing folder fails. */
  const char *bad = scratch_file(dir, "missing-dir/x.qiao");
  CHECK_ERR(qiao_model_write(orig, bad, &to_qiao), QIAO_IO);
  /* A write that fails after writing its temporary in full (the destination
   * is a folder: only the rename fails) leaves nothing behind in `dir`, where
   * the temporary was. */
  const char *taken = scratch_file(dir, "taken.qiao");
  snprintf(cmd, sizeof(cmd), "mkdir %s", taken);
  CHECK(system(cmd) == 0);
  CHECK_ERR(qiao_model_write(orig, taken, &to_qiao), QIAO_IO);
  snprintf(cmd, sizeof(cmd), "test -z \"$(ls %s | grep tmp-)\"", dir);
  CHECK(system(cmd) == 0);

  qiao_model_close(orig);
  qiao_model_close(m1);
  qiao_model_close(mg);
  qiao_model_close(m2);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  TEST_END();
}
