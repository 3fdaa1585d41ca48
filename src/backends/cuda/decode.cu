// Incremental decoding (ops.h attention_decode): the new positions' q and k
// rotated, k and v appended to the caches, and the attention of the new
// queries over everything cached.
//
// One new position per stream (sampling) is one kernel, a block per (head,
// stream): it rotates its head's q and k, appends its k and v rows, and
// attends, lanes splitting the cached positions (a few lanes per position)
// for the scores and the head's dims for the weighted sum of values. A
// chunk of new positions takes three steps: the rotation, the append, and
// the attention: the training kernels for a chunk that starts the cache (a
// prompt, a window restart), else a block per (new position, head, stream)
// whose warps split the cached positions with an online softmax each.
// The position of the first new row is read from device memory, so that a
// recorded decode step serves every position.
#include "common.cuh"

// ---------------------------------------------------------------- helpers

// Element access for fp32 and bf16 attention tensors.
static __device__ __forceinline__ float dec_f(float v) { return v; }
static __device__ __forceinline__ float dec_f(bf16 v) { return __bfloat162float(v); }
static __device__ __forceinline__ void dec_set(float &d, float v) { d = v; }
static __device__ __forceinline__ void dec_set(bf16 &d, float v) { d = __float2bfloat16(v); }

// VEC elements (one 16-byte access) of X as floats: raw loads first and
// their floats later, so that a loop can have several loads in flight.
template <typename X> struct DecVec {
    static constexpr int n = 16 / sizeof(X);
    static __device__ __forceinline__ uint4 raw(const X *p) {
        return *reinterpret_cast<const uint4 *>(p);
    }
    static __device__ __forceinline__ void unpack(float (&f)[n], uint4 r) {
        alignas(16) X e[n];
        *reinterpret_cast<uint4 *>(e) = r;
#pragma unroll
        for (int i = 0; i < n; i++) f[i] = dec_f(e[i]);
    }
};

// ---------------------------------------------------------------- chunks

// cache rows pos0 .. pos0+T-1 of every stream (pos0 = *pos), E a 16-byte
// vector of the row (C of them per row) or a single element.
template <typename E>
__global__ void kv_append_kernel(E *cache, const E *x, int B, int T, int T_max, const int *pos,
                                 int C) {
    int pos0 = *pos;
    size_t row_elems = (size_t)T * C, total = (size_t)B * row_elems;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t b = i / row_elems, r = i % row_elems;
        cache[(b * T_max + pos0) * C + r] = x[i];
    }
}

template <typename E>
static void kv_append_as(OpsCtx *c, void *cache, const void *x, int B, int T, int T_max,
                         const int *pos, int C) {
    size_t n = (size_t)B * T * C;
    kv_append_kernel<E>
        <<<tfc_blocks(n, 256), 256, 0, c->stream>>>((E *)cache, (const E *)x, B, T, T_max, pos, C);
    KERNEL_CHECK(c);
}

static void kv_append(OpsCtx *c, float *cache, const float *x, int B, int T, int T_max,
                      const int *pos, int C) {
    size_t e = tfc_attn_elem_bytes(c);
    bool vec = (C * e) % 16 == 0 && (uintptr_t)cache % 16 == 0 && (uintptr_t)x % 16 == 0;
    if (vec)
        kv_append_as<uint4>(c, cache, x, B, T, T_max, pos, (int)(C * e / 16));
    else if (e == 2)
        kv_append_as<bf16>(c, cache, x, B, T, T_max, pos, C);
    else
        kv_append_as<float>(c, cache, x, B, T, T_max, pos, C);
}

#define DEC_WARPS 8
#define DEC_MAX_DPL 8 // dims per lane: head sizes up to 256

