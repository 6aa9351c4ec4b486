/* qiao_conformance_run and the report: which levels ran, the certified op x
 * dtype table, the JSON of every measurement. */
#include <stdlib.h>
#include <string.h>

#include "conformance/harness.h"
#include "core/status_internal.h"

static const char *const level_names[3] = {"ops", "abi", "models"};

/* "1.1": the device ABI version this suite certifies against. */
#define CF_STR_(x) #x
#define CF_STR(x) CF_STR_(x)
#define QIAO__CF_ABI_STRING CF_STR(QIAO_DEVICE_ABI_MAJOR) "." CF_STR(QIAO_DEVICE_ABI_MINOR)

static cf_area *area(qiao_conformance_report *r, int i) {
  return i == 0 ? &r->area_ops : i == 1 ? &r->area_abi : &r->area_models;
}

static json_object *device_json(const cf_device *dev, uint32_t index) {
  json_object *j = json_object_new_object();
  qiao_dev_properties p = {.struct_size = sizeof(p)};
  qiao_dev_error *e = dev->api->device_get_properties(qiao_backend_handle(dev->backend), index, &p);
  json_object_object_add(j, "index", json_object_new_int64(index));
  if (e != NULL) {
    json_object_object_add(j, "error", json_object_new_string(dev->api->error_message(e)));
    dev->api->error_destroy(e);
    return j;
  }
  p.name[sizeof(p.name) - 1] = p.vendor[sizeof(p.vendor) - 1] = '\0';
  p.driver_version[sizeof(p.driver_version) - 1] = '\0';
  json_object_object_add(j, "name", json_object_new_string(p.name));
  json_object_object_add(j, "vendor", json_object_new_string(p.vendor));
  json_object_object_add(j, "driver_version", json_object_new_string(p.driver_version));
  json_object_object_add(j, "memory_bytes", json_object_new_int64((int64_t)p.memory_bytes));
  json_object_object_add(j, "max_buffer_bytes", json_object_new_int64((int64_t)p.max_buffer_bytes));
  json_object_object_add(j, "compute_units", json_object_new_int64(p.compute_units));
  json_object_object_add(j, "flags", json_object_new_int64(p.flags));
  json_object_object_add(j, "host_memory",
                         json_object_new_boolean((p.flags & QIAO_DEV_FLAG_HOST_MEMORY) != 0));
  return j;
}

