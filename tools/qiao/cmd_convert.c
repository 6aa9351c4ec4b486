/* qiao convert IN OUT [--type T] [--tokenizer tok.bin]: writes any model
 * qiao can open as .qiao or .gguf (chosen by OUT's extension), optionally
 * converting the weight matrices. Progress goes to stderr; memory stays
 * bounded (tensors are streamed one at a time). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "qiao/model.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: qiao convert IN OUT [--type f32|f16|bf16|q8_0|q4_0] [--tokenizer tok.bin] [--quiet]\n"
      "  IN            a .qiao or .gguf file, a Hugging Face directory or a llama2.c .bin\n"
      "  OUT           ends in .qiao or .gguf\n"
      "  --type        convert weight matrices (2-D, and 3-D expert stacks) to this type;\n"
      "                1-D tensors (norms, biases) become f32; default: keep every type\n"
      "  --tokenizer   the tok.bin of a llama2.c model\n"
      "  --quiet       no progress on stderr\n");
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a > b && strcmp(s + a - b, suffix) == 0;
}

int qiao_cmd_convert(int argc, char **argv) {
  const char *in = NULL, *out = NULL, *type = NULL;
  bool quiet = false;
  qiao_model_open_options opts = {.struct_size = sizeof(opts)};
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--tokenizer") == 0) {
      if ((opts.tokenizer_path = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(argv[i], "--type") == 0) {
      if ((type = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(argv[i], "--quiet") == 0) {
      quiet = true;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      return qiao_cli_usage_error("convert: unknown flag '%s'", argv[i]);
    } else if (in == NULL) {
      in = argv[i];
    } else if (out == NULL) {
      out = argv[i];
    } else {
      return qiao_cli_usage_error("convert: too many arguments");
    }
  }
  if (in == NULL || out == NULL) {
    usage(stderr);
    return 2;
  }
  qiao_convert_options copts = {
      .struct_size = sizeof(copts), .weight_dtype = QIAO_DTYPE_COUNT, .progress = !quiet};
  if (ends_with(out, ".qiao"))
    copts.format = QIAO_FILE_QIAO;
  else if (ends_with(out, ".gguf"))
    copts.format = QIAO_FILE_GGUF;
  else
    return qiao_cli_usage_error("convert: OUT must end in .qiao or .gguf: '%s'", out);
  if (type != NULL) {
    qiao_status *st = qiao_dtype_from_name(type, &copts.weight_dtype);
    if (st != NULL || copts.weight_dtype == QIAO_DTYPE_I32) {
      qiao_status_free(st);
      return qiao_cli_usage_error(
          "convert: --type: expected f32, f16, bf16, q8_0 or q4_0, got '%s'", type);
    }
  }
  opts.progress = !quiet;
  qiao_model *m;
  qiao_status *st = qiao_model_open(in, &opts, &m);
  if (st) return qiao_cli_fail(st);
  if (!quiet) fprintf(stderr, "converting %s (%s) -> %s\n", in, qiao_model_format(m), out);
  st = qiao_model_write(m, out, &copts);
  qiao_model_close(m);
  if (st) return qiao_cli_fail(st);
  return 0;
}
