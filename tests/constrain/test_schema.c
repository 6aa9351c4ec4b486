/* JSON Schema and GBNF compilation, keyword by keyword: valid texts are
 * accepted in full, invalid ones refused (at some byte or by not being
 * complete), unsupported keywords refused by name, hostile inputs refused
 * or compiled within bounded time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qiao/grammar.h"
#include "test_util.h"
#include "validate.h"

/* True when `text` is a complete sentence of g. */
static bool accepts(qiao_grammar *g, const char *text) {
  qiao_grammar_matcher *m = NULL;
  qiao_status *st = qiao_grammar_matcher_create(g, NULL, &m);
  if (st != NULL) {
    fprintf(stderr, "matcher: %s\n", qiao_status_message(st));
    qiao_status_free(st);
    return false;
  }
  st = qiao_grammar_matcher_accept_bytes(m, text, strlen(text));
  bool ok = st == NULL && qiao_grammar_matcher_can_end(m);
  qiao_status_free(st);
  qiao_grammar_matcher_destroy(m);
  return ok;
}

static qiao_grammar *schema(const char *text) {
  qiao_grammar *g = NULL;
  qiao_status *st = qiao_grammar_compile_json_schema(text, strlen(text), &g);
  if (st != NULL) {
    fprintf(stderr, "schema %s: %s\n", text, qiao_status_message(st));
    qiao_status_free(st);
    test_failures++;
  }
  return g;
}

/* Each schema with texts that must pass and texts that must not. */
typedef struct kcase {
  const char *schema;
  const char *good[6];
  const char *bad[6];
} kcase;

