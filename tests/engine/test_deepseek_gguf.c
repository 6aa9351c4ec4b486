/* DeepSeek-V3's tiny reference model in both deepseek2 GGUF forms, and
 * beside llama.cpp:
 *  - the "kv_b form" (attn_kv_b, as the HF directory holds it) and the
 *    "MLA form" (attn_k_b (H, L, N) = kv_b's key rows per head transposed,
 *    attn_v_b (H, V, L) = its value rows, as llama.cpp's converter writes
 *    them now; key_length_mla / value_length_mla in the metadata) written by
 *    qiao_model_write, read back with the same hyperparameters, and giving
 *    the same logits (bit for bit: the engine makes W_UK^T and W_UV from
 *    kv_b with the same values the MLA form stores);
 *  - a copy whose blk.1.attn_kv_a_mqa.weight lacks a row is refused by
 *    validation and by the engine, naming that tensor;
 *  - with argv[1] (a program running llama.cpp's library, greedy from ids):
 *    llama.cpp loads both files and its 24 greedy ids equal transformers'
 *    (and so qiao's, engine_deepseek). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine_test_util.h"
#include "format/model_internal.h"
#include "qiao/model.h"

/* A copy of `src` (its metadata and tensors) with tokenizer.model "none"
 * (llama.cpp needs the key) and, when `mla_form`, attn_kv_b of every layer
 * replaced by attn_k_b and attn_v_b. */
static qiao_model *copy_model(const qiao_model *src, const qiao_hparams *hp, bool mla_form,
                              bool short_kv_a) {
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_create("deepseek test copy", "hf", &m));
  if (m == NULL) return NULL;
  for (uint64_t i = 0; i < qiao_model_kv_count(src); i++)
    CHECK_OK(qiao__model_set_kv(m, qiao_model_kv_at(src, i)));
  if (qiao_model_kv_find(src, "tokenizer.model") == NULL)
    CHECK_OK(qiao__model_set_string(m, "tokenizer.model", "none", 4));
  const uint64_t H = hp->n_heads, L = hp->kv_lora_rank, N = hp->head_dim - hp->rope_dim;
  const uint64_t V = hp->v_head_dim;
  for (uint64_t i = 0; i < qiao_model_tensor_count(src); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(src, i);
    const char *suffix = strstr(t->name, ".attn_kv_b.weight");
    if (short_kv_a && strcmp(t->name, "blk.1.attn_kv_a_mqa.weight") == 0) { /* a row less */
      const uint64_t shape[] = {t->shape[0] - 1, t->shape[1]};
      CHECK_OK(qiao__model_add_tensor(m, t->name, t->dtype, 2, shape, t->data,
                                      t->n_bytes / t->shape[0] * shape[0]));
      continue;
    }
    if (!mla_form || suffix == NULL) {
      CHECK_OK(
          qiao__model_add_tensor(m, t->name, t->dtype, t->n_dims, t->shape, t->data, t->n_bytes));
      continue;
    }
    CHECK(t->dtype == QIAO_DTYPE_F32);
    const float *kv_b = t->data; /* (H*(N+V), L) */
    float *k_b = NULL, *v_b = NULL;
    CHECK_OK(qiao__model_alloc(m, H * L * N * 4, (void **)&k_b));
    CHECK_OK(qiao__model_alloc(m, H * V * L * 4, (void **)&v_b));
    for (uint64_t h = 0; h < H; h++) {
      for (uint64_t n = 0; n < N; n++)
        for (uint64_t l = 0; l < L; l++)
          k_b[(h * L + l) * N + n] = kv_b[(h * (N + V) + n) * L + l];
      memcpy(v_b + h * V * L, kv_b + (h * (N + V) + N) * L, V * L * 4);
    }
    char name[128];
    int layer_len = (int)(suffix - t->name);
    snprintf(name, sizeof(name), "%.*s.attn_k_b.weight", layer_len, t->name);
    CHECK_OK(qiao__model_add_tensor(m, name, QIAO_DTYPE_F32, 3, (const uint64_t[]){H, L, N}, k_b,
                                    H * L * N * 4));
    snprintf(name, sizeof(name), "%.*s.attn_v_b.weight", layer_len, t->name);
    CHECK_OK(qiao__model_add_tensor(m, name, QIAO_DTYPE_F32, 3, (const uint64_t[]){H, V, L}, v_b,
                                    H * V * L * 4));
  }
  return m;
}

static void logits_of(qiao_model *m, const int32_t *prompt, size_t n, float *out) {
  qiao_engine *e = NULL;
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.max_context = 64;
  CHECK_OK(qiao_engine_create(m, &o, &e));
  if (e != NULL) CHECK_OK(all_logits(e, prompt, n, out));
  qiao_engine_destroy(e);
}

