// Fused causal attention (FlashAttention-2 style) on tensor cores: q, k, v,
// out and their gradients stay fp32 in the model's (B, T, H, hd) layout;
// tiles are rounded to bf16 as they are staged in shared memory and multiplied
// with WMMA (m16n16k16, fp32 accumulators). The T x T matrix never exists:
// forward keeps a running max/sum per query row and saves only the row's
// log-sum-exp; backward recomputes the probabilities from q, k and it.
//
// Layout of a block: 4 warps, 64 rows (16 per warp) of the tile it owns, and
// 64-row tiles of the other side streamed through shared memory. For the
// softmax, lane l of a warp owns row l/2 of the warp's 16 rows and the float4
// columns 8c + 4(l&1) (c = 0, 1, ...): both lanes of a row reduce with one shuffle.
#include <mma.h>

#include "common.cuh"

using namespace nvcuda;

namespace {

constexpr int FA_THREADS = 128; // 4 warps
constexpr int FA_TILE = 64;     // rows per tile, both sides
constexpr float FA_LOG2E = 1.4426950408889634f;

// Blocks per SM the register allocation must allow (up to hd 64, where it
// costs no spills on sm_90: 128 registers forward, 168 backward).
#define FA_FWD_MIN_BLOCKS(hd) ((hd) <= 64 ? 4 : 1)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define FA_BWD_MIN_BLOCKS(hd) 1
#else
#define FA_BWD_MIN_BLOCKS(hd) ((hd) <= 64 ? 3 : 1)
#endif

template <int HD> struct FaDims {
    static constexpr int LDB = HD + 8;                // bf16 tile row stride (elements)
    static constexpr int SC = HD > FA_TILE ? HD : FA_TILE; // per-warp scratch columns
    static constexpr int LDS = SC + 8;                // fp32 scratch row stride (floats)
    static constexpr int LDP = 2 * LDS;               // the same rows read as bf16
    static constexpr int LDD = FA_TILE + 8;           // dS^T tile row stride (bf16)
    static constexpr size_t TILE_BYTES = (size_t)FA_TILE * LDB * sizeof(bf16);
    static constexpr size_t SCRATCH_BYTES = (size_t)4 * 16 * LDS * sizeof(float);
    static constexpr size_t FWD_SMEM = 3 * TILE_BYTES + SCRATCH_BYTES;
    static constexpr size_t BWD_SMEM = 4 * TILE_BYTES + (size_t)FA_TILE * LDD * sizeof(bf16) +
                                       2 * FA_TILE * sizeof(float) + SCRATCH_BYTES;
};

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::col_major> FragAc;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragB;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBc;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// Rows [0, 64) of a head's tile (src points at row 0 of the head; rows are
// `stride` floats apart) to bf16 in dst (row stride LDB); rows >= nvalid are zero.
template <int HD>
__device__ __forceinline__ void load_tile(bf16 *dst, const float *src, size_t stride,
                                          int nvalid) {
    constexpr int V4 = HD / 4;
    for (int idx = threadIdx.x; idx < FA_TILE * V4; idx += FA_THREADS) {
        int r = idx / V4, c = (idx - r * V4) * 4;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r < nvalid) x = __ldg(reinterpret_cast<const float4 *>(src + r * stride + c));
        __nv_bfloat162 *d =
            reinterpret_cast<__nv_bfloat162 *>(dst + r * FaDims<HD>::LDB + c);
        d[0] = __floats2bfloat162_rn(x.x, x.y);
        d[1] = __floats2bfloat162_rn(x.z, x.w);
    }
}

__device__ __forceinline__ void store_bf16x4(bf16 *dst, float a, float b, float c, float d) {
    __nv_bfloat162 *p = reinterpret_cast<__nv_bfloat162 *>(dst);
    p[0] = __floats2bfloat162_rn(a, b);
    p[1] = __floats2bfloat162_rn(c, d);
}

// ------------------------------------------------------------------ forward

