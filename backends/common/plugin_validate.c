/* plugin_validate.c: the host-side argument checks of every GPU plugin (see
 * plugin_validate.h). The order of the checks is part of the contract: the
 * first failing one names the error, identically on every backend. */
#include "plugin_validate.h"
#include "plugin_validate_1_4.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define TRY PLUGIN_TRY

/* ---- sizes */

/* *out = a * b * c, false on overflow. */
static bool prod(uint64_t *out, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t ab;
  return !__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, out);
}

static qiao_dev_error *too_big(const plugin_rules *r, const char *op, const char *what) {
  return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "%s: %s: the size of %s overflows", r->name, op,
                       what);
}

#define INVALID(...) plugin__error(QIAO_DEV_INVALID_ARGUMENT, __VA_ARGS__)

/* Bytes of one row of `cols` weights in `dtype`, with the alignment of its
 * operand (quantized blocks start with an f16 scale). */
static qiao_dev_error *weight_row(const plugin_rules *r, const char *op, qiao_dev_dtype dtype,
                                  uint64_t cols, uint64_t *out_bytes, uint64_t *out_align) {
  uint64_t per = 0, div = 1;
  switch (dtype) {
  case QIAO_DEV_F32: per = 4, *out_align = 4; break;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: per = 2, *out_align = 2; break;
  case QIAO_DEV_Q8_0: per = 34, div = 32, *out_align = 2; break;
  case QIAO_DEV_Q4_0: per = 18, div = 32, *out_align = 2; break;
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K:
  case QIAO_DEV_Q6_K:
  case QIAO_DEV_Q2_K:
  case QIAO_DEV_Q3_K:
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_0:
  case QIAO_DEV_Q5_1: {
    static const uint8_t bytes[] = {144, 176, 210, 84, 110, 20, 22, 24};
    if (!r->block_types_1_3) goto unsupported;
    per = bytes[dtype - QIAO_DEV_Q4_K], div = dtype <= QIAO_DEV_Q3_K ? 256 : 32, *out_align = 2;
    break;
  }
  case QIAO_DEV_F8_E4M3_B128: /* (1.4) an f32 scale and 128 codes: aligned to 4 (§9) */
    if (!r->f8_1_4) goto unsupported;
    per = 132, div = 128, *out_align = 4;
    break;
  case QIAO_DEV_IQ4_NL: /* (1.5) an f16 scale first: aligned to 2 */
  case QIAO_DEV_IQ4_XS:
    if (!r->iq4_1_5) goto unsupported;
    per = dtype == QIAO_DEV_IQ4_NL ? 18 : 136, div = dtype == QIAO_DEV_IQ4_NL ? 32 : 256;
    *out_align = 2;
    break;
  unsupported:
  default:
    return plugin__error(QIAO_DEV_UNSUPPORTED, "%s: %s: weight dtype %d is not supported", r->name,
                         op, (int)dtype);
  }
  if (cols % div != 0)
    return INVALID("%s: %s: row length %llu is not a multiple of the block size %llu", r->name, op,
                   (unsigned long long)cols, (unsigned long long)div);
  if (!prod(out_bytes, cols / div, per, 1)) return too_big(r, op, "a weight row");
  return NULL;
}

/* A KV cache dtype's element size. */
static qiao_dev_error *cache_elem(const plugin_rules *r, const char *op, qiao_dev_dtype dtype,
                                  uint64_t *out) {
  if (dtype == QIAO_DEV_F32)
    *out = 4;
  else if (dtype == QIAO_DEV_F16)
    *out = 2;
  else
    return plugin__error(QIAO_DEV_UNSUPPORTED, "%s: %s: cache dtype %d is not supported", r->name,
                         op, (int)dtype);
  return NULL;
}

/* Whether byte ranges [a, a+na) and [b, b+nb) of the same buffer intersect. */
static bool overlap(qiao_dev_ref a, uint64_t na, qiao_dev_ref b, uint64_t nb) {
  return a.buffer == b.buffer && na > 0 && nb > 0 && a.offset < b.offset + nb &&
         b.offset < a.offset + na;
}

static bool same(qiao_dev_ref a, qiao_dev_ref b) {
  return a.buffer == b.buffer && a.offset == b.offset;
}

static qiao_dev_error *overlap_error(const plugin_rules *r, const char *op, const char *a,
                                     const char *b) {
  return INVALID("%s: %s: %s overlaps %s", r->name, op, a, b);
}

/* Validates one operand; the message says "<op>: <name>". */
static qiao_dev_error *check(const plugin_rules *r, const qiao_dev_queue *q, const char *op,
                             const char *name, qiao_dev_ref ref, uint64_t bytes, uint64_t align) {
  char what[96];
  snprintf(what, sizeof(what), "%s: %s", op, name);
  return plugin__check_ref(r, q, what, ref, bytes, align);
}

/* Common prologue: a live queue and an args struct at least as large as ABI 1.0's. */
static qiao_dev_error *check_call(const plugin_rules *r, const qiao_dev_queue *q, const char *op,
                                  const void *args, size_t struct_size, size_t ours) {
  TRY(plugin__check_queue(r, q));
  if (args == NULL) return INVALID("%s: %s: args is NULL", r->name, op);
  if (struct_size < ours)
    return INVALID("%s: %s: args struct_size %zu is smaller than ABI 1.0's %zu", r->name, op,
                   struct_size, ours);
  return NULL;
}

#define CHECK_CALL(op, a)                                                                          \
  TRY(check_call(r, q, op, a, (a) == NULL ? 0 : (a)->struct_size, sizeof(*(a))))

/* ---- handles, refs and transfers */

qiao_dev_error *plugin__check_handle(const plugin_rules *r, const void *handle, uint32_t magic,
                                     const char *where, const char *noun) {
  if (handle == NULL) return INVALID("%s: %s%s is NULL", r->name, where, noun);
  uint32_t first;
  memcpy(&first, handle, sizeof(first)); /* every handle struct begins with its magic */
  if (first != magic)
    return plugin__error(QIAO_DEV_BAD_HANDLE, "%s: %snot %s %s handle", r->name, where,
                         r->handle_kind, noun);
  return NULL;
}

