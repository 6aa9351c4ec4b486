/* Tool calls split into deltas while the model writes (see tool_stream.h).
 *
 * Outside a call the output is content, less a tail that may begin a call's
 * opening markup. Inside a call, its body is read a byte at a time: for
 * Hermes and Llama 3 a JSON object {"name": N, "arguments": A} (or
 * "parameters"), for DeepSeek-V3 TYPE<sep>NAME\n```json\nA\n```. The
 * scanner of A knows where the value ends, so its bytes can be sent as
 * they come and nothing after it is. */
#include "tool_stream.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "text.h"

enum { M_OUT, M_CALL, M_AFTER, M_SKIP };
enum {
  /* Hermes, Llama 3: the call object */
  O_START,
  O_KEY_OR_END,
  O_KEY,
  O_COLON,
  O_VALUE,
  O_AFTER_VALUE,
  /* DeepSeek-V3: the header, then the arguments */
  D_TYPE,
  D_NAME,
  D_FENCE,
  D_ARGS,
  S_DONE,
  S_FAIL
};
enum { F_OTHER, F_NAME, F_ARGS };

#define MAX_DEPTH 1000 /* nesting of an arguments value */
#define MAX_HEADER 64  /* DeepSeek: bytes of the call type, of the name, of the fence */

static bool is_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static const char *find(const char *s, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++)
    if (s[i] == needle[0] && memcmp(s + i, needle, n) == 0) return s + i;
  return NULL;
}

/* One byte of a JSON value: 1 when it is part of the value, 0 when the
 * value (a number or literal) ended before it, -1 when it cannot be. */
static int scan_byte(serve_json_scan *v, char c) {
  if (v->kind == 0) {
    if (is_ws(c)) return 1;
    if (c == '{' || c == '[') {
      v->kind = c;
      v->depth = 1;
    } else if (c == '"') {
      v->kind = '"';
      v->in_string = true;
    } else if (c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' || c == 'n') {
      v->kind = 'p';
    } else {
      return -1;
    }
    return 1;
  }
  if (v->kind == 'p') {
    if (c == ',' || c == '}' || c == ']' || is_ws(c)) {
      v->done = true;
      return 0;
    }
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '.' || c == '+' || c == '-' ||
                   c == 'E'
               ? 1
               : -1;
  }
  if (v->in_string) {
    if (v->escape)
      v->escape = false;
    else if (c == '\\')
      v->escape = true;
    else if (c == '"') {
      v->in_string = false;
      if (v->depth == 0) v->done = true;
    } else if ((unsigned char)c < 0x20)
      return -1;
    return 1;
  }
  if (c == '"') {
    v->in_string = true;
  } else if (c == '{' || c == '[') {
    if (++v->depth > MAX_DEPTH) return -1;
  } else if (c == '}' || c == ']') {
    if (--v->depth == 0) v->done = true;
  }
  return 1;
}

/* A number, true, false or null, as JSON writes them. */
static bool valid_primitive(const char *p, size_t n) {
  if ((n == 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0)) ||
      (n == 5 && memcmp(p, "false", 5) == 0))
    return true;
  size_t i = 0;
  if (i < n && p[i] == '-') i++;
  if (i < n && p[i] == '0')
    i++;
  else if (i < n && p[i] >= '1' && p[i] <= '9')
    while (i < n && p[i] >= '0' && p[i] <= '9')
      i++;
  else
    return false;
  if (i < n && p[i] == '.') {
    size_t d = ++i;
    while (i < n && p[i] >= '0' && p[i] <= '9')
      i++;
    if (i == d) return false;
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    i++;
    if (i < n && (p[i] == '+' || p[i] == '-')) i++;
    size_t d = i;
    while (i < n && p[i] >= '0' && p[i] <= '9')
      i++;
    if (i == d) return false;
  }
  return i == n;
}

void serve_tool_stream_free(serve_tool_stream *s) {
  serve_buf_free(&s->held_ws);
  serve_buf_free(&s->scratch);
  memset(s, 0, sizeof(*s));
}

static void send(serve_tool_delta_fn fn, void *ctx, serve_tool_delta_kind kind, size_t index,
                 const char *text, size_t len, const serve_tool_stream *s) {
  serve_tool_delta d = {kind, index, s->id, s->name, text, len};
  fn(ctx, &d);
}

