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

/* out (n, m) = (accumulate ? out : 0) + x (n, k) @ w (m, k)^T + bias.
 * Quantized weights let the backend quantize x to int8 (device ABI 1.2)
 * unless the engine was asked for exact products. */
static qiao_status *matmul(qiao_engine *e, uint64_t n, uint64_t k, uint64_t m, qiao_dev_ref x,
                           const qiao__weight *w, qiao_dev_ref bias, qiao_dev_ref out,
                           uint32_t accumulate, const char *what) {
  qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                            .n = n,
                            .k = k,
                            .m = m,
                            .x = x,
                            .w_dtype = w->dtype,
                            .w = w->ref,
                            .bias = bias,
                            .out = out,
                            .accumulate = accumulate};
  if (!e->exact_matmul && (w->dtype == QIAO_DEV_Q8_0 || w->dtype == QIAO_DEV_Q4_0))
    a.x_precision = QIAO_DEV_PRECISION_Q8;
  return QIAO__DEV(e, e->ops->matmul(e->ops_queue, &a), what);
}

/* out (rows, cols) = x / rms(x) * weight, per row */
static qiao_status *rmsnorm(qiao_engine *e, uint64_t rows, uint64_t cols, qiao_dev_ref x,
                            const qiao__weight *weight, qiao_dev_ref out, const char *what) {
  qiao_dev_rmsnorm_args a = {.struct_size = sizeof(a),
                             .rows = rows,
                             .cols = cols,
                             .eps = e->hp.norm_eps,
                             .x = x,
                             .weight = weight->ref,
                             .out = out};
  return QIAO__DEV(e, e->ops->rmsnorm(e->ops_queue, &a), what);
}

/* RoPE in place on x (n_tokens, n_heads, head_dim) at the tokens' positions */
static qiao_status *rope(qiao_engine *e, uint64_t n_tokens, uint64_t n_heads, qiao_dev_ref x,
                         const char *what) {
  qiao_dev_rope_args a = {.struct_size = sizeof(a),
                          .n_tokens = n_tokens,
                          .n_heads = n_heads,
                          .head_dim = e->hp.head_dim,
                          .rot_dim = e->hp.rope_dim,
                          .style = e->hp.rope_neox ? QIAO_DEV_ROPE_NEOX : QIAO_DEV_ROPE_NORMAL,
                          .x = x,
                          .positions = e->s.positions,
                          .freqs = e->rope_freqs};
  return QIAO__DEV(e, e->ops->rope(e->ops_queue, &a), what);
}

/* out (T, K, out_dim) = the K chosen experts of w applied to x */
static qiao_status *matmul_experts(qiao_engine *e, uint64_t in_dim, uint64_t out_dim,
                                   uint32_t x_per_slot, qiao_dev_ref x, const qiao__weight *w,
                                   qiao_dev_ref out, uint64_t n_tokens, const char *what) {
  qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                    .n_tokens = n_tokens,
                                    .k = e->hp.n_experts_used,
                                    .n_experts = e->hp.n_experts,
                                    .in_dim = in_dim,
                                    .out_dim = out_dim,
                                    .x_per_slot = x_per_slot,
                                    .x = x,
                                    .w_dtype = w->dtype,
                                    .w = w->ref,
                                    .ids = e->s.moe_ids,
                                    .out = out};
  return QIAO__DEV(e, e->ops->matmul_experts(e->ops_queue, &a), what);
}

static qiao_status *swiglu(qiao_engine *e, uint64_t n, qiao_dev_ref gate, qiao_dev_ref up) {
  qiao_dev_swiglu_args a = {.struct_size = sizeof(a), .n = n, .gate = gate, .up = up, .out = gate};
  return QIAO__DEV(e, e->ops->swiglu(e->ops_queue, &a), "swiglu");
}