static const kcase CASES[] = {
    {"{\"type\":\"string\"}",
     {"\"\"", "\"a b\"", "\"\\n\\u00e9\\\"\"", "\"\xc3\xa9\xe2\x82\xac\""},
     {"1", "\"a", "\"\n\"", "\"\\q\"", "'a'"}},
    {"{\"type\":\"integer\"}", {"0", "-12", "1234567890"}, {"01", "1.5", "-", "+1", "1e3"}},
    {"{\"type\":\"number\"}", {"0", "-1.25", "3e10", "2.5E-3"}, {"1.", ".5", "01", "1e"}},
    {"{\"type\":\"boolean\"}", {"true", "false"}, {"True", "1", "null"}},
    {"{\"type\":\"null\"}", {"null"}, {"nil", "0"}},
    {"{\"type\":[\"string\",\"null\"]}", {"null", "\"x\""}, {"1", "false"}},
    {"{\"type\":[\"string\",\"null\",\"integer\"],\"maxLength\":2,\"minimum\":3}",
     {"null", "\"ab\"", "7"},
     {"\"abc\"", "2", "false"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}"
     "},"
     "\"required\":[\"a\"]}",
     {"{\"a\":1}", "{ \"a\" : 1 , \"b\" : \"x\" }", "{\"a\":-3,\"b\":\"\"}"},
     {"{}", "{\"b\":\"x\"}", "{\"a\":1,\"c\":2}", "{\"a\":\"1\"}", "{\"a\":1,}"}},
    {"{\"type\":\"object\",\"properties\":{\"x\":{},\"y\":{},\"z\":{}}}",
     {"{}", "{\"y\":1}", "{\"x\":1,\"z\":[]}", "{\"x\":null,\"y\":{},\"z\":\"s\"}"},
     {"{,}", "{\"y\":1,}", "{\"w\":1}", "{\"x\":1 \"y\":2}"}},
    {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}",
     {"{}", "{\"k\":1,\"j\":2}"},
     {"{\"k\":\"v\"}", "{\"k\":1,}"}},
    {"{\"type\":\"object\",\"additionalProperties\":false}", {"{}", "{ }"}, {"{\"a\":1}"}},
    {"{\"enum\":[\"red\",\"green\",3,null]}",
     {"\"red\"", "\"green\"", "3", "null"},
     {"\"blue\"", "\"Red\"", "4"}},
    {"{\"const\":{\"k\":[1,2]}}", {"{\"k\":[1,2]}"}, {"{\"k\":[1,2,3]}", "{\"k\": [1,2]}"}},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}",
     {"[1,2]", "[1, 2, 3]", "[ 1 ,2 ]"},
     {"[]", "[1]", "[1,2,3,4]", "[1,\"2\"]"}},
    {"{\"type\":\"array\"}", {"[]", "[1,\"a\",[null],{}]"}, {"[1,]", "[,]"}},
    {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
     {"\"ab\"", "\"abc\"", "\"\xc3\xa9\xc3\xa9\""},
     {"\"a\"", "\"abcd\""}},
    {"{\"type\":\"string\",\"pattern\":\"^[a-z]+\\\\d{2}$\"}",
     {"\"ab12\"", "\"z00\""},
     {"\"ab1\"", "\"AB12\"", "\"ab123\"", "\"12\""}},
    {"{\"type\":\"string\",\"pattern\":\"fo+\"}", {"\"foo\"", "\"xxfoyy\""}, {"\"f\"", "\"ofx\""}},
    {"{\"type\":\"string\",\"pattern\":\"^(cat|dog)s?$\"}",
     {"\"cat\"", "\"dogs\""},
     {"\"cow\"", "\"cats!\""}},
    {"{\"type\":\"string\",\"pattern\":\"^a\\\"b\\\\\\\\c$\"}",
     {"\"a\\\"b\\\\c\""},
     {"\"a\"b\\c\""}},
    {"{\"type\":\"string\",\"format\":\"date\"}",
     {"\"2024-02-29\"", "\"1999-12-31\""},
     {"\"2024-13-01\"", "\"2024-1-01\"", "\"24-01-01\""}},
    {"{\"type\":\"string\",\"format\":\"uuid\"}",
     {"\"123e4567-e89b-12d3-a456-426614174000\""},
     {"\"123e4567e89b12d3a456426614174000\"", "\"g23e4567-e89b-12d3-a456-426614174000\""}},
    {"{\"type\":\"string\",\"format\":\"date-time\"}",
     {"\"2024-05-06T07:08:09Z\"", "\"2024-05-06T07:08:09.5+02:00\""},
     {"\"2024-05-06 07:08:09Z\"", "\"2024-05-06T25:08:09Z\""}},
    {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":123}",
     {"5", "9", "10", "99", "100", "123"},
     {"4", "124", "200", "1000", "-5", "0"}},
    {"{\"type\":\"integer\",\"minimum\":-50,\"exclusiveMaximum\":-3}",
     {"-50", "-4", "-10"},
     {"-3", "-51", "0", "4", "-100"}},
    {"{\"type\":\"integer\",\"exclusiveMinimum\":0}", {"1", "42", "1000000"}, {"0", "-1"}},
    {"{\"type\":\"number\",\"minimum\":0}", {"0", "0.5", "12"}, {"-1", "-0.5"}},
    {"{\"type\":\"number\",\"exclusiveMinimum\":0}", {"0.001", "3", "150.5"}, {"0", "0.000", "-2"}},
    {"{\"type\":\"number\",\"minimum\":0,\"maximum\":1}",
     {"0", "0.25", "1", "1.000", "0.999"},
     {"1.01", "2", "-0.1", "1e0"}},
    {"{\"type\":\"number\",\"minimum\":-10,\"exclusiveMaximum\":-2}",
     {"-10", "-2.5", "-9.99", "-3"},
     {"-2", "-1.5", "-10.5", "0"}},
    {"{\"type\":\"number\",\"exclusiveMinimum\":-1,\"maximum\":2}",
     {"-0.5", "0", "2", "1.75", "-0.999"},
     {"-1", "-1.5", "2.5"}},
    {"{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":1}]}",
     {"5", "\"x\""},
     {"\"xy\"", "true"}},
    {"{\"oneOf\":[{\"const\":1},{\"const\":\"one\"}]}", {"1", "\"one\""}, {"2"}},
    {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
     "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
     "\"$ref\":\"#/$defs/node\"}",
     {"{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4}]}]}"},
     {"{\"v\":1,\"kids\":[{}]}", "{\"kids\":[]}"}},
    {"{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#\"}}}",
     {"{}", "{\"next\":{\"next\":{}}}"},
     {"{\"next\":1}"}},
    {"{}", {"1", "{\"a\":[true,null,\"s\"]}", "\"x\""}, {"{a:1}", "tru"}},
};

