/* libFuzzer target: GGUF bytes through the GGUF reader, then the full
 * validation and the hyperparameter checks. */
#include <stdint.h>
#include <stdlib.h>

#include "format/model_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qiao_model *model = NULL;
  qiao_status *st = qiao__model_create("fuzz.gguf", "gguf", &model);
  if (st == NULL) st = qiao__import_gguf(model, data, size, "fuzz.gguf");
  if (st == NULL) {
    qiao_hparams h;
    qiao_status_free(qiao_model_get_hparams(model, &h));
    st = qiao_model_validate(model);
  }
  qiao_status_free(st);
  qiao_model_close(model);
  return 0;
}
