// Pattention (SPEC section 1) forward and backward on the GPU.
//   forward:  A = X K^T (cuBLAS), S = pnorm(A) (one warp per row), Y = S V
//   backward: dS = dY V^T, dA = pnorm'(dS; A, S),
//             dX += dA K, dK += dA^T X, dV += S^T dY
// With --precision bf16 the GEMM operands (X, K, V, S, dY, dA) are bf16 and
// the products accumulate in fp32 (as under torch.autocast): the scores A,
// S and dS/dA are then stored as bf16 in their buffers (the layout of the
// saved state is the backend's business); Y, dX, dK and dV stay fp32.
#include "common.cuh"

// ---- pnorm: one warp per row, no shared memory or block barriers. Each lane
// takes E consecutive elements per access: pairs (float2 / bf16x2 loads)
// when n is even, so that rows stay aligned, single elements otherwise.
// A row is read 2-3 times; after the first pass it comes from L1/L2.
// AT, ST, DT: float (fp32 mode) or bf16 (bf16 mode) for A, S and dS/dA.
#define PN_WARPS 8

template <int E> static __device__ __forceinline__ float2 ld(const float *p) {
    return E == 2 ? *reinterpret_cast<const float2 *>(p) : make_float2(*p, 0.0f);
}
template <int E> static __device__ __forceinline__ float2 ld(const bf16 *p) {
    return E == 2 ? __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p))
                  : make_float2(__bfloat162float(*p), 0.0f);
}
template <int E> static __device__ __forceinline__ void st(float *p, float x, float y) {
    if (E == 2)
        *reinterpret_cast<float2 *>(p) = make_float2(x, y);
    else
        *p = x;
}
template <int E> static __device__ __forceinline__ void st(bf16 *p, float x, float y) {
    if (E == 2)
        *reinterpret_cast<__nv_bfloat162 *>(p) = __floats2bfloat162_rn(x, y);
    else
        *p = __float2bfloat16(x);
}

// With E = 1 the .y of every load is 0: it adds nothing to the sums below
// (GeLU(0) = 0), except under softmax, which masks it.
#define PN_ROW_LOOP(j) for (int j = E * lane; j < n; j += 32 * E)

template <int E, typename AT, typename ST>
__global__ void pnorm_forward_kernel(ST *S, const AT *A, float tau, int mode, int n, int rows) {
    const int lane = threadIdx.x & 31;
    const size_t row = (size_t)blockIdx.x * PN_WARPS + (threadIdx.x >> 5);
    if (row >= (size_t)rows) return;
    const AT *a = A + row * n;
    ST *s = S + row * n;
    if (mode == PNORM_SOFTMAX) { // S = n * softmax(A)
        float mx = -INFINITY;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j);
            mx = fmaxf(mx, E == 2 ? fmaxf(x.x, x.y) : x.x);
        }
        mx = tfc_warp_max(mx);
        float sum = 0.0f;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j);
            sum += expf(x.x - mx) + (E == 2 ? expf(x.y - mx) : 0.0f);
        }
        float k = (float)n / tfc_warp_sum(sum);
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j);
            st<E>(s + j, expf(x.x - mx) * k, expf(x.y - mx) * k);
        }
    } else if (mode == PNORM_GELU_L2) { // S = tau * g / sqrt(sum g^2 + eps), g = GeLU(A)
        float ss = 0.0f;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j);
            float g0 = tfc_gelu(x.x), g1 = tfc_gelu(x.y);
            ss += g0 * g0 + g1 * g1;
        }
        float k = tau / sqrtf(tfc_warp_sum(ss) + PNORM_EPS);
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j);
            st<E>(s + j, tfc_gelu(x.x) * k, tfc_gelu(x.y) * k);
        }
    } else { // PNORM_L2_GELU: S = GeLU(tau * A / sqrt(sum A^2 + eps))
        float ss = 0.0f;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j);
            ss += x.x * x.x + x.y * x.y;
        }
        float k = tau / sqrtf(tfc_warp_sum(ss) + PNORM_EPS);
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j);
            st<E>(s + j, tfc_gelu(k * x.x), tfc_gelu(k * x.y));
        }
    }
}

