/* qiao/device.h: the qiao device ABI, version 1.5.
 *
 * This header is the whole contract between the qiao runtime and a device
 * backend (a "plugin"). A chip vendor implements it in a shared library named
 * libqiao-<name>.so that exports exactly one symbol:
 *
 *     const qiao_dev_api *qiao_device_get_api(void);
 *
 * The header is self-contained: it includes only the C standard library and
 * no other qiao header. docs/spec/device-abi.md is the normative text; this
 * file is its machine-readable half.
 *
 * Versioning (see the spec for the full rules):
 *   - Every struct that crosses the boundary starts with `size_t struct_size`,
 *     set by whoever allocates it to sizeof() as that side knows it.
 *   - A minor version only appends fields to the end of structs and appends
 *     functions to the end of qiao_dev_api; a reader never touches a field at
 *     or beyond the struct_size it was given.
 *   - Anything else (removing, reordering, changing a meaning) is a new major
 *     version, and the runtime refuses a plugin whose major differs from its own.
 *
 * Error model: every fallible function returns a qiao_dev_error pointer;
 * NULL means success. A non-NULL error is owned by the caller, who reads it
 * with error_code()/error_message() and releases it with error_destroy().
 * Out-parameters are written only on success.
 *
 * Memory and queue model: buffers live in device memory. All data movement
 * and every op is *enqueued* on a queue and may run asynchronously; work on
 * one queue executes in submission order; queue_synchronize() waits for all of
 * it and returns the first error of the asynchronous work. An args struct
 * passed to an op is read during the call only (the backend copies what it
 * needs); host memory passed to upload/download must stay valid until the
 * queue is synchronized.
 *
 * Threading: a backend handle and a device handle may be used from several
 * threads at once; a queue must be used by one thread at a time. */
#ifndef QIAO_DEVICE_H
#define QIAO_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QIAO_DEVICE_ABI_MAJOR 1
#define QIAO_DEVICE_ABI_MINOR 5

/* The name of the one symbol a plugin exports. */
#define QIAO_DEVICE_ENTRY_POINT "qiao_device_get_api"

/* ---- Opaque handles (defined by each backend) ---------------------------- */
typedef struct qiao_dev_backend qiao_dev_backend; /* one opened backend */
typedef struct qiao_dev_device qiao_dev_device;   /* one opened device */
typedef struct qiao_dev_buffer qiao_dev_buffer;   /* device memory */
typedef struct qiao_dev_queue qiao_dev_queue;     /* an in-order work queue */
typedef struct qiao_dev_error qiao_dev_error;     /* an error object */

/* ---- Codes and types ------------------------------------------------------
 * Every enum has a FORCE_32BIT member so that it is 32 bits wide whatever the
 * compiler's enum sizing (e.g. -fshort-enums): enums appear in structs and
 * signatures that cross the boundary. */
typedef enum qiao_dev_code {
  QIAO_DEV_OK = 0,
  QIAO_DEV_INVALID_ARGUMENT = 1, /* bad size, shape, offset, or NULL */
  QIAO_DEV_BAD_HANDLE = 2,       /* a handle this backend did not create */
  QIAO_DEV_OUT_OF_MEMORY = 3,
  QIAO_DEV_UNSUPPORTED = 4, /* op/dtype the device does not claim */
  QIAO_DEV_DEVICE_LOST = 5, /* the device failed; the handle is unusable */
  QIAO_DEV_INTERNAL = 6,
  QIAO_DEV_CODE_FORCE_32BIT = 0x7fffffff
} qiao_dev_code;

/* Element types. Block layouts of Q8_0 and Q4_0 are those of GGUF:
 *   Q8_0: 32 elements per 34-byte block: f16 scale d, then 32 int8 q;
 *         x[i] = d * q[i].
 *   Q4_0: 32 elements per 18-byte block: f16 scale d, then 16 bytes; byte j
 *         holds element j in its low nibble and element j+16 in its high
 *         nibble; x[i] = d * (nibble - 8).
 * All multi-byte values are little-endian. */