template <typename X>
__global__ void __launch_bounds__(DEC_WARPS * 32)
attention_chunk_kernel(X *out, const X *q, const X *k, const X *v, int T, const int *pos,
                       int T_max, int H, int hd, float scale) {
    int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int d = H * hd, dpl = (hd + 31) / 32, n = *pos + t + 1;
    const X *qr = q + ((size_t)b * T + t) * d + (size_t)h * hd;
    const X *kb = k + (size_t)b * T_max * d + (size_t)h * hd;
    const X *vb = v + (size_t)b * T_max * d + (size_t)h * hd;
    float qv[DEC_MAX_DPL], acc[DEC_MAX_DPL];
#pragma unroll
    for (int j = 0; j < DEC_MAX_DPL; j++) {
        int i = lane + 32 * j;
        qv[j] = j < dpl && i < hd ? dec_f(qr[i]) * scale : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int s = warp; s < n; s += DEC_WARPS) {
        const X *ks = kb + (size_t)s * d;
        float part = 0.0f;
#pragma unroll
        for (int j = 0; j < DEC_MAX_DPL; j++) {
            int i = lane + 32 * j;
            if (j < dpl && i < hd) part += qv[j] * dec_f(ks[i]);
        }
        float score = tfc_warp_sum(part);
        float m_new = fmaxf(m, score);
        float corr = __expf(m - m_new), p = __expf(score - m_new);
        l = l * corr + p;
        const X *vs = vb + (size_t)s * d;
#pragma unroll
        for (int j = 0; j < DEC_MAX_DPL; j++) {
            int i = lane + 32 * j;
            acc[j] = acc[j] * corr + (j < dpl && i < hd ? p * dec_f(vs[i]) : 0.0f);
        }
        m = m_new;
    }
    // merge the warps' shares: out = sum_w acc_w e^(m_w - M) / sum_w l_w e^(m_w - M)
    __shared__ float sm[DEC_WARPS], sl[DEC_WARPS];
    __shared__ float sacc[DEC_WARPS][DEC_MAX_DPL * 32];
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
#pragma unroll
    for (int j = 0; j < DEC_MAX_DPL; j++)
        if (j < dpl) sacc[warp][lane + 32 * j] = acc[j];
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, sm[w]);
    float L = 0.0f;
    for (int w = 0; w < DEC_WARPS; w++) L += sm[w] == -INFINITY ? 0.0f : sl[w] * __expf(sm[w] - M);
    X *o = out + ((size_t)b * T + t) * d + (size_t)h * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float sum = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++)
            if (sm[w] != -INFINITY) sum += sacc[w][i] * __expf(sm[w] - M);
        dec_set(o[i], sum / L);
    }
}

template <typename X> static void attention_chunk(OpsCtx *c, const DecodeAttnArgs *a, float scale) {
    dim3 grid((unsigned)a->T, (unsigned)a->H, (unsigned)a->B);
    attention_chunk_kernel<X><<<grid, DEC_WARPS * 32, 0, c->stream>>>(
        (X *)a->out, (const X *)a->q, (const X *)a->k_cache, (const X *)a->v_cache, a->T, a->pos,
        a->T_max, a->H, a->hd, scale);
    KERNEL_CHECK(c);
}

// ---------------------------------------------------------------- one token

#define TOK_THREADS 256
#define TOK_LPP 4       // lanes per cached position for the scores
#define TOK_MAX_VPL 8   // 16-byte vectors per lane of a q row: head sizes to 128 (fp32)
// Loads in flight per thread: the cached positions of TOK_SPASS passes of the
// scores, TOK_VROWS value rows. Each loop issues its loads before it uses
// any, so that a pass over the cache waits for memory once, not once per
// row; the sums keep their order (the same results as one row at a time).
#define TOK_SPASS 2
#define TOK_VROWS 8

// Block (h, b). Dynamic shared memory: the scores of the n = pos0 + 1
// cached positions, then TOK_THREADS x VEC floats for the value sums.
template <typename X>
__global__ void __launch_bounds__(TOK_THREADS)
attention_token_kernel(X *out, X *q, X *k, const X *v, X *kc, X *vc, const float *rope, int rot,
                       const int *pos, int T_max, int H, int hd, float scale) {
    using V = DecVec<X>;
    constexpr int VEC = V::n;
    extern __shared__ float dec_smem[];
    __shared__ float red[32];
    __shared__ float qs[TOK_MAX_VPL * TOK_LPP * VEC];
    const int h = blockIdx.x, b = blockIdx.y, d = H * hd, half = rot / 2;
    tfc_pdl_wait(); // everything it reads comes from earlier kernels
    tfc_pdl_trigger();
    const int pos0 = *pos, n = pos0 + 1;
    const size_t row = (size_t)b * d + (size_t)h * hd;
    X *qr = q + row, *kr = k + row;
    X *kdst = kc + ((size_t)b * T_max + pos0) * d + (size_t)h * hd;
    X *vdst = vc + ((size_t)b * T_max + pos0) * d + (size_t)h * hd;
    const float *cs = rope + (size_t)pos0 * half * 2;
    // rotate q (into shared memory and back) and k (into the cache and back)
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float qv = dec_f(qr[i]), kv = dec_f(kr[i]);
        if (i < 2 * half) {
            const int j = i < half ? i : i - half;
            const float c = cs[2 * j], s = cs[2 * j + 1];
            const float qo = dec_f(qr[i < half ? i + half : i - half]);
            const float ko = dec_f(kr[i < half ? i + half : i - half]);
            qv = i < half ? qv * c - qo * s : qv * c + qo * s;
            kv = i < half ? kv * c - ko * s : kv * c + ko * s;
        }
        qs[i] = qv;
        dec_set(kdst[i], kv);
        dec_set(vdst[i], dec_f(v[row + i]));
    }
    __syncthreads(); // every element read before any is written back
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        dec_set(qr[i], qs[i]);
        dec_set(kr[i], dec_f(kdst[i]));
    }
    __syncthreads(); // the cache row is visible to the block
    // scores: TOK_LPP lanes per position, each a quarter of the head's vectors
    const int nv = hd / VEC, vpl = nv / TOK_LPP, sub = threadIdx.x % TOK_LPP;
    float qreg[TOK_MAX_VPL][VEC];
