// CUDA backend: the Ops table, device memory, cuBLAS GEMMs and the small
// elementwise ops (embedding, dropout, add/accumulate/scale).
#include <string.h>

#include "common.cuh"
#include "ops_cuda.h"
#include "rng.h"

void tfc_fail(const char *what, const char *detail, const char *file, int line) {
    fprintf(stderr, "tokenformer: error: CUDA %s failed: %s: %s:%d\n", what, detail, file, line);
    fflush(stderr);
    exit(1);
}

const char *tfc_cublas_status_string(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

// ---------------------------------------------------------------- workspace

void tfc_workspace_release(OpsCtx *c, int slot) {
    if (!c->ws[slot]) return;
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaFree(c->ws[slot]));
    c->ws[slot] = nullptr;
    c->ws_bytes[slot] = 0;
}

void *tfc_workspace(OpsCtx *c, int slot, size_t bytes) {
    if (bytes <= c->ws_bytes[slot]) return c->ws[slot];
    // Some headroom against repeated growth (sampling grows T a token at a
    // time), capped so that the large training workspaces stay near exact.
    const size_t cap = (size_t)4 << 20;
    size_t want = bytes + (bytes / 4 < cap ? bytes / 4 : cap);
    tfc_workspace_release(c, slot);
    tfc_buffers_moved(c);
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, want);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        e = cudaMalloc(&p, bytes); // without headroom
        want = bytes;
    }
    if (e != cudaSuccess) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s (workspace of %zu bytes)", cudaGetErrorString(e), bytes);
        tfc_fail("cudaMalloc", msg, __FILE__, __LINE__);
    }
    c->ws[slot] = p;
    c->ws_bytes[slot] = want;
    return p;
}

void tfc_buffers_moved(OpsCtx *c) { c->buffers_epoch++; }

// ---------------------------------------------------------------- recordings

// A CUDA graph of the ops called between record_begin and record_end, and
// the buffer epoch it was recorded in: it holds the addresses of the
// backend's workspaces, so once one of them moves it may not run again.
struct Recording {
    cudaGraphExec_t exec;
    unsigned epoch;
};

int cu_record_begin(const Ops *ops) {
    cudaError_t e = cudaStreamBeginCapture(ops->ctx->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e == cudaSuccess ? 0 : -1;
}

void *cu_record_end(const Ops *ops) {
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(ops->ctx->stream, &graph);
    cudaGraphExec_t exec = nullptr;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return nullptr;
    }
    Recording *r = (Recording *)malloc(sizeof *r);
    if (!r) tfc_fail("recording", "out of host memory", __FILE__, __LINE__);
    r->exec = exec;
    r->epoch = ops->ctx->buffers_epoch;
    return r;
}

int cu_replay(const Ops *ops, void *recording) {
    Recording *r = (Recording *)recording;
    if (r->epoch != ops->ctx->buffers_epoch) return -1;
    CUDA_CHECK(cudaGraphLaunch(r->exec, ops->ctx->stream));
    return 0;
}

void cu_record_free(const Ops *ops, void *recording) {
    Recording *r = (Recording *)recording;
    if (!r) return;
    CUDA_CHECK(cudaGraphExecDestroy(r->exec));
    free(r);
}

// The recorded decode step (ops.h decode_step): op by op while warming up
// or refused, else a replay of the recording, recorded (again) when there
// is none or it went stale.
void cu_decode_step(const Ops *ops, DecodeStep *step, void (*run)(void *arg), void *arg) {
    if (step->off || step->eager_runs < 1) {
        run(arg);
        step->eager_runs++;
        return;
    }
    if (step->recording && cu_replay(ops, step->recording) == 0) return;
    cu_decode_step_free(ops, step);
    if (cu_record_begin(ops) == 0) {
        run(arg);
        step->recording = cu_record_end(ops);
    }
    if (step->recording && cu_replay(ops, step->recording) == 0) return;
    // recording failed (the ops did not run) or went stale at once
    cu_decode_step_free(ops, step);
    step->off = 1;
    run(arg);
    step->eager_runs++;
}

void cu_decode_step_free(const Ops *ops, DecodeStep *step) {
    cu_record_free(ops, step->recording);
    step->recording = nullptr;
}

// ---------------------------------------------------------------- memory

