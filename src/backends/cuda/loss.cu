// Softmax cross-entropy and the deterministic sum of squares.
#include "common.cuh"

// One block per row: probs = softmax(logits); loss = logsumexp - logit[target]
// for rows with a valid target (0 <= target < V), else the row is ignored.
__global__ void cross_entropy_forward_kernel(float *probs, float *losses, float *valid,
                                             const float *logits, const int *targets, int V) {
    __shared__ float sh[32];
    const size_t row = blockIdx.x;
    const float *x = logits + row * V;
    float *p = probs + row * V;
    const int tid = threadIdx.x, nt = blockDim.x;
    float mx = -INFINITY;
    for (int j = tid; j < V; j += nt) mx = fmaxf(mx, x[j]);
    mx = tfc_block_max(mx, sh);
    float sum = 0.0f;
    for (int j = tid; j < V; j += nt) {
        float e = expf(x[j] - mx);
        p[j] = e;
        sum += e;
    }
    sum = tfc_block_sum(sum, sh);
    float inv = 1.0f / sum;
    for (int j = tid; j < V; j += nt) p[j] *= inv;
    if (tid == 0) {
        int t = targets[row];
        int ok = t >= 0 && t < V;
        losses[row] = ok ? (logf(sum) + mx - x[t]) : 0.0f;
        valid[row] = ok ? 1.0f : 0.0f;
    }
}

// One block: out[0] = sum of a, out[1] = sum of b (double, fixed order).
__global__ void sum_pairs_kernel(double *out, const float *a, const float *b, int n) {
    __shared__ double sh[32];
    double sa = 0.0, sb = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        sa += a[i];
        sb += b[i];
    }
    sa = tfc_block_sum(sa, sh);
    sb = tfc_block_sum(sb, sh);
    if (threadIdx.x == 0) {
        out[0] = sa;
        out[1] = sb;
    }
}

float cu_cross_entropy_forward(const Ops *ops, float *probs, const float *logits,
                               const int *targets, int N, int V) {
    OpsCtx *c = ops->ctx;
    if (N <= 0 || V <= 0) return 0.0f;
    float *ws = (float *)tfc_workspace(c, TFC_WS_LOSS, (size_t)2 * N * sizeof(float));
    double *red = (double *)tfc_workspace(c, TFC_WS_REDUCE, 1026 * sizeof(double));
    cross_entropy_forward_kernel<<<N, tfc_row_threads(V), 0, c->stream>>>(probs, ws, ws + N, logits,
                                                                          targets, V);
    KERNEL_CHECK(c);
    sum_pairs_kernel<<<1, 1024, 0, c->stream>>>(red + 1024, ws, ws + N, N);
    KERNEL_CHECK(c);
    double host[2];
    CUDA_CHECK(cudaMemcpy(host, red + 1024, sizeof host, cudaMemcpyDeviceToHost));
    return host[1] > 0.0 ? (float)(host[0] / host[1]) : 0.0f;
}

// dlogits = (probs - onehot(target)) * scale; rows with no valid target get 0.
__global__ void cross_entropy_backward_kernel(float *dlogits, const float *probs,
                                              const int *targets, float scale, int N, int V) {
    size_t total = (size_t)N * V;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / V;
        int j = (int)(i % V);
        int t = targets[row];
        float g = 0.0f;
        if (t >= 0 && t < V) g = (probs[i] - (j == t ? 1.0f : 0.0f)) * scale;
        dlogits[i] = g;
    }
}

void cu_cross_entropy_backward(const Ops *ops, float *dlogits, const float *probs,
                               const int *targets, float scale, int N, int V) {
    OpsCtx *c = ops->ctx;
    if (N <= 0 || V <= 0) return;
    size_t total = (size_t)N * V;
    cross_entropy_backward_kernel<<<tfc_blocks(total, 256), 256, 0, c->stream>>>(
        dlogits, probs, targets, scale, N, V);
    KERNEL_CHECK(c);
}

// ---------------------------------------------------------------- sum of squares

#define SS_THREADS 256
#define SS_MAX_BLOCKS 1024

// Pass 1: per-block partial sums in double (the grid depends on n only, so the
// result is deterministic). Pass 2: one block sums the partials in order.
__global__ void sum_squares_partial(double *partial, const float *x, size_t n) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        acc += (double)v * v;
    }
    acc = tfc_block_sum(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_squares_final(double *out, const double *partial, int nblocks) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < nblocks; i += blockDim.x) acc += partial[i];
    acc = tfc_block_sum(acc, sh);
    if (threadIdx.x == 0) *out = acc;
}

float cu_sum_squares(const Ops *ops, const float *x, size_t n) {
    OpsCtx *c = ops->ctx;
    if (!n) return 0.0f;
    double *red = (double *)tfc_workspace(c, TFC_WS_REDUCE, 1026 * sizeof(double));
    unsigned blocks = tfc_blocks(n, SS_THREADS * 4, SS_MAX_BLOCKS);
    sum_squares_partial<<<blocks, SS_THREADS, 0, c->stream>>>(red, x, n);
    KERNEL_CHECK(c);
    sum_squares_final<<<1, 1024, 0, c->stream>>>(red + 1024, red, (int)blocks);
    KERNEL_CHECK(c);
    double host = 0.0;
    CUDA_CHECK(cudaMemcpy(&host, red + 1024, sizeof host, cudaMemcpyDeviceToHost));
    return (float)host;
}
