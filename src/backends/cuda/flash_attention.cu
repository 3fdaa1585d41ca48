// Fused causal attention (FlashAttention-2 style) on tensor cores: q, k, v,
// out and their gradients are bf16 in the model's (B, T, H, hd) layout (ops.h
// attention tensors), staged in shared memory and multiplied with mma.sync
// m16n8k16 (bf16 operands, fp32 accumulators); dQ, summed over key blocks,
// accumulates in an fp32 scratch and is rounded at the end. The T x T matrix
// never exists: forward keeps a running max/sum per query row and saves only
// the row's log-sum-exp; backward recomputes the probabilities from q, k and it.
//
// Every product runs on 16-row warp tiles. The accumulator of m16n8k16 gives
// lane l rows l/4 and l/4 + 8, columns 2(l%4) and 2(l%4) + 1 of each 8-column
// slice; two adjacent slices packed to bf16 are exactly the A operand of the
// next product over those 16 columns. So scores and probabilities never leave
// registers: forward computes S = Q K^T and feeds P to P V; backward computes
// the transposed S^T = K Q^T so that P^T and dS^T feed dV += P^T dO and
// dK += dS^T Q directly, and only dS goes through shared memory (for dQ,
// whose sum runs over the keys of all warps).
//
// The streamed tiles (forward: K and V; backward: Q and dO) go from global
// to the other of two shared buffers by cp.async, issued at the start of the
// current tile's work and awaited at its end: one barrier per tile, the load
// latency hidden behind the tensor-core work, and neither registers nor
// instructions spent on staging (faster than staging through registers in
// both directions: docs/BENCHMARKS.md).
#include "common.cuh"

namespace {

constexpr float FA_LOG2E = 1.4426950408889634f;
constexpr int FA_KT = 64;        // streamed tile: keys (forward), queries (backward)
// Forward: 4 warps, 2 blocks per SM, which beat 8 warps (256 rows, 1 block
// per SM): two blocks overlap one's softmax with the other's products.
constexpr int FWD_WARPS = 4;
constexpr int FWD_THREADS = 32 * FWD_WARPS;
// Backward: 16 keys per warp. Eight warps halve, against four, the L2 traffic
// of re-reading the query-side tiles and of the dQ reductions per key, which
// also beats four warps at 2 blocks per SM.
constexpr int BWD_WARPS = 8;
constexpr int BWD_THREADS = 32 * BWD_WARPS;
constexpr int BWD_KEYS = 16 * BWD_WARPS;
constexpr int DQ_SPLIT = BWD_WARPS / 4; // warps sharing one 16-query tile of dQ (by columns)

// Forward: 16-row tiles per warp. Two let each K and V fragment read from
// shared memory feed two products, which halves the shared-memory traffic
// per product; at hd 128 their accumulators would not fit in registers.
constexpr int FWD_MT = 2;
template <int HD> __host__ __device__ constexpr int fwd_mt() { return HD <= 64 ? FWD_MT : 1; }
template <int HD> __host__ __device__ constexpr int fwd_rows() {
    return 16 * FWD_WARPS * fwd_mt<HD>();
}

// Blocks per SM the register allocation must allow at hd <= 64.
constexpr int FWD_BLOCKS = 8 / FWD_WARPS, BWD_BLOCKS = 1;

template <int HD> struct FaDims {
    // +8 bf16 per row: the eight 16-byte rows one ldmatrix phase reads fall in
    // distinct banks (row strides of 80, 144, 272 bytes).
    static constexpr int LDB = HD + 8;
    static constexpr int LDD = FA_KT + 8; // dS^T rows (keys x queries)
    static constexpr size_t TILE_BYTES = (size_t)FA_KT * LDB * sizeof(bf16);
    static constexpr size_t FWD_SMEM = (size_t)fwd_rows<HD>() * LDB * sizeof(bf16) + 4 * TILE_BYTES;
    static constexpr size_t BWD_SMEM = (size_t)2 * BWD_KEYS * LDB * sizeof(bf16) + 4 * TILE_BYTES +
                                       (size_t)2 * BWD_KEYS * LDD * sizeof(bf16) +
                                       4 * FA_KT * sizeof(float);
};

// ------------------------------------------------------------------ PTX helpers

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

// Four 8x8 bf16 matrices; lanes 8i..8i+7 give the row addresses of matrix i.
// Shared addresses in bytes, so that tile offsets fold into the instruction.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// 16 bytes global -> shared without passing through registers. An invalid
// chunk (a row past T) reads nothing and zero-fills; it is given `fallback`,
// a mapped address, rather than its own, which may lie past the tensor.
__device__ __forceinline__ void cp_async16(uint32_t dst, const bf16 *src, const bf16 *fallback,
                                           bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
                 "l"(valid ? src : fallback), "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Four floats as bf16 (one row's dot products, the pre-kernel's).
__device__ __forceinline__ float4 bf16x4_to_float4(uint2 v) {
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&v.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&v.y));
    return make_float4(a.x, a.y, b.x, b.y);
}

