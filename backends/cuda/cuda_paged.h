/* cuda_paged.h: the index math of attention over the paged cache, for the
 * attention_latent kernel and the host code that sizes its launch, written
 * once as __host__ __device__ C so that a CPU-only test
 * (tests/cuda/test_cuda_paged.c) runs it against the CPU backend:
 *  - the flash-decoding split of a token's positions into chunks;
 *  - which positions token t attends to in split sp (its sequence and
 *    position, the sliding window, the chunk);
 *  - the cache slot of position j of a sequence through its block table.
 * Values read from device memory (token_seq, token_pos, block_table) are
 * checked here: an out-of-range one makes the function return 0 and the
 * kernel raise the op's flag and skip that work. */
#ifndef QIAO_CUDA_PAGED_H
#define QIAO_CUDA_PAGED_H

#include <stdint.h>

#include "cuda_dequant.h" /* CUQ_HD */

/* Flash-decoding: when there are too few (token, head) pairs (`units`) to
 * fill the GPU (4 blocks per SM), each token's positions are split into
 * *out_n_split chunks of *out_chunk positions, handled by separate blocks and
 * merged by a second kernel. The sequence lengths live on the device, so the
 * split is sized by the longest possible one (max_blocks_per_seq *
 * block_size, at most 2^31 positions since they are I32, at most `window`
 * when there is one: chunks are counted from a token's first attended
 * position). At least 256 positions per chunk, at most 1024 chunks. */
CUQ_HD void cuq_attention_split(uint32_t sm_count, uint64_t units, uint64_t max_blocks_per_seq,
                                uint64_t block_size, uint64_t window, uint32_t *out_n_split,
                                uint64_t *out_chunk) {
  uint64_t max_len = 0x80000000u; /* positions are I32: at most 2^31 of them */
  if (block_size == 0 || max_blocks_per_seq <= 0x80000000u / block_size)
    max_len = max_blocks_per_seq * block_size;
  if (window > 0 && window < max_len) max_len = window;
  const uint64_t target = 4ull * sm_count;
  uint64_t n_split = 1;
  if (units > 0 && units < target && max_len > 256) {
    n_split = (target + units - 1) / units;
    const uint64_t max_split = (max_len + 255) / 256; /* at least 256 positions per chunk */
    if (n_split > max_split) n_split = max_split;
    if (n_split > 1024) n_split = 1024;
  }
  *out_n_split = (uint32_t)n_split;
  *out_chunk = n_split > 1 ? (max_len + n_split - 1) / n_split : 0;
}

/* The positions [*start, *end] (inclusive; empty when start > end) that a
 * token of sequence `seq` at position `pos` attends to in split sp: [lo, pos]
 * with lo = pos - window + 1 (or 0), cut to chunk sp when n_split > 1.
 * Returns 0 (and an empty range) when seq or pos is out of range. */
CUQ_HD int cuq_paged_span(int32_t seq, int32_t pos, uint64_t n_seqs, uint64_t max_blocks_per_seq,
                          uint64_t block_size, uint64_t window, uint32_t n_split, uint64_t chunk,
                          uint64_t sp, uint64_t *start, uint64_t *end) {
  const int valid = seq >= 0 && (uint64_t)seq < n_seqs && pos >= 0 &&
                    (uint64_t)pos / block_size < max_blocks_per_seq;
  const uint64_t p = valid ? (uint64_t)pos : 0;
  const uint64_t lo = (window > 0 && p + 1 > window) ? p + 1 - window : 0;
  uint64_t s = lo, e = p;
  if (n_split > 1) {
    s = lo + sp * chunk;
    if (s + chunk - 1 < e) e = s + chunk - 1;
  }
  if (!valid) s = 1, e = 0;
  *start = s;
  *end = e;
  return valid;
}

/* The cache slot of position j of sequence seq (in range): block
 * block_table[seq, j / block_size], slot j % block_size of it. Returns 0
 * when that block is outside [0, n_blocks). */
CUQ_HD int cuq_paged_slot(const int32_t *block_table, int32_t seq, uint64_t max_blocks_per_seq,
                          uint64_t block_size, uint64_t n_blocks, uint64_t j, uint64_t *slot) {
  const int32_t b = block_table[(uint64_t)seq * max_blocks_per_seq + j / block_size];
  if (b < 0 || (uint64_t)b >= n_blocks) return 0;
  *slot = (uint64_t)b * block_size + j % block_size;
  return 1;
}

#endif
