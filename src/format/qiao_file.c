/* The .qiao header hash (docs/spec/format.md §6). */
#include "format/qiao_file.h"

#include <xxhash.h>

static const uint8_t zeros[8];

uint64_t qiao__qiao_header_hash(const uint8_t *bytes, uint64_t size) {
  XXH3_state_t *s = XXH3_createState();
  if (s == NULL) return 0;
  XXH3_64bits_reset(s);
  XXH3_64bits_update(s, bytes, QIAO__H_HASH);
  XXH3_64bits_update(s, zeros, 8);
  XXH3_64bits_update(s, bytes + QIAO__H_HASH + 8, (size_t)(size - QIAO__H_HASH - 8));
  uint64_t h = XXH3_64bits_digest(s);
  XXH3_freeState(s);
  return h;
}
