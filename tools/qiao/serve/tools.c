/* Function calling: request fields, forced-call grammars, and parsing the
 * tool-call text of each model family. */
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_cache.h"
#include "json_in.h"
#include "text.h"

void serve_tools_free(serve_tools *t) {
  for (size_t i = 0; i < t->n; i++) {
    free(t->tools[i].name);
    free(t->tools[i].parameters);
  }
  free(t->tools);
  json_object_put(t->json);
  memset(t, 0, sizeof(*t));
}

static bool valid_name(const char *s, size_t len) {
  if (len == 0 || len > 64) return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-'))
      return false;
  }
  return true;
}

static serve_tool_family family_of(const qiao_tokenizer *tok) {
  if (tok != NULL) {
    if (qiao_tokenizer_find_token(tok, SERVE_DS_CALLS_BEGIN, strlen(SERVE_DS_CALLS_BEGIN)) >= 0)
      return SERVE_TOOLS_DEEPSEEK;
    if (qiao_tokenizer_find_token(tok, "<tool_call>", 11) >= 0) return SERVE_TOOLS_HERMES;
    /* Llama 3.1 / 3.2 have <|python_tag|>; every Llama 3 has <|eot_id|>. */
    if (qiao_tokenizer_find_token(tok, "<|python_tag|>", 14) >= 0 ||
        qiao_tokenizer_find_token(tok, "<|eot_id|>", 10) >= 0)
      return SERVE_TOOLS_LLAMA3;
  }
  return SERVE_TOOLS_HERMES; /* the tags work as plain text too */
}

bool serve_tools_parse(json_object *body, const qiao_tokenizer *tok, serve_tools *t,
                       serve_error *e) {
  memset(t, 0, sizeof(*t));
  t->parallel = true;
  t->family = family_of(tok);
  if (!serve_json_bool(body, "parallel_tool_calls", &t->parallel, e)) return false;
  json_object *tools = serve_json_get(body, "tools");
  json_object *choice = serve_json_get(body, "tool_choice");
  size_t n = 0;
  if (tools != NULL) {
    if (!json_object_is_type(tools, json_type_array))
      return serve_bad_request(e, "tools", "tools must be an array of functions");
    n = json_object_array_length(tools);
    if (n > SERVE_MAX_TOOLS)
      return serve_bad_request(e, "tools", "tools holds %zu functions; at most %d", n,
                               SERVE_MAX_TOOLS);
  }
  if (n > 0 && (t->tools = calloc(n, sizeof(*t->tools))) == NULL)
    return serve_fail(e, 500, NULL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_object *tool = json_object_array_get_idx(tools, i);
    json_object *type = serve_json_get(tool, "type"), *fn = serve_json_get(tool, "function");
    if (!json_object_is_type(tool, json_type_object) || type == NULL ||
        !json_object_is_type(type, json_type_string) ||
        strcmp(json_object_get_string(type), "function") != 0 ||
        !json_object_is_type(fn, json_type_object))
      return serve_bad_request(e, "tools",
                               "tools[%zu] must be {\"type\": \"function\", "
                               "\"function\": {...}}",
                               i);
    json_object *name = serve_json_get(fn, "name"), *params = serve_json_get(fn, "parameters");
    if (name == NULL || !json_object_is_type(name, json_type_string) ||
        !valid_name(json_object_get_string(name), (size_t)json_object_get_string_len(name)))
      return serve_bad_request(e, "tools",
                               "tools[%zu].function.name must be 1 to 64 of "
                               "a-z, A-Z, 0-9, _ and -",
                               i);
    for (size_t k = 0; k < t->n; k++)
      if (strcmp(t->tools[k].name, json_object_get_string(name)) == 0)
        return serve_bad_request(e, "tools", "tools[%zu]: function '%s' is defined twice", i,
                                 t->tools[k].name);
    if (params != NULL && !json_object_is_type(params, json_type_object))
      return serve_bad_request(e, "tools", "tools[%zu].function.parameters must be an object", i);
    const char *ptext = params ? json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN)
                               : "{\"type\":\"object\"}";
    t->tools[t->n].name = strdup(json_object_get_string(name));
    t->tools[t->n].parameters = strdup(ptext ? ptext : "{}");
    t->n++;
    if (t->tools[t->n - 1].name == NULL || t->tools[t->n - 1].parameters == NULL)
      return serve_fail(e, 500, NULL, "out of memory");
  }
  if (t->n > 0) t->json = json_object_get(tools);
  t->choice = t->n > 0 ? SERVE_TOOL_CHOICE_AUTO : SERVE_TOOL_CHOICE_NONE;
  if (choice == NULL) return true;
  if (json_object_is_type(choice, json_type_string)) {
    const char *c = json_object_get_string(choice);
    if (strcmp(c, "none") == 0) {
      t->choice = SERVE_TOOL_CHOICE_NONE;
    } else if (strcmp(c, "auto") == 0) {
      /* the default with tools; without, nothing to call */
    } else if (strcmp(c, "required") == 0) {
      if (t->n == 0)
        return serve_bad_request(e, "tool_choice", "tool_choice \"required\" needs tools");
      t->choice = SERVE_TOOL_CHOICE_REQUIRED;
    } else {
      return serve_bad_request(e, "tool_choice",
                               "tool_choice must be none, auto, required or a named function");
    }
    return true;
  }
  json_object *fn = serve_json_get(choice, "function");
  json_object *name = serve_json_get(fn, "name");
  if (!json_object_is_type(choice, json_type_object) || name == NULL ||
      !json_object_is_type(name, json_type_string))
    return serve_bad_request(e, "tool_choice",
                             "tool_choice must be none, auto, required or "
                             "{\"type\": \"function\", \"function\": {\"name\": ...}}");
  for (size_t k = 0; k < t->n; k++)
    if (strcmp(t->tools[k].name, json_object_get_string(name)) == 0) {
      t->choice = SERVE_TOOL_CHOICE_NAMED;
      t->named = k;
      return true;
    }
  return serve_bad_request(e, "tool_choice", "tool_choice names '%.64s', which is not in tools",
                           json_object_get_string(name));
}

