/* What the files of the ABI level (docs/spec/device-abi.md §12.2) share: the
 * device under test, one recorded check, and the expectation of one error
 * code. Every check has a name; §12.6 of the spec maps each MUST to them. */
#ifndef QIAO_CONFORMANCE_ABI_CHECK_H
#define QIAO_CONFORMANCE_ABI_CHECK_H

#include "conformance/harness.h"

typedef struct actx {
  qiao_conformance_report *report;
  cf_device *dev;
  const qiao_dev_api *api;
  bool host_memory; /* the device has QIAO_DEV_FLAG_HOST_MEMORY */
  uint32_t device_index;
} actx;

/* Records check `name` with its result and detail (printf-style). */
bool qiao__cf_check(actx *x, const char *name, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The call must have failed with `code` and a non-empty message. Destroys
 * the error. */
void qiao__cf_expect(actx *x, const char *name, qiao_dev_error *e, qiao_dev_code code);
/* The same with two acceptable codes (only where the spec allows either). */
void qiao__cf_expect2(actx *x, const char *name, qiao_dev_error *e, qiao_dev_code a,
                      qiao_dev_code b);
/* The code an op call with a failing argument check gets (§6 order): the
 * argument's own code when the device claims (op, dtype), UNSUPPORTED when
 * it does not (the capability is checked first). */
qiao_dev_code qiao__cf_unless_unclaimed(const actx *x, qiao_dev_op op, qiao_dev_dtype dtype,
                                        qiao_dev_code code);
/* "INVALID_ARGUMENT (1)" and so on. */
const char *qiao__cf_code_name(qiao_dev_code code);
/* Synchronizes the queue, dropping any error. */
void qiao__cf_drain(actx *x);

/* The argument rules of §3, §6, §7 and §11.3: NULL arguments, handles the
 * backend did not create, options structs, the order of the checks, shape
 * rules, zero-sized work, read-only wrapped memory, alignment and
 * asynchronous errors (abi_rules_checks.c). */
void qiao__cf_abi_rules(actx *x);
/* The argument rules of the ops of ABI 1.4 (abi_rules_1_4_checks.c), run by
 * qiao__cf_abi_rules: only on a plugin the runtime may ask about them. */
void qiao__cf_abi_rules_1_4(actx *x);

#endif
