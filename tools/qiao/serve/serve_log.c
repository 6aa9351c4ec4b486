#include "serve_log.h"

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

static json_object *str_or_null(const char *s) {
  return s != NULL && s[0] != '\0' ? json_object_new_string(s) : NULL;
}

/* Seconds to the microsecond ("0.002569", not json-c's 17 digits). */
static json_object *seconds(double s) {
  if (!isfinite(s) || s < 0) s = 0;
  char text[32];
  snprintf(text, sizeof(text), "%.6f", s);
  return json_object_new_double_s(s, text);
}

void serve_log_request(const serve_log_entry *e) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char date[32], when[48];
  strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(when, sizeof(when), "%s.%03dZ", date, (int)(ts.tv_nsec / 1000000));
  json_object *o = json_object_new_object();
  json_object_object_add(o, "time", json_object_new_string(when));
  json_object_object_add(o, "id", json_object_new_string(e->id));
  json_object_object_add(o, "method", json_object_new_string(e->method));
  json_object_object_add(o, "route", json_object_new_string(e->route));
  json_object_object_add(o, "tenant", str_or_null(e->tenant));
  json_object_object_add(o, "status", json_object_new_int((int)e->status));
  if (e->gen != NULL) {
    json_object_object_add(o, "prompt_tokens", json_object_new_int64(e->gen->prompt_tokens));
    json_object_object_add(o, "cached_tokens", json_object_new_int64(e->gen->cached_tokens));
    json_object_object_add(o, "completion_tokens",
                           json_object_new_int64(e->gen->completion_tokens));
    json_object_object_add(o, "queue_s", seconds(e->gen->queue_s));
    json_object_object_add(o, "ttft_s", seconds(e->gen->ttft_s));
  }
  json_object_object_add(o, "total_s", seconds(e->total_s));
  if (e->gen != NULL) {
    json_object_object_add(o, "finish", str_or_null(e->gen->finish));
    json_object_object_add(o, "replica", str_or_null(e->gen->replica));
  }
  json_object_object_add(o, "error", str_or_null(e->error));
  if (e->session != NULL && e->session[0] != '\0')
    json_object_object_add(o, "session", json_object_new_string(e->session));
  if (e->user != NULL && e->user[0] != '\0')
    json_object_object_add(o, "user", json_object_new_string(e->user));
  if (e->prompt != NULL) json_object_object_add(o, "prompt", json_object_new_string(e->prompt));
  size_t len = 0;
  const char *line = json_object_to_json_string_length(
      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
  /* One write per line, so that lines of concurrent requests never mix. */
  flockfile(stderr);
  fwrite(line, 1, len, stderr);
  fputc('\n', stderr);
  funlockfile(stderr);
  json_object_put(o);
}