/* One op per line with its shape trailing reads best unwrapped. */
/* clang-format off */
qiao_status *qiao__forward(qiao_engine *e, uint32_t n_tokens, uint32_t n_seqs,
                           const uint32_t *rows, uint32_t n_rows, float *out_logits,
                           int32_t *out_argmax) {
  const qiao_dev_api *api = e->ops; /* the backend's table (or the fallback router) */
  qiao_dev_queue *queue = e->ops_queue;
  const qiao_hparams *hp = &e->hp;
  const qiao__scratch *s = &e->s;
  const qiao_dev_ref none = {NULL, 0};
  const uint64_t T = n_tokens, D = hp->dim, H = hp->n_heads, KVH = hp->n_kv_heads;
  const uint64_t hd = hp->head_dim, q_dim = H * hd, kv_dim = e->kv_dim;
  const uint64_t E = hp->n_experts, K = hp->n_experts_used, V = hp->vocab_size;

  /* Inputs: token ids, positions, cache slots, sequence of each token, block table. */
  QIAO__DEV_TRY(e, api->upload(queue, s->tokens, e->h_tokens, T * 4), "upload tokens");
  QIAO__DEV_TRY(e, api->upload(queue, s->positions, e->h_positions, T * 4), "upload positions");
  QIAO__DEV_TRY(e, api->upload(queue, s->slots, e->h_slots, T * 4), "upload slots");
  QIAO__DEV_TRY(e, api->upload(queue, s->token_seq, e->h_token_seq, T * 4), "upload token_seq");
  uint64_t table_bytes = (uint64_t)n_seqs * e->max_blocks_per_seq * 4;
  QIAO__DEV_TRY(e, api->upload(queue, s->block_table, e->h_block_table, table_bytes),
                "upload block table");

  /* x = token_embd[tokens] */
  qiao_dev_embed_args embed = {.struct_size = sizeof(embed), .n_tokens = T, .vocab = V, .dim = D,
                               .table_dtype = e->token_embd.dtype, .table = e->token_embd.ref,
                               .ids = s->tokens, .out = s->x};
  QIAO__DEV_TRY(e, api->embed(queue, &embed), "embed"); /* x: (T, D) */

  for (uint32_t l = 0; l < hp->n_layers; l++) {
    const qiao__layer *L = &e->layers[l];

    /* ---- Attention block ---- */
    QIAO__TRY(rmsnorm(e, T, D, s->x, &L->attn_norm, s->xn, "rmsnorm attn_norm")); /* xn: (T, D) */
    QIAO__TRY(matmul(e, T, D, q_dim, s->xn, &L->q, L->q_bias.ref, s->q, 0, "matmul attn_q")); /* q: (T, H*hd) */
    QIAO__TRY(matmul(e, T, D, kv_dim, s->xn, &L->k, L->k_bias.ref, s->k, 0, "matmul attn_k")); /* k: (T, KVH*hd) */
    QIAO__TRY(matmul(e, T, D, kv_dim, s->xn, &L->v, L->v_bias.ref, s->v, 0, "matmul attn_v")); /* v: (T, KVH*hd) */
    if (hp->qk_norm) { /* per-head RMSNorm of q and k (Qwen3), in place */
      QIAO__TRY(rmsnorm(e, T * H, hd, s->q, &L->q_norm, s->q, "rmsnorm attn_q_norm")); /* q: (T*H, hd) */
      QIAO__TRY(rmsnorm(e, T * KVH, hd, s->k, &L->k_norm, s->k, "rmsnorm attn_k_norm")); /* k: (T*KVH, hd) */
    }
    QIAO__TRY(rope(e, T, H, s->q, "rope q"));   /* q: (T, H, hd) */
    QIAO__TRY(rope(e, T, KVH, s->k, "rope k")); /* k: (T, KVH, hd) */

    qiao_dev_kv_write_args kvw = {.struct_size = sizeof(kvw), .n_tokens = T, .kv_dim = kv_dim,
                                  .n_slots = e->n_slots, .cache_dtype = e->cache_dtype,
                                  .k = s->k, .v = s->v, .slots = s->slots,
                                  .k_cache = L->k_cache, .v_cache = L->v_cache};
    QIAO__DEV_TRY(e, api->kv_write(queue, &kvw), "kv_write"); /* caches: (n_slots, KVH*hd) */

    qiao_dev_attention_args attn = {
        .struct_size = sizeof(attn), .n_tokens = T, .n_heads = H, .n_kv_heads = KVH,
        .head_dim = hd, .n_seqs = n_seqs, .max_blocks_per_seq = e->max_blocks_per_seq,
        .block_size = e->block_size, .n_slots = e->n_slots, .window = hp->sliding_window,
        .scale = (float)(1.0 / sqrt((double)hd)), .cache_dtype = e->cache_dtype, .q = s->q,
        .k_cache = L->k_cache, .v_cache = L->v_cache, .block_table = s->block_table,
        .token_seq = s->token_seq, .token_pos = s->positions, .out = s->att};
    QIAO__DEV_TRY(e, api->attention(queue, &attn), "attention"); /* att: (T, H*hd) */

    QIAO__TRY(matmul(e, T, q_dim, D, s->att, &L->o, none, s->x, 1, "matmul attn_output")); /* x += att @ o^T: (T, D) */

    /* ---- FFN block ---- */
    QIAO__TRY(rmsnorm(e, T, D, s->x, &L->ffn_norm, s->xn, "rmsnorm ffn_norm")); /* xn: (T, D) */
    if (!L->moe) {
      const uint64_t F = hp->ffn_dim;
      QIAO__TRY(matmul(e, T, D, F, s->xn, &L->gate, none, s->gate, 0, "matmul ffn_gate")); /* gate: (T, F) */
      QIAO__TRY(matmul(e, T, D, F, s->xn, &L->up, none, s->up, 0, "matmul ffn_up")); /* up: (T, F) */
      QIAO__TRY(swiglu(e, T * F, s->gate, s->up)); /* gate = silu(gate) * up: (T, F) */
      QIAO__TRY(matmul(e, T, F, D, s->gate, &L->down, none, s->x, 1, "matmul ffn_down")); /* x += gate @ down^T: (T, D) */
    } else {
      const uint64_t EF = hp->expert_ffn_dim;
      QIAO__TRY(matmul(e, T, D, E, s->xn, &L->router, none, s->moe_logits, 0, "matmul ffn_gate_inp")); /* (T, E) */
      qiao_dev_moe_gate_args gate = {.struct_size = sizeof(gate), .n_tokens = T, .n_experts = E,
                                     .k = K, .normalize = hp->expert_norm_topk ? 1u : 0u,
                                     .logits = s->moe_logits, .ids = s->moe_ids,
                                     .weights = s->moe_weights};
      QIAO__DEV_TRY(e, api->moe_gate(queue, &gate), "moe_gate"); /* ids, weights: (T, K) */
      QIAO__TRY(matmul_experts(e, D, EF, 0, s->xn, &L->gate_exps, s->gate, T, "matmul_experts ffn_gate_exps")); /* (T, K, EF) */
      QIAO__TRY(matmul_experts(e, D, EF, 0, s->xn, &L->up_exps, s->up, T, "matmul_experts ffn_up_exps")); /* (T, K, EF) */
      QIAO__TRY(swiglu(e, T * K * EF, s->gate, s->up)); /* gate: (T, K, EF) */
      QIAO__TRY(matmul_experts(e, EF, D, 1, s->gate, &L->down_exps, s->moe_out, T, "matmul_experts ffn_down_exps")); /* (T, K, D) */
      qiao_dev_moe_combine_args combine = {.struct_size = sizeof(combine), .n_tokens = T, .k = K,
                                           .dim = D, .accumulate = 1, .x = s->moe_out,
                                           .weights = s->moe_weights, .out = s->x};
      QIAO__DEV_TRY(e, api->moe_combine(queue, &combine), "moe_combine"); /* x += sum_k w * out: (T, D) */
    }
  }

  /* ---- Output, only for the wanted rows, R at a time ---- */
  const uint64_t row_bytes = D * 4;
  for (uint32_t r0 = 0; r0 < n_rows; r0 += e->out_rows) {
    uint32_t R = n_rows - r0 < e->out_rows ? n_rows - r0 : e->out_rows;
    /* Gather rows of x into rows_x, one copy per run of consecutive tokens. */
    for (uint32_t i = 0; i < R;) {
      uint32_t j = i + 1;
      while (j < R && rows[r0 + j] == rows[r0 + j - 1] + 1) j++;
      QIAO__DEV_TRY(e,
                    api->copy(queue, at(s->rows_x, i * row_bytes),
                              at(s->x, rows[r0 + i] * row_bytes), (j - i) * row_bytes),
                    "copy output rows"); /* rows_x: (R, D) */
      i = j;
    }
    QIAO__TRY(rmsnorm(e, R, D, s->rows_x, &e->output_norm, s->rows_x, "rmsnorm output_norm")); /* (R, D) */
    QIAO__TRY(matmul(e, R, D, V, s->rows_x, &e->output, none, s->logits, 0, "matmul output")); /* logits: (R, V) */
    if (out_argmax != NULL) {
      qiao_dev_argmax_args am = {.struct_size = sizeof(am), .rows = R, .cols = V,
                                 .x = s->logits, .out = s->argmax};
      QIAO__DEV_TRY(e, api->argmax(queue, &am), "argmax"); /* (R) I32 */
      QIAO__DEV_TRY(e, api->download(queue, out_argmax + r0, s->argmax, (uint64_t)R * 4),
                    "download argmax");
    }
    if (out_logits != NULL)
      QIAO__DEV_TRY(e,
                    api->download(queue, out_logits + (uint64_t)r0 * V, s->logits,
                                  (uint64_t)R * V * 4),
                    "download logits");
  }
  return QIAO__DEV(e, api->queue_synchronize(queue), "forward");
}
/* clang-format on */
