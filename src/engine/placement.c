/* Placement: which device holds which layers, and whether it all fits.
 *
 * options.split names the stages ("cpu:0-11,opencl:12-23", or devices
 * without ranges whose layers split_by decides); without it the engine has
 * one stage (options.backend, options.device_index) holding every layer.
 * Before any weight is loaded or any device memory allocated, each stage's
 * bytes are computed (its layers' weights, the embedding on the first stage
 * and the output on the last, the KV cache of its layers, its scratch) and
 * the stages on one device are checked against the memory it reports, so a
 * placement that cannot fit fails at once, naming the device and the
 * shortfall, instead of halfway through loading. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "engine/engine_internal.h"

#define MAX_STAGES 64

/* One item of the split string, pointing into a private copy of it. */
typedef struct split_item {
  const char *backend;
  uint32_t device_index;
  bool has_range;
  uint32_t first, last;
} split_item;

static bool all_digits(const char *s) {
  if (*s == '\0') return false;
  for (; *s; s++)
    if (!isdigit((unsigned char)*s)) return false;
  return true;
}

/* A decimal below 2^24 (layers and device indices are small). */
static bool parse_small(const char *s, size_t len, uint32_t *out) {
  if (len == 0 || len > 8) return false;
  uint32_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (!isdigit((unsigned char)s[i])) return false;
    v = v * 10 + (uint32_t)(s[i] - '0');
  }
  if (v >= (1u << 24)) return false;
  *out = v;
  return true;
}

/* BACKEND[:DEVICE][:FIRST-LAST]; `item` is modified (cut at the colons). */
static qiao_status *parse_item(const char *spec, char *item, split_item *out) {
  memset(out, 0, sizeof(*out));
  if (*item == '\0')
    return qiao__error(QIAO_INVALID_ARGUMENT, "split \"%s\": an empty device", spec);
  char *colon = strrchr(item, ':');
  const char *dash = colon ? strchr(colon + 1, '-') : NULL;
  if (colon != NULL && dash != NULL && isdigit((unsigned char)colon[1])) {
    const char *a = colon + 1, *b = dash + 1;
    if (!parse_small(a, (size_t)(dash - a), &out->first) || !parse_small(b, strlen(b), &out->last))
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "split \"%s\": bad layer range \"%s\" (want FIRST-LAST, e.g. 0-11)", spec,
                         colon + 1);
    if (out->first > out->last)
      return qiao__error(QIAO_INVALID_ARGUMENT, "split \"%s\": layer range %u-%u runs backwards",
                         spec, out->first, out->last);
    out->has_range = true;
    *colon = '\0';
    colon = strrchr(item, ':');
  }
  if (colon != NULL && all_digits(colon + 1)) {
    if (!parse_small(colon + 1, strlen(colon + 1), &out->device_index))
      return qiao__error(QIAO_INVALID_ARGUMENT, "split \"%s\": device index %s is too large", spec,
                         colon + 1);
    *colon = '\0';
  }
  if (*item == '\0')
    return qiao__error(QIAO_INVALID_ARGUMENT, "split \"%s\": a device without a backend", spec);
  out->backend = item;
  return NULL;
}

/* Checks that the ranges cover layers 0..n_layers-1 in order, once each. */
static qiao_status *check_ranges(const char *spec, const split_item *items, uint32_t n,
                                 uint32_t n_layers) {
  uint32_t next = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (items[i].last >= n_layers)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "split \"%s\": layer %u is out of range (the model has layers 0-%u)", spec,
                         items[i].last, n_layers - 1);
    for (uint32_t j = i + 1; j < n && items[i].first > next; j++)
      if (items[j].first < items[i].first)
        return qiao__error(QIAO_INVALID_ARGUMENT,
                           "split \"%s\": ranges out of order (%u-%u before %u-%u); list them "
                           "from layer 0 up",
                           spec, items[i].first, items[i].last, items[j].first, items[j].last);
    if (items[i].first > next)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "split \"%s\": layers %u-%u are on no device (a gap before %u-%u)", spec,
                         next, items[i].first - 1, items[i].first, items[i].last);
    if (items[i].first < next)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "split \"%s\": layer %u is on two devices (ranges overlap or are out of "
                         "order at %u-%u)",
                         spec, items[i].first, items[i].first, items[i].last);
    next = items[i].last + 1;
  }
  if (next != n_layers)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "split \"%s\": layers %u-%u are on no device (the model has layers 0-%u)",
                       spec, next, n_layers - 1, n_layers - 1);
  return NULL;
}

