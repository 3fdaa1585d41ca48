// Pattention (docs/MODEL.md, Pattention) forward and backward on the GPU, for a group
// of G members sharing X (G = 1: one Pattention; q, k, v: G = 3); X is the
// op's input or, for a block's norm, normalized here (ops.h PattInput):
//   forward:  A = X K^T (cuBLAS), S = pnorm(A) (warps per row), Y = S V
//   backward: dS = dY V^T, dA = pnorm'(dS; A, S),
//             dX += dA K, dK += dA^T X, dV += S^T dY
//             (dK, dV NULL: frozen weights, their GEMMs skipped; ops.h)
// The baselines' MLP is the same op with an elementwise activation in place
// of pnorm (ACT_GELU, ACT_SWIGLU: elementwise kernels, below).
// With --precision bf16 the GEMM operands (X, K, V, S, dY, dA) are bf16 and
// the products accumulate in fp32 (as under torch.autocast): the scores A,
// S and dS/dA are then stored as bf16 in their buffers (the layout of the
// saved state is the backend's business); dK and dV stay fp32, and so do Y
// and dX unless they are attention tensors (ops.h), which are bf16 then.
#include <cooperative_groups.h>
#include <cuda_pipeline.h>
#include <type_traits>

#include "common.cuh"

// ---- pnorm: a team of G warps per row (G = 1 up to 576 elements). A lane
// owns E consecutive elements (pairs, as float2 / bf16x2, when n is even, so
// that rows stay aligned; single elements otherwise) in each of C slots:
// group w0 + E (lane + 32 c) of a window of W = 32 E C elements; warp g of a
// team takes windows g, g + G, ... A team sums over the row in a fixed order
// (each warp, then the warps in turn), so that forward and backward get the
// same statistics.
// The grid holds as many blocks as fit on the GPU at once, and each block
// takes rows in turns (PN_WARPS / G rows a turn). When each warp of a team
// has one window, the row is kept in registers in its stored form, and a
// warp issues the loads of its next row before working on the current one:
// the loads of a row are then in flight while the previous row is computed,
// where one row per warp would run a warp's load, sums and stores one after
// the other. Longer rows ("long", only for teams of 4 and odd n) are re-read
// per pass (from L1/L2) with no such overlap. MODE (PNORM_*) is a template
// argument, so that each kernel holds one mode's code and registers.
// AT, ST, DT: float (fp32 mode) or bf16 (bf16 mode) for A, S and dS/dA.
#define PN_WARPS 8

// A lane's slot in its stored form: a pair (E = 2) or one element.
template <int E, typename T> struct PnVec {
    using type = T;
};
template <> struct PnVec<2, float> {
    using type = float2;
};
template <> struct PnVec<2, bf16> {
    using type = __nv_bfloat162;
};
template <int E, typename T> using pn_vec = typename PnVec<E, T>::type;

static __device__ __forceinline__ float2 pn_f2(float2 v) { return v; }
static __device__ __forceinline__ float2 pn_f2(__nv_bfloat162 v) { return __bfloat1622float2(v); }
static __device__ __forceinline__ float2 pn_f2(float v) { return make_float2(v, 0.0f); }
static __device__ __forceinline__ float2 pn_f2(bf16 v) { return make_float2(__bfloat162float(v), 0.0f); }

// The stored form of `fill` (exact in bf16: 0 or -inf).
static __device__ __forceinline__ void pn_set(float2 &v, float f) { v = make_float2(f, f); }
static __device__ __forceinline__ void pn_set(float &v, float f) { v = f; }
static __device__ __forceinline__ void pn_set(__nv_bfloat162 &v, float f) { v = __float2bfloat162_rn(f); }
static __device__ __forceinline__ void pn_set(bf16 &v, float f) { v = __float2bfloat16(f); }

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

template <int E> static __device__ __forceinline__ int pn_col(int w0, int lane, int c) {
    return w0 + E * (lane + 32 * c);
}

// Issue the loads of window w0 of a row, in its stored form. Slots past the
// end of the row hold `fill`, chosen so that they add nothing to any row
// sum: 0 for the L2 modes (GeLU(0) = 0) and for dS, -inf for softmax
// (exp(-inf) = 0).
template <int E, int C, typename T>
static __device__ __forceinline__ void pn_fetch(pn_vec<E, T> (&v)[C], const T *row, int w0, int n,
                                                int lane, float fill) {
#pragma unroll
    for (int c = 0; c < C; c++) {
        const int j = pn_col<E>(w0, lane, c);
        if (j < n)
            v[c] = *reinterpret_cast<const pn_vec<E, T> *>(row + j);
        else
            pn_set(v[c], fill);
    }
}

// A slot in fp32 (when E = 1, .y is the fill).
template <int E, typename V> static __device__ __forceinline__ float2 pn_slot(V v, float fill) {
    float2 x = pn_f2(v);
    if (E == 1) x.y = fill;
    return x;
}

template <int E, int C, typename V>
static __device__ __forceinline__ void pn_unpack(float2 (&x)[C], const V (&v)[C], float fill) {
#pragma unroll
    for (int c = 0; c < C; c++) x[c] = pn_slot<E>(v[c], fill);
}

template <int E, int C, typename T>
static __device__ __forceinline__ void pn_load(float2 (&x)[C], const T *row, int w0, int n,
                                               int lane, float fill) {
    pn_vec<E, T> v[C];
    pn_fetch<E, C>(v, row, w0, n, lane, fill);
    pn_unpack<E, C>(x, v, fill);
}

template <int E, int C, typename T>
static __device__ __forceinline__ void pn_store(T *row, int w0, int n, int lane, const float2 (&y)[C]) {
#pragma unroll
    for (int c = 0; c < C; c++) {
        const int j = pn_col<E>(w0, lane, c);
        if (j < n) st<E>(row + j, y[c].x, y[c].y);
    }
}

template <int MODE> static __device__ __forceinline__ float pn_fill() {
    return MODE == PNORM_SOFTMAX ? -INFINITY : 0.0f;
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
    // (selected, not indexed: an indexed t would live in local memory)
    __device__ float of(unsigned row) const {
        const unsigned g = row % (unsigned)G;
        float v = t[0];
#pragma unroll
        for (int i = 1; i < PATT_MAX_GROUP; i++)
            if (g == (unsigned)i) v = t[i];
        return v;
    }
};

// A warp's row in one turn of its block; past the last row, row 0 with n = 0
// (the warp still takes part in its team's barriers).
struct PnAt {
    unsigned row;
    int n;
};

// Waits for the G warps of this warp's team only (named barrier 1 + team;
// 0 is __syncthreads'), so that the teams of a block do not wait for each other.
template <int G> static __device__ __forceinline__ void pn_team_sync(int team) {
    asm volatile("bar.sync %0, %1;" ::"r"(team + 1), "r"(32 * G) : "memory");
}