typedef enum qiao_dev_dtype {
  QIAO_DEV_F32 = 0,
  QIAO_DEV_F16 = 1,
  QIAO_DEV_BF16 = 2,
  QIAO_DEV_Q8_0 = 3,
  QIAO_DEV_Q4_0 = 4,
  QIAO_DEV_I32 = 5,
  /* (1.3) GGUF's k-quant and older block types, bit-identical to GGUF's
   * Q4_K, Q5_K, Q6_K, Q2_K, Q3_K, Q4_1, Q5_0 and Q5_1 (layouts and
   * dequantization in docs/spec/format.md §4.1). K types: 256 elements per
   * super-block of 144 / 176 / 210 / 84 / 110 bytes; the others: 32 elements
   * per block of 20 / 22 / 24 bytes. A runtime never passes these to a
   * plugin whose abi_minor is below 3. */
  QIAO_DEV_Q4_K = 6,
  QIAO_DEV_Q5_K = 7,
  QIAO_DEV_Q6_K = 8,
  QIAO_DEV_Q2_K = 9,
  QIAO_DEV_Q3_K = 10,
  QIAO_DEV_Q4_1 = 11,
  QIAO_DEV_Q5_0 = 12,
  QIAO_DEV_Q5_1 = 13,
  /* (1.4) Block-scaled FP8 (DeepSeek-V3 / Qwen3-FP8 checkpoints): 128
   * elements per 132-byte block: an F32 scale d, then 128 bytes, each an
   * E4M3 value (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no
   * infinities; 0x7F and 0xFF are NaN and never stored); x[i] = d * e4m3(q[i])
   * (docs/spec/format.md §4.1). A runtime never passes it to a plugin whose
   * abi_minor is below 4. */
  QIAO_DEV_F8_E4M3_B128 = 14,
  /* (1.5) GGUF's non-linear 4-bit types, bit-identical to GGUF's IQ4_NL and
   * IQ4_XS: each nibble indexes the 16 levels -127, -104, -83, -65, -49,
   * -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113. IQ4_NL: 32 elements per
   * 18-byte block (f16 d, 16 bytes of nibbles as Q4_0's), x = d * level;
   * IQ4_XS: 256 elements per 136-byte super-block with eight 6-bit
   * sub-block scales, x = (d * (ls - 32)) * level (docs/spec/format.md
   * §4.1). A runtime never passes these to a plugin whose abi_minor is
   * below 5. */
  QIAO_DEV_IQ4_NL = 15,
  QIAO_DEV_IQ4_XS = 16,
  /* The number of dtypes of the version this header describes; grows with
   * minor versions (6 in 1.0-1.2, 14 in 1.3, 15 in 1.4, 17 in 1.5). */
  QIAO_DEV_DTYPE_COUNT = 17,
  QIAO_DEV_DTYPE_FORCE_32BIT = 0x7fffffff
} qiao_dev_dtype;

/* The op set. Each op's math is defined in docs/spec/device-abi.md. */
typedef enum qiao_dev_op {
  QIAO_DEV_OP_EMBED = 0,           /* dtype: the table's dtype */
  QIAO_DEV_OP_MATMUL = 1,          /* dtype: the weight's dtype */
  QIAO_DEV_OP_RMSNORM = 2,         /* dtype: F32 */
  QIAO_DEV_OP_ROPE = 3,            /* dtype: F32 */
  QIAO_DEV_OP_KV_WRITE = 4,        /* dtype: the cache's dtype */
  QIAO_DEV_OP_ATTENTION = 5,       /* dtype: the cache's dtype */
  QIAO_DEV_OP_SWIGLU = 6,          /* dtype: F32 */
  QIAO_DEV_OP_ADD = 7,             /* dtype: F32 */
  QIAO_DEV_OP_ARGMAX = 8,          /* dtype: F32 */
  QIAO_DEV_OP_MOE_GATE = 9,        /* dtype: F32 */
  QIAO_DEV_OP_MATMUL_EXPERTS = 10, /* dtype: the expert weights' dtype */
  QIAO_DEV_OP_MOE_COMBINE = 11,    /* dtype: F32 */
  /* (1.4) Multi-head latent attention and DeepSeekMoE routing. A runtime
   * never asks a plugin whose abi_minor is below 4 about these. */
  QIAO_DEV_OP_LATENT_WRITE = 12,     /* dtype: the cache's dtype */
  QIAO_DEV_OP_ATTENTION_LATENT = 13, /* dtype: the cache's dtype */
  QIAO_DEV_OP_MOE_ROUTE = 14,        /* dtype: F32 */
  /* The number of ops of the version this header describes (12 in 1.0-1.3,
   * 15 in 1.4). */
  QIAO_DEV_OP_COUNT = 15,
  QIAO_DEV_OP_FORCE_32BIT = 0x7fffffff
} qiao_dev_op;

