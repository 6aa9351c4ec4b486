/* OpenAI-shaped errors and the HTTP status of each scheduler refusal. */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "text.h"

/* OpenAI's error types by status. */
static const char *type_of(unsigned status) {
  switch (status) {
  case 401: return "authentication_error";
  case 429: return "rate_limit_error";
  case 500: return "server_error";
  case 503: return "unavailable_error";
  default: return "invalid_request_error";
  }
}

bool serve_fail(serve_error *e, unsigned status, const char *param, const char *fmt, ...) {
  e->status = status;
  e->type = type_of(status);
  e->code = NULL;
  e->retry_after_s = 0;
  e->allow = NULL;
  snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof(e->message), fmt, ap);
  va_end(ap);
  /* Messages may quote (and truncate) request text: keep the JSON valid. */
  serve_text_sanitize(e->message);
  serve_text_sanitize(e->param);
  return false;
}

void serve_error_from_reject(serve_error *e, const qiao_submit_result *r, const char *message,
                             const char *prompt_param) {
  unsigned status = 500;
  const char *param = NULL, *code = qiao_reject_name(r->reject);
  switch (r->reject) {
  case QIAO_REJECT_QUEUE_FULL:
  case QIAO_REJECT_NO_DEVICE:
  case QIAO_REJECT_SHUTTING_DOWN: status = 503; break;
  case QIAO_REJECT_TENANT_QUEUE:
  case QIAO_REJECT_TENANT_RATE: status = 429; break;
  case QIAO_REJECT_TOO_LONG:
    status = 400;
    param = prompt_param;
    code = "context_length_exceeded"; /* OpenAI's code for this */
    break;
  case QIAO_REJECT_INVALID: status = 400; break;
  default: break;
  }
  serve_fail(e, status, param, "%s", message);
  e->code = code;
  if (status == 429 || status == 503) e->retry_after_s = r->retry_after_s ? r->retry_after_s : 1;
}

json_object *serve_error_json(const serve_error *e) {
  json_object *inner = json_object_new_object();
  json_object_object_add(inner, "message", json_object_new_string(e->message));
  json_object_object_add(inner, "type", json_object_new_string(e->type ? e->type : "server_error"));
  json_object_object_add(inner, "param", e->param[0] ? json_object_new_string(e->param) : NULL);
  json_object_object_add(inner, "code", e->code ? json_object_new_string(e->code) : NULL);
  json_object *outer = json_object_new_object();
  json_object_object_add(outer, "error", inner);
  return outer;
}
