/* latent.cl: (ABI 1.4) the latent KV cache of multi-head latent attention
 * (DeepSeek-V2/V3): latent_write and attention_latent, for F32 and F16
 * caches. A cache slot is one row of latent_dim + rope_dim values shared by
 * every head; kv_load (attention.cl) reads it in either dtype. */

/* ---- latent_write: cache[slots[t], :] = (latent[t, :], rope[t, :]).
 * global (latent_dim + rope_dim, n_tokens); cache offsets in elements of the
 * cache dtype. A slot out of range is flagged and its row not written, as in
 * kv_write (a clamped slot would overwrite another token). */
void latent_write_body(int f16, __global const float *latent, ulong latent_off,
                       __global const float *rope, ulong rope_off, __global const int *slots,
                       ulong slots_off, __global uchar *cache, ulong cache_off, ulong latent_dim,
                       ulong rope_dim, ulong n_slots, __global int *err) {
  ulong j = get_global_id(0), t = get_global_id(1), row = latent_dim + rope_dim;
  if (j >= row) return;
  int s = slots[slots_off + t];
  if (s < 0 || (ulong)s >= n_slots) {
    err[OP_LATENT_WRITE] = 1;
    return;
  }
  float v = j < latent_dim ? latent[latent_off + t * latent_dim + j]
                           : rope[rope_off + t * rope_dim + (j - latent_dim)];
  ulong dst = cache_off + (ulong)s * row + j;
  if (f16)
    vstore_half_rte(v, dst, (__global half *)cache);
  else
    ((__global float *)cache)[dst] = v;
}

#define LATENT_WRITE_KERNEL(SUF, F16)                                                              \
  __kernel void latent_write_##SUF(                                                                \
      __global const float *latent, ulong latent_off, __global const float *rope, ulong rope_off,  \
      __global const int *slots, ulong slots_off, __global uchar *cache, ulong cache_off,          \
      ulong latent_dim, ulong rope_dim, ulong n_slots, __global int *err) {                        \
    latent_write_body(F16, latent, latent_off, rope, rope_off, slots, slots_off, cache, cache_off, \
                      latent_dim, rope_dim, n_slots, err);                                         \
  }
LATENT_WRITE_KERNEL(f32, 0)
LATENT_WRITE_KERNEL(f16, 1)

/* ---- attention_latent: one work-group per (head h, token t); global
 * (n_heads * WG, n_tokens). The same online softmax as attention (attention.cl):
 * the window's positions are scored WG at a time (work-item l scores position
 * j0 + l against the whole cache row: q_latent . latent + q_rope . rope), and
 * the running output is rescaled whenever the maximum grows. The output row
 * itself is the accumulator (element d owned by work-item d % WG, and out
 * overlaps no input), so latent_dim needs no local-memory limit; q is read
 * from global memory for the same reason. */
#define ATTENTION_LATENT_PARAMS                                                                    \
  __global const float *q_lat, ulong ql_off, __global const float *q_rope, ulong qr_off,           \
      __global const uchar *cache, ulong cache_off, __global const int *block_table, ulong bt_off, \
      __global const int *token_seq, ulong seq_off, __global const int *token_pos, ulong pos_off,  \
      __global float *out, ulong out_off, ulong n_heads, ulong latent_dim, ulong rope_dim,         \
      ulong n_seqs, ulong max_blocks, ulong block_size, ulong n_slots, ulong window, float scale,  \
      __global int *err
#define ATTENTION_LATENT_ARGS                                                                      \
  q_lat, ql_off, q_rope, qr_off, cache, cache_off, block_table, bt_off, token_seq, seq_off,        \
      token_pos, pos_off, out, out_off, n_heads, latent_dim, rope_dim, n_seqs, max_blocks,         \
      block_size, n_slots, window, scale, err

