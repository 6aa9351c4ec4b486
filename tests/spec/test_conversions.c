/* qiao's conversions against the reference vectors of spec-tests/
 * conversions.txt (docs/spec/format.md §4.2), which the generator computes
 * from the specification's text: every f16, bf16, q8_0 and q4_0 result must
 * be bit for bit the same. argv[1]: spec-tests/conversions.txt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/dtype_convert.h"
#include "format/fp8.h"
#include "test_util.h"

static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Reads the 32 floats and the block bytes of a q8_0/q4_0 line. */
static int parse_block(char *rest, float *x, uint8_t *want, int bytes) {
  char *p = rest;
  for (int j = 0; j < 32; j++) {
    char *end;
    x[j] = float_of((uint32_t)strtoul(p, &end, 16));
    if (end == p) return 0;
    p = end;
  }
  p = strchr(p, '=');
  if (p == NULL) return 0;
  p++;
  for (int j = 0; j < bytes; j++) {
    char *end;
    want[j] = (uint8_t)strtoul(p, &end, 16);
    if (end == p) return 0;
    p = end;
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: spec_conversions conversions.txt\n");
    return 2;
  }
  FILE *f = fopen(argv[1], "r");
  CHECK(f != NULL);
  if (f == NULL) return 1;
  char line[1024];
  int n[4] = {0, 0, 0, 0}, n_e4m3 = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (line[0] == '#' || line[0] == '\n') continue;
    if (strncmp(line, "f16 ", 4) == 0 || strncmp(line, "bf16 ", 5) == 0) {
      bool bf = line[0] == 'b';
      unsigned in, want;
      CHECK(sscanf(line + (bf ? 5 : 4), "%x %x", &in, &want) == 2);
      uint16_t got = bf ? qiao__f32_to_bf16(float_of(in)) : qiao__f32_to_f16(float_of(in));
      if (got != want)
        fprintf(stderr, "%s %08x: got %04x, want %04x\n", bf ? "bf16" : "f16", in, got, want);
      CHECK(got == want);
      n[bf]++;
    } else if (strncmp(line, "q8_0 ", 5) == 0 || strncmp(line, "q4_0 ", 5) == 0) {
      bool q8 = line[1] == '8';
      int bytes = q8 ? 34 : 18;
      float x[32];
      uint8_t want[34], got[34];
      CHECK(parse_block(line + 5, x, want, bytes));
      qiao__dtype_from_f32(q8 ? QIAO_DTYPE_Q8_0 : QIAO_DTYPE_Q4_0, x, got, 32);
      if (memcmp(got, want, (size_t)bytes) != 0) {
        fprintf(stderr, "%s block %d differs:", q8 ? "q8_0" : "q4_0", n[q8 ? 2 : 3]);
        for (int j = 0; j < bytes; j++)
          fprintf(stderr, " %02x/%02x", got[j], want[j]);
        fprintf(stderr, "\n");
      }
      CHECK(memcmp(got, want, (size_t)bytes) == 0);
      n[q8 ? 2 : 3]++;
    } else if (strncmp(line, "e4m3v ", 6) == 0) { /* (1.2) a code's value */
      unsigned code, want;
      CHECK(sscanf(line + 6, "%x %x", &code, &want) == 2);
      float got = qiao__e4m3_to_f32((uint8_t)code), w = float_of(want);
      if (memcmp(&got, &w, 4) != 0) fprintf(stderr, "e4m3v %02x: got %g, want %g\n", code, got, w);
      CHECK(memcmp(&got, &w, 4) == 0);
      n_e4m3++;
    } else if (strncmp(line, "e4m3 ", 5) == 0) { /* (1.2) the nearest code */
      unsigned in, want;
      CHECK(sscanf(line + 5, "%x %x", &in, &want) == 2);
      unsigned got = qiao__f32_to_e4m3(float_of(in));
      if (got != want) fprintf(stderr, "e4m3 %08x: got %02x, want %02x\n", in, got, want);
      CHECK(got == want);
      n_e4m3++;
    } else {
      fprintf(stderr, "bad line: %s", line);
      CHECK(0);
    }
  }
  fclose(f);
  CHECK(n[0] > 20 && n[1] > 10 && n[2] > 5 && n[3] > 5 && n_e4m3 > 1000);
  printf("conversions: %d f16, %d bf16, %d q8_0, %d q4_0, %d e4m3 as the reference\n", n[0], n[1],
         n[2], n[3], n_e4m3);
  TEST_END();
}
