// The sampler's draw on the GPU (ops.h sample_tokens, ops_sample_row), a
// block per stream, so that the host reads back B token ids instead of
// B x V logits and the next decode step finds its tokens in device memory.
// A thread takes a contiguous chunk of the row, so that the cumulative sum
// the draw walks runs in index order: each thread sums its chunk, thread 0
// adds the chunks' sums in order, and the thread whose chunk holds the
// target scans it again. The sums are in double, as on the host; only
// their grouping differs (ops.h: the same draw except within rounding of a
// boundary). The argmax and the top-k cutoff are exact.
#include "common.cuh"

#define SAMPLE_THREADS 128

// Thread 0's ordered pass over the block's per-thread values (a few hundred
// operations, unrolled so that the shared-memory loads of several chunks are
// in flight at once rather than one after another; the order of the sums is
// kept).
struct SampleShared {
    double p_sum[SAMPLE_THREADS]; // each chunk's sum of p (double), for the total
    double w_sum[SAMPLE_THREADS]; // each chunk's sum of w = (float)p, then its prefix
    int pick[SAMPLE_THREADS];     // each chunk's candidate index (-1: none)
    int last[SAMPLE_THREADS];     // each chunk's last index with w > 0 (-1: none)
    float red[32];
    int redi[32];
    double target;
    int result;
};

// The first largest element (ops_sample_row at temperature 0).
static __device__ int sample_argmax(const float *row, int lo, int hi, int chunks,
                                    SampleShared &sh) {
    int best = -1;
    for (int i = lo; i < hi; i++) best = best < 0 || row[i] > row[best] ? i : best;
    sh.pick[threadIdx.x] = best;
    __syncthreads();
    if (threadIdx.x == 0) {
        int r = 0;
#pragma unroll 8
        for (int t = 0; t < chunks; t++) {
            const int i = sh.pick[t];
            if (i >= 0 && row[i] > row[r]) r = i;
        }
        sh.result = r;
    }
    __syncthreads();
    return sh.result;
}

// The top_k-th largest element counting repeats: the largest, then the
// largest below it, ... until top_k elements are at or above it.
static __device__ float sample_cutoff(const float *row, int lo, int hi, int top_k,
                                      SampleShared &sh) {
    float thr = INFINITY;
    int remaining = top_k;
    for (int round = 0;; round++) {
        float m = -INFINITY;
        for (int i = lo; i < hi; i++)
            if (round == 0 || row[i] < thr) m = fmaxf(m, row[i]);
        m = tfc_block_max(m, sh.red);
        int c = 0;
        for (int i = lo; i < hi; i++) c += row[i] == m;
        remaining -= tfc_block_sum(c, sh.redi);
        thr = m;
        if (remaining <= 0 || m == -INFINITY) return thr; // (block-uniform)
    }
}

__global__ void __launch_bounds__(SAMPLE_THREADS) sample_kernel(SampleArgs a) {
    __shared__ SampleShared sh;
    const int b = blockIdx.x, t = threadIdx.x;
    const float *row = a.logits + (size_t)b * a.stride;
    const int per = (a.V + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int lo = min(a.V, t * per), hi = min(a.V, lo + per);
    const int chunks = (a.V + per - 1) / per; // threads with elements: the ordered passes' length
    if (a.pos && b == 0 && t == 0) *a.pos = a.pos_value; // no block reads it
    if (a.temperature <= 0.0f) {
        const int r = sample_argmax(row, lo, hi, chunks, sh);
        if (t == 0) a.tokens[b] = r;
        return;
    }
    const float cutoff =
        a.top_k > 0 && a.top_k < a.V ? sample_cutoff(row, lo, hi, a.top_k, sh) : -INFINITY;
    float mx = -INFINITY;
    for (int i = lo; i < hi; i++) mx = fmaxf(mx, row[i]);
    mx = tfc_block_max(mx, sh.red);
    // p_i as the host computes it: the quotient in float, its exp in double
    auto p_of = [&](int i) {
        return row[i] >= cutoff ? exp((double)((row[i] - mx) / a.temperature)) : 0.0;
    };
    double ps = 0.0, ws = 0.0;
    int last = -1;
    for (int i = lo; i < hi; i++) {
        const double p = p_of(i);
        ps += p;
        ws += (float)p;
        if ((float)p > 0.0f) last = i;
    }
    sh.p_sum[t] = ps;
    sh.w_sum[t] = ws;
    __syncthreads();
    if (t == 0) {
        double total = 0.0, prefix = 0.0;
#pragma unroll 8
        for (int k = 0; k < chunks; k++) total += sh.p_sum[k];
#pragma unroll 8
        for (int k = 0; k < chunks; k++) {
            const double w = sh.w_sum[k];
            sh.w_sum[k] = prefix;
            prefix += w;
        }
        sh.target = a.u[b] * total;
    }
    __syncthreads();
    // the first i whose cumulative w passes the target (with w_i > 0)
    double acc = sh.w_sum[t];
    int pick = -1;
    for (int i = lo; i < hi && pick < 0; i++) {
        const float w = (float)p_of(i);
        acc += w;
        if (sh.target < acc && w > 0.0f) pick = i;
    }
    sh.pick[t] = pick;
    sh.last[t] = last;
    __syncthreads();
    if (t == 0) {
        int r = -1, fallback = 0;
        for (int k = 0; k < chunks && r < 0; k++) r = sh.pick[k];
#pragma unroll 8
        for (int k = 0; k < chunks; k++)
            if (sh.last[k] >= 0) fallback = sh.last[k];
        a.tokens[b] = r >= 0 ? r : fallback;
    }
}

void cu_sample_tokens(const Ops *ops, const SampleArgs *a) {
    OpsCtx *c = ops->ctx;
    if (a->B <= 0) return;
    if (a->V <= 0) tfc_fail("sample_tokens", "an empty vocabulary", __FILE__, __LINE__);
    sample_kernel<<<(unsigned)a->B, SAMPLE_THREADS, 0, c->stream>>>(*a);
    KERNEL_CHECK(c);
}
