/* qiao logits: not written yet (placeholder so the command table links). */
#include <stdio.h>

#include "commands.h"

int qiao_cmd_logits(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "error: 'qiao logits' is not implemented yet\n");
  return 1;
}
