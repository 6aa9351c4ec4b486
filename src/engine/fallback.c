/* --allow-fallback: ops the chosen backend lacks run on the built-in CPU
 * backend instead of failing engine creation.
 *
 * forward.c calls a routing table with the same signatures as a backend's:
 * ops the backend supports go straight to it; the others wait for its queue,
 * copy every non-weight buffer they touch to a CPU buffer (a "mirror",
 * staged through host memory), run on the CPU, and copy those buffers back.
 * Weights are never copied: the CPU backend wraps the host bytes they were
 * made from. This is slow (whole buffers cross for each such op) but exact,
 * and it is said on stderr which ops run where. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"

qiao_status *qiao__engine_status(qiao__stage *g, qiao_dev_error *error, const char *what) {
  if (error == NULL) return NULL;
  qiao_engine *e = g->engine;
  if (error == (qiao_dev_error *)(void *)&e->fb_sentinel) {
    qiao_dev_error *fb = e->fb_error;
    e->fb_error = NULL;
    if (fb == NULL) return qiao__error(QIAO_INTERNAL, "fallback: %s failed", what);
    return qiao__annotate(qiao_backend_status(e->fb_backend, fb, what), "fallback (cpu)");
  }
  return qiao_backend_status(g->backend, error, what);
}

/* The one stage that --allow-fallback works with. */
static qiao__stage *primary(qiao_engine *e) {
  return &e->stages[0];
}

static qiao_status *open_fallback(qiao_engine *e) {
  QIAO__TRY(qiao_backend_load("cpu", &e->fb_backend));
  e->fb_api = qiao_backend_api(e->fb_backend);
  qiao_dev_device_options o = {.struct_size = sizeof(o)};
  /* Ops moved here must keep the promise the primary device made. */
  if (e->batch_invariant) {
    bool supported = false;
    QIAO__TRY(qiao_backend_batch_invariant(e->fb_backend, 0, &supported));
    if (!supported)
      return qiao__error(QIAO_UNSUPPORTED, "fallback: backend cpu device 0 is not batch-invariant "
                                           "(QIAO_DEV_FLAG_BATCH_INVARIANT)");
    o.flags = QIAO_DEV_OPEN_BATCH_INVARIANT;
  }
  QIAO__TRY(qiao_backend_status(
      e->fb_backend,
      e->fb_api->device_open(qiao_backend_handle(e->fb_backend), 0, &o, &e->fb_device),
      "device_open"));
  return qiao_backend_status(e->fb_backend, e->fb_api->queue_create(e->fb_device, &e->fb_queue),
                             "queue_create");
}

qiao_status *qiao__fallback_add(qiao_engine *e, qiao_dev_op op, qiao_dev_dtype dtype,
                                const char *needed_by) {
  if (e->on_fallback[op][dtype]) return NULL;
  if (e->fb_backend == NULL) QIAO__TRY(open_fallback(e));
  bool supported = false;
  QIAO__TRY(qiao_backend_op_supported(e->fb_backend, e->fb_device, op, dtype, &supported));
  if (!supported)
    return qiao__error(QIAO_UNSUPPORTED,
                       "backend %s does not support %s for %s (needed by %s), nor does the cpu "
                       "fallback",
                       qiao_backend_name(primary(e)->backend), qiao_dev_op_name(op),
                       qiao_dev_dtype_name(dtype), needed_by);
  e->on_fallback[op][dtype] = 1;
  fprintf(stderr, "fallback: %s for %s (needed by %s) runs on the cpu backend; %s runs the rest\n",
          qiao_dev_op_name(op), qiao_dev_dtype_name(dtype), needed_by,
          qiao_backend_name(primary(e)->backend));
  return NULL;
}

/* The mirror of a buffer of the primary device on the CPU device. */
static qiao__buffer_rec *find_rec(qiao_engine *e, const qiao_dev_buffer *buffer) {
  qiao__stage *g = primary(e);
  for (size_t i = 0; i < g->n_buffers; i++)
    if (g->buffers[i].buffer == buffer) return &g->buffers[i];
  return NULL;
}

static qiao_dev_error *make_mirror(qiao_engine *e, qiao__buffer_rec *r) {
  if (r->mirror != NULL) return NULL;
  if (r->host != NULL) /* a weight: the CPU reads the same host bytes */
    return e->fb_api->buffer_wrap_host(e->fb_device, r->host, r->size, &r->mirror);
  /* Activations and caches are written: a CPU buffer, staged through host memory. */
  r->mirror_host = aligned_alloc(64, (r->size + 63) / 64 * 64);
  if (r->mirror_host == NULL) return NULL; /* reported by the caller */
  return e->fb_api->buffer_create(e->fb_device, r->size, &r->mirror);
}

