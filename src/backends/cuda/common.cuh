// Shared helpers of the CUDA backend: error checks, reductions, scratch
// buffers and the GEMM wrappers used by several files.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

// Print one line and exit(1): the backend has no way to recover from a
// failed kernel or library call.
[[noreturn]] void tfc_fail(const char *what, const char *detail, const char *file, int line);

// A 0/1 switch from the environment (TF_CUDA_SYNC, TF_CUDA_PDL, TF_GEMM_TUNE):
// set and not empty, anything but "0" is on; unset or empty, `fallback`.
static inline int tfc_env_switch(const char *name, int fallback) {
    const char *e = getenv(name);
    return e && *e ? strcmp(e, "0") != 0 : fallback;
}
const char *tfc_cublas_status_string(cublasStatus_t s);

#define CUDA_CHECK(call)                                                        \
    do {                                                                        \
        cudaError_t e_ = (call);                                                \
        if (e_ != cudaSuccess) tfc_fail(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_CHECK(call)                                                      \
    do {                                                                        \
        cublasStatus_t s_ = (call);                                             \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                        \
            tfc_fail(#call, tfc_cublas_status_string(s_), __FILE__, __LINE__); \
    } while (0)

// After every kernel launch, with the context it ran in.
#define KERNEL_CHECK(c)                                                                            \
    do {                                                                                           \
        cudaError_t e_ = cudaGetLastError();                                                       \
        if (e_ == cudaSuccess && (c)->debug_sync) e_ = cudaDeviceSynchronize();                    \
        if (e_ != cudaSuccess)                                                                     \
            tfc_fail("kernel launch", cudaGetErrorString(e_), __FILE__, __LINE__);                 \
    } while (0)

static inline unsigned tfc_blocks(size_t n, unsigned threads, unsigned max_blocks = 65535u * 16u) {
    size_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > max_blocks) b = max_blocks;
    return (unsigned)b;
}

// Block size for a "one block per row" kernel over rows of length n.
static inline int tfc_row_threads(int n, int max_threads = 256) {
    int t = ((n + 31) / 32) * 32;
    if (t < 32) t = 32;
    if (t > max_threads) t = max_threads;
    return t;
}

// ---- device math ----
#define TFC_INV_SQRT2 0.70710678118654752440f
#define TFC_INV_SQRT_2PI 0.39894228040143267794f

static __device__ __forceinline__ float tfc_gelu(float x) {
    return 0.5f * x * (1.0f + erff(x * TFC_INV_SQRT2));
}
static __device__ __forceinline__ float tfc_gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * TFC_INV_SQRT2));
    float pdf = TFC_INV_SQRT_2PI * expf(-0.5f * x * x);
    return cdf + x * pdf;
}

// ---- reductions (blockDim.x a multiple of 32, at most 1024) ----
template <typename T> static __device__ __forceinline__ T tfc_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float tfc_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Every thread of the block gets the total; fixed order, so deterministic.
// `sh` is shared scratch of 32 elements; safe to call repeatedly.
template <typename T> static __device__ __forceinline__ T tfc_block_sum(T v, T *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = tfc_warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : (T)0;
    return tfc_warp_sum(v);
}
static __device__ __forceinline__ float tfc_block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = tfc_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return tfc_warp_max(v);
}

// use(i, load(i)) for i = first, first + stride, ... below n, in that order,
// with B loads issued before any is used: a strided loop that uses each load
// before issuing the next waits a whole memory latency per element, which is
// most of the time of the small decode kernels. The uses keep their order, so
// a thread's sums are what the plain loop gives. (The loads are guarded, not
// given a default past n: written that way the single-row pd_scores kernel
// kept its registers, where a default made ptxas spill.)
template <int B, typename Load, typename Use>
static __device__ __forceinline__ void tfc_batched_pass(int first, int n, int stride, Load load,
                                                         Use use) {
    using T = decltype(load(first));
    for (int i0 = first; i0 < n; i0 += B * stride) {
        T v[B];
#pragma unroll
        for (int b = 0; b < B; b++)
            if (i0 + b * stride < n) v[b] = load(i0 + b * stride);
#pragma unroll
        for (int b = 0; b < B; b++)
            if (i0 + b * stride < n) use(i0 + b * stride, v[b]);
    }
}