/* A place in device memory: a buffer and a byte offset into it. An optional
 * operand is given as {NULL, 0}. Op operands must be element-aligned: offsets
 * of F32 and I32 operands are multiples of 4, of F16, BF16, Q8_0 and Q4_0
 * operands multiples of 2 (a backend may accept more); upload, download and
 * copy are byte-granular. */
typedef struct qiao_dev_ref {
  qiao_dev_buffer *buffer;
  uint64_t offset;
} qiao_dev_ref;

/* ---- Backend and device descriptions ------------------------------------- */

/* Passed to backend_open. */
typedef struct qiao_dev_backend_options {
  size_t struct_size;
  uint32_t runtime_abi_major; /* the runtime's QIAO_DEVICE_ABI_MAJOR */
  uint32_t runtime_abi_minor;
} qiao_dev_backend_options;

/* Device flags. HOST_MEMORY: device memory is host memory, and
 * buffer_wrap_host is available. */
#define QIAO_DEV_FLAG_HOST_MEMORY 1u
/* (1.1) BATCH_INVARIANT: the device can be opened in batch-invariant mode
 * (QIAO_DEV_OPEN_BATCH_INVARIANT): every output row of every op is then
 * bit-for-bit a function of that row's own inputs only (see the spec, §10.4). */
#define QIAO_DEV_FLAG_BATCH_INVARIANT 2u
/* (1.2) Q8_ACTIVATIONS: given x_precision = QIAO_DEV_PRECISION_Q8, the
 * device's matmul quantizes activations to int8 for some weight dtypes
 * (spec §11.4); informational: the precision is a permission either way. */
#define QIAO_DEV_FLAG_Q8_ACTIVATIONS 4u

/* Filled by device_get_properties: the caller sets struct_size; the backend
 * writes only the fields that fit in it. */
typedef struct qiao_dev_properties {
  size_t struct_size;
  char name[128];          /* e.g. "NVIDIA H100 80GB HBM3" */
  char vendor[64];         /* e.g. "NVIDIA" */
  char driver_version[64]; /* free-form */
  uint64_t memory_bytes;   /* total device memory */
  uint64_t max_buffer_bytes;
  uint32_t compute_units;
  uint32_t flags; /* QIAO_DEV_FLAG_* */
} qiao_dev_properties;

/* Passed to device_open; NULL means all defaults. */
typedef struct qiao_dev_device_options {
  size_t struct_size;
  uint32_t n_threads; /* host threads a backend may use; 0 = its default */
  /* (1.1) QIAO_DEV_OPEN_* modes requested. These 4 bytes were tail padding in
   * 1.0 (sizeof is 16 in both), so a backend reads them only when the
   * runtime that opened it said runtime_abi_minor >= 1; a requested flag the
   * backend does not implement fails device_open with UNSUPPORTED. */
  uint32_t flags;
} qiao_dev_device_options;

/* (1.1) Open in batch-invariant mode; only for a device whose properties
 * have QIAO_DEV_FLAG_BATCH_INVARIANT. */
#define QIAO_DEV_OPEN_BATCH_INVARIANT 1u

/* ---- Op arguments ----------------------------------------------------------
 * Shapes are row-major, outermost dimension first, and written in the
 * trailing comments. Activations are F32 unless stated. Unless an op says
 * otherwise, `out` may not overlap any input. */

/* out[t, :] = dequantize(table[ids[t], :]) */
typedef struct qiao_dev_embed_args {
  size_t struct_size;
  uint64_t n_tokens, vocab, dim;
  qiao_dev_dtype table_dtype;
  qiao_dev_ref table; /* (vocab, dim), table_dtype */
  qiao_dev_ref ids;   /* (n_tokens) I32, each in [0, vocab) */
  qiao_dev_ref out;   /* (n_tokens, dim) */
} qiao_dev_embed_args;

