/* Every CPU op's backward against central finite differences, and the whole
 * model's gradient likewise. Losses are L = sum(out * R) with a random R,
 * accumulated in double; ops run in fp32, so tolerances are fp32-sized. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "ops.h"
#include "rng.h"

/* The ops table's Pattention calls with the arguments written out in the
 * order of PattArgs, which keeps the cases below short. */
#include "patt_shims.h"
}

static int g_fail;
static Rng g_rng;
static const Ops *O;

static float *randn(size_t n, float std) {
    float *p = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = std * rng_normal(&g_rng);
    return p;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* A check: loss(ctx) recomputes the forward from the current inputs. */
typedef double (*LossFn)(void *ctx);

/* Compare analytic grad g of x against finite differences at up to `probes`
 * coordinates; report the worst relative error. */
static void check_grad(const char *name, LossFn loss, void *ctx, float *x, const float *g, size_t n,
                       int probes, float h, double tol) {
    double worst = 0.0;
    size_t stride = n > (size_t)probes ? n / probes : 1;
    for (size_t i = 0; i < n; i += stride) {
        float saved = x[i];
        x[i] = saved + h;
        double lp = loss(ctx);
        x[i] = saved - h;
        double lm = loss(ctx);
        x[i] = saved;
        double num = (lp - lm) / (2.0 * h);
        double err = fabs(num - g[i]) / fmax(fabs(num) + fabs(g[i]), 1e-2);
        if (err > worst) worst = err;
    }
    if (worst <= tol) printf("PASS gradcheck %s (max rel err %.2e)\n", name, worst);
    else {
        printf("FAIL gradcheck %s: max rel err %.2e > %.1e\n", name, worst, tol);
        g_fail = 1;
    }
}

/* ---------------- layernorm ---------------- */
typedef struct {
    int N, C, affine;
    float *x, *w, *b, *out, *mean, *rstd, *R;
} LnCtx;

static double ln_loss(void *p) {
    LnCtx *c = p;
    O->layernorm_forward(O, c->out, c->mean, c->rstd, c->x, c->affine ? c->w : NULL,
                         c->affine ? c->b : NULL, c->N, c->C);
    return dot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_layernorm(int affine) {
    LnCtx c = {.N = 5, .C = 12, .affine = affine};
    size_t n = (size_t)c.N * c.C;
    c.x = randn(n, 1.0f);
    c.w = randn(c.C, 1.0f);
    c.b = randn(c.C, 1.0f);
    c.out = calloc(n, 4);
    c.mean = calloc(c.N, 4);
    c.rstd = calloc(c.N, 4);
    c.R = randn(n, 1.0f);
    float *dx = calloc(n, 4), *dw = calloc(c.C, 4), *db = calloc(c.C, 4);
    ln_loss(&c);
    O->layernorm_backward(O, dx, affine ? dw : NULL, affine ? db : NULL, c.R, c.x,
                          affine ? c.w : NULL, c.mean, c.rstd, c.N, c.C);
    check_grad(affine ? "layernorm.dx (affine)" : "layernorm.dx", ln_loss, &c, c.x, dx, n, 60, 1e-2f, 2e-2);
    if (affine) {
        check_grad("layernorm.dw", ln_loss, &c, c.w, dw, c.C, 60, 1e-2f, 2e-2);
        check_grad("layernorm.db", ln_loss, &c, c.b, db, c.C, 60, 1e-2f, 2e-2);
    }
    free(c.x); free(c.w); free(c.b); free(c.out); free(c.mean); free(c.rstd); free(c.R);
    free(dx); free(dw); free(db);
}

/* ---------------- rmsnorm ---------------- */
typedef struct {
    int N, C;
    float *x, *w, *out, *rstd, *R;
} RmsCtx;

static double rms_loss(void *p) {
    RmsCtx *c = p;
    O->rmsnorm_forward(O, c->out, c->rstd, c->x, c->w, c->N, c->C);
    return dot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_rmsnorm(void) {
    RmsCtx c = {.N = 5, .C = 12};
    size_t n = (size_t)c.N * c.C;
    c.x = randn(n, 1.0f);
    c.w = randn(c.C, 1.0f);
    c.out = calloc(n, 4);
    c.rstd = calloc(c.N, 4);
    c.R = randn(n, 1.0f);
    float *dx = calloc(n, 4), *dw = calloc(c.C, 4);
    rms_loss(&c);
    O->rmsnorm_backward(O, dx, dw, c.R, c.x, c.w, c.rstd, c.N, c.C);
    check_grad("rmsnorm.dx", rms_loss, &c, c.x, dx, n, 60, 1e-2f, 2e-2);
    check_grad("rmsnorm.dw", rms_loss, &c, c.w, dw, c.C, 60, 1e-2f, 2e-2);
    free(c.x); free(c.w); free(c.out); free(c.rstd); free(c.R); free(dx); free(dw);
}

/* The input of an op that normalizes it itself (ops.h PattInput), and the
 * gradient of x from the op's d(xn): the caller's norm backward. */
typedef struct {
    int norm;
    float *x, *xn, *mean, *rstd, *w;
} NormIn;

static PattInput norm_input(const NormIn *in) {
    return (PattInput){.x = in->x, .xn = in->xn, .mean = in->mean, .rstd = in->rstd,
                       .norm = in->norm, .w = in->w};
}

static void norm_input_alloc(NormIn *in, int norm, int N, int C) {
    in->norm = norm;
    in->x = randn((size_t)N * C, 1.0f);
    in->xn = calloc((size_t)N * C, 4);
    in->mean = calloc((size_t)N, 4);
    in->rstd = calloc((size_t)N, 4);
    in->w = norm == NORM_RMS ? randn((size_t)C, 1.0f) : NULL;
}

static void norm_input_free(NormIn *in) {
    free(in->x); free(in->xn); free(in->mean); free(in->rstd); free(in->w);
}

/* dx = d(x) from d(xn) (a copy without a norm); dw += d(w) under NORM_RMS. */
static const float *norm_input_backward(const NormIn *in, float *dx, float *dw, const float *dxn,
                                        int N, int C) {
    if (in->norm == NORM_NONE) return dxn;
    memset(dx, 0, (size_t)N * C * 4);
    if (in->norm == NORM_RMS) O->rmsnorm_backward(O, dx, dw, dxn, in->x, in->w, in->rstd, N, C);
    else O->layernorm_backward(O, dx, NULL, NULL, dxn, in->x, NULL, in->mean, in->rstd, N, C);
    return dx;
}

static const char *norm_label(int norm) {
    return norm == NORM_RMS ? ", RMSNorm input" : norm == NORM_LAYER ? ", LayerNorm input" : "";
}

/* ---------------- linear ---------------- */
typedef struct {
    int N, din, dout, G;
    NormIn in;
    float *W, *Y, *R;
} LinCtx;

static double lin_loss(void *p) {
    LinCtx *c = p;
    LinearArgs a = {.X = norm_input(&c->in), .W = c->W, .G = c->G, .N = c->N, .d_in = c->din,
                    .d_out = c->dout, .Y = c->Y};
    O->linear_forward(O, &a);
    return dot(c->Y, c->R, (size_t)c->G * c->N * c->dout);
}

static void test_linear(int G, int norm) {
    LinCtx c = {.N = 6, .din = 10, .dout = 7, .G = G};
    size_t g = (size_t)G, nx = (size_t)c.N * c.din, nw = g * c.dout * c.din;
    norm_input_alloc(&c.in, norm, c.N, c.din);
    c.W = randn(nw, 0.5f);
    c.Y = calloc(g * c.N * c.dout, 4);
    c.R = randn(g * c.N * c.dout, 1.0f);
    float *dX = calloc(nx, 4), *dW = calloc(nw, 4), *dx = calloc(nx, 4), *dw = calloc(c.din, 4);
    lin_loss(&c);
    LinearArgs a = {.X = norm_input(&c.in), .W = c.W, .G = G, .N = c.N, .d_in = c.din,
                    .d_out = c.dout, .dX = dX, .dW = dW, .dY = c.R};
    O->linear_backward(O, &a);
    const float *gx = norm_input_backward(&c.in, dx, dw, dX, c.N, c.din);
    char name[80];
    snprintf(name, sizeof name, "linear.dX (G=%d%s)", G, norm_label(norm));
    check_grad(name, lin_loss, &c, c.in.x, gx, nx, 60, 1e-2f, 2e-2);
    snprintf(name, sizeof name, "linear.dW (G=%d%s)", G, norm_label(norm));
    check_grad(name, lin_loss, &c, c.W, dW, nw, 60, 1e-2f, 2e-2);
    if (norm == NORM_RMS) check_grad("linear rms weight", lin_loss, &c, c.in.w, dw, c.din, 60, 1e-2f, 2e-2);
    norm_input_free(&c.in);
    free(c.W); free(c.Y); free(c.R); free(dX); free(dW); free(dx); free(dw);
}

/* ---------------- pattention ---------------- */
/* A group of G Pattentions on the same X (G = 1: one): stacked keys, values,
 * taus and outputs; dX sums over the members. With a norm, the input is
 * normalized by the op; X's gradient is then the norm's backward of the
 * op's dX. Modes ACT_GELU / ACT_SWIGLU are the baselines' MLP (SwiGLU: 2n
 * key rows). */
typedef struct {
    int N, din, n, dout, mode, G;
    float tau[3];
    NormIn in;
    float *K, *V, *Y, *A, *S, *dA, *R;
} PattCtx;

static PattInput patt_input(PattCtx *c) { return norm_input(&c->in); }

static const char *mode_label(int mode) {
    return mode == ACT_GELU ? "act gelu" : mode == ACT_SWIGLU ? "act swiglu" : pnorm_name(mode);
}

static double patt_loss(void *p) {
    PattCtx *c = p;
    patt_fwd(O, c->Y, c->A, c->S, c->dA, patt_input(c), c->K, c->V, c->tau, c->G,
             c->mode, c->N, c->din, c->n, c->dout, 0, NULL);
    return dot(c->Y, c->R, (size_t)c->G * c->N * c->dout);
}

static void test_pattention(int mode, int G, int norm) {
    PattCtx c = {.N = 6, .din = 10, .n = 13, .dout = 7, .mode = mode, .G = G,
                 .tau = {2.7f, 1.9f, 3.4f}};
    size_t g = (size_t)G, nx = (size_t)c.N * c.din;
    size_t cols = mode == ACT_SWIGLU ? 2 * (size_t)c.n : (size_t)c.n, nk = g * cols * c.din;
    norm_input_alloc(&c.in, norm, c.N, c.din);
    c.K = randn(nk, 0.5f);
    c.V = randn(g * c.n * c.dout, 0.5f);
    c.Y = calloc(g * c.N * c.dout, 4);
    c.A = calloc(g * c.N * cols, 4);
    c.S = calloc(g * c.N * cols, 4);
    c.R = randn(g * c.N * c.dout, 1.0f);
    float *dX = calloc(nx, 4), *dK = calloc(nk, 4), *dV = calloc(g * c.n * c.dout, 4),
          *dA = calloc(g * c.N * cols, 4), *dx = calloc(nx, 4), *dw = calloc(c.din, 4);
    c.dA = dA;
    patt_loss(&c);
    patt_bwd(O, dX, dK, dV, dA, c.R, patt_input(&c), c.K, c.V, c.A, c.S, c.tau, G, mode,
             c.N, c.din, c.n, c.dout, 1, 0);
    const float *gx = norm_input_backward(&c.in, dx, dw, dX, c.N, c.din);
    char name[100];
    const char *m = mode_label(mode), *in = norm_label(norm);
    snprintf(name, sizeof name, "pattention.dX (%s, G=%d%s)", m, G, in);
    check_grad(name, patt_loss, &c, c.in.x, gx, nx, 60, 1e-2f, 2e-2);
    snprintf(name, sizeof name, "pattention.dK (%s, G=%d%s)", m, G, in);
    check_grad(name, patt_loss, &c, c.K, dK, nk, 60, 1e-2f, 2e-2);
    snprintf(name, sizeof name, "pattention.dV (%s, G=%d%s)", m, G, in);
    check_grad(name, patt_loss, &c, c.V, dV, g * c.n * c.dout, 60, 1e-2f, 2e-2);
    if (norm == NORM_RMS) {
        snprintf(name, sizeof name, "pattention rms weight (%s, G=%d)", m, G);
        check_grad(name, patt_loss, &c, c.in.w, dw, c.din, 60, 1e-2f, 2e-2);
    }
    norm_input_free(&c.in);
    free(c.K); free(c.V); free(c.Y); free(c.A); free(c.S); free(c.R);
    free(dX); free(dK); free(dV); free(dA); free(dx); free(dw);
}

/* ---------------- rope ---------------- */
typedef struct {
    int B, T, H, hd, rot;
    float *x, *y, *R;
} RopeCtx;

static double rope_loss(void *p) {
    RopeCtx *c = p;
    size_t n = (size_t)c->B * c->T * c->H * c->hd;
    memcpy(c->y, c->x, n * 4);
    O->rope(O, c->y, c->B, c->T, c->H, c->hd, c->rot, 0);
    return dot(c->y, c->R, n);
}

static void test_rope(void) {
    RopeCtx c = {.B = 2, .T = 5, .H = 3, .hd = 8, .rot = 4};
    size_t n = (size_t)c.B * c.T * c.H * c.hd;
    c.x = randn(n, 1.0f);
    c.y = calloc(n, 4);
    c.R = randn(n, 1.0f);
    float *g = calloc(n, 4);
    memcpy(g, c.R, n * 4);
    O->rope(O, g, c.B, c.T, c.H, c.hd, c.rot, 1);
    check_grad("rope (backward = inverse rotation)", rope_loss, &c, c.x, g, n, 80, 1e-2f, 1e-2);
    /* The dims past rot are untouched, and rotation keeps the norm. */
    rope_loss(&c);
    int ok = 1;
    for (size_t r = 0; r < n / c.hd; r++)
        for (int i = c.rot; i < c.hd; i++) ok &= c.y[r * c.hd + i] == c.x[r * c.hd + i];
    printf("%s rope leaves dims past rot unchanged\n", ok ? "PASS" : "FAIL");
    g_fail |= !ok;
    free(c.x); free(c.y); free(c.R); free(g);
}

/* ---------------- attention ---------------- */
typedef struct {
    int B, T, H, hd;
    float *q, *k, *v, *out, *att, *R;
} AttCtx;

static double att_loss(void *p) {
    AttCtx *c = p;
    O->attention_forward(O, c->out, c->att, c->q, c->k, c->v, c->B, c->T, c->H, c->hd);
    return dot(c->out, c->R, (size_t)c->B * c->T * c->H * c->hd);
}

static void test_attention(void) {
    AttCtx c = {.B = 2, .T = 7, .H = 3, .hd = 4};
    size_t n = (size_t)c.B * c.T * c.H * c.hd, na = (size_t)c.B * c.H * c.T * c.T;
    c.q = randn(n, 1.0f);
    c.k = randn(n, 1.0f);
    c.v = randn(n, 1.0f);
    c.out = calloc(n, 4);
    c.att = calloc(na, 4);
    c.R = randn(n, 1.0f);
    float *dq = calloc(n, 4), *dk = calloc(n, 4), *dv = calloc(n, 4), *datt = calloc(na, 4);
    att_loss(&c);
    O->attention_backward(O, dq, dk, dv, datt, c.R, c.out, c.q, c.k, c.v, c.att, c.B, c.T, c.H,
                          c.hd);
    check_grad("attention.dq", att_loss, &c, c.q, dq, n, 80, 1e-2f, 2e-2);
    check_grad("attention.dk", att_loss, &c, c.k, dk, n, 80, 1e-2f, 2e-2);
    check_grad("attention.dv", att_loss, &c, c.v, dv, n, 80, 1e-2f, 2e-2);
    /* causality: changing a later token leaves earlier outputs alone */
    float *before = calloc(n, 4);
    memcpy(before, c.out, n * 4);
    int d = c.H * c.hd;
    c.v[(size_t)(c.T - 1) * d] += 5.0f;
    att_loss(&c);
    int ok = 1;
    for (int t = 0; t < c.T - 1; t++)
        for (int i = 0; i < d; i++) ok &= c.out[(size_t)t * d + i] == before[(size_t)t * d + i];
    printf("%s attention is causal\n", ok ? "PASS" : "FAIL");
    g_fail |= !ok;
    free(before); free(c.q); free(c.k); free(c.v); free(c.out); free(c.att); free(c.R);
    free(dq); free(dk); free(dv); free(datt);
}

/* ---------------- cross-entropy, embedding, dropout ---------------- */
typedef struct {
    int N, V;
    float *logits, *probs;
    int *targets;
} CeCtx;

static double ce_loss(void *p) {
    CeCtx *c = p;
    return O->cross_entropy_forward(O, c->probs, c->logits, c->targets, c->N, c->V);
}

static void test_cross_entropy(void) {
    CeCtx c = {.N = 6, .V = 9};
    c.logits = randn((size_t)c.N * c.V, 2.0f);
    c.probs = calloc((size_t)c.N * c.V, 4);
    c.targets = calloc(c.N, sizeof(int));
    for (int i = 0; i < c.N; i++) c.targets[i] = (int)rng_below(&g_rng, c.V);
    float *d = calloc((size_t)c.N * c.V, 4);
    ce_loss(&c);
    O->cross_entropy_backward(O, d, c.probs, c.targets, 1.0f / c.N, c.N, c.V);
    check_grad("cross_entropy.dlogits", ce_loss, &c, c.logits, d, (size_t)c.N * c.V, 60, 1e-2f, 1e-2);
    free(c.logits); free(c.probs); free(c.targets); free(d);
}

typedef struct {
    int N, C, Vocab;
    int *tok;
    float *wte, *out, *R;
} EmbCtx;

static double emb_loss(void *p) {
    EmbCtx *c = p;
    O->embedding_forward(O, c->out, c->tok, c->wte, c->N, c->C);
    return dot(c->out, c->R, (size_t)c->N * c->C);
}

static void test_embedding(void) {
    EmbCtx c = {.N = 9, .C = 5, .Vocab = 4};
    c.tok = calloc(c.N, sizeof(int));
    for (int i = 0; i < c.N; i++) c.tok[i] = (int)rng_below(&g_rng, c.Vocab);
    c.wte = randn((size_t)c.Vocab * c.C, 1.0f);
    c.out = calloc((size_t)c.N * c.C, 4);
    c.R = randn((size_t)c.N * c.C, 1.0f);
    float *d = calloc((size_t)c.Vocab * c.C, 4);
    O->embedding_backward(O, d, c.R, c.tok, c.N, c.C);
    check_grad("embedding.dwte (repeated tokens)", emb_loss, &c, c.wte, d, (size_t)c.Vocab * c.C, 60, 1e-2f, 1e-2);
    free(c.tok); free(c.wte); free(c.out); free(c.R); free(d);
}

typedef struct {
    size_t n;
    float p;
    float *x, *y, *R;
} DropCtx;

static double drop_loss(void *p) {
    DropCtx *c = p;
    O->dropout_forward(O, c->y, c->x, c->p, 77, c->n);
    return dot(c->y, c->R, c->n);
}

static void test_dropout(void) {
    DropCtx c = {.n = 4000, .p = 0.3f};
    c.x = randn(c.n, 1.0f);
    c.y = calloc(c.n, 4);
    c.R = randn(c.n, 1.0f);
    float *d = calloc(c.n, 4);
    O->dropout_backward(O, d, c.R, c.p, 77, c.n);
    check_grad("dropout", drop_loss, &c, c.x, d, c.n, 60, 1e-2f, 1e-2);
    drop_loss(&c);
    size_t dropped = 0;
    for (size_t i = 0; i < c.n; i++) dropped += c.y[i] == 0.0f;
    double rate = (double)dropped / c.n;
    int ok = fabs(rate - c.p) < 0.03;
    printf("%s dropout rate %.3f for p=%.2f\n", ok ? "PASS" : "FAIL", rate, c.p);
    g_fail |= !ok;
    /* the fused residual step is dropout_forward + add, bit for bit */
    float *res = randn(c.n, 1.0f), *fused = calloc(c.n, 4), *two = calloc(c.n, 4);
    for (int k = 0; k < 2; k++) {
        float p = k ? c.p : 0.0f;
        O->dropout_add(O, fused, res, c.x, p, 91, c.n);
        if (p > 0.0f)
            O->dropout_forward(O, two, c.x, p, 91, c.n);
        else
            memcpy(two, c.x, c.n * 4);
        O->add(O, two, res, two, c.n);
        int same = memcmp(fused, two, c.n * 4) == 0;
        printf("%s dropout_add equals dropout_forward + add (p=%.2f)\n", same ? "PASS" : "FAIL", p);
        g_fail |= !same;
    }
    free(res); free(fused); free(two);
    free(c.x); free(c.y); free(c.R); free(d);
}

/* ---------------- adamw against the formula in double ---------------- */
static void test_adamw(void) {
    size_t n = 50;
    float *p = randn(n, 1.0f), *g = randn(n, 1.0f), *m = randn(n, 0.1f), *v = calloc(n, 4);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(rng_normal(&g_rng)) * 0.01f;
    double worst = 0;
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    int t = 3;
    double *ref = calloc(n, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i] * gs, mi = b1 * (double)m[i] + (1 - b1) * gi,
               vi = b2 * (double)v[i] + (1 - b2) * gi * gi;
        double mh = mi / (1 - pow(b1, t)), vh = vi / (1 - pow(b2, t));
        ref[i] = p[i] - lr * (mh / (sqrt(vh) + eps) + wd * p[i]);
    }
    O->adamw(O, p, g, m, v, n, lr, b1, b2, eps, wd, gs, t);
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(p[i] - ref[i]) / fmax(fabs(ref[i]), 1e-3));
    int ok = worst < 1e-5;
    printf("%s adamw matches the formula (max rel err %.2e)\n", ok ? "PASS" : "FAIL", worst);
    g_fail |= !ok;
    free(p); free(g); free(m); free(v); free(ref);
}

/* ---------------- matmul against a naive product ---------------- */
static void test_matmul(void) {
    int M = 5, N = 7, K = 6;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            float *A = randn((size_t)M * K, 1), *B = randn((size_t)K * N, 1), *C = randn((size_t)M * N, 1);
            float *C0 = calloc((size_t)M * N, 4);
            memcpy(C0, C, (size_t)M * N * 4);
            O->matmul(O, C, A, B, M, N, K, ta, tb, 1.5f, 0.5f);
            double worst = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
                    double ref = 1.5 * s + 0.5 * C0[i * N + j];
                    worst = fmax(worst, fabs(ref - C[i * N + j]));
                }
            int ok = worst < 1e-4;
            printf("%s matmul trans_a=%d trans_b=%d (max abs err %.1e)\n", ok ? "PASS" : "FAIL", ta, tb, worst);
            g_fail |= !ok;
            free(A); free(B); free(C); free(C0);
        }
}

