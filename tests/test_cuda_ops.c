/* Compares every op of the CUDA backend with the CPU backend on fresh random
 * inputs (odd sizes, forward and backward, all three Pattention modes).
 * Prints "PASS <name> (rel err X)" / "FAIL <name> ..." per check, where
 * rel err = max_i |cuda_i - cpu_i| / max_i |cpu_i|; exits 1 on any failure.
 * Without a usable GPU (or a build without CUDA) prints one SKIP line, exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "model.h"
#include "ops.h"
#include "rng.h"
#include "sampler.h"
#ifdef TF_CUDA
#include "ops_cuda.h"

/* The ops table's Pattention calls with the arguments written out in the
 * order of PattArgs, which keeps the cases below short. */
#include "patt_shims.h"
}
#endif

#ifndef TF_CUDA
int main(void) {
    printf("SKIP test_cuda_ops: built without CUDA (nvcc not found or CUDA=0)\n");
    return 0;
}
#else

#define TOL 2e-5 /* fp32 against fp32 (different summation orders) */

static const Ops *GPU, *CPU;
static Rng rng;
static int n_pass, n_fail;

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test_cuda_ops: out of host memory\n");
        exit(1);
    }
    return p;
}

/* A tensor on both backends: c on the host (CPU backend), g on the GPU.
 * half: g holds bf16 (an attention tensor under bf16, ops.h); then c holds
 * the same values, rounded to bf16, so that both backends see one input. */
typedef struct {
    float *c, *g;
    size_t n;
    int half;
} Buf;

/* fp32 <-> bf16 bits on the host, rounding to nearest even (inputs are finite
 * or NaN: NaN stays a NaN). */
static uint16_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (isnan(x)) return 0x7fc0;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bf16_value(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static float rand_val(float scale) {
    float u;
    do u = 2.0f * rng_uniform(&rng) - 1.0f;
    while (fabsf(u) < 1e-3f); /* non-zero data */
    return u * scale;
}

/* attn: the tensor is an attention tensor, in the GPU's current precision. */
static Buf buf_from_t(const float *h, size_t n, int attn) {
    int half = attn && GPU->attn_elem_bytes(GPU) == 2;
    size_t esize = half ? 2 : sizeof(float);
    Buf b = {xmalloc(n * sizeof(float)), GPU->alloc(GPU, n * esize), n, half};
    if (!b.g) {
        fprintf(stderr, "test_cuda_ops: GPU alloc of %zu elements failed\n", n);
        exit(1);
    }
    memcpy(b.c, h, n * sizeof(float));
    if (!half) {
        GPU->to_device(GPU, b.g, h, n * sizeof(float));
        return b;
    }
    uint16_t *bits = xmalloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        bits[i] = bf16_bits(h[i]);
        b.c[i] = bf16_value(bits[i]);
    }
    GPU->to_device(GPU, b.g, bits, n * 2);
    free(bits);
    return b;
}

static Buf buf_rand_t(size_t n, float scale, int attn) {
    float *h = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = rand_val(scale);
    Buf b = buf_from_t(h, n, attn);
    free(h);
    return b;
}
static Buf buf_rand(size_t n, float scale) { return buf_rand_t(n, scale, 0); }

/* An output that the op must overwrite: poisoned with NaN on the GPU so an
 * element it forgets to write fails the comparison (zeros on the CPU side). */
static Buf buf_out_t(size_t n, int attn) {
    float *h = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    Buf b = buf_from_t(h, n, attn);
    memset(b.c, 0, n * sizeof(float));
    free(h);
    return b;
}
static Buf buf_out(size_t n) { return buf_out_t(n, 0); }

/* The GPU's values as floats (from bf16 for a half buffer). */
static float *gpu_values(const Buf *b) {
    float *h = xmalloc(b->n * sizeof(float));
    if (!b->half) {
        GPU->to_host(GPU, h, b->g, b->n * sizeof(float));
        return h;
    }
    uint16_t *bits = xmalloc(b->n * 2);
    GPU->to_host(GPU, bits, b->g, b->n * 2);
    for (size_t i = 0; i < b->n; i++) h[i] = bf16_value(bits[i]);
    free(bits);
    return h;
}

static void buf_free(Buf *b) {
    free(b->c);
    GPU->free(GPU, b->g);
    b->c = b->g = NULL;
}

typedef struct {
    int *c, *g;
} IBuf;

static IBuf ibuf_from(const int *h, size_t n) {
    IBuf b = {xmalloc(n * sizeof(int)), GPU->alloc(GPU, n * sizeof(int))};
    memcpy(b.c, h, n * sizeof(int));
    GPU->to_device(GPU, b.g, h, n * sizeof(int));
    return b;
}

static void ibuf_free(IBuf *b) {
    free(b->c);
    GPU->free(GPU, b->g);
}

/* max |gpu - cpu| / max |cpu|; infinite when the GPU has a NaN/Inf the CPU does not. */
static double rel_err(const Buf *b) {
    float *h = gpu_values(b);
    double maxdiff = 0.0, maxref = 0.0;
    for (size_t i = 0; i < b->n; i++) {
        double r = b->c[i], x = h[i];
        if (!isfinite(x) || !isfinite(r)) {
            free(h);
            return INFINITY;
        }
        double d = fabs(x - r);
        if (d > maxdiff) maxdiff = d;
        if (fabs(r) > maxref) maxref = fabs(r);
    }
    free(h);
    return maxref > 0.0 ? maxdiff / maxref : maxdiff;
}

static double scalar_err(double gpu, double cpu) {
    if (!isfinite(gpu)) return INFINITY;
    double d = fabs(gpu - cpu);
    return fabs(cpu) > 0.0 ? d / fabs(cpu) : d;
}

static void check(const char *name, double err, double tol) {
    if (err <= tol) {
        printf("PASS %s (rel err %.2e)\n", name, err);
        n_pass++;
    } else {
        printf("FAIL %s (rel err %.2e > tol %.0e)\n", name, err, tol);
        n_fail++;
    }
}

static void check_flag(const char *name, int ok, const char *what) {
    if (ok) {
        printf("PASS %s\n", name);
        n_pass++;
    } else {
        printf("FAIL %s: %s\n", name, what);
        n_fail++;
    }
}

static void checkb(const char *name, const Buf *b) { check(name, rel_err(b), TOL); }

static void checkf_tol(const char *fmt, const char *tag, const Buf *b, double tol) {
    char name[192];
    snprintf(name, sizeof name, fmt, tag);
    check(name, rel_err(b), tol);
}

static void checkf(const char *fmt, const char *tag, const Buf *b) { checkf_tol(fmt, tag, b, TOL); }

/* ---------------------------------------------------------------- memory */

static void test_memory(void) {
    size_t n = 1001;
    float *g = GPU->alloc(GPU, n * sizeof(float));
    float *h = xmalloc(n * sizeof(float));
    GPU->to_host(GPU, h, g, n * sizeof(float));
    int zero = 1;
    for (size_t i = 0; i < n; i++) zero &= h[i] == 0.0f;
    check_flag("alloc_zero_filled", zero, "fresh allocation not zero");

    float *src = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) src[i] = rand_val(3.0f);
    float *g2 = GPU->alloc(GPU, n * sizeof(float));
    GPU->to_device(GPU, g, src, n * sizeof(float));
    GPU->copy(GPU, g2, g, n * sizeof(float));
    GPU->synchronize(GPU);
    GPU->to_host(GPU, h, g2, n * sizeof(float));
    check_flag("to_device_copy_to_host", memcmp(h, src, n * sizeof(float)) == 0,
               "round trip changed data");
    GPU->zero(GPU, g2 + 10, 100 * sizeof(float));
    GPU->to_host(GPU, h, g2, n * sizeof(float));
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= (i >= 10 && i < 110) ? h[i] == 0.0f : h[i] == src[i];
    check_flag("zero_range", ok, "zero wrote outside or missed its range");
    GPU->free(GPU, g);
    GPU->free(GPU, g2);
    free(h);
    free(src);

    void *huge = GPU->alloc(GPU, (size_t)1 << 50); /* 1 PiB */
    check_flag("alloc_oom_returns_null", huge == NULL, "1 PiB allocation did not return NULL");
    if (huge) GPU->free(GPU, huge);
    /* the backend still works after a failed allocation */
    float *g3 = GPU->alloc(GPU, 16);
    check_flag("alloc_after_oom", g3 != NULL, "allocation failed after an OOM");
    if (g3) GPU->free(GPU, g3);
}

/* ---------------------------------------------------------------- matmul */

static double matmul_err(int M, int N, int K, int ta, int tb, float alpha, float beta) {
    Buf A = buf_rand((size_t)M * K, 1.0f), B = buf_rand((size_t)K * N, 1.0f);
    Buf C = beta != 0.0f ? buf_rand((size_t)M * N, 1.0f) : buf_out((size_t)M * N);
    CPU->matmul(CPU, C.c, A.c, B.c, M, N, K, ta, tb, alpha, beta);
    GPU->matmul(GPU, C.g, A.g, B.g, M, N, K, ta, tb, alpha, beta);
    double e = rel_err(&C);
    buf_free(&A);
    buf_free(&B);
    buf_free(&C);
    return e;
}