/* (1.2) Activation precisions of matmul (x_precision).
 * EXACT: the products use the F32 activations as given (the 1.0 behaviour,
 * budgets of spec §11.2). Q8: the backend MAY instead quantize each row of x
 * in blocks of 32 elements along k to int8 with one scale per block, exactly
 * as spec §11.4 defines, and compute on those (its own budget, §11.4); a
 * backend that does not is still right to compute exactly. A permission, not
 * a demand: 1.0 and 1.1 backends never read the field. */
#define QIAO_DEV_PRECISION_EXACT 0u
#define QIAO_DEV_PRECISION_Q8 1u

/* out[i, j] = (accumulate ? out[i, j] : 0) + bias[j] + sum_k x[i, k] * w[j, k]
 * The weight is read in its stored dtype; quantized blocks are computed on
 * directly. k must be a multiple of 32 for Q8_0/Q4_0. */
typedef struct qiao_dev_matmul_args {
  size_t struct_size;
  uint64_t n, k, m;
  qiao_dev_ref x; /* (n, k) */
  qiao_dev_dtype w_dtype;
  qiao_dev_ref w;    /* (m, k), w_dtype */
  qiao_dev_ref bias; /* (m) F32, optional */
  qiao_dev_ref out;  /* (n, m) */
  uint32_t accumulate;
  /* (1.2) QIAO_DEV_PRECISION_*. These 4 bytes were tail padding in 1.0
   * (sizeof is 112 in every version), so a backend reads them only when the
   * runtime that opened it said runtime_abi_minor >= 2, and as EXACT
   * otherwise (as qiao_dev_device_options.flags, spec §3). */
  uint32_t x_precision;
} qiao_dev_matmul_args;

/* out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:]
 * out may equal x (in place). */
typedef struct qiao_dev_rmsnorm_args {
  size_t struct_size;
  uint64_t rows, cols;
  float eps;
  qiao_dev_ref x;      /* (rows, cols) */
  qiao_dev_ref weight; /* (cols) */
  qiao_dev_ref out;    /* (rows, cols) */
} qiao_dev_rmsnorm_args;

typedef enum qiao_dev_rope_style {
  QIAO_DEV_ROPE_NORMAL = 0, /* rotate pairs (2i, 2i+1) */
  QIAO_DEV_ROPE_NEOX = 1,   /* rotate pairs (i, i + rot_dim/2) */
  QIAO_DEV_ROPE_STYLE_FORCE_32BIT = 0x7fffffff
} qiao_dev_rope_style;

/* In place: for each token t, head h and i < rot_dim/2, with
 * a = positions[t] * freqs[i], rotates the pair (x0, x1) of x[t, h, :]
 * to (x0 cos a - x1 sin a, x0 sin a + x1 cos a). Dimensions at and beyond
 * rot_dim are unchanged. Frequency scaling (linear, llama3, ...) is applied by
 * the caller when it computes freqs. */
typedef struct qiao_dev_rope_args {
  size_t struct_size;
  uint64_t n_tokens, n_heads, head_dim, rot_dim; /* rot_dim even, <= head_dim */
  qiao_dev_rope_style style;
  qiao_dev_ref x;         /* (n_tokens, n_heads, head_dim), in place */
  qiao_dev_ref positions; /* (n_tokens) I32 */
  qiao_dev_ref freqs;     /* (rot_dim / 2) F32 */
} qiao_dev_rope_args;

/* The paged KV cache: a cache is an array of slots, each holding one token's
 * keys (or values) for all KV heads: (n_slots, kv_dim) in the cache's dtype
 * (F32 or F16), with kv_dim = n_kv_heads * head_dim. Slots are grouped into
 * blocks of block_size consecutive slots; block b holds slots
 * [b * block_size, (b + 1) * block_size).
 *
 * KV_WRITE: k_cache[slots[t], :] = k[t, :]; v_cache[slots[t], :] = v[t, :] */
