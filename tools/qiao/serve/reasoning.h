/* The thinking of reasoning models (DeepSeek-R1 and its distills, Qwen3,
 * QwQ): they write it between <think> and </think> before the answer. The
 * server sends it as `reasoning_content` beside `content` (as DeepSeek's
 * API, vLLM's deepseek_r1 parser and llama.cpp's --reasoning-format
 * deepseek do), and `qiao chat` shows it apart and keeps it out of the
 * history. The splitter works while the text streams in:
 *
 * - The thinking opens with <think> at the start of the output (after any
 *   whitespace), or is open from the start when the prompt ended inside it
 *   (templates of DeepSeek-R1, QwQ and others end the generation prompt
 *   with "<think>\n"): then everything up to </think> is thinking (a
 *   <think> the model writes again at its start is dropped).
 * - The first </think> closes it; everything after is content, tags
 *   included (a nested <think> is thinking text, a later </think> content).
 *   Output that does not begin with <think> is all content.
 * - Whitespace at both ends of the thinking and at the start of the answer
 *   is dropped (what the templates strip when they render history).
 * - A tag split across tokens or chunks is held back until it is whole or
 *   can no longer be one; output cut inside the thinking is thinking only.
 *
 * Splitting a whole text and streaming it in pieces of any size give the
 * same thinking and content. */
#ifndef QIAO_SERVE_REASONING_H
#define QIAO_SERVE_REASONING_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "qiao/tokenizer.h"

#define SERVE_THINK_OPEN "<think>"
#define SERVE_THINK_CLOSE "</think>"

typedef enum serve_reasoning_format {
  SERVE_REASONING_AUTO = 0,     /* deepseek when the vocabulary has <think> and </think> */
  SERVE_REASONING_NONE = 1,     /* the tags stay in the content */
  SERVE_REASONING_DEEPSEEK = 2, /* reasoning_content apart */
} serve_reasoning_format;

/* "auto", "none", "deepseek": false for anything else. */
bool serve_reasoning_format_parse(const char *s, serve_reasoning_format *out);

/* Whether <think> and </think> are tokens of the vocabulary. */
bool serve_reasoning_vocab_has_tags(const qiao_tokenizer *tok);

/* Whether a rendered prompt ends inside a thinking part: its last
 * non-whitespace text is <think>. */
bool serve_reasoning_prompt_open(const char *prompt, size_t len);

/* A piece of output: thinking (reasoning true) or content. */
typedef void (*serve_reasoning_fn)(void *ctx, bool reasoning, const char *text, size_t len);

typedef struct serve_reasoning {
  int state;
  bool thought;   /* a thinking part was opened (the reply has reasoning_content) */
  serve_buf held; /* output not yet told apart: whitespace, part of a tag */
} serve_reasoning;

/* Starts a split; `open`: the prompt ended inside a thinking part. `r` may
 * hold an earlier split (it is reset) or be zeroed. */
void serve_reasoning_begin(serve_reasoning *r, bool open);

/* Feeds the next `len` bytes of the output and reports the pieces that are
 * settled to `fn` (never empty ones). `final`: the output is complete,
 * everything held is settled. False when memory ran out (the output is
 * then incomplete). */
bool serve_reasoning_feed(serve_reasoning *r, const char *text, size_t len, bool final,
                          serve_reasoning_fn fn, void *ctx);

void serve_reasoning_free(serve_reasoning *r);

/* Constrained output with thinking: GBNF rules defining `thought`, the
 * thinking part before a constrained answer (any text without </think>,
 * then </think> and a little whitespace; optional and opened by <think>
 * unless `open`), so that a grammar applies to the answer only:
 * root ::= thought ANSWER. */
const char *serve_reasoning_gbnf(bool open);

#endif
