// Pattention (SPEC section 1) forward and backward on the GPU.
//   forward:  A = X K^T (cuBLAS), S = pnorm(A) (one block per row), Y = S V
//   backward: dA = dY V^T, dA = pnorm'(dA; A, S) in place,
//             dX += dA K, dK += dA^T X, dV += S^T dY
#include "common.cuh"

// One block per row of A (length n, any size: threads stride over the row).
__global__ void pnorm_forward_kernel(float *S, const float *A, float tau, int mode, int n) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *a = A + row * n;
    float *s = S + row * n;
    const int tid = threadIdx.x, nt = blockDim.x;

    if (mode == PNORM_SOFTMAX) { // S = n * softmax(A)
        float mx = -INFINITY;
        for (int j = tid; j < n; j += nt) mx = fmaxf(mx, a[j]);
        mx = tfc_block_max(mx, sh);
        float sum = 0.0f;
        for (int j = tid; j < n; j += nt) {
            float e = expf(a[j] - mx);
            s[j] = e;
            sum += e;
        }
        sum = tfc_block_sum(sum, sh);
        float k = (float)n / sum;
        for (int j = tid; j < n; j += nt) s[j] *= k;
    } else if (mode == PNORM_GELU_L2) { // S = tau * g / sqrt(sum g^2 + eps), g = GeLU(A)
        float ss = 0.0f;
        for (int j = tid; j < n; j += nt) {
            float g = tfc_gelu(a[j]);
            s[j] = g;
            ss += g * g;
        }
        ss = tfc_block_sum(ss, sh);
        float k = tau / sqrtf(ss + PNORM_EPS);
        for (int j = tid; j < n; j += nt) s[j] *= k;
    } else { // PNORM_L2_GELU: S = GeLU(tau * A / sqrt(sum A^2 + eps))
        float ss = 0.0f;
        for (int j = tid; j < n; j += nt) {
            float x = a[j];
            ss += x * x;
        }
        ss = tfc_block_sum(ss, sh);
        float k = tau / sqrtf(ss + PNORM_EPS);
        for (int j = tid; j < n; j += nt) s[j] = tfc_gelu(k * a[j]);
    }
}

// In place: dA holds dS on entry and dL/dA on exit.
__global__ void pnorm_backward_kernel(float *dA, const float *A, const float *S, float tau,
                                      int mode, int n) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *a = A + row * n;
    const float *s = S + row * n;
    float *d = dA + row * n;
    const int tid = threadIdx.x, nt = blockDim.x;

    if (mode == PNORM_SOFTMAX) {
        // S = n p: dA = n p (dS - sum dS p) = S (dS - sum(dS S) / n)
        float dot = 0.0f;
        for (int j = tid; j < n; j += nt) dot += d[j] * s[j];
        dot = tfc_block_sum(dot, sh) / (float)n;
        for (int j = tid; j < n; j += nt) d[j] = s[j] * (d[j] - dot);
    } else if (mode == PNORM_GELU_L2) {
        // S = tau g / r, r = sqrt(sum g^2 + eps):
        // dg = (tau / r) (dS - g sum(dS g) / r^2), dA = dg GeLU'(A)
        float ss = 0.0f, dot = 0.0f;
        for (int j = tid; j < n; j += nt) {
            float g = tfc_gelu(a[j]);
            ss += g * g;
            dot += d[j] * g;
        }
        ss = tfc_block_sum(ss, sh) + PNORM_EPS;
        dot = tfc_block_sum(dot, sh);
        float k = tau / sqrtf(ss);
        float c = dot / ss;
        for (int j = tid; j < n; j += nt) {
            float x = a[j];
            float g = tfc_gelu(x);
            d[j] = k * (d[j] - g * c) * tfc_gelu_grad(x);
        }
    } else {
        // u = tau A / r, dU = dS GeLU'(u),
        // dA = (tau / r) (dU - u sum(dU u) / tau^2) = k dU - k A sum(dU A) / r^2
        float ss = 0.0f;
        for (int j = tid; j < n; j += nt) {
            float x = a[j];
            ss += x * x;
        }
        ss = tfc_block_sum(ss, sh) + PNORM_EPS;
        float k = tau / sqrtf(ss);
        float dot = 0.0f;
        for (int j = tid; j < n; j += nt) {
            float x = a[j];
            float du = d[j] * tfc_gelu_grad(k * x);
            d[j] = du; // the same thread reads it back below
            dot += du * x;
        }
        dot = tfc_block_sum(dot, sh);
        float c = dot / ss;
        for (int j = tid; j < n; j += nt) d[j] = k * (d[j] - a[j] * c);
    }
}

void tfc_pattention_forward(float *Y, float *A, float *S, const float *X, const float *K,
                            const float *V, float tau, int mode, int N, int d_in, int n,
                            int d_out) {
    if (N <= 0) return;
    tfc_matmul(A, X, K, N, n, d_in, 0, 1, 1.0f, 0.0f); // A = X K^T
    if (n > 0) {
        pnorm_forward_kernel<<<N, tfc_row_threads(n)>>>(S, A, tau, mode, n);
        KERNEL_CHECK();
    }
    tfc_matmul(Y, S, V, N, d_out, n, 0, 0, 1.0f, 0.0f); // Y = S V
}

void tfc_pattention_backward(float *dX, float *dK, float *dV, float *dA, const float *dY,
                             const float *X, const float *K, const float *V, const float *A,
                             const float *S, float tau, int mode, int N, int d_in, int n,
                             int d_out) {
    if (N <= 0 || n <= 0) return;
    tfc_matmul(dA, dY, V, N, n, d_out, 0, 1, 1.0f, 0.0f); // dS = dY V^T
    pnorm_backward_kernel<<<N, tfc_row_threads(n)>>>(dA, A, S, tau, mode, n);
    KERNEL_CHECK();
    if (dX) tfc_matmul(dX, dA, K, N, d_in, n, 0, 0, 1.0f, 1.0f); // dX += dA K
    if (dK) tfc_matmul(dK, dA, X, n, d_in, N, 1, 0, 1.0f, 1.0f); // dK += dA^T X
    if (dV) tfc_matmul(dV, S, dY, n, d_out, N, 1, 0, 1.0f, 1.0f); // dV += S^T dY
}