static void test_matmul(void) {
    const char *names[4] = {"nn", "nt", "tn", "tt"};
    for (int tr = 0; tr < 4; tr++) {
        int ta = tr >> 1, tb = tr & 1;
        char name[64];
        snprintf(name, sizeof name, "matmul_%s", names[tr]);
        check(name, matmul_err(37, 53, 24, ta, tb, 0.7f, 0.3f), TOL);
        snprintf(name, sizeof name, "matmul_%s_beta0", names[tr]);
        check(name, matmul_err(53, 19, 37, ta, tb, 1.0f, 0.0f), TOL);
    }
}

/* ---------------------------------------------------------------- embedding */

static void test_embedding(void) {
    int N = 37, C = 24, vocab = 11; /* few ids: repeated tokens in backward */
    int tok[37];
    for (int i = 0; i < N; i++) tok[i] = (int)rng_below(&rng, vocab);
    IBuf t = ibuf_from(tok, N);
    Buf wte = buf_rand((size_t)vocab * C, 1.0f), out = buf_out((size_t)N * C);
    CPU->embedding_forward(CPU, out.c, t.c, wte.c, N, C);
    GPU->embedding_forward(GPU, out.g, t.g, wte.g, N, C);
    checkb("embedding_forward", &out);
    Buf dout = buf_rand((size_t)N * C, 1.0f);
    Buf dwte = buf_rand((size_t)vocab * C, 1.0f); /* accumulates */
    CPU->embedding_backward(CPU, dwte.c, dout.c, t.c, N, C);
    GPU->embedding_backward(GPU, dwte.g, dout.g, t.g, N, C);
    checkb("embedding_backward", &dwte);
    ibuf_free(&t);
    buf_free(&wte);
    buf_free(&out);
    buf_free(&dout);
    buf_free(&dwte);
}

/* ---------------------------------------------------------------- layernorm */

