/* qiao template: not written yet (placeholder so the command table links). */
#include <stdio.h>

#include "commands.h"

int qiao_cmd_template(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "error: 'qiao template' is not implemented yet\n");
  return 1;
}
