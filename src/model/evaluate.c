#include "evaluate.h"

#include <math.h>
#include <string.h>

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

/* Windows k0 .. k0+rows-1 of length T, each input window followed by its
 * next-token targets. */
static void fill_windows(const Dataset *d, size_t start, size_t k0, int rows, int T, int *tok, int *tgt) {
    for (int b = 0; b < rows; b++) {
        size_t w = start + (k0 + (size_t)b) * (size_t)T;
        dataset_tokens(d, w, (size_t)T, tok + (size_t)b * T);
        dataset_tokens(d, w + 1, (size_t)T, tgt + (size_t)b * T);
    }
}

double evaluate_full(Model *m, const Dataset *d, Split split, int *tok, int *tgt, size_t *count) {
    size_t len;
    size_t start = dataset_split(d, split, &len);
    int B = m->B_alloc, T = m->T_alloc;
    size_t predicted = len > 0 ? len - 1 : 0;
    size_t full = predicted / (size_t)T;
    int rest = (int)(predicted % (size_t)T);
    double total = 0.0; /* sum of per-token losses */
    for (size_t k = 0; k < full; k += (size_t)B) {
        int rows = full - k < (size_t)B ? (int)(full - k) : B;
        fill_windows(d, start, k, rows, T, tok, tgt);
        total += (double)model_forward(m, tok, tgt, rows, T, 0, 0) * rows * T;
    }
    if (rest > 0) {
        size_t w = start + full * (size_t)T;
        dataset_tokens(d, w, (size_t)rest, tok);
        dataset_tokens(d, w + 1, (size_t)rest, tgt);
        total += (double)model_forward(m, tok, tgt, 1, rest, 0, 0) * rest;
    }
    *count = predicted;
    return predicted ? total / (double)predicted : NAN;
}
