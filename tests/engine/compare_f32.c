/* compare_f32 A.f32 B.f32 ROW BOUND: fails unless both files hold the same
 * number of floats and every row of ROW floats of A is within relative L2
 * BOUND of B's. A helper of the engine's shell tests. */
#include <stdio.h>
#include <stdlib.h>

#include "engine_test_util.h"

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: compare_f32 A.f32 B.f32 ROW BOUND\n");
    return 2;
  }
  size_t na = 0, nb = 0;
  float *a = (float *)test_read_file(argv[1], &na), *b = (float *)test_read_file(argv[2], &nb);
  size_t row = (size_t)atol(argv[3]);
  double bound = atof(argv[4]), worst = 0;
  CHECK(na == nb && row > 0 && na % (row * 4) == 0);
  for (size_t r = 0; na == nb && row > 0 && r < na / 4 / row; r++) {
    double err = rel_l2(a + r * row, b + r * row, row);
    if (err > worst) worst = err;
  }
  printf("worst row rel L2 %.3g (bound %g)\n", worst, bound);
  CHECK(worst < bound);
  free(a);
  free(b);
  TEST_END();
}
