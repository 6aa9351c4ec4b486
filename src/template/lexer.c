/* The lexer: splits the source into literal text and the tokens inside
 * {{ }}, {% %} and {# #}, applying jinja2's whitespace control with
 * trim_blocks and lstrip_blocks on (as transformers configures it):
 *   {%- / {{- / {#-   strip all whitespace before the tag
 *   -%} / -}} / -#}   strip all whitespace after the tag
 *   lstrip_blocks     spaces/tabs between a line start and {% or {# go away
 *                     (unless the tag opens with {%+)
 *   trim_blocks       the first newline after %} or #} goes away
 *                     (unless the tag closes with +%})
 * The source has been normalized first (line breaks -> \n, one trailing
 * newline removed), as jinja2 does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template_internal.h"

typedef struct lexer {
  tpl_arena *a;
  const char *src;
  size_t len, pos;
  int line;
  tpl_tokens *toks;
  qiao_status *err;
} lexer;

static bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* Byte length of the Unicode whitespace code point at s[pos] (Python's
 * str.isspace / re \s), or 0. */
static size_t space_at(const char *s, size_t pos, size_t len) {
  if (pos >= len) return 0;
  size_t adv;
  uint32_t c = tpl_utf8_decode(s + pos, len - pos, &adv);
  return tpl_is_space(c) ? adv : 0;
}
/* The same for the code point that ends just before s[end] (not before start). */
static size_t space_before(const char *s, size_t start, size_t end) {
  if (end <= start) return 0;
  size_t k = end - 1;
  while (k > start && end - k < 4 && ((unsigned char)s[k] & 0xC0) == 0x80)
    k--;
  size_t n = space_at(s, k, end);
  return n == end - k ? n : 0;
}

static void push(lexer *lx, tpl_tok_kind kind, const char *text, size_t len, int line) {
  tpl_tokens *t = lx->toks;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    tpl_token *items = tpl_alloc(lx->a, cap * sizeof(*items));
    if (t->n) memcpy(items, t->items, t->n * sizeof(*items));
    t->items = items;
    t->cap = cap;
  }
  tpl_token *tok = &t->items[t->n++];
  memset(tok, 0, sizeof(*tok));
  tok->kind = kind;
  tok->text = text;
  tok->len = len;
  tok->line = line;
}

static int count_lines(const char *p, size_t n) {
  int lines = 0;
  for (size_t i = 0; i < n; i++)
    lines += p[i] == '\n';
  return lines;
}

/* Emits the literal text src[start, end), applying the left-side whitespace
 * rules of the tag that follows (`strip`: '-' present; `lstrip`: the tag is
 * a block or comment without '+'). */
static void emit_data(lexer *lx, size_t start, size_t end, bool strip, bool lstrip) {
  if (strip) {
    size_t n;
    while ((n = space_before(lx->src, start, end)) > 0)
      end -= n;
  } else if (lstrip) {
    size_t l = end;
    while (l > start && lx->src[l - 1] != '\n')
      l--;
    bool line_start = l > start || start == 0 || lx->src[start - 1] == '\n';
    if (line_start) {
      size_t k = l, n;
      while ((n = space_at(lx->src, k, end)) > 0)
        k += n;
      if (k == end) end = l;
    }
  }
  if (end > start) push(lx, T_DATA, lx->src + start, end - start, lx->line);
}

static qiao_status *lex_error(lexer *lx, int line, const char *what) {
  return qiao__error(QIAO_MALFORMED, "template line %d: %s", line, what);
}

/* Skips what follows a closing tag: all whitespace after '-', one newline
 * after a plain block/comment end (trim_blocks). */
static void after_tag(lexer *lx, char modifier, bool trim) {
  if (modifier == '-') {
    size_t n;
    while ((n = space_at(lx->src, lx->pos, lx->len)) > 0) {
      if (lx->src[lx->pos] == '\n') lx->line++;
      lx->pos += n;
    }
  } else if (trim && modifier != '+' && lx->pos < lx->len && lx->src[lx->pos] == '\n') {
    lx->pos++;
    lx->line++;
  }
}