// ---- the backend's state (ops_cuda.cu) ----

// Scratch buffers owned by the backend, grown on demand (never shrunk).
enum {
    TFC_WS_ATTN = 0,
    TFC_WS_ATTN_FP32, // fp32 copies of bf16 attention tensors (attention.cu)
    TFC_WS_LOSS,
    TFC_WS_LNORM,
    TFC_WS_REDUCE,
    TFC_WS_BF16_X, // bf16 GEMM operands (--precision bf16)
    TFC_WS_BF16_K,
    TFC_WS_BF16_V,
    TFC_WS_BF16_DY,
    TFC_WS_GEMM,       // cublasLt's workspace (gemm_tuned.cu)
    TFC_WS_GEMM_TUNE,  // scratch output while timing GEMM candidates
    TFC_WS_DECODE,     // partial sums of the few-rows Pattention (pattention.cu)
    TFC_WS_DECODE_ATT, // attention state of a prompt's chunk (decode.cu)
    TFC_WS_COUNT
};

typedef __nv_bfloat16 bf16;

// Blocks of a kernel resident on the GPU at once, asked once per kernel
// (pattention.cu): an open-addressed table keyed by the kernel's address.
#define TFC_RESIDENT_SLOTS 512
struct TfcResident {
    const void *kernel;
    unsigned blocks;
};

struct TfcGemmPlans; // the tuned GEMMs' handle and plans (gemm_tuned.cu)

// OpsCtx.fused_sites (TF_CUDA_FUSED_SITES unset or 0, 1, strict).
enum { TFC_FUSED_OFF, TFC_FUSED_ON, TFC_FUSED_STRICT };

// Whether a cluster of `cl` blocks of `kernel`, each with `smem` bytes of
// dynamic shared memory, can run on the GPU: asked once (pattention.cu).
#define TFC_CLUSTER_FITS 64
struct TfcClusterFit {
    const void *kernel;
    int cl, smem, fits;
};

// The backend's state (ops.h OpsCtx): everything the CUDA backend keeps
// between calls lives here, in the context that ops_cuda_create allocates
// and ops_cuda_destroy frees, so that several contexts may live in one
// process. The table is part of it (ops.ctx points back here); the host code
// takes the context explicitly (`OpsCtx *c`) and launches on c->stream.
// A copy to the host that the caller waits for later (cu_to_host_start): the
// device writes pinned memory, which an asynchronous copy needs (into pageable
// memory it would block), and the wait moves it to the caller's buffer.
typedef struct {
    void *pinned;
    size_t cap;
    void *dst;
    size_t bytes;
    cudaEvent_t done;
    int ticket, pending; // pending: started, not yet waited for
} TfcHostCopy;

