/* Every tiny reference model (shared/reference/tiny/<arch>: real architectures
 * with random weights, written by transformers 5) imports, passes validate,
 * has the hyperparameters of its config.json, and its canonical tensors hold
 * the bytes of the HF tensors they come from (renamed, permuted for llama,
 * stacked for MoE), checked against the safetensors file read separately. */
#include <math.h>
#include <string.h>

#include "format/import_safetensors.h"
#include "qiao/model.h"
#include "test_util.h"

typedef struct hf_file {
  char *bytes;
  qiao_st_table table;
} hf_file;

static const qiao_st_tensor *hf_find(const hf_file *f, const char *name) {
  for (uint64_t i = 0; i < f->table.count; i++)
    if (strcmp(f->table.tensors[i].name, name) == 0) return &f->table.tensors[i];
  fprintf(stderr, "HF tensor %s missing\n", name);
  exit(1);
}

static const qiao_tensor *find(const qiao_model *m, const char *name) {
  const qiao_tensor *t = qiao_model_tensor_find(m, name);
  if (t == NULL) {
    fprintf(stderr, "canonical tensor %s missing\n", name);
    exit(1);
  }
  return t;
}

static void check_same(const qiao_model *m, const char *canonical, const hf_file *f,
                       const char *hf_name) {
  const qiao_tensor *t = find(m, canonical);
  const qiao_st_tensor *h = hf_find(f, hf_name);
  CHECK(t->dtype == h->dtype && t->n_dims == h->n_dims && t->n_bytes == h->n_bytes);
  CHECK(memcmp(t->shape, h->shape, t->n_dims * sizeof(uint64_t)) == 0);
  if (memcmp(t->data, h->data, t->n_bytes) != 0) {
    fprintf(stderr, "%s does not hold the bytes of %s\n", canonical, hf_name);
    test_failures++;
  }
}

/* llama: canonical row h*hd + 2j is HF row h*hd + j, row 2j+1 is j + hd/2. */
static void check_permuted(const qiao_model *m, const char *canonical, const hf_file *f,
                           const char *hf_name, uint32_t n_heads, uint32_t head_dim) {
  const qiao_tensor *t = find(m, canonical);
  const qiao_st_tensor *h = hf_find(f, hf_name);
  CHECK(t->n_bytes == h->n_bytes && t->shape[0] == (uint64_t)n_heads * head_dim);
  uint64_t row = t->n_bytes / t->shape[0];
  const uint8_t *a = t->data, *b = h->data;
  int bad = 0;
  for (uint32_t hd = 0; hd < n_heads; hd++)
    for (uint32_t j = 0; j < head_dim / 2; j++) {
      uint64_t base = (uint64_t)hd * head_dim;
      bad |= memcmp(a + (base + 2 * j) * row, b + (base + j) * row, row) != 0;
      bad |= memcmp(a + (base + 2 * j + 1) * row, b + (base + j + head_dim / 2) * row, row) != 0;
    }
  if (bad) {
    fprintf(stderr, "%s is not %s permuted to normal-RoPE order\n", canonical, hf_name);
    test_failures++;
  }
}

static qiao_model *open_tiny(const char *arch, hf_file *f, qiao_hparams *hp) {
  char dir[4096], rel[256];
  snprintf(rel, sizeof(rel), "reference/tiny/%s/model.safetensors", arch);
  size_t len;
  f->bytes = test_read_file(test_shared_path(rel), &len);
  CHECK_OK(qiao__st_parse((const uint8_t *)f->bytes, len, rel, &f->table));
  snprintf(rel, sizeof(rel), "reference/tiny/%s/config.json", arch);
  snprintf(dir, sizeof(dir), "%s", test_shared_path(rel));
  *strrchr(dir, '/') = '\0';
  qiao_model *m = NULL;
  CHECK_OK(qiao_model_open(dir, NULL, &m));
  if (m == NULL) exit(1);
  CHECK_OK(qiao_model_validate(m));
  CHECK_OK(qiao_model_get_hparams(m, hp));
  qiao_string s;
  CHECK_OK(qiao_model_get_string(m, "general.source_format", &s));
  CHECK(s.len == 2 && memcmp(s.data, "hf", 2) == 0);
  CHECK(hp->vocab_size == 512 && hp->dim == 64 && hp->n_layers == 2 && hp->n_heads == 4 &&
        hp->n_kv_heads == 2 && hp->context_length == 512);
  return m;
}

