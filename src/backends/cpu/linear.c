/* RMSNorm and the linear projection on the CPU (ops.h): the baselines'
 * counterparts of the non-affine LayerNorm and the Pattention. */
#include <math.h>
#include <string.h>

#include "ops_cpu.h"

void cpu_rmsnorm_forward(const Ops *ops, float *out, float *rstd, const float *x, const float *w,
                         int N, int C) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C;
        float *oi = out + (size_t)i * C;
        float ss = 0.0f;
        for (int j = 0; j < C; j++) ss += xi[j] * xi[j];
        float rs = 1.0f / sqrtf(ss / (float)C + RMSNORM_EPS);
        for (int j = 0; j < C; j++) oi[j] = w ? xi[j] * rs * w[j] : xi[j] * rs;
        rstd[i] = rs;
    }
}

/* xhat = x rstd, g = dout w: dx += rstd (g - xhat mean(g xhat)), dw += sum_rows dout xhat. */
void cpu_rmsnorm_backward(const Ops *ops, float *dx, float *dw, const float *dout, const float *x,
                          const float *w, const float *rstd, int N, int C) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C, *gi = dout + (size_t)i * C;
        float rs = rstd[i], dot = 0.0f;
        for (int j = 0; j < C; j++) dot += (w ? gi[j] * w[j] : gi[j]) * xi[j] * rs;
        dot /= (float)C;
        float *dxi = dx + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            float g = w ? gi[j] * w[j] : gi[j];
            dxi[j] += rs * (g - xi[j] * rs * dot);
        }
    }
    if (!dw) return;
#pragma omp parallel for
    for (int j = 0; j < C; j++) {
        float s = 0.0f;
        for (int i = 0; i < N; i++) s += dout[(size_t)i * C + j] * x[(size_t)i * C + j] * rstd[i];
        dw[j] += s;
    }
}

/* The rows the products take (ops.h PattInput): x, LayerNorm(x) or
 * RMSNorm(x), which forward writes into xn and backward finds there. */
const float *cpu_input_rows(const Ops *ops, PattInput in, int N, int d_in, int forward) {
    if (in.norm == NORM_NONE) return in.x;
    if (forward) {
        if (in.norm == NORM_RMS) cpu_rmsnorm_forward(ops, in.xn, in.rstd, in.x, in.w, N, d_in);
        else cpu_layernorm_forward(ops, in.xn, in.mean, in.rstd, in.x, NULL, NULL, N, d_in);
    }
    return in.xn;
}

/* Members one after another: Y_g = Xn W_g^T. */
void cpu_linear_forward(const Ops *ops, const LinearArgs *a) {
    int N = a->N, d_in = a->d_in, d_out = a->d_out;
    const float *X = cpu_input_rows(ops, a->X, N, d_in, 1);
    size_t w_elems = (size_t)d_out * d_in, y_elems = (size_t)N * d_out;
    for (int g = 0; g < a->G; g++)
        cpu_gemm(X, a->W + g * w_elems, a->Y + g * y_elems, N, d_out, d_in, 0, 1, 1.0f, 0.0f);
    if (a->residual) cpu_accumulate(ops, a->Y, a->residual, y_elems);
}

/* dW_g += dY_g^T Xn; dX (+)= sum_g dY_g W_g; either NULL: skipped. */
void cpu_linear_backward(const Ops *ops, const LinearArgs *a) {
    int N = a->N, d_in = a->d_in, d_out = a->d_out;
    const float *X = cpu_input_rows(ops, a->X, N, d_in, 0);
    size_t w_elems = (size_t)d_out * d_in, y_elems = (size_t)N * d_out;
    for (int g = 0; g < a->G; g++) {
        const float *dY = a->dY + g * y_elems;
        if (a->dW) cpu_gemm(dY, X, a->dW + g * w_elems, d_out, d_in, N, 1, 0, 1.0f, 1.0f);
        int acc = g > 0 || a->accumulate_dx;
        if (a->dX) cpu_gemm(dY, a->W + g * w_elems, a->dX, N, d_in, d_out, 0, 0, 1.0f, acc ? 1.0f : 0.0f);
    }
}