// dS in, dL/dA out; out may alias dS (each element is read and then written
// by the same lane).
template <int E, typename AT, typename ST, typename DT>
__global__ void pnorm_backward_kernel(DT *out, const DT *dS, const AT *A, const ST *S, float tau,
                                      int mode, int n, int rows) {
    const int lane = threadIdx.x & 31;
    const size_t row = (size_t)blockIdx.x * PN_WARPS + (threadIdx.x >> 5);
    if (row >= (size_t)rows) return;
    const AT *a = A + row * n;
    const ST *s = S + row * n;
    const DT *d = dS + row * n;
    DT *o = out + row * n;
    if (mode == PNORM_SOFTMAX) {
        // S = n p: dA = n p (dS - sum dS p) = S (dS - sum(dS S) / n)
        float dot = 0.0f;
        PN_ROW_LOOP(j) {
            float2 dv = ld<E>(d + j), sv = ld<E>(s + j);
            dot += dv.x * sv.x + dv.y * sv.y;
        }
        dot = tfc_warp_sum(dot) / (float)n;
        PN_ROW_LOOP(j) {
            float2 dv = ld<E>(d + j), sv = ld<E>(s + j);
            st<E>(o + j, sv.x * (dv.x - dot), sv.y * (dv.y - dot));
        }
    } else if (mode == PNORM_GELU_L2) {
        // S = tau g / r, r = sqrt(sum g^2 + eps):
        // dg = (tau / r) (dS - g sum(dS g) / r^2), dA = dg GeLU'(A)
        float ss = 0.0f, dot = 0.0f;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j), dv = ld<E>(d + j);
            float g0 = tfc_gelu(x.x), g1 = tfc_gelu(x.y);
            ss += g0 * g0 + g1 * g1;
            dot += dv.x * g0 + dv.y * g1;
        }
        ss = tfc_warp_sum(ss) + PNORM_EPS;
        dot = tfc_warp_sum(dot);
        float k = tau / sqrtf(ss), c = dot / ss;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j), dv = ld<E>(d + j);
            st<E>(o + j, k * (dv.x - tfc_gelu(x.x) * c) * tfc_gelu_grad(x.x),
                  k * (dv.y - tfc_gelu(x.y) * c) * tfc_gelu_grad(x.y));
        }
    } else {
        // u = tau A / r, dU = dS GeLU'(u),
        // dA = (tau / r) (dU - u sum(dU u) / tau^2) = k dU - k A sum(dU A) / r^2
        // dU is recomputed in the last pass rather than stored (one write less).
        float ss = 0.0f;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j);
            ss += x.x * x.x + x.y * x.y;
        }
        ss = tfc_warp_sum(ss) + PNORM_EPS;
        float k = tau / sqrtf(ss);
        float dot = 0.0f;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j), dv = ld<E>(d + j);
            dot += dv.x * tfc_gelu_grad(k * x.x) * x.x + dv.y * tfc_gelu_grad(k * x.y) * x.y;
        }
        float c = tfc_warp_sum(dot) / ss;
        PN_ROW_LOOP(j) {
            float2 x = ld<E>(a + j), dv = ld<E>(d + j);
            float du0 = dv.x * tfc_gelu_grad(k * x.x), du1 = dv.y * tfc_gelu_grad(k * x.y);
            st<E>(o + j, k * (du0 - x.x * c), k * (du1 - x.y * c));
        }
    }
}
#undef PN_ROW_LOOP

template <typename AT, typename ST>
static void pnorm_forward(ST *S, const AT *A, float tau, int mode, int N, int n) {
    unsigned blocks = (unsigned)((N + PN_WARPS - 1) / PN_WARPS);
    if (n % 2 == 0)
        pnorm_forward_kernel<2><<<blocks, 32 * PN_WARPS>>>(S, A, tau, mode, n, N);
    else
        pnorm_forward_kernel<1><<<blocks, 32 * PN_WARPS>>>(S, A, tau, mode, n, N);
    KERNEL_CHECK();
}

