/* qiao/engine.h: running a decoder model on a device backend.
 *
 * An engine binds one open qiao_model to one device of one backend (or, with
 * options.split, to several devices that each hold a range of layers): at
 * creation it computes what each device must hold and refuses a placement
 * that does not fit, loads the backend (qiao_backend_load), opens the
 * device, checks that it implements every op x dtype the model needs, and
 * puts the weights on the device once (zero copy over the mapped file when
 * the device memory is host memory). It owns a paged KV cache shared by all
 * sequences.
 *
 * A sequence is a KV cache history: create one, feed it tokens with
 * qiao_engine_forward (any number of sequences in one call), free it. Its
 * cache blocks come from a free list on demand; when the cache is full the
 * forward call fails with QIAO_LIMIT and changes nothing.
 *
 * Ownership: the engine borrows the model, which must stay open until
 * qiao_engine_destroy. Thread-safety: an engine is used by one thread at a
 * time (it owns one device queue). */
#ifndef QIAO_ENGINE_H
#define QIAO_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/model.h"
#include "qiao/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_engine qiao_engine;

/* One pass as an external stage sees it (see qiao_engine_options.external):
 * the batch's metadata, identical on every stage because one engine
 * allocates the KV cache blocks for all of them. Arrays are valid for the
 * call only. */
typedef struct qiao_engine_pass {
  size_t struct_size;
  uint32_t stage;                   /* the stage of the split */
  uint32_t first_layer, last_layer; /* its layers, inclusive */
  uint32_t n_tokens, n_seqs, max_blocks_per_seq;
  const int32_t *positions;   /* (n_tokens) */
  const int32_t *slots;       /* (n_tokens) KV cache slot of each token */
  const int32_t *token_seq;   /* (n_tokens) row of block_table of each token */
  const int32_t *block_table; /* (n_seqs, max_blocks_per_seq) block ids */
  /* Appended in 0.4 (read only within struct_size): KV cache blocks the
   * stage copies, in order, before the pass writes anything: n_copies pairs
   * (from, to), the copies on write of the prefix cache (a sequence about to
   * write into a shared block gets a private copy of it), so that every
   * stage's KV cache holds what the engine's does. Only on the first pass of
   * a forward call; 0 and NULL otherwise. */
  uint32_t n_copies;
  const int32_t *copies; /* (n_copies, 2) */
} qiao_engine_pass;

/* Runs the layers of an external stage on x (n_tokens, dim) F32, in place:
 * typically by handing x and the pass to an engine elsewhere that holds
 * those layers (qiao_engine_forward_hidden). */
typedef qiao_status *(*qiao_engine_external_fn)(void *user, const qiao_engine_pass *pass, float *x);

/* How the devices of a split without layer ranges share the layers. */
typedef enum qiao_engine_split_by {
  QIAO_ENGINE_SPLIT_BY_LAYERS = 0, /* the same number of layers on each (the first get one more) */
  QIAO_ENGINE_SPLIT_BY_MEMORY = 1, /* layers in proportion to each device's memory */
} qiao_engine_split_by;