void *cu_alloc(const Ops *ops, size_t bytes) {
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); // clear the sticky-free error state
        return nullptr;
    }
    e = cudaMemset(p, 0, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        cudaFree(p);
        return nullptr;
    }
    return p;
}

void cu_free(const Ops *ops, void *p) {
    tfc_mirror_forget(ops->ctx, p, 1);
    if (p) CUDA_CHECK(cudaFree(p));
}

// The synchronous copies run on the per-thread default stream, which is
// every context's stream (ops_cuda_create).
void cu_to_device(const Ops *ops, void *dst, const void *src, size_t bytes) {
    tfc_mirror_forget(ops->ctx, dst, bytes);
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void cu_to_host(const Ops *ops, void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

int cu_to_host_start(const Ops *ops, void *dst, const void *src, size_t bytes) {
    OpsCtx *c = ops->ctx;
    TfcHostCopy *h = nullptr;
    for (int i = 0; i < OPS_COPIES_IN_FLIGHT && !h; i++)
        if (!c->copies[i].pending) h = &c->copies[i];
    if (!h) tfc_fail("to_host_start", "more copies in flight than OPS_COPIES_IN_FLIGHT", __FILE__, __LINE__);
    if (!h->done) CUDA_CHECK(cudaEventCreateWithFlags(&h->done, cudaEventDisableTiming));
    if (h->cap < bytes) {
        if (h->pinned) CUDA_CHECK(cudaFreeHost(h->pinned));
        h->pinned = nullptr;
        CUDA_CHECK(cudaMallocHost(&h->pinned, bytes));
        h->cap = bytes;
    }
    h->dst = dst;
    h->bytes = bytes;
    h->ticket = (int)(c->copies_started++ & 0x3fffffffu);
    h->pending = 1;
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(h->pinned, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaEventRecord(h->done, c->stream));
    return h->ticket;
}

void cu_to_host_wait(const Ops *ops, int ticket) {
    OpsCtx *c = ops->ctx;
    TfcHostCopy *h = nullptr;
    for (int i = 0; i < OPS_COPIES_IN_FLIGHT && !h; i++)
        if (c->copies[i].pending && c->copies[i].ticket == ticket) h = &c->copies[i];
    if (!h) tfc_fail("to_host_wait", "a ticket not in flight", __FILE__, __LINE__);
    CUDA_CHECK(cudaEventSynchronize(h->done));
    if (h->bytes) memcpy(h->dst, h->pinned, h->bytes);
    h->pending = 0;
}

static void free_host_copies(OpsCtx *c) {
    for (int i = 0; i < OPS_COPIES_IN_FLIGHT; i++) {
        if (c->copies[i].pinned) CUDA_CHECK(cudaFreeHost(c->copies[i].pinned));
        if (c->copies[i].done) CUDA_CHECK(cudaEventDestroy(c->copies[i].done));
    }
}

void cu_copy(const Ops *ops, void *dst, const void *src, size_t bytes) {
    tfc_mirror_forget(ops->ctx, dst, bytes);
    if (bytes && dst != src)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ops->ctx->stream));
}

void cu_zero(const Ops *ops, void *p, size_t bytes) {
    tfc_mirror_forget(ops->ctx, p, bytes);
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, ops->ctx->stream));
}

void cu_synchronize(const Ops *ops) { CUDA_CHECK(cudaDeviceSynchronize()); }

// ---------------------------------------------------------------- elementwise