// grid (B*H, ceil(T/64)); block: the 64 query rows of tile qt (largest first).
template <int HD>
__global__ void __launch_bounds__(FA_THREADS, FA_FWD_MIN_BLOCKS(HD))
    flash_fwd_kernel(float *__restrict__ out, float *__restrict__ lse,
                     const float *__restrict__ q, const float *__restrict__ k,
                     const float *__restrict__ v, int T, int H, float scale_log2) {
    typedef FaDims<HD> D;
    extern __shared__ __align__(128) unsigned char fa_smem[];
    bf16 *Qs = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *Ks = Qs + FA_TILE * D::LDB;
    bf16 *Vs = Ks + FA_TILE * D::LDB;
    float *scratch = reinterpret_cast<float *>(Vs + FA_TILE * D::LDB);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *ws = scratch + warp * 16 * D::LDS;
    bf16 *wp = reinterpret_cast<bf16 *>(ws);
    const int nqt = (T + FA_TILE - 1) / FA_TILE;
    const int qt = nqt - 1 - (int)blockIdx.y;
    const int bh = blockIdx.x, b = bh / H, h = bh - b * H;
    const size_t rs = (size_t)H * HD;
    const size_t head = ((size_t)b * T * H + h) * HD;
    const int q0 = qt * FA_TILE;

    load_tile<HD>(Qs, q + head + q0 * rs, rs, min(FA_TILE, T - q0));

    const int r = lane >> 1, hf = lane & 1;
    const int qi = q0 + warp * 16 + r;
    float m = -INFINITY, l = 0.0f;
    float o[HD / 2];
#pragma unroll
    for (int e = 0; e < HD / 2; e++) o[e] = 0.0f;

    for (int kt = 0; kt <= qt; kt++) {
        const int k0 = kt * FA_TILE;
        __syncthreads(); // everyone is done with the previous K, V
        load_tile<HD>(Ks, k + head + k0 * rs, rs, min(FA_TILE, T - k0));
        load_tile<HD>(Vs, v + head + k0 * rs, rs, min(FA_TILE, T - k0));
        __syncthreads();

        // S = Q_w K^T (16 x 64)
        {
            FragC sf[4];
#pragma unroll
            for (int n = 0; n < 4; n++) wmma::fill_fragment(sf[n], 0.0f);
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                FragA a;
                wmma::load_matrix_sync(a, Qs + warp * 16 * D::LDB + kk * 16, D::LDB);
#pragma unroll
                for (int n = 0; n < 4; n++) {
                    FragBc bk;
                    wmma::load_matrix_sync(bk, Ks + n * 16 * D::LDB + kk * 16, D::LDB);
                    wmma::mma_sync(sf[n], a, bk, sf[n]);
                }
            }
#pragma unroll
            for (int n = 0; n < 4; n++)
                wmma::store_matrix_sync(ws + n * 16, sf[n], D::LDS, wmma::mem_row_major);
        }
        __syncwarp();

        // online softmax over this lane's 32 scores
        float s[32];
        const bool full = kt < qt && k0 + FA_TILE <= T; // no masking needed
#pragma unroll
        for (int c = 0; c < 8; c++) {
            float4 x = *reinterpret_cast<const float4 *>(ws + r * D::LDS + 8 * c + 4 * hf);
            s[4 * c] = x.x;
            s[4 * c + 1] = x.y;
            s[4 * c + 2] = x.z;
            s[4 * c + 3] = x.w;
        }
        float mx = -INFINITY;
#pragma unroll
        for (int e = 0; e < 32; e++) {
            int j = k0 + 8 * (e >> 2) + 4 * hf + (e & 3);
            bool ok = full || (j <= qi && j < T);
            s[e] = ok ? s[e] * scale_log2 : -INFINITY;
            mx = fmaxf(mx, s[e]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float m_new = fmaxf(m, mx);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = exp2f(m - m_use);
        float psum = 0.0f;
#pragma unroll
        for (int e = 0; e < 32; e++) {
            s[e] = exp2f(s[e] - m_use);
            psum += s[e];
        }
        psum += __shfl_xor_sync(0xffffffffu, psum, 1);
        l = l * alpha + psum;
        m = m_new;
#pragma unroll
        for (int e = 0; e < HD / 2; e++) o[e] *= alpha;
        __syncwarp(); // all lanes have read S before P overwrites it
#pragma unroll
        for (int c = 0; c < 8; c++)
            store_bf16x4(wp + r * D::LDP + 8 * c + 4 * hf, s[4 * c], s[4 * c + 1], s[4 * c + 2],
                         s[4 * c + 3]);
        __syncwarp();

        // O_w += P V (16 x HD)
        {
            FragC of[HD / 16];
#pragma unroll
            for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(of[n], 0.0f);
#pragma unroll
            for (int kk = 0; kk < FA_TILE / 16; kk++) {
                FragA a;
                wmma::load_matrix_sync(a, wp + kk * 16, D::LDP);
#pragma unroll
                for (int n = 0; n < HD / 16; n++) {
                    FragB bv;
                    wmma::load_matrix_sync(bv, Vs + kk * 16 * D::LDB + n * 16, D::LDB);
                    wmma::mma_sync(of[n], a, bv, of[n]);
                }
            }
            __syncwarp(); // P fully read before the product overwrites it
#pragma unroll
            for (int n = 0; n < HD / 16; n++)
                wmma::store_matrix_sync(ws + n * 16, of[n], D::LDS, wmma::mem_row_major);
        }
        __syncwarp();
#pragma unroll
        for (int c = 0; c < HD / 8; c++) {
            float4 x = *reinterpret_cast<const float4 *>(ws + r * D::LDS + 8 * c + 4 * hf);
            o[4 * c] += x.x;
            o[4 * c + 1] += x.y;
            o[4 * c + 2] += x.z;
            o[4 * c + 3] += x.w;
        }
    }

    if (qi < T) {
        const float inv = 1.0f / l;
        float *dst = out + head + (size_t)qi * rs;
#pragma unroll
        for (int c = 0; c < HD / 8; c++)
            *reinterpret_cast<float4 *>(dst + 8 * c + 4 * hf) =
                make_float4(o[4 * c] * inv, o[4 * c + 1] * inv, o[4 * c + 2] * inv,
                            o[4 * c + 3] * inv);
        if (hf == 0) lse[(size_t)bh * T + qi] = m + log2f(l); // log2 units of scaled scores
    }
}

// ------------------------------------------------------------------ backward

// Dv[(b*H + h)*T + i] = sum_d dout[b,i,h,d] out[b,i,h,d]; zeroes dq (which the
// backward kernel accumulates into). LPR lanes per (b, i, h) row.
template <int HD>
__global__ void flash_bwd_pre_kernel(float *__restrict__ Dv, float *__restrict__ dq,
                                     const float *__restrict__ dout,
                                     const float *__restrict__ out, int rows, int T, int H) {
    constexpr int LPR = HD / 4 < 32 ? HD / 4 : 32;
    const int gid = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = gid / LPR, sub = gid % LPR;
    const bool active = row < rows;
    float acc = 0.0f;
    if (active) {
        const size_t base = (size_t)row * HD;
        for (int c = sub * 4; c < HD; c += LPR * 4) {
            float4 a = __ldg(reinterpret_cast<const float4 *>(dout + base + c));
            float4 o = __ldg(reinterpret_cast<const float4 *>(out + base + c));
            acc += a.x * o.x + a.y * o.y + a.z * o.z + a.w * o.w;
            *reinterpret_cast<float4 *>(dq + base + c) = make_float4(0.f, 0.f, 0.f, 0.f);
        }
    }
#pragma unroll
    for (int off = LPR / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (active && sub == 0) {
        // row = (b*T + i)*H + h
        const int h = row % H, bt = row / H, i = bt % T, b = bt / T;
        Dv[((size_t)b * H + h) * T + i] = acc;
    }
}

// grid (B*H, ceil(T/64)); block: the 64 keys of tile kt, over query tiles kt..end.
template <int HD>
__global__ void __launch_bounds__(FA_THREADS, FA_BWD_MIN_BLOCKS(HD))
    flash_bwd_kernel(float *__restrict__ dq, float *__restrict__ dk, float *__restrict__ dv,
                     const float *__restrict__ q, const float *__restrict__ k,
                     const float *__restrict__ v, const float *__restrict__ dout,
                     const float *__restrict__ lse, const float *__restrict__ Dv, int T, int H,
                     float scale_log2, float scale) {
    typedef FaDims<HD> D;
    extern __shared__ __align__(128) unsigned char fa_smem[];
    bf16 *Ks = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *Vs = Ks + FA_TILE * D::LDB;
    bf16 *Qs = Vs + FA_TILE * D::LDB;
    bf16 *dOs = Qs + FA_TILE * D::LDB;
    bf16 *dSs = dOs + FA_TILE * D::LDB; // dS^T: keys x queries, row stride LDD
    float *lse_s = reinterpret_cast<float *>(dSs + FA_TILE * D::LDD);
    float *D_s = lse_s + FA_TILE;
    float *scratch = D_s + FA_TILE;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *ws = scratch + warp * 16 * D::LDS;
    bf16 *wp = reinterpret_cast<bf16 *>(ws);
    const int nqt = (T + FA_TILE - 1) / FA_TILE;
    const int kt = blockIdx.y;
    const int bh = blockIdx.x, b = bh / H, h = bh - b * H;
    const size_t rs = (size_t)H * HD;
    const size_t head = ((size_t)b * T * H + h) * HD;
    const int k0 = kt * FA_TILE;
    const int r = lane >> 1, hf = lane & 1;
    const int kj = k0 + warp * 16 + r; // this lane's key

    load_tile<HD>(Ks, k + head + k0 * rs, rs, min(FA_TILE, T - k0));
    load_tile<HD>(Vs, v + head + k0 * rs, rs, min(FA_TILE, T - k0));

    FragC dKf[HD / 16], dVf[HD / 16];
#pragma unroll
    for (int n = 0; n < HD / 16; n++) {
        wmma::fill_fragment(dKf[n], 0.0f);
        wmma::fill_fragment(dVf[n], 0.0f);
    }

    for (int qt = kt; qt < nqt; qt++) {
        const int q0 = qt * FA_TILE;
        const int nq = min(FA_TILE, T - q0);
        __syncthreads(); // previous Q, dO, dS^T no longer in use
        load_tile<HD>(Qs, q + head + q0 * rs, rs, nq);
        load_tile<HD>(dOs, dout + head + q0 * rs, rs, nq);
        if (threadIdx.x < FA_TILE) {
            int i = q0 + threadIdx.x;
            lse_s[threadIdx.x] = i < T ? lse[(size_t)bh * T + i] : 0.0f;
            D_s[threadIdx.x] = i < T ? Dv[(size_t)bh * T + i] : 0.0f;
        }
        __syncthreads();

        // S^T = K_w Q^T (16 keys x 64 queries) -> P^T
        float p[32];
        {
            FragC sf[4];
#pragma unroll
            for (int n = 0; n < 4; n++) wmma::fill_fragment(sf[n], 0.0f);
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                FragA a;
                wmma::load_matrix_sync(a, Ks + warp * 16 * D::LDB + kk * 16, D::LDB);
#pragma unroll
                for (int n = 0; n < 4; n++) {
                    FragBc bq;
                    wmma::load_matrix_sync(bq, Qs + n * 16 * D::LDB + kk * 16, D::LDB);
                    wmma::mma_sync(sf[n], a, bq, sf[n]);
                }
            }
#pragma unroll
            for (int n = 0; n < 4; n++)
                wmma::store_matrix_sync(ws + n * 16, sf[n], D::LDS, wmma::mem_row_major);
        }
        __syncwarp();
        const bool full = qt > kt && q0 + FA_TILE <= T;
#pragma unroll
        for (int c = 0; c < 8; c++) {
            float4 x = *reinterpret_cast<const float4 *>(ws + r * D::LDS + 8 * c + 4 * hf);
            float sv[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = 8 * c + 4 * hf + e, i = q0 + col;
                bool ok = full || (i < T && i >= kj);
                p[4 * c + e] = ok ? exp2f(sv[e] * scale_log2 - lse_s[col]) : 0.0f;
            }
        }
        __syncwarp();

        // dP^T = V_w dO^T (16 x 64) -> dS^T = P^T (dP^T - D)
        {
            FragC sf[4];
#pragma unroll
            for (int n = 0; n < 4; n++) wmma::fill_fragment(sf[n], 0.0f);
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                FragA a;
                wmma::load_matrix_sync(a, Vs + warp * 16 * D::LDB + kk * 16, D::LDB);
#pragma unroll
                for (int n = 0; n < 4; n++) {
                    FragBc bo;
                    wmma::load_matrix_sync(bo, dOs + n * 16 * D::LDB + kk * 16, D::LDB);
                    wmma::mma_sync(sf[n], a, bo, sf[n]);
                }
            }
#pragma unroll
            for (int n = 0; n < 4; n++)
                wmma::store_matrix_sync(ws + n * 16, sf[n], D::LDS, wmma::mem_row_major);
        }
        __syncwarp();
        float ds[32];
#pragma unroll
        for (int c = 0; c < 8; c++) {
            float4 x = *reinterpret_cast<const float4 *>(ws + r * D::LDS + 8 * c + 4 * hf);
            float dp[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = 8 * c + 4 * hf + e;
                ds[4 * c + e] = p[4 * c + e] * (dp[e] - D_s[col]);
            }
        }
        __syncwarp();
#pragma unroll
        for (int c = 0; c < 8; c++) {
            store_bf16x4(wp + r * D::LDP + 8 * c + 4 * hf, p[4 * c], p[4 * c + 1], p[4 * c + 2],
                         p[4 * c + 3]);
            store_bf16x4(dSs + (warp * 16 + r) * D::LDD + 8 * c + 4 * hf, ds[4 * c],
                         ds[4 * c + 1], ds[4 * c + 2], ds[4 * c + 3]);
        }
        __syncwarp();

        // dV_w += P^T dO ; dK_w += dS^T Q
#pragma unroll
        for (int kk = 0; kk < FA_TILE / 16; kk++) {
            FragA ap, as;
            wmma::load_matrix_sync(ap, wp + kk * 16, D::LDP);
            wmma::load_matrix_sync(as, dSs + warp * 16 * D::LDD + kk * 16, D::LDD);
#pragma unroll
            for (int n = 0; n < HD / 16; n++) {
                FragB bo, bq;
                wmma::load_matrix_sync(bo, dOs + kk * 16 * D::LDB + n * 16, D::LDB);
                wmma::mma_sync(dVf[n], ap, bo, dVf[n]);
                wmma::load_matrix_sync(bq, Qs + kk * 16 * D::LDB + n * 16, D::LDB);
                wmma::mma_sync(dKf[n], as, bq, dKf[n]);
            }
        }
        __syncthreads(); // the whole dS^T tile is written (and P^T read)

        // dQ[queries of warp] += scale * dS K : dS (queries x keys) is dS^T read col-major
        {
            FragC qf[HD / 16];
#pragma unroll
            for (int n = 0; n < HD / 16; n++) wmma::fill_fragment(qf[n], 0.0f);
#pragma unroll
            for (int kk = 0; kk < FA_TILE / 16; kk++) {
                FragAc a;
                wmma::load_matrix_sync(a, dSs + kk * 16 * D::LDD + warp * 16, D::LDD);
#pragma unroll
                for (int n = 0; n < HD / 16; n++) {
                    FragB bk;
                    wmma::load_matrix_sync(bk, Ks + kk * 16 * D::LDB + n * 16, D::LDB);
                    wmma::mma_sync(qf[n], a, bk, qf[n]);
                }
            }
#pragma unroll
            for (int n = 0; n < HD / 16; n++)
                wmma::store_matrix_sync(ws + n * 16, qf[n], D::LDS, wmma::mem_row_major);
        }
        __syncwarp();
        const int qrow0 = warp * 16;
        const int rows_here = min(16, nq - qrow0);
        for (int idx = lane; idx < rows_here * HD; idx += 32) {
            int rr = idx / HD, c = idx - rr * HD;
            atomicAdd(dq + head + (size_t)(q0 + qrow0 + rr) * rs + c, ws[rr * D::LDS + c] * scale);
        }
    }

    // write dK (scaled) and dV of this warp's 16 keys
    const int nk = min(16, T - (k0 + warp * 16));
#pragma unroll
    for (int pass = 0; pass < 2; pass++) {
        __syncwarp();
#pragma unroll
        for (int n = 0; n < HD / 16; n++) {
            if (pass == 0) {
#pragma unroll
                for (int t = 0; t < dKf[n].num_elements; t++) dKf[n].x[t] *= scale;
                wmma::store_matrix_sync(ws + n * 16, dKf[n], D::LDS, wmma::mem_row_major);
            } else {
                wmma::store_matrix_sync(ws + n * 16, dVf[n], D::LDS, wmma::mem_row_major);
            }
        }
        __syncwarp();
        float *dst = pass == 0 ? dk : dv;
        for (int idx = lane; idx < nk * (HD / 4); idx += 32) {
            int rr = idx / (HD / 4), c = (idx - rr * (HD / 4)) * 4;
            *reinterpret_cast<float4 *>(dst + head + (size_t)(k0 + warp * 16 + rr) * rs + c) =
                *reinterpret_cast<const float4 *>(ws + rr * D::LDS + c);
        }
    }
}

