/* Per-op timing wrapper around an Ops table (see profile.h). */
#include "profile.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

#define MAX_BUCKETS 128

typedef struct {
    char name[80];
    long calls;
    double seconds;
} Bucket;

static const Ops *g_inner;
static Ops g_wrapped;
static Bucket g_buckets[MAX_BUCKETS];
static int g_n_buckets;

static Bucket *bucket(const char *name) {
    for (int i = 0; i < g_n_buckets; i++)
        if (strcmp(g_buckets[i].name, name) == 0) return &g_buckets[i];
    if (g_n_buckets == MAX_BUCKETS) return &g_buckets[MAX_BUCKETS - 1]; /* overflow shares the last */
    Bucket *b = &g_buckets[g_n_buckets++];
    snprintf(b->name, sizeof b->name, "%s", name);
    return b;
}

static double begin(void) {
    g_inner->synchronize();
    return tf_now_seconds();
}

static void end(const char *name, double t0) {
    g_inner->synchronize();
    Bucket *b = bucket(name);
    b->calls++;
    b->seconds += tf_now_seconds() - t0;
}

#define TIMED(name, call)        \
    do {                         \
        double t0_ = begin();    \
        call;                    \
        end(name, t0_);          \
    } while (0)

/* Buckets carry the shape, so that "which GEMM" and "which Pattention" show. */
static void p_matmul(float *C, const float *A, const float *B, int M, int N, int K, int ta, int tb,
                     float alpha, float beta) {
    char key[80];
    snprintf(key, sizeof key, "matmul %dx%dx%d%s%s", M, N, K, ta ? " tA" : "", tb ? " tB" : "");
    TIMED(key, g_inner->matmul(C, A, B, M, N, K, ta, tb, alpha, beta));
}

static void p_embedding_forward(float *out, const int *tokens, const float *wte, int N, int C) {
    TIMED("embedding_forward", g_inner->embedding_forward(out, tokens, wte, N, C));
}
static void p_embedding_backward(float *dwte, const float *dout, const int *tokens, int N, int C) {
    TIMED("embedding_backward", g_inner->embedding_backward(dwte, dout, tokens, N, C));
}
static void p_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                                const float *b, int N, int C) {
    TIMED("layernorm_forward", g_inner->layernorm_forward(out, mean, rstd, x, w, b, N, C));
}
static void p_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                                 const float *w, const float *mean, const float *rstd, int N, int C) {
    TIMED("layernorm_backward", g_inner->layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, C));
}
static void p_pattention_forward(float *Y, float *A, float *S, float *dA, PattInput X,
                                 const float *K, const float *V, const float *tau, int G, int mode,
                                 int N, int d_in, int n, int d_out, int y_attn,
                                 const float *residual) {
    char key[80];
    snprintf(key, sizeof key, "pattention_forward n=%d x%d%s", n, G, X.mean ? " +LN" : "");
    TIMED(key, g_inner->pattention_forward(Y, A, S, dA, X, K, V, tau, G, mode, N, d_in, n, d_out,
                                           y_attn, residual));
}
static void p_pattention_backward(float *dX, float *dK, float *dV, float *dA, const float *dY,
                                  PattInput X, const float *K, const float *V, float *A, float *S,
                                  const float *tau, int G, int mode, int N, int d_in, int n,
                                  int d_out, int accumulate_dx, int y_attn) {
    char key[80];
    snprintf(key, sizeof key, "pattention_backward n=%d x%d%s", n, G, X.mean ? " +LN" : "");
    TIMED(key, g_inner->pattention_backward(dX, dK, dV, dA, dY, X, K, V, A, S, tau, G, mode, N,
                                            d_in, n, d_out, accumulate_dx, y_attn));
}
static void p_rope(float *x, int B, int T, int H, int hd, int rot, int inverse) {
    TIMED(inverse ? "rope_backward" : "rope_forward", g_inner->rope(x, B, T, H, hd, rot, inverse));
}
static void p_attention_forward(float *out, float *att, const float *q, const float *k,
                                const float *v, int B, int T, int H, int hd) {
    TIMED("attention_forward", g_inner->attention_forward(out, att, q, k, v, B, T, H, hd));
}
static void p_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                                 const float *out, const float *q, const float *k,
                                 const float *v, const float *att, int B, int T, int H, int hd) {
    TIMED("attention_backward",
          g_inner->attention_backward(dq, dk, dv, datt, dout, out, q, k, v, att, B, T, H, hd));
}
static void p_dropout_forward(float *out, const float *x, float p, uint64_t seed, size_t n) {
    TIMED("dropout_forward", g_inner->dropout_forward(out, x, p, seed, n));
}
static void p_dropout_backward(float *dx, const float *dout, float p, uint64_t seed, size_t n) {
    TIMED("dropout_backward", g_inner->dropout_backward(dx, dout, p, seed, n));
}
static void p_dropout_add(float *out, const float *x, const float *branch, float p, uint64_t seed,
                          size_t n) {
    TIMED("dropout_add", g_inner->dropout_add(out, x, branch, p, seed, n));
}
static void p_add(float *out, const float *a, const float *b, size_t n) {
    TIMED("add", g_inner->add(out, a, b, n));
}
static void p_accumulate(float *y, const float *x, size_t n) {
    TIMED("accumulate", g_inner->accumulate(y, x, n));
}
static void p_scale(float *x, float s, size_t n) { TIMED("scale", g_inner->scale(x, s, n)); }
static void p_copy(void *dst, const void *src, size_t bytes) {
    TIMED("copy", g_inner->copy(dst, src, bytes));
}
static void p_zero(void *p, size_t bytes) { TIMED("zero", g_inner->zero(p, bytes)); }
static float p_cross_entropy_forward(float *probs, const float *logits, const int *targets, int N,
                                     int V) {
    float r;
    TIMED("cross_entropy_forward", r = g_inner->cross_entropy_forward(probs, logits, targets, N, V));
    return r;
}
static void p_cross_entropy_backward(float *dlogits, const float *probs, const int *targets,
                                     float scale, int N, int V) {
    TIMED("cross_entropy_backward",
          g_inner->cross_entropy_backward(dlogits, probs, targets, scale, N, V));
}
static float p_sum_squares(const float *x, size_t n) {
    float r;
    TIMED("sum_squares", r = g_inner->sum_squares(x, n));
    return r;
}
static void p_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
                    float beta2, float eps, float weight_decay, float grad_scale, int t) {
    TIMED("adamw", g_inner->adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t));
}

