/* Mean loss of a model on seeded batches of a dataset split. */
#ifndef TF_EVALUATE_H
#define TF_EVALUATE_H

#include <stdint.h>

#include "data.h"
#include "model.h"

/* Mean cross-entropy (nats/char) over n_batches batches of shape
 * (m->B_alloc, m->T_alloc) drawn with a generator seeded by `seed`: the same
 * seed gives the same batches, so two checkpoints can be compared exactly.
 * tok/tgt: host scratch of B*T ints each. Dropout off. */
float evaluate_loss(Model *m, const Dataset *d, Split split, int n_batches, uint64_t seed,
                    int *tok, int *tgt);

/* Called after each forward of evaluate_loss (importance ranking uses it). */
typedef void (*EvalHook)(Model *m, void *ctx);
float evaluate_loss_hooked(Model *m, const Dataset *d, Split split, int n_batches, uint64_t seed,
                           int *tok, int *tgt, EvalHook hook, void *ctx);

/* The exact mean cross-entropy (nats/token) over a whole split: the split is
 * cut into non-overlapping windows of m->T_alloc inputs (the last one
 * shorter), so every token but the first is predicted exactly once, from
 * the context inside its window. Batches of up to m->B_alloc windows;
 * deterministic. *count: the tokens predicted (split length - 1). */
double evaluate_full(Model *m, const Dataset *d, Split split, int *tok, int *tgt, size_t *count);

#endif
