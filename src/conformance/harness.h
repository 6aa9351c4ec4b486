/* Internal pieces of the conformance suite: an opened device on either side
 * (target and reference), random inputs, number formats, the error metric of
 * docs/spec/device-abi.md §11, and the report being filled. */
#ifndef QIAO_CONFORMANCE_HARNESS_H
#define QIAO_CONFORMANCE_HARNESS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qiao/backend.h"
#include "qiao/conformance.h"
#include "qiao/device.h"

/* One opened device with one queue. */
typedef struct cf_device {
  qiao_backend *backend;
  const qiao_dev_api *api;
  qiao_dev_device *device;
  qiao_dev_queue *queue;
  const char *role; /* "target" or "reference" */
} cf_device;

qiao_status *qiao__cf_device_open(const char *backend, uint32_t index, const char *role,
                                  cf_device *out);
/* The same with device_open flags (QIAO_DEV_OPEN_*). */
qiao_status *qiao__cf_device_open_flags(const char *backend, uint32_t index, const char *role,
                                        uint32_t flags, cf_device *out);
void qiao__cf_device_close(cf_device *dev);
/* Turns a backend error into a status (destroying the error). */
qiao_status *qiao__cf_dev_status(const cf_device *dev, qiao_dev_error *error, const char *what);

/* A small fast PRNG (splitmix64): the whole suite is reproducible from the seed. */
typedef struct cf_rng {
  uint64_t state;
} cf_rng;
uint64_t qiao__cf_next(cf_rng *rng);
float qiao__cf_uniform(cf_rng *rng, float lo, float hi);
uint64_t qiao__cf_below(cf_rng *rng, uint64_t n); /* in [0, n) */

/* Number formats. */
uint16_t qiao__cf_f32_to_f16(float x); /* round to nearest even, subnormals, inf */
float qiao__cf_f16_to_f32(uint16_t h);
/* Bytes of `count` elements of dtype (a multiple of 32 for quantized ones). */
uint64_t qiao__cf_dtype_bytes(qiao_dev_dtype dtype, uint64_t count);
/* Elements per block of dtype: 1 (float types), 32 or 256 (1.3's k-quants). */
uint64_t qiao__cf_block_elems(qiao_dev_dtype dtype);
/* A row length for a case: `plain` for float dtypes, `quant` (a multiple of
 * 32) for dtypes of 32-element blocks, and for 256-element blocks `quant`
 * scaled to whole super-blocks (8x, at most 4352). */
uint64_t qiao__cf_row_len(qiao_dev_dtype dtype, uint64_t quant, uint64_t plain);
/* malloc'd random values of `dtype`: F32/F16/BF16 uniform in [-1, 1],
 * quantized ones random blocks (scales of either sign, every quant value). */
void *qiao__cf_random_weights(cf_rng *rng, qiao_dev_dtype dtype, uint64_t count);

/* The error metric: max over rows r of ||a_r - b_r||_2 / max(||b_r||_2, S)
 * with S the RMS row norm of b over all rows. Non-finite where the other is
 * finite gives +inf. *out_row gets the worst row. */
double qiao__cf_row_error(const float *a, const float *b, uint64_t rows, uint64_t row_len,
                          uint64_t *out_row);

/* The report being filled. */
typedef struct cf_area {
  bool ran;
  uint32_t checks, failed;
} cf_area;

struct qiao_conformance_report {
  json_object *root;   /* the JSON report */
  json_object *ops;    /* array of op case results */
  json_object *abi;    /* array of ABI check results */
  json_object *models; /* array of model results */
  char **failures;
  size_t n_failures, cap_failures;
  cf_area area_ops, area_abi, area_models;
  /* models that need an op the backend does not claim (run with fallback) */
  uint32_t models_skipped;
  /* claimed: op_supported said 1; failed: a case of it failed */
  bool claimed[QIAO_DEV_OP_COUNT][QIAO_DEV_DTYPE_COUNT];
  bool tested[QIAO_DEV_OP_COUNT][QIAO_DEV_DTYPE_COUNT];
  bool failed[QIAO_DEV_OP_COUNT][QIAO_DEV_DTYPE_COUNT];
  char backend_name[64], backend_version[64], device_name[128];
  uint64_t seed;
  FILE *progress;
};

/* Records a failure line (printf-style) and counts it in `area`. */
void qiao__cf_fail(qiao_conformance_report *report, cf_area *area, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void qiao__cf_progress(qiao_conformance_report *report, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Whether ABI 1.0 defines `op` for `dtype` (§10). */
bool qiao__cf_defined(qiao_dev_op op, qiao_dev_dtype dtype);
/* The error budget of `op` on `dtype` for its F32 outputs (§11). */
double qiao__cf_budget(qiao_dev_op op, qiao_dev_dtype dtype);

/* The three levels. */
void qiao__cf_run_ops(qiao_conformance_report *report, cf_device *target, cf_device *reference,
                      uint64_t seed, uint32_t op_mask);
void qiao__cf_run_abi(qiao_conformance_report *report, cf_device *target, const char *backend,
                      uint32_t device_index, uint64_t seed);
void qiao__cf_run_models(qiao_conformance_report *report, const char *backend, const char *shared);
/* The op cases of every op the device (opened in some mode, e.g. batch
 * invariant) claims, against the float64 reference, `mode` appended to each
 * shape (" batch-invariant"). */
void qiao__cf_run_ops_in_mode(qiao_conformance_report *report, cf_device *target, uint64_t seed,
                              uint32_t op_mask, const char *mode);
/* Part of the ops level (§12.1): batch invariance (§10.4) of matmul and
 * attention when the device claims QIAO_DEV_FLAG_BATCH_INVARIANT, or the
 * refusal of the mode when it does not. */
void qiao__cf_run_invariance(qiao_conformance_report *report, cf_device *target,
                             const char *backend, uint32_t device_index, uint64_t seed,
                             uint32_t op_mask);

/* Part of the ops level (§12.1, §14): the batch invariance of attention_latent
 * and moe_route on a device opened in the mode (run by qiao__cf_run_invariance). */
void qiao__cf_run_invariance_1_4(qiao_conformance_report *report, cf_device *inv, uint64_t seed,
                                 uint32_t op_mask);
/* The same for matmul_experts (exact, and from 1.5 with Q8 activations):
 * invariance_1_5_checks.c. */
void qiao__cf_run_invariance_1_5(qiao_conformance_report *report, cf_device *inv, uint64_t seed,
                                 uint32_t op_mask);

/* Part of the ops level (§12.1): matmul with x_precision = Q8 (§11.4, ABI
 * 1.2) on every claimed weight dtype, exact or within the Q8 budget. */
void qiao__cf_run_q8_activations(qiao_conformance_report *report, cf_device *target, uint64_t seed,
                                 uint32_t op_mask);

#endif
