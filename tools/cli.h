/*
 * The pocketllm command-line tool: tools/main.c dispatches to one cmd_<name>()
 * per file. Each command parses its own flags, prints --help, and returns the
 * process exit code (0 ok, 1 failure with a message on stderr, 2 usage error).
 */
#ifndef PL_CLI_H
#define PL_CLI_H

#include "pocketllm.h"

#include <stdio.h>

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_train_tokenizer(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_split(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_make_random(int argc, char **argv);
int cmd_pack(int argc, char **argv);
int cmd_pick(int argc, char **argv);

/* Print "pocketllm: <what>: <pl_last_error()>" to stderr; returns 1. */
int cli_fail(const char *what);
/* Parse "1,2,3" (commas or spaces) into a malloc'd array; 0 ok, 2 bad input. */
int cli_parse_ids(const char *s, pl_token **out, int *n_out);
/* log-softmax of logits[target] (double precision) and argmax. */
double cli_logprob(const float *logits, int n_vocab, int target);
int cli_argmax(const float *logits, int n_vocab);
/* Read a whole file (NUL-terminated); NULL with a message on failure. */
char *cli_read_file(const char *path, size_t *len);

/* Memory options (tools/cli_mem.c): argv[*i] is one of them -> applied, *i
 * moved past its value, 1; not one -> 0; a bad value -> message, -1. */
int cli_mem_option(int argc, char **argv, int *i, pl_model_params *mp, pl_ctx_params *cp);
void cli_mem_usage(FILE *fp);
/* --kv-type VALUE: "f16" or "q8_0" -> *kv_type (pl_kv_type), 0; else a
 * message naming opt, -1. */
int cli_kv_type(const char *opt, const char *v, int *kv_type);
/* One or two lines: measured memory (snapshot) beside the model's plan. */
void cli_mem_report(FILE *fp, const pl_model *model, const pl_ctx_params *cp);

#endif