/* Layers per stage in proportion to `weight` (largest remainder), at least
 * one each; n <= n_layers. */
static void apportion(const double *weight, uint32_t n, uint32_t n_layers, uint32_t *count) {
  double total = 0, frac[MAX_STAGES];
  for (uint32_t i = 0; i < n; i++)
    total += weight[i];
  uint32_t given = 0;
  for (uint32_t i = 0; i < n; i++) {
    double ideal = total > 0 ? (double)n_layers * weight[i] / total : (double)n_layers / n;
    count[i] = (uint32_t)ideal;
    if (count[i] > n_layers) count[i] = n_layers;
    frac[i] = ideal - count[i];
    given += count[i];
  }
  while (given < n_layers) { /* the largest remainders first, the earlier on ties */
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
      if (frac[i] > frac[best]) best = i;
    count[best]++;
    frac[best] = -1;
    given++;
  }
  for (uint32_t i = 0; i < n; i++) { /* every stage runs a layer: take from the largest */
    while (count[i] == 0) {
      uint32_t big = 0;
      for (uint32_t j = 1; j < n; j++)
        if (count[j] > count[big]) big = j;
      count[big]--;
      count[i]++;
    }
  }
}

/* Gives the devices without a layer range the layers between the ranged
 * ones around them (all of them when none has a range): each run of such
 * devices shares its gap in proportion to weight 1 or, by memory, to each
 * device's memory. Ranges themselves are checked afterwards. */
static qiao_status *fill_gaps(qiao_engine *e, const char *spec, split_item *items, uint32_t n,
                              qiao_engine_split_by split_by) {
  uint32_t i = 0, next = 0; /* next: the first layer after the last ranged device */
  while (i < n) {
    if (items[i].has_range) {
      next = items[i].last + 1;
      i++;
      continue;
    }
    uint32_t run_end = i; /* [i, run_end): devices without a range */
    while (run_end < n && !items[run_end].has_range)
      run_end++;
    uint32_t gap_end = run_end < n ? items[run_end].first : e->hp.n_layers;
    uint32_t k = run_end - i;
    uint32_t left = gap_end > next ? gap_end - next : 0;
    if (left < k)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "split \"%s\": %u device%s without a layer range but %u layer%s left "
                         "for %s (before layer %u)",
                         spec, k, k == 1 ? "" : "s", left, left == 1 ? "" : "s",
                         k == 1 ? "it" : "them", gap_end);
    double weight[MAX_STAGES];
    uint32_t count[MAX_STAGES];
    for (uint32_t d = i; d < run_end; d++) {
      weight[d - i] = 1;
      if (split_by == QIAO_ENGINE_SPLIT_BY_MEMORY) {
        weight[d - i] = (double)e->stages[d].info.memory_bytes;
        if (weight[d - i] == 0)
          return qiao__error(QIAO_INVALID_ARGUMENT,
                             "split \"%s\": device %s:%u does not report its memory; give layer "
                             "ranges",
                             spec, e->stages[d].info.backend, e->stages[d].device_index);
      }
    }
    apportion(weight, k, gap_end - next, count);
    for (uint32_t d = i; d < run_end; d++) {
      items[d].first = next;
      items[d].last = next + count[d - i] - 1;
      next += count[d - i];
    }
    i = run_end;
  }
  return NULL;
}

/* Bytes of tensor `name` as the engine puts it on a device (vectors as
 * F32), 0 when absent. */
static uint64_t tensor_bytes(const qiao_engine *e, const char *name, bool vector) {
  const qiao_tensor *t = qiao_model_tensor_find(e->model, name);
  if (t == NULL) return 0;
  if (vector && t->dtype != QIAO_DTYPE_F32 && t->n_dims >= 1) return t->shape[0] * 4;
  return t->n_bytes;
}

/* Multi-head latent attention's weights as the engine holds them: the q
 * path (attn_q_b or attn_q split by rows), attn_kv_a_mqa, and W_UK^T / W_UV
 * (attn_k_b / attn_v_b as stored, or made from attn_kv_b: W_UK^T in
 * qiao__uk_t_dtype, W_UV its rows in the stored dtype). */
