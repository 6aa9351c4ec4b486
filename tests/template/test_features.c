/* Jinja features one by one: each case of feature_cases.h must render
 * exactly as jinja2 (configured as transformers configures it) rendered it.
 * Plus what plain jinja2 lacks but transformers adds ({% generation %}). */
#include <string.h>

#include "feature_cases.h"
#include "qiao/template.h"
#include "test_util.h"

static void show(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n')
      fputs("\\n", stderr);
    else if (c < 0x20)
      fprintf(stderr, "\\x%02x", c);
    else
      fputc(c, stderr);
  }
}

static void check_render(const char *src, const char *vars, const char *want) {
  qiao_template *t = NULL;
  char *got = NULL;
  size_t got_len = 0;
  qiao_status *st = qiao_template_compile(src, strlen(src), &t);
  if (st == NULL) st = qiao_template_render(t, vars, strlen(vars), NULL, &got, &got_len);
  if (st != NULL) {
    fprintf(stderr, "template: %s\n  error: %s\n", src, qiao_status_message(st));
    qiao_status_free(st);
    test_failures++;
  } else if (got_len != strlen(want) || memcmp(got, want, got_len) != 0) {
    size_t i = 0;
    while (i < got_len && want[i] && got[i] == want[i])
      i++;
    fprintf(stderr, "template: %s\n  first difference at byte %zu\n  got:  ", src, i);
    show(got, got_len);
    fputs("\n  want: ", stderr);
    show(want, strlen(want));
    fputc('\n', stderr);
    test_failures++;
  }
  free(got);
  qiao_template_destroy(t);
}

int main(void) {
  size_t n = sizeof(feature_cases) / sizeof(feature_cases[0]);
  for (size_t i = 0; i < n; i++)
    check_render(feature_cases[i].src, feature_cases[i].vars, feature_cases[i].want);
  fprintf(stderr, "%zu feature cases checked\n", n);

  /* transformers' {% generation %} marks assistant text and renders it as is */
  check_render("a{% generation %}b{{ 1 }}{% endgeneration %}\nc", "{}", "ab1c");
  /* an empty string or list repeated a huge number of times is empty (found by fuzzing: it
   * used to loop that many times) */
  check_render("[{{ 'y' * 0 * 52 ** 8 }}{{ [] * 9000000000000 }}{{ '' * 9000000000000 }}]", "{}",
               "[[]]");
  /* no variables at all */
  check_render("x{{ y }}z", "", "xz");
  /* a NUL byte in a value passes through */
  {
    qiao_template *t = NULL;
    char *got = NULL;
    size_t len = 0;
    CHECK_OK(qiao_template_compile("[{{ s }}]", 9, &t));
    const char *vars = "{\"s\": \"a\\u0000b\"}";
    CHECK_OK(qiao_template_render(t, vars, strlen(vars), NULL, &got, &len));
    CHECK(len == 5 && got && memcmp(got, "[a\0b]", 5) == 0);
    free(got);
    qiao_template_destroy(t);
  }
  /* one compiled template, rendered twice with different variables */
  {
    qiao_template *t = NULL;
    char *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;
    CHECK_OK(qiao_template_compile("{{ x * 2 }}", 11, &t));
    CHECK_OK(qiao_template_render(t, "{\"x\": 2}", 8, NULL, &a, &al));
    CHECK_OK(qiao_template_render(t, "{\"x\": \"ab\"}", 11, NULL, &b, &bl));
    CHECK(a && strcmp(a, "4") == 0 && al == 1);
    CHECK(b && strcmp(b, "abab") == 0 && bl == 4);
    free(a);
    free(b);
    qiao_template_destroy(t);
  }
  qiao_template_destroy(NULL);
  TEST_END();
}
