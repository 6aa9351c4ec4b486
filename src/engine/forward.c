/* The forward pass of a decoder-only transformer, as device ops.
 *
 * One function, read top to bottom: embed -> per layer (attention block,
 * then dense or mixture-of-experts FFN block) -> final norm and output
 * matmul for the wanted rows only. Architectures differ only in data: which
 * tensors exist (biases, q/k norms, experts) and the hyperparameters (RoPE
 * style and frequencies, sliding window, head_dim). Every op is enqueued on
 * the engine's one queue; the host waits once, at the end.
 *
 * Shapes in trailing comments: T = tokens in this pass, D = dim,
 * H = n_heads, KVH = n_kv_heads, hd = head_dim, F = ffn_dim, E = n_experts,
 * K = experts used per token, EF = expert ffn dim, V = vocab, R = rows out. */
#include <math.h>
#include <string.h>

#include "engine/engine_internal.h"

static qiao_dev_ref at(qiao_dev_ref ref, uint64_t byte_offset) {
  ref.offset += byte_offset;
  return ref;
}

qiao_status *qiao__forward(qiao_engine *e, uint32_t n_tokens, uint32_t n_seqs, const uint32_t *rows,
                           uint32_t n_rows, float *out_logits, int32_t *out_argmax) {
  const qiao_dev_api *api = e->ops; /* the backend's table (or the fallback router) */
  qiao_dev_queue *queue = e->ops_queue;
  const qiao_hparams *hp = &e->hp;
  const qiao__scratch *s = &e->s;
  const uint64_t T = n_tokens, D = hp->dim, H = hp->n_heads, KVH = hp->n_kv_heads;
  const uint64_t hd = hp->head_dim, q_dim = H * hd, kv_dim = e->kv_dim;
  const uint64_t E = hp->n_experts, K = hp->n_experts_used, V = hp->vocab_size;

  /* Inputs: token ids, positions, cache slots, sequence of each token, block table. */
  QIAO__DEV_TRY(e, api->upload(queue, s->tokens, e->h_tokens, T * 4), "upload tokens");
  QIAO__DEV_TRY(e, api->upload(queue, s->positions, e->h_positions, T * 4), "upload positions");
  QIAO__DEV_TRY(e, api->upload(queue, s->slots, e->h_slots, T * 4), "upload slots");
  QIAO__DEV_TRY(e, api->upload(queue, s->token_seq, e->h_token_seq, T * 4), "upload token_seq");
  QIAO__DEV_TRY(e,
                api->upload(queue, s->block_table, e->h_block_table,
                            (uint64_t)n_seqs * e->max_blocks_per_seq * 4),
                "upload block table");

  /* x = token_embd[tokens] */
  qiao_dev_embed_args embed = {sizeof(embed),     T,         V,   D, e->token_embd.dtype,
                               e->token_embd.ref, s->tokens, s->x};
  QIAO__DEV_TRY(e, api->embed(queue, &embed), "embed"); /* x: (T, D) */

  for (uint32_t l = 0; l < hp->n_layers; l++) {
    const qiao__layer *L = &e->layers[l];

    /* ---- Attention block ---- */
    qiao_dev_rmsnorm_args norm = {sizeof(norm), T, D, hp->norm_eps, s->x, L->attn_norm.ref, s->xn};
    QIAO__DEV_TRY(e, api->rmsnorm(queue, &norm), "rmsnorm attn_norm"); /* xn: (T, D) */

    qiao_dev_matmul_args mm = {sizeof(mm),    T,    D, q_dim, s->xn, L->q.dtype, L->q.ref,
                               L->q_bias.ref, s->q, 0};
    QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul attn_q"); /* q: (T, H*hd) */
    mm = (qiao_dev_matmul_args){sizeof(mm),    T,    D, kv_dim, s->xn, L->k.dtype, L->k.ref,
                                L->k_bias.ref, s->k, 0};
    QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul attn_k"); /* k: (T, KVH*hd) */
    mm = (qiao_dev_matmul_args){sizeof(mm),    T,    D, kv_dim, s->xn, L->v.dtype, L->v.ref,
                                L->v_bias.ref, s->v, 0};
    QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul attn_v"); /* v: (T, KVH*hd) */

    if (hp->qk_norm) { /* per-head RMSNorm of q and k (Qwen3) */
      norm =
          (qiao_dev_rmsnorm_args){sizeof(norm), T * H, hd, hp->norm_eps, s->q, L->q_norm.ref, s->q};
      QIAO__DEV_TRY(e, api->rmsnorm(queue, &norm), "rmsnorm attn_q_norm"); /* q: (T*H, hd) */
      norm = (qiao_dev_rmsnorm_args){sizeof(norm), T * KVH,       hd,  hp->norm_eps,
                                     s->k,         L->k_norm.ref, s->k};
      QIAO__DEV_TRY(e, api->rmsnorm(queue, &norm), "rmsnorm attn_k_norm"); /* k: (T*KVH, hd) */
    }

    qiao_dev_rope_style style = hp->rope_neox ? QIAO_DEV_ROPE_NEOX : QIAO_DEV_ROPE_NORMAL;
    qiao_dev_rope_args rope = {sizeof(rope), T, H, hd, hp->rope_dim, style, s->q, s->positions,
                               e->rope_freqs};
    QIAO__DEV_TRY(e, api->rope(queue, &rope), "rope q"); /* q: (T, H, hd) */
    rope.n_heads = KVH;
    rope.x = s->k;
    QIAO__DEV_TRY(e, api->rope(queue, &rope), "rope k"); /* k: (T, KVH, hd) */

    qiao_dev_kv_write_args kvw = {sizeof(kvw), T,    kv_dim,   e->n_slots, e->cache_dtype,
                                  s->k,        s->v, s->slots, L->k_cache, L->v_cache};
    QIAO__DEV_TRY(e, api->kv_write(queue, &kvw), "kv_write"); /* caches: (n_slots, KVH*hd) */

    qiao_dev_attention_args attn = {sizeof(attn),
                                    T,
                                    H,
                                    KVH,
                                    hd,
                                    n_seqs,
                                    e->max_blocks_per_seq,
                                    e->block_size,
                                    e->n_slots,
                                    hp->sliding_window,
                                    (float)(1.0 / sqrt((double)hd)),
                                    e->cache_dtype,
                                    s->q,
                                    L->k_cache,
                                    L->v_cache,
                                    s->block_table,
                                    s->token_seq,
                                    s->positions,
                                    s->att};
    QIAO__DEV_TRY(e, api->attention(queue, &attn), "attention"); /* att: (T, H*hd) */

    mm = (qiao_dev_matmul_args){sizeof(mm), T,        q_dim,     D,    s->att,
                                L->o.dtype, L->o.ref, {NULL, 0}, s->x, 1};
    QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul attn_output"); /* x += att @ o^T: (T, D) */

    /* ---- FFN block ---- */
    norm = (qiao_dev_rmsnorm_args){sizeof(norm), T, D, hp->norm_eps, s->x, L->ffn_norm.ref, s->xn};
    QIAO__DEV_TRY(e, api->rmsnorm(queue, &norm), "rmsnorm ffn_norm"); /* xn: (T, D) */

    if (!L->moe) {
      const uint64_t F = hp->ffn_dim;
      mm = (qiao_dev_matmul_args){sizeof(mm),    T,           D,         F,       s->xn,
                                  L->gate.dtype, L->gate.ref, {NULL, 0}, s->gate, 0};
      QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul ffn_gate"); /* gate: (T, F) */
      mm = (qiao_dev_matmul_args){sizeof(mm),  T,         D,         F,     s->xn,
                                  L->up.dtype, L->up.ref, {NULL, 0}, s->up, 0};
      QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul ffn_up"); /* up: (T, F) */
      qiao_dev_swiglu_args sw = {sizeof(sw), T * F, s->gate, s->up, s->gate};
      QIAO__DEV_TRY(e, api->swiglu(queue, &sw), "swiglu"); /* gate = silu(gate) * up: (T, F) */
      mm = (qiao_dev_matmul_args){sizeof(mm),    T,           F,         D,    s->gate,
                                  L->down.dtype, L->down.ref, {NULL, 0}, s->x, 1};
      QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul ffn_down"); /* x += ...: (T, D) */
    } else {
      const uint64_t EF = hp->expert_ffn_dim;
      mm = (qiao_dev_matmul_args){
          sizeof(mm), T, D, E, s->xn, L->router.dtype, L->router.ref, {NULL, 0}, s->moe_logits, 0};
      QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul ffn_gate_inp"); /* logits: (T, E) */
      qiao_dev_moe_gate_args mg = {
          sizeof(mg),    T, E, K, hp->expert_norm_topk ? 1u : 0u, s->moe_logits, s->moe_ids,
          s->moe_weights};
      QIAO__DEV_TRY(e, api->moe_gate(queue, &mg), "moe_gate"); /* ids, weights: (T, K) */
      qiao_dev_matmul_experts_args me = {
          sizeof(me),       T,          K,      E, D, EF, 0, s->xn, L->gate_exps.dtype,
          L->gate_exps.ref, s->moe_ids, s->gate};
      QIAO__DEV_TRY(e, api->matmul_experts(queue, &me),
                    "matmul_experts ffn_gate_exps"); /* (T, K, EF) */
      me.w_dtype = L->up_exps.dtype;
      me.w = L->up_exps.ref;
      me.out = s->up;
      QIAO__DEV_TRY(e, api->matmul_experts(queue, &me),
                    "matmul_experts ffn_up_exps"); /* (T, K, EF) */
      qiao_dev_swiglu_args sw = {sizeof(sw), T * K * EF, s->gate, s->up, s->gate};
      QIAO__DEV_TRY(e, api->swiglu(queue, &sw), "swiglu experts"); /* gate: (T, K, EF) */
      me = (qiao_dev_matmul_experts_args){
          sizeof(me),       T,          K,         E, EF, D, 1, s->gate, L->down_exps.dtype,
          L->down_exps.ref, s->moe_ids, s->moe_out};
      QIAO__DEV_TRY(e, api->matmul_experts(queue, &me),
                    "matmul_experts ffn_down_exps"); /* (T, K, D) */
      qiao_dev_moe_combine_args mc = {sizeof(mc), T, K, D, 1, s->moe_out, s->moe_weights, s->x};
      QIAO__DEV_TRY(e, api->moe_combine(queue, &mc),
                    "moe_combine"); /* x += sum_k w * out: (T, D) */
    }
  }

  /* ---- Output, only for the wanted rows, R at a time ---- */
  const uint64_t row_bytes = D * 4;
  for (uint32_t r0 = 0; r0 < n_rows; r0 += e->out_rows) {
    uint32_t R = n_rows - r0 < e->out_rows ? n_rows - r0 : e->out_rows;
    /* Gather rows of x into rows_x, one copy per run of consecutive tokens. */
    for (uint32_t i = 0; i < R;) {
      uint32_t j = i + 1;
      while (j < R && rows[r0 + j] == rows[r0 + j - 1] + 1)
        j++;
      QIAO__DEV_TRY(e,
                    api->copy(queue, at(s->rows_x, i * row_bytes),
                              at(s->x, rows[r0 + i] * row_bytes), (j - i) * row_bytes),
                    "copy output rows"); /* rows_x: (R, D) */
      i = j;
    }
    qiao_dev_rmsnorm_args norm = {sizeof(norm),       R,        D, hp->norm_eps, s->rows_x,
                                  e->output_norm.ref, s->rows_x};
    QIAO__DEV_TRY(e, api->rmsnorm(queue, &norm), "rmsnorm output_norm"); /* (R, D) */
    qiao_dev_matmul_args mm = {sizeof(mm),    R,         D,         V, s->rows_x, e->output.dtype,
                               e->output.ref, {NULL, 0}, s->logits, 0};
    QIAO__DEV_TRY(e, api->matmul(queue, &mm), "matmul output"); /* logits: (R, V) */
    if (out_argmax != NULL) {
      qiao_dev_argmax_args am = {sizeof(am), R, V, s->logits, s->argmax};
      QIAO__DEV_TRY(e, api->argmax(queue, &am), "argmax"); /* (R) I32 */
      QIAO__DEV_TRY(e, api->download(queue, out_argmax + r0, s->argmax, (uint64_t)R * 4),
                    "download argmax");
    }
    if (out_logits != NULL)
      QIAO__DEV_TRY(
          e, api->download(queue, out_logits + (uint64_t)r0 * V, s->logits, (uint64_t)R * V * 4),
          "download logits");
  }
  return QIAO__DEV(e, api->queue_synchronize(queue), "forward");
}