// c += a b for one 16x8 tile, k = 16.
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two independent 16 x 16 products side by side, for the tensor pipe:
// (x0 | x1) += ax times the 16 x 16 bf16 tile at shared address bx, and
// (y0 | y1) += ay times the one at by (row-major n x k tiles read by
// ldmatrix, or k x n tiles read transposed when TRANS).
template <bool TRANS>
__device__ __forceinline__ void mma_pair(float (&x0)[4], float (&x1)[4], const uint32_t (&ax)[4],
                                         uint32_t bx, float (&y0)[4], float (&y1)[4],
                                         const uint32_t (&ay)[4], uint32_t by) {
    uint32_t fx[4], fy[4];
    if (TRANS) {
        ldsm_x4_t(fx, bx);
        ldsm_x4_t(fy, by);
    } else {
        ldsm_x4(fx, bx);
        ldsm_x4(fy, by);
    }
    mma16816(x0, ax, fx[0], fx[1]);
    mma16816(x1, ax, fx[2], fx[3]);
    mma16816(y0, ay, fy[0], fy[1]);
    mma16816(y1, ay, fy[2], fy[3]);
}

// One 16 x 16 bf16 tile at shared address b (row-major n x k read by
// ldmatrix, or k x n read transposed when TRANS) feeds every 16-row tile of
// the warp: (acc[mt][2 j] | acc[mt][2 j + 1]) += a(mt) times it, mt < MT, so
// that each B fragment read from shared memory serves MT products.
template <bool TRANS, int MT, int NJ, typename AFrag>
__device__ __forceinline__ void mma_tiles_shared_b(float (&acc)[MT][NJ][4], int j, AFrag a,
                                                   uint32_t b) {
    uint32_t f[4];
    if (TRANS)
        ldsm_x4_t(f, b);
    else
        ldsm_x4(f, b);
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        mma16816(acc[mt][2 * j], a(mt), f[0], f[1]);
        mma16816(acc[mt][2 * j + 1], a(mt), f[2], f[3]);
    }
}

// 2^x in one MUFU op (2^-inf = 0); exp2f adds range fix-ups that the
// softmax, whose arguments are <= 0 and whose results are rounded to bf16, does
// not need.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

// A operand over accumulator columns [16kk, 16kk + 16) of a 16-row tile.
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&lo)[4],
                                         const float (&hi)[4]) {
    a[0] = pack_bf16(lo[0], lo[1]);
    a[1] = pack_bf16(lo[2], lo[3]);
    a[2] = pack_bf16(hi[0], hi[1]);
    a[3] = pack_bf16(hi[2], hi[3]);
}

// Per-lane byte offsets (row stride ld elements) of the ldmatrix.x4 row addresses.
// a_off: A operand of rows [0,16) x cols [0,16) of a row-major tile.
// b_off: B operands of two 8-row slices [0,8), [8,16) x cols [0,16) of a
//   row-major n x k tile (the K of Q K^T): regs 0,1 slice 0, regs 2,3 slice 1.
// t_off (with .trans): B operands of a row-major k x n tile (the V of P V),
//   rows [0,16) x cols [0,8) in regs 0,1 and cols [8,16) in regs 2,3.
__device__ __forceinline__ int a_off(int lane, int ld) {
    return 2 * (((lane & 7) + 8 * ((lane >> 3) & 1)) * ld + 8 * (lane >> 4));
}
__device__ __forceinline__ int b_off(int lane, int ld) {
    return 2 * (((lane & 7) + 8 * (lane >> 4)) * ld + 8 * ((lane >> 3) & 1));
}
__device__ __forceinline__ int t_off(int lane, int ld) { return a_off(lane, ld); }

// Byte offset of element (r, c) of a bf16 tile with row stride ld.
__host__ __device__ constexpr int eo(int r, int c, int ld) { return 2 * (r * ld + c); }

// A 16 x 16 A-operand fragment (acc_to_a's layout) to rows and columns
// [0, 16) of the shared bf16 tile at dst (row stride LD). sm_90's stmatrix,
// the inverse of ldmatrix (lanes 8i..8i+7 address the rows of matrix i, held
// in a[i]), does it in one instruction instead of four.
template <int LD> __device__ __forceinline__ void store_a(bf16 *dst, const uint32_t (&a)[4]) {
    const int lane = threadIdx.x & 31;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                     smem_addr(dst) + a_off(lane, LD)),
                 "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3])
                 : "memory");
#else
    bf16 *d = dst + (lane >> 2) * LD + 2 * (lane & 3);
    *reinterpret_cast<uint32_t *>(d) = a[0];
    *reinterpret_cast<uint32_t *>(d + 8 * LD) = a[1];
    *reinterpret_cast<uint32_t *>(d + 8) = a[2];
    *reinterpret_cast<uint32_t *>(d + 8 * LD + 8) = a[3];
#endif
}