typedef struct qiao_engine_options {
  size_t struct_size;
  const char *backend;       /* a backend name ("cpu") or a plugin path; NULL = "cpu" */
  uint32_t n_threads;        /* host threads for the backend; 0 = its default */
  uint32_t block_size;       /* tokens per KV cache block; 0 = 16 */
  uint32_t n_blocks;         /* KV cache blocks, shared by all sequences; 0 = one max_context */
  uint32_t max_context;      /* positions per sequence; 0 = min(context_length, 4096) */
  uint32_t max_seqs;         /* live sequences at once; 0 = 8 */
  uint32_t max_batch_tokens; /* tokens per device pass; 0 = 512 (longer calls are split) */
  qiao_dtype cache_dtype;    /* QIAO_DTYPE_F32 (default, 0) or QIAO_DTYPE_F16 */
  /* Run ops the backend lacks on the built-in CPU backend instead of failing
   * (operands move between the devices for each such op; slow but exact).
   * Which ops run where is printed on stderr. */
  bool allow_fallback;
  bool verbose; /* progress and placement on stderr */
  /* Appended after the first release (read only within struct_size): */
  uint32_t device_index; /* which device of the backend to open; 0 = the first */
  /* Open the device in batch-invariant mode: every output row of every op is
   * then a function of that row's own inputs only, not of how many other
   * tokens or sequences share the pass (device ABI 1.1,
   * QIAO_DEV_FLAG_BATCH_INVARIANT). Fails with QIAO_UNSUPPORTED when the
   * device does not claim it. */
  bool batch_invariant;
  /* Keep whole KV blocks of written tokens, keyed by the token prefix they
   * hold, after their sequence is freed, for qiao_engine_seq_create_cached;
   * they are evicted least recently used when blocks run short. */
  bool prefix_cache;
  /* Multiply Q8_0 and Q4_0 weights with the exact F32 activations. By
   * default (false) the engine lets the backend quantize activations to
   * int8 for them (device ABI 1.2, QIAO_DEV_PRECISION_Q8: blocks of 32 with
   * one scale, the error budget of spec §11.4), which the CPU backend does
   * with AVX512-VNNI or AVX-VNNI, several times faster than F32; float weights are
   * always multiplied exactly. The same holds for the block types of ABI
   * 1.3 and for a MoE model's experts (matmul_experts, ABI 1.5, §15.1). */
  bool exact_matmul;
  /* Appended in 0.2 (read only within struct_size): */
  /* Place consecutive layers on several devices, one "stage" each:
   * "cpu:0-11,opencl:12-23" (BACKEND[:DEVICE]:FIRST-LAST, inclusive layer
   * ranges that cover every layer in order), or devices without ranges
   * ("cpu,opencl:1") whose layers split_by decides; in a mix
   * ("cpu,opencl,external:12-23", since 0.4.1) the devices without a range
   * share, by split_by, the layers between the ranged ones. Each stage holds its
   * layers and their KV cache; the embedding is on the first stage, the
   * output norm and matmul on the last; the activations (T, dim) F32 cross
   * each boundary once per pass. NULL or "" = one device (backend and
   * device_index). A split of several stages refuses allow_fallback. */
  const char *split;
  qiao_engine_split_by split_by;
  /* Stages named "external" in the split (e.g. "cpu:0-11,external:12-23")
   * hold nothing here: their layers run through this callback, given x and
   * the pass. The engine that holds layer 0 has the embedding and the output
   * (on its last stage of its own); an engine whose first stage is external
   * holds neither and runs only qiao_engine_forward_hidden. Needed when the
   * split has an external stage and the engine holds layer 0. With
   * prefix_cache, the copies on write reach the external stages with the
   * next pass (qiao_engine_pass.copies); a failed forward call that carried
   * some leaves the engine unusable (qiao_engine_device_lost): an external
   * stage's KV cache may then differ from this engine's. */
  qiao_engine_external_fn external;
  void *external_user;
} qiao_engine_options;

/* All defaults (struct_size set, everything else 0 / NULL). */
qiao_engine_options qiao_engine_default_options(void);

/* Creates an engine. Fails with QIAO_UNSUPPORTED "backend <name> does not
 * support <op> for <dtype> (needed by <tensor>)" when the device lacks an op,
 * QIAO_MALFORMED when a tensor the hyperparameters call for is missing or has
 * the wrong shape. `options` may be NULL (all defaults). */
qiao_status *qiao_engine_create(const qiao_model *model, const qiao_engine_options *options,
                                qiao_engine **out_engine);
/* Accepts NULL. */
void qiao_engine_destroy(qiao_engine *engine);

/* The hyperparameters the engine runs with. */
const qiao_hparams *qiao_engine_hparams(const qiao_engine *engine);
/* Positions a sequence may hold. */
uint32_t qiao_engine_max_context(const qiao_engine *engine);
/* The backend's name ("cpu") and the device's name. */
const char *qiao_engine_backend_name(const qiao_engine *engine);
const char *qiao_engine_device_name(const qiao_engine *engine);
/* Bytes of weights one decoded token reads (every matmul weight once; for
 * MoE layers only the experts used; the one embedding row). */
uint64_t qiao_engine_weight_bytes_per_token(const qiao_engine *engine);
/* Bytes of KV cache one token takes in every layer: K and V rows
 * (2 * n_kv_heads * head_dim values per layer), or with multi-head latent
 * attention one row of kv_lora_rank + rope_dim values per layer; times the
 * cache dtype's size. */
uint64_t qiao_engine_kv_bytes_per_token(const qiao_engine *engine);

/* ---- Placement ----------------------------------------------------------- */

/* One stage of the placement: a device and the layers it runs. Before
 * allocating anything the engine computes these bytes for every stage and
 * refuses (QIAO_LIMIT) a placement where the stages on one device need more
 * than its memory_bytes, or one buffer more than its max_buffer_bytes,
 * naming the device, the layers and the shortfall. */
typedef struct qiao_engine_stage_info {
  size_t struct_size;
  char backend[64];                 /* the backend's name ("cpu") */
  uint32_t device_index;            /* the device of the backend */
  char device[128];                 /* the device's name */
  uint32_t first_layer, last_layer; /* inclusive */
  bool embedding, output;           /* holds the token embedding / the output norm and matmul */
  uint64_t weight_bytes;            /* its layers' weights (+ embedding, output) */
  uint64_t kv_cache_bytes;          /* K and V of its layers for every block */
  uint64_t scratch_bytes;           /* activations for max_batch_tokens */
  uint64_t memory_bytes;            /* the device's memory as it reports it; 0 = not said */
  /* Activations this stage sends per token: to the next stage, or from a
   * last external stage back to this engine's output; 0 for the last. */
  uint64_t boundary_bytes_per_token;
} qiao_engine_stage_info;

/* Stages of the engine (1 without a split). */
uint32_t qiao_engine_stage_count(const qiao_engine *engine);
/* Fills *out for stage i < qiao_engine_stage_count (set out->struct_size
 * first; fields beyond it are not written). */