/* Content: sent at once, except trailing whitespace, held until more
 * content follows (whitespace before a call is not content). */
static void content(serve_tool_stream *s, const char *p, size_t n, serve_tool_delta_fn fn,
                    void *ctx) {
  size_t k = n;
  while (k > 0 && is_ws(p[k - 1]))
    k--;
  if (k > 0) {
    s->scratch.len = 0;
    if (serve_buf_append(&s->scratch, s->held_ws.data ? s->held_ws.data : "", s->held_ws.len) &&
        serve_buf_append(&s->scratch, p, k))
      send(fn, ctx, SERVE_TOOL_DELTA_CONTENT, 0, s->scratch.data, s->scratch.len, s);
    s->held_ws.len = 0;
    s->any_content = true;
  }
  serve_buf_append(&s->held_ws, p + k, n - k);
}

typedef struct opener {
  const char *text;
  bool markup; /* dropped, not a call */
} opener;

static size_t openers(const serve_tools *t, opener out[3]) {
  switch (t->family) {
  case SERVE_TOOLS_DEEPSEEK:
    out[0] = (opener){SERVE_DS_CALL_BEGIN, false};
    out[1] = (opener){SERVE_DS_CALLS_BEGIN, true};
    out[2] = (opener){SERVE_DS_CALLS_END, true};
    return 3;
  case SERVE_TOOLS_LLAMA3: out[0] = (opener){"<|python_tag|>", false}; return 1;
  default: out[0] = (opener){"<tool_call>", false}; return 1;
  }
}

static const char *closer(const serve_tools *t) {
  switch (t->family) {
  case SERVE_TOOLS_DEEPSEEK: return SERVE_DS_CALL_END;
  case SERVE_TOOLS_LLAMA3: return NULL; /* the call is the rest of the reply */
  default: return "</tool_call>";
  }
}

static void start_call(serve_tool_stream *s, const serve_tools *t, size_t call_start,
                       size_t body_start) {
  s->mode = M_CALL;
  s->call_start = call_start;
  s->body_start = s->pos = body_start;
  s->state = t->family == SERVE_TOOLS_DEEPSEEK ? D_TYPE : O_START;
  s->committed = s->have_name = s->args_started = s->args_done = false;
  s->key_len = 0;
  s->field = F_OTHER;
  memset(&s->value, 0, sizeof(s->value));
  s->args_sent = s->args_start = s->args_end = 0;
  s->args_kind = 0;
  s->name[0] = s->id[0] = '\0';
}

static void out_step(serve_tool_stream *s, const serve_tools *t, const char *text, size_t len,
                     bool final, serve_tool_delta_fn fn, void *ctx) {
  opener ops[3];
  size_t n_ops = openers(t, ops), best = len;
  int which = -1;
  for (size_t k = 0; k < n_ops; k++) {
    const char *p = find(text + s->pos, len - s->pos, ops[k].text);
    if (p != NULL && (size_t)(p - text) < best) {
      best = (size_t)(p - text);
      which = (int)k;
    }
  }
  /* Llama 3 may answer with a bare call object. */
  if (t->family == SERVE_TOOLS_LLAMA3 && !s->any_content && s->n_calls == 0 && !s->no_bare_call) {
    size_t q = s->pos;
    while (q < len && is_ws(text[q]))
      q++;
    if (q < best && q < len && text[q] == '{') {
      content(s, text + s->pos, q - s->pos, fn, ctx);
      start_call(s, t, q, q);
      return;
    }
  }
  if (which >= 0) {
    content(s, text + s->pos, best - s->pos, fn, ctx);
    size_t end = best + strlen(ops[which].text);
    if (ops[which].markup)
      s->pos = end;
    else
      start_call(s, t, best, end);
    return;
  }
  size_t hold = 0; /* a tail that may begin an opener */
  for (size_t k = 0; k < n_ops && !final; k++) {
    size_t h = serve_text_partial_tail(text + s->pos, len - s->pos, ops[k].text);
    if (h > hold) hold = h;
  }
  content(s, text + s->pos, len - hold - s->pos, fn, ctx);
  s->pos = len - hold;
}

