/* One op test case: its operands (host data), the args template, and how the
 * runner runs it on a device and compares the target with the reference. */
#ifndef QIAO_CONFORMANCE_OP_RUNNER_H
#define QIAO_CONFORMANCE_OP_RUNNER_H

#include "conformance/harness.h"

#define CF_MAX_OPERANDS 12
/* Every operand sits this many bytes into its own buffer, between guard
 * bytes that must come back unchanged. */
#define CF_GUARD 64

typedef enum cf_role {
  CF_INPUT,   /* must come back unchanged */
  CF_OUT_F32, /* compared with the metric and the budget */
  CF_OUT_F16, /* F16 values, compared as F32 with the budget */
  CF_OUT_I32  /* compared exactly */
} cf_role;

typedef struct cf_operand {
  const char *name;
  void *host; /* initial content, malloc'd, owned by the case */
  uint64_t bytes;
  cf_role role;
  uint64_t row_len; /* elements per row for the metric */
  double budget;
} cf_operand;

typedef union cf_args {
  qiao_dev_embed_args embed;
  qiao_dev_matmul_args matmul;
  qiao_dev_rmsnorm_args rmsnorm;
  qiao_dev_rope_args rope;
  qiao_dev_kv_write_args kv_write;
  qiao_dev_attention_args attention;
  qiao_dev_swiglu_args swiglu;
  qiao_dev_add_args add;
  qiao_dev_argmax_args argmax;
  qiao_dev_moe_gate_args moe_gate;
  qiao_dev_matmul_experts_args matmul_experts;
  qiao_dev_moe_combine_args moe_combine;
  qiao_dev_latent_write_args latent_write;         /* 1.4 */
  qiao_dev_attention_latent_args attention_latent; /* 1.4 */
  qiao_dev_moe_route_args moe_route;               /* 1.4 */
} cf_args;

typedef struct cf_case {
  qiao_dev_op op;
  qiao_dev_dtype dtype;
  char shape[256]; /* "n=3 k=4128 m=67 bias accumulate" */
  cf_operand operands[CF_MAX_OPERANDS];
  size_t n_operands;
  cf_args args; /* refs are filled in by the runner */
  struct {
    size_t offset; /* offsetof the qiao_dev_ref in the args struct */
    int operand;
  } refs[CF_MAX_OPERANDS];
  size_t n_refs;
  bool alloc_failed;
} cf_case;

/* Adds an operand (taking ownership of `host`) and returns its index. */
int qiao__cf_operand(cf_case *c, const char *name, void *host, uint64_t bytes, cf_role role,
                     uint64_t row_len);
/* Points the qiao_dev_ref at `offset` in the args at operand `index`. */
void qiao__cf_bind(cf_case *c, size_t offset, int index);
/* Frees the operands. */
void qiao__cf_case_free(cf_case *c);
/* Runs the case on both devices, compares, records the result in the report. */
void qiao__cf_case_run(qiao_conformance_report *report, cf_device *target, cf_device *reference,
                       cf_case *c);

#endif
