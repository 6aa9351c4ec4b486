/* Strict JSON parsing of request bodies and typed field readers. */
#include "json_in.h"

#include <math.h>
#include <string.h>

#include "text.h"

json_object *serve_json_parse_object(const char *body, size_t len, serve_error *e) {
  if (len == 0) {
    serve_bad_request(e, NULL, "the request body is empty; expected a JSON object");
    return NULL;
  }
  if (len > INT32_MAX) { /* json-c takes an int length */
    serve_fail(e, 413, NULL, "the request body is too large");
    return NULL;
  }
  json_tokener *tok = json_tokener_new_ex(SERVE_JSON_MAX_DEPTH);
  if (tok == NULL) {
    serve_fail(e, 500, NULL, "out of memory");
    return NULL;
  }
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
  json_object *obj = json_tokener_parse_ex(tok, body, (int)len);
  enum json_tokener_error err = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  if (obj == NULL || err != json_tokener_success) {
    json_object_put(obj);
    if (err == json_tokener_error_depth)
      serve_bad_request(e, NULL, "the JSON body is nested deeper than %d levels",
                        SERVE_JSON_MAX_DEPTH);
    else if (err == json_tokener_error_parse_utf8_string)
      serve_bad_request(e, NULL, "the request body is not valid UTF-8");
    else if (err == json_tokener_continue)
      serve_bad_request(e, NULL, "the JSON body ends too early");
    else
      serve_bad_request(e, NULL, "the request body is not valid JSON (%s at byte %zu)",
                        json_tokener_error_desc(err), end);
    return NULL;
  }
  for (; end < len; end++) /* only whitespace may follow the object */
    if (body[end] != ' ' && body[end] != '\t' && body[end] != '\n' && body[end] != '\r') {
      json_object_put(obj);
      serve_bad_request(e, NULL, "unexpected data after the JSON object at byte %zu", end);
      return NULL;
    }
  if (!json_object_is_type(obj, json_type_object)) {
    json_object_put(obj);
    serve_bad_request(e, NULL, "the request body must be a JSON object");
    return NULL;
  }
  return obj;
}

json_object *serve_json_get(json_object *obj, const char *key) {
  json_object *v = NULL;
  if (obj == NULL || !json_object_object_get_ex(obj, key, &v)) return NULL;
  return v; /* NULL for a JSON null too */
}

bool serve_json_as_bool(json_object *v, const char *label, bool *out, serve_error *e) {
  if (v == NULL) return true;
  if (!json_object_is_type(v, json_type_boolean))
    return serve_bad_request(e, label, "%s must be a boolean", label);
  *out = json_object_get_boolean(v);
  return true;
}

bool serve_json_as_number(json_object *v, const char *label, double min, double max, double *out,
                          serve_error *e) {
  if (v == NULL) return true;
  json_type t = json_object_get_type(v);
  double d = json_object_get_double(v);
  if ((t != json_type_double && t != json_type_int) || !isfinite(d) || d < min || d > max)
    return serve_bad_request(e, label, "%s must be a number between %g and %g", label, min, max);
  *out = d;
  return true;
}

bool serve_json_as_int(json_object *v, const char *label, int64_t min, int64_t max, int64_t *out,
                       serve_error *e) {
  if (v == NULL) return true;
  json_type t = json_object_get_type(v);
  int64_t i = 0;
  bool ok = false;
  if (t == json_type_int) {
    /* json-c keeps integers above INT64_MAX as uint64; they saturate here,
     * which the range check then refuses or clamps as the caller chose. */
    i = json_object_get_int64(v);
    ok = true;
  } else if (t == json_type_double) {
    double d = json_object_get_double(v);
    ok = isfinite(d) && d == floor(d) && d >= -9.2e18 && d <= 9.2e18;
    i = ok ? (int64_t)d : 0;
  }
  if (!ok || i < min || i > max)
    return serve_bad_request(e, label, "%s must be an integer between %lld and %lld", label,
                             (long long)min, (long long)max);
  *out = i;
  return true;
}

bool serve_json_as_string(json_object *v, const char *label, const char **out, size_t *out_len,
                          serve_error *e) {
  if (v == NULL) return true;
  if (!json_object_is_type(v, json_type_string))
    return serve_bad_request(e, label, "%s must be a string", label);
  const char *s = json_object_get_string(v);
  size_t len = (size_t)json_object_get_string_len(v);
  /* The parser checks the raw bytes; this also catches \u escapes of lone
   * surrogates, which would decode to invalid UTF-8. */
  if (!serve_utf8_valid(s, len)) return serve_bad_request(e, label, "%s is not valid UTF-8", label);
  *out = s;
  if (out_len != NULL) *out_len = len;
  return true;
}

bool serve_json_bool(json_object *obj, const char *key, bool *out, serve_error *e) {
  return serve_json_as_bool(serve_json_get(obj, key), key, out, e);
}
bool serve_json_number(json_object *obj, const char *key, double min, double max, double *out,
                       serve_error *e) {
  return serve_json_as_number(serve_json_get(obj, key), key, min, max, out, e);
}
bool serve_json_int(json_object *obj, const char *key, int64_t min, int64_t max, int64_t *out,
                    serve_error *e) {
  return serve_json_as_int(serve_json_get(obj, key), key, min, max, out, e);
}
bool serve_json_string(json_object *obj, const char *key, const char **out, size_t *out_len,
                       serve_error *e) {
  return serve_json_as_string(serve_json_get(obj, key), key, out, out_len, e);
}
