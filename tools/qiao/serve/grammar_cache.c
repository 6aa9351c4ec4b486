/* The process-wide cache of compiled grammars (see grammar_cache.h). */
#include "grammar_cache.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define MAX_KEY (256u << 10) /* longer sources are compiled, not cached */

typedef struct entry {
  char *key; /* the source: a kind letter, then the text (and rules) */
  size_t key_len;
  qiao_grammar *grammar;
  uint64_t used;
} entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static entry cache[SERVE_GRAMMAR_CACHE];
static uint64_t clock_now;

/* A new reference to the cached grammar of `key`, or NULL. */
static qiao_grammar *lookup(const char *key, size_t len) {
  qiao_grammar *g = NULL;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < SERVE_GRAMMAR_CACHE && g == NULL; i++)
    if (cache[i].key != NULL && cache[i].key_len == len && memcmp(cache[i].key, key, len) == 0) {
      cache[i].used = ++clock_now;
      g = qiao_grammar_ref(cache[i].grammar);
    }
  pthread_mutex_unlock(&mu);
  return g;
}

static void insert(const char *key, size_t len, qiao_grammar *g) {
  char *copy = malloc(len);
  if (copy == NULL) return; /* not cached: nothing lost but speed */
  memcpy(copy, key, len);
  pthread_mutex_lock(&mu);
  entry *victim = &cache[0];
  for (int i = 0; i < SERVE_GRAMMAR_CACHE; i++) {
    if (cache[i].key == NULL) {
      victim = &cache[i];
      break;
    }
    if (cache[i].used < victim->used) victim = &cache[i];
  }
  free(victim->key);
  qiao_grammar_destroy(victim->grammar); /* requests using it keep their references */
  *victim = (entry){copy, len, qiao_grammar_ref(g), ++clock_now};
  pthread_mutex_unlock(&mu);
}

qiao_status *serve_grammar_json_schema(const char *text, size_t len, qiao_grammar **out) {
  serve_buf key = {0};
  bool cacheable =
      len < MAX_KEY && serve_buf_append(&key, "J", 1) && serve_buf_append(&key, text, len);
  qiao_grammar *g = cacheable ? lookup(key.data, key.len) : NULL;
  qiao_status *st = NULL;
  if (g == NULL) {
    st = qiao_grammar_compile_json_schema(text, len, &g);
    if (st == NULL && cacheable) insert(key.data, key.len, g);
  }
  serve_buf_free(&key);
  if (st == NULL) *out = g;
  return st;
}

qiao_status *serve_grammar_gbnf(const char *text, size_t len, const qiao_grammar_schema_rule *rules,
                                size_t n_rules, qiao_grammar **out) {
  serve_buf key = {0};
  bool cacheable = serve_buf_append(&key, "G", 1) && serve_buf_append(&key, text, len);
  for (size_t i = 0; i < n_rules && cacheable; i++)
    cacheable = serve_buf_append(&key, "\n\0", 2) &&
                serve_buf_append(&key, rules[i].name, strlen(rules[i].name)) &&
                serve_buf_append(&key, "\0", 1) &&
                serve_buf_append(&key, rules[i].schema, rules[i].schema_len);
  cacheable = cacheable && key.len < MAX_KEY;
  qiao_grammar *g = cacheable ? lookup(key.data, key.len) : NULL;
  qiao_status *st = NULL;
  if (g == NULL) {
    st = qiao_grammar_compile_gbnf_with_schemas(text, len, "root", rules, n_rules, &g);
    if (st == NULL && cacheable) insert(key.data, key.len, g);
  }
  serve_buf_free(&key);
  if (st == NULL) *out = g;
  return st;
}
