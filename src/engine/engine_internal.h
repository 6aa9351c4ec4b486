/* Internal: the engine's state, shared by engine.c (creation, weights, the
 * paged KV cache, sequences, batching) and forward.c (the forward pass). */
#ifndef QIAO_ENGINE_INTERNAL_H
#define QIAO_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status_internal.h"
#include "qiao/backend.h"
#include "qiao/engine.h"

/* One weight tensor on the device. */
typedef struct qiao__weight {
  qiao_dev_ref ref; /* {NULL, 0} when absent */
  qiao_dev_dtype dtype;
  uint64_t n_bytes;
} qiao__weight;

typedef struct qiao__layer {
  qiao__weight attn_norm, q, k, v,
      o; /* norm (dim); q (n_heads*hd, dim); k,v (kv_dim, dim); o (dim, n_heads*hd) */
  qiao__weight q_bias, k_bias, v_bias;        /* present when qkv_bias */
  qiao__weight q_norm, k_norm;                /* (head_dim), present when qk_norm */
  qiao__weight ffn_norm;                      /* (dim) */
  bool moe;                                   /* this layer's FFN is a mixture of experts */
  qiao__weight gate, up, down;                /* dense: (ffn, dim), (ffn, dim), (dim, ffn) */
  qiao__weight router;                        /* MoE: (n_experts, dim) */
  qiao__weight gate_exps, up_exps, down_exps; /* (E, eff, dim), (E, eff, dim), (E, dim, eff) */
  qiao_dev_ref k_cache, v_cache;              /* (n_slots, kv_dim) cache dtype */
  uint32_t stage;                             /* the stage (device) that holds it */
  /* Multi-head latent attention (deepseek2; H heads, N = head_dim - R nope
   * and R = rope_dim rope widths, L = kv_lora_rank, V = v_head_dim, QL =
   * q_lora_rank or dim). The cache is k_cache: (n_slots, L + R); no v_cache. */
  qiao__weight q_a, q_a_norm;           /* (q_lora, dim), (q_lora); absent without q_lora */
  qiao__weight q_nope, q_rope;          /* rows of attn_q_b (or attn_q): (H*N, QL), (H*R, QL) */
  qiao__weight kv_a_latent;             /* rows [0, L) of attn_kv_a_mqa: (L, dim) */
  qiao__weight kv_a_rope;               /* rows [L, L+R) of it: (R, dim) */
  qiao__weight kv_a_norm;               /* (L) */
  qiao__weight uk_t;                    /* W_UK^T per head: (H, L, N), F32 or F16 */
  qiao__weight uv;                      /* W_UV per head: (H, V, L) */
  qiao__weight exp_bias;                /* DeepSeekMoE selection bias: (n_experts) F32, optional */
  qiao__weight gate_sh, up_sh, down_sh; /* shared experts: (S, dim), (S, dim), (dim, S) */
} qiao__layer;

typedef struct qiao__seq {
  bool live;
  uint32_t length;   /* positions held */
  uint32_t n_blocks; /* blocks held (each reference counted), in order */
  int32_t *blocks;   /* (max_blocks_per_seq) */
  /* Prefix cache only (see "Block states" in engine.c): */
  int32_t *tokens;  /* (max_context) the token id written at each position */
  uint32_t clean;   /* positions [0, clean) hold the KV of tokens[0, clean) written in order */
  uint32_t n_keyed; /* blocks[0, n_keyed) are in the prefix table (so immutable) */
} qiao__seq;

/* One block of the paged KV cache. A block is free (on the free stack),
 * used (refs > 0), or cached (refs == 0 but keyed: on the LRU list). */
typedef struct qiao__block {
  uint32_t refs; /* sequences holding it */
  bool keyed;    /* in the prefix table: full, never written again */
  uint64_t key;  /* hash chain of the token prefix ending with this block */
  uint64_t gen;  /* bumped each time the block gets a key */
  /* The keyed block its prefix continues (-1 for a first block), and that
   * block's gen then: a lookup accepts this block only after exactly that
   * block, still holding that key, so a hash collision can never pair it
   * with the wrong prefix. */
  int32_t parent;
  uint64_t parent_gen;
  int32_t lru_prev, lru_next; /* cached blocks, least recently used first; -1 ends */
} qiao__block;

/* How a block's key is made from its parent's and its tokens; tests swap it
 * for a weak one to force collisions. */
typedef uint64_t (*qiao__block_key_fn)(uint64_t parent_key, const int32_t *tokens, uint32_t n);

