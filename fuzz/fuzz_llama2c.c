/* libFuzzer target: llama2.c checkpoints (legacy and "ak42" version 1) via
 * qiao__import_llama2c then validate, and the same bytes as a tok.bin
 * tokenizer for a vocab size taken from the first byte. */
#include <stdint.h>
#include <stdlib.h>

#include "format/import_llama2c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qiao_model *model = NULL;
  qiao_status *st = qiao__model_create("fuzz.bin", "llama2c", &model);
  if (st == NULL) st = qiao__import_llama2c(model, data, size, "fuzz.bin", NULL);
  if (st == NULL) st = qiao_model_validate(model);
  qiao_status_free(st);
  qiao_model_close(model);

  model = NULL;
  uint32_t vocab = 3 + (size > 0 ? data[0] : 0);
  st = qiao__model_create("fuzz-tok.bin", "llama2c", &model);
  if (st == NULL) st = qiao__llama2c_add_tokenizer(model, data, size, "fuzz-tok.bin", vocab);
  qiao_status_free(st);
  qiao_model_close(model);
  return 0;
}