#pragma unroll
    for (int j = 0; j < TOK_MAX_VPL; j++)
#pragma unroll
        for (int e = 0; e < VEC; e++)
            qreg[j][e] = j < vpl ? qs[(sub + TOK_LPP * j) * VEC + e] * scale : 0.0f;
    const X *kb = kc + (size_t)b * T_max * d + (size_t)h * hd;
    const X *vb = vc + (size_t)b * T_max * d + (size_t)h * hd;
    float *sc = dec_smem;
    float mx = -INFINITY;
    const int per_pass = TOK_THREADS / TOK_LPP;
    for (int s0 = 0; s0 < n; s0 += TOK_SPASS * per_pass) { // trip count uniform: the shuffles
        uint4 raw[TOK_SPASS][TOK_MAX_VPL];
#pragma unroll
        for (int k = 0; k < TOK_SPASS; k++) {
            const int s = s0 + k * per_pass + threadIdx.x / TOK_LPP;
            const X *ks = kb + (size_t)s * d + sub * VEC;
#pragma unroll
            for (int j = 0; j < TOK_MAX_VPL; j++)
                raw[k][j] = s < n && j < vpl ? V::raw(ks + TOK_LPP * j * VEC) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int k = 0; k < TOK_SPASS; k++) {
            const int s = s0 + k * per_pass + threadIdx.x / TOK_LPP;
            float part = 0.0f;
            if (s < n) {
#pragma unroll
                for (int j = 0; j < TOK_MAX_VPL; j++) {
                    if (j >= vpl) break;
                    float kv[VEC];
                    V::unpack(kv, raw[k][j]);
#pragma unroll
                    for (int e = 0; e < VEC; e++) part = fmaf(qreg[j][e], kv[e], part);
                }
            }
#pragma unroll
            for (int o = TOK_LPP / 2; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
            if (s < n && sub == 0) {
                sc[s] = part;
                mx = fmaxf(mx, part);
            }
        }
    }
    mx = tfc_block_max(mx, red);
    float l = 0.0f;
    for (int s = threadIdx.x; s < n; s += blockDim.x) {
        const float p = __expf(sc[s] - mx);
        sc[s] = p;
        l += p;
    }
    l = tfc_block_sum(l, red); // its barriers also publish sc
    // values: thread (slice, c) sums vector c of the rows slice, slice + slices, ...
    const int slices = TOK_THREADS / nv, c = threadIdx.x % nv, slice = threadIdx.x / nv;
    float acc[VEC] = {};
    if (slice < slices)
        tfc_batched_pass<TOK_VROWS>(
            slice, n, slices, [&](int s) { return V::raw(vb + (size_t)s * d + c * VEC); },
            [&](int s, uint4 r) {
                float vv[VEC];
                V::unpack(vv, r);
                const float p = sc[s];
#pragma unroll
                for (int e = 0; e < VEC; e++) acc[e] = fmaf(p, vv[e], acc[e]);
            });
    float *part = dec_smem + T_max;
#pragma unroll
    for (int e = 0; e < VEC; e++) part[threadIdx.x * VEC + e] = acc[e];
    __syncthreads();
    X *o = out + row;
    const float inv = 1.0f / l;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        const int ci = i / VEC, e = i % VEC;
        float sum = 0.0f;
#pragma unroll 8
        for (int sl = 0; sl < slices; sl++) sum += part[(sl * nv + ci) * VEC + e];
        dec_set(o[i], sum * inv);
    }
}

