/* CPU backend: memory, GEMM (OpenBLAS), and the element-wise and per-row
 * ops. Pattention lives in pattention.c, attention and RoPE in attention.c. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "op_math.h"
#include "ops_cpu.h"
#include "rng.h"

static void *cpu_alloc(const Ops *ops, size_t bytes) {
    /* 64-byte alignment for SIMD; aligned_alloc wants a multiple of it. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes) return NULL;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) memset(p, 0, rounded);
    return p;
}

static void cpu_free(const Ops *ops, void *p) { free(p); }
static void cpu_memcpy(const Ops *ops, void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
}

/* The CPU's memory is the host's: the copy is made when it is started. */
static int cpu_to_host_start(const Ops *ops, void *host_dst, const void *src, size_t bytes) {
    cpu_memcpy(ops, host_dst, src, bytes);
    return 0;
}
static void cpu_to_host_wait(const Ops *ops, int ticket) {}
static void cpu_zero(const Ops *ops, void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}
static void cpu_synchronize(const Ops *ops) {}

/* Row-parallel GEMM: each thread multiplies its own block of C's rows with a
 * single-threaded OpenBLAS call (OpenBLAS runs one thread inside an OpenMP
 * region). For the model's small, skinny products this avoids OpenBLAS's
 * per-block synchronisation between threads, which cost more than the split. */
/* c[j0:j1] = alpha a op(B)[:, j0:j1] + beta c[j0:j1] for one row a: plain
 * loops (the OpenBLAS here threads its matrix-vector products with its own
 * pool, which fights the OpenMP threads). */
static void gemv_columns(const float *a, const float *B, float *c, int N, int K, int trans_b,
                         float alpha, float beta, int j0, int j1) {
    if (trans_b) { /* B is N x K: dot products with its rows */
        for (int j = j0; j < j1; j++) {
            const float *b = B + (size_t)j * K;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int k = 0; k < K; k++) dot += a[k] * b[k];
            c[j] = alpha * dot + (beta != 0.0f ? beta * c[j] : 0.0f);
        }
        return;
    }
    /* B is K x N: a sum of its rows' slices */
    float acc[256];
    for (int c0 = j0; c0 < j1; c0 += 256) {
        int w = j1 - c0 < 256 ? j1 - c0 : 256;
        for (int j = 0; j < w; j++) acc[j] = 0.0f;
        for (int k = 0; k < K; k++) {
            const float *b = B + (size_t)k * N + c0;
            float ak = a[k];
#pragma omp simd
            for (int j = 0; j < w; j++) acc[j] += ak * b[j];
        }
        for (int j = 0; j < w; j++)
            c[c0 + j] = alpha * acc[j] + (beta != 0.0f ? beta * c[c0 + j] : 0.0f);
    }
}

/* Few rows (decoding one token per stream): GEMM would pack all of B for
 * them, so each row is a matrix-vector product, threads splitting the
 * columns. */
#define MATVEC_SPLIT_ELEMS (1L << 18) /* columns x K below this: one thread */

int ops_cpu_decode_threads(size_t largest_matrix, int threads) {
    return (long)largest_matrix < MATVEC_SPLIT_ELEMS ? 1 : threads;
}

static void gemm_few_rows(const float *A, const float *B, float *C, int M, int N, int K,
                          int trans_b, float alpha, float beta) {
    int split = !omp_in_parallel() && omp_get_max_threads() > 1 && (long)N * K >= MATVEC_SPLIT_ELEMS;
    if (!split) {
        for (int i = 0; i < M; i++)
            gemv_columns(A + (size_t)i * K, B, C + (size_t)i * N, N, K, trans_b, alpha, beta, 0, N);
        return;
    }
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int chunk = ((N + nt - 1) / nt + 15) & ~15;
        int j0 = id * chunk, j1 = j0 + chunk < N ? j0 + chunk : N;
        for (int i = 0; i < M && j0 < j1; i++)
            gemv_columns(A + (size_t)i * K, B, C + (size_t)i * N, N, K, trans_b, alpha, beta, j0,
                         j1);
    }
}

