/* Overflow-safe size arithmetic for everything read from outside. */
#ifndef QIAO_CHECKED_H
#define QIAO_CHECKED_H

#include <stdbool.h>
#include <stdint.h>

/* Each returns false (and leaves *out unspecified) when the result does not fit. */
static inline bool qiao__add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}
static inline bool qiao__mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}
/* True when [offset, offset+size) lies inside [0, limit). */
static inline bool qiao__range_ok(uint64_t offset, uint64_t size, uint64_t limit) {
  uint64_t end;
  return qiao__add_u64(offset, size, &end) && end <= limit;
}
static inline bool qiao__is_pow2(uint64_t x) {
  return x != 0 && (x & (x - 1)) == 0;
}

#endif