static qiao_status *lex_string(lexer *lx) {
  char quote = lx->src[lx->pos];
  int line = lx->line;
  size_t i = lx->pos + 1;
  /* the unescaped text is never longer than the source */
  size_t end = i;
  while (end < lx->len && lx->src[end] != quote)
    end += (lx->src[end] == '\\') ? 2 : 1;
  if (end >= lx->len) return lex_error(lx, line, "unterminated string literal");
  char *out = tpl_alloc(lx->a, end - i + 1);
  size_t n = 0;
  while (i < end) {
    char c = lx->src[i];
    if (c == '\n') lx->line++;
    if (c != '\\') {
      out[n++] = c;
      i++;
      continue;
    }
    char e = lx->src[i + 1];
    i += 2;
    switch (e) {
    case '\\': out[n++] = '\\'; break;
    case '\'': out[n++] = '\''; break;
    case '"': out[n++] = '"'; break;
    case 'n': out[n++] = '\n'; break;
    case 't': out[n++] = '\t'; break;
    case 'r': out[n++] = '\r'; break;
    case 'b': out[n++] = '\b'; break;
    case 'f': out[n++] = '\f'; break;
    case 'v': out[n++] = '\v'; break;
    case 'a': out[n++] = '\a'; break;
    case '\n': lx->line++; break; /* line continuation */
    case 'N': return lex_error(lx, lx->line, "malformed \\N character escape (not supported)");
    case 'x':
    case 'u':
    case 'U': {
      int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
      uint32_t cp = 0;
      int k;
      for (k = 0; k < digits && i + (size_t)k < end; k++) {
        char h = lx->src[i + k];
        int v = (h >= '0' && h <= '9')   ? h - '0'
                : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                         : -1;
        if (v < 0) break;
        cp = cp * 16 + (uint32_t)v;
      }
      if (k != digits || cp > 0x10FFFF)
        return lex_error(lx, lx->line, "bad \\x, \\u or \\U escape in a string literal");
      i += (size_t)digits;
      /* UTF-8 is at most 4 bytes; the escape took at least 4 */
      if (cp < 0x80) {
        out[n++] = (char)cp;
      } else if (cp < 0x800) {
        out[n++] = (char)(0xC0 | (cp >> 6));
        out[n++] = (char)(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out[n++] = (char)(0xE0 | (cp >> 12));
        out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
      } else {
        out[n++] = (char)(0xF0 | (cp >> 18));
        out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[n++] = (char)(0x80 | (cp & 0x3F));
      }
      break;
    }
    default:
      if (e >= '0' && e <= '7') { /* octal, up to 3 digits */
        uint32_t v = (uint32_t)(e - '0');
        for (int k = 0; k < 2 && i < end && lx->src[i] >= '0' && lx->src[i] <= '7'; k++, i++)
          v = v * 8 + (uint32_t)(lx->src[i] - '0');
        if (v < 0x80) {
          out[n++] = (char)v;
        } else {
          out[n++] = (char)(0xC0 | (v >> 6));
          out[n++] = (char)(0x80 | (v & 0x3F));
        }
      } else { /* unknown escapes stay as written, like Python */
        out[n++] = '\\';
        out[n++] = e;
      }
    }
  }
  push(lx, T_STRING, out, n, line);
  lx->pos = end + 1;
  return NULL;
}

static qiao_status *lex_number(lexer *lx) {
  size_t i = lx->pos;
  char buf[128];
  size_t n = 0;
  bool is_float = false;
  while (i < lx->len && (is_digit(lx->src[i]) || lx->src[i] == '_')) {
    if (lx->src[i] != '_' && n < sizeof(buf) - 1) buf[n++] = lx->src[i];
    i++;
  }
  if (i + 1 < lx->len && lx->src[i] == '.' && is_digit(lx->src[i + 1])) {
    is_float = true;
    buf[n < sizeof(buf) - 1 ? n++ : n] = '.';
    i++;
    while (i < lx->len && (is_digit(lx->src[i]) || lx->src[i] == '_')) {
      if (lx->src[i] != '_' && n < sizeof(buf) - 1) buf[n++] = lx->src[i];
      i++;
    }
  }
  if (i < lx->len && (lx->src[i] == 'e' || lx->src[i] == 'E')) {
    size_t j = i + 1;
    if (j < lx->len && (lx->src[j] == '+' || lx->src[j] == '-')) j++;
    if (j < lx->len && is_digit(lx->src[j])) {
      is_float = true;
      if (n < sizeof(buf) - 1) buf[n++] = 'e';
      for (size_t k = i + 1; k < j; k++)
        if (n < sizeof(buf) - 1) buf[n++] = lx->src[k];
      i = j;
      while (i < lx->len && is_digit(lx->src[i])) {
        if (n < sizeof(buf) - 1) buf[n++] = lx->src[i];
        i++;
      }
    }
  }
  if (n >= sizeof(buf) - 1) return lex_error(lx, lx->line, "number literal too long");
  buf[n] = '\0';
  push(lx, is_float ? T_FLOAT : T_INT, lx->src + lx->pos, i - lx->pos, lx->line);
  tpl_token *tok = &lx->toks->items[lx->toks->n - 1];
  if (is_float) {
    tok->f = strtod(buf, NULL);
  } else {
    int64_t v = 0;
    for (size_t k = 0; k < n; k++) {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, buf[k] - '0', &v))
        return lex_error(lx, lx->line, "integer literal does not fit in 64 bits");
    }
    tok->i = v;
  }
  lx->pos = i;
  return NULL;
}