struct OpsCtx {
    Ops ops;
    cudaStream_t stream; // where every kernel, copy and GEMM of this context runs
    cublasHandle_t cublas;
    int debug_sync; // TF_CUDA_SYNC=1: synchronize after every launch
    int precision;  // MatmulPrecision
    void *ws[TFC_WS_COUNT]; // the workspaces (tfc_workspace)
    size_t ws_bytes[TFC_WS_COUNT];
    // The bf16 weights mirror (tfc_mirror_extend, cu_cache_weights): a copy of the parameter
    // range [mirror_base, + mirror_len) in mirror_buf (capacity mirror_cap).
    const float *mirror_base;
    size_t mirror_len;
    bf16 *mirror_buf;
    size_t mirror_cap;
    // The RoPE table (attention.cu tfc_rope_table): cos, sin for rope_T
    // positions of a rope_rot-dim rotation.
    float *rope_table;
    int rope_rot, rope_T;
    unsigned *pd_counters; // the few-rows Pattention's block counters (pattention.cu)
    TfcResident resident[TFC_RESIDENT_SLOTS];
    unsigned flash_configured;    // flash kernels given their shared memory, a bit per kernel
    size_t token_smem_allowed[2]; // decode.cu's one-token kernel (fp32, bf16) shared memory
    TfcGemmPlans *gemm;           // gemm_tuned.cu, NULL until its first call
    int gemm_tune;                // -1 unread, 0 off (TF_GEMM_TUNE=0), 1 on
    size_t baseline_used; // GPU bytes in use before the backend started
    unsigned buffers_epoch; // bumped whenever a buffer that kernels read moves
    char device_desc[320];
    int pdl;   // the GPU overlaps dependent launches (sm_90+, see tfc_launch_pdl)
    // A few rows' Pattention as one kernel of a thread-block cluster (sm_90+;
    // otherwise the two kernels of every GPU): TF_CUDA_FUSED_SITES=1 where its
    // plan fits, =strict likewise, stopping where the GPU refuses a plan
    // (TFC_FUSED_*; pattention.cu, pf_run)
    int fused_sites;
    int fused_announced; // =strict has said on stderr that the cluster kernel ran
    TfcClusterFit cluster_fit[TFC_CLUSTER_FITS];
    TfcHostCopy copies[OPS_COPIES_IN_FLIGHT]; // to_host_start's copies, each in a free slot
    unsigned copies_started;                 // tickets given (wraps: tickets are 30 bits)
};

void *tfc_workspace(OpsCtx *c, int slot, size_t bytes);
void tfc_workspace_release(OpsCtx *c, int slot); // frees it (after a synchronization)
// A workspace, the RoPE table or the bf16 mirror is about to move (or the
// mirror to be dropped): recordings made before may not run (cu_replay).
void tfc_buffers_moved(OpsCtx *c);
// The tuned GEMMs' state, freed with the context (gemm_tuned.cu).
void tfc_gemm_tuned_free(OpsCtx *c);

// The table's entries (ops.h OPS_LIST): cu_<name>, each taking the table
// first and finding its context in ops->ctx.
#define TFC_DECLARE_ENTRY(kind, ret, name, params, args) ret cu_##name params;
OPS_LIST(TFC_DECLARE_ENTRY)
#undef TFC_DECLARE_ENTRY

// Attention tensors (ops.h) are bf16 under --precision bf16, else fp32.
static inline bool tfc_attn_bf16(const OpsCtx *c) { return c->precision == MATMUL_BF16; }
static inline size_t tfc_attn_elem_bytes(const OpsCtx *c) {
    return tfc_attn_bf16(c) ? sizeof(bf16) : sizeof(float);
}
// Element-wise conversions between fp32 and bf16 buffers (n may be odd).
void tfc_to_bf16(OpsCtx *c, bf16 *dst, const float *src, size_t n);
void tfc_to_f32(OpsCtx *c, float *dst, const bf16 *src, size_t n);
// src rounded to bf16 into workspace `slot` (grown as needed); returns it.
bf16 *tfc_bf16_copy(OpsCtx *c, int slot, const float *src, size_t n);
// A matrix operand of a row-major GEMM: its data, its row stride and, in a
// batch, the stride between its matrices (elements).
struct TfcOperand {
    const void *p;
    int ld;
    long long stride;
};
// The general row-major GEMM behind the wrappers (K > 0; see cu_matmul):
// C_b = alpha op(A_b) op(B_b) + beta C_b for b < batch, C_b at C + b stride_c
// with row stride ldc.
void tfc_gemm_batched(OpsCtx *c, void *C, int ldc, long long stride_c, cudaDataType c_type,
                      TfcOperand A, TfcOperand B, cudaDataType ab_type, int M, int N, int K,
                      int trans_a, int trans_b, float alpha, float beta, int batch,
                      cublasComputeType_t compute);