/* The name of a Hermes / Llama 3 call, from its JSON string. */
static bool decode_name(serve_tool_stream *s, const char *text) {
  json_tokener *tok = json_tokener_new();
  if (tok == NULL) return false;
  json_object *v =
      json_tokener_parse_ex(tok, text + s->name_start, (int)(s->name_end - s->name_start));
  bool ok = v != NULL && json_object_is_type(v, json_type_string) &&
            (size_t)json_object_get_string_len(v) < sizeof(s->name) &&
            json_object_get_string_len(v) > 0;
  if (ok) snprintf(s->name, sizeof(s->name), "%s", json_object_get_string(v));
  json_object_put(v);
  json_tokener_free(tok);
  return ok;
}

/* Hermes / Llama 3: one byte of the call object. */
static void object_byte(serve_tool_stream *s, const char *text, char c) {
  switch (s->state) {
  case O_START:
    if (c == '{')
      s->state = O_KEY_OR_END;
    else if (!is_ws(c))
      s->state = S_FAIL;
    break;
  case O_KEY_OR_END:
    if (c == '"') {
      s->state = O_KEY;
      s->key_len = 0;
      s->key_escape = s->key_long = false;
    } else if (c == '}') {
      s->state = S_DONE;
    } else if (c != ',' && !is_ws(c)) {
      s->state = S_FAIL;
    }
    break;
  case O_KEY:
    if (!s->key_escape && c == '"') {
      s->state = O_COLON;
    } else if (!s->key_escape && c == '\\') {
      s->key_escape = true;
    } else {
      s->key_escape = false;
      if (s->key_len + 1 < sizeof(s->key))
        s->key[s->key_len++] = c;
      else
        s->key_long = true;
    }
    break;
  case O_COLON:
    if (c == ':') {
      s->key[s->key_len] = '\0';
      s->state = O_VALUE;
      memset(&s->value, 0, sizeof(s->value));
      s->field = F_OTHER;
      if (!s->key_long && strcmp(s->key, "name") == 0 && !s->have_name)
        s->field = F_NAME;
      else if (!s->key_long && !s->args_started &&
               (strcmp(s->key, "arguments") == 0 || strcmp(s->key, "parameters") == 0))
        s->field = F_ARGS;
    } else if (!is_ws(c)) {
      s->state = S_FAIL;
    }
    break;
  case O_VALUE: {
    bool before = s->value.kind == 0;
    int r = scan_byte(&s->value, c);
    if (r < 0) {
      s->state = S_FAIL;
      break;
    }
    if (before && s->value.kind != 0) {
      s->value_start = s->pos;
      if (s->field == F_ARGS) {
        s->args_started = true;
        s->args_start = s->pos;
        s->args_kind = s->value.kind;
      } else if (s->field == F_NAME) {
        s->name_start = s->pos;
      }
    }
    if (!s->value.done) break;
    size_t end = r == 1 ? s->pos + 1 : s->pos;
    if (s->value.kind == 'p' && !valid_primitive(text + s->value_start, end - s->value_start)) {
      s->state = S_FAIL;
      break;
    }
    if (s->field == F_NAME) {
      s->name_end = end;
      s->have_name = s->value.kind == '"' && decode_name(s, text);
      if (!s->have_name) s->state = S_FAIL;
    } else if (s->field == F_ARGS) {
      s->args_done = true;
      s->args_end = end;
    }
    if (s->state == S_FAIL) break;
    s->state = O_AFTER_VALUE;
    if (r == 0) s->pos--; /* the byte that ended a number is read again */
    break;
  }
  case O_AFTER_VALUE:
    if (c == ',')
      s->state = O_KEY_OR_END;
    else if (c == '}')
      s->state = S_DONE;
    else if (!is_ws(c))
      s->state = S_FAIL;
    break;
  default: break;
  }
}

