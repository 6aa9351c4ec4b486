/* qiao convert: not written yet (placeholder so the command table links). */
#include <stdio.h>

#include "commands.h"

int qiao_cmd_convert(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "error: 'qiao convert' is not implemented yet\n");
  return 1;
}