#define MAX_REFS 12

/* The qiao_dev_ref fields of an op's args (a copy the caller owns). */
static size_t refs_of(qiao_dev_op op, void *args, qiao_dev_ref **out) {
  size_t n = 0;
#define R(type, ...)                                                                               \
  do {                                                                                             \
    type *a = args;                                                                                \
    qiao_dev_ref *list[] = {__VA_ARGS__};                                                          \
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++)                                    \
      out[n++] = list[i];                                                                          \
  } while (0)
  switch (op) {
  case QIAO_DEV_OP_EMBED: R(qiao_dev_embed_args, &a->table, &a->ids, &a->out); break;
  case QIAO_DEV_OP_MATMUL: R(qiao_dev_matmul_args, &a->x, &a->w, &a->bias, &a->out); break;
  case QIAO_DEV_OP_RMSNORM: R(qiao_dev_rmsnorm_args, &a->x, &a->weight, &a->out); break;
  case QIAO_DEV_OP_ROPE: R(qiao_dev_rope_args, &a->x, &a->positions, &a->freqs); break;
  case QIAO_DEV_OP_KV_WRITE:
    R(qiao_dev_kv_write_args, &a->k, &a->v, &a->slots, &a->k_cache, &a->v_cache);
    break;
  case QIAO_DEV_OP_ATTENTION:
    R(qiao_dev_attention_args, &a->q, &a->k_cache, &a->v_cache, &a->block_table, &a->token_seq,
      &a->token_pos, &a->out);
    break;
  case QIAO_DEV_OP_SWIGLU: R(qiao_dev_swiglu_args, &a->gate, &a->up, &a->out); break;
  case QIAO_DEV_OP_ADD: R(qiao_dev_add_args, &a->a, &a->b, &a->out); break;
  case QIAO_DEV_OP_ARGMAX: R(qiao_dev_argmax_args, &a->x, &a->out); break;
  case QIAO_DEV_OP_MOE_GATE: R(qiao_dev_moe_gate_args, &a->logits, &a->ids, &a->weights); break;
  case QIAO_DEV_OP_MATMUL_EXPERTS:
    R(qiao_dev_matmul_experts_args, &a->x, &a->w, &a->ids, &a->out);
    break;
  case QIAO_DEV_OP_MOE_COMBINE: R(qiao_dev_moe_combine_args, &a->x, &a->weights, &a->out); break;
  case QIAO_DEV_OP_LATENT_WRITE:
    R(qiao_dev_latent_write_args, &a->latent, &a->rope, &a->slots, &a->cache);
    break;
  case QIAO_DEV_OP_ATTENTION_LATENT:
    R(qiao_dev_attention_latent_args, &a->q_latent, &a->q_rope, &a->cache, &a->block_table,
      &a->token_seq, &a->token_pos, &a->out);
    break;
  case QIAO_DEV_OP_MOE_ROUTE:
    R(qiao_dev_moe_route_args, &a->logits, &a->bias, &a->ids, &a->weights);
    break;
  default: break;
  }
#undef R
  return n;
}

static qiao_dev_error *fail(qiao_engine *e, qiao_dev_error *fb_error) {
  e->fb_api->error_destroy(e->fb_error);
  e->fb_error = fb_error;
  return (qiao_dev_error *)(void *)&e->fb_sentinel;
}

