/* qiao inspect MODEL: architecture, hyperparameters, tokenizer summary and
 * the tensor table. Reads only the metadata: no tensor data is touched, so
 * it is fast on any model size. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "engine_cli.h"
#include "qiao/engine.h"
#include "qiao/model.h"

static void usage(FILE *f) {
  fprintf(f, "usage: qiao inspect MODEL [--tokenizer tok.bin] [--metadata] [--split SPEC "
             "[--split-by layers|memory]]\n"
             "  MODEL         a .qiao or .gguf file, a Hugging Face directory or a llama2.c .bin\n"
             "                (or -m MODEL)\n"
             "  --tokenizer   the tok.bin of a llama2.c model\n"
             "  --metadata    also list every metadata entry\n"
             "  --split SPEC  also the placement across devices (as run --split would make it,\n"
             "                with the engine's default context and slots): each device, its\n"
             "                layers and the bytes it holds; nothing is loaded\n"
             "  --split-by    layers (default) or memory, for a --split without ranges\n");
}

static void print_string(const char *label, const qiao_model *m, const char *key) {
  const qiao_kv *kv = qiao_model_kv_find(m, key);
  if (kv == NULL || kv->type != QIAO_VALUE_STRING) return;
  int len = kv->v.str.len > 200 ? 200 : (int)kv->v.str.len;
  printf("%-22s %.*s%s\n", label, len, kv->v.str.data, kv->v.str.len > 200 ? "..." : "");
}

static void print_hparams(const qiao_model *m) {
  qiao_hparams h;
  qiao_status *st = qiao_model_get_hparams(m, &h);
  if (st) {
    printf("hyperparameters:       unavailable (%s)\n", qiao_status_message(st));
    qiao_status_free(st);
    return;
  }
  printf("hyperparameters:\n");
  printf("  vocab_size           %u\n", h.vocab_size);
  printf("  context_length       %u\n", h.context_length);
  printf("  dim                  %u\n", h.dim);
  printf("  n_layers             %u\n", h.n_layers);
  printf("  n_heads              %u (kv %u, head_dim %u)\n", h.n_heads, h.n_kv_heads, h.head_dim);
  if (h.n_experts == 0 || h.ffn_dim) printf("  ffn_dim              %u\n", h.ffn_dim);
  if (h.n_experts)
    printf("  experts              %u, top-%u, ffn_dim %u%s\n", h.n_experts, h.n_experts_used,
           h.expert_ffn_dim, h.expert_norm_topk ? ", normalized top-k" : "");
  printf("  norm_eps             %g\n", (double)h.norm_eps);
  printf("  rope                 theta %g, dim %u, %s", (double)h.rope_theta, h.rope_dim,
         h.rope_neox ? "neox" : "normal");
  if (h.rope_scaling == QIAO_ROPE_SCALING_LINEAR) printf(", linear x%g", (double)h.rope_factor);
  if (h.rope_scaling == QIAO_ROPE_SCALING_YARN)
    printf(", yarn x%g (original context %u, attention scale x%g)", (double)h.rope_factor,
           h.rope_original_context, (double)h.attn_scale_mul);
  if (h.rope_scaling == QIAO_ROPE_SCALING_LLAMA3)
    printf(", llama3 x%g (low %g, high %g, original context %u)", (double)h.rope_factor,
           (double)h.rope_low_freq_factor, (double)h.rope_high_freq_factor,
           h.rope_original_context);
  printf("\n");
  if (h.kv_lora_rank)
    printf("  latent attention     kv_lora_rank %u, q_lora_rank %u, nope %u + rope %u, "
           "v_head_dim %u\n",
           h.kv_lora_rank, h.q_lora_rank, h.head_dim - h.rope_dim, h.rope_dim, h.v_head_dim);
  if (h.n_experts && h.kv_lora_rank)
    printf("  routing              %s, %u shared, groups %u (keep %u, %s), scale %g\n",
           h.expert_gating ? "sigmoid" : "softmax", h.n_shared_experts, h.expert_groups,
           h.expert_groups_used, h.expert_group_score ? "top-2 sum" : "max",
           (double)h.expert_scale);
  /* The KV cache per token: K and V rows, or one latent row with MLA. */
  uint64_t kv_values =
      h.kv_lora_rank ? (uint64_t)h.kv_lora_rank + h.rope_dim : 2ull * h.n_kv_heads * h.head_dim;
  printf("  kv_bytes_per_token   %llu (f16 cache), %llu (f32), %llu values per layer%s\n",
         (unsigned long long)(kv_values * h.n_layers * 2),
         (unsigned long long)(kv_values * h.n_layers * 4), (unsigned long long)kv_values,
         h.kv_lora_rank ? " (latent + rope key)" : " (K and V)");
  if (h.sliding_window) printf("  sliding_window       %u\n", h.sliding_window);
  printf("  tied_embeddings      %s\n", h.tied_embeddings ? "yes" : "no");
  printf("  qkv_bias             %s\n", h.qkv_bias ? "yes" : "no");
  printf("  qk_norm              %s\n", h.qk_norm ? "yes" : "no");
}

