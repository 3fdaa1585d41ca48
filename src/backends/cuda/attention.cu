// Causal multi-head attention and rotary embeddings. Two paths, chosen by the
// matmul precision (set before buffers are allocated, so the choice is stable):
//  - fp32 and tf32: llm.c style, permute to (B,H,T,hd), batched cuBLAS GEMMs
//    (TF32 math under tf32), a causal softmax kernel, the B*H*T*T
//    probabilities saved for backward;
//  - bf16 with hd in {32, 64, 128}: the fused kernels of flash_attention.cu
//    (bf16 tensor cores, only B*H*T floats saved).
// Under bf16 q, k, v, out and their gradients are bf16 (ops.h attention
// tensors); the cuBLAS path, for other head sizes, then works on fp32 copies.
#include "common.cuh"
#include "op_math.h"

// ---------------------------------------------------------------- RoPE

// The RoPE table (op_math.h, computed on the host exactly as the CPU backend
// does), cached in the context per rot and grown with T.

const float *tfc_rope_table(OpsCtx *c, int T, int rot) {
    if (c->rope_table && rot == c->rope_rot && T <= c->rope_T) return c->rope_table;
    int half = rot / 2;
    int cap = T > c->rope_T && rot == c->rope_rot ? (T > 2 * c->rope_T ? T : 2 * c->rope_T) : T;
    size_t count = (size_t)cap * half * 2;
    float *host = (float *)malloc(count * sizeof(float));
    if (!host) tfc_fail("rope table", "out of host memory", __FILE__, __LINE__);
    tf_rope_table_fill(host, cap, rot);
    if (c->rope_table) {
        CUDA_CHECK(cudaDeviceSynchronize());
        CUDA_CHECK(cudaFree(c->rope_table));
        c->rope_table = nullptr;
    }
    tfc_buffers_moved(c);
    CUDA_CHECK(cudaMalloc(&c->rope_table, count * sizeof(float)));
    CUDA_CHECK(cudaMemcpy(c->rope_table, host, count * sizeof(float), cudaMemcpyHostToDevice));
    free(host);
    c->rope_rot = rot;
    c->rope_T = cap;
    return c->rope_table;
}

// x is (B, T, H, hd); one thread per (b, t, h, i) with i < rot/2. X: float
// or bf16 (attention tensors under bf16; the rotation is computed in fp32).
// Rows are at positions pos0 .. pos0+T-1: 0 in training, the cache's length
// when decoding, which is read from device memory (pos) so that a recorded
// decode step serves every position.
template <typename X>
__global__ void rope_kernel(X *x, const float *table, int B, int T, int H, int hd, int rot,
                            int inverse, const int *pos) {
    int half = rot / 2, pos0 = pos ? *pos : 0;
    size_t total = (size_t)B * T * H * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t bth = idx / half; // (b*T + t)*H + h
        int t = pos0 + (int)((bth / H) % T);
        float c = table[((size_t)t * half + i) * 2];
        float s = table[((size_t)t * half + i) * 2 + 1];
        if (inverse) s = -s;
        X *p = x + bth * hd;
        float x1 = (float)p[i], x2 = (float)p[i + half];
        p[i] = (X)(x1 * c - x2 * s);
        p[i + half] = (X)(x2 * c + x1 * s);
    }
}

// positions below `limit` must be in the table.
static void rope_launch(OpsCtx *c, float *x, int B, int T, int H, int hd, int rot, int inverse,
                        const int *pos, int limit) {
    if (rot < 2 || B <= 0 || T <= 0 || H <= 0) return;
    const float *table = tfc_rope_table(c, limit, rot);
    size_t total = (size_t)B * T * H * (rot / 2);
    if (tfc_attn_bf16(c))
        rope_kernel<<<tfc_blocks(total, 256), 256, 0, c->stream>>>((bf16 *)x, table, B, T, H, hd,
                                                                   rot, inverse, pos);
    else
        rope_kernel<<<tfc_blocks(total, 256), 256, 0, c->stream>>>(x, table, B, T, H, hd, rot,
                                                                   inverse, pos);
    KERNEL_CHECK(c);
}

