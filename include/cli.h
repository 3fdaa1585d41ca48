/* The command-line commands (one source file each under src/commands/)
 * and the helpers they share. */
#ifndef TF_CLI_H
#define TF_CLI_H

#include <getopt.h>

#include "config.h"
#include "model.h"
#include "ops.h"

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_grow(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Pick the backend for --device (cpu|cuda|auto), set threads, say which. */
const Ops *cli_open_device(const char *name, int threads, int quiet);
/* Before sampling on the CPU: OpenBLAS single-threaded (the OpenMP threads
 * split the large products; OpenBLAS's own threads, woken by the small
 * products of a prompt, would spin beside the decoding thread), and one
 * OpenMP thread for a model too small for any product to split. */
void cli_threads_for_decoding(const Ops *ops, const Model *m);
/* Parse a flag value or die naming the flag: "--lr: expected a number in ...". */
/* --precision value -> MatmulPrecision; dies with a one-line error otherwise. */
int cli_precision(const char *value);
/* The stderr line that says which matmul precision runs (on the CPU: a note
 * that --precision has no effect). */
void cli_report_precision(const Ops *ops, int precision);
/* Put the model at the --precision asked for where its backend has it: on
 * the CPU, which computes in fp32 only, at fp32 (cli_report_precision's
 * note says so). Dies with a one-line error otherwise. */
void cli_set_model_precision(Model *m, int requested);
long cli_int(const char *flag, const char *value, long lo, long hi);
double cli_float(const char *flag, const char *value, double lo, double hi);
/* getopt_long's error for an unknown flag, turned into our one-line error. */
void cli_unknown_flag(const char *cmd, char **argv);

/* Model/training config flags shared by train, bench and info (documented in
 * train --help; command_setup.h common_options puts them after a command's
 * own). Returns 1 when opt was one of them. */
#define CLI_CONFIG_OPT_BASE 1000
extern const struct option CLI_CONFIG_OPTIONS[];
int cli_apply_config_flag(int opt, const char *value, ModelConfig *mc, TrainConfig *tc,
                          int *model_flag_seen);
void cli_print_config_help(void);
/* The preset named by --preset P or --preset=P anywhere in argv (the last one
 * given), read before the other flags so that they override it wherever they
 * stand; tiny when none. *given (when not NULL) is the name given, or NULL.
 * An unknown preset is a one-line error. */
const Preset *cli_preset_arg(int argc, char **argv, const char **given);
#define CLI_MAX_CONFIG_FLAGS 64
/* seen[i] marks config flag i (opt - CLI_CONFIG_OPT_BASE) as given
 * ("arch" and the long flag names without dashes). */
int cli_config_flag_seen(const int *seen, const char *flag);
/* The arch's defaults (FFN width, transformerpp's full RoPE) for the
 * model flags not given. */
void cli_apply_arch_defaults(ModelConfig *mc, const int *seen);
/* Copy into dst the training fields whose flags were given. */
void cli_override_train_config(TrainConfig *dst, const TrainConfig *given, const int *seen);

/* --resume: the model flags given (seen) whose value differs from the
 * checkpoint's, as "--d-model 64 (checkpoint: 32), ..." ("" when none). */
void cli_model_flags_differing(const int *seen, const ModelConfig *given, const ModelConfig *ckpt, char *out,
                               size_t len);
/* The training settings that differ, as "--lr 0.001 -> 0.0005, ..." ("" when none). */
void cli_train_settings_changed(const TrainConfig *before, const TrainConfig *after, char *out, size_t len);

#endif
