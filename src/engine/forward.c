/* The forward pass of a decoder-only transformer, as device ops.
 *
 * Read top to bottom: layer() is one decoder layer (attention block, then
 * dense or mixture-of-experts FFN block); qiao__forward is embed -> every
 * layer (run_layers, which moves x between stages) -> final norm and output
 * matmul for the wanted rows only. The LLaMA/Qwen families differ only in
 * data: which tensors exist (biases, q/k norms, experts) and the
 * hyperparameters (RoPE style and frequencies, sliding window, head_dim).
 * DeepSeek-V2/V3 (deepseek2) has its own two blocks: multi-head latent
 * attention over a cache of latents (mla_attention) and DeepSeekMoE routing
 * with shared experts (deepseek_moe_ffn). Every op is enqueued on
 * the queue of the stage (device) that holds its layer; the host waits once
 * at the end, and, when the layers are split across devices, once at each
 * boundary, where x (T, D) goes down to the host and up to the next device.
 *
 * Shapes in trailing comments: T = tokens in this pass, D = dim,
 * H = n_heads, KVH = n_kv_heads, hd = head_dim, F = ffn_dim, E = n_experts,
 * K = experts used per token, EF = expert ffn dim, V = vocab, R = rows out
 * (mla_attention names its own: the latent L, rope R, value V widths). */
#include <math.h>
#include <string.h>

#include "engine/engine_internal.h"

static qiao_dev_ref at(qiao_dev_ref ref, uint64_t byte_offset) {
  ref.offset += byte_offset;
  return ref;
}

/* The precision of x for a product with weights of `dtype`: quantized
 * weights (Q8_0, Q4_0 and the block types of ABI 1.3 and 1.5) let the
 * backend quantize x to int8 (matmul: ABI 1.2; matmul_experts: 1.5) unless
 * the engine was asked for exact products. */
static uint32_t x_precision(const qiao_engine *e, qiao_dev_dtype dtype) {
  if (!e->exact_matmul && (dtype == QIAO_DEV_Q8_0 || dtype == QIAO_DEV_Q4_0 ||
                           (dtype >= QIAO_DEV_Q4_K && dtype <= QIAO_DEV_Q5_1) ||
                           dtype == QIAO_DEV_IQ4_NL || dtype == QIAO_DEV_IQ4_XS))
    return QIAO_DEV_PRECISION_Q8;
  return QIAO_DEV_PRECISION_EXACT;
}

/* out (n, m) = (accumulate ? out : 0) + x (n, k) @ w (m, k)^T + bias,
 * x at x_precision (above). */
static qiao_status *matmul(qiao__stage *g, uint64_t n, uint64_t k, uint64_t m, qiao_dev_ref x,
                           const qiao__weight *w, qiao_dev_ref bias, qiao_dev_ref out,
                           uint32_t accumulate, const char *what) {
  const qiao_engine *e = g->engine;
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
  a.x_precision = x_precision(e, w->dtype);
  return QIAO__DEV(g, g->ops->matmul(g->ops_queue, &a), what);
}

/* out (rows, cols) = x / rms(x) * weight, per row */
static qiao_status *rmsnorm(qiao__stage *g, uint64_t rows, uint64_t cols, qiao_dev_ref x,
                            const qiao__weight *weight, qiao_dev_ref out, const char *what) {
  const qiao_engine *e = g->engine;
  qiao_dev_rmsnorm_args a = {.struct_size = sizeof(a),
                             .rows = rows,
                             .cols = cols,
                             .eps = e->hp.norm_eps,
                             .x = x,
                             .weight = weight->ref,
                             .out = out};
  return QIAO__DEV(g, g->ops->rmsnorm(g->ops_queue, &a), what);
}

/* RoPE in place on x (n_tokens, n_heads, head_dim) at the tokens' positions
 * (head_dim: the model's, or rope_dim for latent attention's rope parts) */