static void print_tokenizer(const qiao_model *m) {
  qiao_string type = {"none", 4};
  const qiao_kv *kv = qiao_model_kv_find(m, "tokenizer.model");
  if (kv && kv->type == QIAO_VALUE_STRING) type = kv->v.str;
  printf("tokenizer:             %.*s", (int)(type.len > 32 ? 32 : type.len), type.data);
  kv = qiao_model_kv_find(m, "tokenizer.pre");
  if (kv && kv->type == QIAO_VALUE_STRING)
    printf(" (pre %.*s)", (int)(kv->v.str.len > 32 ? 32 : kv->v.str.len), kv->v.str.data);
  kv = qiao_model_kv_find(m, "tokenizer.tokens");
  if (kv && kv->type == QIAO_VALUE_ARRAY) printf(", %" PRIu64 " tokens", kv->array_len);
  kv = qiao_model_kv_find(m, "tokenizer.merges");
  if (kv && kv->type == QIAO_VALUE_ARRAY) printf(", %" PRIu64 " merges", kv->array_len);
  uint32_t id;
  qiao_status *st = qiao_model_get_u32(m, "tokenizer.bos_id", &id);
  if (st == NULL) printf(", bos %u", id);
  qiao_status_free(st);
  kv = qiao_model_kv_find(m, "tokenizer.eos_ids");
  if (kv && kv->type == QIAO_VALUE_ARRAY && kv->elem_type == QIAO_VALUE_U32) {
    printf(", eos");
    for (uint64_t i = 0; i < kv->array_len; i++)
      printf("%s%u", i ? "," : " ", ((const uint32_t *)kv->v.array)[i]);
  }
  printf(", chat template: %s\n", qiao_model_kv_find(m, "tokenizer.chat_template") ? "yes" : "no");
}

static void print_value(const qiao_kv *kv) {
  switch (kv->type) {
  case QIAO_VALUE_STRING: {
    int len = kv->v.str.len > 60 ? 60 : (int)kv->v.str.len;
    printf("\"");
    for (int i = 0; i < len; i++) {
      unsigned char c = (unsigned char)kv->v.str.data[i];
      if (c < 0x20 || c == 0x7f)
        printf("\\x%02x", c);
      else
        putchar(c);
    }
    printf("\"%s", kv->v.str.len > 60 ? "..." : "");
    break;
  }
  case QIAO_VALUE_ARRAY: printf("array of %" PRIu64 " elements", kv->array_len); break;
  case QIAO_VALUE_BOOL: printf("%s", kv->v.b ? "true" : "false"); break;
  case QIAO_VALUE_F32:
  case QIAO_VALUE_F64: printf("%g", kv->v.f); break;
  case QIAO_VALUE_I8:
  case QIAO_VALUE_I16:
  case QIAO_VALUE_I32:
  case QIAO_VALUE_I64: printf("%" PRId64, kv->v.i); break;
  default: printf("%" PRIu64, kv->v.u); break;
  }
}

