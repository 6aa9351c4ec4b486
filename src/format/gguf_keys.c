/* GGUF key names (as llama.cpp writes them) against qiao's canonical keys. */
#include "format/gguf_keys.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

const qiao__gguf_key qiao__gguf_keys[] = {
    /* hyperparameters, prefixed with the architecture ("llama.block_count") */
    {"vocab_size", "model.vocab_size", QIAO__CONV_U32, 1},
    {"context_length", "model.context_length", QIAO__CONV_U32, 1},
    {"embedding_length", "model.dim", QIAO__CONV_U32, 1},
    {"block_count", "model.n_layers", QIAO__CONV_U32, 1},
    {"feed_forward_length", "model.ffn_dim", QIAO__CONV_U32, 1},
    {"attention.head_count", "model.n_heads", QIAO__CONV_U32, 1},
    {"attention.head_count_kv", "model.n_kv_heads", QIAO__CONV_U32, 1},
    {"attention.key_length", "model.head_dim", QIAO__CONV_U32, 1},
    {"attention.layer_norm_rms_epsilon", "model.norm_eps", QIAO__CONV_F32, 1},
    {"attention.sliding_window", "model.sliding_window", QIAO__CONV_U32, 1},
    {"rope.freq_base", "model.rope.theta", QIAO__CONV_F32, 1},
    {"rope.dimension_count", "model.rope.dim", QIAO__CONV_U32, 1},
    {"rope.scaling.type", "model.rope.scaling.type", QIAO__CONV_STRING, 1},
    {"rope.scaling.factor", "model.rope.scaling.factor", QIAO__CONV_F32, 1},
    {"rope.scaling.original_context_length", "model.rope.scaling.original_context_length",
     QIAO__CONV_U32, 1},
    {"expert_count", "model.moe.n_experts", QIAO__CONV_U32, 1},
    {"expert_used_count", "model.moe.n_experts_used", QIAO__CONV_U32, 1},
    {"expert_feed_forward_length", "model.moe.ffn_dim", QIAO__CONV_U32, 1},
    {"expert_weights_norm", "model.moe.norm_topk_prob", QIAO__CONV_BOOL, 1},
    /* deepseek2 (the key and value widths and expert_gating_func are read
     * and written by qiao__gguf_deepseek2_key, below) */
    {"attention.q_lora_rank", "model.mla.q_lora_rank", QIAO__CONV_U32, 1},
    {"attention.kv_lora_rank", "model.mla.kv_lora_rank", QIAO__CONV_U32, 1},
    {"expert_shared_count", "model.moe.n_shared_experts", QIAO__CONV_U32, 1},
    {"leading_dense_block_count", "model.moe.n_dense_lead", QIAO__CONV_U32, 1},
    {"expert_weights_scale", "model.moe.routed_scale", QIAO__CONV_F32, 1},
    {"expert_group_count", "model.moe.n_groups", QIAO__CONV_U32, 1},
    {"expert_group_used_count", "model.moe.n_groups_used", QIAO__CONV_U32, 1},
    {"rope.scaling.yarn_log_multiplier", "model.rope.scaling.yarn_log_multiplier", QIAO__CONV_F32,
     1},
    {"rope.scaling.yarn_beta_fast", "model.rope.scaling.yarn_beta_fast", QIAO__CONV_F32, 1},
    {"rope.scaling.yarn_beta_slow", "model.rope.scaling.yarn_beta_slow", QIAO__CONV_F32, 1},
    /* general */
    {"general.name", "general.name", QIAO__CONV_STRING, 0},
    {"general.license", "general.license", QIAO__CONV_STRING, 0},
    /* tokenizer */
    {"tokenizer.ggml.model", "tokenizer.model", QIAO__CONV_TOK_MODEL, 0},
    {"tokenizer.ggml.pre", "tokenizer.pre", QIAO__CONV_TOK_PRE, 0},
    {"tokenizer.ggml.tokens", "tokenizer.tokens", QIAO__CONV_STR_ARRAY, 0},
    {"tokenizer.ggml.scores", "tokenizer.scores", QIAO__CONV_F32_ARRAY, 0},
    {"tokenizer.ggml.token_type", "tokenizer.token_types", QIAO__CONV_I32_ARRAY, 0},
    {"tokenizer.ggml.merges", "tokenizer.merges", QIAO__CONV_STR_ARRAY, 0},
    {"tokenizer.ggml.bos_token_id", "tokenizer.bos_id", QIAO__CONV_TOKEN_ID, 0},
    {"tokenizer.ggml.eos_token_id", "tokenizer.eos_ids", QIAO__CONV_EOS_ID, 0},
    {"tokenizer.ggml.eot_token_id", "tokenizer.eos_ids", QIAO__CONV_EOS_ID, 0},
    {"tokenizer.ggml.eom_token_id", "tokenizer.eos_ids", QIAO__CONV_EOS_ID, 0},
    {"tokenizer.ggml.unknown_token_id", "tokenizer.unk_id", QIAO__CONV_TOKEN_ID, 0},
    {"tokenizer.ggml.padding_token_id", "tokenizer.pad_id", QIAO__CONV_TOKEN_ID, 0},
    {"tokenizer.ggml.add_bos_token", "tokenizer.add_bos", QIAO__CONV_BOOL, 0},
    {"tokenizer.ggml.add_space_prefix", "tokenizer.add_space_prefix", QIAO__CONV_BOOL, 0},
    {"tokenizer.chat_template", "tokenizer.chat_template", QIAO__CONV_STRING, 0},
    {NULL, NULL, 0, 0},
};

