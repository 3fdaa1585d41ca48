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

#include "ops.h"

// Print one line and exit(1): the backend has no way to recover from a
// failed kernel or library call.
[[noreturn]] void tfc_fail(const char *what, const char *detail, const char *file, int line);
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

// After every kernel launch.
#define KERNEL_CHECK()                                                          \
    do {                                                                        \
        cudaError_t e_ = cudaGetLastError();                                    \
        if (e_ == cudaSuccess && tfc_ctx.debug_sync) e_ = cudaDeviceSynchronize();  \
        if (e_ != cudaSuccess) tfc_fail("kernel launch", cudaGetErrorString(e_), __FILE__, __LINE__); \
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

// ---- shared state (ops_cuda.cu) ----

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
    TFC_WS_GEMM,      // cublasLt's workspace (gemm_tuned.cu)
    TFC_WS_GEMM_TUNE, // scratch output while timing GEMM candidates
    TFC_WS_DECODE,    // partial sums of the few-rows Pattention (pattention.cu)
    TFC_WS_DECODE_ATT, // attention state of a prompt's chunk (decode.cu)
    TFC_WS_COUNT
};
void *tfc_workspace(int slot, size_t bytes);
void tfc_workspace_release(int slot); // frees it (after a synchronization)
// A workspace, the RoPE table or the bf16 mirror is about to move (or the
// mirror to be dropped): recordings made before may not run (op_replay).
void tfc_buffers_moved(void);

typedef __nv_bfloat16 bf16;

// The backend's state (ops.h OpsCtx). One per process, as the backend drives
// one GPU: the table's ctx points at tfc_ctx, and the host code of the
// kernels reads it there rather than taking it through every helper.
struct OpsCtx {
    cublasHandle_t cublas;
    int debug_sync; // TF_CUDA_SYNC=1: synchronize after every launch
    int precision;  // MatmulPrecision
    void *ws[TFC_WS_COUNT]; // the workspaces (tfc_workspace)
    size_t ws_bytes[TFC_WS_COUNT];
    // The bf16 weights mirror (tfc_mirror_extend): a copy of the parameter
    // range [mirror_base, + mirror_len) in mirror_buf (capacity mirror_cap).
    const float *mirror_base;
    size_t mirror_len;
    bf16 *mirror_buf;
    size_t mirror_cap;
    size_t baseline_used; // GPU bytes in use before the backend started
    unsigned buffers_epoch; // bumped whenever a buffer that kernels read moves
    char device_desc[320];
    int ready; // ops_cuda_create has succeeded
    int pdl;   // the GPU overlaps dependent launches (sm_90+, see tfc_launch_pdl)
};
extern OpsCtx tfc_ctx;
int tfc_matmul_precision(void); // MatmulPrecision
// Attention tensors (ops.h) are bf16 under --precision bf16, else fp32.
bool tfc_attn_bf16(void);
size_t tfc_attn_elem_bytes(void);
// Element-wise conversions between fp32 and bf16 buffers (n may be odd).
void tfc_to_bf16(bf16 *dst, const float *src, size_t n);
void tfc_to_f32(float *dst, const bf16 *src, size_t n);
// src rounded to bf16 into workspace `slot` (grown as needed); returns it.
bf16 *tfc_bf16_copy(int slot, const float *src, size_t n);
// A matrix operand of a row-major GEMM: its data, its row stride and, in a
// batch, the stride between its matrices (elements).
struct TfcOperand {
    const void *p;
    int ld;
    long long stride;
};
// The general row-major GEMM behind the wrappers (K > 0; see tfc_matmul):
// C_b = alpha op(A_b) op(B_b) + beta C_b for b < batch, C_b at C + b stride_c
// with row stride ldc.
void tfc_gemm_batched(void *C, int ldc, long long stride_c, cudaDataType c_type, TfcOperand A,
                      TfcOperand B, cudaDataType ab_type, int M, int N, int K, int trans_a,
                      int trans_b, float alpha, float beta, int batch, cublasComputeType_t compute);
