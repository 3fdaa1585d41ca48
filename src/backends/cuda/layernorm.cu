// LayerNorm and RMSNorm over the last dim, one warp per row; weight/bias
// optional. RMSNorm is LayerNorm without centering (mean 0, no bias), so one
// set of kernels serves both: RMS (a template argument) drops the mean.
// Rows of a multiple of 128 floats (the presets' d) take the vector kernels:
// 16-byte loads, the row held in registers between its passes.
#include "common.cuh"

#define LN_ROWS_PER_BLOCK 4 // warps per block

// The output goes to out (fp32) and/or out16 (bf16; the normalized input of
// a Pattention under --precision bf16); either may be NULL.
// RMS: out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + RMSNORM_EPS), no mean.
template <bool RMS>
__global__ void layernorm_forward_kernel(float *out, bf16 *out16, float *mean, float *rstd,
                                         const float *x, const float *w, const float *b, int N,
                                         int C) {
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + (size_t)row * C;
    float m = 0.0f;
    if (!RMS) {
        float sum = 0.0f;
        for (int j = lane; j < C; j += 32) sum += xr[j];
        m = tfc_warp_sum(sum) / (float)C;
    }
    float var = 0.0f;
    for (int j = lane; j < C; j += 32) {
        float dx = xr[j] - m;
        var += dx * dx;
    }
    var = tfc_warp_sum(var) / (float)C;
    float rs = 1.0f / sqrtf(var + (RMS ? RMSNORM_EPS : LAYERNORM_EPS));
    for (int j = lane; j < C; j += 32) {
        float y = (xr[j] - m) * rs;
        if (w) y *= w[j];
        if (b) y += b[j];
        if (out) out[(size_t)row * C + j] = y;
        if (out16) out16[(size_t)row * C + j] = __float2bfloat16(y);
    }
    if (lane == 0) {
        if (mean && !RMS) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

// dx += rstd (dn - mean(dn) - xhat mean(dn xhat)), dn = dout * w; under RMS
// (xhat = x rstd) without the mean(dn) term.
template <bool RMS>
__global__ void layernorm_backward_dx_kernel(float *dx, const float *dout, const float *x,
                                             const float *w, const float *mean,
                                             const float *rstd, int N, int C) {
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + (size_t)row * C;
    const float *dr = dout + (size_t)row * C;
    float *dxr = dx + (size_t)row * C;
    float m = RMS ? 0.0f : mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int j = lane; j < C; j += 32) {
        float dn = w ? dr[j] * w[j] : dr[j];
        float xh = (xr[j] - m) * rs;
        s1 += dn;
        s2 += dn * xh;
    }
    s1 = RMS ? 0.0f : tfc_warp_sum(s1) / (float)C;
    s2 = tfc_warp_sum(s2) / (float)C;
    for (int j = lane; j < C; j += 32) {
        float dn = w ? dr[j] * w[j] : dr[j];
        float xh = (xr[j] - m) * rs;
        dxr[j] += rs * (dn - s1 - xh * s2);
    }
}

// V float4 per lane: C == 128 V.
template <bool RMS, int V>
__global__ void layernorm_forward_vec_kernel(float *out, bf16 *out16, float *mean, float *rstd,
                                             const float *x, const float *w, const float *b, int N) {
    const int C = 128 * V;
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)row * C);
    float4 v[V];
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < V; i++) {
        v[i] = xr[lane + 32 * i];
        sum += (v[i].x + v[i].y) + (v[i].z + v[i].w);
    }
    float m = RMS ? 0.0f : tfc_warp_sum(sum) / (float)C;
    float var = 0.0f;
#pragma unroll
    for (int i = 0; i < V; i++) {
        float a = v[i].x - m, bb = v[i].y - m, c = v[i].z - m, d = v[i].w - m;
        var += (a * a + bb * bb) + (c * c + d * d);
    }
    var = tfc_warp_sum(var) / (float)C;
    float rs = 1.0f / sqrtf(var + (RMS ? RMSNORM_EPS : LAYERNORM_EPS));
#pragma unroll
    for (int i = 0; i < V; i++) {
        int k = lane + 32 * i;
        float4 y = make_float4((v[i].x - m) * rs, (v[i].y - m) * rs, (v[i].z - m) * rs,
                               (v[i].w - m) * rs);
        if (w) {
            float4 ww = reinterpret_cast<const float4 *>(w)[k];
            y.x *= ww.x; y.y *= ww.y; y.z *= ww.z; y.w *= ww.w;
        }
        if (b) {
            float4 bv = reinterpret_cast<const float4 *>(b)[k];
            y.x += bv.x; y.y += bv.y; y.z += bv.z; y.w += bv.w;
        }
        if (out) reinterpret_cast<float4 *>(out + (size_t)row * C)[k] = y;
        if (out16) {
            __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(out16 + (size_t)row * C) + 2 * k;
            h[0] = __floats2bfloat162_rn(y.x, y.y);
            h[1] = __floats2bfloat162_rn(y.z, y.w);
        }
    }
    if (lane == 0) {
        if (mean && !RMS) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

template <bool RMS, int V>
__global__ void layernorm_backward_dx_vec_kernel(float *dx, const float *dout, const float *x,
                                                 const float *w, const float *mean,
                                                 const float *rstd, int N) {
    const int C = 128 * V;
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)row * C);
    const float4 *dr = reinterpret_cast<const float4 *>(dout + (size_t)row * C);
    float4 *dxr = reinterpret_cast<float4 *>(dx + (size_t)row * C);
    float m = RMS ? 0.0f : mean[row], rs = rstd[row];
    float4 dn[V], xh[V];
    float s1 = 0.0f, s2 = 0.0f;
