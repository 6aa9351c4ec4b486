/* Running one op case on the target, evaluating it with the float64
 * reference (reference.c), and comparing every operand: outputs within the
 * op's budget, inputs and guard bytes unchanged. */
#include "conformance/op_runner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/reference.h"
#include "core/status_internal.h"

#define GUARD_BYTE 0xA5

int qiao__cf_operand(cf_case *c, const char *name, void *host, uint64_t bytes, cf_role role,
                     uint64_t row_len) {
  if (host == NULL) c->alloc_failed = true;
  if (c->n_operands == CF_MAX_OPERANDS) {
    free(host);
    c->alloc_failed = true;
    return 0;
  }
  cf_operand *o = &c->operands[c->n_operands];
  o->name = name;
  o->host = host;
  o->bytes = bytes;
  o->role = role;
  o->row_len = row_len ? row_len : 1;
  o->budget = qiao__cf_budget(c->op, c->dtype);
  return (int)c->n_operands++;
}

void qiao__cf_bind(cf_case *c, size_t offset, int index) {
  c->refs[c->n_refs].offset = offset;
  c->refs[c->n_refs].operand = index;
  c->n_refs++;
}

void qiao__cf_case_free(cf_case *c) {
  for (size_t i = 0; i < c->n_operands; i++)
    free(c->operands[i].host);
  c->n_operands = 0;
}

static qiao_dev_error *enqueue_op(const qiao_dev_api *api, qiao_dev_queue *q, qiao_dev_op op,
                                  const cf_args *a) {
  switch (op) {
  case QIAO_DEV_OP_EMBED: return api->embed(q, &a->embed);
  case QIAO_DEV_OP_MATMUL: return api->matmul(q, &a->matmul);
  case QIAO_DEV_OP_RMSNORM: return api->rmsnorm(q, &a->rmsnorm);
  case QIAO_DEV_OP_ROPE: return api->rope(q, &a->rope);
  case QIAO_DEV_OP_KV_WRITE: return api->kv_write(q, &a->kv_write);
  case QIAO_DEV_OP_ATTENTION: return api->attention(q, &a->attention);
  case QIAO_DEV_OP_SWIGLU: return api->swiglu(q, &a->swiglu);
  case QIAO_DEV_OP_ADD: return api->add(q, &a->add);
  case QIAO_DEV_OP_ARGMAX: return api->argmax(q, &a->argmax);
  case QIAO_DEV_OP_MOE_GATE: return api->moe_gate(q, &a->moe_gate);
  case QIAO_DEV_OP_MATMUL_EXPERTS: return api->matmul_experts(q, &a->matmul_experts);
  case QIAO_DEV_OP_MOE_COMBINE: return api->moe_combine(q, &a->moe_combine);
  /* (1.4) only reached when the plugin has the function (qiao_backend_may_ask) */
  case QIAO_DEV_OP_LATENT_WRITE: return api->latent_write(q, &a->latent_write);
  case QIAO_DEV_OP_ATTENTION_LATENT: return api->attention_latent(q, &a->attention_latent);
  case QIAO_DEV_OP_MOE_ROUTE: return api->moe_route(q, &a->moe_route);
  default: return NULL;
  }
}

/* Runs the case on one device; on success results[i] holds operand i's whole
 * buffer (guards included) as it came back. */
