/* Greedy ids of a GGUF model through llama.cpp's library (the peer build
 * beside the checkout), from given prompt ids: MODEL N_OUT ID...; prints the
 * N_OUT ids. $NVOCAB sets the logits' width for files without a vocabulary
 * (tokenizer.ggml.model "none"). Used by engine_deepseek_gguf. */
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s MODEL N_OUT ID...\n", argv[0]);
    return 2;
  }
  int n_out = atoi(argv[2]), n = argc - 3;
  llama_token *ids = malloc(sizeof(llama_token) * (size_t)(n + n_out));
  for (int i = 0; i < n; i++)
    ids[i] = atoi(argv[3 + i]);
  llama_backend_init();
  struct llama_model_params mp = llama_model_default_params();
  struct llama_model *model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    fprintf(stderr, "load failed\n");
    return 1;
  }
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 128;
  cp.n_batch = 128;
  cp.n_threads = 1;
  cp.n_threads_batch = 1;
  struct llama_context *ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    fprintf(stderr, "context failed\n");
    return 1;
  }
  const struct llama_vocab *vocab = llama_model_get_vocab(model);
  int n_vocab = llama_vocab_n_tokens(vocab);
  if (getenv("NVOCAB")) n_vocab = atoi(getenv("NVOCAB"));
  struct llama_batch b = llama_batch_get_one(ids, n);
  for (int i = 0; i < n_out; i++) {
    if (llama_decode(ctx, b) != 0) {
      fprintf(stderr, "decode failed\n");
      return 1;
    }
    const float *lg = llama_get_logits_ith(ctx, -1);
    int best = 0;
    for (int v = 1; v < n_vocab; v++)
      if (lg[v] > lg[best]) best = v;
    printf("%s%d", i ? " " : "", best);
    ids[n + i] = best;
    b = llama_batch_get_one(&ids[n + i], 1);
  }
  printf("\n");
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  free(ids);
  return 0;
}
