/* Every conversation of shared/reference/chat_templates.json, rendered with
 * its template from shared/chat_templates/, must equal byte for byte what
 * transformers' own Jinja renderer produced. */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "qiao/template.h"
#include "test_util.h"

/* Prints where two renderings first differ, with some context. */
static void show_diff(const char *name, const char *got, size_t got_len, const char *want,
                      size_t want_len) {
  size_t i = 0;
  while (i < got_len && i < want_len && got[i] == want[i])
    i++;
  size_t from = i > 40 ? i - 40 : 0;
  fprintf(stderr, "%s: first difference at byte %zu (got %zu bytes, want %zu)\n", name, i, got_len,
          want_len);
  fprintf(stderr, "  got:  \"%.*s\"\n", (int)((got_len > i + 40 ? i + 40 : got_len) - from),
          got + from);
  fprintf(stderr, "  want: \"%.*s\"\n", (int)((want_len > i + 40 ? i + 40 : want_len) - from),
          want + from);
}

int main(void) {
  json_object *cases = json_object_from_file(test_shared_path("reference/chat_templates.json"));
  CHECK(cases != NULL && json_object_is_type(cases, json_type_array));
  if (cases == NULL) TEST_END();
  size_t n = json_object_array_length(cases), passed = 0;
  CHECK(n >= 32);
  for (size_t i = 0; i < n; i++) {
    json_object *c = json_object_array_get_idx(cases, i), *v;
    const char *tname = json_object_get_string(json_object_object_get(c, "template"));
    char rel[512];
    snprintf(rel, sizeof(rel), "chat_templates/%s", tname);
    size_t src_len;
    char *src = test_read_file(test_shared_path(rel), &src_len);
    /* the variables as transformers passes them to render() */
    json_object *vars = json_object_new_object();
    json_object_object_add(vars, "messages",
                           json_object_get(json_object_object_get(c, "messages")));
    json_object_object_add(vars, "tools", json_object_get(json_object_object_get(c, "tools")));
    json_object_object_add(vars, "add_generation_prompt",
                           json_object_get(json_object_object_get(c, "add_generation_prompt")));
    json_object_object_foreach(json_object_object_get(c, "variables"), key, val) {
      json_object_object_add(vars, key, json_object_get(val));
    }
    const char *vars_text = json_object_to_json_string_ext(vars, JSON_C_TO_STRING_PLAIN);
    v = json_object_object_get(c, "expected");
    const char *want = json_object_get_string(v);
    size_t want_len = (size_t)json_object_get_string_len(v);
    char name[600];
    snprintf(name, sizeof(name), "%s / %s / agp=%d", tname,
             json_object_get_string(json_object_object_get(c, "conversation")),
             json_object_get_boolean(json_object_object_get(c, "add_generation_prompt")));

    qiao_template *t = NULL;
    char *got = NULL;
    size_t got_len = 0;
    qiao_status *st = qiao_template_compile(src, src_len, &t);
    if (st == NULL)
      st = qiao_template_render(t, vars_text, strlen(vars_text), NULL, &got, &got_len);
    if (st != NULL) {
      fprintf(stderr, "%s: %s\n", name, qiao_status_message(st));
      qiao_status_free(st);
      test_failures++;
    } else if (got_len != want_len || memcmp(got, want, want_len) != 0) {
      show_diff(name, got, got_len, want, want_len);
      test_failures++;
    } else {
      passed++;
    }
    free(got);
    qiao_template_destroy(t);
    json_object_put(vars);
    free(src);
  }
  fprintf(stderr, "%zu of %zu reference renderings match\n", passed, n);
  json_object_put(cases);
  TEST_END();
}