template <typename AT, typename ST, typename DT>
static void pnorm_backward(DT *out, const DT *dS, const AT *A, const ST *S, float tau, int mode,
                           int N, int n) {
    unsigned blocks = (unsigned)((N + PN_WARPS - 1) / PN_WARPS);
    if (n % 2 == 0)
        pnorm_backward_kernel<2><<<blocks, 32 * PN_WARPS>>>(out, dS, A, S, tau, mode, n, N);
    else
        pnorm_backward_kernel<1><<<blocks, 32 * PN_WARPS>>>(out, dS, A, S, tau, mode, n, N);
    KERNEL_CHECK();
}

static void pattention_forward_fp32(float *Y, float *A, float *S, const float *X, const float *K,
                                    const float *V, float tau, int mode, int N, int d_in, int n,
                                    int d_out) {
    tfc_matmul(A, X, K, N, n, d_in, 0, 1, 1.0f, 0.0f); // A = X K^T
    pnorm_forward(S, A, tau, mode, N, n);
    tfc_matmul(Y, S, V, N, d_out, n, 0, 0, 1.0f, 0.0f); // Y = S V
}

static void pattention_backward_fp32(float *dX, float *dK, float *dV, float *dA, const float *dY,
                                     const float *X, const float *K, const float *V, const float *A,
                                     const float *S, float tau, int mode, int N, int d_in, int n,
                                     int d_out, float dx_beta) {
    tfc_matmul(dA, dY, V, N, n, d_out, 0, 1, 1.0f, 0.0f); // dS = dY V^T
    pnorm_backward(dA, (const float *)dA, A, S, tau, mode, N, n);
    if (dX) tfc_matmul(dX, dA, K, N, d_in, n, 0, 0, 1.0f, dx_beta); // dX (+)= dA K
    if (dK) tfc_matmul(dK, dA, X, n, d_in, N, 1, 0, 1.0f, 1.0f); // dK += dA^T X
    if (dV) tfc_matmul(dV, S, dY, n, d_out, N, 1, 0, 1.0f, 1.0f); // dV += S^T dY
}

// C (bf16) = op(A) op(B) with bf16 operands and fp32 accumulation (row-major,
// as tfc_matmul): for scores, whose consumer is the bf16 pnorm kernel.
static void matmul_bf16_to_bf16(bf16 *C, const bf16 *A, const bf16 *B, int M, int N, int K,
                                int trans_a, int trans_b) {
    tfc_gemm_ex(C, CUDA_R_16BF, A, B, CUDA_R_16BF, M, N, K, trans_a, trans_b, 1.0f, 0.0f,
                CUBLAS_COMPUTE_32F);
}

// bf16 mode: the A and dA buffers hold bf16; S is not saved but recomputed
// from A in backward (one elementwise pass buys N*n*2 bytes per Pattention,
// a quarter of the activation memory); the operands X, K, V, dY are rounded
// into bf16 workspaces per call unless a bf16 copy exists already (the
// LayerNorm shadow for X, the AdamW mirror for K and V).
static void pattention_forward_bf16(float *Y, float *A, float *S, const float *X, const float *K,
                                    const float *V, float tau, int mode, int N, int d_in, int n,
                                    int d_out) {
    bf16 *Xb = tfc_bf16_input(TFC_WS_BF16_X, X, (size_t)N * d_in);
    bf16 *Kb = tfc_bf16_input(TFC_WS_BF16_K, K, (size_t)n * d_in);
    bf16 *Vb = tfc_bf16_input(TFC_WS_BF16_V, V, (size_t)n * d_out);
    bf16 *Ab = (bf16 *)A;
    bf16 *Sb = (bf16 *)tfc_workspace(TFC_WS_BF16_S, (size_t)N * n * sizeof(bf16));
    (void)S;
    matmul_bf16_to_bf16(Ab, Xb, Kb, N, n, d_in, 0, 1);
    pnorm_forward(Sb, (const bf16 *)Ab, tau, mode, N, n);
    tfc_matmul_bf16(Y, Sb, Vb, N, d_out, n, 0, 0, 1.0f, 0.0f);
}

