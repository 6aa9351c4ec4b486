/* Error paths: malformed templates fail to compile with the line, runtime
 * errors (raise_exception, undefined values, type errors) fail the render
 * with a clear message, and every budget (steps, output, memory, depth)
 * stops runaway templates with QIAO_LIMIT naming it. */
#include <string.h>

#include "qiao/template.h"
#include "test_util.h"

/* Compiles and renders; checks the code and that the message contains `part`. */
static void expect_error(const char *src, const char *vars, const qiao_template_limits *limits,
                         qiao_code code, const char *part) {
  qiao_template *t = NULL;
  char *out = NULL;
  size_t len = 0;
  qiao_status *st = qiao_template_compile(src, strlen(src), &t);
  if (st == NULL) st = qiao_template_render(t, vars, strlen(vars), limits, &out, &len);
  if (qiao_status_code(st) != code || strstr(qiao_status_message(st), part) == NULL) {
    fprintf(stderr, "template: %.200s\n  want %s containing \"%s\"\n  got  %s: %s\n", src,
            qiao_code_name(code), part, qiao_code_name(qiao_status_code(st)),
            qiao_status_message(st));
    test_failures++;
  }
  CHECK(out == NULL);
  qiao_status_free(st);
  qiao_template_destroy(t);
}

static char *repeat(const char *a, int n, const char *mid, const char *b) {
  size_t la = strlen(a), lb = strlen(b), lm = strlen(mid);
  char *s = malloc(la * (size_t)n + lm + lb * (size_t)n + 1), *p = s;
  for (int i = 0; i < n; i++, p += la)
    memcpy(p, a, la);
  memcpy(p, mid, lm);
  p += lm;
  for (int i = 0; i < n; i++, p += lb)
    memcpy(p, b, lb);
  *p = '\0';
  return s;
}

