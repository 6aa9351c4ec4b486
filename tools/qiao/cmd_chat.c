/* qiao chat: a conversation in the terminal (or from a pipe: one user turn
 * per line until EOF), rendered with the model's own chat template, the
 * reply streamed as it is generated. The KV cache is kept across turns: each
 * turn feeds only the tokens after the longest prefix the cache already
 * holds. Without a template (e.g. stories260K) it continues plain text.
 *
 * Reasoning models (DeepSeek-R1, Qwen3, QwQ) think between <think> and
 * </think> before they answer: the thinking goes to stderr (dimmed on a
 * terminal, after "[thinking] " otherwise; --hide-reasoning drops it), the
 * answer to stdout, and only the answer goes back into the history, as the
 * models' templates want (serve/reasoning.h tells the two apart). */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "engine_cli.h"
#include "grammar_cli.h"
#include "qiao/template.h"
#include "serve/reasoning.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: qiao chat [-m MODEL] [--system TEXT] [-n MAX_REPLY_TOKENS] [--verbose] [flags]\n"
          "Reads user turns, one per line, from stdin until EOF; '/reset' starts over.\n"
          "--verbose says on stderr how much of each prompt the KV cache already held.\n"
          "With --json-schema or --grammar every reply is constrained (from its start;\n"
          "a reasoning model's --json-schema applies to the answer after its thinking).\n"
          "--reasoning-format auto|deepseek|none: a reasoning model's <think> part is shown\n"
          "on stderr and kept out of the history (deepseek; auto: when the vocabulary has\n"
          "<think> and </think> tokens), or left in the reply (none).\n"
          "--hide-reasoning: do not show the thinking.\n");
  grammar_cli_print_flags(f);
  engine_cli_print_device_flags(f);
  engine_cli_print_sampling_flags(f);
}

typedef struct chat {
  engine_cli_session s;
  qiao_template *tmpl; /* NULL: plain text continuation */
  json_object *messages;
  const char *system;
  int32_t seq;
  int32_t *held; /* the tokens the sequence holds, in order */
  size_t n_held, cap_held;
  char bos[256], eos[256];
  bool verbose;
  uint32_t n_turns;
  grammar_cli grammar; /* .grammar NULL: unconstrained */
  /* Reasoning models: the reply's thinking apart from its answer. */
  bool reasoning, hide_reasoning;
  bool dim;           /* stderr is a terminal: the thinking is dimmed */
  bool think_open;    /* the turn's prompt ended inside a thinking part */
  bool thinking_open; /* thinking is being shown on stderr */
  bool io_error;      /* writing the reply failed */
  serve_reasoning split;
  serve_buf answer; /* the reply after the thinking: what the history keeps */
} chat;

static qiao_status *reserve_held(chat *c, size_t need) {
  if (need <= c->cap_held) return NULL;
  size_t cap = c->cap_held ? c->cap_held : 1024;
  while (cap < need)
    cap *= 2;
  int32_t *grown = realloc(c->held, cap * sizeof(int32_t));
  if (grown == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "chat: out of memory");
  c->held = grown;
  c->cap_held = cap;
  return NULL;
}

static void reset(chat *c) {
  json_object_put(c->messages);
  c->messages = json_object_new_array();
  if (c->system != NULL && c->tmpl != NULL) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string("system"));
    json_object_object_add(m, "content", json_object_new_string(c->system));
    json_object_array_add(c->messages, m);
  }
  qiao_status_free(qiao_engine_seq_truncate(c->s.engine, c->seq, 0));
  c->n_held = 0;
}