/* DeepSeek-V3: reads as much of TYPE<sep>NAME\n```json\nARGS as is there. */
static void deepseek_scan(serve_tool_stream *s, const char *text, size_t len) {
  while (s->pos < len && s->state != S_DONE && s->state != S_FAIL) {
    if (s->state == D_TYPE) {
      const char *sep = find(text + s->body_start, len - s->body_start, SERVE_DS_SEP);
      if (sep == NULL) {
        if (len - s->body_start > MAX_HEADER + strlen(SERVE_DS_SEP)) s->state = S_FAIL;
        s->pos = len;
        return;
      }
      s->pos = s->name_start = (size_t)(sep - text) + strlen(SERVE_DS_SEP);
      s->state = D_NAME;
    } else if (s->state == D_NAME) {
      const char *nl = memchr(text + s->name_start, '\n', len - s->name_start);
      size_t n = nl ? (size_t)(nl - text) - s->name_start : len - s->name_start;
      if (n >= sizeof(s->name) || (nl != NULL && n == 0)) {
        s->state = S_FAIL;
        return;
      }
      if (nl == NULL) {
        s->pos = len;
        return;
      }
      memcpy(s->name, text + s->name_start, n);
      s->name[n] = '\0';
      s->have_name = true;
      s->pos = (size_t)(nl - text) + 1;
      s->state = D_FENCE;
    } else if (s->state == D_FENCE) {
      while (s->pos < len && is_ws(text[s->pos]))
        s->pos++;
      if (s->pos == len) return;
      if (text[s->pos] != '`') {
        s->state = D_ARGS;
        continue;
      }
      const char *nl = memchr(text + s->pos, '\n', len - s->pos);
      if (nl == NULL) {
        if (len - s->pos > MAX_HEADER) s->state = S_FAIL;
        return; /* the fence line is not complete yet */
      }
      if ((size_t)(nl - text) - s->pos < 3 || memcmp(text + s->pos, "```", 3) != 0) {
        s->state = S_FAIL;
        return;
      }
      s->pos = (size_t)(nl - text) + 1;
      s->state = D_ARGS;
    } else { /* D_ARGS */
      bool before = s->value.kind == 0;
      int r = scan_byte(&s->value, text[s->pos]);
      if (r < 0) {
        s->state = S_FAIL;
        return;
      }
      if (before && s->value.kind != 0) {
        s->args_started = true;
        s->args_start = s->pos;
        s->args_kind = s->value.kind;
      }
      if (s->value.done) {
        s->args_done = true;
        s->args_end = r == 1 ? s->pos + 1 : s->pos;
        s->state = s->value.kind != 'p' ||
                           valid_primitive(text + s->args_start, s->args_end - s->args_start)
                       ? S_DONE
                       : S_FAIL;
        if (s->state == S_FAIL) return;
      }
      if (r == 1) s->pos++;
    }
  }
}

/* Sends what became known of the call: its head, then its arguments. */
static void call_progress(serve_tool_stream *s, const char *text, serve_tool_delta_fn fn,
                          void *ctx) {
  bool args_open = s->args_started && (s->args_kind == '{' || s->args_kind == '[');
  if (!s->committed && s->have_name && (args_open || s->args_done || s->state == S_DONE)) {
    s->committed = true;
    s->held_ws.len = 0;
    snprintf(s->id, sizeof(s->id), "call_%016llx", serve_random_u64());
    send(fn, ctx, SERVE_TOOL_DELTA_CALL, s->n_calls++, NULL, 0, s);
    s->args_sent = s->args_start;
    if (!s->args_started) send(fn, ctx, SERVE_TOOL_DELTA_ARGS, s->n_calls - 1, "{}", 2, s);
  }
  if (!s->committed || !s->args_started) return;
  if (s->args_kind == '{' || s->args_kind == '[') {
    size_t end = s->args_done ? s->args_end : s->pos;
    if (end > s->args_sent)
      send(fn, ctx, SERVE_TOOL_DELTA_ARGS, s->n_calls - 1, text + s->args_sent, end - s->args_sent,
           s);
    if (end > s->args_sent) s->args_sent = end;
  } else if (s->args_done && s->args_sent == s->args_start) {
    json_object *v = NULL;
    if (s->args_kind == '"') { /* arguments given as a JSON text in a string */
      json_tokener *tok = json_tokener_new();
      if (tok != NULL)
        v = json_tokener_parse_ex(tok, text + s->args_start, (int)(s->args_end - s->args_start));
      json_tokener_free(tok);
    }
    if (json_object_is_type(v, json_type_string))
      send(fn, ctx, SERVE_TOOL_DELTA_ARGS, s->n_calls - 1, json_object_get_string(v),
           (size_t)json_object_get_string_len(v), s);
    else
      send(fn, ctx, SERVE_TOOL_DELTA_ARGS, s->n_calls - 1, text + s->args_start,
           s->args_end - s->args_start, s);
    json_object_put(v);
    s->args_sent = s->args_end;
  }
}

