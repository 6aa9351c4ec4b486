/* cuda_plugin: libqiao-cuda.so loads through the runtime's checks, opens
 * with or without a GPU, and refuses bad arguments cleanly. Without a GPU
 * (CI): 0 devices and a clear error from device_open(0). With one: device 0
 * opens, and a tiny upload / add / download round trip is exact. */
#include <stdint.h>
#include <string.h>

#include "qiao/backend.h"
#include "test_util.h"

static const qiao_dev_api *api;

/* Checks that `e` is an error with `code` and a non-empty message; destroys it. */
static void expect(qiao_dev_error *e, qiao_dev_code code, const char *needle, int line) {
  if (e == NULL) {
    fprintf(stderr, "line %d: expected error code %d, got success\n", line, (int)code);
    test_failures++;
    return;
  }
  const char *msg = api->error_message(e);
  if (api->error_code(e) != code || msg == NULL || msg[0] == '\0' ||
      (needle != NULL && strstr(msg, needle) == NULL)) {
    fprintf(stderr, "line %d: expected code %d with '%s', got %d: %s\n", line, (int)code,
            needle ? needle : "", (int)api->error_code(e), msg ? msg : "(null)");
    test_failures++;
  }
  api->error_destroy(e);
}
#define EXPECT(e, code, needle) expect((e), (code), (needle), __LINE__)

static void check_ok(qiao_dev_error *e, int line) {
  if (e != NULL) {
    fprintf(stderr, "line %d: unexpected error: %s\n", line, api->error_message(e));
    api->error_destroy(e);
    test_failures++;
  }
}
#define OK(e) check_ok((e), __LINE__)

/* Host-side validation that runs before any CUDA call. */
static void check_validation(qiao_dev_backend *handle) {
  qiao_dev_backend *b = NULL;
  EXPECT(api->backend_open(NULL, &b), QIAO_DEV_INVALID_ARGUMENT, "NULL");
  qiao_dev_backend_options small = {sizeof(size_t), QIAO_DEVICE_ABI_MAJOR, 0};
  EXPECT(api->backend_open(&small, &b), QIAO_DEV_INVALID_ARGUMENT, "struct_size");
  qiao_dev_backend_options major2 = {sizeof(major2), QIAO_DEVICE_ABI_MAJOR + 1, 0};
  EXPECT(api->backend_open(&major2, &b), QIAO_DEV_UNSUPPORTED, "major");
  CHECK(b == NULL); /* out-parameters untouched on failure */

  uint32_t count = 0;
  EXPECT(api->device_count(NULL, &count), QIAO_DEV_INVALID_ARGUMENT, NULL);
  EXPECT(api->device_count(handle, NULL), QIAO_DEV_INVALID_ARGUMENT, NULL);
  qiao_dev_properties props = {.struct_size = sizeof(props)};
  EXPECT(api->device_get_properties(handle, UINT32_MAX, &props), QIAO_DEV_INVALID_ARGUMENT,
         "out of range");
  qiao_dev_device *dev = NULL;
  EXPECT(api->device_open(handle, UINT32_MAX, NULL, &dev), QIAO_DEV_INVALID_ARGUMENT,
         "out of range");
  CHECK(dev == NULL);

  /* A handle of another kind is refused, not used. */
  uint64_t fake[64];
  memset(fake, 0, sizeof(fake));
  EXPECT(api->device_count((qiao_dev_backend *)fake, &count), QIAO_DEV_BAD_HANDLE, NULL);
  qiao_dev_add_args add = {.struct_size = sizeof(add), .n = 4};
  EXPECT(api->add(NULL, &add), QIAO_DEV_INVALID_ARGUMENT, "queue");
  EXPECT(api->add((qiao_dev_queue *)fake, &add), QIAO_DEV_BAD_HANDLE, NULL);
  EXPECT(api->matmul((qiao_dev_queue *)fake, NULL), QIAO_DEV_BAD_HANDLE, NULL);
  EXPECT(api->queue_synchronize(NULL), QIAO_DEV_INVALID_ARGUMENT, NULL);
  uint32_t yes = 7;
  EXPECT(api->op_supported((qiao_dev_device *)fake, QIAO_DEV_OP_ADD, QIAO_DEV_F32, &yes),
         QIAO_DEV_BAD_HANDLE, NULL);
  CHECK(yes == 7);

  /* Every destroy accepts NULL. */
  api->error_destroy(NULL);
  api->backend_close(NULL);
  api->device_close(NULL);
  api->buffer_destroy(NULL);
  api->queue_destroy(NULL);
}