#define GEMM_FEW_ROWS 4

void cpu_gemm(const float *A, const float *B, float *C, int M, int N, int K, int trans_a,
              int trans_b, float alpha, float beta) {
    int lda = trans_a ? M : K, ldb = trans_b ? K : N;
    if (M <= GEMM_FEW_ROWS && !trans_a && K > 0) {
        gemm_few_rows(A, B, C, M, N, K, trans_b, alpha, beta);
        return;
    }
    int threads = omp_get_max_threads();
    if (threads == 1 || omp_in_parallel() || (long)M * N * K < (1L << 18)) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, N);
        return;
    }
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), id = omp_get_thread_num();
        int chunk = ((M + nt - 1) / nt + 7) & ~7;
        int m0 = id * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
        if (m0 < m1) {
            /* rows m0.. of op(A): rows of A, or columns of A when transposed */
            const float *a = trans_a ? A + m0 : A + (size_t)m0 * K;
            cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                        trans_b ? CblasTrans : CblasNoTrans, m1 - m0, N, K, alpha, a, lda, B, ldb,
                        beta, C + (size_t)m0 * N, N);
        }
    }
}

static void cpu_matmul(const Ops *ops, float *C, const float *A, const float *B, int M, int N,
                       int K, int trans_a, int trans_b, float alpha, float beta) {
    cpu_gemm(A, B, C, M, N, K, trans_a, trans_b, alpha, beta);
}

static void cpu_embedding_forward(const Ops *ops, float *out, const int *tokens, const float *wte,
                                  int N, int C) {
    if (N == 1) { /* decoding: no OpenMP team for one row (libgomp syscalls even for if(0)) */
        memcpy(out, wte + (size_t)tokens[0] * C, sizeof(float) * C);
        return;
    }
#pragma omp parallel for
    for (int i = 0; i < N; i++) memcpy(out + (size_t)i * C, wte + (size_t)tokens[i] * C, sizeof(float) * C);
}

/* Serial over rows: two rows with the same token would race. */
static void cpu_embedding_backward(const Ops *ops, float *dwte, const float *dout,
                                   const int *tokens, int N, int C) {
    if (!dwte) return;
    for (int i = 0; i < N; i++) {
        float *d = dwte + (size_t)tokens[i] * C;
        const float *g = dout + (size_t)i * C;
        for (int j = 0; j < C; j++) d[j] += g[j];
    }
}

static void layernorm_row(float *out, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int i, int C) {
    const float *xi = x + (size_t)i * C;
    float *oi = out + (size_t)i * C;
    float mu = 0.0f;
    for (int j = 0; j < C; j++) mu += xi[j];
    mu /= (float)C;
    float var = 0.0f;
    for (int j = 0; j < C; j++) {
        float d = xi[j] - mu;
        var += d * d;
    }
    float rs = 1.0f / sqrtf(var / (float)C + LAYERNORM_EPS);
    for (int j = 0; j < C; j++) {
        float n = (xi[j] - mu) * rs;
        oi[j] = w ? n * w[j] + b[j] : n;
    }
    mean[i] = mu;
    rstd[i] = rs;
}

void cpu_layernorm_forward(const Ops *ops, float *out, float *mean, float *rstd, const float *x,
                           const float *w, const float *b, int N, int C) {
    if (N == 1) { /* decoding: no OpenMP team for one row */
        layernorm_row(out, mean, rstd, x, w, b, 0, C);
        return;
    }
#pragma omp parallel for
    for (int i = 0; i < N; i++) layernorm_row(out, mean, rstd, x, w, b, i, C);
}