static void call_step(serve_tool_stream *s, const serve_tools *t, const char *text, size_t len,
                      bool final, serve_tool_delta_fn fn, void *ctx) {
  if (t->family == SERVE_TOOLS_DEEPSEEK) {
    deepseek_scan(s, text, len);
  } else {
    for (; s->pos < len && s->state != S_DONE && s->state != S_FAIL; s->pos++)
      object_byte(s, text, text[s->pos]);
  }
  if (s->state != S_FAIL) call_progress(s, text, fn, ctx);
  bool unfinished = s->state != S_DONE && s->state != S_FAIL;
  if (s->state == S_DONE && s->committed) {
    s->mode = closer(t) ? M_AFTER : M_OUT;
  } else if (s->state == S_FAIL && s->committed) {
    s->mode = M_SKIP;
  } else if (s->state == S_FAIL || s->state == S_DONE || (final && unfinished && !s->committed)) {
    /* not a call after all: its opening markup is content, and what
     * followed is read again as content */
    content(s, text + s->call_start, s->body_start - s->call_start, fn, ctx);
    if (s->call_start == s->body_start) s->no_bare_call = true;
    s->pos = s->body_start;
    s->mode = M_OUT;
  }
}

/* After a call (or in a broken one): up to its closing markup. */
static void close_step(serve_tool_stream *s, const serve_tools *t, const char *text, size_t len) {
  const char *close = closer(t);
  if (close == NULL) { /* Llama 3's broken call: the rest of the reply */
    s->pos = len;
    return;
  }
  const char *c = find(text + s->pos, len - s->pos, close);
  if (c != NULL) {
    s->pos = (size_t)(c - text) + strlen(close);
    s->mode = M_OUT;
    return;
  }
  size_t keep = strlen(close) - 1;
  if (len - s->pos > keep) s->pos = len - keep;
}

void serve_tool_stream_feed(serve_tool_stream *s, const serve_tools *t, const char *text,
                            size_t len, bool final, serve_tool_delta_fn fn, void *ctx) {
  if (text == NULL || len < s->pos) return;
  if (t->choice == SERVE_TOOL_CHOICE_NONE) {
    if (len > s->pos) send(fn, ctx, SERVE_TOOL_DELTA_CONTENT, 0, text + s->pos, len - s->pos, s);
    s->pos = len;
    return;
  }
  for (;;) {
    size_t pos = s->pos;
    int mode = s->mode;
    switch (s->mode) {
    case M_OUT: out_step(s, t, text, len, final, fn, ctx); break;
    case M_CALL: call_step(s, t, text, len, final, fn, ctx); break;
    default: close_step(s, t, text, len); break;
    }
    if (s->pos == pos && s->mode == mode) break;
  }
  if (final) { /* trailing whitespace is content only when no call came */
    if (s->n_calls == 0 && s->held_ws.len > 0)
      send(fn, ctx, SERVE_TOOL_DELTA_CONTENT, 0, s->held_ws.data, s->held_ws.len, s);
    s->held_ws.len = 0;
  }
}

json_object *serve_tool_delta_json(const serve_tool_delta *d) {
  json_object *o = json_object_new_object(), *fn = json_object_new_object();
  json_object_object_add(o, "index", json_object_new_int((int)d->index));
  if (d->kind == SERVE_TOOL_DELTA_CALL) {
    json_object_object_add(o, "id", json_object_new_string(d->id));
    json_object_object_add(o, "type", json_object_new_string("function"));
    json_object_object_add(fn, "name", json_object_new_string(d->name));
    json_object_object_add(fn, "arguments", json_object_new_string(""));
  } else {
    json_object_object_add(fn, "arguments", json_object_new_string_len(d->text, (int)d->len));
  }
  json_object_object_add(o, "function", fn);
  return o;
}