__global__ void scale_kernel(float *x, float s, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void accumulate_kernel(float *y, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

void cu_scale(const Ops *ops, float *x, float s, size_t n) {
    OpsCtx *c = ops->ctx;
    tfc_mirror_forget(c, x, n * sizeof(float));
    if (!n) return;
    scale_kernel<<<tfc_blocks(n, 256), 256, 0, c->stream>>>(x, s, n);
    KERNEL_CHECK(c);
}

void cu_add(const Ops *ops, float *out, const float *a, const float *b, size_t n) {
    OpsCtx *c = ops->ctx;
    tfc_mirror_forget(c, out, n * sizeof(float));
    if (!n) return;
    add_kernel<<<tfc_blocks(n, 256), 256, 0, c->stream>>>(out, a, b, n);
    KERNEL_CHECK(c);
}

void cu_accumulate(const Ops *ops, float *y, const float *x, size_t n) {
    OpsCtx *c = ops->ctx;
    tfc_mirror_forget(c, y, n * sizeof(float));
    if (!n) return;
    accumulate_kernel<<<tfc_blocks(n, 256), 256, 0, c->stream>>>(y, x, n);
    KERNEL_CHECK(c);
}

// Dropout maps element i by its own hash (tf_dropout_keep, as the CPU does).
// Threads take four consecutive elements, with 16-byte loads and stores when
// every pointer allows them: four independent hashes per thread hide more of
// their integer work behind the memory traffic than one.
static __device__ __forceinline__ float dropped(float v, float p, float scale, uint64_t seed,
                                                size_t i) {
    return tf_dropout_keep(seed, (uint64_t)i, p) ? v * scale : 0.0f;
}

static bool aligned16(const void *a, const void *b, const void *c) {
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15) == 0;
}

// out = keep(seed, i) ? x / (1 - p) : 0. Backward is the same map on dout.
template <bool VEC>
__global__ void dropout_kernel(float *out, const float *x, float p, float scale, uint64_t seed,
                               size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = 4 * (blockIdx.x * (size_t)blockDim.x + threadIdx.x);
    for (; i + 3 < n; i += 4 * stride) {
        float v[4];
        if (VEC) *reinterpret_cast<float4 *>(v) = *reinterpret_cast<const float4 *>(x + i);
        else for (int k = 0; k < 4; k++) v[k] = x[i + k];
        for (int k = 0; k < 4; k++) v[k] = dropped(v[k], p, scale, seed, i + k);
        if (VEC) *reinterpret_cast<float4 *>(out + i) = *reinterpret_cast<const float4 *>(v);
        else for (int k = 0; k < 4; k++) out[i + k] = v[k];
    }
    for (; i < n; i++) out[i] = dropped(x[i], p, scale, seed, i); // the tail, one thread
}

static void dropout(const Ops *ops, float *out, const float *x, float p, uint64_t seed, size_t n) {
    OpsCtx *c = ops->ctx;
    if (!n) return;
    if (p <= 0.0f) {
        cu_copy(ops, out, x, n * sizeof(float));
        return;
    }
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    unsigned blocks = tfc_blocks((n + 3) / 4, 256);
    if (aligned16(out, x, x))
        dropout_kernel<true><<<blocks, 256, 0, c->stream>>>(out, x, p, scale, seed, n);
    else
        dropout_kernel<false><<<blocks, 256, 0, c->stream>>>(out, x, p, scale, seed, n);
    KERNEL_CHECK(c);
}

template <bool VEC>
__global__ void dropout_add_kernel(float *out, const float *x, const float *branch, float p,
                                   float scale, uint64_t seed, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = 4 * (blockIdx.x * (size_t)blockDim.x + threadIdx.x);
    for (; i + 3 < n; i += 4 * stride) {
        float a[4], b[4];
        if (VEC) {
            *reinterpret_cast<float4 *>(a) = *reinterpret_cast<const float4 *>(x + i);
            *reinterpret_cast<float4 *>(b) = *reinterpret_cast<const float4 *>(branch + i);
        } else {
            for (int k = 0; k < 4; k++) a[k] = x[i + k], b[k] = branch[i + k];
        }
        for (int k = 0; k < 4; k++) a[k] += p <= 0.0f ? b[k] : dropped(b[k], p, scale, seed, i + k);
        if (VEC) *reinterpret_cast<float4 *>(out + i) = *reinterpret_cast<const float4 *>(a);
        else for (int k = 0; k < 4; k++) out[i + k] = a[k];
    }
    for (; i < n; i++) out[i] = x[i] + (p <= 0.0f ? branch[i] : dropped(branch[i], p, scale, seed, i));
}

void cu_dropout_add(const Ops *ops, float *out, const float *x, const float *branch, float p,
                    uint64_t seed, size_t n) {
    OpsCtx *c = ops->ctx;
    if (!n) return;
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    unsigned blocks = tfc_blocks((n + 3) / 4, 256);
    if (aligned16(out, x, branch))
        dropout_add_kernel<true><<<blocks, 256, 0, c->stream>>>(out, x, branch, p, scale, seed, n);
    else
        dropout_add_kernel<false><<<blocks, 256, 0, c->stream>>>(out, x, branch, p, scale, seed, n);
    KERNEL_CHECK(c);
}

void cu_dropout_forward(const Ops *ops, float *out, const float *x, float p, uint64_t seed,
                        size_t n) {
    dropout(ops, out, x, p, seed, n);
}

void cu_dropout_backward(const Ops *ops, float *dx, const float *dout, float p, uint64_t seed,
                         size_t n) {
    dropout(ops, dx, dout, p, seed, n);
}

// ---------------------------------------------------------------- embedding

__global__ void embedding_forward_kernel(float *out, const int *tokens, const float *wte, int N,
                                         int C) {
    size_t total = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / C, c = i % C;
        out[i] = wte[(size_t)tokens[row] * C + c];
    }
}