static uint64_t mla_weight_bytes(const qiao_engine *e, uint32_t l) {
  const qiao_hparams *hp = &e->hp;
  static const char *const stored[] = {
      "attn_q_a.weight",       "attn_q_a_norm.weight", "attn_q_b.weight",
      "attn_q.weight",         "attn_kv_a_mqa.weight", "attn_kv_a_norm.weight",
      "attn_k_b.weight",       "attn_v_b.weight",      "exp_probs_b.bias",
      "ffn_gate_shexp.weight", "ffn_up_shexp.weight",  "ffn_down_shexp.weight"};
  char name[128];
  uint64_t bytes = 0;
  for (size_t i = 0; i < sizeof(stored) / sizeof(stored[0]); i++) {
    snprintf(name, sizeof(name), "blk.%u.%s", l, stored[i]);
    bytes += tensor_bytes(e, name, strstr(stored[i], "norm") || strstr(stored[i], "bias"));
  }
  snprintf(name, sizeof(name), "blk.%u.attn_kv_b.weight", l);
  const qiao_tensor *kv_b = qiao_model_tensor_find(e->model, name);
  snprintf(name, sizeof(name), "blk.%u.attn_k_b.weight", l);
  if (kv_b != NULL && kv_b->n_dims == 2 && kv_b->shape[0] > 0 &&
      qiao_model_tensor_find(e->model, name) == NULL) {
    const uint64_t H = hp->n_heads, L = hp->kv_lora_rank, R = hp->rope_dim;
    const uint64_t N = hp->head_dim - R, V = hp->v_head_dim;
    bytes += H * L * N * (qiao__uk_t_dtype(kv_b->dtype) == QIAO_DEV_F32 ? 4 : 2); /* W_UK^T */
    bytes += kv_b->n_bytes / kv_b->shape[0] * H * V;                              /* W_UV */
  }
  return bytes;
}

static uint64_t layer_weight_bytes(const qiao_engine *e, uint32_t l) {
  const qiao_hparams *hp = &e->hp;
  if (e->mla) {
    static const char *const ffn[] = {"attn_norm.weight", "attn_output.weight", "ffn_norm.weight"};
    uint64_t bytes = mla_weight_bytes(e, l);
    char name[128];
    for (size_t i = 0; i < sizeof(ffn) / sizeof(ffn[0]); i++) {
      snprintf(name, sizeof(name), "blk.%u.%s", l, ffn[i]);
      bytes += tensor_bytes(e, name, strstr(ffn[i], "norm") != NULL);
    }
    static const char *const mlp[] = {
        "ffn_gate_inp.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight",
        "ffn_gate.weight",     "ffn_up.weight",        "ffn_down.weight"};
    snprintf(name, sizeof(name), "blk.%u.ffn_gate_inp.weight", l);
    bool moe = hp->n_experts > 0 && qiao_model_tensor_find(e->model, name) != NULL;
    for (size_t i = moe ? 0 : 4; i < (moe ? 4u : 7u); i++) {
      snprintf(name, sizeof(name), "blk.%u.%s", l, mlp[i]);
      bytes += tensor_bytes(e, name, false);
    }
    return bytes;
  }
  static const struct {
    const char *suffix;
    bool vector;
    int when; /* 0 always, 1 qkv_bias, 2 qk_norm, 3 moe, 4 dense */
  } parts[] = {{"attn_norm.weight", true, 0},      {"attn_q.weight", false, 0},
               {"attn_k.weight", false, 0},        {"attn_v.weight", false, 0},
               {"attn_output.weight", false, 0},   {"attn_q.bias", true, 1},
               {"attn_k.bias", true, 1},           {"attn_v.bias", true, 1},
               {"attn_q_norm.weight", true, 2},    {"attn_k_norm.weight", true, 2},
               {"ffn_norm.weight", true, 0},       {"ffn_gate_inp.weight", false, 3},
               {"ffn_gate_exps.weight", false, 3}, {"ffn_up_exps.weight", false, 3},
               {"ffn_down_exps.weight", false, 3}, {"ffn_gate.weight", false, 4},
               {"ffn_up.weight", false, 4},        {"ffn_down.weight", false, 4}};
  char name[128];
  snprintf(name, sizeof(name), "blk.%u.ffn_gate_inp.weight", l);
  bool moe = hp->n_experts > 0 && qiao_model_tensor_find(e->model, name) != NULL;
  uint64_t bytes = 0;
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
    int w = parts[i].when;
    if ((w == 1 && !hp->qkv_bias) || (w == 2 && !hp->qk_norm) || (w == 3 && !moe) ||
        (w == 4 && moe))
      continue;
    snprintf(name, sizeof(name), "blk.%u.%s", l, parts[i].suffix);
    bytes += tensor_bytes(e, name, parts[i].vector);
  }
  return bytes;
}

