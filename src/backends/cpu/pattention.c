/* Pattention on the CPU (docs/MODEL.md, Pattention): the three GEMMs go to OpenBLAS,
 * the modified softmax runs row by row.
 *
 *   forward:  A = X K^T,  S = pnorm(A),  Y = S V
 *   backward: dS = dY V^T, dA = pnorm'(dS), dX += dA K, dK += dA^T X, dV += S^T dY
 *             (dK, dV NULL: their products skipped, ops.h)
 *
 * The baselines' MLP is the same three products with an elementwise
 * activation for pnorm (ACT_GELU; ACT_SWIGLU, whose A has 2n columns).
 */
#include <math.h>
#include <string.h>

#include "ops_cpu.h"
#include "fastmath.h"

#define gelu fast_gelu
#define gelu_grad fast_gelu_grad

static float row_l2(const float *a, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++) s += a[j] * a[j];
    return sqrtf(s + PNORM_EPS);
}

/* ---- one row of each mode, forward ---- */

static void l2_norm_gelu_row(float *s, const float *a, float tau, int n) {
    float k = tau / row_l2(a, n);
#pragma omp simd
    for (int j = 0; j < n; j++) s[j] = gelu(k * a[j]);
}

static void gelu_l2_norm_row(float *s, const float *a, float tau, int n) {
#pragma omp simd
    for (int j = 0; j < n; j++) s[j] = gelu(a[j]);
    float k = tau / row_l2(s, n);
    for (int j = 0; j < n; j++) s[j] *= k;
}

static void softmax_row(float *s, const float *a, int n) {
    float mx = a[0];
    for (int j = 1; j < n; j++) mx = a[j] > mx ? a[j] : mx;
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        s[j] = expf(a[j] - mx);
        sum += s[j];
    }
    float k = (float)n / sum;
    for (int j = 0; j < n; j++) s[j] *= k;
}

/* ---- one row of each mode, backward: d holds dS on entry, dA on exit ---- */

/* u = tau a / r: dA = (tau/r) (dU - u (dU . u) / tau^2), dU = dS GeLU'(u). */
static void l2_norm_gelu_row_backward(float *d, const float *a, float tau, int n) {
    float k = tau / row_l2(a, n);
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j < n; j++) {
        float u = k * a[j];
        d[j] *= gelu_grad(u);
        dot += d[j] * u;
    }
    float c = dot / (tau * tau);
#pragma omp simd
    for (int j = 0; j < n; j++) d[j] = k * (d[j] - k * a[j] * c);
}

/* s = tau g / r(g): dg = (tau/r) (dS - s (dS . s) / tau^2), dA = dg GeLU'(a). */
static void gelu_l2_norm_row_backward(float *d, const float *a, const float *s, float tau, int n) {
    float r2 = 0.0f, dot = 0.0f;
#pragma omp simd reduction(+ : r2, dot)
    for (int j = 0; j < n; j++) {
        float g = gelu(a[j]);
        r2 += g * g;
        dot += d[j] * s[j];
    }
    float k = tau / sqrtf(r2 + PNORM_EPS);
    float c = dot / (tau * tau);
#pragma omp simd
    for (int j = 0; j < n; j++) d[j] = k * (d[j] - s[j] * c) * gelu_grad(a[j]);
}

/* s = n p: dA = s (dS - (dS . s) / n). */
static void softmax_row_backward(float *d, const float *s, int n) {
    float dot = 0.0f;
    for (int j = 0; j < n; j++) dot += d[j] * s[j];
    dot /= (float)n;
    for (int j = 0; j < n; j++) d[j] = s[j] * (d[j] - dot);
}

static float sigmoid(float x) { return 1.0f / (1.0f + fast_expf(-x)); }

/* Score columns per row: 2n under ACT_SWIGLU (gate, then up), else n. */
static int score_cols(int mode, int n) { return mode == ACT_SWIGLU ? 2 * n : n; }

static void gelu_row(float *s, const float *a, int n) {
#pragma omp simd
    for (int j = 0; j < n; j++) s[j] = gelu(a[j]);
}

/* SiLU(g) = g sigmoid(g); its derivative sigmoid(g) (1 + g (1 - sigmoid(g))). */
static void swiglu_row(float *s, const float *a, int n) {
#pragma omp simd
    for (int j = 0; j < n; j++) s[j] = a[j] * sigmoid(a[j]) * a[n + j];
}

/* d holds dS (n) on entry; writes dA (2n: gate, then up) into da. */
static void swiglu_row_backward(float *da, const float *d, const float *a, int n) {
#pragma omp simd
    for (int j = 0; j < n; j++) {
        float g = a[j], u = a[n + j], sg = sigmoid(g);
        da[j] = d[j] * u * sg * (1.0f + g * (1.0f - sg));
        da[n + j] = d[j] * g * sg;
    }
}

static void pnorm_row(float *s, const float *a, float tau, int mode, int n) {
    if (mode == ACT_GELU) gelu_row(s, a, n);
    else if (mode == ACT_SWIGLU) swiglu_row(s, a, n);
    else if (mode == PNORM_GELU_L2) gelu_l2_norm_row(s, a, tau, n);
    else if (mode == PNORM_SOFTMAX) softmax_row(s, a, n);
    else l2_norm_gelu_row(s, a, tau, n);
}