static void close_tiny(qiao_model *m, hf_file *f) {
  qiao_model_close(m);
  qiao__st_table_free(&f->table);
  free(f->bytes);
}

static void check_common(const qiao_model *m, const hf_file *f) {
  check_same(m, "token_embd.weight", f, "model.embed_tokens.weight");
  check_same(m, "output_norm.weight", f, "model.norm.weight");
  check_same(m, "blk.1.attn_norm.weight", f, "model.layers.1.input_layernorm.weight");
  check_same(m, "blk.1.ffn_norm.weight", f, "model.layers.1.post_attention_layernorm.weight");
  check_same(m, "blk.1.attn_v.weight", f, "model.layers.1.self_attn.v_proj.weight");
  check_same(m, "blk.0.attn_output.weight", f, "model.layers.0.self_attn.o_proj.weight");
}

static void check_dense(const qiao_model *m, const hf_file *f) {
  check_same(m, "blk.0.ffn_gate.weight", f, "model.layers.0.mlp.gate_proj.weight");
  check_same(m, "blk.0.ffn_up.weight", f, "model.layers.0.mlp.up_proj.weight");
  check_same(m, "blk.1.ffn_down.weight", f, "model.layers.1.mlp.down_proj.weight");
}

static void test_llama(const char *arch, bool tied) {
  hf_file f;
  qiao_hparams hp;
  qiao_model *m = open_tiny(arch, &f, &hp);
  CHECK(strcmp(hp.architecture, "llama") == 0 && hp.head_dim == 16 && hp.rope_neox == 0);
  CHECK(hp.tied_embeddings == tied && !hp.qkv_bias && !hp.qk_norm && hp.ffn_dim == 176);
  check_common(m, &f);
  check_dense(m, &f);
  for (int l = 0; l < 2; l++) {
    char c[64], h[64];
    snprintf(c, sizeof(c), "blk.%d.attn_q.weight", l);
    snprintf(h, sizeof(h), "model.layers.%d.self_attn.q_proj.weight", l);
    check_permuted(m, c, &f, h, 4, 16);
    snprintf(c, sizeof(c), "blk.%d.attn_k.weight", l);
    snprintf(h, sizeof(h), "model.layers.%d.self_attn.k_proj.weight", l);
    check_permuted(m, c, &f, h, 2, 16);
  }
  if (tied) {
    CHECK(qiao_model_tensor_find(m, "output.weight") == NULL);
    CHECK(qiao_model_tensor_count(m) == f.table.count);
  } else {
    check_same(m, "output.weight", &f, "lm_head.weight");
    CHECK(qiao_model_tensor_count(m) == f.table.count);
  }
  if (strcmp(arch, "llama3") == 0) {
    CHECK(hp.rope_scaling == QIAO_ROPE_SCALING_LLAMA3 && hp.rope_factor == 32.0f);
    CHECK(hp.rope_low_freq_factor == 1.0f && hp.rope_high_freq_factor == 4.0f);
    CHECK(hp.rope_original_context == 64 && hp.rope_theta == 500000.0f);
  } else {
    CHECK(hp.rope_scaling == QIAO_ROPE_SCALING_NONE && hp.rope_theta == 10000.0f);
  }
  close_tiny(m, &f);
}

