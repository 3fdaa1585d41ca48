// CUDA backend: the Ops table, device memory, cuBLAS GEMMs and the small
// elementwise ops (embedding, dropout, add/accumulate/scale).
#include <string.h>

#include "common.cuh"
#include "ops_cuda.h"
#include "rng.h"

OpsCtx tfc_ctx; // zero: no handle, MATMUL_FP32, no workspaces, no mirror

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


void tfc_workspace_release(int slot) {
    if (!tfc_ctx.ws[slot]) return;
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaFree(tfc_ctx.ws[slot]));
    tfc_ctx.ws[slot] = nullptr;
    tfc_ctx.ws_bytes[slot] = 0;
}

void *tfc_workspace(int slot, size_t bytes) {
    if (bytes <= tfc_ctx.ws_bytes[slot]) return tfc_ctx.ws[slot];
    // Some headroom against repeated growth (sampling grows T a token at a
    // time), capped so that the large training workspaces stay near exact.
    const size_t cap = (size_t)4 << 20;
    size_t want = bytes + (bytes / 4 < cap ? bytes / 4 : cap);
    tfc_workspace_release(slot);
    tfc_buffers_moved();
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
    tfc_ctx.ws[slot] = p;
    tfc_ctx.ws_bytes[slot] = want;
    return p;
}

void tfc_buffers_moved(void) { tfc_ctx.buffers_epoch++; }

// ---------------------------------------------------------------- recordings

// A CUDA graph of the ops called between record_begin and record_end, and
// the buffer epoch it was recorded in: it holds the addresses of the
// backend's workspaces, so once one of them moves it may not run again.
struct Recording {
    cudaGraphExec_t exec;
    unsigned epoch;
};

static int op_record_begin(const Ops *ops) {
    cudaError_t e = cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e == cudaSuccess ? 0 : -1;
}

static void *op_record_end(const Ops *ops) {
    cudaGraph_t graph = nullptr;
    cudaError_t e = cudaStreamEndCapture(cudaStreamPerThread, &graph);
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
    r->epoch = tfc_ctx.buffers_epoch;
    return r;
}

static int op_replay(const Ops *ops, void *recording) {
    Recording *r = (Recording *)recording;
    if (r->epoch != tfc_ctx.buffers_epoch) return -1;
    CUDA_CHECK(cudaGraphLaunch(r->exec, cudaStreamPerThread));
    return 0;
}

static void op_record_free(const Ops *ops, void *recording) {
    Recording *r = (Recording *)recording;
    if (!r) return;
    CUDA_CHECK(cudaGraphExecDestroy(r->exec));
    free(r);
}

// ---------------------------------------------------------------- memory

