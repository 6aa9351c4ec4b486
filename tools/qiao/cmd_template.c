/* qiao template: renders a chat template with a conversation and prints
 * exactly the rendering (no newline added). The template comes from a file
 * (-t) or from a model's tokenizer.chat_template metadata (-m), which also
 * supplies bos_token / eos_token from its vocabulary. */
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "qiao/model.h"
#include "qiao/template.h"

static const char usage_text[] =
    "usage: qiao template (-t TEMPLATE.jinja | -m MODEL) --messages MSGS.json\n"
    "                     [--tools TOOLS.json] [--add-generation-prompt] [--var NAME=VALUE ...]\n"
    "  -t FILE                  a Jinja chat template file\n"
    "  -m MODEL                 a model whose tokenizer.chat_template is used (with\n"
    "                           --tokenizer tok.bin for a llama2.c .bin)\n"
    "Renders the chat template and prints the result exactly (no newline added).\n"
    "  --messages FILE          an OpenAI-style JSON list of messages\n"
    "  --tools FILE             a JSON list of tool schemas\n"
    "  --add-generation-prompt  end with the assistant header\n"
    "  --var NAME=VALUE         a template variable: VALUE as JSON if it parses, else a string\n";

enum { MAX_INPUT = 64 * 1024 * 1024, MAX_VARS = 256 };

static qiao_status *read_file(const char *path, char **out, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return qiao__error(QIAO_IO, "cannot open %s", path);
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  while (buf != NULL) {
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0) break;
    if (len + 1 == cap) {
      if (cap >= MAX_INPUT) {
        free(buf);
        fclose(f);
        return qiao__error(QIAO_LIMIT, "%s: larger than %d bytes", path, MAX_INPUT);
      }
      char *p = realloc(buf, cap * 2);
      if (p == NULL) free(buf);
      buf = p;
      cap *= 2;
    }
  }
  bool failed = ferror(f);
  fclose(f);
  if (buf == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "reading %s", path);
  if (failed) {
    free(buf);
    return qiao__error(QIAO_IO, "error reading %s", path);
  }
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return NULL;
}

/* Parses JSON text; NULL (and no error) for invalid JSON when `lenient`. */
static qiao_status *parse_json(const char *what, const char *text, size_t len, bool lenient,
                               json_object **out) {
  json_tokener *tok = json_tokener_new_ex(64);
  if (tok == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "parsing %s", what);
  json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
  enum json_tokener_error err = json_tokener_get_error(tok);
  size_t end = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  bool ok = err == json_tokener_success;
  for (size_t i = end; ok && i < len; i++)
    if (text[i] != ' ' && text[i] != '\n' && text[i] != '\t' && text[i] != '\r') ok = false;
  if (!ok) {
    json_object_put(obj);
    *out = NULL;
    if (lenient) return NULL;
    return qiao__error(QIAO_MALFORMED, "%s: bad JSON near byte %zu: %s", what, end,
                       json_tokener_error_desc(err));
  }
  *out = obj;
  return NULL;
}

static qiao_status *read_json_file(const char *path, json_type want, json_object **out) {
  char *text;
  size_t len;
  QIAO__TRY(read_file(path, &text, &len));
  qiao_status *st = parse_json(path, text, len, false, out);
  free(text);
  QIAO__TRY(st);
  if (!json_object_is_type(*out, want)) {
    json_object_put(*out);
    *out = NULL;
    return qiao__error(QIAO_MALFORMED, "%s: expected a JSON %s", path,
                       want == json_type_array ? "list" : "object");
  }
  return NULL;
}

/* The text of token `id` from tokenizer.tokens, as a JSON string. */
static json_object *token_text(const qiao_model *m, uint64_t id) {
  const qiao_kv *kv = qiao_model_kv_find(m, "tokenizer.tokens");
  if (kv == NULL || kv->type != QIAO_VALUE_ARRAY || kv->elem_type != QIAO_VALUE_STRING ||
      id >= kv->array_len)
    return NULL;
  const qiao_string *s = &((const qiao_string *)kv->v.array)[id];
  return json_object_new_string_len(s->data, (int)s->len);
}

static bool first_eos_id(const qiao_model *m, uint64_t *id) {
  const qiao_kv *kv = qiao_model_kv_find(m, "tokenizer.eos_ids");
  if (kv == NULL || kv->type != QIAO_VALUE_ARRAY || kv->array_len == 0) return false;
  switch (kv->elem_type) {
  case QIAO_VALUE_U32: *id = ((const uint32_t *)kv->v.array)[0]; return true;
  case QIAO_VALUE_I32: *id = (uint64_t)((const int32_t *)kv->v.array)[0]; return true;
  case QIAO_VALUE_U64: *id = ((const uint64_t *)kv->v.array)[0]; return true;
  case QIAO_VALUE_I64: *id = (uint64_t)((const int64_t *)kv->v.array)[0]; return true;
  default: return false;
  }
}