static void test_qwen2(void) {
  hf_file f;
  qiao_hparams hp;
  qiao_model *m = open_tiny("qwen2", &f, &hp);
  CHECK(strcmp(hp.architecture, "qwen2") == 0 && hp.rope_neox == 1 && hp.qkv_bias);
  CHECK(hp.tied_embeddings && hp.rope_theta == 1000000.0f && fabsf(hp.norm_eps - 1e-6f) < 1e-12f);
  check_common(m, &f);
  check_dense(m, &f);
  check_same(m, "blk.0.attn_q.weight", &f, "model.layers.0.self_attn.q_proj.weight");
  check_same(m, "blk.0.attn_k.weight", &f, "model.layers.0.self_attn.k_proj.weight");
  check_same(m, "blk.0.attn_q.bias", &f, "model.layers.0.self_attn.q_proj.bias");
  check_same(m, "blk.1.attn_k.bias", &f, "model.layers.1.self_attn.k_proj.bias");
  check_same(m, "blk.1.attn_v.bias", &f, "model.layers.1.self_attn.v_proj.bias");
  CHECK(qiao_model_tensor_count(m) == f.table.count);
  close_tiny(m, &f);
}

static void test_qwen3(void) {
  hf_file f;
  qiao_hparams hp;
  qiao_model *m = open_tiny("qwen3", &f, &hp);
  CHECK(strcmp(hp.architecture, "qwen3") == 0 && hp.rope_neox == 1 && hp.qk_norm);
  CHECK(hp.head_dim == 32 && hp.rope_dim == 32 && !hp.qkv_bias && hp.tied_embeddings);
  check_common(m, &f);
  check_dense(m, &f);
  check_same(m, "blk.0.attn_q.weight", &f, "model.layers.0.self_attn.q_proj.weight");
  check_same(m, "blk.0.attn_q_norm.weight", &f, "model.layers.0.self_attn.q_norm.weight");
  check_same(m, "blk.1.attn_k_norm.weight", &f, "model.layers.1.self_attn.k_norm.weight");
  CHECK(qiao_model_tensor_count(m) == f.table.count);
  close_tiny(m, &f);
}

static void test_qwen3_moe(void) {
  hf_file f;
  qiao_hparams hp;
  qiao_model *m = open_tiny("qwen3_moe", &f, &hp);
  CHECK(strcmp(hp.architecture, "qwen3moe") == 0 && hp.qk_norm && !hp.tied_embeddings);
  CHECK(hp.n_experts == 8 && hp.n_experts_used == 2 && hp.expert_ffn_dim == 48);
  CHECK(hp.expert_norm_topk && hp.ffn_dim == 0);
  check_common(m, &f);
  check_same(m, "output.weight", &f, "lm_head.weight");
  check_same(m, "blk.1.ffn_gate_inp.weight", &f, "model.layers.1.mlp.gate.weight");
  const char *kinds[3][2] = {
      {"ffn_gate_exps", "gate_proj"}, {"ffn_up_exps", "up_proj"}, {"ffn_down_exps", "down_proj"}};
  for (int l = 0; l < 2; l++)
    for (int k = 0; k < 3; k++) {
      char c[64];
      snprintf(c, sizeof(c), "blk.%d.%s.weight", l, kinds[k][0]);
      const qiao_tensor *t = find(m, c);
      CHECK(t->n_dims == 3 && t->shape[0] == 8);
      CHECK(k == 2 ? (t->shape[1] == 64 && t->shape[2] == 48)
                   : (t->shape[1] == 48 && t->shape[2] == 64));
      for (int e = 0; e < 8; e++) {
        char h[96];
        snprintf(h, sizeof(h), "model.layers.%d.mlp.experts.%d.%s.weight", l, e, kinds[k][1]);
        const qiao_st_tensor *s = hf_find(&f, h);
        CHECK(s->n_bytes * 8 == t->n_bytes);
        CHECK(memcmp((const uint8_t *)t->data + (uint64_t)e * s->n_bytes, s->data, s->n_bytes) ==
              0);
      }
    }
  /* 8 experts x 3 per layer became 3 stacked tensors per layer. */
  CHECK(qiao_model_tensor_count(m) == f.table.count - 2 * (24 - 3));
  close_tiny(m, &f);
}

int main(void) {
  test_llama("llama2", false);
  test_llama("llama3", true);
  test_qwen2();
  test_qwen3();
  test_qwen3_moe();
  TEST_END();
}
