/* The subcommands of `qiao`. Each lives in cmd_<name>.c, takes the arguments
 * after its name (argv[0] is the subcommand name) and returns the exit code:
 * 0 success, 1 failure, 2 usage error. */
#ifndef QIAO_COMMANDS_H
#define QIAO_COMMANDS_H

int qiao_cmd_inspect(int argc, char **argv);
int qiao_cmd_validate(int argc, char **argv);
int qiao_cmd_convert(int argc, char **argv);
int qiao_cmd_run(int argc, char **argv);
int qiao_cmd_logits(int argc, char **argv);
int qiao_cmd_bench(int argc, char **argv);
int qiao_cmd_bench_serve(int argc, char **argv);
int qiao_cmd_tokenize(int argc, char **argv);
int qiao_cmd_detokenize(int argc, char **argv);
int qiao_cmd_template(int argc, char **argv);
int qiao_cmd_chat(int argc, char **argv);
int qiao_cmd_serve(int argc, char **argv);
int qiao_cmd_devices(int argc, char **argv);
int qiao_cmd_conformance(int argc, char **argv);

#endif
