/* Shared by the engine commands (run, chat, logits, bench): the common
 * flags, opening a model + tokenizer + engine, and the generation loop. */
#ifndef QIAO_ENGINE_CLI_H
#define QIAO_ENGINE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "qiao/engine.h"
#include "qiao/model.h"
#include "qiao/sampler.h"
#include "qiao/tokenizer.h"

typedef struct engine_cli_opts {
  qiao_cli_model_args model; /* -m, --tokenizer; no -m: the default model */
  const char *backend;       /* --backend, default "cpu" */
  uint32_t n_threads;
  bool allow_fallback;
  uint32_t device_index;         /* --device N */
  bool batch_invariant;          /* --batch-invariant */
  bool exact_matmul;             /* --exact */
  const char *split;             /* --split, NULL = one device */
  qiao_engine_split_by split_by; /* --split-by */
  bool mpi;                      /* --mpi: this process is one rank of an mpirun job */
  uint32_t mpi_depth;            /* bench --mpi-depth: engines (MPI channels) per rank; 0 = 1 */
  qiao_sampler_params sampling;
  bool seed_given;
} engine_cli_opts;

void engine_cli_opts_init(engine_cli_opts *o);

/* Tries argv[*i] as a common flag (-m, --tokenizer, -t, --backend, --device,
 * --split, --split-by, --allow-fallback, --batch-invariant, --exact, --temp, --top-k, --top-p,
 * --min-p,
 * --repeat-penalty,
 * --presence-penalty, --frequency-penalty, --repeat-last-n, --seed).
 * Returns 1 when consumed (advancing *i past its value), 0 when not a common
 * flag, -1 on a usage error (after printing it). */
int engine_cli_parse_flag(engine_cli_opts *o, int argc, char **argv, int *i);

/* The help text of the common flags: the model and device ones, then the
 * sampling ones (commands that do not sample leave those out). */
void engine_cli_print_device_flags(FILE *f);
void engine_cli_print_sampling_flags(FILE *f);

/* Copies the backend, device, split, thread, fallback and batch-invariant
 * flags into engine options. */
void engine_cli_apply(const engine_cli_opts *o, qiao_engine_options *engine_options);

/* A status of qiao_engine_create or qiao_engine_plan: one about the split
 * names the --split flag. */
qiao_status *engine_cli_split_status(qiao_status *st);

/* Prints the placement (each stage's device, layers and bytes) to f. */
void engine_cli_print_placement(FILE *f, const qiao_engine_stage_info *stages, uint32_t n);
/* --mpi: warns on stderr when this rank may run on fewer CPUs than
 * n_threads (0: the backend's choice, never more than it may use): mpirun
 * binds ranks to cores (2 ranks or fewer) or sockets by default, and threads
 * beyond the CPUs a process may use take turns on them, each op waiting a
 * time slice. */
void engine_cli_warn_mpi_threads(int rank, uint32_t n_threads);

/* --mpi, ranks > 0: "MPI rank R: layers F-L on cpu:0 (3-3), opencl:0 (4-4)",
 * the engine's own stages (not the external ones), on one line. */
void engine_cli_print_rank_stages(FILE *f, int rank, const qiao_engine *engine);

typedef struct engine_cli_session {
  qiao_model *model;
  qiao_tokenizer *tokenizer; /* NULL when the model has none */
  qiao_engine *engine;
  struct qiao_pipeline *pipeline; /* --mpi */
  bool worker;                    /* --mpi, rank > 0: it served its layers and is done */
  /* --mpi with mpi_depth D > 1: engines 1 to D-1 (engine is the first), one
   * MPI channel each, so that D groups of sequences have passes in flight
   * together (bench's micro-batches). */
  qiao_engine *more[15];
  uint32_t n_more;
} engine_cli_session;

/* The tokenizer of an open model: the --tokenizer file when given (unless
 * it was attached to a llama2.c model), else the model's own; *out is NULL
 * when the model has none. */
qiao_status *engine_cli_open_tokenizer(const qiao_cli_model_args *a, const qiao_model *model,
                                       qiao_tokenizer **out);

/* Opens the model, its tokenizer (or --tokenizer) and an engine with
 * `engine_options` (backend and threads are filled from the flags). With
 * --mpi the engine holds this rank's share of the layers; on ranks > 0 it
 * then serves rank 0's passes until rank 0 is done, and s->worker is set
 * (the command just ends, with engine_cli_end). */
qiao_status *engine_cli_open(const engine_cli_opts *o, qiao_engine_options *engine_options,
                             engine_cli_session *out);
void engine_cli_close(engine_cli_session *s);

/* The end of a command: prints st's error (if any), closes the session (with
 * --mpi: stops the other ranks, or ends the job after an error) and returns
 * the exit code. */
int engine_cli_end(engine_cli_session *s, qiao_status *st);

/* The engine part of engine_cli_open, for a session whose model the caller
 * opened (out->model set; out->engine, pipeline and worker filled in). On
 * failure the caller closes the session. */
qiao_status *engine_cli_create_engine(const engine_cli_opts *o, qiao_engine_options *eo,
                                      engine_cli_session *out);

/* Generation of one sequence. */
typedef struct engine_cli_gen {
  uint32_t max_new;         /* tokens to generate at most */
  bool print_ids;           /* print ids instead of text */
  const char *const *stops; /* stop strings */
  size_t n_stops;
  FILE *out; /* where text or ids go */
  /* Optional: the text goes here instead of `out` (e.g. chat telling a
   * reasoning model's thinking from its answer). */
  void (*on_text)(void *ctx, const char *text, size_t len);
  void *on_text_ctx;
  /* Optional: constrained decoding (grammar_cli.h). */
  struct grammar_cli *grammar;
  /* Filled in: */
  uint32_t n_generated;
  double prefill_s, decode_s;
  int32_t *generated; /* optional (max_new) ids generated */
} engine_cli_gen;

/* Feeds `prompt` into sequence `seq` after what it holds (positions start at
 * its length), then samples until EOS, a stop string or max_new tokens,
 * streaming the text (or ids). Every generated token except the last one is
 * fed back, so afterwards the sequence holds the prompt and the reply but
 * not its final token (unless generation ended at EOS, which is never fed);
 * callers that continue use qiao_engine_seq_length to see what it holds. */
qiao_status *engine_cli_generate(engine_cli_session *s, int32_t seq, qiao_sampler *sampler,
                                 const int32_t *prompt, size_t n_prompt, engine_cli_gen *g);

double engine_cli_now(void);

#endif
