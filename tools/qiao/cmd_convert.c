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
      "                (or -m IN)\n"
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

/* Weight matrices whose rows are not whole blocks of the requested type are
 * written as f16 (docs/spec/format.md §4.2); said even with --quiet, since
 * it describes the output rather than the progress. */
static void note_fallbacks(const qiao_model *m, qiao_dtype want) {
  const qiao_dtype_info *info = qiao_dtype_get_info(want);
  for (uint64_t i = 0; i < qiao_model_tensor_count(m); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(m, i);
    if (t->n_dims < 2 || t->dtype == QIAO_DTYPE_I32) continue;
    uint64_t row = t->shape[t->n_dims - 1];
    if (row % info->block_elems != 0)
      fprintf(stderr,
              "note: %s: rows of %llu elements are not whole %s blocks of %u; written as f16\n",
              t->name, (unsigned long long)row, info->name, info->block_elems);
  }
}

int qiao_cmd_convert(int argc, char **argv) {
  qiao_cli_model_args in = {0}; /* IN: the model to convert */
  const char *out = NULL, *type = NULL;
  bool quiet = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' && in.path != NULL) { /* the word after IN */
      if (out != NULL) return qiao_cli_usage_error("convert: too many arguments");
      out = a;
      continue;
    }
    int r = qiao_cli_parse_model_arg(&in, true, argc, argv, &i);
    if (r == 2) return 2;
    if (r == 1) continue;
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--type") == 0) {
      if ((type = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "--quiet") == 0) {
      quiet = true;
    } else {
      return qiao_cli_unknown_arg("convert", a);
    }
  }
  if (in.path == NULL || out == NULL) {
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
  qiao_model *m;
  qiao_status *st = qiao_cli_open_model(&in, !quiet, &m);
  if (st) return qiao_cli_fail(st);
  /* Never write a file that `qiao validate` refuses. */
  st = qiao_model_check(m);
  if (st) {
    qiao_model_close(m);
    return qiao_cli_fail(qiao__annotate(st, "convert"));
  }
  if (!quiet) fprintf(stderr, "converting %s (%s) -> %s\n", in.path, qiao_model_format(m), out);
  if (copts.weight_dtype != QIAO_DTYPE_COUNT) note_fallbacks(m, copts.weight_dtype);
  st = qiao_model_write(m, out, &copts);
  qiao_model_close(m);
  if (st) return qiao_cli_fail(st);
  return 0;
}