typedef struct qiao_dev_kv_write_args {
  size_t struct_size;
  uint64_t n_tokens, kv_dim, n_slots;
  qiao_dev_dtype cache_dtype;
  qiao_dev_ref k, v;    /* (n_tokens, kv_dim) F32 */
  qiao_dev_ref slots;   /* (n_tokens) I32, each in [0, n_slots) */
  qiao_dev_ref k_cache; /* (n_slots, kv_dim) cache_dtype */
  qiao_dev_ref v_cache; /* (n_slots, kv_dim) cache_dtype */
} qiao_dev_kv_write_args;

/* Causal grouped-query attention over the paged cache, several sequences in
 * one call. Token t belongs to sequence s = token_seq[t] and sits at position
 * p = token_pos[t]; it attends to that sequence's positions j in
 * [max(0, p - window + 1) if window > 0 else 0, p], whose keys/values are at
 * slot block_table[s, j / block_size] * block_size + j % block_size.
 * Query head h reads KV head h / (n_heads / n_kv_heads).
 *   out[t, h, :] = sum_j softmax_j(scale * q[t, h, :] . K[j, kvh, :]) V[j, kvh, :]
 * Softmax is computed in F32 with the maximum subtracted. */
typedef struct qiao_dev_attention_args {
  size_t struct_size;
  uint64_t n_tokens, n_heads, n_kv_heads, head_dim;
  uint64_t n_seqs, max_blocks_per_seq, block_size, n_slots;
  uint64_t window; /* sliding window in tokens; 0 = unlimited */
  float scale;
  qiao_dev_dtype cache_dtype;
  qiao_dev_ref q;           /* (n_tokens, n_heads, head_dim) */
  qiao_dev_ref k_cache;     /* (n_slots, n_kv_heads * head_dim) */
  qiao_dev_ref v_cache;     /* (n_slots, n_kv_heads * head_dim) */
  qiao_dev_ref block_table; /* (n_seqs, max_blocks_per_seq) I32 */
  qiao_dev_ref token_seq;   /* (n_tokens) I32 */
  qiao_dev_ref token_pos;   /* (n_tokens) I32 */
  qiao_dev_ref out;         /* (n_tokens, n_heads * head_dim) */
} qiao_dev_attention_args;

/* out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)). */
typedef struct qiao_dev_swiglu_args {
  size_t struct_size;
  uint64_t n;                 /* elements */
  qiao_dev_ref gate, up, out; /* (n) each; out may equal gate or up */
} qiao_dev_swiglu_args;

/* out[i] = a[i] + b[i]; out may equal a or b. */
typedef struct qiao_dev_add_args {
  size_t struct_size;
  uint64_t n;
  qiao_dev_ref a, b, out;
} qiao_dev_add_args;

/* out[r] = the smallest index of the largest value of x[r, :]. */
typedef struct qiao_dev_argmax_args {
  size_t struct_size;
  uint64_t rows, cols;
  qiao_dev_ref x;   /* (rows, cols) */
  qiao_dev_ref out; /* (rows) I32 */
} qiao_dev_argmax_args;

/* Mixture-of-experts routing: p = softmax(logits[t, :]); ids[t, :] are the k
 * experts of largest p (ties: smaller index first, in descending order of p),
 * weights[t, i] = p[ids[t, i]], divided by their sum when normalize != 0. */
typedef struct qiao_dev_moe_gate_args {
  size_t struct_size;
  uint64_t n_tokens, n_experts, k;
  uint32_t normalize;
  qiao_dev_ref logits;  /* (n_tokens, n_experts) */
  qiao_dev_ref ids;     /* (n_tokens, k) I32 out */
  qiao_dev_ref weights; /* (n_tokens, k) F32 out */
} qiao_dev_moe_gate_args;

/* out[t, i, :] = w[ids[t, i]] @ x_row, where x_row = x[t, :] when
 * x_per_slot == 0 and x[t * k + i, :] otherwise. */