static void *cu_alloc(size_t bytes) {
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

static void cu_free(void *p) {
    tfc_mirror_forget(p, 1);
    if (p) CUDA_CHECK(cudaFree(p));
}

static void cu_to_device(void *dst, const void *src, size_t bytes) {
    tfc_mirror_forget(dst, bytes);
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

static void cu_to_host(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

static void cu_copy(void *dst, const void *src, size_t bytes) {
    tfc_mirror_forget(dst, bytes);
    if (bytes && dst != src) CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
}

static void cu_zero(void *p, size_t bytes) {
    tfc_mirror_forget(p, bytes);
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, 0));
}

static void cu_synchronize(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

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

static void cu_scale(float *x, float s, size_t n) {
    tfc_mirror_forget(x, n * sizeof(float));
    if (!n) return;
    scale_kernel<<<tfc_blocks(n, 256), 256>>>(x, s, n);
    KERNEL_CHECK();
}

static void cu_add(float *out, const float *a, const float *b, size_t n) {
    tfc_mirror_forget(out, n * sizeof(float));
    if (!n) return;
    add_kernel<<<tfc_blocks(n, 256), 256>>>(out, a, b, n);
    KERNEL_CHECK();
}

static void cu_accumulate(float *y, const float *x, size_t n) {
    tfc_mirror_forget(y, n * sizeof(float));
    if (!n) return;
    accumulate_kernel<<<tfc_blocks(n, 256), 256>>>(y, x, n);
    KERNEL_CHECK();
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

static void cu_dropout(float *out, const float *x, float p, uint64_t seed, size_t n) {
    if (!n) return;
    if (p <= 0.0f) {
        cu_copy(out, x, n * sizeof(float));
        return;
    }
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    unsigned blocks = tfc_blocks((n + 3) / 4, 256);
    if (aligned16(out, x, x))
        dropout_kernel<true><<<blocks, 256>>>(out, x, p, scale, seed, n);
    else
        dropout_kernel<false><<<blocks, 256>>>(out, x, p, scale, seed, n);
    KERNEL_CHECK();
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

static void cu_dropout_add(float *out, const float *x, const float *branch, float p, uint64_t seed,
                           size_t n) {
    if (!n) return;
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    unsigned blocks = tfc_blocks((n + 3) / 4, 256);
    if (aligned16(out, x, branch))
        dropout_add_kernel<true><<<blocks, 256>>>(out, x, branch, p, scale, seed, n);
    else
        dropout_add_kernel<false><<<blocks, 256>>>(out, x, branch, p, scale, seed, n);
    KERNEL_CHECK();
}

static void cu_dropout_forward(float *out, const float *x, float p, uint64_t seed, size_t n) {
    cu_dropout(out, x, p, seed, n);
}

static void cu_dropout_backward(float *dx, const float *dout, float p, uint64_t seed, size_t n) {
    cu_dropout(dx, dout, p, seed, n);
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

static void cu_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C) {
    if (N <= 0 || C <= 0) return;
    embedding_forward_kernel<<<tfc_blocks((size_t)N * C, 256), 256>>>(out, tokens, wte, N, C);
    KERNEL_CHECK();
}

static void cu_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
    if (N <= 0 || C <= 0) return;
    embedding_backward_kernel<<<tfc_blocks((size_t)N * C, 256), 256>>>(dwte, dout, tokens, N, C);
    KERNEL_CHECK();
}

// ---------------------------------------------------------------- GEMM

int tfc_matmul_precision(void) { return tfc_ctx.precision; }
bool tfc_attn_bf16(void) { return tfc_ctx.precision == MATMUL_BF16; }
size_t tfc_attn_elem_bytes(void) { return tfc_attn_bf16() ? sizeof(bf16) : sizeof(float); }

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

void tfc_to_bf16(bf16 *dst, const float *src, size_t n) {
    if (!n) return;
    if ((uintptr_t)src % 8 == 0 && (uintptr_t)dst % 4 == 0)
        to_bf16_kernel<<<tfc_blocks(n / 2 + 1, 256), 256>>>(dst, src, n);
    else
        to_bf16_scalar_kernel<<<tfc_blocks(n, 256), 256>>>(dst, src, n);
    KERNEL_CHECK();
}

void tfc_to_f32(float *dst, const bf16 *src, size_t n) {
    if (!n) return;
    to_f32_kernel<<<tfc_blocks(n, 256), 256>>>(dst, src, n);
    KERNEL_CHECK();
}

// The weights mirror: a bf16 copy of the parameters that AdamW writes as it
// updates them, so that the Pattentions need not convert K and V per call.
// It covers [mirror_base, + mirror_len) of tfc_ctx (the model's two AdamW calls,
// decayed and not, are adjacent and extend one range). Parameters change
// only through AdamW and the memory ops (ops.h), which drop an overlapped
// mirror; compute ops never write parameter memory.

void tfc_mirror_forget(const void *p, size_t bytes) {
    OpsCtx *c = &tfc_ctx;
    if (!c->mirror_base) return;
    const char *a = (const char *)p, *b = (const char *)c->mirror_base;
    if (a < b + c->mirror_len * sizeof(float) && b < a + (bytes ? bytes : 1)) {
        c->mirror_base = nullptr;
        tfc_buffers_moved();
    }
}

// Room for `need` elements, keeping the first `keep`.
static void mirror_reserve(OpsCtx *c, size_t need, size_t keep) {
    if (need <= c->mirror_cap) return;
    size_t cap = need + need / 4;
    bf16 *buf = nullptr;
    tfc_buffers_moved();
    CUDA_CHECK(cudaMalloc(&buf, cap * sizeof(bf16)));
    if (keep) CUDA_CHECK(cudaMemcpyAsync(buf, c->mirror_buf, keep * sizeof(bf16), cudaMemcpyDeviceToDevice, 0));
    if (c->mirror_buf) {
        CUDA_CHECK(cudaDeviceSynchronize());
        CUDA_CHECK(cudaFree(c->mirror_buf));
    }
    c->mirror_buf = buf;
    c->mirror_cap = cap;
}

bf16 *tfc_mirror_extend(const float *p, size_t n) {
    OpsCtx *c = &tfc_ctx;
    if (c->precision != MATMUL_BF16 || !n) {
        tfc_mirror_forget(p, n * sizeof(float));
        return nullptr;
    }
    size_t off = c->mirror_base && p == c->mirror_base + c->mirror_len ? c->mirror_len : 0;
    mirror_reserve(c, off + n, off);
    if (!off) c->mirror_base = p;
    c->mirror_len = off + n;
    return c->mirror_buf + off;
}

bf16 *tfc_bf16_input(int slot, const float *src, size_t n) {
    const OpsCtx *c = &tfc_ctx;
    if (c->mirror_base && src >= c->mirror_base && src + n <= c->mirror_base + c->mirror_len)
        return c->mirror_buf + (src - c->mirror_base);
    return tfc_bf16_copy(slot, src, n);
}

bf16 *tfc_bf16_copy(int slot, const float *src, size_t n) {
    bf16 *dst = (bf16 *)tfc_workspace(slot, (n ? n : 1) * sizeof(bf16));
    tfc_to_bf16(dst, src, n);
    return dst;
}

void tfc_gemm_batched(void *C, int ldc, long long stride_c, cudaDataType c_type, TfcOperand A,
                      TfcOperand B, cudaDataType ab_type, int M, int N, int K, int trans_a,
                      int trans_b, float alpha, float beta, int batch, cublasComputeType_t compute) {
    // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap
    // the operands and keep the transpose flags.
    cublasOperation_t opA = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (tfc_gemm_tuned(C, nullptr, ldc, stride_c, c_type, B.p, B.ld, B.stride, A.p, A.ld,
                       A.stride, ab_type, opB, opA, N, M, K, alpha, beta, batch, compute))
        return;
    if (batch == 1)
        CUBLAS_CHECK(cublasGemmEx(tfc_ctx.cublas, opB, opA, N, M, K, &alpha, B.p, ab_type, B.ld,
                                  A.p, ab_type, A.ld, &beta, C, c_type, ldc, compute,
                                  CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            tfc_ctx.cublas, opB, opA, N, M, K, &alpha, B.p, ab_type, B.ld, B.stride, A.p, ab_type,
            A.ld, A.stride, &beta, C, c_type, ldc, stride_c, batch, compute, CUBLAS_GEMM_DEFAULT));
}

void tfc_gemm_from(void *C, const void *C_in, int ldc, cudaDataType c_type, TfcOperand A,
                   TfcOperand B, cudaDataType ab_type, int M, int N, int K, int trans_a,
                   int trans_b, float alpha, float beta, cublasComputeType_t compute) {
    cublasOperation_t opA = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opB = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (tfc_gemm_tuned(C, C_in, ldc, 0, c_type, B.p, B.ld, 0, A.p, A.ld, 0, ab_type, opB, opA, N,
                       M, K, alpha, beta, 1, compute))
        return;
    if (C_in != C) { // cublasGemmEx reads and writes one C
        size_t elem = c_type == CUDA_R_32F ? sizeof(float) : sizeof(bf16);
        CUDA_CHECK(cudaMemcpyAsync(C, C_in, ((size_t)(M - 1) * ldc + N) * elem,
                                   cudaMemcpyDeviceToDevice, 0));
    }
    tfc_gemm_batched(C, ldc, 0, c_type, A, B, ab_type, M, N, K, trans_a, trans_b, alpha, beta, 1,
                     compute);
}

void tfc_gemm_ex(void *C, cudaDataType c_type, const void *A, const void *B, cudaDataType ab_type,
                 int M, int N, int K, int trans_a, int trans_b, float alpha, float beta,
                 cublasComputeType_t compute) {
    TfcOperand a = {A, trans_a ? M : K, 0}, b = {B, trans_b ? K : N, 0};
    tfc_gemm_batched(C, N, 0, c_type, a, b, ab_type, M, N, K, trans_a, trans_b, alpha, beta, 1,
                     compute);
}

// fp32 operands: the precision picks the tensor-core math. In bf16 mode the
// fp32-operand GEMMs (head, attention) use TF32: cuBLAS's FAST_16BF compute
// type runs TF32 kernels for fp32 operands anyway, and real bf16 needs bf16
// operands (the Pattentions' own, pattention.cu).
cublasComputeType_t tfc_fp32_compute(void) {
    return tfc_ctx.precision == MATMUL_FP32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
}

void tfc_matmul(float *C, const float *A, const float *B, int M, int N, int K, int trans_a,
                int trans_b, float alpha, float beta) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { // empty sum: C = beta C
        if (beta == 0.0f)
            cu_zero(C, (size_t)M * N * sizeof(float));
        else if (beta != 1.0f)
            cu_scale(C, beta, (size_t)M * N);
        return;
    }
    tfc_gemm_ex(C, CUDA_R_32F, A, B, CUDA_R_32F, M, N, K, trans_a, trans_b, alpha, beta,
                tfc_fp32_compute());
}

void tfc_matmul_strided(float *C, const float *A, const float *B, int M, int N, int K,
                        int trans_a, int trans_b, float alpha, float beta, long long stride_a,
                        long long stride_b, long long stride_c, int batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0) {
        tfc_fail("tfc_matmul_strided", "K must be positive", __FILE__, __LINE__);
    }
    TfcOperand a = {A, trans_a ? M : K, stride_a}, b = {B, trans_b ? K : N, stride_b};
    tfc_gemm_batched(C, N, stride_c, CUDA_R_32F, a, b, CUDA_R_32F, M, N, K, trans_a, trans_b,
                     alpha, beta, batch, tfc_fp32_compute());
}

// ---------------------------------------------------------------- table

// Precision is part of the state: switching drops the weights mirror, whose
// type follows it.
static void set_precision(OpsCtx *c, int precision) {
    c->mirror_base = nullptr;
    c->precision = precision == MATMUL_TF32 || precision == MATMUL_BF16 ? precision : MATMUL_FP32;
}

__global__ void probe_kernel(int *x) { *x = 42; }

static Ops g_ops;

static size_t gpu_bytes_used(void) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0;
    return total_b - free_b;
}