/* Reads the chat template and special tokens of a model into vars. */
static qiao_status *from_model(const qiao_cli_model_args *model, char **tmpl, size_t *tmpl_len,
                               json_object *vars) {
  qiao_model *m = NULL;
  QIAO__TRY(qiao_cli_open_model(model, false, &m));
  qiao_string s;
  qiao_status *st = qiao_model_get_string(m, "tokenizer.chat_template", &s);
  if (st != NULL) {
    qiao_model_close(m);
    return qiao__annotate(st, "model %s has no chat template", model->path);
  }
  *tmpl = malloc(s.len + 1);
  if (*tmpl == NULL) {
    qiao_model_close(m);
    return qiao__error(QIAO_OUT_OF_MEMORY, "copying the chat template");
  }
  memcpy(*tmpl, s.data, s.len);
  (*tmpl)[s.len] = '\0';
  *tmpl_len = s.len;
  uint32_t bos;
  qiao_status *bs = qiao_model_get_u32(m, "tokenizer.bos_id", &bos);
  json_object *t;
  if (bs == NULL && (t = token_text(m, bos)) != NULL) json_object_object_add(vars, "bos_token", t);
  qiao_status_free(bs);
  uint64_t eos;
  if (first_eos_id(m, &eos) && (t = token_text(m, eos)) != NULL)
    json_object_object_add(vars, "eos_token", t);
  qiao_model_close(m);
  return NULL;
}

static int render(const char *tmpl_path, const qiao_cli_model_args *model,
                  const char *messages_path, const char *tools_path, bool add_gen, char **var_specs,
                  int n_vars) {
  json_object *vars = json_object_new_object();
  char *src = NULL, *out = NULL;
  size_t src_len = 0, out_len = 0;
  qiao_template *t = NULL;
  qiao_status *st = NULL;
  json_object *msgs = NULL, *tools = NULL;
  if (vars == NULL) return qiao_cli_fail(qiao__error(QIAO_OUT_OF_MEMORY, "template variables"));
  if (tmpl_path)
    st = read_file(tmpl_path, &src, &src_len);
  else
    st = from_model(model, &src, &src_len, vars);
  if (st == NULL) st = read_json_file(messages_path, json_type_array, &msgs);
  if (st == NULL && tools_path) st = read_json_file(tools_path, json_type_array, &tools);
  if (st == NULL) {
    /* what transformers passes to render(), then the --var overrides */
    json_object_object_add(vars, "messages", msgs);
    json_object_object_add(vars, "tools", tools);
    json_object_object_add(vars, "add_generation_prompt", json_object_new_boolean(add_gen));
    for (int i = 0; i < n_vars && st == NULL; i++) {
      char *eq = strchr(var_specs[i], '=');
      json_object *value = NULL;
      *eq = '\0';
      st = parse_json("--var", eq + 1, strlen(eq + 1), true, &value);
      if (st == NULL && value == NULL) value = json_object_new_string(eq + 1);
      json_object_object_add(vars, var_specs[i], value);
      *eq = '=';
    }
  } else {
    json_object_put(msgs);
    json_object_put(tools);
  }
  if (st == NULL) st = qiao_template_compile(src, src_len, &t);
  if (st == NULL) {
    size_t vl;
    const char *vt = json_object_to_json_string_length(vars, JSON_C_TO_STRING_PLAIN, &vl);
    st = qiao_template_render(t, vt, vl, NULL, &out, &out_len);
  }
  qiao_template_destroy(t);
  json_object_put(vars);
  free(src);
  if (st != NULL) return qiao_cli_fail(st);
  bool ok = fwrite(out, 1, out_len, stdout) == out_len && fflush(stdout) == 0;
  free(out);
  if (!ok) return qiao_cli_fail(qiao__error(QIAO_IO, "writing the rendering to stdout"));
  return 0;
}

int qiao_cmd_template(int argc, char **argv) {
  qiao_cli_model_args model = {0};
  const char *tmpl_path = NULL, *messages_path = NULL, *tools_path = NULL;
  bool add_gen = false;
  char *vars[MAX_VARS];
  int n_vars = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = qiao_cli_parse_model_arg(&model, false, argc, argv, &i);
    if (r == 2) return 2;
    if (r == 1) continue;
    if (qiao_cli_is_help(a)) {
      fputs(usage_text, stdout);
      return 0;
    } else if (strcmp(a, "-t") == 0 || strcmp(a, "--template") == 0) {
      if ((tmpl_path = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "--messages") == 0) {
      if ((messages_path = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "--tools") == 0) {
      if ((tools_path = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "--add-generation-prompt") == 0) {
      add_gen = true;
    } else if (strcmp(a, "--var") == 0) {
      char *spec = (char *)qiao_cli_flag_value(argc, argv, &i);
      if (spec == NULL) return 2;
      if (strchr(spec, '=') == NULL || spec[0] == '=')
        return qiao_cli_usage_error("--var: expected NAME=VALUE, got '%s'", spec);
      if (n_vars == MAX_VARS) return qiao_cli_usage_error("--var: at most %d variables", MAX_VARS);
      vars[n_vars++] = spec;
    } else {
      return qiao_cli_unknown_arg("template", a);
    }
  }
  if ((tmpl_path == NULL) == (model.path == NULL)) {
    fputs(usage_text, stderr);
    return qiao_cli_usage_error("give exactly one of -t TEMPLATE and -m MODEL");
  }
  if (messages_path == NULL) {
    fputs(usage_text, stderr);
    return qiao_cli_usage_error("--messages is required");
  }
  return render(tmpl_path, &model, messages_path, tools_path, add_gen, vars, n_vars);
}