const Ops *ops_profiled(const Ops *inner) {
    g_inner = inner;
    g_wrapped = *inner;
    g_wrapped.matmul = p_matmul;
    g_wrapped.embedding_forward = p_embedding_forward;
    g_wrapped.embedding_backward = p_embedding_backward;
    g_wrapped.layernorm_forward = p_layernorm_forward;
    g_wrapped.layernorm_backward = p_layernorm_backward;
    g_wrapped.pattention_forward = p_pattention_forward;
    g_wrapped.pattention_backward = p_pattention_backward;
    g_wrapped.rope = p_rope;
    g_wrapped.attention_forward = p_attention_forward;
    g_wrapped.attention_backward = p_attention_backward;
    g_wrapped.dropout_forward = p_dropout_forward;
    g_wrapped.dropout_backward = p_dropout_backward;
    g_wrapped.dropout_add = p_dropout_add;
    g_wrapped.add = p_add;
    g_wrapped.accumulate = p_accumulate;
    g_wrapped.scale = p_scale;
    g_wrapped.copy = p_copy;
    g_wrapped.zero = p_zero;
    g_wrapped.cross_entropy_forward = p_cross_entropy_forward;
    g_wrapped.cross_entropy_backward = p_cross_entropy_backward;
    g_wrapped.sum_squares = p_sum_squares;
    g_wrapped.adamw = p_adamw;
    profile_reset();
    return &g_wrapped;
}

void profile_reset(void) { g_n_buckets = 0; }

static int by_time_desc(const void *a, const void *b) {
    double x = ((const Bucket *)a)->seconds, y = ((const Bucket *)b)->seconds;
    return (x < y) - (x > y);
}

void profile_print(FILE *f, int steps) {
    if (steps < 1) steps = 1;
    qsort(g_buckets, (size_t)g_n_buckets, sizeof(Bucket), by_time_desc);
    double total = 0.0;
    for (int i = 0; i < g_n_buckets; i++) total += g_buckets[i].seconds;
    fprintf(f, "%-44s %8s %10s %7s\n", "op (per step)", "calls", "ms", "share");
    for (int i = 0; i < g_n_buckets; i++) {
        const Bucket *b = &g_buckets[i];
        fprintf(f, "%-44s %8.1f %10.3f %6.1f%%\n", b->name, (double)b->calls / steps,
                b->seconds * 1e3 / steps, total > 0 ? 100.0 * b->seconds / total : 0.0);
    }
    fprintf(f, "%-44s %8s %10.3f %6.1f%%\n", "total (synchronized per op)", "", total * 1e3 / steps,
            100.0);
}
