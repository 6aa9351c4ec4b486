/* qiao/sampler.h: choosing the next token from logits, and stop strings.
 *
 * A sampler applies, in this order: repetition / presence / frequency
 * penalties over its history window, temperature, min-p, top-k, top-p
 * (nucleus, over the renormalized survivors), then draws with its own PRNG (xoshiro256**, seeded by
 * splitmix64 from `seed`: the same seed and inputs give the same tokens on every machine).
 * Temperature 0 is greedy (the smallest id of the largest logit, after penalties). Logprobs are the
 * log-softmax of the RAW logits (before penalties and temperature).
 *
 * Ownership: the caller owns samplers and stoppers; pointers they return are
 * valid until the next call on the same object. Thread-safety: one thread
 * per object. */
#ifndef QIAO_SAMPLER_H
#define QIAO_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_sampler_params {
  size_t struct_size;
  float temperature;       /* 0 = greedy */
  uint32_t top_k;          /* 0 = off */
  float top_p;             /* 1 = off (values <= 0 or >= 1 are off) */
  float min_p;             /* 0 = off: drop tokens with p < min_p * p_max */
  float repeat_penalty;    /* 1 = off: logit / r if > 0 else logit * r, per seen token */
  float presence_penalty;  /* 0 = off: logit -= presence for each seen token */
  float frequency_penalty; /* 0 = off: logit -= frequency * count */
  uint32_t penalty_window; /* the last N accepted tokens; 0 = all */
  uint64_t seed;
  uint32_t n_logprobs; /* top-N logprobs to report, <= 64 */
} qiao_sampler_params;

/* The defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties
 * off, penalty_window 64, seed 0, no logprobs. */
qiao_sampler_params qiao_sampler_default_params(void);

typedef struct qiao_sampler qiao_sampler;

/* Fails with QIAO_INVALID_ARGUMENT naming a bad parameter. */
qiao_status *qiao_sampler_create(const qiao_sampler_params *params, uint32_t vocab_size,
                                 qiao_sampler **out_sampler);
void qiao_sampler_destroy(qiao_sampler *sampler); /* accepts NULL */

/* True when sampling reduces to the argmax of the raw logits (temperature 0,
 * no penalties, no logprobs): the engine can then compute it on the device. */
bool qiao_sampler_is_greedy(const qiao_sampler *sampler);

/* Adds a token (prompt or generated) to the penalty history. */
void qiao_sampler_accept(qiao_sampler *sampler, int32_t token);
/* Clears the history (the PRNG continues). */
void qiao_sampler_reset(qiao_sampler *sampler);

typedef struct qiao_logprobs {
  float chosen;           /* log p of the chosen token */
  uint32_t n_top;         /* entries below */
  const int32_t *top_ids; /* most likely first */
  const float *top_logprobs;
} qiao_logprobs;

/* Picks a token from `logits` (vocab_size floats, not modified). Does not
 * accept it: call qiao_sampler_accept. `out_logprobs` may be NULL. */
qiao_status *qiao_sampler_sample(qiao_sampler *sampler, const float *logits, int32_t *out_token,
                                 qiao_logprobs *out_logprobs);

/* The same, among the tokens of `allowed` only: a bitmask of
 * (vocab_size + 31) / 32 words, bit (t % 32) of word t / 32 set when token t
 * may be chosen (NULL: all may). Every other token is treated as having
 * probability 0 (logprobs still describe the raw logits). Fails with
 * QIAO_INVALID_ARGUMENT when no token is allowed. Used for constrained
 * decoding (qiao/grammar.h). */
qiao_status *qiao_sampler_sample_masked(qiao_sampler *sampler, const float *logits,
                                        const uint32_t *allowed, int32_t *out_token,
                                        qiao_logprobs *out_logprobs);

/* ---- Stop strings over a text stream ------------------------------------- */

typedef struct qiao_stopper qiao_stopper;

/* `stops`: n NUL-terminated strings (copied); empty ones are ignored. */
qiao_status *qiao_stopper_create(const char *const *stops, size_t n, qiao_stopper **out);
void qiao_stopper_destroy(qiao_stopper *stopper); /* accepts NULL */

/* Pushes generated text. (*out_text, *out_len) is text now safe to show: text
 * that could still be the start of a stop string is held back. When a stop
 * string completes, *out_stopped is true and the text shown ends just before
 * it. */
qiao_status *qiao_stopper_push(qiao_stopper *stopper, const char *text, size_t len,
                               const char **out_text, size_t *out_len, bool *out_stopped);
/* At the end of generation: the held-back text. */
void qiao_stopper_flush(qiao_stopper *stopper, const char **out_text, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