static void test_layernorm(int N, int C, int affine) {
    const char *tag = affine ? "affine" : "nonparam";
    char tagc[64];
    snprintf(tagc, sizeof tagc, "%s_C%d", tag, C);
    Buf x = buf_rand((size_t)N * C, 2.0f), out = buf_out((size_t)N * C);
    Buf mean = buf_out(N), rstd = buf_out(N);
    /* offset the rows so that the mean matters */
    for (size_t i = 0; i < x.n; i++) x.c[i] += 0.5f;
    GPU->to_device(GPU, x.g, x.c, x.n * sizeof(float));
    Buf w = buf_rand(C, 1.0f), b = buf_rand(C, 1.0f);
    CPU->layernorm_forward(CPU, out.c, mean.c, rstd.c, x.c, affine ? w.c : NULL,
                           affine ? b.c : NULL, N, C);
    GPU->layernorm_forward(GPU, out.g, mean.g, rstd.g, x.g, affine ? w.g : NULL,
                           affine ? b.g : NULL, N, C);
    checkf("layernorm_forward_%s_out", tagc, &out);
    checkf("layernorm_forward_%s_mean", tagc, &mean);
    checkf("layernorm_forward_%s_rstd", tagc, &rstd);
    Buf dout = buf_rand((size_t)N * C, 1.0f), dx = buf_rand((size_t)N * C, 1.0f);
    Buf dw = buf_rand(C, 1.0f), db = buf_rand(C, 1.0f);
    CPU->layernorm_backward(CPU, dx.c, affine ? dw.c : NULL, affine ? db.c : NULL, dout.c, x.c,
                            affine ? w.c : NULL, mean.c, rstd.c, N, C);
    GPU->layernorm_backward(GPU, dx.g, affine ? dw.g : NULL, affine ? db.g : NULL, dout.g, x.g,
                            affine ? w.g : NULL, mean.g, rstd.g, N, C);
    checkf("layernorm_backward_%s_dx", tagc, &dx);
    if (affine) {
        checkf("layernorm_backward_%s_dw", tagc, &dw);
        checkf("layernorm_backward_%s_db", tagc, &db);
    }
    Buf *all[] = {&x, &out, &mean, &rstd, &w, &b, &dout, &dx, &dw, &db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}

/* ---------------------------------------------------------------- pattention */

/* Forward and backward against the CPU at matmul precision `prec`. Under bf16
 * the GEMM operands and the scores are rounded to bf16 (8 significant bits),
 * so outputs agree to ~1e-2, and A, S and the dA scratch hold the backend's
 * own format (S is not even written: backward recomputes it): only Y, dX, dK
 * and dV are compared then. */
/* A Pattention input without a LayerNorm. */
static PattInput plain(const float *x) { return (PattInput){.x = x}; }

/* The input of a Pattention or linear on both backends (ops.h PattInput):
 * X itself (norm NORM_NONE; an attention tensor when x_attn) or normalized
 * by the op (NORM_LAYER, NORM_RMS with a random weight w), which writes xn
 * (an attention tensor's type) and the row statistics. */
typedef struct {
    Buf x, xn, mean, rstd, w;
    PattInput c, g;
    int norm;
} TestInput;

static TestInput input_new(int N, int d_in, int norm, int x_attn) {
    TestInput t = {.norm = norm};
    t.x = buf_rand_t((size_t)N * d_in, 1.0f, x_attn);
    for (size_t i = 0; norm == NORM_LAYER && i < t.x.n; i++) t.x.c[i] += 0.5f; /* the mean matters */
    if (norm == NORM_LAYER) GPU->to_device(GPU, t.x.g, t.x.c, t.x.n * sizeof(float));
    t.xn = buf_out_t((size_t)N * d_in, 1);
    t.mean = buf_out(N);
    t.rstd = buf_out(N);
    t.w = buf_rand(d_in, 1.0f);
    t.c = (PattInput){.x = t.x.c, .attn = x_attn};
    t.g = (PattInput){.x = t.x.g, .attn = x_attn};
    if (norm != NORM_NONE) {
        const int rms = norm == NORM_RMS;
        t.c = (PattInput){.x = t.x.c, .xn = t.xn.c, .mean = rms ? NULL : t.mean.c,
                          .rstd = t.rstd.c, .norm = norm, .w = rms ? t.w.c : NULL};
        t.g = (PattInput){.x = t.x.g, .xn = t.xn.g, .mean = rms ? NULL : t.mean.g,
                          .rstd = t.rstd.g, .norm = norm, .w = rms ? t.w.g : NULL};
    }
    return t;
}

static const char *norm_tag(int norm) {
    return norm == NORM_LAYER ? "_ln" : norm == NORM_RMS ? "_rms" : "";
}

/* The statistics a normalizing forward wrote (rstd; mean for LayerNorm). */
static void input_check_stats(const TestInput *t, const char *op, const char *tag) {
    char fmt[96];
    if (t->norm == NORM_LAYER) {
        snprintf(fmt, sizeof fmt, "%s_forward_%%s_ln_mean", op);
        checkf(fmt, tag, &t->mean);
    }
    if (t->norm != NORM_NONE) {
        snprintf(fmt, sizeof fmt, "%s_forward_%%s%s_rstd", op, norm_tag(t->norm));
        checkf(fmt, tag, &t->rstd);
    }
}

static void input_free(TestInput *t) {
    Buf *all[] = {&t->x, &t->xn, &t->mean, &t->rstd, &t->w};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}

/* Whether both backends have an op (a backend may not have it yet). */
static int have_op(const char *name, int cpu_has, int gpu_has) {
    if (cpu_has && gpu_has) return 1;
    printf("SKIP %s: not in the %s backend\n", name, cpu_has ? "cuda" : "cpu");
    return 0;
}

/* A group of G Pattentions sharing X (G = 1: one). The saved scores A, S
 * and the dA scratch are compared only for G = 1 in fp32 and not under
 * SwiGLU: their layout is each backend's own (ops.h). norm: X is normalized
 * by the op (NormKind); x_attn: X (and so dX) is an attention tensor,
 * y_attn: Y (and so dY) is (ops.h; bf16 under bf16). An attention-tensor dX
 * is only ever overwritten. Under ACT_SWIGLU the keys have 2n rows (gate,
 * up) and the scores 2n columns; the activations ignore tau. */
static void test_pattention_in(int prec, int mode, int G, int N, int d_in, int n, int d_out,
                               int norm, int x_attn, int y_attn) {
    static const char *modes[5] = {"l2_norm_gelu", "gelu_l2_norm", "softmax", "act_gelu",
                                   "act_swiglu"};
    const int bf16 = prec == MATMUL_BF16, raw = !bf16 && G == 1 && mode != ACT_SWIGLU;
    const double tol = bf16 ? 2e-2 : TOL;
    const size_t g = (size_t)G, kr = (size_t)n * (mode == ACT_SWIGLU ? 2 : 1); /* key rows */
    char tag[112];
    snprintf(tag, sizeof tag, "%s_G%d_N%d_n%d%s%s%s%s", modes[mode], G, N, n, bf16 ? "_bf16" : "",
             norm_tag(norm), x_attn ? "_xattn" : "", y_attn ? "_yattn" : "");
    float tau[3] = {sqrtf((float)n), 0.7f * sqrtf((float)n), 1.3f * sqrtf((float)n)};
    GPU->set_precision(GPU, prec); /* before the buffers: it sets their types */
    TestInput in = input_new(N, d_in, norm, x_attn);
    Buf K = buf_rand(g * kr * d_in, 0.5f), V = buf_rand(g * n * d_out, 0.5f);
    /* sized as pattention_sizes asks with n = the score columns (ops.h) */
    Buf Y = buf_out_t(g * N * d_out, y_attn), A = buf_out(g * N * kr), S = buf_out(g * N * kr);
    Buf dA = buf_out(g * N * kr); /* scratch, forward and backward */
    patt_fwd(CPU, Y.c, A.c, S.c, dA.c, in.c, K.c, V.c, tau, G, mode, N, d_in, n, d_out,
                            y_attn, NULL);
    patt_fwd(GPU, Y.g, A.g, S.g, dA.g, in.g, K.g, V.g, tau, G, mode, N, d_in, n, d_out,
                            y_attn, NULL);
    input_check_stats(&in, "pattention", tag);
    if (raw) {
        checkf("pattention_forward_%s_A", tag, &A);
        checkf("pattention_forward_%s_S", tag, &S);
    }
    checkf_tol("pattention_forward_%s_Y", tag, &Y, tol);
    Buf dY = buf_rand_t(g * N * d_out, 1.0f, y_attn);
    Buf dX = buf_rand_t((size_t)N * d_in, 1.0f, x_attn), dK = buf_rand(g * kr * d_in, 1.0f);
    Buf dV = buf_rand(g * n * d_out, 1.0f);
    if (!x_attn) {
        patt_bwd(CPU, dX.c, dK.c, dV.c, dA.c, dY.c, in.c, K.c, V.c, A.c, S.c, tau, G,
                                 mode, N, d_in, n, d_out, 1, y_attn);
        patt_bwd(GPU, dX.g, dK.g, dV.g, dA.g, dY.g, in.g, K.g, V.g, A.g, S.g, tau, G,
                                 mode, N, d_in, n, d_out, 1, y_attn);
        if (raw) checkf("pattention_backward_%s_dA", tag, &dA);
        checkf_tol("pattention_backward_%s_dX", tag, &dX, tol);
        checkf_tol("pattention_backward_%s_dK", tag, &dK, tol);
        checkf_tol("pattention_backward_%s_dV", tag, &dV, tol);
        /* accumulate_dx = 0 overwrites dX (whatever it held); backward
         * consumed the saved state (ops.h), so forward again first */
        patt_fwd(CPU, Y.c, A.c, S.c, dA.c, in.c, K.c, V.c, tau, G, mode, N, d_in, n,
                                d_out, y_attn, NULL);
        patt_fwd(GPU, Y.g, A.g, S.g, dA.g, in.g, K.g, V.g, tau, G, mode, N, d_in, n,
                                d_out, y_attn, NULL);
    }
    patt_bwd(CPU, dX.c, dK.c, dV.c, dA.c, dY.c, in.c, K.c, V.c, A.c, S.c, tau, G, mode,
                             N, d_in, n, d_out, 0, y_attn);
    patt_bwd(GPU, dX.g, dK.g, dV.g, dA.g, dY.g, in.g, K.g, V.g, A.g, S.g, tau, G, mode,
                             N, d_in, n, d_out, 0, y_attn);
    checkf_tol("pattention_backward_%s_dX_overwrite", tag, &dX, tol);
    if (x_attn) {
        checkf_tol("pattention_backward_%s_dK", tag, &dK, tol);
        checkf_tol("pattention_backward_%s_dV", tag, &dV, tol);
    }
    GPU->set_precision(GPU, MATMUL_FP32);
    input_free(&in);
    Buf *all[] = {&K, &V, &Y, &A, &S, &dY, &dA, &dX, &dK, &dV};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}

static void test_pattention(int prec, int mode, int G, int N, int d_in, int n, int d_out) {
    test_pattention_in(prec, mode, G, N, d_in, n, d_out, 0, 0, 0);
}
/* The input normalized by the op (PattInput with statistics), as in a block:
 * the statistics and everything downstream match the CPU. */
static void test_pattention_ln(int prec, int G, int N, int d, int n, int d_out) {
    test_pattention_in(prec, PNORM_L2_GELU, G, N, d, n, d_out, 1, 0, 0);
}
/* As in a block: q, k, v (a LayerNorm input, attention-tensor outputs) and
 * o (an attention-tensor input). */
static void test_pattention_attn(int prec, int G, int N, int d, int n) {
    if (G == 3) test_pattention_in(prec, PNORM_L2_GELU, G, N, d, n, d, 1, 0, 1);
    else test_pattention_in(prec, PNORM_L2_GELU, G, N, d, n, d, 0, 1, 0);
}

/* Under bf16, AdamW leaves a bf16 mirror of the parameters it updated that the
 * Pattentions read K and V from; two adjacent AdamW calls (decayed and not,
 * as the model makes them) extend one mirror. It must match the fp32
 * parameters and be dropped when a memory op writes them. */
static void test_bf16_mirror(void) {
    const int N = 48, d = 64, n = 80;
    const size_t kn = (size_t)n * d, total = 2 * kn + 10;
    const double tol = 2e-2;
    float tau = sqrtf((float)n);
    GPU->set_precision(GPU, MATMUL_BF16);
    Buf P = buf_rand(total, 0.5f), G = buf_rand(total, 1.0f), M = buf_rand(total, 0.1f);
    Buf Vs = buf_rand(total, 0.1f);
    for (size_t i = 0; i < total; i++) Vs.c[i] = fabsf(Vs.c[i]);
    GPU->to_device(GPU, Vs.g, Vs.c, total * sizeof(float));
    Buf X = buf_rand((size_t)N * d, 1.0f), Y = buf_out((size_t)N * d);
    Buf A = buf_out((size_t)N * n), S = buf_out((size_t)N * n); /* S: also the scratch */
    char name[96];
    for (int step = 1; step <= 3; step++) {
        size_t split = kn + 7;              /* two adjacent calls, as model_update makes */
        for (int half = 0; half < 2; half++) {
            size_t off = half ? split : 0, cnt = half ? total - split : split;
            CPU->adamw(CPU, P.c + off, G.c + off, M.c + off, Vs.c + off, cnt, 1e-2f, 0.9f, 0.95f,
                       1e-8f, half ? 0.0f : 0.1f, 1.0f, step);
            GPU->adamw(GPU, P.g + off, G.g + off, M.g + off, Vs.g + off, cnt, 1e-2f, 0.9f, 0.95f,
                       1e-8f, half ? 0.0f : 0.1f, 1.0f, step);
        }
        patt_fwd(CPU, Y.c, A.c, S.c, S.c, plain(X.c), P.c, P.c + kn, &tau, 1, 0, N, d, n,
                                d, 0, NULL);
        patt_fwd(GPU, Y.g, A.g, S.g, S.g, plain(X.g), P.g, P.g + kn, &tau, 1, 0, N, d, n,
                                d, 0, NULL);
        snprintf(name, sizeof name, "bf16_mirror_step%d (tol 2e-2)", step);
        check(name, rel_err(&Y), tol);
    }
    for (size_t i = 0; i < total; i++) P.c[i] = rand_val(0.5f); /* new weights, uploaded */
    GPU->to_device(GPU, P.g, P.c, total * sizeof(float));
    patt_fwd(CPU, Y.c, A.c, S.c, S.c, plain(X.c), P.c, P.c + kn, &tau, 1, 0, N, d, n, d,
                            0, NULL);
    patt_fwd(GPU, Y.g, A.g, S.g, S.g, plain(X.g), P.g, P.g + kn, &tau, 1, 0, N, d, n, d,
                            0, NULL);
    check("bf16_mirror_dropped_after_upload (tol 2e-2)", rel_err(&Y), tol);
    GPU->set_precision(GPU, MATMUL_FP32);
    Buf *all[] = {&P, &G, &M, &Vs, &X, &Y, &A, &S};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}


/* Y = residual + the Pattention's output (ops.h), as the model's residual
 * step without dropout: Y must not be read (NaN-poisoned) and residual
 * must stay as it was. mode: a score normalization or an activation (the
 * baselines' MLP, whose keys and scores are 2n wide under SwiGLU). */
static void test_pattention_residual_mode(int prec, int mode, int N, int d, int n) {
    const double tol = prec == MATMUL_BF16 ? 2e-2 : TOL;
    const size_t kr = (size_t)n * (mode == ACT_SWIGLU ? 2 : 1);
    char tag[64];
    snprintf(tag, sizeof tag, "%sN%d_n%d%s",
             mode == ACT_GELU ? "act_gelu_" : mode == ACT_SWIGLU ? "act_swiglu_" : "", N, n,
             prec == MATMUL_BF16 ? "_bf16" : "");
    float tau = sqrtf((float)n);
    GPU->set_precision(GPU, prec);
    Buf X = buf_rand((size_t)N * d, 1.0f), K = buf_rand(kr * d, 0.5f);
    Buf V = buf_rand((size_t)n * d, 0.5f), R = buf_rand((size_t)N * d, 2.0f);
    Buf Y = buf_out((size_t)N * d), A = buf_out(N * kr), S = buf_out(N * kr);
    Buf dA = buf_out(N * kr);
    patt_fwd(CPU, Y.c, A.c, S.c, dA.c, plain(X.c), K.c, V.c, &tau, 1, mode, N, d, n, d, 0, R.c);
    patt_fwd(GPU, Y.g, A.g, S.g, dA.g, plain(X.g), K.g, V.g, &tau, 1, mode, N, d, n, d, 0, R.g);
    GPU->set_precision(GPU, MATMUL_FP32);
    checkf_tol("pattention_forward_residual_%s_Y", tag, &Y, tol);
    checkf("pattention_forward_residual_%s_residual_unchanged", tag, &R);
    Buf *all[] = {&X, &K, &V, &R, &Y, &A, &S, &dA};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}
static void test_pattention_residual(int prec, int N, int d, int n) {
    test_pattention_residual_mode(prec, PNORM_L2_GELU, N, d, n);
}

/* ---------------------------------------------------------------- linear */

static void lin_fwd(const Ops *o, float *Y, PattInput X, const float *W, int G, int N, int d_in,
                    int d_out, int y_attn, const float *residual) {
    LinearArgs a = {.X = X, .W = W, .G = G, .N = N, .d_in = d_in, .d_out = d_out,
                    .y_attn = y_attn, .Y = Y, .residual = residual};
    o->linear_forward(o, &a);
}
static void lin_bwd(const Ops *o, float *dX, float *dW, const float *dY, PattInput X,
                    const float *W, int G, int N, int d_in, int d_out, int y_attn,
                    int accumulate_dx) {
    LinearArgs a = {.X = X, .W = W, .G = G, .N = N, .d_in = d_in, .d_out = d_out,
                    .y_attn = y_attn, .dX = dX, .dW = dW, .dY = dY,
                    .accumulate_dx = accumulate_dx};
    o->linear_backward(o, &a);
}

/* A linear group of G members sharing X (q, k, v: G = 3, a normalized
 * input, attention-tensor outputs; o: an attention-tensor input; residual:
 * Y = residual + X W^T, G = 1). Forward, then backward with dX accumulated
 * (not for an attention-tensor dX) and overwritten; dW accumulates. */
static void test_linear(int prec, int G, int N, int d_in, int d_out, int norm, int x_attn,
                        int y_attn, int residual) {
    const int bf16 = prec == MATMUL_BF16;
    const double tol = bf16 ? 2e-2 : TOL;
    const size_t g = (size_t)G;
    char tag[112];
    snprintf(tag, sizeof tag, "G%d_N%d_%dx%d%s%s%s%s%s", G, N, d_out, d_in, bf16 ? "_bf16" : "",
             norm_tag(norm), x_attn ? "_xattn" : "", y_attn ? "_yattn" : "",
             residual ? "_residual" : "");
    char name[160];
    snprintf(name, sizeof name, "linear_%s", tag);
    if (!have_op(name, CPU->linear_forward != NULL, GPU->linear_forward != NULL)) return;
    GPU->set_precision(GPU, prec);
    TestInput in = input_new(N, d_in, norm, x_attn);
    Buf W = buf_rand(g * d_out * d_in, 0.5f), Y = buf_out_t(g * N * d_out, y_attn);
    Buf R = buf_rand((size_t)N * d_out, 2.0f);
    const float *rc = residual ? R.c : NULL, *rg = residual ? R.g : NULL;
    lin_fwd(CPU, Y.c, in.c, W.c, G, N, d_in, d_out, y_attn, rc);
    lin_fwd(GPU, Y.g, in.g, W.g, G, N, d_in, d_out, y_attn, rg);
    input_check_stats(&in, "linear", tag);
    checkf_tol("linear_forward_%s_Y", tag, &Y, tol);
    if (residual) checkf("linear_forward_%s_residual_unchanged", tag, &R);
    Buf dY = buf_rand_t(g * N * d_out, 1.0f, y_attn), dW = buf_rand(g * d_out * d_in, 1.0f);
    Buf dX = buf_rand_t((size_t)N * d_in, 1.0f, x_attn);
    if (!x_attn) {
        lin_bwd(CPU, dX.c, dW.c, dY.c, in.c, W.c, G, N, d_in, d_out, y_attn, 1);
        lin_bwd(GPU, dX.g, dW.g, dY.g, in.g, W.g, G, N, d_in, d_out, y_attn, 1);
        checkf_tol("linear_backward_%s_dX", tag, &dX, tol);
        checkf_tol("linear_backward_%s_dW", tag, &dW, tol);
    }
    lin_bwd(CPU, dX.c, dW.c, dY.c, in.c, W.c, G, N, d_in, d_out, y_attn, 0);
    lin_bwd(GPU, dX.g, dW.g, dY.g, in.g, W.g, G, N, d_in, d_out, y_attn, 0);
    checkf_tol("linear_backward_%s_dX_overwrite", tag, &dX, tol);
    checkf_tol("linear_backward_%s_dW_accumulated", tag, &dW, tol);
    GPU->set_precision(GPU, MATMUL_FP32);
    input_free(&in);
    Buf *all[] = {&W, &Y, &R, &dY, &dW, &dX};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}

/* ---------------------------------------------------------------- rmsnorm */

/* The final norm's op (fp32 in and out), with and without a weight;
 * backward accumulates into dx and dw. */
static void test_rmsnorm(int N, int C, int weighted) {
    char tag[64];
    snprintf(tag, sizeof tag, "%s_C%d", weighted ? "weighted" : "unit", C);
    char name[96];
    snprintf(name, sizeof name, "rmsnorm_%s", tag);
    if (!have_op(name, CPU->rmsnorm_forward != NULL, GPU->rmsnorm_forward != NULL)) return;
    Buf x = buf_rand((size_t)N * C, 2.0f), out = buf_out((size_t)N * C), rstd = buf_out(N);
    Buf w = buf_rand(C, 1.0f);
    const float *wc = weighted ? w.c : NULL, *wg = weighted ? w.g : NULL;
    CPU->rmsnorm_forward(CPU, out.c, rstd.c, x.c, wc, N, C);
    GPU->rmsnorm_forward(GPU, out.g, rstd.g, x.g, wg, N, C);
    checkf("rmsnorm_forward_%s_out", tag, &out);
    checkf("rmsnorm_forward_%s_rstd", tag, &rstd);
    Buf dout = buf_rand((size_t)N * C, 1.0f), dx = buf_rand((size_t)N * C, 1.0f);
    Buf dw = buf_rand(C, 1.0f);
    CPU->rmsnorm_backward(CPU, dx.c, weighted ? dw.c : NULL, dout.c, x.c, wc, rstd.c, N, C);
    GPU->rmsnorm_backward(GPU, dx.g, weighted ? dw.g : NULL, dout.g, x.g, wg, rstd.g, N, C);
    checkf("rmsnorm_backward_%s_dx", tag, &dx);
    if (weighted) checkf("rmsnorm_backward_%s_dw", tag, &dw);
    Buf *all[] = {&x, &out, &rstd, &w, &dout, &dx, &dw};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}

/* The ops of the baseline archs (ops.h): RMSNorm, the Pattention path with
 * an activation (the baselines' MLP), the fused RMS input normalization and
 * the linear projection, at the matmul precisions. The activation modes
 * and RMS inputs have no table entry of their own to look for: they are
 * skipped with the rest while the CPU backend lacks the new entries. */
static void test_baseline_ops(void) {
    test_rmsnorm(37, 53, 1);
    test_rmsnorm(37, 53, 0);
    test_rmsnorm(37, 384, 1); /* C = 128 V: the vector kernels */
    test_rmsnorm(9, 768, 0);
    test_rmsnorm(5, 800, 1);
    if (!have_op("pattention_act_and_rms_input", CPU->linear_forward && CPU->rmsnorm_forward, 1))
        return;
    for (int mode = ACT_GELU; mode <= ACT_SWIGLU; mode++) {
        test_pattention_in(MATMUL_FP32, mode, 1, 37, 24, 53, 19, NORM_NONE, 0, 0); /* odd n: one unit per thread */
        test_pattention_in(MATMUL_FP32, mode, 1, 37, 24, 64, 19, NORM_NONE, 0, 0); /* vectors */
        test_pattention_in(MATMUL_FP32, mode, 3, 37, 24, 56, 24, NORM_NONE, 0, 0); /* a group */
        test_pattention_in(MATMUL_FP32, mode, 1, 37, 128, 96, 128, NORM_LAYER, 0, 0);
        test_pattention_in(MATMUL_FP32, mode, 1, 37, 128, 96, 128, NORM_RMS, 0, 0);
        test_pattention_in(MATMUL_BF16, mode, 1, 300, 96, 200, 96, NORM_NONE, 0, 0);
        test_pattention_in(MATMUL_BF16, mode, 1, 64, 128, 512, 128, NORM_RMS, 0, 0);
        test_pattention_in(MATMUL_BF16, mode, 1, 50, 32, 53, 24, NORM_LAYER, 0, 0); /* odd n */
        test_pattention_in(MATMUL_BF16, mode, 3, 64, 32, 72, 32, NORM_NONE, 0, 0);
        test_pattention_residual_mode(MATMUL_FP32, mode, 37, 24, 56);
        test_pattention_residual_mode(MATMUL_BF16, mode, 300, 96, 384);
    }
    /* the few-rows (decoding) path of every mode: one row or a few, groups,
     * each input kind, value rows in one split or several (n > 32), a residual */
    for (int mode = PNORM_L2_GELU; mode <= ACT_SWIGLU; mode++) {
        test_pattention_in(MATMUL_FP32, mode, 1, 1, 128, 96, 128, NORM_LAYER, 0, 0);
        test_pattention_in(MATMUL_FP32, mode, 1, 3, 64, 24, 132, NORM_RMS, 0, 0);
        test_pattention_in(MATMUL_FP32, mode, 3, 1, 64, 53, 64, NORM_LAYER, 0, 1);
        test_pattention_in(MATMUL_FP32, mode, 1, 4, 96, 150, 96, NORM_NONE, 1, 0);
        test_pattention_residual_mode(MATMUL_FP32, mode, 1, 64, 100);
        test_pattention_residual_mode(MATMUL_FP32, mode, 2, 256, 20);
        /* past 4 rows, the GEMMs on the same shapes: 64 streams, 37 rows, 300 rows */
        test_pattention_in(MATMUL_FP32, mode, 3, 64, 128, 72, 128, NORM_LAYER, 0, 1);
        test_pattention_in(MATMUL_FP32, mode, 1, 37, 96, 130, 64, NORM_RMS, 0, 0);
        test_pattention_residual_mode(MATMUL_FP32, mode, 64, 128, 200);
        test_pattention_in(MATMUL_FP32, mode, 1, 300, 128, 96, 128, NORM_LAYER, 0, 0);
    }
    /* the fused RMS input of the Pattention modes too */
    test_pattention_in(MATMUL_FP32, PNORM_L2_GELU, 3, 37, 53, 54, 53, NORM_RMS, 0, 0);
    test_pattention_in(MATMUL_BF16, PNORM_L2_GELU, 3, 64, 128, 96, 128, NORM_RMS, 0, 1);
    for (int p = 0; p < 2; p++) {
        const int prec = p ? MATMUL_BF16 : MATMUL_FP32;
        test_linear(prec, 1, 37, 24, 19, NORM_NONE, 0, 0, 0);
        test_linear(prec, 3, 37, 128, 128, NORM_LAYER, 0, 1, 0); /* q, k, v */
        test_linear(prec, 3, 64, 128, 128, NORM_RMS, 0, 1, 0);
        test_linear(prec, 3, 37, 53, 53, NORM_RMS, 0, 0, 0); /* C not a multiple of 128 */
        test_linear(prec, 1, 64, 128, 128, NORM_NONE, 1, 0, 1); /* o: attention in, residual */
        test_linear(prec, 1, 37, 96, 96, NORM_NONE, 0, 0, 1);
        test_linear(prec, 2, 300, 96, 384, NORM_LAYER, 0, 0, 0);
    }
}

/* ---------------------------------------------------------------- rope */

/* Under bf16 x is bf16 (an attention tensor): the CPU rotates the same
 * rounded values, and the GPU's results are rounded again (tol 1e-2). */
static void test_rope_prec(int prec, int B, int T, int H, int hd, int rot) {
    char tag[64];
    const double tol = prec == MATMUL_BF16 ? 1e-2 : TOL;
    snprintf(tag, sizeof tag, "T%d_rot%d%s", T, rot, prec == MATMUL_BF16 ? "_bf16" : "");
    size_t n = (size_t)B * T * H * hd;
    GPU->set_precision(GPU, prec);
    Buf x = buf_rand_t(n, 1.0f, 1);
    float *orig = xmalloc(n * sizeof(float));
    memcpy(orig, x.c, n * sizeof(float));
    CPU->rope(CPU, x.c, B, T, H, hd, rot, 0);
    GPU->rope(GPU, x.g, B, T, H, hd, rot, 0);
    checkf_tol("rope_forward_%s", tag, &x, tol);
    CPU->rope(CPU, x.c, B, T, H, hd, rot, 1);
    GPU->rope(GPU, x.g, B, T, H, hd, rot, 1);
    checkf_tol("rope_inverse_%s", tag, &x, tol);
    memcpy(x.c, orig, n * sizeof(float)); /* inverse(forward(x)) == x */
    checkf_tol("rope_roundtrip_%s", tag, &x, tol);
    GPU->set_precision(GPU, MATMUL_FP32);
    free(orig);
    buf_free(&x);
}
static void test_rope(int B, int T, int H, int hd, int rot) {
    test_rope_prec(MATMUL_FP32, B, T, H, hd, rot);
}

/* ---------------------------------------------------------------- decoding */

/* attention_decode on T new positions at pos0 over a cache of T_max rows
 * (random history below pos0), attention tensors in the GPU's precision:
 * q and k rotated in place, k and v appended, the attention output. T = 1
 * is the one-kernel path; T > 1 the chunk path. */
static void test_decode_prec(int prec, int B, int T, int pos0, int T_max, int H, int hd, int rot) {
    char tag[96];
    const double tol = prec == MATMUL_BF16 ? 2e-2 : TOL;
    snprintf(tag, sizeof tag, "B%d_T%d_pos%d_H%d_hd%d_rot%d%s", B, T, pos0, H, hd, rot,
             prec == MATMUL_BF16 ? "_bf16" : "");
    int d = H * hd;
    GPU->set_precision(GPU, prec);
    Buf q = buf_rand_t((size_t)B * T * d, 1.0f, 1), k = buf_rand_t((size_t)B * T * d, 1.0f, 1);
    Buf v = buf_rand_t((size_t)B * T * d, 1.0f, 1);
    Buf kc = buf_rand_t((size_t)B * T_max * d, 1.0f, 1), vc = buf_rand_t((size_t)B * T_max * d, 1.0f, 1);
    Buf out = buf_out_t((size_t)B * T * d, 1);
    int *pos_g = GPU->alloc(GPU, sizeof(int)); /* the op reads pos0 from backend memory */
    GPU->to_device(GPU, pos_g, &pos0, sizeof(int));
    DecodeAttnArgs ac = {.out = out.c, .q = q.c, .k = k.c, .v = v.c, .k_cache = kc.c,
                         .v_cache = vc.c, .pos = &pos0, .B = B, .T = T, .T_max = T_max, .H = H,
                         .hd = hd, .rot = rot};
    DecodeAttnArgs ag = {.out = out.g, .q = q.g, .k = k.g, .v = v.g, .k_cache = kc.g,
                         .v_cache = vc.g, .pos = pos_g, .B = B, .T = T, .T_max = T_max, .H = H,
                         .hd = hd, .rot = rot};
    CPU->attention_decode(CPU, &ac);
    GPU->attention_decode(GPU, &ag);
    checkf_tol("attention_decode_q_rotated_%s", tag, &q, tol);
    checkf_tol("attention_decode_k_rotated_%s", tag, &k, tol);
    checkf_tol("attention_decode_k_cache_%s", tag, &kc, tol);
    checkf_tol("attention_decode_v_cache_%s", tag, &vc, tol);
    checkf_tol("attention_decode_out_%s", tag, &out, tol);
    GPU->free(GPU, pos_g);
    GPU->set_precision(GPU, MATMUL_FP32);
    Buf *all[] = {&q, &k, &v, &kc, &vc, &out};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}

/* A single-token attention_decode recorded once, then replayed at other
 * positions with new q, k, v each time: the replays read the position and
 * the inputs anew, as the CPU computes them op by op. A stale recording (a
 * buffer it reads moved) refuses to run. */
static void test_decode_recorded(void) {
    const int B = 2, H = 4, hd = 32, d = H * hd, T_max = 48, rot = 8;
    GPU->set_precision(GPU, MATMUL_FP32);
    Buf q = buf_rand((size_t)B * d, 1.0f), k = buf_rand((size_t)B * d, 1.0f);
    Buf v = buf_rand((size_t)B * d, 1.0f), out = buf_out((size_t)B * d);
    Buf kc = buf_rand((size_t)B * T_max * d, 1.0f), vc = buf_rand((size_t)B * T_max * d, 1.0f);
    int *pos_g = GPU->alloc(GPU, sizeof(int)), pos = 0;
    GPU->to_device(GPU, pos_g, &pos, sizeof(int));
    DecodeAttnArgs ag = {.out = out.g, .q = q.g, .k = k.g, .v = v.g, .k_cache = kc.g,
                         .v_cache = vc.g, .pos = pos_g, .B = B, .T = 1, .T_max = T_max, .H = H,
                         .hd = hd, .rot = rot};
    DecodeAttnArgs ac = {.out = out.c, .q = q.c, .k = k.c, .v = v.c, .k_cache = kc.c,
                         .v_cache = vc.c, .pos = &pos, .B = B, .T = 1, .T_max = T_max, .H = H,
                         .hd = hd, .rot = rot};
    GPU->attention_decode(GPU, &ag); /* once op by op (the RoPE table), as the model does */
    CPU->attention_decode(CPU, &ac);
    if (GPU->record_begin(GPU) != 0) {
        check_flag("decode_record_begin", 0, "recording refused");
        return;
    }
    GPU->attention_decode(GPU, &ag);
    void *step = GPU->record_end(GPU);
    check_flag("decode_recorded_step_exists", step != NULL, "record_end returned NULL");
    if (!step) return;
    const int at[] = {7, 8, 30, T_max - 1};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        pos = at[i];
        Buf *inputs[] = {&q, &k, &v};
        for (int j = 0; j < 3; j++) {
            for (size_t e = 0; e < inputs[j]->n; e++) inputs[j]->c[e] = rand_val(1.0f);
            GPU->to_device(GPU, inputs[j]->g, inputs[j]->c, inputs[j]->n * sizeof(float));
        }
        GPU->to_device(GPU, pos_g, &pos, sizeof(int));
        check_flag("decode_replay_runs", GPU->replay(GPU, step) == 0, "replay refused");
        CPU->attention_decode(CPU, &ac);
        char tag[32];
        snprintf(tag, sizeof tag, "pos%d", pos);
        checkf("decode_replay_out_%s", tag, &out);
        checkf("decode_replay_q_%s", tag, &q);
        checkf("decode_replay_kcache_%s", tag, &kc);
        checkf("decode_replay_vcache_%s", tag, &vc);
    }
    /* a longer rotation moves the RoPE table the step reads: it must refuse */
    const int long_T = 1 << 14;
    float *x = GPU->alloc(GPU, (size_t)long_T * hd * sizeof(float));
    GPU->rope(GPU, x, 1, long_T, 1, hd, rot, 0);
    check_flag("decode_replay_refuses_when_stale", GPU->replay(GPU, step) != 0,
               "replayed with a moved RoPE table");
    GPU->free(GPU, x);
    GPU->record_free(GPU, step);
    GPU->free(GPU, pos_g);
    Buf *all[] = {&q, &k, &v, &kc, &vc, &out};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
}

