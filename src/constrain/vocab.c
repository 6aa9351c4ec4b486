/* A token trie from a tokenizer: the raw bytes of every token. */
#include <stdlib.h>

#include "constrain/grammar_internal.h"

qiao_status *qiao_token_trie_from_tokenizer(const qiao_tokenizer *tok, qiao_token_trie **out) {
  if (tok == NULL || out == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "token trie: NULL tokenizer or output");
  uint32_t n = qiao_tokenizer_vocab_size(tok);
  char **bytes = calloc(n ? n : 1, sizeof(char *));
  size_t *lens = calloc(n ? n : 1, sizeof(size_t));
  uint8_t *kinds = calloc(n ? n : 1, 1);
  char *blob = NULL;
  qiao_status *st = NULL;
  if (bytes == NULL || lens == NULL || kinds == NULL) {
    st = qiao__error(QIAO_OUT_OF_MEMORY, "token trie: out of memory");
    goto done;
  }
  /* Two passes: lengths, then bytes into one block. */
  size_t total = 0;
  for (uint32_t i = 0; i < n && st == NULL; i++) {
    st = qiao_tokenizer_token_bytes(tok, (int32_t)i, NULL, 0, &lens[i]);
    if (qiao_status_code(st) == QIAO_LIMIT) {
      qiao_status_free(st);
      st = NULL;
    }
    if (lens[i] > QIAO_GRAMMAR_MAX_TOKEN_BYTES) lens[i] = 0; /* NEVER: see the trie */
    total += lens[i];
  }
  if (st != NULL) goto done;
  blob = malloc(total ? total : 1);
  if (blob == NULL) {
    st = qiao__error(QIAO_OUT_OF_MEMORY, "token trie: out of memory");
    goto done;
  }
  size_t at = 0;
  for (uint32_t i = 0; i < n && st == NULL; i++) {
    size_t len = lens[i];
    bytes[i] = blob + at;
    if (len > 0) st = qiao_tokenizer_token_bytes(tok, (int32_t)i, blob + at, len, &lens[i]);
    at += len;
    kinds[i] = qiao_tokenizer_is_eos(tok, (int32_t)i)       ? QIAO_TOKEN_END
               : qiao_tokenizer_is_control(tok, (int32_t)i) ? QIAO_TOKEN_NEVER
                                                            : QIAO_TOKEN_TEXT;
  }
  if (st == NULL) st = qiao_token_trie_create(n, (const char *const *)bytes, lens, kinds, out);
done:
  free(bytes);
  free(lens);
  free(kinds);
  free(blob);
  return st;
}
