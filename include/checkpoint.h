/* Checkpoints: a model, its vocabulary and the training state in one
 * safetensors file (docs/FORMAT.md). Loading validates every tensor and
 * the config against the shapes before anything is trusted. */
#ifndef TF_CHECKPOINT_H
#define TF_CHECKPOINT_H

#include <stdint.h>

#include "config.h"
#include "model.h"
#include "tokenizer.h"

#define CHECKPOINT_FORMAT "tokenformer-1"

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
} TrainState;

void train_state_init(TrainState *ts);

/* with_optimizer: include Adam moments (needed for an exact --resume). */
int checkpoint_save(const char *path, const Model *m, const Vocab *v, const TrainState *ts,
                    int with_optimizer, char *err);
/* Builds *m on ops (activations not allocated), fills vocab and train state. */
int checkpoint_load(const char *path, const Ops *ops, Model *m, Vocab *v, TrainState *ts,
                    char *err);

/* The best val loss recorded in a checkpoint's header (INFINITY when the file
 * is missing or unreadable); reads no tensors. */
float checkpoint_peek_best_val(const char *path);

#endif
