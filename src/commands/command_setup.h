/* What the commands share beyond cli.h: the flags every command that runs a
 * model takes (--device --threads --seed --precision, one table in
 * command_setup.c, from which their options and --help lines come, so that
 * every command shows them the same way), and the setup they would each
 * repeat: a checkpoint's model on the device those flags name, at their
 * precision; the text it was trained on, split as it was; a batch. */
#ifndef TF_COMMAND_SETUP_H
#define TF_COMMAND_SETUP_H

#include <getopt.h>
#include <stddef.h>

#include "checkpoint.h"
#include "data.h"
#include "model.h"
#include "ops.h"
#include "tokenizer.h"

/* The common flags a command takes, as a mask. train and bench take their
 * --seed from the config flags (TrainConfig.seed, stored in checkpoints),
 * not from here. */
enum {
    COMMON_DEVICE = 1 << 0,    /* --device D */
    COMMON_THREADS = 1 << 1,   /* --threads N */
    COMMON_SEED = 1 << 2,      /* --seed S */
    COMMON_PRECISION = 1 << 3, /* --precision P */
    COMMON_TF32 = 1 << 4       /* --tf32, the older spelling of --precision tf32 */
};
#define COMMON_RUN_FLAGS (COMMON_DEVICE | COMMON_THREADS | COMMON_PRECISION)

/* getopt values of the common flags: above a command's own, below
 * CLI_CONFIG_OPT_BASE. */
#define COMMON_OPT_BASE 900

typedef struct {
    const char *device; /* "auto" unless given */
    int threads;        /* 0: all cores */
    long seed;          /* the command's default unless given */
    int precision;      /* MatmulPrecision, MATMUL_FP32 unless given */
} CommonArgs;

void common_args_init(CommonArgs *c, long default_seed);
/* all = own (n_own entries), the common flags of mask, then (with_config)
 * CLI_CONFIG_OPTIONS, and the terminating entry; cap is all's size. */
void common_options(struct option *all, size_t cap, const struct option *own, size_t n_own, unsigned mask,
                    int with_config);
/* Parse opt's value into c when opt is a common flag: returns 1, else 0. */
int common_apply(int opt, const char *value, CommonArgs *c);
/* The help lines of the common flags of mask, in the table's order, then
 * -h's; the command's own words on what --seed seeds follow its line
 * (NULL: none). */
void common_print_help(unsigned mask, const char *seed_more);

/* A checkpoint loaded to run. */
typedef struct {
    const Ops *ops;
    Model m;
    Vocab v;
    TrainState ts;
} LoadedCheckpoint;

/* Open c's device (quietly), load the checkpoint at path onto it and put
 * its model at c's precision (on the CPU fp32, with cli_report_precision's
 * note when another was asked for; a reduced precision on a GPU says so on
 * stderr). One-line error and exit on failure. */
void setup_load_checkpoint(LoadedCheckpoint *lc, const char *path, const CommonArgs *c);
void setup_free_checkpoint(LoadedCheckpoint *lc);
/* Which text a command over a checkpoint reads (lineage.h lineage_read_text). */
typedef struct {
    const char *given; /* FILE, or NULL: the text the checkpoint records */
    int allow_other;   /* --allow-other-text */
    const char *ckpt;  /* the checkpoint's path, for messages */
    const char *how;   /* how to pass another text: the end of a refusal */
} TextChoice;
/* That text (checkpoint state ts, vocabulary v) as a dataset of windows of
 * block_size split into parts; *path (when not NULL) gets the text used.
 * One-line error and exit on failure. */
void setup_checkpoint_text(Dataset *d, const TextChoice *tc, const TrainState *ts, const Vocab *v, int block_size,
                           const int parts[3], const char **path);
/* setup_checkpoint_text in its two steps, for a command (train --resume)
 * that records the text before it splits it. First the text read: *chars,
 * what it is (*used) and its path (*path); returns 1 when it is other text
 * than the checkpoint's (tc->allow_other), else 0. */
int setup_read_checkpoint_text(const TextChoice *tc, const TrainState *ts, const Vocab *v, Text *chars,
                               TextRecord *used, const char **path);
/* Then the dataset, which takes chars over. The "loaded" line comes first:
 * always with report_load, else only when the load took a second or more. */
void setup_dataset(Dataset *d, Text *chars, const Vocab *v, int block_size, const int parts[3], const char *path,
                   int report_load);
/* B x T token ids then B x T targets in one block (free the tokens). */
int *setup_batch(int B, int T, int **targets);

#endif