/* The sampler on the GPU with its recorded single-token step against the
 * same sampler op by op (--no-graph): the same draws, so the same tokens,
 * and logits that agree at every step, through two window restarts (a
 * prefill between replays, which may move workspaces the recording reads). */
static void test_sampler_recorded(int arch, int prec) {
    char err[TF_ERRLEN], tag[64];
    snprintf(tag, sizeof tag, "%s_%s", arch_name(arch), matmul_precision_name(prec));
    GPU->set_precision(GPU, prec);
    ModelConfig mc = preset_find("tiny")->model;
    mc.arch = arch;
    mc.n_layer = 2, mc.d_model = 64, mc.n_head = 2, mc.n_attn = 48, mc.n_ffn = 80;
    mc.block_size = 12, mc.vocab_size = 17, mc.dropout = 0.0f;
    model_config_apply_arch_defaults(&mc, 1, 0);
    enum { B = 3, NEW = 30, L = 3 };
    const int prompt[L] = {1, 5, 9};
    Model m;
    Sampler s[2];
    if (model_create(&m, &mc, NULL, GPU, err)) tf_die("%s", err);
    model_init_weights(&m, 5);
    for (int i = 0; i < 2; i++) {
        SamplerConfig sc = {1.0f, 0, 11, 1, i};
        if (sampler_init(&s[i], &m, B, prompt, L, NEW, &sc, err)) tf_die("%s", err);
    }
    int V = mc.vocab_size, next[2][B], same_tokens = 1;
    float *logits = xmalloc(sizeof(float) * B * V);
    double worst = 0.0;
    for (int step = 0; step < NEW; step++) {
        sampler_step(&s[1], next[1]); /* op by op first: s[0]'s step then runs last */
        memcpy(logits, s[1].logits, sizeof(float) * B * V);
        sampler_step(&s[0], next[0]);
        for (int j = 0; j < B * V; j++) {
            double e = fabs(logits[j] - s[0].logits[j]);
            worst = isnan(e) ? INFINITY : e > worst ? e : worst;
        }
        same_tokens &= memcmp(next[0], next[1], sizeof next[0]) == 0;
    }
    char name[128];
    snprintf(name, sizeof name, "sampler_recorded_step_used_%s", tag);
    check_flag(name, s[0].kv.step.recording != NULL && s[1].kv.step.recording == NULL, "no recorded step");
    snprintf(name, sizeof name, "sampler_recorded_vs_op_by_op_logits_%s", tag);
    check(name, worst, 1e-5);
    snprintf(name, sizeof name, "sampler_recorded_vs_op_by_op_tokens_%s", tag);
    check_flag(name, same_tokens, "the streams differ");
    free(logits);
    for (int i = 0; i < 2; i++) sampler_free(&s[i]);
    model_free(&m);
    GPU->set_precision(GPU, MATMUL_FP32);
}