static qiao_status *rope(qiao__stage *g, uint64_t n_tokens, uint64_t n_heads, uint64_t head_dim,
                         qiao_dev_ref x, const char *what) {
  const qiao_engine *e = g->engine;
  qiao_dev_rope_args a = {.struct_size = sizeof(a),
                          .n_tokens = n_tokens,
                          .n_heads = n_heads,
                          .head_dim = head_dim,
                          .rot_dim = e->hp.rope_dim,
                          .style = e->hp.rope_neox ? QIAO_DEV_ROPE_NEOX : QIAO_DEV_ROPE_NORMAL,
                          .x = x,
                          .positions = g->s.positions,
                          .freqs = g->rope_freqs};
  return QIAO__DEV(g, g->ops->rope(g->ops_queue, &a), what);
}

/* out (T, K, out_dim) = the K chosen experts of w applied to x, x at
 * x_precision (as matmul) */
static qiao_status *matmul_experts(qiao__stage *g, uint64_t in_dim, uint64_t out_dim,
                                   uint32_t x_per_slot, qiao_dev_ref x, const qiao__weight *w,
                                   qiao_dev_ref out, uint64_t n_tokens, const char *what) {
  const qiao_engine *e = g->engine;
  qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                    .n_tokens = n_tokens,
                                    .k = e->hp.n_experts_used,
                                    .n_experts = e->hp.n_experts,
                                    .in_dim = in_dim,
                                    .out_dim = out_dim,
                                    .x_per_slot = x_per_slot,
                                    .x_precision = x_precision(e, w->dtype),
                                    .x = x,
                                    .w_dtype = w->dtype,
                                    .w = w->ref,
                                    .ids = g->s.moe_ids,
                                    .out = out};
  return QIAO__DEV(g, g->ops->matmul_experts(g->ops_queue, &a), what);
}

/* out (T, H, out_dim) = per head h: w[h] (out_dim, in_dim) @ x[t, h, :], as
 * matmul_experts with every head chosen in order (ids 0..H-1), x at
 * x_precision (as matmul) */
static qiao_status *matmul_heads(qiao__stage *g, uint64_t n_tokens, uint64_t in_dim,
                                 uint64_t out_dim, qiao_dev_ref x, const qiao__weight *w,
                                 qiao_dev_ref out, const char *what) {
  const uint64_t H = g->engine->hp.n_heads;
  qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                    .n_tokens = n_tokens,
                                    .k = H,
                                    .n_experts = H,
                                    .in_dim = in_dim,
                                    .out_dim = out_dim,
                                    .x_per_slot = 1,
                                    .x_precision = x_precision(g->engine, w->dtype),
                                    .x = x,
                                    .w_dtype = w->dtype,
                                    .w = w->ref,
                                    .ids = g->s.head_ids,
                                    .out = out};
  return QIAO__DEV(g, g->ops->matmul_experts(g->ops_queue, &a), what);
}

static qiao_status *swiglu(qiao__stage *g, uint64_t n, qiao_dev_ref gate, qiao_dev_ref up) {
  qiao_dev_swiglu_args a = {.struct_size = sizeof(a), .n = n, .gate = gate, .up = up, .out = gate};
  return QIAO__DEV(g, g->ops->swiglu(g->ops_queue, &a), "swiglu");
}

/* One op per line with its shape trailing reads best unwrapped. */
/* clang-format off */
/* The pass's inputs on stage g: token ids (first stage only), positions,
 * cache slots, sequence of each token, block table. */
static qiao_status *upload_inputs(qiao__stage *g, uint64_t T, uint32_t n_seqs, bool tokens) {
  const qiao_engine *e = g->engine;
  const qiao_dev_api *api = g->ops;
  qiao_dev_queue *queue = g->ops_queue;
  const qiao__scratch *s = &g->s;
  if (tokens) QIAO__DEV_TRY(g, api->upload(queue, s->tokens, e->h_tokens, T * 4), "upload tokens");
  QIAO__DEV_TRY(g, api->upload(queue, s->positions, e->h_positions, T * 4), "upload positions");
  QIAO__DEV_TRY(g, api->upload(queue, s->slots, e->h_slots, T * 4), "upload slots");
  QIAO__DEV_TRY(g, api->upload(queue, s->token_seq, e->h_token_seq, T * 4), "upload token_seq");
  uint64_t table_bytes = (uint64_t)n_seqs * e->max_blocks_per_seq * 4;
  return QIAO__DEV(g, api->upload(queue, s->block_table, e->h_block_table, table_bytes), "upload block table");
}

