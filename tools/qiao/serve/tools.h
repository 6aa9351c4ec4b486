/* Tools of a chat request (function calling): the `tools`, `tool_choice`
 * and `parallel_tool_calls` fields, the grammar that forces a valid call
 * (tool_choice "required" or a named function), and the parsing of the
 * model's tool-call text, per model family, into calls.
 *
 * Families (found from the tokenizer's vocabulary):
 *   HERMES (Qwen2.5 / Qwen3 / Hermes): <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>
 *   LLAMA3 (Llama 3.1 / 3.2): {"name": N, "parameters": {...}} (optionally after <|python_tag|>)
 *   DEEPSEEK (DeepSeek-V3): <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N
 *     ```json {...} ```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜> */
#ifndef QIAO_SERVE_TOOLS_H
#define QIAO_SERVE_TOOLS_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "errors.h"
#include "qiao/grammar.h"
#include "qiao/tokenizer.h"

#define SERVE_MAX_TOOLS 128

/* DeepSeek-V3's tool-call markers (single tokens of its vocabulary). */
#define SERVE_DS_CALLS_BEGIN                                                                       \
  "<\xef\xbd\x9ctool\xe2\x96\x81"                                                                  \
  "calls\xe2\x96\x81"                                                                              \
  "begin\xef\xbd\x9c>"
#define SERVE_DS_CALLS_END                                                                         \
  "<\xef\xbd\x9ctool\xe2\x96\x81"                                                                  \
  "calls\xe2\x96\x81"                                                                              \
  "end\xef\xbd\x9c>"
#define SERVE_DS_CALL_BEGIN                                                                        \
  "<\xef\xbd\x9ctool\xe2\x96\x81"                                                                  \
  "call\xe2\x96\x81"                                                                               \
  "begin\xef\xbd\x9c>"
#define SERVE_DS_CALL_END                                                                          \
  "<\xef\xbd\x9ctool\xe2\x96\x81"                                                                  \
  "call\xe2\x96\x81"                                                                               \
  "end\xef\xbd\x9c>"
#define SERVE_DS_SEP "<\xef\xbd\x9ctool\xe2\x96\x81sep\xef\xbd\x9c>"

typedef enum serve_tool_family {
  SERVE_TOOLS_HERMES = 0,
  SERVE_TOOLS_LLAMA3 = 1,
  SERVE_TOOLS_DEEPSEEK = 2,
} serve_tool_family;

typedef enum serve_tool_choice {
  SERVE_TOOL_CHOICE_NONE = 0, /* no tools, or tool_choice "none": no calls are parsed */
  SERVE_TOOL_CHOICE_AUTO = 1,
  SERVE_TOOL_CHOICE_REQUIRED = 2,
  SERVE_TOOL_CHOICE_NAMED = 3,
} serve_tool_choice;

typedef struct serve_tool {
  char *name;       /* [A-Za-z0-9_-]{1,64} */
  char *parameters; /* the JSON Schema text of the arguments */
} serve_tool;

typedef struct serve_tools {
  serve_tool *tools;
  size_t n;
  serve_tool_choice choice;
  size_t named; /* NAMED: the index of the function */
  bool parallel;
  serve_tool_family family;
  json_object *json; /* the request's tools array (a reference), for the chat template */
} serve_tools;

/* Parses tools / tool_choice / parallel_tool_calls of a chat body; errors
 * (400) name the field. */
bool serve_tools_parse(json_object *body, const qiao_tokenizer *tok, serve_tools *t,
                       serve_error *e);
void serve_tools_free(serve_tools *t);

/* For REQUIRED and NAMED: the grammar of one call (several when parallel)
 * whose arguments are valid against the function's parameters. A schema
 * the compiler refuses is a 400 naming the tool. */
bool serve_tools_grammar(const serve_tools *t, qiao_grammar **out, serve_error *e);
/* The same after a part the calls do not constrain: `before` holds GBNF
 * rules defining `thought` (a reasoning model's thinking, reasoning.h),
 * which the output begins with. */
bool serve_tools_grammar_after(const serve_tools *t, const char *before, qiao_grammar **out,
                               serve_error *e);

typedef struct serve_tool_call {
  char id[40];
  char *name;
  char *arguments; /* JSON text */
} serve_tool_call;

/* Splits generated text into content (text outside the calls) and calls.
 * Text that looks like a call but does not parse stays content. Returns the
 * number of calls (*out_calls malloc'd, free with serve_tool_calls_free). */
size_t serve_tools_extract(const serve_tools *t, const char *text, size_t len, serve_buf *content,
                           serve_tool_call **out_calls);
void serve_tool_calls_free(serve_tool_call *calls, size_t n);

/* The message's tool_calls array for a response (streams: tool_stream.h). */
json_object *serve_tool_calls_json(const serve_tool_call *calls, size_t n);

#endif