// The table's entries: each takes the table first (ops.h) and calls the
// backend's function, which finds the state in tfc_ctx (= ops->ctx).
static size_t op_memory_in_use(const Ops *ops) {
    size_t used = gpu_bytes_used();
    return used > ops->ctx->baseline_used ? used - ops->ctx->baseline_used : 0;
}
static void op_set_precision(const Ops *ops, int precision) { set_precision(ops->ctx, precision); }
static size_t op_attn_elem_bytes(const Ops *ops) { return tfc_attn_elem_bytes(); }
static void *op_alloc(const Ops *ops, size_t bytes) { return cu_alloc(bytes); }
static void op_free(const Ops *ops, void *p) { cu_free(p); }
static void op_to_device(const Ops *ops, void *dst, const void *host_src, size_t bytes) {
    cu_to_device(dst, host_src, bytes);
}
static void op_to_host(const Ops *ops, void *host_dst, const void *src, size_t bytes) {
    cu_to_host(host_dst, src, bytes);
}
static void op_zero(const Ops *ops, void *p, size_t bytes) { cu_zero(p, bytes); }
static void op_synchronize(const Ops *ops) { cu_synchronize(); }
static void op_matmul(const Ops *ops, float *C, const float *A, const float *B, int M, int N, int K,
                      int trans_a, int trans_b, float alpha, float beta) {
    tfc_matmul(C, A, B, M, N, K, trans_a, trans_b, alpha, beta);
}
static void op_embedding_forward(const Ops *ops, float *out, const int *tokens, const float *wte,
                                 int N, int C) {
    cu_embedding_forward(out, tokens, wte, N, C);
}
static void op_embedding_backward(const Ops *ops, float *dwte, const float *dout, const int *tokens,
                                  int N, int C) {
    cu_embedding_backward(dwte, dout, tokens, N, C);
}
static void op_layernorm_forward(const Ops *ops, float *out, float *mean, float *rstd,
                                 const float *x, const float *w, const float *b, int N, int C) {
    tfc_layernorm_forward(out, mean, rstd, x, w, b, N, C);
}
static void op_layernorm_backward(const Ops *ops, float *dx, float *dw, float *db,
                                  const float *dout, const float *x, const float *w,
                                  const float *mean, const float *rstd, int N, int C) {
    tfc_layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, C);
}
static void op_rmsnorm_forward(const Ops *ops, float *out, float *rstd, const float *x,
                               const float *w, int N, int C) {
    tfc_rmsnorm_forward(out, rstd, x, w, N, C);
}
static void op_rmsnorm_backward(const Ops *ops, float *dx, float *dw, const float *dout,
                                const float *x, const float *w, const float *rstd, int N, int C) {
    tfc_rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
}
static void op_linear_forward(const Ops *ops, const LinearArgs *a) { tfc_linear_forward(a); }
static void op_linear_backward(const Ops *ops, const LinearArgs *a) { tfc_linear_backward(a); }
static void op_pattention_sizes(const Ops *ops, int G, int N, int n, size_t *a_floats,
                                size_t *s_floats, size_t *da_floats) {
    tfc_pattention_sizes(G, N, n, a_floats, s_floats, da_floats);
}
static void op_rope(const Ops *ops, float *x, int B, int T, int H, int hd, int rot, int inverse) {
    tfc_rope(x, B, T, H, hd, rot, inverse);
}
static void op_attention_decode(const Ops *ops, const DecodeAttnArgs *a) {
    tfc_attention_decode(a);
}
static void op_attention_sizes(const Ops *ops, int B, int T, int H, int hd, size_t *att_floats,
                               size_t *datt_floats) {
    tfc_attention_sizes(B, T, H, hd, att_floats, datt_floats);
}
static void op_attention_forward(const Ops *ops, float *out, float *att, const float *q,
                                 const float *k, const float *v, int B, int T, int H, int hd) {
    tfc_attention_forward(out, att, q, k, v, B, T, H, hd);
}
static void op_attention_backward(const Ops *ops, float *dq, float *dk, float *dv, float *datt,
                                  const float *dout, const float *out, const float *q,
                                  const float *k, const float *v, const float *att, int B, int T,
                                  int H, int hd) {
    tfc_attention_backward(dq, dk, dv, datt, dout, out, q, k, v, att, B, T, H, hd);
}
static void op_dropout_backward(const Ops *ops, float *dx, const float *dout, float p,
                                uint64_t seed, size_t n) {
    cu_dropout_backward(dx, dout, p, seed, n);
}
static void op_dropout_add(const Ops *ops, float *out, const float *x, const float *branch, float p,
                           uint64_t seed, size_t n) {
    cu_dropout_add(out, x, branch, p, seed, n);
}
static float op_cross_entropy_forward(const Ops *ops, float *probs, const float *logits,
                                      const int *targets, int N, int V) {
    return tfc_cross_entropy_forward(probs, logits, targets, N, V);
}
static void op_cross_entropy_backward(const Ops *ops, float *dlogits, const float *probs,
                                      const int *targets, float scale, int N, int V) {
    tfc_cross_entropy_backward(dlogits, probs, targets, scale, N, V);
}
static float op_sum_squares(const Ops *ops, const float *x, size_t n) {
    return tfc_sum_squares(x, n);
}
static void op_adamw(const Ops *ops, float *p, const float *g, float *m, float *v, size_t n,
                     float lr, float beta1, float beta2, float eps, float weight_decay,
                     float grad_scale, int t) {
    tfc_adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t);
}
static void op_copy(const Ops *ops, void *dst, const void *src, size_t bytes) {
    cu_copy(dst, src, bytes);
}
static void op_dropout_forward(const Ops *ops, float *out, const float *x, float p, uint64_t seed,
                               size_t n) {
    cu_dropout_forward(out, x, p, seed, n);
}
static void op_add(const Ops *ops, float *out, const float *a, const float *b, size_t n) {
    cu_add(out, a, b, n);
}
static void op_accumulate(const Ops *ops, float *y, const float *x, size_t n) {
    cu_accumulate(y, x, n);
}
static void op_scale(const Ops *ops, float *x, float s, size_t n) { cu_scale(x, s, n); }
static void op_pattention_forward(const Ops *ops, const PattArgs *a) {
    tfc_pattention_forward(a->Y, a->A, a->S, a->dA, a->X, a->K, a->V, a->tau, a->G, a->mode, a->N,
                           a->d_in, a->n, a->d_out, a->y_attn, a->residual);
}
static void op_pattention_backward(const Ops *ops, const PattArgs *a) {
    tfc_pattention_backward(a->dX, a->dK, a->dV, a->dA, a->dY, a->X, a->K, a->V, a->A, a->S,
                            a->tau, a->G, a->mode, a->N, a->d_in, a->n, a->d_out,
                            a->accumulate_dx, a->y_attn);
}

