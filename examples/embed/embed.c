/* embed: qiao from a C program, against the installed libqiao.
 *
 *   cc embed.c $(pkg-config --cflags --libs qiao) -o embed
 *   ./embed MODEL "Once upon a time" 60
 *
 * Loads MODEL and, when it has a chat template, sends the prompt as a user
 * message through it (otherwise the prompt is continued as it is); encodes it
 * with the model's own tokenizer, generates up to N tokens greedily (argmax on
 * the device) and streams their text to stdout as it is decoded; the
 * generated ids go to stderr at the end. Every qiao call returns a status:
 * NULL is success, anything else an error whose message we print and free
 * (docs/api.md, "Errors"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qiao/engine.h>
#include <qiao/model.h>
#include <qiao/template.h>
#include <qiao/tokenizer.h>
#include <qiao/version.h>

/* Prints and frees a failed status; returns whether there was one. */
static int failed(qiao_status *status) {
  if (status == NULL) return 0;
  fprintf(stderr, "embed: %s: %s\n", qiao_code_name(qiao_status_code(status)),
          qiao_status_message(status));
  qiao_status_free(status);
  return 1;
}

/* Appends `s` to `out` as a JSON string; `out` has room for 6 bytes per
 * byte of `s` plus 2. */
static char *json_string(char *out, const char *s) {
  *out++ = '"';
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      *out++ = '\\';
      *out++ = (char)c;
    } else if (c < 0x20) {
      out += sprintf(out, "\\u%04x", c);
    } else {
      *out++ = (char)c;
    }
  }
  *out++ = '"';
  *out = '\0';
  return out;
}

/* The prompt as the model expects it: rendered with its chat template as one
 * user message when it has one (the template writes any BOS itself), else
 * the prompt text with the tokenizer's own BOS setting. Returns 1 on failure
 * (printed). */
static int prompt_ids(const qiao_model *model, const qiao_tokenizer *tokenizer, const char *prompt,
                      int32_t **out_ids, size_t *out_n) {
  qiao_string source;
  qiao_status *status = qiao_model_get_string(model, "tokenizer.chat_template", &source);
  if (status != NULL) { /* no template: a plain continuation */
    qiao_status_free(status);
    return failed(qiao_tokenizer_encode(tokenizer, prompt, strlen(prompt), NULL, out_ids, out_n));
  }
  const char *bos = qiao_tokenizer_token_text(tokenizer, qiao_tokenizer_bos_id(tokenizer));
  const int32_t *eos_ids;
  const char *eos = qiao_tokenizer_eos_ids(tokenizer, &eos_ids) > 0
                        ? qiao_tokenizer_token_text(tokenizer, eos_ids[0])
                        : NULL;
  if (bos == NULL) bos = "";
  if (eos == NULL) eos = "";
  char *vars = malloc(6 * (strlen(prompt) + strlen(bos) + strlen(eos)) + 128), *end = vars;
  if (vars == NULL) {
    fprintf(stderr, "embed: out of memory\n");
    return 1;
  }
  end += sprintf(end, "{\"messages\": [{\"role\": \"user\", \"content\": ");
  end = json_string(end, prompt);
  end += sprintf(end, "}], \"add_generation_prompt\": true, \"bos_token\": ");
  end = json_string(end, bos);
  end += sprintf(end, ", \"eos_token\": ");
  end = json_string(end, eos);
  end += sprintf(end, "}");
  qiao_template *tmpl = NULL;
  char *text = NULL;
  size_t text_len = 0;
  status = qiao_template_compile(source.data, (size_t)source.len, &tmpl);
  if (status == NULL)
    status = qiao_template_render(tmpl, vars, (size_t)(end - vars), NULL, &text, &text_len);
  if (status == NULL) {
    qiao_encode_options options = {sizeof(options), false, true}; /* no BOS, parse <|...|> */
    status = qiao_tokenizer_encode(tokenizer, text, text_len, &options, out_ids, out_n);
  }
  free(text);
  free(vars);
  qiao_template_destroy(tmpl);
  return failed(status);
}