__global__ void embedding_backward_kernel(float *dwte, const float *dout, const int *tokens, int N,
                                          int C) {
    size_t total = (size_t)N * C;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / C, c = i % C;
        atomicAdd(&dwte[(size_t)tokens[row] * C + c], dout[i]);
    }
}

void cu_embedding_forward(const Ops *ops, float *out, const int *tokens, const float *wte, int N,
                          int C) {
    OpsCtx *c = ops->ctx;
    if (N <= 0 || C <= 0) return;
    embedding_forward_kernel<<<tfc_blocks((size_t)N * C, 256), 256, 0, c->stream>>>(out, tokens,
                                                                                    wte, N, C);
    KERNEL_CHECK(c);
}

void cu_embedding_backward(const Ops *ops, float *dwte, const float *dout, const int *tokens, int N,
                           int C) {
    OpsCtx *c = ops->ctx;
    if (N <= 0 || C <= 0 || !dwte) return; // a frozen wte: no gradient (ops.h)
    embedding_backward_kernel<<<tfc_blocks((size_t)N * C, 256), 256, 0, c->stream>>>(dwte, dout,
                                                                                     tokens, N, C);
    KERNEL_CHECK(c);
}

// ---------------------------------------------------------------- GEMM

__global__ void to_bf16_scalar_kernel(bf16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16(src[i]);
}

// Two elements per thread (8-byte loads, 4-byte stores); n may be odd.
__global__ void to_bf16_kernel(bf16 *dst, const float *src, size_t n) {
    size_t pairs = n / 2;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < pairs;
         i += (size_t)gridDim.x * blockDim.x) {
        float2 v = reinterpret_cast<const float2 *>(src)[i];
        reinterpret_cast<__nv_bfloat162 *>(dst)[i] = __floats2bfloat162_rn(v.x, v.y);
    }
    if (blockIdx.x == 0 && threadIdx.x == 0 && (n & 1)) dst[n - 1] = __float2bfloat16(src[n - 1]);
}

