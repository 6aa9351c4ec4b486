/* cuda_paged: the index math of the CUDA attention_latent kernel, without a
 * GPU.
 *
 * backends/cuda/cuda_paged.h holds what the kernel and its launch compute
 * about positions and slots: the flash-decoding split of a token's
 * positions into chunks, the positions a token attends to in each chunk
 * (its sequence, its position, the sliding window) and each position's slot
 * through the block table. Built for the host, those functions drive here a
 * plain F32 evaluation of the kernel's steps (per chunk an online softmax;
 * chunks merged as the merge kernel does) over the latent cache, compared
 * with the CPU backend's attention_latent: several sequences with shuffled
 * block tables, decode and prefill tokens, windows, chunked and unchunked,
 * DeepSeek's L = 512, R = 64. Slots that no token may read hold NaN, so a
 * wrong span or slot shows. What is not the kernel's own code here: the
 * dot products, the softmax and the warp merge (written the same way). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cuda_host_test.h"
#include "cuda_paged.h"
#include "qiao/device.h"

static qiao_dev_device *cpu_device;
static qiao_dev_queue *cpu_queue;

typedef struct paged_case {
  const char *name;
  uint64_t n_heads, L, R, n_seqs, block_size, max_blocks, window;
  uint32_t sm_count;   /* the device's SMs, as the launch sizes the split with */
  uint64_t seq_len[4]; /* each sequence's cached positions */
  uint64_t per_seq;    /* tokens of each sequence in the call: its last positions */
} paged_case;

/* A device buffer holding `bytes` of `data`. */
static qiao_dev_buffer *put(const void *data, uint64_t bytes) {
  qiao_dev_buffer *b = NULL;
  if (ok(api->buffer_create(cpu_device, bytes, &b), "buffer_create") && data != NULL)
    ok(api->upload(cpu_queue, (qiao_dev_ref){b, 0}, data, bytes), "upload");
  return b;
}

