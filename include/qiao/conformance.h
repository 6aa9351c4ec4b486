/* qiao/conformance.h: certifying a device backend against the reference.
 *
 * qiao_conformance_run() loads a backend (a name or a plugin path, as
 * qiao_backend_load takes), and checks it at up to three levels, each defined
 * in docs/spec/device-abi.md §12:
 *   ops    every op x dtype the backend claims (op_supported), on random
 *          inputs and edge shapes, against a float64 evaluation of the
 *          spec's definitions (no backend's code) within its error budgets;
 *   abi    version fields, error paths, allocation balance, queue ordering;
 *   models the tiny reference models and stories260K end to end through the
 *          engine, against the transformers logits and greedy ids.
 * Combinations the backend does not claim are "unsupported", not failures.
 *
 * Ownership: the report is the caller's (qiao_conformance_report_destroy).
 * Thread-safety: independent runs may proceed on different threads. */
#ifndef QIAO_CONFORMANCE_H
#define QIAO_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qiao/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QIAO_CONFORMANCE_OPS 1u
#define QIAO_CONFORMANCE_ABI 2u
#define QIAO_CONFORMANCE_MODELS 4u
#define QIAO_CONFORMANCE_ALL 7u

typedef struct qiao_conformance_options {
  size_t struct_size;
  const char *backend; /* a backend name or plugin path; required */
  uint32_t levels;     /* QIAO_CONFORMANCE_* bits; 0 = all */
  uint64_t seed;       /* of every random input; the caller picks a fresh one */
  uint32_t device;     /* the device index to certify */
  uint32_t op_mask;    /* ops level: bit (1 << op) set = test that op; 0 = every op */
  const char *shared;  /* the shared folder for models; NULL = $QIAO_SHARED or ../shared */
  FILE *progress;      /* one line per check group as it runs; NULL = quiet */
} qiao_conformance_options;

typedef struct qiao_conformance_report qiao_conformance_report;

/* Runs the levels asked for. Fails only when the run cannot start (the
 * backend does not load, the device cannot be opened); every failed check is
 * recorded in the report instead. */
qiao_status *qiao_conformance_run(const qiao_conformance_options *options,
                                  qiao_conformance_report **out_report);

/* True when every check of every level run passed. */
bool qiao_conformance_passed(const qiao_conformance_report *report);

/* The failures, each one line naming the op, dtype, shape and error measured
 * (or the ABI check / model). Valid until the report is destroyed. */
size_t qiao_conformance_failure_count(const qiao_conformance_report *report);
const char *qiao_conformance_failure(const qiao_conformance_report *report, size_t index);

/* The human-readable summary: pass/fail per level, the certified op x dtype
 * table and the conformance statement ("qiao-conformant 1.0: ops+abi"). */
void qiao_conformance_print_summary(const qiao_conformance_report *report, FILE *out);

/* Writes every measurement as JSON (see docs/spec/device-abi.md §12.5). */
qiao_status *qiao_conformance_write_json(const qiao_conformance_report *report, const char *path);

/* Accepts NULL. */
void qiao_conformance_report_destroy(qiao_conformance_report *report);

#ifdef __cplusplus
}
#endif
#endif
