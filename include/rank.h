/* Row ranking: how much each parameter token (row) of each Pattention
 * contributes to the model's output on data, which decides the rows that
 * shrinking (growth.h) removes first. */
#ifndef TF_RANK_H
#define TF_RANK_H

#include <stdint.h>

#include "data.h"
#include "model.h"

/* importance[l * PATT_PER_LAYER + w][j] = mean over the tokens of `batches`
 * val batches (evaluate_loss's, seeded by `seed`) of |S_tj|, the normalized
 * score of token t for row j, times ||V_j||: the size of row j's share of
 * the output. Zero-key rows score 0. Runs through the model's ops table, on
 * any backend; the activations must be allocated (B, T of the batches).
 * tok/tgt as evaluate_loss. Free with model_free_ranks. */
float **model_rank_rows(Model *m, const Dataset *d, int batches, uint64_t seed, int *tok,
                        int *tgt);
void model_free_ranks(const Model *m, float **importance);

#endif