/* The token ids of the whole conversation so far plus the generation prompt. */
static qiao_status *render_prompt(chat *c, const char *user, int32_t **ids, size_t *n) {
  qiao_encode_options enc = {sizeof(enc), false, true};
  if (c->tmpl == NULL) { /* plain text: what the user typed continues the text */
    enc.add_bos = c->n_held == 0 && qiao_tokenizer_adds_bos(c->s.tokenizer);
    enc.parse_special = false;
    QIAO__TRY(qiao_tokenizer_encode(c->s.tokenizer, user, strlen(user), &enc, ids, n));
    QIAO__TRY(reserve_held(c, c->n_held + *n));
    int32_t *all = malloc((c->n_held + *n) * sizeof(int32_t));
    if (all == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "chat: out of memory");
    memcpy(all, c->held, c->n_held * sizeof(int32_t));
    memcpy(all + c->n_held, *ids, *n * sizeof(int32_t));
    free(*ids);
    *ids = all;
    *n += c->n_held;
    return NULL;
  }
  json_object *m = json_object_new_object();
  json_object_object_add(m, "role", json_object_new_string("user"));
  json_object_object_add(m, "content", json_object_new_string(user));
  json_object_array_add(c->messages, m);
  json_object *vars = json_object_new_object();
  json_object_object_add(vars, "messages", json_object_get(c->messages));
  json_object_object_add(vars, "add_generation_prompt", json_object_new_boolean(1));
  json_object_object_add(vars, "bos_token", json_object_new_string(c->bos));
  json_object_object_add(vars, "eos_token", json_object_new_string(c->eos));
  size_t vlen = 0;
  const char *vtext = json_object_to_json_string_length(vars, JSON_C_TO_STRING_PLAIN, &vlen);
  char *text = NULL;
  size_t len = 0;
  qiao_status *st = qiao_template_render(c->tmpl, vtext, vlen, NULL, &text, &len);
  json_object_put(vars);
  c->think_open = st == NULL && c->reasoning && serve_reasoning_prompt_open(text, len);
  if (st == NULL) st = qiao_tokenizer_encode(c->s.tokenizer, text, len, &enc, ids, n);
  free(text);
  return st;
}

/* Whether the template's generation prompt opens the thinking (DeepSeek-R1,
 * QwQ): rendered for a one-message conversation. */
static bool template_opens_thinking(chat *c) {
  json_object *vars = json_object_new_object(), *msgs = json_object_new_array();
  json_object *m = json_object_new_object();
  json_object_object_add(m, "role", json_object_new_string("user"));
  json_object_object_add(m, "content", json_object_new_string("Hi"));
  json_object_array_add(msgs, m);
  json_object_object_add(vars, "messages", msgs);
  json_object_object_add(vars, "add_generation_prompt", json_object_new_boolean(1));
  json_object_object_add(vars, "bos_token", json_object_new_string(c->bos));
  json_object_object_add(vars, "eos_token", json_object_new_string(c->eos));
  size_t vlen = 0;
  const char *vtext = json_object_to_json_string_length(vars, JSON_C_TO_STRING_PLAIN, &vlen);
  char *text = NULL;
  size_t len = 0;
  qiao_status *st = qiao_template_render(c->tmpl, vtext, vlen, NULL, &text, &len);
  bool open = st == NULL && serve_reasoning_prompt_open(text, len);
  qiao_status_free(st);
  free(text);
  json_object_put(vars);
  return open;
}

static void end_thinking(chat *c) {
  if (!c->thinking_open) return;
  fputs(c->dim ? "\033[0m\n" : "\n", stderr);
  fflush(stderr);
  c->thinking_open = false;
}

/* A settled piece of the reply: thinking to stderr, the answer to stdout. */
static void on_piece(void *ctx, bool reasoning, const char *text, size_t len) {
  chat *c = ctx;
  if (reasoning) {
    if (c->hide_reasoning) return;
    if (!c->thinking_open) fputs(c->dim ? "\033[2m" : "[thinking] ", stderr);
    c->thinking_open = true;
    fwrite(text, 1, len, stderr);
    fflush(stderr);
    return;
  }
  end_thinking(c);
  if (fwrite(text, 1, len, stdout) != len) c->io_error = true;
  fflush(stdout);
  if (!serve_buf_append(&c->answer, text, len)) c->io_error = true;
}

static void on_reply_text(void *ctx, const char *text, size_t len) {
  chat *c = ctx;
  if (!serve_reasoning_feed(&c->split, text, len, false, on_piece, c)) c->io_error = true;
}