// The same in column-major terms through cublasLt with a measured choice of
// kernel (gemm_tuned.cu), for bf16 operands; false when it does not take
// the call (other types, TF_GEMM_TUNE=0, no candidate), which then goes to
// cublasGemmEx. beta scales C_in (NULL: C itself), the result goes to C.
bool tfc_gemm_tuned(OpsCtx *c, void *C, const void *C_in, int ldc, long long stride_c,
                    cudaDataType c_type, const void *A, int lda, long long stride_a, const void *B,
                    int ldb, long long stride_b, cudaDataType ab_type, cublasOperation_t op_a,
                    cublasOperation_t op_b, int m, int n, int k, float alpha, float beta, int batch,
                    cublasComputeType_t compute);
// C = alpha op(A) op(B) + beta C_in, one product, C_in a matrix laid out as C.
void tfc_gemm_from(OpsCtx *c, void *C, const void *C_in, int ldc, cudaDataType c_type, TfcOperand A,
                   TfcOperand B, cudaDataType ab_type, int M, int N, int K, int trans_a,
                   int trans_b, float alpha, float beta, cublasComputeType_t compute);
// Its common case: one product of packed matrices.
void tfc_gemm_ex(OpsCtx *c, void *C, cudaDataType c_type, const void *A, const void *B,
                 cudaDataType ab_type, int M, int N, int K, int trans_a, int trans_b, float alpha,
                 float beta, cublasComputeType_t compute);
// src in bf16: the weights mirror's copy when src lies in it, else a fresh
// copy into workspace `slot`.
bf16 *tfc_bf16_input(OpsCtx *c, int slot, const float *src, size_t n);
// The bf16 weights mirror (ops_cuda.cu): AdamW over [p, p + n) writes the
// updated values also at the pointer extend() returns (NULL: none kept);
// memory ops writing into the range call forget().
bf16 *tfc_mirror_extend(OpsCtx *c, const float *p, size_t n);
void tfc_mirror_forget(OpsCtx *c, const void *p, size_t bytes);
// What fp32-operand GEMMs compute in: fp32, or TF32 under --precision tf32/bf16.
static inline cublasComputeType_t tfc_fp32_compute(const OpsCtx *c) {
    return c->precision == MATMUL_FP32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
}

// The cuBLAS types of a GEMM operand type T (float or bf16) and the
// compute type its products take.
template <typename T> struct Dt;
template <> struct Dt<float> {
    static cudaDataType type() { return CUDA_R_32F; }
    static cublasComputeType_t compute(const OpsCtx *c) { return tfc_fp32_compute(c); }
};
template <> struct Dt<bf16> {
    static cudaDataType type() { return CUDA_R_16BF; }
    static cublasComputeType_t compute(const OpsCtx *) { return CUBLAS_COMPUTE_32F; }
};

// Row-major C_b (+)= op(A_b) op(B_b), b < batch (leading dims and batch strides in elements).
template <typename TC, typename T>
static void tfc_gemm(OpsCtx *c, TC *C, int ldc, long long sc, const T *A, int lda, long long sa,
                     const T *B, int ldb, long long sb, int M, int N, int K, int trans_a,
                     int trans_b, float beta, int batch) {
    tfc_gemm_batched(c, C, ldc, sc, Dt<TC>::type(), TfcOperand{A, lda, sa}, TfcOperand{B, ldb, sb},
                     Dt<T>::type(), M, N, K, trans_a, trans_b, 1.0f, beta, batch,
                     Dt<T>::compute(c));
}

// Row-major GEMM over `batch` matrices at fixed element strides (cu_matmul's
// batched form).
void tfc_matmul_strided(OpsCtx *c, float *C, const float *A, const float *B, int M, int N, int K,
                        int trans_a, int trans_b, float alpha, float beta, long long stride_a,
                        long long stride_b, long long stride_c, int batch);

