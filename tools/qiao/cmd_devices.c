/* qiao devices: list backends (the built-in cpu and every libqiao-*.so on the
 * search path), their devices and the op x dtype capabilities of each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "conformance/harness.h"
#include "qiao/backend.h"

static void print_bytes(uint64_t b) {
  if (b >= (1ull << 30))
    printf("%.1f GiB", (double)b / (double)(1ull << 30));
  else
    printf("%.1f MiB", (double)b / (double)(1ull << 20));
}

/* Prints one backend; returns 0, or 1 when it could not be loaded. */
static int show_backend(const char *what) {
  qiao_backend *backend = NULL;
  qiao_status *st = qiao_backend_load(what, &backend);
  if (st != NULL) {
    /* The message already starts "backend WHAT: ": say it once. */
    const char *message = qiao_status_message(st);
    char prefix[64 + 4096];
    int n = snprintf(prefix, sizeof(prefix), "backend %s: ", what);
    if (n > 0 && (size_t)n < sizeof(prefix) && strncmp(message, prefix, (size_t)n) == 0)
      message += n;
    printf("backend %s: not usable: %s\n\n", what, message);
    qiao_status_free(st);
    return 1;
  }
  const qiao_dev_api *api = qiao_backend_api(backend);
  qiao_dev_backend *handle = qiao_backend_handle(backend);
  printf("backend %s %s (%s), built for device ABI %u.%u\n", api->name, api->version,
         qiao_backend_origin(backend), api->abi_major, api->abi_minor);
  uint32_t count = 0;
  st = qiao_backend_status(backend, api->device_count(handle, &count), "device_count");
  if (st != NULL) {
    printf("  error: %s\n", qiao_status_message(st));
    qiao_status_free(st);
    count = 0;
  }
  if (count == 0) printf("  no devices\n");
  for (uint32_t d = 0; d < count; d++) {
    qiao_dev_properties p = {.struct_size = sizeof(p)};
    st = qiao_backend_status(backend, api->device_get_properties(handle, d, &p),
                             "device_get_properties");
    if (st != NULL) {
      printf("  device %u: error: %s\n", d, qiao_status_message(st));
      qiao_status_free(st);
      continue;
    }
    p.name[sizeof(p.name) - 1] = p.vendor[sizeof(p.vendor) - 1] = '\0';
    p.driver_version[sizeof(p.driver_version) - 1] = '\0';
    printf("  device %u: %s\n    vendor %s, driver %s\n    memory ", d, p.name, p.vendor,
           p.driver_version);
    print_bytes(p.memory_bytes);
    printf(", max buffer ");
    print_bytes(p.max_buffer_bytes);
    /* A flag bit means something only from the minor version that defined it. */
    struct {
      bool on;
      const char *name;
    } flags[] = {
        {(p.flags & QIAO_DEV_FLAG_HOST_MEMORY) != 0, "host-memory"},
        {api->abi_minor >= 1 && (p.flags & QIAO_DEV_FLAG_BATCH_INVARIANT) != 0, "batch-invariant"},
        {api->abi_minor >= 2 && (p.flags & QIAO_DEV_FLAG_Q8_ACTIVATIONS) != 0, "q8-activations"},
    };
    printf(", %u compute units, flags 0x%x", p.compute_units, p.flags);
    const char *sep = " (";
    for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
      if (flags[f].on) {
        printf("%s%s", sep, flags[f].name);
        sep = ", ";
      }
    printf("%s\n", sep[0] == ',' ? ")" : "");
    qiao_dev_device_options o = {.struct_size = sizeof(o), .n_threads = 0};
    qiao_dev_device *device = NULL;
    st = qiao_backend_status(backend, api->device_open(handle, d, &o, &device), "device_open");
    if (st != NULL) {
      printf("    cannot open: %s\n", qiao_status_message(st));
      qiao_status_free(st);
      continue;
    }
    printf("    capabilities     ");
    for (int t = 0; t < QIAO_DEV_DTYPE_COUNT; t++)
      printf(" %-5s", qiao_dev_dtype_name((qiao_dev_dtype)t));
    printf("\n");
    for (int op = 0; op < QIAO_DEV_OP_COUNT; op++) {
      printf("      %-16s", qiao_dev_op_name((qiao_dev_op)op));
      for (int t = 0; t < QIAO_DEV_DTYPE_COUNT; t++) {
        uint32_t s = 0;
        /* an op or dtype of a later minor version than the plugin's (1.3,
         * 1.4), or an appended op the plugin has no function for: never asked */
        qiao_dev_error *e = !qiao_backend_may_ask(backend, (qiao_dev_op)op, (qiao_dev_dtype)t)
                                ? NULL
                                : api->op_supported(device, (qiao_dev_op)op, (qiao_dev_dtype)t, &s);
        if (e != NULL) {
          api->error_destroy(e);
          printf(" %-5s", "err");
        } else {
          /* The marks of `qiao conformance`: "." for a pair the ABI does not
           * define (claiming one is an error), "-" for one not claimed. */
          bool defined = qiao__cf_defined((qiao_dev_op)op, (qiao_dev_dtype)t);
          printf(" %-5s", s ? (defined ? "yes" : "YES!") : (defined ? "-" : "."));
        }
      }
      printf("\n");
    }
    printf("    (yes claimed, - not claimed, . not defined in this ABI version,\n"
           "     YES! claimed but not defined: conformance fails it)\n");
    api->device_close(device);
  }
  printf("\n");
  qiao_backend_unload(backend);
  return 0;
}

int qiao_cmd_devices(int argc, char **argv) {
  const char *only = NULL;
  for (int i = 1; i < argc; i++) {
    int r = qiao_cli_parse_backend(argc, argv, &i, &only);
    if (r < 0) return 2;
    if (r > 0) continue;
    if (qiao_cli_is_help(argv[i])) {
      printf("usage: qiao devices [--backend NAME|PATH]\n\n"
             "Lists the built-in cpu backend and every libqiao-<name>.so found in\n"
             "$QIAO_BACKEND_PATH, beside the qiao executable and in its backends/*/\n"
             "folders, with their devices and op x dtype capabilities. With --backend,\n"
             "only that one (and the exit status says whether it loads).\n");
      return 0;
    } else {
      return qiao_cli_unknown_arg("devices", argv[i]);
    }
  }
  if (only != NULL) return show_backend(only);
  show_backend("cpu");
  qiao_backend_entry *entries = NULL;
  size_t n = 0;
  qiao_status *st = qiao_backend_discover(&entries, &n);
  if (st != NULL) return qiao_cli_fail(st);
  for (size_t i = 0; i < n; i++)
    show_backend(entries[i].path);
  free(entries);
  return 0;
}