/* Attention of stage g's layer L: x (T, D) += attention(xn). */
static qiao_status *attention(qiao__stage *g, const qiao__layer *L, uint64_t T, uint32_t n_seqs) {
  const qiao_engine *e = g->engine;
  const qiao_hparams *hp = &e->hp;
  const qiao_dev_api *api = g->ops;
  qiao_dev_queue *queue = g->ops_queue;
  const qiao__scratch *s = &g->s;
  const qiao_dev_ref none = {NULL, 0};
  const uint64_t D = hp->dim, H = hp->n_heads, KVH = hp->n_kv_heads;
  const uint64_t hd = hp->head_dim, q_dim = H * hd, kv_dim = e->kv_dim;

  QIAO__TRY(matmul(g, T, D, q_dim, s->xn, &L->q, L->q_bias.ref, s->q, 0, "matmul attn_q")); /* q: (T, H*hd) */
  QIAO__TRY(matmul(g, T, D, kv_dim, s->xn, &L->k, L->k_bias.ref, s->k, 0, "matmul attn_k")); /* k: (T, KVH*hd) */
  QIAO__TRY(matmul(g, T, D, kv_dim, s->xn, &L->v, L->v_bias.ref, s->v, 0, "matmul attn_v")); /* v: (T, KVH*hd) */
  if (hp->qk_norm) { /* per-head RMSNorm of q and k (Qwen3), in place */
    QIAO__TRY(rmsnorm(g, T * H, hd, s->q, &L->q_norm, s->q, "rmsnorm attn_q_norm")); /* q: (T*H, hd) */
    QIAO__TRY(rmsnorm(g, T * KVH, hd, s->k, &L->k_norm, s->k, "rmsnorm attn_k_norm")); /* k: (T*KVH, hd) */
  }
  QIAO__TRY(rope(g, T, H, hd, s->q, "rope q"));   /* q: (T, H, hd) */
  QIAO__TRY(rope(g, T, KVH, hd, s->k, "rope k")); /* k: (T, KVH, hd) */

  qiao_dev_kv_write_args kvw = {.struct_size = sizeof(kvw), .n_tokens = T, .kv_dim = kv_dim,
                                .n_slots = e->n_slots, .cache_dtype = e->cache_dtype,
                                .k = s->k, .v = s->v, .slots = s->slots,
                                .k_cache = L->k_cache, .v_cache = L->v_cache};
  QIAO__DEV_TRY(g, api->kv_write(queue, &kvw), "kv_write"); /* caches: (n_slots, KVH*hd) */

  qiao_dev_attention_args attn = {
      .struct_size = sizeof(attn), .n_tokens = T, .n_heads = H, .n_kv_heads = KVH,
      .head_dim = hd, .n_seqs = n_seqs, .max_blocks_per_seq = e->max_blocks_per_seq,
      .block_size = e->block_size, .n_slots = e->n_slots, .window = hp->sliding_window,
      .scale = (float)(1.0 / sqrt((double)hd)), .cache_dtype = e->cache_dtype, .q = s->q,
      .k_cache = L->k_cache, .v_cache = L->v_cache, .block_table = s->block_table,
      .token_seq = s->token_seq, .token_pos = s->positions, .out = s->att};
  QIAO__DEV_TRY(g, api->attention(queue, &attn), "attention"); /* att: (T, H*hd) */

  return matmul(g, T, q_dim, D, s->att, &L->o, none, s->x, 1, "matmul attn_output"); /* x += att @ o^T: (T, D) */
}