/* ---------------------------------------------------------------- attention */

/* The attention state buffers: each backend gets the sizes its
 * attention_sizes asks for (the GPU's depend on the matmul precision). */
typedef struct {
    float *c, *g;
    size_t nc, ng;
} StateBuf;

static StateBuf state_buf(size_t nc, size_t ng) {
    StateBuf s = {xmalloc(nc * sizeof(float)), GPU->alloc(GPU, ng * sizeof(float) + 4), nc, ng};
    if (!s.g) {
        fprintf(stderr, "test_cuda_ops: GPU alloc of %zu floats failed\n", ng);
        exit(1);
    }
    memset(s.c, 0, nc * sizeof(float));
    return s;
}

static void state_free(StateBuf *s) {
    free(s->c);
    GPU->free(GPU, s->g);
}

static void attention_state(int B, int T, int H, int hd, StateBuf *att, StateBuf *datt) {
    size_t ac, dc, ag, dg;
    CPU->attention_sizes(CPU, B, T, H, hd, &ac, &dc);
    GPU->attention_sizes(GPU, B, T, H, hd, &ag, &dg);
    *att = state_buf(ac, ag);
    *datt = state_buf(dc, dg);
}

/* rel_err of the saved probabilities, when both backends save them. */
static void check_att_state(const char *tag, const StateBuf *att) {
    if (att->ng != att->nc) return;
    Buf b = {att->c, att->g, att->nc, 0};
    checkf("attention_forward_%s_att", tag, &b);
}