static void set_why(char *why, size_t why_len, const char *fmt, const char *a, const char *b) {
    if (why && why_len) snprintf(why, why_len, fmt, a, b);
}

extern "C" const Ops *ops_cuda_create(char *why, size_t why_len) {
    if (tfc_ctx.ready) return &g_ops;
    const char *dbg = getenv("TF_CUDA_SYNC");
    tfc_ctx.debug_sync = dbg && *dbg && strcmp(dbg, "0") != 0;

    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        set_why(why, why_len, "no usable CUDA device (cudaGetDeviceCount: %s)%s",
                cudaGetErrorString(e), "");
        return nullptr;
    }
    if (count <= 0) {
        set_why(why, why_len, "no CUDA device found%s%s", "", "");
        return nullptr;
    }
    int dev = 0;
    cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        set_why(why, why_len, "cannot query the CUDA device%s%s", "", "");
        return nullptr;
    }

    // A device this binary has no kernel image for fails on the first launch:
    // find out now, while the caller can still fall back to the CPU.
    int *probe = nullptr;
    e = cudaMalloc(&probe, sizeof(int));
    if (e == cudaSuccess) {
        probe_kernel<<<1, 1>>>(probe);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        int host = 0;
        if (e == cudaSuccess) e = cudaMemcpy(&host, probe, sizeof(int), cudaMemcpyDeviceToHost);
        if (e == cudaSuccess && host != 42) e = cudaErrorUnknown;
        cudaFree(probe);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        char dname[320];
        snprintf(dname, sizeof dname, "%s, sm_%d%d", prop.name, prop.major, prop.minor);
        set_why(why, why_len, "CUDA device unusable (%s): %s", dname, cudaGetErrorString(e));
        return nullptr;
    }

    cublasStatus_t s = cublasCreate(&tfc_ctx.cublas);
    // the stream this build's kernels use (per-thread default, see the
    // Makefile): cuBLAS would take the legacy one, which no graph records
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(tfc_ctx.cublas, cudaStreamPerThread);
    if (s != CUBLAS_STATUS_SUCCESS) {
        tfc_ctx.cublas = nullptr;
        set_why(why, why_len, "cuBLAS failed to start: %s%s", tfc_cublas_status_string(s), "");
        return nullptr;
    }

    g_ops.kind = BACKEND_CUDA;
    g_ops.name = "cuda";
    snprintf(tfc_ctx.device_desc, sizeof tfc_ctx.device_desc, "%s, sm_%d%d", prop.name, prop.major,
             prop.minor);
    g_ops.device = tfc_ctx.device_desc;
    const char *pdl = getenv("TF_CUDA_PDL");
    tfc_ctx.pdl = prop.major >= 9 && !(pdl && strcmp(pdl, "0") == 0);
    g_ops.ctx = &tfc_ctx;
    tfc_ctx.baseline_used = gpu_bytes_used();
    g_ops.memory_in_use = op_memory_in_use;
    g_ops.set_precision = op_set_precision;
    g_ops.attn_elem_bytes = op_attn_elem_bytes;
    g_ops.alloc = op_alloc;
    g_ops.free = op_free;
    g_ops.to_device = op_to_device;
    g_ops.to_host = op_to_host;
    g_ops.zero = op_zero;
    g_ops.synchronize = op_synchronize;
    g_ops.matmul = op_matmul;
    g_ops.embedding_forward = op_embedding_forward;
    g_ops.embedding_backward = op_embedding_backward;
    g_ops.layernorm_forward = op_layernorm_forward;
    g_ops.layernorm_backward = op_layernorm_backward;
    g_ops.rmsnorm_forward = op_rmsnorm_forward;
    g_ops.rmsnorm_backward = op_rmsnorm_backward;
    g_ops.linear_forward = op_linear_forward;
    g_ops.linear_backward = op_linear_backward;
    g_ops.pattention_sizes = op_pattention_sizes;
    g_ops.pattention_forward = op_pattention_forward;
    g_ops.pattention_backward = op_pattention_backward;
    g_ops.rope = op_rope;
    g_ops.attention_sizes = op_attention_sizes;
    g_ops.attention_forward = op_attention_forward;
    g_ops.attention_backward = op_attention_backward;
    g_ops.attention_decode = op_attention_decode;
    g_ops.record_begin = op_record_begin;
    g_ops.record_end = op_record_end;
    g_ops.replay = op_replay;
    g_ops.record_free = op_record_free;
    g_ops.dropout_backward = op_dropout_backward;
    g_ops.dropout_add = op_dropout_add;
    g_ops.cross_entropy_forward = op_cross_entropy_forward;
    g_ops.cross_entropy_backward = op_cross_entropy_backward;
    g_ops.sum_squares = op_sum_squares;
    g_ops.adamw = op_adamw;
    g_ops.copy = op_copy;
    g_ops.dropout_forward = op_dropout_forward;
    g_ops.add = op_add;
    g_ops.accumulate = op_accumulate;
    g_ops.scale = op_scale;
    tfc_ctx.ready = 1;
    return &g_ops;
}