// ------------------------------------------------------------------ launch

template <int HD>
void flash_forward(float *out, float *lse, const float *q, const float *k, const float *v, int B,
                   int T, int H) {
    static bool configured = false;
    if (!configured) {
        CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel<HD>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)FaDims<HD>::FWD_SMEM));
        configured = true;
    }
    float scale_log2 = FA_LOG2E / sqrtf((float)HD);
    dim3 grid((unsigned)(B * H), (unsigned)((T + FA_TILE - 1) / FA_TILE));
    flash_fwd_kernel<HD><<<grid, FA_THREADS, FaDims<HD>::FWD_SMEM>>>(out, lse, q, k, v, T, H,
                                                                      scale_log2);
    KERNEL_CHECK();
}

template <int HD>
void flash_backward(float *dq, float *dk, float *dv, float *Dv, const float *dout,
                    const float *out, const float *q, const float *k, const float *v,
                    const float *lse, int B, int T, int H) {
    static bool configured = false;
    if (!configured) {
        CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel<HD>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)FaDims<HD>::BWD_SMEM));
        configured = true;
    }
    int rows = B * T * H;
    constexpr int LPR = HD / 4 < 32 ? HD / 4 : 32;
    size_t threads = (size_t)rows * LPR;
    flash_bwd_pre_kernel<HD><<<tfc_blocks(threads, 256, 0x7fffffffu), 256>>>(Dv, dq, dout, out,
                                                                             rows, T, H);
    KERNEL_CHECK();
    float scale = 1.0f / sqrtf((float)HD);
    dim3 grid((unsigned)(B * H), (unsigned)((T + FA_TILE - 1) / FA_TILE));
    flash_bwd_kernel<HD><<<grid, FA_THREADS, FaDims<HD>::BWD_SMEM>>>(
        dq, dk, dv, q, k, v, dout, lse, Dv, T, H, scale * FA_LOG2E, scale);
    KERNEL_CHECK();
}

} // namespace

