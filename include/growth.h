/* Model growth (docs/MODEL.md, growth): append rows (parameter tokens) to
 * Pattentions, or remove the least important ones (ranked by rank.h). Both
 * work on models held by the CPU backend (checkpoint to checkpoint). */
#ifndef TF_GROWTH_H
#define TF_GROWTH_H

#include <stdint.h>

#include "model.h"

typedef enum {
    GROW_ZERO_KEY = 0, /* keys 0, values random, tau kept: the function is unchanged */
    GROW_RANDOM = 1    /* official release: keys and values random, tau = sqrt(n_new) */
} GrowInit;

/* Per-Pattention row changes: delta[l * PATT_PER_LAYER + w] rows to add
 * (> 0) or remove (< 0). */
typedef struct {
    const int *delta;
    /* New Pattention rows (GrowInit picks the defaults: zero-key 0 and kept,
     * random 0.02 and reset); the baselines' FFN ignores both. */
    float key_scale; /* std of new keys (0 keeps the function exactly) */
    int tau_reset;   /* 1: tau = sqrt(n_new) of each grown Pattention; 0: kept */
    uint64_t seed;
    /* For removal: importance[l * PATT_PER_LAYER + w][row]; lowest go first. */
    float *const *importance;
} GrowSpec;

/* Build *dst (CPU) from src with the rows changed. New rows get zero Adam
 * moments and a segment born at src->step (own bias correction); kept rows
 * keep their values, moments and segments. */
int model_resize(const Model *src, Model *dst, const GrowSpec *g, char *err);

/* Where `grow --add-layers` puts the new blocks. */
typedef enum {
    GROW_AT_END = 0,   /* after the last block */
    GROW_AT_INTERLEAVE /* spread evenly: new block k after old block floor(k n_layer / n_new) */
} GrowAt;

/* The most blocks a model may have (what checkpoints accept). */
#define MAX_LAYERS 256

/* Build *dst (CPU) from src with n_new blocks inserted. Old blocks keep their
 * weights, moments, segments and tau. A new block is initialized as a fresh
 * layer (tau = sqrt(n), rows as the block it follows) except that its output
 * side (tokenformer: the values of P_o and P_ffn; the baselines: attn.o.weight
 * and mlp.down) is zero, so the function is unchanged;
 * its parameters are one segment born at src->step with zero moments. */
int model_add_layers(const Model *src, Model *dst, int n_new, GrowAt at, uint64_t seed, char *err);

#endif