/* The cuBLAS path: fp32, or under bf16 a head size the fused kernels lack
 * (then on fp32 copies of the bf16 tensors, TF32 products: tol 2e-2). */
static void test_attention_prec(int prec, int B, int T, int H, int hd) {
    char tag[64];
    const double tol = prec == MATMUL_BF16 ? 2e-2 : TOL;
    snprintf(tag, sizeof tag, "B%d_T%d_H%d_hd%d%s", B, T, H, hd, prec == MATMUL_BF16 ? "_bf16" : "");
    size_t n = (size_t)B * T * H * hd;
    GPU->set_precision(GPU, prec);
    Buf q = buf_rand_t(n, 1.0f, 1), k = buf_rand_t(n, 1.0f, 1), v = buf_rand_t(n, 1.0f, 1);
    Buf out = buf_out_t(n, 1);
    StateBuf att, datt;
    attention_state(B, T, H, hd, &att, &datt);
    CPU->attention_forward(CPU, out.c, att.c, q.c, k.c, v.c, B, T, H, hd);
    GPU->attention_forward(GPU, out.g, att.g, q.g, k.g, v.g, B, T, H, hd);
    checkf_tol("attention_forward_%s_out", tag, &out, tol);
    if (prec != MATMUL_BF16) check_att_state(tag, &att);
    Buf dout = buf_rand_t(n, 1.0f, 1), dq = buf_out_t(n, 1), dk = buf_out_t(n, 1);
    Buf dv = buf_out_t(n, 1);
    CPU->attention_backward(CPU, dq.c, dk.c, dv.c, datt.c, dout.c, out.c, q.c, k.c, v.c, att.c, B,
                            T, H, hd);
    GPU->attention_backward(GPU, dq.g, dk.g, dv.g, datt.g, dout.g, out.g, q.g, k.g, v.g, att.g, B,
                            T, H, hd);
    GPU->set_precision(GPU, MATMUL_FP32);
    checkf_tol("attention_backward_%s_dq", tag, &dq, tol);
    checkf_tol("attention_backward_%s_dk", tag, &dk, tol);
    checkf_tol("attention_backward_%s_dv", tag, &dv, tol);
    Buf *all[] = {&q, &k, &v, &out, &dout, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
    state_free(&att);
    state_free(&datt);
}

static void test_attention(int B, int T, int H, int hd) {
    test_attention_prec(MATMUL_FP32, B, T, H, hd);
}

/* The fused (flash) attention of --precision bf16: bf16 tensor-core products,
 * only B*H*T floats of state. Against the fp32 CPU with tol 2e-2. q and k
 * are scaled up so that the softmax is far from uniform. */
static void test_attention_fused(int B, int T, int H, int hd) {
    const double tol = 2e-2;
    char name[128];
    GPU->set_precision(GPU, MATMUL_BF16);
    size_t n = (size_t)B * T * H * hd;
    Buf q = buf_rand_t(n, 2.0f, 1), k = buf_rand_t(n, 2.0f, 1), v = buf_rand_t(n, 1.0f, 1);
    Buf out = buf_out_t(n, 1);
    StateBuf att, datt;
    attention_state(B, T, H, hd, &att, &datt);
    snprintf(name, sizeof name, "attention_fused_B%d_T%d_H%d_hd%d_state_is_BHT", B, T, H, hd);
    check_flag(name, att.ng == (size_t)B * H * T && datt.ng <= (size_t)B * H * T + 3 + n,
               "fused path not taken (full-size state)");
    snprintf(name, sizeof name, "attention_fused_B%d_T%d_H%d_hd%d_tensors_are_bf16", B, T, H, hd);
    check_flag(name, q.half && out.half, "attention tensors not bf16 under bf16");
    CPU->attention_forward(CPU, out.c, att.c, q.c, k.c, v.c, B, T, H, hd);
    GPU->attention_forward(GPU, out.g, att.g, q.g, k.g, v.g, B, T, H, hd);
    Buf dout = buf_rand_t(n, 1.0f, 1), dq = buf_out_t(n, 1), dk = buf_out_t(n, 1);
    Buf dv = buf_out_t(n, 1);
    CPU->attention_backward(CPU, dq.c, dk.c, dv.c, datt.c, dout.c, out.c, q.c, k.c, v.c, att.c, B,
                            T, H, hd);
    GPU->attention_backward(GPU, dq.g, dk.g, dv.g, datt.g, dout.g, out.g, q.g, k.g, v.g, att.g, B,
                            T, H, hd);
    GPU->set_precision(GPU, MATMUL_FP32);
    const char *what[4] = {"out", "dq", "dk", "dv"};
    Buf *bufs[4] = {&out, &dq, &dk, &dv};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "attention_fused_B%d_T%d_H%d_hd%d_%s (tol 2e-2)", B, T, H, hd,
                 what[i]);
        check(name, rel_err(bufs[i]), tol);
    }
    Buf *all[] = {&q, &k, &v, &out, &dout, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);
    state_free(&att);
    state_free(&datt);
}

