/* `qiao run` and `qiao chat` with --json-schema / --grammar on stories260K
 * (a real small model that knows nothing of JSON): every output parses and
 * validates (validate.h); a grammar's output is in its language; bad
 * schemas are refused naming the keyword. Runs $QIAO_BIN. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "validate.h"

static const char *SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120},\"day\":{\"type\":\"string\","
    "\"format\":\"date\"},\"pets\":{\"type\":\"array\",\"items\":{\"enum\":[\"cat\",\"dog\"]},"
    "\"maxItems\":3}},\"required\":[\"name\",\"age\",\"day\",\"pets\"],\"additionalProperties\":"
    "false}";

static char dir[64];

static void write_file(const char *name, const char *text, char *path, size_t cap) {
  snprintf(path, cap, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL || fputs(text, f) < 0) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  fclose(f);
}

/* Runs a shell command; stdout into out (NUL-terminated), returns the exit status. */
static int run(const char *cmd, char *out, size_t cap) {
  FILE *p = popen(cmd, "r");
  if (p == NULL) return -1;
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int rc = pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int main(void) {
  const char *bin = getenv("QIAO_BIN");
  if (bin == NULL) {
    fprintf(stderr, "QIAO_BIN is not set\n");
    return 1;
  }
  snprintf(dir, sizeof(dir), "/tmp/qiao-constrain-XXXXXX");
  if (mkdtemp(dir) == NULL) return 1;
  char model[4096];
  snprintf(model, sizeof(model), "%s", test_shared_path("models/stories260K/stories260K.gguf"));
  char schema_path[256], grammar_path[256], bad_path[256], cmd[8192];
  static char out[1 << 16];
  write_file("s.json", SCHEMA, schema_path, sizeof(schema_path));
  write_file("g.gbnf", "root ::= answer \".\"\nanswer ::= \"yes\" | \"no\" | \"maybe \" [0-9]\n",
             grammar_path, sizeof(grammar_path));
  write_file("bad.json", "{\"type\":\"integer\",\"multipleOf\":2}", bad_path, sizeof(bad_path));

  /* run --json-schema: several seeds and temperatures, always valid. */
  for (int seed = 1; seed <= 6; seed++) {
    snprintf(cmd, sizeof(cmd),
             "%s run -m %s -p 'Once upon a time' --no-echo -n 400 --seed %d --temp %s "
             "--json-schema %s 2>%s/err.txt",
             bin, model, seed, seed % 2 ? "1.0" : "0", schema_path, dir);
    int rc = run(cmd, out, sizeof(out));
    CHECK(rc == 0);
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '\n') /* run ends its output with a newline */
      out[--len] = '\0';
    char why[256] = "";
    if (!v_check(SCHEMA, out, len, why, sizeof(why))) {
      fprintf(stderr, "seed %d: invalid (%s): %s\n", seed, why, out);
      test_failures++;
    }
  }
  /* run --grammar */
  for (int seed = 1; seed <= 4; seed++) {
    snprintf(cmd, sizeof(cmd),
             "%s run -m %s -p 'Lily said' --no-echo --seed %d --temp 1 "
             "--grammar %s 2>/dev/null",
             bin, model, seed, grammar_path);
    CHECK(run(cmd, out, sizeof(out)) == 0);
    bool ok = !strcmp(out, "yes.\n") || !strcmp(out, "no.\n") ||
              (strlen(out) == 9 && !strncmp(out, "maybe ", 6) && out[6] >= '0' && out[6] <= '9' &&
               !strcmp(out + 7, ".\n"));
    if (!ok) {
      fprintf(stderr, "grammar output not in the language: '%s'\n", out);
      test_failures++;
    }
  }
  /* Refusals: the keyword is named; both flags at once. */
  snprintf(cmd, sizeof(cmd), "%s run -m %s -p x --json-schema %s 2>&1", bin, model, bad_path);
  CHECK(run(cmd, out, sizeof(out)) != 0 && strstr(out, "multipleOf") != NULL);
  snprintf(cmd, sizeof(cmd), "%s run -m %s -p x --json-schema %s --grammar %s 2>&1", bin, model,
           schema_path, grammar_path);
  CHECK(run(cmd, out, sizeof(out)) != 0 && strstr(out, "not both") != NULL);
  snprintf(cmd, sizeof(cmd), "%s run -m %s -p x --json-schema %s/none.json 2>&1", bin, model, dir);
  CHECK(run(cmd, out, sizeof(out)) != 0 && strstr(out, "none.json") != NULL);

  /* chat --json-schema: each reply (one per line) valid. */
  snprintf(cmd, sizeof(cmd),
           "printf 'hello\\ntell me more\\n' | %s chat -m %s -n 400 --seed 9 --temp 1 "
           "--json-schema %s 2>/dev/null",
           bin, model, schema_path);
  CHECK(run(cmd, out, sizeof(out)) == 0);
  int replies = 0;
  for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    /* a reply may span lines (pretty-printed); join until it parses */
    static char reply[1 << 16];
    snprintf(reply, sizeof(reply), "%s", line);
    char why[256];
    while (!v_check(SCHEMA, reply, strlen(reply), why, sizeof(why))) {
      char *next = strtok(NULL, "\n");
      if (next == NULL) break;
      size_t l = strlen(reply);
      snprintf(reply + l, sizeof(reply) - l, "\n%s", next);
    }
    if (v_check(SCHEMA, reply, strlen(reply), why, sizeof(why))) {
      replies++;
    } else {
      fprintf(stderr, "chat reply invalid (%s): %s\n", why, reply);
      test_failures++;
    }
  }
  CHECK(replies == 2);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  TEST_END();
}
