/* The independent reference of the op level: every op of
 * docs/spec/device-abi.md §11 evaluated in float64 on the host, straight from
 * the definitions, written for clarity, not speed. It shares no code with any
 * backend (its dequantization and F16 conversion are its own), so a kernel
 * bug cannot hide by being present on both sides of a comparison. */
#ifndef QIAO_CONFORMANCE_REFERENCE_H
#define QIAO_CONFORMANCE_REFERENCE_H

#include "conformance/op_runner.h"

/* The exact value of element `i` of a tensor of `dtype` (§9); NaN for a dtype
 * that holds no values. */
double qiao__cf_ref_element(const void *data, qiao_dev_dtype dtype, uint64_t i);
/* F16 bits of `x` rounded to nearest, ties to even, with subnormals and
 * overflow to infinity (§9), computed from the value, not the bit pattern. */
uint16_t qiao__cf_ref_to_f16(double x);

/* Whether the reference defines `op` (an op added to the ABI later is not). */
bool qiao__cf_ref_has(qiao_dev_op op);
/* Whether it evaluates case `c`: its op, at the exact activation precision
 * (a matmul allowed Q8 activations, spec §11.4, is compared elsewhere). */
bool qiao__cf_ref_covers(const cf_case *c);

/* Evaluates case `c`: expected[i] gets c->operands[i].bytes bytes: the
 * operand's initial content for inputs, the reference result for outputs
 * (F32 results rounded once from float64; F16 and I32 exact). Returns NULL
 * on success; QIAO_UNSUPPORTED for a case it does not cover. */
qiao_status *qiao__cf_reference_run(const cf_case *c, uint8_t *expected[]);

#endif
