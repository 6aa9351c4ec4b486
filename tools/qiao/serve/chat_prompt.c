/* Rendering chat messages with the chat template, then tokenizing. */
#include "chat_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_in.h"
#include "qiao/template.h"

static bool known_role(const char *role) {
  static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};
  for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
    if (strcmp(role, roles[i]) == 0) return true;
  return false;
}

/* The content of message i as one string: a string as is, or the text
 * parts of an array joined by newlines. NULL with *e on error. */
static json_object *content_text(json_object *msg, size_t i, const char *role, serve_error *e) {
  char label[64];
  snprintf(label, sizeof(label), "messages[%zu].content", i);
  json_object *c = serve_json_get(msg, "content");
  if (c == NULL) {
    /* An assistant turn may carry no content (it made tool calls). */
    if (strcmp(role, "assistant") == 0) return json_object_new_string("");
    serve_bad_request(e, label, "%s is required", label);
    return NULL;
  }
  if (json_object_is_type(c, json_type_string)) {
    const char *s = NULL;
    size_t len = 0;
    if (!serve_json_as_string(c, label, &s, &len, e)) return NULL;
    return json_object_new_string_len(s, (int)len);
  }
  if (!json_object_is_type(c, json_type_array)) {
    serve_bad_request(e, label, "%s must be a string or an array of text parts", label);
    return NULL;
  }
  size_t n = json_object_array_length(c), total = 0;
  for (size_t k = 0; k < n; k++) { /* check every part, and size the result */
    json_object *part = json_object_array_get_idx(c, k);
    char part_label[96];
    snprintf(part_label, sizeof(part_label), "%s[%zu]", label, k);
    const char *type = NULL, *text = NULL;
    size_t len = 0;
    if (!json_object_is_type(part, json_type_object)) {
      serve_bad_request(e, part_label, "%s must be an object {\"type\": \"text\", \"text\": ...}",
                        part_label);
      return NULL;
    }
    char field[128];
    snprintf(field, sizeof(field), "%s.type", part_label);
    if (!serve_json_as_string(serve_json_get(part, "type"), field, &type, NULL, e)) return NULL;
    if (type == NULL || strcmp(type, "text") != 0) {
      serve_bad_request(e, field, "%s '%.32s' is not supported (only \"text\")", field,
                        type ? type : "(missing)");
      return NULL;
    }
    snprintf(field, sizeof(field), "%s.text", part_label);
    if (!serve_json_as_string(serve_json_get(part, "text"), field, &text, &len, e)) return NULL;
    if (text == NULL) {
      serve_bad_request(e, field, "%s is required", field);
      return NULL;
    }
    total += len + 1;
  }
  char *joined = malloc(total + 1), *p = joined;
  if (joined == NULL) {
    serve_fail(e, 500, NULL, "out of memory");
    return NULL;
  }
  for (size_t k = 0; k < n; k++) {
    json_object *t = serve_json_get(json_object_array_get_idx(c, k), "text");
    size_t len = (size_t)json_object_get_string_len(t);
    if (k > 0) *p++ = '\n';
    memcpy(p, json_object_get_string(t), len);
    p += len;
  }
  json_object *s = json_object_new_string_len(joined, (int)(p - joined));
  free(joined);
  return s;
}

/* An assistant's tool_calls for the template: each {id, type, function:
 * {name, arguments}}, arguments parsed into an object when asked. */
static json_object *tool_calls_for_template(json_object *calls, bool args_as_object) {
  json_object *out = json_object_new_array();
  size_t n = json_object_array_length(calls);
  for (size_t k = 0; k < n; k++) {
    json_object *c = json_object_array_get_idx(calls, k);
    json_object *fn = serve_json_get(c, "function");
    if (!json_object_is_type(fn, json_type_object)) continue;
    json_object *copy = NULL, *fcopy = NULL;
    if (json_object_deep_copy(c, &copy, NULL) != 0) continue;
    json_object *args = serve_json_get(fn, "arguments");
    if (args_as_object && args != NULL && json_object_is_type(args, json_type_string)) {
      json_object *parsed = json_tokener_parse(json_object_get_string(args));
      if (parsed != NULL && json_object_object_get_ex(copy, "function", &fcopy))
        json_object_object_add(fcopy, "arguments", parsed);
      else
        json_object_put(parsed);
    }
    json_object_array_add(out, copy);
  }
  return out;
}

