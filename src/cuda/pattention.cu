// Pattention (SPEC section 1) forward and backward on the GPU, for a group
// of G members sharing X (G = 1: one Pattention; q, k, v: G = 3); X is the
// op's input or, for a block's LayerNorm, normalized here (ops.h PattInput):
//   forward:  A = X K^T (cuBLAS), S = pnorm(A) (warps per row), Y = S V
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

// The tau of each member of a Pattention group: row r of the (N G) x n
// scores belongs to member r % G (the scores of a group are N x G n).
struct PnTaus {
    float t[PATT_MAX_GROUP];
    int G;
    __device__ float of(size_t row) const { return t[row % G]; }
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
__global__ void pnorm_forward_kernel(ST *S, const AT *A, PnTaus taus, int mode, int n, int rows) {
    constexpr int W = 32 * E * C;
    __shared__ float red[PN_WARPS];
    PnTeam<G> tm(n, rows, red);
    const AT *a = A + tm.row * n;
    ST *s = S + tm.row * n;
    float2 x[C];
    const PnRow r = pn_row_stats<E, C>(x, a, tm, n, taus.of(tm.row), mode);
    for (int w0 = tm.part * W; w0 < tm.n; w0 += G * W) {
        if (tm.n > G * W) pn_load<E, C>(x, a, w0, tm.n, tm.lane, pn_fill(mode));
#pragma unroll
        for (int c = 0; c < C; c++) x[c] = make_float2(pn_value(x[c].x, r, mode), pn_value(x[c].y, r, mode));
        pn_store<E, C>(s, w0, tm.n, tm.lane, x);
    }
}

// dS in, dL/dA out. S is recomputed from A, and written to S_out when that
// is not null (bf16 mode does not keep S from the forward). out may alias dS
// and S_out may alias A: each element is read before it is written, by the
// same lane, and the warps of a team own disjoint windows. A row
// that fits the team's windows keeps p, q and S in registers between passes.
// (At least 3 blocks per SM: left alone, nvcc gives the team kernels twice
// the registers of G = 1 for the same per-warp work.)
template <int E, int C, int G, typename AT, typename ST, typename DT>
__global__ void __launch_bounds__(32 * PN_WARPS, 3)
    pnorm_backward_kernel(DT *out, ST *S_out, const DT *dS, const AT *A, PnTaus taus, int mode,
                          int n, int rows) {
    constexpr int W = 32 * E * C;
    __shared__ float red[PN_WARPS];
    PnTeam<G> tm(n, rows, red);
    const AT *a = A + tm.row * n;
    const DT *d = dS + tm.row * n;
    const float fill = pn_fill(mode);
    float2 p[C], q[C], sv[C]; // p, q start as A and dS
    const PnRow r = pn_row_stats<E, C>(q, a, tm, n, taus.of(tm.row), mode);
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
static void pnorm_forward(ST *S, const AT *A, PnTaus taus, int mode, int rows, int n) {
    pn_dispatch(rows, n, [&](int r, auto sh) {
        using Sh = decltype(sh);
        pnorm_forward_kernel<Sh::e, Sh::c, Sh::g>
            <<<pn_blocks<Sh>(r), 32 * PN_WARPS>>>(S, A, taus, mode, n, r);
    });
}

template <typename AT, typename ST, typename DT>
static void pnorm_backward(DT *out, ST *S_out, const DT *dS, const AT *A, PnTaus taus, int mode,
                           int rows, int n) {
    pn_dispatch(rows, n, [&](int r, auto sh) {
        using Sh = decltype(sh);
        pnorm_backward_kernel<Sh::e, Sh::c, Sh::g>
            <<<pn_blocks<Sh>(r), 32 * PN_WARPS>>>(out, S_out, dS, A, taus, mode, n, r);
    });
}

// ---- a group of G Pattentions sharing X (ops.h). Its scores are one N x Gn
// matrix, member g in columns [g n, (g + 1) n): one GEMM over the stacked
// keys gives them all, the pnorm kernels see (N G) rows of n, and dX and dK
// are again single GEMMs over the stacked rows; only the products with the
// values, Y_g = S_g V_g and their gradients, are batched per member.
// T is the element type of the stored scores and of the GEMM operands.
template <typename T> struct Dt;
template <> struct Dt<float> {
    static cudaDataType type() { return CUDA_R_32F; }
    static cublasComputeType_t compute() { return tfc_fp32_compute(); }
};
template <> struct Dt<bf16> {
    static cudaDataType type() { return CUDA_R_16BF; }
    static cublasComputeType_t compute() { return CUBLAS_COMPUTE_32F; }
};

// Row-major C_b (+)= op(A_b) op(B_b), b < batch (leading dims and batch strides in elements).
template <typename TC, typename T>
static void gemm(TC *C, int ldc, long long sc, const T *A, int lda, long long sa, const T *B,
                 int ldb, long long sb, int M, int N, int K, int trans_a, int trans_b, float beta,
                 int batch) {
    tfc_gemm_batched(C, ldc, sc, Dt<TC>::type(), TfcOperand{A, lda, sa}, TfcOperand{B, ldb, sb},
                     Dt<T>::type(), M, N, K, trans_a, trans_b, 1.0f, beta, batch, Dt<T>::compute());
}

// TY: the type of Y (fp32, or bf16 when Y is an attention tensor in bf16 mode).
template <typename T, typename TY>
static void group_forward(TY *Y, T *A, T *S, const T *X, const T *K, const T *V, PnTaus taus,
                          int mode, int N, int d_in, int n, int d_out) {
    const int G = taus.G, Gn = G * n;
    gemm(A, Gn, 0, X, d_in, 0, K, d_in, 0, N, Gn, d_in, 0, 1, 0.0f, 1); // A = X K^T
    pnorm_forward(S, (const T *)A, taus, mode, N * G, n);
    gemm(Y, d_out, (long long)N * d_out, (const T *)S, Gn, n, V, d_out, (long long)n * d_out, N,
         d_out, n, 0, 0, 0.0f, G); // Y_g = S_g V_g
}

// S_out: where the pnorm backward writes S (bf16 mode, which does not keep
// it: over A) or NULL; S: the S that dV takes (S_out, or the forward's).
// TX: the type of dX (that of X).
template <typename T, typename TX>
static void group_backward(TX *dX, float *dK, float *dV, T *dA, T *S_out, const T *S,
                           const T *dY, const T *X, const T *K, const T *V, const T *A,
                           PnTaus taus, int mode, int N, int d_in, int n, int d_out,
                           float dx_beta) {
    const int G = taus.G, Gn = G * n;
    const long long y_stride = (long long)N * d_out, v_stride = (long long)n * d_out;
    gemm(dA, Gn, n, dY, d_out, y_stride, V, d_out, v_stride, N, n, d_out, 0, 1, 0.0f, G); // dS_g = dY_g V_g^T
    pnorm_backward(dA, S_out, (const T *)dA, A, taus, mode, N * G, n);
    if (dV) gemm(dV, d_out, v_stride, S, Gn, n, dY, d_out, y_stride, n, d_out, N, 1, 0, 1.0f, G); // dV_g += S_g^T dY_g
    if (dX) gemm(dX, d_in, 0, (const T *)dA, Gn, 0, K, d_in, 0, N, d_in, Gn, 0, 0, dx_beta, 1); // dX (+)= dA K
    if (dK) gemm(dK, d_in, 0, (const T *)dA, Gn, 0, X, d_in, 0, Gn, d_in, N, 1, 0, 1.0f, 1); // dK += dA^T X
}

static PnTaus taus_of(const float *tau, int G) {
    if (G < 1 || G > PATT_MAX_GROUP) tfc_fail("pattention", "group size out of range", __FILE__, __LINE__);
    PnTaus t = {};
    for (int g = 0; g < G; g++) t.t[g] = tau[g];
    t.G = G;
    return t;
}

// The rows the products take, from the op's input (ops.h PattInput): in
// bf16 mode an attention tensor as it is, x rounded to bf16, or LayerNorm(x)
// written straight to bf16 (no fp32 copy); else x, or LayerNorm(x) in the
// caller's xn. Backward calls them again: the LayerNorm kernel rewrites the
// statistics with the same values.
static const bf16 *input_bf16(PattInput in, int N, int d_in) {
    size_t n = (size_t)N * d_in;
    if (in.attn) return (const bf16 *)in.x;
    if (!in.mean) return tfc_bf16_copy(TFC_WS_BF16_X, in.x, n);
    bf16 *xb = (bf16 *)tfc_workspace(TFC_WS_BF16_X, n * sizeof(bf16));
    tfc_layernorm_rows(nullptr, xb, in.mean, in.rstd, in.x, nullptr, nullptr, N, d_in);
    return xb;
}
static const float *input_fp32(PattInput in, int N, int d_in) {
    if (!in.mean) return in.x;
    tfc_layernorm_rows(in.xn, nullptr, in.mean, in.rstd, in.x, nullptr, nullptr, N, d_in);
    return in.xn;
}

// Zeroes n elements of a tensor that is an attention tensor when `attn`.
static void zero_rows(float *p, size_t n, bool attn) {
    CUDA_CHECK(cudaMemsetAsync(p, 0, n * (attn ? tfc_attn_elem_bytes() : sizeof(float)), 0));
}

// bf16 mode: the A and dA buffers hold bf16 and S is not kept: forward
// writes it into the dA scratch for the Y product, backward recomputes it
// from A inside the pnorm backward (which reads A anyway) and writes it over
// A (each element read before it is written, by the same lane), so that no
// Pattention needs memory for S (N*n*2 bytes each, a quarter of the
// activations). The operands X, K, V, dY are rounded into bf16 workspaces
// per call, except K and V when the AdamW mirror holds them, a normalized
// X, which the LayerNorm kernel writes in bf16 directly, and attention
// tensors (ops.h), which are bf16 already; an attention-tensor Y or dX is
// written in bf16 by its GEMM.
void tfc_pattention_sizes(int G, int N, int n, size_t *a_floats, size_t *s_floats,
                          size_t *da_floats) {
    ops_pattention_sizes_full(G, N, n, a_floats, s_floats, da_floats);
    if (tfc_matmul_precision() == MATMUL_BF16) { // bf16 elements, two per float; S recomputed
        *a_floats = *da_floats = ((size_t)G * N * n + 1) / 2;
        *s_floats = 0;
    }
}

void tfc_pattention_forward(float *Y, float *A, float *S, float *dA, PattInput in,
                            const float *K, const float *V, const float *tau, int G, int mode,
                            int N, int d_in, int n, int d_out, int y_attn) {
    PnTaus taus = taus_of(tau, G);
    if (N <= 0) return;
    if (in.attn && in.mean) tfc_fail("pattention", "an attention-tensor input with a LayerNorm", __FILE__, __LINE__);
    const bool bf16_mode = tfc_matmul_precision() == MATMUL_BF16;
    // the input first: it writes the LayerNorm statistics even when n = 0
    const bf16 *Xb = bf16_mode ? input_bf16(in, N, d_in) : nullptr;
    const float *X = bf16_mode ? nullptr : input_fp32(in, N, d_in);
    if (n <= 0) { // no parameter tokens: Y = 0
        zero_rows(Y, (size_t)G * N * d_out, y_attn);
        return;
    }
    if (!bf16_mode) {
        group_forward<float>(Y, A, S, X, K, V, taus, mode, N, d_in, n, d_out);
        return;
    }
    const bf16 *Kb = tfc_bf16_input(TFC_WS_BF16_K, K, (size_t)G * n * d_in);
    const bf16 *Vb = tfc_bf16_input(TFC_WS_BF16_V, V, (size_t)G * n * d_out);
    if (y_attn)
        group_forward<bf16>((bf16 *)Y, (bf16 *)A, (bf16 *)dA, Xb, Kb, Vb, taus, mode, N, d_in, n,
                            d_out);
    else
        group_forward<bf16>(Y, (bf16 *)A, (bf16 *)dA, Xb, Kb, Vb, taus, mode, N, d_in, n, d_out);
}

void tfc_pattention_backward(float *dX, float *dK, float *dV, float *dA, const float *dY,
                             PattInput in, const float *K, const float *V, float *A, float *S,
                             const float *tau, int G, int mode, int N, int d_in, int n, int d_out,
                             int accumulate_dx, int y_attn) {
    PnTaus taus = taus_of(tau, G);
    if (N <= 0) return;
    if (in.attn && accumulate_dx)
        tfc_fail("pattention", "accumulating into an attention-tensor dX", __FILE__, __LINE__);
    float dx_beta = accumulate_dx ? 1.0f : 0.0f;
    if (n <= 0) { // no parameter tokens: dX (+)= 0
        if (dX && !accumulate_dx) zero_rows(dX, (size_t)N * d_in, in.attn);
        return;
    }
    if (tfc_matmul_precision() != MATMUL_BF16) {
        group_backward<float>(dX, dK, dV, dA, nullptr, S, dY, input_fp32(in, N, d_in), K, V, A,
                              taus, mode, N, d_in, n, d_out, dx_beta);
        return;
    }
    const bf16 *dYb =
        y_attn ? (const bf16 *)dY : tfc_bf16_copy(TFC_WS_BF16_DY, dY, (size_t)G * N * d_out);
    const bf16 *Xb = input_bf16(in, N, d_in);
    const bf16 *Kb = tfc_bf16_input(TFC_WS_BF16_K, K, (size_t)G * n * d_in);
    const bf16 *Vb = tfc_bf16_input(TFC_WS_BF16_V, V, (size_t)G * n * d_out);
    bf16 *Ab = (bf16 *)A; // becomes S
    if (in.attn)
        group_backward<bf16>((bf16 *)dX, dK, dV, (bf16 *)dA, Ab, Ab, dYb, Xb, Kb, Vb, Ab, taus,
                             mode, N, d_in, n, d_out, dx_beta);
    else
        group_backward<bf16>(dX, dK, dV, (bf16 *)dA, Ab, Ab, dYb, Xb, Kb, Vb, Ab, taus, mode, N,
                             d_in, n, d_out, dx_beta);
}