int main(void) {
  /* malformed templates: compile errors with the line */
  expect_error("a\n{% if x %}\nb", "{}", NULL, QIAO_MALFORMED,
               "line 2: unexpected end of template: missing {% endif %}");
  expect_error("{% for x in y %}", "{}", NULL, QIAO_MALFORMED, "missing {% endfor %}");
  expect_error("a\nb\n{{ x ", "{}", NULL, QIAO_MALFORMED, "line 3: unclosed '{{' tag");
  expect_error("{% if x", "{}", NULL, QIAO_MALFORMED, "unclosed '{%' tag");
  expect_error("\n{# never closed", "{}", NULL, QIAO_MALFORMED, "line 2: unclosed comment");
  expect_error("{% raw %}x", "{}", NULL, QIAO_MALFORMED, "unclosed {% raw %}");
  expect_error("{{ 'abc }}", "{}", NULL, QIAO_MALFORMED, "unterminated string");
  expect_error("{% endif %}", "{}", NULL, QIAO_MALFORMED, "unknown tag 'endif'");
  expect_error("{{ 1 + }}", "{}", NULL, QIAO_MALFORMED, "unexpected '}}'");
  expect_error("\n\n{{ a @ b }}", "{}", NULL, QIAO_MALFORMED, "line 3: unexpected character '@'");
  expect_error("{{ x|no_such_filter }}", "{}", NULL, QIAO_MALFORMED,
               "no filter named 'no_such_filter'");
  expect_error("{{ x is no_such_test }}", "{}", NULL, QIAO_MALFORMED, "no test named");
  expect_error("{% include 'x.jinja' %}", "{}", NULL, QIAO_UNSUPPORTED, "'include' tag");
  expect_error("{{ 99999999999999999999 }}", "{}", NULL, QIAO_MALFORMED, "64 bits");

  /* runtime errors */
  expect_error("{{ raise_exception('Conversation roles must alternate!') }}", "{}", NULL,
               QIAO_INVALID_ARGUMENT, "raise_exception: Conversation roles must alternate!");
  expect_error("ok\n{% if messages|length == 0 %}{{ raise_exception('no messages') }}{% endif %}",
               "{\"messages\": []}", NULL, QIAO_INVALID_ARGUMENT,
               "line 2: raise_exception: no messages");
  expect_error("{{ foo.bar }}", "{}", NULL, QIAO_INVALID_ARGUMENT, "'foo' is undefined");
  expect_error("{{ foo() }}", "{}", NULL, QIAO_INVALID_ARGUMENT, "'foo' is undefined");
  expect_error("{{ 'a' + 1 }}", "{}", NULL, QIAO_INVALID_ARGUMENT, "unsupported operand");
  expect_error("{{ 1 // 0 }}", "{}", NULL, QIAO_INVALID_ARGUMENT, "by zero");
  expect_error("{{ messages.append(1) }}", "{\"messages\": []}", NULL, QIAO_INVALID_ARGUMENT,
               "access to attribute 'append' of 'list' object is unsafe");
  expect_error("{% for a, b in [[1]] %}{% endfor %}", "{}", NULL, QIAO_INVALID_ARGUMENT, "unpack");
  expect_error("{% set x.y = 1 %}", "{}", NULL, QIAO_INVALID_ARGUMENT, "non-namespace");
  expect_error("{{ x|tojson }}", "{}", NULL, QIAO_INVALID_ARGUMENT, "not JSON serializable");
  expect_error("{{ range(1000000)|length }}", "{}", NULL, QIAO_LIMIT, "MAX_RANGE");

  /* bad variables */
  expect_error("x", "[1, 2]", NULL, QIAO_MALFORMED, "must be an object");
  expect_error("x", "{\"a\": ", NULL, QIAO_MALFORMED, "bad JSON");
  expect_error("x", "{} {}", NULL, QIAO_MALFORMED, "trailing data");

  /* budgets */
  qiao_template_limits small = {.max_steps = 100000};
  expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
               "{}", &small, QIAO_LIMIT, "step budget exceeded");
  expect_error(
      "{% set r = range(100000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", "{}",
      NULL, QIAO_LIMIT, "step budget exceeded (more than 10000000");
  qiao_template_limits out_cap = {.max_output = 1000};
  expect_error("{% for i in range(1000) %}{{ 'xx' }}{% endfor %}", "{}", &out_cap, QIAO_LIMIT,
               "output budget exceeded");
  expect_error("{{ 'x' * 100000000 }}", "{}", NULL, QIAO_LIMIT, "output budget");
  qiao_template_limits mem_cap = {.max_memory = 1 << 20};
  expect_error(
      "{% set ns = namespace(l=[]) %}{% for i in range(50000) %}{% set ns.l = ns.l + [i] %}"
      "{% endfor %}",
      "{}", &mem_cap, QIAO_LIMIT, "memory budget exceeded");
  expect_error("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
               "{% endfor %}",
               "{}", NULL, QIAO_LIMIT, "budget exceeded");
  expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "{}", NULL, QIAO_LIMIT,
               "depth budget exceeded");
  /* deep nesting: parse depth */
  char *deep = repeat("(", 5000, "1", ")");
  char *src = malloc(strlen(deep) + 8);
  sprintf(src, "{{ %s }}", deep);
  expect_error(src, "{}", NULL, QIAO_LIMIT, "nesting depth budget exceeded");
  free(src);
  free(deep);
  deep = repeat("{% if 1 %}", 1000, "x", "{% endif %}");
  expect_error(deep, "{}", NULL, QIAO_LIMIT, "nesting depth budget exceeded");
  free(deep);
  deep = repeat("[", 1000, "", "]");
  src = malloc(strlen(deep) + 8);
  sprintf(src, "{{ %s }}", deep);
  expect_error(src, "{}", NULL, QIAO_LIMIT, "nesting depth budget exceeded");
  free(src);
  free(deep);
  /* long left-deep chains parse in loops; their evaluation depth is budgeted */
  deep = repeat("", 0, "{{ 1", "");
  {
    size_t n = 20000;
    char *chain = malloc(n * 4 + 16), *p = chain;
    p += sprintf(p, "{{ 1");
    for (size_t i = 0; i < n; i++)
      p += sprintf(p, " + 1");
    sprintf(p, " }}");
    expect_error(chain, "{}", NULL, QIAO_LIMIT, "depth budget exceeded");
    free(chain);
  }
  free(deep);
  /* deep JSON variables are refused, not recursed into */
  {
    char *j = repeat("[", 200, "", "]"), *vars = malloc(strlen(j) + 16);
    sprintf(vars, "{\"a\": %s}", j);
    expect_error("{{ a }}", vars, NULL, QIAO_MALFORMED, "bad JSON");
    free(vars);
    free(j);
  }

  /* argument checks */
  qiao_template *t = NULL;
  CHECK_ERR(qiao_template_compile(NULL, 3, &t), QIAO_INVALID_ARGUMENT);
  CHECK(t == NULL);
  TEST_END();
}