// Asynchronous copy of a ROWS x HD bf16 tile of one head (rows `stride`
// elements apart; rows >= nvalid become zeros) to the padded shared tile at
// `dst`, 16 bytes per copy spread over THREADS threads.
template <int HD, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile_async(uint32_t dst, const bf16 *src, size_t stride,
                                                int nvalid, const bf16 *fallback) {
    constexpr int C16 = HD / 8; // 16-byte chunks per row
    constexpr int N = ROWS * C16 / THREADS;
    static_assert(N * THREADS == ROWS * C16, "tile does not split evenly over the block");
#pragma unroll
    for (int i = 0; i < N; i++) {
        const int idx = (int)threadIdx.x + i * THREADS, r = idx / C16, c = (idx - r * C16) * 8;
        cp_async16(dst + eo(r, c, FaDims<HD>::LDB), src + r * stride + c, fallback, r < nvalid);
    }
}

// ------------------------------------------------------------------ forward

// s (MT 16-row tiles x FA_KT keys) = Q K^T for the key tile at `kc` (this
// lane's ldmatrix offset included).
template <int HD, int MT, int LDB>
__device__ __forceinline__ void fwd_scores(float (&s)[MT][FA_KT / 8][4],
                                           const uint32_t (&qf)[MT][HD / 16][4], uint32_t kc) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < FA_KT / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[mt][j][e] = 0.0f;
    // each K fragment read from shared memory feeds all MT row tiles at once
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
#pragma unroll
        for (int jp = 0; jp < FA_KT / 16; jp++)
            mma_tiles_shared_b<false>(
                s, jp, [&](int mt) -> const uint32_t(&)[4] { return qf[mt][kk]; },
                kc + eo(jp * 16, kk * 16, LDB));
}

// Online softmax of one 16-row tile: s (raw scores) becomes the unnormalised
// probabilities against the updated running max m; l and o are rescaled.
template <int HD>
__device__ __forceinline__ void fwd_softmax(float (&s)[FA_KT / 8][4], float (&o)[HD / 8][4],
                                            float (&m)[2], float (&l)[2], float scale_log2) {
    // Row max and sum as trees rather than a 32-long dependent chain per row,
    // for the short critical path with only two warps per scheduler.
    float r[2][FA_KT / 8];
#pragma unroll
    for (int j = 0; j < FA_KT / 8; j++) {
        r[0][j] = fmaxf(s[j][0], s[j][1]);
        r[1][j] = fmaxf(s[j][2], s[j][3]);
    }
#pragma unroll
    for (int w = FA_KT / 16; w >= 1; w /= 2)
#pragma unroll
        for (int j = 0; j < w; j++) {
            r[0][j] = fmaxf(r[0][j], r[0][j + w]);
            r[1][j] = fmaxf(r[1][j], r[1][j + w]);
        }
    float mx[2] = {fmaxf(m[0], r[0][0]), fmaxf(m[1], r[1][0])};
    float base[2], alpha[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
        // a row with nothing visible yet keeps alpha = 0 and p = 0
        base[i] = mx[i] == -INFINITY ? 0.0f : mx[i] * scale_log2;
        alpha[i] = fast_exp2(m[i] * scale_log2 - base[i]);
        m[i] = mx[i];
    }
#pragma unroll
    for (int j = 0; j < FA_KT / 8; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) s[j][e] = fast_exp2(fmaf(s[j][e], scale_log2, -base[e >> 1]));
        r[0][j] = s[j][0] + s[j][1];
        r[1][j] = s[j][2] + s[j][3];
    }
#pragma unroll
    for (int w = FA_KT / 16; w >= 1; w /= 2)
#pragma unroll
        for (int j = 0; j < w; j++) {
            r[0][j] += r[0][j + w];
            r[1][j] += r[1][j + w];
        }
    l[0] = fmaf(l[0], alpha[0], r[0][0]);
    l[1] = fmaf(l[1], alpha[1], r[1][0]);
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        o[n][0] *= alpha[0];
        o[n][1] *= alpha[0];
        o[n][2] *= alpha[1];
        o[n][3] *= alpha[1];
    }
}

// One key tile (keys k0.., K at kc, V at vc) for this warp's MT row tiles
// from row w0. MASK (the diagonal tile and the one crossing T only) hides
// keys after the row or past T. A template rather than a branch, so that each
// version is one straight block the scheduler can interleave freely.
template <int HD, int MT, int LDB, bool MASK>
__device__ __forceinline__ void fwd_tile(float (&o)[MT][HD / 8][4], float (&m)[MT][2],
                                         float (&l)[MT][2], const uint32_t (&qf)[MT][HD / 16][4],
                                         uint32_t kc, uint32_t vc, int k0, int w0, int T,
                                         float scale_log2) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    float s[MT][FA_KT / 8][4];
    fwd_scores<HD, MT, LDB>(s, qf, kc);
    if (MASK) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int j = 0; j < FA_KT / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = k0 + 8 * j + 2 * t + (e & 1);
                    const int row = w0 + 16 * mt + g + 8 * (e >> 1);
                    if (key > row || key >= T) s[mt][j][e] = -INFINITY;
                }
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) fwd_softmax<HD>(s[mt], o[mt], m[mt], l[mt], scale_log2);
#pragma unroll
    for (int kk = 0; kk < FA_KT / 16; kk++) {
        uint32_t pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) acc_to_a(pa[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
        for (int np = 0; np < HD / 16; np++)
            mma_tiles_shared_b<true>(
                o, np, [&](int mt) -> const uint32_t(&)[4] { return pa[mt]; },
                vc + eo(kk * 16, np * 16, LDB));
    }
}

