/* Shared by `qiao tokenize` and `qiao detokenize`: which tokenizer the
 * -m / --tokenizer flags name, and reading all of a file or stdin. */
#ifndef QIAO_TOKENIZER_CLI_H
#define QIAO_TOKENIZER_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "qiao/tokenizer.h"

/* -m PATH: a tokenizer.json / tokenizer.model (or a folder holding one and no
 * model) is opened as a tokenizer, anything else as a model (a .qiao, .gguf,
 * Hugging Face folder or llama2.c .bin; with --tokenizer tok.bin for the
 * latter). --tokenizer alone opens that file (e.g. a llama2.c tok.bin). With
 * neither, the default model. */
qiao_status *qiao_cli_open_tokenizer(const char *model_path, const char *tokenizer_path,
                                     qiao_tokenizer **out);

/* Reads all of `f` into a malloc'd NUL-terminated buffer. */
qiao_status *qiao_cli_read_all(FILE *f, const char *name, char **out, size_t *out_len);

#endif
