/* attention.cl: kv_write and attention over the paged KV cache, for F32 and
 * F16 caches. F16 is read with vload_half and written with vstore_half_rte
 * (round to nearest even), both core OpenCL. */

float kv_load(int f16, __global const uchar *cache, ulong i) {
  if (f16) return vload_half(i, (__global const half *)cache);
  return ((__global const float *)cache)[i];
}

/* ---- kv_write: k_cache[slots[t], :] = k[t, :], v_cache likewise. global (kv_dim, n_tokens).
 * Cache offsets are in elements of the cache dtype. A slot out of range is
 * flagged and its row not written (writing a clamped slot would corrupt another token). */
void kv_write_body(int f16, __global const float *k, ulong k_off, __global const float *v,
                   ulong v_off, __global const int *slots, ulong slots_off, __global uchar *kc,
                   ulong kc_off, __global uchar *vc, ulong vc_off, ulong kv_dim, ulong n_slots,
                   __global int *err) {
  ulong j = get_global_id(0), t = get_global_id(1);
  if (j >= kv_dim) return;
  int s = slots[slots_off + t];
  if (s < 0 || (ulong)s >= n_slots) {
    err[OP_KV_WRITE] = 1;
    return;
  }
  ulong dst = (ulong)s * kv_dim + j;
  float kv = k[k_off + t * kv_dim + j], vv = v[v_off + t * kv_dim + j];
  if (f16) {
    vstore_half_rte(kv, kc_off + dst, (__global half *)kc);
    vstore_half_rte(vv, vc_off + dst, (__global half *)vc);
  } else {
    ((__global float *)kc)[kc_off + dst] = kv;
    ((__global float *)vc)[vc_off + dst] = vv;
  }
}

#define KV_WRITE_KERNEL(SUF, F16)                                                                  \
  __kernel void kv_write_##SUF(__global const float *k, ulong k_off, __global const float *v,      \
                               ulong v_off, __global const int *slots, ulong slots_off,            \
                               __global uchar *kc, ulong kc_off, __global uchar *vc, ulong vc_off, \
                               ulong kv_dim, ulong n_slots, __global int *err) {                   \
    kv_write_body(F16, k, k_off, v, v_off, slots, slots_off, kc, kc_off, vc, vc_off, kv_dim,       \
                  n_slots, err);                                                                   \
  }
KV_WRITE_KERNEL(f32, 0)
KV_WRITE_KERNEL(f16, 1)

/* ---- attention: one work-group per (head h, token t); global (n_heads * WG, n_tokens).
 * The keys of the token's window are processed WG at a time: work-item l
 * scores key j0 + l, the group takes the chunk's maximum and sum, and an
 * online softmax rescales the running output (kept in local memory, element
 * d owned by work-item d % WG) whenever the maximum grows. */
#define ATTENTION_PARAMS                                                                           \
  __global const float *q, ulong q_off, __global const uchar *kc, ulong kc_off,                    \
      __global const uchar *vc, ulong vc_off, __global const int *block_table, ulong bt_off,       \
      __global const int *token_seq, ulong seq_off, __global const int *token_pos, ulong pos_off,  \
      __global float *out, ulong out_off, ulong n_heads, ulong n_kv_heads, ulong head_dim,         \
      ulong n_seqs, ulong max_blocks, ulong block_size, ulong n_slots, ulong window, float scale,  \
      __global int *err
#define ATTENTION_ARGS                                                                             \
  q, q_off, kc, kc_off, vc, vc_off, block_table, bt_off, token_seq, seq_off, token_pos, pos_off,   \
      out, out_off, n_heads, n_kv_heads, head_dim, n_seqs, max_blocks, block_size, n_slots,        \
      window, scale, err

void attention_body(int f16, ATTENTION_PARAMS, __local float *q_l, __local float *acc_l,
                    __local float *p_l, __local float *red, __local long *slot_l) {
  uint lid = get_local_id(0);
  ulong h = get_group_id(0), t = get_group_id(1);
  ulong kv_dim = n_kv_heads * head_dim;
  ulong kvh = h / (n_heads / n_kv_heads);
  ulong o = out_off + (t * n_heads + h) * head_dim;
  int s = token_seq[seq_off + t];
  int p = token_pos[pos_off + t];
  /* A bad sequence or position is flagged and yields a zero row. No early
   * return: every work-item must reach the same barriers. */
  if (s < 0 || (ulong)s >= n_seqs || p < 0 || (ulong)p / block_size >= max_blocks) {
    if (lid == 0) err[OP_ATTENTION] = 1;
    s = 0;
    p = -1; /* no keys */
  }
  for (ulong d = lid; d < head_dim; d += WG) {
    q_l[d] = q[q_off + (t * n_heads + h) * head_dim + d];
    acc_l[d] = 0.0f;
  }
  long start = window > 0 && p >= 0 ? max(0L, (long)p - (long)window + 1) : 0L;
  float m = -INFINITY, l = 0.0f;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (long j0 = start; j0 <= p; j0 += WG) {
    long j = j0 + lid;
    float score = -INFINITY;
    long slot = -1;
    if (j <= p) {
      int b = block_table[bt_off + (ulong)s * max_blocks + (ulong)j / block_size];
      ulong sl = (ulong)b * block_size + (ulong)j % block_size;
      if (b < 0 || sl >= n_slots) {
        err[OP_ATTENTION] = 1;
      } else {
        slot = (long)sl;
        ulong kb = kc_off + sl * kv_dim + kvh * head_dim;
        float dot_qk = 0.0f;
        for (ulong d = 0; d < head_dim; d++) dot_qk += q_l[d] * kv_load(f16, kc, kb + d);
        score = scale * dot_qk;
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
    if (m_new != -INFINITY) { /* at least one valid key so far */
      float corr = exp(m - m_new);
      l = l * corr + red[0];
      long cnt = min((long)WG, p - j0 + 1);
      for (ulong d = lid; d < head_dim; d += WG) {
        float a = acc_l[d] * corr;
        for (long c = 0; c < cnt; c++)
          if (slot_l[c] >= 0)
            a += p_l[c] * kv_load(f16, vc, vc_off + (ulong)slot_l[c] * kv_dim + kvh * head_dim + d);
        acc_l[d] = a;
      }
      m = m_new;
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* before the next chunk overwrites p_l, slot_l, red */
  }
  for (ulong d = lid; d < head_dim; d += WG) out[o + d] = l > 0.0f ? acc_l[d] / l : 0.0f;
}

#define ATTENTION_KERNEL(SUF, F16)                                                                 \
  __kernel void attention_##SUF(ATTENTION_PARAMS) {                                                \
    __local float q_l[MAX_HEAD_DIM], acc_l[MAX_HEAD_DIM], p_l[WG], red[WG];                        \
    __local long slot_l[WG];                                                                       \
    attention_body(F16, ATTENTION_ARGS, q_l, acc_l, p_l, red, slot_l);                             \
  }
ATTENTION_KERNEL(f32, 0)
ATTENTION_KERNEL(f16, 1)