int tfc_flash_attention_supported(int hd) { return hd == 32 || hd == 64 || hd == 128; }

void tfc_flash_attention_forward(float *out, float *lse, const float *q, const float *k,
                                 const float *v, int B, int T, int H, int hd) {
    switch (hd) {
    case 32: flash_forward<32>(out, lse, q, k, v, B, T, H); break;
    case 64: flash_forward<64>(out, lse, q, k, v, B, T, H); break;
    case 128: flash_forward<128>(out, lse, q, k, v, B, T, H); break;
    default: tfc_fail("flash attention", "unsupported head size", __FILE__, __LINE__);
    }
}

void tfc_flash_attention_backward(float *dq, float *dk, float *dv, float *Dv, const float *dout,
                                  const float *out, const float *q, const float *k,
                                  const float *v, const float *lse, int B, int T, int H, int hd) {
    switch (hd) {
    case 32: flash_backward<32>(dq, dk, dv, Dv, dout, out, q, k, v, lse, B, T, H); break;
    case 64: flash_backward<64>(dq, dk, dv, Dv, dout, out, q, k, v, lse, B, T, H); break;
    case 128: flash_backward<128>(dq, dk, dv, Dv, dout, out, q, k, v, lse, B, T, H); break;
    default: tfc_fail("flash attention", "unsupported head size", __FILE__, __LINE__);
    }
}