static void test_keywords(void) {
  for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
    qiao_grammar *g = schema(CASES[i].schema);
    if (g == NULL) continue;
    for (int k = 0; k < 6 && CASES[i].good[k]; k++)
      if (!accepts(g, CASES[i].good[k])) {
        fprintf(stderr, "schema %s refused %s\n", CASES[i].schema, CASES[i].good[k]);
        test_failures++;
      }
    for (int k = 0; k < 6 && CASES[i].bad[k]; k++)
      if (accepts(g, CASES[i].bad[k])) {
        fprintf(stderr, "schema %s accepted %s\n", CASES[i].schema, CASES[i].bad[k]);
        test_failures++;
      }
    qiao_grammar_destroy(g);
  }
}

/* Unsupported keywords are refused with their name in the message. */
static void test_unsupported(void) {
  static const char *const cases[][2] = {
      {"{\"type\":\"integer\",\"multipleOf\":3}", "multipleOf"},
      {"{\"type\":\"object\",\"patternProperties\":{}}", "patternProperties"},
      {"{\"not\":{\"type\":\"string\"}}", "not"},
      {"{\"if\":{},\"then\":{}}", "if"},
      {"{\"type\":\"string\",\"format\":\"email\"}", "email"},
      {"{\"type\":\"array\",\"uniqueItems\":true}", "uniqueItems"},
      {"{\"type\":\"array\",\"prefixItems\":[]}", "prefixItems"},
      {"{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", "backreference"},
      {"{\"type\":\"string\",\"pattern\":\"a(?=b)\"}", "lookaround"},
      {"{\"type\":\"number\",\"maximum\":3.5}", "maximum"},
      {"{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":true}",
       "additionalProperties"},
      {"{\"allOf\":[{},{}]}", "allOf"},
      {"{\"type\":[\"string\",\"null\"],\"minimum\":1}", "minimum"},
      {"{\"$ref\":\"http://example.com/s.json\"}", "$ref"},
      {"{\"type\":\"string\",\"minLength\":1,\"pattern\":\"a\"}", "minLength"},
      {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"contentEncoding\":"
       "\"base64\"}}}",
       "contentEncoding"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    qiao_grammar *g = NULL;
    qiao_status *st = qiao_grammar_compile_json_schema(cases[i][0], strlen(cases[i][0]), &g);
    if (qiao_status_code(st) != QIAO_UNSUPPORTED ||
        strstr(qiao_status_message(st), cases[i][1]) == NULL) {
      fprintf(stderr, "schema %s: expected unsupported naming %s, got %s: %s\n", cases[i][0],
              cases[i][1], qiao_code_name(qiao_status_code(st)), qiao_status_message(st));
      test_failures++;
    }
    CHECK(g == NULL);
    qiao_status_free(st);
    qiao_grammar_destroy(g);
  }
  /* The path of the offending node is named too. */
  const char *s = "{\"properties\":{\"deep\":{\"items\":{\"foo\":1}}}}";
  qiao_grammar *g = NULL;
  qiao_status *st = qiao_grammar_compile_json_schema(s, strlen(s), &g);
  CHECK(st != NULL && strstr(qiao_status_message(st), "/properties/deep/items") != NULL);
  qiao_status_free(st);
  /* Malformed. */
  static const char *const bad[] = {"{",
                                    "[]",
                                    "{\"type\":\"strin\"}",
                                    "{\"type\":\"string\"} x",
                                    "{\"minItems\":-1}",
                                    "{\"$ref\":\"#/$defs/none\"}",
                                    "{\"enum\":[]}",
                                    "{\"required\":\"a\"}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    qiao_grammar *b = NULL;
    qiao_status *e = qiao_grammar_compile_json_schema(bad[i], strlen(bad[i]), &b);
    if (e == NULL) {
      fprintf(stderr, "malformed schema %s compiled\n", bad[i]);
      test_failures++;
    }
    qiao_status_free(e);
    qiao_grammar_destroy(b);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Hostile schemas: refused with QIAO_LIMIT, or compiled and matched in
 * bounded time. */
static void test_hostile(void) {
  double t0 = now();
  /* Nesting deeper than the limit. */
  size_t n = 200;
  char *deep = malloc(n * 12 + 64);
  size_t w = 0;
  for (size_t i = 0; i < n; i++)
    w += (size_t)sprintf(deep + w, "{\"items\":");
  w += (size_t)sprintf(deep + w, "{}");
  for (size_t i = 0; i < n; i++)
    deep[w++] = '}';
  qiao_grammar *g = NULL;
  CHECK_ERR(qiao_grammar_compile_json_schema(deep, w, &g), QIAO_LIMIT);
  free(deep);
  /* A huge enum. */
  char *big = malloc(200000);
  w = (size_t)sprintf(big, "{\"enum\":[");
  for (int i = 0; i < 5000; i++)
    w += (size_t)sprintf(big + w, "%s%d", i ? "," : "", i);
  w += (size_t)sprintf(big + w, "]}");
  CHECK_ERR(qiao_grammar_compile_json_schema(big, w, &g), QIAO_LIMIT);
  free(big);
  /* Huge counts. */
  const char *counts = "{\"type\":\"string\",\"maxLength\":100000000}";
  CHECK_ERR(qiao_grammar_compile_json_schema(counts, strlen(counts), &g), QIAO_LIMIT);
  const char *nested_rep = "{\"type\":\"string\",\"pattern\":\"^((a{1000}){1000}){1000}$\"}";
  qiao_status *st = qiao_grammar_compile_json_schema(nested_rep, strlen(nested_rep), &g);
  CHECK(st == NULL || qiao_status_code(st) == QIAO_LIMIT);
  qiao_status_free(st);
  qiao_grammar_destroy(g);
  g = NULL;
  /* Catastrophic patterns: refused (nullable loops) or matched in linear-ish time. */
  const char *nullable_loop = "{\"type\":\"string\",\"pattern\":\"^(a*)*b$\"}";
  st = qiao_grammar_compile_json_schema(nullable_loop, strlen(nullable_loop), &g);
  CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED);
  qiao_status_free(st);
  const char *ambiguous = "{\"type\":\"string\",\"pattern\":\"^(a|aa|aaa)+(a+)+b$\"}";
  g = schema(ambiguous);
  if (g != NULL) {
    char text[2100];
    text[0] = '"';
    memset(text + 1, 'a', 2000);
    strcpy(text + 2001, "b\"");
    double t1 = now();
    CHECK(accepts(g, text));
    text[2001] = 'c';
    CHECK(!accepts(g, text));
    CHECK(now() - t1 < 5.0);
    qiao_grammar_destroy(g);
  }
  /* Deeply nested output of a recursive schema hits the matcher's depth
   * limit as an error, not a crash. */
  g = schema("{}");
  if (g != NULL) {
    size_t depth = 5000;
    char *arr = malloc(depth * 2 + 1);
    memset(arr, '[', depth);
    memset(arr + depth, ']', depth);
    arr[depth * 2] = '\0';
    qiao_grammar_matcher *m = NULL;
    CHECK_OK(qiao_grammar_matcher_create(g, NULL, &m));
    if (m != NULL) CHECK_ERR(qiao_grammar_matcher_accept_bytes(m, arr, depth * 2), QIAO_LIMIT);
    qiao_grammar_matcher_destroy(m);
    free(arr);
    qiao_grammar_destroy(g);
  }
  /* Text over the limit. */
  CHECK_ERR(qiao_grammar_compile_json_schema("{}", QIAO_GRAMMAR_MAX_TEXT + 1, &g), QIAO_LIMIT);
  CHECK(now() - t0 < 30.0);
}

static void test_gbnf(void) {
  const char *text = "# a tiny language\n"
                     "root ::= greeting (\" \" name)? \"!\"{1,3}\n"
                     "greeting ::= \"hi\" | \"hello\"\n"
                     "  | \"hey\"\n"
                     "name ::= [A-Z] [a-z\\u00e0-\\u00ff]* | \"\\u4e16\\u754c\"\n";
  qiao_grammar *g = NULL;
  CHECK_OK(qiao_grammar_compile_gbnf(text, strlen(text), NULL, &g));
  if (g != NULL) {
    CHECK(accepts(g, "hi!"));
    CHECK(accepts(g, "hello Bob!!"));
    CHECK(accepts(g, "hey Andr\xc3\xa9!!!"));
    CHECK(accepts(g, "hi \xe4\xb8\x96\xe7\x95\x8c!"));
    CHECK(!accepts(g, "hi"));
    CHECK(!accepts(g, "hi!!!!"));
    CHECK(!accepts(g, "hello bob!"));
    CHECK(!accepts(g, "hi \xe4\xb8\x96!"));
    qiao_grammar_destroy(g);
  }
  const char *negated = "root ::= [^a-c\\n]+ \".\"";
  CHECK_OK(qiao_grammar_compile_gbnf(negated, strlen(negated), "root", &g));
  if (g != NULL) {
    CHECK(accepts(g, "xyz\xf0\x9f\x98\x80."));
    CHECK(!accepts(g, "xaz."));
    CHECK(!accepts(g, "\xed\xa0\x80.")); /* a surrogate is not a code point */
    qiao_grammar_destroy(g);
  }
  const char *left = "root ::= root \"a\" | \"b\"";
  CHECK_ERR(qiao_grammar_compile_gbnf(left, strlen(left), NULL, &g), QIAO_UNSUPPORTED);
  const char *indirect = "root ::= x \"a\"\nx ::= y? root\ny ::= \"c\"";
  CHECK_ERR(qiao_grammar_compile_gbnf(indirect, strlen(indirect), NULL, &g), QIAO_UNSUPPORTED);
  const char *undef = "root ::= missing";
  CHECK_ERR(qiao_grammar_compile_gbnf(undef, strlen(undef), NULL, &g), QIAO_MALFORMED);
  const char *twice = "root ::= \"a\"\nroot ::= \"b\"";
  CHECK_ERR(qiao_grammar_compile_gbnf(twice, strlen(twice), NULL, &g), QIAO_MALFORMED);
  const char *noroot = "start ::= \"a\"";
  CHECK_ERR(qiao_grammar_compile_gbnf(noroot, strlen(noroot), NULL, &g), QIAO_MALFORMED);
  const char *unterminated = "root ::= \"a";
  CHECK_ERR(qiao_grammar_compile_gbnf(unterminated, strlen(unterminated), NULL, &g),
            QIAO_MALFORMED);
  /* Refusal in the middle leaves the matcher as it was. */
  const char *ab = "root ::= \"ab\" \"c\"*";
  CHECK_OK(qiao_grammar_compile_gbnf(ab, strlen(ab), NULL, &g));
  if (g != NULL) {
    qiao_grammar_matcher *m = NULL;
    CHECK_OK(qiao_grammar_matcher_create(g, NULL, &m));
    CHECK_OK(qiao_grammar_matcher_accept_bytes(m, "a", 1));
    CHECK_ERR(qiao_grammar_matcher_accept_bytes(m, "bx", 2), QIAO_INVALID_ARGUMENT);
    CHECK(!qiao_grammar_matcher_can_end(m));
    CHECK_OK(qiao_grammar_matcher_accept_bytes(m, "bcc", 3));
    CHECK(qiao_grammar_matcher_can_end(m) && !qiao_grammar_matcher_must_end(m));
    qiao_grammar_matcher_destroy(m);
    qiao_grammar_destroy(g);
  }
  qiao_grammar_destroy(NULL);
  /* Hostile grammars: nesting and counts past the limits. */
  char deep[400];
  size_t w = (size_t)sprintf(deep, "root ::= ");
  for (int i = 0; i < 100; i++)
    deep[w++] = '(';
  deep[w++] = '"';
  deep[w++] = 'a';
  deep[w++] = '"';
  for (int i = 0; i < 100; i++)
    deep[w++] = ')';
  CHECK_ERR(qiao_grammar_compile_gbnf(deep, w, NULL, &g), QIAO_LIMIT);
  const char *count = "root ::= \"a\"{5,100000}";
  CHECK_ERR(qiao_grammar_compile_gbnf(count, strlen(count), NULL, &g), QIAO_LIMIT);
  /* Exponential nullable expansions are cut by the expansion budget. */
  const char *blowup = "root ::= ((\"a\"?){1000}){1000} \"b\"";
  qiao_status *st = qiao_grammar_compile_gbnf(blowup, strlen(blowup), NULL, &g);
  if (st == NULL) {
    qiao_grammar_matcher *m = NULL;
    CHECK_ERR(qiao_grammar_matcher_create(g, NULL, &m), QIAO_LIMIT);
    qiao_grammar_destroy(g);
  } else {
    CHECK(qiao_status_code(st) == QIAO_LIMIT);
    qiao_status_free(st);
  }
  /* GBNF with rules given as JSON Schemas (how tool calls are built). */
  const char *call = "root ::= \"<call>\" args \"</call>\"";
  const char *params = "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}},"
                       "\"required\":[\"n\"]}";
  qiao_grammar_schema_rule rule = {"args", params, strlen(params)};
  CHECK_OK(qiao_grammar_compile_gbnf_with_schemas(call, strlen(call), NULL, &rule, 1, &g));
  if (g != NULL) {
    CHECK(accepts(g, "<call>{\"n\": 3}</call>"));
    CHECK(!accepts(g, "<call>{\"n\": \"3\"}</call>"));
    CHECK(!accepts(g, "<call>{}</call>"));
    qiao_grammar_destroy(g);
  }
  const char *bad_params = "{\"type\":\"object\",\"dependentRequired\":{}}";
  qiao_grammar_schema_rule bad_rule = {"args", bad_params, strlen(bad_params)};
  st = qiao_grammar_compile_gbnf_with_schemas(call, strlen(call), NULL, &bad_rule, 1, &g);
  CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED &&
        strstr(qiao_status_message(st), "dependentRequired") != NULL &&
        strstr(qiao_status_message(st), "args") != NULL);
  qiao_status_free(st);
  qiao_grammar_schema_rule bad_name = {"no spaces", params, strlen(params)};
  CHECK_ERR(qiao_grammar_compile_gbnf_with_schemas(call, strlen(call), NULL, &bad_name, 1, &g),
            QIAO_INVALID_ARGUMENT);
}

