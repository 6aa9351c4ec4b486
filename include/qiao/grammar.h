/* qiao/grammar.h: constrained decoding. A JSON Schema or a GBNF-like
 * grammar is compiled to a context-free grammar over BYTES, run by a
 * grammar-stack (pushdown) matcher; a token trie of the vocabulary lets the
 * matcher compute which tokens may come next without testing every token
 * one by one (whole subtrees of the trie are pruned at the first byte the
 * grammar refuses, and masks are cached by matcher state).
 *
 * Objects:
 *   qiao_grammar          compiled grammar. Immutable and reference counted:
 *                         share it between threads and requests freely. It
 *                         keeps (internally, under a lock, bounded at 4 MiB)
 *                         the token masks its matchers computed for the first
 *                         trie it is used with, so requests sharing a grammar
 *                         share them.
 *   qiao_token_trie       the token strings of one vocabulary. Immutable;
 *                         share it freely.
 *   qiao_grammar_matcher  the state of one generation (grammar + trie +
 *                         the bytes accepted so far). One thread at a time.
 *
 * Errors: every fallible call returns a qiao_status (NULL = success); out
 * parameters are written only on success. A schema keyword or grammar
 * feature that is not supported is refused with QIAO_UNSUPPORTED naming it
 * (never ignored); malformed input is QIAO_MALFORMED naming where; inputs
 * past the limits below are QIAO_LIMIT. Compilation time and memory are
 * bounded by these limits whatever the input. */
#ifndef QIAO_GRAMMAR_H
#define QIAO_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/status.h"
#include "qiao/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits of compilation (fixed; documented so callers can size inputs). */
#define QIAO_GRAMMAR_MAX_TEXT (1u << 20)     /* schema or grammar text, bytes */
#define QIAO_GRAMMAR_MAX_NESTING 64u         /* schema / JSON / group nesting */
#define QIAO_GRAMMAR_MAX_RULES 65536u        /* rules after expansion */
#define QIAO_GRAMMAR_MAX_ELEMENTS (1u << 21) /* grammar elements after expansion */
#define QIAO_GRAMMAR_MAX_REPEAT 1000u        /* m, n of {m,n}, minItems, maxLength */
#define QIAO_GRAMMAR_MAX_ENUM 4096u          /* values of one enum */
#define QIAO_GRAMMAR_MAX_STACK_DEPTH 512u    /* matcher: nesting of a generated output */
#define QIAO_GRAMMAR_MAX_STACKS 1024u        /* matcher: ambiguity kept at once */
#define QIAO_GRAMMAR_MAX_TOKEN_BYTES 1024u   /* longer tokens are never allowed */

typedef struct qiao_grammar qiao_grammar;

/* JSON Schema (draft 2020-12 subset) to a grammar whose language is the
 * JSON texts valid against the schema, in a canonical layout: object
 * properties in the schema's order (required ones first), optional
 * whitespace between tokens. Supported: type (incl. arrays of types),
 * properties, required, additionalProperties (false, or with no
 * properties: true / a schema), enum, const, items, minItems, maxItems,
 * minLength, maxLength, pattern (regex subset: literals, escapes \d \w \s
 * \D \W \S, classes, ., groups, |, * + ? {m} {m,} {m,n}, ^ $ anchors),
 * format (date, time, date-time, uuid), minimum / maximum /
 * exclusiveMinimum / exclusiveMaximum (any value for integers; integral
 * values below 1e15 for numbers, which are then written without an
 * exponent), anyOf, oneOf whose branches are provably disjoint
 * (different types, distinct const / enum values, or objects told apart by
 * a property both require with disjoint schemas, or that one requires and
 * the other forbids; any other oneOf is QIAO_UNSUPPORTED naming oneOf, its
 * path and two branches that can both match), allOf with one schema,
 * $ref to "#", "#/$defs/NAME" or "#/definitions/NAME" (recursion included),
 * and the annotations title, description, $schema, $id, $comment, default,
 * examples, deprecated, readOnly, writeOnly, strict. Anything else is
 * QIAO_UNSUPPORTED naming the keyword and where it is. An empty schema {}
 * or `true` is any JSON value. `text` need not be NUL-terminated. */
qiao_status *qiao_grammar_compile_json_schema(const char *text, size_t len, qiao_grammar **out);

/* A GBNF-like grammar:  name ::= alternatives   (one rule per definition;
 * `#` starts a comment). Elements: "literal" (escapes \n \r \t \\ \" \xHH
 * \uHHHH), [class] and [^class] of code points with ranges, . (any code
 * point), rule names, ( groups ), postfix * + ? {m} {m,} {m,n}; `|`
 * separates alternatives. Code points are matched as their UTF-8 bytes.
 * Left recursion is refused (QIAO_UNSUPPORTED naming the rule), as is a
 * name used but not defined (QIAO_MALFORMED). `root` names the start rule
 * (NULL = "root"). */
qiao_status *qiao_grammar_compile_gbnf(const char *text, size_t len, const char *root,
                                       qiao_grammar **out);

