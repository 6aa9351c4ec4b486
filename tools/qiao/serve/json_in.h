/* Reading request bodies: one JSON object, strictly parsed (valid UTF-8,
 * nesting at most 64 deep, nothing after it), and typed field readers whose
 * errors name the field ("temperature must be a number between 0 and 2").
 *
 * A field that is absent or null is "not given": the readers then leave
 * *out as it was (the caller's default) and succeed. Unknown fields are
 * ignored by design (clients send fields of newer API versions). */
#ifndef QIAO_SERVE_JSON_IN_H
#define QIAO_SERVE_JSON_IN_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"

#define SERVE_JSON_MAX_DEPTH 64

/* The body as a JSON object (the caller puts it), or NULL with a 400 in *e. */
json_object *serve_json_parse_object(const char *body, size_t len, serve_error *e);

/* The field's value, or NULL when absent or null. */
json_object *serve_json_get(json_object *obj, const char *key);

/* Checks on a value; `label` names it in the error ("temperature",
 * "messages[2].content"). */
bool serve_json_as_bool(json_object *v, const char *label, bool *out, serve_error *e);
bool serve_json_as_number(json_object *v, const char *label, double min, double max, double *out,
                          serve_error *e);
/* An integer (or a number with no fraction) in [min, max]. */
bool serve_json_as_int(json_object *v, const char *label, int64_t min, int64_t max, int64_t *out,
                       serve_error *e);
bool serve_json_as_string(json_object *v, const char *label, const char **out, size_t *out_len,
                          serve_error *e);

/* The same for a field of `obj` (the key is the label). */
bool serve_json_bool(json_object *obj, const char *key, bool *out, serve_error *e);
bool serve_json_number(json_object *obj, const char *key, double min, double max, double *out,
                       serve_error *e);
bool serve_json_int(json_object *obj, const char *key, int64_t min, int64_t max, int64_t *out,
                    serve_error *e);
bool serve_json_string(json_object *obj, const char *key, const char **out, size_t *out_len,
                       serve_error *e);

#endif
