/* A deliberately minimal (and, depending on TEST_PLUGIN_KIND, deliberately
 * broken) device plugin, used to check what the runtime's loader accepts and
 * refuses. Every function fails with UNSUPPORTED; the backend has no devices.
 *   KIND_VALID      a well-formed table of this header's ABI version
 *   KIND_MAJOR2     abi_major = 2
 *   KIND_NO_ENTRY   no qiao_device_get_api symbol at all
 *   KIND_NULL_FN    the required entry `rope` is NULL
 *   KIND_SMALL      struct_size smaller than ABI 1.0's table
 *   KIND_NEWER      a plugin of a later minor version (1.7): a larger table
 *                   with functions this runtime does not know
 *   KIND_V1_0       a plugin built for ABI 1.0 (abi_minor 0): still loads
 *   KIND_NO_VERSION the table's `version` is NULL
 *   KIND_V1_3       a plugin built for ABI 1.3 (abi_minor 3, the 1.3 table of
 *                   280 bytes, without 1.4's functions): still loads; past its
 *                   struct_size lie pointers to a function that aborts
 *   KIND_V1_4_PARTIAL a 1.4 plugin that leaves latent_write NULL (and has
 *                   the two other 1.4 functions) */
#include <stdlib.h>
#include <string.h>

#include "qiao/device.h"

#define KIND_VALID 0
#define KIND_MAJOR2 1
#define KIND_NO_ENTRY 2
#define KIND_NULL_FN 3
#define KIND_SMALL 4
#define KIND_NEWER 5
#define KIND_V1_0 6
#define KIND_NO_VERSION 7
#define KIND_V1_3 8
#define KIND_V1_4_PARTIAL 9
/* The plugins that claim whatever they are asked (so a test sees whether the
 * runtime asked them at all). */
#define CLAIMS_ALL                                                                                 \
  (TEST_PLUGIN_KIND == KIND_V1_0 || TEST_PLUGIN_KIND == KIND_V1_3 ||                               \
   TEST_PLUGIN_KIND == KIND_V1_4_PARTIAL)

struct qiao_dev_error {
  qiao_dev_code code;
};
struct qiao_dev_backend {
  int unused;
};

static qiao_dev_error *fail(void) {
  qiao_dev_error *e = malloc(sizeof(*e));
  if (e != NULL) e->code = QIAO_DEV_UNSUPPORTED;
  return e;
}
static qiao_dev_code error_code(const qiao_dev_error *e) {
  return e ? e->code : QIAO_DEV_INTERNAL;
}
static const char *error_message(const qiao_dev_error *e) {
  return "test: the test plugin does nothing"; /* starts with its name, as some plugins do */
}
static void error_destroy(qiao_dev_error *e) {
  free(e);
}
static qiao_dev_error *backend_open(const qiao_dev_backend_options *o, qiao_dev_backend **out) {
  qiao_dev_backend *b = calloc(1, sizeof(*b));
  if (b == NULL) return fail();
  *out = b;
  return NULL;
}
static void backend_close(qiao_dev_backend *b) {
  free(b);
}
static qiao_dev_error *device_count(qiao_dev_backend *b, uint32_t *out) {
  *out = 0;
  return NULL;
}
static qiao_dev_error *device_get_properties(qiao_dev_backend *b, uint32_t i,
                                             qiao_dev_properties *p) {
  return fail();
}
static qiao_dev_error *device_open(qiao_dev_backend *b, uint32_t i,
                                   const qiao_dev_device_options *o, qiao_dev_device **out) {
  return fail();
}
static void device_close(qiao_dev_device *d) {}
/* CLAIMS_ALL: it must never be asked about an op or dtype of a later minor
 * version than its own, nor about an op whose function it leaves NULL. */
static qiao_dev_error *op_supported(qiao_dev_device *d, qiao_dev_op op, qiao_dev_dtype t,
                                    uint32_t *out) {
  *out = CLAIMS_ALL;
  return NULL;
}
static qiao_dev_error *buffer_create(qiao_dev_device *d, uint64_t s, qiao_dev_buffer **out) {
  return fail();
}
static void buffer_destroy(qiao_dev_buffer *b) {}
static qiao_dev_error *queue_create(qiao_dev_device *d, qiao_dev_queue **out) {
  return fail();
}
static void queue_destroy(qiao_dev_queue *q) {}
static qiao_dev_error *queue_synchronize(qiao_dev_queue *q) {
  return fail();
}
static qiao_dev_error *upload(qiao_dev_queue *q, qiao_dev_ref d, const void *s, uint64_t n) {
  return fail();
}
static qiao_dev_error *download(qiao_dev_queue *q, void *d, qiao_dev_ref s, uint64_t n) {
  return fail();
}
static qiao_dev_error *copy(qiao_dev_queue *q, qiao_dev_ref d, qiao_dev_ref s, uint64_t n) {
  return fail();
}
#define OP(name)                                                                                   \
  static qiao_dev_error *name(qiao_dev_queue *q, const qiao_dev_##name##_args *a) {                \
    return fail();                                                                                 \
  }