static qiao_status *run_on(cf_device *dev, const cf_case *c, uint8_t *results[]) {
  const qiao_dev_api *api = dev->api;
  qiao_dev_buffer *buffers[CF_MAX_OPERANDS] = {0};
  uint8_t *staged[CF_MAX_OPERANDS] = {0};
  qiao_status *st = NULL;
  for (size_t i = 0; i < c->n_operands && st == NULL; i++) {
    const cf_operand *o = &c->operands[i];
    uint64_t size = o->bytes + 2 * CF_GUARD;
    staged[i] = malloc(size);
    results[i] = malloc(size);
    if (staged[i] == NULL || results[i] == NULL) {
      st = qiao__error(QIAO_OUT_OF_MEMORY, "conformance: out of memory");
      break;
    }
    memset(staged[i], GUARD_BYTE, size);
    memcpy(staged[i] + CF_GUARD, o->host, o->bytes);
    st = qiao__cf_dev_status(dev, api->buffer_create(dev->device, size, &buffers[i]),
                             "buffer_create");
    if (st == NULL)
      st = qiao__cf_dev_status(
          dev, api->upload(dev->queue, (qiao_dev_ref){buffers[i], 0}, staged[i], size), "upload");
  }
  if (st == NULL) st = qiao__cf_dev_status(dev, api->queue_synchronize(dev->queue), "synchronize");
  if (st == NULL) {
    cf_args args = c->args;
    for (size_t r = 0; r < c->n_refs; r++) {
      qiao_dev_ref ref = {buffers[c->refs[r].operand], CF_GUARD};
      memcpy((uint8_t *)&args + c->refs[r].offset, &ref, sizeof(ref));
    }
    st = qiao__cf_dev_status(dev, enqueue_op(api, dev->queue, c->op, &args),
                             qiao_dev_op_name(c->op));
    if (st == NULL)
      st = qiao__cf_dev_status(dev, api->queue_synchronize(dev->queue), "synchronize after op");
  }
  for (size_t i = 0; i < c->n_operands && st == NULL; i++)
    st = qiao__cf_dev_status(dev,
                             api->download(dev->queue, results[i], (qiao_dev_ref){buffers[i], 0},
                                           c->operands[i].bytes + 2 * CF_GUARD),
                             "download");
  if (st == NULL) st = qiao__cf_dev_status(dev, api->queue_synchronize(dev->queue), "synchronize");
  if (st != NULL) { /* leave the queue idle before the buffers go */
    qiao_dev_error *e = api->queue_synchronize(dev->queue);
    if (e != NULL) api->error_destroy(e);
  }
  for (size_t i = 0; i < c->n_operands; i++) {
    api->buffer_destroy(buffers[i]);
    free(staged[i]);
  }
  return st;
}

/* The expected operands, laid out as run_on leaves them (guards around): from
 * the float64 reference, or for an op it does not define, from the reference
 * device (the CPU backend). */
static qiao_status *reference_run(cf_device *reference, const cf_case *c, uint8_t *want[]) {
  if (!qiao__cf_ref_covers(c)) {
    if (reference == NULL) return qiao__error(QIAO_UNSUPPORTED, "no reference evaluates this case");
    return run_on(reference, c, want);
  }
  uint8_t *expected[CF_MAX_OPERANDS] = {0};
  qiao_status *st = qiao__cf_reference_run(c, expected);
  for (size_t i = 0; i < c->n_operands && st == NULL; i++) {
    want[i] = malloc(c->operands[i].bytes + 2 * CF_GUARD);
    if (want[i] == NULL) {
      st = qiao__error(QIAO_OUT_OF_MEMORY, "conformance: out of memory");
      break;
    }
    memset(want[i], GUARD_BYTE, c->operands[i].bytes + 2 * CF_GUARD);
    memcpy(want[i] + CF_GUARD, expected[i], c->operands[i].bytes);
  }
  for (size_t i = 0; i < CF_MAX_OPERANDS; i++)
    free(expected[i]);
  return st;
}

static bool guards_intact(const uint8_t *buf, uint64_t bytes) {
  for (uint64_t i = 0; i < CF_GUARD; i++)
    if (buf[i] != GUARD_BYTE || buf[CF_GUARD + bytes + i] != GUARD_BYTE) return false;
  return true;
}

/* F32 view of an F16 output. */
static float *widen_f16(const uint8_t *p, uint64_t n) {
  float *f = malloc((n ? n : 1) * sizeof(float));
  if (f == NULL) return NULL;
  for (uint64_t i = 0; i < n; i++) {
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    f[i] = qiao__cf_f16_to_f32(h);
  }
  return f;
}

