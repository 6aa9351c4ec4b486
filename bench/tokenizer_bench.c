/* Tokenizer speed on adversarial 1 MiB inputs (run on demand, not a test):
 * one repeated ASCII letter, one repeated CJK character, spaces, invalid
 * bytes, and ordinary mixed text, each encoded with every tokenizer given.
 * Long runs without a break are the cases where a naive BPE (rescanning all
 * pairs after every merge) or a backtracking pre-tokenizer regex goes
 * quadratic. Usage: bench_tokenizer [TOKENIZER...] (default: the Qwen3 and
 * LLaMA 2 tokenizers in $QIAO_SHARED). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qiao/tokenizer.h"

#define SIZE (1u << 20)

/* CPU time of this (single-threaded) process: the time on one core, which
 * stays meaningful on a loaded machine where wall time does not. */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fill(char *buf, const char *unit, size_t unit_len) {
  for (size_t i = 0; i + unit_len <= SIZE; i += unit_len)
    memcpy(buf + i, unit, unit_len);
}

int main(int argc, char **argv) {
  const char *shared = getenv("QIAO_SHARED");
  if (shared == NULL) shared = "../shared";
  char def[2][4096];
  snprintf(def[0], sizeof(def[0]), "%s/tokenizers/qwen3/tokenizer.json", shared);
  snprintf(def[1], sizeof(def[1]), "%s/models/llama2-tokenizer/tokenizer.model", shared);
  const char *paths[16] = {def[0], def[1]};
  int n_paths = 2;
  if (argc > 1) {
    n_paths = 0;
    for (int i = 1; i < argc && n_paths < 16; i++)
      paths[n_paths++] = argv[i];
  }
  char *buf = malloc(SIZE);
  static const char mixed[] =
      "The quick brown fox, 1234567 jumps; 中文的句子。 émoji 🦙\n  code(x) {}\t";
  struct {
    const char *name, *unit;
    size_t len;
  } inputs[] = {{"1 MiB of 'a'", "a", 1},
                {"1 MiB of one CJK char", "\xE4\xB8\xAD", 3},
                {"1 MiB of spaces", " ", 1},
                {"1 MiB of newlines", "\n", 1},
                {"1 MiB of invalid bytes", "\xFF\xC0\x80\xFE", 4},
                {"1 MiB of digits", "7", 1},
                {"1 MiB of mixed text", mixed, sizeof(mixed) - 1}};
  for (int p = 0; p < n_paths; p++) {
    qiao_tokenizer *t;
    double t0 = now();
    qiao_status *st = qiao_tokenizer_open(paths[p], &t);
    if (st != NULL) {
      fprintf(stderr, "error: %s\n", qiao_status_message(st));
      return 1;
    }
    printf("%s (loaded in %.2f s CPU)\n", paths[p], now() - t0);
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
      memset(buf, 'x', SIZE);
      fill(buf, inputs[k].unit, inputs[k].len);
      size_t len = SIZE - SIZE % inputs[k].len;
      qiao_encode_options o = {sizeof(o), false, true};
      int32_t *ids;
      size_t n;
      t0 = now();
      st = qiao_tokenizer_encode(t, buf, len, &o, &ids, &n);
      double enc = now() - t0;
      if (st != NULL) {
        fprintf(stderr, "error: %s\n", qiao_status_message(st));
        return 1;
      }
      char *text;
      size_t text_len;
      t0 = now();
      st = qiao_tokenizer_decode(t, ids, n, &text, &text_len);
      double dec = now() - t0;
      if (st != NULL) return 1;
      printf("  %-24s encode %6.3f s CPU (%8zu tokens, %5.1f MB/s)  decode %6.3f s\n",
             inputs[k].name, enc, n, (double)len / enc / 1e6, dec);
      free(text);
      free(ids);
    }
    qiao_tokenizer_destroy(t);
  }
  free(buf);
  return 0;
}