/* ---------------- the whole model ---------------- */
typedef struct {
    Model *m;
    int *tok, *tgt;
    int B, T;
} ModelCtx;

static double model_loss(void *p) {
    ModelCtx *c = p;
    return model_forward(c->m, c->tok, c->tgt, c->B, c->T, 1, 1234);
}

static void test_model_arch(int arch, int pnorm, float dropout, float rope_frac) {
    ModelConfig cfg = {.arch = arch, .n_layer = 2, .d_model = 16, .n_head = 2, .n_attn = 12, .n_ffn = 20,
                       .block_size = 8, .vocab_size = 11, .rope_frac = rope_frac,
                       .dropout = dropout, .pnorm = pnorm};
    Model m;
    char err[512];
    if (model_create(&m, &cfg, NULL, O, err) || model_alloc_activations(&m, 3, 8, err)) {
        printf("FAIL model setup: %s\n", err);
        g_fail = 1;
        return;
    }
    model_init_weights(&m, 7);
    /* larger values than the init, so that every path carries gradient */
    for (size_t i = 0; i < m.n_param_elems; i++) m.param_mem[i] += 0.3f * rng_normal(&g_rng);
    int tok[24], tgt[24];
    for (int i = 0; i < 24; i++) {
        tok[i] = (int)rng_below(&g_rng, 11);
        tgt[i] = (int)rng_below(&g_rng, 11);
    }
    ModelCtx c = {&m, tok, tgt, 3, 8};
    model_loss(&c);
    model_zero_grad(&m);
    model_backward(&m);
    float *grad = malloc(m.n_param_elems * 4);
    memcpy(grad, m.grad_mem, m.n_param_elems * 4);
    for (int i = 0; i < m.n_params; i++) {
        Param *p = &m.params[i];
        char name[128];
        snprintf(name, sizeof name, "model %s%s%s (%s, dropout %.1f, rope %.2f)",
                 arch ? arch_name(arch) : "", arch ? " " : "", p->t.name,
                 arch ? "-" : pnorm_name(pnorm), dropout, rope_frac);
        check_grad(name, model_loss, &c, tensor_f32(&p->t), grad + (tensor_f32(&p->t) - m.param_mem),
                   tensor_numel(&p->t), 12, 1e-2f, 3e-2);
    }
    free(grad);
    model_free(&m);
}