static void cpu_layernorm_backward(const Ops *ops, float *dx, float *dw, float *db,
                                   const float *dout, const float *x, const float *w,
                                   const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * C, *gi = dout + (size_t)i * C;
        float mu = mean[i], rs = rstd[i];
        float sum_g = 0.0f, sum_gn = 0.0f;
        for (int j = 0; j < C; j++) {
            float g = w ? gi[j] * w[j] : gi[j];
            sum_g += g;
            sum_gn += g * (xi[j] - mu) * rs;
        }
        sum_g /= (float)C;
        sum_gn /= (float)C;
        float *dxi = dx + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            float g = w ? gi[j] * w[j] : gi[j];
            float n = (xi[j] - mu) * rs;
            dxi[j] += rs * (g - sum_g - n * sum_gn);
        }
    }
    if (!dw && !db) return;
#pragma omp parallel for
    for (int j = 0; j < C; j++) {
        float sw = 0.0f, sb = 0.0f;
        for (int i = 0; i < N; i++) {
            float g = dout[(size_t)i * C + j];
            sw += g * (x[(size_t)i * C + j] - mean[i]) * rstd[i];
            sb += g;
        }
        if (dw) dw[j] += sw;
        if (db) db[j] += sb;
    }
}

static void cpu_dropout_forward(const Ops *ops, float *out, const float *x, float p, uint64_t seed,
                                size_t n) {
    float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = tf_dropout_keep(seed, i, p) ? x[i] * keep_scale : 0.0f;
}

static void cpu_dropout_add(const Ops *ops, float *out, const float *x, const float *branch,
                            float p, uint64_t seed, size_t n) {
    if (p <= 0.0f) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) out[i] = x[i] + branch[i];
        return;
    }
    float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = x[i] + (tf_dropout_keep(seed, i, p) ? branch[i] * keep_scale : 0.0f);
}

static void cpu_dropout_backward(const Ops *ops, float *dx, const float *dout, float p,
                                 uint64_t seed, size_t n) {
    cpu_dropout_forward(ops, dx, dout, p, seed, n); /* the same mask and scale */
}

