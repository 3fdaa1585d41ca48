/* Checkpoints: a model, its vocabulary and the training state in one
 * safetensors file (docs/FORMAT.md). Loading validates every tensor and
 * the config against the shapes before anything is trusted. */
#ifndef TF_CHECKPOINT_H
#define TF_CHECKPOINT_H

#include <stdint.h>

#include "config.h"
#include "lineage.h"
#include "model.h"
#include "tokenizer.h"

#define CHECKPOINT_FORMAT "tokenformer-1"
#define GROWTH_HISTORY_LEN 16384

typedef struct {
    int iter;            /* training iterations completed */
    float best_val;      /* best validation loss so far (INFINITY if none) */
    uint64_t data_rng;   /* the training batch sampler's state */
    int has_train;       /* train config below is meaningful */
    TrainConfig train;
    int stage_start;     /* iteration where the LR schedule (warmup+cosine) restarts */
    /* Data accounting, carried across --resume and grow (docs/MODEL.md 3a). */
    double train_tokens; /* tokens trained on so far */
    double train_flops;  /* cumulative training FLOPs so far */
    int split[3];        /* train/val/test parts of the text (DATA_SPLIT_DEFAULT) */
    int has_optimizer;   /* set by checkpoint_load: the file held Adam moments */
    size_t moments_zeroed; /* set by checkpoint_load: parameters that have moments in the model but
                              none in the file (frozen there, trained now): they start at zero */
    /* Growth history: a JSON array of the grow events ("" = none), metadata
     * 'growth_history' (docs/GROWTH.md) */
    char growth[GROWTH_HISTORY_LEN];
    /* train --grow points not yet reached, as "ITER:OP,..." ("" = none), so
     * that --resume of an interrupted run still grows (train_config 'grow_plan') */
    char grow_plan[2560];
    /* Lineage (include/lineage.h): the text trained on (text.known = 0 in
     * older checkpoints) and the run's id (0: none recorded). */
    TextRecord text;
    uint64_t run_id;
} TrainState;

/* One `grow` call's change of one kind, for the growth history. */
typedef struct {
    const char *kind;   /* "kv", "ffn" or "layers" */
    int amount;         /* rows (kv, ffn) or blocks (layers) added; < 0 removed */
    const char *init;   /* "zero-key", "random", "zero-output", "importance" (removal) */
    const char *layers; /* "all" or the --layers list; for kind layers, where they went */
    float key_scale;    /* std of new keys */
    const char *tau;    /* "keep" or "reset" */
} GrowthEvent;

void train_state_init(TrainState *ts);
/* Append an event at optimizer step `step`, iteration ts->iter; -1 with err
 * when the history would not fit. */
int train_state_add_growth(TrainState *ts, int step, const GrowthEvent *e, char *err);
/* The history as lines "  iteration I (step S): kind +N, ..." (nothing when empty). */
void growth_history_print(const TrainState *ts);

/* with_optimizer: include Adam moments (needed for an exact --resume). */
int checkpoint_save(const char *path, const Model *m, const Vocab *v, const TrainState *ts,
                    int with_optimizer, char *err);
/* Builds *m on ops (activations not allocated), fills vocab and train state.
 * The rows frozen as the file records them; Adam moments for every row
 * (zero for rows that the file, frozen there, holds none of). */
int checkpoint_load(const char *path, const Ops *ops, Model *m, Vocab *v, TrainState *ts,
                    char *err);

/* How a training run that resumes a checkpoint freezes its rows (train --train). */
typedef enum {
    CKPT_UNFREEZE = 0, /* all: every row trains, moments for all (zero where the file has none) */
    CKPT_FREEZE_OLD,   /* new: rows born before the latest grow frozen (model_freeze_old) */
    CKPT_TRAIN_LAST    /* last:N: only the last N blocks and the final norm train
                        * (model_train_last_blocks) */
} CheckpointFreezeMode;
/* Frozen rows get no moments, and those the file holds for them are dropped. */
typedef struct {
    CheckpointFreezeMode mode;
    int last_blocks; /* CKPT_TRAIN_LAST: N */
} CheckpointFreeze;
/* checkpoint_load for train --resume: the rows frozen as `freeze` says, and
 * Adam moments only for the rows that train. An N outside 1 .. n_layer is an error. */
int checkpoint_load_for_training(const char *path, const Ops *ops, CheckpointFreeze freeze, Model *m, Vocab *v,
                                 TrainState *ts, char *err);

/* The best val loss recorded in a checkpoint's header (INFINITY when the file
 * is missing or unreadable); reads no tensors. */
float checkpoint_peek_best_val(const char *path);

/* What decides whether two checkpoints' losses compare: the same text (by
 * content), tokenizer and vocabulary, arch and split; and what a message
 * about a checkpoint on disk names. */
typedef struct {
    int iter;
    float best_val;
    uint64_t run_id;
    TextRecord text;
    int arch;
    int bytes;           /* byte tokenizer */
    int vocab_size;
    uint64_t vocab_hash; /* FNV-1a of the 'vocab' metadata */
    int split[3];
} CheckpointLineage;

/* FNV-1a over what defines a fresh run at its start: the text's hash, the
 * tokenizer and vocabulary, the model config, the split and the training
 * settings of the config flags (not its length or growth plan), seed included. */
uint64_t checkpoint_run_digest(const Model *m, const Vocab *v, const TrainState *ts);

/* From a checkpoint's header (no tensors read); -1 when it is not a
 * readable checkpoint. */
int checkpoint_peek_lineage(const char *path, CheckpointLineage *out);
/* The same for a model in memory. */
void checkpoint_lineage_of(const Model *m, const Vocab *v, const TrainState *ts, CheckpointLineage *out);
/* NULL when a and b are one lineage, else what differs ("text", "tokenizer",
 * "vocabulary", "arch", "split"). A side without a text record (an older
 * checkpoint) is compared on the rest. */
const char *checkpoint_lineage_difference(const CheckpointLineage *a, const CheckpointLineage *b);

#endif