/* Multi-head latent attention (DeepSeek-V2/V3) of layer L: x (T, D) +=
 * attention(xn), with the cache holding only each token's latent c and rope
 * key. The key up-projection is folded into the query (q_lat = W_UK^T q_nope
 * per head) and the value up-projection applied after (o = W_UV o_lat), so
 * past tokens are never expanded. L = kv_lora_rank, R = rope_dim,
 * N = head_dim - R, V = v_head_dim, QL = q_lora_rank (or D). */
static qiao_status *mla_attention(qiao__stage *g, const qiao__layer *L, uint64_t T, uint32_t n_seqs) {
  const qiao_engine *e = g->engine;
  const qiao_hparams *hp = &e->hp;
  const qiao_dev_api *api = g->ops;
  qiao_dev_queue *queue = g->ops_queue;
  const qiao__scratch *s = &g->s;
  const qiao_dev_ref none = {NULL, 0};
  const uint64_t D = hp->dim, H = hp->n_heads, Lr = hp->kv_lora_rank, R = hp->rope_dim;
  const uint64_t N = hp->head_dim - R, V = hp->v_head_dim;
  const uint64_t QL = hp->q_lora_rank ? hp->q_lora_rank : D;

  qiao_dev_ref q_in = s->xn; /* (T, QL) */
  if (hp->q_lora_rank) {
    QIAO__TRY(matmul(g, T, D, QL, s->xn, &L->q_a, none, s->q_low, 0, "matmul attn_q_a")); /* q_low: (T, QL) */
    QIAO__TRY(rmsnorm(g, T, QL, s->q_low, &L->q_a_norm, s->q_low, "rmsnorm attn_q_a_norm")); /* (T, QL) */
    q_in = s->q_low;
  }
  QIAO__TRY(matmul(g, T, QL, H * N, q_in, &L->q_nope, none, s->q, 0, "matmul attn_q_b (nope)")); /* q: (T, H, N) */
  QIAO__TRY(matmul(g, T, QL, H * R, q_in, &L->q_rope, none, s->q_rope, 0, "matmul attn_q_b (rope)")); /* q_rope: (T, H, R) */
  QIAO__TRY(matmul(g, T, D, Lr, s->xn, &L->kv_a_latent, none, s->latent, 0, "matmul attn_kv_a_mqa (latent)")); /* c: (T, L) */
  QIAO__TRY(rmsnorm(g, T, Lr, s->latent, &L->kv_a_norm, s->latent, "rmsnorm attn_kv_a_norm")); /* c: (T, L) */
  QIAO__TRY(matmul(g, T, D, R, s->xn, &L->kv_a_rope, none, s->k_rope, 0, "matmul attn_kv_a_mqa (rope)")); /* k_rope: (T, R) */
  QIAO__TRY(rope(g, T, H, R, s->q_rope, "rope q_rope")); /* q_rope: (T, H, R) */
  QIAO__TRY(rope(g, T, 1, R, s->k_rope, "rope k_rope")); /* k_rope: (T, 1, R), shared by every head */

  qiao_dev_latent_write_args lw = {.struct_size = sizeof(lw), .n_tokens = T, .latent_dim = Lr,
                                   .rope_dim = R, .n_slots = e->n_slots,
                                   .cache_dtype = e->cache_dtype, .latent = s->latent,
                                   .rope = s->k_rope, .slots = s->slots, .cache = L->k_cache};
  QIAO__DEV_TRY(g, api->latent_write(queue, &lw), "latent_write"); /* cache: (n_slots, L + R) */

  QIAO__TRY(matmul_heads(g, T, N, Lr, s->q, &L->uk_t, s->q_lat, "matmul_experts W_UK^T")); /* q_lat: (T, H, L) */
  qiao_dev_attention_latent_args attn = {
      .struct_size = sizeof(attn), .n_tokens = T, .n_heads = H, .latent_dim = Lr, .rope_dim = R,
      .n_seqs = n_seqs, .max_blocks_per_seq = e->max_blocks_per_seq, .block_size = e->block_size,
      .n_slots = e->n_slots, .window = hp->sliding_window,
      .scale = (float)(hp->attn_scale_mul / sqrt((double)hp->head_dim)),
      .cache_dtype = e->cache_dtype, .q_latent = s->q_lat, .q_rope = s->q_rope,
      .cache = L->k_cache, .block_table = s->block_table, .token_seq = s->token_seq,
      .token_pos = s->positions, .out = s->o_lat};
  QIAO__DEV_TRY(g, api->attention_latent(queue, &attn), "attention_latent"); /* o_lat: (T, H, L) */
  QIAO__TRY(matmul_heads(g, T, Lr, V, s->o_lat, &L->uv, s->att, "matmul_experts W_UV")); /* att: (T, H, V) */

  return matmul(g, T, H * V, D, s->att, &L->o, none, s->x, 1, "matmul attn_output"); /* x += att @ o^T: (T, D) */
}

/* Dense FFN of layer L: x (T, D) += down(silu(gate(xn)) * up(xn)). */
static qiao_status *dense_ffn(qiao__stage *g, const qiao__layer *L, uint64_t T) {
  const qiao__scratch *s = &g->s;
  const qiao_dev_ref none = {NULL, 0};
  const uint64_t D = g->engine->hp.dim, F = g->engine->hp.ffn_dim;
  QIAO__TRY(matmul(g, T, D, F, s->xn, &L->gate, none, s->gate, 0, "matmul ffn_gate")); /* gate: (T, F) */
  QIAO__TRY(matmul(g, T, D, F, s->xn, &L->up, none, s->up, 0, "matmul ffn_up")); /* up: (T, F) */
  QIAO__TRY(swiglu(g, T * F, s->gate, s->up)); /* gate = silu(gate) * up: (T, F) */
  return matmul(g, T, F, D, s->gate, &L->down, none, s->x, 1, "matmul ffn_down"); /* x += gate @ down^T: (T, D) */
}

/* The chosen experts (ids, weights in the scratch) of layer L: x (T, D) +=
 * sum_k w * expert_k(xn). */
static qiao_status *experts(qiao__stage *g, const qiao__layer *L, uint64_t T) {
  const qiao_hparams *hp = &g->engine->hp;
  const qiao__scratch *s = &g->s;
  const uint64_t D = hp->dim, K = hp->n_experts_used, EF = hp->expert_ffn_dim;
  QIAO__TRY(matmul_experts(g, D, EF, 0, s->xn, &L->gate_exps, s->gate, T, "matmul_experts ffn_gate_exps")); /* (T, K, EF) */
  QIAO__TRY(matmul_experts(g, D, EF, 0, s->xn, &L->up_exps, s->up, T, "matmul_experts ffn_up_exps")); /* (T, K, EF) */
  QIAO__TRY(swiglu(g, T * K * EF, s->gate, s->up)); /* gate: (T, K, EF) */
  QIAO__TRY(matmul_experts(g, EF, D, 1, s->gate, &L->down_exps, s->moe_out, T, "matmul_experts ffn_down_exps")); /* (T, K, D) */
  qiao_dev_moe_combine_args combine = {.struct_size = sizeof(combine), .n_tokens = T, .k = K,
                                       .dim = D, .accumulate = 1, .x = s->moe_out,
                                       .weights = s->moe_weights, .out = s->x};
  return QIAO__DEV(g, g->ops->moe_combine(g->ops_queue, &combine), "moe_combine"); /* x += sum_k w * out: (T, D) */
}