/* Runs op (args of args_size bytes) on the CPU device. */
static qiao_dev_error *run_on_fallback(qiao_engine *e, qiao_dev_op op, const void *args,
                                       size_t args_size) {
  uint8_t copy[512];
  if (args_size > sizeof(copy)) return fail(e, NULL);
  memcpy(copy, args, args_size);
  qiao_dev_ref *refs[MAX_REFS];
  size_t n = refs_of(op, copy, refs);
  qiao__buffer_rec *recs[MAX_REFS];
  const qiao_dev_api *api = primary(e)->api;
  qiao_dev_queue *queue = primary(e)->queue;
  qiao_dev_error *err = api->queue_synchronize(queue);
  if (err != NULL) return err; /* the primary's own error */
  /* Bring every non-weight operand over (inputs and outputs alike: an
   * output may be accumulated into). */
  for (size_t i = 0; i < n; i++) {
    recs[i] = NULL;
    if (refs[i]->buffer == NULL) continue;
    qiao__buffer_rec *r = find_rec(e, refs[i]->buffer);
    if (r == NULL) return fail(e, NULL);
    if ((err = make_mirror(e, r)) != NULL) return fail(e, err);
    if (r->mirror == NULL) return fail(e, NULL);
    recs[i] = r;
    if (r->host == NULL) {
      err = api->download(queue, r->mirror_host, (qiao_dev_ref){r->buffer, 0}, r->size);
      if (err != NULL) return err;
    }
    refs[i]->buffer = r->mirror;
  }
  if ((err = api->queue_synchronize(queue)) != NULL) return err;
  qiao_dev_queue *q = e->fb_queue;
  for (size_t i = 0; i < n; i++)
    if (recs[i] != NULL && recs[i]->host == NULL &&
        (err = e->fb_api->upload(q, (qiao_dev_ref){recs[i]->mirror, 0}, recs[i]->mirror_host,
                                 recs[i]->size)) != NULL)
      return fail(e, err);
  switch (op) {
  case QIAO_DEV_OP_EMBED: err = e->fb_api->embed(q, (void *)copy); break;
  case QIAO_DEV_OP_MATMUL: err = e->fb_api->matmul(q, (void *)copy); break;
  case QIAO_DEV_OP_RMSNORM: err = e->fb_api->rmsnorm(q, (void *)copy); break;
  case QIAO_DEV_OP_ROPE: err = e->fb_api->rope(q, (void *)copy); break;
  case QIAO_DEV_OP_KV_WRITE: err = e->fb_api->kv_write(q, (void *)copy); break;
  case QIAO_DEV_OP_ATTENTION: err = e->fb_api->attention(q, (void *)copy); break;
  case QIAO_DEV_OP_SWIGLU: err = e->fb_api->swiglu(q, (void *)copy); break;
  case QIAO_DEV_OP_ADD: err = e->fb_api->add(q, (void *)copy); break;
  case QIAO_DEV_OP_ARGMAX: err = e->fb_api->argmax(q, (void *)copy); break;
  case QIAO_DEV_OP_MOE_GATE: err = e->fb_api->moe_gate(q, (void *)copy); break;
  case QIAO_DEV_OP_MATMUL_EXPERTS: err = e->fb_api->matmul_experts(q, (void *)copy); break;
  case QIAO_DEV_OP_MOE_COMBINE: err = e->fb_api->moe_combine(q, (void *)copy); break;
  case QIAO_DEV_OP_LATENT_WRITE: err = e->fb_api->latent_write(q, (void *)copy); break;
  case QIAO_DEV_OP_ATTENTION_LATENT: err = e->fb_api->attention_latent(q, (void *)copy); break;
  case QIAO_DEV_OP_MOE_ROUTE: err = e->fb_api->moe_route(q, (void *)copy); break;
  default: return fail(e, NULL);
  }
  for (size_t i = 0; i < n && err == NULL; i++)
    if (recs[i] != NULL && recs[i]->host == NULL)
      err = e->fb_api->download(q, recs[i]->mirror_host, (qiao_dev_ref){recs[i]->mirror, 0},
                                recs[i]->size);
  if (err == NULL) err = e->fb_api->queue_synchronize(q);
  if (err != NULL) return fail(e, err);
  /* And back; an uploaded buffer must not change until the queue is done
   * with it, which the next fallback op's synchronize guarantees. */
  for (size_t i = 0; i < n; i++) {
    qiao__buffer_rec *r = recs[i];
    if (r == NULL || r->host != NULL) continue;
    bool seen = false;
    for (size_t j = 0; j < i; j++)
      seen |= recs[j] == r;
    if (seen) continue;
    err = api->upload(queue, (qiao_dev_ref){r->buffer, 0}, r->mirror_host, r->size);
    if (err != NULL) return err;
  }
  return api->queue_synchronize(queue);
}

#define ROUTE(fn, OP, ARGS, DTYPE)                                                                 \
  static qiao_dev_error *route_##fn(qiao_dev_queue *queue, const ARGS *a) {                        \
    qiao_engine *e = ((qiao__route_queue *)(void *)queue)->engine;                                 \
    qiao_dev_dtype dt = (DTYPE);                                                                   \
    if ((unsigned)dt < QIAO_DEV_DTYPE_COUNT && e->on_fallback[OP][dt])                             \
      return run_on_fallback(e, OP, a, sizeof(*a));                                                \
    return primary(e)->api->fn(primary(e)->queue, a);                                              \
  }