/* ---------------------------------------------------------------- dropout etc. */

static void test_dropout(void) {
    size_t n = 10007;
    float p = 0.3f;
    uint64_t seed = rng_next(&rng);
    Buf x = buf_rand(n, 1.0f), out = buf_out(n);
    CPU->dropout_forward(CPU, out.c, x.c, p, seed, n);
    GPU->dropout_forward(GPU, out.g, x.g, p, seed, n);
    checkb("dropout_forward", &out);
    float *h = xmalloc(n * sizeof(float));
    GPU->to_host(GPU, h, out.g, n * sizeof(float));
    size_t mismatch = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        mismatch += (h[i] == 0.0f) != (out.c[i] == 0.0f);
        dropped += out.c[i] == 0.0f;
    }
    char what[96];
    snprintf(what, sizeof what, "%zu mask mismatches (%zu dropped on cpu)", mismatch, dropped);
    check_flag("dropout_mask_identical", mismatch == 0 && dropped > 0 && dropped < n, what);
    Buf dout = buf_rand(n, 1.0f), dx = buf_out(n);
    CPU->dropout_backward(CPU, dx.c, dout.c, p, seed, n);
    GPU->dropout_backward(GPU, dx.g, dout.g, p, seed, n);
    checkb("dropout_backward", &dx);
    CPU->dropout_forward(CPU, x.c, x.c, p, seed + 1, n); /* in place */
    GPU->dropout_forward(GPU, x.g, x.g, p, seed + 1, n);
    checkb("dropout_forward_inplace", &x);
    for (int k = 0; k < 2; k++) { /* the fused residual step, in place on its residual input */
        float pk = k ? p : 0.0f;
        CPU->dropout_add(CPU, x.c, x.c, dout.c, pk, seed + 2, n);
        GPU->dropout_add(GPU, x.g, x.g, dout.g, pk, seed + 2, n);
        checkb(k ? "dropout_add_p0.3" : "dropout_add_p0", &x);
    }
    free(h);
    buf_free(&x);
    buf_free(&out);
    buf_free(&dout);
    buf_free(&dx);
}

static void test_elementwise(void) {
    size_t n = 100003;
    Buf a = buf_rand(n, 1.0f), b = buf_rand(n, 1.0f), out = buf_out(n);
    CPU->add(CPU, out.c, a.c, b.c, n);
    GPU->add(GPU, out.g, a.g, b.g, n);
    checkb("add", &out);
    CPU->add(CPU, a.c, a.c, b.c, n); /* aliasing */
    GPU->add(GPU, a.g, a.g, b.g, n);
    checkb("add_inplace", &a);
    CPU->accumulate(CPU, b.c, out.c, n);
    GPU->accumulate(GPU, b.g, out.g, n);
    checkb("accumulate", &b);
    CPU->scale(CPU, b.c, -0.37f, n);
    GPU->scale(GPU, b.g, -0.37f, n);
    checkb("scale", &b);
    buf_free(&a);
    buf_free(&b);
    buf_free(&out);
}

static void test_cross_entropy(int N, int V) {
    char tag[64];
    snprintf(tag, sizeof tag, "N%d_V%d", N, V);
    Buf logits = buf_rand((size_t)N * V, 4.0f), probs = buf_out((size_t)N * V);
    int *tg = xmalloc(N * sizeof(int));
    int valid = 0;
    for (int i = 0; i < N; i++) {
        tg[i] = i % 7 == 3 ? -1 : (int)rng_below(&rng, V); /* some ignored rows */
        valid += tg[i] >= 0;
    }
    IBuf t = ibuf_from(tg, N);
    float lc = CPU->cross_entropy_forward(CPU, probs.c, logits.c, t.c, N, V);
    float lg = GPU->cross_entropy_forward(GPU, probs.g, logits.g, t.g, N, V);
    char name[96];
    snprintf(name, sizeof name, "cross_entropy_forward_%s_loss", tag);
    check(name, scalar_err(lg, lc), TOL);
    checkf("cross_entropy_forward_%s_probs", tag, &probs);
    Buf dl = buf_out((size_t)N * V);
    float sc = 1.0f / (float)valid;
    CPU->cross_entropy_backward(CPU, dl.c, probs.c, t.c, sc, N, V);
    GPU->cross_entropy_backward(GPU, dl.g, probs.g, t.g, sc, N, V);
    checkf("cross_entropy_backward_%s", tag, &dl);
    free(tg);
    ibuf_free(&t);
    buf_free(&logits);
    buf_free(&probs);
    buf_free(&dl);
}

static void test_sum_squares(size_t n) {
    Buf x = buf_rand(n, 1.0f);
    float c = CPU->sum_squares(CPU, x.c, n);
    float g1 = GPU->sum_squares(GPU, x.g, n), g2 = GPU->sum_squares(GPU, x.g, n);
    char name[64];
    snprintf(name, sizeof name, "sum_squares_n%zu", n);
    check(name, scalar_err(g1, c), TOL);
    snprintf(name, sizeof name, "sum_squares_n%zu_deterministic", n);
    check_flag(name, memcmp(&g1, &g2, sizeof g1) == 0, "two calls differ");
    buf_free(&x);
}

static void test_adamw(void) {
    size_t n = 10007;
    Buf p = buf_rand(n, 1.0f), m = buf_rand(n, 0.1f), v = buf_rand(n, 0.1f);
    for (size_t i = 0; i < n; i++) v.c[i] = fabsf(v.c[i]); /* second moments are >= 0 */
    GPU->to_device(GPU, v.g, v.c, n * sizeof(float));
    for (int t = 1; t <= 5; t++) {
        Buf g = buf_rand(n, 1.0f);
        CPU->adamw(CPU, p.c, g.c, m.c, v.c, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f, t);
        GPU->adamw(GPU, p.g, g.g, m.g, v.g, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.7f, t);
        buf_free(&g);
    }
    checkb("adamw_p", &p);
    checkb("adamw_m", &m);
    checkb("adamw_v", &v);
    buf_free(&p);
    buf_free(&m);
    buf_free(&v);
}

/* Realistic sizes (the shakespeare preset's shapes): correctness at scale.
 * Time per op is measured by `tokenformer bench --profile`, not here. */
static void test_large(void) {
    int N = 4096, d = 384, n = 1152, mode = PNORM_L2_GELU;
    float tau = sqrtf((float)n);
    Buf X = buf_rand((size_t)N * d, 1.0f), K = buf_rand((size_t)n * d, 0.05f);
    Buf V = buf_rand((size_t)n * d, 0.05f), Y = buf_out((size_t)N * d);
    Buf A = buf_out((size_t)N * n), S = buf_out((size_t)N * n), dA = buf_out((size_t)N * n);
    Buf dY = buf_rand((size_t)N * d, 1.0f), dX = buf_rand((size_t)N * d, 1.0f);
    Buf dK = buf_rand((size_t)n * d, 1.0f), dV = buf_rand((size_t)n * d, 1.0f);
    patt_fwd(CPU, Y.c, A.c, S.c, dA.c, plain(X.c), K.c, V.c, &tau, 1, mode, N, d, n, d,
                            0, NULL);
    patt_fwd(GPU, Y.g, A.g, S.g, dA.g, plain(X.g), K.g, V.g, &tau, 1, mode, N, d, n, d,
                            0, NULL);
    checkb("pattention_large_N4096_d384_n1152_S", &S); /* before backward consumes it */
    patt_bwd(CPU, dX.c, dK.c, dV.c, dA.c, dY.c, plain(X.c), K.c, V.c, A.c, S.c, &tau, 1,
                             mode, N, d, n, d, 1, 0);
    patt_bwd(GPU, dX.g, dK.g, dV.g, dA.g, dY.g, plain(X.g), K.g, V.g, A.g, S.g, &tau, 1,
                             mode, N, d, n, d, 1, 0);
    checkb("pattention_large_N4096_d384_n1152_Y", &Y);
    checkb("pattention_large_N4096_d384_n1152_dX", &dX);
    checkb("pattention_large_N4096_d384_n1152_dK", &dK);
    checkb("pattention_large_N4096_d384_n1152_dV", &dV);
    Buf *all[] = {&X, &K, &V, &Y, &A, &S, &dA, &dY, &dX, &dK, &dV};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) buf_free(all[i]);

    int B = 4, T = 256, H = 6, hd = 64;
    size_t nq = (size_t)B * T * H * hd;
    Buf q = buf_rand(nq, 1.0f), k = buf_rand(nq, 1.0f), v = buf_rand(nq, 1.0f);
    Buf out = buf_out(nq), dout = buf_rand(nq, 1.0f);
    Buf dq = buf_out(nq), dk = buf_out(nq), dv = buf_out(nq);
    StateBuf att, datt;
    attention_state(B, T, H, hd, &att, &datt);
    CPU->attention_forward(CPU, out.c, att.c, q.c, k.c, v.c, B, T, H, hd);
    GPU->attention_forward(GPU, out.g, att.g, q.g, k.g, v.g, B, T, H, hd);
    CPU->attention_backward(CPU, dq.c, dk.c, dv.c, datt.c, dout.c, out.c, q.c, k.c, v.c, att.c, B,
                            T, H, hd);
    GPU->attention_backward(GPU, dq.g, dk.g, dv.g, datt.g, dout.g, out.g, q.g, k.g, v.g, att.g, B,
                            T, H, hd);
    checkb("attention_large_B4_T256_H6_hd64_out", &out);
    check_att_state("large_B4_T256_H6_hd64", &att);
    checkb("attention_large_B4_T256_H6_hd64_dq", &dq);
    checkb("attention_large_B4_T256_H6_hd64_dk", &dk);
    checkb("attention_large_B4_T256_H6_hd64_dv", &dv);
    Buf *all2[] = {&q, &k, &v, &out, &dout, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all2 / sizeof *all2; i++) buf_free(all2[i]);
    state_free(&att);
    state_free(&datt);
}