/* ---- Forced calls --------------------------------------------------------------- */

static bool append(serve_buf *b, const char *s) {
  return serve_buf_append(b, s, strlen(s));
}

bool serve_tools_grammar(const serve_tools *t, qiao_grammar **out, serve_error *e) {
  return serve_tools_grammar_after(t, NULL, out, e);
}

bool serve_tools_grammar_after(const serve_tools *t, const char *before, qiao_grammar **out,
                               serve_error *e) {
  size_t first = t->choice == SERVE_TOOL_CHOICE_NAMED ? t->named : 0;
  size_t last = t->choice == SERVE_TOOL_CHOICE_NAMED ? t->named + 1 : t->n;
  serve_buf g = {0};
  qiao_grammar_schema_rule *rules = calloc(t->n ? t->n : 1, sizeof(*rules));
  char(*names)[32] = calloc(t->n ? t->n : 1, sizeof(*names));
  bool ok = rules != NULL && names != NULL;
  /* One rule per function: its fixed markup around args<k>. */
  ok = ok && append(&g, "call ::= ");
  for (size_t k = first; k < last && ok; k++) {
    snprintf(names[k - first], sizeof(names[0]), "args%zu", k);
    rules[k - first] = (qiao_grammar_schema_rule){names[k - first], t->tools[k].parameters,
                                                  strlen(t->tools[k].parameters)};
    char head[256];
    switch (t->family) {
    case SERVE_TOOLS_LLAMA3:
      snprintf(head, sizeof(head), "\"{\\\"name\\\": \\\"%s\\\", \\\"parameters\\\": \" %s \"}\"",
               t->tools[k].name, names[k - first]);
      break;
    case SERVE_TOOLS_DEEPSEEK:
      snprintf(head, sizeof(head),
               "\"" SERVE_DS_CALL_BEGIN "function" SERVE_DS_SEP
               "%s\\n```json\\n\" %s \"\\n```" SERVE_DS_CALL_END "\"",
               t->tools[k].name, names[k - first]);
      break;
    default:
      snprintf(head, sizeof(head),
               "\"<tool_call>\\n{\\\"name\\\": \\\"%s\\\", \\\"arguments\\\": \" %s "
               "\"}\\n</tool_call>\"",
               t->tools[k].name, names[k - first]);
    }
    ok = append(&g, k > first ? " | " : "") && append(&g, head);
  }
  ok = ok && append(&g, "\n");
  /* Several calls when allowed (Llama 3.1's template takes one). */
  bool many = t->parallel && t->family != SERVE_TOOLS_LLAMA3;
  /* With a part before, the calls' rule is `calls` and root puts it after. */
  if (before != NULL)
    ok = ok && append(&g, before) && append(&g, "root ::= thought calls\n") && append(&g, "calls");
  else
    ok = ok && append(&g, "root");
  if (t->family == SERVE_TOOLS_DEEPSEEK)
    ok = ok &&
         append(&g, many ? " ::= \"" SERVE_DS_CALLS_BEGIN
                           "\" call (\"\\n\"? call)* \"" SERVE_DS_CALLS_END "\"\n"
                         : " ::= \"" SERVE_DS_CALLS_BEGIN "\" call \"" SERVE_DS_CALLS_END "\"\n");
  else
    ok = ok && append(&g, many ? " ::= call (\"\\n\" call)*\n" : " ::= call\n");
  if (!ok) {
    free(rules);
    free(names);
    serve_buf_free(&g);
    return serve_fail(e, 500, NULL, "out of memory");
  }
  qiao_status *st = serve_grammar_gbnf(g.data, g.len, rules, last - first, out);
  free(rules);
  free(names);
  serve_buf_free(&g);
  if (st == NULL) return true;
  serve_bad_request(e, "tools", "tools: a function's parameters cannot be enforced: %s",
                    qiao_status_message(st));
  qiao_status_free(st);
  return false;
}