/* Compares operand i; returns false and writes `why` on failure. */
static bool compare_operand(const cf_case *c, size_t i, const uint8_t *got, const uint8_t *want,
                            json_object *jout, char *why, size_t why_size) {
  const cf_operand *o = &c->operands[i];
  json_object_object_add(jout, "name", json_object_new_string(o->name));
  if (!guards_intact(got, o->bytes)) {
    snprintf(why, why_size, "wrote outside operand '%s' (guard bytes changed)", o->name);
    json_object_object_add(jout, "guards", json_object_new_string("changed"));
    return false;
  }
  got += CF_GUARD;
  want += CF_GUARD;
  if (o->role == CF_INPUT) {
    bool same = memcmp(got, o->host, o->bytes) == 0;
    if (!same) snprintf(why, why_size, "modified its input operand '%s'", o->name);
    json_object_object_add(jout, "unchanged", json_object_new_boolean(same));
    return same;
  }
  if (o->role == CF_OUT_I32) {
    uint64_t n = o->bytes / 4, mismatches = 0, first = 0;
    for (uint64_t j = 0; j < n; j++) {
      int32_t a, b;
      memcpy(&a, got + 4 * j, 4);
      memcpy(&b, want + 4 * j, 4);
      if (a != b && mismatches++ == 0) first = j;
    }
    json_object_object_add(jout, "metric", json_object_new_string("exact"));
    json_object_object_add(jout, "mismatches", json_object_new_int64((int64_t)mismatches));
    if (mismatches) {
      int32_t a, b;
      memcpy(&a, got + 4 * first, 4);
      memcpy(&b, want + 4 * first, 4);
      snprintf(why, why_size,
               "output '%s': %llu of %llu ids differ (first at element %llu: got %d, reference %d)",
               o->name, (unsigned long long)mismatches, (unsigned long long)n,
               (unsigned long long)first, a, b);
      return false;
    }
    return true;
  }
  uint64_t n = o->role == CF_OUT_F16 ? o->bytes / 2 : o->bytes / 4;
  if (c->op == QIAO_DEV_OP_ADD || c->op == QIAO_DEV_OP_KV_WRITE) {
    /* exact in the spec: every bit, the sign of zero included */
    uint64_t size = o->role == CF_OUT_F16 ? 2 : 4, mismatches = 0, first = 0;
    for (uint64_t j = 0; j < n; j++)
      if (memcmp(got + size * j, want + size * j, size) != 0 && mismatches++ == 0) first = j;
    json_object_object_add(jout, "metric", json_object_new_string("bit-exact"));
    json_object_object_add(jout, "mismatches", json_object_new_int64((int64_t)mismatches));
    if (mismatches) {
      uint32_t a = 0, b = 0;
      memcpy(&a, got + size * first, size);
      memcpy(&b, want + size * first, size);
      snprintf(why, why_size,
               "output '%s': %llu of %llu elements differ in their bits (first at element %llu: "
               "got 0x%0*x, reference 0x%0*x)",
               o->name, (unsigned long long)mismatches, (unsigned long long)n,
               (unsigned long long)first, (int)size * 2, a, (int)size * 2, b);
      return false;
    }
    return true;
  }
  float *a = NULL, *b = NULL;
  if (o->role == CF_OUT_F16) {
    a = widen_f16(got, n);
    b = widen_f16(want, n);
  } else {
    a = malloc(n * 4 + 4);
    b = malloc(n * 4 + 4);
    if (a && b) {
      memcpy(a, got, n * 4);
      memcpy(b, want, n * 4);
    }
  }
  bool ok = false;
  if (a == NULL || b == NULL) {
    snprintf(why, why_size, "out of memory comparing '%s'", o->name);
  } else {
    uint64_t row = 0;
    double err = qiao__cf_row_error(a, b, n / o->row_len, o->row_len, &row);
    ok = err <= o->budget;
    json_object_object_add(jout, "metric", json_object_new_string("max row relative L2"));
    json_object_object_add(jout, "error", json_object_new_double(isfinite(err) ? err : 1e308));
    json_object_object_add(jout, "budget", json_object_new_double(o->budget));
    json_object_object_add(jout, "worst_row", json_object_new_int64((int64_t)row));
    if (!ok && isinf(err))
      snprintf(why, why_size,
               "output '%s': error inf > budget %.3g: non-finite values where the reference is "
               "finite, or the reverse (row %llu of %llu)",
               o->name, o->budget, (unsigned long long)row, (unsigned long long)(n / o->row_len));
    else if (!ok)
      snprintf(why, why_size, "output '%s': error %.3g > budget %.3g (worst row %llu of %llu)",
               o->name, err, o->budget, (unsigned long long)row,
               (unsigned long long)(n / o->row_len));
  }
  free(a);
  free(b);
  return ok;
}

