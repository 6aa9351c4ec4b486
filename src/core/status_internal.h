/* Internal helpers for building qiao_status values. */
#ifndef QIAO_STATUS_INTERNAL_H
#define QIAO_STATUS_INTERNAL_H

#include "qiao/status.h"

#if defined(__GNUC__)
#define QIAO__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QIAO__PRINTF(a, b)
#endif

/* Makes an error status with a printf-style message. Never returns NULL:
 * when memory runs out it returns a shared static out-of-memory status
 * (qiao_status_free() knows not to free it). */
qiao_status *qiao__error(qiao_code code, const char *fmt, ...) QIAO__PRINTF(2, 3);

/* Prefixes the message of `status` with "context: " and returns it.
 * Passes NULL through unchanged. */
qiao_status *qiao__annotate(qiao_status *status, const char *fmt, ...) QIAO__PRINTF(2, 3);

/* Evaluates a qiao_status* expression and returns it from the enclosing
 * function if it is an error. */
#define QIAO__TRY(expr)                                                                            \
  do {                                                                                             \
    qiao_status *qiao__try_status = (expr);                                                        \
    if (qiao__try_status != NULL) return qiao__try_status;                                         \
  } while (0)

#endif