void cu_rope(const Ops *ops, float *x, int B, int T, int H, int hd, int rot, int inverse) {
    rope_launch(ops->ctx, x, B, T, H, hd, rot, inverse, nullptr, T);
}

void tfc_rope_at(OpsCtx *c, float *x, int B, int T, int H, int hd, int rot, const int *pos,
                 int T_max) {
    rope_launch(c, x, B, T, H, hd, rot, 0, pos, T_max);
}

// ---------------------------------------------------------------- layout

struct Perm3 {
    float *dst[3];
    const float *src[3];
};

// One block per (b, t) row of the (B, T, H, hd) side, threads over its H*hd
// elements: both sides move hd contiguous floats at a time and no thread
// divides more than once (64-bit division per element would dominate the
// permutation's time).
// un = 0: src (B, T, H, hd) -> dst (B, H, T, hd); un = 1: the other way.
__global__ void permute_kernel(Perm3 p, int T, int H, int hd, int un) {
    float *dst = p.dst[blockIdx.y];
    const float *src = p.src[blockIdx.y];
    const size_t bt = blockIdx.x; // b * T + t
    const size_t b = bt / T, t = bt % T;
    const int row = H * hd;
    for (int j = threadIdx.x; j < row; j += blockDim.x) {
        int h = j / hd, d = j - h * hd;
        size_t head_major = ((b * H + h) * T + t) * hd + d;
        size_t token_major = bt * row + j;
        if (un)
            dst[token_major] = src[head_major];
        else
            dst[head_major] = src[token_major];
    }
}

static void launch_perm(OpsCtx *c, int un, int count, float *d0, const float *s0, float *d1,
                        const float *s1, float *d2, const float *s2, int B, int T, int H, int hd) {
    Perm3 p = {{d0, d1, d2}, {s0, s1, s2}};
    dim3 grid((unsigned)((size_t)B * T), count);
    permute_kernel<<<grid, tfc_row_threads(H * hd), 0, c->stream>>>(p, T, H, hd, un);
    KERNEL_CHECK(c);
}

// ---------------------------------------------------------------- softmax

#define ATT_WARPS 8

// Row r of att (B*H*T rows of T) holds scaled scores; query position i = r % T.
// Writes probabilities for j <= i and zeros above the diagonal.
__global__ void causal_softmax_kernel(float *att, int rows, int T) {
    int r = blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    int i = r % T;
    float *a = att + (size_t)r * T;
    float mx = -INFINITY;
    for (int j = lane; j <= i; j += 32) mx = fmaxf(mx, a[j]);
    mx = tfc_warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j <= i; j += 32) {
        float e = expf(a[j] - mx);
        a[j] = e;
        sum += e;
    }
    sum = tfc_warp_sum(sum);
    float inv = 1.0f / sum;
    for (int j = lane; j < T; j += 32) a[j] = j <= i ? a[j] * inv : 0.0f;
}

// In place on datt: dpre_j = att_j (datt_j - sum_k att_k datt_k); zero above the diagonal.
__global__ void causal_softmax_backward_kernel(float *datt, const float *att, int rows, int T) {
    int r = blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= rows) return;
    int i = r % T;
    const float *a = att + (size_t)r * T;
    float *d = datt + (size_t)r * T;
    float dot = 0.0f;
    for (int j = lane; j <= i; j += 32) dot += a[j] * d[j];
    dot = tfc_warp_sum(dot);
    for (int j = lane; j < T; j += 32) d[j] = j <= i ? a[j] * (d[j] - dot) : 0.0f;
}

// ---------------------------------------------------------------- attention

static bool use_fused(const OpsCtx *c, int hd) {
    return c->precision == MATMUL_BF16 && tfc_flash_attention_supported(hd);
}