qiao_status *qiao_conformance_run(const qiao_conformance_options *options,
                                  qiao_conformance_report **out_report) {
  if (options == NULL || options->struct_size < sizeof(*options) || options->backend == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "conformance: options with a backend are required");
  uint32_t levels = options->levels ? options->levels : QIAO_CONFORMANCE_ALL;
  const char *shared = options->shared;
  if (shared == NULL) shared = getenv("QIAO_SHARED");
  if (shared == NULL || *shared == '\0') shared = "../shared";

  qiao_conformance_report *r = calloc(1, sizeof(*r));
  if (r == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "conformance: out of memory");
  r->seed = options->seed;
  r->progress = options->progress;
  r->root = json_object_new_object();
  r->ops = json_object_new_array();
  r->abi = json_object_new_array();
  r->models = json_object_new_array();

  cf_device target = {0}, reference = {0};
  qiao_status *st = qiao__cf_device_open(options->backend, options->device, "target", &target);
  if (st == NULL && (levels & QIAO_CONFORMANCE_OPS))
    st = qiao__cf_device_open("cpu", 0, "reference", &reference);
  if (st != NULL) {
    qiao__cf_device_close(&target);
    qiao_conformance_report_destroy(r);
    return qiao__annotate(st, "conformance");
  }
  const qiao_dev_api *api = target.api;
  snprintf(r->backend_name, sizeof(r->backend_name), "%s", api->name);
  snprintf(r->backend_version, sizeof(r->backend_version), "%s", api->version);

  json_object *root = r->root;
  json_object_object_add(root, "conformance_suite",
                         json_object_new_string("qiao device ABI " QIAO__CF_ABI_STRING));
  json_object *jb = json_object_new_object();
  json_object_object_add(jb, "requested", json_object_new_string(options->backend));
  json_object_object_add(jb, "name", json_object_new_string(api->name));
  json_object_object_add(jb, "version", json_object_new_string(api->version));
  json_object_object_add(jb, "origin", json_object_new_string(qiao_backend_origin(target.backend)));
  json_object_object_add(jb, "abi_major", json_object_new_int64(api->abi_major));
  json_object_object_add(jb, "abi_minor", json_object_new_int64(api->abi_minor));
  json_object_object_add(root, "backend", jb);
  json_object *jd = device_json(&target, options->device);
  json_object *jname = NULL;
  if (json_object_object_get_ex(jd, "name", &jname))
    snprintf(r->device_name, sizeof(r->device_name), "%s", json_object_get_string(jname));
  json_object_object_add(root, "device", jd);
  json_object_object_add(root, "seed", json_object_new_int64((int64_t)options->seed));
  json_object *jref = json_object_new_object();
  json_object_object_add(
      jref, "ops",
      json_object_new_string("float64 evaluation of the definitions of "
                             "device ABI section 11 (src/conformance/reference.c)"));
  json_object_object_add(
      jref, "models",
      json_object_new_string("transformers 5.17.0 logits (float64; qwen3_moe "
                             "float32) and greedy ids (transformers, llama2.c)"));
  json_object_object_add(root, "reference", jref);
  json_object *jbudget = json_object_new_object();
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++) {
    json_object *per = json_object_new_object();
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++)
      if (qiao__cf_defined((qiao_dev_op)op, (qiao_dev_dtype)dt))
        json_object_object_add(
            per, qiao_dev_dtype_name((qiao_dev_dtype)dt),
            json_object_new_double(qiao__cf_budget((qiao_dev_op)op, (qiao_dev_dtype)dt)));
    json_object_object_add(jbudget, qiao_dev_op_name((qiao_dev_op)op), per);
  }
  json_object_object_add(root, "budgets", jbudget);

  qiao__cf_progress(r, "conformance: backend %s %s (%s), device %u \"%s\", seed %llu", api->name,
                    api->version, qiao_backend_origin(target.backend), options->device,
                    r->device_name, (unsigned long long)options->seed);
  if (levels & QIAO_CONFORMANCE_OPS)
    qiao__cf_run_ops(r, &target, &reference, options->seed, options->op_mask);
  if (levels & QIAO_CONFORMANCE_OPS)
    qiao__cf_run_invariance(r, &target, options->backend, options->device, options->seed,
                            options->op_mask);
  if (levels & QIAO_CONFORMANCE_OPS)
    qiao__cf_run_q8_activations(r, &target, options->seed, options->op_mask);
  if (levels & QIAO_CONFORMANCE_ABI) {
    if (!(levels & QIAO_CONFORMANCE_OPS)) /* the claims, for the unsupported-op checks */
      for (int op = 0; op < QIAO_DEV_OP_COUNT; op++)
        for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
          uint32_t s = 0;
          if (!qiao_backend_may_ask(target.backend, (qiao_dev_op)op, (qiao_dev_dtype)dt)) continue;
          qiao_dev_error *e =
              api->op_supported(target.device, (qiao_dev_op)op, (qiao_dev_dtype)dt, &s);
          if (e) api->error_destroy(e);
          r->claimed[op][dt] = s != 0;
        }
    qiao__cf_run_abi(r, &target, options->backend, options->device, options->seed);
  }
  qiao__cf_device_close(&reference);
  qiao__cf_device_close(&target);
  if (levels & QIAO_CONFORMANCE_MODELS) qiao__cf_run_models(r, options->backend, shared);

  json_object_object_add(root, "ops", json_object_get(r->ops));
  json_object_object_add(root, "abi", json_object_get(r->abi));
  json_object_object_add(root, "models", json_object_get(r->models));
  *out_report = r;
  return NULL;
}

bool qiao_conformance_passed(const qiao_conformance_report *r) {
  return r->n_failures == 0 && r->area_ops.failed == 0 && r->area_abi.failed == 0 &&
         r->area_models.failed == 0;
}

size_t qiao_conformance_failure_count(const qiao_conformance_report *r) {
  return r->n_failures;
}

const char *qiao_conformance_failure(const qiao_conformance_report *r, size_t index) {
  return index < r->n_failures ? r->failures[index] : NULL;
}

/* "certified", "failed", "unsupported", "undefined" or "untested". */
static const char *cap_state(const qiao_conformance_report *r, int op, int dt) {
  if (!r->claimed[op][dt])
    return qiao__cf_defined((qiao_dev_op)op, (qiao_dev_dtype)dt) ? "unsupported" : "undefined";
  if (r->failed[op][dt]) return "failed";
  return r->tested[op][dt] ? "certified" : "untested";
}

/* The statement: the levels that ran, when all of them passed. */
static void statement(const qiao_conformance_report *r, char *buf, size_t size) {
  char ran[64] = "", failed[64] = "";
  for (int i = 0; i < 3; i++) {
    const cf_area *a = area((qiao_conformance_report *)r, i);
    if (!a->ran) continue;
    char *dst = a->failed ? failed : ran;
    size_t used = strlen(dst);
    snprintf(dst + used, 64 - used, "%s%s", used ? "+" : "", level_names[i]);
  }
  bool partial = false;
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++)
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++)
      partial |= r->area_ops.ran && strcmp(cap_state(r, op, dt), "untested") == 0;
  if (failed[0] || r->n_failures)
    snprintf(buf, size, "NOT qiao-conformant %d.%d (failed: %s)", QIAO_DEVICE_ABI_MAJOR,
             QIAO_DEVICE_ABI_MINOR, failed[0] ? failed : "?");
  else
    snprintf(buf, size, "qiao-conformant %d.%d: %s%s%s", QIAO_DEVICE_ABI_MAJOR,
             QIAO_DEVICE_ABI_MINOR, ran[0] ? ran : "nothing run",
             partial ? " (partial: some claimed ops were not tested)" : "",
             r->area_models.ran && r->models_skipped
                 ? " (models needing unclaimed ops run with fallback)"
                 : "");
}