const qiao__gguf_key *qiao__gguf_key_from_gguf(const char *arch, const char *key) {
  size_t arch_len = arch ? strlen(arch) : 0;
  int has_prefix = arch_len > 0 && strncmp(key, arch, arch_len) == 0 && key[arch_len] == '.';
  for (const qiao__gguf_key *k = qiao__gguf_keys; k->gguf; k++) {
    if (k->per_arch) {
      if (has_prefix && strcmp(key + arch_len + 1, k->gguf) == 0) return k;
    } else if (strcmp(key, k->gguf) == 0) {
      return k;
    }
  }
  return NULL;
}

const char *qiao__gguf_deepseek2_key(const char *arch, const char *key, bool mla_form) {
  if (arch == NULL || strcmp(arch, "deepseek2") != 0) return NULL;
  size_t n = strlen(arch);
  if (strncmp(key, arch, n) != 0 || key[n] != '.') return NULL;
  const char *k = key + n + 1;
  if (strcmp(k, "expert_gating_func") == 0) return "model.moe.gating";
  if (mla_form) { /* key_length, value_length, head_count_kv describe the latent as one head */
    if (strcmp(k, "attention.key_length_mla") == 0) return "model.head_dim";
    if (strcmp(k, "attention.value_length_mla") == 0) return "model.mla.v_head_dim";
    if (strcmp(k, "attention.key_length") == 0 || strcmp(k, "attention.value_length") == 0 ||
        strcmp(k, "attention.head_count_kv") == 0)
      return "";
    return NULL;
  }
  if (strcmp(k, "attention.value_length") == 0) return "model.mla.v_head_dim";
  return NULL;
}

static const char *const pre_names[][2] = {
    /* GGUF (llama.cpp), qiao */
    {"gpt-2", "gpt2"},
    {"llama-bpe", "llama3"},
};

static bool same(const char *a, const char *b, uint64_t len) {
  return strlen(a) == len && memcmp(a, b, (size_t)len) == 0;
}

const char *qiao__gguf_pre_to_canonical(const char *value, uint64_t len) {
  for (size_t i = 0; i < sizeof(pre_names) / sizeof(pre_names[0]); i++)
    if (same(pre_names[i][0], value, len)) return pre_names[i][1];
  return NULL;
}

const char *qiao__gguf_pre_from_canonical(const char *value, uint64_t len) {
  for (size_t i = 0; i < sizeof(pre_names) / sizeof(pre_names[0]); i++)
    if (same(pre_names[i][1], value, len)) return pre_names[i][0];
  return NULL;
}

const char *qiao__ggml_type_name(uint32_t type) {
  static const char *const names[] = {
      [0] = "F32",     [1] = "F16",      [2] = "Q4_0",   [3] = "Q4_1",    [6] = "Q5_0",
      [7] = "Q5_1",    [8] = "Q8_0",     [9] = "Q8_1",   [10] = "Q2_K",   [11] = "Q3_K",
      [12] = "Q4_K",   [13] = "Q5_K",    [14] = "Q6_K",  [15] = "Q8_K",   [16] = "IQ2_XXS",
      [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S",
      [22] = "IQ2_S",  [23] = "IQ4_XS",  [24] = "I8",    [25] = "I16",    [26] = "I32",
      [27] = "I64",    [28] = "F64",     [29] = "IQ1_M", [30] = "BF16",   [34] = "TQ1_0",
      [35] = "TQ2_0",  [39] = "MXFP4",
  };
  if (type >= sizeof(names) / sizeof(names[0])) return NULL;
  return names[type];
}