// The same in column-major terms through cublasLt with a measured choice of
// kernel (gemm_tuned.cu), for bf16 operands; false when it does not take
// the call (other types, TF_GEMM_TUNE=0, no candidate), which then goes to
// cublasGemmEx. beta scales C_in (NULL: C itself), the result goes to C.
bool tfc_gemm_tuned(void *C, const void *C_in, int ldc, long long stride_c, cudaDataType c_type,
                    const void *A, int lda, long long stride_a, const void *B, int ldb,
                    long long stride_b,
                    cudaDataType ab_type, cublasOperation_t op_a, cublasOperation_t op_b, int m,
                    int n, int k, float alpha, float beta, int batch, cublasComputeType_t compute);
// C = alpha op(A) op(B) + beta C_in, one product, C_in a matrix laid out as C.
void tfc_gemm_from(void *C, const void *C_in, int ldc, cudaDataType c_type, TfcOperand A,
                   TfcOperand B, cudaDataType ab_type, int M, int N, int K, int trans_a,
                   int trans_b, float alpha, float beta, cublasComputeType_t compute);
// Its common case: one product of packed matrices.
void tfc_gemm_ex(void *C, cudaDataType c_type, const void *A, const void *B, cudaDataType ab_type,
                 int M, int N, int K, int trans_a, int trans_b, float alpha, float beta,
                 cublasComputeType_t compute);
// src in bf16: the weights mirror's copy when src lies in it, else a fresh
// copy into workspace `slot`.
bf16 *tfc_bf16_input(int slot, const float *src, size_t n);
// The bf16 weights mirror (ops_cuda.cu): AdamW over [p, p + n) writes the
// updated values also at the pointer extend() returns (NULL: none kept);
// memory ops writing into the range call forget().
bf16 *tfc_mirror_extend(const float *p, size_t n);
void tfc_mirror_forget(const void *p, size_t bytes);
// What fp32-operand GEMMs compute in: fp32, or TF32 under --precision tf32/bf16.
cublasComputeType_t tfc_fp32_compute(void);

// The cuBLAS types of a GEMM operand type T (float or bf16) and the
// compute type its products take.
template <typename T> struct Dt;
template <> struct Dt<float> {
    static cudaDataType type() { return CUDA_R_32F; }
    static cublasComputeType_t compute() { return tfc_fp32_compute(); }
};
template <> struct Dt<bf16> {
    static cudaDataType type() { return CUDA_R_16BF; }
    static cublasComputeType_t compute() { return CUBLAS_COMPUTE_32F; }
};

// Row-major C_b (+)= op(A_b) op(B_b), b < batch (leading dims and batch strides in elements).
template <typename TC, typename T>
static void tfc_gemm(TC *C, int ldc, long long sc, const T *A, int lda, long long sa, const T *B,
                 int ldb, long long sb, int M, int N, int K, int trans_a, int trans_b, float beta,
                 int batch) {
    tfc_gemm_batched(C, ldc, sc, Dt<TC>::type(), TfcOperand{A, lda, sa}, TfcOperand{B, ldb, sb},
                     Dt<T>::type(), M, N, K, trans_a, trans_b, 1.0f, beta, batch, Dt<T>::compute());
}

// Row-major GEMM: C[M,N] = alpha op(A) op(B) + beta C (see ops.h).
void tfc_matmul(float *C, const float *A, const float *B, int M, int N, int K, int trans_a,
                int trans_b, float alpha, float beta);
// Same, over `batch` matrices at fixed element strides.
void tfc_matmul_strided(float *C, const float *A, const float *B, int M, int N, int K,
                        int trans_a, int trans_b, float alpha, float beta, long long stride_a,
                        long long stride_b, long long stride_c, int batch);

// ---- ops implemented in the other files ----
void tfc_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                           const float *b, int N, int C);
// The same, writing the output to out (fp32) and/or out16 (bf16); either may be NULL.
void tfc_layernorm_rows(float *out, bf16 *out16, float *mean, float *rstd, const float *x,
                        const float *w, const float *b, int N, int C);
