/* Pre-tokenizers of byte-level BPE: each family cuts text into pieces with
 * one or more regexes (PCRE2 with UTF and Unicode properties). With several
 * regexes each one further splits the pieces of the previous one; a regex
 * keeps its matches and the gaps between them as pieces (Hugging Face's
 * Split with behavior "Isolated"), and `$` means the end of the piece.
 *
 * `\s` is spelled out as the Unicode White_Space set that the reference
 * (Oniguruma / Rust regex) uses; PCRE2's own `\s` leaves out U+0085. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

#define WS_CHARS                                                                                   \
  "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{"     \
  "202F}"                                                                                          \
  "\\x{205F}\\x{3000}"
#define WS "[" WS_CHARS "]"
#define NOT_WS "[^" WS_CHARS "]"

static const char *const gpt2_regexes[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS_CHARS "\\p{L}\\p{N}]+|" WS "+(?!" NOT_WS
    ")|" WS "+",
    NULL};

static const char *const llama3_regexes[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^" WS_CHARS
    "\\p{L}\\p{N}]+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NOT_WS ")|" WS "+",
    NULL};

static const char *const qwen2_regexes[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS_CHARS
    "\\p{L}\\p{N}]+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NOT_WS ")|" WS "+",
    NULL};

#define CJK "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

/* DeepSeek LLM: the second regex lists the cased letters (Latin, Greek,
 * Cyrillic, ...) by code point; escapes keep canonically equivalent
 * characters (U+2126 OHM, U+212A KELVIN, ...) from being normalized away. */
static const char *const deepseek_llm_regexes[] = {
    "[\\r\\n]",
    WS "?[A-Za-z"
       "\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
       "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}-\\x{377}"
       "\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}"
       "\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"
       "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"
       "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}"
       "\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}"
       "\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"
       "\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
       "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
       "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}"
       "\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"
       "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}"
       "\\x{2183}-\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"
       "\\x{2CF2}-\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
       "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
       "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
       "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}"
       "\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}"
       "]+",
    WS "?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
    WS "+$",
    CJK,
    "\\p{N}+",
    NULL};

static const char *const deepseek_coder_regexes[] = {"[\\r\\n]", WS "?\\p{L}+", WS "?\\p{P}+",
                                                     CJK,        "\\p{N}",      NULL};

/* DeepSeek-V3: digits in groups of up to 3, then runs of CJK ideographs and
 * kana, then a GPT-4-like regex in which an ASCII punctuation character
 * leads an ASCII word and letters carry their combining marks. */
static const char *const deepseek_v3_regexes[] = {
    "\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
    "?[\\p{P}\\p{S}]+[\\r\\n]*|" WS "*[\\r\\n]+|" WS "+(?!" NOT_WS ")|" WS "+",
    NULL};

typedef struct family {
  const char *name;
  const char *const *regexes;
} family;

static const family families[] = {
    {"gpt2", gpt2_regexes},
    {"gpt-2", gpt2_regexes},
    {"default", gpt2_regexes},
    {"llama3", llama3_regexes},
    {"llama-bpe", llama3_regexes},
    {"qwen2", qwen2_regexes},
    {"deepseek-llm", deepseek_llm_regexes},
    {"deepseek-coder", deepseek_coder_regexes},
    {"deepseek-v3", deepseek_v3_regexes},
};

static qiao_status *compile(qiao_tokenizer *t, const char *pattern, size_t len, const char *what) {
  int err;
  PCRE2_SIZE err_off;
  pcre2_code *code = pcre2_compile(
      (PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &err_off, NULL);
  if (code == NULL) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    return qiao__error(QIAO_MALFORMED, "%s: regex does not compile at offset %zu: %s", what,
                       (size_t)err_off, (const char *)msg);
  }
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* optional speed-up */
  t->regexes[t->n_regexes++] = code;
  return NULL;
}

