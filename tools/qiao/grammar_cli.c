/* --json-schema / --grammar for qiao run and qiao chat. */
#include "grammar_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/status_internal.h"

int grammar_cli_parse_flag(const char **schema_path, const char **grammar_path, int argc,
                           char **argv, int *i) {
  const char *a = argv[*i];
  const char **dst = strcmp(a, "--json-schema") == 0 ? schema_path
                     : strcmp(a, "--grammar") == 0   ? grammar_path
                                                     : NULL;
  if (dst == NULL) return 0;
  if ((*dst = qiao_cli_flag_value(argc, argv, i)) == NULL) return -1;
  return 1;
}

void grammar_cli_print_flags(FILE *f) {
  fprintf(f, "  --json-schema FILE    constrain the output to JSON valid against the schema\n"
             "  --grammar FILE        constrain the output to a GBNF grammar (rule 'root')\n");
}

static qiao_status *read_file(const char *path, char **out, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return qiao__error(QIAO_NOT_FOUND, "%s: cannot open", path);
  char *buf = malloc(QIAO_GRAMMAR_MAX_TEXT + 1);
  size_t n = buf ? fread(buf, 1, QIAO_GRAMMAR_MAX_TEXT + 1, f) : 0;
  bool err = ferror(f) != 0;
  fclose(f);
  if (buf == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", path);
  if (err) {
    free(buf);
    return qiao__error(QIAO_IO, "%s: read failed", path);
  }
  if (n > QIAO_GRAMMAR_MAX_TEXT) {
    free(buf);
    return qiao__error(QIAO_LIMIT, "%s: more than %u bytes", path, QIAO_GRAMMAR_MAX_TEXT);
  }
  *out = buf;
  *out_len = n;
  return NULL;
}

qiao_status *grammar_cli_open(const char *schema_path, const char *grammar_path,
                              const qiao_tokenizer *tokenizer, uint32_t model_vocab,
                              grammar_cli *g) {
  return grammar_cli_open_after(schema_path, grammar_path, NULL, tokenizer, model_vocab, g);
}

/* root ::= thought answer, answer being the schema. */
static qiao_status *compile_schema_after(const char *before, const char *schema, size_t len,
                                         qiao_grammar **out) {
  const char *root = "root ::= thought answer\n";
  size_t n = strlen(before) + strlen(root);
  char *text = malloc(n + 1);
  if (text == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  snprintf(text, n + 1, "%s%s", before, root);
  qiao_grammar_schema_rule answer = {"answer", schema, len};
  qiao_status *st = qiao_grammar_compile_gbnf_with_schemas(text, n, NULL, &answer, 1, out);
  free(text);
  return st;
}

qiao_status *grammar_cli_open_after(const char *schema_path, const char *grammar_path,
                                    const char *schema_before, const qiao_tokenizer *tokenizer,
                                    uint32_t model_vocab, grammar_cli *g) {
  memset(g, 0, sizeof(*g));
  if (schema_path == NULL && grammar_path == NULL) return NULL;
  if (schema_path != NULL && grammar_path != NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "give --json-schema or --grammar, not both");
  if (tokenizer == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "--json-schema / --grammar need a tokenizer");
  const char *path = schema_path ? schema_path : grammar_path;
  char *text = NULL;
  size_t len = 0;
  QIAO__TRY(read_file(path, &text, &len));
  qiao_status *st = schema_path == NULL ? qiao_grammar_compile_gbnf(text, len, NULL, &g->grammar)
                    : schema_before ? compile_schema_after(schema_before, text, len, &g->grammar)
                                    : qiao_grammar_compile_json_schema(text, len, &g->grammar);
  free(text);
  if (st != NULL) return qiao__annotate(st, "%s", path);
  g->model_vocab = model_vocab;
  st = qiao_token_trie_from_tokenizer(tokenizer, &g->trie);
  if (st == NULL) st = qiao_grammar_matcher_create(g->grammar, g->trie, &g->matcher);
  if (st == NULL && (g->mask = calloc((model_vocab + 31) / 32, sizeof(uint32_t))) == NULL)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  if (st != NULL) grammar_cli_close(g);
  return st;
}

void grammar_cli_close(grammar_cli *g) {
  qiao_grammar_matcher_destroy(g->matcher);
  qiao_token_trie_destroy(g->trie);
  qiao_grammar_destroy(g->grammar);
  free(g->mask);
  memset(g, 0, sizeof(*g));
}

qiao_status *grammar_cli_mask(grammar_cli *g, const uint32_t **out_mask) {
  const uint32_t *m = NULL;
  QIAO__TRY(qiao_grammar_matcher_mask(g->matcher, &m));
  /* The model's vocabulary may be padded past the tokenizer's: those ids
   * are never allowed. */
  uint32_t tv = qiao_token_trie_vocab_size(g->trie);
  uint32_t n = tv < g->model_vocab ? tv : g->model_vocab;
  uint32_t words = (g->model_vocab + 31) / 32, full = n / 32;
  memcpy(g->mask, m, full * sizeof(uint32_t));
  memset(g->mask + full, 0, (words - full) * sizeof(uint32_t));
  if (n % 32) g->mask[full] = m[full] & ((1u << (n % 32)) - 1);
  *out_mask = g->mask;
  return NULL;
}
