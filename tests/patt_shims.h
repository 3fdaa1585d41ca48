/* The Pattention entries with positional arguments, so that the op tests
 * (test_gradcheck.c, test_cuda_ops.c) can state each case in one line. */
#ifndef TF_TEST_PATT_SHIMS_H
#define TF_TEST_PATT_SHIMS_H

#include "ops.h"

static void patt_fwd(const Ops *o, float *Y, float *A, float *S, float *dA, PattInput X,
                     const float *K, const float *V, const float *tau, int G, int mode, int N,
                     int d_in, int n, int d_out, int y_attn, const float *residual) {
    PattArgs a = {.X = X, .K = K, .V = V, .tau = tau, .G = G, .mode = mode, .N = N,
                  .d_in = d_in, .n = n, .d_out = d_out, .y_attn = y_attn, .A = A, .S = S,
                  .dA = dA, .Y = Y, .residual = residual};
    o->pattention_forward(o, &a);
}
static void patt_bwd(const Ops *o, float *dX, float *dK, float *dV, float *dA, const float *dY,
                     PattInput X, const float *K, const float *V, float *A, float *S,
                     const float *tau, int G, int mode, int N, int d_in, int n, int d_out,
                     int accumulate_dx, int y_attn) {
    PattArgs a = {.X = X, .K = K, .V = V, .tau = tau, .G = G, .mode = mode, .N = N,
                  .d_in = d_in, .n = n, .d_out = d_out, .y_attn = y_attn, .A = A, .S = S,
                  .dA = dA, .dX = dX, .dK = dK, .dV = dV, .dY = dY,
                  .accumulate_dx = accumulate_dx};
    o->pattention_backward(o, &a);

#endif