ROUTE(embed, QIAO_DEV_OP_EMBED, qiao_dev_embed_args, a->table_dtype)
ROUTE(matmul, QIAO_DEV_OP_MATMUL, qiao_dev_matmul_args, a->w_dtype)
ROUTE(rmsnorm, QIAO_DEV_OP_RMSNORM, qiao_dev_rmsnorm_args, QIAO_DEV_F32)
ROUTE(rope, QIAO_DEV_OP_ROPE, qiao_dev_rope_args, QIAO_DEV_F32)
ROUTE(kv_write, QIAO_DEV_OP_KV_WRITE, qiao_dev_kv_write_args, a->cache_dtype)
ROUTE(attention, QIAO_DEV_OP_ATTENTION, qiao_dev_attention_args, a->cache_dtype)
ROUTE(swiglu, QIAO_DEV_OP_SWIGLU, qiao_dev_swiglu_args, QIAO_DEV_F32)
ROUTE(add, QIAO_DEV_OP_ADD, qiao_dev_add_args, QIAO_DEV_F32)
ROUTE(argmax, QIAO_DEV_OP_ARGMAX, qiao_dev_argmax_args, QIAO_DEV_F32)
ROUTE(moe_gate, QIAO_DEV_OP_MOE_GATE, qiao_dev_moe_gate_args, QIAO_DEV_F32)
ROUTE(matmul_experts, QIAO_DEV_OP_MATMUL_EXPERTS, qiao_dev_matmul_experts_args, a->w_dtype)
ROUTE(moe_combine, QIAO_DEV_OP_MOE_COMBINE, qiao_dev_moe_combine_args, QIAO_DEV_F32)
ROUTE(latent_write, QIAO_DEV_OP_LATENT_WRITE, qiao_dev_latent_write_args, a->cache_dtype)
ROUTE(attention_latent, QIAO_DEV_OP_ATTENTION_LATENT, qiao_dev_attention_latent_args,
      a->cache_dtype)
ROUTE(moe_route, QIAO_DEV_OP_MOE_ROUTE, qiao_dev_moe_route_args, QIAO_DEV_F32)
#undef ROUTE

#define PASS(fn, PARAMS, ARGS)                                                                     \
  static qiao_dev_error *route_##fn PARAMS {                                                       \
    qiao_engine *e = ((qiao__route_queue *)(void *)queue)->engine;                                 \
    return primary(e)->api->fn ARGS;                                                               \
  }
PASS(upload, (qiao_dev_queue * queue, qiao_dev_ref dst, const void *src, uint64_t size),
     (primary(e)->queue, dst, src, size))
PASS(download, (qiao_dev_queue * queue, void *dst, qiao_dev_ref src, uint64_t size),
     (primary(e)->queue, dst, src, size))
PASS(copy, (qiao_dev_queue * queue, qiao_dev_ref dst, qiao_dev_ref src, uint64_t size),
     (primary(e)->queue, dst, src, size))
PASS(queue_synchronize, (qiao_dev_queue * queue), (primary(e)->queue))
#undef PASS

void qiao__fallback_install(qiao_engine *e) {
  if (e->fb_backend == NULL) return;
  qiao__stage *g = primary(e);
  e->route_api = *g->api;
  e->route_api.embed = route_embed;
  e->route_api.matmul = route_matmul;
  e->route_api.rmsnorm = route_rmsnorm;
  e->route_api.rope = route_rope;
  e->route_api.kv_write = route_kv_write;
  e->route_api.attention = route_attention;
  e->route_api.swiglu = route_swiglu;
  e->route_api.add = route_add;
  e->route_api.argmax = route_argmax;
  e->route_api.moe_gate = route_moe_gate;
  e->route_api.matmul_experts = route_matmul_experts;
  e->route_api.moe_combine = route_moe_combine;
  e->route_api.latent_write = route_latent_write;
  e->route_api.attention_latent = route_attention_latent;
  e->route_api.moe_route = route_moe_route;
  e->route_api.upload = route_upload;
  e->route_api.download = route_download;
  e->route_api.copy = route_copy;
  e->route_api.queue_synchronize = route_queue_synchronize;
  e->route_queue.engine = e;
  g->ops = &e->route_api;
  g->ops_queue = (qiao_dev_queue *)(void *)&e->route_queue;
}

void qiao__fallback_close(qiao_engine *e) {
  if (e->fb_backend == NULL) return;
  if (e->fb_queue) {
    e->fb_api->error_destroy(e->fb_api->queue_synchronize(e->fb_queue));
    e->fb_api->queue_destroy(e->fb_queue);
  }
  qiao__stage *g = primary(e);
  for (size_t i = 0; i < g->n_buffers; i++) {
    e->fb_api->buffer_destroy(g->buffers[i].mirror);
    free(g->buffers[i].mirror_host);
  }
  e->fb_api->error_destroy(e->fb_error);
  if (e->fb_device) e->fb_api->device_close(e->fb_device);
  qiao_backend_unload(e->fb_backend);
  e->fb_backend = NULL;
}