uint64_t qiao__scratch_bytes(const qiao_engine *e, const qiao__stage *g, uint64_t *sizes) {
  const qiao_hparams *hp = &e->hp;
  const uint64_t T = e->max_batch, D = hp->dim, V = hp->vocab_size, K = hp->n_experts_used;
  const uint64_t H = hp->n_heads;
  uint64_t qd = H * hp->head_dim;
  if (H * hp->v_head_dim > qd) qd = H * hp->v_head_dim; /* att holds (T, H*V) with MLA */
  uint64_t ffn = hp->ffn_dim;
  if (hp->n_experts > 0 && K * hp->expert_ffn_dim > ffn) ffn = K * hp->expert_ffn_dim;
  if ((uint64_t)hp->n_shared_experts * hp->expert_ffn_dim > ffn)
    ffn = (uint64_t)hp->n_shared_experts * hp->expert_ffn_dim;
  const uint64_t kvd = e->mla ? 0 : e->kv_dim; /* MLA keeps no K and V rows */
  const uint64_t L = e->mla ? hp->kv_lora_rank : 0, R = e->mla ? hp->rope_dim : 0;
  const uint64_t QL = e->mla ? hp->q_lora_rank : 0, HM = e->mla ? H : 0;
  const bool last = e->output_stage >= 0 && g == &e->stages[e->output_stage];
  const uint64_t Rows = last ? e->out_rows : 0; /* only the output stage computes logits */
  const uint64_t b[QIAO__N_SCRATCH] = {T * D * 4,
                                       T * D * 4,
                                       T * qd * 4,
                                       T * kvd * 4,
                                       T * kvd * 4,
                                       T * qd * 4,
                                       T * ffn * 4,
                                       T * ffn * 4,
                                       T * hp->n_experts * 4,
                                       T * K * 4,
                                       T * K * 4,
                                       T * K * D * 4,
                                       T * 4,
                                       T * 4,
                                       T * 4,
                                       T * 4,
                                       (uint64_t)e->max_seqs * e->max_blocks_per_seq * 4,
                                       Rows * D * 4,
                                       Rows * V * 4,
                                       Rows * 4,
                                       T * QL * 4,
                                       T * HM * R * 4,
                                       T * L * 4,
                                       T * R * 4,
                                       T * HM * L * 4,
                                       T * HM * L * 4,
                                       T * HM * 4};
  uint64_t total = 0;
  for (int i = 0; i < QIAO__N_SCRATCH; i++) {
    if (sizes != NULL) sizes[i] = b[i];
    total += b[i] ? b[i] : 4; /* an empty buffer still takes 4 bytes */
  }
  return total;
}

/* "1.2 GiB" */
static const char *human(uint64_t bytes, char *buf, size_t size) {
  const char *unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(buf, size, "%llu bytes", (unsigned long long)bytes);
  else
    snprintf(buf, size, "%.1f %s", v, unit[u]);
  return buf;
}

/* Refuses stages that share a device and together need more than it has,
 * or a buffer larger than its largest. */