/* A rule of a GBNF grammar defined by a JSON Schema: the grammar text may
 * use `name` like any rule; it matches the JSON texts valid against the
 * schema (as qiao_grammar_compile_json_schema). */
typedef struct qiao_grammar_schema_rule {
  const char *name; /* NUL-terminated rule name */
  const char *schema;
  size_t schema_len;
} qiao_grammar_schema_rule;

/* qiao_grammar_compile_gbnf with `n_rules` rules given as JSON Schemas
 * (e.g. a tool call: fixed markup around arguments valid against the
 * function's parameters). A schema error names its rule. */
qiao_status *qiao_grammar_compile_gbnf_with_schemas(const char *text, size_t len, const char *root,
                                                    const qiao_grammar_schema_rule *rules,
                                                    size_t n_rules, qiao_grammar **out);

/* Adds a reference (returns `grammar`); thread-safe. */
qiao_grammar *qiao_grammar_ref(qiao_grammar *grammar);
/* Drops a reference; the last frees it. Accepts NULL. Thread-safe. */
void qiao_grammar_destroy(qiao_grammar *grammar);

/* Rules and elements of the compiled grammar (for logs and tests). */
void qiao_grammar_size(const qiao_grammar *grammar, size_t *out_rules, size_t *out_elements);

/* ---- The vocabulary ---------------------------------------------------------- */

typedef enum qiao_token_kind {
  QIAO_TOKEN_TEXT = 0, /* matched by its bytes */
  QIAO_TOKEN_END = 1,  /* end of sequence: allowed exactly when the grammar may end */
  QIAO_TOKEN_NEVER = 2 /* never allowed under a grammar (control tokens without text) */
} qiao_token_kind;

typedef struct qiao_token_trie qiao_token_trie;

/* `n_tokens` tokens: token i is bytes[i][0, lens[i]) of kind kinds[i]
 * (kinds may be NULL: all TEXT). Everything is copied. Empty TEXT tokens and
 * tokens longer than QIAO_GRAMMAR_MAX_TOKEN_BYTES are treated as NEVER. */
qiao_status *qiao_token_trie_create(uint32_t n_tokens, const char *const *bytes, const size_t *lens,
                                    const uint8_t *kinds, qiao_token_trie **out);
/* The trie of a tokenizer's vocabulary: each token's raw bytes
 * (qiao_tokenizer_token_bytes); its end-of-sequence ids are END, other
 * control tokens NEVER. */
qiao_status *qiao_token_trie_from_tokenizer(const qiao_tokenizer *tokenizer, qiao_token_trie **out);
void qiao_token_trie_destroy(qiao_token_trie *trie); /* accepts NULL */
uint32_t qiao_token_trie_vocab_size(const qiao_token_trie *trie);
/* Trie nodes (for benchmarks). */
size_t qiao_token_trie_nodes(const qiao_token_trie *trie);

/* ---- Matching ------------------------------------------------------------- */

typedef struct qiao_grammar_matcher qiao_grammar_matcher;

/* Takes a reference to `grammar`; borrows `trie` (may be NULL when only
 * bytes are matched), which must outlive the matcher. */
qiao_status *qiao_grammar_matcher_create(qiao_grammar *grammar, const qiao_token_trie *trie,
                                         qiao_grammar_matcher **out);
void qiao_grammar_matcher_destroy(qiao_grammar_matcher *matcher); /* accepts NULL */
/* Back to the start of the grammar (the mask cache is kept). */
void qiao_grammar_matcher_reset(qiao_grammar_matcher *matcher);

/* Consumes bytes. All or nothing: on failure (QIAO_INVALID_ARGUMENT with
 * the byte offset where the grammar refused, or QIAO_LIMIT) the state is
 * unchanged. */
qiao_status *qiao_grammar_matcher_accept_bytes(qiao_grammar_matcher *matcher, const void *bytes,
                                               size_t len);
/* Consumes a token of the trie: its bytes, or for an END token the end of
 * the output (refused unless qiao_grammar_matcher_can_end). */
qiao_status *qiao_grammar_matcher_accept_token(qiao_grammar_matcher *matcher, int32_t token);

/* True when what was accepted is a complete sentence of the grammar. */
bool qiao_grammar_matcher_can_end(const qiao_grammar_matcher *matcher);
/* True when no further byte is possible (only the end is). */
bool qiao_grammar_matcher_must_end(const qiao_grammar_matcher *matcher);
/* True once an END token was accepted. */
bool qiao_grammar_matcher_ended(const qiao_grammar_matcher *matcher);

/* The tokens allowed next: a bitmask of (vocab + 31) / 32 words, bit
 * (t % 32) of word t / 32 set when token t is allowed. *out_mask points into
 * the matcher and stays valid until the next call on it. QIAO_INVALID_ARGUMENT
 * when the matcher has no trie. At least one token is allowed unless the
 * output has ended or the vocabulary cannot continue the grammar. */
qiao_status *qiao_grammar_matcher_mask(qiao_grammar_matcher *matcher, const uint32_t **out_mask);

#ifdef __cplusplus
}
#endif
#endif