/* Masks over a small vocabulary equal a brute-force check of every token. */
static void test_mask_small(void) {
  const char *toks[] = {"{",   "}",   "\"", "a", "\"a",  "\":",  "1", "12",  ",",  " ",
                        "{\"", "b\"", "",   "x", "\xc3", "\xa9", ":", "n\"", "2}", "<eos>"};
  size_t n = sizeof(toks) / sizeof(toks[0]);
  size_t lens[32];
  uint8_t kinds[32];
  for (size_t i = 0; i < n; i++) {
    lens[i] = strlen(toks[i]);
    kinds[i] = QIAO_TOKEN_TEXT;
  }
  kinds[n - 1] = QIAO_TOKEN_END;
  qiao_token_trie *trie = NULL;
  CHECK_OK(qiao_token_trie_create((uint32_t)n, toks, lens, kinds, &trie));
  qiao_grammar *g = schema("{\"type\":\"object\",\"properties\":{\"ab\":{\"type\":\"string\"},"
                           "\"n\":{\"type\":\"integer\"}}}");
  if (trie == NULL || g == NULL) return;
  qiao_grammar_matcher *m = NULL, *probe = NULL;
  CHECK_OK(qiao_grammar_matcher_create(g, trie, &m));
  CHECK_OK(qiao_grammar_matcher_create(g, trie, &probe));
  /* Walk one path, comparing each mask with trying every token. */
  /* {" a b" : " \xc3 \xa9 " , ' ' " n" : 1 2} <eos> */
  const int32_t ids[] = {10, 3, 11, 16, 2, 14, 15, 2, 8, 9, 2, 17, 16, 6, 18, 19};
  char sofar[256] = "";
  size_t sofar_len = 0;
  for (size_t step = 0; step <= sizeof(ids) / sizeof(ids[0]); step++) {
    const uint32_t *mask = NULL;
    CHECK_OK(qiao_grammar_matcher_mask(m, &mask));
    for (uint32_t t = 0; t < n && mask != NULL; t++) {
      qiao_grammar_matcher_reset(probe);
      qiao_status *st = qiao_grammar_matcher_accept_bytes(probe, sofar, sofar_len);
      CHECK(st == NULL);
      qiao_status_free(st);
      st = qiao_grammar_matcher_accept_token(probe, (int32_t)t);
      bool ok = st == NULL;
      qiao_status_free(st);
      bool bit = (mask[t / 32] >> (t % 32)) & 1;
      if (bit != ok) {
        fprintf(stderr, "step %zu token %u '%s': mask %d, brute force %d\n", step, t, toks[t], bit,
                ok);
        test_failures++;
      }
    }
    if (step == sizeof(ids) / sizeof(ids[0])) break;
    CHECK_OK(qiao_grammar_matcher_accept_token(m, ids[step]));
    if (kinds[ids[step]] == QIAO_TOKEN_END) {
      CHECK(qiao_grammar_matcher_ended(m) && step + 1 == sizeof(ids) / sizeof(ids[0]));
      break;
    }
    memcpy(sofar + sofar_len, toks[ids[step]], lens[ids[step]]);
    sofar_len += lens[ids[step]];
  }
  qiao_grammar_matcher_destroy(m);
  qiao_grammar_matcher_destroy(probe);
  qiao_grammar_destroy(g);
  qiao_token_trie_destroy(trie);
}