static qiao_status *check_fit(qiao_engine *e) {
  char a[32], b[32], c[32], d[32], f[32];
  for (uint32_t i = 0; i < e->n_stages; i++) {
    const qiao__stage *g = &e->stages[i];
    bool first_on_device = true;
    for (uint32_t j = 0; j < i; j++)
      if (e->stages[j].backend == g->backend && e->stages[j].device_index == g->device_index)
        first_on_device = false;
    if (!first_on_device) continue;
    uint64_t weights = 0, kv = 0, scratch = 0;
    char layers[256] = "";
    int len = 0;
    bool embedding = false, output = false;
    for (uint32_t j = i; j < e->n_stages; j++) {
      const qiao__stage *h = &e->stages[j];
      if (h->backend != g->backend || h->device_index != g->device_index) continue;
      weights += h->info.weight_bytes;
      kv += h->info.kv_cache_bytes;
      scratch += h->info.scratch_bytes;
      embedding |= h->info.embedding;
      output |= h->info.output;
      if (len >= 0 && (size_t)len < sizeof(layers))
        len += snprintf(layers + len, sizeof(layers) - (size_t)len, "%s%u-%u", len ? ", " : "",
                        h->info.first_layer, h->info.last_layer);
    }
    const uint64_t need = weights + kv + scratch, has = g->info.memory_bytes;
    if (has == 0 || need <= has) continue;
    return qiao__error(QIAO_LIMIT,
                       "device %s:%u (%s) needs %s for layers %s%s%s (weights %s, KV cache %s, "
                       "scratch %s) but has %s: %llu bytes short (fewer layers on it, fewer KV "
                       "blocks or slots, a shorter context, or --split)",
                       g->info.backend, g->device_index, g->device_name, human(need, a, sizeof(a)),
                       layers, embedding ? " with the embedding" : "",
                       output ? (embedding ? " and the output" : " with the output") : "",
                       human(weights, b, sizeof(b)), human(kv, c, sizeof(c)),
                       human(scratch, d, sizeof(d)), human(has, f, sizeof(f)),
                       (unsigned long long)(need - has));
  }
  /* One buffer above the device's largest: the KV cache of one layer or a
   * scratch buffer. */
  const uint64_t kv_layer = e->n_slots * e->kv_dim * (e->cache_dtype == QIAO_DEV_F16 ? 2 : 4);
  for (uint32_t i = 0; i < e->n_stages; i++) {
    const qiao__stage *g = &e->stages[i];
    uint64_t max = g->max_buffer_bytes, sizes[QIAO__N_SCRATCH];
    if (max == 0) continue;
    qiao__scratch_bytes(e, g, sizes);
    uint64_t big_scratch = 0;
    for (int k = 0; k < QIAO__N_SCRATCH; k++)
      if (sizes[k] > big_scratch) big_scratch = sizes[k];
    if (kv_layer > max)
      return qiao__error(QIAO_LIMIT,
                         "device %s:%u (%s): the KV cache of one layer needs one buffer of %s but "
                         "its largest buffer is %s: %llu bytes short (fewer KV blocks or a "
                         "shorter context)",
                         g->info.backend, g->device_index, g->device_name,
                         human(kv_layer, a, sizeof(a)), human(max, b, sizeof(b)),
                         (unsigned long long)(kv_layer - max));
    if (big_scratch > max)
      return qiao__error(QIAO_LIMIT,
                         "device %s:%u (%s): a scratch buffer of %s for max_batch_tokens %u is "
                         "above its largest buffer of %s: %llu bytes short",
                         g->info.backend, g->device_index, g->device_name,
                         human(big_scratch, a, sizeof(a)), e->max_batch, human(max, b, sizeof(b)),
                         (unsigned long long)(big_scratch - max));
  }
  return NULL;
}

/* Loads the stage's backend (or shares an earlier stage's of the same
 * name) and reads its device's properties. */
