/* libFuzzer target: .qiao bytes through format detection and the .qiao
 * reader (qiao__model_open_buffer), then the full validation with hashes.
 * The header hash rejects almost every mutation early, so the seeds and
 * the dictionary matter less than for GGUF; a build with
 * -DQIAO_FUZZ_SKIP_HASH is not provided on purpose: the hash check is part
 * of what is being tested. */
#include <stdint.h>
#include <stdlib.h>

#include "format/model_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qiao_model *model = NULL;
  qiao_status *st = qiao__model_open_buffer(data, size, "fuzz.qiao", &model);
  if (st == NULL) st = qiao_model_validate(model);
  qiao_status_free(st);
  qiao_model_close(model);
  return 0;
}
