/* Thinking and answer told apart while the output streams (reasoning.h).
 *
 * The output not yet settled is kept in `held` (new bytes are appended to
 * it); each feed settles as much of it as it can and keeps the rest: at
 * the start, whitespace and a possible beginning of <think>; in the
 * thinking, trailing whitespace and a possible beginning of </think>. */
#include "reasoning.h"

#include <string.h>

#include "text.h"

enum {
  R_START,       /* nothing settled yet: <think> may come */
  R_START_OPEN,  /* the same in a thinking the prompt opened: a <think> there is dropped */
  R_THINK_LEAD,  /* in the thinking, before its first non-whitespace */
  R_THINK,       /* in the thinking */
  R_ANSWER_LEAD, /* after </think>, before the answer's first non-whitespace */
  R_CONTENT,     /* the rest is content */
};

static bool is_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static const char *find(const char *s, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++)
    if (s[i] == needle[0] && memcmp(s + i, needle, n) == 0) return s + i;
  return NULL;
}

bool serve_reasoning_format_parse(const char *s, serve_reasoning_format *out) {
  static const char *const names[] = {"auto", "none", "deepseek"};
  for (int i = 0; i < 3; i++)
    if (strcmp(s, names[i]) == 0) {
      *out = (serve_reasoning_format)i;
      return true;
    }
  return false;
}

bool serve_reasoning_vocab_has_tags(const qiao_tokenizer *tok) {
  return tok != NULL &&
         qiao_tokenizer_find_token(tok, SERVE_THINK_OPEN, strlen(SERVE_THINK_OPEN)) >= 0 &&
         qiao_tokenizer_find_token(tok, SERVE_THINK_CLOSE, strlen(SERVE_THINK_CLOSE)) >= 0;
}

bool serve_reasoning_prompt_open(const char *prompt, size_t len) {
  size_t n = strlen(SERVE_THINK_OPEN);
  while (len > 0 && is_ws(prompt[len - 1]))
    len--;
  return len >= n && memcmp(prompt + len - n, SERVE_THINK_OPEN, n) == 0;
}

void serve_reasoning_begin(serve_reasoning *r, bool open) {
  r->state = open ? R_START_OPEN : R_START;
  r->thought = open;
  r->held.len = 0;
}

void serve_reasoning_free(serve_reasoning *r) {
  serve_buf_free(&r->held);
  memset(r, 0, sizeof(*r));
}

static void emit(serve_reasoning_fn fn, void *ctx, bool reasoning, const char *p, size_t n) {
  if (n > 0) fn(ctx, reasoning, p, n);
}

/* Settles what it can of s[0, n); returns how many bytes are settled. */
static size_t settle(serve_reasoning *r, const char *s, size_t n, bool final, serve_reasoning_fn fn,
                     void *ctx) {
  const size_t open_len = strlen(SERVE_THINK_OPEN), close_len = strlen(SERVE_THINK_CLOSE);
  size_t i = 0;
  for (;;) {
    switch (r->state) {
    case R_START:
    case R_START_OPEN: {
      size_t j = i;
      while (j < n && is_ws(s[j]))
        j++;
      if (n - j >= open_len && memcmp(s + j, SERVE_THINK_OPEN, open_len) == 0) {
        r->state = R_THINK_LEAD; /* the whitespace before <think> is dropped */
        r->thought = true;
        i = j + open_len;
        continue;
      }
      if (!final && n - j < open_len && memcmp(s + j, SERVE_THINK_OPEN, n - j) == 0)
        return i; /* maybe <think> */
      r->state = r->state == R_START_OPEN ? R_THINK_LEAD : R_CONTENT;
      continue;
    }
    case R_THINK_LEAD:
    case R_ANSWER_LEAD:
      while (i < n && is_ws(s[i]))
        i++;
      if (i == n) return n;
      r->state = r->state == R_THINK_LEAD ? R_THINK : R_CONTENT;
      continue;
    case R_THINK: {
      const char *close = find(s + i, n - i, SERVE_THINK_CLOSE);
      size_t end = close
                       ? (size_t)(close - s)
                       : n - (final ? 0 : serve_text_partial_tail(s + i, n - i, SERVE_THINK_CLOSE));
      size_t t = end; /* trailing whitespace waits for more thinking */
      while (t > i && is_ws(s[t - 1]))
        t--;
      emit(fn, ctx, true, s + i, t - i);
      if (close == NULL) return final ? n : t;
      i = end + close_len;
      r->state = R_ANSWER_LEAD;
      continue;
    }
    default: emit(fn, ctx, false, s + i, n - i); return n;
    }
  }
}

bool serve_reasoning_feed(serve_reasoning *r, const char *text, size_t len, bool final,
                          serve_reasoning_fn fn, void *ctx) {
  if (r->state == R_CONTENT && r->held.len == 0) { /* the common case: no copy */
    emit(fn, ctx, false, text, len);
    return true;
  }
  if (len > 0 && !serve_buf_append(&r->held, text, len)) return false;
  if (r->held.len == 0) return true;
  size_t done = settle(r, r->held.data, r->held.len, final, fn, ctx);
  memmove(r->held.data, r->held.data + done, r->held.len - done);
  r->held.len -= done;
  r->held.data[r->held.len] = '\0';
  return true;
}

/* Text without </think>, as states of how much of "</think>" it ends with
 * (sN: the last N bytes are its start); tail calls keep the stack flat. */
#define THINK_TEXT_RULES                                                                           \
  "think-s0 ::= ([^<] think-s0 | \"<\" think-s1)?\n"                                               \
  "think-s1 ::= (\"<\" think-s1 | \"/\" think-s2 | [^/<] think-s0)?\n"                             \
  "think-s2 ::= (\"<\" think-s1 | \"t\" think-s3 | [^t<] think-s0)?\n"                             \
  "think-s3 ::= (\"<\" think-s1 | \"h\" think-s4 | [^h<] think-s0)?\n"                             \
  "think-s4 ::= (\"<\" think-s1 | \"i\" think-s5 | [^i<] think-s0)?\n"                             \
  "think-s5 ::= (\"<\" think-s1 | \"n\" think-s6 | [^n<] think-s0)?\n"                             \
  "think-s6 ::= (\"<\" think-s1 | \"k\" think-s7 | [^k<] think-s0)?\n"                             \
  "think-s7 ::= (\"<\" think-s1 | [^<>] think-s0)?\n"

const char *serve_reasoning_gbnf(bool open) {
  return open ? THINK_TEXT_RULES "thought ::= think-s0 \"</think>\" [ \\t\\r\\n]{0,8}\n"
              : THINK_TEXT_RULES
             "thought ::= (\"<think>\" think-s0 \"</think>\" [ \\t\\r\\n]{0,8})?\n";
}
