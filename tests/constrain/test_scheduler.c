/* Requests with grammars through the scheduler (stories260K, one CPU
 * replica, 8 slots): 8 concurrent requests sharing one compiled schema plus
 * unconstrained ones beside them; every constrained output (the text of its
 * events) is complete, parses and validates; the grammar's reference is
 * released with the requests; a greedy unconstrained request gives the same
 * tokens beside constrained ones as alone (the mask is per request). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qiao/grammar.h"
#include "qiao/model.h"
#include "qiao/scheduler.h"
#include "qiao/tokenizer.h"
#include "test_util.h"
#include "validate.h"

static const char *SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\",\"maxLength\":16},"
    "\"n\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":5},\"ok\":{\"type\":\"boolean\"},"
    "\"items\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"y\"]},\"minItems\":1,\"maxItems\":"
    "3}},"
    "\"required\":[\"title\",\"n\",\"ok\",\"items\"],\"additionalProperties\":false}";

enum { N_CONSTRAINED = 8, N_FREE = 2, MAX_TEXT = 1 << 14 };

typedef struct outcome {
  char text[MAX_TEXT];
  size_t len;
  int32_t ids[512];
  size_t n_ids;
  qiao_finish finish;
} outcome;

static void collect(qiao_request *r, outcome *o) {
  memset(o, 0, sizeof(*o));
  qiao_request_event ev;
  for (;;) {
    if (!qiao_request_next(r, 1000, &ev)) continue;
    if (ev.text_len > 0 && o->len + ev.text_len < MAX_TEXT) {
      memcpy(o->text + o->len, ev.text, ev.text_len);
      o->len += ev.text_len;
    }
    if (ev.kind == QIAO_EVENT_TOKEN) {
      if (o->n_ids < 512) o->ids[o->n_ids++] = ev.token;
      continue;
    }
    o->finish = ev.finish;
    return;
  }
}

int main(void) {
  qiao_model *model = NULL;
  qiao_tokenizer *tok = NULL;
  qiao_pool *pool = NULL;
  qiao_scheduler *sched = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &model));
  CHECK_OK(qiao_tokenizer_create_from_model(model, &tok));
  qiao_pool_options po = qiao_pool_default_options();
  po.slots = N_CONSTRAINED + N_FREE;
  po.n_threads = 1;
  po.batch_invariant = true;
  const char *devices[] = {"cpu"};
  CHECK_OK(qiao_pool_create(model, devices, 1, &po, &pool));
  CHECK_OK(qiao_scheduler_create(pool, tok, NULL, &sched));
  qiao_grammar *g = NULL;
  CHECK_OK(qiao_grammar_compile_json_schema(SCHEMA, strlen(SCHEMA), &g));
  if (test_failures) return 1;

  int32_t *prompt = NULL;
  size_t n_prompt = 0;
  qiao_encode_options eo = {sizeof(eo), true, true};
  CHECK_OK(qiao_tokenizer_encode(tok, "Once upon a time", 16, &eo, &prompt, &n_prompt));
  qiao_request_params p;
  memset(&p, 0, sizeof(p));
  p.struct_size = sizeof(p);
  p.prompt = prompt;
  p.n_prompt = n_prompt;
  p.max_tokens = 400;
  p.sampling = qiao_sampler_default_params();
  p.sampling.temperature = 0;

  /* The greedy unconstrained reference, alone. */
  static outcome alone, outs[N_CONSTRAINED + N_FREE];
  qiao_request *r = NULL;
  p.max_tokens = 48;
  CHECK_OK(qiao_scheduler_submit(sched, &p, NULL, &r));
  collect(r, &alone);
  qiao_request_destroy(r);

  qiao_request *reqs[N_CONSTRAINED + N_FREE] = {0};
  for (int i = 0; i < N_CONSTRAINED + N_FREE; i++) {
    bool constrained = i < N_CONSTRAINED;
    p.grammar = constrained ? g : NULL;
    p.max_tokens = constrained ? 400 : 48;
    p.sampling.temperature = constrained ? 1.0f : 0.0f;
    p.sampling.seed = (uint64_t)i;
    CHECK_OK(qiao_scheduler_submit(sched, &p, NULL, &reqs[i]));
  }
  qiao_grammar_destroy(g); /* the requests hold their own references */
  for (int i = 0; i < N_CONSTRAINED + N_FREE; i++) {
    if (reqs[i] == NULL) continue;
    collect(reqs[i], &outs[i]);
    qiao_request_destroy(reqs[i]);
    if (i >= N_CONSTRAINED) { /* unconstrained neighbours are unaffected */
      CHECK(outs[i].n_ids == alone.n_ids &&
            memcmp(outs[i].ids, alone.ids, alone.n_ids * sizeof(int32_t)) == 0);
      continue;
    }
    char why[256] = "";
    CHECK(outs[i].finish == QIAO_FINISH_STOP);
    if (!v_check(SCHEMA, outs[i].text, outs[i].len, why, sizeof(why))) {
      fprintf(stderr, "request %d: invalid (%s): %.*s\n", i, why, (int)outs[i].len, outs[i].text);
      test_failures++;
    }
  }
  printf("%.*s\n", (int)outs[0].len, outs[0].text);

  free(prompt);
  qiao_scheduler_destroy(sched);
  qiao_pool_destroy(pool);
  qiao_tokenizer_destroy(tok);
  qiao_model_close(model);
  TEST_END();
}
