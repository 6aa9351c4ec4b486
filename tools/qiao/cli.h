/* Shared helpers of the qiao command-line tool: error printing at the edge,
 * strict parsing of flag values, the flags every command shares (--help,
 * --backend, MODEL / -m / --tokenizer) and opening the model they name.
 * The engine flags live in engine_cli.h. */
#ifndef QIAO_CLI_H
#define QIAO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qiao/model.h"
#include "qiao/status.h"
#include "qiao/tokenizer.h"

/* Prints "error: <message>" once on stderr, frees the status, returns 1. */
int qiao_cli_fail(qiao_status *status);

/* Prints "error: <formatted>" on stderr and returns 2 (usage errors). */
int qiao_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Strict parsers for flag values: the whole text must be a number in range.
 * On failure they return a status naming the flag. */
qiao_status *qiao_cli_parse_u32(const char *flag, const char *text, uint32_t min, uint32_t max,
                                uint32_t *out);
qiao_status *qiao_cli_parse_u64(const char *flag, const char *text, uint64_t *out);
qiao_status *qiao_cli_parse_f32(const char *flag, const char *text, float min, float max,
                                float *out);
/* "1 2 3" or "1,2,3" -> malloc'd ids (each must be >= 0 and fit in int32). */
qiao_status *qiao_cli_parse_ids(const char *flag, const char *text, int32_t **out_ids,
                                size_t *out_n);

/* The shared folder: $QIAO_SHARED, else "../shared". */
const char *qiao_cli_shared_dir(void);
/* Writes the default model's path (stories260K.gguf in the shared folder)
 * into buf. */
void qiao_cli_default_model(char *buf, size_t size);

/* Returns the value of a flag that takes one, advancing *i; NULL (after
 * printing an error) when it is missing. */
const char *qiao_cli_flag_value(int argc, char **argv, int *i);

/* True for -h and --help (every command prints its usage on stdout, exit 0). */
bool qiao_cli_is_help(const char *arg);

/* "error: <command>: unknown flag '<arg>' (see 'qiao <command> --help')" or,
 * for a word that is not a flag, "unexpected argument"; returns 2. */
int qiao_cli_unknown_arg(const char *command, const char *arg);

/* --backend NAME|PATH: when argv[*i] is --backend, stores its value in
 * *backend and returns 1 (advancing *i), -1 when the value is missing (after
 * printing the error); 0 for any other argument. */
int qiao_cli_parse_backend(int argc, char **argv, int *i, const char **backend);

/* ---- The model a command works on ---------------------------------------
 * MODEL is given as a positional argument or with -m/--model; --tokenizer
 * names the tok.bin of a llama2.c .bin (or, for tokenize/detokenize, a
 * tokenizer file on its own). */
typedef struct qiao_cli_model_args {
  const char *path;           /* NULL: none given */
  const char *tokenizer_path; /* NULL: none given */
} qiao_cli_model_args;

/* Tries argv[*i] as -m/--model or --tokenizer and, when `positional`, a
 * word that is not a flag as MODEL. Returns 1 when consumed (advancing *i
 * past a flag's value), 0 when not, 2 on a usage error (missing value, a
 * second MODEL) after printing it. */
int qiao_cli_parse_model_arg(qiao_cli_model_args *a, bool positional, int argc, char **argv,
                             int *i);

/* Opens the model (the default model when no path was given) with the
 * --tokenizer file attached; the caller closes it. */
qiao_status *qiao_cli_open_model(const qiao_cli_model_args *a, bool progress, qiao_model **out);

/* The tokenizer of tokenize/detokenize: a tokenizer.json / tokenizer.model
 * (or a folder holding one and no config.json) is opened as a tokenizer,
 * anything else as a model whose tokenizer is taken. --tokenizer alone
 * opens that file (e.g. a llama2.c tok.bin). With neither, the default
 * model's. */
qiao_status *qiao_cli_open_tokenizer(const qiao_cli_model_args *a, qiao_tokenizer **out);

/* Reads all of `f` (at most 2 GiB) into a malloc'd NUL-terminated buffer. */
qiao_status *qiao_cli_read_all(FILE *f, const char *name, char **out, size_t *out_len);

#endif