static qiao_status *turn(chat *c, const char *user, qiao_sampler *sampler, uint32_t max_reply) {
  int32_t *ids = NULL;
  size_t n = 0;
  QIAO__TRY(render_prompt(c, user, &ids, &n));
  /* Reuse the longest prefix the cache already holds (at least one token
   * must be fed to get logits). */
  size_t keep = 0;
  while (keep < c->n_held && keep < n && c->held[keep] == ids[keep])
    keep++;
  if (keep == n) keep = n - 1;
  c->n_turns++;
  if (c->verbose)
    fprintf(stderr, "chat: turn %u: reused %zu of %zu prompt tokens from the cache\n", c->n_turns,
            keep, n);
  qiao_status *st = qiao_engine_seq_truncate(c->s.engine, c->seq, (uint32_t)keep);
  if (st == NULL) st = reserve_held(c, n + max_reply);
  int32_t *generated = malloc((max_reply + 1) * sizeof(int32_t));
  if (st == NULL && generated == NULL) st = qiao__error(QIAO_OUT_OF_MEMORY, "chat: out of memory");
  engine_cli_gen g = {0};
  g.max_new = max_reply;
  g.out = stdout;
  g.generated = generated;
  if (c->grammar.matcher != NULL) {
    qiao_grammar_matcher_reset(c->grammar.matcher);
    g.grammar = &c->grammar;
  }
  qiao_sampler_reset(sampler);
  if (c->reasoning) {
    serve_reasoning_begin(&c->split, c->think_open);
    c->answer.len = 0;
    c->io_error = false;
    g.on_text = on_reply_text;
    g.on_text_ctx = c;
  }
  if (st == NULL) st = engine_cli_generate(&c->s, c->seq, sampler, ids + keep, n - keep, &g);
  if (st == NULL && c->reasoning) { /* what was held back settles */
    if (!serve_reasoning_feed(&c->split, "", 0, true, on_piece, c)) c->io_error = true;
    end_thinking(c);
    if (c->io_error) st = qiao__error(QIAO_IO, "writing the reply failed");
  }
  if (st == NULL) {
    fputc('\n', stdout);
    fflush(stdout);
    /* What the sequence holds now: the prompt and the fed replies. */
    size_t held = qiao_engine_seq_length(c->s.engine, c->seq);
    memcpy(c->held, ids, n * sizeof(int32_t));
    size_t fed = held > n ? held - n : 0;
    memcpy(c->held + n, generated, fed * sizeof(int32_t));
    c->n_held = n + fed;
    if (c->tmpl != NULL) {
      char *reply = NULL;
      size_t len = 0;
      if (c->reasoning) { /* the answer only: the thinking stays out of the history */
        reply = strndup(c->answer.data ? c->answer.data : "", c->answer.len);
        len = c->answer.len;
        if (reply == NULL) st = qiao__error(QIAO_OUT_OF_MEMORY, "chat: out of memory");
      } else {
        st = qiao_tokenizer_decode(c->s.tokenizer, generated, g.n_generated, &reply, &len);
      }
      if (st == NULL) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string("assistant"));
        json_object_object_add(m, "content", json_object_new_string_len(reply, (int)len));
        json_object_array_add(c->messages, m);
      }
      free(reply);
    }
  }
  free(generated);
  free(ids);
  return st;
}

