#include "status_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qiao_status {
  qiao_code code;
  char *message;
};

/* Returned when allocating a status itself fails. */
static struct qiao_status oom_status = {QIAO_OUT_OF_MEMORY, "out of memory"};

static qiao_status *make_status(qiao_code code, char *message) {
  qiao_status *status = malloc(sizeof(*status));
  if (status == NULL) {
    free(message);
    return &oom_status;
  }
  status->code = code;
  status->message = message;
  return status;
}

static char *vformat(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return NULL;
  char *buf = malloc((size_t)n + 1);
  if (buf == NULL) return NULL;
  vsnprintf(buf, (size_t)n + 1, fmt, ap);
  return buf;
}

qiao_status *qiao__error(qiao_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *message = vformat(fmt, ap);
  va_end(ap);
  if (message == NULL) return &oom_status;
  return make_status(code, message);
}

qiao_status *qiao__annotate(qiao_status *status, const char *fmt, ...) {
  if (status == NULL || status == &oom_status) return status;
  va_list ap;
  va_start(ap, fmt);
  char *context = vformat(fmt, ap);
  va_end(ap);
  if (context == NULL) return status;
  size_t a = strlen(context), b = strlen(status->message);
  char *joined = malloc(a + 2 + b + 1);
  if (joined != NULL) {
    memcpy(joined, context, a);
    memcpy(joined + a, ": ", 2);
    memcpy(joined + a + 2, status->message, b + 1);
    free(status->message);
    status->message = joined;
  }
  free(context);
  return status;
}

qiao_code qiao_status_code(const qiao_status *status) {
  return status == NULL ? QIAO_OK : status->code;
}

const char *qiao_status_message(const qiao_status *status) {
  return status == NULL ? "" : status->message;
}

const char *qiao_code_name(qiao_code code) {
  switch (code) {
  case QIAO_OK: return "ok";
  case QIAO_INVALID_ARGUMENT: return "invalid argument";
  case QIAO_NOT_FOUND: return "not found";
  case QIAO_IO: return "i/o error";
  case QIAO_MALFORMED: return "malformed";
  case QIAO_UNSUPPORTED: return "unsupported";
  case QIAO_OUT_OF_MEMORY: return "out of memory";
  case QIAO_LIMIT: return "limit exceeded";
  case QIAO_DEVICE: return "device error";
  case QIAO_INTERNAL: return "internal error";
  }
  return "unknown";
}

void qiao_status_free(qiao_status *status) {
  if (status == NULL || status == &oom_status) return;
  free(status->message);
  free(status);
}
