#include "evaluate.h"

float evaluate_loss_hooked(Model *m, const Dataset *d, Split split, int n_batches, uint64_t seed,
                           int *tok, int *tgt, EvalHook hook, void *ctx) {
    Rng r;
    rng_seed(&r, seed);
    double total = 0.0;
    for (int k = 0; k < n_batches; k++) {
        dataset_batch(d, split, &r, m->B_alloc, m->T_alloc, tok, tgt);
        total += model_forward(m, tok, tgt, m->B_alloc, m->T_alloc, 0, 0);
        if (hook) hook(m, ctx);
    }
    return (float)(total / n_batches);
}

float evaluate_loss(Model *m, const Dataset *d, Split split, int n_batches, uint64_t seed,
                    int *tok, int *tgt) {
    return evaluate_loss_hooked(m, d, split, n_batches, seed, tok, tgt, NULL, NULL);
}
