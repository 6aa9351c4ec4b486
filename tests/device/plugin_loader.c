/* The loader's checks of docs/spec/device-abi.md §8: each deliberately broken
 * test plugin is refused with a message that says what is wrong, a valid one
 * is found by name on $QIAO_BACKEND_PATH, and discovery lists them.
 * argv[1]: the directory holding the test plugins (libqiao-test*.so). */
#include <stdlib.h>
#include <string.h>

#include "qiao/backend.h"
#include "test_util.h"

static char dir[4096];

/* Loads libqiao-<name>.so from the plugin directory by path; expects `code`
 * and a message containing `needle`. */
static void expect_refused(const char *name, qiao_code code, const char *needle) {
  char path[8192];
  snprintf(path, sizeof(path), "%s/libqiao-%s.so", dir, name);
  qiao_backend *backend = NULL;
  qiao_status *st = qiao_backend_load(path, &backend);
  if (qiao_status_code(st) != code || strstr(qiao_status_message(st), needle) == NULL ||
      strstr(qiao_status_message(st), path) == NULL) {
    fprintf(stderr, "%s: expected %s with '%s' and the path, got %s: '%s'\n", name,
            qiao_code_name(code), needle, qiao_code_name(qiao_status_code(st)),
            qiao_status_message(st));
    test_failures++;
  } else {
    printf("refused as expected: %s\n", qiao_status_message(st));
  }
  CHECK(backend == NULL);
  qiao_status_free(st);
  qiao_backend_unload(backend);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: device_plugin_loader PLUGIN_DIR\n");
    return 2;
  }
  snprintf(dir, sizeof(dir), "%s", argv[1]);

  expect_refused("testmajor2", QIAO_UNSUPPORTED,
                 "built for device ABI 2.0, this runtime speaks 1.");
  expect_refused("testnoentry", QIAO_MALFORMED, "missing entry point qiao_device_get_api");
  expect_refused("testnullfn", QIAO_MALFORMED, "function table entry 'rope' is NULL");
  expect_refused("testsmall", QIAO_MALFORMED, "is smaller than ABI 1.0's");
  expect_refused("doesnotexist", QIAO_NOT_FOUND, "cannot load");
  expect_refused("testnoversion", QIAO_MALFORMED, "function table field 'version' is NULL");
  {
    /* the path once: dlerror() repeats it, the loader does not */
    char path[8192];
    snprintf(path, sizeof(path), "%s/libqiao-doesnotexist.so", dir);
    qiao_backend *none = NULL;
    qiao_status *st = qiao_backend_load(path, &none);
    const char *first = strstr(qiao_status_message(st), path);
    CHECK(first != NULL && strstr(first + 1, path) == NULL);
    qiao_status_free(st);
  }

  /* A valid plugin loads by path ... */
  char path[8192];
  snprintf(path, sizeof(path), "%s/libqiao-testvalid.so", dir);
  qiao_backend *backend = NULL;
  CHECK_OK(qiao_backend_load(path, &backend));
  CHECK(backend != NULL && strcmp(qiao_backend_name(backend), "test") == 0);
  CHECK(backend != NULL && strcmp(qiao_backend_origin(backend), path) == 0);
  if (backend != NULL) {
    const qiao_dev_api *api = qiao_backend_api(backend);
    CHECK(api->struct_size == sizeof(qiao_dev_api));
    CHECK(api->buffer_wrap_host == NULL);
    uint32_t count = 99;
    CHECK_OK(qiao_backend_status(backend, api->device_count(qiao_backend_handle(backend), &count),
                                 "device_count"));
    CHECK(count == 0);
    /* the backend's error becomes a status naming the backend and the call */
    qiao_dev_buffer *buffer = NULL;
    qiao_status *st =
        qiao_backend_status(backend, api->buffer_create(NULL, 16, &buffer), "buffer_create");
    CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED);
    CHECK(strstr(qiao_status_message(st), "backend test: buffer_create: the test plugin") != NULL);
    qiao_status_free(st);
  }
  qiao_backend_unload(backend);

  /* A plugin of a later minor version loads; the runtime keeps only the part
   * of its (larger) table that it knows. */
  snprintf(path, sizeof(path), "%s/libqiao-testnewer.so", dir);
  backend = NULL;
  CHECK_OK(qiao_backend_load(path, &backend));
  if (backend != NULL) {
    const qiao_dev_api *api = qiao_backend_api(backend);
    CHECK(api->struct_size == sizeof(qiao_dev_api));
    CHECK(api->abi_major == 1 && api->abi_minor == 7);
    CHECK(api->moe_combine != NULL);
  }
  qiao_backend_unload(backend);

  /* A plugin built for ABI 1.0 still loads (1.1 only appended); it cannot
   * read device_options.flags, so it never counts as batch-invariant, and
   * its device flags are not even read. */
  snprintf(path, sizeof(path), "%s/libqiao-testv10.so", dir);
  backend = NULL;
  CHECK_OK(qiao_backend_load(path, &backend));
  if (backend != NULL) {
    CHECK(qiao_backend_api(backend)->abi_minor == 0);
    bool invariant = true;
    CHECK_OK(qiao_backend_batch_invariant(backend, 0, &invariant));
    CHECK(!invariant);
    /* (1.3) It is asked about the dtypes it knows (and claims them all), but
     * never about those of 1.3: they are simply not supported. */
    bool yes = false;
    CHECK_OK(qiao_backend_op_supported(backend, NULL, QIAO_DEV_OP_MATMUL, QIAO_DEV_Q4_0, &yes));
    CHECK(yes);
    for (int dt = QIAO_DEV_Q4_K; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
      yes = true;
      CHECK_OK(
          qiao_backend_op_supported(backend, NULL, QIAO_DEV_OP_MATMUL, (qiao_dev_dtype)dt, &yes));
      CHECK(!yes);
    }
  }
  qiao_backend_unload(backend);

  /* A plugin built for ABI 1.3 (a 280-byte table without the functions of
   * 1.4) still loads in a 1.4 runtime: what lies past its struct_size is
   * never read (the runtime's copy of its table has NULL there), and it is
   * asked about the ops and dtypes of 1.3 (it claims them all) but never
   * about the ops or the dtype 1.4 appended. */
  snprintf(path, sizeof(path), "%s/libqiao-testv13.so", dir);
  backend = NULL;
  CHECK_OK(qiao_backend_load(path, &backend));
  if (backend != NULL) {
    const qiao_dev_api *api = qiao_backend_api(backend);
    CHECK(api->abi_minor == 3 && api->moe_combine != NULL);
    CHECK(api->latent_write == NULL && api->attention_latent == NULL && api->moe_route == NULL);
    bool yes = false;
    CHECK_OK(qiao_backend_op_supported(backend, NULL, QIAO_DEV_OP_MATMUL, QIAO_DEV_Q4_K, &yes));
    CHECK(yes);
    CHECK(qiao_backend_may_ask(backend, QIAO_DEV_OP_MOE_COMBINE, QIAO_DEV_Q5_1));
    for (int op = QIAO_DEV_OP_LATENT_WRITE; op < QIAO_DEV_OP_COUNT; op++)
      for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
        yes = true;
        CHECK_OK(
            qiao_backend_op_supported(backend, NULL, (qiao_dev_op)op, (qiao_dev_dtype)dt, &yes));
        CHECK(!yes);
        CHECK(!qiao_backend_may_ask(backend, (qiao_dev_op)op, (qiao_dev_dtype)dt));
      }
    yes = true;
    CHECK_OK(
        qiao_backend_op_supported(backend, NULL, QIAO_DEV_OP_MATMUL, QIAO_DEV_F8_E4M3_B128, &yes));
    CHECK(!yes);
    /* (1.5) Nor about the dtypes 1.5 appended (IQ4_NL, IQ4_XS), which a
     * plugin below 1.5 does not know (qiao_dev_dtype_abi_minor: 5). */
    for (int dt = QIAO_DEV_IQ4_NL; dt <= QIAO_DEV_IQ4_XS; dt++)
      for (int op = QIAO_DEV_OP_EMBED; op <= QIAO_DEV_OP_MATMUL_EXPERTS; op++) {
        CHECK(!qiao_backend_may_ask(backend, (qiao_dev_op)op, (qiao_dev_dtype)dt));
        yes = true;
        CHECK_OK(
            qiao_backend_op_supported(backend, NULL, (qiao_dev_op)op, (qiao_dev_dtype)dt, &yes));
        CHECK(!yes);
      }
    CHECK(qiao_dev_dtype_abi_minor(QIAO_DEV_IQ4_NL) == 5 &&
          qiao_dev_dtype_abi_minor(QIAO_DEV_IQ4_XS) == 5 &&
          qiao_dev_dtype_abi_minor(QIAO_DEV_F8_E4M3_B128) == 4);
  }
  qiao_backend_unload(backend);

  /* A 1.4 plugin that leaves an appended function NULL is never asked about
   * that op (it would claim it), and is asked about the others. */
  snprintf(path, sizeof(path), "%s/libqiao-testv14partial.so", dir);
  backend = NULL;
  CHECK_OK(qiao_backend_load(path, &backend));
  if (backend != NULL) {
    bool yes = true;
    CHECK_OK(
        qiao_backend_op_supported(backend, NULL, QIAO_DEV_OP_LATENT_WRITE, QIAO_DEV_F32, &yes));
    CHECK(!yes);
    yes = false;
    CHECK_OK(
        qiao_backend_op_supported(backend, NULL, QIAO_DEV_OP_ATTENTION_LATENT, QIAO_DEV_F16, &yes));
    CHECK(yes);
    yes = false;
    CHECK_OK(qiao_backend_op_supported(backend, NULL, QIAO_DEV_OP_MOE_ROUTE, QIAO_DEV_F32, &yes));
    CHECK(yes);
  }
  qiao_backend_unload(backend);
  /* The CPU backend (1.1) claims the mode. */
  backend = NULL;
  CHECK_OK(qiao_backend_load("cpu", &backend));
  if (backend != NULL) {
    bool invariant = false;
    CHECK_OK(qiao_backend_batch_invariant(backend, 0, &invariant));
    CHECK(invariant);
    /* (1.5) and, a 1.5 plugin, is asked about IQ4_NL and IQ4_XS (what it
     * answers: cpu_api_test) */
    for (int dt = QIAO_DEV_IQ4_NL; dt <= QIAO_DEV_IQ4_XS; dt++)
      CHECK(qiao_backend_may_ask(backend, QIAO_DEV_OP_MATMUL, (qiao_dev_dtype)dt));
  }
  qiao_backend_unload(backend);

  /* Backend errors as statuses say each name once (issue 16): the plugin's
   * own name at the start of its message and the function it names are not
   * repeated after "backend NAME: WHAT: ". */
  backend = NULL;
  CHECK_OK(qiao_backend_load("cpu", &backend));
  if (backend != NULL) {
    const qiao_dev_api *api = qiao_backend_api(backend);
    qiao_status *st = qiao_backend_status(backend, api->add(NULL, NULL), "add");
    CHECK(strcmp(qiao_status_message(st), "backend cpu: add: queue is NULL") == 0);
    fprintf(stderr, "message: %s\n", qiao_status_message(st));
    qiao_status_free(st);
    st = qiao_backend_status(backend, api->matmul(NULL, NULL), "matmul attn_output");
    CHECK(strcmp(qiao_status_message(st), "backend cpu: matmul attn_output: queue is NULL") == 0);
    fprintf(stderr, "message: %s\n", qiao_status_message(st));
    qiao_status_free(st);
    st = qiao_backend_status(backend, api->rope(NULL, NULL), "kv_write");
    CHECK(strcmp(qiao_status_message(st), "backend cpu: kv_write: rope: queue is NULL") == 0);
    qiao_status_free(st);
  }
  qiao_backend_unload(backend);
  snprintf(path, sizeof(path), "%s/libqiao-testvalid.so", dir);
  backend = NULL;
  CHECK_OK(qiao_backend_load(path, &backend));
  if (backend != NULL) {
    const qiao_dev_api *api = qiao_backend_api(backend);
    qiao_dev_properties p = {.struct_size = sizeof(p)};
    qiao_status *st = qiao_backend_status(
        backend, api->device_get_properties(qiao_backend_handle(backend), 0, &p),
        "device_get_properties");
    CHECK(strcmp(qiao_status_message(st),
                 "backend test: device_get_properties: the test plugin does nothing") == 0);
    fprintf(stderr, "message: %s\n", qiao_status_message(st));
    qiao_status_free(st);
  }
  qiao_backend_unload(backend);

  /* ... and by name through $QIAO_BACKEND_PATH (the first directory that has it). */
  char env[8300];
  snprintf(env, sizeof(env), "/nonexistent-dir::%s", dir);
  setenv("QIAO_BACKEND_PATH", env, 1);
  backend = NULL;
  snprintf(path, sizeof(path), "%s/libqiao-testvalid.so", dir);
  CHECK_OK(qiao_backend_load("testvalid", &backend));
  CHECK(backend != NULL && strcmp(qiao_backend_origin(backend), path) == 0);
  qiao_backend_unload(backend);
  CHECK_ERR(qiao_backend_load("nosuchbackend", &backend), QIAO_NOT_FOUND);
  {
    /* not found: the message lists every directory searched, in order */
    qiao_status *st = qiao_backend_load("nosuchbackend", &backend);
    const char *msg = qiao_status_message(st);
    const char *a = strstr(msg, "/nonexistent-dir, "), *b = strstr(msg, dir),
               *c = strstr(msg, "/backends/nosuchbackend");
    CHECK(strncmp(msg, "backend nosuchbackend: libqiao-nosuchbackend.so not found (searched: ",
                  69) == 0);
    CHECK(a != NULL && b != NULL && c != NULL && a < b && b < c);
    if (c == NULL) fprintf(stderr, "not found: '%s'\n", msg);
    qiao_status_free(st);
  }
  CHECK_ERR(qiao_backend_load("Bad Name", &backend), QIAO_INVALID_ARGUMENT);
  CHECK_ERR(qiao_backend_load("", &backend), QIAO_INVALID_ARGUMENT);
  /* by name, a broken plugin is refused the same way */
  CHECK_ERR(qiao_backend_load("testmajor2", &backend), QIAO_UNSUPPORTED);

  /* Discovery lists every test plugin once, with its path, without loading it. */
  qiao_backend_entry *entries = NULL;
  size_t n = 0;
  CHECK_OK(qiao_backend_discover(&entries, &n));
  const char *expected[] = {"testvalid", "testmajor2",    "testnoentry", "testnullfn",
                            "testsmall", "testnewer",     "testv10",     "testnoversion",
                            "testv13",   "testv14partial"};
  for (size_t e = 0; e < sizeof(expected) / sizeof(expected[0]); e++) {
    int found = 0;
    for (size_t i = 0; i < n; i++)
      if (strcmp(entries[i].name, expected[e]) == 0) {
        found++;
        CHECK(strncmp(entries[i].path, dir, strlen(dir)) == 0);
      }
    if (found != 1) fprintf(stderr, "discover: %s listed %d times\n", expected[e], found);
    CHECK(found == 1);
  }
  free(entries);

  /* The built-in CPU backend is always there. */
  backend = NULL;
  CHECK_OK(qiao_backend_load("cpu", &backend));
  CHECK(backend != NULL && strcmp(qiao_backend_origin(backend), "built-in") == 0);
  qiao_backend_unload(backend);
  TEST_END();
}
