/* qiao: one executable, many subcommands. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "qiao/version.h"

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"run", qiao_cmd_run, "generate text from a prompt"},
    {"chat", qiao_cmd_chat, "chat in the terminal with the model's template"},
    {"serve", qiao_cmd_serve, "an OpenAI-compatible HTTP server"},
    {"logits", qiao_cmd_logits, "write the logits of every prompt position"},
    {"bench", qiao_cmd_bench, "measure prefill and decode speed"},
    {"bench-serve", qiao_cmd_bench_serve, "load an OpenAI-compatible server and time it"},
    {"inspect", qiao_cmd_inspect, "show a model's architecture, tokenizer and tensors"},
    {"validate", qiao_cmd_validate, "check a model file completely"},
    {"convert", qiao_cmd_convert, "convert a model to .qiao or .gguf"},
    {"tokenize", qiao_cmd_tokenize, "text to token ids"},
    {"detokenize", qiao_cmd_detokenize, "token ids to text"},
    {"template", qiao_cmd_template, "render a chat template"},
    {"devices", qiao_cmd_devices, "list backends, devices and capabilities"},
    {"conformance", qiao_cmd_conformance, "certify a backend against the reference"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: qiao COMMAND [ARGS...]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nMODEL is a .qiao or .gguf file, a Hugging Face directory, or a llama2.c .bin\n"
             "(with --tokenizer tok.bin).\n"
             "'qiao COMMAND --help' describes each command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("qiao %s\n", qiao_version());
    return 0;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "error: unknown command '%s' (see 'qiao --help')\n", argv[1]);
  return 2;
}
