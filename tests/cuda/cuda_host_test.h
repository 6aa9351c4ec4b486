/* What the CUDA backend's host-side tests share (each runs a piece of the
 * CUDA code on the CPU against the CPU backend): a failure count, the CPU
 * backend's table, error reporting and a small deterministic generator.
 * Header-only; each test sets rng_state to its own seed in main. */
#ifndef QIAO_TESTS_CUDA_HOST_TEST_H
#define QIAO_TESTS_CUDA_HOST_TEST_H

#include <stdint.h>
#include <stdio.h>

#include "qiao/device.h"

static int failures = 0;
static const qiao_dev_api *api; /* the CPU backend's */

/* Returns 1 when e is NULL; else prints it, counts a failure, returns 0. */
static inline int ok(qiao_dev_error *e, const char *what) {
  if (e == NULL) return 1;
  fprintf(stderr, "%s: %s\n", what, api->error_message(e));
  api->error_destroy(e);
  failures++;
  return 0;
}

/* xorshift64: the same inputs on every run. */
static uint64_t rng_state = 1;
static inline uint32_t rnd_u32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 32);
}

/* Uniform in [-1, 1] on a grid of 1e-6. */
static inline float rnd_unit(void) {
  return (float)(rnd_u32() % 2000001u) / 1e6f - 1.0f;
}

#endif