qiao_status *qiao__pretok_init(qiao_tokenizer *t, const char *pre, size_t pre_len,
                               const char *custom_regex, size_t custom_len) {
  if (pre_len == 5 && memcmp(pre, "regex", 5) == 0) {
    if (custom_regex == NULL)
      return qiao__error(QIAO_MALFORMED,
                         "tokenizer.pre is \"regex\" but tokenizer.pre_regex is missing");
    return compile(t, custom_regex, custom_len, "tokenizer.pre_regex");
  }
  for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
    if (strlen(families[f].name) != pre_len || memcmp(families[f].name, pre, pre_len) != 0)
      continue;
    for (size_t i = 0; families[f].regexes[i] != NULL; i++)
      QIAO__TRY(compile(t, families[f].regexes[i], PCRE2_ZERO_TERMINATED, "tokenizer.pre"));
    return NULL;
  }
  return qiao__error(QIAO_UNSUPPORTED,
                     "tokenizer.pre: unknown pre-tokenizer \"%.*s\" (known: gpt2, llama3, qwen2, "
                     "deepseek-llm, deepseek-coder, deepseek-v3, regex)",
                     (int)(pre_len > 64 ? 64 : pre_len), pre);
}

void qiao__pretok_free(qiao_tokenizer *t) {
  for (size_t i = 0; i < t->n_regexes; i++)
    pcre2_code_free((pcre2_code *)t->regexes[i]);
  t->n_regexes = 0;
}

typedef qiao_status *(*emit_fn)(const qiao_tokenizer *, const char *, size_t, qiao__ids *);

typedef struct split_ctx {
  const qiao_tokenizer *t;
  pcre2_match_data *md;
  pcre2_match_context *mctx;
  pcre2_jit_stack *jit_stack;
  emit_fn emit;
  qiao__ids *out;
} split_ctx;

static qiao_status *match(split_ctx *c, pcre2_code *code, const char *s, size_t len, size_t pos,
                          int *rc) {
  *rc = pcre2_match(code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
  if (*rc == PCRE2_ERROR_JIT_STACKLIMIT && c->jit_stack == NULL) {
    /* deep backtracking on a long piece: retry with a larger JIT stack */
    c->jit_stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, NULL);
    if (c->jit_stack == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
    pcre2_jit_stack_assign(c->mctx, NULL, c->jit_stack);
    *rc = pcre2_match(code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
  }
  if (*rc < 0 && *rc != PCRE2_ERROR_NOMATCH) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(*rc, msg, sizeof(msg));
    return qiao__error(QIAO_LIMIT, "tokenizer: pre-tokenizer regex failed: %s", (const char *)msg);
  }
  return NULL;
}

static qiao_status *split(split_ctx *c, size_t level, const char *s, size_t len) {
  if (len == 0) return NULL;
  if (level == c->t->n_regexes) return c->emit(c->t, s, len, c->out);
  pcre2_code *code = (pcre2_code *)c->t->regexes[level];
  size_t pos = 0, piece = 0;
  while (pos <= len) {
    int rc;
    QIAO__TRY(match(c, code, s, len, pos, &rc));
    if (rc == PCRE2_ERROR_NOMATCH) break;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    size_t ms = ov[0], me = ov[1];
    if (me == ms) { /* an empty match splits nothing: step over one character */
      if (ms >= len) break;
      size_t cl = qiao__utf8_valid_len((const uint8_t *)s + ms, len - ms);
      pos = ms + (cl ? cl : 1);
      continue;
    }
    if (ms > piece) QIAO__TRY(split(c, level + 1, s + piece, ms - piece));
    QIAO__TRY(split(c, level + 1, s + ms, me - ms));
    piece = pos = me;
  }
  if (piece < len) QIAO__TRY(split(c, level + 1, s + piece, len - piece));
  return NULL;
}

qiao_status *qiao__pretok_split(const qiao_tokenizer *t, const char *s, size_t len, emit_fn emit,
                                qiao__ids *out) {
  if (t->n_regexes == 0) return emit(t, s, len, out);
  split_ctx c = {t,  pcre2_match_data_create(1, NULL), pcre2_match_context_create(NULL), NULL, emit,
                 out};
  qiao_status *st = NULL;
  if (c.md == NULL || c.mctx == NULL)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  else
    st = split(&c, 0, s, len);
  pcre2_jit_stack_free(c.jit_stack);
  pcre2_match_context_free(c.mctx);
  pcre2_match_data_free(c.md);
  return st;
}