// Fused: att holds the log-sum-exp per (b, h, query row), datt the backward's
// rowsum(dout * out) per row and then, 16-byte aligned for the kernels'
// vector accesses, the fp32 sums of dq.
static size_t dq_acc_offset(int B, int T, int H) { return ((size_t)B * H * T + 3) & ~(size_t)3; }

void cu_attention_sizes(const Ops *ops, int B, int T, int H, int hd, size_t *att_floats,
                        size_t *datt_floats) {
    if (use_fused(ops->ctx, hd)) {
        *att_floats = (size_t)B * H * T;
        *datt_floats = dq_acc_offset(B, T, H) + (size_t)B * T * H * hd;
        return;
    }
    ops_attention_sizes_full(B, T, H, hd, att_floats, datt_floats);
}

// The cuBLAS path on fp32 tensors (B, T, H, hd).
static void attention_forward_fp32(OpsCtx *c, float *out, float *att, const float *q,
                                   const float *k, const float *v, int B, int T, int H, int hd) {
    size_t nt = (size_t)B * T * H * hd;
    float *ws = (float *)tfc_workspace(c, TFC_WS_ATTN, 4 * nt * sizeof(float));
    float *qp = ws, *kp = ws + nt, *vp = ws + 2 * nt, *op = ws + 3 * nt;
    launch_perm(c, 0, 3, qp, q, kp, k, vp, v, B, T, H, hd);
    int BH = B * H;
    long long sq = (long long)T * hd, sa = (long long)T * T;
    float scale = 1.0f / sqrtf((float)hd);
    // att = scale * q k^T (per head), then the causal softmax in place
    tfc_matmul_strided(c, att, qp, kp, T, T, hd, 0, 1, scale, 0.0f, sq, sq, sa, BH);
    int rows = BH * T;
    causal_softmax_kernel<<<(rows + ATT_WARPS - 1) / ATT_WARPS, 32 * ATT_WARPS, 0, c->stream>>>(
        att, rows, T);
    KERNEL_CHECK(c);
    // o = att v
    tfc_matmul_strided(c, op, att, vp, T, hd, T, 0, 0, 1.0f, 0.0f, sa, sq, sq, BH);
    launch_perm(c, 1, 1, out, op, nullptr, nullptr, nullptr, nullptr, B, T, H, hd);
}

static void attention_backward_fp32(OpsCtx *c, float *dq, float *dk, float *dv, float *datt,
                                    const float *dout, const float *q, const float *k,
                                    const float *v, const float *att, int B, int T, int H, int hd) {
    size_t nt = (size_t)B * T * H * hd;
    float *ws = (float *)tfc_workspace(c, TFC_WS_ATTN, 7 * nt * sizeof(float));
    float *qp = ws, *kp = ws + nt, *vp = ws + 2 * nt, *dop = ws + 3 * nt;
    float *dqp = ws + 4 * nt, *dkp = ws + 5 * nt, *dvp = ws + 6 * nt;
    launch_perm(c, 0, 3, qp, q, kp, k, vp, v, B, T, H, hd);
    launch_perm(c, 0, 1, dop, dout, nullptr, nullptr, nullptr, nullptr, B, T, H, hd);
    int BH = B * H;
    long long sq = (long long)T * hd, sa = (long long)T * T;
    float scale = 1.0f / sqrtf((float)hd);
    // datt = do v^T ; dv = att^T do
    tfc_matmul_strided(c, datt, dop, vp, T, T, hd, 0, 1, 1.0f, 0.0f, sq, sq, sa, BH);
    tfc_matmul_strided(c, dvp, att, dop, T, hd, T, 1, 0, 1.0f, 0.0f, sa, sq, sq, BH);
    int rows = BH * T;
    causal_softmax_backward_kernel<<<(rows + ATT_WARPS - 1) / ATT_WARPS, 32 * ATT_WARPS, 0,
                                     c->stream>>>(datt, att, rows, T);
    KERNEL_CHECK(c);
    // dq = scale dpre k ; dk = scale dpre^T q
    tfc_matmul_strided(c, dqp, datt, kp, T, hd, T, 0, 0, scale, 0.0f, sa, sq, sq, BH);
    tfc_matmul_strided(c, dkp, datt, qp, T, hd, T, 1, 0, scale, 0.0f, sa, sq, sq, BH);
    launch_perm(c, 1, 3, dq, dqp, dk, dkp, dv, dvp, B, T, H, hd);
}

