/* Several sequences of different lengths interleaved in one forward call
 * give the logits each gives alone; the paged cache (small blocks, out of
 * order) is shared; a full cache fails cleanly; bad batches are refused. */
#include <stdio.h>
#include <string.h>

#include "engine_test_util.h"
#include "qiao/model.h"

#define VOCAB 512

int main(void) {
  qiao_model *model = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &model));
  if (model == NULL) TEST_END();
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.block_size = 4;
  o.n_blocks = 12;
  o.max_context = 32;
  o.max_seqs = 4;
  o.max_batch_tokens = 7; /* forces several passes per call */
  qiao_engine *e = NULL;
  CHECK_OK(qiao_engine_create(model, &o, &e));
  if (e == NULL) {
    qiao_model_close(model);
    TEST_END();
  }
  const int32_t a[] = {1, 403, 407, 261, 378, 432, 383, 286, 261};
  const int32_t b[] = {1, 376, 298};
  const int32_t c[] = {1, 403, 407, 261, 378, 432};
  const int32_t *prompts[] = {a, b, c};
  const size_t lens[] = {9, 3, 6};

  /* Alone. */
  static float alone[3][9 * VOCAB];
  for (int s = 0; s < 3; s++)
    CHECK_OK(all_logits(e, prompts[s], lens[s], alone[s]));

  /* Interleaved: round robin over the sequences. A throwaway sequence takes
   * blocks first so the others get blocks out of order. */
  int32_t junk, seq[3];
  CHECK_OK(qiao_engine_seq_create(e, &junk));
  int32_t jt = 1, jp = 0;
  qiao_batch jb = {1, &jt, &junk, &jp, NULL};
  CHECK_OK(qiao_engine_forward(e, &jb, NULL, NULL));
  for (int s = 0; s < 3; s++)
    CHECK_OK(qiao_engine_seq_create(e, &seq[s]));
  int32_t tokens[18], seqs[18], pos[18], owner[18], at[18];
  uint8_t want[18];
  size_t n = 0;
  for (size_t i = 0; i < 9; i++)
    for (int s = 0; s < 3; s++)
      if (i < lens[s]) {
        tokens[n] = prompts[s][i];
        seqs[n] = seq[s];
        pos[n] = (int32_t)i;
        owner[n] = s;
        at[n] = (int32_t)i;
        want[n] = 1;
        n++;
      }
  static float mixed[18 * VOCAB];
  qiao_batch batch = {n, tokens, seqs, pos, want};
  CHECK_OK(qiao_engine_forward(e, &batch, mixed, NULL));
  double worst = 0;
  for (size_t t = 0; t < n; t++) {
    double err = rel_l2(mixed + t * VOCAB, alone[owner[t]] + at[t] * VOCAB, VOCAB);
    if (err > worst) worst = err;
  }
  printf("interleaved vs alone: worst rel L2 %.3g\n", worst);
  CHECK(worst < 1e-6);
  for (int s = 0; s < 3; s++)
    CHECK(qiao_engine_seq_length(e, seq[s]) == lens[s]);

  /* Full cache: 12 blocks of 4; 1 + 3 + 1 + 2 are taken; 24 more tokens
   * on one sequence need 6 more blocks, 5 are free: refused, no change. */
  int32_t many[24], mseq[24], mpos[24];
  for (int i = 0; i < 24; i++) {
    many[i] = 300;
    mseq[i] = seq[1];
    mpos[i] = 3 + i;
  }
  qiao_batch big = {24, many, mseq, mpos, NULL};
  CHECK_ERR(qiao_engine_forward(e, &big, NULL, NULL), QIAO_LIMIT);
  CHECK(qiao_engine_seq_length(e, seq[1]) == 3);
  /* Bad batches. */
  int32_t gap_pos = 7, bad_tok = VOCAB;
  qiao_batch gap = {1, &many[0], &seq[1], &gap_pos, NULL};
  CHECK_ERR(qiao_engine_forward(e, &gap, NULL, NULL), QIAO_INVALID_ARGUMENT);
  int32_t p3 = 3, nosuch = 7;
  qiao_batch badtok = {1, &bad_tok, &seq[1], &p3, NULL};
  CHECK_ERR(qiao_engine_forward(e, &badtok, NULL, NULL), QIAO_INVALID_ARGUMENT);
  qiao_batch badseq = {1, &many[0], &nosuch, &p3, NULL};
  CHECK_ERR(qiao_engine_forward(e, &badseq, NULL, NULL), QIAO_INVALID_ARGUMENT);
  int32_t s4;
  CHECK_ERR(qiao_engine_seq_create(e, &s4), QIAO_LIMIT); /* all 4 are live */

  /* Freeing returns blocks; truncation lets a sequence rewrite positions. */
  qiao_engine_seq_free(e, junk);
  CHECK_OK(qiao_engine_seq_truncate(e, seq[0], 5));
  CHECK(qiao_engine_seq_length(e, seq[0]) == 5);
  int32_t next_tok = 432, p5 = 5, argmax_ids[2];
  float row[VOCAB];
  qiao_batch again = {1, &next_tok, &seq[0], &p5, NULL};
  CHECK_OK(qiao_engine_forward(e, &again, row, argmax_ids));
  CHECK(rel_l2(row, alone[0] + 5 * VOCAB, VOCAB) < 1e-6);
  int best = 0;
  for (int i = 1; i < VOCAB; i++)
    if (row[i] > row[best]) best = i;
  CHECK(argmax_ids[0] == best);
  qiao_engine_destroy(e);
  qiao_model_close(model);
  TEST_END();
}
