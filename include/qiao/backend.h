/* qiao/backend.h: finding, loading and checking device backends.
 *
 * A backend is either built in ("cpu") or a plugin: a shared library
 * libqiao-<name>.so exporting qiao_device_get_api (see qiao/device.h).
 * qiao_backend_load() accepts a name ("cpu", "opencl") or a path to a .so.
 * Names are searched in the directories of $QIAO_BACKEND_PATH (separated by
 * ':'), then next to the qiao executable and in its backends/<name>/ folder,
 * then in the installed plugin folder: lib/qiao/ of the installed tree, found
 * from the executable (bin/../lib/qiao) and from libqiao.so (lib/qiao).
 *
 * A plugin is refused with QIAO_UNSUPPORTED when its ABI major version
 * differs from the runtime's, and with QIAO_MALFORMED when the entry point
 * is missing or its table is malformed (NULL required function, struct_size
 * too small). The runtime keeps its own copy of the table, zero-extended to
 * the runtime's size, so an older plugin's missing functions read as NULL.
 *
 * Thread-safety: a loaded backend may be used from several threads. */
#ifndef QIAO_BACKEND_H
#define QIAO_BACKEND_H

#include <stdbool.h>

#include "qiao/device.h"
#include "qiao/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_backend qiao_backend;

/* Loads and opens a backend. */
qiao_status *qiao_backend_load(const char *name_or_path, qiao_backend **out_backend);

/* Closes the backend and unloads the plugin. Every device opened through it
 * must be closed first. Accepts NULL. */
void qiao_backend_unload(qiao_backend *backend);

/* The function table (the runtime's zero-extended copy). */
const qiao_dev_api *qiao_backend_api(const qiao_backend *backend);
/* The opened backend handle to pass to the table's functions. */
qiao_dev_backend *qiao_backend_handle(const qiao_backend *backend);
/* The backend's own name ("cpu") and where it came from ("built-in" or a path). */
const char *qiao_backend_name(const qiao_backend *backend);
const char *qiao_backend_origin(const qiao_backend *backend);

/* *out_supported = whether device `index` can be opened in batch-invariant
 * mode (QIAO_DEV_OPEN_BATCH_INVARIANT): the plugin speaks device ABI 1.1 or
 * later and the device's properties have QIAO_DEV_FLAG_BATCH_INVARIANT. A
 * 1.0 plugin never reads device_options.flags and would silently open in its
 * ordinary mode, so a runtime checks this before relying on the mode. */
qiao_status *qiao_backend_batch_invariant(const qiao_backend *backend, uint32_t index,
                                          bool *out_supported);

/* The device ABI minor version that added `dtype`: 0 for the dtypes of 1.0,
 * 3 for the k-quant and q4_1/q5_0/q5_1 types of 1.3, 4 for f8_e4m3_b128, 5
 * for iq4_nl and iq4_xs. */
uint32_t qiao_dev_dtype_abi_minor(qiao_dev_dtype dtype);
/* The device ABI minor version that added `op`: 0 for the ops of 1.0, 4 for
 * latent_write, attention_latent and moe_route. */
uint32_t qiao_dev_op_abi_minor(qiao_dev_op op);

/* *out_supported = whether `device` (opened from `backend`) implements `op`
 * for `dtype`. An op or dtype that was added after the plugin's ABI minor
 * version is answered "no" without asking the plugin (a 1.0-1.2 plugin
 * cannot know the dtypes of 1.3, and may index its tables by dtype), and so
 * is an op appended in 1.4 whose function the plugin's table leaves NULL. */
qiao_status *qiao_backend_op_supported(const qiao_backend *backend, qiao_dev_device *device,
                                       qiao_dev_op op, qiao_dev_dtype dtype, bool *out_supported);
/* Whether a runtime may ask `backend`'s plugin about (op, dtype) at all:
 * both belong to the plugin's ABI minor version and, for an op appended
 * after 1.0, the plugin's table has its function. What
 * qiao_backend_op_supported answers "no" for without asking. */
bool qiao_backend_may_ask(const qiao_backend *backend, qiao_dev_op op, qiao_dev_dtype dtype);

/* Turns a backend error into a status "<backend> <what>: <message>" and
 * destroys the error. Returns NULL for a NULL error. */
qiao_status *qiao_backend_status(const qiao_backend *backend, qiao_dev_error *error,
                                 const char *what);

/* A plugin found on the search path. */
typedef struct qiao_backend_entry {
  char name[64];   /* "opencl" for libqiao-opencl.so */
  char path[4096]; /* where it was found */
} qiao_backend_entry;

/* Lists every libqiao-<name>.so on the search path (the directories of
 * $QIAO_BACKEND_PATH, then beside the qiao executable and in its
 * backends/<dir>/ folders, then the installed plugin folder), the first of
 * each name only, without loading them. *out_entries is malloc'd (free()
 * it); it may be NULL when none. */
qiao_status *qiao_backend_discover(qiao_backend_entry **out_entries, size_t *out_count);

/* The names of the ops and dtypes of the ABI, for messages ("matmul", "q8_0"). */
const char *qiao_dev_op_name(qiao_dev_op op);
const char *qiao_dev_dtype_name(qiao_dev_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif
