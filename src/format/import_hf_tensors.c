/* Hugging Face tensor names -> canonical names (docs/spec/format.md §8).
 *
 *   model.embed_tokens.weight                  token_embd.weight
 *   model.norm.weight                          output_norm.weight
 *   lm_head.weight                             output.weight (dropped when tied)
 *   model.layers.{i}.input_layernorm           blk.{i}.attn_norm
 *   model.layers.{i}.post_attention_layernorm  blk.{i}.ffn_norm
 *   model.layers.{i}.self_attn.{q,k,v,o}_proj  blk.{i}.attn_{q,k,v,output}
 *   model.layers.{i}.self_attn.{q,k}_norm      blk.{i}.attn_{q,k}_norm
 *   model.layers.{i}.mlp.{gate,up,down}_proj   blk.{i}.ffn_{gate,up,down}
 *   model.layers.{i}.mlp.gate                  blk.{i}.ffn_gate_inp (MoE router)
 *   model.layers.{i}.mlp.experts.{e}.{gate,up,down}_proj
 *                                              blk.{i}.ffn_{gate,up,down}_exps,
 *                                              stacked: expert e at index e
 * DeepSeek-V2/V3 (self_attn. and mlp. prefixes left out):
 *   q_a_proj, q_a_layernorm, q_b_proj          blk.{i}.attn_q_a, attn_q_a_norm, attn_q_b
 *   kv_a_proj_with_mqa, kv_a_layernorm         blk.{i}.attn_kv_a_mqa, attn_kv_a_norm
 *   kv_b_proj                                  blk.{i}.attn_kv_b
 *   gate.e_score_correction_bias               blk.{i}.exp_probs_b.bias
 *   shared_experts.{gate,up,down}_proj         blk.{i}.ffn_{gate,up,down}_shexp
 *   layers from num_hidden_layers on (multi-token prediction) are dropped
 *
 * For `llama` the rows of q_proj and k_proj (weights and biases) are
 * permuted within each head from the half-split order HF uses to the
 * interleaved order of `normal` RoPE: row 2j takes HF row j and row 2j+1
 * takes HF row j + head_dim/2. Unknown tensors are refused by name, so that
 * nothing a model needs is silently dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "format/import_hf_internal.h"

typedef enum tensor_kind {
  KIND_RENAME,  /* zero-copy under a new name */
  KIND_PERMUTE, /* llama q/k: rows moved per head */
  KIND_EXPERT,  /* one expert of a stacked MoE tensor */
  KIND_DROP     /* not needed (tied lm_head, rotary inv_freq) */
} tensor_kind;

enum { EXPERT_GATE, EXPERT_UP, EXPERT_DOWN, EXPERT_KINDS };

static const char *const expert_hf[EXPERT_KINDS] = {"gate_proj", "up_proj", "down_proj"};
static const char *const expert_canonical[EXPERT_KINDS] = {"ffn_gate_exps", "ffn_up_exps",
                                                           "ffn_down_exps"};

typedef struct mapped_name {
  tensor_kind kind;
  char name[QIAO__MAX_TENSOR_NAME_LEN + 1];
  uint32_t layer;
  uint32_t permute_heads; /* KIND_PERMUTE: heads in the rows */
  uint32_t expert, expert_kind;
} mapped_name;

typedef struct layer_rename {
  const char *hf, *canonical;
  int permute; /* 0 none, 1 query heads, 2 key/value heads */
} layer_rename;

static const layer_rename layer_renames[] = {
    {"input_layernorm.weight", "attn_norm.weight", 0},
    {"post_attention_layernorm.weight", "ffn_norm.weight", 0},
    {"self_attn.q_proj.weight", "attn_q.weight", 1},
    {"self_attn.k_proj.weight", "attn_k.weight", 2},
    {"self_attn.v_proj.weight", "attn_v.weight", 0},
    {"self_attn.o_proj.weight", "attn_output.weight", 0},
    {"self_attn.q_proj.bias", "attn_q.bias", 1},
    {"self_attn.k_proj.bias", "attn_k.bias", 2},
    {"self_attn.v_proj.bias", "attn_v.bias", 0},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", 0},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", 0},
    {"mlp.gate_proj.weight", "ffn_gate.weight", 0},
    {"mlp.up_proj.weight", "ffn_up.weight", 0},
    {"mlp.down_proj.weight", "ffn_down.weight", 0},
    {"mlp.gate.weight", "ffn_gate_inp.weight", 0},
    /* DeepSeek-V2/V3 (llama.cpp's deepseek2 names) */
    {"self_attn.q_a_proj.weight", "attn_q_a.weight", 0},
    {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight", 0},
    {"self_attn.q_b_proj.weight", "attn_q_b.weight", 0},
    {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight", 0},
    {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight", 0},
    {"self_attn.kv_b_proj.weight", "attn_kv_b.weight", 0},
    {"mlp.gate.e_score_correction_bias", "exp_probs_b.bias", 0},
    {"mlp.shared_experts.gate_proj.weight", "ffn_gate_shexp.weight", 0},
    {"mlp.shared_experts.up_proj.weight", "ffn_up_shexp.weight", 0},
    {"mlp.shared_experts.down_proj.weight", "ffn_down_shexp.weight", 0},
};

/* Parses a decimal index without sign or leading zeros; advances *s. */
static bool parse_index(const char **s, uint32_t limit, uint32_t *out) {
  const char *p = *s;
  if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return false;
  uint64_t v = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    v = v * 10 + (uint64_t)(*p - '0');
    if (v >= limit) return false;
  }
  *s = p;
  *out = (uint32_t)v;
  return true;
}

static qiao_status *unknown(const char *dir, const char *hf_name) {
  return qiao__error(QIAO_UNSUPPORTED, "%s: tensor '%s' is not one qiao knows", dir, hf_name);
}

static qiao_status *map_layer_name(const char *dir, const hf_config *cfg, const char *hf_name,
                                   const char *rest, uint32_t layer, mapped_name *out) {
  out->layer = layer;
  if (strcmp(rest, "self_attn.rotary_emb.inv_freq") == 0) {
    out->kind = KIND_DROP;
    return NULL;
  }
  for (size_t i = 0; i < sizeof(layer_renames) / sizeof(layer_renames[0]); i++) {
    const layer_rename *r = &layer_renames[i];
    if (strcmp(rest, r->hf) != 0) continue;
    snprintf(out->name, sizeof(out->name), "blk.%u.%s", layer, r->canonical);
    out->kind = r->permute && cfg->permute_qk ? KIND_PERMUTE : KIND_RENAME;
    out->permute_heads = r->permute == 1 ? cfg->n_heads : cfg->n_kv_heads;
    return NULL;
  }
  static const char experts[] = "mlp.experts.";
  if (cfg->n_experts > 0 && strncmp(rest, experts, sizeof(experts) - 1) == 0) {
    const char *p = rest + sizeof(experts) - 1;
    uint32_t e;
    if (!parse_index(&p, cfg->n_experts, &e) || *p != '.')
      return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': expert index beyond num_experts (%u)",
                         dir, hf_name, cfg->n_experts);
    p++;
    for (uint32_t k = 0; k < EXPERT_KINDS; k++) {
      size_t n = strlen(expert_hf[k]);
      if (strncmp(p, expert_hf[k], n) == 0 && strcmp(p + n, ".weight") == 0) {
        snprintf(out->name, sizeof(out->name), "blk.%u.%s.weight", layer, expert_canonical[k]);
        out->kind = KIND_EXPERT;
        out->expert = e;
        out->expert_kind = k;
        return NULL;
      }
    }
  }
  return unknown(dir, hf_name);
}

static qiao_status *map_name(const char *dir, const hf_config *cfg, const char *hf_name,
                             mapped_name *out) {
  memset(out, 0, sizeof(*out));
  static const char layers[] = "model.layers.";
  if (strcmp(hf_name, "model.embed_tokens.weight") == 0) {
    snprintf(out->name, sizeof(out->name), "token_embd.weight");
  } else if (strcmp(hf_name, "model.norm.weight") == 0) {
    snprintf(out->name, sizeof(out->name), "output_norm.weight");
  } else if (strcmp(hf_name, "lm_head.weight") == 0) {
    snprintf(out->name, sizeof(out->name), "output.weight");
  } else if (strncmp(hf_name, layers, sizeof(layers) - 1) == 0) {
    const char *p = hf_name + sizeof(layers) - 1;
    uint32_t layer;
    const char *at = p;
    if (cfg->mla && parse_index(&at, cfg->n_layers + 64u, &layer) && *at == '.' &&
        layer >= cfg->n_layers) { /* a multi-token-prediction layer: not used */
      out->kind = KIND_DROP;
      return NULL;
    }
    if (!parse_index(&p, cfg->n_layers, &layer) || *p != '.')
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor '%s': layer index beyond num_hidden_layers (%u)", dir, hf_name,
                         cfg->n_layers);
    return map_layer_name(dir, cfg, hf_name, p + 1, layer, out);
  } else {
    return unknown(dir, hf_name);
  }
  out->kind = KIND_RENAME;
  return NULL;
}

/* Rows of a llama q/k tensor, moved per head into model memory. */
static qiao_status *add_permuted(qiao_model *model, const char *dir, const qiao_st_tensor *t,
                                 const mapped_name *m, const hf_config *cfg) {
  uint64_t rows = t->shape[0];
  uint64_t want_rows = (uint64_t)m->permute_heads * cfg->head_dim;
  if (t->n_dims > 2 || rows != want_rows)
    return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': %llu rows, but %u heads of %u need %llu",
                       dir, t->name, (unsigned long long)rows, m->permute_heads, cfg->head_dim,
                       (unsigned long long)want_rows);
  uint64_t row_bytes = t->n_bytes / rows; /* whole rows of any dtype */
  uint8_t *dst;
  QIAO__TRY(qiao__model_alloc(model, t->n_bytes, (void **)&dst));
  uint64_t half = cfg->head_dim / 2;
  for (uint64_t h = 0; h < m->permute_heads; h++) {
    const uint8_t *src = t->data + h * cfg->head_dim * row_bytes;
    uint8_t *out = dst + h * cfg->head_dim * row_bytes;
    for (uint64_t j = 0; j < half; j++) {
      memcpy(out + (2 * j) * row_bytes, src + j * row_bytes, row_bytes);
      memcpy(out + (2 * j + 1) * row_bytes, src + (j + half) * row_bytes, row_bytes);
    }
  }
  qiao_st_tensor copy = *t;
  copy.data = dst;
  return qiao__st_add_tensor(model, &copy, m->name);
}

/* One stacked MoE tensor being filled: (n_experts, rows, cols). */
typedef struct expert_stack {
  uint8_t *data;
  const qiao_st_tensor *first; /* dtype and shape every expert must match */
  uint32_t n_found;
} expert_stack;

typedef struct tensor_pass {
  qiao_model *model;
  const char *dir;
  hf_config *cfg;
  expert_stack *stacks; /* n_layers x EXPERT_KINDS, MoE only */
  bool has_lm_head;
} tensor_pass;

/* Pass 1: every tensor has a known name, and each stacked MoE tensor has
 * exactly num_experts experts of one shape, checked before any stack is
 * allocated (so its size is bounded by the file, not by config.json). */
static qiao_status *check_experts(tensor_pass *p, const qiao_st_tensor *t, const mapped_name *m) {
  expert_stack *s = &p->stacks[m->layer * EXPERT_KINDS + m->expert_kind];
  if (s->first == NULL) {
    s->first = t;
  } else if (s->first->dtype != t->dtype || s->first->n_dims != t->n_dims ||
             memcmp(s->first->shape, t->shape, sizeof(t->shape)) != 0) {
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor '%s': shape or dtype differs from '%s' of the same "
                       "layer",
                       p->dir, t->name, s->first->name);
  }
  if (t->n_dims != 2)
    return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': an expert must be 2-D", p->dir, t->name);
  s->n_found++;
  return NULL;
}

static qiao_status *first_pass(tensor_pass *p, const hf_weights *w) {
  for (uint64_t s = 0; s < w->n_tables; s++) {
    for (uint64_t i = 0; i < w->tables[s].count; i++) {
      const qiao_st_tensor *t = &w->tables[s].tensors[i];
      mapped_name m;
      QIAO__TRY(map_name(p->dir, p->cfg, t->name, &m));
      if (strcmp(t->name, "lm_head.weight") == 0) p->has_lm_head = true;
      if (m.kind == KIND_EXPERT) QIAO__TRY(check_experts(p, t, &m));
    }
  }
  for (uint32_t i = 0; p->stacks != NULL && i < p->cfg->n_layers * EXPERT_KINDS; i++) {
    expert_stack *s = &p->stacks[i];
    if (s->n_found != 0 && s->n_found != p->cfg->n_experts)
      return qiao__error(
          QIAO_MALFORMED, "%s: layer %u: %u of %u experts have mlp.experts.*.%s.weight", p->dir,
          i / EXPERT_KINDS, s->n_found, p->cfg->n_experts, expert_hf[i % EXPERT_KINDS]);
  }
  return NULL;
}

static qiao_status *add_expert(tensor_pass *p, const qiao_st_tensor *t, const mapped_name *m) {
  expert_stack *s = &p->stacks[m->layer * EXPERT_KINDS + m->expert_kind];
  uint64_t n_experts = p->cfg->n_experts;
  if (s->data == NULL) {
    uint64_t total;
    if (!qiao__mul_u64(t->n_bytes, n_experts, &total))
      return qiao__error(QIAO_LIMIT, "%s: tensor '%s': stacked size overflows", p->dir, m->name);
    QIAO__TRY(qiao__model_alloc(p->model, total, (void **)&s->data));
    s->n_found = 0;
  }
  memcpy(s->data + (uint64_t)m->expert * t->n_bytes, t->data, t->n_bytes);
  if (++s->n_found < n_experts) return NULL;
  /* The last expert of this stack: add it. */
  qiao_st_tensor stacked = *t;
  stacked.n_dims = 3;
  stacked.shape[0] = n_experts;
  stacked.shape[1] = t->shape[0];
  stacked.shape[2] = t->shape[1];
  stacked.data = s->data;
  stacked.n_bytes = t->n_bytes * n_experts;
  stacked.file_offset = 0; /* gathered from n_experts places */
  return qiao__st_add_tensor(p->model, &stacked, m->name);
}

static qiao_status *second_pass(tensor_pass *p, const hf_weights *w) {
  for (uint64_t s = 0; s < w->n_tables; s++) {
    for (uint64_t i = 0; i < w->tables[s].count; i++) {
      const qiao_st_tensor *t = &w->tables[s].tensors[i];
      mapped_name m;
      QIAO__TRY(map_name(p->dir, p->cfg, t->name, &m));
      bool tied_copy = strcmp(m.name, "output.weight") == 0 && p->cfg->tied_embeddings;
      qiao_status *st = NULL;
      if (m.kind == KIND_DROP || tied_copy) continue;
      if (m.kind == KIND_RENAME) st = qiao__st_add_tensor(p->model, t, m.name);
      if (m.kind == KIND_PERMUTE) st = add_permuted(p->model, p->dir, t, &m, p->cfg);
      if (m.kind == KIND_EXPERT) st = add_expert(p, t, &m);
      if (st) return qiao__annotate(st, "%s: tensor '%s'", p->dir, t->name);
    }
  }
  return NULL;
}

qiao_status *qiao__hf_add_tensors(qiao_model *model, const char *dir, hf_config *cfg,
                                  const hf_weights *w) {
  tensor_pass p = {model, dir, cfg, NULL, false};
  if (cfg->n_experts > 0) {
    p.stacks = calloc((size_t)cfg->n_layers * EXPERT_KINDS, sizeof(*p.stacks));
    if (p.stacks == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  }
  qiao_status *st = first_pass(&p, w);
  if (st == NULL && !cfg->tied_stated) cfg->tied_embeddings = !p.has_lm_head;
  if (st == NULL) st = second_pass(&p, w);
  free(p.stacks);
  return st;
}
