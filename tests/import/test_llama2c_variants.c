/* The llama2.c variants, made in memory from stories260K.bin: the "ak42"
 * version 1 export (header of 256 bytes, arrays reordered) and a legacy file
 * with an unshared classifier (negative vocab_size, wcls at the end) must
 * give the same canonical tensors as the original. */
#include <string.h>

#include "format/model_internal.h"
#include "qiao/model.h"
#include "test_util.h"

enum { DIM = 64, HIDDEN = 172, LAYERS = 5, HEADS = 8, KV_HEADS = 4, VOCAB = 512, SEQ = 512 };
#define KV_DIM (DIM / HEADS * KV_HEADS)

static size_t bin_len;
static uint8_t *bin;

static void same_tensors(const qiao_model *a, const qiao_model *b, const char *what) {
  CHECK(qiao_model_tensor_count(a) == qiao_model_tensor_count(b));
  for (uint64_t i = 0; i < qiao_model_tensor_count(a); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(a, i);
    const qiao_tensor *u = qiao_model_tensor_find(b, t->name);
    if (u == NULL || u->n_bytes != t->n_bytes || u->n_dims != t->n_dims ||
        memcmp(u->shape, t->shape, sizeof(t->shape)) != 0 ||
        memcmp(u->data, t->data, t->n_bytes) != 0) {
      fprintf(stderr, "%s: tensor %s differs\n", what, t->name);
      test_failures++;
    }
  }
}

/* Appends `count` floats of the legacy file starting at float index `at`. */
static size_t put(uint8_t *out, size_t o, size_t at, size_t count) {
  memcpy(out + o, bin + 28 + 4 * at, 4 * count);
  return o + 4 * count;
}

int main(void) {
  bin = (uint8_t *)test_read_file(test_shared_path("models/stories260K/stories260K.bin"), &bin_len);
  qiao_model *legacy = NULL;
  CHECK_OK(qiao__model_open_buffer(bin, bin_len, "stories260K.bin", &legacy));
  if (legacy == NULL) return 1;

  /* Float offsets of the legacy arrays. */
  size_t emb = 0, rms_att = emb + VOCAB * DIM, wq = rms_att + LAYERS * DIM;
  size_t wk = wq + LAYERS * DIM * DIM, wv = wk + LAYERS * KV_DIM * DIM;
  size_t wo = wv + LAYERS * KV_DIM * DIM, rms_ffn = wo + LAYERS * DIM * DIM;
  size_t w1 = rms_ffn + LAYERS * DIM, w2 = w1 + LAYERS * HIDDEN * DIM;
  size_t w3 = w2 + LAYERS * DIM * HIDDEN, rms_final = w3 + LAYERS * HIDDEN * DIM;
  size_t freq_end = rms_final + DIM + SEQ * (DIM / HEADS);
  CHECK(28 + 4 * freq_end == bin_len);

  /* Version 1: header, then rms_att, rms_ffn, rms_final, embedding, wq..w3. */
  size_t v1_len = 256 + 4 * (freq_end - SEQ * (DIM / HEADS));
  uint8_t *v1 = calloc(1, v1_len);
  uint32_t magic = 0x616b3432;
  int32_t version = 1;
  memcpy(v1, &magic, 4);
  memcpy(v1 + 4, &version, 4);
  memcpy(v1 + 8, bin, 28);
  v1[36] = 1; /* shared classifier */
  size_t o = 256;
  o = put(v1, o, rms_att, LAYERS * DIM);
  o = put(v1, o, rms_ffn, LAYERS * DIM);
  o = put(v1, o, rms_final, DIM);
  o = put(v1, o, emb, VOCAB * DIM);
  o = put(v1, o, wq, rms_ffn - wq);   /* wq, wk, wv, wo are contiguous */
  o = put(v1, o, w1, rms_final - w1); /* w1, w2, w3 too */
  CHECK(o == v1_len);
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_open_buffer(v1, v1_len, "v1.bin", &m));
  if (m) {
    CHECK_OK(qiao_model_validate(m));
    same_tensors(legacy, m, "version 1");
  }
  qiao_model_close(m);

  /* Legacy, unshared classifier: output.weight appears, equal to wcls. */
  size_t un_len = bin_len + 4 * VOCAB * DIM;
  uint8_t *un = malloc(un_len);
  memcpy(un, bin, bin_len);
  int32_t neg_vocab = -VOCAB;
  memcpy(un + 20, &neg_vocab, 4);
  for (size_t i = 0; i < (size_t)VOCAB * DIM; i++) {
    float x;
    memcpy(&x, bin + 28 + 4 * i, 4);
    x = -x; /* a classifier that differs from the embedding */
    memcpy(un + bin_len + 4 * i, &x, 4);
  }
  m = NULL;
  CHECK_OK(qiao__model_open_buffer(un, un_len, "unshared.bin", &m));
  if (m) {
    CHECK_OK(qiao_model_validate(m));
    const qiao_tensor *out = qiao_model_tensor_find(m, "output.weight");
    CHECK(out != NULL && out->n_bytes == 4u * VOCAB * DIM &&
          memcmp(out->data, un + bin_len, out->n_bytes) == 0);
    bool tied = true;
    CHECK_OK(qiao_model_get_bool(m, "model.tied_embeddings", &tied));
    CHECK(!tied);
    CHECK(qiao_model_tensor_count(m) == qiao_model_tensor_count(legacy) + 1);
  }
  qiao_model_close(m);
  qiao_model_close(legacy);
  free(un);
  free(v1);
  free(bin);
  TEST_END();
}