OP(embed)
OP(matmul)
OP(rmsnorm)
OP(rope)
OP(kv_write)
OP(attention)
OP(swiglu)
OP(add)
OP(argmax)
OP(moe_gate)
OP(matmul_experts)
OP(moe_combine)
#if TEST_PLUGIN_KIND == KIND_V1_4_PARTIAL
OP(attention_latent)
OP(moe_route)
#endif

/* What KIND_V1_3 has past its struct_size: a runtime that called one read
 * beyond the table the plugin gave. */
#define BEYOND(name)                                                                               \
  static qiao_dev_error *beyond_##name(qiao_dev_queue *q, const qiao_dev_##name##_args *a) {       \
    abort();                                                                                       \
  }
#if TEST_PLUGIN_KIND == KIND_V1_3
BEYOND(latent_write)
BEYOND(attention_latent)
BEYOND(moe_route)
#endif

/* The 1.0 table, then (for KIND_NEWER) what a later minor version appended. */
static void future_function(void) {}
static const struct {
  qiao_dev_api v1;
  void (*appended[3])(void);
} table = {
    .v1 =
        {
            .struct_size = TEST_PLUGIN_KIND == KIND_SMALL ? offsetof(qiao_dev_api, embed)
                           : TEST_PLUGIN_KIND == KIND_NEWER
                               ? sizeof(qiao_dev_api) + 3 * sizeof(void (*)(void))
                           : TEST_PLUGIN_KIND == KIND_V1_3 ? offsetof(qiao_dev_api, latent_write)
                                                           : sizeof(qiao_dev_api),
            .abi_major = TEST_PLUGIN_KIND == KIND_MAJOR2 ? 2 : QIAO_DEVICE_ABI_MAJOR,
            .abi_minor = TEST_PLUGIN_KIND == KIND_NEWER                                     ? 7
                         : TEST_PLUGIN_KIND == KIND_V1_0 || TEST_PLUGIN_KIND == KIND_MAJOR2 ? 0
                         : TEST_PLUGIN_KIND == KIND_V1_3                                    ? 3
                                                         : QIAO_DEVICE_ABI_MINOR,
            .name = "test",
            .version = TEST_PLUGIN_KIND == KIND_NO_VERSION ? NULL : "0",
            .error_code = error_code,
            .error_message = error_message,
            .error_destroy = error_destroy,
            .backend_open = backend_open,
            .backend_close = backend_close,
            .device_count = device_count,
            .device_get_properties = device_get_properties,
            .device_open = device_open,
            .device_close = device_close,
            .op_supported = op_supported,
            .buffer_create = buffer_create,
            .buffer_destroy = buffer_destroy,
            .queue_create = queue_create,
            .queue_destroy = queue_destroy,
            .queue_synchronize = queue_synchronize,
            .upload = upload,
            .download = download,
            .copy = copy,
            .embed = embed,
            .matmul = matmul,
            .rmsnorm = rmsnorm,
            .rope = TEST_PLUGIN_KIND == KIND_NULL_FN ? NULL : rope,
            .kv_write = kv_write,
            .attention = attention,
            .swiglu = swiglu,
            .add = add,
            .argmax = argmax,
            .moe_gate = moe_gate,
            .matmul_experts = matmul_experts,
            .moe_combine = moe_combine,
#if TEST_PLUGIN_KIND == KIND_V1_3
            .latent_write = beyond_latent_write,
            .attention_latent = beyond_attention_latent,
            .moe_route = beyond_moe_route,
#elif TEST_PLUGIN_KIND == KIND_V1_4_PARTIAL
            .attention_latent = attention_latent,
            .moe_route = moe_route,
#endif
        },
    .appended = {future_function, future_function, future_function},
};
static const qiao_dev_api *const api_ptr = &table.v1;

#if TEST_PLUGIN_KIND == KIND_NO_ENTRY
/* Exports something, but not the entry point. */
__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_table(void) {
  return api_ptr;
}
#else
__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  return api_ptr;
}
#endif
