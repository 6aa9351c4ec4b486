/* Compiled grammars by their source text, shared between requests: the
 * same response_format schema or the same forced tool call compiles once,
 * and its requests share the grammar's cached token masks (grammar.h).
 * Process-wide, bounded (SERVE_GRAMMAR_CACHE grammars, least recently used
 * dropped), thread-safe. */
#ifndef QIAO_SERVE_GRAMMAR_CACHE_H
#define QIAO_SERVE_GRAMMAR_CACHE_H

#include <stddef.h>

#include "qiao/grammar.h"

#define SERVE_GRAMMAR_CACHE 16

/* A new reference to the grammar of a JSON Schema, compiled if not cached. */
qiao_status *serve_grammar_json_schema(const char *text, size_t len, qiao_grammar **out);
/* The same for a GBNF grammar with schema rules. */
qiao_status *serve_grammar_gbnf(const char *text, size_t len, const qiao_grammar_schema_rule *rules,
                                size_t n_rules, qiao_grammar **out);

#endif
