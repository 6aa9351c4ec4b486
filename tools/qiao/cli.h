/* Shared helpers of the qiao command-line tool: error printing at the edge,
 * strict number parsing of flags, and where the default model lives. */
#ifndef QIAO_CLI_H
#define QIAO_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/status.h"

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

#endif
