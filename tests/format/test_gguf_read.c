/* Reading real GGUF files: stories260K (a full model written by an old
 * converter) and the vocab-only GGUFs the tokenizer tests use. */
#include <math.h>
#include <string.h>

#include "format/model_internal.h"
#include "test_util.h"

static void test_stories(void) {
  qiao_model *m = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &m));
  if (m == NULL) return;
  CHECK(strcmp(qiao_model_format(m), "gguf") == 0);
  CHECK(qiao_model_tensor_count(m) == 48);
  qiao_hparams h;
  CHECK_OK(qiao_model_get_hparams(m, &h));
  CHECK(strcmp(h.architecture, "llama") == 0);
  CHECK(h.vocab_size == 512 && h.dim == 64 && h.n_layers == 5 && h.n_heads == 8);
  CHECK(h.n_kv_heads == 4 && h.head_dim == 8 && h.ffn_dim == 172 && h.context_length == 2048);
  CHECK(h.rope_dim == 8 && h.rope_neox == 0 && !h.tied_embeddings && !h.qkv_bias);
  CHECK(fabsf(h.norm_eps - 1e-5f) < 1e-9f && h.rope_theta == 10000.0f);
  const qiao_tensor *t = qiao_model_tensor_find(m, "token_embd.weight");
  CHECK(t != NULL && t->n_dims == 2 && t->shape[0] == 512 && t->shape[1] == 64);
  CHECK(t != NULL && t->dtype == QIAO_DTYPE_F32 && t->n_bytes == 512 * 64 * 4);
  t = qiao_model_tensor_find(m, "blk.4.ffn_down.weight");
  CHECK(t != NULL && t->shape[0] == 64 && t->shape[1] == 172);
  CHECK(qiao_model_tensor_find(m, "blk.5.ffn_down.weight") == NULL);
  qiao_string s;
  CHECK_OK(qiao_model_get_string(m, "tokenizer.model", &s));
  CHECK(s.len == 3 && memcmp(s.data, "spm", 3) == 0);
  uint32_t id = 99;
  CHECK_OK(qiao_model_get_u32(m, "tokenizer.bos_id", &id));
  CHECK(id == 1);
  const qiao_kv *eos = qiao_model_kv_find(m, "tokenizer.eos_ids");
  CHECK(eos && eos->type == QIAO_VALUE_ARRAY && eos->elem_type == QIAO_VALUE_U32 &&
        eos->array_len == 1 && ((const uint32_t *)eos->v.array)[0] == 2);
  CHECK(qiao_model_kv_find(m, "tokenizer.pad_id") == NULL);                  /* 0xffffffff = none */
  CHECK(qiao_model_kv_find(m, "tokenizer.ggml.seperator_token_id") != NULL); /* kept */
  const qiao_kv *tokens = qiao_model_kv_find(m, "tokenizer.tokens");
  CHECK(tokens && tokens->array_len == 512);
  if (tokens) {
    const qiao_string *ts = tokens->v.array;
    CHECK(ts[1].len == 3 && memcmp(ts[1].data, "<s>", 3) == 0);
  }
  const qiao_kv *types = qiao_model_kv_find(m, "tokenizer.token_types");
  CHECK(types && types->elem_type == QIAO_VALUE_I32 && ((const int32_t *)types->v.array)[0] == 2);
  CHECK_ERR(qiao_model_get_u32(m, "no.such.key", &id), QIAO_NOT_FOUND);
  CHECK_ERR(qiao_model_get_u32(m, "tokenizer.model", &id), QIAO_MALFORMED);
  qiao_model_close(m);
}

static void test_vocab_only(void) {
  const char *names[] = {"llama-spm", "phi-3", "gpt-2", "deepseek-llm", "deepseek-coder"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char rel[256];
    snprintf(rel, sizeof(rel), "tokenizers/gguf-vocab/ggml-vocab-%s.gguf", names[i]);
    qiao_model *m = NULL;
    CHECK_OK(qiao_model_open(test_shared_path(rel), NULL, &m));
    if (m == NULL) continue;
    CHECK(qiao_model_tensor_count(m) == 0);
    const qiao_kv *tokens = qiao_model_kv_find(m, "tokenizer.tokens");
    CHECK(tokens != NULL && tokens->array_len > 1000);
    qiao_string s;
    CHECK_OK(qiao_model_get_string(m, "tokenizer.model", &s));
    bool bpe = i >= 2;
    CHECK(s.len == 3 && memcmp(s.data, bpe ? "bpe" : "spm", 3) == 0);
    if (bpe) CHECK(qiao_model_kv_find(m, "tokenizer.merges") != NULL);
    qiao_model_close(m);
  }
}

int main(void) {
  test_stories();
  test_vocab_only();
  TEST_END();
}