typedef struct qiao_dev_matmul_experts_args {
  size_t struct_size;
  uint64_t n_tokens, k, n_experts, in_dim, out_dim;
  uint32_t x_per_slot;
  /* (1.5) QIAO_DEV_PRECISION_*, as qiao_dev_matmul_args.x_precision (spec
   * §15.1). These 4 bytes were padding in 1.0-1.4 (sizeof is 128 in every
   * version), so a backend reads them only when the runtime that opened it
   * said runtime_abi_minor >= 5, and as EXACT otherwise. */
  uint32_t x_precision;
  qiao_dev_ref x; /* (n_tokens, in_dim) or (n_tokens * k, in_dim) */
  qiao_dev_dtype w_dtype;
  qiao_dev_ref w;   /* (n_experts, out_dim, in_dim) w_dtype */
  qiao_dev_ref ids; /* (n_tokens, k) I32, each in [0, n_experts) */
  qiao_dev_ref out; /* (n_tokens, k, out_dim) */
} qiao_dev_matmul_experts_args;

/* out[t, :] = (accumulate ? out[t, :] : 0) + sum_i weights[t, i] * x[t, i, :] */
typedef struct qiao_dev_moe_combine_args {
  size_t struct_size;
  uint64_t n_tokens, k, dim;
  uint32_t accumulate;
  qiao_dev_ref x;       /* (n_tokens, k, dim) */
  qiao_dev_ref weights; /* (n_tokens, k) */
  qiao_dev_ref out;     /* (n_tokens, dim) */
} qiao_dev_moe_combine_args;

/* (1.4) The latent KV cache of multi-head latent attention (DeepSeek-V2/V3):
 * one cache per layer whose slot holds one token's compressed latent
 * (latent_dim values) followed by its rotary key (rope_dim values), shared by
 * every head: (n_slots, latent_dim + rope_dim) in cache_dtype (F32 or F16),
 * paged in blocks as described at qiao_dev_kv_write_args.
 *   cache[slots[t], 0 : latent_dim] = latent[t, :]
 *   cache[slots[t], latent_dim : latent_dim + rope_dim] = rope[t, :] */
typedef struct qiao_dev_latent_write_args {
  size_t struct_size;
  uint64_t n_tokens, latent_dim, rope_dim, n_slots;
  qiao_dev_dtype cache_dtype;
  qiao_dev_ref latent; /* (n_tokens, latent_dim) F32 */
  qiao_dev_ref rope;   /* (n_tokens, rope_dim) F32 */
  qiao_dev_ref slots;  /* (n_tokens) I32, each in [0, n_slots) */
  qiao_dev_ref cache;  /* (n_slots, latent_dim + rope_dim) cache_dtype */
} qiao_dev_latent_write_args;

/* (1.4) Causal attention over a latent cache, several sequences in one call.
 * The caller has folded the key up-projection into q_latent and applies the
 * value up-projection to out, so every head reads the one latent stored per
 * position. Token t's sequence, position and visible positions j (window
 * included) and their slots are those of qiao_dev_attention_args; with
 * C[j] the cache row of position j:
 *   s_j = scale * (q_latent[t, h, :] . C[j, 0 : latent_dim]
 *                  + q_rope[t, h, :] . C[j, latent_dim : latent_dim + rope_dim])
 *   out[t, h, :] = sum_j softmax_j(s) C[j, 0 : latent_dim]
 * Softmax is computed in F32 with the maximum subtracted. */
typedef struct qiao_dev_attention_latent_args {
  size_t struct_size;
  uint64_t n_tokens, n_heads, latent_dim, rope_dim;
  uint64_t n_seqs, max_blocks_per_seq, block_size, n_slots;
  uint64_t window; /* sliding window in tokens; 0 = unlimited */
  float scale;
  qiao_dev_dtype cache_dtype;
  qiao_dev_ref q_latent;    /* (n_tokens, n_heads, latent_dim) */
  qiao_dev_ref q_rope;      /* (n_tokens, n_heads, rope_dim) */
  qiao_dev_ref cache;       /* (n_slots, latent_dim + rope_dim) cache_dtype */
  qiao_dev_ref block_table; /* (n_seqs, max_blocks_per_seq) I32 */
  qiao_dev_ref token_seq;   /* (n_tokens) I32 */
  qiao_dev_ref token_pos;   /* (n_tokens) I32 */
  qiao_dev_ref out;         /* (n_tokens, n_heads, latent_dim) */
} qiao_dev_attention_latent_args;