/* Reduced-precision math must be in use (an error well above fp32's) and
 * still close: tf32 keeps 10 mantissa bits. Plain fp32-operand GEMMs run
 * TF32 in bf16 mode too (the Pattentions' bf16 GEMMs are tested below). */
static void test_matmul_precisions(void) {
    int M = 256, N = 192, K = 320;
    GPU->set_precision(GPU, MATMUL_TF32);
    double e_tf32 = matmul_err(M, N, K, 0, 1, 1.0f, 0.0f);
    check("matmul_tf32 (tol 5e-3)", e_tf32, 5e-3);
    check_flag("matmul_tf32_uses_tensor_cores", e_tf32 > 1e-5, "error not above fp32's");
    GPU->set_precision(GPU, MATMUL_BF16);
    double e_bf16 = matmul_err(M, N, K, 1, 0, 1.0f, 0.5f);
    check("matmul_in_bf16_mode (tol 5e-3)", e_bf16, 5e-3);
    check_flag("matmul_in_bf16_mode_uses_tensor_cores", e_bf16 > 1e-5, "error not above fp32's");
    GPU->set_precision(GPU, MATMUL_FP32);
    check("matmul_fp32_again", matmul_err(M, N, K, 0, 1, 1.0f, 0.0f), TOL);
}

int main(void) {
    char why[256] = "";
    GPU = ops_cuda(why, sizeof why);
    if (!GPU) {
        printf("SKIP test_cuda_ops: %s\n", why[0] ? why : "no usable GPU");
        return 0;
    }
    CPU = ops_cpu();
    const char *seed_env = getenv("TF_TEST_SEED");
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : 20241031ULL;
    rng_seed(&rng, seed);
    printf("test_cuda_ops: comparing %s against %s (seed %llu, tol %.0e)\n", GPU->name, CPU->name,
           (unsigned long long)seed, TOL);

    test_memory();
    test_matmul();
    test_embedding();
    test_layernorm(37, 53, 1);
    test_layernorm(37, 53, 0);
    test_layernorm(5, 800, 1);
    test_layernorm(37, 384, 1); /* C = 128 V: the vector kernels */
    test_layernorm(37, 384, 0);
    test_layernorm(9, 768, 1);
    for (int mode = 0; mode < 3; mode++) {
        test_pattention(MATMUL_FP32, mode, 1, 37, 24, 53, 19);
        test_pattention(MATMUL_FP32, mode, 1, 5, 16, 1153, 8); /* odd n: several windows */
        test_pattention(MATMUL_FP32, mode, 1, 37, 24, 54, 19); /* even n: pairs per lane */
        test_pattention(MATMUL_FP32, mode, 1, 9, 16, 1152, 8);
        test_pattention(MATMUL_FP32, mode, 1, 5, 16, 2306, 8); /* pairs, several windows */
        test_pattention(MATMUL_FP32, mode, 1, 37, 24, 200, 19); /* n a multiple of 4 */
        test_pattention(MATMUL_FP32, mode, 1, 9, 16, 2400, 8); /* a team, several windows */
    }
    test_rope(2, 13, 3, 8, 4);
    test_rope(2, 13, 3, 8, 8);
    test_rope(1, 300, 2, 16, 4); /* large t: angles must match the CPU's */
    test_attention(2, 13, 3, 8);
    test_attention(1, 70, 2, 16); /* rows longer than a warp */
    for (int prec = MATMUL_FP32; prec <= MATMUL_BF16; prec += MATMUL_BF16 - MATMUL_FP32) {
        test_decode_prec(prec, 1, 1, 0, 16, 2, 16, 4);     /* the first token */
        test_decode_prec(prec, 1, 1, 200, 256, 6, 64, 16); /* one token, a long cache */
        test_decode_prec(prec, 3, 1, 37, 64, 4, 32, 8);    /* a batch of streams */
        test_decode_prec(prec, 2, 19, 0, 64, 3, 24, 6);    /* a prefill: causal among new */
        test_decode_prec(prec, 2, 7, 30, 64, 2, 128, 32);  /* a chunk after a history */
        test_decode_prec(prec, 1, 1, 1000, 1024, 12, 64, 16); /* gpt2-124m shape */
        test_decode_prec(prec, 2, 1, 5, 32, 2, 128, 0);       /* no rotation, hd 128 */
        test_decode_prec(prec, 1, 1, 9, 16, 2, 24, 8);        /* hd 24: the chunk path */
        test_decode_prec(prec, 64, 1, 255, 256, 6, 64, 16);   /* 64 streams, a full cache */
    }
    test_decode_recorded();
    for (int arch = 0; arch < ARCH_COUNT; arch++) {
        test_sampler_recorded(arch, MATMUL_FP32);
        test_sampler_recorded(arch, MATMUL_BF16);
    }
    test_dropout();
    test_elementwise();
    test_cross_entropy(37, 67);
    test_cross_entropy(9, 700);
    test_sum_squares(1000003);
    test_sum_squares(37);
    test_adamw();
    const char *quick = getenv("TF_TEST_QUICK"); /* skip the large sizes (sanitizer runs) */
    if (!quick || !*quick || strcmp(quick, "0") == 0) test_large();
    test_matmul_precisions();
    for (int mode = 0; mode < 3; mode++) test_pattention(MATMUL_BF16, mode, 1, 300, 96, 200, 80);
    test_pattention(MATMUL_BF16, 0, 1, 50, 32, 53, 24); /* odd n */
    test_pattention(MATMUL_BF16, 0, 1, 20, 32, 2400, 24); /* a team, several windows */
    test_pattention(MATMUL_BF16, 0, 1, 21, 32, 5000, 24); /* long rows */
    for (int mode = 0; mode < 3; mode++) { /* the q, k, v group */
        test_pattention(MATMUL_FP32, mode, 3, 37, 24, 54, 24);
        test_pattention(MATMUL_BF16, mode, 3, 300, 96, 200, 96);
    }
    test_pattention(MATMUL_FP32, 0, 3, 37, 24, 53, 24); /* odd n in a group */
    test_pattention(MATMUL_FP32, 0, 2, 9, 16, 1152, 16); /* teams of warps in a group */
    /* LayerNorm inputs (normalized by the op, as in a block): the vector and
     * the scalar LayerNorm kernels, bf16 and fp32 */
    test_pattention_ln(MATMUL_BF16, 3, 64, 128, 96, 128);
    test_pattention_ln(MATMUL_BF16, 1, 37, 100, 54, 100);
    test_pattention_ln(MATMUL_FP32, 3, 37, 128, 54, 128);
    test_pattention_ln(MATMUL_FP32, 1, 9, 100, 1152, 100);
    /* attention tensors in and out: bf16 under bf16, fp32 otherwise */
    test_pattention_attn(MATMUL_BF16, 3, 64, 128, 96);
    test_pattention_attn(MATMUL_BF16, 1, 37, 100, 54);
    test_pattention_attn(MATMUL_FP32, 3, 37, 24, 54);
    test_pattention_attn(MATMUL_FP32, 1, 9, 16, 1152);
    test_pattention_residual(MATMUL_FP32, 37, 24, 54);
    test_pattention_residual(MATMUL_BF16, 300, 96, 200);
    test_pattention_residual(MATMUL_BF16, 64, 128, 1152); /* a team of warps */
    test_rope_prec(MATMUL_BF16, 2, 13, 3, 8, 8);
    test_rope_prec(MATMUL_BF16, 1, 300, 2, 16, 4);
    test_bf16_mirror();
    test_attention_fused(2, 100, 3, 64);  /* T not a multiple of the 64-row tile */
    test_attention_fused(3, 257, 2, 64);
    test_attention_fused(4, 256, 12, 64);
    test_attention_fused(2, 1024, 4, 64);
    test_attention_fused(3, 1, 5, 64);    /* T = 1 */
    test_attention_fused(2, 77, 3, 32);
    test_attention_fused(2, 130, 2, 128);
    test_attention_prec(MATMUL_BF16, 2, 37, 3, 16); /* bf16 tensors, a head size without kernels */
    test_baseline_ops();
    /* fp32 again: back on the cuBLAS path */
    test_attention(2, 13, 3, 8);
    test_attention(2, 100, 2, 64);
    GPU->synchronize(GPU);

    printf("test_cuda_ops: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
#endif
