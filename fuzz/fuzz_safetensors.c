/* libFuzzer target: safetensors bytes -> qiao__import_safetensors (the whole
 * header and range check), must fail cleanly or give a model whose tensors
 * lie inside the input. */
#include <stdint.h>
#include <stdlib.h>

#include "format/model_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qiao_model *model = NULL;
  qiao_status *st = qiao__model_create("fuzz.safetensors", "hf", &model);
  if (st == NULL) st = qiao__import_safetensors(model, data, size, "fuzz.safetensors");
  if (st == NULL) {
    for (uint64_t i = 0; i < qiao_model_tensor_count(model); i++) {
      const qiao_tensor *t = qiao_model_tensor_at(model, i);
      const uint8_t *p = t->data;
      /* Zero-copy tensors must lie inside the input (copies are model-owned). */
      if (p >= data && p < data + size && (uint64_t)(data + size - p) < t->n_bytes) abort();
    }
  }
  qiao_status_free(st);
  qiao_model_close(model);
  return 0;
}