/* Mixture-of-experts FFN (Qwen3-MoE): softmax top-k of the router logits. */
static qiao_status *moe_ffn(qiao__stage *g, const qiao__layer *L, uint64_t T) {
  const qiao_hparams *hp = &g->engine->hp;
  const qiao__scratch *s = &g->s;
  const qiao_dev_ref none = {NULL, 0};
  const uint64_t D = hp->dim, E = hp->n_experts, K = hp->n_experts_used;
  QIAO__TRY(matmul(g, T, D, E, s->xn, &L->router, none, s->moe_logits, 0, "matmul ffn_gate_inp")); /* (T, E) */
  qiao_dev_moe_gate_args gate = {.struct_size = sizeof(gate), .n_tokens = T, .n_experts = E,
                                 .k = K, .normalize = hp->expert_norm_topk ? 1u : 0u,
                                 .logits = s->moe_logits, .ids = s->moe_ids,
                                 .weights = s->moe_weights};
  QIAO__DEV_TRY(g, g->ops->moe_gate(g->ops_queue, &gate), "moe_gate"); /* ids, weights: (T, K) */
  return experts(g, L, T);
}

/* DeepSeekMoE FFN: routed experts chosen by softmax (V2) or sigmoid plus a
 * selection bias (V3) within the best expert groups, weights normalized
 * and scaled, plus the always-on shared experts (one MLP of width SF). */
static qiao_status *deepseek_moe_ffn(qiao__stage *g, const qiao__layer *L, uint64_t T) {
  const qiao_hparams *hp = &g->engine->hp;
  const qiao__scratch *s = &g->s;
  const qiao_dev_ref none = {NULL, 0};
  const uint64_t D = hp->dim, E = hp->n_experts, K = hp->n_experts_used;
  const uint64_t SF = (uint64_t)hp->n_shared_experts * hp->expert_ffn_dim;
  QIAO__TRY(matmul(g, T, D, E, s->xn, &L->router, none, s->moe_logits, 0, "matmul ffn_gate_inp")); /* (T, E) */
  qiao_dev_moe_route_args route = {.struct_size = sizeof(route), .n_tokens = T, .n_experts = E,
                                   .k = K, .scoring = hp->expert_gating,
                                   .normalize = hp->expert_norm_topk ? 1u : 0u,
                                   .n_groups = hp->expert_groups > 1 ? hp->expert_groups : 0,
                                   .topk_groups = hp->expert_groups_used,
                                   .group_score = hp->expert_group_score,
                                   .scale = hp->expert_scale, .logits = s->moe_logits,
                                   .bias = L->exp_bias.ref, .ids = s->moe_ids,
                                   .weights = s->moe_weights};
  QIAO__DEV_TRY(g, g->ops->moe_route(g->ops_queue, &route), "moe_route"); /* ids, weights: (T, K) */
  QIAO__TRY(experts(g, L, T)); /* x += routed experts: (T, D) */
  if (SF == 0) return NULL;
  QIAO__TRY(matmul(g, T, D, SF, s->xn, &L->gate_sh, none, s->gate, 0, "matmul ffn_gate_shexp")); /* gate: (T, SF) */
  QIAO__TRY(matmul(g, T, D, SF, s->xn, &L->up_sh, none, s->up, 0, "matmul ffn_up_shexp")); /* up: (T, SF) */
  QIAO__TRY(swiglu(g, T * SF, s->gate, s->up)); /* gate: (T, SF) */
  return matmul(g, T, SF, D, s->gate, &L->down_sh, none, s->x, 1, "matmul ffn_down_shexp"); /* x += shared: (T, D) */
}

/* One decoder layer on stage g: x (T, D) += attention, then += FFN. */
static qiao_status *layer(qiao__stage *g, const qiao__layer *L, uint64_t T, uint32_t n_seqs) {
  const qiao_engine *e = g->engine;
  const qiao__scratch *s = &g->s;
  const uint64_t D = e->hp.dim;

  QIAO__TRY(rmsnorm(g, T, D, s->x, &L->attn_norm, s->xn, "rmsnorm attn_norm")); /* xn: (T, D) */
  if (e->mla)
    QIAO__TRY(mla_attention(g, L, T, n_seqs)); /* x += MLA(xn): (T, D) */
  else
    QIAO__TRY(attention(g, L, T, n_seqs)); /* x += attention(xn): (T, D) */

  QIAO__TRY(rmsnorm(g, T, D, s->x, &L->ffn_norm, s->xn, "rmsnorm ffn_norm")); /* xn: (T, D) */
  if (!L->moe) return dense_ffn(g, L, T);  /* x += FFN(xn): (T, D) */
  if (e->mla) return deepseek_moe_ffn(g, L, T); /* x += DeepSeekMoE(xn): (T, D) */
  return moe_ffn(g, L, T); /* x += MoE(xn): (T, D) */
}