#pragma unroll
    for (int i = 0; i < V; i++) {
        int k = lane + 32 * i;
        float4 d = dr[k], xv = xr[k];
        if (w) {
            float4 ww = reinterpret_cast<const float4 *>(w)[k];
            d.x *= ww.x; d.y *= ww.y; d.z *= ww.z; d.w *= ww.w;
        }
        float4 h = make_float4((xv.x - m) * rs, (xv.y - m) * rs, (xv.z - m) * rs, (xv.w - m) * rs);
        dn[i] = d;
        xh[i] = h;
        s1 += (d.x + d.y) + (d.z + d.w);
        s2 += (d.x * h.x + d.y * h.y) + (d.z * h.z + d.w * h.w);
    }
    s1 = RMS ? 0.0f : tfc_warp_sum(s1) / (float)C;
    s2 = tfc_warp_sum(s2) / (float)C;
#pragma unroll
    for (int i = 0; i < V; i++) {
        int k = lane + 32 * i;
        float4 acc = dxr[k];
        acc.x += rs * (dn[i].x - s1 - xh[i].x * s2);
        acc.y += rs * (dn[i].y - s1 - xh[i].y * s2);
        acc.z += rs * (dn[i].z - s1 - xh[i].z * s2);
        acc.w += rs * (dn[i].w - s1 - xh[i].w * s2);
        dxr[k] = acc;
    }
}

// float4 count per lane when the vector kernels apply (C = 128 V, V in
// {1, 2, 3, 4, 6, 8}, every pointer 16-byte aligned), else 0.
static int vec_width(int C, const void *p0, const void *p1, const void *p2, const void *p3) {
    uintptr_t bits = (uintptr_t)p0 | (uintptr_t)p1 | (uintptr_t)p2 | (uintptr_t)p3;
    if (C % 128 != 0 || (bits & 15)) return 0;
    int v = C / 128;
    return v == 1 || v == 2 || v == 3 || v == 4 || v == 6 || v == 8 ? v : 0;
}

#define LN_VEC_CASES(X) X(1) X(2) X(3) X(4) X(6) X(8)

// Column sums of dout * xhat and dout over a slice of rows: partial[chunk][c].
// Block (32, 8): x walks columns, y walks rows; fixed order, so deterministic.
template <bool RMS>
__global__ void layernorm_backward_dwdb_partial(float *pdw, float *pdb, const float *dout,
                                                const float *x, const float *mean,
                                                const float *rstd, int N, int C) {
    __shared__ float sw[8][33], sb[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float aw = 0.0f, ab = 0.0f;
    if (c < C) {
        for (int row = blockIdx.y * 8 + threadIdx.y; row < N; row += gridDim.y * 8) {
            float d = dout[(size_t)row * C + c];
            float xh = (x[(size_t)row * C + c] - (RMS ? 0.0f : mean[row])) * rstd[row];
            aw += d * xh;
            ab += d;
        }
    }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int k = 1; k < 8; k++) {
            aw += sw[k][threadIdx.x];
            ab += sb[k][threadIdx.x];
        }
        pdw[(size_t)blockIdx.y * C + c] = aw;
        pdb[(size_t)blockIdx.y * C + c] = ab;
    }
}

__global__ void layernorm_backward_dwdb_final(float *dw, float *db, const float *pdw,
                                              const float *pdb, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float aw = 0.0f, ab = 0.0f;
    for (int k = 0; k < chunks; k++) {
        aw += pdw[(size_t)k * C + c];
        ab += pdb[(size_t)k * C + c];
    }
    if (dw) dw[c] += aw;
    if (db) db[c] += ab;
}

