// Pattention (SPEC section 1) forward and backward on the GPU.
//   forward:  A = X K^T (cuBLAS), S = pnorm(A) (one warp per row), Y = S V
//   backward: dS = dY V^T, dA = pnorm'(dS; A, S),
//             dX += dA K, dK += dA^T X, dV += S^T dY
// With --precision bf16 the GEMM operands (X, K, V, S, dY, dA) are bf16 and
// the products accumulate in fp32 (as under torch.autocast): the scores A,
// S and dS/dA are then stored as bf16 in their buffers (the layout of the
// saved state is the backend's business); Y, dX, dK and dV stay fp32.
#include "common.cuh"

// ---- pnorm: a team of G warps per row (G = 1 up to 576 elements). A lane
// owns E consecutive elements (pairs, as float2 / bf16x2, when n is even, so
// that rows stay aligned; single elements otherwise) in each of C slots:
// group w0 + E (lane + 32 c) of a window of W = 32 E C elements; warp g of a
// team takes windows g, g + G, ... When each warp of the team has one window
// the row is read from memory once and kept in registers, and the C loads of
// a lane are in flight together; longer rows are re-read per pass (from
// L1/L2). A team sums over the row in a fixed order (each warp, then the
// warps in turn), so that forward and backward get the same statistics.
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

// Slots past the end of the row (and the unused .y when E = 1) read as
// `fill`, chosen so that they add nothing to any row sum: 0 for the L2 modes
// (GeLU(0) = 0), -inf for softmax (exp(-inf) = 0).
template <int E, int C, typename T>
static __device__ __forceinline__ void pn_load(float2 (&x)[C], const T *row, int w0, int n,
                                               int lane, float fill) {
#pragma unroll
    for (int c = 0; c < C; c++) {
        int j = w0 + E * (lane + 32 * c);
        x[c] = j < n ? ld<E>(row + j) : make_float2(fill, fill);
        if (E == 1) x[c].y = fill;
    }
}

template <int E, int C, typename T>
static __device__ __forceinline__ void pn_store(T *row, int w0, int n, int lane, const float2 (&y)[C]) {
#pragma unroll
    for (int c = 0; c < C; c++) {
        int j = w0 + E * (lane + 32 * c);
        if (j < n) st<E>(row + j, y[c].x, y[c].y);
    }
}

static __device__ __forceinline__ float pn_fill(int mode) {
    return mode == PNORM_SOFTMAX ? -INFINITY : 0.0f;
}