/* Device scratch: activations for max_batch tokens, allocated once. */
typedef struct qiao__scratch {
  qiao_dev_ref x;                                   /* (T, dim) the residual stream */
  qiao_dev_ref xn;                                  /* (T, dim) normalized input of a sublayer */
  qiao_dev_ref q;                                   /* (T, n_heads*hd) */
  qiao_dev_ref k, v;                                /* (T, kv_dim) */
  qiao_dev_ref att;                                 /* (T, n_heads*hd) attention output */
  qiao_dev_ref gate;                                /* (T, ffn) dense or (T, k_used, eff) MoE */
  qiao_dev_ref up;                                  /* same */
  qiao_dev_ref moe_logits;                          /* (T, n_experts) */
  qiao_dev_ref moe_ids;                             /* (T, k_used) I32 */
  qiao_dev_ref moe_weights;                         /* (T, k_used) */
  qiao_dev_ref moe_out;                             /* (T, k_used, dim) */
  qiao_dev_ref tokens, positions, slots, token_seq; /* (T) I32 each */
  qiao_dev_ref block_table;                         /* (max_seqs, max_blocks_per_seq) I32 */
  qiao_dev_ref rows_x;                              /* (R, dim) the rows whose logits are wanted */
  qiao_dev_ref logits;                              /* (R, vocab) */
  qiao_dev_ref argmax;                              /* (R) I32 */
  /* Multi-head latent attention only (4 bytes each otherwise): */
  qiao_dev_ref q_low;    /* (T, q_lora) */
  qiao_dev_ref q_rope;   /* (T, H, R) */
  qiao_dev_ref latent;   /* (T, L) */
  qiao_dev_ref k_rope;   /* (T, R) */
  qiao_dev_ref q_lat;    /* (T, H, L) */
  qiao_dev_ref o_lat;    /* (T, H, L) */
  qiao_dev_ref head_ids; /* (T, H) I32: 0..H-1 in every row, uploaded once */
} qiao__scratch;

/* The buffers of qiao__scratch, in its order. */
#define QIAO__N_SCRATCH 27

/* A device buffer the engine owns, with what the fallback device needs. */
typedef struct qiao__buffer_rec {
  qiao_dev_buffer *buffer;
  const void *host; /* host bytes a weight was made from (outlive the engine), or NULL */
  uint64_t size;
  qiao_dev_buffer *mirror; /* on the fallback device, made on first use */
  void *mirror_host;       /* host memory behind a non-weight mirror */
} qiao__buffer_rec;

/* One device of the engine and the consecutive layers it runs. Without a
 * split the engine has one stage that holds every layer (and the
 * embedding and output). */
typedef struct qiao__stage {
  qiao_engine *engine;
  qiao_backend *backend; /* owned unless an earlier stage has the same backend */
  bool owns_backend;
  bool external;         /* "external": its layers run through options.external; nothing here */
  const char *requested; /* the backend as the options named it (during creation only) */
  const qiao_dev_api *api;
  qiao_dev_device *device;
  qiao_dev_queue *queue;
  uint32_t device_index;
  char device_name[128];
  bool host_memory;
  uint64_t max_buffer_bytes;       /* the largest buffer it can make; 0 = not said */
  uint64_t weight_bytes_copied;    /* host memory: weights copied to align them */
  uint32_t first_layer, end_layer; /* layers [first_layer, end_layer) */
  qiao_engine_stage_info info;     /* the placement and its bytes, computed before loading */

  /* Every device buffer of this stage. */
  qiao__buffer_rec *buffers;
  size_t n_buffers, cap_buffers;

  qiao_dev_ref rope_freqs; /* (rope_dim/2) F32 */
  qiao__scratch s;

  /* What forward.c calls: the backend's own table and queue, or (one stage
   * only) the routing table of fallback.c. */
  const qiao_dev_api *ops;
  qiao_dev_queue *ops_queue;
} qiao__stage;

/* The queue handed to forward.c when ops are routed (see fallback.c). */
typedef struct qiao__route_queue {
  qiao_engine *engine;
} qiao__route_queue;

struct qiao_engine {
  const qiao_model *model;
  qiao_hparams hp;
  bool verbose;

  /* The devices, in layer order (see qiao__stage). */
  qiao__stage *stages;
  uint32_t n_stages;
  char *split_text;     /* options.split, cut into the stages' backend names */
  int32_t embed_stage;  /* the stage with the embedding; -1: none (first stage external) */
  int32_t output_stage; /* the stage with the output norm and matmul; -1: none */
  qiao_engine_external_fn external; /* runs the external stages */
  void *external_user;
  char backend_label[256]; /* "cpu", or "cpu+opencl" for a split */
  char device_label[512];  /* the device's name, or the stages' joined by " + " */
  float *h_x; /* (max_batch, dim) host staging of x between stages; NULL with one stage */

  /* Every host allocation the engine owns. */
  void **host_blocks;
  size_t n_host_blocks, cap_host_blocks;

  /* Weights. */
  qiao__weight token_embd, output_norm, output;
  qiao__layer *layers;
  uint64_t weight_bytes_per_token;

  /* Paged KV cache. */
  qiao_dev_dtype cache_dtype;
  uint32_t block_size, n_blocks, max_blocks_per_seq, max_context, max_seqs, max_batch;
  uint64_t kv_dim, n_slots; /* kv_dim: values per slot of one cache (L + R for MLA) */
  bool mla;                 /* multi-head latent attention: one cache per layer, no V */
  int32_t *free_blocks;     /* a stack of free block ids */
  uint32_t n_free;
  qiao__seq *seqs;
  qiao__block *blocks; /* (n_blocks) */

