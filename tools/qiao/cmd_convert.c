/* qiao convert IN OUT [--type T] [--tokenizer tok.bin] [--verbose]: writes
 * any model qiao can open as .qiao or .gguf (chosen by OUT's extension),
 * optionally converting or quantizing the weight matrices (plain types or
 * llama.cpp's per-tensor mixes). Progress goes to stderr; memory stays
 * bounded (tensors are streamed one at a time). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "qiao/model.h"

static void usage(FILE *f) {
  fprintf(f, "usage: qiao convert IN OUT [--type T] [--tokenizer tok.bin] [--verbose] [--quiet]\n"
             "  IN            a .qiao or .gguf file, a Hugging Face directory or a llama2.c .bin\n"
             "                (or -m IN)\n"
             "  OUT           ends in .qiao or .gguf\n"
             "  --type T      convert weight matrices (2-D, and 3-D expert stacks) to T:\n"
             "                f32 f16 bf16 q8_0 q4_0 (every weight matrix);\n"
             "                q4_k q5_k q6_k q2_k q3_k q4_1 q5_0 q5_1 f8_e4m3_b128 iq4_nl\n"
             "                iq4_xs (every weight matrix llama.cpp quantizes: not norms,\n"
             "                not MoE routers);\n"
             "                q4_k_m q4_k_s q5_k_m q5_k_s (llama.cpp's per-tensor mixes);\n"
             "                1-D tensors (norms, biases) become f32; rows that are not whole\n"
             "                blocks fall back to another type (said on stderr);\n"
             "                default: keep every type (block-scaled FP8 weights, which\n"
             "                GGUF cannot hold, need a --type for a .gguf OUT)\n"
             "  --tokenizer   the tok.bin of a llama2.c model\n"
             "  --verbose     each converted tensor's RMS reconstruction error on stderr\n"
             "  --quiet       no progress on stderr\n");
}

/* --type: a dtype name, or a llama.cpp mix name with its base type; in any
 * case ("Q4_K_M" as llama-quantize spells it). */
static bool parse_type(const char *given, qiao_dtype *dtype, qiao_quant_mix *mix) {
  char name[16];
  size_t len = strlen(given);
  if (len >= sizeof(name)) return false;
  for (size_t i = 0; i <= len; i++)
    name[i] = (char)tolower((unsigned char)given[i]);
  static const struct {
    const char *name;
    qiao_dtype base;
    qiao_quant_mix mix;
  } mixes[] = {
      {"q4_k_m", QIAO_DTYPE_Q4_K, QIAO_MIX_Q4_K_M},
      {"q4_k_s", QIAO_DTYPE_Q4_K, QIAO_MIX_Q4_K_S},
      {"q5_k_m", QIAO_DTYPE_Q5_K, QIAO_MIX_Q5_K_M},
      {"q5_k_s", QIAO_DTYPE_Q5_K, QIAO_MIX_Q5_K_S},
  };
  for (size_t i = 0; i < sizeof(mixes) / sizeof(mixes[0]); i++)
    if (strcmp(name, mixes[i].name) == 0) {
      *dtype = mixes[i].base;
      *mix = mixes[i].mix;
      return true;
    }
  *mix = QIAO_MIX_NONE;
  qiao_status *st = qiao_dtype_from_name(name, dtype);
  bool ok = st == NULL && *dtype != QIAO_DTYPE_I32;
  qiao_status_free(st);
  return ok;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a > b && strcmp(s + a - b, suffix) == 0;
}

/* Weight matrices whose rows are not whole blocks of the type asked for
 * them fall back to another (docs/spec/format.md §4.2); said even with
 * --quiet, since it describes the output rather than the progress. */
static qiao_status *note_fallbacks(const qiao_model *m, const qiao_convert_options *copts,
                                   const qiao_quantize_options *quant) {
  for (uint64_t i = 0; i < qiao_model_tensor_count(m); i++) {
    qiao_dtype got, wanted;
    qiao_status *st = qiao_convert_tensor_dtype(m, copts, quant, i, &got, &wanted);
    if (st) return st;
    if (got == wanted) continue;
    const qiao_tensor *t = qiao_model_tensor_at(m, i);
    const qiao_dtype_info *info = qiao_dtype_get_info(wanted);
    fprintf(stderr,
            "note: %s: rows of %llu elements are not whole %s blocks of %u; written as %s\n",
            t->name, (unsigned long long)t->shape[t->n_dims - 1], info->name, info->block_elems,
            qiao_dtype_get_info(got)->name);
  }
  return NULL;
}

int qiao_cmd_convert(int argc, char **argv) {
  qiao_cli_model_args in = {0}; /* IN: the model to convert */
  const char *out = NULL, *type = NULL;
  bool quiet = false, verbose = false;
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
    } else if (strcmp(a, "--verbose") == 0) {
      verbose = true;
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
  qiao_quantize_options quant = {.struct_size = sizeof(quant), .report_error = verbose};
  if (ends_with(out, ".qiao"))
    copts.format = QIAO_FILE_QIAO;
  else if (ends_with(out, ".gguf"))
    copts.format = QIAO_FILE_GGUF;
  else
    return qiao_cli_usage_error("convert: OUT must end in .qiao or .gguf: '%s'", out);
  if (type != NULL && !parse_type(type, &copts.weight_dtype, &quant.mix))
    return qiao_cli_usage_error("convert: --type: expected f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, "
                                "q6_k, q2_k, q3_k, q4_1, q5_0, q5_1, f8_e4m3_b128, iq4_nl, iq4_xs, "
                                "q4_k_m, q4_k_s, "
                                "q5_k_m or q5_k_s, got '%s'",
                                type);
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
  if (copts.weight_dtype != QIAO_DTYPE_COUNT) st = note_fallbacks(m, &copts, &quant);
  if (st == NULL) st = qiao_model_write_quantized(m, out, &copts, &quant);
  qiao_model_close(m);
  if (st) return qiao_cli_fail(st);
  return 0;
}
