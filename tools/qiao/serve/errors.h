/* HTTP errors in OpenAI's shape:
 *   {"error": {"message": "...", "type": "...", "param": "..." | null,
 *              "code": "..." | null}}
 * A serve_error is filled where a problem is found (parsing a field,
 * submitting to the scheduler) and turned into a response at the edge. */
#ifndef QIAO_SERVE_ERRORS_H
#define QIAO_SERVE_ERRORS_H

#include <json-c/json.h>
#include <stdint.h>

#include "core/status_internal.h"
#include "qiao/scheduler.h"

typedef struct serve_error {
  unsigned status;        /* HTTP status; 0 = no error */
  const char *type;       /* "invalid_request_error", "server_error", ... */
  const char *code;       /* NULL or a stable code such as "queue_full" */
  char param[64];         /* the request field at fault, "" for none */
  char message[512];      /* says what is wrong, naming the field */
  uint32_t retry_after_s; /* sent as Retry-After when > 0 (429, 503) */
  const char *allow;      /* 405: the methods the route takes (the Allow header) */
} serve_error;

/* Fills `e` (and returns false, so parsers can `return serve_fail(...)`). */
bool serve_fail(serve_error *e, unsigned status, const char *param, const char *fmt, ...)
    QIAO__PRINTF(4, 5);

/* A 400 invalid_request_error naming `param`. */
#define serve_bad_request(e, param, ...) serve_fail((e), 400, (param), __VA_ARGS__)

/* The HTTP error of a refused submission (see qiao_reject in scheduler.h). */
void serve_error_from_reject(serve_error *e, const qiao_submit_result *result, const char *message,
                             const char *prompt_param);

/* {"error": {...}} as a new json object. */
json_object *serve_error_json(const serve_error *e);

#endif