/* (1.4) Score functions and group scores of moe_route. */
#define QIAO_DEV_MOE_SCORE_SOFTMAX 0u  /* p = softmax(logits[t, :]) */
#define QIAO_DEV_MOE_SCORE_SIGMOID 1u  /* p[e] = 1 / (1 + exp(-logits[t, e])) */
#define QIAO_DEV_MOE_GROUP_MAX 0u      /* a group's score: its largest c (DeepSeek-V2) */
#define QIAO_DEV_MOE_GROUP_TOP2_SUM 1u /* the sum of its two largest c (DeepSeek-V3) */

/* (1.4) Mixture-of-experts routing with a score function, a selection bias
 * and group-limited selection (DeepSeek-V2/V3). For each token t:
 *   p[e] = the score of expert e (scoring: QIAO_DEV_MOE_SCORE_*)
 *   c[e] = p[e] + bias[e] (bias only chooses; c = p when bias is absent)
 *   when n_groups > 1: the experts form n_groups groups of n_experts/n_groups
 *     consecutive experts; the topk_groups groups of largest group score
 *     (group_score: QIAO_DEV_MOE_GROUP_*; ties: smaller group index) are
 *     kept, and c[e] = 0 for every expert of the other groups
 *   ids[t, :] = the k experts of largest c (ties: smaller index first), in
 *     descending order of c
 *   weights[t, i] = p[ids[t, i]]; when normalize != 0 divided by
 *     (sum_i p[ids[t, i]] + 1e-20); then multiplied by scale. */
typedef struct qiao_dev_moe_route_args {
  size_t struct_size;
  uint64_t n_tokens, n_experts, k;
  uint32_t scoring;     /* QIAO_DEV_MOE_SCORE_* */
  uint32_t normalize;   /* 0 or 1 */
  uint32_t n_groups;    /* 0 or 1: no group limit; else divides n_experts */
  uint32_t topk_groups; /* groups kept, in [1, n_groups], when n_groups > 1 */
  uint32_t group_score; /* QIAO_DEV_MOE_GROUP_*; TOP2_SUM needs 2+ experts per group */
  float scale;          /* the routed scaling factor; 1 for none */
  qiao_dev_ref logits;  /* (n_tokens, n_experts) */
  qiao_dev_ref bias;    /* (n_experts) F32, optional */
  qiao_dev_ref ids;     /* (n_tokens, k) I32 out */
  qiao_dev_ref weights; /* (n_tokens, k) F32 out */
} qiao_dev_moe_route_args;

/* ---- The function table ----------------------------------------------------
 * Returned by qiao_device_get_api(); static for the life of the process.
 * Every function pointer of version 1.0 must be non-NULL except
 * buffer_wrap_host, which a backend without QIAO_DEV_FLAG_HOST_MEMORY leaves
 * NULL. A runtime treats a table with a NULL required entry as malformed. */