void tfc_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, const float *mean, const float *rstd, int N, int C);
// RMSNorm (ops.h rmsnorm_forward/backward); tfc_rmsnorm_rows as tfc_layernorm_rows.
void tfc_rmsnorm_rows(float *out, bf16 *out16, float *rstd, const float *x, const float *w, int N,
                      int C);
void tfc_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C);
void tfc_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int C);
// The rows the products of a Pattention or linear take, from its input
// (ops.h PattInput): in bf16 mode an attention tensor as it is, x rounded to
// bf16 (into TFC_WS_BF16_X), or the normalized rows, which forward writes
// straight to bf16 in xn (no fp32 copy) and backward finds there; else x, or
// the normalized rows in xn.
const bf16 *tfc_input_bf16(PattInput in, int N, int d_in, bool forward);
const float *tfc_input_fp32(PattInput in, int N, int d_in, bool forward);
void tfc_linear_forward(const LinearArgs *a);
void tfc_linear_backward(const LinearArgs *a);
void tfc_pattention_sizes(int G, int N, int n, size_t *a_floats, size_t *s_floats,
                         size_t *da_floats);
void tfc_pattention_forward(float *Y, float *A, float *S, float *dA, PattInput X,
                            const float *K, const float *V, const float *tau, int G, int mode,
                            int N, int d_in, int n, int d_out, int y_attn,
                            const float *residual);
void tfc_pattention_backward(float *dX, float *dK, float *dV, float *dA, const float *dY,
                             PattInput X, const float *K, const float *V, float *A, float *S,
                             const float *tau, int G, int mode, int N, int d_in, int n, int d_out,
                             int accumulate_dx, int y_attn);
void tfc_rope(float *x, int B, int T, int H, int hd, int rot, int inverse);
// Incremental decoding (decode.cu; ops.h for the layouts).
void tfc_rope_at(float *x, int B, int T, int H, int hd, int rot, const int *pos, int T_max);
// cos, sin of t * 10000^(-2i/rot) at [(t * rot/2 + i) * 2] for t < T (at least).
const float *tfc_rope_table(int T, int rot);
void tfc_attention_decode(const DecodeAttnArgs *args);
void tfc_attention_sizes(int B, int T, int H, int hd, size_t *att_floats, size_t *datt_floats);
void tfc_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                           int B, int T, int H, int hd);
void tfc_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                            const float *out, const float *q, const float *k, const float *v,
                            const float *att, int B, int T, int H, int hd);
// Fused causal attention (flash_attention.cu) on bf16 tensors, bf16
// tensor-core products: forward saves the per-row log-sum-exp (B*H*T floats,
// log2 units) in lse; backward needs `out`, a B*H*T scratch Dv and a
// B*T*H*hd fp32 scratch dq_acc (dQ sums over key blocks), and overwrites
// dq, dk, dv.
int tfc_flash_attention_supported(int hd);
void tfc_flash_attention_forward(bf16 *out, float *lse, const bf16 *q, const bf16 *k,
                                 const bf16 *v, int B, int T, int H, int hd);
void tfc_flash_attention_backward(bf16 *dq, bf16 *dk, bf16 *dv, float *dq_acc, float *Dv,
                                  const bf16 *dout, const bf16 *out, const bf16 *q,
                                  const bf16 *k, const bf16 *v, const float *lse, int B, int T,
                                  int H, int hd);
float tfc_cross_entropy_forward(float *probs, const float *logits, const int *targets, int N,
                                int V);
void tfc_cross_entropy_backward(float *dlogits, const float *probs, const int *targets,
                                float scale, int N, int V);
float tfc_sum_squares(const float *x, size_t n);
void tfc_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
               float beta2, float eps, float weight_decay, float grad_scale, int t);

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
template <typename... KArgs, typename... Args>
static void tfc_launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                           Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = cudaStreamPerThread;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = tfc_ctx.pdl ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, ((KArgs)args)...));
}