/* Tokens inside {{ }} or {% %} up to the closing tag; returns the closing
 * modifier ('-', '+' or 0) in *modifier. */
static qiao_status *lex_tag(lexer *lx, bool block, int open_line, char *modifier) {
  int depth = 0;
  static const char *ops2[] = {"//", "**", "==", "!=", "<=", ">="};
  for (;;) {
    while (lx->pos < lx->len && is_ws(lx->src[lx->pos])) {
      if (lx->src[lx->pos] == '\n') lx->line++;
      lx->pos++;
    }
    if (lx->pos >= lx->len)
      return lex_error(lx, open_line,
                       block ? "unclosed '{%' tag: missing '%}'"
                             : "unclosed '{{' tag: missing '}}'");
    const char *p = lx->src + lx->pos;
    size_t rest = lx->len - lx->pos;
    if (depth == 0) {
      const char *close = block ? "%}" : "}}";
      char m = 0;
      size_t skip = 0;
      if ((p[0] == '-' || (block && p[0] == '+')) && rest >= 3 && memcmp(p + 1, close, 2) == 0) {
        m = p[0];
        skip = 3;
      } else if (rest >= 2 && memcmp(p, close, 2) == 0) {
        skip = 2;
      }
      if (skip) {
        push(lx, block ? T_BLOCK_END : T_VAR_END, p, skip, lx->line);
        lx->pos += skip;
        *modifier = m;
        return NULL;
      }
    }
    char c = p[0];
    if (is_name_start(c)) {
      size_t n = 1;
      while (n < rest && (is_name_start(p[n]) || is_digit(p[n])))
        n++;
      push(lx, T_NAME, p, n, lx->line);
      lx->pos += n;
    } else if (is_digit(c)) {
      QIAO__TRY(lex_number(lx));
    } else if (c == '\'' || c == '"') {
      QIAO__TRY(lex_string(lx));
    } else {
      size_t n = 0;
      for (size_t k = 0; k < sizeof(ops2) / sizeof(ops2[0]); k++)
        if (rest >= 2 && memcmp(p, ops2[k], 2) == 0) n = 2;
      if (n == 0) {
        if (strchr("+-*/%~<>=.,:|()[]{}", c) == NULL || c == '\0') {
          char msg[64];
          snprintf(msg, sizeof(msg), "unexpected character '%c' (byte 0x%02x) in a tag",
                   (c >= 32 && c < 127) ? c : '?', (unsigned char)c);
          return lex_error(lx, lx->line, msg);
        }
        n = 1;
        if (c == '(' || c == '[' || c == '{') depth++;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
      }
      push(lx, T_OP, p, n, lx->line);
      lx->pos += n;
    }
  }
}