static void test_model(int pnorm, float dropout, float rope_frac) {
    test_model_arch(ARCH_TOKENFORMER, pnorm, dropout, rope_frac);
}

int main(void) {
    rng_seed(&g_rng, 42);
    O = ops_cpu();
    test_matmul();
    test_layernorm(0);
    test_layernorm(1);
    for (int mode = 0; mode < 3; mode++) test_pattention(mode, 1, 0);
    test_pattention(PNORM_L2_GELU, 3, 0); /* the q, k, v group */
    test_pattention(PNORM_L2_GELU, 3, NORM_LAYER); /* ... on LayerNorm(x), as in a block */
    test_pattention(PNORM_SOFTMAX, 1, NORM_LAYER);
    test_pattention(ACT_GELU, 1, NORM_LAYER);  /* the transformer's MLP */
    test_pattention(ACT_SWIGLU, 1, NORM_RMS);  /* the transformerpp's MLP */
    test_pattention(ACT_SWIGLU, 1, 0);
    test_rmsnorm();
    test_linear(1, 0);
    test_linear(3, NORM_LAYER); /* the q, k, v group */
    test_linear(3, NORM_RMS);
    test_rope();
    test_attention();
    test_cross_entropy();
    test_embedding();
    test_dropout();
    test_adamw();
    test_model(PNORM_L2_GELU, 0.0f, 0.25f);
    test_model(PNORM_L2_GELU, 0.2f, 1.0f);
    test_model(PNORM_GELU_L2, 0.0f, 0.5f);
    test_model(PNORM_SOFTMAX, 0.0f, 0.5f);
    test_model_arch(ARCH_TRANSFORMER, 0, 0.0f, 0.25f);
    test_model_arch(ARCH_TRANSFORMER, 0, 0.2f, 0.5f);
    test_model_arch(ARCH_TRANSFORMERPP, 0, 0.0f, 1.0f);
    test_model_arch(ARCH_TRANSFORMERPP, 0, 0.2f, 1.0f);
    return g_fail;
}