qiao_dev_error *plugin__check_queue(const plugin_rules *r, const qiao_dev_queue *q) {
  return plugin__check_handle(r, q, r->queue_magic, "", "queue");
}

qiao_dev_error *plugin__check_ref(const plugin_rules *r, const qiao_dev_queue *q, const char *what,
                                  qiao_dev_ref ref, uint64_t bytes, uint64_t align) {
  if (ref.buffer == NULL) return INVALID("%s: %s: buffer is NULL", r->name, what);
  uint64_t size = 0;
  bool same_device = false;
  if (!r->buffer_info(q, ref.buffer, &size, &same_device))
    return plugin__error(QIAO_DEV_BAD_HANDLE, "%s: %s: not %s buffer handle", r->name, what,
                         r->handle_kind);
  if (!same_device)
    return INVALID("%s: %s: the buffer belongs to another device than the queue", r->name, what);
  if (align > 1 && ref.offset % align != 0)
    return INVALID("%s: %s: offset %llu is not a multiple of %llu bytes", r->name, what,
                   (unsigned long long)ref.offset, (unsigned long long)align);
  if (ref.offset > size || bytes > size - ref.offset)
    return INVALID("%s: %s: %llu bytes at offset %llu exceed the buffer's %llu bytes", r->name,
                   what, (unsigned long long)bytes, (unsigned long long)ref.offset,
                   (unsigned long long)size);
  return NULL;
}

qiao_dev_error *plugin__check_upload(const plugin_rules *r, const qiao_dev_queue *q,
                                     qiao_dev_ref dst, const void *src, uint64_t size) {
  TRY(plugin__check_queue(r, q));
  TRY(plugin__check_ref(r, q, "upload: dst", dst, size, 1));
  if (size > 0 && src == NULL) return INVALID("%s: upload: src is NULL", r->name);
  return NULL;
}

qiao_dev_error *plugin__check_download(const plugin_rules *r, const qiao_dev_queue *q,
                                       const void *dst, qiao_dev_ref src, uint64_t size) {
  TRY(plugin__check_queue(r, q));
  TRY(plugin__check_ref(r, q, "download: src", src, size, 1));
  if (size > 0 && dst == NULL) return INVALID("%s: download: dst is NULL", r->name);
  return NULL;
}

qiao_dev_error *plugin__check_copy(const plugin_rules *r, const qiao_dev_queue *q, qiao_dev_ref dst,
                                   qiao_dev_ref src, uint64_t size) {
  TRY(plugin__check_queue(r, q));
  TRY(plugin__check_ref(r, q, "copy: dst", dst, size, 1));
  TRY(plugin__check_ref(r, q, "copy: src", src, size, 1));
  if (overlap(dst, size, src, size)) return INVALID("%s: copy: dst and src overlap", r->name);
  return NULL;
}

/* ---- embed */

qiao_dev_error *plugin__validate_embed(const plugin_rules *r, const qiao_dev_queue *q,
                                       const qiao_dev_embed_args *a, plugin_plan *plan) {
  const char *op = "embed";
  CHECK_CALL(op, a);
  uint64_t row = 0, align = 1, table_bytes, ids_bytes, out_bytes;
  TRY(weight_row(r, op, a->table_dtype, a->dim, &row, &align));
  if (!prod(&table_bytes, a->vocab, row, 1)) return too_big(r, op, "table");
  if (!prod(&ids_bytes, a->n_tokens, 4, 1)) return too_big(r, op, "ids");
  if (!prod(&out_bytes, a->n_tokens, a->dim, 4)) return too_big(r, op, "out");
  TRY(check(r, q, op, "table", a->table, table_bytes, align));
  TRY(check(r, q, op, "ids", a->ids, ids_bytes, 4));
  TRY(check(r, q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->table, table_bytes))
    return overlap_error(r, op, "out", "table");
  if (overlap(a->out, out_bytes, a->ids, ids_bytes)) return overlap_error(r, op, "out", "ids");
  plugin_plan p = {.empty = a->n_tokens == 0 || a->dim == 0, .row_bytes = row};
  if (!p.empty && a->vocab == 0) /* every id would be out of range, and no row to clamp to */
    return INVALID("%s: embed: vocab is 0", r->name);
  *plan = p;
  return NULL;
}

/* ---- matmul */