template <bool RMS>
static void norm_rows(OpsCtx *c, float *out, bf16 *out16, float *mean, float *rstd, const float *x,
                      const float *w, const float *b, int N, int C) {
    if (N <= 0 || C <= 0) return;
    int blocks = (N + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK, threads = 32 * LN_ROWS_PER_BLOCK;
    switch (vec_width(C, out, x, w, b)) {
#define LN_FWD_CASE(V)                                                                             \
    case V:                                                                                        \
        layernorm_forward_vec_kernel<RMS, V>                                                       \
            <<<blocks, threads, 0, c->stream>>>(out, out16, mean, rstd, x, w, b, N);               \
        break;
        LN_VEC_CASES(LN_FWD_CASE)
#undef LN_FWD_CASE
    default:
        layernorm_forward_kernel<RMS>
            <<<blocks, threads, 0, c->stream>>>(out, out16, mean, rstd, x, w, b, N, C);
    }
    KERNEL_CHECK(c);
}

template <bool RMS>
static void norm_backward(OpsCtx *c, float *dx, float *dw, float *db, const float *dout,
                          const float *x, const float *w, const float *mean, const float *rstd,
                          int N, int C) {
    if (N <= 0 || C <= 0) return;
    if (dx) {
        int blocks = (N + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK, threads = 32 * LN_ROWS_PER_BLOCK;
        switch (vec_width(C, dx, dout, x, w)) {
#define LN_BWD_CASE(V)                                                                             \
    case V:                                                                                        \
        layernorm_backward_dx_vec_kernel<RMS, V>                                                   \
            <<<blocks, threads, 0, c->stream>>>(dx, dout, x, w, mean, rstd, N);                    \
        break;
            LN_VEC_CASES(LN_BWD_CASE)
#undef LN_BWD_CASE
        default:
            layernorm_backward_dx_kernel<RMS>
                <<<blocks, threads, 0, c->stream>>>(dx, dout, x, w, mean, rstd, N, C);
        }
        KERNEL_CHECK(c);
    }
    if (dw || db) {
        int chunks = (N + 63) / 64; // >= 64 rows per chunk
        if (chunks > 128) chunks = 128;
        float *part =
            (float *)tfc_workspace(c, TFC_WS_LNORM, (size_t)2 * chunks * C * sizeof(float));
        dim3 grid((C + 31) / 32, chunks), block(32, 8);
        layernorm_backward_dwdb_partial<RMS><<<grid, block, 0, c->stream>>>(
            part, part + (size_t)chunks * C, dout, x, mean, rstd, N, C);
        KERNEL_CHECK(c);
        layernorm_backward_dwdb_final<<<(C + 255) / 256, 256, 0, c->stream>>>(
            dw, db, part, part + (size_t)chunks * C, chunks, C);
        KERNEL_CHECK(c);
    }
}

void tfc_layernorm_rows(OpsCtx *c, float *out, bf16 *out16, float *mean, float *rstd,
                        const float *x, const float *w, const float *b, int N, int C) {
    norm_rows<false>(c, out, out16, mean, rstd, x, w, b, N, C);
}

void tfc_rmsnorm_rows(OpsCtx *c, float *out, bf16 *out16, float *rstd, const float *x,
                      const float *w, int N, int C) {
    norm_rows<true>(c, out, out16, nullptr, rstd, x, w, nullptr, N, C);
}

void cu_layernorm_forward(const Ops *ops, float *out, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int N, int C) {
    tfc_layernorm_rows(ops->ctx, out, nullptr, mean, rstd, x, w, b, N, C);
}

void cu_layernorm_backward(const Ops *ops, float *dx, float *dw, float *db, const float *dout,
                           const float *x, const float *w, const float *mean, const float *rstd,
                           int N, int C) {
    norm_backward<false>(ops->ctx, dx, dw, db, dout, x, w, mean, rstd, N, C);
}

void cu_rmsnorm_forward(const Ops *ops, float *out, float *rstd, const float *x, const float *w,
                        int N, int C) {
    tfc_rmsnorm_rows(ops->ctx, out, nullptr, rstd, x, w, N, C);
}

void cu_rmsnorm_backward(const Ops *ops, float *dx, float *dw, const float *dout, const float *x,
                         const float *w, const float *rstd, int N, int C) {
    norm_backward<true>(ops->ctx, dx, dw, nullptr, dout, x, w, nullptr, rstd, N, C);
}

// ---- the input of a Pattention or linear (ops.h PattInput) ----

static void check_input(PattInput in) {
    if (in.attn && in.norm != NORM_NONE)
        tfc_fail("op input", "an attention-tensor input with a normalization", __FILE__, __LINE__);
}

// Writes the normalized rows (statistics to in.mean / in.rstd) to out
// (fp32) or out16 (bf16).
static void normalize_input(OpsCtx *c, PattInput in, float *out, bf16 *out16, int N, int d_in) {
    if (in.norm == NORM_RMS)
        tfc_rmsnorm_rows(c, out, out16, in.rstd, in.x, in.w, N, d_in);
    else
        tfc_layernorm_rows(c, out, out16, in.mean, in.rstd, in.x, nullptr, nullptr, N, d_in);
}

const bf16 *tfc_input_bf16(OpsCtx *c, PattInput in, int N, int d_in, bool forward) {
    check_input(in);
    if (in.attn) return (const bf16 *)in.x;
    if (in.norm == NORM_NONE) return tfc_bf16_copy(c, TFC_WS_BF16_X, in.x, (size_t)N * d_in);
    if (forward) normalize_input(c, in, nullptr, (bf16 *)in.xn, N, d_in);
    return (const bf16 *)in.xn;
}

const float *tfc_input_fp32(OpsCtx *c, PattInput in, int N, int d_in, bool forward) {
    check_input(in);
    if (in.norm == NORM_NONE) return in.x;
    if (forward) normalize_input(c, in, in.xn, nullptr, N, d_in);
    return in.xn;
}
