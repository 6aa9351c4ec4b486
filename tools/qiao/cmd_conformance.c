/* qiao conformance: certify a backend against the reference (see
 * include/qiao/conformance.h and docs/spec/device-abi.md §12). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "qiao/backend.h"
#include "qiao/conformance.h"

static void usage(FILE *f) {
  fprintf(f, "usage: qiao conformance [--backend NAME|PATH] [-o REPORT.json] [--level LEVELS]\n"
             "                        [--seed S] [--device N] [--op OP[,OP...]] [--quiet]\n\n"
             "Certifies a device backend against device ABI 1.1 (docs/spec/device-abi.md):\n"
             "  ops     every op x dtype the backend claims, random inputs and edge shapes,\n"
             "          against a float64 evaluation of the spec within its error budgets;\n"
             "          batch invariance of matmul and attention when it claims the mode\n"
             "  abi     versions, error paths, allocation balance, queue ordering, threads\n"
             "  models  the tiny reference models and stories260K through the engine\n"
             "LEVELS is ops, abi, models or all (default), or a comma list (ops,abi).\n"
             "--op limits the ops level to the ops named (embed, matmul, rope, ...).\n"
             "Inputs are random with a fresh seed each run unless --seed is given; the seed\n"
             "is printed so a failure can be reproduced. Exit status 0 only when every\n"
             "claimed capability passes.\n");
}

static qiao_status *parse_levels(const char *text, uint32_t *out) {
  uint32_t levels = 0;
  const char *p = text;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == 3 && strncmp(p, "ops", 3) == 0)
      levels |= QIAO_CONFORMANCE_OPS;
    else if (len == 3 && strncmp(p, "abi", 3) == 0)
      levels |= QIAO_CONFORMANCE_ABI;
    else if (len == 6 && strncmp(p, "models", 6) == 0)
      levels |= QIAO_CONFORMANCE_MODELS;
    else if (len == 3 && strncmp(p, "all", 3) == 0)
      levels |= QIAO_CONFORMANCE_ALL;
    else
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "--level: '%.*s' is not one of ops, abi, models, all", (int)len, p);
    p += len + (end ? 1 : 0);
  }
  if (levels == 0) return qiao__error(QIAO_INVALID_ARGUMENT, "--level: no level given");
  *out = levels;
  return NULL;
}

/* "rope,matmul" -> a bit per op */
static qiao_status *parse_ops(const char *text, uint32_t *out) {
  uint32_t mask = 0;
  const char *p = text;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    int found = -1;
    for (int op = 0; op < QIAO_DEV_OP_COUNT; op++)
      if (strlen(qiao_dev_op_name((qiao_dev_op)op)) == len &&
          strncmp(qiao_dev_op_name((qiao_dev_op)op), p, len) == 0)
        found = op;
    if (found < 0)
      return qiao__error(QIAO_INVALID_ARGUMENT, "--op: '%.*s' is not an op of the device ABI",
                         (int)len, p);
    mask |= 1u << found;
    p += len + (end ? 1 : 0);
  }
  if (mask == 0) return qiao__error(QIAO_INVALID_ARGUMENT, "--op: no op given");
  *out = mask;
  return NULL;
}

int qiao_cmd_conformance(int argc, char **argv) {
  const char *backend = "cpu", *output = NULL;
  uint32_t levels = QIAO_CONFORMANCE_ALL, device = 0;
  uint64_t seed = 0;
  uint32_t op_mask = 0;
  int have_seed = 0, quiet = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    qiao_status *st = NULL;
    int r = qiao_cli_parse_backend(argc, argv, &i, &backend);
    if (r < 0) return 2;
    if (r > 0) continue;
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
      quiet = 1;
    } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 || strcmp(a, "--level") == 0 ||
               strcmp(a, "--seed") == 0 || strcmp(a, "--device") == 0 || strcmp(a, "--op") == 0) {
      if ((v = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
      if (strcmp(a, "--level") == 0)
        st = parse_levels(v, &levels);
      else if (strcmp(a, "--seed") == 0)
        st = qiao_cli_parse_u64("--seed", v, &seed), have_seed = 1;
      else if (strcmp(a, "--op") == 0)
        st = parse_ops(v, &op_mask);
      else if (strcmp(a, "--device") == 0)
        st = qiao_cli_parse_u32("--device", v, 0, 1024, &device);
      else
        output = v;
    } else {
      return qiao_cli_unknown_arg("conformance", a);
    }
    if (st != NULL) {
      qiao_cli_fail(st);
      return 2;
    }
  }
  if (!have_seed) { /* a fresh seed per run: the suite explores, the seed reproduces */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed =
        ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    seed %= 1000000000000ull;
  }
  printf("qiao conformance: backend %s, seed %llu (rerun with --seed %llu)\n", backend,
         (unsigned long long)seed, (unsigned long long)seed);
  fflush(stdout);
  qiao_conformance_options o = {.struct_size = sizeof(o),
                                .backend = backend,
                                .levels = levels,
                                .seed = seed,
                                .device = device,
                                .op_mask = op_mask,
                                .shared = qiao_cli_shared_dir(),
                                .progress = quiet ? NULL : stdout};
  qiao_conformance_report *report = NULL;
  qiao_status *st = qiao_conformance_run(&o, &report);
  if (st != NULL) return qiao_cli_fail(st);
  qiao_conformance_print_summary(report, stdout);
  int rc = qiao_conformance_passed(report) ? 0 : 1;
  if (output != NULL) {
    st = qiao_conformance_write_json(report, output);
    if (st != NULL)
      rc = qiao_cli_fail(st);
    else
      printf("report: %s\n", output);
  }
  qiao_conformance_report_destroy(report);
  return rc;
}