// Phi(u), the normal CDF, and phi(u), its density: GeLU(u) = u Phi(u),
// GeLU'(u) = Phi(u) + u phi(u). Phi comes from erfc by Abramowitz & Stegun
// 7.1.26 (|error| <= 1.5e-7, fp32 rounding's order), which shares its
// exp(-u^2/2) with phi: one exponential and one reciprocal per element instead
// of erff's branchy polynomial plus an expf, which made these kernels
// compute-bound. Forward and backward both form GeLU as u * Phi(u) from this
// function, so that the S the backward recomputes is the forward's, bit for bit.
static __device__ __forceinline__ float pn_cdf_pdf(float u, float *pdf) {
    const float x = fabsf(u) * TFC_INV_SQRT2;
    const float t = __fdividef(1.0f, 1.0f + 0.3275911f * x);
    const float e = __expf(-0.5f * u * u);
    const float poly =
        t * (0.254829592f +
             t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const float lower = 0.5f * poly * e; // Phi(-|u|)
    *pdf = TFC_INV_SQRT_2PI * e;
    return u >= 0.0f ? 1.0f - lower : lower;
}
static __device__ __forceinline__ float pn_cdf(float u) {
    float unused;
    return pn_cdf_pdf(u, &unused);
}

// What a row's outputs depend on besides its own element: the scale k, the
// softmax max mx, and ss = sum of squares + eps for the L2 modes.
struct PnRow {
    float k, mx, ss;
};

// Where a warp works: its row, its part of the team's windows, and the
// block's reduction slots. Warps of a row past the last one take part in the
// team's barriers with an empty row (n = 0).
template <int G> struct PnTeam {
    int lane, warp, part, n;
    size_t row;
    float *red; // PN_WARPS floats of shared memory
    __device__ PnTeam(int n_, int rows, float *red_) : red(red_) {
        lane = threadIdx.x & 31;
        warp = threadIdx.x >> 5;
        part = warp % G;
        size_t r = (size_t)blockIdx.x * (PN_WARPS / G) + warp / G;
        n = r < (size_t)rows ? n_ : 0;
        row = r < (size_t)rows ? r : 0;
    }
    template <typename Op> __device__ float reduce(float v, Op op) {
        for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
        if constexpr (G == 1) {
            return v;
        } else {
            __syncthreads(); // the slots' previous values have been read
            if (lane == 0) red[warp] = v;
            __syncthreads();
            const int first = warp - part;
            float t = red[first];
            for (int i = 1; i < G; i++) t = op(t, red[first + i]);
            return t;
        }
    }
    __device__ float sum(float v) {
        return reduce(v, [](float x, float y) { return x + y; });
    }
    __device__ float max(float v) {
        return reduce(v, [](float x, float y) { return fmaxf(x, y); });
    }
};

// Row statistics; on return x holds the warp's last window.
template <int E, int C, int G, typename AT>
static __device__ __forceinline__ PnRow pn_row_stats(float2 (&x)[C], const AT *a, PnTeam<G> &tm,
                                                     int n_full, float tau, int mode) {
    constexpr int W = 32 * E * C;
    const int n = tm.n;
    const float fill = pn_fill(mode);
    PnRow r = {0.0f, 0.0f, 0.0f};
    if (mode == PNORM_SOFTMAX) { // S = n * softmax(A)
        float mx = -INFINITY;
        for (int w0 = tm.part * W; w0 < n; w0 += G * W) {
            pn_load<E, C>(x, a, w0, n, tm.lane, fill);
#pragma unroll
            for (int c = 0; c < C; c++) mx = fmaxf(mx, fmaxf(x[c].x, x[c].y));
        }
        r.mx = tm.max(mx);
        float sum = 0.0f;
        for (int w0 = tm.part * W; w0 < n; w0 += G * W) {
            if (n > G * W) pn_load<E, C>(x, a, w0, n, tm.lane, fill);
#pragma unroll
            for (int c = 0; c < C; c++) sum += expf(x[c].x - r.mx) + expf(x[c].y - r.mx);
        }
        r.k = (float)n_full / tm.sum(sum);
    } else { // GELU_L2: ss over GeLU(A); L2_GELU: ss over A
        float ss = 0.0f;
        for (int w0 = tm.part * W; w0 < n; w0 += G * W) {
            pn_load<E, C>(x, a, w0, n, tm.lane, fill);
#pragma unroll
            for (int c = 0; c < C; c++) {
                float u0 = x[c].x, u1 = x[c].y;
                if (mode == PNORM_GELU_L2) u0 *= pn_cdf(u0), u1 *= pn_cdf(u1);
                ss += u0 * u0 + u1 * u1;
            }
        }
        r.ss = tm.sum(ss) + PNORM_EPS;
        r.k = tau / sqrtf(r.ss);
    }
    return r;
}

// S from one element of A:
//   SOFTMAX  S = n p = exp(A - mx) k
//   GELU_L2  S = tau g / r, g = GeLU(A), r = sqrt(sum g^2 + eps)
//   L2_GELU  S = GeLU(tau A / r), r = sqrt(sum A^2 + eps)
static __device__ __forceinline__ float pn_value(float a, const PnRow &r, int mode) {
    if (mode == PNORM_SOFTMAX) return expf(a - r.mx) * r.k;
    if (mode == PNORM_GELU_L2) return a * pn_cdf(a) * r.k;
    float u = r.k * a;
    return u * pn_cdf(u);
}

// One element's share of the backward (dS in, dA out). With the row's
// c = sum(t) / (n for softmax, ss otherwise), dA = m (p - c q), m = k (1 for
// softmax):
//   SOFTMAX  dA = S (dS - sum(dS S) / n)
//   GELU_L2  dA = k (dS - g sum(dS g) / ss) GeLU'(A)
//   L2_GELU  dA = k dU - k A sum(dU A) / ss, dU = dS GeLU'(k A)
// Each element costs one exponential, shared by S, GeLU and GeLU'.
struct PnBack {
    float p, q, t, s;
};
static __device__ __forceinline__ PnBack pn_back(float a, float ds, const PnRow &r, int mode) {
    PnBack e;
    if (mode == PNORM_SOFTMAX) {
        e.s = e.q = expf(a - r.mx) * r.k;
        e.p = e.t = ds * e.s;
    } else if (mode == PNORM_GELU_L2) {
        float pdf, cdf = pn_cdf_pdf(a, &pdf), g = a * cdf, gp = cdf + a * pdf;
        e.s = g * r.k;
        e.p = ds * gp;
        e.q = g * gp;
        e.t = ds * g;
    } else {
        float u = r.k * a, pdf, cdf = pn_cdf_pdf(u, &pdf);
        e.s = u * cdf;
        e.p = ds * (cdf + u * pdf);
        e.q = a;
        e.t = e.p * a;
    }
    return e;
}

template <int E, int C, int G, typename AT, typename ST>
__global__ void pnorm_forward_kernel(ST *S, const AT *A, float tau, int mode, int n, int rows) {
    constexpr int W = 32 * E * C;
    __shared__ float red[PN_WARPS];
    PnTeam<G> tm(n, rows, red);
    const AT *a = A + tm.row * n;
    ST *s = S + tm.row * n;
    float2 x[C];
    const PnRow r = pn_row_stats<E, C>(x, a, tm, n, tau, mode);
    for (int w0 = tm.part * W; w0 < tm.n; w0 += G * W) {
        if (tm.n > G * W) pn_load<E, C>(x, a, w0, tm.n, tm.lane, pn_fill(mode));
#pragma unroll
        for (int c = 0; c < C; c++) x[c] = make_float2(pn_value(x[c].x, r, mode), pn_value(x[c].y, r, mode));
        pn_store<E, C>(s, w0, tm.n, tm.lane, x);
    }
}

// dS in, dL/dA out; out may alias dS (each element is read before it is
// written, by the same lane). S is recomputed from A, and written to S_out
// when that is not null (bf16 mode does not keep S from the forward). A row
// that fits the team's windows keeps p, q and S in registers between passes.
// (At least 3 blocks per SM: left alone, nvcc gives the team kernels twice
// the registers of G = 1 for the same per-warp work.)
template <int E, int C, int G, typename AT, typename ST, typename DT>
__global__ void __launch_bounds__(32 * PN_WARPS, 3) pnorm_backward_kernel(DT *out, ST *S_out, const DT *dS, const AT *A, float tau,
                                      int mode, int n, int rows) {
    constexpr int W = 32 * E * C;
    __shared__ float red[PN_WARPS];
    PnTeam<G> tm(n, rows, red);
    const AT *a = A + tm.row * n;
    const DT *d = dS + tm.row * n;
    const float fill = pn_fill(mode);
    float2 p[C], q[C], sv[C]; // p, q start as A and dS
    const PnRow r = pn_row_stats<E, C>(q, a, tm, n, tau, mode);
    float dot = 0.0f;
    for (int w0 = tm.part * W; w0 < tm.n; w0 += G * W) {
        if (tm.n > G * W) pn_load<E, C>(q, a, w0, tm.n, tm.lane, fill);
        pn_load<E, C>(p, d, w0, tm.n, tm.lane, 0.0f);
#pragma unroll
        for (int c = 0; c < C; c++) {
            PnBack e0 = pn_back(q[c].x, p[c].x, r, mode), e1 = pn_back(q[c].y, p[c].y, r, mode);
            dot += e0.t + e1.t;
            p[c] = make_float2(e0.p, e1.p);
            q[c] = make_float2(e0.q, e1.q);
            sv[c] = make_float2(e0.s, e1.s);
        }
    }
    const float cdot = tm.sum(dot) / (mode == PNORM_SOFTMAX ? (float)n : r.ss);
    const float m = mode == PNORM_SOFTMAX ? 1.0f : r.k;
    for (int w0 = tm.part * W; w0 < tm.n; w0 += G * W) {
        if (tm.n > G * W) { // the row did not fit: this window again, from cache
            pn_load<E, C>(q, a, w0, tm.n, tm.lane, fill);
            pn_load<E, C>(p, d, w0, tm.n, tm.lane, 0.0f);
#pragma unroll
            for (int c = 0; c < C; c++) {
                PnBack e0 = pn_back(q[c].x, p[c].x, r, mode), e1 = pn_back(q[c].y, p[c].y, r, mode);
                p[c] = make_float2(e0.p, e1.p);
                q[c] = make_float2(e0.q, e1.q);
                sv[c] = make_float2(e0.s, e1.s);
            }
        }
#pragma unroll
        for (int c = 0; c < C; c++)
            p[c] = make_float2(m * (p[c].x - cdot * q[c].x), m * (p[c].y - cdot * q[c].y));
        pn_store<E, C>(out + tm.row * n, w0, tm.n, tm.lane, p);
        if (S_out) pn_store<E, C>(S_out + tm.row * n, w0, tm.n, tm.lane, sv);
    }
}

// Row shapes the kernels are built for, the same for forward and backward
// (so that both sum a row in the same order): pairs in the fewest slots that
// hold a whole row, up to 9 slots per warp (the backward keeps three values
// per element in registers; more would leave too few warps per SM), then
// teams of 2 and 4 warps; longer rows make several windows per warp. Odd n:
// single elements, one warp, windows of 8 slots.
template <int E, int C, int G> struct PnShape {
    static constexpr int e = E, c = C, g = G;
};
template <typename Launch> static void pn_dispatch(int N, int n, Launch launch) {
    int slots = (n + 63) / 64;
    if (n % 2) launch(N, PnShape<1, 8, 1>());
    else if (slots <= 1) launch(N, PnShape<2, 1, 1>());
    else if (slots <= 2) launch(N, PnShape<2, 2, 1>());
    else if (slots <= 3) launch(N, PnShape<2, 3, 1>());
    else if (slots <= 4) launch(N, PnShape<2, 4, 1>());
    else if (slots <= 5) launch(N, PnShape<2, 5, 1>());
    else if (slots <= 6) launch(N, PnShape<2, 6, 1>());
    else if (slots <= 9) launch(N, PnShape<2, 9, 1>());
    else if (slots <= 18) launch(N, PnShape<2, 9, 2>());
    else launch(N, PnShape<2, 9, 4>());
    KERNEL_CHECK();
}
template <typename Sh> static unsigned pn_blocks(int N) {
    constexpr int rows_per_block = PN_WARPS / Sh::g;
    return (unsigned)((N + rows_per_block - 1) / rows_per_block);
}

template <typename AT, typename ST>
static void pnorm_forward(ST *S, const AT *A, float tau, int mode, int N, int n) {
    pn_dispatch(N, n, [&](int rows, auto sh) {
        using Sh = decltype(sh);
        pnorm_forward_kernel<Sh::e, Sh::c, Sh::g>
            <<<pn_blocks<Sh>(rows), 32 * PN_WARPS>>>(S, A, tau, mode, n, rows);
    });
}

template <typename AT, typename ST, typename DT>
static void pnorm_backward(DT *out, ST *S_out, const DT *dS, const AT *A, float tau, int mode,
                           int N, int n) {
    pn_dispatch(N, n, [&](int rows, auto sh) {
        using Sh = decltype(sh);
        pnorm_backward_kernel<Sh::e, Sh::c, Sh::g>
            <<<pn_blocks<Sh>(rows), 32 * PN_WARPS>>>(out, S_out, dS, A, tau, mode, n, rows);
    });
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
    pnorm_backward(dA, (float *)nullptr, (const float *)dA, A, tau, mode, N, n);
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
// from A by the pnorm backward, which reads A anyway (N*n*2 bytes less per
// Pattention, a quarter of the activation memory, for one more write); the operands X, K, V, dY are rounded
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
    bf16 *dAb = (bf16 *)dA;
    matmul_bf16_to_bf16(dAb, dYb, Vb, N, n, d_out, 0, 1); // dS
    pnorm_backward(dAb, Sb, (const bf16 *)dAb, Ab, tau, mode, N, n); // and S again, bit for bit
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