int main(int argc, char **argv) {
  const char *json = test_shared_path("reference/tiny/deepseek_v3/reference.json");
  int32_t prompt[64], ref_greedy[64];
  size_t n_prompt = ref_ids(json, "prompt", prompt, 64);
  size_t n_greedy = ref_ids(json, "greedy", ref_greedy, 64);
  CHECK(n_prompt == 12 && n_greedy == 24);
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", test_shared_path("reference/tiny/deepseek_v3/config.json"));
  *strrchr(dir, '/') = '\0';
  qiao_model *hf = NULL;
  CHECK_OK(qiao_model_open(dir, NULL, &hf));
  if (hf == NULL) TEST_END();
  qiao_hparams hp;
  CHECK_OK(qiao_model_get_hparams(hf, &hp));
  float *want = malloc(n_prompt * 512 * 4), *got = malloc(n_prompt * 512 * 4);
  logits_of(hf, prompt, n_prompt, want);

  for (int form = 0; form < 2; form++) {
    const char *label = form ? "MLA form (attn_k_b, attn_v_b)" : "kv_b form (attn_kv_b)";
    qiao_model *copy = copy_model(hf, &hp, form == 1, false);
    char path[256];
    snprintf(path, sizeof(path), "/tmp/qiao_deepseek_form%d_%d.gguf", form, (int)getpid());
    qiao_convert_options co = {sizeof(co), QIAO_FILE_GGUF, QIAO_DTYPE_COUNT, false};
    CHECK_OK(qiao_model_write(copy, path, &co));
    qiao_model_close(copy);
    qiao_model *back = NULL;
    CHECK_OK(qiao_model_open(path, NULL, &back));
    if (back != NULL) {
      CHECK_OK(qiao_model_validate(back));
      qiao_hparams hb;
      CHECK_OK(qiao_model_get_hparams(back, &hb));
      CHECK(hb.head_dim == hp.head_dim && hb.v_head_dim == hp.v_head_dim &&
            hb.kv_lora_rank == hp.kv_lora_rank && hb.q_lora_rank == hp.q_lora_rank &&
            hb.rope_dim == hp.rope_dim && hb.n_heads == hp.n_heads &&
            hb.expert_gating == hp.expert_gating && hb.expert_scale == hp.expert_scale &&
            hb.expert_groups == hp.expert_groups && hb.n_shared_experts == hp.n_shared_experts);
      CHECK((qiao_model_tensor_find(back, "blk.0.attn_k_b.weight") != NULL) == (form == 1));
      logits_of(back, prompt, n_prompt, got);
      double diff = rel_l2(got, want, n_prompt * 512);
      printf("%s: written, reopened, logits rel L2 %.3g against the HF directory's\n", label, diff);
      CHECK(diff == 0);
      qiao_model_close(back);
    }
    if (argc > 1) { /* llama.cpp on the same file */
      char cmd[8192], ids[1024] = "";
      size_t len = 0;
      for (size_t i = 0; i < n_prompt; i++)
        len += (size_t)snprintf(ids + len, sizeof(ids) - len, " %d", prompt[i]);
      snprintf(cmd, sizeof(cmd), "NVOCAB=512 '%s' '%s' %zu%s 2>/dev/null", argv[1], path, n_greedy,
               ids);
      FILE *p = popen(cmd, "r");
      CHECK(p != NULL);
      int32_t lids[64];
      size_t n = 0;
      while (p != NULL && n < 64 && fscanf(p, "%d", &lids[n]) == 1)
        n++;
      CHECK(p != NULL && pclose(p) == 0);
      bool same = n == n_greedy && memcmp(lids, ref_greedy, n * 4) == 0;
      printf("%s: llama.cpp greedy %zu ids, %s transformers'\n", label, n,
             same ? "equal to" : "DIFFERENT from");
      CHECK(same);
    }
    unlink(path);
  }
  /* A wrong shape: refused, naming the tensor. */
  qiao_model *bad = copy_model(hf, &hp, false, true);
  if (bad != NULL) {
    qiao_status *st = qiao_model_validate(bad);
    CHECK(st != NULL && qiao_status_code(st) == QIAO_MALFORMED &&
          strstr(qiao_status_message(st), "blk.1.attn_kv_a_mqa.weight") != NULL);
    printf("a short attn_kv_a_mqa: %s\n", qiao_status_message(st));
    qiao_status_free(st);
    qiao_engine *e = NULL;
    st = qiao_engine_create(bad, NULL, &e);
    CHECK(st != NULL && qiao_status_code(st) == QIAO_MALFORMED &&
          strstr(qiao_status_message(st), "blk.1.attn_kv_a_mqa.weight") != NULL && e == NULL);
    qiao_status_free(st);
    qiao_model_close(bad);
  }
  free(want);
  free(got);
  qiao_model_close(hf);
  TEST_END();
}
