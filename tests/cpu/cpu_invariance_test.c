/* Batch-invariant mode of the CPU backend, for every kernel set the
 * processor has (scalar, avx2, avx512): the checks of invariance_checks.h,
 * and, for information, how often the ordinary mode differs (it is not
 * invariant on AVX-512: that is why the mode exists). */
#include "invariance_checks.h"

int main(void) {
  api = qiao_cpu_get_api();
  options_checks();
  for (size_t i = 0; i < sizeof(isas) / sizeof(isas[0]); i++) {
    env alone, many, plain;
    if (!open_mode(&alone, isas[i], 1, QIAO_DEV_OPEN_BATCH_INVARIANT)) {
      printf("%s: not supported by this processor, skipped\n", isas[i]);
      continue;
    }
    open_mode(&many, isas[i], 3, QIAO_DEV_OPEN_BATCH_INVARIANT);
    open_mode(&plain, isas[i], 1, 0);
    check_all_ops(&alone, &many, &plain);
    env_close(&alone);
    env_close(&many);
    env_close(&plain);
  }
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("ok\n");
  return 0;
}