static void run_case(const paged_case *pc) {
  const uint64_t H = pc->n_heads, L = pc->L, R = pc->R, row = L + R, S = pc->n_seqs;
  const uint64_t B = pc->block_size, MB = pc->max_blocks, n_blocks = S * MB + 3;
  const uint64_t n_slots = n_blocks * B + B / 2; /* a partial last block, never used */
  /* Block tables: every sequence's blocks are distinct blocks in shuffled order. */
  uint64_t *perm = malloc(n_blocks * sizeof(uint64_t));
  for (uint64_t i = 0; i < n_blocks; i++)
    perm[i] = i;
  for (uint64_t i = n_blocks - 1; i > 0; i--) {
    uint64_t j = rnd_u32() % (i + 1), tmp = perm[i];
    perm[i] = perm[j], perm[j] = tmp;
  }
  int32_t *table = malloc(S * MB * 4);
  float *cache = malloc(n_slots * row * 4);
  for (uint64_t i = 0; i < n_slots * row; i++)
    cache[i] = NAN; /* read by no token unless a span or slot is wrong */
  uint64_t n_tokens = 0;
  for (uint64_t s = 0; s < S; s++) {
    const uint64_t len = pc->seq_len[s];
    for (uint64_t b = 0; b < MB; b++)
      table[s * MB + b] = b * B < len ? (int32_t)perm[s * MB + b] : -1;
    for (uint64_t j = 0; j < len; j++) {
      const uint64_t slot = (uint64_t)table[s * MB + j / B] * B + j % B;
      for (uint64_t i = 0; i < row; i++)
        cache[slot * row + i] = rnd_unit();
    }
    n_tokens += pc->per_seq < len ? pc->per_seq : len;
  }
  int32_t *tseq = malloc(n_tokens * 4), *tpos = malloc(n_tokens * 4);
  for (uint64_t s = 0, t = 0; s < S; s++) {
    const uint64_t len = pc->seq_len[s], n = pc->per_seq < len ? pc->per_seq : len;
    for (uint64_t i = 0; i < n; i++, t++)
      tseq[t] = (int32_t)s, tpos[t] = (int32_t)(len - n + i);
  }
  const uint64_t T = n_tokens;
  float *ql = malloc(T * H * L * 4), *qr = malloc(T * H * R * 4);
  for (uint64_t i = 0; i < T * H * L; i++)
    ql[i] = rnd_unit();
  for (uint64_t i = 0; i < T * H * R; i++)
    qr[i] = 3.0f * rnd_unit(); /* the rotary part matters */
  const float scale = 1.0f / sqrtf((float)(L + R));

  /* The CPU backend. */
  float *want = malloc(T * H * L * 4), *got = malloc(T * H * L * 4);
  qiao_dev_buffer *bq = put(ql, T * H * L * 4), *br = put(qr, T * H * R * 4);
  qiao_dev_buffer *bc = put(cache, n_slots * row * 4), *bt = put(table, S * MB * 4);
  qiao_dev_buffer *bs = put(tseq, T * 4), *bp = put(tpos, T * 4), *bo = put(NULL, T * H * L * 4);
  qiao_dev_attention_latent_args a = {.struct_size = sizeof(a),
                                      .n_tokens = T,
                                      .n_heads = H,
                                      .latent_dim = L,
                                      .rope_dim = R,
                                      .n_seqs = S,
                                      .max_blocks_per_seq = MB,
                                      .block_size = B,
                                      .n_slots = n_slots,
                                      .window = pc->window,
                                      .scale = scale,
                                      .cache_dtype = QIAO_DEV_F32,
                                      .q_latent = {bq, 0},
                                      .q_rope = {br, 0},
                                      .cache = {bc, 0},
                                      .block_table = {bt, 0},
                                      .token_seq = {bs, 0},
                                      .token_pos = {bp, 0},
                                      .out = {bo, 0}};
  int have = ok(api->attention_latent(cpu_queue, &a), "attention_latent") &&
             ok(api->download(cpu_queue, want, (qiao_dev_ref){bo, 0}, T * H * L * 4), "download") &&
             ok(api->queue_synchronize(cpu_queue), "queue_synchronize");

  /* The kernel's steps with cuda_paged.h's positions and slots. */
  uint32_t n_split;
  uint64_t chunk;
  cuq_attention_split(pc->sm_count, T * H, MB, B, pc->window, &n_split, &chunk);
  float *acc = malloc(n_split * L * 4), *m = malloc(n_split * 4), *l = malloc(n_split * 4);
  int bad_index = 0;
  for (uint64_t th = 0; th < T * H; th++) {
    const uint64_t t = th / H;
    for (uint32_t sp = 0; sp < n_split; sp++) {
      uint64_t start, end, slot;
      m[sp] = -INFINITY, l[sp] = 0.0f;
      for (uint64_t i = 0; i < L; i++)
        acc[sp * L + i] = 0.0f;
      if (!cuq_paged_span(tseq[t], tpos[t], S, MB, B, pc->window, n_split, chunk, sp, &start, &end))
        bad_index++;
      for (uint64_t j = start; j <= end && start <= end; j++) {
        if (!cuq_paged_slot(table, tseq[t], MB, B, n_slots / B, j, &slot)) {
          bad_index++;
          continue;
        }
        const float *c = cache + slot * row;
        float dl = 0.0f, dr = 0.0f;
        for (uint64_t i = 0; i < L; i++)
          dl += ql[th * L + i] * c[i];
        for (uint64_t i = 0; i < R; i++)
          dr += qr[th * R + i] * c[L + i];
        const float score = scale * (dl + dr), m_new = fmaxf(m[sp], score);
        const float corr = m[sp] == -INFINITY ? 0.0f : expf(m[sp] - m_new);
        const float pj = expf(score - m_new);
        l[sp] = l[sp] * corr + pj;
        for (uint64_t i = 0; i < L; i++)
          acc[sp * L + i] = acc[sp * L + i] * corr + pj * c[i];
        m[sp] = m_new;
      }
    }
    float M = -INFINITY, Lsum = 0.0f;
    for (uint32_t sp = 0; sp < n_split; sp++)
      if (l[sp] > 0.0f) M = fmaxf(M, m[sp]);
    for (uint32_t sp = 0; sp < n_split; sp++)
      if (l[sp] > 0.0f) Lsum += l[sp] * expf(m[sp] - M);
    for (uint64_t i = 0; i < L; i++) {
      float s = 0.0f;
      for (uint32_t sp = 0; sp < n_split; sp++)
        if (l[sp] > 0.0f) s += acc[sp * L + i] * expf(m[sp] - M);
      got[th * L + i] = Lsum > 0.0f ? s / Lsum : 0.0f;
    }
  }
  /* The ABI's metric (rows of L, spec §11.1) against the CPU backend. */
  double total = 0.0, worst = 0.0;
  for (uint64_t i = 0; i < T * H * L; i++)
    total += (double)want[i] * want[i];
  const double floor_norm = sqrt(total / (double)(T * H));
  for (uint64_t r = 0; r < T * H && have; r++) {
    double e = 0.0, b = 0.0;
    for (uint64_t i = 0; i < L; i++) {
      const double d = (double)got[r * L + i] - want[r * L + i];
      e += d * d, b += (double)want[r * L + i] * want[r * L + i];
    }
    const double err = sqrt(e) / fmax(sqrt(b), floor_norm);
    if (!(err <= worst)) worst = err;
  }
  const int pass = have && bad_index == 0 && worst <= 1e-5;
  printf("%-36s %3llu tokens x %3llu heads, %u chunk(s) of %llu: error %.2g %s\n", pc->name,
         (unsigned long long)T, (unsigned long long)H, n_split, (unsigned long long)chunk, worst,
         pass ? "ok" : "FAILED");
  if (bad_index) fprintf(stderr, "%s: %d valid indices refused\n", pc->name, bad_index);
  if (!pass) failures++;
  api->buffer_destroy(bq), api->buffer_destroy(br), api->buffer_destroy(bc);
  api->buffer_destroy(bt), api->buffer_destroy(bs), api->buffer_destroy(bp);
  api->buffer_destroy(bo);
  free(perm), free(table), free(cache), free(tseq), free(tpos), free(ql), free(qr), free(want);
  free(got), free(acc), free(m), free(l);
}