/* With a GPU: properties, capabilities, a refused call, and an exact round trip. */
static void check_device(qiao_dev_backend *handle) {
  qiao_dev_properties props = {.struct_size = sizeof(props)};
  OK(api->device_get_properties(handle, 0, &props));
  printf("cuda device 0: %s (%s), %llu bytes, %u SMs\n", props.name, props.driver_version,
         (unsigned long long)props.memory_bytes, (unsigned)props.compute_units);
  CHECK(props.memory_bytes > 0 && props.max_buffer_bytes > 0 && props.compute_units >= 1);
  CHECK(strcmp(props.vendor, "NVIDIA") == 0);
  /* No batch-invariant mode (device ABI 1.1): not claimed, and refused. */
  CHECK((props.flags & QIAO_DEV_FLAG_BATCH_INVARIANT) == 0);
  qiao_dev_device_options invariant = {.struct_size = sizeof(invariant),
                                       .flags = QIAO_DEV_OPEN_BATCH_INVARIANT};
  qiao_dev_device *refused = NULL;
  EXPECT(api->device_open(handle, 0, &invariant, &refused), QIAO_DEV_UNSUPPORTED,
         "batch-invariant");
  CHECK(refused == NULL);

  qiao_dev_device *dev = NULL;
  OK(api->device_open(handle, 0, NULL, &dev));
  if (dev == NULL) return;
  uint32_t yes = 0;
  OK(api->op_supported(dev, QIAO_DEV_OP_MATMUL, QIAO_DEV_Q4_0, &yes));
  CHECK(yes == 1);
  OK(api->op_supported(dev, QIAO_DEV_OP_ATTENTION, QIAO_DEV_BF16, &yes));
  CHECK(yes == 0);
  OK(api->op_supported(dev, (qiao_dev_op)1000, QIAO_DEV_F32, &yes));
  CHECK(yes == 0);

  qiao_dev_buffer *buf = NULL;
  EXPECT(api->buffer_create(dev, UINT64_MAX, &buf), QIAO_DEV_OUT_OF_MEMORY, NULL);
  OK(api->buffer_create(dev, 3 * 16 * sizeof(float), &buf));
  qiao_dev_queue *q = NULL;
  OK(api->queue_create(dev, &q));
  if (buf != NULL && q != NULL) {
    float a[16], b[16], out[16];
    for (int i = 0; i < 16; i++)
      a[i] = 0.1f * (float)i, b[i] = 1e7f - (float)i * 3.0f, out[i] = -1.0f;
    qiao_dev_ref ra = {buf, 0}, rb = {buf, 64}, ro = {buf, 128};
    OK(api->upload(q, ra, a, sizeof(a)));
    OK(api->upload(q, rb, b, sizeof(b)));
    qiao_dev_add_args add = {sizeof(add), 16, ra, rb, ro};
    OK(api->add(q, &add));
    qiao_dev_add_args bad = add;
    bad.n = 17; /* out runs past the buffer */
    EXPECT(api->add(q, &bad), QIAO_DEV_INVALID_ARGUMENT, "exceed");
    OK(api->download(q, out, ro, sizeof(out)));
    OK(api->queue_synchronize(q));
    for (int i = 0; i < 16; i++)
      CHECK(out[i] == a[i] + b[i]);
  }
  api->queue_destroy(q);
  api->buffer_destroy(buf);
  api->device_close(dev);
}

int main(void) {
  qiao_backend *backend = NULL;
  CHECK_OK(qiao_backend_load(QIAO_CUDA_PLUGIN, &backend));
  if (backend == NULL) TEST_END();
  api = qiao_backend_api(backend);
  CHECK(strcmp(qiao_backend_name(backend), "cuda") == 0);
  CHECK(api->abi_major == QIAO_DEVICE_ABI_MAJOR);
  CHECK(api->buffer_wrap_host == NULL);
  qiao_dev_backend *handle = qiao_backend_handle(backend);

  uint32_t count = UINT32_MAX;
  OK(api->device_count(handle, &count));
  printf("cuda devices: %u\n", (unsigned)count);
  CHECK(count != UINT32_MAX);
  check_validation(handle);
  if (count == 0) {
    /* No GPU or driver: a clear error, not a crash. */
    qiao_dev_device *dev = NULL;
    EXPECT(api->device_open(handle, 0, NULL, &dev), QIAO_DEV_INVALID_ARGUMENT, "no CUDA device");
    CHECK(dev == NULL);
    qiao_dev_properties props = {.struct_size = sizeof(props)};
    EXPECT(api->device_get_properties(handle, 0, &props), QIAO_DEV_INVALID_ARGUMENT,
           "no CUDA device");
  } else {
    check_device(handle);
  }
  qiao_backend_unload(backend);
  TEST_END();
}
