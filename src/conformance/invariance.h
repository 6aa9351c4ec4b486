/* Internal: what the batch-invariance checks of every ABI version share
 * (defined in invariance_checks.c; invariance_1_4_checks.c uses them too). */
#ifndef QIAO_CONFORMANCE_INVARIANCE_H
#define QIAO_CONFORMANCE_INVARIANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conformance/harness.h"

/* One run of the checks: where they are recorded, the device opened in the
 * batch-invariant mode, and the random inputs' generator. */
typedef struct qiao__cf_inv {
  qiao_conformance_report *report;
  cf_device *dev;
  cf_rng rng;
} qiao__cf_inv;

/* Device buffers holding copies of host arrays for one op call. */
#define QIAO__CF_INV_MAX_BUFS 8
typedef struct qiao__cf_inv_bufs {
  qiao_dev_buffer *b[QIAO__CF_INV_MAX_BUFS];
  int n;
} qiao__cf_inv_bufs;

/* Records one invariance case in the report's ops array (a failure also
 * marks op x dtype failed and names the shape). A non-NULL st (a call that
 * failed; consumed) makes the case fail with its message instead of why. */
void qiao__cf_inv_record(qiao__cf_inv *x, qiao_dev_op op, qiao_dev_dtype dt, const char *shape,
                         bool pass, const char *why, qiao_status *st);

/* Whether each of the count target rows rows[r] of a call of n rows (row_len
 * floats each, in out) has the bits of `alone`. If not, writes to why:
 * "not batch-invariant: <unit> <row> of <n_name>=<n><context> differs from
 * the <unit> computed alone (element <j>: <got> vs <alone>)". */
bool qiao__cf_inv_rows_match(const float *out, const float *alone, uint64_t row_len,
                             const uint64_t *rows, int count, uint64_t n, const char *unit,
                             const char *n_name, const char *context, char *why, size_t why_size);

/* A new buffer of `bytes` in bs, holding a copy of `host` (NULL: an output). */
qiao_status *qiao__cf_inv_upload(qiao__cf_inv *x, qiao__cf_inv_bufs *bs, const void *host,
                                 uint64_t bytes, qiao_dev_ref *out);

/* Waits for the queue and frees every buffer of bs. */
void qiao__cf_inv_release(qiao__cf_inv *x, qiao__cf_inv_bufs *bs);

/* The positions of the target row in a call of n rows (first, middle, last);
 * returns how many. */
int qiao__cf_inv_target_rows(uint64_t n, uint64_t rows[3]);

/* Writes element i of a cache of dtype dt (F32 or F16). */
void qiao__cf_inv_put(uint8_t *cache, qiao_dev_dtype dt, uint64_t i, float v);

/* The first of n floats whose bits differ, or -1. */
int64_t qiao__cf_inv_first_difference(const void *got, const void *want, uint64_t n);

#endif
