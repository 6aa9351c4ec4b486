/* qiao/template.h: a sandboxed interpreter for the Jinja subset that chat
 * templates use.
 *
 * The rendering aims to be byte-for-byte what Hugging Face transformers
 * produces with its own Jinja environment (jinja2 sandbox with
 * trim_blocks=True, lstrip_blocks=True, the loopcontrols extension, the
 * `tojson` filter defined as json.dumps(ensure_ascii=False, ...), and the
 * globals `raise_exception(msg)` and `strftime_now(format)`).
 *
 * Sandbox: a template sees only its own source and the variables given to
 * qiao_template_render(); it cannot read files, the environment or anything
 * else, and it cannot modify its input values (lists and dicts are
 * immutable, as in jinja2's ImmutableSandboxedEnvironment). Every render
 * runs under budgets (evaluation steps, output size, memory, nesting
 * depth); exceeding one fails with QIAO_LIMIT and a message naming it.
 *
 * Errors: compile errors are QIAO_MALFORMED with the line number;
 * `raise_exception(msg)` fails the render with QIAO_INVALID_ARGUMENT and a
 * message that ends with msg; other runtime errors (calling an undefined
 * value, adding a string to a number, ...) are QIAO_INVALID_ARGUMENT with the
 * line; unsupported jinja features are QIAO_UNSUPPORTED.
 *
 * Thread-safety: a compiled template is immutable; any number of threads may
 * render it at once. */
#ifndef QIAO_TEMPLATE_H
#define QIAO_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "qiao/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_template qiao_template;

/* Parses the template text src[0..len) (UTF-8, need not be NUL-terminated).
 * On success *out is a new template the caller releases with
 * qiao_template_destroy(). The source is copied; src may be freed after. */
qiao_status *qiao_template_compile(const char *src, size_t len, qiao_template **out);

/* Releases a template. Accepts NULL. */
void qiao_template_destroy(qiao_template *tmpl);

/* Budgets of one render; a zero field means the default. */
typedef struct qiao_template_limits {
  uint64_t max_steps;  /* evaluation steps (default 10,000,000) */
  uint64_t max_output; /* bytes of output (default 16 MiB) */
  uint64_t max_memory; /* bytes allocated for values (default 256 MiB) */
  uint32_t max_depth;  /* nested evaluation depth (default 256, at most 1024;
                        * a render needs about 4 KiB of C stack per level) */
} qiao_template_limits;

/* Renders the template with the variables of the JSON object
 * vars_json[0..len) (e.g. {"messages": [...], "tools": [...],
 * "add_generation_prompt": true, "bos_token": "<s>"}); len 0 means no
 * variables. `limits` may be NULL for the defaults. On success *out is a
 * malloc'd, NUL-terminated string of *out_len bytes (the NUL not counted;
 * the rendering itself may contain NUL bytes) that the caller frees. */
qiao_status *qiao_template_render(const qiao_template *tmpl, const char *vars_json, size_t len,
                                  const qiao_template_limits *limits, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