static qiao_status *find_device(qiao_engine *e, uint32_t i, const char *backend, uint32_t index) {
  qiao__stage *g = &e->stages[i];
  g->engine = e;
  g->device_index = index;
  g->requested = backend;
  qiao_engine_stage_info *info = &g->info;
  info->struct_size = sizeof(*info);
  if (strcmp(backend, "external") == 0) { /* run elsewhere, through options.external */
    g->external = true;
    snprintf(info->backend, sizeof(info->backend), "external");
    snprintf(info->device, sizeof(info->device), "external");
    snprintf(g->device_name, sizeof(g->device_name), "external");
    return NULL;
  }
  for (uint32_t j = 0; j < i && g->backend == NULL; j++)
    if (strcmp(e->stages[j].requested, backend) == 0) g->backend = e->stages[j].backend;
  if (g->backend == NULL) {
    QIAO__TRY(qiao_backend_load(backend, &g->backend));
    g->owns_backend = true;
  }
  g->api = qiao_backend_api(g->backend);
  const char *name = qiao_backend_name(g->backend);
  uint32_t n_devices = 0;
  QIAO__DEV_TRY(g, g->api->device_count(qiao_backend_handle(g->backend), &n_devices),
                "device_count");
  if (n_devices == 0) return qiao__error(QIAO_NOT_FOUND, "backend %s: no devices", name);
  if (index >= n_devices)
    return qiao__error(QIAO_NOT_FOUND, "backend %s has %u device(s); there is no device %u", name,
                       n_devices, index);
  qiao_dev_properties props;
  memset(&props, 0, sizeof(props));
  props.struct_size = sizeof(props);
  QIAO__DEV_TRY(g, g->api->device_get_properties(qiao_backend_handle(g->backend), index, &props),
                "device_get_properties");
  props.name[sizeof(props.name) - 1] = '\0';
  snprintf(g->device_name, sizeof(g->device_name), "%s", props.name);
  g->host_memory = (props.flags & QIAO_DEV_FLAG_HOST_MEMORY) && g->api->buffer_wrap_host != NULL;
  g->max_buffer_bytes = props.max_buffer_bytes;
  snprintf(info->backend, sizeof(info->backend), "%s", name);
  info->device_index = index;
  snprintf(info->device, sizeof(info->device), "%s", props.name);
  info->memory_bytes = props.memory_bytes;
  return NULL;
}

/* The bytes stage g holds, from its layers (set) and position. */
static qiao_status *stage_bytes(qiao_engine *e, uint32_t i) {
  qiao__stage *g = &e->stages[i];
  qiao_engine_stage_info *info = &g->info;
  const qiao_hparams *hp = &e->hp;
  info->first_layer = g->first_layer;
  info->last_layer = g->end_layer - 1;
  info->embedding = (int32_t)i == e->embed_stage;
  info->output = (int32_t)i == e->output_stage;
  /* x goes on to the next stage; from a last external stage it comes back
   * to the output's. */
  bool sends = i + 1 < e->n_stages || (g->external && e->output_stage >= 0);
  info->boundary_bytes_per_token = sends ? (uint64_t)hp->dim * 4 : 0;
  if (g->external) return NULL; /* holds nothing here */
  uint64_t w = (uint64_t)(hp->rope_dim / 2) * 4;
  for (uint32_t l = g->first_layer; l < g->end_layer; l++)
    w += layer_weight_bytes(e, l);
  if (info->embedding) w += tensor_bytes(e, "token_embd.weight", false);
  if (info->output) {
    w += tensor_bytes(e, "output_norm.weight", true);
    if (!hp->tied_embeddings)
      w += tensor_bytes(e, "output.weight", false);
    else if (!info->embedding) /* a second copy of the embedding, on this device */
      w += tensor_bytes(e, "token_embd.weight", false);
  }
  info->weight_bytes = w;
  const uint64_t elem = e->cache_dtype == QIAO_DEV_F16 ? 2 : 4;
  /* K and V per layer; one latent cache per layer with MLA */
  const uint64_t caches = e->mla ? 1 : 2;
  if (!qiao__mul_u64(caches * (g->end_layer - g->first_layer), e->n_slots * e->kv_dim * elem,
                     &info->kv_cache_bytes))
    return qiao__error(QIAO_LIMIT, "engine options: KV cache of %u blocks is too large",
                       e->n_blocks);
  info->scratch_bytes = qiao__scratch_bytes(e, g, NULL);
  return NULL;
}

