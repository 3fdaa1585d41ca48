// Incremental decoding: the new k/v rows into the cache, and the attention
// of a few new queries per stream over everything cached. Decode shapes are
// tiny (one query per (stream, head) for a single token), so the attention
// is one block per (new position, head, stream): its warps split the cached
// positions, each keeps an online softmax over its share, and the block
// merges the shares at the end; lanes split the head's dims.
#include "common.cuh"

// cache rows pos0 .. pos0+T-1 of every stream (pos0 = *pos): one thread per
// float4 (C a multiple of 4, attention tensors 16-byte aligned) or element.
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
static void kv_append_as(void *cache, const void *x, int B, int T, int T_max, const int *pos,
                         int C) {
    size_t n = (size_t)B * T * C;
    kv_append_kernel<E><<<tfc_blocks(n, 256), 256>>>((E *)cache, (const E *)x, B, T, T_max, pos, C);
    KERNEL_CHECK();
}

void tfc_kv_append(float *cache, const float *x, int B, int T, int T_max, const int *pos, int C) {
    if (B <= 0 || T <= 0) return;
    size_t e = tfc_attn_elem_bytes();
    bool vec = (C * e) % 16 == 0 && (uintptr_t)cache % 16 == 0 && (uintptr_t)x % 16 == 0;
    if (vec) kv_append_as<float4>(cache, x, B, T, T_max, pos, (int)(C * e / 16));
    else if (e == 2) kv_append_as<bf16>(cache, x, B, T, T_max, pos, C);
    else kv_append_as<float>(cache, x, B, T, T_max, pos, C);
}

#define DEC_WARPS 8
#define DEC_MAX_DPL 8 // dims per lane: head sizes up to 256

template <typename X>
__global__ void __launch_bounds__(DEC_WARPS * 32)
attention_decode_kernel(X *out, const X *q, const X *k, const X *v, int T, const int *pos,
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
        qv[j] = j < dpl && i < hd ? (float)qr[i] * scale : 0.0f;
        acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int s = warp; s < n; s += DEC_WARPS) {
        const X *ks = kb + (size_t)s * d;
        float part = 0.0f;
#pragma unroll
        for (int j = 0; j < DEC_MAX_DPL; j++) {
            int i = lane + 32 * j;
            if (j < dpl && i < hd) part += qv[j] * (float)ks[i];
        }
        float score = tfc_warp_sum(part);
        float m_new = fmaxf(m, score);
        float corr = __expf(m - m_new), p = __expf(score - m_new);
        l = l * corr + p;
        const X *vs = vb + (size_t)s * d;
#pragma unroll
        for (int j = 0; j < DEC_MAX_DPL; j++) {
            int i = lane + 32 * j;
            acc[j] = acc[j] * corr + (j < dpl && i < hd ? p * (float)vs[i] : 0.0f);
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
        o[i] = (X)(sum / L);
    }
}

void tfc_attention_decode(const DecodeAttnArgs *a) {
    if (a->B <= 0 || a->T <= 0) return;
    if (a->hd > DEC_MAX_DPL * 32) {
        fprintf(stderr, "tokenformer: error: decoding supports head sizes up to %d (got %d)\n",
                DEC_MAX_DPL * 32, a->hd);
        exit(1);
    }
    dim3 grid((unsigned)a->T, (unsigned)a->H, (unsigned)a->B);
    float scale = 1.0f / sqrtf((float)a->hd);
    if (tfc_attn_bf16())
        attention_decode_kernel<<<grid, DEC_WARPS * 32>>>(
            (bf16 *)a->out, (const bf16 *)a->q, (const bf16 *)a->k, (const bf16 *)a->v, a->T,
            a->pos, a->T_max, a->H, a->hd, scale);
    else
        attention_decode_kernel<<<grid, DEC_WARPS * 32>>>(a->out, a->q, a->k, a->v, a->T, a->pos,
                                                          a->T_max, a->H, a->hd, scale);
    KERNEL_CHECK();
}