static void print_tensors(const qiao_model *m) {
  uint64_t n = qiao_model_tensor_count(m), total = 0;
  uint64_t unknown = 0;
  for (uint64_t i = 0; i < n; i++) {
    total += qiao_model_tensor_at(m, i)->n_bytes;
    unknown += qiao_dtype_get_info(qiao_model_tensor_at(m, i)->dtype) == NULL;
  }
  printf("tensors:               %" PRIu64 " (%.2f MiB)\n", n, (double)total / (1 << 20));
  for (uint64_t i = 0; i < n; i++) {
    const qiao_tensor *t = qiao_model_tensor_at(m, i);
    char shape[128];
    int len = snprintf(shape, sizeof(shape), "(");
    for (uint32_t d = 0; d < t->n_dims; d++)
      len += snprintf(shape + len, sizeof(shape) - (size_t)len, "%s%" PRIu64, d ? ", " : "",
                      t->shape[d]);
    snprintf(shape + len, sizeof(shape) - (size_t)len, ")");
    const qiao_dtype_info *info = qiao_dtype_get_info(t->dtype);
    if (info != NULL)
      printf("  %-40s %-5s %-22s %" PRIu64 "\n", t->name, info->name, shape, t->n_bytes);
    else /* a type of a later minor version: listed, not usable */
      printf("  %-40s %-5s %-22s %" PRIu64 " (unknown type %u, layout %s)\n", t->name, "?", shape,
             t->n_bytes, t->stored_dtype, t->layout);
  }
  if (unknown)
    printf("%" PRIu64 " tensor%s of a type this version does not know: a model that needs %s "
           "cannot run\n",
           unknown, unknown == 1 ? "" : "s", unknown == 1 ? "it" : "them");
}

int qiao_cmd_inspect(int argc, char **argv) {
  qiao_cli_model_args model = {0};
  bool metadata = false;
  qiao_engine_options eo = qiao_engine_default_options();
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = qiao_cli_parse_model_arg(&model, true, argc, argv, &i);
    if (r == 2) return 2;
    if (r == 1) continue;
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--metadata") == 0) {
      metadata = true;
    } else if (strcmp(a, "--split") == 0 || strcmp(a, "--split-by") == 0) {
      const char *v = qiao_cli_flag_value(argc, argv, &i);
      if (v == NULL) return 2;
      if (a[7] == '\0')
        eo.split = v;
      else if (strcmp(v, "layers") == 0 || strcmp(v, "memory") == 0)
        eo.split_by = v[0] == 'm' ? QIAO_ENGINE_SPLIT_BY_MEMORY : QIAO_ENGINE_SPLIT_BY_LAYERS;
      else
        return qiao_cli_usage_error("--split-by: \"%s\" is not layers or memory", v);
    } else {
      return qiao_cli_unknown_arg("inspect", a);
    }
  }
  if (model.path == NULL) {
    usage(stderr);
    return 2;
  }
  qiao_model *m;
  qiao_status *st = qiao_cli_open_model(&model, false, &m);
  if (st) return qiao_cli_fail(st);
  printf("%-22s %s\n", "file:", qiao_model_path(m));
  printf("%-22s %s\n", "format:", qiao_model_format(m));
  print_string("architecture:", m, "general.architecture");
  print_string("name:", m, "general.name");
  print_string("source architecture:", m, "general.source_architecture");
  print_string("license:", m, "general.license");
  print_hparams(m);
  print_tokenizer(m);
  printf("%-22s %" PRIu64 " entries\n", "metadata:", qiao_model_kv_count(m));
  if (metadata)
    for (uint64_t i = 0; i < qiao_model_kv_count(m); i++) {
      const qiao_kv *kv = qiao_model_kv_at(m, i);
      printf("  %-44s ", kv->key);
      print_value(kv);
      printf("\n");
    }
  print_tensors(m);
  if (eo.split != NULL) {
    qiao_engine_stage_info *stages = NULL;
    uint32_t n = 0;
    st = engine_cli_split_status(qiao_engine_plan(m, &eo, &stages, &n));
    if (st == NULL) engine_cli_print_placement(stdout, stages, n);
    free(stages);
  }
  qiao_model_close(m);
  return st ? qiao_cli_fail(st) : 0;
}