  /* Prefix cache (options.prefix_cache; see engine.c). */
  bool prefix_cache;
  int32_t *block_tokens;      /* (n_blocks, block_size) the ids a keyed block holds */
  int32_t *table;             /* open addressing, key -> block id, -1 = empty */
  uint64_t table_mask;        /* table size - 1 (a power of two) */
  int32_t lru_head, lru_tail; /* the cached blocks; -1 when none */
  uint32_t n_cached;
  uint64_t hit_tokens, evicted_blocks;
  qiao__block_key_fn block_key;
  uint8_t *cow_mark; /* (max_seqs, max_blocks_per_seq) scratch of forward */
  /* With external stages: the copies on write of this forward call, (from,
   * to) pairs for the external stages to repeat (qiao_engine_pass.copies);
   * room for one per cow_mark. */
  int32_t *ext_copies;
  uint32_t n_ext_copies;
  bool device_lost; /* a backend call returned QIAO_DEV_DEVICE_LOST */

  /* Per-call inputs, staged on the host and uploaded once per pass (to
   * every stage). */
  uint32_t out_rows; /* R: rows of logits computed per output pass */
  int32_t *h_tokens, *h_positions, *h_slots, *h_token_seq, *h_block_table;

  /* --allow-fallback (one stage only): ops the backend lacks run on the
   * built-in CPU backend through the routing table of fallback.c, which
   * stage 0's ops point to. */
  bool allow_fallback;
  /* Opened with QIAO_DEV_OPEN_BATCH_INVARIANT (options.batch_invariant);
   * the CPU fallback device is then opened the same way. */
  bool batch_invariant;
  /* options.exact_matmul: no QIAO_DEV_PRECISION_Q8 on quantized weights. */
  bool exact_matmul;
  qiao_backend *fb_backend; /* NULL until an op needs it */
  const qiao_dev_api *fb_api;
  qiao_dev_device *fb_device;
  qiao_dev_queue *fb_queue;
  uint8_t on_fallback[QIAO_DEV_OP_COUNT][QIAO_DEV_DTYPE_COUNT];
  qiao_dev_api route_api;
  qiao__route_queue route_queue;
  qiao_dev_error *fb_error; /* the fallback backend's last error */
  uint8_t fb_sentinel;      /* its address is the error the routing table returns */
};

/* Turns an error of a stage's backend (or of the fallback backend) into a
 * status naming `what`. */
qiao_status *qiao__engine_status(qiao__stage *stage, qiao_dev_error *error, const char *what);
/* The same, after noting a QIAO_DEV_DEVICE_LOST (engine.c); the status then
 * starts with "DEVICE_LOST: ". Every device call of the engine goes here. */
qiao_status *qiao__engine_dev_status(qiao__stage *stage, qiao_dev_error *error, const char *what);
#define QIAO__DEV(stage, call, what) qiao__engine_dev_status((stage), (call), (what))
#define QIAO__DEV_TRY(stage, call, what) QIAO__TRY(QIAO__DEV(stage, call, what))

/* Placement (placement.c): parses options->split (or makes the one stage
 * of backend/device_index), loads each stage's backend and reads its
 * device's properties, assigns the layers, computes the bytes each stage
 * holds and checks that they fit. Fills e->stages (backends loaded, no
 * device opened). Needs e->hp and the limits (max_batch, n_slots, ...)
 * set. */
qiao_status *qiao__placement_make(qiao_engine *engine, const qiao_engine_options *options);
/* Scratch bytes of one stage; with `sizes` (QIAO__N_SCRATCH entries) also
 * each buffer's, in the order of qiao__scratch. */
uint64_t qiao__scratch_bytes(const qiao_engine *engine, const qiao__stage *stage, uint64_t *sizes);

/* Fallback (fallback.c). Marks (op, dtype) to run on the CPU backend,
 * loading it on first use; fails when it cannot run it either. */
qiao_status *qiao__fallback_add(qiao_engine *engine, qiao_dev_op op, qiao_dev_dtype dtype,
                                const char *needed_by);
/* Installs the routing table when any op was marked. */
void qiao__fallback_install(qiao_engine *engine);
/* Destroys mirrors and closes the fallback backend. */
void qiao__fallback_close(qiao_engine *engine);

/* The layers of this engine's own stages on x (pass->n_tokens, D), given
 * on the host with the pass's metadata (forward.c). */
qiao_status *qiao__forward_hidden(qiao_engine *engine, const qiao_engine_pass *pass, float *x);

/* The forward pass over staged inputs: n_tokens tokens of n_seqs sequences
 * whose ids, positions, slots, sequence indices and block table are in the
 * h_* arrays. For the n_rows tokens listed in rows, writes logits and/or
 * argmax ids (either may be NULL). Synchronizes before returning. */
qiao_status *qiao__forward(qiao_engine *engine, uint32_t n_tokens, uint32_t n_seqs,
                           const uint32_t *rows, uint32_t n_rows, float *out_logits,
                           int32_t *out_argmax);

/* The dtype of W_UK^T, which the engine makes from a latent-attention
 * layer's attn_kv_b of dtype kv_b_dtype (engine.c; placement.c counts it). */
qiao_dev_dtype qiao__uk_t_dtype(qiao_dtype kv_b_dtype);

#endif