__global__ void to_f32_kernel(float *dst, const bf16 *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

void tfc_to_bf16(OpsCtx *c, bf16 *dst, const float *src, size_t n) {
    if (!n) return;
    if ((uintptr_t)src % 8 == 0 && (uintptr_t)dst % 4 == 0)
        to_bf16_kernel<<<tfc_blocks(n / 2 + 1, 256), 256, 0, c->stream>>>(dst, src, n);
    else
        to_bf16_scalar_kernel<<<tfc_blocks(n, 256), 256, 0, c->stream>>>(dst, src, n);
    KERNEL_CHECK(c);
}

void tfc_to_f32(OpsCtx *c, float *dst, const bf16 *src, size_t n) {
    if (!n) return;
    to_f32_kernel<<<tfc_blocks(n, 256), 256, 0, c->stream>>>(dst, src, n);
    KERNEL_CHECK(c);
}

// The weights mirror: a bf16 copy of the parameters that AdamW writes as it
// updates them, so that the Pattentions need not convert K and V per call.
// It covers [mirror_base, + mirror_len) of the context (the model's two AdamW calls,
// decayed and not, are adjacent and extend one range). Parameters change
// only through AdamW and the memory ops (ops.h), which drop an overlapped
// mirror; compute ops never write parameter memory.

void tfc_mirror_forget(OpsCtx *c, const void *p, size_t bytes) {
    if (!c->mirror_base) return;
    const char *a = (const char *)p, *b = (const char *)c->mirror_base;
    if (a < b + c->mirror_len * sizeof(float) && b < a + (bytes ? bytes : 1)) {
        c->mirror_base = nullptr;
        tfc_buffers_moved(c);
    }
}

// Room for `need` elements, keeping the first `keep`.
static void mirror_reserve(OpsCtx *c, size_t need, size_t keep) {
    if (need <= c->mirror_cap) return;
    size_t cap = need + need / 4;
    bf16 *buf = nullptr;
    tfc_buffers_moved(c);
    CUDA_CHECK(cudaMalloc(&buf, cap * sizeof(bf16)));
    if (keep)
        CUDA_CHECK(cudaMemcpyAsync(buf, c->mirror_buf, keep * sizeof(bf16),
                                   cudaMemcpyDeviceToDevice, c->stream));
    if (c->mirror_buf) {
        CUDA_CHECK(cudaDeviceSynchronize());
        CUDA_CHECK(cudaFree(c->mirror_buf));
    }
    c->mirror_buf = buf;
    c->mirror_cap = cap;
}

bf16 *tfc_mirror_extend(OpsCtx *c, const float *p, size_t n) {
    if (c->precision != MATMUL_BF16 || !n) {
        tfc_mirror_forget(c, p, n * sizeof(float));
        return nullptr;
    }
    size_t off = c->mirror_base && p == c->mirror_base + c->mirror_len ? c->mirror_len : 0;
    mirror_reserve(c, off + n, off);
    if (!off) c->mirror_base = p;
    c->mirror_len = off + n;
    return c->mirror_buf + off;
}

// cache_weights (ops.h): forwards that no AdamW precedes (decoding a loaded
// checkpoint) find the mirror built here instead of converting K and V at
// every product. AdamW's next call starts its own range (tfc_mirror_extend).
void cu_cache_weights(const Ops *ops, const float *p, size_t n) {
    OpsCtx *c = ops->ctx;
    if (c->precision != MATMUL_BF16 || !n) return;
    if (c->mirror_base && p >= c->mirror_base && p + n <= c->mirror_base + c->mirror_len) return;
    mirror_reserve(c, n, 0);
    tfc_buffers_moved(c); // a recording may read the buffer for its old range
    c->mirror_base = p;
    c->mirror_len = n;
    tfc_to_bf16(c, c->mirror_buf, p, n);
}

bf16 *tfc_bf16_input(OpsCtx *c, int slot, const float *src, size_t n) {
    if (c->mirror_base && src >= c->mirror_base && src + n <= c->mirror_base + c->mirror_len)
        return c->mirror_buf + (src - c->mirror_base);
    return tfc_bf16_copy(c, slot, src, n);
}

bf16 *tfc_bf16_copy(OpsCtx *c, int slot, const float *src, size_t n) {
    bf16 *dst = (bf16 *)tfc_workspace(c, slot, (n ? n : 1) * sizeof(bf16));
    tfc_to_bf16(c, dst, src, n);
    return dst;
}

void tfc_gemm_batched(OpsCtx *c, void *C, int ldc, long long stride_c, cudaDataType c_type,
                      TfcOperand A, TfcOperand B, cudaDataType ab_type, int M, int N, int K,
                      int trans_a, int trans_b, float alpha, float beta, int batch,
                      cublasComputeType_t compute) {
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap
    // the operands and keep the transpose flags.
    cublasOperation_t opA = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (tfc_gemm_tuned(c, C, nullptr, ldc, stride_c, c_type, B.p, B.ld, B.stride, A.p, A.ld,
                       A.stride, ab_type, opB, opA, N, M, K, alpha, beta, batch, compute))
        return;
    if (batch == 1)
        CUBLAS_CHECK(cublasGemmEx(c->cublas, opB, opA, N, M, K, &alpha, B.p, ab_type, B.ld, A.p,
                                  ab_type, A.ld, &beta, C, c_type, ldc, compute,
                                  CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            c->cublas, opB, opA, N, M, K, &alpha, B.p, ab_type, B.ld, B.stride, A.p, ab_type, A.ld,
            A.stride, &beta, C, c_type, ldc, stride_c, batch, compute, CUBLAS_GEMM_DEFAULT));
}

void tfc_gemm_from(OpsCtx *c, void *C, const void *C_in, int ldc, cudaDataType c_type, TfcOperand A,
                   TfcOperand B, cudaDataType ab_type, int M, int N, int K, int trans_a,
                   int trans_b, float alpha, float beta, cublasComputeType_t compute) {
    cublasOperation_t opA = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (tfc_gemm_tuned(c, C, C_in, ldc, 0, c_type, B.p, B.ld, 0, A.p, A.ld, 0, ab_type, opB, opA, N,
                       M, K, alpha, beta, 1, compute))
        return;
    if (C_in != C) { // cublasGemmEx reads and writes one C
        size_t elem = c_type == CUDA_R_32F ? sizeof(float) : sizeof(bf16);
        CUDA_CHECK(cudaMemcpyAsync(C, C_in, ((size_t)(M - 1) * ldc + N) * elem,
                                   cudaMemcpyDeviceToDevice, c->stream));
    }
    tfc_gemm_batched(c, C, ldc, 0, c_type, A, B, ab_type, M, N, K, trans_a, trans_b, alpha, beta, 1,
                     compute);
}

void tfc_gemm_ex(OpsCtx *c, void *C, cudaDataType c_type, const void *A, const void *B,
                 cudaDataType ab_type, int M, int N, int K, int trans_a, int trans_b, float alpha,
                 float beta, cublasComputeType_t compute) {
    TfcOperand a = {A, trans_a ? M : K, 0}, b = {B, trans_b ? K : N, 0};
    tfc_gemm_batched(c, C, N, 0, c_type, a, b, ab_type, M, N, K, trans_a, trans_b, alpha, beta, 1,
                     compute);
}

// fp32 operands: the precision picks the tensor-core math (tfc_fp32_compute).
// In bf16 mode the fp32-operand GEMMs (head, attention) use TF32: cuBLAS's
// FAST_16BF compute type runs TF32 kernels for fp32 operands anyway, and
// real bf16 needs bf16 operands (the Pattentions' own, pattention.cu).
void cu_matmul(const Ops *ops, float *C, const float *A, const float *B, int M, int N, int K,
               int trans_a, int trans_b, float alpha, float beta) {
    OpsCtx *c = ops->ctx;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { // empty sum: C = beta C
        if (beta == 0.0f)
            cu_zero(ops, C, (size_t)M * N * sizeof(float));
        else if (beta != 1.0f)
            cu_scale(ops, C, beta, (size_t)M * N);
        return;
    }
    tfc_gemm_ex(c, C, CUDA_R_32F, A, B, CUDA_R_32F, M, N, K, trans_a, trans_b, alpha, beta,
                tfc_fp32_compute(c));
}

void tfc_matmul_strided(OpsCtx *c, float *C, const float *A, const float *B, int M, int N, int K,
                        int trans_a, int trans_b, float alpha, float beta, long long stride_a,
                        long long stride_b, long long stride_c, int batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0) {
        tfc_fail("tfc_matmul_strided", "K must be positive", __FILE__, __LINE__);
    }
    TfcOperand a = {A, trans_a ? M : K, stride_a}, b = {B, trans_b ? K : N, stride_b};
    tfc_gemm_batched(c, C, N, stride_c, CUDA_R_32F, a, b, CUDA_R_32F, M, N, K, trans_a, trans_b,
                     alpha, beta, batch, tfc_fp32_compute(c));
}

