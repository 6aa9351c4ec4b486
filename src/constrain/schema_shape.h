/* Internal: proving that the branches of a JSON Schema "oneOf" cannot both
 * match one instance, so that oneOf may be compiled as anyOf without
 * accepting what JSON Schema rejects (an instance valid against two
 * branches). The proof is conservative: "disjoint" is answered only when
 * certain (different types, distinct const/enum values, a property
 * required by both whose schemas are disjoint, a required property the
 * other branch forbids); anything else is "may overlap". */
#ifndef QIAO_CONSTRAIN_SCHEMA_SHAPE_H
#define QIAO_CONSTRAIN_SCHEMA_SHAPE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* The most branches of a oneOf checked pair by pair. */
#define QIAO__ONE_OF_MAX_BRANCHES 256u

/* The node a "$ref" inside `root` points to ("#", "#/a/b/0", with ~0 and
 * ~1 escapes), or NULL when it is not such a pointer or points to nothing. */
json_object *qiao__schema_pointer(json_object *root, const char *ref);

/* True when no two schemas of the array `branches` can match the same
 * instance. Otherwise false, with *bi < *bj a pair that may both match.
 * $refs are resolved inside `root`. Bounded work: a proof that would take
 * too long is "may overlap". */
bool qiao__one_of_disjoint(json_object *root, json_object *branches, size_t *bi, size_t *bj);

#endif