typedef struct qiao_dev_api {
  size_t struct_size; /* sizeof(qiao_dev_api) as the plugin was built */
  uint32_t abi_major; /* QIAO_DEVICE_ABI_MAJOR the plugin was built with */
  uint32_t abi_minor;
  const char *name;    /* short backend name, e.g. "cpu", "opencl" */
  const char *version; /* the backend's own version string */

  /* Errors. error_message's result lives until error_destroy. */
  qiao_dev_code (*error_code)(const qiao_dev_error *error);
  const char *(*error_message)(const qiao_dev_error *error);
  void (*error_destroy)(qiao_dev_error *error); /* accepts NULL */

  /* Backend lifetime. backend_close accepts NULL and must be called after
   * every device it opened is closed. */
  qiao_dev_error *(*backend_open)(const qiao_dev_backend_options *options,
                                  qiao_dev_backend **out_backend);
  void (*backend_close)(qiao_dev_backend *backend);

  /* Devices. */
  qiao_dev_error *(*device_count)(qiao_dev_backend *backend, uint32_t *out_count);
  qiao_dev_error *(*device_get_properties)(qiao_dev_backend *backend, uint32_t index,
                                           qiao_dev_properties *properties);
  qiao_dev_error *(*device_open)(qiao_dev_backend *backend, uint32_t index,
                                 const qiao_dev_device_options *options,
                                 qiao_dev_device **out_device);
  void (*device_close)(qiao_dev_device *device); /* accepts NULL */

  /* Capabilities: *out_supported = 1 when the device implements `op` for
   * `dtype` (see qiao_dev_op for which dtype each op is keyed by), else 0. */
  qiao_dev_error *(*op_supported)(qiao_dev_device *device, qiao_dev_op op, qiao_dev_dtype dtype,
                                  uint32_t *out_supported);

  /* Memory. buffer_destroy accepts NULL; buffers must be destroyed before
   * their device is closed, and not while queued work still uses them. */
  qiao_dev_error *(*buffer_create)(qiao_dev_device *device, uint64_t size,
                                   qiao_dev_buffer **out_buffer);
  void (*buffer_destroy)(qiao_dev_buffer *buffer);
  /* Optional (QIAO_DEV_FLAG_HOST_MEMORY): a READ-ONLY buffer over
   * caller-owned host memory that stays valid, unchanged, until the buffer is
   * destroyed. Used to run on memory-mapped weights without a copy; an op,
   * upload or copy that would write into it fails with INVALID_ARGUMENT. */
  qiao_dev_error *(*buffer_wrap_host)(qiao_dev_device *device, const void *host, uint64_t size,
                                      qiao_dev_buffer **out_buffer);

  /* Queues. queue_destroy accepts NULL and waits for queued work. */
  qiao_dev_error *(*queue_create)(qiao_dev_device *device, qiao_dev_queue **out_queue);
  void (*queue_destroy)(qiao_dev_queue *queue);
  qiao_dev_error *(*queue_synchronize)(qiao_dev_queue *queue);

  /* Data movement, enqueued. */
  qiao_dev_error *(*upload)(qiao_dev_queue *queue, qiao_dev_ref dst, const void *src,
                            uint64_t size);
  qiao_dev_error *(*download)(qiao_dev_queue *queue, void *dst, qiao_dev_ref src, uint64_t size);
  qiao_dev_error *(*copy)(qiao_dev_queue *queue, qiao_dev_ref dst, qiao_dev_ref src, uint64_t size);

  /* Ops, enqueued. */
  qiao_dev_error *(*embed)(qiao_dev_queue *queue, const qiao_dev_embed_args *args);
  qiao_dev_error *(*matmul)(qiao_dev_queue *queue, const qiao_dev_matmul_args *args);
  qiao_dev_error *(*rmsnorm)(qiao_dev_queue *queue, const qiao_dev_rmsnorm_args *args);
  qiao_dev_error *(*rope)(qiao_dev_queue *queue, const qiao_dev_rope_args *args);
  qiao_dev_error *(*kv_write)(qiao_dev_queue *queue, const qiao_dev_kv_write_args *args);
  qiao_dev_error *(*attention)(qiao_dev_queue *queue, const qiao_dev_attention_args *args);
  qiao_dev_error *(*swiglu)(qiao_dev_queue *queue, const qiao_dev_swiglu_args *args);
  qiao_dev_error *(*add)(qiao_dev_queue *queue, const qiao_dev_add_args *args);
  qiao_dev_error *(*argmax)(qiao_dev_queue *queue, const qiao_dev_argmax_args *args);
  qiao_dev_error *(*moe_gate)(qiao_dev_queue *queue, const qiao_dev_moe_gate_args *args);
  qiao_dev_error *(*matmul_experts)(qiao_dev_queue *queue,
                                    const qiao_dev_matmul_experts_args *args);
  qiao_dev_error *(*moe_combine)(qiao_dev_queue *queue, const qiao_dev_moe_combine_args *args);

  /* (1.4) Appended. A runtime calls them only on a plugin whose abi_minor is
   * 4 or more and whose struct_size covers them; such a plugin may leave
   * one NULL when op_supported never claims its op. */
  qiao_dev_error *(*latent_write)(qiao_dev_queue *queue, const qiao_dev_latent_write_args *args);
  qiao_dev_error *(*attention_latent)(qiao_dev_queue *queue,
                                      const qiao_dev_attention_latent_args *args);
  qiao_dev_error *(*moe_route)(qiao_dev_queue *queue, const qiao_dev_moe_route_args *args);
} qiao_dev_api;

/* The entry point's type. */
typedef const qiao_dev_api *(*qiao_device_get_api_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