/* [{role, content}] with string content, or NULL with *e. */
static json_object *normalize(json_object *messages, bool args_as_object, serve_error *e) {
  if (messages == NULL) {
    serve_bad_request(e, "messages", "messages is required");
    return NULL;
  }
  if (!json_object_is_type(messages, json_type_array) || json_object_array_length(messages) == 0) {
    serve_bad_request(e, "messages", "messages must be a non-empty array");
    return NULL;
  }
  json_object *out = json_object_new_array();
  size_t n = json_object_array_length(messages);
  for (size_t i = 0; i < n; i++) {
    json_object *m = json_object_array_get_idx(messages, i);
    char label[64];
    snprintf(label, sizeof(label), "messages[%zu]", i);
    if (!json_object_is_type(m, json_type_object)) {
      serve_bad_request(e, label, "%s must be an object", label);
      break;
    }
    snprintf(label, sizeof(label), "messages[%zu].role", i);
    const char *role = NULL;
    if (!serve_json_as_string(serve_json_get(m, "role"), label, &role, NULL, e)) break;
    if (role == NULL || !known_role(role)) {
      serve_bad_request(e, label, "%s must be one of system, user, assistant, tool", label);
      break;
    }
    json_object *content = content_text(m, i, role, e);
    if (content == NULL) break;
    json_object *msg = json_object_new_object();
    /* "developer" is OpenAI's newer name for the system role. */
    const char *as = strcmp(role, "developer") == 0 ? "system" : role;
    json_object_object_add(msg, "role", json_object_new_string(as));
    json_object_object_add(msg, "content", content);
    json_object *calls = serve_json_get(m, "tool_calls");
    if (calls != NULL && json_object_is_type(calls, json_type_array))
      json_object_object_add(msg, "tool_calls", tool_calls_for_template(calls, args_as_object));
    static const char *const keep[] = {"tool_call_id", "name", "reasoning_content"};
    for (int k = 0; k < 3; k++) {
      json_object *v = serve_json_get(m, keep[k]);
      if (v != NULL && json_object_is_type(v, json_type_string))
        json_object_object_add(msg, keep[k], json_object_get(v));
    }
    json_object_array_add(out, msg);
  }
  if (json_object_array_length(out) != n) {
    json_object_put(out);
    return NULL;
  }
  return out;
}

/* The variables the server gives every template. */
static bool reserved_var(const char *name) {
  static const char *const names[] = {"messages", "tools", "add_generation_prompt", "bos_token",
                                      "eos_token"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcmp(name, names[i]) == 0) return true;
  return false;
}

bool serve_chat_prompt(serve_app *app, json_object *messages, json_object *tools,
                       json_object *kwargs, bool args_as_object, int32_t **ids, size_t *n,
                       char **rendered, serve_error *e) {
  if (app->chat_template == NULL)
    return serve_bad_request(e, "messages", "model has no chat template; pass --chat-template");
  if (kwargs != NULL && !json_object_is_type(kwargs, json_type_object))
    return serve_bad_request(e, "chat_template_kwargs", "chat_template_kwargs must be an object");
  json_object *vars = json_object_new_object();
  if (kwargs != NULL) {
    json_object_object_foreach(kwargs, key, value) {
      if (reserved_var(key)) {
        json_object_put(vars);
        return serve_bad_request(e, "chat_template_kwargs",
                                 "chat_template_kwargs.%.64s is set by the server", key);
      }
      json_object_object_add(vars, key, json_object_get(value));
    }
  }
  json_object *normalized = normalize(messages, args_as_object, e);
  if (normalized == NULL) {
    json_object_put(vars);
    return false;
  }
  json_object_object_add(vars, "messages", normalized);
  if (tools != NULL) json_object_object_add(vars, "tools", json_object_get(tools));
  json_object_object_add(vars, "add_generation_prompt", json_object_new_boolean(1));
  json_object_object_add(vars, "bos_token", json_object_new_string(app->bos_text));
  json_object_object_add(vars, "eos_token", json_object_new_string(app->eos_text));
  size_t vlen = 0;
  const char *vtext = json_object_to_json_string_length(vars, JSON_C_TO_STRING_PLAIN, &vlen);
  char *text = NULL;
  size_t len = 0;
  qiao_status *st = qiao_template_render(app->chat_template, vtext, vlen, NULL, &text, &len);
  json_object_put(vars);
  if (st != NULL) {
    /* raise_exception (e.g. "roles must alternate") and budgets are the
     * client's doing; anything else is ours. */
    qiao_code code = qiao_status_code(st);
    bool client = code == QIAO_INVALID_ARGUMENT || code == QIAO_LIMIT;
    serve_fail(e, client ? 400 : 500, client ? "messages" : NULL, "chat template: %s",
               qiao_status_message(st));
    qiao_status_free(st);
    return false;
  }
  /* The rendered text carries the template's special tokens as text
   * (<|im_start|>): match them, and add no BOS (the template has it). */
  qiao_encode_options enc = {sizeof(enc), false, true};
  st = qiao_tokenizer_encode(app->tokenizer, text, len, &enc, ids, n);
  if (st != NULL) {
    serve_fail(e, 500, NULL, "tokenizing the chat prompt: %s", qiao_status_message(st));
    qiao_status_free(st);
    free(text);
    return false;
  }
  if (*n == 0) {
    free(*ids);
    *ids = NULL;
    free(text);
    return serve_bad_request(e, "messages", "the messages render to an empty prompt");
  }
  if (rendered != NULL)
    *rendered = text;
  else
    free(text);
  return true;
}
