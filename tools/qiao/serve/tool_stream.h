/* Streaming tool calls as OpenAI does: while the model writes, its output
 * is split into content deltas and, per call, a first delta (index, id,
 * name, arguments "") followed by fragments of the arguments as they are
 * generated.
 *
 * Nothing is sent that may later turn out to be something else: text that
 * could still begin a call's markup is held back from the content, and the
 * arguments are the bytes of the call's arguments value as a JSON scanner
 * sees them (so a closing brace or tag after the value is never sent as
 * arguments). A call is committed (its first delta sent) once its name is
 * known and its arguments have begun; a call that breaks after that keeps
 * what was sent. Arguments given as a JSON string, or as a bare number or
 * literal, are sent whole when they end.
 *
 * Content follows serve_tools_extract: text outside the calls, without
 * the whitespace right before a call nor, when there were calls, at the
 * end; DeepSeek's wrapper markers are dropped; an opened call that never
 * commits stays content. */
#ifndef QIAO_SERVE_TOOL_STREAM_H
#define QIAO_SERVE_TOOL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "tools.h"

typedef enum serve_tool_delta_kind {
  SERVE_TOOL_DELTA_CONTENT = 0, /* text */
  SERVE_TOOL_DELTA_CALL = 1,    /* a call begins: index, id, name */
  SERVE_TOOL_DELTA_ARGS = 2,    /* a fragment of call `index`'s arguments: text */
} serve_tool_delta_kind;

typedef struct serve_tool_delta {
  serve_tool_delta_kind kind;
  size_t index;
  const char *id, *name;
  const char *text;
  size_t len;
} serve_tool_delta;

typedef void (*serve_tool_delta_fn)(void *ctx, const serve_tool_delta *d);

/* A JSON value read a byte at a time: where it ends, without parsing it. */
typedef struct serve_json_scan {
  uint32_t depth;
  char kind; /* 0 before the value, '{', '[', '"', or 'p' (number, true, false, null) */
  bool in_string, escape, done;
} serve_json_scan;

typedef struct serve_tool_stream {
  int mode;          /* outside a call, in a call, after one, skipping a broken one */
  size_t pos;        /* bytes of the output handled */
  size_t n_calls;    /* calls committed */
  bool any_content;  /* content other than whitespace was sent */
  bool no_bare_call; /* Llama 3: a reply opening with '{' was not a call */
  serve_buf held_ws; /* whitespace held back from the content */
  serve_buf scratch;
  /* the call being read */
  size_t call_start, body_start;
  int state;
  bool committed, have_name, args_started, args_done;
  char key[16];
  size_t key_len;
  bool key_escape, key_long;
  int field;
  serve_json_scan value;
  size_t value_start, name_start, name_end, args_start, args_end, args_sent;
  char args_kind;
  char name[72];
  char id[40];
} serve_tool_stream;

/* `s` must be zeroed first (or freed). */
void serve_tool_stream_free(serve_tool_stream *s);

/* Feeds the whole output so far, `text` (it only grows between calls;
 * bytes already fed do not change), and reports the new deltas to `fn`.
 * `final`: the output is complete (held text is settled). */
void serve_tool_stream_feed(serve_tool_stream *s, const serve_tools *t, const char *text,
                            size_t len, bool final, serve_tool_delta_fn fn, void *ctx);

/* A stream chunk's `tool_calls` entry for a CALL or ARGS delta. */
json_object *serve_tool_delta_json(const serve_tool_delta *d);

#endif