void qiao_engine_stage_info_get(const qiao_engine *engine, uint32_t i, qiao_engine_stage_info *out);

/* The placement qiao_engine_create would make, and its memory check,
 * without loading any weight or allocating device memory (backends are
 * loaded to read their devices' properties). *out_stages is malloc'd (free()
 * it), with *out_count entries, each with struct_size set. Fails as
 * qiao_engine_create would for a bad split or a placement that does not
 * fit. */
qiao_status *qiao_engine_plan(const qiao_model *model, const qiao_engine_options *options,
                              qiao_engine_stage_info **out_stages, uint32_t *out_count);

/* Runs this engine's own layers (every stage not "external") on x
 * (pass->n_tokens, dim) F32 in place, with the pass's positions, slots and
 * block table as given (the sequences of this engine are not used): the
 * other side of an external stage. Checks every index against the engine's
 * limits (n_tokens <= max_batch_tokens, n_seqs <= max_seqs, slots and block
 * ids within its KV cache), which must equal the calling engine's. */
qiao_status *qiao_engine_forward_hidden(qiao_engine *engine, const qiao_engine_pass *pass,
                                        float *x);

/* ---- Sequences ----------------------------------------------------------- */

/* A new, empty sequence. Fails with QIAO_LIMIT when max_seqs are live. */
qiao_status *qiao_engine_seq_create(qiao_engine *engine, int32_t *out_seq);
/* Returns its blocks to the free list. Accepts an unknown id (no-op). */
void qiao_engine_seq_free(qiao_engine *engine, int32_t seq);
/* Positions the sequence holds (one past the largest position written). */
uint32_t qiao_engine_seq_length(const qiao_engine *engine, int32_t seq);
/* Forgets positions >= n (so they can be written again), freeing blocks. */
qiao_status *qiao_engine_seq_truncate(qiao_engine *engine, int32_t seq, uint32_t n);

/* ---- Prefix cache (options.prefix_cache) ---------------------------------- */

/* A new sequence that starts with the longest run of whole blocks of
 * `tokens` that the cache holds (at most n_tokens - 1 positions, so the
 * caller always computes the last prompt token). *out_cached is the number
 * of positions the sequence already holds; the caller continues at that
 * position. Blocks are shared by reference count and never written again
 * while shared. Without a prefix cache this is qiao_engine_seq_create with
 * *out_cached = 0. Fails with QIAO_LIMIT when max_seqs are live. */
qiao_status *qiao_engine_seq_create_cached(qiao_engine *engine, const int32_t *tokens,
                                           size_t n_tokens, int32_t *out_seq, uint32_t *out_cached);
/* The positions qiao_engine_seq_create_cached would take from the cache now,
 * without changing anything. */
uint32_t qiao_engine_prefix_cached(const qiao_engine *engine, const int32_t *tokens,
                                   size_t n_tokens);

typedef struct qiao_engine_cache_stats {
  size_t struct_size;
  uint32_t block_size;
  uint32_t n_blocks;      /* all blocks */
  uint32_t used_blocks;   /* held by live sequences */
  uint32_t cached_blocks; /* held by no sequence but keeping a prefix (evictable) */
  uint32_t live_seqs;
  uint64_t hit_tokens; /* positions served from the cache so far */
  uint64_t evicted_blocks;
} qiao_engine_cache_stats;

/* Fills *out (set out->struct_size first; fields beyond it are not written). */
void qiao_engine_cache_stats_get(const qiao_engine *engine, qiao_engine_cache_stats *out);

/* True once the device reported QIAO_DEV_DEVICE_LOST: the engine is unusable. */
bool qiao_engine_device_lost(const qiao_engine *engine);

/* ---- Forward ------------------------------------------------------------- */

/* A batch of tokens of one or more sequences, in any interleaving. Within
 * one sequence the positions must follow each other without a gap after what
 * the sequence already holds (a position below its length rewrites it). */
typedef struct qiao_batch {
  size_t n_tokens;
  const int32_t *tokens;    /* (n_tokens) token ids */
  const int32_t *seqs;      /* (n_tokens) sequence ids */
  const int32_t *positions; /* (n_tokens) */
  const uint8_t *want;      /* (n_tokens) 1 = produce output for this token; NULL = last only */
} qiao_batch;

/* Runs the batch. For the wanted tokens, in batch order (row r = r-th wanted
 * token): when out_logits is not NULL, its rows (n_wanted, vocab) F32; when
 * out_argmax is not NULL, the argmax id of each row, computed on the device
 * (the logits are then not downloaded unless out_logits is given too).
 * Logits are computed only for wanted tokens. On failure the sequences'
 * lengths are unchanged but cache contents at the new positions are not. */
qiao_status *qiao_engine_forward(qiao_engine *engine, const qiao_batch *batch, float *out_logits,
                                 int32_t *out_argmax);

#ifdef __cplusplus
}
#endif
#endif
