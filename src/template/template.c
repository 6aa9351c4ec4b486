/* The public API: compile a template once (normalize, lex, parse), render
 * it any number of times, each render in its own arena under budgets. */
#include <json-c/json.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "template_internal.h"

enum {
  MAX_SOURCE = 16 * 1024 * 1024,
  MAX_JSON_DEPTH = 64,
  MAX_DEPTH = 1024,
};

struct qiao_template {
  tpl_arena arena; /* the normalized source, tokens and AST */
  tpl_node *root;
};

void tpl_exec_root(tpl_ctx *ctx, const tpl_node *root);

/* jinja2 treats \r\n, \r and \n as line breaks, writes them all as \n and
 * drops one trailing line break (keep_trailing_newline=False). */
static size_t normalize(const char *src, size_t len, char *out) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (src[i] == '\r') {
      if (i + 1 < len && src[i + 1] == '\n') i++;
      out[n++] = '\n';
    } else {
      out[n++] = src[i];
    }
  }
  if (n > 0 && out[n - 1] == '\n') n--;
  out[n] = '\0';
  return n;
}

qiao_status *qiao_template_compile(const char *src, size_t len, qiao_template **out) {
  if (src == NULL && len != 0)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_template_compile: src is NULL");
  if (out == NULL) return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_template_compile: out is NULL");
  if (len > MAX_SOURCE)
    return qiao__error(QIAO_LIMIT, "template: source of %zu bytes is over the %d byte budget", len,
                       MAX_SOURCE);
  qiao_template *t = calloc(1, sizeof(*t));
  if (t == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "template: out of memory");
  jmp_buf oom;
  int oom_code = 0;
  t->arena.oom = &oom;
  t->arena.oom_code = &oom_code;
  if (setjmp(oom)) {
    tpl_arena_free(&t->arena);
    free(t);
    return qiao__error(QIAO_OUT_OF_MEMORY, "template: out of memory while compiling");
  }
  char *norm = tpl_alloc(&t->arena, len + 1);
  size_t n = normalize(src ? src : "", len, norm);
  tpl_tokens toks = {0};
  qiao_status *st = tpl_lex(&t->arena, norm, n, &toks);
  if (st == NULL) st = tpl_parse(&t->arena, &toks, &t->root);
  if (st != NULL) {
    tpl_arena_free(&t->arena);
    free(t);
    return st;
  }
  t->arena.oom = NULL;
  t->arena.oom_code = NULL;
  *out = t;
  return NULL;
}

void qiao_template_destroy(qiao_template *t) {
  if (t == NULL) return;
  tpl_arena_free(&t->arena);
  free(t);
}

static qiao_status *parse_vars(const char *json, size_t len, json_object **out) {
  *out = NULL;
  if (len == 0) return NULL;
  if (len > (size_t)INT32_MAX)
    return qiao__error(QIAO_LIMIT, "template variables: JSON of %zu bytes is too large", len);
  json_tokener *tok = json_tokener_new_ex(MAX_JSON_DEPTH);
  if (tok == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "template variables: out of memory");
  json_object *obj = json_tokener_parse_ex(tok, json, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t consumed = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  if (jerr != json_tokener_success) {
    json_object_put(obj);
    return qiao__error(QIAO_MALFORMED, "template variables: bad JSON at byte %zu: %s", consumed,
                       json_tokener_error_desc(jerr));
  }
  for (size_t i = consumed; i < len; i++) {
    char c = json[i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
      json_object_put(obj);
      return qiao__error(QIAO_MALFORMED, "template variables: trailing data at byte %zu", i);
    }
  }
  if (!json_object_is_type(obj, json_type_object)) {
    json_object_put(obj);
    return qiao__error(QIAO_MALFORMED, "template variables: the JSON must be an object");
  }
  *out = obj;
  return NULL;
}

qiao_status *qiao_template_render(const qiao_template *tmpl, const char *vars_json, size_t len,
                                  const qiao_template_limits *limits, char **out, size_t *out_len) {
  if (tmpl == NULL || out == NULL || out_len == NULL || (vars_json == NULL && len != 0))
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_template_render: NULL argument");
  json_object *vars;
  QIAO__TRY(parse_vars(vars_json, len, &vars));
  tpl_ctx *ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL) {
    json_object_put(vars);
    return qiao__error(QIAO_OUT_OF_MEMORY, "template: out of memory");
  }
  ctx->max_steps = limits && limits->max_steps ? limits->max_steps : 10000000;
  ctx->max_output = limits && limits->max_output ? limits->max_output : 16u << 20;
  ctx->max_depth = limits && limits->max_depth ? limits->max_depth : 256;
  if (ctx->max_depth > MAX_DEPTH) ctx->max_depth = MAX_DEPTH; /* the C stack is the real bound */
  ctx->arena.limit = limits && limits->max_memory ? limits->max_memory : 256u << 20;
  ctx->arena.oom = &ctx->fail;
  ctx->arena.oom_code = &ctx->oom_code;
  ctx->line = 1;
  tpl_buf *result = NULL;
  qiao_status *st = NULL;
  if (setjmp(ctx->fail) == 0) {
    ctx->globals = tpl_alloc(&ctx->arena, sizeof(tpl_frame));
    if (vars) {
      tpl_value all = tpl_from_json(ctx, vars);
      ctx->globals->vars = *all.u.dict;
    }
    result = tpl_alloc(&ctx->arena, sizeof(tpl_buf));
    ctx->out = result;
    tpl_exec_root(ctx, tmpl->root);
    char *s = malloc(result->len + 1);
    if (s == NULL) {
      st = qiao__error(QIAO_OUT_OF_MEMORY, "template: out of memory for the output");
    } else {
      if (result->len) memcpy(s, result->data, result->len);
      s[result->len] = '\0';
      *out = s;
      *out_len = result->len;
    }
  } else if (ctx->error) {
    st = ctx->error;
  } else if (ctx->oom_code == 1) {
    st = qiao__error(QIAO_LIMIT, "template line %d: memory budget exceeded (more than %llu bytes)",
                     ctx->line, (unsigned long long)ctx->arena.limit);
  } else {
    st = qiao__error(QIAO_OUT_OF_MEMORY, "template line %d: out of memory", ctx->line);
  }
  tpl_arena_free(&ctx->arena);
  free(ctx);
  json_object_put(vars);
  return st;
}