// ---------------------------------------------------------------- table

// Precision is part of the state: switching drops the weights mirror, whose
// type follows it.
int cu_set_precision(const Ops *ops, int precision) {
    OpsCtx *c = ops->ctx;
    c->mirror_base = nullptr;
    c->precision = precision == MATMUL_TF32 || precision == MATMUL_BF16 ? precision : MATMUL_FP32;
    return c->precision;
}

DType cu_attn_dtype(const Ops *ops) { return tfc_attn_bf16(ops->ctx) ? DTYPE_BF16 : DTYPE_F32; }

static size_t gpu_bytes_used(void) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
    return total_b - free_b;
}

size_t cu_memory_in_use(const Ops *ops) {
    size_t used = gpu_bytes_used();
    return used > ops->ctx->baseline_used ? used - ops->ctx->baseline_used : 0;
}

__global__ void probe_kernel(int *x) { *x = 42; }

static void set_why(char *why, size_t why_len, const char *fmt, const char *a, const char *b) {
    if (why && why_len) snprintf(why, why_len, fmt, a, b);
}

// The device's description, or NULL (and why) when no GPU is usable.
static bool find_device(cudaDeviceProp *prop, char *why, size_t why_len) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        set_why(why, why_len, "no usable CUDA device (cudaGetDeviceCount: %s)%s",
                cudaGetErrorString(e), "");
        return false;
    }
    if (count <= 0) {
        set_why(why, why_len, "no CUDA device found%s%s", "", "");
        return false;
    }
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(prop, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        set_why(why, why_len, "cannot query the CUDA device%s%s", "", "");
        return false;
    }
    return true;
}