/* ---- Parsing calls ------------------------------------------------------------------ */

void serve_tool_calls_free(serve_tool_call *calls, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(calls[i].name);
    free(calls[i].arguments);
  }
  free(calls);
}

static const char *find(const char *s, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(s + i, needle, n) == 0) return s + i;
  return NULL;
}

/* Parses exactly one JSON value from [s, s+len) (spaces around allowed). */
static json_object *parse_json(const char *s, size_t len) {
  while (len > 0 && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r'))
    s++, len--;
  while (len > 0 &&
         (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\t' || s[len - 1] == '\r'))
    len--;
  if (len == 0 || len > (1u << 24)) return NULL;
  json_tokener *tok = json_tokener_new();
  if (tok == NULL) return NULL;
  json_object *v = json_tokener_parse_ex(tok, s, (int)len);
  bool whole = v != NULL && json_tokener_get_error(tok) == json_tokener_success &&
               json_tokener_get_parse_end(tok) == len;
  json_tokener_free(tok);
  if (!whole) {
    json_object_put(v);
    return NULL;
  }
  return v;
}

/* Adds a call from a name and an arguments value (object or JSON string). */
static bool add_call(serve_tool_call **calls, size_t *n, const char *name, json_object *args) {
  serve_tool_call *g = realloc(*calls, (*n + 1) * sizeof(**calls));
  if (g == NULL) return false;
  *calls = g;
  serve_tool_call *c = &g[*n];
  memset(c, 0, sizeof(*c));
  snprintf(c->id, sizeof(c->id), "call_%016llx", serve_random_u64());
  const char *text = "{}";
  json_object *parsed = NULL;
  if (args != NULL && json_object_is_type(args, json_type_string)) /* already JSON text */
    parsed = parse_json(json_object_get_string(args), (size_t)json_object_get_string_len(args));
  if (parsed != NULL)
    text = json_object_to_json_string_ext(parsed, JSON_C_TO_STRING_PLAIN);
  else if (args != NULL)
    text = json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN);
  c->name = strdup(name);
  c->arguments = strdup(text ? text : "{}");
  json_object_put(parsed);
  if (c->name == NULL || c->arguments == NULL) {
    free(c->name);
    free(c->arguments);
    return false;
  }
  (*n)++;
  return true;
}

/* {"name": N, "arguments"|"parameters": A} -> a call; false if not that shape. */
static bool call_from_object(serve_tool_call **calls, size_t *n, json_object *v) {
  json_object *name = serve_json_get(v, "name");
  json_object *args = serve_json_get(v, "arguments");
  if (args == NULL) args = serve_json_get(v, "parameters");
  if (!json_object_is_type(v, json_type_object) || name == NULL ||
      !json_object_is_type(name, json_type_string))
    return false;
  return add_call(calls, n, json_object_get_string(name), args);
}

static bool is_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static void trim_ws(serve_buf *b) {
  while (b->len > 0 && is_ws(b->data[b->len - 1]))
    b->len--;
  if (b->data != NULL) b->data[b->len] = '\0';
}

/* Appends text outside the calls; DeepSeek's wrapper markers around the
 * calls are markup, not content. */
static void append_content(const serve_tools *t, serve_buf *content, const char *p, size_t n) {
  while (t->family == SERVE_TOOLS_DEEPSEEK && n > 0) {
    const char *a = find(p, n, SERVE_DS_CALLS_BEGIN), *b = find(p, n, SERVE_DS_CALLS_END);
    const char *tag = a == NULL || (b != NULL && b < a) ? b : a;
    if (tag == NULL) break;
    size_t tl = strlen(tag == a ? SERVE_DS_CALLS_BEGIN : SERVE_DS_CALLS_END);
    serve_buf_append(content, p, (size_t)(tag - p));
    n -= (size_t)(tag - p) + tl;
    p = tag + tl;
  }
  serve_buf_append(content, p, n);
}

size_t serve_tools_extract(const serve_tools *t, const char *text, size_t len, serve_buf *content,
                           serve_tool_call **out_calls) {
  serve_tool_call *calls = NULL;
  size_t n = 0;
  *out_calls = NULL;
  if (t->choice == SERVE_TOOL_CHOICE_NONE || text == NULL) {
    serve_buf_append(content, text ? text : "", len);
    return 0;
  }
  const char *end = text + len;
  if (t->family == SERVE_TOOLS_LLAMA3) {
    const char *s = text;
    const char *tag = find(text, len, "<|python_tag|>");
    if (tag != NULL) s = tag + 14;
    json_object *v = parse_json(s, (size_t)(end - s));
    if (v != NULL && call_from_object(&calls, &n, v)) {
      serve_buf_append(content, text, tag ? (size_t)(tag - text) : 0);
      trim_ws(content);
    } else {
      serve_buf_append(content, text, len);
    }
    json_object_put(v);
    *out_calls = calls;
    return n;
  }
  const char *open = t->family == SERVE_TOOLS_DEEPSEEK ? SERVE_DS_CALL_BEGIN : "<tool_call>";
  const char *close = t->family == SERVE_TOOLS_DEEPSEEK ? SERVE_DS_CALL_END : "</tool_call>";
  const char *at = text;
  while (at < end) {
    const char *o = find(at, (size_t)(end - at), open);
    const char *c = o ? find(o, (size_t)(end - o), close) : NULL;
    if (o == NULL || c == NULL) break;
    const char *body = o + strlen(open);
    bool ok = false;
    if (t->family == SERVE_TOOLS_DEEPSEEK) { /* TYPE<sep>NAME\n```json\nARGS\n``` */
      const char *sep = find(body, (size_t)(c - body), SERVE_DS_SEP);
      const char *nl = sep ? memchr(sep, '\n', (size_t)(c - sep)) : NULL;
      if (nl != NULL) {
        const char *name = sep + strlen(SERVE_DS_SEP);
        const char *a = nl + 1, *z = c;
        if ((size_t)(z - a) >= 7 && memcmp(a, "```json", 7) == 0) a += 7;
        while (z > a && (z[-1] == '\n' || z[-1] == ' '))
          z--;
        if ((size_t)(z - a) >= 3 && memcmp(z - 3, "```", 3) == 0) z -= 3;
        json_object *args = parse_json(a, (size_t)(z - a));
        char nm[128];
        size_t nl_len = (size_t)(nl - name) < sizeof(nm) - 1 ? (size_t)(nl - name) : sizeof(nm) - 1;
        memcpy(nm, name, nl_len);
        nm[nl_len] = '\0';
        ok = args != NULL && add_call(&calls, &n, nm, args);
        json_object_put(args);
      }
    } else {
      json_object *v = parse_json(body, (size_t)(c - body));
      ok = v != NULL && call_from_object(&calls, &n, v);
      json_object_put(v);
    }
    /* Text before the call is content, less the whitespace right before
     * it; an unparsable call stays content. */
    append_content(t, content, at, (size_t)((ok ? o : c + strlen(close)) - at));
    if (ok) trim_ws(content);
    at = c + strlen(close);
  }
  append_content(t, content, at, (size_t)(end - at));
  if (n > 0) trim_ws(content); /* whitespace after the last call is not content */
  *out_calls = calls;
  return n;
}

json_object *serve_tool_calls_json(const serve_tool_call *calls, size_t n) {
  json_object *a = json_object_new_array();
  for (size_t k = 0; k < n; k++) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(calls[k].id));
    json_object_object_add(o, "type", json_object_new_string("function"));
    json_object *fn = json_object_new_object();
    json_object_object_add(fn, "name", json_object_new_string(calls[k].name));
    json_object_object_add(fn, "arguments", json_object_new_string(calls[k].arguments));
    json_object_object_add(o, "function", fn);
    json_object_array_add(a, o);
  }
  return a;
}
