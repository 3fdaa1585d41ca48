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
    g_inner->synchronize(g_inner);
    return tf_now_seconds();
}

static void end(const char *name, double t0) {
    g_inner->synchronize(g_inner);
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
static void p_matmul(const Ops *ops, float *C, const float *A, const float *B, int M, int N, int K,
                     int ta, int tb, float alpha, float beta) {
    char key[80];
    snprintf(key, sizeof key, "matmul %dx%dx%d%s%s", M, N, K, ta ? " tA" : "", tb ? " tB" : "");
    TIMED(key, g_inner->matmul(g_inner, C, A, B, M, N, K, ta, tb, alpha, beta));
}

static void p_embedding_forward(const Ops *ops, float *out, const int *tokens, const float *wte,
                                int N, int C) {
    TIMED("embedding_forward", g_inner->embedding_forward(g_inner, out, tokens, wte, N, C));
}
static void p_embedding_backward(const Ops *ops, float *dwte, const float *dout, const int *tokens,
                                 int N, int C) {
    TIMED("embedding_backward", g_inner->embedding_backward(g_inner, dwte, dout, tokens, N, C));
}
static void p_layernorm_forward(const Ops *ops, float *out, float *mean, float *rstd,
                                const float *x, const float *w, const float *b, int N, int C) {
    TIMED("layernorm_forward", g_inner->layernorm_forward(g_inner, out, mean, rstd, x, w, b, N, C));
}
static void p_layernorm_backward(const Ops *ops, float *dx, float *dw, float *db, const float *dout,
                                 const float *x, const float *w, const float *mean,
                                 const float *rstd, int N, int C) {
    TIMED("layernorm_backward",
          g_inner->layernorm_backward(g_inner, dx, dw, db, dout, x, w, mean, rstd, N, C));
}
static void p_pattention_forward(const Ops *ops, const PattArgs *a) {
    char key[80];
    snprintf(key, sizeof key, "pattention_forward n=%d x%d%s", a->n, a->G, a->X.mean ? " +LN" : "");
    TIMED(key, g_inner->pattention_forward(g_inner, a));
}
static void p_pattention_backward(const Ops *ops, const PattArgs *a) {
    char key[80];
    snprintf(key, sizeof key, "pattention_backward n=%d x%d%s", a->n, a->G,
             a->X.mean ? " +LN" : "");
    TIMED(key, g_inner->pattention_backward(g_inner, a));
}
static void p_rope(const Ops *ops, float *x, int B, int T, int H, int hd, int rot, int inverse) {
    TIMED(inverse ? "rope_backward" : "rope_forward",
          g_inner->rope(g_inner, x, B, T, H, hd, rot, inverse));
}
static void p_attention_forward(const Ops *ops, float *out, float *att, const float *q,
                                const float *k, const float *v, int B, int T, int H, int hd) {
    TIMED("attention_forward", g_inner->attention_forward(g_inner, out, att, q, k, v, B, T, H, hd));
}
static void p_attention_decode(const Ops *ops, const DecodeAttnArgs *a) {
    TIMED("attention_decode", g_inner->attention_decode(g_inner, a));
}
static void p_attention_backward(const Ops *ops, float *dq, float *dk, float *dv, float *datt,
                                 const float *dout, const float *out, const float *q,
                                 const float *k, const float *v, const float *att, int B, int T,
                                 int H, int hd) {
    TIMED("attention_backward", g_inner->attention_backward(g_inner, dq, dk, dv, datt, dout, out, q,
                                                            k, v, att, B, T, H, hd));
}
static void p_dropout_forward(const Ops *ops, float *out, const float *x, float p, uint64_t seed,
                              size_t n) {
    TIMED("dropout_forward", g_inner->dropout_forward(g_inner, out, x, p, seed, n));
}
static void p_dropout_backward(const Ops *ops, float *dx, const float *dout, float p, uint64_t seed,
                               size_t n) {
    TIMED("dropout_backward", g_inner->dropout_backward(g_inner, dx, dout, p, seed, n));
}
static void p_dropout_add(const Ops *ops, float *out, const float *x, const float *branch, float p,
                          uint64_t seed, size_t n) {
    TIMED("dropout_add", g_inner->dropout_add(g_inner, out, x, branch, p, seed, n));
}
static void p_add(const Ops *ops, float *out, const float *a, const float *b, size_t n) {
    TIMED("add", g_inner->add(g_inner, out, a, b, n));
}
static void p_accumulate(const Ops *ops, float *y, const float *x, size_t n) {
    TIMED("accumulate", g_inner->accumulate(g_inner, y, x, n));
}
static void p_scale(const Ops *ops, float *x, float s, size_t n) {
    TIMED("scale", g_inner->scale(g_inner, x, s, n));
}
static void p_copy(const Ops *ops, void *dst, const void *src, size_t bytes) {
    TIMED("copy", g_inner->copy(g_inner, dst, src, bytes));
}
static void p_zero(const Ops *ops, void *p, size_t bytes) {
    TIMED("zero", g_inner->zero(g_inner, p, bytes));
}
static float p_cross_entropy_forward(const Ops *ops, float *probs, const float *logits,
                                     const int *targets, int N, int V) {
    float r;
    TIMED("cross_entropy_forward",
          r = g_inner->cross_entropy_forward(g_inner, probs, logits, targets, N, V));
    return r;
}
static void p_cross_entropy_backward(const Ops *ops, float *dlogits, const float *probs,
                                     const int *targets, float scale, int N, int V) {
    TIMED("cross_entropy_backward",
          g_inner->cross_entropy_backward(g_inner, dlogits, probs, targets, scale, N, V));
}
static float p_sum_squares(const Ops *ops, const float *x, size_t n) {
    float r;
    TIMED("sum_squares", r = g_inner->sum_squares(g_inner, x, n));
    return r;
}
static void p_adamw(const Ops *ops, float *p, const float *g, float *m, float *v, size_t n,
                    float lr, float beta1, float beta2, float eps, float weight_decay,
                    float grad_scale, int t) {
    TIMED("adamw", g_inner->adamw(g_inner, p, g, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                  grad_scale, t));
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
    g_wrapped.attention_decode = p_attention_decode;
    /* timing synchronizes after each op, which no recording may do */
    g_wrapped.record_begin = NULL;
    g_wrapped.record_end = NULL;
    g_wrapped.replay = NULL;
    g_wrapped.record_free = NULL;
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