int main(void) {
  rng_state = 0x13198a2e03707344ull;
  api = qiao_cpu_get_api();
  qiao_dev_backend *backend = NULL;
  qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
  if (!ok(api->backend_open(&bo, &backend), "backend_open") ||
      !ok(api->device_open(backend, 0, NULL, &cpu_device), "device_open") ||
      !ok(api->queue_create(cpu_device, &cpu_queue), "queue_create"))
    return 1;
  /* The split's own arithmetic: a decode of 1 token x 128 heads on 132 SMs, 4096 positions. */
  uint32_t n_split;
  uint64_t chunk;
  cuq_attention_split(132, 128, 256, 16, 0, &n_split, &chunk);
  if (n_split != 5 || chunk != 820) {
    fprintf(stderr, "split of 4096 positions for 128 units: %u x %llu\n", n_split,
            (unsigned long long)chunk);
    failures++;
  }
  cuq_attention_split(132, 128, 1u << 30, 1u << 30, 300, &n_split, &chunk); /* the window bounds */
  if (n_split != 2 || chunk != 150) failures++, fprintf(stderr, "window split %u\n", n_split);
  cuq_attention_split(132, 600, 256, 16, 0, &n_split, &chunk); /* enough work: no split */
  if (n_split != 1 || chunk != 0) failures++, fprintf(stderr, "no split %u\n", n_split);

  const paged_case cases[] = {
      /* name, heads, L, R, seqs, block_size, max_blocks, window, SMs, lengths, tokens per seq */
      {"decode, 3 sequences, tiny model", 4, 32, 8, 3, 16, 40, 0, 132, {600, 37, 290}, 1},
      {"prefill of 40 tokens, one chunk", 4, 32, 8, 2, 8, 10, 0, 1, {64, 40}, 40},
      {"decode with a window of 300", 4, 32, 8, 2, 16, 40, 300, 132, {620, 301}, 1},
      {"prefill with a window of 50", 6, 33, 7, 2, 5, 30, 50, 2, {140, 77}, 20},
      {"block size 1, chunked", 2, 16, 4, 1, 1, 700, 0, 132, {650}, 2},
      {"DeepSeek L 512, R 64, decode", 16, 512, 64, 2, 16, 24, 0, 132, {330, 300}, 1},
      {"DeepSeek L 512, R 64, prefill", 8, 512, 64, 1, 16, 4, 0, 132, {60}, 9},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    run_case(&cases[i]);
  api->queue_destroy(cpu_queue);
  api->device_close(cpu_device);
  api->backend_close(backend);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