// grid (B*H, ceil(T/ROWS)); block: the ROWS query rows of tile qb (largest first),
// MT 16-row tiles per warp. K and V tiles stream through two shared buffers
// by cp.async: the next tile's copies are issued before the current tile's
// work and awaited after it, so one barrier per tile suffices.
template <int HD>
__global__ void __launch_bounds__(FWD_THREADS, HD <= 64 ? FWD_BLOCKS : 1)
    flash_fwd_kernel(bf16 *__restrict__ out, float *__restrict__ lse,
                     const bf16 *__restrict__ q, const bf16 *__restrict__ k,
                     const bf16 *__restrict__ v, int T, int H, float scale_log2) {
    typedef FaDims<HD> D;
    constexpr int LDB = D::LDB, MT = fwd_mt<HD>(), ROWS = fwd_rows<HD>();
    extern __shared__ __align__(128) unsigned char fa_smem[];
    const uint32_t sQ = smem_addr(fa_smem);
    const uint32_t sK = sQ + ROWS * LDB * (uint32_t)sizeof(bf16); // two buffers
    const uint32_t sV = sK + 2 * (uint32_t)D::TILE_BYTES;         // two buffers

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int nqb = (T + ROWS - 1) / ROWS;
    const int qb = nqb - 1 - (int)blockIdx.y;
    const int bh = blockIdx.x, b = bh / H, h = bh - b * H;
    const size_t rs = (size_t)H * HD;
    const size_t head = ((size_t)b * T * H + h) * HD;
    const int q0 = qb * ROWS;
    const int w0 = q0 + warp * 16 * MT; // this warp's first query row
    const int nkt = (min(q0 + ROWS, T) - 1) / FA_KT + 1;

    load_tile_async<HD, ROWS, FWD_THREADS>(sQ, q + head + (size_t)q0 * rs, rs, T - q0, q + head);
    load_tile_async<HD, FA_KT, FWD_THREADS>(sK, k + head, rs, T, k + head);
    load_tile_async<HD, FA_KT, FWD_THREADS>(sV, v + head, rs, T, v + head);
    cp_async_commit();
    cp_async_wait_all();
    __syncthreads();

    const int aoff = a_off(lane, LDB), boff = b_off(lane, LDB), toff = t_off(lane, LDB);
    uint32_t qf[MT][HD / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++)
            ldsm_x4(qf[mt][kk], sQ + eo(warp * 16 * MT + 16 * mt, kk * 16, LDB) + aoff);

    float o[MT][HD / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int n = 0; n < HD / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[mt][n][e] = 0.0f;
    // rows g and g + 8 of each 16-row tile: running max of the raw scores,
    // this lane's part of the sum
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }

    for (int kt = 0; kt < nkt; kt++) {
        const int k0 = kt * FA_KT;
        const uint32_t cur = (kt & 1) * (uint32_t)D::TILE_BYTES, nxt = D::TILE_BYTES - cur;
        if (kt + 1 < nkt) {
            // the other buffers' last readers finished before the previous barrier
            const size_t next = head + (size_t)(k0 + FA_KT) * rs;
            const int nv = T - k0 - FA_KT;
            load_tile_async<HD, FA_KT, FWD_THREADS>(sK + nxt, k + next, rs, nv, k + head);
            load_tile_async<HD, FA_KT, FWD_THREADS>(sV + nxt, v + next, rs, nv, v + head);
            cp_async_commit();
        }
        // warps whose rows all precede this tile (or lie past T) skip it
        if (k0 <= w0 + 16 * MT - 1 && w0 < T) {
            const uint32_t kc = sK + cur + boff, vc = sV + cur + toff;
            if (k0 + FA_KT - 1 > w0 || k0 + FA_KT > T)
                fwd_tile<HD, MT, LDB, true>(o, m, l, qf, kc, vc, k0, w0, T, scale_log2);
            else
                fwd_tile<HD, MT, LDB, false>(o, m, l, qf, kc, vc, k0, w0, T, scale_log2);
        }
        cp_async_wait_all();
        __syncthreads(); // the next tile is in place; nobody reads this one any more
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            l[mt][i] += __shfl_xor_sync(0xffffffffu, l[mt][i], 1);
            l[mt][i] += __shfl_xor_sync(0xffffffffu, l[mt][i], 2);
        }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int row = w0 + 16 * mt + g + 8 * i;
            if (row >= T) continue;
            const float inv = 1.0f / l[mt][i];
            bf16 *dst = out + head + (size_t)row * rs + 2 * t;
#pragma unroll
            for (int n = 0; n < HD / 8; n++)
                *reinterpret_cast<uint32_t *>(dst + 8 * n) =
                    pack_bf16(o[mt][n][2 * i] * inv, o[mt][n][2 * i + 1] * inv);
            // log2 units of scaled scores
            if (t == 0) lse[(size_t)bh * T + row] = m[mt][i] * scale_log2 + log2f(l[mt][i]);
        }
}

