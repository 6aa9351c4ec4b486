/* llama.cpp's reference quantizers from a C test (header-only).
 *
 * Usage:
 *   #include "peers/ggml_ref.h"
 *   const char *ref = ggml_ref_program();          // NULL (and a message) on failure
 *   ggml_ref_run(ref, "quantize", "q8_0", x, n * 4, blocks, n / 32 * 34);
 *   ggml_ref_run(ref, "dequantize", "q4_K", blocks, bytes, y, n * 4);
 * ggml_ref_program() runs tests/peers/ggml_quants.sh with the test
 * environment's $QIAO_SOURCE_DIR and $QIAO_BUILD_DIR (set by qiao_test):
 * the program is built once into $QIAO_BUILD_DIR/peers from
 * $QIAO_SHARED/peers/llama.cpp-src.tar.gz (see ggml_quants.sh). A test that
 * cannot get it must fail, not skip. */
#ifndef QIAO_TEST_GGML_REF_H
#define QIAO_TEST_GGML_REF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The driver's path (a static buffer), or NULL after printing why. */
static inline const char *ggml_ref_program(void) {
  static char path[4096];
  const char *src = getenv("QIAO_SOURCE_DIR"), *build = getenv("QIAO_BUILD_DIR");
  if (src == NULL || build == NULL) {
    fprintf(stderr,
            "ggml_ref: QIAO_SOURCE_DIR and QIAO_BUILD_DIR must be set (run through ctest)\n");
    return NULL;
  }
  char cmd[8192];
  snprintf(cmd, sizeof(cmd), "sh '%s/tests/peers/ggml_quants.sh' '%s/peers'", src, build);
  FILE *p = popen(cmd, "r");
  if (p == NULL || fgets(path, sizeof(path), p) == NULL) path[0] = '\0';
  int rc = p ? pclose(p) : -1;
  path[strcspn(path, "\n")] = '\0';
  if (rc != 0 || path[0] == '\0') {
    fprintf(stderr, "ggml_ref: %s failed\n", cmd);
    return NULL;
  }
  return path;
}

/* Runs `program VERB TYPE` with `in` on its stdin; its stdout must be exactly
 * `out_bytes` long. Returns 0 on success, else -1 after printing why. */
static inline int ggml_ref_run(const char *program, const char *verb, const char *type,
                               const void *in, size_t in_bytes, void *out, size_t out_bytes) {
  char in_path[] = "/tmp/qiao_ggml_ref_in_XXXXXX", out_path[] = "/tmp/qiao_ggml_ref_out_XXXXXX";
  int fi = mkstemp(in_path), fo = mkstemp(out_path), ok = -1;
  if (fi < 0 || fo < 0) {
    fprintf(stderr, "ggml_ref: cannot create temporary files\n");
    goto done;
  }
  if (write(fi, in, in_bytes) != (ssize_t)in_bytes) goto done;
  char cmd[8192];
  snprintf(cmd, sizeof(cmd), "'%s' %s %s < '%s' > '%s'", program, verb, type, in_path, out_path);
  if (system(cmd) != 0) {
    fprintf(stderr, "ggml_ref: %s failed\n", cmd);
    goto done;
  }
  FILE *f = fopen(out_path, "rb");
  size_t got = f ? fread(out, 1, out_bytes, f) : 0;
  int extra = f ? fgetc(f) != EOF : 0;
  if (f) fclose(f);
  if (got != out_bytes || extra) {
    fprintf(stderr, "ggml_ref: %s: %zu bytes out, %zu expected\n", cmd, got, out_bytes);
    goto done;
  }
  ok = 0;
done:
  if (fi >= 0) close(fi), unlink(in_path);
  if (fo >= 0) close(fo), unlink(out_path);
  return ok;
}

#endif