// A device this binary has no kernel image for fails on the first launch:
// find out now, while the caller can still fall back to the CPU.
static bool probe_device(const cudaDeviceProp *prop, char *why, size_t why_len) {
    int *probe = nullptr;
    cudaError_t e = cudaMalloc(&probe, sizeof(int));
    if (e == cudaSuccess) {
        probe_kernel<<<1, 1>>>(probe);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        int host = 0;
        if (e == cudaSuccess) e = cudaMemcpy(&host, probe, sizeof(int), cudaMemcpyDeviceToHost);
        if (e == cudaSuccess && host != 42) e = cudaErrorUnknown;
        cudaFree(probe);
    }
    if (e == cudaSuccess) return true;
    (void)cudaGetLastError();
    char dname[320];
    snprintf(dname, sizeof dname, "%s, sm_%d%d", prop->name, prop->major, prop->minor);
    set_why(why, why_len, "CUDA device unusable (%s): %s", dname, cudaGetErrorString(e));
    return false;
}

// The table: every entry of OPS_LIST points at its cu_<name>.
static void fill_table(Ops *o, OpsCtx *c) {
    o->kind = BACKEND_CUDA;
    o->name = "cuda";
    o->device = c->device_desc;
    o->ctx = c;
#define TFC_FILL(kind, ret, name, params, args) o->name = cu_##name;
    OPS_LIST(TFC_FILL)
#undef TFC_FILL
}

extern "C" const Ops *ops_cuda_create(char *why, size_t why_len) {
    cudaDeviceProp prop;
    if (!find_device(&prop, why, why_len) || !probe_device(&prop, why, why_len)) return nullptr;
    OpsCtx *c = (OpsCtx *)calloc(1, sizeof *c); // zero: MATMUL_FP32, no workspaces, no mirror
    if (!c) {
        set_why(why, why_len, "out of host memory%s%s", "", "");
        return nullptr;
    }
    // The per-thread default stream (see the Makefile), which the
    // synchronous copies use too: contexts on one thread run in call order.
    c->stream = cudaStreamPerThread;
    c->debug_sync = tfc_env_switch("TF_CUDA_SYNC", 0);
    c->gemm_tune = -1;
    cublasStatus_t s = cublasCreate(&c->cublas);
    // cuBLAS would take the legacy stream, which no graph records
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(c->cublas, c->stream);
    if (s != CUBLAS_STATUS_SUCCESS) {
        if (c->cublas) cublasDestroy(c->cublas);
        free(c);
        set_why(why, why_len, "cuBLAS failed to start: %s%s", tfc_cublas_status_string(s), "");
        return nullptr;
    }
    snprintf(c->device_desc, sizeof c->device_desc, "%s, sm_%d%d", prop.name, prop.major,
             prop.minor);
    c->pdl = prop.major >= 9 && tfc_env_switch("TF_CUDA_PDL", 1);
    const char *fused = getenv("TF_CUDA_FUSED_SITES");
    c->fused_sites = prop.major < 9 || !fused          ? TFC_FUSED_OFF // opt-in: measured slower
                     : strcmp(fused, "1") == 0      ? TFC_FUSED_ON
                     : strcmp(fused, "strict") == 0 ? TFC_FUSED_STRICT
                                                    : TFC_FUSED_OFF;
    c->baseline_used = gpu_bytes_used();
    fill_table(&c->ops, c);
    return &c->ops;
}

extern "C" void ops_cuda_destroy(const Ops *ops) {
    if (!ops) return;
    OpsCtx *c = ops->ctx;
    CUDA_CHECK(cudaDeviceSynchronize());
    for (int slot = 0; slot < TFC_WS_COUNT; slot++) tfc_workspace_release(c, slot);
    if (c->mirror_buf) CUDA_CHECK(cudaFree(c->mirror_buf));
    if (c->rope_table) CUDA_CHECK(cudaFree(c->rope_table));
    if (c->pd_counters) CUDA_CHECK(cudaFree(c->pd_counters));
    free_host_copies(c);
    tfc_gemm_tuned_free(c);
    CUBLAS_CHECK(cublasDestroy(c->cublas));
    free(c);
}