/* {% raw %}: true when the block tag at lx->pos is a raw opening; sets *end
 * past its '%}' and *modifier. */
static bool match_word_tag(const char *src, size_t len, size_t pos, const char *word, size_t *end,
                           char *open_mod, char *close_mod) {
  size_t i = pos + 2;
  *open_mod = 0;
  if (i < len && (src[i] == '-' || src[i] == '+')) *open_mod = src[i++];
  while (i < len && is_ws(src[i]))
    i++;
  size_t wl = strlen(word);
  if (i + wl > len || memcmp(src + i, word, wl) != 0) return false;
  i += wl;
  if (i < len && (is_name_start(src[i]) || is_digit(src[i]))) return false;
  while (i < len && is_ws(src[i]))
    i++;
  *close_mod = 0;
  if (i < len && (src[i] == '-' || src[i] == '+')) *close_mod = src[i++];
  if (i + 2 > len || src[i] != '%' || src[i + 1] != '}') return false;
  *end = i + 2;
  return true;
}

qiao_status *tpl_lex(tpl_arena *a, const char *src, size_t len, tpl_tokens *toks) {
  lexer lx = {a, src, len, 0, 1, toks, NULL};
  while (lx.pos < len) {
    size_t start = lx.pos, t = start;
    while (t + 1 < len &&
           !(src[t] == '{' && (src[t + 1] == '{' || src[t + 1] == '%' || src[t + 1] == '#')))
      t++;
    if (t + 1 >= len) { /* only text is left */
      emit_data(&lx, start, len, false, false);
      break;
    }
    char kind = src[t + 1];
    char mod = (t + 2 < len && (src[t + 2] == '-' || src[t + 2] == '+')) ? src[t + 2] : 0;
    if (kind == '{' && mod == '+') mod = 0; /* {{+ is not a modifier */
    emit_data(&lx, start, t, mod == '-', kind != '{' && mod != '+');
    lx.line += count_lines(src + start, t - start);
    int open_line = lx.line;
    char close_mod = 0;
    if (kind == '#') {
      size_t i = t + 2 + (mod ? 1 : 0);
      while (i + 1 < len && !(src[i] == '#' && src[i + 1] == '}'))
        i++;
      if (i + 1 >= len) return lex_error(&lx, open_line, "unclosed comment: missing '#}'");
      if (i > t + 2 + (mod ? 1 : 0) && (src[i - 1] == '-' || src[i - 1] == '+'))
        close_mod = src[i - 1];
      lx.line += count_lines(src + t, i - t);
      lx.pos = i + 2;
      after_tag(&lx, close_mod, true);
      continue;
    }
    size_t raw_end;
    char om, cm;
    if (kind == '%' && match_word_tag(src, len, t, "raw", &raw_end, &om, &cm)) {
      lx.line += count_lines(src + t, raw_end - t);
      lx.pos = raw_end;
      after_tag(&lx, cm, false); /* jinja2 does not trim the newline after {% raw %} */
      size_t body = lx.pos, k = body, end_end = 0;
      char eom = 0, ecm = 0;
      for (; k + 1 < len; k++)
        if (src[k] == '{' && src[k + 1] == '%' &&
            match_word_tag(src, len, k, "endraw", &end_end, &eom, &ecm))
          break;
      if (k + 1 >= len) return lex_error(&lx, open_line, "unclosed {% raw %}: missing endraw");
      emit_data(&lx, body, k, eom == '-', eom != '+');
      lx.line += count_lines(src + body, end_end - body);
      lx.pos = end_end;
      after_tag(&lx, ecm, true);
      continue;
    }
    push(&lx, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, src + t, 2, open_line);
    lx.pos = t + 2 + (mod ? 1 : 0);
    QIAO__TRY(lex_tag(&lx, kind == '%', open_line, &close_mod));
    after_tag(&lx, close_mod, kind == '%');
  }
  push(&lx, T_EOF, src + len, 0, lx.line);
  return NULL;
}
