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

/* An op's time starts before the synchronization that precedes it (and so
 * includes the cost of synchronizing), so that what the table leaves out of
 * the step is only the model's own host work between ops. */
static double begin(void) {
    double t0 = tf_now_seconds();
    g_inner->synchronize(g_inner);
    return t0;
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

/* One wrapper per op of OPS_LIST that computes, timed under the op's name
 * (the service entries, memory and sizes, pass through untimed). */
#define WRAP_OP_SERVICE(ret, name, params, args)
#define WRAP_OP_COMPUTE(ret, name, params, args)                        \
    static void p_##name params {                                       \
        TIMED(#name, g_inner->name(g_inner, OPS_UNPAREN args));         \
    }
#define WRAP_OP_COMPUTE_FLOAT(ret, name, params, args)                  \
    static ret p_##name params {                                        \
        ret r_;                                                         \
        TIMED(#name, r_ = g_inner->name(g_inner, OPS_UNPAREN args));    \
        return r_;                                                      \
    }
#define WRAP(kind, ret, name, params, args) WRAP_##kind(ret, name, params, args)
OPS_LIST(WRAP)
#undef WRAP

/* Some ops are timed per shape, so that "which GEMM" and "which Pattention"
 * show: these replace the generic wrappers above. */
static void p_matmul_by_shape(const Ops *ops, float *C, const float *A, const float *B, int M,
                              int N, int K, int ta, int tb, float alpha, float beta) {
    char key[80];
    snprintf(key, sizeof key, "matmul %dx%dx%d%s%s", M, N, K, ta ? " tA" : "", tb ? " tB" : "");
    TIMED(key, g_inner->matmul(g_inner, C, A, B, M, N, K, ta, tb, alpha, beta));
}
static const char *norm_suffix(PattInput x) {
    return x.norm == NORM_LAYER ? " +LN" : x.norm == NORM_RMS ? " +RMS" : "";
}
static void p_pattention_forward_by_shape(const Ops *ops, const PattArgs *a) {
    char key[80];
    snprintf(key, sizeof key, "pattention_forward n=%d x%d%s", a->n, a->G, norm_suffix(a->X));
    TIMED(key, g_inner->pattention_forward(g_inner, a));
}
static void p_pattention_backward_by_shape(const Ops *ops, const PattArgs *a) {
    char key[80];
    snprintf(key, sizeof key, "pattention_backward n=%d x%d%s", a->n, a->G, norm_suffix(a->X));
    TIMED(key, g_inner->pattention_backward(g_inner, a));
}
static void p_linear_forward_by_shape(const Ops *ops, const LinearArgs *a) {
    char key[80];
    snprintf(key, sizeof key, "linear_forward %dx%d x%d%s", a->d_out, a->d_in, a->G,
             norm_suffix(a->X));
    TIMED(key, g_inner->linear_forward(g_inner, a));
}
static void p_linear_backward_by_shape(const Ops *ops, const LinearArgs *a) {
    char key[80];
    snprintf(key, sizeof key, "linear_backward %dx%d x%d%s", a->d_out, a->d_in, a->G,
             norm_suffix(a->X));
    TIMED(key, g_inner->linear_backward(g_inner, a));
}
static void p_rope_by_direction(const Ops *ops, float *x, int B, int T, int H, int hd, int rot,
                                int inverse) {
    TIMED(inverse ? "rope_backward" : "rope_forward",
          g_inner->rope(g_inner, x, B, T, H, hd, rot, inverse));
}

/* The copies between host and device are not ops the tests cover, but a
 * step spends time in them (its tokens in, its loss out): timed too. */
static void p_to_device(const Ops *ops, void *dst, const void *host_src, size_t bytes) {
    TIMED("to_device", g_inner->to_device(g_inner, dst, host_src, bytes));
}
static void p_to_host(const Ops *ops, void *host_dst, const void *src, size_t bytes) {
    TIMED("to_host", g_inner->to_host(g_inner, host_dst, src, bytes));
}

const Ops *ops_profiled(const Ops *inner) {
    g_inner = inner;
    g_wrapped = *inner;
#define FILL_OP_SERVICE(name)
#define FILL_OP_COMPUTE(name) g_wrapped.name = p_##name;
#define FILL_OP_COMPUTE_FLOAT(name) g_wrapped.name = p_##name;
#define FILL(kind, ret, name, params, args) FILL_##kind(name)
    OPS_LIST(FILL)
#undef FILL
    g_wrapped.matmul = p_matmul_by_shape;
    g_wrapped.pattention_forward = p_pattention_forward_by_shape;
    g_wrapped.pattention_backward = p_pattention_backward_by_shape;
    g_wrapped.linear_forward = p_linear_forward_by_shape;
    g_wrapped.linear_backward = p_linear_backward_by_shape;
    g_wrapped.rope = p_rope_by_direction;
    g_wrapped.to_device = p_to_device;
    g_wrapped.to_host = p_to_host;
    /* timing synchronizes after each op, which no recording may do */
    g_wrapped.record_begin = NULL;
    g_wrapped.record_end = NULL;
    g_wrapped.replay = NULL;
    g_wrapped.record_free = NULL;
    g_wrapped.decode_step = ops_decode_step_eager;
    profile_reset();
    return &g_wrapped;
}

void profile_reset(void) { g_n_buckets = 0; }

static int by_time_desc(const void *a, const void *b) {
    double x = ((const Bucket *)a)->seconds, y = ((const Bucket *)b)->seconds;
    return (x < y) - (x > y);
}

void profile_print(FILE *f, int steps, double wall_seconds) {
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
    /* what the ops leave out of the step: the model's own host work */
    if (wall_seconds > 0)
        fprintf(f, "%-44s %8s %10.3f %6.1f%%\n", "step (wall; share timed in ops)", "",
                wall_seconds * 1e3 / steps, 100.0 * total / wall_seconds);
}