int qiao_cmd_chat(int argc, char **argv) {
  engine_cli_opts o;
  engine_cli_opts_init(&o);
  chat c;
  memset(&c, 0, sizeof(c));
  uint32_t max_reply = 512;
  const char *schema_path = NULL, *grammar_path = NULL;
  serve_reasoning_format reasoning_format = SERVE_REASONING_AUTO;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = engine_cli_parse_flag(&o, argc, argv, &i);
    if (r < 0) return 2;
    if (r > 0) continue;
    r = grammar_cli_parse_flag(&schema_path, &grammar_path, argc, argv, &i);
    if (r < 0) return 2;
    if (r > 0) continue;
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--verbose") == 0) {
      c.verbose = true;
    } else if (strcmp(a, "--hide-reasoning") == 0) {
      c.hide_reasoning = true;
    } else if (strcmp(a, "--reasoning-format") == 0) {
      const char *v = qiao_cli_flag_value(argc, argv, &i);
      if (v == NULL) return 2;
      if (!serve_reasoning_format_parse(v, &reasoning_format))
        return qiao_cli_usage_error("chat: --reasoning-format: not auto, deepseek or none");
    } else if (strcmp(a, "--system") == 0) {
      if ((c.system = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "-n") == 0) {
      const char *v = qiao_cli_flag_value(argc, argv, &i);
      if (v == NULL) return 2;
      qiao_status *st = qiao_cli_parse_u32("-n", v, 1, 1u << 20, &max_reply);
      if (st != NULL) return qiao_cli_fail(st) + 1;
    } else {
      return qiao_cli_unknown_arg("chat", a);
    }
  }
  if (!o.seed_given) o.sampling.seed = (uint64_t)time(NULL);
  qiao_engine_options eo = qiao_engine_default_options();
  eo.max_seqs = 1;
  qiao_status *st = engine_cli_open(&o, &eo, &c.s);
  if (st != NULL) return qiao_cli_fail(st);
  if (c.s.worker) return engine_cli_end(&c.s, NULL); /* --mpi, rank > 0: served its layers */
  if (c.s.tokenizer == NULL)
    return engine_cli_end(&c.s, qiao__error(QIAO_UNSUPPORTED, "chat: the model has no tokenizer"));
  qiao_string tmpl_text;
  qiao_status *no_tmpl = qiao_model_get_string(c.s.model, "tokenizer.chat_template", &tmpl_text);
  if (no_tmpl == NULL) {
    st = qiao_template_compile(tmpl_text.data, tmpl_text.len, &c.tmpl);
  } else {
    qiao_status_free(no_tmpl);
    fprintf(stderr, "chat: the model has no chat template; continuing plain text "
                    "(each line is appended to the story)\n");
  }
  c.reasoning =
      c.tmpl != NULL &&
      (reasoning_format == SERVE_REASONING_DEEPSEEK ||
       (reasoning_format == SERVE_REASONING_AUTO && serve_reasoning_vocab_has_tags(c.s.tokenizer)));
  c.dim = isatty(STDERR_FILENO);
  int32_t bos = qiao_tokenizer_bos_id(c.s.tokenizer);
  const int32_t *eos_ids = NULL;
  size_t n_eos = qiao_tokenizer_eos_ids(c.s.tokenizer, &eos_ids);
  const char *bos_text = bos >= 0 ? qiao_tokenizer_token_text(c.s.tokenizer, bos) : NULL;
  const char *eos_text = n_eos > 0 ? qiao_tokenizer_token_text(c.s.tokenizer, eos_ids[0]) : NULL;
  snprintf(c.bos, sizeof(c.bos), "%s", bos_text ? bos_text : "");
  snprintf(c.eos, sizeof(c.eos), "%s", eos_text ? eos_text : "");
  qiao_sampler *sampler = NULL;
  if (st == NULL)
    st = qiao_sampler_create(&o.sampling, qiao_engine_hparams(c.s.engine)->vocab_size, &sampler);
  /* With thinking, a schema constrains the answer after it. */
  const char *before =
      c.reasoning && schema_path != NULL ? serve_reasoning_gbnf(template_opens_thinking(&c)) : NULL;
  if (st == NULL)
    st = grammar_cli_open_after(schema_path, grammar_path, before, c.s.tokenizer,
                                qiao_engine_hparams(c.s.engine)->vocab_size, &c.grammar);
  if (st == NULL) st = qiao_engine_seq_create(c.s.engine, &c.seq);
  if (st == NULL) reset(&c);
  bool tty = isatty(STDIN_FILENO);
  char *line = NULL;
  size_t cap = 0;
  while (st == NULL) {
    if (tty) {
      fputs("> ", stderr);
      fflush(stderr);
    }
    ssize_t got = getline(&line, &cap, stdin);
    if (got < 0) break;
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
      line[--got] = '\0';
    if (strcmp(line, "/reset") == 0) {
      reset(&c);
      fprintf(stderr, "chat: history cleared\n");
      continue;
    }
    if (got == 0) continue;
    st = turn(&c, line, sampler, max_reply);
  }
  free(line);
  free(c.held);
  serve_reasoning_free(&c.split);
  serve_buf_free(&c.answer);
  json_object_put(c.messages);
  qiao_sampler_destroy(sampler);
  grammar_cli_close(&c.grammar);
  qiao_template_destroy(c.tmpl);
  return engine_cli_end(&c.s, st); /* with --mpi: stops the other ranks */
}