static void pattention_backward_bf16(float *dX, float *dK, float *dV, float *dA, const float *dY,
                                     const float *X, const float *K, const float *V, const float *A,
                                     const float *S, float tau, int mode, int N, int d_in, int n,
                                     int d_out, float dx_beta) {
    bf16 *dYb = tfc_bf16_copy(TFC_WS_BF16_DY, dY, (size_t)N * d_out);
    bf16 *Vb = tfc_bf16_input(TFC_WS_BF16_V, V, (size_t)n * d_out);
    const bf16 *Ab = (const bf16 *)A;
    bf16 *Sb = (bf16 *)tfc_workspace(TFC_WS_BF16_S, (size_t)N * n * sizeof(bf16));
    (void)S;
    pnorm_forward(Sb, Ab, tau, mode, N, n); // S again, bit for bit
    bf16 *dAb = (bf16 *)dA;
    matmul_bf16_to_bf16(dAb, dYb, Vb, N, n, d_out, 0, 1); // dS
    pnorm_backward(dAb, (const bf16 *)dAb, Ab, Sb, tau, mode, N, n);
    if (dV) tfc_matmul_bf16(dV, Sb, dYb, n, d_out, N, 1, 0, 1.0f, 1.0f);
    if (dX) {
        bf16 *Kb = tfc_bf16_input(TFC_WS_BF16_K, K, (size_t)n * d_in);
        tfc_matmul_bf16(dX, dAb, Kb, N, d_in, n, 0, 0, 1.0f, dx_beta);
    }
    if (dK) {
        bf16 *Xb = tfc_bf16_input(TFC_WS_BF16_X, X, (size_t)N * d_in);
        tfc_matmul_bf16(dK, dAb, Xb, n, d_in, N, 1, 0, 1.0f, 1.0f);
    }
}

void tfc_pattention_sizes(int N, int n, size_t *a_floats, size_t *s_floats, size_t *da_floats) {
    ops_pattention_sizes_full(N, n, a_floats, s_floats, da_floats);
    if (tfc_matmul_precision() == MATMUL_BF16) { // bf16 elements, two per float; S recomputed
        *a_floats = *da_floats = ((size_t)N * n + 1) / 2;
        *s_floats = 0;
    }
}

void tfc_pattention_forward(float *Y, float *A, float *S, const float *X, const float *K,
                            const float *V, float tau, int mode, int N, int d_in, int n,
                            int d_out) {
    if (N <= 0) return;
    if (n <= 0) { // no parameter tokens: Y = 0
        tfc_matmul(Y, S, V, N, d_out, 0, 0, 0, 1.0f, 0.0f);
        return;
    }
    if (tfc_matmul_precision() == MATMUL_BF16)
        pattention_forward_bf16(Y, A, S, X, K, V, tau, mode, N, d_in, n, d_out);
    else
        pattention_forward_fp32(Y, A, S, X, K, V, tau, mode, N, d_in, n, d_out);
}

void tfc_pattention_backward(float *dX, float *dK, float *dV, float *dA, const float *dY,
                             const float *X, const float *K, const float *V, const float *A,
                             const float *S, float tau, int mode, int N, int d_in, int n,
                             int d_out, int accumulate_dx) {
    if (N <= 0) return;
    float dx_beta = accumulate_dx ? 1.0f : 0.0f;
    if (n <= 0) { // no parameter tokens: dX (+)= 0
        if (dX) tfc_matmul(dX, nullptr, nullptr, N, d_in, 0, 0, 0, 1.0f, dx_beta);
        return;
    }
    if (tfc_matmul_precision() == MATMUL_BF16)
        pattention_backward_bf16(dX, dK, dV, dA, dY, X, K, V, A, S, tau, mode, N, d_in, n, d_out,
                                 dx_beta);
    else
        pattention_backward_fp32(dX, dK, dV, dA, dY, X, K, V, A, S, tau, mode, N, d_in, n, d_out,
                                 dx_beta);
}
