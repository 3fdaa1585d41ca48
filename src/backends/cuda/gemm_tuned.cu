// The bf16-operand GEMMs (the Pattentions') through cublasLt, with the
// kernel chosen by measurement. cuBLAS's own choice (cublasGemmEx) is the
// first of its heuristic's candidates; for some of the Pattention shapes a
// later candidate is faster (docs/BENCHMARKS.md). So the first call of each
// shape times the heuristic's candidates on the call's operands (see
// choose) and keeps the fastest; later calls of that shape reuse it.
// TF_GEMM_TUNE=0 turns this off (every GEMM then goes through
// cublasGemmEx), for comparisons; so does the sampler (set_gemm_tuning). The heuristic is asked with cuBLAS's
// default alignment preference, not narrowed to the operands' own alignment
// (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*): the CUDA tests pass operands
// aligned to only 2-64 bytes.
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>

#include "common.cuh"

namespace {

constexpr int TUNE_CANDIDATES = 16;
constexpr int TUNE_REPEATS = 5;
constexpr size_t LT_WORKSPACE = (size_t)32 << 20; // cuBLAS's own default on Hopper

// What determines the kernel choice of one call (column-major view, see
// tfc_gemm_batched). Pointer alignment is part of it: a kernel chosen for
// 16-byte aligned operands may not take less.
struct Shape {
    int m, n, k, op_a, op_b, lda, ldb, ldc, batch, c_type, compute, beta_zero, align;
    long long stride_a, stride_b, stride_c;
    bool operator==(const Shape &o) const {
        return m == o.m && n == o.n && k == o.k && op_a == o.op_a && op_b == o.op_b &&
               lda == o.lda && ldb == o.ldb && ldc == o.ldc && batch == o.batch &&
               c_type == o.c_type && compute == o.compute && beta_zero == o.beta_zero &&
               align == o.align && stride_a == o.stride_a && stride_b == o.stride_b &&
               stride_c == o.stride_c;
    }
};

struct Plan {
    Shape shape;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    bool usable; // false: the heuristic offered nothing (cublasGemmEx takes the shape)
};

} // namespace

// A context's cublasLt handle and the plans of the shapes it has met.
struct TfcGemmPlans {
    cublasLtHandle_t lt;
    Plan *plans;
    int n, cap;
};

namespace {

int alignment_of(const void *p) {
    uintptr_t u = (uintptr_t)p;
    return u % 16 == 0 ? 16 : u % 8 == 0 ? 8 : u % 4 == 0 ? 4 : 2;
}

cublasLtMatrixLayout_t layout(cudaDataType type, int rows, int cols, int ld, int batch,
                              long long stride) {
    cublasLtMatrixLayout_t l;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, rows, cols, ld));
    if (batch > 1) {
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                  sizeof batch));
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                  &stride, sizeof stride));
    }
    return l;
}

void describe(Plan *p, cudaDataType ab_type) {
    const Shape &s = p->shape;
    cublasOperation_t op_a = (cublasOperation_t)s.op_a, op_b = (cublasOperation_t)s.op_b;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, (cublasComputeType_t)s.compute, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    const bool ta = op_a != CUBLAS_OP_N, tb = op_b != CUBLAS_OP_N;
    p->a = layout(ab_type, ta ? s.k : s.m, ta ? s.m : s.k, s.lda, s.batch, s.stride_a);
    p->b = layout(ab_type, tb ? s.n : s.k, tb ? s.k : s.n, s.ldb, s.batch, s.stride_b);
    p->c = layout((cudaDataType)s.c_type, s.m, s.n, s.ldc, s.batch, s.stride_c);
}

// D = alpha op(A) op(B) + beta C_in (C_in and D may be one matrix).
void run(OpsCtx *c, const Plan *p, const cublasLtMatmulAlgo_t *algo, void *D, const void *C_in,
         const void *A, const void *B, float alpha, float beta) {
    void *ws = tfc_workspace(c, TFC_WS_GEMM, LT_WORKSPACE);
    CUBLAS_CHECK(cublasLtMatmul(c->gemm->lt, p->op, &alpha, A, p->a, B, p->b, &beta, C_in, p->c, D,
                                p->c, algo, ws, LT_WORKSPACE, c->stream));
}

