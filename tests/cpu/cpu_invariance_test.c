/* Batch-invariant mode of the CPU backend, for one kernel set
 * (cpu_invariance_test ISA: scalar, avx2 or avx512; CTest runs one test per
 * set): the checks of invariance_checks.h, and, for information, how often
 * the ordinary mode differs (it is not invariant on AVX-512: that is why the
 * mode exists). A set the processor lacks exits 77, which CTest shows as
 * skipped, not passed. */
#include <string.h>

#include "invariance_checks.h"

int main(int argc, char **argv) {
  size_t n_isas = sizeof(isas) / sizeof(isas[0]), i = 0;
  while (argc == 2 && i < n_isas && strcmp(isas[i], argv[1]) != 0)
    i++;
  if (argc != 2 || i == n_isas) {
    fprintf(stderr, "usage: cpu_invariance_test scalar|avx2|avx512\n");
    return 2;
  }
  api = qiao_cpu_get_api();
  options_checks();
  env alone, many, plain;
  if (!open_mode(&alone, isas[i], 1, QIAO_DEV_OPEN_BATCH_INVARIANT)) {
    printf("%s: not supported by this processor, skipped\n", isas[i]);
    return failures ? 1 : 77;
  }
  open_mode(&many, isas[i], 3, QIAO_DEV_OPEN_BATCH_INVARIANT);
  open_mode(&plain, isas[i], 1, 0);
  check_all_ops(&alone, &many, &plain);
  env_close(&alone);
  env_close(&many);
  env_close(&plain);
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("%s: ok\n", argv[1]);
  return 0;
}