qiao_status *qiao__placement_make(qiao_engine *e, const qiao_engine_options *o) {
  const uint32_t n_layers = e->hp.n_layers;
  if (n_layers == 0)
    return qiao__error(QIAO_MALFORMED, "model %s: no layers", qiao_model_path(e->model));
  if (o->split_by != QIAO_ENGINE_SPLIT_BY_LAYERS && o->split_by != QIAO_ENGINE_SPLIT_BY_MEMORY)
    return qiao__error(QIAO_INVALID_ARGUMENT, "engine options: split_by %d is not layers or memory",
                       (int)o->split_by);
  if (o->split == NULL || o->split[0] == '\0') { /* one device, every layer */
    if (o->split_by == QIAO_ENGINE_SPLIT_BY_MEMORY)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "split by memory needs a split (a list of devices)");
    e->stages = calloc(1, sizeof(*e->stages));
    if (e->stages == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
    e->n_stages = 1;
    e->embed_stage = e->output_stage = 0;
    QIAO__TRY(find_device(e, 0, o->backend ? o->backend : "cpu", o->device_index));
    if (e->stages[0].external)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "engine options: backend \"external\" needs a split");
    e->stages[0].first_layer = 0;
    e->stages[0].end_layer = n_layers;
    QIAO__TRY(stage_bytes(e, 0));
    return check_fit(e);
  }

  const char *spec = o->split;
  if (strlen(spec) > 65536)
    return qiao__error(QIAO_INVALID_ARGUMENT, "split: longer than 65536 characters");
  uint32_t n = 1;
  for (const char *c = spec; *c; c++)
    n += *c == ',';
  if (n > MAX_STAGES)
    return qiao__error(QIAO_INVALID_ARGUMENT, "split \"%s\": %u devices, at most %d", spec, n,
                       MAX_STAGES);
  if (n > n_layers)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "split \"%s\": %u devices for %u layers (each device runs a layer or more)",
                       spec, n, n_layers);
  if (o->allow_fallback && n > 1)
    return qiao__error(QIAO_UNSUPPORTED,
                       "split \"%s\": --allow-fallback runs on one device only (leave it out, or "
                       "split across devices that support every op)",
                       spec);
  e->split_text = strdup(spec);
  e->stages = calloc(n, sizeof(*e->stages));
  split_item *items = calloc(n, sizeof(*items));
  if (e->split_text == NULL || e->stages == NULL || items == NULL) {
    free(items);
    return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  }
  qiao_status *st = NULL;
  char *item = e->split_text;
  for (uint32_t i = 0; i < n && st == NULL; i++) {
    char *comma = strchr(item, ',');
    if (comma) *comma = '\0';
    st = parse_item(spec, item, &items[i]);
    item = comma ? comma + 1 : item;
  }
  uint32_t n_ranges = 0;
  for (uint32_t i = 0; i < n && st == NULL; i++)
    n_ranges += items[i].has_range;
  if (st == NULL && n_ranges == n && o->split_by == QIAO_ENGINE_SPLIT_BY_MEMORY)
    st = qiao__error(QIAO_INVALID_ARGUMENT,
                     "split \"%s\": split by memory needs devices without layer ranges", spec);
  e->n_stages = 0;
  for (uint32_t i = 0; i < n && st == NULL; i++) {
    e->n_stages = i + 1;
    st = find_device(e, i, items[i].backend, items[i].device_index);
    if (st != NULL) st = qiao__annotate(st, "split \"%s\", device %u", spec, i);
  }
  if (st == NULL && n_ranges < n) st = fill_gaps(e, spec, items, n, o->split_by);
  if (st == NULL) st = check_ranges(spec, items, n, n_layers);
  for (uint32_t i = 0; i < n && st == NULL; i++) {
    e->stages[i].first_layer = items[i].first;
    e->stages[i].end_layer = items[i].last + 1;
  }
  /* The embedding and output live with layer 0: on the first stage and
   * the last stage of this engine's own, unless the first is external. */
  e->embed_stage = e->output_stage = -1;
  bool any_external = false;
  for (uint32_t i = 0; i < n && st == NULL; i++) {
    any_external |= e->stages[i].external;
    if (!e->stages[0].external && !e->stages[i].external) e->output_stage = (int32_t)i;
  }
  if (st == NULL && !e->stages[0].external) e->embed_stage = 0;
  if (st == NULL && any_external) {
    bool own = false;
    for (uint32_t i = 0; i < n; i++)
      own |= !e->stages[i].external;
    if (!own)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "split \"%s\": every stage is external", spec);
    else if (e->embed_stage >= 0 && o->external == NULL)
      st = qiao__error(QIAO_INVALID_ARGUMENT,
                       "split \"%s\": external stages need a runner (options.external)", spec);
  }
  e->external = o->external;
  e->external_user = o->external_user;
  for (uint32_t i = 0; i < n && st == NULL; i++)
    st = stage_bytes(e, i);
  if (st == NULL) st = check_fit(e);
  free(items);
  return st;
}