/* The layers from stage *gp on, x (T, D) moving between stages through the
 * host buffer hx: down from one device and up to the next at each boundary
 * (the only traffic between stages); an external stage gets it on the host.
 * x starts on *gp's device, or in hx when *on_host; on return *gp is the
 * stage x ended on and *on_host says whether it is in hx instead. External
 * stages run through e->external when `external`, else are skipped (the
 * caller runs them). */
static qiao_status *run_layers(qiao_engine *e, qiao__stage **gp, bool *on_host, float *hx,
                               uint32_t T, uint32_t n_seqs, bool external) {
  qiao__stage *g = *gp;
  const uint64_t x_bytes = (uint64_t)T * e->hp.dim * 4;
  for (uint32_t l = 0; l < e->hp.n_layers; l++) {
    const qiao__layer *L = &e->layers[l];
    qiao__stage *next = &e->stages[L->stage];
    if (next->external && !external) { /* the caller's */
      l = next->end_layer - 1;
      continue;
    }
    if (next != g || (*on_host && !next->external)) { /* a stage boundary */
      if (!*on_host) {
        QIAO__DEV_TRY(g, g->ops->download(g->ops_queue, hx, g->s.x, x_bytes), "download x to the next stage"); /* (T, D) */
        QIAO__DEV_TRY(g, g->ops->queue_synchronize(g->ops_queue), "download x to the next stage");
        *on_host = true;
      }
      g = next;
      if (g->external) { /* its layers run elsewhere, on hx */
        qiao_engine_pass pass = {.struct_size = sizeof(pass), .stage = L->stage,
                                 .first_layer = g->first_layer, .last_layer = g->end_layer - 1,
                                 .n_tokens = T, .n_seqs = n_seqs,
                                 .max_blocks_per_seq = e->max_blocks_per_seq,
                                 .positions = e->h_positions, .slots = e->h_slots,
                                 .token_seq = e->h_token_seq, .block_table = e->h_block_table,
                                 .n_copies = e->n_ext_copies, .copies = e->ext_copies};
        if (e->external == NULL)
          return qiao__error(QIAO_INVALID_ARGUMENT, "engine: layers %u-%u are external and no runner was given",
                             g->first_layer, g->end_layer - 1);
        QIAO__TRY(qiao__annotate(e->external(e->external_user, &pass, hx), "external stage %u (layers %u-%u)",
                                 L->stage, g->first_layer, g->end_layer - 1)); /* hx: (T, D) */
        l = g->end_layer - 1;
        continue;
      }
      QIAO__TRY(upload_inputs(g, T, n_seqs, false));
      QIAO__DEV_TRY(g, g->ops->upload(g->ops_queue, g->s.x, hx, x_bytes), "upload x from the previous stage"); /* x: (T, D) */
      *on_host = false;
    }
    QIAO__TRY(layer(g, L, T, n_seqs));
  }
  *gp = g;
  return NULL;
}