qiao_dev_error *plugin__validate_matmul(const plugin_rules *r, const qiao_dev_queue *q,
                                        const qiao_dev_matmul_args *a, plugin_plan *plan) {
  const char *op = "matmul";
  CHECK_CALL(op, a);
  uint64_t row = 0, align = 1, x_bytes, w_bytes, bias_bytes, out_bytes;
  TRY(weight_row(r, op, a->w_dtype, a->k, &row, &align));
  if (!prod(&x_bytes, a->n, a->k, 4)) return too_big(r, op, "x");
  if (!prod(&w_bytes, a->m, row, 1)) return too_big(r, op, "w");
  if (!prod(&bias_bytes, a->m, 4, 1)) return too_big(r, op, "bias");
  if (!prod(&out_bytes, a->n, a->m, 4)) return too_big(r, op, "out");
  TRY(check(r, q, op, "x", a->x, x_bytes, 4));
  TRY(check(r, q, op, "w", a->w, w_bytes, align));
  bool has_bias = a->bias.buffer != NULL; /* optional: {NULL, 0} */
  if (has_bias)
    TRY(check(r, q, op, "bias", a->bias, bias_bytes, 4));
  else if (a->bias.offset != 0)
    return INVALID("%s: matmul: bias has no buffer but offset %llu", r->name,
                   (unsigned long long)a->bias.offset);
  TRY(check(r, q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(r, op, "out", "x");
  if (overlap(a->out, out_bytes, a->w, w_bytes)) return overlap_error(r, op, "out", "w");
  if (has_bias && overlap(a->out, out_bytes, a->bias, bias_bytes))
    return overlap_error(r, op, "out", "bias");
  /* (1.2) x_precision, in 1.0's tail padding: read from a 1.2 runtime only.
   * These backends take the permission of Q8 but compute exactly. */
  if (r->runtime_minor != NULL && r->runtime_minor(q) >= 2 &&
      a->x_precision > QIAO_DEV_PRECISION_Q8)
    return INVALID("%s: matmul: x_precision %u is not a precision", r->name, a->x_precision);
  *plan = (plugin_plan){.empty = a->n == 0 || a->m == 0, .row_bytes = row, .has_bias = has_bias};
  return NULL;
}

/* ---- rmsnorm */

qiao_dev_error *plugin__validate_rmsnorm(const plugin_rules *r, const qiao_dev_queue *q,
                                         const qiao_dev_rmsnorm_args *a, plugin_plan *plan) {
  const char *op = "rmsnorm";
  CHECK_CALL(op, a);
  if (!(a->eps >= 0.0f))
    return INVALID("%s: rmsnorm: eps %g is negative or NaN", r->name, (double)a->eps);
  uint64_t x_bytes, w_bytes;
  if (!prod(&x_bytes, a->rows, a->cols, 4)) return too_big(r, op, "x");
  if (!prod(&w_bytes, a->cols, 4, 1)) return too_big(r, op, "weight");
  TRY(check(r, q, op, "x", a->x, x_bytes, 4));
  TRY(check(r, q, op, "weight", a->weight, w_bytes, 4));
  TRY(check(r, q, op, "out", a->out, x_bytes, 4));
  if (!same(a->out, a->x) && overlap(a->out, x_bytes, a->x, x_bytes))
    return overlap_error(r, op, "out", "x (only out == x is allowed)");
  if (overlap(a->out, x_bytes, a->weight, w_bytes)) return overlap_error(r, op, "out", "weight");
  *plan = (plugin_plan){.empty = a->rows == 0 || a->cols == 0};
  return NULL;
}

/* ---- rope */

qiao_dev_error *plugin__validate_rope(const plugin_rules *r, const qiao_dev_queue *q,
                                      const qiao_dev_rope_args *a, plugin_plan *plan) {
  const char *op = "rope";
  CHECK_CALL(op, a);
  if (a->style != QIAO_DEV_ROPE_NORMAL && a->style != QIAO_DEV_ROPE_NEOX)
    return INVALID("%s: rope: unknown style %d", r->name, (int)a->style);
  if (a->rot_dim % 2 != 0 || a->rot_dim > a->head_dim)
    return INVALID("%s: rope: rot_dim %llu must be even and <= head_dim %llu", r->name,
                   (unsigned long long)a->rot_dim, (unsigned long long)a->head_dim);
  uint64_t x_bytes, pos_bytes, f_bytes, x_elems;
  if (!prod(&x_elems, a->n_tokens, a->n_heads, a->head_dim) || !prod(&x_bytes, x_elems, 4, 1))
    return too_big(r, op, "x");
  if (!prod(&pos_bytes, a->n_tokens, 4, 1)) return too_big(r, op, "positions");
  if (!prod(&f_bytes, a->rot_dim / 2, 4, 1)) return too_big(r, op, "freqs");
  TRY(check(r, q, op, "x", a->x, x_bytes, 4));
  TRY(check(r, q, op, "positions", a->positions, pos_bytes, 4));
  TRY(check(r, q, op, "freqs", a->freqs, f_bytes, 4));
  if (overlap(a->x, x_bytes, a->positions, pos_bytes))
    return overlap_error(r, op, "x", "positions");
  if (overlap(a->x, x_bytes, a->freqs, f_bytes)) return overlap_error(r, op, "x", "freqs");
  *plan = (plugin_plan){.empty = a->n_tokens == 0 || a->n_heads == 0 || a->rot_dim == 0};
  return NULL;
}

/* ---- kv_write */

qiao_dev_error *plugin__validate_kv_write(const plugin_rules *r, const qiao_dev_queue *q,
                                          const qiao_dev_kv_write_args *a, plugin_plan *plan) {
  const char *op = "kv_write";
  CHECK_CALL(op, a);
  uint64_t es = 0, in_bytes, slots_bytes, cache_bytes;
  TRY(cache_elem(r, op, a->cache_dtype, &es));
  if (!prod(&in_bytes, a->n_tokens, a->kv_dim, 4)) return too_big(r, op, "k");
  if (!prod(&slots_bytes, a->n_tokens, 4, 1)) return too_big(r, op, "slots");
  if (!prod(&cache_bytes, a->n_slots, a->kv_dim, es)) return too_big(r, op, "k_cache");
  TRY(check(r, q, op, "k", a->k, in_bytes, 4));
  TRY(check(r, q, op, "v", a->v, in_bytes, 4));
  TRY(check(r, q, op, "slots", a->slots, slots_bytes, 4));
  TRY(check(r, q, op, "k_cache", a->k_cache, cache_bytes, es));
  TRY(check(r, q, op, "v_cache", a->v_cache, cache_bytes, es));
  if (overlap(a->k_cache, cache_bytes, a->v_cache, cache_bytes))
    return overlap_error(r, op, "k_cache", "v_cache");
  const qiao_dev_ref caches[2] = {a->k_cache, a->v_cache};
  for (int c = 0; c < 2; c++) {
    const char *name = c ? "v_cache" : "k_cache";
    if (overlap(caches[c], cache_bytes, a->k, in_bytes)) return overlap_error(r, op, name, "k");
    if (overlap(caches[c], cache_bytes, a->v, in_bytes)) return overlap_error(r, op, name, "v");
    if (overlap(caches[c], cache_bytes, a->slots, slots_bytes))
      return overlap_error(r, op, name, "slots");
  }
  *plan = (plugin_plan){.empty = a->n_tokens == 0 || a->kv_dim == 0, .cache_elem = es};
  return NULL;
}

/* ---- attention */

qiao_dev_error *plugin__validate_attention(const plugin_rules *r, const qiao_dev_queue *q,
                                           const qiao_dev_attention_args *a, plugin_plan *plan) {
  const char *op = "attention";
  CHECK_CALL(op, a);
  uint64_t es = 0;
  TRY(cache_elem(r, op, a->cache_dtype, &es));
  if (a->n_kv_heads == 0 || a->n_heads % a->n_kv_heads != 0)
    return INVALID("%s: attention: n_heads %llu is not a multiple of n_kv_heads %llu", r->name,
                   (unsigned long long)a->n_heads, (unsigned long long)a->n_kv_heads);
  if (a->block_size == 0) return INVALID("%s: attention: block_size is 0", r->name);
  /* the limits (UNSUPPORTED) after every shape rule (INVALID_ARGUMENT): §6, §10.3 */
  if (a->block_size > UINT32_MAX)
    return plugin__error(QIAO_DEV_UNSUPPORTED, "%s: attention: block_size %llu exceeds 2^32 - 1",
                         r->name, (unsigned long long)a->block_size);
  if (a->head_dim > r->max_head_dim)
    return plugin__error(QIAO_DEV_UNSUPPORTED, "%s: attention: head_dim %llu exceeds %llu", r->name,
                         (unsigned long long)a->head_dim, (unsigned long long)r->max_head_dim);
  uint64_t q_bytes, cache_bytes, bt_bytes, tok_bytes, q_elems, kv_elems;
  if (!prod(&q_elems, a->n_tokens, a->n_heads, a->head_dim) || !prod(&q_bytes, q_elems, 4, 1))
    return too_big(r, op, "q");
  if (!prod(&kv_elems, a->n_slots, a->n_kv_heads, a->head_dim) ||
      !prod(&cache_bytes, kv_elems, es, 1))
    return too_big(r, op, "k_cache");
  if (!prod(&bt_bytes, a->n_seqs, a->max_blocks_per_seq, 4)) return too_big(r, op, "block_table");
  if (!prod(&tok_bytes, a->n_tokens, 4, 1)) return too_big(r, op, "token_seq");
  TRY(check(r, q, op, "q", a->q, q_bytes, 4));
  TRY(check(r, q, op, "k_cache", a->k_cache, cache_bytes, es));
  TRY(check(r, q, op, "v_cache", a->v_cache, cache_bytes, es));
  TRY(check(r, q, op, "block_table", a->block_table, bt_bytes, 4));
  TRY(check(r, q, op, "token_seq", a->token_seq, tok_bytes, 4));
  TRY(check(r, q, op, "token_pos", a->token_pos, tok_bytes, 4));
  TRY(check(r, q, op, "out", a->out, q_bytes, 4));
  /* Inputs may overlap each other; out overlaps none of them. */
  const struct {
    const char *name;
    qiao_dev_ref ref;
    uint64_t bytes;
  } inputs[] = {{"q", a->q, q_bytes},
                {"k_cache", a->k_cache, cache_bytes},
                {"v_cache", a->v_cache, cache_bytes},
                {"block_table", a->block_table, bt_bytes},
                {"token_seq", a->token_seq, tok_bytes},
                {"token_pos", a->token_pos, tok_bytes}};
  for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
    if (overlap(a->out, q_bytes, inputs[i].ref, inputs[i].bytes))
      return overlap_error(r, op, "out", inputs[i].name);
  /* (token_seq, token_pos and block_table values, n_seqs or n_slots of 0
   * included, are checked by the kernels.) */
  *plan = (plugin_plan){.empty = a->n_tokens == 0 || a->n_heads == 0 || a->head_dim == 0,
                        .cache_elem = es};
  return NULL;
}

/* ---- swiglu and add: out may equal an input exactly, and may not otherwise overlap one */

static qiao_dev_error *binary(const plugin_rules *r, const qiao_dev_queue *q, const char *op,
                              uint64_t n, qiao_dev_ref in0, const char *name0, qiao_dev_ref in1,
                              const char *name1, qiao_dev_ref out, plugin_plan *plan) {
  uint64_t bytes;
  if (!prod(&bytes, n, 4, 1)) return too_big(r, op, "out");
  TRY(check(r, q, op, name0, in0, bytes, 4));
  TRY(check(r, q, op, name1, in1, bytes, 4));
  TRY(check(r, q, op, "out", out, bytes, 4));
  if (!same(out, in0) && overlap(out, bytes, in0, bytes)) return overlap_error(r, op, "out", name0);
  if (!same(out, in1) && overlap(out, bytes, in1, bytes)) return overlap_error(r, op, "out", name1);
  *plan = (plugin_plan){.empty = n == 0};
  return NULL;
}

qiao_dev_error *plugin__validate_swiglu(const plugin_rules *r, const qiao_dev_queue *q,
                                        const qiao_dev_swiglu_args *a, plugin_plan *plan) {
  CHECK_CALL("swiglu", a);
  return binary(r, q, "swiglu", a->n, a->gate, "gate", a->up, "up", a->out, plan);
}

qiao_dev_error *plugin__validate_add(const plugin_rules *r, const qiao_dev_queue *q,
                                     const qiao_dev_add_args *a, plugin_plan *plan) {
  CHECK_CALL("add", a);
  return binary(r, q, "add", a->n, a->a, "a", a->b, "b", a->out, plan);
}

/* ---- argmax */

qiao_dev_error *plugin__validate_argmax(const plugin_rules *r, const qiao_dev_queue *q,
                                        const qiao_dev_argmax_args *a, plugin_plan *plan) {
  const char *op = "argmax";
  CHECK_CALL(op, a);
  if (a->cols == 0 || a->cols > INT32_MAX) /* checked whatever rows is (§11.3) */
    return INVALID("%s: argmax: cols %llu is not in [1, 2^31)", r->name,
                   (unsigned long long)a->cols);
  uint64_t x_bytes, out_bytes;
  if (!prod(&x_bytes, a->rows, a->cols, 4)) return too_big(r, op, "x");
  if (!prod(&out_bytes, a->rows, 4, 1)) return too_big(r, op, "out");
  TRY(check(r, q, op, "x", a->x, x_bytes, 4));
  TRY(check(r, q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(r, op, "out", "x");
  *plan = (plugin_plan){.empty = a->rows == 0};
  return NULL;
}

/* ---- moe_gate */

qiao_dev_error *plugin__validate_moe_gate(const plugin_rules *r, const qiao_dev_queue *q,
                                          const qiao_dev_moe_gate_args *a, plugin_plan *plan) {
  const char *op = "moe_gate";
  CHECK_CALL(op, a);
  if (a->n_experts == 0 || a->n_experts > INT32_MAX || a->k == 0 || a->k > a->n_experts)
    return INVALID("%s: moe_gate: k %llu must be in [1, n_experts %llu] (n_experts < 2^31)",
                   r->name, (unsigned long long)a->k, (unsigned long long)a->n_experts);
  uint64_t logit_bytes, out_bytes;
  if (!prod(&logit_bytes, a->n_tokens, a->n_experts, 4)) return too_big(r, op, "logits");
  if (!prod(&out_bytes, a->n_tokens, a->k, 4)) return too_big(r, op, "ids");
  TRY(check(r, q, op, "logits", a->logits, logit_bytes, 4));
  TRY(check(r, q, op, "ids", a->ids, out_bytes, 4));
  TRY(check(r, q, op, "weights", a->weights, out_bytes, 4));
  if (overlap(a->ids, out_bytes, a->logits, logit_bytes))
    return overlap_error(r, op, "ids", "logits");
  if (overlap(a->weights, out_bytes, a->logits, logit_bytes))
    return overlap_error(r, op, "weights", "logits");
  if (overlap(a->weights, out_bytes, a->ids, out_bytes))
    return overlap_error(r, op, "weights", "ids");
  *plan = (plugin_plan){.empty = a->n_tokens == 0};
  return NULL;
}

/* ---- matmul_experts */

qiao_dev_error *plugin__validate_matmul_experts(const plugin_rules *r, const qiao_dev_queue *q,
                                                const qiao_dev_matmul_experts_args *a,
                                                plugin_plan *plan) {
  const char *op = "matmul_experts";
  CHECK_CALL(op, a);
  uint64_t row = 0, align = 1, expert_bytes, w_bytes, slots, x_rows, x_bytes, ids_bytes, out_bytes;
  TRY(weight_row(r, op, a->w_dtype, a->in_dim, &row, &align));
  if (!prod(&expert_bytes, a->out_dim, row, 1) || !prod(&w_bytes, a->n_experts, expert_bytes, 1))
    return too_big(r, op, "w");
  if (!prod(&slots, a->n_tokens, a->k, 1)) return too_big(r, op, "ids");
  x_rows = a->x_per_slot ? slots : a->n_tokens;
  if (!prod(&x_bytes, x_rows, a->in_dim, 4)) return too_big(r, op, "x");
  if (!prod(&ids_bytes, slots, 4, 1)) return too_big(r, op, "ids");
  if (!prod(&out_bytes, slots, a->out_dim, 4)) return too_big(r, op, "out");
  TRY(check(r, q, op, "x", a->x, x_bytes, 4));
  TRY(check(r, q, op, "w", a->w, w_bytes, align));
  TRY(check(r, q, op, "ids", a->ids, ids_bytes, 4));
  TRY(check(r, q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(r, op, "out", "x");
  if (overlap(a->out, out_bytes, a->w, w_bytes)) return overlap_error(r, op, "out", "w");
  if (overlap(a->out, out_bytes, a->ids, ids_bytes)) return overlap_error(r, op, "out", "ids");
  /* (1.5) x_precision, in what was padding: read from a 1.5 runtime only.
   * These backends take the permission of Q8 but compute exactly. */
  if (r->runtime_minor != NULL && r->runtime_minor(q) >= 5 &&
      a->x_precision > QIAO_DEV_PRECISION_Q8)
    return INVALID("%s: matmul_experts: x_precision %u is not a precision", r->name,
                   a->x_precision);
  plugin_plan p = {.empty = slots == 0 || a->out_dim == 0,
                   .row_bytes = row,
                   .expert_bytes = expert_bytes,
                   .slots = slots};
  if (!p.empty && a->n_experts == 0) /* every id would be out of range, nothing to clamp to */
    return INVALID("%s: matmul_experts: n_experts is 0", r->name);
  *plan = p;
  return NULL;
}

/* ---- moe_combine */

qiao_dev_error *plugin__validate_moe_combine(const plugin_rules *r, const qiao_dev_queue *q,
                                             const qiao_dev_moe_combine_args *a,
                                             plugin_plan *plan) {
  const char *op = "moe_combine";
  CHECK_CALL(op, a);
  uint64_t x_bytes, x_elems, w_bytes, out_bytes;
  if (!prod(&x_elems, a->n_tokens, a->k, a->dim) || !prod(&x_bytes, x_elems, 4, 1))
    return too_big(r, op, "x");
  if (!prod(&w_bytes, a->n_tokens, a->k, 4)) return too_big(r, op, "weights");
  if (!prod(&out_bytes, a->n_tokens, a->dim, 4)) return too_big(r, op, "out");
  TRY(check(r, q, op, "x", a->x, x_bytes, 4));
  TRY(check(r, q, op, "weights", a->weights, w_bytes, 4));
  TRY(check(r, q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(r, op, "out", "x");
  if (overlap(a->out, out_bytes, a->weights, w_bytes))
    return overlap_error(r, op, "out", "weights");
  *plan = (plugin_plan){.empty = a->n_tokens == 0 || a->dim == 0};
  return NULL;
}

/* ---- the ops of 1.4 (plugin_validate_1_4.h) */

/* A live queue and an args struct at least as large as ABI 1.4's. */
static qiao_dev_error *check_call_1_4(const plugin_rules *r, const qiao_dev_queue *q,
                                      const char *op, const void *args, size_t struct_size,
                                      size_t ours) {
  TRY(plugin__check_queue(r, q));
  if (args == NULL) return INVALID("%s: %s: args is NULL", r->name, op);
  if (struct_size < ours)
    return INVALID("%s: %s: args struct_size %zu is smaller than ABI 1.4's %zu", r->name, op,
                   struct_size, ours);
  return NULL;
}

#define CHECK_CALL_1_4(op, a)                                                                      \
  TRY(check_call_1_4(r, q, op, a, (a) == NULL ? 0 : (a)->struct_size, sizeof(*(a))))

/* The rules both latent ops share: the cache dtype, then latent_dim and
 * rope_dim at least 1 and a row length that fits. */
static qiao_dev_error *latent_dims(const plugin_rules *r, const char *op, qiao_dev_dtype dtype,
                                   uint64_t latent_dim, uint64_t rope_dim, uint64_t *es,
                                   uint64_t *row) {
  TRY(cache_elem(r, op, dtype, es));
  if (latent_dim == 0 || rope_dim == 0)
    return INVALID("%s: %s: %s is 0", r->name, op, latent_dim == 0 ? "latent_dim" : "rope_dim");
  if (latent_dim > UINT64_MAX - rope_dim) return too_big(r, op, "a cache row");
  *row = latent_dim + rope_dim;
  return NULL;
}

qiao_dev_error *plugin__validate_latent_write(const plugin_rules *r, const qiao_dev_queue *q,
                                              const qiao_dev_latent_write_args *a,
                                              plugin_plan *plan) {
  const char *op = "latent_write";
  CHECK_CALL_1_4(op, a);
  uint64_t es = 0, row = 0, lat_bytes, rope_bytes, slots_bytes, cache_bytes;
  TRY(latent_dims(r, op, a->cache_dtype, a->latent_dim, a->rope_dim, &es, &row));
  if (!prod(&lat_bytes, a->n_tokens, a->latent_dim, 4)) return too_big(r, op, "latent");
  if (!prod(&rope_bytes, a->n_tokens, a->rope_dim, 4)) return too_big(r, op, "rope");
  if (!prod(&slots_bytes, a->n_tokens, 4, 1)) return too_big(r, op, "slots");
  if (!prod(&cache_bytes, a->n_slots, row, es)) return too_big(r, op, "cache");
  TRY(check(r, q, op, "latent", a->latent, lat_bytes, 4));
  TRY(check(r, q, op, "rope", a->rope, rope_bytes, 4));
  TRY(check(r, q, op, "slots", a->slots, slots_bytes, 4));
  TRY(check(r, q, op, "cache", a->cache, cache_bytes, es));
  if (overlap(a->cache, cache_bytes, a->latent, lat_bytes))
    return overlap_error(r, op, "cache", "latent");
  if (overlap(a->cache, cache_bytes, a->rope, rope_bytes))
    return overlap_error(r, op, "cache", "rope");
  if (overlap(a->cache, cache_bytes, a->slots, slots_bytes))
    return overlap_error(r, op, "cache", "slots");
  *plan = (plugin_plan){.empty = a->n_tokens == 0, .cache_elem = es};
  return NULL;
}

qiao_dev_error *plugin__validate_attention_latent(const plugin_rules *r, const qiao_dev_queue *q,
                                                  const qiao_dev_attention_latent_args *a,
                                                  plugin_plan *plan) {
  const char *op = "attention_latent";
  CHECK_CALL_1_4(op, a);
  uint64_t es = 0, row = 0;
  TRY(latent_dims(r, op, a->cache_dtype, a->latent_dim, a->rope_dim, &es, &row));
  if (a->block_size == 0) return INVALID("%s: attention_latent: block_size is 0", r->name);
  if (a->block_size > UINT32_MAX) /* a limit (UNSUPPORTED) after the shape rules, as attention */
    return plugin__error(QIAO_DEV_UNSUPPORTED,
                         "%s: attention_latent: block_size %llu exceeds 2^32 - 1", r->name,
                         (unsigned long long)a->block_size);
  uint64_t ql_elems, ql_bytes, qr_elems, qr_bytes, cache_bytes, bt_bytes, tok_bytes;
  if (!prod(&ql_elems, a->n_tokens, a->n_heads, a->latent_dim) || !prod(&ql_bytes, ql_elems, 4, 1))
    return too_big(r, op, "q_latent");
  if (!prod(&qr_elems, a->n_tokens, a->n_heads, a->rope_dim) || !prod(&qr_bytes, qr_elems, 4, 1))
    return too_big(r, op, "q_rope");
  if (!prod(&cache_bytes, a->n_slots, row, es)) return too_big(r, op, "cache");
  if (!prod(&bt_bytes, a->n_seqs, a->max_blocks_per_seq, 4)) return too_big(r, op, "block_table");
  if (!prod(&tok_bytes, a->n_tokens, 4, 1)) return too_big(r, op, "token_seq");
  TRY(check(r, q, op, "q_latent", a->q_latent, ql_bytes, 4));
  TRY(check(r, q, op, "q_rope", a->q_rope, qr_bytes, 4));
  TRY(check(r, q, op, "cache", a->cache, cache_bytes, es));
  TRY(check(r, q, op, "block_table", a->block_table, bt_bytes, 4));
  TRY(check(r, q, op, "token_seq", a->token_seq, tok_bytes, 4));
  TRY(check(r, q, op, "token_pos", a->token_pos, tok_bytes, 4));
  TRY(check(r, q, op, "out", a->out, ql_bytes, 4));
  const struct {
    const char *name;
    qiao_dev_ref ref;
    uint64_t bytes;
  } inputs[] = {{"q_latent", a->q_latent, ql_bytes},    {"q_rope", a->q_rope, qr_bytes},
                {"cache", a->cache, cache_bytes},       {"block_table", a->block_table, bt_bytes},
                {"token_seq", a->token_seq, tok_bytes}, {"token_pos", a->token_pos, tok_bytes}};
  for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
    if (overlap(a->out, ql_bytes, inputs[i].ref, inputs[i].bytes))
      return overlap_error(r, op, "out", inputs[i].name);
  *plan = (plugin_plan){.empty = a->n_tokens == 0 || a->n_heads == 0, .cache_elem = es};
  return NULL;
}

qiao_dev_error *plugin__validate_moe_route(const plugin_rules *r, const qiao_dev_queue *q,
                                           const qiao_dev_moe_route_args *a, plugin_plan *plan) {
  const char *op = "moe_route";
  CHECK_CALL_1_4(op, a);
  if (a->n_experts == 0 || a->n_experts > INT32_MAX || a->k == 0 || a->k > a->n_experts)
    return INVALID("%s: moe_route: k %llu must be in [1, n_experts %llu] (n_experts < 2^31)",
                   r->name, (unsigned long long)a->k, (unsigned long long)a->n_experts);
  if (a->scoring != QIAO_DEV_MOE_SCORE_SOFTMAX && a->scoring != QIAO_DEV_MOE_SCORE_SIGMOID)
    return INVALID("%s: moe_route: scoring %u is not a QIAO_DEV_MOE_SCORE_*", r->name,
                   (unsigned)a->scoring);
  if (a->normalize > 1)
    return INVALID("%s: moe_route: normalize %u is not 0 or 1", r->name, (unsigned)a->normalize);
  if (!(a->scale - a->scale == 0.0f)) /* NaN or infinite, without <math.h> */
    return INVALID("%s: moe_route: scale %g is not finite", r->name, (double)a->scale);
  if (a->n_groups > 1) {
    uint64_t per = a->n_experts / a->n_groups;
    if (a->n_experts % a->n_groups != 0)
      return INVALID("%s: moe_route: n_experts %llu is not a multiple of n_groups %u", r->name,
                     (unsigned long long)a->n_experts, (unsigned)a->n_groups);
    if (a->topk_groups == 0 || a->topk_groups > a->n_groups)
      return INVALID("%s: moe_route: topk_groups %u is not in [1, n_groups %u]", r->name,
                     (unsigned)a->topk_groups, (unsigned)a->n_groups);
    if (a->group_score != QIAO_DEV_MOE_GROUP_MAX && a->group_score != QIAO_DEV_MOE_GROUP_TOP2_SUM)
      return INVALID("%s: moe_route: group_score %u is not a QIAO_DEV_MOE_GROUP_*", r->name,
                     (unsigned)a->group_score);
    if (a->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM && per < 2)
      return INVALID("%s: moe_route: group_score TOP2_SUM needs 2 or more experts per group, "
                     "not %llu",
                     r->name, (unsigned long long)per);
    if (a->k > per * a->topk_groups)
      return INVALID("%s: moe_route: k %llu is more than the %llu experts of the topk_groups %u "
                     "kept groups",
                     r->name, (unsigned long long)a->k, (unsigned long long)(per * a->topk_groups),
                     (unsigned)a->topk_groups);
  }
  uint64_t logit_bytes, bias_bytes, out_bytes;
  if (!prod(&logit_bytes, a->n_tokens, a->n_experts, 4)) return too_big(r, op, "logits");
  if (!prod(&bias_bytes, a->n_experts, 4, 1)) return too_big(r, op, "bias");
  if (!prod(&out_bytes, a->n_tokens, a->k, 4)) return too_big(r, op, "ids");
  TRY(check(r, q, op, "logits", a->logits, logit_bytes, 4));
  bool has_bias = a->bias.buffer != NULL; /* optional: {NULL, 0} */
  if (has_bias)
    TRY(check(r, q, op, "bias", a->bias, bias_bytes, 4));
  else if (a->bias.offset != 0)
    return INVALID("%s: moe_route: bias has no buffer but offset %llu", r->name,
                   (unsigned long long)a->bias.offset);
  TRY(check(r, q, op, "ids", a->ids, out_bytes, 4));
  TRY(check(r, q, op, "weights", a->weights, out_bytes, 4));
  if (overlap(a->ids, out_bytes, a->logits, logit_bytes))
    return overlap_error(r, op, "ids", "logits");
  if (overlap(a->weights, out_bytes, a->logits, logit_bytes))
    return overlap_error(r, op, "weights", "logits");
  if (overlap(a->weights, out_bytes, a->ids, out_bytes))
    return overlap_error(r, op, "weights", "ids");
  if (has_bias && overlap(a->ids, out_bytes, a->bias, bias_bytes))
    return overlap_error(r, op, "ids", "bias");
  if (has_bias && overlap(a->weights, out_bytes, a->bias, bias_bytes))
    return overlap_error(r, op, "weights", "bias");
  *plan = (plugin_plan){.empty = a->n_tokens == 0, .has_bias = has_bias};
  return NULL;
}

/* ---- backend and device entry points */

qiao_dev_error *plugin__check_backend_options(const plugin_rules *r,
                                              const qiao_dev_backend_options *options,
                                              qiao_dev_backend **out_backend) {
  if (options == NULL || out_backend == NULL)
    return INVALID("%s: backend_open: NULL argument", r->name);
  if (options->struct_size < sizeof(qiao_dev_backend_options)) /* 1.0's 16 bytes (§3) */
    return INVALID("%s: backend_open: options struct_size %zu is smaller than ABI 1.0's %zu",
                   r->name, options->struct_size, sizeof(qiao_dev_backend_options));
  if (options->runtime_abi_major != QIAO_DEVICE_ABI_MAJOR)
    return plugin__error(
        QIAO_DEV_UNSUPPORTED, "%s: backend_open: runtime ABI major %u, this backend implements %u",
        r->name, (unsigned)options->runtime_abi_major, (unsigned)QIAO_DEVICE_ABI_MAJOR);
  return NULL;
}

uint32_t plugin__runtime_minor(const qiao_dev_backend_options *options) {
  if (options == NULL ||
      options->struct_size < offsetof(qiao_dev_backend_options, runtime_abi_minor) + 4)
    return 0;
  return options->runtime_abi_minor;
}

qiao_dev_error *plugin__check_device_options(const plugin_rules *r,
                                             const qiao_dev_device_options *options,
                                             uint32_t runtime_minor, uint32_t implemented,
                                             uint32_t *out_flags) {
  /* options->n_threads is for host-thread backends; a GPU schedules itself. */
  if (options != NULL && options->struct_size < sizeof(qiao_dev_device_options)) /* 16 (§3) */
    return INVALID("%s: device_open: options struct_size %zu is smaller than ABI 1.0's %zu",
                   r->name, options->struct_size, sizeof(qiao_dev_device_options));
  uint32_t flags = 0;
  if (options != NULL && runtime_minor >= 1 &&
      options->struct_size >= offsetof(qiao_dev_device_options, flags) + 4)
    flags = options->flags;
  if (flags & ~implemented) {
    if (flags & ~implemented & QIAO_DEV_OPEN_BATCH_INVARIANT)
      return plugin__error(QIAO_DEV_UNSUPPORTED,
                           "%s: device_open: batch-invariant mode was requested, but this device "
                           "does not implement it (no QIAO_DEV_FLAG_BATCH_INVARIANT)",
                           r->name);
    return plugin__error(QIAO_DEV_UNSUPPORTED,
                         "%s: device_open: unknown flags 0x%x requested (a newer ABI's?)", r->name,
                         (unsigned)(flags & ~implemented));
  }
  *out_flags = flags;
  return NULL;
}

/* Whether field f of a struct of type T fits in the caller's struct_size. */
#define FITS(T, f, size) (offsetof(T, f) + sizeof(((T *)0)->f) <= (size))

void plugin__copy_properties(const qiao_dev_properties *p, qiao_dev_properties *to) {
  size_t size = to->struct_size;
  if (FITS(qiao_dev_properties, name, size)) memcpy(to->name, p->name, sizeof(p->name));
  if (FITS(qiao_dev_properties, vendor, size)) memcpy(to->vendor, p->vendor, sizeof(p->vendor));
  if (FITS(qiao_dev_properties, driver_version, size))
    memcpy(to->driver_version, p->driver_version, sizeof(p->driver_version));
  if (FITS(qiao_dev_properties, memory_bytes, size)) to->memory_bytes = p->memory_bytes;
  if (FITS(qiao_dev_properties, max_buffer_bytes, size)) to->max_buffer_bytes = p->max_buffer_bytes;
  if (FITS(qiao_dev_properties, compute_units, size)) to->compute_units = p->compute_units;
  if (FITS(qiao_dev_properties, flags, size)) to->flags = p->flags;
}

bool plugin__claims(qiao_dev_op op, qiao_dev_dtype dtype) {
  switch (op) {
  case QIAO_DEV_OP_EMBED:
  case QIAO_DEV_OP_MATMUL:
  case QIAO_DEV_OP_MATMUL_EXPERTS:
    return dtype == QIAO_DEV_F32 || dtype == QIAO_DEV_F16 || dtype == QIAO_DEV_BF16 ||
           dtype == QIAO_DEV_Q8_0 || dtype == QIAO_DEV_Q4_0;
  case QIAO_DEV_OP_KV_WRITE:
  case QIAO_DEV_OP_ATTENTION: return dtype == QIAO_DEV_F32 || dtype == QIAO_DEV_F16;
  case QIAO_DEV_OP_RMSNORM:
  case QIAO_DEV_OP_ROPE:
  case QIAO_DEV_OP_SWIGLU:
  case QIAO_DEV_OP_ADD:
  case QIAO_DEV_OP_ARGMAX:
  case QIAO_DEV_OP_MOE_GATE:
  case QIAO_DEV_OP_MOE_COMBINE: return dtype == QIAO_DEV_F32;
  default: return false; /* an op of a newer ABI minor */
  }
}

/* ---- device-side index checks */

/* What each op's device-side check found. */
static const char *flag_message(int op) {
  switch (op) {
  case QIAO_DEV_OP_EMBED: return "embed: an ids value is outside [0, vocab)";
  case QIAO_DEV_OP_KV_WRITE:
    return "kv_write: a slots value is outside [0, n_slots) (that token was not written)";
  case QIAO_DEV_OP_ATTENTION:
    return "attention: a token_seq, token_pos or block_table value is out of range";
  case QIAO_DEV_OP_MATMUL_EXPERTS: return "matmul_experts: an ids value is outside [0, n_experts)";
  case QIAO_DEV_OP_LATENT_WRITE:
    return "latent_write: a slots value is outside [0, n_slots) (that token was not written)";
  case QIAO_DEV_OP_ATTENTION_LATENT:
    return "attention_latent: a token_seq, token_pos or block_table value is out of range";
  default: return "an index is out of range";
  }
}

bool plugin__flags_message(const int flags[QIAO_DEV_OP_COUNT], char *msg, size_t cap) {
  size_t len = 0;
  msg[0] = '\0';
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++) {
    if (flags[op] == 0) continue;
    int n = snprintf(msg + len, cap - len, "%s%s", len ? "; " : "", flag_message(op));
    if (n > 0) len += (size_t)n < cap - len ? (size_t)n : cap - len - 1;
  }
  return len > 0;
}