/* Feeds `n` tokens at positions start.. of `seq`; *out_next is the argmax
 * after the last one. Returns 1 on failure (printed). */
static int step(qiao_engine *engine, int32_t seq, const int32_t *tokens, size_t n, uint32_t start,
                int32_t *out_next) {
  int32_t *seqs = malloc(n * sizeof(*seqs)), *positions = malloc(n * sizeof(*positions));
  int rc = 1;
  if (seqs == NULL || positions == NULL) {
    fprintf(stderr, "embed: out of memory\n");
  } else {
    for (size_t i = 0; i < n; i++) {
      seqs[i] = seq;
      positions[i] = (int32_t)(start + i);
    }
    qiao_batch batch = {n, tokens, seqs, positions, NULL}; /* NULL: output for the last only */
    rc = failed(qiao_engine_forward(engine, &batch, NULL, out_next));
  }
  free(seqs);
  free(positions);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: embed MODEL PROMPT [N]\n");
    return 2;
  }
  int n_max = argc > 3 ? atoi(argv[3]) : 64;
  fprintf(stderr, "embed: built with qiao %s, running with %s\n", QIAO_VERSION_STRING,
          qiao_version());

  qiao_model *model = NULL;
  qiao_tokenizer *tokenizer = NULL;
  qiao_engine *engine = NULL;
  qiao_detokenizer *detok = NULL;
  int32_t *prompt = NULL, *generated = NULL, seq = -1;
  size_t n_prompt = 0, n_generated = 0;
  int rc = 1;
  if (failed(qiao_model_open(argv[1], NULL, &model)) ||
      failed(qiao_tokenizer_create_from_model(model, &tokenizer)) ||
      prompt_ids(model, tokenizer, argv[2], &prompt, &n_prompt) ||
      failed(qiao_engine_create(model, NULL, &engine)) ||
      failed(qiao_detokenizer_create(tokenizer, &detok)) ||
      failed(qiao_engine_seq_create(engine, &seq)))
    goto done;
  generated = malloc((size_t)(n_max > 0 ? n_max : 1) * sizeof(*generated));
  if (generated == NULL || n_prompt == 0) goto done;

  /* The prompt in one pass, then one token per pass, streaming the text. */
  const int32_t *feed = prompt;
  size_t n_feed = n_prompt;
  uint32_t position = 0;
  while ((int)n_generated < n_max && position + n_feed <= qiao_engine_max_context(engine)) {
    int32_t next;
    if (step(engine, seq, feed, n_feed, position, &next)) goto done;
    position += (uint32_t)n_feed;
    if (qiao_tokenizer_is_eos(tokenizer, next)) break;
    generated[n_generated++] = next;
    const char *text;
    size_t len;
    if (failed(qiao_detokenizer_push(detok, next, &text, &len))) goto done;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    feed = &generated[n_generated - 1];
    n_feed = 1;
  }
  const char *rest;
  size_t rest_len;
  if (failed(qiao_detokenizer_flush(detok, &rest, &rest_len))) goto done;
  fwrite(rest, 1, rest_len, stdout);
  printf("\n");
  fprintf(stderr, "ids:");
  for (size_t i = 0; i < n_generated; i++)
    fprintf(stderr, " %d", generated[i]);
  fprintf(stderr, "\n");
  rc = 0;

done:
  free(generated);
  free(prompt); /* qiao_tokenizer_encode's array is the caller's, from malloc */
  if (engine != NULL) qiao_engine_seq_free(engine, seq);
  qiao_detokenizer_destroy(detok);
  qiao_engine_destroy(engine); /* before the model it borrows */
  qiao_tokenizer_destroy(tokenizer);
  qiao_model_close(model);
  return rc;
}