// Whether the one-token kernel takes this head size: whole vectors, split
// evenly over TOK_LPP lanes, at most TOK_MAX_VPL each, and rows aligned.
static bool token_kernel_fits(const DecodeAttnArgs *a, size_t e) {
    const int vec = 16 / (int)e, nv = a->hd / vec;
    return a->T == 1 && a->hd % vec == 0 && nv % TOK_LPP == 0 && nv / TOK_LPP <= TOK_MAX_VPL &&
           nv <= TOK_THREADS && (a->H * a->hd * e) % 16 == 0 && (uintptr_t)a->q % 16 == 0 &&
           (uintptr_t)a->k % 16 == 0 && (uintptr_t)a->k_cache % 16 == 0 &&
           (uintptr_t)a->v_cache % 16 == 0;
}

template <typename X>
static void attention_token(OpsCtx *c, const DecodeAttnArgs *a, const float *rope, float scale) {
    const int rot = a->rot >= 2 ? a->rot : 0; // (rope is NULL then, and not read)
    size_t smem = ((size_t)a->T_max + (size_t)TOK_THREADS * DecVec<X>::n) * sizeof(float);
    size_t &allowed = c->token_smem_allowed[sizeof(X) == sizeof(bf16)];
    if (smem > (allowed ? allowed : 48 << 10)) { // 48 KB: the default
        CUDA_CHECK(cudaFuncSetAttribute(attention_token_kernel<X>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        allowed = smem;
    }
    tfc_launch_pdl(c, attention_token_kernel<X>, dim3((unsigned)a->H, (unsigned)a->B),
                   dim3(TOK_THREADS), smem, (X *)a->out, (X *)a->q, (X *)a->k, (const X *)a->v,
                   (X *)a->k_cache, (X *)a->v_cache, rope, rot, a->pos, a->T_max, a->H, a->hd,
                   scale);
}

// Whether a chunk of new positions starts the cache (a prompt, a window
// restart): then it attends to itself only, which the training kernels do
// faster than attention_chunk_kernel. The caller says so (at_start): reading
// the position back would stall the stream and is not allowed in a
// recording (a CUDA graph), and attention_chunk serves any position.
static bool chunk_at_start(const DecodeAttnArgs *a) { return a->T >= 2 && a->at_start; }

void cu_attention_decode(const Ops *ops, const DecodeAttnArgs *a) {
    OpsCtx *c = ops->ctx;
    if (a->B <= 0 || a->T <= 0) return;
    if (a->hd > DEC_MAX_DPL * 32) {
        fprintf(stderr, "tokenformer: error: decoding supports head sizes up to %d (got %d)\n",
                DEC_MAX_DPL * 32, a->hd);
        exit(1);
    }
    const float scale = 1.0f / sqrtf((float)a->hd);
    const size_t e = tfc_attn_elem_bytes(c);
    // the table for the whole window whatever the chunk: a table grown later
    // moves, and a move makes every recorded step stale (tfc_buffers_moved)
    const float *rope = a->rot >= 2 ? tfc_rope_table(c, a->T_max, a->rot) : nullptr;
    if (token_kernel_fits(a, e)) {
        if (e == 2)
            attention_token<bf16>(c, a, rope, scale);
        else
            attention_token<float>(c, a, rope, scale);
        return;
    }
    const int d = a->H * a->hd;
    if (chunk_at_start(a)) { // attends to itself only: the training attention
        cu_rope(ops, a->q, a->B, a->T, a->H, a->hd, a->rot, 0);
        cu_rope(ops, a->k, a->B, a->T, a->H, a->hd, a->rot, 0);
        kv_append(c, a->k_cache, a->k, a->B, a->T, a->T_max, a->pos, d);
        kv_append(c, a->v_cache, a->v, a->B, a->T, a->T_max, a->pos, d);
        size_t att_floats, datt_floats;
        cu_attention_sizes(ops, a->B, a->T, a->H, a->hd, &att_floats, &datt_floats);
        float *att = (float *)tfc_workspace(c, TFC_WS_DECODE_ATT, att_floats * sizeof(float));
        cu_attention_forward(ops, a->out, att, a->q, a->k, a->v, a->B, a->T, a->H, a->hd);
        return;
    }
    tfc_rope_at(c, a->q, a->B, a->T, a->H, a->hd, a->rot, a->pos, a->T_max);
    tfc_rope_at(c, a->k, a->B, a->T, a->H, a->hd, a->rot, a->pos, a->T_max);
    kv_append(c, a->k_cache, a->k, a->B, a->T, a->T_max, a->pos, d);
    kv_append(c, a->v_cache, a->v, a->B, a->T, a->T_max, a->pos, d);
    if (e == 2)
        attention_chunk<bf16>(c, a, scale);
    else
        attention_chunk<float>(c, a, scale);
}