void attention_latent_body(int f16, ATTENTION_LATENT_PARAMS, __local float *p_l,
                           __local float *red, __local long *slot_l) {
  uint lid = get_local_id(0);
  ulong h = get_group_id(0), t = get_group_id(1), row = latent_dim + rope_dim;
  __global const float *ql = q_lat + ql_off + (t * n_heads + h) * latent_dim;
  __global const float *qr = q_rope + qr_off + (t * n_heads + h) * rope_dim;
  __global float *o = out + out_off + (t * n_heads + h) * latent_dim;
  int s = token_seq[seq_off + t];
  int p = token_pos[pos_off + t];
  /* A bad sequence or position is flagged and yields a zero row. No early
   * return: every work-item must reach the same barriers. */
  if (s < 0 || (ulong)s >= n_seqs || p < 0 || (ulong)p / block_size >= max_blocks) {
    if (lid == 0) err[OP_ATTENTION_LATENT] = 1;
    s = 0;
    p = -1; /* no positions */
  }
  for (ulong d = lid; d < latent_dim; d += WG) o[d] = 0.0f;
  long start = window > 0 && p >= 0 ? max(0L, (long)p - (long)window + 1) : 0L;
  float m = -INFINITY, l = 0.0f;
  for (long j0 = start; j0 <= p; j0 += WG) {
    long j = j0 + lid;
    float score = -INFINITY;
    long slot = -1;
    if (j <= p) {
      int b = block_table[bt_off + (ulong)s * max_blocks + (ulong)j / block_size];
      ulong sl = (ulong)b * block_size + (ulong)j % block_size;
      if (b < 0 || sl >= n_slots) {
        err[OP_ATTENTION_LATENT] = 1;
      } else {
        slot = (long)sl;
        ulong cb = cache_off + sl * row;
        float dot_qc = 0.0f;
        for (ulong d = 0; d < latent_dim; d++) dot_qc += ql[d] * kv_load(f16, cache, cb + d);
        for (ulong d = 0; d < rope_dim; d++)
          dot_qc += qr[d] * kv_load(f16, cache, cb + latent_dim + d);
        score = scale * dot_qc;
      }
    }
    slot_l[lid] = slot;
    red[lid] = score;
    reduce_max(red, lid);
    float m_new = fmax(m, red[0]);
    barrier(CLK_LOCAL_MEM_FENCE); /* everyone has read red[0] */
    float pj = slot >= 0 ? exp(score - m_new) : 0.0f;
    p_l[lid] = pj;
    red[lid] = pj;
    reduce_sum(red, lid);
    if (m_new != -INFINITY) { /* at least one valid position so far */
      float corr = exp(m - m_new);
      l = l * corr + red[0];
      long cnt = min((long)WG, p - j0 + 1);
      /* Only the latent part of a row is a value; skipped slots (-1) are
       * never read, so NaN in unattended slots cannot leak in. */
      for (ulong d = lid; d < latent_dim; d += WG) {
        float a = o[d] * corr;
        for (long c = 0; c < cnt; c++)
          if (slot_l[c] >= 0) a += p_l[c] * kv_load(f16, cache, cache_off + (ulong)slot_l[c] * row + d);
        o[d] = a;
      }
      m = m_new;
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* before the next chunk overwrites p_l, slot_l, red */
  }
  for (ulong d = lid; d < latent_dim; d += WG) o[d] = l > 0.0f ? o[d] / l : 0.0f;
}

#define ATTENTION_LATENT_KERNEL(SUF, F16)                                                          \
  __kernel void attention_latent_##SUF(ATTENTION_LATENT_PARAMS) {                                  \
    __local float p_l[WG], red[WG];                                                                \
    __local long slot_l[WG];                                                                       \
    attention_latent_body(F16, ATTENTION_LATENT_ARGS, p_l, red, slot_l);                           \
  }
ATTENTION_LATENT_KERNEL(f32, 0)
ATTENTION_LATENT_KERNEL(f16, 1)
