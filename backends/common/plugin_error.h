/* plugin_error.h: the qiao_dev_error object every GPU plugin returns (a code
 * and a formatted message) and the three error entries of the function table.
 *
 * Compiled into each plugin (backends/common/QiaoPlugin.cmake), never a
 * library of its own: it includes only qiao/device.h and libc. The build
 * defines QIAO_PLUGIN_NAME ("opencl", "cuda"), which names the plugin in the
 * one message made here (running out of host memory).
 *
 * Thread-safety: every function is safe to call from any thread; an error
 * object belongs to whoever received it until error_destroy. */
#ifndef QIAO_PLUGIN_ERROR_H
#define QIAO_PLUGIN_ERROR_H

#include <stdbool.h>

#include "qiao/device.h"

struct qiao_dev_error {
  qiao_dev_code code;
  bool is_static; /* the preallocated out-of-memory error, never freed */
  char *message;
};

/* A new error with a printf-formatted message (messages start with the
 * plugin's name: "opencl: matmul: ..."). When even that cannot be allocated,
 * a static OUT_OF_MEMORY error. Never returns NULL. */
qiao_dev_error *plugin__error(qiao_dev_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The function-table entries: QIAO_DEV_OK and "" for NULL; destroy accepts NULL. */
qiao_dev_code plugin__error_code(const qiao_dev_error *error);
const char *plugin__error_message(const qiao_dev_error *error);
void plugin__error_destroy(qiao_dev_error *error);

/* Returns from the calling function with the error of `expr`, if any. */
#define PLUGIN_TRY(expr)                                                                           \
  do {                                                                                             \
    qiao_dev_error *plugin_try_e_ = (expr);                                                        \
    if (plugin_try_e_ != NULL) return plugin_try_e_;                                               \
  } while (0)

#endif
