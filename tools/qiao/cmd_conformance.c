/* qiao conformance: not written yet (placeholder so the command table links). */
#include <stdio.h>

#include "commands.h"

int qiao_cmd_conformance(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "error: 'qiao conformance' is not implemented yet\n");
  return 1;
}
