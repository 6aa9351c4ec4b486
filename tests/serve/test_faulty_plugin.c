/* The faulty test plugin (faulty_plugin.c) on stories260K: it runs as the
 * CPU backend until its trigger file exists; then forward fails with a
 * status naming DEVICE_LOST and qiao_engine_device_lost() says so, and every
 * later forward fails at once. With QIAO_FAULTY_FAIL_EVERY=N forward fails
 * with an internal error, again and again, and the device is not lost. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qiao/engine.h"
#include "qiao/model.h"
#include "test_util.h"

static const int32_t prompt[] = {1, 403, 407, 261, 378};

/* Writes the prompt to a new sequence (freed after); its status. */
static qiao_status *run_prompt(qiao_engine *e) {
  int32_t seq = -1, seqs[5], pos[5], next = -1;
  qiao_status *st = qiao_engine_seq_create(e, &seq);
  if (st != NULL) return st;
  for (int i = 0; i < 5; i++) {
    seqs[i] = seq;
    pos[i] = i;
  }
  qiao_batch b = {5, prompt, seqs, pos, NULL};
  st = qiao_engine_forward(e, &b, NULL, &next);
  qiao_engine_seq_free(e, seq);
  return st;
}

static qiao_engine *open_engine(const qiao_model *model, const char *plugin) {
  qiao_engine_options o = qiao_engine_default_options();
  o.backend = plugin;
  o.max_context = 32;
  qiao_engine *e = NULL;
  CHECK_OK(qiao_engine_create(model, &o, &e));
  return e;
}

/* Checks that st failed with QIAO_DEVICE and a message holding `text`. */
static void check_failed(qiao_status *st, const char *text) {
  printf("failed: %s\n", qiao_status_message(st));
  CHECK(qiao_status_code(st) == QIAO_DEVICE);
  CHECK(strstr(qiao_status_message(st), text) != NULL);
  qiao_status_free(st);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: serve_faulty_plugin libqiao-test-faulty.so\n");
    return 1;
  }
  qiao_model *model = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &model));
  if (model == NULL) TEST_END();

  /* Lost once the trigger file exists. */
  char trigger[256];
  snprintf(trigger, sizeof(trigger), "/tmp/qiao_faulty_trigger_%d", (int)getpid());
  unlink(trigger);
  setenv("QIAO_FAULTY_TRIGGER", trigger, 1);
  unsetenv("QIAO_FAULTY_FAIL_EVERY");
  qiao_engine *e = open_engine(model, argv[1]);
  if (e != NULL) {
    CHECK(strcmp(qiao_engine_backend_name(e), "faulty") == 0);
    CHECK_OK(run_prompt(e));
    CHECK(!qiao_engine_device_lost(e));
    FILE *f = fopen(trigger, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    qiao_status *st = run_prompt(e);
    CHECK(strstr(qiao_status_message(st), "DEVICE_LOST") != NULL);
    check_failed(st, "faulty test device: lost");
    CHECK(qiao_engine_device_lost(e));
    st = run_prompt(e); /* refused at once */
    CHECK(strstr(qiao_status_message(st), "DEVICE_LOST") != NULL);
    check_failed(st, "the device was lost");
    qiao_engine_destroy(e);
  }
  unlink(trigger);

  /* Every 7th op fails, call after call; not lost. */
  unsetenv("QIAO_FAULTY_TRIGGER");
  setenv("QIAO_FAULTY_FAIL_EVERY", "7", 1);
  e = open_engine(model, argv[1]);
  if (e != NULL) {
    for (int i = 0; i < 3; i++)
      check_failed(run_prompt(e), "faulty test device: op ");
    CHECK(!qiao_engine_device_lost(e));
    qiao_engine_destroy(e);
  }
  unsetenv("QIAO_FAULTY_FAIL_EVERY");
  qiao_model_close(model);
  TEST_END();
}