// ---- helpers of the ops implemented in the other files ----
// LayerNorm rows writing the output to out (fp32) and/or out16 (bf16);
// either may be NULL.
void tfc_layernorm_rows(OpsCtx *c, float *out, bf16 *out16, float *mean, float *rstd,
                        const float *x, const float *w, const float *b, int N, int C);
// RMSNorm (ops.h rmsnorm_forward/backward); tfc_rmsnorm_rows as tfc_layernorm_rows.
void tfc_rmsnorm_rows(OpsCtx *c, float *out, bf16 *out16, float *rstd, const float *x,
                      const float *w, int N, int C);
// The rows the products of a Pattention or linear take, from its input
// (ops.h PattInput): in bf16 mode an attention tensor as it is, x rounded to
// bf16 (into TFC_WS_BF16_X), or the normalized rows, which forward writes
// straight to bf16 in xn (no fp32 copy) and backward finds there; else x, or
// the normalized rows in xn.
const bf16 *tfc_input_bf16(OpsCtx *c, PattInput in, int N, int d_in, bool forward);
const float *tfc_input_fp32(OpsCtx *c, PattInput in, int N, int d_in, bool forward);
// Incremental decoding (decode.cu; ops.h for the layouts).
void tfc_rope_at(OpsCtx *c, float *x, int B, int T, int H, int hd, int rot, const int *pos,
                 int T_max);
// cos, sin of t * 10000^(-2i/rot) at [(t * rot/2 + i) * 2] for t < T (at least).
const float *tfc_rope_table(OpsCtx *c, int T, int rot);
// Fused causal attention (flash_attention.cu) on bf16 tensors, bf16
// tensor-core products: forward saves the per-row log-sum-exp (B*H*T floats,
// log2 units) in lse; backward needs `out`, a B*H*T scratch Dv and a
// B*T*H*hd fp32 scratch dq_acc (dQ sums over key blocks), and overwrites
// dq, dk, dv.
int tfc_flash_attention_supported(int hd);
void tfc_flash_attention_forward(OpsCtx *c, bf16 *out, float *lse, const bf16 *q, const bf16 *k,
                                 const bf16 *v, int B, int T, int H, int hd);
void tfc_flash_attention_backward(OpsCtx *c, bf16 *dq, bf16 *dk, bf16 *dv, float *dq_acc, float *Dv,
                                  const bf16 *dout, const bf16 *out, const bf16 *q, const bf16 *k,
                                  const bf16 *v, const float *lse, int B, int T, int H, int hd);

// ---- dependent launches (Hopper): a kernel launched with tfc_launch_pdl may
// start while the kernel before it in the stream finishes; it must call
// tfc_pdl_wait() before it reads what earlier kernels wrote or writes
// anything they may read (what it does before, typically loading weights,
// overlaps their tail), and calls tfc_pdl_trigger() to let the next one
// start early in turn. Elsewhere both are no-ops and launches are ordinary.
static __device__ __forceinline__ void tfc_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void tfc_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// tfc_launch_cluster: the same, in clusters of `cluster` blocks along x.
template <typename... KArgs, typename... Args>
static void tfc_launch_cluster(const OpsCtx *c, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                               size_t smem, unsigned cluster, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = c->stream;
    cudaLaunchAttribute attr[2];
    unsigned n = 0;
    if (c->pdl) {
        attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster > 1) {
        attr[n].id = cudaLaunchAttributeClusterDimension;
        attr[n].val.clusterDim.x = cluster;
        attr[n].val.clusterDim.y = 1;
        attr[n++].val.clusterDim.z = 1;
    }
    cfg.attrs = attr;
    cfg.numAttrs = n;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, ((KArgs)args)...));
}
template <typename... KArgs, typename... Args>
static void tfc_launch_pdl(const OpsCtx *c, void (*kernel)(KArgs...), dim3 grid, dim3 block,
                           size_t smem, Args... args) {
    tfc_launch_cluster(c, kernel, grid, block, smem, 1, args...);
}
