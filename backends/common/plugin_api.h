/* plugin_api.h: a GPU plugin's entry points and its function table, written
 * once. A plugin names its implementation of each qiao_dev_api entry
 * <prefix>__<entry> (ocl__embed, cuq__queue_create, ...):
 *
 *   PLUGIN_DECLARE_ENTRY_POINTS(ocl)  in its internal header declares them,
 *                                     each with exactly the type of the
 *                                     table's field (include/qiao/device.h
 *                                     states every contract);
 *   PLUGIN_DEFINE_API(ocl, "opencl", "0.1.0")  in one .c file defines the
 *                                     table and qiao_device_get_api, the one
 *                                     symbol the plugin exports.
 *
 * The error entries are the shared ones of plugin_error.h; buffer_wrap_host
 * is NULL (no GPU plugin has QIAO_DEV_FLAG_HOST_MEMORY: weights are uploaded
 * once). Includes only qiao/device.h. */
#ifndef QIAO_PLUGIN_API_H
#define QIAO_PLUGIN_API_H

#include "plugin_error.h"
#include "qiao/device.h"

/* Calls X(prefix, entry) for every entry a plugin implements itself. */
#define PLUGIN_FOR_EACH_ENTRY(X, p)                                                                \
  X(p, backend_open)                                                                               \
  X(p, backend_close)                                                                              \
  X(p, device_count)                                                                               \
  X(p, device_get_properties)                                                                      \
  X(p, device_open)                                                                                \
  X(p, device_close)                                                                               \
  X(p, op_supported)                                                                               \
  X(p, buffer_create)                                                                              \
  X(p, buffer_destroy)                                                                             \
  X(p, queue_create)                                                                               \
  X(p, queue_destroy)                                                                              \
  X(p, queue_synchronize)                                                                          \
  X(p, upload)                                                                                     \
  X(p, download)                                                                                   \
  X(p, copy)                                                                                       \
  X(p, embed)                                                                                      \
  X(p, matmul)                                                                                     \
  X(p, rmsnorm)                                                                                    \
  X(p, rope)                                                                                       \
  X(p, kv_write)                                                                                   \
  X(p, attention)                                                                                  \
  X(p, swiglu)                                                                                     \
  X(p, add)                                                                                        \
  X(p, argmax)                                                                                     \
  X(p, moe_gate)                                                                                   \
  X(p, matmul_experts)                                                                             \
  X(p, moe_combine)

/* e.g. qiao_dev_error *ocl__embed(qiao_dev_queue *, const qiao_dev_embed_args *); */
#define PLUGIN_DECLARE_ONE_(p, entry) __typeof__(*((qiao_dev_api *)0)->entry) p##__##entry;
#define PLUGIN_TABLE_ONE_(p, entry) .entry = p##__##entry,

#define PLUGIN_DECLARE_ENTRY_POINTS(p) PLUGIN_FOR_EACH_ENTRY(PLUGIN_DECLARE_ONE_, p)

/* (ABI 1.4) The entries appended in 1.4. A plugin that implements them adds
 * PLUGIN_DECLARE_ENTRY_POINTS_1_4(p) and defines its table with
 * PLUGIN_DEFINE_API_1_4; with PLUGIN_DEFINE_API they are NULL, which the ABI
 * allows while op_supported never claims their ops. */
#define PLUGIN_FOR_EACH_ENTRY_1_4(X, p)                                                            \
  X(p, latent_write)                                                                               \
  X(p, attention_latent)                                                                           \
  X(p, moe_route)
#define PLUGIN_NO_ENTRIES_(X, p)

#define PLUGIN_DECLARE_ENTRY_POINTS_1_4(p) PLUGIN_FOR_EACH_ENTRY_1_4(PLUGIN_DECLARE_ONE_, p)

#define PLUGIN_DEFINE_API(p, NAME, VERSION) PLUGIN_DEFINE_API_(p, NAME, VERSION, PLUGIN_NO_ENTRIES_)
#define PLUGIN_DEFINE_API_1_4(p, NAME, VERSION)                                                    \
  PLUGIN_DEFINE_API_(p, NAME, VERSION, PLUGIN_FOR_EACH_ENTRY_1_4)

/* The table: the entries of 1.0-1.3, then those MORE(X, p) lists (none, or 1.4's). */
#define PLUGIN_DEFINE_API_(p, NAME, VERSION, MORE)                                                 \
  static const qiao_dev_api plugin_api_ = {.struct_size = sizeof(qiao_dev_api),                    \
                                           .abi_major = QIAO_DEVICE_ABI_MAJOR,                     \
                                           .abi_minor = QIAO_DEVICE_ABI_MINOR,                     \
                                           .name = NAME,                                           \
                                           .version = VERSION,                                     \
                                           .error_code = plugin__error_code,                       \
                                           .error_message = plugin__error_message,                 \
                                           .error_destroy = plugin__error_destroy,                 \
                                           .buffer_wrap_host = NULL,                               \
                                           PLUGIN_FOR_EACH_ENTRY(PLUGIN_TABLE_ONE_, p)             \
                                               MORE(PLUGIN_TABLE_ONE_, p)};                        \
  __attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {           \
    return &plugin_api_;                                                                           \
  }

#endif
