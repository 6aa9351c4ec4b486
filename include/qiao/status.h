/* qiao/status.h: the error model of the qiao library.
 *
 * Every fallible call returns a qiao_status pointer: NULL means success,
 * anything else is an error the caller owns and must release with
 * qiao_status_free(). Messages name the thing that failed (a file, a field,
 * a byte offset, an op). Thread-safety: a status is a plain value; distinct
 * statuses may be used from distinct threads. */
#ifndef QIAO_STATUS_H
#define QIAO_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qiao_code {
  QIAO_OK = 0,
  QIAO_INVALID_ARGUMENT = 1, /* a caller or CLI flag passed something wrong */
  QIAO_NOT_FOUND = 2,        /* a file, key, tensor or backend is missing */
  QIAO_IO = 3,               /* read/write/mmap failed */
  QIAO_MALFORMED = 4,        /* an input file or request breaks its format */
  QIAO_UNSUPPORTED = 5,      /* valid, but not supported (dtype, op, arch) */
  QIAO_OUT_OF_MEMORY = 6,
  QIAO_LIMIT = 7,   /* a budget (size, steps, depth) was exceeded */
  QIAO_DEVICE = 8,  /* a device backend reported an error */
  QIAO_INTERNAL = 9 /* a bug in qiao */
} qiao_code;

typedef struct qiao_status qiao_status;

/* The code of a status; QIAO_OK for NULL. */
qiao_code qiao_status_code(const qiao_status *status);

/* The message of a status, valid until qiao_status_free(); "" for NULL. */
const char *qiao_status_message(const qiao_status *status);

/* A short name for a code, e.g. "malformed". */
const char *qiao_code_name(qiao_code code);

/* Releases a status. Accepts NULL. */
void qiao_status_free(qiao_status *status);

#ifdef __cplusplus
}
#endif
#endif
