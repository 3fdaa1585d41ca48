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
    GrowInit init;
    uint64_t seed;
    /* For removal: importance[l * PATT_PER_LAYER + w][row]; lowest go first. */
    float *const *importance;
} GrowSpec;

/* Build *dst (CPU) from src with the rows changed. New rows get zero Adam
 * moments and a segment born at src->step (own bias correction); kept rows
 * keep their values, moments and segments. */
int model_resize(const Model *src, Model *dst, const GrowSpec *g, char *err);

#endif