// ------------------------------------------------------------------ backward

// Dv[(b*H + h)*T + i] = sum_d dout[b,i,h,d] out[b,i,h,d]; zeroes dq (the fp32
// sums the backward kernel accumulates into). LPR lanes per (b, i, h) row.
template <int HD>
__global__ void flash_bwd_pre_kernel(float *__restrict__ Dv, float *__restrict__ dq,
                                     const bf16 *__restrict__ dout,
                                     const bf16 *__restrict__ out, int rows, int T, int H) {
    constexpr int LPR = HD / 4 < 32 ? HD / 4 : 32;
    const int gid = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = gid / LPR, sub = gid % LPR;
    const bool active = row < rows;
    float acc = 0.0f;
    if (active) {
        const size_t base = (size_t)row * HD;
        for (int c = sub * 4; c < HD; c += LPR * 4) {
            float4 a = bf16x4_to_float4(__ldg(reinterpret_cast<const uint2 *>(dout + base + c)));
            float4 o = bf16x4_to_float4(__ldg(reinterpret_cast<const uint2 *>(out + base + c)));
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

// dq[0..3] += x, one vector reduction where the hardware has it.
__device__ __forceinline__ void add4(float *dst, float4 x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float4 *>(dst), x);
#else
    atomicAdd(dst, x.x);
    atomicAdd(dst + 1, x.y);
    atomicAdd(dst + 2, x.z);
    atomicAdd(dst + 3, x.w);
#endif
}

// The A operands of S^T = K_w Q^T and dP^T = V_w dO^T, the warp's own rows
// of K and V, are the same at every query tile: at hd <= 64 they stay in
// registers (32) rather than being re-read from shared memory, whose
// bandwidth is the backward's nearest limit; at hd 128 there is no room for
// them.
template <int HD> __host__ __device__ constexpr bool bwd_keep_kv() { return HD <= 64; }

// One query tile (q0.., Q at qc, dO at oc, their lse and D at lse_c, D_c) for
// this warp's 16 keys from kw: dV_w += P^T dO, dK_w += dS^T Q, and the warp's
// 16 rows of dS^T to dSw. ALL: every key of the warp precedes every query of
// the tile, all before T (no masking, no idle warp); a template rather than
// branches, so that that common case is one straight block to schedule.
template <int HD, bool ALL>
__device__ __forceinline__ void bwd_tile(float (&dka)[HD / 8][4], float (&dva)[HD / 8][4],
                                         const uint32_t (&kvf)[2][HD / 16][4], uint32_t kw_a,
                                         uint32_t vw_a, uint32_t qc, uint32_t oc,
                                         const float *lse_c, const float *D_c, bf16 *dSw, int q0,
                                         int kw, int T, float scale_log2) {
    constexpr int LDB = FaDims<HD>::LDB, LDD = FaDims<HD>::LDD;
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int boff = b_off(lane, LDB), toff = t_off(lane, LDB);
    // S^T = K_w Q^T and dP^T = V_w dO^T side by side (two independent chains
    // of products), then dS^T = P^T (dP^T - D) in place of dP^T, then dV_w +=
    // P^T dO and dK_w += dS^T Q side by side. A warp whose keys all follow
    // this tile's queries (or lie past T) has P = dS = 0: it skips the
    // products and only writes its zero rows of dS^T.
    const bool live = ALL || (kw <= q0 + FA_KT - 1 && kw < T);
    float s[FA_KT / 8][4], dp[FA_KT / 8][4];
#pragma unroll
    for (int j = 0; j < FA_KT / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
    if (live) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            uint32_t ak[4], av[4];
            if (bwd_keep_kv<HD>()) {
#pragma unroll
                for (int e = 0; e < 4; e++) ak[e] = kvf[0][kk][e], av[e] = kvf[1][kk][e];
            } else {
                ldsm_x4(ak, kw_a + eo(0, kk * 16, LDB));
                ldsm_x4(av, vw_a + eo(0, kk * 16, LDB));
            }
#pragma unroll
            for (int jp = 0; jp < FA_KT / 16; jp++)
                mma_pair<false>(s[2 * jp], s[2 * jp + 1], ak, qc + boff + eo(jp * 16, kk * 16, LDB),
                                dp[2 * jp], dp[2 * jp + 1], av,
                                oc + boff + eo(jp * 16, kk * 16, LDB));
        }
        const bool full = ALL || (q0 >= kw + 15 && q0 + FA_KT <= T);
#pragma unroll
        for (int j = 0; j < FA_KT / 8; j++) {
            const float2 L = *reinterpret_cast<const float2 *>(lse_c + 8 * j + 2 * t);
            const float2 Dq = *reinterpret_cast<const float2 *>(D_c + 8 * j + 2 * t);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = q0 + 8 * j + 2 * t + (e & 1), key = kw + g + 8 * (e >> 1);
                const float p = fast_exp2(fmaf(s[j][e], scale_log2, (e & 1) ? -L.y : -L.x));
                s[j][e] = full || (i >= key && i < T) ? p : 0.0f;
                dp[j][e] = s[j][e] * (dp[j][e] - ((e & 1) ? Dq.y : Dq.x));
            }
        }
    }
#pragma unroll
    for (int kk = 0; kk < FA_KT / 16; kk++) {
        uint32_t pa[4], sa[4];
        acc_to_a(pa, s[2 * kk], s[2 * kk + 1]);
        acc_to_a(sa, dp[2 * kk], dp[2 * kk + 1]);
        store_a<LDD>(dSw + kk * 16, sa);
        if (live) {
#pragma unroll
            for (int np = 0; np < HD / 16; np++)
                mma_pair<true>(dva[2 * np], dva[2 * np + 1], pa,
                               oc + toff + eo(kk * 16, np * 16, LDB), dka[2 * np],
                               dka[2 * np + 1], sa, qc + toff + eo(kk * 16, np * 16, LDB));
        }
    }
}