qiao_status *qiao__forward(qiao_engine *e, uint32_t n_tokens, uint32_t n_seqs,
                           const uint32_t *rows, uint32_t n_rows, float *out_logits,
                           int32_t *out_argmax) {
  const qiao_hparams *hp = &e->hp;
  const qiao_dev_ref none = {NULL, 0};
  const uint64_t T = n_tokens, D = hp->dim, V = hp->vocab_size;

  /* x = token_embd[tokens], on the first stage */
  qiao__stage *g = &e->stages[e->embed_stage];
  QIAO__TRY(upload_inputs(g, T, n_seqs, true));
  qiao_dev_embed_args embed = {.struct_size = sizeof(embed), .n_tokens = T, .vocab = V, .dim = D,
                               .table_dtype = e->token_embd.dtype, .table = e->token_embd.ref,
                               .ids = g->s.tokens, .out = g->s.x};
  QIAO__DEV_TRY(g, g->ops->embed(g->ops_queue, &embed), "embed"); /* x: (T, D) */

  bool on_host = false;
  QIAO__TRY(run_layers(e, &g, &on_host, e->h_x, n_tokens, n_seqs, true)); /* x: (T, D) */
  if (on_host) { /* back from an external stage: up to the output's device */
    g = &e->stages[e->output_stage];
    QIAO__DEV_TRY(g, g->ops->upload(g->ops_queue, g->s.x, e->h_x, T * D * 4), "upload x from the previous stage"); /* x: (T, D) */
  }

  /* ---- Output, on the last stage, only for the wanted rows, R at a time ---- */
  const qiao_dev_api *api = g->ops;
  qiao_dev_queue *queue = g->ops_queue;
  const qiao__scratch *s = &g->s;
  const uint64_t row_bytes = D * 4;
  for (uint32_t r0 = 0; r0 < n_rows; r0 += e->out_rows) {
    uint32_t R = n_rows - r0 < e->out_rows ? n_rows - r0 : e->out_rows;
    /* Gather rows of x into rows_x, one copy per run of consecutive tokens. */
    for (uint32_t i = 0; i < R;) {
      uint32_t j = i + 1;
      while (j < R && rows[r0 + j] == rows[r0 + j - 1] + 1) j++;
      QIAO__DEV_TRY(g,
                    api->copy(queue, at(s->rows_x, i * row_bytes),
                              at(s->x, rows[r0 + i] * row_bytes), (j - i) * row_bytes),
                    "copy output rows"); /* rows_x: (R, D) */
      i = j;
    }
    QIAO__TRY(rmsnorm(g, R, D, s->rows_x, &e->output_norm, s->rows_x, "rmsnorm output_norm")); /* (R, D) */
    QIAO__TRY(matmul(g, R, D, V, s->rows_x, &e->output, none, s->logits, 0, "matmul output")); /* logits: (R, V) */
    if (out_argmax != NULL) {
      qiao_dev_argmax_args am = {.struct_size = sizeof(am), .rows = R, .cols = V,
                                 .x = s->logits, .out = s->argmax};
      QIAO__DEV_TRY(g, api->argmax(queue, &am), "argmax"); /* (R) I32 */
      QIAO__DEV_TRY(g, api->download(queue, out_argmax + r0, s->argmax, (uint64_t)R * 4),
                    "download argmax");
    }
    if (out_logits != NULL)
      QIAO__DEV_TRY(g,
                    api->download(queue, out_logits + (uint64_t)r0 * V, s->logits,
                                  (uint64_t)R * V * 4),
                    "download logits");
  }
  return QIAO__DEV(g, api->queue_synchronize(queue), "forward");
}

/* The other side of an external stage: this engine's own layers on x given
 * on the host, with the caller's metadata (checked by the caller). */
qiao_status *qiao__forward_hidden(qiao_engine *e, const qiao_engine_pass *pass, float *x) {
  qiao__stage *g = NULL;
  for (uint32_t i = 0; i < e->n_stages && g == NULL; i++)
    if (!e->stages[i].external) g = &e->stages[i];
  bool on_host = true;
  QIAO__TRY(run_layers(e, &g, &on_host, x, pass->n_tokens, pass->n_seqs, false)); /* x: (T, D) */
  if (!on_host) {
    QIAO__DEV_TRY(g, g->ops->download(g->ops_queue, x, g->s.x, (uint64_t)pass->n_tokens * e->hp.dim * 4), "download x");
    QIAO__DEV_TRY(g, g->ops->queue_synchronize(g->ops_queue), "forward");
  }
  return NULL;
}
/* clang-format on */