// fp32 copies of bf16 attention tensors for the cuBLAS path (head sizes the
// fused kernels lack), in their own workspace of `slots` tensors of nt
// elements: the first n_src hold src, the others the results.
static float *fp32_copies(OpsCtx *c, const bf16 *const *src, int n_src, int slots, size_t nt) {
    float *ws = (float *)tfc_workspace(c, TFC_WS_ATTN_FP32, (size_t)slots * nt * sizeof(float));
    for (int i = 0; i < n_src; i++) tfc_to_f32(c, ws + i * nt, src[i], nt);
    return ws;
}

void cu_attention_forward(const Ops *ops, float *out, float *att, const float *q, const float *k,
                          const float *v, int B, int T, int H, int hd) {
    OpsCtx *c = ops->ctx;
    if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return;
    if (use_fused(c, hd)) {
        tfc_flash_attention_forward(c, (bf16 *)out, att, (const bf16 *)q, (const bf16 *)k,
                                    (const bf16 *)v, B, T, H, hd);
        return;
    }
    if (!tfc_attn_bf16(c)) {
        attention_forward_fp32(c, out, att, q, k, v, B, T, H, hd);
        return;
    }
    size_t nt = (size_t)B * T * H * hd;
    const bf16 *src[3] = {(const bf16 *)q, (const bf16 *)k, (const bf16 *)v};
    float *f = fp32_copies(c, src, 3, 4, nt); // q, k, v, out
    attention_forward_fp32(c, f + 3 * nt, att, f, f + nt, f + 2 * nt, B, T, H, hd);
    tfc_to_bf16(c, (bf16 *)out, f + 3 * nt, nt);
}

void cu_attention_backward(const Ops *ops, float *dq, float *dk, float *dv, float *datt,
                           const float *dout, const float *out, const float *q, const float *k,
                           const float *v, const float *att, int B, int T, int H, int hd) {
    OpsCtx *c = ops->ctx;
    if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return;
    size_t nt = (size_t)B * T * H * hd;
    if (use_fused(c, hd)) {
        if (!out) tfc_fail("attention backward", "the fused path needs out", __FILE__, __LINE__);
        float *Dv = datt, *dq_acc = datt + dq_acc_offset(B, T, H);
        tfc_flash_attention_backward(c, (bf16 *)dq, (bf16 *)dk, (bf16 *)dv, dq_acc, Dv,
                                     (const bf16 *)dout, (const bf16 *)out, (const bf16 *)q,
                                     (const bf16 *)k, (const bf16 *)v, att, B, T, H, hd);
        return;
    }
    if (!tfc_attn_bf16(c)) {
        attention_backward_fp32(c, dq, dk, dv, datt, dout, q, k, v, att, B, T, H, hd);
        return;
    }
    const bf16 *src[4] = {(const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (const bf16 *)dout};
    float *f = fp32_copies(c, src, 4, 7, nt); // q, k, v, dout, dq, dk, dv
    attention_backward_fp32(c, f + 4 * nt, f + 5 * nt, f + 6 * nt, datt, f + 3 * nt, f, f + nt,
                            f + 2 * nt, att, B, T, H, hd);
    tfc_to_bf16(c, (bf16 *)dq, f + 4 * nt, nt);
    tfc_to_bf16(c, (bf16 *)dk, f + 5 * nt, nt);
    tfc_to_bf16(c, (bf16 *)dv, f + 6 * nt, nt);
}
