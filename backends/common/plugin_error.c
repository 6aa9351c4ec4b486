/* plugin_error.c: the plugins' error objects (see plugin_error.h). */
#include "plugin_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef QIAO_PLUGIN_NAME
#error "QIAO_PLUGIN_NAME must name the plugin (qiao_add_plugin in QiaoPlugin.cmake defines it)"
#endif

/* Returned when even an error object cannot be allocated; never freed. */
static qiao_dev_error out_of_memory_error = {QIAO_DEV_OUT_OF_MEMORY, true,
                                             QIAO_PLUGIN_NAME ": out of host memory"};

qiao_dev_error *plugin__error(qiao_dev_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  qiao_dev_error *e = malloc(sizeof(*e));
  char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (e == NULL || msg == NULL) {
    free(e);
    free(msg);
    return &out_of_memory_error;
  }
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  e->code = code;
  e->is_static = false;
  e->message = msg;
  return e;
}

qiao_dev_code plugin__error_code(const qiao_dev_error *error) {
  return error == NULL ? QIAO_DEV_OK : error->code;
}

const char *plugin__error_message(const qiao_dev_error *error) {
  return error == NULL ? "" : error->message;
}

void plugin__error_destroy(qiao_dev_error *error) {
  if (error == NULL || error->is_static) return;
  free(error->message);
  free(error);
}
