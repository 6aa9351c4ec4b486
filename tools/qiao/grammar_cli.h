/* --json-schema FILE / --grammar FILE for the generating commands (run,
 * chat): compiles the file and keeps the per-generation matcher. */
#ifndef QIAO_GRAMMAR_CLI_H
#define QIAO_GRAMMAR_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qiao/grammar.h"
#include "qiao/tokenizer.h"

typedef struct grammar_cli {
  qiao_grammar *grammar;
  qiao_token_trie *trie;
  qiao_grammar_matcher *matcher;
  uint32_t *mask; /* ((model_vocab + 31) / 32) */
  uint32_t model_vocab;
} grammar_cli;

/* Handles --json-schema FILE and --grammar FILE: returns 1 when argv[*i] was
 * one of them (consumed), 0 when not, -1 on a usage error (printed). */
int grammar_cli_parse_flag(const char **schema_path, const char **grammar_path, int argc,
                           char **argv, int *i);
void grammar_cli_print_flags(FILE *f);

/* Compiles the schema or grammar file (at most one may be given; neither:
 * g->grammar stays NULL) and, with a grammar, builds the trie and matcher
 * for `tokenizer` (required then). */
qiao_status *grammar_cli_open(const char *schema_path, const char *grammar_path,
                              const qiao_tokenizer *tokenizer, uint32_t model_vocab,
                              grammar_cli *g);
/* The same; with `schema_before` (GBNF rules defining `thought`, a reasoning
 * model's thinking), a --json-schema constrains what follows it. */
qiao_status *grammar_cli_open_after(const char *schema_path, const char *grammar_path,
                                    const char *schema_before, const qiao_tokenizer *tokenizer,
                                    uint32_t model_vocab, grammar_cli *g);
void grammar_cli_close(grammar_cli *g);

/* The allowed tokens over the model's vocabulary. */
qiao_status *grammar_cli_mask(grammar_cli *g, const uint32_t **out_mask);

#endif