/* oneOf: compiled when its branches are provably disjoint (then every
 * accepted text validates against exactly one branch, checked by the
 * independent validator), refused naming oneOf, its path and two branches
 * that can both match otherwise. */
#define ANIMAL(kind, extra)                                                                        \
  "{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"" kind "\"}," extra                  \
  "},\"required\":[\"kind\"]}"
static void test_one_of(void) {
  static const struct {
    const char *schema;
    const char *good[5], *bad[5];
  } ok[] = {
      {"{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"},{\"type\":\"null\"}]}",
       {"\"a\"", "7", "null"},
       {"1.5", "true"}},
      {"{\"oneOf\":[{\"enum\":[\"a\",\"b\"]},{\"enum\":[\"c\",1]},{\"const\":1.5}]}",
       {"\"a\"", "\"c\"", "1", "1.5"},
       {"\"d\"", "2"}},
      /* a discriminator: a required property with distinct const values */
      {"{\"oneOf\":[" ANIMAL("cat", "\"lives\":{\"type\":\"integer\"}") "," ANIMAL(
           "dog", "\"bark\":{\"type\":\"string\"}") "]}",
       {"{\"kind\":\"cat\"}", "{\"kind\":\"cat\",\"lives\":9}",
        "{\"kind\":\"dog\",\"bark\":\"w\"}"},
       {"{\"kind\":\"cow\"}", "{\"kind\":\"cat\",\"bark\":\"w\"}", "{}"}},
      /* the same through $refs, nested in a property */
      {"{\"$defs\":{\"cat\":" ANIMAL("cat", "\"n\":{\"type\":\"integer\"}") ",\"dog\":" ANIMAL(
           "dog", "\"n\":{\"type\":\"string\"}") "},\"type\":\"object\",\"properties\":{\"pet\":{"
                                                 "\"oneOf\":[{\"$ref\":\"#/$defs/cat\"},{\"$ref\":"
                                                 "\"#/$defs/dog\"}]}},\"required\":[\"pet\"]}",
       {"{\"pet\":{\"kind\":\"dog\",\"n\":\"x\"}}", "{\"pet\":{\"kind\":\"cat\",\"n\":1}}"},
       {"{\"pet\":{\"kind\":\"dog\",\"n\":1}}"}},
      /* a property one branch requires and the other forbids */
      {"{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
       "\"required\":[\"a\"],\"additionalProperties\":false},{\"type\":\"object\",\"properties\":"
       "{\"b\":{\"type\":\"integer\"}},\"required\":[\"b\"],\"additionalProperties\":false}]}",
       {"{\"a\":1}", "{\"b\":2}"},
       {"{\"a\":1,\"b\":2}", "{}"}},
      /* a required property whose types differ */
      {"{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"string\"}},"
       "\"required\":[\"v\"]},{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"array\"}},"
       "\"required\":[\"v\"]}]}",
       {"{\"v\":\"s\"}", "{\"v\":[1]}"},
       {"{\"v\":1}"}},
      /* recursive: a tree of integers */
      {"{\"$defs\":{\"t\":{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"array\",\"items\":"
       "{\"$ref\":\"#/$defs/t\"}}]}},\"$ref\":\"#/$defs/t\"}",
       {"1", "[1,[2,[]]]"},
       {"[1.5]", "[\"a\"]"}},
      /* a const object that the other branch's discriminator excludes */
      {"{\"oneOf\":[{\"const\":{\"k\":2}}," ANIMAL("x", "\"k\":{\"const\":1}") "]}",
       {"{\"k\":2}", "{\"kind\":\"x\",\"k\":1}"},
       {"{\"k\":1}"}},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    qiao_grammar *g = schema(ok[i].schema);
    if (g == NULL) continue;
    for (int k = 0; k < 5 && ok[i].good[k]; k++) {
      char why[256] = "";
      if (!accepts(g, ok[i].good[k])) {
        fprintf(stderr, "oneOf schema %s refused %s\n", ok[i].schema, ok[i].good[k]);
        test_failures++;
      } else if (!v_check(ok[i].schema, ok[i].good[k], strlen(ok[i].good[k]), why, sizeof(why))) {
        fprintf(stderr, "oneOf schema %s: %s does not validate: %s\n", ok[i].schema, ok[i].good[k],
                why);
        test_failures++;
      }
    }
    for (int k = 0; k < 5 && ok[i].bad[k]; k++)
      if (accepts(g, ok[i].bad[k])) {
        fprintf(stderr, "oneOf schema %s accepted %s\n", ok[i].schema, ok[i].bad[k]);
        test_failures++;
      }
    qiao_grammar_destroy(g);
  }
  /* Branches that can both match: refused, naming the path and the pair
   * (the texts show an instance valid against both, which JSON Schema
   * rejects and anyOf would accept). */
  static const struct {
    const char *schema, *message, *both;
  } overlap[] = {
      {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}",
       "oneOf at /: branches 0 and 1 can both match", "3"},
      {"{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"string\",\"maxLength\":3}]}",
       "branches 0 and 1", "\"ab\""},
      {"{\"oneOf\":[{\"type\":\"null\"},{\"enum\":[\"a\",\"b\"]},{\"enum\":[\"b\",\"c\"]}]}",
       "branches 1 and 2", "\"b\""},
      {"{\"oneOf\":[{\"const\":1},{\"const\":1.0}]}", "branches 0 and 1", "1"},
      {"{\"type\":\"object\",\"properties\":{\"x\":{\"oneOf\":[{\"type\":\"object\","
       "\"properties\":{\"a\":{\"type\":\"integer\"}}},{\"type\":\"object\",\"properties\":{"
       "\"b\":{\"type\":\"integer\"}}}]}}}",
       "oneOf at /properties/x: branches 0 and 1", "{\"x\":{\"a\":1,\"b\":2}}"},
      {"{\"oneOf\":[" ANIMAL("x", "\"k\":{\"const\":1}") ",{\"const\":{\"kind\":\"x\",\"k\":1}}]}",
       "branches 0 and 1", "{\"kind\":\"x\",\"k\":1}"},
      {"{\"$defs\":{\"t\":{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"array\",\"items\":"
       "{\"$ref\":\"#/$defs/t\"}},{\"type\":\"number\"}]}},\"$ref\":\"#/$defs/t\"}",
       "oneOf at /$defs/t: branches 0 and 2", "[3]"},
  };
  for (size_t i = 0; i < sizeof(overlap) / sizeof(overlap[0]); i++) {
    char why[256] = "";
    CHECK(!v_check(overlap[i].schema, overlap[i].both, strlen(overlap[i].both), why, sizeof(why)));
    qiao_grammar *g = NULL;
    qiao_status *st =
        qiao_grammar_compile_json_schema(overlap[i].schema, strlen(overlap[i].schema), &g);
    const char *msg = st ? qiao_status_message(st) : "(compiled)";
    if (qiao_status_code(st) != QIAO_UNSUPPORTED || strstr(msg, overlap[i].message) == NULL ||
        strstr(msg, "exclusivity is not supported") == NULL) {
      fprintf(stderr, "oneOf schema %s: expected \"%s\", got %s\n", overlap[i].schema,
              overlap[i].message, msg);
      test_failures++;
    }
    CHECK(g == NULL);
    qiao_status_free(st);
    qiao_grammar_destroy(g);
  }
  /* Too many branches to compare pair by pair: refused, in bounded time. */
  size_t cap = 300 * 16 + 32, len = 0;
  char *big = malloc(cap);
  len += (size_t)snprintf(big + len, cap - len, "{\"oneOf\":[");
  for (int k = 0; k < 300; k++)
    len += (size_t)snprintf(big + len, cap - len, "%s{\"const\":%d}", k ? "," : "", k);
  snprintf(big + len, cap - len, "]}");
  qiao_grammar *g = NULL;
  qiao_status *st = qiao_grammar_compile_json_schema(big, strlen(big), &g);
  CHECK(qiao_status_code(st) == QIAO_LIMIT && strstr(qiao_status_message(st), "oneOf") != NULL);
  qiao_status_free(st);
  qiao_grammar_destroy(g);
  free(big);
}

int main(void) {
  test_keywords();
  test_one_of();
  test_unsupported();
  test_hostile();
  test_gbnf();
  test_mask_small();
  TEST_END();
}
