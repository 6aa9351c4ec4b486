/* Internal: pipeline stages over MPI, above the engine (issue 11).
 *
 * `mpirun -np N qiao run|logits|bench|serve ... --mpi`: every rank opens the model and an
 * engine that holds its share of the layers (consecutive, in rank order,
 * balanced by weight bytes with rank 0's output matrix counted);
 * in its engine the other ranks' layers are "external" stages (see
 * qiao_engine_options.external). Rank 0 owns the tokenizer, the sequences
 * and the KV cache block tables: for each pass it sends x (T, dim) and the
 * pass's metadata to the rank of each external stage in turn and gets x
 * back (a relay through rank 0: the activations are the only traffic); the
 * other ranks serve such passes with qiao_engine_forward_hidden until rank 0
 * says stop. A rank that does not answer within QIAO_MPI_TIMEOUT_S seconds
 * (default 120) fails the pass on rank 0 with an error naming it, and every
 * later pass at once (the rank is lost for good): run/logits/bench then end
 * the job (MPI_Abort), serve takes its replica out (answering 503) and ends
 * the job when stopped, so nothing hangs. Every wait naps rather than spins
 * (see nap() in pipeline.c), so idle ranks use next to no CPU.
 *
 * Pipelining (serve; bench --mpi-depth, whose micro-batches are D groups
 * of its sequences): with a depth of D, rank 0 runs D replicas, each
 * with its own sequences and KV cache and its own channel to the other
 * ranks, which hold D engines (one per channel). While one replica's pass
 * runs on rank 1, another runs its own layers on rank 0: up to D passes are
 * in flight, so every stage works at once (virtual replicas, as vLLM's
 * pipeline parallelism). Depth 1 is a relay: one stage works at a time.
 *
 * Threads: MPI runs at MPI_THREAD_SERIALIZED; on rank 0 each channel is
 * used by one thread at a time (its replica's) and every MPI call holds the
 * pipeline's lock; the other ranks use one thread.
 *
 * MPI stays in this folder: the engine sees only its external-stage
 * callback. Built only when CMake finds MPI. */
#ifndef QIAO_PIPELINE_H
#define QIAO_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "qiao/engine.h"
#include "qiao/status.h"

typedef struct qiao_pipeline qiao_pipeline;

/* MPI_Init (once per process) and the job's shape. Fails unless there are
 * at least 2 ranks. */
qiao_status *qiao__pipeline_open(int *argc, char ***argv, qiao_pipeline **out);
int qiao__pipeline_rank(const qiao_pipeline *p);
int qiao__pipeline_size(const qiao_pipeline *p);

/* This rank's engine options: its split ("cpu:0-6,external:7-23" on rank
 * 0 of 2 with backend "cpu", for Qwen2.5-0.5B) and, on rank 0, the runner
 * that sends the external stages to their ranks. The ranks' layers are
 * consecutive and balanced by the bytes of weights each reads per pass,
 * rank 0's output matrix included (see balance() in pipeline.c; computed
 * once, from `model`: the same on every rank). `o->backend` and
 * `o->device_index` name this rank's device, or `o->split` (devices without
 * layer ranges) the devices this rank's share is split over, evenly or, with
 * `o->split_by` memory, by each device's memory; the split string is owned
 * by p. */
qiao_status *qiao__pipeline_engine_options(qiao_pipeline *p, const qiao_model *model,
                                           qiao_engine_options *o);

/* The pipeline's depth (1 to 16; default 1), the same on every rank, set
 * before any engine is created. */
qiao_status *qiao__pipeline_set_depth(qiao_pipeline *p, uint32_t depth);
uint32_t qiao__pipeline_depth(const qiao_pipeline *p);

/* Rank 0: the external_user of replica i's engine (i < depth; the options
 * of qiao__pipeline_engine_options give channel 0's). NULL past the depth. */
void *qiao__pipeline_channel(qiao_pipeline *p, uint32_t i);

/* Ranks > 0: serves rank 0's passes with engines[c] for channel c (one per
 * channel: n_engines must equal the depth) until rank 0 says stop. */
qiao_status *qiao__pipeline_serve(qiao_pipeline *p, qiao_engine *const *engines,
                                  uint32_t n_engines);

/* Rank 0 (serve): the idle heartbeat. Every QIAO_MPI_HEARTBEAT_S seconds
 * (default 5; 0 = off) without a pass in flight, a thread pings each other
 * rank (a header on the pass stream, answered at once); one that does not
 * answer within QIAO_MPI_TIMEOUT_S is lost, as after a failed pass, and
 * on_lost(user, why) is called once, from that thread, with a message
 * naming the rank (serve takes its replicas out: /health answers 503). A
 * no-op on other ranks and when off. */
qiao_status *qiao__pipeline_heartbeat_start(qiao_pipeline *p,
                                            void (*on_lost)(void *user, const char *why),
                                            void *user);
/* Stops it (waits for a ping in flight: at most QIAO_MPI_TIMEOUT_S); before
 * what on_lost uses goes away. Idempotent; close calls it too. */
void qiao__pipeline_heartbeat_stop(qiao_pipeline *p);

/* When `ok` and no rank was lost: rank 0 tells the other ranks to stop; every rank then calls
 * MPI_Finalize. Else (a rank failed; print the error first) MPI_Abort ends
 * the whole job, so that no rank waits forever. Accepts NULL. */
void qiao__pipeline_close(qiao_pipeline *p, bool ok);

#endif