// grid (B*H, ceil(T/KEYS)); block: the KEYS keys of tile kt, over the 64-query
// tiles from the first that sees them to the end.
template <int HD>
__global__ void __launch_bounds__(BWD_THREADS, HD <= 64 ? BWD_BLOCKS : 1)
    flash_bwd_kernel(float *__restrict__ dq, bf16 *__restrict__ dk, bf16 *__restrict__ dv,
                     const bf16 *__restrict__ q, const bf16 *__restrict__ k,
                     const bf16 *__restrict__ v, const bf16 *__restrict__ dout,
                     const float *__restrict__ lse, const float *__restrict__ Dv, int T, int H,
                     float scale_log2, float scale) {
    typedef FaDims<HD> D;
    constexpr int LDB = D::LDB, LDD = D::LDD;
    extern __shared__ __align__(128) unsigned char fa_smem[];
    bf16 *Ks = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *Vs = Ks + BWD_KEYS * LDB;
    bf16 *Qs = Vs + BWD_KEYS * LDB;   // two buffers
    bf16 *dOs = Qs + 2 * FA_KT * LDB; // two buffers
    bf16 *dSs = dOs + 2 * FA_KT * LDB; // dS^T (keys x queries), two buffers
    float *lse_s = reinterpret_cast<float *>(dSs + 2 * BWD_KEYS * LDD); // two buffers
    float *D_s = lse_s + 2 * FA_KT;                                  // two buffers

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int nqt = (T + FA_KT - 1) / FA_KT;
    const int kt = blockIdx.y;
    const int bh = blockIdx.x, b = bh / H, h = bh - b * H;
    const size_t rs = (size_t)H * HD;
    const size_t head = ((size_t)b * T * H + h) * HD;
    const int k0 = kt * BWD_KEYS, qt0 = k0 / FA_KT;
    const int kw = k0 + warp * 16; // this warp's first key
    const float *lse_h = lse + (size_t)bh * T, *Dv_h = Dv + (size_t)bh * T;

    {
        const size_t first = head + (size_t)k0 * rs;
        load_tile_async<HD, BWD_KEYS, BWD_THREADS>(smem_addr(Ks), k + first, rs, T - k0, k + head);
        load_tile_async<HD, BWD_KEYS, BWD_THREADS>(smem_addr(Vs), v + first, rs, T - k0, v + head);
        load_tile_async<HD, FA_KT, BWD_THREADS>(smem_addr(Qs), q + first, rs, T - k0, q + head);
        load_tile_async<HD, FA_KT, BWD_THREADS>(smem_addr(dOs), dout + first, rs, T - k0,
                                                 dout + head);
        cp_async_commit();
    }
    if (threadIdx.x < 2 * FA_KT) {
        const int i = k0 + (threadIdx.x & (FA_KT - 1));
        float *dst = threadIdx.x < FA_KT ? lse_s : D_s;
        const float *src = threadIdx.x < FA_KT ? lse_h : Dv_h;
        dst[threadIdx.x & (FA_KT - 1)] = i < T ? src[i] : 0.0f;
    }
    cp_async_wait_all();
    __syncthreads();

    const int aoff = a_off(lane, LDB), toff = t_off(lane, LDB);
    const int doff = b_off(lane, LDD); // dS^T read as the A operand dS via .trans
    const uint32_t sK = smem_addr(Ks), sV = smem_addr(Vs);
    const uint32_t kw_a = sK + eo(warp * 16, 0, LDB) + aoff;
    const uint32_t vw_a = sV + eo(warp * 16, 0, LDB) + aoff;
    uint32_t kvf[2][HD / 16][4];
    if (bwd_keep_kv<HD>()) {
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            ldsm_x4(kvf[0][kk], kw_a + eo(0, kk * 16, LDB));
            ldsm_x4(kvf[1][kk], vw_a + eo(0, kk * 16, LDB));
        }
    }
    const uint32_t k_t = sK + toff;

    float dka[HD / 8][4], dva[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[n][e] = dva[n][e] = 0.0f;

    for (int qt = qt0; qt < nqt; qt++) {
        const int cur = (qt - qt0) & 1, nxt = cur ^ 1;
        const int q0 = qt * FA_KT;
        const uint32_t qc = smem_addr(Qs) + cur * (uint32_t)D::TILE_BYTES;
        const uint32_t oc = smem_addr(dOs) + cur * (uint32_t)D::TILE_BYTES;
        const float *lse_c = lse_s + cur * FA_KT, *D_c = D_s + cur * FA_KT;
        bf16 *dSc = dSs + cur * BWD_KEYS * LDD;
        const bool more = qt + 1 < nqt;
        const size_t next = head + (size_t)(q0 + FA_KT) * rs;
        const int nv_next = T - q0 - FA_KT;
        float row_next = 0.0f; // lse (threads < 64) or D (< 128) of the next tile
        if (more) {
            const int i = q0 + FA_KT + (threadIdx.x & (FA_KT - 1));
            if (i < T && threadIdx.x < 2 * FA_KT)
                row_next = threadIdx.x < FA_KT ? lse_h[i] : Dv_h[i];
            // the next buffers' last readers finished before the previous barrier
            load_tile_async<HD, FA_KT, BWD_THREADS>(smem_addr(Qs + nxt * FA_KT * LDB), q + next,
                                                     rs, nv_next, q + head);
            load_tile_async<HD, FA_KT, BWD_THREADS>(smem_addr(dOs + nxt * FA_KT * LDB),
                                                     dout + next, rs, nv_next, dout + head);
            cp_async_commit();
        }

        // every warp's keys precede all of the tile's queries, which all lie before T
        bf16 *dSw = dSc + warp * 16 * LDD;
        if (q0 >= k0 + BWD_KEYS - 1 && q0 + FA_KT <= T)
            bwd_tile<HD, true>(dka, dva, kvf, kw_a, vw_a, qc, oc, lse_c, D_c, dSw, q0, kw, T,
                               scale_log2);
        else
            bwd_tile<HD, false>(dka, dva, kvf, kw_a, vw_a, qc, oc, lse_c, D_c, dSw, q0, kw, T,
                                scale_log2);
        cp_async_wait_all();
        if (more) {
            if (threadIdx.x < 2 * FA_KT)
                (threadIdx.x < FA_KT ? lse_s : D_s)[nxt * FA_KT + (threadIdx.x & (FA_KT - 1))] =
                    row_next;
        }
        // dS^T complete; also publishes the next tile (every reader of the
        // buffers it overwrote finished before the previous barrier)
        __syncthreads();

        // dQ (16 queries x DQC columns per warp) += scale * dS K, summed over
        // the block's keys
        {
            constexpr int DQC = HD / DQ_SPLIT;
            const int mq = warp & 3, c0 = (warp >> 2) * DQC;
            // even and odd key slices in separate accumulators: twice the
            // independent products between dependent ones
            float dqa[DQC / 8][4], dqb[DQC / 8][4];
#pragma unroll
            for (int n = 0; n < DQC / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) dqa[n][e] = dqb[n][e] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < BWD_KEYS / 16; kk++) {
                uint32_t da[4];
                ldsm_x4_t(da, smem_addr(dSc) + doff + eo(kk * 16, mq * 16, LDD));
#pragma unroll
                for (int np = 0; np < DQC / 16; np++) {
                    uint32_t bk[4];
                    ldsm_x4_t(bk, k_t + eo(kk * 16, c0 + np * 16, LDB));
                    mma16816((kk & 1) ? dqb[2 * np] : dqa[2 * np], da, bk[0], bk[1]);
                    mma16816((kk & 1) ? dqb[2 * np + 1] : dqa[2 * np + 1], da, bk[2], bk[3]);
                }
            }
#pragma unroll
            for (int n = 0; n < DQC / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) dqa[n][e] += dqb[n][e];
            // lanes t and t^1 swap halves so each adds 4 consecutive floats of one row
            const bool odd = t & 1;
            const int row = q0 + mq * 16 + g + (odd ? 8 : 0);
            float *dst = dq + head + (size_t)row * rs + c0 + 2 * (t & ~1);
#pragma unroll
            for (int n = 0; n < DQC / 8; n++) {
                const float x0 = __shfl_xor_sync(0xffffffffu, odd ? dqa[n][0] : dqa[n][2], 1);
                const float x1 = __shfl_xor_sync(0xffffffffu, odd ? dqa[n][1] : dqa[n][3], 1);
                const float4 val =
                    odd ? make_float4(x0 * scale, x1 * scale, dqa[n][2] * scale, dqa[n][3] * scale)
                        : make_float4(dqa[n][0] * scale, dqa[n][1] * scale, x0 * scale, x1 * scale);
                if (row < T) add4(dst + 8 * n, val);
            }
        }
    }

    // dK (scaled) and dV of this warp's 16 keys
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int key = kw + g + 8 * i;
        if (key >= T) continue;
        const size_t off = head + (size_t)key * rs + 2 * t;
