/* Capability refusal: a q8_0 model on a backend without q8_0 matmul fails
 * at engine creation with QIAO_UNSUPPORTED naming the backend, the op, the
 * dtype and the tensor; the same model runs on the CPU backend, and with
 * allow_fallback on the plugin (q8_0 matmuls placed on the CPU backend). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine_test_util.h"
#include "qiao/model.h"

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: engine_capability PLUGIN.so\n");
    return 1;
  }
  qiao_model *model = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &model));
  if (model == NULL) TEST_END();
  char path[256];
  snprintf(path, sizeof(path), "/tmp/qiao_engine_cap_%d.gguf", (int)getpid());
  qiao_convert_options co = {sizeof(co), QIAO_FILE_GGUF, QIAO_DTYPE_Q8_0, false};
  CHECK_OK(qiao_model_write(model, path, &co));
  qiao_model *q8 = NULL;
  CHECK_OK(qiao_model_open(path, NULL, &q8));
  unlink(path);
  if (q8 != NULL) {
    qiao_engine_options o = qiao_engine_default_options();
    o.backend = argv[1];
    o.max_context = 16;
    qiao_engine *e = NULL;
    qiao_status *st = qiao_engine_create(q8, &o, &e);
    CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED);
    const char *msg = qiao_status_message(st);
    printf("refused: %s\n", msg);
    CHECK(strstr(msg, "backend noq8 does not support matmul for q8_0 (needed by ") != NULL);
    CHECK(strstr(msg, ".weight") != NULL);
    qiao_status_free(st);
    CHECK(e == NULL);
    /* The f32 model (no q8_0) is fine on the same plugin. */
    CHECK_OK(qiao_engine_create(model, &o, &e));
    qiao_engine_destroy(e);
    e = NULL;
    /* And the q8_0 model is fine on the CPU backend. */
    o.backend = "cpu";
    CHECK_OK(qiao_engine_create(q8, &o, &e));
    /* With fallback, the plugin runs everything but q8_0 matmul, which runs
     * on the built-in CPU backend: the same logits as all on the CPU. */
    qiao_engine *f = NULL;
    o.backend = argv[1];
    o.allow_fallback = true;
    CHECK_OK(qiao_engine_create(q8, &o, &f));
    if (e != NULL && f != NULL) {
      const int32_t ids[] = {1, 403, 407, 261, 378};
      float a[5 * 512], b[5 * 512];
      CHECK_OK(all_logits(e, ids, 5, a));
      CHECK_OK(all_logits(f, ids, 5, b));
      CHECK(memcmp(a, b, sizeof(a)) == 0);
      int32_t ga[8], gb[8];
      CHECK_OK(greedy(e, ids, 5, ga, 8));
      CHECK_OK(greedy(f, ids, 5, gb, 8));
      CHECK(memcmp(ga, gb, sizeof(ga)) == 0);
    }
    qiao_engine_destroy(f);
    qiao_engine_destroy(e);
  }
  qiao_model_close(q8);
  qiao_model_close(model);
  TEST_END();
}