static void cpu_add(const Ops *ops, float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_accumulate(const Ops *ops, float *y, const float *x, size_t n) {
    if (n <= 32768) { /* a decoding step's rows: not worth an OpenMP team */
        for (size_t i = 0; i < n; i++) y[i] += x[i];
        return;
    }
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

static void cpu_scale(const Ops *ops, float *x, float s, size_t n) {
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static float cpu_cross_entropy_forward(const Ops *ops, float *probs, const float *logits,
                                       const int *targets, int N, int V) {
    double total = 0.0;
    int counted = 0;
#pragma omp parallel for reduction(+ : total, counted)
    for (int i = 0; i < N; i++) {
        const float *li = logits + (size_t)i * V;
        float *pi = probs + (size_t)i * V;
        float mx = li[0];
        for (int j = 1; j < V; j++) mx = li[j] > mx ? li[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < V; j++) {
            pi[j] = expf(li[j] - mx);
            sum += pi[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < V; j++) pi[j] *= inv;
        if (targets && targets[i] >= 0 && targets[i] < V) {
            total += -log((double)pi[targets[i]]);
            counted++;
        }
    }
    return counted ? (float)(total / counted) : 0.0f;
}

static void cpu_cross_entropy_backward(const Ops *ops, float *dlogits, const float *probs,
                                       const int *targets, float scale, int N, int V) {
#pragma omp parallel for
    for (int i = 0; i < N; i++) {
        float *di = dlogits + (size_t)i * V;
        const float *pi = probs + (size_t)i * V;
        int t = targets[i] < V ? targets[i] : -1; /* out-of-range targets are ignored, as on CUDA */
        for (int j = 0; j < V; j++) di[j] = t >= 0 ? (pi[j] - (j == t)) * scale : 0.0f;
    }
}

static float cpu_sum_squares(const Ops *ops, const float *x, size_t n) {
    double s = 0.0;
#pragma omp parallel for reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return (float)s;
}

static void cpu_adamw(const Ops *ops, float *p, const float *g, float *m, float *v, size_t n,
                      float lr, float beta1, float beta2, float eps, float weight_decay,
                      float grad_scale, int t) {
    AdamwCorrections c = tf_adamw_corrections(beta1, beta2, t);
#pragma omp parallel for
    for (size_t i = 0; i < n; i++)
        p[i] = tf_adamw_element(p[i], g[i], &m[i], &v[i], lr, beta1, beta2, eps, weight_decay,
                                grad_scale, c);
}

static void cpu_adamw_ranges(const Ops *ops, const AdamwRange *r, int n, float beta1, float beta2,
                             float eps, float grad_scale) {
    for (int k = 0; k < n; k++)
        cpu_adamw(ops, r[k].p, r[k].g, r[k].m, r[k].v, r[k].n, r[k].lr, beta1, beta2, eps,
                  r[k].weight_decay, grad_scale, r[k].t);
}

static size_t cpu_memory_in_use(const Ops *ops) { return 0; }

static DType cpu_attn_dtype(const Ops *ops) { return DTYPE_F32; }

static void cpu_pattention_sizes(const Ops *ops, int G, int N, int n, size_t *a_floats,
                                 size_t *s_floats, size_t *da_floats) {
    ops_pattention_sizes_full(G, N, n, a_floats, s_floats, da_floats);
}

static void cpu_attention_sizes(const Ops *ops, int B, int T, int H, int hd, size_t *att_floats,
                                size_t *datt_floats) {
    ops_attention_sizes_full(B, T, H, hd, att_floats, datt_floats);
}

static int cpu_set_precision(const Ops *ops, int precision) { return MATMUL_FP32; } /* its only one */
static void cpu_cache_weights(const Ops *ops, const float *p, size_t n) {} /* fp32 products */
static void cpu_set_gemm_tuning(const Ops *ops, int on) {} /* OpenBLAS chooses its kernels */

/* Rows in parallel from 16 streams (each row's draw is its own). */
static void cpu_sample_tokens(const Ops *ops, const SampleArgs *a) {
    size_t V = (size_t)(a->V > 0 ? a->V : 1);
    float *work = tf_malloc(sizeof(float) * V * (size_t)a->B, "sampling scratch");
#pragma omp parallel for if (a->B >= 16) schedule(static)
    for (int b = 0; b < a->B; b++)
        a->tokens[b] = ops_sample_row(a->logits + (size_t)b * a->stride, a->V, a->temperature,
                                      a->top_k, a->temperature > 0.0f ? a->u[b] : 0.0,
                                      work + (size_t)b * V);
    free(work);
    if (a->pos) *a->pos = a->pos_value;
}

static const Ops CPU_OPS = {
    .kind = BACKEND_CPU,
    .name = "cpu",
    .device = "cpu (OpenBLAS + OpenMP)",
    .memory_in_use = cpu_memory_in_use,
    .set_precision = cpu_set_precision,
    .attn_dtype = cpu_attn_dtype,
    .set_gemm_tuning = cpu_set_gemm_tuning,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_memcpy,
    .to_host = cpu_memcpy,
    .to_host_start = cpu_to_host_start,
    .to_host_wait = cpu_to_host_wait,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .matmul = cpu_matmul,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .rmsnorm_forward = cpu_rmsnorm_forward,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .cache_weights = cpu_cache_weights,
    .pattention_sizes = cpu_pattention_sizes,
    .pattention_forward = cpu_pattention_forward,
    .pattention_backward = cpu_pattention_backward,
    .rope = cpu_rope,
    .attention_sizes = cpu_attention_sizes,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .attention_decode = cpu_attention_decode,
    .sample_tokens = cpu_sample_tokens,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .dropout_add = cpu_dropout_add,
    .add = cpu_add,
    .accumulate = cpu_accumulate,
    .scale = cpu_scale,
    .cross_entropy_forward = cpu_cross_entropy_forward,
    .cross_entropy_backward = cpu_cross_entropy_backward,
    .sum_squares = cpu_sum_squares,
    .adamw = cpu_adamw,
    .adamw_ranges = cpu_adamw_ranges,
    .decode_step = ops_decode_step_eager,
    .decode_step_free = ops_decode_step_free_none,
};

const Ops *ops_cpu(void) { return &CPU_OPS; }