#pragma unroll
        for (int n = 0; n < HD / 8; n++) {
            *reinterpret_cast<uint32_t *>(dk + off + 8 * n) =
                pack_bf16(dka[n][2 * i] * scale, dka[n][2 * i + 1] * scale);
            *reinterpret_cast<uint32_t *>(dv + off + 8 * n) = pack_bf16(dva[n][2 * i], dva[n][2 * i + 1]);
        }
    }
}

// ------------------------------------------------------------------ launch

// The bit of OpsCtx.flash_configured that says the kernel of head size hd,
// one direction, has been given its shared memory (HD 32, 64, 128).
constexpr int configured_bit(int hd, bool backward) {
    return (hd == 32 ? 0 : hd == 64 ? 1 : 2) + (backward ? 3 : 0);
}

template <int HD>
void flash_forward(OpsCtx *c, bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                   int B, int T, int H) {
    const unsigned configured = 1u << configured_bit(HD, false);
    if (!(c->flash_configured & configured)) {
        CUDA_CHECK(cudaFuncSetAttribute(flash_fwd_kernel<HD>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)FaDims<HD>::FWD_SMEM));
        c->flash_configured |= configured;
    }
    float scale_log2 = FA_LOG2E / sqrtf((float)HD);
    dim3 grid((unsigned)(B * H), (unsigned)((T + fwd_rows<HD>() - 1) / fwd_rows<HD>()));
    flash_fwd_kernel<HD><<<grid, FWD_THREADS, FaDims<HD>::FWD_SMEM, c->stream>>>(out, lse, q, k, v,
                                                                                 T, H, scale_log2);
    KERNEL_CHECK(c);
}