static void pnorm_forward(float *S, const float *A, float tau, int mode, int N, int n) {
    if (N == 1) { /* decoding: no OpenMP team for one row */
        pnorm_row(S, A, tau, mode, n);
        return;
    }
#pragma omp parallel for
    for (int i = 0; i < N; i++) pnorm_row(S + (size_t)i * n, A + (size_t)i * score_cols(mode, n), tau, mode, n);
}

static void pnorm_backward(float *dA, const float *A, const float *S, float tau, int mode, int N,
                           int n) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        float *d = dA + (size_t)i * n;
        const float *a = A + (size_t)i * n, *s = S + (size_t)i * n;
        if (mode == ACT_GELU) {
            for (int j = 0; j < n; j++) d[j] *= gelu_grad(a[j]);
        } else if (mode == PNORM_GELU_L2) gelu_l2_norm_row_backward(d, a, s, tau, n);
        else if (mode == PNORM_SOFTMAX) softmax_row_backward(d, s, n);
        else l2_norm_gelu_row_backward(d, a, tau, n);
    }
}

static void pattention_forward_one(float *Y, float *A, float *S, const float *X, const float *K,
                                  const float *V, float tau, int mode, int N, int d_in, int n,
                                  int d_out) {
    cpu_gemm(X, K, A, N, score_cols(mode, n), d_in, 0, 1, 1.0f, 0.0f);
    pnorm_forward(S, A, tau, mode, N, n);
    cpu_gemm(S, V, Y, N, d_out, n, 0, 0, 1.0f, 0.0f);
}

static void pattention_backward_one(float *dX, float *dK, float *dV, float *dA, const float *dY,
                                   const float *X, const float *K, const float *V,
                                   const float *A, float *S, float tau, int mode, int N,
                                   int d_in, int n, int d_out, int accumulate_dx) {
    if (n <= 0) { /* no parameter tokens: dX (+)= 0 */
        if (!accumulate_dx) memset(dX, 0, (size_t)N * d_in * sizeof(float));
        return;
    }
    if (dV) cpu_gemm(S, dY, dV, n, d_out, N, 1, 0, 1.0f, 1.0f);
    if (mode == ACT_SWIGLU) {
        /* dS goes over S (used above, ops.h lets backward overwrite it), dA
         * (N x 2n) is built from it */
        float *dS = (float *)S;
        cpu_gemm(dY, V, dS, N, n, d_out, 0, 1, 1.0f, 0.0f);
#pragma omp parallel for
        for (int i = 0; i < N; i++)
            swiglu_row_backward(dA + (size_t)i * 2 * n, dS + (size_t)i * n, A + (size_t)i * 2 * n, n);
    } else {
        cpu_gemm(dY, V, dA, N, n, d_out, 0, 1, 1.0f, 0.0f);
        pnorm_backward(dA, A, S, tau, mode, N, n);
    }
    int cols = score_cols(mode, n);
    cpu_gemm(dA, K, dX, N, d_in, cols, 0, 0, 1.0f, accumulate_dx ? 1.0f : 0.0f);
    if (dK) cpu_gemm(dA, X, dK, cols, d_in, N, 1, 0, 1.0f, 1.0f);
}

/* A group is its members one after another; A and S hold member g's N x n
 * scores at g*N*n (ops_pattention_sizes_full; A's N x 2n at g*N*2n under
 * ACT_SWIGLU), the dA scratch is shared.
 * S is saved, so forward needs no scratch; attention tensors are fp32 here,
 * so y_attn changes nothing. */
void cpu_pattention_forward(const Ops *ops, const PattArgs *a) {
    int N = a->N, d_in = a->d_in, n = a->n, d_out = a->d_out;
    const float *X = cpu_input_rows(ops, a->X, N, d_in, 1);
    size_t nn = (size_t)N * n, na = (size_t)N * score_cols(a->mode, n);
    size_t kin = (size_t)score_cols(a->mode, n) * d_in;
    for (int g = 0; g < a->G; g++)
        pattention_forward_one(a->Y + (size_t)g * N * d_out, a->A + g * na, a->S + g * nn, X,
                               a->K + g * kin, a->V + (size_t)g * n * d_out,
                               a->tau[g], a->mode, N, d_in, n, d_out);
    if (a->residual) cpu_accumulate(ops, a->Y, a->residual, (size_t)N * d_out);
}

void cpu_pattention_backward(const Ops *ops, const PattArgs *a) {
    int N = a->N, d_in = a->d_in, n = a->n, d_out = a->d_out;
    const float *X = cpu_input_rows(ops, a->X, N, d_in, 0);
    int cols = score_cols(a->mode, n);
    size_t nn = (size_t)N * n, na = (size_t)N * cols, kin = (size_t)cols * d_in,
           kout = (size_t)n * d_out;
    for (int g = 0; g < a->G; g++)
        pattention_backward_one(a->dX, a->dK ? a->dK + g * kin : NULL,
                                a->dV ? a->dV + g * kout : NULL, a->dA,
                                a->dY + (size_t)g * N * d_out, X, a->K + g * kin,
                                a->V + g * kout, a->A + g * na, a->S + g * nn, a->tau[g], a->mode,
                                N, d_in, n, d_out, g == 0 ? a->accumulate_dx : 1);
}