void qiao__cf_case_run(qiao_conformance_report *report, cf_device *target, cf_device *reference,
                       cf_case *c) {
  const char *op = qiao_dev_op_name(c->op), *dt = qiao_dev_dtype_name(c->dtype);
  json_object *j = json_object_new_object();
  json_object_object_add(j, "op", json_object_new_string(op));
  json_object_object_add(j, "dtype", json_object_new_string(dt));
  json_object_object_add(j, "shape", json_object_new_string(c->shape));
  json_object_array_add(report->ops, j);
  report->area_ops.checks++;
  report->tested[c->op][c->dtype] = true;
  if (c->alloc_failed) {
    json_object_object_add(j, "result", json_object_new_string("error"));
    qiao__cf_fail(report, &report->area_ops, "%s %s [%s]: out of memory building inputs", op, dt,
                  c->shape);
    report->failed[c->op][c->dtype] = true;
    return;
  }
  uint8_t *got[CF_MAX_OPERANDS] = {0}, *want[CF_MAX_OPERANDS] = {0};
  qiao_status *st_ref = reference_run(reference, c, want);
  json_object_object_add(
      j, "reference", json_object_new_string(qiao__cf_ref_covers(c) ? "float64" : "cpu backend"));
  qiao_status *st = st_ref ? NULL : run_on(target, c, got);
  bool pass = true;
  if (st_ref != NULL) {
    pass = false;
    json_object_object_add(j, "error", json_object_new_string(qiao_status_message(st_ref)));
    qiao__cf_fail(report, &report->area_ops, "%s %s [%s]: the reference failed: %s", op, dt,
                  c->shape, qiao_status_message(st_ref));
  } else if (st != NULL) {
    pass = false;
    json_object_object_add(j, "error", json_object_new_string(qiao_status_message(st)));
    qiao__cf_fail(report, &report->area_ops, "%s %s [%s]: %s", op, dt, c->shape,
                  qiao_status_message(st));
  } else {
    json_object *outs = json_object_new_array();
    json_object_object_add(j, "operands", outs);
    for (size_t i = 0; i < c->n_operands; i++) {
      json_object *jo = json_object_new_object();
      json_object_array_add(outs, jo);
      char why[512];
      if (!compare_operand(c, i, got[i], want[i], jo, why, sizeof(why))) {
        pass = false;
        qiao__cf_fail(report, &report->area_ops, "%s %s [%s]: %s", op, dt, c->shape, why);
      }
    }
  }
  json_object_object_add(j, "result", json_object_new_string(pass ? "pass" : "fail"));
  if (!pass) report->failed[c->op][c->dtype] = true;
  qiao_status_free(st_ref);
  qiao_status_free(st);
  for (size_t i = 0; i < CF_MAX_OPERANDS; i++) {
    free(got[i]);
    free(want[i]);
  }
}