// Where a warp works: its part of the team's windows, its rows, and the
// block's reduction slots. A team's sums take one barrier each: successive
// sums use the two sets of slots in turn, and a warp writes a set again only
// after the barrier of the sum between, which every warp of the team reaches
// after reading that set.
template <int G> struct PnTeam {
    static constexpr int rows_per_turn = PN_WARPS / G;
    int lane, warp, part, set;
    float (*red)[PN_WARPS]; // two sets of PN_WARPS floats of shared memory
    __device__ explicit PnTeam(float (*red_)[PN_WARPS]) : set(0), red(red_) {
        lane = threadIdx.x & 31;
        warp = threadIdx.x >> 5;
        part = warp % G;
    }
    // The first row of the block's turns is `first`, each turn moves by `step`.
    // (rows < 2^31, so that the turns count in 32 bits)
    __device__ unsigned first() const { return blockIdx.x * rows_per_turn; }
    __device__ unsigned step() const { return gridDim.x * rows_per_turn; }
    __device__ PnAt at(unsigned base, int rows, int n) const {
        const unsigned r = base + warp / G;
        return r < (unsigned)rows ? PnAt{r, n} : PnAt{0, 0};
    }
    template <typename Op> __device__ float reduce(float v, Op op) {
        for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
        if constexpr (G == 1) {
            return v;
        } else {
            float *slots = red[set];
            set ^= 1;
            if (lane == 0) slots[warp] = v;
            pn_team_sync<G>(warp / G);
            const int first_warp = warp - part;
            float t = slots[first_warp];
            for (int i = 1; i < G; i++) t = op(t, slots[first_warp + i]);
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

// Row statistics over the warp's windows of a row of n elements; load(x, w0)
// puts window w0 in x (from registers, or from memory for a long row, which
// is read again for the second pass of softmax). On return x holds the
// warp's last window.
template <int MODE, bool LONG, int W, int C, int G, typename Load>
static __device__ __forceinline__ PnRow pn_row_stats(float2 (&x)[C], PnTeam<G> &tm, int n,
                                                     int n_full, float tau, Load load) {
    const bool reload = LONG && n > G * W;
    PnRow r = {0.0f, 0.0f, 0.0f};
    if constexpr (MODE == PNORM_SOFTMAX) { // S = n * softmax(A)
        float mx = -INFINITY;
        for (int w0 = tm.part * W; w0 < n; w0 += G * W) {
            load(x, w0);
#pragma unroll
            for (int c = 0; c < C; c++) mx = fmaxf(mx, fmaxf(x[c].x, x[c].y));
        }
        r.mx = tm.max(mx);
        float sum = 0.0f;
        for (int w0 = tm.part * W; w0 < n; w0 += G * W) {
            if (reload) load(x, w0);
#pragma unroll
            for (int c = 0; c < C; c++) sum += expf(x[c].x - r.mx) + expf(x[c].y - r.mx);
        }
        r.k = (float)n_full / tm.sum(sum);
    } else { // GELU_L2: ss over GeLU(A); L2_GELU: ss over A
        float ss = 0.0f;
        for (int w0 = tm.part * W; w0 < n; w0 += G * W) {
            load(x, w0);
#pragma unroll
            for (int c = 0; c < C; c++) {
                float u0 = x[c].x, u1 = x[c].y;
                if (MODE == PNORM_GELU_L2) u0 *= pn_cdf(u0), u1 *= pn_cdf(u1);
                ss += fmaf(u0, u0, u1 * u1); // (an explicit fma: see pn_dot)
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
template <int MODE> static __device__ __forceinline__ float pn_value(float a, const PnRow &r) {
    if constexpr (MODE == PNORM_SOFTMAX) return expf(a - r.mx) * r.k;
    if constexpr (MODE == PNORM_GELU_L2) return a * pn_cdf(a) * r.k;
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
    float p, q, t1, t2, s; // t = t1 t2
};

// A pair's share of sum(t). Written as an fma, so that the compiler cannot
// contract t0 + t1 as t0 + round(t1) in one kernel and round(t0) + t1 in
// another: left to the compiler, which product it fuses depends on the
// surrounding code.
static __device__ __forceinline__ float pn_dot(const PnBack &e0, const PnBack &e1) {
    return fmaf(e0.t1, e0.t2, e1.t1 * e1.t2);
}
template <int MODE>
static __device__ __forceinline__ PnBack pn_back(float a, float ds, const PnRow &r) {
    PnBack e;
    if constexpr (MODE == PNORM_SOFTMAX) {
        e.s = e.q = expf(a - r.mx) * r.k;
        e.p = ds * e.s;
        e.t1 = ds, e.t2 = e.s;
    } else if constexpr (MODE == PNORM_GELU_L2) {
        float pdf, cdf = pn_cdf_pdf(a, &pdf), g = a * cdf, gp = cdf + a * pdf;
        e.s = g * r.k;
        e.p = ds * gp;
        e.q = g * gp;
        e.t1 = ds, e.t2 = g;
    } else {
        float u = r.k * a, pdf, cdf = pn_cdf_pdf(u, &pdf);
        e.s = u * cdf;
        e.p = ds * (cdf + u * pdf);
        e.q = a;
        e.t1 = e.p, e.t2 = a;
    }
    return e;
}

// The forward of one row; load(x, w0) as for pn_row_stats.
template <int MODE, bool LONG, int E, int C, int G, typename ST, typename Load>
static __device__ __forceinline__ void pn_forward_row(ST *s, PnTeam<G> &tm, PnAt at, int n_full,
                                                      float tau, Load load) {
    constexpr int W = 32 * E * C;
    float2 x[C];
    const PnRow r = pn_row_stats<MODE, LONG, W>(x, tm, at.n, n_full, tau, load);
    for (int w0 = tm.part * W; w0 < at.n; w0 += G * W) {
        if (LONG && at.n > G * W) load(x, w0);
#pragma unroll
        for (int c = 0; c < C; c++) x[c] = make_float2(pn_value<MODE>(x[c].x, r), pn_value<MODE>(x[c].y, r));
        pn_store<E, C>(s, w0, at.n, tm.lane, x);
    }
}

template <int MODE, bool LONG, int E, int C, int G, typename AT, typename ST>
__global__ void pnorm_forward_kernel(ST *S, const AT *A, PnTaus taus, int n, int rows) {
    constexpr int W = 32 * E * C;
    const float fill = pn_fill<MODE>();
    __shared__ float red[2][PN_WARPS];
    PnTeam<G> tm(red);
    if constexpr (LONG) {
        for (unsigned base = tm.first(); base < (unsigned)rows; base += tm.step()) {
            const PnAt at = tm.at(base, rows, n);
            const AT *a = A + (size_t)at.row * n;
            pn_forward_row<MODE, LONG, E, C>(S + (size_t)at.row * n, tm, at, n, taus.of(at.row),
                                             [&](float2(&x)[C], int w) { pn_load<E, C>(x, a, w, at.n, tm.lane, fill); });
        }
    } else {
        const int w0 = tm.part * W;
        pn_vec<E, AT> next[C];
        PnAt at = tm.at(tm.first(), rows, n);
        pn_fetch<E, C>(next, A + (size_t)at.row * n, w0, at.n, tm.lane, fill);
        for (unsigned base = tm.first(); base < (unsigned)rows; base += tm.step()) {
            const PnAt cur = at;
            pn_vec<E, AT> v[C];
#pragma unroll
            for (int c = 0; c < C; c++) v[c] = next[c];
            at = tm.at(base + tm.step(), rows, n);
            pn_fetch<E, C>(next, A + (size_t)at.row * n, w0, at.n, tm.lane, fill);
            pn_forward_row<MODE, LONG, E, C>(S + (size_t)cur.row * n, tm, cur, n, taus.of(cur.row),
                                             [&](float2(&x)[C], int w) { pn_unpack<E, C>(x, v, fill); });
        }
    }
}

// Backward: dS in, dL/dA out. S is recomputed from A, and written to S_out
// when that is not null (bf16 mode does not keep S from the forward). out
// may alias dS and S_out may alias A: each element is read before it is
// written, by the same lane, and the warps of a team own disjoint windows;
// the loads issued ahead are of another row.

// A row that fits the team's windows, from its A and dS in registers: S is
// stored on the first pass, p and q are kept for the second.
template <int MODE, int E, int C, int G, typename ST, typename DT, typename VA, typename VD>
static __device__ __forceinline__ void pn_backward_row(DT *out, ST *s_out, PnTeam<G> &tm, PnAt at,
                                                       int n_full, float tau, const VA (&va)[C],
                                                       const VD (&vd)[C]) {
    constexpr int W = 32 * E * C;
    const float fill = pn_fill<MODE>();
    const int w0 = tm.part * W;
    float2 p[C], q[C];
    const PnRow r = pn_row_stats<MODE, false, W>(
        q, tm, at.n, n_full, tau, [&](float2(&x)[C], int w) { pn_unpack<E, C>(x, va, fill); });
    float dot = 0.0f;
    if (w0 < at.n) {
        float2 sv[C];
#pragma unroll
        for (int c = 0; c < C; c++) {
            const float2 a = pn_slot<E>(va[c], fill), d = pn_slot<E>(vd[c], 0.0f);
            const PnBack e0 = pn_back<MODE>(a.x, d.x, r), e1 = pn_back<MODE>(a.y, d.y, r);
            dot += pn_dot(e0, e1);
            p[c] = make_float2(e0.p, e1.p);
            if (MODE != PNORM_L2_GELU) q[c] = make_float2(e0.q, e1.q);
            sv[c] = make_float2(e0.s, e1.s);
        }
        if (s_out) pn_store<E, C>(s_out, w0, at.n, tm.lane, sv);
    }
    const float cdot = tm.sum(dot) / (MODE == PNORM_SOFTMAX ? (float)n_full : r.ss);
    const float m = MODE == PNORM_SOFTMAX ? 1.0f : r.k;
    if (w0 < at.n) {
#pragma unroll
        for (int c = 0; c < C; c++) {
            if (MODE == PNORM_L2_GELU) q[c] = pn_slot<E>(va[c], fill); // q = A: 9 registers, not 18
            p[c] = make_float2(m * (p[c].x - cdot * q[c].x), m * (p[c].y - cdot * q[c].y));
        }
        pn_store<E, C>(out, w0, at.n, tm.lane, p);
    }
}

// One window's backward values, from A in q and dS in p: p, q and S (in sv)
// as pn_back gives them, and the window's terms of sum(t) added to dot.
template <int MODE, int C>
static __device__ __forceinline__ void pn_back_window(float2 (&p)[C], float2 (&q)[C],
                                                      float2 (&sv)[C], float &dot,
                                                      const PnRow &r) {
#pragma unroll
    for (int c = 0; c < C; c++) {
        PnBack e0 = pn_back<MODE>(q[c].x, p[c].x, r), e1 = pn_back<MODE>(q[c].y, p[c].y, r);
        dot += pn_dot(e0, e1);
        p[c] = make_float2(e0.p, e1.p);
        q[c] = make_float2(e0.q, e1.q);
        sv[c] = make_float2(e0.s, e1.s);
    }
}

// A row longer than the team's windows: each pass reads it again.
template <int MODE, int E, int C, int G, typename AT, typename ST, typename DT>
static __device__ __forceinline__ void pn_backward_long_row(DT *out, ST *s_out, const DT *d,
                                                            const AT *a, PnTeam<G> &tm, PnAt at,
                                                            int n_full, float tau) {
    constexpr int W = 32 * E * C;
    const float fill = pn_fill<MODE>();
    const int n = at.n;
    float2 p[C], q[C], sv[C]; // p, q start as dS and A
    const PnRow r = pn_row_stats<MODE, true, W>(
        q, tm, n, n_full, tau, [&](float2(&x)[C], int w) { pn_load<E, C>(x, a, w, n, tm.lane, fill); });
    float dot = 0.0f;
    for (int w0 = tm.part * W; w0 < n; w0 += G * W) {
        if (n > G * W) pn_load<E, C>(q, a, w0, n, tm.lane, fill);
        pn_load<E, C>(p, d, w0, n, tm.lane, 0.0f);
        pn_back_window<MODE>(p, q, sv, dot, r);
    }
    const float cdot = tm.sum(dot) / (MODE == PNORM_SOFTMAX ? (float)n_full : r.ss);
    const float m = MODE == PNORM_SOFTMAX ? 1.0f : r.k;
    for (int w0 = tm.part * W; w0 < n; w0 += G * W) {
        if (n > G * W) { // the row did not fit: this window again, from cache
            pn_load<E, C>(q, a, w0, n, tm.lane, fill);
            pn_load<E, C>(p, d, w0, n, tm.lane, 0.0f);
            float unused = 0.0f; // sum(t) was taken on the first pass
            pn_back_window<MODE>(p, q, sv, unused, r);
        }
#pragma unroll
        for (int c = 0; c < C; c++)
            p[c] = make_float2(m * (p[c].x - cdot * q[c].x), m * (p[c].y - cdot * q[c].y));
        pn_store<E, C>(out, w0, n, tm.lane, p);
        if (s_out) pn_store<E, C>(s_out, w0, n, tm.lane, sv);
    }
}

// At least 2 blocks per SM (up to 128 registers): the next row's A and dS
// take 2 C registers more than one row, and a cap of 80 (3 blocks) makes the
// kernels spill.
template <int MODE, bool LONG, int E, int C, int G, typename AT, typename ST, typename DT>
__global__ void __launch_bounds__(32 * PN_WARPS, 2)
    pnorm_backward_kernel(DT *out, ST *S_out, const DT *dS, const AT *A, PnTaus taus, int n,
                          int rows) {
    constexpr int W = 32 * E * C;
    __shared__ float red[2][PN_WARPS];
    PnTeam<G> tm(red);
    auto s_row = [&](unsigned row) { return S_out ? S_out + (size_t)row * n : nullptr; };
    if constexpr (LONG) {
        for (unsigned base = tm.first(); base < (unsigned)rows; base += tm.step()) {
            const PnAt at = tm.at(base, rows, n);
            pn_backward_long_row<MODE, E, C>(out + (size_t)at.row * n, s_row(at.row), dS + (size_t)at.row * n,
                                             A + (size_t)at.row * n, tm, at, n, taus.of(at.row));
        }
    } else {
        const int w0 = tm.part * W;
        pn_vec<E, AT> next_a[C];
        pn_vec<E, DT> next_d[C];
        PnAt at = tm.at(tm.first(), rows, n);
        pn_fetch<E, C>(next_a, A + (size_t)at.row * n, w0, at.n, tm.lane, pn_fill<MODE>());
        pn_fetch<E, C>(next_d, dS + (size_t)at.row * n, w0, at.n, tm.lane, 0.0f);
        for (unsigned base = tm.first(); base < (unsigned)rows; base += tm.step()) {
            const PnAt cur = at;
            pn_vec<E, AT> va[C];
            pn_vec<E, DT> vd[C];
#pragma unroll
            for (int c = 0; c < C; c++) va[c] = next_a[c], vd[c] = next_d[c];
            at = tm.at(base + tm.step(), rows, n);
            pn_fetch<E, C>(next_a, A + (size_t)at.row * n, w0, at.n, tm.lane, pn_fill<MODE>());
            pn_fetch<E, C>(next_d, dS + (size_t)at.row * n, w0, at.n, tm.lane, 0.0f);
            pn_backward_row<MODE, E, C>(out + (size_t)cur.row * n, s_row(cur.row), tm, cur, n,
                                        taus.of(cur.row), va, vd);
        }
    }
}

// Row shapes the kernels are built for, the same for forward and backward
// (so that both sum a row in the same order): pairs in the fewest slots that
// hold a whole row, up to 9 slots per warp (the backward keeps three values
// per element in registers; more would leave too few warps per SM), then
// teams of 2 and 4 warps; longer rows make several windows per warp ("long":
// teams of 4 and odd n only). Odd n: single elements, one warp, windows of 8
// slots.
template <int E, int C, int G> struct PnShape {
    static constexpr int e = E, c = C, g = G, w = 32 * E * C;
    static constexpr bool may_be_long = G == 4 || E == 1;
};
template <int MODE, bool LONG> struct PnKind {
    static constexpr int mode = MODE;
    static constexpr bool long_rows = LONG;
};
template <bool LONG, typename Sh, typename Launch>
static void pn_launch_mode(int mode, Sh sh, Launch launch) {
    if (mode == PNORM_SOFTMAX) launch(sh, PnKind<PNORM_SOFTMAX, LONG>());
    else if (mode == PNORM_GELU_L2) launch(sh, PnKind<PNORM_GELU_L2, LONG>());
    else launch(sh, PnKind<PNORM_L2_GELU, LONG>());
}
template <typename Sh, typename Launch> static void pn_launch_shape(int mode, int n, Sh sh, Launch launch) {
    if constexpr (Sh::may_be_long) {
        if (n > Sh::g * Sh::w) return pn_launch_mode<true>(mode, sh, launch);
    }
    pn_launch_mode<false>(mode, sh, launch);
}
template <typename Launch> static void pn_dispatch(OpsCtx *c, int mode, int n, Launch launch) {
    int slots = (n + 63) / 64;
    if (n % 2) pn_launch_shape(mode, n, PnShape<1, 8, 1>(), launch);
    else if (slots <= 1) pn_launch_shape(mode, n, PnShape<2, 1, 1>(), launch);
    else if (slots <= 2) pn_launch_shape(mode, n, PnShape<2, 2, 1>(), launch);
    else if (slots <= 3) pn_launch_shape(mode, n, PnShape<2, 3, 1>(), launch);
    else if (slots <= 4) pn_launch_shape(mode, n, PnShape<2, 4, 1>(), launch);
    else if (slots <= 5) pn_launch_shape(mode, n, PnShape<2, 5, 1>(), launch);
    else if (slots <= 6) pn_launch_shape(mode, n, PnShape<2, 6, 1>(), launch);
    else if (slots <= 9) pn_launch_shape(mode, n, PnShape<2, 9, 1>(), launch);
    else if (slots <= 18) pn_launch_shape(mode, n, PnShape<2, 9, 2>(), launch);
    else pn_launch_shape(mode, n, PnShape<2, 9, 4>(), launch);
    KERNEL_CHECK(c);
}

// The blocks of `kernel` resident on the GPU at once, asked once per kernel
// and kept in the context (an open-addressed table by the kernel's address).
static unsigned resident_blocks(OpsCtx *c, const void *kernel) {
    size_t h = ((uintptr_t)kernel >> 4) % TFC_RESIDENT_SLOTS;
    for (int probe = 0; probe < TFC_RESIDENT_SLOTS; probe++) {
        TfcResident *r = &c->resident[(h + probe) % TFC_RESIDENT_SLOTS];
        if (r->kernel == kernel) return r->blocks;
        if (r->kernel) continue;
        int dev, sms, per_sm;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
        CUDA_CHECK(
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * PN_WARPS, 0));
        r->kernel = kernel;
        r->blocks = (unsigned)(sms * (per_sm > 0 ? per_sm : 1));
        return r->blocks;
    }
    tfc_fail("pattention", "more kernels than the resident-blocks table holds", __FILE__, __LINE__);
}

// Blocks for N rows: at most those that fit on the GPU at once (the blocks
// take rows in turns).
template <auto Kernel> static unsigned pn_blocks(OpsCtx *c, int N, int rows_per_turn) {
    const unsigned resident = resident_blocks(c, (const void *)Kernel);
    const size_t turns = ((size_t)N + rows_per_turn - 1) / rows_per_turn;
    return (unsigned)(turns < resident ? turns : resident);
}

template <typename AT, typename ST>
static void pnorm_forward(OpsCtx *c, ST *S, const AT *A, PnTaus taus, int mode, int rows, int n) {
    pn_dispatch(c, mode, n, [&](auto sh, auto kind) {
        using Sh = decltype(sh);
        using K = decltype(kind);
        constexpr auto kernel = pnorm_forward_kernel<K::mode, K::long_rows, Sh::e, Sh::c, Sh::g, AT, ST>;
        kernel<<<pn_blocks<kernel>(c, rows, PN_WARPS / Sh::g), 32 * PN_WARPS, 0, c->stream>>>(
            S, A, taus, n, rows);
    });
}

template <typename AT, typename ST, typename DT>
static void pnorm_backward(OpsCtx *c, DT *out, ST *S_out, const DT *dS, const AT *A, PnTaus taus,
                           int mode, int rows, int n) {
    pn_dispatch(c, mode, n, [&](auto sh, auto kind) {
        using Sh = decltype(sh);
        using K = decltype(kind);
        constexpr auto kernel =
            pnorm_backward_kernel<K::mode, K::long_rows, Sh::e, Sh::c, Sh::g, AT, ST, DT>;
        kernel<<<pn_blocks<kernel>(c, rows, PN_WARPS / Sh::g), 32 * PN_WARPS, 0, c->stream>>>(
            out, S_out, dS, A, taus, n, rows);
    });
}

// ---- the elementwise activations of the baselines' MLP (ACT_GELU,
// ACT_SWIGLU): S depends on its own element of A only (SwiGLU: on the gate
// and up elements of its hidden unit), so no row statistics. The scores of
// a group member's row are W n wide (W = 1, or 2 for SwiGLU: gate columns
// then up columns, as the keys are stacked), its S row n wide. A thread
// takes VW consecutive hidden units of one row (16 bytes of each operand
// when n allows, else one), in a grid-stride loop.
template <int MODE> struct ActWidth {
    static constexpr int w = MODE == ACT_SWIGLU ? 2 : 1;
};

static __device__ __forceinline__ float act_f(float v) { return v; }
static __device__ __forceinline__ float act_f(bf16 v) { return __bfloat162float(v); }
static __device__ __forceinline__ void act_set(float &d, float v) { d = v; }
static __device__ __forceinline__ void act_set(bf16 &d, float v) { d = __float2bfloat16(v); }

// VW elements from p (one 16-byte access when VW > 1) into fp32, and back.
template <int VW, typename T> static __device__ __forceinline__ void act_load(float (&f)[VW], const T *p) {
    if constexpr (VW == 1) {
        f[0] = act_f(*p);
    } else {
        static_assert(VW * sizeof(T) == 16, "one 16-byte access");
        alignas(16) T e[VW];
        *reinterpret_cast<uint4 *>(e) = *reinterpret_cast<const uint4 *>(p);
#pragma unroll
        for (int i = 0; i < VW; i++) f[i] = act_f(e[i]);
    }
}
template <int VW, typename T> static __device__ __forceinline__ void act_store(T *p, const float (&f)[VW]) {
    if constexpr (VW == 1) {
        act_set(*p, f[0]);
    } else {
        alignas(16) T e[VW];
#pragma unroll
        for (int i = 0; i < VW; i++) act_set(e[i], f[i]);
        *reinterpret_cast<uint4 *>(p) = *reinterpret_cast<const uint4 *>(e);
    }
}

// SiLU(g) = g sigmoid(g); its derivative sigmoid(g) (1 + g (1 - sigmoid(g))).
static __device__ __forceinline__ float act_sigmoid(float g) { return 1.0f / (1.0f + __expf(-g)); }

// Where a thread's units lie: offset of its first score (A, dA) and of its
// first S element, for unit u of `per` VW-vectors per member row. I, the
// type of unit indices, is 32-bit unless there are 2^32 units or more (a
// 64-bit division costs several times a 32-bit one).
template <int W, int VW> struct ActAt {
    size_t a, s;
    template <typename I> __device__ ActAt(I u, I per, int n) {
        const I rm = u / per; // row * G + member
        const int j = (int)(u - rm * per) * VW;
        a = (size_t)rm * (size_t)(W * n) + j;
        s = (size_t)rm * (size_t)n + j;
    }
};

template <int MODE, int VW, typename T, typename I>
__global__ void act_forward_kernel(T *S, const T *A, int n, I units) {
    constexpr int W = ActWidth<MODE>::w;
    const I per = (I)(n / VW);
    for (I u = blockIdx.x * (I)blockDim.x + threadIdx.x; u < units; u += (I)gridDim.x * blockDim.x) {
        const ActAt<W, VW> at(u, per, n);
        float a[VW], s[VW];
        act_load<VW>(a, A + at.a);
        if constexpr (MODE == ACT_SWIGLU) {
            float up[VW];
            act_load<VW>(up, A + at.a + n);
#pragma unroll
            for (int i = 0; i < VW; i++) s[i] = a[i] * act_sigmoid(a[i]) * up[i];
        } else {
#pragma unroll
            for (int i = 0; i < VW; i++) s[i] = a[i] * pn_cdf(a[i]);
        }
        act_store<VW>(S + at.s, s);
    }
}

// dA from dS, which lies in dA where the unit's last score lies (GeLU: the
// score's own place; SwiGLU: the up column), so that each thread reads its
// dS before it writes its dA. S, recomputed, goes to S_out (may alias A,
// at the unit's first score) when that is not null.
template <int MODE, int VW, typename T, typename I>
__global__ void act_backward_kernel(T *dA, T *S_out, const T *A, int n, I units) {
    constexpr int W = ActWidth<MODE>::w;
    const I per = (I)(n / VW);
    for (I u = blockIdx.x * (I)blockDim.x + threadIdx.x; u < units; u += (I)gridDim.x * blockDim.x) {
        const ActAt<W, VW> at(u, per, n);
        float a[VW], ds[VW], s[VW];
        act_load<VW>(a, A + at.a);
        if constexpr (MODE == ACT_SWIGLU) {
            float up[VW], dup[VW];
            act_load<VW>(up, A + at.a + n);
            act_load<VW>(ds, dA + at.a + n);
#pragma unroll
            for (int i = 0; i < VW; i++) {
                const float sg = act_sigmoid(a[i]), silu = a[i] * sg;
                s[i] = silu * up[i];
                dup[i] = ds[i] * silu;
                ds[i] *= up[i] * sg * (1.0f + a[i] * (1.0f - sg)); // d gate
            }
            act_store<VW>(dA + at.a + n, dup);
        } else {
            act_load<VW>(ds, dA + at.a);
#pragma unroll
            for (int i = 0; i < VW; i++) {
                float pdf, cdf = pn_cdf_pdf(a[i], &pdf);
                s[i] = a[i] * cdf;
                ds[i] *= cdf + a[i] * pdf;
            }
        }
        act_store<VW>(dA + at.a, ds);
        if (S_out) act_store<VW>(S_out + at.a, s);
    }
}

static bool act_mode(int mode) { return mode == ACT_GELU || mode == ACT_SWIGLU; }
static int act_width(int mode) { return mode == ACT_SWIGLU ? 2 : 1; }

// VW units per thread when n and every pointer allow 16-byte accesses.
template <typename T, typename Launch>
static void act_dispatch(OpsCtx *c, int mode, int n, const void *p0, const void *p1,
                         Launch launch) {
    constexpr int VEC = 16 / sizeof(T);
    const bool vec = n % VEC == 0 && (((uintptr_t)p0 | (uintptr_t)p1) & 15) == 0;
    auto by_width = [&](auto mode_c) {
        if (vec) launch(mode_c, std::integral_constant<int, VEC>());
        else launch(mode_c, std::integral_constant<int, 1>());
    };
    if (mode == ACT_SWIGLU) by_width(std::integral_constant<int, ACT_SWIGLU>());
    else by_width(std::integral_constant<int, ACT_GELU>());
    KERNEL_CHECK(c);
}

// Launches kernel<I>(units) over the units with 256-thread blocks, I the
// narrowest index type that counts them (and the grid-stride steps past the
// last one).
template <typename Kernel32, typename Kernel64>
static void act_launch(size_t units, Kernel32 k32, Kernel64 k64) {
    const unsigned blocks = tfc_blocks(units, 256);
    if (units + (size_t)blocks * 256 <= 0xffffffffu) k32(blocks, (unsigned)units);
    else k64(blocks, units);
}

// S (rows x n) from the scores A (rows x W n); rows = N G.
template <typename T>
static void act_forward(OpsCtx *c, T *S, const T *A, int mode, int rows, int n) {
    act_dispatch<T>(c, mode, n, S, A, [&](auto m, auto vw) {
        constexpr int MODE = decltype(m)::value, VW = decltype(vw)::value;
        act_launch((size_t)rows * n / VW,
                   [&](unsigned b, unsigned u) {
                       act_forward_kernel<MODE, VW, T><<<b, 256, 0, c->stream>>>(S, A, n, u);
                   },
                   [&](unsigned b, size_t u) {
                       act_forward_kernel<MODE, VW, T><<<b, 256, 0, c->stream>>>(S, A, n, u);
                   });
    });
}

template <typename T>
static void act_backward(OpsCtx *c, T *dA, T *S_out, const T *A, int mode, int rows, int n) {
    act_dispatch<T>(c, mode, n, dA, A, [&](auto m, auto vw) {
        constexpr int MODE = decltype(m)::value, VW = decltype(vw)::value;
        act_launch(
            (size_t)rows * n / VW,
            [&](unsigned b, unsigned u) {
                act_backward_kernel<MODE, VW, T><<<b, 256, 0, c->stream>>>(dA, S_out, A, n, u);
            },
            [&](unsigned b, size_t u) {
                act_backward_kernel<MODE, VW, T><<<b, 256, 0, c->stream>>>(dA, S_out, A, n, u);
            });
    });
}

// ---- a group of G Pattentions sharing X (ops.h). Its scores are one N x Gn
// matrix (N x 2Gn under SwiGLU: member g's gate and up columns side by side),
// member g in columns [g n, (g + 1) n): one GEMM over the stacked keys gives
// them all, the pnorm kernels see (N G) rows of n, and dX and dK are again
// single GEMMs over the stacked rows; only the products with the values,
// Y_g = S_g V_g and their gradients, are batched per member. S is N x Gn in
// every mode.
// T is the element type of the stored scores and of the GEMM operands.

// TY: the type of Y (fp32, or bf16 when Y is an attention tensor in bf16
// mode). residual (G = 1, fp32 Y): Y = residual + S V, in the GEMM.
template <typename T, typename TY>
static void group_forward(OpsCtx *c, TY *Y, T *A, T *S, const T *X, const T *K, const T *V,
                          PnTaus taus, int mode, int N, int d_in, int n, int d_out,
                          const float *residual) {
    const int G = taus.G, Gn = G * n, cols = Gn * act_width(mode);
    tfc_gemm(c, A, cols, 0, X, d_in, 0, K, d_in, 0, N, cols, d_in, 0, 1, 0.0f, 1); // A = X K^T
    if (act_mode(mode))
        act_forward(c, S, (const T *)A, mode, N * G, n);
    else
        pnorm_forward(c, S, (const T *)A, taus, mode, N * G, n);
    if (residual) { // Y = residual + S V
        tfc_gemm_from(c, Y, residual, d_out, Dt<TY>::type(), TfcOperand{S, Gn, 0},
                      TfcOperand{V, d_out, 0}, Dt<T>::type(), N, d_out, n, 0, 0, 1.0f, 1.0f,
                      Dt<T>::compute(c));
        return;
    }
    tfc_gemm(c, Y, d_out, (long long)N * d_out, (const T *)S, Gn, n, V, d_out, (long long)n * d_out,
             N, d_out, n, 0, 0, 0.0f, G); // Y_g = S_g V_g
}

// S_out: where the backward writes S (bf16 mode, which does not keep it:
// over A, at the first score of each unit) or NULL; S: the S that dV takes
// (S_out, or the forward's, N x Gn). TX: the type of dX (that of X).
template <typename T, typename TX>
static void group_backward(OpsCtx *c, TX *dX, float *dK, float *dV, T *dA, T *S_out, const T *S,
                           const T *dY, const T *X, const T *K, const T *V, const T *A, PnTaus taus,
                           int mode, int N, int d_in, int n, int d_out, float dx_beta) {
    const int G = taus.G, Gn = G * n, w = act_width(mode), cols = Gn * w;
    const long long y_stride = (long long)N * d_out, v_stride = (long long)n * d_out;
    // dS_g = dY_g V_g^T: where the unit's last score lies (act_backward_kernel)
    tfc_gemm(c, dA + (w - 1) * n, cols, (long long)w * n, dY, d_out, y_stride, V, d_out, v_stride,
             N, n, d_out, 0, 1, 0.0f, G);
    if (act_mode(mode))
        act_backward(c, dA, S_out, (const T *)A, mode, N * G, n);
    else
        pnorm_backward(c, dA, S_out, (const T *)dA, A, taus, mode, N * G, n);
    const int s_ld = S == S_out ? cols : Gn, s_stride = S == S_out ? w * n : n;
    if (dV)
        tfc_gemm(c, dV, d_out, v_stride, S, s_ld, s_stride, dY, d_out, y_stride, n, d_out, N, 1, 0,
                 1.0f, G); // dV_g += S_g^T dY_g
    if (dX)
        tfc_gemm(c, dX, d_in, 0, (const T *)dA, cols, 0, K, d_in, 0, N, d_in, cols, 0, 0, dx_beta,
                 1); // dX (+)= dA K
    if (dK)
        tfc_gemm(c, dK, d_in, 0, (const T *)dA, cols, 0, X, d_in, 0, cols, d_in, N, 1, 0, 1.0f,
                 1); // dK += dA^T X
}

// The activation modes have no tau (and may pass none).
static PnTaus taus_of(const float *tau, int G, int mode) {
    if (G < 1 || G > PATT_MAX_GROUP) tfc_fail("pattention", "group size out of range", __FILE__, __LINE__);
    if (mode < PNORM_L2_GELU || mode > ACT_SWIGLU) tfc_fail("pattention", "unknown mode", __FILE__, __LINE__);
    PnTaus t = {};
    for (int g = 0; g < G; g++) t.t[g] = act_mode(mode) ? 0.0f : tau[g];
    t.G = G;
    return t;
}

// Zeroes n elements of a tensor that is an attention tensor when `attn`.
static void zero_rows(OpsCtx *c, float *p, size_t n, bool attn) {
    CUDA_CHECK(
        cudaMemsetAsync(p, 0, n * (attn ? tfc_attn_elem_bytes(c) : sizeof(float)), c->stream));
}

// bf16 mode: the A and dA buffers hold bf16 and S is not kept: forward
// writes it into the dA scratch for the Y product, backward recomputes it
// from A inside the pnorm (or activation) backward (which reads A anyway)
// and writes it over A (each element read before it is written, by the same
// lane), so that no Pattention needs memory for S (N*n*2 bytes each, a
// quarter of the activations). The operands X, K, V, dY are rounded into
// bf16 workspaces per call, except K and V when the weights mirror holds them
// (AdamW keeps it; cache_weights makes it before decoding),
// a normalized X, which the normalization kernel writes in bf16 directly
// (and backward reads back), and attention tensors (ops.h), which are bf16
// already; an attention-tensor Y or dX is written in bf16 by its GEMM.
// Under ACT_SWIGLU the caller passes n = 2h (the score columns): S needs
// only half of what is asked.
void cu_pattention_sizes(const Ops *ops, int G, int N, int n, size_t *a_floats, size_t *s_floats,
                         size_t *da_floats) {
    ops_pattention_sizes_full(G, N, n, a_floats, s_floats, da_floats);
    if (ops->ctx->precision == MATMUL_BF16) { // bf16 elements, two per float; S recomputed
        *a_floats = *da_floats = ((size_t)G * N * n + 1) / 2;
        *s_floats = 0;
    }
}

static bool pattention_few_rows(OpsCtx *c, float *Y, float *A, float *S, PattInput in,
                                const void *K, const void *V, PnTaus taus, int mode, int N,
                                int d_in, int n, int d_out, const float *residual, int y_attn);

static void pattention_forward(OpsCtx *c, float *Y, float *A, float *S, float *dA, PattInput in,
                               const float *K, const float *V, const float *tau, int G, int mode,
                               int N, int d_in, int n, int d_out, int y_attn,
                               const float *residual) {
    PnTaus taus = taus_of(tau, G, mode);
    if (N <= 0) return;
    if (residual && (G != 1 || y_attn))
        tfc_fail("pattention", "a residual with a group or an attention-tensor output", __FILE__,
                 __LINE__);
    const bool bf16_mode = c->precision == MATMUL_BF16;
    const size_t k_rows = (size_t)G * n * act_width(mode);
    // bf16 operands: the mirror's, or converted here once for either path
    const bool convert = bf16_mode && n > 0;
    const bf16 *Kb = convert ? tfc_bf16_input(c, TFC_WS_BF16_K, K, k_rows * d_in) : nullptr;
    const bf16 *Vb = convert ? tfc_bf16_input(c, TFC_WS_BF16_V, V, (size_t)G * n * d_out) : nullptr;
    if (pattention_few_rows(c, Y, A, S, in, bf16_mode ? (const void *)Kb : K,
                            bf16_mode ? (const void *)Vb : V, taus, mode, N, d_in, n, d_out,
                            residual, y_attn))
        return;
    // the input first: it writes the normalization statistics even when n = 0
    const bf16 *Xb = bf16_mode ? tfc_input_bf16(c, in, N, d_in, true) : nullptr;
    const float *X = bf16_mode ? nullptr : tfc_input_fp32(c, in, N, d_in, true);
    if (n <= 0) { // no parameter tokens: Y = 0 (+ residual)
        if (residual)
            CUDA_CHECK(cudaMemcpyAsync(Y, residual, (size_t)N * d_out * sizeof(float),
                                       cudaMemcpyDeviceToDevice, c->stream));
        else
            zero_rows(c, Y, (size_t)G * N * d_out, y_attn);
        return;
    }
    if (!bf16_mode) {
        group_forward<float>(c, Y, A, S, X, K, V, taus, mode, N, d_in, n, d_out, residual);
        return;
    }
    if (y_attn)
        group_forward<bf16>(c, (bf16 *)Y, (bf16 *)A, (bf16 *)dA, Xb, Kb, Vb, taus, mode, N, d_in, n,
                            d_out, nullptr);
    else
        group_forward<bf16>(c, Y, (bf16 *)A, (bf16 *)dA, Xb, Kb, Vb, taus, mode, N, d_in, n, d_out,
                            residual);
}

static void pattention_backward(OpsCtx *c, float *dX, float *dK, float *dV, float *dA,
                                const float *dY, PattInput in, const float *K, const float *V,
                                float *A, float *S, const float *tau, int G, int mode, int N,
                                int d_in, int n, int d_out, int accumulate_dx, int y_attn) {
    PnTaus taus = taus_of(tau, G, mode);
    if (N <= 0) return;
    if (in.attn && accumulate_dx)
        tfc_fail("pattention", "accumulating into an attention-tensor dX", __FILE__, __LINE__);
    float dx_beta = accumulate_dx ? 1.0f : 0.0f;
    if (n <= 0) { // no parameter tokens: dX (+)= 0
        if (dX && !accumulate_dx) zero_rows(c, dX, (size_t)N * d_in, in.attn);
        return;
    }
    const size_t k_rows = (size_t)G * n * act_width(mode);
    if (c->precision != MATMUL_BF16) {
        group_backward<float>(c, dX, dK, dV, dA, nullptr, S, dY,
                              tfc_input_fp32(c, in, N, d_in, false), K, V, A, taus, mode, N, d_in,
                              n, d_out, dx_beta);
        return;
    }
    const bf16 *dYb =
        y_attn ? (const bf16 *)dY : tfc_bf16_copy(c, TFC_WS_BF16_DY, dY, (size_t)G * N * d_out);
    const bf16 *Xb = tfc_input_bf16(c, in, N, d_in, false);
    const bf16 *Kb = tfc_bf16_input(c, TFC_WS_BF16_K, K, k_rows * d_in);
    const bf16 *Vb = tfc_bf16_input(c, TFC_WS_BF16_V, V, (size_t)G * n * d_out);
    bf16 *Ab = (bf16 *)A; // becomes S
    if (in.attn)
        group_backward<bf16>(c, (bf16 *)dX, dK, dV, (bf16 *)dA, Ab, Ab, dYb, Xb, Kb, Vb, Ab, taus,
                             mode, N, d_in, n, d_out, dx_beta);
    else
        group_backward<bf16>(c, dX, dK, dV, (bf16 *)dA, Ab, Ab, dYb, Xb, Kb, Vb, Ab, taus, mode, N,
                             d_in, n, d_out, dx_beta);
}

// ---- a few rows (decoding): the forward as two matrix-vector kernels ----
// With one row per stream (N <= PD_MAX_ROWS), the GEMMs above leave most of
// the GPU idle and pay a launch per step (norm, A, pnorm, Y). Here:
//   pd_scores:  the input rows normalized in each block (LayerNorm / RMSNorm,
//               block 0 saving the statistics and xn), then A = X K^T, a warp
//               per PD_KPW key rows reading each key row once for all rows;
//   pd_values:  grid (column chunk, row split, member): each block computes
//               its row's statistics from A (cheap: N G n floats), S for its
//               split of the value rows (block column 0 saving S), and its
//               partial S V over PD_CHUNK columns; the last block of a
//               column chunk to finish adds the partials (its warps a share
//               each, then the warps in order: deterministic) and the
//               residual, and writes Y.
// A lane takes four consecutive elements of a key or value row (one 16-byte
// access in fp32, 8 bytes in bf16). In fp32 (or tf32) mode the products are
// exact fp32. In bf16 mode (W = bf16) the keys and values are bf16 (the
// weights mirror when it holds them, tfc_bf16_input): half the bytes per
// token, and no conversion kernels. The kernels then take the operands the
// GEMMs of that mode take: the input rows rounded to bf16 (a normalized
// input's also written to xn in bf16, as the norm kernel would), A stored in
// bf16, S rounded to bf16 for the product with V and not kept (bf16 mode
// recomputes it in backward), Y in bf16 when it is an attention tensor; the
// sums stay fp32.
#define PD_MAX_ROWS 4
#define PD_WARPS 8
#define PD_KPW 2               // key rows per warp in pd_scores
#define PD_VPW 8               // value rows per warp in pd_values
#define PD_CHUNK 128           // columns of a pd_values block: four per lane
#define PD_SPLIT (PD_WARPS * PD_VPW)
#define PD_MAX_COUNTERS 4096   // column chunks x members that can run at once
#define PD_MAX_XS (32 << 10)   // bytes of input rows a pd_scores block holds

// Four consecutive elements of an fp32 or bf16 row as floats, and back.
static __device__ __forceinline__ float4 pd_ld4(const float *p) {
    return *reinterpret_cast<const float4 *>(p);
}
static __device__ __forceinline__ float4 pd_ld4(const bf16 *p) {
    const uint2 u = *reinterpret_cast<const uint2 *>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
    return make_float4(a.x, a.y, b.x, b.y);
}
static __device__ __forceinline__ void pd_st4(float *p, float4 v) {
    *reinterpret_cast<float4 *>(p) = v;
}
static __device__ __forceinline__ void pd_st4(bf16 *p, float4 v) {
    alignas(8) __nv_bfloat162 h[2] = {__floats2bfloat162_rn(v.x, v.y),
                                      __floats2bfloat162_rn(v.z, v.w)};
    *reinterpret_cast<uint2 *>(p) = *reinterpret_cast<const uint2 *>(h);
}
static __device__ __forceinline__ float pd_ld(const float *p) { return *p; }
static __device__ __forceinline__ float pd_ld(const bf16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void pd_st(float *p, float v) { *p = v; }
static __device__ __forceinline__ void pd_st(bf16 *p, float v) { *p = __float2bfloat16(v); }
// v as a product of W operands takes it: itself, or rounded to bf16.
template <typename W> static __device__ __forceinline__ float pd_operand(float v) {
    if constexpr (std::is_same<W, bf16>::value) return __bfloat162float(__float2bfloat16(v));
    else return v;
}

// f(i, a_i) for i = threadIdx.x, + blockDim.x, ... below n, in that order,
// PD_ROW_LOADS loads in flight at a time (tfc_batched_pass).
#define PD_ROW_LOADS 4
template <typename T, typename F>
static __device__ __forceinline__ void pd_row_pass(const T *a, int n, F f) {
    tfc_batched_pass<PD_ROW_LOADS>((int)threadIdx.x, n, (int)blockDim.x,
                                   [a](int i) { return pd_ld(a + i); }, f);
}

// The N input rows into xs as floats, each normalized (LayerNorm / RMSNorm)
// when the input says so, and rounded as the products of W take them; the
// writer block also saves the statistics and xn, as the norm kernel would.
template <typename W, typename XT>
static __device__ __forceinline__ void pd_input_rows(float *xs, const PattInput &in, int N,
                                                     int d_in, bool writer) {
    __shared__ float stat[PD_MAX_ROWS][2];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const XT *x = (const XT *)in.x;
    // a row normalized here is rounded after its normalization, below. The
    // loops over shared memory are unrolled for the same reason as
    // pd_row_pass (each thread's sums keep their order)
    pd_row_pass(x, N * d_in, [&](int i, float v) {
        xs[i] = in.norm == NORM_NONE ? pd_operand<W>(v) : v;
    });
    __syncthreads();
    if (in.norm == NORM_NONE) return;
    if (warp < N) { // warp r: row r's statistics, two passes over shared memory
        const float *xr = xs + (size_t)warp * d_in;
        float mean = 0.0f, ss = 0.0f;
        if (in.norm == NORM_LAYER) {
#pragma unroll 4
            for (int i = lane; i < d_in; i += 32) mean += xr[i];
            mean = tfc_warp_sum(mean) / (float)d_in;
        }
#pragma unroll 4
        for (int i = lane; i < d_in; i += 32) ss += (xr[i] - mean) * (xr[i] - mean);
        ss = tfc_warp_sum(ss) / (float)d_in;
        const float eps = in.norm == NORM_LAYER ? LAYERNORM_EPS : RMSNORM_EPS;
        if (lane == 0) stat[warp][0] = mean, stat[warp][1] = rsqrtf(ss + eps);
    }
    __syncthreads();
#pragma unroll 4
    for (int i = threadIdx.x; i < N * d_in; i += blockDim.x) {
        const int r = i / d_in;
        float v = (xs[i] - stat[r][0]) * stat[r][1];
        if (in.norm == NORM_RMS && in.w) v *= in.w[i - r * d_in];
        xs[i] = pd_operand<W>(v);
    }
    __syncthreads();
    if (writer) {
        for (int i = threadIdx.x; i < N * d_in; i += blockDim.x) pd_st((W *)in.xn + i, xs[i]);
        if (threadIdx.x < N) {
            if (in.mean) in.mean[threadIdx.x] = stat[threadIdx.x][0];
            in.rstd[threadIdx.x] = stat[threadIdx.x][1];
        }
    }
}

// W: the type of the keys, the scores A and xn; XT: the type of the input
// rows (bf16 only for a bf16 attention tensor).
template <int NR, int KV4, typename W, typename XT>
__global__ void __launch_bounds__(PD_WARPS * 32)
pd_scores_kernel(W *A, PattInput in, const W *K, int N, int d_in, int cols) {
    extern __shared__ float4 pd_xs4[]; // NR x d_in
    float *xs = (float *)pd_xs4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, d4 = d_in / 4;
    const int c0 = (blockIdx.x * PD_WARPS + warp) * PD_KPW;
    // the key rows first: they do not depend on earlier kernels
    float4 kv[PD_KPW][KV4];
#pragma unroll
    for (int k = 0; k < PD_KPW; k++)
#pragma unroll
        for (int j = 0; j < KV4; j++) {
            const int i = lane + 32 * j;
            kv[k][j] = c0 + k < cols && i < d4 ? pd_ld4(K + (size_t)(c0 + k) * d_in + 4 * i)
                                               : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    tfc_pdl_wait();
    tfc_pdl_trigger();
    pd_input_rows<W, XT>(xs, in, N, d_in, blockIdx.x == 0);
    float acc[NR][PD_KPW] = {};
#pragma unroll
    for (int j = 0; j < KV4; j++) {
        const int i = lane + 32 * j;
        if (i >= d4) break;
#pragma unroll
        for (int r = 0; r < NR; r++) {
            const float4 xv = r < N ? pd_xs4[r * d4 + i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
            for (int k = 0; k < PD_KPW; k++)
                acc[r][k] += xv.x * kv[k][j].x + xv.y * kv[k][j].y + xv.z * kv[k][j].z +
                             xv.w * kv[k][j].w;
        }
    }
#pragma unroll
    for (int r = 0; r < NR; r++)
#pragma unroll
        for (int k = 0; k < PD_KPW; k++) {
            const float s = tfc_warp_sum(acc[r][k]);
            if (lane == 0 && r < N && c0 + k < cols) pd_st(A + (size_t)r * cols + c0 + k, s);
        }
}

// S of a score a (and, for SwiGLU, its up score) given its row's statistics.
template <int MODE>
static __device__ __forceinline__ float pd_s_of(float a, float up, float2 st) {
    if constexpr (MODE == ACT_SWIGLU) {
        return a * act_sigmoid(a) * up;
    } else if constexpr (MODE == ACT_GELU) {
        return a * pn_cdf(a);
    } else {
        const PnRow r = {st.x, st.y, 0.0f};
        return pn_value<MODE>(a, r);
    }
}

// S of score i of member g of row r (A's row holds cols = G n W scores).
template <int MODE, typename W>
static __device__ __forceinline__ float pd_s(const W *arow, int g, int i, int n, float2 st) {
    if constexpr (MODE == ACT_SWIGLU)
        return pd_s_of<MODE>(pd_ld(arow + g * 2 * n + i), pd_ld(arow + g * 2 * n + n + i), st);
    else
        return pd_s_of<MODE>(pd_ld(arow + g * n + i), 0.0f, st);
}

// The statistics pn_value needs, (k, mx), of a row of n scores, by the block.
template <int MODE, typename W>
static __device__ __forceinline__ float2 pd_stats(const W *a, int n, float tau, float *red) {
    if constexpr (MODE == PNORM_SOFTMAX) {
        float mx = -INFINITY;
        pd_row_pass(a, n, [&](int, float u) { mx = fmaxf(mx, u); });
        mx = tfc_block_max(mx, red);
        float sum = 0.0f;
        pd_row_pass(a, n, [&](int, float u) { sum += expf(u - mx); });
        return make_float2((float)n / tfc_block_sum(sum, red), mx);
    } else if constexpr (MODE == PNORM_L2_GELU || MODE == PNORM_GELU_L2) {
        float ss = 0.0f;
        pd_row_pass(a, n, [&](int, float u) {
            if (MODE == PNORM_GELU_L2) u *= pn_cdf(u);
            ss = fmaf(u, u, ss);
        });
        return make_float2(tau / sqrtf(tfc_block_sum(ss, red) + PNORM_EPS), 0.0f);
    } else {
        return make_float2(0.0f, 0.0f);
    }
}

// W: the type of A and the values; YT: the type of Y (bf16 only for a bf16
// attention tensor). S: NULL when not kept (bf16 mode).
template <int MODE, int NR, typename W, typename YT>
__global__ void __launch_bounds__(PD_WARPS * 32)
pd_values_kernel(YT *Y, float *S, const W *A, const W *V, PnTaus taus, const float *residual,
                 float *partials, unsigned *counters, int N, int n, int d_out, int width) {
    __shared__ float2 st[NR];
    __shared__ float s_sh[NR][PD_SPLIT];
    __shared__ float4 red[PD_WARPS][NR][32];
    __shared__ float red1[32];
    __shared__ bool last;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, G = taus.G;
    const int chunk = blockIdx.x, split = blockIdx.y, g = blockIdx.z, splits = gridDim.y;
    const int cols = G * n * width, i0 = split * PD_SPLIT;
    const int j4 = chunk * (PD_CHUNK / 4) + lane, d4 = d_out / 4;
    // the value rows first: they do not depend on earlier kernels
    const W *Vg = V + (size_t)g * n * d_out;
    float4 vv[PD_VPW];
#pragma unroll
    for (int k = 0; k < PD_VPW; k++) {
        const int i = i0 + warp * PD_VPW + k;
        vv[k] = i < n && j4 < d4 ? pd_ld4(Vg + (size_t)i * d_out + 4 * j4)
                                 : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    tfc_pdl_wait();
    tfc_pdl_trigger();
    for (int r = 0; r < N; r++) {
        const float2 v = pd_stats<MODE>(A + (size_t)r * cols + g * n, n, taus.t[g], red1);
        if (threadIdx.x == 0) st[r] = v;
    }
    __syncthreads();
    for (int t = threadIdx.x; t < NR * PD_SPLIT; t += blockDim.x) {
        const int r = t / PD_SPLIT, i = i0 + t % PD_SPLIT;
        float s = 0.0f;
        if (r < N && i < n) {
            s = pd_s<MODE>(A + (size_t)r * cols, g, i, n, st[r]);
            if (S && chunk == 0) S[(size_t)r * G * n + g * n + i] = s;
        }
        s_sh[r][t % PD_SPLIT] = pd_operand<W>(s);
    }
    __syncthreads();
    float4 acc[NR] = {};
#pragma unroll
    for (int k = 0; k < PD_VPW; k++)
#pragma unroll
        for (int r = 0; r < NR; r++) {
            const float s = s_sh[r][warp * PD_VPW + k];
            acc[r].x = fmaf(s, vv[k].x, acc[r].x);
            acc[r].y = fmaf(s, vv[k].y, acc[r].y);
            acc[r].z = fmaf(s, vv[k].z, acc[r].z);
            acc[r].w = fmaf(s, vv[k].w, acc[r].w);
        }
#pragma unroll
    for (int r = 0; r < NR; r++) red[warp][r][lane] = acc[r];
    __syncthreads();
    // thread (r, lane): the block's sum over its warps, in warp order
    const int r = warp;
    float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const bool mine = r < N && j4 < d4;
    if (mine)
        for (int w = 0; w < PD_WARPS; w++) {
            const float4 v = red[w][r][lane];
            sum.x += v.x, sum.y += v.y, sum.z += v.z, sum.w += v.w;
        }
    YT *Yr = Y + (size_t)g * N * d_out + (size_t)r * d_out + 4 * j4; // (valid when mine)
    const float4 *R4 = reinterpret_cast<const float4 *>(residual);
    if (splits == 1) {
        if (mine) {
            if (R4) {
                const float4 x = R4[(size_t)r * d4 + j4];
                sum.x += x.x, sum.y += x.y, sum.z += x.z, sum.w += x.w;
            }
            pd_st4(Yr, sum);
        }
        return;
    }
    float4 *P4 = reinterpret_cast<float4 *>(partials);
    const size_t slab = (size_t)N * d4; // one split's partial of one member
    if (mine) P4[((size_t)g * splits + split) * slab + (size_t)r * d4 + j4] = sum;
    __threadfence();
    __syncthreads();
    unsigned *counter = counters + (size_t)g * gridDim.x + chunk;
    if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == (unsigned)splits - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    // every warp reads its share of the splits at once (w, w + PD_WARPS, ...,
    // PD_ROW_LOADS of them loaded before any is added): one round of L2
    // latency instead of one per split; then thread (r, lane) adds the warps'
    // sums in warp order (deterministic)
    if (j4 < d4) {
        struct Rows {
            float4 q[NR];
        };
        float4 part[NR] = {};
        tfc_batched_pass<PD_ROW_LOADS>(
            warp, splits, PD_WARPS,
            [&](int sp) {
                Rows v;
#pragma unroll
                for (int q = 0; q < NR; q++)
                    v.q[q] = q < N ? __ldcg(&P4[((size_t)g * splits + sp) * slab + (size_t)q * d4 + j4])
                                   : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                return v;
            },
            [&](int, const Rows &v) {
#pragma unroll
                for (int q = 0; q < NR; q++) {
                    part[q].x += v.q[q].x, part[q].y += v.q[q].y;
                    part[q].z += v.q[q].z, part[q].w += v.q[q].w;
                }
            });
#pragma unroll
        for (int q = 0; q < NR; q++) red[warp][q][lane] = part[q];
    }
    __syncthreads();
    if (mine) {
        float4 total = R4 ? R4[(size_t)r * d4 + j4] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int w = 0; w < PD_WARPS; w++) {
            const float4 v = red[w][r][lane];
            total.x += v.x, total.y += v.y, total.z += v.z, total.w += v.w;
        }
        pd_st4(Yr, total);
    }
    if (threadIdx.x == 0) *counter = 0; // ready for the next launch
}

// The counters of pd_values (zero between launches: each last block resets
// its own), allocated once per context.
static unsigned *pd_counters(OpsCtx *c) {
    if (!c->pd_counters) {
        CUDA_CHECK(cudaMalloc(&c->pd_counters, PD_MAX_COUNTERS * sizeof(unsigned)));
        CUDA_CHECK(cudaMemset(c->pd_counters, 0, PD_MAX_COUNTERS * sizeof(unsigned)));
    }
    return c->pd_counters;
}

// The operands of one few-rows call, typed: W for the keys, values, scores
// and xn, XT for the input rows, YT for the output.
template <typename W, typename XT, typename YT> struct PdCall {
    YT *Y;
    W *A;
    float *S; // NULL: not kept
    PattInput in;
    const W *K, *V;
    PnTaus taus;
    int mode, N, d_in, n, d_out;
    const float *residual;
};

// f(std::integral_constant<int, MODE>()) for the Pattention mode `mode`: one
// switch for every launcher that instantiates a kernel per mode.
template <typename F> static auto pd_with_mode(int mode, F f) {
    switch (mode) {
    case PNORM_L2_GELU: return f(std::integral_constant<int, PNORM_L2_GELU>());
    case PNORM_GELU_L2: return f(std::integral_constant<int, PNORM_GELU_L2>());
    case PNORM_SOFTMAX: return f(std::integral_constant<int, PNORM_SOFTMAX>());
    case ACT_GELU: return f(std::integral_constant<int, ACT_GELU>());
    default: return f(std::integral_constant<int, ACT_SWIGLU>());
    }
}

template <int NR, int KV4, typename W, typename XT, typename YT>
static void pd_launch(OpsCtx *c, const PdCall<W, XT, YT> &p) {
    const int G = p.taus.G, width = act_width(p.mode), cols = G * p.n * width;
    const size_t xs_bytes = (size_t)p.N * p.d_in * sizeof(float);
    const unsigned score_blocks = (unsigned)((cols + PD_WARPS * PD_KPW - 1) / (PD_WARPS * PD_KPW));
    tfc_launch_pdl(c, pd_scores_kernel<NR, KV4, W, XT>, dim3(score_blocks), dim3(PD_WARPS * 32),
                   xs_bytes, p.A, p.in, p.K, p.N, p.d_in, cols);
    const dim3 grid((unsigned)((p.d_out + PD_CHUNK - 1) / PD_CHUNK),
                    (unsigned)((p.n + PD_SPLIT - 1) / PD_SPLIT), (unsigned)G);
    float *partials =
        grid.y > 1 ? (float *)tfc_workspace(c, TFC_WS_DECODE,
                                            (size_t)G * grid.y * p.N * p.d_out * sizeof(float))
                   : nullptr;
    unsigned *counters = pd_counters(c);
    pd_with_mode(p.mode, [&](auto m) {
        tfc_launch_pdl(c, pd_values_kernel<decltype(m)::value, NR, W, YT>, grid,
                       dim3(PD_WARPS * 32), 0, p.Y, p.S, (const W *)p.A, p.V, p.taus, p.residual,
                       partials, counters, p.N, p.n, p.d_out, width);
    });
}

template <int NR, typename W, typename XT, typename YT>
static void pd_launch_rows(OpsCtx *c, const PdCall<W, XT, YT> &p) {
    const int per_lane = (p.d_in / 4 + 31) / 32; // four-element pieces of a key row per lane
    if (per_lane <= 1)
        pd_launch<NR, 1>(c, p);
    else if (per_lane <= 2)
        pd_launch<NR, 2>(c, p);
    else if (per_lane <= 4)
        pd_launch<NR, 4>(c, p);
    else
        pd_launch<NR, 8>(c, p);
}

// ---- a few rows in one kernel (sm_90): a thread-block cluster per member ----
// The two kernels above meet in global memory: the scores, the partial sums
// of S V, a counter per column chunk and a last block that adds them (two
// round trips to memory and two launches per Pattention). On sm_90 a
// cluster of up to PF_MAX_CLUSTER blocks shares its shared memory, and one
// kernel does it all: block `rank` of member g's cluster owns value rows
// [rank rb, + rb) and their key rows (gate and up rows for SwiGLU), copies
// them to its shared memory before it waits for the kernel before (the
// weights do not depend on it), computes its scores, its rows' share of the
// row statistics (the blocks read each other's and combine them in rank
// order), S, and its partial S V over every column; then each block adds
// the cluster's partials for its slice of the columns, in rank order
// (deterministic), with the residual, and writes Y. The operands and
// roundings are those of the two kernels; the sums run in another order.
#define PF_MAX_CLUSTER 16
#define PF_MIN_ROWS 8          // fewest value rows a block takes
#define PF_SMEM (200 << 10)    // shared memory a block may use

template <int MODE, int NR, typename W, typename XT, typename YT>
__global__ void __launch_bounds__(PD_WARPS * 32)
pf_site_kernel(YT *Y, W *A, float *S, PattInput in, const W *K, const W *V, PnTaus taus,
               const float *residual, int N, int d_in, int n, int d_out, int rb, int rs,
               int v_staged) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    constexpr int WIDTH = MODE == ACT_SWIGLU ? 2 : 1;
    constexpr bool STATS = MODE == PNORM_SOFTMAX || MODE == PNORM_L2_GELU || MODE == PNORM_GELU_L2;
    const int rank = (int)cluster.block_rank(), CL = (int)cluster.num_blocks();
    const int g = blockIdx.y, G = taus.G, T = blockDim.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int d4 = d_in / 4, Q = d_out / 4, i0 = rank * rb;
    const int nb = min(rb, n - i0), kb = nb * WIDTH; // nb >= 1: the plan's rb
    const int kbp = (rb * WIDTH + 3) & ~3, cols = G * n * WIDTH;
    extern __shared__ float4 pf_smem[];
    float4 *ysum = pf_smem;               // NR x Q: this block's S V
    float4 *part = ysum + NR * Q;         // rs x NR x Q: its row splits' sums
    float *xs = (float *)(part + rs * NR * Q); // NR x d_in
    float *sc = xs + NR * d_in;           // NR x kbp: the scores, then S
    W *Ks = (W *)(sc + NR * kbp);         // kb x d_in
    W *Vs = Ks + (size_t)rb * WIDTH * d_in; // nb x d_out when staged
    __shared__ float2 pst[NR], st[NR];    // this block's share of the statistics, the row's
    __shared__ float red1[32];
    const W *Kg = K + (size_t)g * n * WIDTH * d_in;
    const W *Vg = V + ((size_t)g * n + i0) * d_out;
    for (int t = threadIdx.x; t < kb * d4; t += T) {
        const int k = t / d4, q = t - k * d4;
        const int row = k < nb ? i0 + k : n + i0 + (k - nb);
        __pipeline_memcpy_async(Ks + (size_t)k * d_in + 4 * q, Kg + (size_t)row * d_in + 4 * q,
                                4 * sizeof(W));
    }
    if (v_staged)
        for (int t = threadIdx.x; t < nb * Q; t += T) {
            const int k = t / Q, q = t - k * Q;
            __pipeline_memcpy_async(Vs + (size_t)k * d_out + 4 * q,
                                    Vg + (size_t)k * d_out + 4 * q, 4 * sizeof(W));
        }
    __pipeline_commit();
    tfc_pdl_wait();
    tfc_pdl_trigger();
    pd_input_rows<W, XT>(xs, in, N, d_in, rank == 0 && g == 0);
    __pipeline_wait_prior(0);
    __syncthreads();

    // the scores of the block's key rows, a warp per row
    const float4 *xs4 = (const float4 *)xs;
    for (int k = warp; k < kb; k += T / 32) {
        float acc[NR] = {};
        for (int q = lane; q < d4; q += 32) {
            const float4 kv = pd_ld4(Ks + (size_t)k * d_in + 4 * q);
#pragma unroll
            for (int r = 0; r < NR; r++) {
                const float4 xv = r < N ? xs4[r * d4 + q] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                acc[r] += xv.x * kv.x + xv.y * kv.y + xv.z * kv.z + xv.w * kv.w;
            }
        }
        const int col = g * n * WIDTH + (k < nb ? i0 + k : n + i0 + (k - nb));
#pragma unroll
        for (int r = 0; r < NR; r++) {
            const float a = tfc_warp_sum(acc[r]);
            if (lane == 0 && r < N) {
                sc[r * kbp + k] = pd_operand<W>(a);
                pd_st(A + (size_t)r * cols + col, a);
            }
        }
    }
    __syncthreads();

    if constexpr (STATS) {
        for (int r = 0; r < N; r++) { // the block's share: (max, sum of exp) or (sum of squares)
            const float *a = sc + r * kbp;
            float2 p;
            if constexpr (MODE == PNORM_SOFTMAX) {
                float mx = -INFINITY;
                for (int i = threadIdx.x; i < nb; i += T) mx = fmaxf(mx, a[i]);
                mx = tfc_block_max(mx, red1);
                float sum = 0.0f;
                for (int i = threadIdx.x; i < nb; i += T) sum += expf(a[i] - mx);
                p = make_float2(mx, tfc_block_sum(sum, red1));
            } else {
                float ss = 0.0f;
                for (int i = threadIdx.x; i < nb; i += T) {
                    float u = a[i];
                    if (MODE == PNORM_GELU_L2) u *= pn_cdf(u);
                    ss = fmaf(u, u, ss);
                }
                p = make_float2(tfc_block_sum(ss, red1), 0.0f);
            }
            if (threadIdx.x == 0) pst[r] = p;
        }
        cluster.sync();
        if (threadIdx.x < N) { // every block combines the cluster's shares in rank order
            const int r = threadIdx.x;
            if constexpr (MODE == PNORM_SOFTMAX) {
                float mx = -INFINITY, sum = 0.0f;
                for (int q = 0; q < CL; q++) mx = fmaxf(mx, cluster.map_shared_rank(pst, q)[r].x);
                for (int q = 0; q < CL; q++) {
                    const float2 p = cluster.map_shared_rank(pst, q)[r];
                    sum += p.y * expf(p.x - mx);
                }
                st[r] = make_float2((float)n / sum, mx);
            } else {
                float ss = 0.0f;
                for (int q = 0; q < CL; q++) ss += cluster.map_shared_rank(pst, q)[r].x;
                st[r] = make_float2(taus.t[g] / sqrtf(ss + PNORM_EPS), 0.0f);
            }
        }
        __syncthreads();
    }

    // S, in place of the scores (S kept in fp32 when asked), rounded as V's
    // product takes it
    for (int t = threadIdx.x; t < N * nb; t += T) {
        const int r = t / nb, i = t - r * nb;
        float *a = sc + r * kbp;
        const float s = pd_s_of<MODE>(a[i], WIDTH == 2 ? a[nb + i] : 0.0f, STATS ? st[r] : float2{});
        if (S) S[(size_t)r * G * n + (size_t)g * n + i0 + i] = s;
        a[i] = pd_operand<W>(s);
    }
    __syncthreads();

    // the block's S V: rs splits of its rows, a thread per column quad each
    const W *Vsrc = v_staged ? Vs : Vg;
    const int per = (nb + rs - 1) / rs;
    for (int t = threadIdx.x; t < rs * Q; t += T) {
        const int sp = t / Q, j = t - sp * Q, ia = sp * per, ib = min(nb, ia + per);
        float4 acc[NR] = {};
        for (int i = ia; i < ib; i++) {
            const float4 v = pd_ld4(Vsrc + (size_t)i * d_out + 4 * j);
#pragma unroll
            for (int r = 0; r < NR; r++) {
                const float s = r < N ? sc[r * kbp + i] : 0.0f;
                acc[r].x = fmaf(s, v.x, acc[r].x);
                acc[r].y = fmaf(s, v.y, acc[r].y);
                acc[r].z = fmaf(s, v.z, acc[r].z);
                acc[r].w = fmaf(s, v.w, acc[r].w);
            }
        }
#pragma unroll
        for (int r = 0; r < NR; r++) part[(sp * NR + r) * Q + j] = acc[r];
    }
    __syncthreads();
    for (int t = threadIdx.x; t < N * Q; t += T) {
        const int r = t / Q, j = t - r * Q;
        float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        for (int sp = 0; sp < rs; sp++) {
            const float4 v = part[(sp * NR + r) * Q + j];
            sum.x += v.x, sum.y += v.y, sum.z += v.z, sum.w += v.w;
        }
        ysum[r * Q + j] = sum;
    }
    cluster.sync();

    // this block's columns of Y: the cluster's partials in rank order, and the residual
    const int qc = (Q + CL - 1) / CL, j0 = rank * qc, nj = min(Q, j0 + qc) - j0;
    const float4 *R4 = reinterpret_cast<const float4 *>(residual);
    for (int t = threadIdx.x; t < N * nj; t += T) {
        const int r = t / nj, j = j0 + (t - r * nj);
        float4 total = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 4
        for (int q = 0; q < CL; q++) {
            const float4 v = cluster.map_shared_rank(ysum, q)[r * Q + j];
            total.x += v.x, total.y += v.y, total.z += v.z, total.w += v.w;
        }
        if (R4) {
            const float4 x = R4[(size_t)r * Q + j];
            total.x += x.x, total.y += x.y, total.z += x.z, total.w += x.w;
        }
        pd_st4(Y + (size_t)g * N * d_out + (size_t)r * d_out + 4 * j, total);
    }
    cluster.sync(); // no block leaves while another reads its shared memory
#endif
}

// A fused launch's shape: cl blocks a member, rb value rows each, rs row
// splits for S V, the values staged in shared memory or read from global.
struct PfPlan {
    int cl, rb, rs, v_staged;
    size_t smem;
};

// The plan for clusters of at most cl_max blocks; false when a block's key
// rows do not fit its shared memory.
static bool pf_plan(PfPlan *p, int cl_max, int NR, int width, size_t wbytes, int d_in, int n,
                    int d_out) {
    const int Q = d_out / 4, T = PD_WARPS * 32;
    int cl = (n + PF_MIN_ROWS - 1) / PF_MIN_ROWS;
    if (cl > cl_max) cl = cl_max;
    if (cl < 1) cl = 1;
    const int rb = (n + cl - 1) / cl;
    p->cl = (n + rb - 1) / rb;
    p->rb = rb;
    p->rs = Q < T ? T / Q : 1;
    const size_t fixed = 16 * (size_t)NR * Q * (1 + p->rs) + 4 * (size_t)NR * d_in +
                         4 * (size_t)NR * ((rb * width + 3) & ~3);
    const size_t keys = (size_t)rb * width * d_in * wbytes, values = (size_t)rb * d_out * wbytes;
    p->v_staged = fixed + keys + values <= PF_SMEM;
    p->smem = fixed + keys + (p->v_staged ? values : 0);
    return p->smem <= PF_SMEM;
}

// Whether a cluster of cl blocks of `kernel` with smem bytes each can run
// (asked once per context; the kernel's attributes are set then).
static bool pf_fits(OpsCtx *c, const void *kernel, int cl, size_t smem) {
    TfcClusterFit *free_slot = nullptr;
    for (int i = 0; i < TFC_CLUSTER_FITS; i++) {
        TfcClusterFit *f = &c->cluster_fit[i];
        if (f->kernel == kernel && f->cl == cl && f->smem == (int)smem) return f->fits;
        if (!f->kernel && !free_slot) free_slot = f;
    }
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, PF_SMEM));
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)cl);
    cfg.blockDim = dim3(PD_WARPS * 32);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = (unsigned)cl;
    attr.val.clusterDim.y = attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    const bool fits = cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) == cudaSuccess &&
                      clusters > 0;
    (void)cudaGetLastError(); // a refused query leaves no error behind
    if (free_slot) *free_slot = TfcClusterFit{kernel, cl, (int)smem, fits};
    return fits;
}

// What became of a few-rows call offered to the cluster kernel.
enum PfOutcome {
    PF_RAN,       // launched
    PF_NO_PLAN,   // its key rows do not fit a block's shared memory at any cluster size
    PF_REFUSED,   // planned, but the GPU cannot run such a cluster
};

template <int M, int NR, typename W, typename XT, typename YT>
static PfOutcome pf_launch(OpsCtx *c, const PdCall<W, XT, YT> &p) {
    const auto kernel = pf_site_kernel<M, NR, W, XT, YT>;
    const int width = M == ACT_SWIGLU ? 2 : 1;
    PfPlan plan;
    bool planned = false;
    for (int cl_max = PF_MAX_CLUSTER; cl_max >= 2; cl_max /= 2) {
        if (!pf_plan(&plan, cl_max, NR, width, sizeof(W), p.d_in, p.n, p.d_out)) continue;
        planned = true;
        if (!pf_fits(c, (const void *)kernel, plan.cl, plan.smem)) continue;
        tfc_launch_cluster(c, kernel, dim3((unsigned)plan.cl, (unsigned)p.taus.G),
                           dim3(PD_WARPS * 32), plan.smem, (unsigned)plan.cl, p.Y, p.A, p.S,
                           p.in, p.K, p.V, p.taus, p.residual, p.N, p.d_in, p.n, p.d_out, plan.rb,
                           plan.rs, plan.v_staged);
        return PF_RAN;
    }
    return planned ? PF_REFUSED : PF_NO_PLAN;
}

// The fused path, when the GPU and the shapes take it (false: the two
// kernels). Under TF_CUDA_FUSED_SITES=strict a call the plan admits and the
// GPU refuses stops the program, and the first launch says so on stderr, so
// that a test of the fused path cannot pass on the two kernels; a call whose
// key rows exceed shared memory (e.g. a SwiGLU FFN of fp32 keys at d 384,
// 1152 rows) still goes to the two kernels.
template <int NR, typename W, typename XT, typename YT>
static bool pf_run(OpsCtx *c, const PdCall<W, XT, YT> &p) {
    if (!c->fused_sites || p.n < 2 * PF_MIN_ROWS) return false;
    const PfOutcome o =
        pd_with_mode(p.mode, [&](auto m) { return pf_launch<decltype(m)::value, NR>(c, p); });
    if (c->fused_sites == TFC_FUSED_STRICT) {
        if (o == PF_REFUSED)
            tfc_fail("pattention",
                     "TF_CUDA_FUSED_SITES=strict: the GPU refused the cluster kernel's plan",
                     __FILE__, __LINE__);
        if (o == PF_RAN && !c->fused_announced) {
            fprintf(stderr, "TF_CUDA_FUSED_SITES=strict: few-rows Pattentions run on the cluster kernel\n");
            c->fused_announced = 1;
        }
    }
    return o == PF_RAN;
}

// Whether p points to a whole number of `bytes`-byte vectors.
static bool pd_aligned(const void *p, size_t bytes) { return (uintptr_t)p % bytes == 0; }

// Four elements of T in one access (16 bytes of fp32, 8 of bf16).
template <typename T> static bool pd_aligned4(const T *p) { return pd_aligned(p, 4 * sizeof(T)); }

template <typename W, typename XT, typename YT>
static bool pd_run(OpsCtx *c, const PdCall<W, XT, YT> &p) {
    const bool aligned = pd_aligned4(p.Y) && pd_aligned4(p.K) && pd_aligned4(p.V) &&
                         pd_aligned4((const XT *)p.in.x) &&
                         (p.in.norm == NORM_NONE || pd_aligned4((const W *)p.in.xn)) &&
                         pd_aligned4(p.residual);
    if (!aligned) return false;
    if (p.N <= 1) {
        if (!pf_run<1>(c, p)) pd_launch_rows<1>(c, p);
    } else if (!pf_run<PD_MAX_ROWS>(c, p)) {
        pd_launch_rows<PD_MAX_ROWS>(c, p);
    }
    return true;
}

// Whether the few-rows path takes a call of these shapes: few rows, whole
// four-element pieces, key rows of at most 8 pieces per lane.
static bool few_rows_shapes(int G, int N, int d_in, int n, int d_out) {
    return N <= PD_MAX_ROWS && n > 0 && d_in % 4 == 0 && d_out % 4 == 0 && d_in <= 32 * 4 * 8 &&
           (size_t)N * d_in * sizeof(float) <= PD_MAX_XS &&
           (size_t)G * ((d_out + PD_CHUNK - 1) / PD_CHUNK) <= PD_MAX_COUNTERS;
}

// The few-rows path, when it takes the call (few_rows_shapes, every buffer
// aligned for its accesses); false leaves it to the GEMMs. K and V are the
// operands the mode multiplies: fp32, or bf16 in bf16 mode.
static bool pattention_few_rows(OpsCtx *c, float *Y, float *A, float *S, PattInput in,
                                const void *K, const void *V, PnTaus taus, int mode, int N,
                                int d_in, int n, int d_out, const float *residual, int y_attn) {
    if (!few_rows_shapes(taus.G, N, d_in, n, d_out)) return false;
    if (c->precision != MATMUL_BF16)
        return pd_run(c, PdCall<float, float, float>{Y, A, S, in, (const float *)K,
                                                     (const float *)V, taus, mode, N, d_in, n,
                                                     d_out, residual});
    const bf16 *Kb = (const bf16 *)K, *Vb = (const bf16 *)V;
    bf16 *Ab = (bf16 *)A;
    if (in.attn && y_attn)
        return pd_run(c, PdCall<bf16, bf16, bf16>{(bf16 *)Y, Ab, nullptr, in, Kb, Vb, taus, mode,
                                                  N, d_in, n, d_out, residual});
    if (in.attn)
        return pd_run(c, PdCall<bf16, bf16, float>{Y, Ab, nullptr, in, Kb, Vb, taus, mode, N, d_in,
                                                   n, d_out, residual});
    if (y_attn)
        return pd_run(c, PdCall<bf16, float, bf16>{(bf16 *)Y, Ab, nullptr, in, Kb, Vb, taus, mode,
                                                   N, d_in, n, d_out, residual});
    return pd_run(c, PdCall<bf16, float, float>{Y, Ab, nullptr, in, Kb, Vb, taus, mode, N, d_in, n,
                                                d_out, residual});
}

void cu_pattention_forward(const Ops *ops, const PattArgs *a) {
    pattention_forward(ops->ctx, a->Y, a->A, a->S, a->dA, a->X, a->K, a->V, a->tau, a->G, a->mode,
                       a->N, a->d_in, a->n, a->d_out, a->y_attn, a->residual);
}

void cu_pattention_backward(const Ops *ops, const PattArgs *a) {
    pattention_backward(ops->ctx, a->dX, a->dK, a->dV, a->dA, a->dY, a->X, a->K, a->V, a->A, a->S,
                        a->tau, a->G, a->mode, a->N, a->d_in, a->n, a->d_out, a->accumulate_dx,
                        a->y_attn);
}