// The fastest of the heuristic's candidates on this call's operands. They
// write C itself when the call overwrites it (beta = 0), else a scratch
// output that is freed afterwards (C holds values the call accumulates
// into, or reads). False when the heuristic offers nothing.
bool choose(OpsCtx *c, Plan *p, void *C, const void *A, const void *B, float alpha, float beta) {
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = LT_WORKSPACE;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t found[TUNE_CANDIDATES];
    int n_found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->gemm->lt, p->op, p->a, p->b, p->c, p->c,
                                                       pref, TUNE_CANDIDATES, found, &n_found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || n_found == 0) return false;
    const Shape &s = p->shape;
    size_t elem = s.c_type == CUDA_R_32F ? 4 : 2;
    size_t extent = (size_t)s.stride_c * (s.batch - 1) + (size_t)s.ldc * s.n;
    void *scratch = beta == 0.0f ? C : tfc_workspace(c, TFC_WS_GEMM_TUNE, extent * elem);
    cudaEvent_t t0, t1;
    CUDA_CHECK(cudaEventCreate(&t0));
    CUDA_CHECK(cudaEventCreate(&t1));
    float best = INFINITY;
    for (int i = 0; i < n_found; i++) {
        run(c, p, &found[i].algo, scratch, scratch, A, B, alpha, beta); // warm-up
        CUDA_CHECK(cudaEventRecord(t0, c->stream));
        for (int r = 0; r < TUNE_REPEATS; r++)
            run(c, p, &found[i].algo, scratch, scratch, A, B, alpha, beta);
        CUDA_CHECK(cudaEventRecord(t1, c->stream));
        CUDA_CHECK(cudaEventSynchronize(t1));
        float ms = 0.0f;
        CUDA_CHECK(cudaEventElapsedTime(&ms, t0, t1));
        if (ms < best) {
            best = ms;
            p->algo = found[i].algo;
        }
    }
    CUDA_CHECK(cudaEventDestroy(t0));
    CUDA_CHECK(cudaEventDestroy(t1));
    if (scratch != C) tfc_workspace_release(c, TFC_WS_GEMM_TUNE);
    return true;
}

TfcGemmPlans *plans_of(OpsCtx *c) {
    if (c->gemm) return c->gemm;
    c->gemm = (TfcGemmPlans *)calloc(1, sizeof *c->gemm);
    if (!c->gemm) tfc_fail("GEMM plans", "out of host memory", __FILE__, __LINE__);
    CUBLAS_CHECK(cublasLtCreate(&c->gemm->lt));
    return c->gemm;
}

Plan *plan_for(OpsCtx *c, const Shape &s, cudaDataType ab_type, void *C, const void *A,
               const void *B, float alpha, float beta) {
    TfcGemmPlans *g = plans_of(c);
    for (int i = 0; i < g->n; i++)
        if (g->plans[i].shape == s) return &g->plans[i];
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 32;
        Plan *grown = (Plan *)realloc(g->plans, (size_t)cap * sizeof(Plan));
        if (!grown) tfc_fail("GEMM plans", "out of host memory", __FILE__, __LINE__);
        g->plans = grown;
        g->cap = cap;
    }
    Plan *p = &g->plans[g->n];
    memset(p, 0, sizeof *p);
    p->shape = s;
    describe(p, ab_type);
    p->usable = choose(c, p, C, A, B, alpha, beta); // kept either way: asked once per shape
    g->n++;
    return p;
}

} // namespace

void cu_set_gemm_tuning(const Ops *ops, int on) {
    ops->ctx->gemm_tune = tfc_env_switch("TF_GEMM_TUNE", on != 0);
}

bool tfc_gemm_tuned(OpsCtx *c, void *C, const void *C_in, int ldc, long long stride_c,
                    cudaDataType c_type, const void *A, int lda, long long stride_a, const void *B,
                    int ldb, long long stride_b, cudaDataType ab_type, cublasOperation_t op_a,
                    cublasOperation_t op_b, int m, int n, int k, float alpha, float beta, int batch,
                    cublasComputeType_t compute) {
    if (c->gemm_tune < 0) c->gemm_tune = tfc_env_switch("TF_GEMM_TUNE", 1);
    if (!c->gemm_tune || ab_type != CUDA_R_16BF) return false;
    Shape s;
    s.m = m, s.n = n, s.k = k, s.op_a = op_a, s.op_b = op_b, s.lda = lda, s.ldb = ldb;
    s.ldc = ldc, s.batch = batch, s.c_type = c_type, s.compute = compute;
    s.beta_zero = beta == 0.0f;
    s.align = alignment_of(A) < alignment_of(B) ? alignment_of(A) : alignment_of(B);
    if (alignment_of(C) < s.align) s.align = alignment_of(C);
    s.stride_a = batch > 1 ? stride_a : 0;
    s.stride_b = batch > 1 ? stride_b : 0;
    s.stride_c = batch > 1 ? stride_c : 0;
    if (C_in && alignment_of(C_in) < s.align) s.align = alignment_of(C_in);
    // a C_in apart from C: tune as an accumulation (on scratch, leaving C alone)
    const Plan *p = plan_for(c, s, ab_type, C, A, B, alpha, C_in && C_in != C ? 1.0f : beta);
    if (!p->usable) return false;
    run(c, p, &p->algo, C, C_in ? C_in : C, A, B, alpha, beta);
    return true;
}

void tfc_gemm_tuned_free(OpsCtx *c) {
    TfcGemmPlans *g = c->gemm;
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(g->plans[i].a));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(g->plans[i].b));
        CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(g->plans[i].c));
        CUBLAS_CHECK(cublasLtMatmulDescDestroy(g->plans[i].op));
    }
    free(g->plans);
    CUBLAS_CHECK(cublasLtDestroy(g->lt));
    free(g);
    c->gemm = nullptr;
}