template <int HD>
void flash_backward(OpsCtx *c, bf16 *dq, bf16 *dk, bf16 *dv, float *dq_acc, float *Dv,
                    const bf16 *dout, const bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v,
                    const float *lse, int B, int T, int H) {
    const unsigned configured = 1u << configured_bit(HD, true);
    if (!(c->flash_configured & configured)) {
        CUDA_CHECK(cudaFuncSetAttribute(flash_bwd_kernel<HD>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)FaDims<HD>::BWD_SMEM));
        c->flash_configured |= configured;
    }
    int rows = B * T * H;
    constexpr int LPR = HD / 4 < 32 ? HD / 4 : 32;
    size_t threads = (size_t)rows * LPR;
    flash_bwd_pre_kernel<HD><<<tfc_blocks(threads, 256, 0x7fffffffu), 256, 0, c->stream>>>(
        Dv, dq_acc, dout, out, rows, T, H);
    KERNEL_CHECK(c);
    float scale = 1.0f / sqrtf((float)HD);
    dim3 grid((unsigned)(B * H), (unsigned)((T + BWD_KEYS - 1) / BWD_KEYS));
    flash_bwd_kernel<HD><<<grid, BWD_THREADS, FaDims<HD>::BWD_SMEM, c->stream>>>(
        dq_acc, dk, dv, q, k, v, dout, lse, Dv, T, H, scale * FA_LOG2E, scale);
    KERNEL_CHECK(c);
    tfc_to_bf16(c, dq, dq_acc, (size_t)rows * HD);
}

} // namespace

int tfc_flash_attention_supported(int hd) { return hd == 32 || hd == 64 || hd == 128; }

void tfc_flash_attention_forward(OpsCtx *c, bf16 *out, float *lse, const bf16 *q, const bf16 *k,
                                 const bf16 *v, int B, int T, int H, int hd) {
    switch (hd) {
    case 32:
        flash_forward<32>(c, out, lse, q, k, v, B, T, H);
        break;
    case 64:
        flash_forward<64>(c, out, lse, q, k, v, B, T, H);
        break;
    case 128:
        flash_forward<128>(c, out, lse, q, k, v, B, T, H);
        break;
    default: tfc_fail("flash attention", "unsupported head size", __FILE__, __LINE__);
    }
}

void tfc_flash_attention_backward(OpsCtx *c, bf16 *dq, bf16 *dk, bf16 *dv, float *dq_acc, float *Dv,
                                  const bf16 *dout, const bf16 *out, const bf16 *q, const bf16 *k,
                                  const bf16 *v, const float *lse, int B, int T, int H, int hd) {
#define TFC_FLASH_BWD(HD)                                                                          \
    flash_backward<HD>(c, dq, dk, dv, dq_acc, Dv, dout, out, q, k, v, lse, B, T, H)
    switch (hd) {
    case 32: TFC_FLASH_BWD(32); break;
    case 64: TFC_FLASH_BWD(64); break;
    case 128: TFC_FLASH_BWD(128); break;
    default: tfc_fail("flash attention", "unsupported head size", __FILE__, __LINE__);
    }
#undef TFC_FLASH_BWD
}
