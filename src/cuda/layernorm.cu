// LayerNorm over the last dim, one warp per row; weight/bias optional.
#include "common.cuh"

#define LN_ROWS_PER_BLOCK 4 // warps per block

__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *x,
                                         const float *w, const float *b, int N, int C) {
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + (size_t)row * C;
    float *o = out + (size_t)row * C;
    float sum = 0.0f;
    for (int j = lane; j < C; j += 32) sum += xr[j];
    float m = tfc_warp_sum(sum) / (float)C;
    float var = 0.0f;
    for (int j = lane; j < C; j += 32) {
        float dx = xr[j] - m;
        var += dx * dx;
    }
    var = tfc_warp_sum(var) / (float)C;
    float rs = 1.0f / sqrtf(var + LAYERNORM_EPS);
    for (int j = lane; j < C; j += 32) {
        float y = (xr[j] - m) * rs;
        if (w) y *= w[j];
        if (b) y += b[j];
        o[j] = y;
    }
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

// dx += rstd (dn - mean(dn) - xhat mean(dn xhat)), dn = dout * w.
__global__ void layernorm_backward_dx_kernel(float *dx, const float *dout, const float *x,
                                             const float *w, const float *mean,
                                             const float *rstd, int N, int C) {
    int row = blockIdx.x * LN_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *xr = x + (size_t)row * C;
    const float *dr = dout + (size_t)row * C;
    float *dxr = dx + (size_t)row * C;
    float m = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int j = lane; j < C; j += 32) {
        float dn = w ? dr[j] * w[j] : dr[j];
        float xh = (xr[j] - m) * rs;
        s1 += dn;
        s2 += dn * xh;
    }
    s1 = tfc_warp_sum(s1) / (float)C;
    s2 = tfc_warp_sum(s2) / (float)C;
    for (int j = lane; j < C; j += 32) {
        float dn = w ? dr[j] * w[j] : dr[j];
        float xh = (xr[j] - m) * rs;
        dxr[j] += rs * (dn - s1 - xh * s2);
    }
}

// Column sums of dout * xhat and dout over a slice of rows: partial[chunk][c].
// Block (32, 8): x walks columns, y walks rows; fixed order, so deterministic.
__global__ void layernorm_backward_dwdb_partial(float *pdw, float *pdb, const float *dout,
                                                const float *x, const float *mean,
                                                const float *rstd, int N, int C) {
    __shared__ float sw[8][33], sb[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float aw = 0.0f, ab = 0.0f;
    if (c < C) {
        for (int row = blockIdx.y * 8 + threadIdx.y; row < N; row += gridDim.y * 8) {
            float d = dout[(size_t)row * C + c];
            float xh = (x[(size_t)row * C + c] - mean[row]) * rstd[row];
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

void tfc_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                           const float *b, int N, int C) {
    if (N <= 0 || C <= 0) return;
    int blocks = (N + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK;
    layernorm_forward_kernel<<<blocks, 32 * LN_ROWS_PER_BLOCK>>>(out, mean, rstd, x, w, b, N, C);
    KERNEL_CHECK();
}

void tfc_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, const float *mean, const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    if (dx) {
        int blocks = (N + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK;
        layernorm_backward_dx_kernel<<<blocks, 32 * LN_ROWS_PER_BLOCK>>>(dx, dout, x, w, mean,
                                                                         rstd, N, C);
        KERNEL_CHECK();
    }
    if (dw || db) {
        int chunks = (N + 63) / 64; // >= 64 rows per chunk
        if (chunks > 128) chunks = 128;
        float *part = (float *)tfc_workspace(TFC_WS_LNORM, (size_t)2 * chunks * C * sizeof(float));
        dim3 grid((C + 31) / 32, chunks), block(32, 8);
        layernorm_backward_dwdb_partial<<<grid, block>>>(part, part + (size_t)chunks * C, dout, x,
                                                         mean, rstd, N, C);
        KERNEL_CHECK();
        layernorm_backward_dwdb_final<<<(C + 255) / 256, 256>>>(dw, db, part,
                                                                part + (size_t)chunks * C, chunks, C);
        KERNEL_CHECK();
    }
}