void qiao_conformance_print_summary(const qiao_conformance_report *r, FILE *out) {
  fprintf(out, "\nqiao conformance (device ABI %d.%d): backend %s %s, device \"%s\", seed %llu\n",
          QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR, r->backend_name, r->backend_version,
          r->device_name, (unsigned long long)r->seed);
  for (int i = 0; i < 3; i++) {
    const cf_area *a = area((qiao_conformance_report *)r, i);
    if (!a->ran)
      fprintf(out, "  %-7s not run\n", level_names[i]);
    else if (i == 2 && r->models_skipped)
      fprintf(out,
              "  %-7s %s  (%u checks, %u failed; %u needed ops the backend does not claim: "
              "skipped, then run with fallback)\n",
              level_names[i], a->failed ? "FAIL" : "PASS", a->checks, a->failed, r->models_skipped);
    else
      fprintf(out, "  %-7s %s  (%u checks, %u failed)\n", level_names[i],
              a->failed ? "FAIL" : "PASS", a->checks, a->failed);
  }
  if (r->area_ops.ran) {
    fprintf(out, "\n  op x dtype       ");
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++)
      fprintf(out, " %-5s", qiao_dev_dtype_name((qiao_dev_dtype)dt));
    fprintf(out, "\n");
    for (int op = 0; op < QIAO_DEV_OP_COUNT; op++) {
      fprintf(out, "  %-16s ", qiao_dev_op_name((qiao_dev_op)op));
      for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
        const char *s = cap_state(r, op, dt);
        const char *mark = strcmp(s, "certified") == 0     ? "ok"
                           : strcmp(s, "failed") == 0      ? "FAIL"
                           : strcmp(s, "unsupported") == 0 ? "-"
                           : strcmp(s, "untested") == 0    ? "?"
                                                           : ".";
        fprintf(out, " %-5s", mark);
      }
      fprintf(out, "\n");
    }
    /* the marks and words of `qiao devices` for the same states */
    fprintf(out, "  (ok certified, FAIL claimed but wrong (or claimed but not defined),\n"
                 "   ? claimed but not tested (--op), - not claimed,\n"
                 "   . not defined in this ABI version)\n");
  }
  if (r->n_failures) {
    fprintf(out, "\n  failures (%zu):\n", r->n_failures);
    for (size_t i = 0; i < r->n_failures; i++)
      fprintf(out, "    %s\n", r->failures[i]);
  }
  char st[160];
  statement(r, st, sizeof(st));
  fprintf(out, "\nresult: %s\n", st);
}

qiao_status *qiao_conformance_write_json(const qiao_conformance_report *r, const char *path) {
  json_object *root = r->root;
  json_object *caps = json_object_new_object();
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++) {
    json_object *per = json_object_new_object();
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++)
      if (qiao__cf_defined((qiao_dev_op)op, (qiao_dev_dtype)dt) || r->claimed[op][dt])
        json_object_object_add(per, qiao_dev_dtype_name((qiao_dev_dtype)dt),
                               json_object_new_string(cap_state(r, op, dt)));
    json_object_object_add(caps, qiao_dev_op_name((qiao_dev_op)op), per);
  }
  json_object_object_add(root, "capabilities", caps);
  json_object *levels = json_object_new_object();
  for (int i = 0; i < 3; i++) {
    const cf_area *a = area((qiao_conformance_report *)r, i);
    json_object *l = json_object_new_object();
    json_object_object_add(l, "result",
                           json_object_new_string(!a->ran     ? "not run"
                                                  : a->failed ? "fail"
                                                              : "pass"));
    json_object_object_add(l, "checks", json_object_new_int64(a->checks));
    json_object_object_add(l, "failed", json_object_new_int64(a->failed));
    json_object_object_add(levels, level_names[i], l);
  }
  json_object_object_add(root, "levels", levels);
  json_object *failures = json_object_new_array();
  for (size_t i = 0; i < r->n_failures; i++)
    json_object_array_add(failures, json_object_new_string(r->failures[i]));
  json_object_object_add(root, "failures", failures);
  char st[160];
  statement(r, st, sizeof(st));
  json_object_object_add(root, "statement", json_object_new_string(st));
  json_object_object_add(root, "passed", json_object_new_boolean(qiao_conformance_passed(r)));
  if (json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED) != 0)
    return qiao__error(QIAO_IO, "%s: cannot write the conformance report: %s", path,
                       json_util_get_last_err());
  return NULL;
}

void qiao_conformance_report_destroy(qiao_conformance_report *r) {
  if (r == NULL) return;
  json_object_put(r->ops);
  json_object_put(r->abi);
  json_object_put(r->models);
  json_object_put(r->root);
  for (size_t i = 0; i < r->n_failures; i++)
    free(r->failures[i]);
  free(r->failures);
  free(r);
}
