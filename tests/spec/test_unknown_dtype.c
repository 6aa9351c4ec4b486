/* The compatibility promise of docs/spec/format.md §4.1 and §6.2 through the
 * library API: a 1.x file with a tensor of an element type this version does
 * not know opens, lists the tensor with its stored type number and layout,
 * and refuses only its uses (validation when a model needs it, conversion),
 * naming the tensor and the type. argv[1]: spec-tests/files. */
#include <stdio.h>
#include <string.h>

#include "qiao/model.h"
#include "test_util.h"

static char dir[4096];

static qiao_model *open_file(const char *name) {
  char path[8192];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  qiao_model *m = NULL;
  CHECK_OK(qiao_model_open(path, NULL, &m));
  return m;
}

static void expect_unsupported(qiao_status *st, const char *a, const char *b) {
  CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED);
  const char *msg = st ? qiao_status_message(st) : "";
  CHECK(strstr(msg, a) != NULL && strstr(msg, b) != NULL);
  if (st && (strstr(msg, a) == NULL || strstr(msg, b) == NULL))
    fprintf(stderr, "message lacks '%s' or '%s': %s\n", a, b, msg);
  qiao_status_free(st);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: spec_unknown_dtype SPEC_TESTS_FILES_DIR\n");
    return 2;
  }
  snprintf(dir, sizeof(dir), "%s", argv[1]);

  /* newer-minor.qiao: 1.1, tensor "future" of dtype 77 beside f32 "plain" */
  qiao_model *m = open_file("newer-minor.qiao");
  if (m != NULL) {
    CHECK(qiao_model_tensor_count(m) == 2);
    const qiao_tensor *plain = qiao_model_tensor_find(m, "plain");
    const qiao_tensor *future = qiao_model_tensor_find(m, "future");
    CHECK(plain != NULL && future != NULL);
    if (plain != NULL && future != NULL) {
      CHECK(plain->dtype == QIAO_DTYPE_F32 && plain->stored_dtype == 0);
      CHECK(strcmp(plain->layout, "f32") == 0);
      CHECK_OK(qiao_model_tensor_check(m, plain));
      CHECK(future->dtype == QIAO_DTYPE_UNKNOWN && future->stored_dtype == 77);
      CHECK(strcmp(future->layout, "q3_future") == 0);
      CHECK(future->n_dims == 2 && future->shape[0] == 2 && future->shape[1] == 32);
      CHECK(future->n_bytes == 28 && future->data != NULL);
      CHECK(qiao_dtype_get_info(future->dtype) == NULL);
      expect_unsupported(qiao_model_tensor_check(m, future), "tensor future", "element type 77");
      /* nothing can write it: neither as it is nor converted */
      qiao_convert_options o = {sizeof(o), QIAO_FILE_QIAO, QIAO_DTYPE_COUNT, false};
      expect_unsupported(qiao_model_write(m, "/nonexistent-dir/x.qiao", &o), "tensor future", "77");
      o.weight_dtype = QIAO_DTYPE_F16;
      o.format = QIAO_FILE_GGUF;
      expect_unsupported(qiao_model_write(m, "/nonexistent-dir/x.gguf", &o), "tensor future", "77");
    }
    qiao_model_close(m);
  }

  /* unknown-type-needed.qiao: a model whose blk.0.attn_q.weight has dtype 200 */
  m = open_file("unknown-type-needed.qiao");
  if (m != NULL) {
    expect_unsupported(qiao_model_check(m), "tensor blk.0.attn_q.weight", "element type 200");
    expect_unsupported(qiao_model_validate(m), "tensor blk.0.attn_q.weight", "element type 200");
    qiao_model_close(m);
  }

  /* tiny-llama-1.1.qiao: 1.1 with only 1.0 types validates */
  m = open_file("tiny-llama-1.1.qiao");
  if (m != NULL) {
    CHECK_OK(qiao_model_validate(m));
    CHECK(qiao_model_kv_find(m, "future.key") != NULL);
    qiao_model_close(m);
  }
  TEST_END();
}
