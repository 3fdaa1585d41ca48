/* The op kinds and the one table of cases (tests/op_cases.h). Shapes are
 * odd on purpose (no kernel may assume a multiple of its tile); the
 * comments say which kernel path a case is there for. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "op_cases.h"

#define SLOT(name) (r->at[name])
#define F(side, name) op_f(r, side, r->at[name])

static const char *prec_tag(int prec) { return prec == MATMUL_FP32 ? "" : prec == MATMUL_TF32 ? "_tf32" : "_bf16"; }
static const char *norm_tag(int norm) {
    return norm == NORM_LAYER ? "_ln" : norm == NORM_RMS ? "_rms" : "";
}
static int backend_mode(const CaseRun *r) { return r->mode == MODE_BACKEND; }

/* ---------------------------------------------------------------- matmul */
/* a: M N K trans_a trans_b; f: alpha beta */
enum { MM_A, MM_B, MM_C };

static void matmul_label(const OpCase *c, char *b, size_t n) {
    static const char *tr[4] = {"nn", "nt", "tn", "tt"};
    snprintf(b, n, "%s%s_M%d_N%d_K%d%s", tr[c->a[3] * 2 + c->a[4]], c->f[1] == 0.0f ? "_beta0" : "",
             c->a[0], c->a[1], c->a[2], prec_tag(c->prec));
}

static void matmul_declare(CaseRun *r) {
    const int *a = r->c->a;
    SLOT(MM_A) = op_in(r, "A", (size_t)a[0] * a[2], 1.0f, 0);
    SLOT(MM_B) = op_in(r, "B", (size_t)a[2] * a[1], 1.0f, 0);
    if (r->c->f[1] != 0.0f) { /* C is read: an input that becomes the output */
        SLOT(MM_C) = op_in(r, "C", (size_t)a[0] * a[1], 1.0f, 0);
        r->spec[SLOT(MM_C)].compare = 1;
    } else {
        SLOT(MM_C) = op_out(r, "C", (size_t)a[0] * a[1], 0, 1);
    }
}

static void matmul_forward(const Ops *o, CaseRun *r, int s) {
    const int *a = r->c->a;
    o->matmul(o, F(s, MM_C), F(s, MM_A), F(s, MM_B), a[0], a[1], a[2], a[3], a[4], r->c->f[0],
              r->c->f[1]);
}

/* Reduced precision must be in use (an error well above fp32's). */
static void matmul_extra(CaseRun *r) {
    if (r->c->prec == MATMUL_FP32) return;
    char name[160];
    op_case_name(r->c, name, sizeof name);
    strncat(name, "_uses_tensor_cores", sizeof name - strlen(name) - 1);
    double e = op_err(r, SLOT(MM_C));
    check(e > 1e-5, name, "error %.2e not above fp32's", e);
}

static const OpKind K_MATMUL = {.name = "matmul", .entries = "matmul", .label = matmul_label,
                                .declare = matmul_declare, .forward = matmul_forward,
                                .extra = matmul_extra};

/* MODE_GRAD: matmul has no backward; against a naive product in double. */
static void matmul_naive(OpHarness *h, const OpCase *c) {
    const Ops *O = h->side[SIDE_REF];
    int M = c->a[0], N = c->a[1], K = c->a[2], ta = c->a[3], tb = c->a[4];
    float *A = op_xmalloc((size_t)M * K * 4), *B = op_xmalloc((size_t)K * N * 4);
    float *C = op_xmalloc((size_t)M * N * 4), *C0 = op_xmalloc((size_t)M * N * 4);
    for (int i = 0; i < M * K; i++) A[i] = op_rand(h, 1);
    for (int i = 0; i < K * N; i++) B[i] = op_rand(h, 1);
    for (int i = 0; i < M * N; i++) C0[i] = C[i] = op_rand(h, 1);
    O->matmul(O, C, A, B, M, N, K, ta, tb, c->f[0], c->f[1]);
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
            worst = fmax(worst, fabs(c->f[0] * s + c->f[1] * C0[i * N + j] - C[i * N + j]));
        }
    char name[96];
    snprintf(name, sizeof name, "matmul_naive trans_a=%d trans_b=%d", ta, tb);
    check_err(name, "max abs err", worst, c->tol);
    free(A), free(B), free(C), free(C0);
}

static const OpKind K_MATMUL_NAIVE = {.name = "matmul_naive", .entries = "matmul",
                                      .label = matmul_label, .custom = matmul_naive};

/* ---------------------------------------------------------------- embedding */
/* a: N C vocab no_dwte (a frozen wte: dwte NULL, backward a no-op) */
enum { EM_TOK, EM_WTE, EM_OUT, EM_DOUT, EM_DWTE };

static void embedding_label(const OpCase *c, char *b, size_t n) {
    snprintf(b, n, "N%d_C%d_vocab%d%s", c->a[0], c->a[1], c->a[2], c->a[3] ? "_no_dwte" : "");
}

static void embedding_declare(CaseRun *r) {
    int N = r->c->a[0], C = r->c->a[1], vocab = r->c->a[2]; /* few ids: repeated tokens */
    SLOT(EM_TOK) = op_ints(r, "tokens", N);
    for (int i = 0; i < N; i++) r->spec[SLOT(EM_TOK)].ints[i] = (int)rng_below(&r->h->rng, vocab);
    SLOT(EM_WTE) = op_in(r, "wte", (size_t)vocab * C, 1.0f, 0);
    SLOT(EM_OUT) = op_out(r, "out", (size_t)N * C, 0, 1);
    SLOT(EM_DOUT) = op_dout(r, "dout", SLOT(EM_OUT), 0);
    if (!r->c->a[3]) SLOT(EM_DWTE) = op_grad(r, "dwte", (size_t)vocab * C, SLOT(EM_WTE), 0, FILL_RANDOM);
}

static void embedding_forward(const Ops *o, CaseRun *r, int s) {
    o->embedding_forward(o, F(s, EM_OUT), op_i(r, s, SLOT(EM_TOK)), F(s, EM_WTE), r->c->a[0],
                         r->c->a[1]);
}

static void embedding_backward(const Ops *o, CaseRun *r, int s) {
    o->embedding_backward(o, F(s, EM_DWTE), F(s, EM_DOUT), op_i(r, s, SLOT(EM_TOK)), r->c->a[0],
                          r->c->a[1]);
}

static const OpKind K_EMBEDDING = {.name = "embedding",
                                   .entries = "embedding_forward embedding_backward",
                                   .label = embedding_label, .declare = embedding_declare,
                                   .forward = embedding_forward, .backward = embedding_backward};

/* ---------------------------------------------------------------- layernorm */
/* a: N C affine no_dwdb (affine, dw and db NULL: frozen). The comparisons
 * offset the rows so that the mean matters. */
enum { LN_X, LN_W, LN_B, LN_OUT, LN_MEAN, LN_RSTD, LN_DOUT, LN_DX, LN_DW, LN_DB };

static void layernorm_label(const OpCase *c, char *b, size_t n) {
    snprintf(b, n, "%s_N%d_C%d%s", c->a[2] ? "affine" : "nonparam", c->a[0], c->a[1],
             c->a[3] ? "_no_dwdb" : "");
}

static void layernorm_declare(CaseRun *r) {
    int N = r->c->a[0], C = r->c->a[1], affine = r->c->a[2];
    size_t n = (size_t)N * C;
    SLOT(LN_X) = op_in(r, "x", n, backend_mode(r) ? 2.0f : 1.0f, 0);
    if (backend_mode(r)) r->spec[SLOT(LN_X)].offset = 0.5f;
    SLOT(LN_W) = op_in(r, "w", C, 1.0f, 0);
    SLOT(LN_B) = op_in(r, "b", C, 1.0f, 0);
    SLOT(LN_OUT) = op_out(r, "out", n, 0, 1);
    SLOT(LN_MEAN) = op_out(r, "mean", N, 0, 1);
    SLOT(LN_RSTD) = op_out(r, "rstd", N, 0, 1);
    SLOT(LN_DOUT) = op_dout(r, "dout", SLOT(LN_OUT), 0);
    SLOT(LN_DX) = op_grad(r, "dx", n, SLOT(LN_X), 0, FILL_RANDOM);
    if (affine && !r->c->a[3]) {
        SLOT(LN_DW) = op_grad(r, "dw", C, SLOT(LN_W), 0, FILL_RANDOM);
        SLOT(LN_DB) = op_grad(r, "db", C, SLOT(LN_B), 0, FILL_RANDOM);
    }
}

static void layernorm_forward(const Ops *o, CaseRun *r, int s) {
    int affine = r->c->a[2];
    o->layernorm_forward(o, F(s, LN_OUT), F(s, LN_MEAN), F(s, LN_RSTD), F(s, LN_X),
                         affine ? F(s, LN_W) : NULL, affine ? F(s, LN_B) : NULL, r->c->a[0],
                         r->c->a[1]);
}

static void layernorm_backward(const Ops *o, CaseRun *r, int s) {
    int affine = r->c->a[2];
    o->layernorm_backward(o, F(s, LN_DX), F(s, LN_DW), F(s, LN_DB), F(s, LN_DOUT), F(s, LN_X),
                          affine ? F(s, LN_W) : NULL, F(s, LN_MEAN), F(s, LN_RSTD), r->c->a[0],
                          r->c->a[1]);
}

static const OpKind K_LAYERNORM = {.name = "layernorm",
                                   .entries = "layernorm_forward layernorm_backward",
                                   .label = layernorm_label, .declare = layernorm_declare,
                                   .forward = layernorm_forward, .backward = layernorm_backward};

/* ---------------------------------------------------------------- rmsnorm */
/* a: N C weighted no_dw (weighted, dw NULL: frozen): the final norm's op
 * (fp32 in and out); backward accumulates. */
enum { RN_X, RN_W, RN_OUT, RN_RSTD, RN_DOUT, RN_DX, RN_DW };

static void rmsnorm_label(const OpCase *c, char *b, size_t n) {
    snprintf(b, n, "%s_N%d_C%d%s", c->a[2] ? "weighted" : "unit", c->a[0], c->a[1],
             c->a[3] ? "_no_dw" : "");
}

static void rmsnorm_declare(CaseRun *r) {
    int N = r->c->a[0], C = r->c->a[1];
    size_t n = (size_t)N * C;
    SLOT(RN_X) = op_in(r, "x", n, backend_mode(r) ? 2.0f : 1.0f, 0);
    SLOT(RN_W) = op_in(r, "w", C, 1.0f, 0);
    SLOT(RN_OUT) = op_out(r, "out", n, 0, 1);
    SLOT(RN_RSTD) = op_out(r, "rstd", N, 0, 1);
    SLOT(RN_DOUT) = op_dout(r, "dout", SLOT(RN_OUT), 0);
    SLOT(RN_DX) = op_grad(r, "dx", n, SLOT(RN_X), 0, FILL_RANDOM);
    if (r->c->a[2] && !r->c->a[3]) SLOT(RN_DW) = op_grad(r, "dw", C, SLOT(RN_W), 0, FILL_RANDOM);
}

static void rmsnorm_forward(const Ops *o, CaseRun *r, int s) {
    o->rmsnorm_forward(o, F(s, RN_OUT), F(s, RN_RSTD), F(s, RN_X), r->c->a[2] ? F(s, RN_W) : NULL,
                       r->c->a[0], r->c->a[1]);
}

static void rmsnorm_backward(const Ops *o, CaseRun *r, int s) {
    o->rmsnorm_backward(o, F(s, RN_DX), F(s, RN_DW), F(s, RN_DOUT), F(s, RN_X),
                        r->c->a[2] ? F(s, RN_W) : NULL, F(s, RN_RSTD), r->c->a[0], r->c->a[1]);
}

static const OpKind K_RMSNORM = {.name = "rmsnorm", .entries = "rmsnorm_forward rmsnorm_backward",
                                 .label = rmsnorm_label, .declare = rmsnorm_declare,
                                 .forward = rmsnorm_forward, .backward = rmsnorm_backward};

/* ---------------------------------------------------------------- op inputs */
/* The input of a Pattention or linear (ops.h PattInput): x itself (an
 * attention tensor when x_attn) or normalized by the op (NORM_LAYER, or
 * NORM_RMS with a weight w), which writes xn (an attention tensor's type)
 * and the row statistics, compared (at fp32's tolerance: they are fp32
 * under every precision). In MODE_GRAD the gradient of x (and w) is the
 * norm's backward of the op's d(xn), as the model computes it. */
enum { IN_X = 16, IN_XN, IN_MEAN, IN_RSTD, IN_W, IN_DX, IN_DW };

static void input_declare(CaseRun *r, int N, int d_in, int norm, int x_attn) {
    size_t n = (size_t)N * d_in;
    SLOT(IN_X) = op_in(r, "x", n, 1.0f, x_attn);
    if (norm == NORM_LAYER && backend_mode(r)) r->spec[SLOT(IN_X)].offset = 0.5f; /* the mean matters */
    if (norm == NORM_NONE) return;
    SLOT(IN_XN) = op_out(r, "xn", n, 1, 0);
    if (norm == NORM_LAYER) SLOT(IN_MEAN) = op_out(r, "mean", N, 0, 1);
    SLOT(IN_RSTD) = op_out(r, "rstd", N, 0, 1);
    if (SLOT(IN_MEAN) >= 0) r->spec[SLOT(IN_MEAN)].tol = OP_TOL_FP32;
    r->spec[SLOT(IN_RSTD)].tol = OP_TOL_FP32;
    if (norm == NORM_RMS) SLOT(IN_W) = op_in(r, "w", d_in, 1.0f, 0);
    if (r->mode != MODE_GRAD) return;
    SLOT(IN_DX) = op_grad(r, "dx", n, SLOT(IN_X), 0, FILL_ZERO);
    if (norm == NORM_RMS) SLOT(IN_DW) = op_grad(r, "dw", d_in, SLOT(IN_W), 0, FILL_ZERO);
}

static PattInput input_of(CaseRun *r, int s, int norm, int x_attn) {
    return (PattInput){.x = F(s, IN_X), .xn = F(s, IN_XN), .mean = F(s, IN_MEAN),
                       .rstd = F(s, IN_RSTD), .attn = x_attn, .norm = norm, .w = F(s, IN_W)};
}

/* MODE_GRAD: x's gradient from the op's d(xn), as the caller of a fused
 * input runs it (ops.h). */
static void input_backward(const Ops *o, CaseRun *r, int s, int norm, const float *dxn, int N,
                           int d_in) {
    if (SLOT(IN_DX) < 0) return;
    if (norm == NORM_RMS)
        o->rmsnorm_backward(o, F(s, IN_DX), F(s, IN_DW), dxn, F(s, IN_X), F(s, IN_W),
                            F(s, IN_RSTD), N, d_in);
    else
        o->layernorm_backward(o, F(s, IN_DX), NULL, NULL, dxn, F(s, IN_X), NULL, F(s, IN_MEAN),
                              F(s, IN_RSTD), N, d_in);
}

/* ---------------------------------------------------------------- no weight gradients */
/* A backward of a case that skips weight gradients (NULL, ops.h: frozen
 * weights), into dX: with them computed (into scratch) when `full`, else
 * as the case asks. */
typedef void (*BackwardInto)(const Ops *o, CaseRun *r, int s, float *dX, int full);

/* Skipping weight gradients leaves dX bit for bit as it was: on each side,
 * from dX's values now, the full backward into a copy and the case's into
 * dX, each after its own forward (backward may consume what forward saved:
 * ops.h), must give the same bytes. */
static void check_dx_without_weight_grads(CaseRun *r, int dx, BackwardInto backward_into) {
    char name[256];
    op_case_name(r->c, name, sizeof name);
    strncat(name, "_dX_as_with_weight_grads", sizeof name - strlen(name) - 1);
    for (int s = 0; s < SIDES; s++) {
        const Ops *o = op_ops(r, s);
        if (!o) continue;
        size_t bytes = r->spec[dx].n * (s == SIDE_TGT && r->half[dx] ? 2 : 4);
        void *full = o->alloc(o, bytes);
        unsigned char *want = op_xmalloc(bytes), *got = op_xmalloc(bytes);
        o->copy(o, full, op_f(r, s, dx), bytes);
        r->c->kind->forward(o, r, s);
        backward_into(o, r, s, full, 1);
        r->c->kind->forward(o, r, s);
        backward_into(o, r, s, op_f(r, s, dx), 0);
        o->to_host(o, want, full, bytes);
        o->to_host(o, got, op_f(r, s, dx), bytes);
        size_t differ = 0;
        for (size_t i = 0; i < bytes; i++) differ += want[i] != got[i];
        char side_name[280];
        snprintf(side_name, sizeof side_name, "%s_%s%s", name, s == SIDE_REF ? "" : "target_", o->name);
        check(differ == 0, side_name, "%zu of %zu bytes differ", differ, bytes);
        o->free(o, full);
        free(want);
        free(got);
    }
}

/* ---------------------------------------------------------------- pattention */
/* a: mode G N d_in n d_out norm x_attn y_attn accumulate_dx residual
 * no_weight_grads (bits: 1 dK NULL, 2 dV NULL: frozen keys, values); f[0]:
 * the scale of K and V (0: 0.5). A group of G Pattentions sharing X (G = 1:
 * one). The saved scores A, S and the dA scratch are compared only for
 * G = 1 in fp32 and not under SwiGLU: their layout is each backend's own
 * (ops.h), sized by its pattention_sizes. An attention-tensor dX is only
 * ever overwritten. Under ACT_SWIGLU the keys have 2n rows (gate, up) and
 * the scores 2n columns; the activations ignore tau. residual: Y = residual
 * + output (forward only), residual unchanged. */
enum { PA_K, PA_V, PA_Y, PA_A, PA_S, PA_DA, PA_R, PA_DY, PA_DX, PA_DK, PA_DV };
enum { P_MODE, P_G, P_N, P_DIN, P_NR, P_DOUT, P_NORM, P_XATTN, P_YATTN, P_ACC, P_RES, P_NOW };
enum { NO_DK = 1, NO_DV = 2 };
static const char *const NO_WEIGHT_GRADS_TAG[4] = {"", "_no_dK", "_no_dV", "_no_dKdV"};

static const char *patt_mode_name(int mode) {
    static const char *modes[5] = {"l2_norm_gelu", "gelu_l2_norm", "softmax", "act_gelu",
                                   "act_swiglu"};
    return modes[mode];
}

static void pattention_label(const OpCase *c, char *b, size_t n) {
    const int *a = c->a;
    snprintf(b, n, "%s%s_G%d_N%d_d%d_n%d_dout%d%s%s%s%s%s%s", a[P_RES] ? "residual_" : "",
             patt_mode_name(a[P_MODE]), a[P_G], a[P_N], a[P_DIN], a[P_NR], a[P_DOUT],
             prec_tag(c->prec), norm_tag(a[P_NORM]), a[P_XATTN] ? "_xattn" : "",
             a[P_YATTN] ? "_yattn" : "", a[P_RES] ? "" : a[P_ACC] ? "_acc" : "_overwrite",
             NO_WEIGHT_GRADS_TAG[a[P_NOW] & 3]);
}

/* Softmax under bf16: its scores reach tau ~ sqrt(n) (17 at n = 288), where
 * one bf16 rounding (2^-8 relative) moves exp(score) by up to ~7%; the
 * normalised modes stay within OP_TOL_BF16, softmax gets 5e-2. */
#define OP_TOL_BF16_SOFTMAX 5e-2
static void patt_tol(CaseRun *r, int slot) {
    if (slot >= 0 && r->c->prec != MATMUL_FP32 && r->c->a[P_MODE] == PNORM_SOFTMAX)
        r->spec[slot].tol = OP_TOL_BF16_SOFTMAX;
}

static void pattention_declare(CaseRun *r) {
    const int *a = r->c->a;
    const int G = a[P_G], N = a[P_N], d_in = a[P_DIN], n = a[P_NR], d_out = a[P_DOUT];
    const size_t g = (size_t)G, kr = (size_t)n * (a[P_MODE] == ACT_SWIGLU ? 2 : 1); /* key rows */
    const float kv = r->c->f[0] > 0 ? r->c->f[0] : 0.5f;
    const int raw = r->c->prec == MATMUL_FP32 && G == 1 && a[P_MODE] != ACT_SWIGLU;
    static const float grad_tau[3] = {2.7f, 1.9f, 3.4f}, rel_tau[3] = {1.0f, 0.7f, 1.3f};
    for (int i = 0; i < 3; i++)
        r->host[i] = r->mode == MODE_GRAD ? grad_tau[i] : rel_tau[i] * sqrtf((float)n);
    input_declare(r, N, d_in, a[P_NORM], a[P_XATTN]);
    SLOT(PA_K) = op_in(r, "K", g * kr * d_in, kv, 0);
    SLOT(PA_V) = op_in(r, "V", g * n * d_out, kv, 0);
    SLOT(PA_Y) = op_out(r, "Y", g * N * d_out, a[P_YATTN], 1);
    patt_tol(r, SLOT(PA_Y));
    size_t sz[SIDES][3];
    for (int s = 0; s < SIDES; s++) {
        const Ops *o = op_ops(r, s);
        if (o) o->pattention_sizes(o, G, N, (int)kr, &sz[s][0], &sz[s][1], &sz[s][2]);
        else sz[s][0] = sz[s][1] = sz[s][2] = 0;
    }
    SLOT(PA_A) = op_state(r, "A", sz[0][0], sz[1][0]);
    SLOT(PA_S) = op_state(r, "S", sz[0][1], sz[1][1]);
    SLOT(PA_DA) = op_state(r, "dA", sz[0][2], sz[1][2]); /* scratch, forward and backward */
    if (raw && backend_mode(r)) /* where both keep the fp32 layout */
        for (int k = 0; k < 3; k++)
            if (sz[0][k] == sz[1][k]) r->spec[SLOT(PA_A + k)].compare = k == 2 ? 2 : 1;
    if (a[P_RES]) {
        SLOT(PA_R) = op_in(r, "residual_unchanged", (size_t)N * d_out, 2.0f, 0);
        r->spec[SLOT(PA_R)].compare = 1;
        r->spec[SLOT(PA_R)].tol = OP_TOL_FP32;
        return;
    }
    SLOT(PA_DY) = op_dout(r, "dY", SLOT(PA_Y), a[P_YATTN]);
    int dx_of = a[P_NORM] == NORM_NONE ? SLOT(IN_X) : -1;
    SLOT(PA_DX) = op_grad(r, "dX", (size_t)N * d_in, dx_of, a[P_XATTN], FILL_RANDOM);
    if (!(a[P_NOW] & NO_DK)) SLOT(PA_DK) = op_grad(r, "dK", g * kr * d_in, SLOT(PA_K), 0, FILL_RANDOM);
    if (!(a[P_NOW] & NO_DV)) SLOT(PA_DV) = op_grad(r, "dV", g * n * d_out, SLOT(PA_V), 0, FILL_RANDOM);
    for (int k = PA_DX; k <= PA_DV; k++) patt_tol(r, SLOT(k));
}

static PattArgs patt_args(CaseRun *r, int s) {
    const int *a = r->c->a;
    return (PattArgs){.X = input_of(r, s, a[P_NORM], a[P_XATTN]), .K = F(s, PA_K),
                      .V = F(s, PA_V), .tau = r->host, .G = a[P_G], .mode = a[P_MODE],
                      .N = a[P_N], .d_in = a[P_DIN], .n = a[P_NR], .d_out = a[P_DOUT],
                      .y_attn = a[P_YATTN], .A = F(s, PA_A), .S = F(s, PA_S), .dA = F(s, PA_DA),
                      .Y = F(s, PA_Y), .residual = F(s, PA_R), .dX = F(s, PA_DX),
                      .dK = F(s, PA_DK), .dV = F(s, PA_DV), .dY = F(s, PA_DY),
                      .accumulate_dx = a[P_ACC]};
}

static void pattention_forward(const Ops *o, CaseRun *r, int s) {
    PattArgs args = patt_args(r, s);
    o->pattention_forward(o, &args);
}

static void pattention_backward(const Ops *o, CaseRun *r, int s) {
    if (r->c->a[P_RES]) return; /* the residual cases are forward only */
    PattArgs args = patt_args(r, s);
    o->pattention_backward(o, &args);
    input_backward(o, r, s, r->c->a[P_NORM], F(s, PA_DX), r->c->a[P_N], r->c->a[P_DIN]);
}

static void pattention_backward_into(const Ops *o, CaseRun *r, int s, float *dX, int full) {
    const int *a = r->c->a;
    size_t k_bytes = (size_t)a[P_G] * a[P_NR] * (a[P_MODE] == ACT_SWIGLU ? 2 : 1) * a[P_DIN] * 4;
    size_t v_bytes = (size_t)a[P_G] * a[P_NR] * a[P_DOUT] * 4;
    PattArgs args = patt_args(r, s);
    args.dX = dX;
    if (full) {
        args.dK = o->alloc(o, k_bytes);
        args.dV = o->alloc(o, v_bytes);
    }
    o->pattention_backward(o, &args);
    if (full) {
        o->free(o, args.dK);
        o->free(o, args.dV);
    }
}

static void pattention_extra(CaseRun *r) {
    if (r->c->a[P_NOW] && !r->c->a[P_RES]) check_dx_without_weight_grads(r, SLOT(PA_DX), pattention_backward_into);
}

static const OpKind K_PATTENTION = {.name = "pattention",
                                    .entries = "pattention_sizes pattention_forward pattention_backward",
                                    .label = pattention_label, .declare = pattention_declare,
                                    .forward = pattention_forward,
                                    .backward = pattention_backward, .extra = pattention_extra};

/* ---------------------------------------------------------------- linear */
/* a: G N d_in d_out norm x_attn y_attn accumulate_dx residual skip. A group of G
 * members sharing X (q, k, v: G = 3, a normalized input, attention-tensor
 * outputs; o: an attention-tensor input; residual: Y = residual + X W^T,
 * G = 1). dW accumulates, or is NULL (skip LI_NO_DW: frozen weights); dX
 * NULL (skip LI_NO_DX): a member's dW alone. */
enum { LI_W, LI_Y, LI_R, LI_DY, LI_DX, LI_DW };
enum { L_G, L_N, L_DIN, L_DOUT, L_NORM, L_XATTN, L_YATTN, L_ACC, L_RES, L_NOW };
enum { LI_NO_DW = 1, LI_NO_DX = 2 };

static void linear_label(const OpCase *c, char *b, size_t n) {
    const int *a = c->a;
    snprintf(b, n, "G%d_N%d_%dx%d%s%s%s%s%s%s%s", a[L_G], a[L_N], a[L_DOUT], a[L_DIN],
             prec_tag(c->prec), norm_tag(a[L_NORM]), a[L_XATTN] ? "_xattn" : "",
             a[L_YATTN] ? "_yattn" : "", a[L_RES] ? "_residual" : "",
             a[L_ACC] ? "_acc" : "_overwrite",
             a[L_NOW] & LI_NO_DW ? "_no_dW" : a[L_NOW] & LI_NO_DX ? "_no_dX" : "");
}

static void linear_declare(CaseRun *r) {
    const int *a = r->c->a;
    const size_t g = (size_t)a[L_G], N = (size_t)a[L_N], d_in = (size_t)a[L_DIN];
    const size_t d_out = (size_t)a[L_DOUT];
    input_declare(r, (int)N, (int)d_in, a[L_NORM], a[L_XATTN]);
    SLOT(LI_W) = op_in(r, "W", g * d_out * d_in, 0.5f, 0);
    SLOT(LI_Y) = op_out(r, "Y", g * N * d_out, a[L_YATTN], 1);
    if (a[L_RES]) {
        SLOT(LI_R) = op_in(r, "residual_unchanged", N * d_out, 2.0f, 0);
        r->spec[SLOT(LI_R)].compare = 1;
        r->spec[SLOT(LI_R)].tol = OP_TOL_FP32;
    }
    SLOT(LI_DY) = op_dout(r, "dY", SLOT(LI_Y), a[L_YATTN]);
    int dx_of = a[L_NORM] == NORM_NONE ? SLOT(IN_X) : -1;
    if (!(a[L_NOW] & LI_NO_DX)) SLOT(LI_DX) = op_grad(r, "dX", N * d_in, dx_of, a[L_XATTN], FILL_RANDOM);
    if (!(a[L_NOW] & LI_NO_DW)) SLOT(LI_DW) = op_grad(r, "dW", g * d_out * d_in, SLOT(LI_W), 0, FILL_RANDOM);
}

static LinearArgs linear_args(CaseRun *r, int s) {
    const int *a = r->c->a;
    return (LinearArgs){.X = input_of(r, s, a[L_NORM], a[L_XATTN]), .W = F(s, LI_W), .G = a[L_G],
                        .N = a[L_N], .d_in = a[L_DIN], .d_out = a[L_DOUT], .y_attn = a[L_YATTN],
                        .Y = F(s, LI_Y), .residual = F(s, LI_R), .dX = F(s, LI_DX),
                        .dW = F(s, LI_DW), .dY = F(s, LI_DY), .accumulate_dx = a[L_ACC]};
}

static void linear_forward(const Ops *o, CaseRun *r, int s) {
    LinearArgs args = linear_args(r, s);
    o->linear_forward(o, &args);
}

static void linear_backward(const Ops *o, CaseRun *r, int s) {
    LinearArgs args = linear_args(r, s);
    o->linear_backward(o, &args);
    if (SLOT(LI_DX) >= 0) input_backward(o, r, s, r->c->a[L_NORM], F(s, LI_DX), r->c->a[L_N], r->c->a[L_DIN]);
}

static void linear_backward_into(const Ops *o, CaseRun *r, int s, float *dX, int full) {
    const int *a = r->c->a;
    LinearArgs args = linear_args(r, s);
    args.dX = dX;
    if (full) args.dW = o->alloc(o, (size_t)a[L_G] * a[L_DOUT] * a[L_DIN] * 4);
    o->linear_backward(o, &args);
    if (full) o->free(o, args.dW);
}

static void linear_extra(CaseRun *r) {
    if (r->c->a[L_NOW] & LI_NO_DW) check_dx_without_weight_grads(r, SLOT(LI_DX), linear_backward_into);
}

static const OpKind K_LINEAR = {.name = "linear", .entries = "linear_forward linear_backward",
                                .label = linear_label, .declare = linear_declare,
                                .forward = linear_forward, .backward = linear_backward,
                                .extra = linear_extra};

/* ---------------------------------------------------------------- rope */
/* a: B T H hd rot. Forward rotates a copy of x; backward is the inverse
 * rotation of dy. Under bf16 x is bf16 (an attention tensor): the CPU
 * rotates the same rounded values, the target's results are rounded again. */
enum { RO_X, RO_Y, RO_DY, RO_DX };

static void rope_label(const OpCase *c, char *b, size_t n) {
    snprintf(b, n, "B%d_T%d_H%d_hd%d_rot%d%s", c->a[0], c->a[1], c->a[2], c->a[3], c->a[4],
             prec_tag(c->prec));
}

static size_t rope_elems(const OpCase *c) { return (size_t)c->a[0] * c->a[1] * c->a[2] * c->a[3]; }

static void rope_declare(CaseRun *r) {
    size_t n = rope_elems(r->c);
    SLOT(RO_X) = op_in(r, "x", n, 1.0f, 1);
    SLOT(RO_Y) = op_out(r, "forward", n, 1, 1);
    SLOT(RO_DY) = op_dout(r, "dy", SLOT(RO_Y), 1);
    SLOT(RO_DX) = op_grad(r, "inverse", n, SLOT(RO_X), 1, FILL_POISON);
}

static void rope_rotate(const Ops *o, CaseRun *r, int s, float *dst, const float *src, int inverse) {
    const int *a = r->c->a;
    o->copy(o, dst, src, rope_elems(r->c) * dtype_size(o->attn_dtype(o)));
    o->rope(o, dst, a[0], a[1], a[2], a[3], a[4], inverse);
}

static void rope_forward(const Ops *o, CaseRun *r, int s) { rope_rotate(o, r, s, F(s, RO_Y), F(s, RO_X), 0); }
static void rope_backward(const Ops *o, CaseRun *r, int s) { rope_rotate(o, r, s, F(s, RO_DX), F(s, RO_DY), 1); }

/* The dims past rot are untouched; inverse(forward(x)) == x. */
static void rope_extra(CaseRun *r) {
    const int side = r->mode == MODE_GRAD ? SIDE_REF : SIDE_TGT, hd = r->c->a[3], rot = r->c->a[4];
    const Ops *o = op_ops(r, side);
    const size_t n = rope_elems(r->c);
    char base[160], name[200];
    op_case_name(r->c, base, sizeof base);
    float *x = op_values(r, side, SLOT(RO_X)), *y = op_values(r, side, SLOT(RO_Y));
    int same = 1;
    for (size_t row = 0; row < n / hd; row++)
        for (int i = rot; i < hd; i++) same &= y[row * hd + i] == x[row * hd + i];
    snprintf(name, sizeof name, "%s_leaves_dims_past_rot", base);
    check(same, name, "a dim past rot changed");
    o->rope(o, F(side, RO_Y), r->c->a[0], r->c->a[1], r->c->a[2], hd, rot, 1);
    float *back = op_values(r, side, SLOT(RO_Y));
    snprintf(name, sizeof name, "%s_roundtrip", base);
    check_err(name, "rel err", rel_err(back, x, n), r->mode == MODE_GRAD ? 1e-5 : op_case_tol(r->c));
    free(x), free(y), free(back);
}

static const OpKind K_ROPE = {.name = "rope", .entries = "rope copy", .label = rope_label,
                              .declare = rope_declare, .forward = rope_forward,
                              .backward = rope_backward, .extra = rope_extra};

/* ---------------------------------------------------------------- attention */
/* a: B T H hd fused; f[0]: the scale of q and k (0: 1; larger: a softmax far
 * from uniform). att and datt are sized by each backend's attention_sizes
 * (its precision's); the saved probabilities are compared when both keep
 * them (fp32). fused: the flash kernel of bf16 must be the one taken. */
enum { AT_Q, AT_K, AT_V, AT_OUT, AT_ATT, AT_DATT, AT_DOUT, AT_DQ, AT_DK, AT_DV };

static void attention_label(const OpCase *c, char *b, size_t n) {
    snprintf(b, n, "%sB%d_T%d_H%d_hd%d%s", c->a[4] ? "fused_" : "", c->a[0], c->a[1], c->a[2],
             c->a[3], prec_tag(c->prec));
}

static void attention_declare(CaseRun *r) {
    const int *a = r->c->a;
    const size_t n = (size_t)a[0] * a[1] * a[2] * a[3];
    const float qk = r->c->f[0] > 0 ? r->c->f[0] : 1.0f;
    SLOT(AT_Q) = op_in(r, "q", n, qk, 1);
    SLOT(AT_K) = op_in(r, "k", n, qk, 1);
    SLOT(AT_V) = op_in(r, "v", n, 1.0f, 1);
    SLOT(AT_OUT) = op_out(r, "out", n, 1, 1);
    size_t sz[SIDES][2] = {{0}};
    for (int s = 0; s < SIDES; s++)
        if (op_ops(r, s)) op_ops(r, s)->attention_sizes(op_ops(r, s), a[0], a[1], a[2], a[3], &sz[s][0], &sz[s][1]);
    SLOT(AT_ATT) = op_state(r, "att", sz[0][0], sz[1][0]);
    SLOT(AT_DATT) = op_state(r, "datt", sz[0][1], sz[1][1]);
    if (backend_mode(r) && sz[0][0] == sz[1][0] && r->c->prec != MATMUL_BF16)
        r->spec[SLOT(AT_ATT)].compare = 1;
    SLOT(AT_DOUT) = op_dout(r, "dout", SLOT(AT_OUT), 1);
    SLOT(AT_DQ) = op_grad(r, "dq", n, SLOT(AT_Q), 1, FILL_POISON);
    SLOT(AT_DK) = op_grad(r, "dk", n, SLOT(AT_K), 1, FILL_POISON);
    SLOT(AT_DV) = op_grad(r, "dv", n, SLOT(AT_V), 1, FILL_POISON);
}

static void attention_forward(const Ops *o, CaseRun *r, int s) {
    const int *a = r->c->a;
    o->attention_forward(o, F(s, AT_OUT), F(s, AT_ATT), F(s, AT_Q), F(s, AT_K), F(s, AT_V), a[0],
                         a[1], a[2], a[3]);
}

static void attention_backward(const Ops *o, CaseRun *r, int s) {
    const int *a = r->c->a;
    o->attention_backward(o, F(s, AT_DQ), F(s, AT_DK), F(s, AT_DV), F(s, AT_DATT), F(s, AT_DOUT),
                          F(s, AT_OUT), F(s, AT_Q), F(s, AT_K), F(s, AT_V), F(s, AT_ATT), a[0],
                          a[1], a[2], a[3]);
}

/* MODE_GRAD: causal (a later token leaves earlier outputs alone).
 * MODE_BACKEND, fused: B*H*T floats of state and bf16 tensors. */
static void attention_extra(CaseRun *r) {
    const int *a = r->c->a;
    char base[160], name[200];
    op_case_name(r->c, base, sizeof base);
    if (r->mode == MODE_BACKEND) {
        if (!a[4]) return;
        const size_t n = (size_t)a[0] * a[1] * a[2] * a[3], bht = (size_t)a[0] * a[2] * a[1];
        snprintf(name, sizeof name, "%s_state_is_BHT", base);
        check(r->spec[SLOT(AT_ATT)].n_side[SIDE_TGT] == bht &&
                  r->spec[SLOT(AT_DATT)].n_side[SIDE_TGT] <= bht + 3 + n,
              name, "fused path not taken (full-size state)");
        snprintf(name, sizeof name, "%s_tensors_are_bf16", base);
        check(r->half[SLOT(AT_Q)] && r->half[SLOT(AT_OUT)], name, "attention tensors not bf16 under bf16");
        return;
    }
    const Ops *o = op_ops(r, SIDE_REF);
    const int d = a[2] * a[3];
    const size_t n = (size_t)a[0] * a[1] * d;
    float *before = op_values(r, SIDE_REF, SLOT(AT_OUT));
    attention_forward(o, r, SIDE_REF);
    memcpy(before, F(SIDE_REF, AT_OUT), n * sizeof(float));
    F(SIDE_REF, AT_V)[(size_t)(a[1] - 1) * d] += 5.0f;
    attention_forward(o, r, SIDE_REF);
    int same = 1;
    for (size_t i = 0; i < (size_t)(a[1] - 1) * d; i++) same &= F(SIDE_REF, AT_OUT)[i] == before[i];
    snprintf(name, sizeof name, "%s_is_causal", base);
    check(same, name, "an earlier output changed with a later value");
    free(before);
}

static const OpKind K_ATTENTION = {.name = "attention",
                                   .entries = "attention_sizes attention_forward attention_backward",
                                   .label = attention_label, .declare = attention_declare,
                                   .forward = attention_forward, .backward = attention_backward,
                                   .extra = attention_extra};

/* ---------------------------------------------------------------- decoding */
/* a: B T pos0 T_max H hd rot. attention_decode on T new positions at pos0
 * over a cache of T_max rows (random history below pos0), attention
 * tensors: q and k rotated in place, k and v appended, the attention
 * output. T = 1 is the one-kernel path; T > 1 the chunk path, or at pos0
 * 0 (at_start) the training attention. */
enum { DE_Q, DE_K, DE_V, DE_KC, DE_VC, DE_OUT, DE_POS };

static void decode_label(const OpCase *c, char *b, size_t n) {
    const int *a = c->a;
    snprintf(b, n, "B%d_T%d_pos%d_H%d_hd%d_rot%d%s", a[0], a[1], a[2], a[4], a[5], a[6],
             prec_tag(c->prec));
}

static void decode_declare(CaseRun *r) {
    const int *a = r->c->a;
    const size_t d = (size_t)a[4] * a[5], rows = (size_t)a[0] * a[1], cache = (size_t)a[0] * a[3];
    const char *names[5] = {"q_rotated", "k_rotated", "v", "k_cache", "v_cache"};
    for (int i = DE_Q; i <= DE_VC; i++) {
        SLOT(i) = op_in(r, names[i], (i >= DE_KC ? cache : rows) * d, 1.0f, 1);
        r->spec[SLOT(i)].compare = i == DE_V ? 0 : 1;
    }
    SLOT(DE_OUT) = op_out(r, "out", rows * d, 1, 1);
    SLOT(DE_POS) = op_ints(r, "pos", 1); /* the op reads pos0 from backend memory */
    r->spec[SLOT(DE_POS)].ints[0] = a[2];
}

static void decode_forward(const Ops *o, CaseRun *r, int s) {
    const int *a = r->c->a;
    DecodeAttnArgs args = {.out = F(s, DE_OUT), .q = F(s, DE_Q), .k = F(s, DE_K), .v = F(s, DE_V),
                           .k_cache = F(s, DE_KC), .v_cache = F(s, DE_VC),
                           .pos = op_i(r, s, SLOT(DE_POS)), .B = a[0], .T = a[1], .T_max = a[3],
                           .H = a[4], .hd = a[5], .rot = a[6], .at_start = a[1] > 1 && a[2] == 0};
    o->attention_decode(o, &args);
}

static const OpKind K_DECODE = {.name = "attention_decode", .entries = "attention_decode",
                                .label = decode_label, .declare = decode_declare,
                                .forward = decode_forward};

/* ---------------------------------------------------------------- dropout */
/* a: n seed in_place; f[0]: p. The keep mask is a pure function of (seed, i):
 * the backends agree bit for bit. */
enum { DR_X, DR_OUT, DR_DOUT, DR_DX };

static void dropout_label(const OpCase *c, char *b, size_t n) {
    snprintf(b, n, "n%d_p%.2f%s", c->a[0], c->f[0], c->a[2] ? "_inplace" : "");
}

static void dropout_declare(CaseRun *r) {
    const size_t n = (size_t)r->c->a[0];
    SLOT(DR_X) = op_in(r, "x", n, 1.0f, 0);
    if (r->c->a[2]) { /* in place: x is the output, forward only */
        r->spec[SLOT(DR_X)].compare = 1;
        return;
    }
    SLOT(DR_OUT) = op_out(r, "out", n, 0, 1);
    SLOT(DR_DOUT) = op_dout(r, "dout", SLOT(DR_OUT), 0);
    SLOT(DR_DX) = op_grad(r, "dx", n, SLOT(DR_X), 0, FILL_POISON);
}

static void dropout_forward(const Ops *o, CaseRun *r, int s) {
    float *out = r->c->a[2] ? F(s, DR_X) : F(s, DR_OUT);
    o->dropout_forward(o, out, F(s, DR_X), r->c->f[0], (uint64_t)r->c->a[1], (size_t)r->c->a[0]);
}

static void dropout_backward(const Ops *o, CaseRun *r, int s) {
    if (r->c->a[2]) return;
    o->dropout_backward(o, F(s, DR_DX), F(s, DR_DOUT), r->c->f[0], (uint64_t)r->c->a[1],
                        (size_t)r->c->a[0]);
}

/* MODE_GRAD: the rate is p; MODE_BACKEND: the same elements dropped. */
static void dropout_extra(CaseRun *r) {
    if (r->c->a[2]) return;
    const size_t n = (size_t)r->c->a[0];
    const float p = r->c->f[0];
    char base[160], name[200];
    op_case_name(r->c, base, sizeof base);
    float *ref = op_values(r, SIDE_REF, SLOT(DR_OUT));
    size_t dropped = 0, mismatch = 0;
    for (size_t i = 0; i < n; i++) dropped += ref[i] == 0.0f;
    if (r->mode == MODE_GRAD) {
        double rate = (double)dropped / n;
        snprintf(name, sizeof name, "%s_rate", base);
        check_err(name, "|rate - p|", fabs(rate - p), 0.03);
    } else {
        float *tgt = op_values(r, SIDE_TGT, SLOT(DR_OUT));
        for (size_t i = 0; i < n; i++) mismatch += (tgt[i] == 0.0f) != (ref[i] == 0.0f);
        snprintf(name, sizeof name, "%s_mask_identical", base);
        check(mismatch == 0 && dropped > 0 && dropped < n, name,
              "%zu mask mismatches (%zu dropped on the cpu)", mismatch, dropped);
        free(tgt);
    }
    free(ref);
}

static const OpKind K_DROPOUT = {.name = "dropout", .entries = "dropout_forward dropout_backward",
                                 .label = dropout_label, .declare = dropout_declare,
                                 .forward = dropout_forward, .backward = dropout_backward,
                                 .extra = dropout_extra};

/* a: n seed in_place; f[0]: p. The residual step out = x + dropout(branch),
 * in place on x as the model runs it, or into out. */
enum { DA_X, DA_BRANCH, DA_OUT };

static void dropout_add_declare(CaseRun *r) {
    const size_t n = (size_t)r->c->a[0];
    SLOT(DA_X) = op_in(r, "x", n, 1.0f, 0);
    SLOT(DA_BRANCH) = op_in(r, "branch", n, 1.0f, 0);
    if (r->c->a[2]) r->spec[SLOT(DA_X)].compare = 1;
    else SLOT(DA_OUT) = op_out(r, "out", n, 0, 1);
}

static void dropout_add_forward(const Ops *o, CaseRun *r, int s) {
    float *out = r->c->a[2] ? F(s, DA_X) : F(s, DA_OUT);
    o->dropout_add(o, out, F(s, DA_X), F(s, DA_BRANCH), r->c->f[0], (uint64_t)r->c->a[1],
                   (size_t)r->c->a[0]);
}

/* MODE_GRAD (not in place): dropout_forward + add, bit for bit. */
static void dropout_add_extra(CaseRun *r) {
    if (r->mode != MODE_GRAD || r->c->a[2]) return;
    const Ops *o = op_ops(r, SIDE_REF);
    const size_t n = (size_t)r->c->a[0];
    const float p = r->c->f[0];
    float *two = op_xmalloc(n * sizeof(float));
    if (p > 0.0f) o->dropout_forward(o, two, F(SIDE_REF, DA_BRANCH), p, (uint64_t)r->c->a[1], n);
    else memcpy(two, F(SIDE_REF, DA_BRANCH), n * sizeof(float));
    o->add(o, two, F(SIDE_REF, DA_X), two, n);
    char base[160], name[220];
    op_case_name(r->c, base, sizeof base);
    snprintf(name, sizeof name, "%s_equals_dropout_forward_plus_add", base);
    check(memcmp(two, F(SIDE_REF, DA_OUT), n * sizeof(float)) == 0, name, "they differ");
    free(two);
}

static const OpKind K_DROPOUT_ADD = {.name = "dropout_add", .entries = "dropout_add",
                                     .label = dropout_label, .declare = dropout_add_declare,
                                     .forward = dropout_add_forward, .extra = dropout_add_extra};

/* ---------------------------------------------------------------- elementwise */
/* a: n op (0 add, 1 add in place, 2 accumulate, 3 scale by f[0]). */
enum { EL_A, EL_B, EL_OUT };
static const char *elementwise_names[4] = {"add", "add_inplace", "accumulate", "scale"};

static void elementwise_label(const OpCase *c, char *b, size_t n) {
    snprintf(b, n, "%s_n%d", elementwise_names[c->a[1]], c->a[0]);
}

static void elementwise_declare(CaseRun *r) {
    const size_t n = (size_t)r->c->a[0];
    SLOT(EL_A) = op_in(r, "a", n, 1.0f, 0);
    SLOT(EL_B) = op_in(r, "b", n, 1.0f, 0);
    if (r->c->a[1] == 0) SLOT(EL_OUT) = op_out(r, "out", n, 0, 1);
    else r->spec[SLOT(EL_A)].compare = 1; /* the op writes a */
}

static void elementwise_forward(const Ops *o, CaseRun *r, int s) {
    const size_t n = (size_t)r->c->a[0];
    float *a = F(s, EL_A), *b = F(s, EL_B);
    switch (r->c->a[1]) {
    case 0: o->add(o, F(s, EL_OUT), a, b, n); break;
    case 1: o->add(o, a, a, b, n); break; /* aliasing */
    case 2: o->accumulate(o, a, b, n); break;
    default: o->scale(o, a, r->c->f[0], n);
    }
}

static const OpKind K_ELEMENTWISE = {.name = "elementwise", .entries = "add accumulate scale",
                                     .label = elementwise_label, .declare = elementwise_declare,
                                     .forward = elementwise_forward};

/* ---------------------------------------------------------------- cross-entropy */
/* a: N V ignore; f[0]: the logits' scale. ignore: every 7th row (from the
 * 4th) has target -1: no loss, no gradient. Backward scales by 1/valid rows. */
enum { CE_LOGITS, CE_PROBS, CE_TARGETS, CE_DLOGITS };

static void ce_label(const OpCase *c, char *b, size_t n) { snprintf(b, n, "N%d_V%d", c->a[0], c->a[1]); }

static void ce_declare(CaseRun *r) {
    const int N = r->c->a[0], V = r->c->a[1];
    SLOT(CE_LOGITS) = op_in(r, "logits", (size_t)N * V, r->c->f[0], 0);
    SLOT(CE_PROBS) = op_out(r, "probs", (size_t)N * V, 0, 1);
    SLOT(CE_TARGETS) = op_ints(r, "targets", N);
    int valid = 0;
    for (int i = 0; i < N; i++) {
        int t = r->c->a[2] && i % 7 == 3 ? -1 : (int)rng_below(&r->h->rng, V);
        r->spec[SLOT(CE_TARGETS)].ints[i] = t;
        valid += t >= 0;
    }
    r->host[0] = 1.0f / (float)valid;
    SLOT(CE_DLOGITS) = op_grad(r, "dlogits", (size_t)N * V, SLOT(CE_LOGITS), 0, FILL_POISON);
}

static void ce_forward(const Ops *o, CaseRun *r, int s) {
    r->scalar[s] = o->cross_entropy_forward(o, F(s, CE_PROBS), F(s, CE_LOGITS),
                                            op_i(r, s, SLOT(CE_TARGETS)), r->c->a[0], r->c->a[1]);
}

static void ce_backward(const Ops *o, CaseRun *r, int s) {
    o->cross_entropy_backward(o, F(s, CE_DLOGITS), F(s, CE_PROBS), op_i(r, s, SLOT(CE_TARGETS)),
                              r->host[0], r->c->a[0], r->c->a[1]);
}

static const OpKind K_CROSS_ENTROPY = {.name = "cross_entropy",
                                       .entries = "cross_entropy_forward cross_entropy_backward",
                                       .label = ce_label, .declare = ce_declare,
                                       .forward = ce_forward, .backward = ce_backward,
                                       .scalar = "loss"};

/* ---------------------------------------------------------------- sum_squares */
/* a: n. MODE_BACKEND: against the CPU, and deterministic (two calls agree
 * bit for bit); MODE_GRAD: against a sum in double. */
enum { SS_X };

static void ss_label(const OpCase *c, char *b, size_t n) { snprintf(b, n, "n%d", c->a[0]); }

static void ss_declare(CaseRun *r) { SLOT(SS_X) = op_in(r, "x", (size_t)r->c->a[0], 1.0f, 0); }

static void ss_forward(const Ops *o, CaseRun *r, int s) {
    r->scalar[s] = o->sum_squares(o, F(s, SS_X), (size_t)r->c->a[0]);
}

static void ss_extra(CaseRun *r) {
    char base[160], name[200];
    op_case_name(r->c, base, sizeof base);
    const size_t n = (size_t)r->c->a[0];
    if (r->mode == MODE_BACKEND) {
        const Ops *t = op_ops(r, SIDE_TGT);
        float again = t->sum_squares(t, F(SIDE_TGT, SS_X), n);
        snprintf(name, sizeof name, "%s_deterministic", base);
        check(memcmp(&again, &r->scalar[SIDE_TGT], sizeof again) == 0, name, "two calls differ");
        return;
    }
    double sum = 0;
    const float *x = F(SIDE_REF, SS_X);
    for (size_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    snprintf(name, sizeof name, "%s_vs_double_sum", base);
    check_err(name, "rel err", rel_err_scalar(r->scalar[SIDE_REF], sum), r->c->tol);
}

static const OpKind K_SUM_SQUARES = {.name = "sum_squares", .entries = "sum_squares",
                                     .label = ss_label, .declare = ss_declare,
                                     .forward = ss_forward, .extra = ss_extra, .scalar = "value"};

/* ---------------------------------------------------------------- adamw */
/* a: n steps: `steps` updates, each with a new gradient; p, m and v compared. */
enum { AD_P, AD_M, AD_V, AD_G };

static void adamw_label(const OpCase *c, char *b, size_t n) {
    if (c->a[2]) snprintf(b, n, "n%d_steps%d_ranges%d", c->a[0], c->a[1], c->a[2]);
    else snprintf(b, n, "n%d_steps%d", c->a[0], c->a[1]);
}

static void adamw_declare(CaseRun *r) {
    const size_t n = (size_t)r->c->a[0];
    SLOT(AD_P) = op_in(r, "p", n, 1.0f, 0);
    SLOT(AD_M) = op_in(r, "m", n, 0.1f, 0);
    SLOT(AD_V) = op_in(r, "v", n, 0.1f, 0);
    r->spec[SLOT(AD_V)].positive = 1; /* second moments are >= 0 */
    for (int i = AD_P; i <= AD_V; i++) r->spec[SLOT(i)].compare = 1;
    SLOT(AD_G) = op_in(r, "g", n * r->c->a[1], 1.0f, 0);
}

static void adamw_forward(const Ops *o, CaseRun *r, int s) {
    const size_t n = (size_t)r->c->a[0];
    for (int t = 1; t <= r->c->a[1]; t++)
        o->adamw(o, F(s, AD_P), F(s, AD_G) + (t - 1) * n, F(s, AD_M), F(s, AD_V), n, 1e-3f, 0.9f,
                 0.95f, 1e-8f, 0.1f, 0.7f, t);
}

static const OpKind K_ADAMW = {.name = "adamw", .entries = "adamw", .label = adamw_label,
                               .declare = adamw_declare, .forward = adamw_forward};

/* adamw_ranges: the same block cut into R ranges (a: n, steps, R; R 3 by
 * default: a grown model's row segments), each with its own lr, decay and
 * step count; `steps` updates. R above 32 takes several CUDA launches. */
static void adamw_ranges_forward(const Ops *o, CaseRun *r, int s) {
    const size_t n = (size_t)r->c->a[0];
    const int R = r->c->a[2] ? r->c->a[2] : 3;
    AdamwRange *rg = op_xmalloc(sizeof *rg * (size_t)R);
    for (int t = 1; t <= r->c->a[1]; t++) {
        for (int k = 0; k < R; k++) {
            size_t o0 = n * (size_t)k / (size_t)R, o1 = n * (size_t)(k + 1) / (size_t)R;
            rg[k] = (AdamwRange){.p = F(s, AD_P) + o0, .g = F(s, AD_G) + (t - 1) * n + o0,
                                 .m = F(s, AD_M) + o0, .v = F(s, AD_V) + o0, .n = o1 - o0,
                                 .lr = 1e-3f * (1 + k % 3), .weight_decay = k % 3 == 1 ? 0.0f : 0.1f,
                                 .t = t + 4 * (k % 3)};
        }
        o->adamw_ranges(o, rg, R, 0.9f, 0.95f, 1e-8f, 0.7f);
    }
    free(rg);
}

static const OpKind K_ADAMW_RANGES = {.name = "adamw_ranges", .entries = "adamw_ranges",
                                      .label = adamw_label, .declare = adamw_declare,
                                      .forward = adamw_ranges_forward};

/* MODE_GRAD: adamw_ranges is adamw on each range, bit for bit, with as many
 * ranges as one launch takes and more (the CUDA backend batches them). */
static void adamw_ranges_vs_adamw(OpHarness *h, const OpCase *c) {
    const Ops *O = h->side[SIDE_REF];
    const int R = c->a[0];
    const size_t per = 37, n = per * (size_t)R;
    float *x[2][4];
    for (int j = 0; j < 4; j++) {
        x[0][j] = op_xmalloc(n * 4), x[1][j] = op_xmalloc(n * 4);
        for (size_t i = 0; i < n; i++) x[0][j][i] = j == 3 ? fabsf(op_rand(h, 0.1f)) : op_rand(h, 1);
        memcpy(x[1][j], x[0][j], n * 4);
    }
    AdamwRange *rg = op_xmalloc(sizeof *rg * (size_t)R);
    for (int k = 0; k < R; k++) {
        size_t o0 = per * (size_t)k;
        rg[k] = (AdamwRange){.p = x[0][0] + o0, .g = x[0][1] + o0, .m = x[0][2] + o0, .v = x[0][3] + o0,
                             .n = per - (size_t)(k % 3), .lr = 1e-3f * (1 + k % 4), .weight_decay = k % 2 ? 0.1f : 0.0f,
                             .t = 1 + k % 5};
        O->adamw(O, x[1][0] + o0, x[1][1] + o0, x[1][2] + o0, x[1][3] + o0, rg[k].n, rg[k].lr, 0.9f, 0.95f,
                 1e-8f, rg[k].weight_decay, 0.6f, rg[k].t);
    }
    O->adamw_ranges(O, rg, R, 0.9f, 0.95f, 1e-8f, 0.6f);
    int same = 1;
    for (int j = 0; j < 4; j += j == 0 ? 2 : 1) /* p, m, v (g is read only) */
        same &= memcmp(x[0][j], x[1][j], n * 4) == 0;
    char name[64];
    snprintf(name, sizeof name, "adamw_ranges_%d_equals_adamw_per_range", R);
    check(same, name, "p, m or v differ");
    for (int j = 0; j < 4; j++) free(x[0][j]), free(x[1][j]);
    free(rg);
}

static const OpKind K_ADAMW_RANGES_VS_ADAMW = {.name = "adamw_ranges_vs_adamw", .entries = "adamw_ranges",
                                               .custom = adamw_ranges_vs_adamw};

/* MODE_GRAD: one step against the formula in double. */
static void adamw_formula(OpHarness *h, const OpCase *c) {
    const Ops *O = h->side[SIDE_REF];
    const size_t n = (size_t)c->a[0];
    float *p = op_xmalloc(n * 4), *g = op_xmalloc(n * 4), *m = op_xmalloc(n * 4), *v = op_xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) p[i] = op_rand(h, 1), g[i] = op_rand(h, 1), m[i] = op_rand(h, 0.1f);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(op_rand(h, 1)) * 0.01f;
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    const int t = 3;
    double *ref = op_xmalloc(n * sizeof(double)), worst = 0;
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i] * gs, mi = b1 * (double)m[i] + (1 - b1) * gi,
               vi = b2 * (double)v[i] + (1 - b2) * gi * gi;
        double mh = mi / (1 - pow(b1, t)), vh = vi / (1 - pow(b2, t));
        ref[i] = p[i] - lr * (mh / (sqrt(vh) + eps) + wd * p[i]);
    }
    O->adamw(O, p, g, m, v, n, lr, b1, b2, eps, wd, gs, t);
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(p[i] - ref[i]) / fmax(fabs(ref[i]), 1e-3));
    check_err("adamw_matches_the_formula", "max rel err", worst, c->tol);
    free(p), free(g), free(m), free(v), free(ref);
}

static const OpKind K_ADAMW_FORMULA = {.name = "adamw_formula", .entries = "adamw",
                                       .custom = adamw_formula};

/* ---------------------------------------------------------------- custom cases */
/* In tests/op_custom.c: memory ops, recorded decoding, the sampler's
 * recorded step, the bf16 weights mirror, the whole model's gradient. */
extern const OpKind K_MEMORY, K_DECODE_RECORDED, K_SAMPLER_RECORDED, K_BF16_MIRROR, K_BF16_MIRROR_RANGES, K_MODEL,
    K_CACHE_WEIGHTS, K_GEMM_TUNING, K_SAMPLER_VS_CPU, K_SAMPLE, K_SAMPLER_LOOKAHEAD;

/* ---------------------------------------------------------------- the table */

#define G MODE_GRAD
#define BK MODE_BACKEND
#define FP32 MATMUL_FP32
#define BF16 MATMUL_BF16
/* Pattention: accumulate_dx 1 then 0 (the latter: dX overwritten whatever it held) */
#define PATT(pr, mode, Gs, N, d, n, dout, norm, xa, ya) \
    {.kind = &K_PATTENTION, .modes = BK, .prec = pr, .a = {mode, Gs, N, d, n, dout, norm, xa, ya, 1, 0}}, \
    {.kind = &K_PATTENTION, .modes = BK, .prec = pr, .a = {mode, Gs, N, d, n, dout, norm, xa, ya, 0, 0}}
/* an attention-tensor dX: only ever overwritten */
#define PATT_XATTN(pr, mode, Gs, N, d, n, dout, norm) \
    {.kind = &K_PATTENTION, .modes = BK, .prec = pr, .a = {mode, Gs, N, d, n, dout, norm, 1, 0, 0, 0}}
#define PATT_IN(pr, mode, Gs, N, d, n, dout, norm, xa, ya) \
    PATT_IN_##xa(pr, mode, Gs, N, d, n, dout, norm, ya)
#define PATT_IN_0(pr, mode, Gs, N, d, n, dout, norm, ya) PATT(pr, mode, Gs, N, d, n, dout, norm, 0, ya)
#define PATT_IN_1(pr, mode, Gs, N, d, n, dout, norm, ya) PATT_XATTN(pr, mode, Gs, N, d, n, dout, norm)
#define PATT3(pr, Gs, N, d, n, dout) \
    PATT(pr, 0, Gs, N, d, n, dout, 0, 0, 0), PATT(pr, 1, Gs, N, d, n, dout, 0, 0, 0), \
    PATT(pr, 2, Gs, N, d, n, dout, 0, 0, 0)
/* As in a block: q, k, v (a normalized input, attention-tensor outputs), o (an attention-tensor input). */
#define PATT_ATTN_G3(pr, N, d, n) PATT(pr, 0, 3, N, d, n, d, NORM_LAYER, 0, 1)
#define PATT_ATTN_G1(pr, N, d, n) PATT_XATTN(pr, 0, 1, N, d, n, d, 0)
#define PATT_RES(pr, mode, N, d, n) {.kind = &K_PATTENTION, .modes = BK, .prec = pr, .a = {mode, 1, N, d, n, d, 0, 0, 0, 0, 1}}
/* the baselines' MLP (an activation mode) */
#define PATT_ACT(mode) \
    PATT(FP32, mode, 1, 37, 24, 53, 19, 0, 0, 0), /* odd n: one unit per thread */ \
    PATT(FP32, mode, 1, 37, 24, 64, 19, 0, 0, 0), /* vectors */ \
    PATT(FP32, mode, 3, 37, 24, 56, 24, 0, 0, 0), /* a group */ \
    PATT(FP32, mode, 1, 37, 128, 96, 128, NORM_LAYER, 0, 0), \
    PATT(FP32, mode, 1, 37, 128, 96, 128, NORM_RMS, 0, 0), \
    PATT(BF16, mode, 1, 300, 96, 200, 96, 0, 0, 0), \
    PATT(BF16, mode, 1, 64, 128, 512, 128, NORM_RMS, 0, 0), \
    PATT(BF16, mode, 1, 50, 32, 53, 24, NORM_LAYER, 0, 0), /* odd n */ \
    PATT(BF16, mode, 3, 64, 32, 72, 32, 0, 0, 0), \
    PATT_RES(FP32, mode, 37, 24, 56), PATT_RES(BF16, mode, 300, 96, 384)
/* the few-rows (decoding) path of every mode: one row or a few, groups,
 * each input kind, value rows in one split or several (n > 64), a residual;
 * past 4 rows, the GEMMs on the same shapes: 64 streams, 37 rows, 300 rows.
 * With TF_CUDA_FUSED_SITES on sm_90, a Pattention of n >= 16 rows runs as one
 * cluster kernel instead of two (test_cuda_fused_sites.sh runs these on it) */
#define PATT_FEW_ROWS(mode) \
    PATT(FP32, mode, 1, 1, 128, 96, 128, NORM_LAYER, 0, 0), \
    PATT(FP32, mode, 1, 3, 64, 24, 132, NORM_RMS, 0, 0), \
    PATT(FP32, mode, 3, 1, 64, 53, 64, NORM_LAYER, 0, 1), \
    PATT_XATTN(FP32, mode, 1, 4, 96, 150, 96, 0), \
    PATT_RES(FP32, mode, 1, 64, 100), PATT_RES(FP32, mode, 2, 256, 20), \
    PATT(FP32, mode, 3, 64, 128, 72, 128, NORM_LAYER, 0, 1), \
    PATT(FP32, mode, 1, 37, 96, 130, 64, NORM_RMS, 0, 0), \
    PATT_RES(FP32, mode, 64, 128, 200), \
    PATT(FP32, mode, 1, 300, 128, 96, 128, NORM_LAYER, 0, 0), \
    PATT_RES(FP32, mode, 1, 384, 1152) /* shakespeare's FFN: on sm_90 its values stay in global memory */
/* the same under bf16 (bf16 keys and values, attention tensors and scores),
 * backward included (it reads the bf16 scores and xn the forward left),
 * and an attention tensor both in and out; past 4 rows, the GEMMs */
#define PATT_FEW_ROWS_BF16(mode) \
    PATT(BF16, mode, 1, 1, 128, 96, 128, NORM_LAYER, 0, 0), \
    PATT(BF16, mode, 1, 3, 64, 24, 132, NORM_RMS, 0, 0), \
    PATT(BF16, mode, 1, 2, 64, 40, 64, 0, 0, 0), /* an fp32 input, rounded */ \
    PATT(BF16, mode, 3, 1, 64, 53, 64, NORM_LAYER, 0, 1), \
    PATT(BF16, mode, 3, 4, 384, 288, 384, NORM_LAYER, 0, 1), /* shakespeare's q, k, v */ \
    PATT_XATTN(BF16, mode, 1, 4, 96, 150, 96, 0), \
    {.kind = &K_PATTENTION, .modes = BK, .prec = BF16, .a = {mode, 1, 2, 64, 40, 64, 0, 1, 1, 0, 0}}, \
    PATT_RES(BF16, mode, 1, 64, 100), PATT_RES(BF16, mode, 2, 256, 20), \
    PATT_RES(BF16, mode, 1, 384, 1152), /* shakespeare's FFN */ \
    PATT(BF16, mode, 3, 64, 128, 72, 128, NORM_LAYER, 0, 1)
/* frozen weights: no dK and/or dV (now: NO_DK | NO_DV bits), one accumulate_dx */
#define PATT_NOW(pr, mode, Gs, N, d, n, dout, norm, xa, ya, acc, now) \
    {.kind = &K_PATTENTION, .modes = BK, .prec = pr, .a = {mode, Gs, N, d, n, dout, norm, xa, ya, acc, 0, now}}
#define PATT_FROZEN(pr) \
    PATT_NOW(pr, PNORM_L2_GELU, 3, 64, 128, 96, 128, NORM_LAYER, 0, 1, 0, NO_DK | NO_DV), /* q, k, v */ \
    PATT_NOW(pr, PNORM_L2_GELU, 1, 37, 100, 54, 100, 0, 1, 0, 0, NO_DK | NO_DV),          /* o */ \
    PATT_NOW(pr, PNORM_L2_GELU, 1, 37, 100, 54, 100, NORM_LAYER, 0, 0, 1, NO_DK),         /* ffn */ \
    PATT_NOW(pr, PNORM_SOFTMAX, 1, 37, 100, 54, 100, NORM_LAYER, 0, 0, 0, NO_DV), \
    PATT_NOW(pr, ACT_GELU, 1, 37, 128, 96, 128, NORM_LAYER, 0, 0, 1, NO_DK | NO_DV),      /* MLPs */ \
    PATT_NOW(pr, ACT_SWIGLU, 1, 64, 128, 200, 128, NORM_RMS, 0, 0, 1, NO_DK | NO_DV)
#define LIN_FROZEN(pr) \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {3, 64, 128, 128, NORM_RMS, 0, 1, 0, 0, 1}}, /* q, k, v */ \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {1, 64, 128, 128, 0, 1, 0, 0, 1, 1}},        /* o */ \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {1, 37, 96, 96, NORM_LAYER, 0, 0, 1, 0, 1}}, \
    /* one member of q, k, v whose dW alone is wanted (LoRA on q, v): no dX */ \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {1, 64, 128, 128, NORM_RMS, 0, 1, 0, 0, LI_NO_DX}}, \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {1, 37, 96, 96, 0, 0, 0, 0, 0, LI_NO_DX}}, \
    /* LoRA's low-rank backward (adapters.c): A (r x d) on the attention-tensor rows, \
     * its dW alone; B (d x r) on fp32 rows, dY an attention tensor (q, k, v) or \
     * not (o), dW and dX; r 8 and 3 (rows of an odd width) */ \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {1, 64, 128, 8, 0, 1, 0, 0, 0, LI_NO_DX}}, \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {1, 64, 8, 128, 0, 0, 1, 0, 0, 0}}, \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {1, 37, 96, 3, 0, 1, 0, 0, 0, LI_NO_DX}}, \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {1, 37, 3, 96, 0, 0, 0, 0, 0, 0}}
/* linear: accumulate_dx 1 then 0; an attention-tensor input only overwritten */
#define LIN(pr, Gs, N, din, dout, norm, xa, ya, res) \
    LIN_##xa(pr, Gs, N, din, dout, norm, ya, res)
#define LIN_0(pr, Gs, N, din, dout, norm, ya, res) \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {Gs, N, din, dout, norm, 0, ya, 1, res}}, \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {Gs, N, din, dout, norm, 0, ya, 0, res}}
#define LIN_1(pr, Gs, N, din, dout, norm, ya, res) \
    {.kind = &K_LINEAR, .modes = BK, .prec = pr, .a = {Gs, N, din, dout, norm, 1, ya, 0, res}}
#define LIN_ALL(pr) \
    LIN(pr, 1, 37, 24, 19, 0, 0, 0, 0), \
    LIN(pr, 3, 37, 128, 128, NORM_LAYER, 0, 1, 0), /* q, k, v */ \
    LIN(pr, 3, 64, 128, 128, NORM_RMS, 0, 1, 0), \
    LIN(pr, 3, 37, 53, 53, NORM_RMS, 0, 0, 0), /* C not a multiple of 128 */ \
    LIN(pr, 1, 64, 128, 128, 0, 1, 0, 1), /* o: attention in, residual */ \
    LIN(pr, 1, 37, 96, 96, 0, 0, 0, 1), \
    LIN(pr, 2, 300, 96, 384, NORM_LAYER, 0, 0, 0)
#define DECODE(pr) \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {1, 1, 0, 16, 2, 16, 4}},      /* the first token */ \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {1, 1, 200, 256, 6, 64, 16}},  /* one token, a long cache */ \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {3, 1, 37, 64, 4, 32, 8}},     /* a batch of streams */ \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {2, 19, 0, 64, 3, 24, 6}},     /* a prefill: causal among new */ \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {2, 7, 30, 64, 2, 128, 32}},   /* a chunk after a history */ \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {1, 1, 1000, 1024, 12, 64, 16}}, /* gpt2-124m shape */ \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {2, 1, 5, 32, 2, 128, 0}},     /* no rotation, hd 128 */ \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {1, 1, 9, 16, 2, 24, 8}},      /* hd 24: the chunk path */ \
    {.kind = &K_DECODE, .modes = BK, .prec = pr, .a = {64, 1, 255, 256, 6, 64, 16}}  /* 64 streams, a full cache */

const OpCase OP_CASES[] = {
    /* ---- MODE_GRAD: the CPU against finite differences (h 1e-2) ---- */
    {.kind = &K_MATMUL_NAIVE, .modes = G, .prec = FP32, .a = {5, 7, 6, 0, 0}, .f = {1.5f, 0.5f}, .tol = 1e-4},
    {.kind = &K_MATMUL_NAIVE, .modes = G, .prec = FP32, .a = {5, 7, 6, 0, 1}, .f = {1.5f, 0.5f}, .tol = 1e-4},
    {.kind = &K_MATMUL_NAIVE, .modes = G, .prec = FP32, .a = {5, 7, 6, 1, 0}, .f = {1.5f, 0.5f}, .tol = 1e-4},
    {.kind = &K_MATMUL_NAIVE, .modes = G, .prec = FP32, .a = {5, 7, 6, 1, 1}, .f = {1.5f, 0.5f}, .tol = 1e-4},
    {.kind = &K_LAYERNORM, .modes = G, .prec = FP32, .a = {5, 12, 0}, .tol = 2e-2},
    {.kind = &K_LAYERNORM, .modes = G, .prec = FP32, .a = {5, 12, 1}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_L2_GELU, 1, 6, 10, 13, 7, 0, 0, 0, 1}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_GELU_L2, 1, 6, 10, 13, 7, 0, 0, 0, 1}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_SOFTMAX, 1, 6, 10, 13, 7, 0, 0, 0, 1}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_L2_GELU, 3, 6, 10, 13, 7, 0, 0, 0, 1}, .tol = 2e-2}, /* q, k, v */
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_L2_GELU, 3, 6, 10, 13, 7, NORM_LAYER, 0, 0, 1}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_SOFTMAX, 1, 6, 10, 13, 7, NORM_LAYER, 0, 0, 1}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {ACT_GELU, 1, 6, 10, 13, 7, NORM_LAYER, 0, 0, 1}, .tol = 2e-2}, /* transformer MLP */
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {ACT_SWIGLU, 1, 6, 10, 13, 7, NORM_RMS, 0, 0, 1}, .tol = 2e-2}, /* transformerpp MLP */
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {ACT_SWIGLU, 1, 6, 10, 13, 7, 0, 0, 0, 1}, .tol = 2e-2},
    {.kind = &K_RMSNORM, .modes = G, .prec = FP32, .a = {5, 12, 1}, .tol = 2e-2},
    /* frozen weights (NULL weight gradients): dX still right, and as with them */
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_L2_GELU, 3, 6, 10, 13, 7, NORM_LAYER, 0, 0, 1, 0, NO_DK | NO_DV}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_SOFTMAX, 1, 6, 10, 13, 7, 0, 0, 0, 1, 0, NO_DK}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {PNORM_GELU_L2, 1, 6, 10, 13, 7, 0, 0, 0, 0, 0, NO_DV}, .tol = 2e-2},
    {.kind = &K_PATTENTION, .modes = G, .prec = FP32, .a = {ACT_SWIGLU, 1, 6, 10, 13, 7, NORM_RMS, 0, 0, 1, 0, NO_DK | NO_DV}, .tol = 2e-2},
    {.kind = &K_LINEAR, .modes = G, .prec = FP32, .a = {3, 6, 10, 7, NORM_RMS, 0, 0, 1, 0, 1}, .tol = 2e-2},
    {.kind = &K_RMSNORM, .modes = G, .prec = FP32, .a = {5, 12, 1, 1}, .tol = 2e-2},
    {.kind = &K_LAYERNORM, .modes = G, .prec = FP32, .a = {5, 12, 1, 1}, .tol = 2e-2},
    {.kind = &K_LINEAR, .modes = G, .prec = FP32, .a = {1, 6, 10, 7, 0, 0, 0, 1, 0}, .tol = 2e-2},
    {.kind = &K_LINEAR, .modes = G, .prec = FP32, .a = {3, 6, 10, 7, NORM_LAYER, 0, 0, 1, 0}, .tol = 2e-2}, /* q, k, v */
    {.kind = &K_LINEAR, .modes = G, .prec = FP32, .a = {3, 6, 10, 7, NORM_RMS, 0, 0, 1, 0}, .tol = 2e-2},
    {.kind = &K_ROPE, .modes = G, .prec = FP32, .a = {2, 5, 3, 8, 4}, .tol = 1e-2, .probes = 80},
    {.kind = &K_ATTENTION, .modes = G, .prec = FP32, .a = {2, 7, 3, 4, 0}, .tol = 2e-2, .probes = 80},
    {.kind = &K_CROSS_ENTROPY, .modes = G, .prec = FP32, .a = {6, 9, 0}, .f = {2.0f}, .tol = 1e-2},
    {.kind = &K_EMBEDDING, .modes = G, .prec = FP32, .a = {9, 5, 4}, .tol = 1e-2}, /* repeated tokens */
    {.kind = &K_DROPOUT, .modes = G, .prec = FP32, .a = {4000, 77, 0}, .f = {0.3f}, .tol = 1e-2},
    {.kind = &K_DROPOUT_ADD, .modes = G, .prec = FP32, .a = {4000, 91, 0}, .f = {0.0f}},
    {.kind = &K_DROPOUT_ADD, .modes = G, .prec = FP32, .a = {4000, 91, 0}, .f = {0.3f}},
    {.kind = &K_SUM_SQUARES, .modes = G, .prec = FP32, .a = {1000}, .tol = 1e-5},
    {.kind = &K_ADAMW_FORMULA, .modes = G, .prec = FP32, .a = {50}, .tol = 1e-5},
    {.kind = &K_ADAMW_RANGES_VS_ADAMW, .modes = G, .prec = FP32, .a = {3}},
    {.kind = &K_ADAMW_RANGES_VS_ADAMW, .modes = G, .prec = FP32, .a = {70}},
    /* the whole model: arch, pnorm; f: dropout, rope fraction */
    {.kind = &K_MODEL, .modes = G, .prec = FP32, .a = {ARCH_TOKENFORMER, PNORM_L2_GELU}, .f = {0.0f, 0.25f}, .tol = 3e-2, .probes = 12},
    {.kind = &K_MODEL, .modes = G, .prec = FP32, .a = {ARCH_TOKENFORMER, PNORM_L2_GELU}, .f = {0.2f, 1.0f}, .tol = 3e-2, .probes = 12},
    {.kind = &K_MODEL, .modes = G, .prec = FP32, .a = {ARCH_TOKENFORMER, PNORM_GELU_L2}, .f = {0.0f, 0.5f}, .tol = 3e-2, .probes = 12},
    {.kind = &K_MODEL, .modes = G, .prec = FP32, .a = {ARCH_TOKENFORMER, PNORM_SOFTMAX}, .f = {0.0f, 0.5f}, .tol = 3e-2, .probes = 12},
    {.kind = &K_MODEL, .modes = G, .prec = FP32, .a = {ARCH_TRANSFORMER, 0}, .f = {0.0f, 0.25f}, .tol = 3e-2, .probes = 12},
    {.kind = &K_MODEL, .modes = G, .prec = FP32, .a = {ARCH_TRANSFORMER, 0}, .f = {0.2f, 0.5f}, .tol = 3e-2, .probes = 12},
    {.kind = &K_MODEL, .modes = G, .prec = FP32, .a = {ARCH_TRANSFORMERPP, 0}, .f = {0.0f, 1.0f}, .tol = 3e-2, .probes = 12},
    {.kind = &K_MODEL, .modes = G, .prec = FP32, .a = {ARCH_TRANSFORMERPP, 0}, .f = {0.2f, 1.0f}, .tol = 3e-2, .probes = 12},

    /* ---- MODE_BACKEND: a backend against the CPU ---- */
    {.kind = &K_MEMORY, .modes = BK, .prec = FP32},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {37, 53, 24, 0, 0}, .f = {0.7f, 0.3f}},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {53, 19, 37, 0, 0}, .f = {1.0f, 0.0f}},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {37, 53, 24, 0, 1}, .f = {0.7f, 0.3f}},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {53, 19, 37, 0, 1}, .f = {1.0f, 0.0f}},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {37, 53, 24, 1, 0}, .f = {0.7f, 0.3f}},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {53, 19, 37, 1, 0}, .f = {1.0f, 0.0f}},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {37, 53, 24, 1, 1}, .f = {0.7f, 0.3f}},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {53, 19, 37, 1, 1}, .f = {1.0f, 0.0f}},
    {.kind = &K_EMBEDDING, .modes = BK, .prec = FP32, .a = {37, 24, 11}},
    {.kind = &K_LAYERNORM, .modes = BK, .prec = FP32, .a = {37, 53, 1}},
    {.kind = &K_LAYERNORM, .modes = BK, .prec = FP32, .a = {37, 53, 0}},
    {.kind = &K_LAYERNORM, .modes = BK, .prec = FP32, .a = {5, 800, 1}},
    {.kind = &K_LAYERNORM, .modes = BK, .prec = FP32, .a = {37, 384, 1}}, /* C = 128 V: the vector kernels */
    {.kind = &K_LAYERNORM, .modes = BK, .prec = FP32, .a = {37, 384, 0}},
    {.kind = &K_LAYERNORM, .modes = BK, .prec = FP32, .a = {9, 768, 1}},
    PATT3(FP32, 1, 37, 24, 53, 19),
    PATT3(FP32, 1, 5, 16, 1153, 8),  /* odd n: several windows */
    PATT3(FP32, 1, 37, 24, 54, 19),  /* even n: pairs per lane */
    PATT3(FP32, 1, 9, 16, 1152, 8),
    PATT3(FP32, 1, 5, 16, 2306, 8),  /* pairs, several windows */
    PATT3(FP32, 1, 37, 24, 200, 19), /* n a multiple of 4 */
    PATT3(FP32, 1, 9, 16, 2400, 8),  /* a team, several windows */
    {.kind = &K_ROPE, .modes = BK, .prec = FP32, .a = {2, 13, 3, 8, 4}},
    {.kind = &K_ROPE, .modes = BK, .prec = FP32, .a = {2, 13, 3, 8, 8}},
    {.kind = &K_ROPE, .modes = BK, .prec = FP32, .a = {1, 300, 2, 16, 4}}, /* large t: angles must match the CPU's */
    {.kind = &K_ATTENTION, .modes = BK, .prec = FP32, .a = {2, 13, 3, 8}},
    {.kind = &K_ATTENTION, .modes = BK, .prec = FP32, .a = {1, 70, 2, 16}}, /* rows longer than a warp */
    DECODE(FP32),
    DECODE(BF16),
    {.kind = &K_DECODE_RECORDED, .modes = BK, .prec = FP32},
    {.kind = &K_SAMPLER_RECORDED, .modes = BK, .prec = FP32, .a = {ARCH_TOKENFORMER}},
    {.kind = &K_SAMPLER_RECORDED, .modes = BK, .prec = BF16, .a = {ARCH_TOKENFORMER}},
    {.kind = &K_SAMPLER_RECORDED, .modes = BK, .prec = FP32, .a = {ARCH_TRANSFORMER}},
    {.kind = &K_SAMPLER_RECORDED, .modes = BK, .prec = BF16, .a = {ARCH_TRANSFORMER}},
    {.kind = &K_SAMPLER_RECORDED, .modes = BK, .prec = FP32, .a = {ARCH_TRANSFORMERPP}},
    {.kind = &K_SAMPLER_RECORDED, .modes = BK, .prec = BF16, .a = {ARCH_TRANSFORMERPP}},
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {64, 65, 65, 0}, .f = {0.0f}}, /* argmax, ties */
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {64, 65, 65, 0}, .f = {1.0f}},
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {64, 65, 65, 5}, .f = {0.7f}},
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {9, 65, 65, 1}, .f = {1.0f}},   /* top-1 */
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {9, 65, 65, 64}, .f = {2.0f}},  /* top V-1 */
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {1, 65, 65, 0}, .f = {1.0f}},   /* one stream */
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {5, 1000, 3000, 0}, .f = {1.0f}}, /* a chunk's last rows */
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {3, 50257, 50257, 40}, .f = {0.8f}}, /* gpt2's vocabulary */
    {.kind = &K_SAMPLE, .modes = BK, .prec = FP32, .a = {3, 50257, 50257, 0}, .f = {0.0f}},
    {.kind = &K_SAMPLER_LOOKAHEAD, .modes = BK, .prec = FP32, .a = {ARCH_TOKENFORMER}},
    {.kind = &K_SAMPLER_LOOKAHEAD, .modes = BK, .prec = BF16, .a = {ARCH_TOKENFORMER}},
    {.kind = &K_SAMPLER_LOOKAHEAD, .modes = BK, .prec = FP32, .a = {ARCH_TRANSFORMERPP}},
    {.kind = &K_SAMPLER_VS_CPU, .modes = BK, .prec = FP32, .a = {1}},
    {.kind = &K_SAMPLER_VS_CPU, .modes = BK, .prec = FP32, .a = {3}},
    {.kind = &K_SAMPLER_VS_CPU, .modes = BK, .prec = BF16, .a = {1}},
    {.kind = &K_SAMPLER_VS_CPU, .modes = BK, .prec = BF16, .a = {3}},
    {.kind = &K_DROPOUT, .modes = BK, .prec = FP32, .a = {10007, 12345, 0}, .f = {0.3f}},
    {.kind = &K_DROPOUT, .modes = BK, .prec = FP32, .a = {10007, 12346, 1}, .f = {0.3f}},
    {.kind = &K_DROPOUT_ADD, .modes = BK, .prec = FP32, .a = {10007, 12347, 1}, .f = {0.0f}},
    {.kind = &K_DROPOUT_ADD, .modes = BK, .prec = FP32, .a = {10007, 12347, 1}, .f = {0.3f}},
    {.kind = &K_ELEMENTWISE, .modes = BK, .prec = FP32, .a = {100003, 0}},
    {.kind = &K_ELEMENTWISE, .modes = BK, .prec = FP32, .a = {100003, 1}},
    {.kind = &K_ELEMENTWISE, .modes = BK, .prec = FP32, .a = {100003, 2}},
    {.kind = &K_ELEMENTWISE, .modes = BK, .prec = FP32, .a = {100003, 3}, .f = {-0.37f}},
    {.kind = &K_CROSS_ENTROPY, .modes = BK, .prec = FP32, .a = {37, 67, 1}, .f = {4.0f}},
    {.kind = &K_CROSS_ENTROPY, .modes = BK, .prec = FP32, .a = {9, 700, 1}, .f = {4.0f}},
    {.kind = &K_SUM_SQUARES, .modes = BK, .prec = FP32, .a = {1000003}},
    {.kind = &K_SUM_SQUARES, .modes = BK, .prec = FP32, .a = {37}},
    {.kind = &K_ADAMW, .modes = BK, .prec = FP32, .a = {10007, 5}},
    {.kind = &K_ADAMW_RANGES, .modes = BK, .prec = FP32, .a = {10007, 5}},
    {.kind = &K_ADAMW_RANGES, .modes = BK, .prec = FP32, .a = {10007, 2, 70}},
    /* realistic sizes (the shakespeare preset's shapes): correctness at
     * scale; time per op is `tokenformer bench --profile` or --time here */
    {.kind = &K_PATTENTION, .modes = BK, .prec = FP32, .a = {PNORM_L2_GELU, 1, 4096, 384, 1152, 384, 0, 0, 0, 1, 0}, .f = {0.05f}, .large = 1},
    {.kind = &K_ATTENTION, .modes = BK, .prec = FP32, .a = {4, 256, 6, 64}, .large = 1},
    /* reduced precision in use (an error above fp32's) and still close:
     * tf32 keeps 10 mantissa bits; plain fp32-operand GEMMs run TF32 in
     * bf16 mode too (the Pattentions' bf16 GEMMs below) */
    {.kind = &K_MATMUL, .modes = BK, .prec = MATMUL_TF32, .a = {256, 192, 320, 0, 1}, .f = {1.0f, 0.0f}, .tol = 5e-3},
    {.kind = &K_MATMUL, .modes = BK, .prec = BF16, .a = {256, 192, 320, 1, 0}, .f = {1.0f, 0.5f}, .tol = 5e-3},
    {.kind = &K_MATMUL, .modes = BK, .prec = FP32, .a = {256, 192, 320, 0, 1}, .f = {1.0f, 0.0f}}, /* fp32 again */
    PATT3(BF16, 1, 300, 96, 200, 80),
    PATT(BF16, 0, 1, 50, 32, 53, 24, 0, 0, 0),   /* odd n */
    PATT(BF16, 0, 1, 20, 32, 2400, 24, 0, 0, 0), /* a team, several windows */
    PATT(BF16, 0, 1, 21, 32, 5000, 24, 0, 0, 0), /* long rows */
    PATT3(FP32, 3, 37, 24, 54, 24),              /* the q, k, v group */
    PATT3(BF16, 3, 300, 96, 200, 96),
    PATT(FP32, 0, 3, 37, 24, 53, 24, 0, 0, 0),   /* odd n in a group */
    PATT(FP32, 0, 2, 9, 16, 1152, 16, 0, 0, 0),  /* teams of warps in a group */
    /* LayerNorm inputs (normalized by the op, as in a block): the vector and
     * the scalar LayerNorm kernels, bf16 and fp32 */
    PATT(BF16, 0, 3, 64, 128, 96, 128, NORM_LAYER, 0, 0),
    PATT(BF16, 0, 1, 37, 100, 54, 100, NORM_LAYER, 0, 0),
    PATT(FP32, 0, 3, 37, 128, 54, 128, NORM_LAYER, 0, 0),
    PATT(FP32, 0, 1, 9, 100, 1152, 100, NORM_LAYER, 0, 0),
    /* attention tensors in and out: bf16 under bf16, fp32 otherwise */
    PATT_ATTN_G3(BF16, 64, 128, 96),
    PATT_ATTN_G1(BF16, 37, 100, 54),
    PATT_ATTN_G3(FP32, 37, 24, 54),
    PATT_ATTN_G1(FP32, 9, 16, 1152),
    PATT_RES(FP32, PNORM_L2_GELU, 37, 24, 54),
    PATT_RES(BF16, PNORM_L2_GELU, 300, 96, 200),
    PATT_RES(BF16, PNORM_L2_GELU, 64, 128, 1152), /* a team of warps */
    {.kind = &K_ROPE, .modes = BK, .prec = BF16, .a = {2, 13, 3, 8, 8}, .tol = 1e-2},
    {.kind = &K_ROPE, .modes = BK, .prec = BF16, .a = {1, 300, 2, 16, 4}, .tol = 1e-2},
    {.kind = &K_BF16_MIRROR, .modes = BK, .prec = BF16},
    {.kind = &K_CACHE_WEIGHTS, .modes = BK, .prec = BF16},
    {.kind = &K_GEMM_TUNING, .modes = BK, .prec = BF16},
    /* after cache_weights, which measures the memory its copy takes: this one leaves the largest mirror */
    {.kind = &K_BF16_MIRROR_RANGES, .modes = BK, .prec = BF16},
    /* the fused (flash) attention of bf16, q and k scaled up */
    {.kind = &K_ATTENTION, .modes = BK, .prec = BF16, .a = {2, 100, 3, 64, 1}, .f = {2.0f}}, /* T not a multiple of the 64-row tile */
    {.kind = &K_ATTENTION, .modes = BK, .prec = BF16, .a = {3, 257, 2, 64, 1}, .f = {2.0f}},
    {.kind = &K_ATTENTION, .modes = BK, .prec = BF16, .a = {4, 256, 12, 64, 1}, .f = {2.0f}},
    {.kind = &K_ATTENTION, .modes = BK, .prec = BF16, .a = {2, 1024, 4, 64, 1}, .f = {2.0f}},
    {.kind = &K_ATTENTION, .modes = BK, .prec = BF16, .a = {3, 1, 5, 64, 1}, .f = {2.0f}}, /* T = 1 */
    {.kind = &K_ATTENTION, .modes = BK, .prec = BF16, .a = {2, 77, 3, 32, 1}, .f = {2.0f}},
    {.kind = &K_ATTENTION, .modes = BK, .prec = BF16, .a = {2, 130, 2, 128, 1}, .f = {2.0f}},
    {.kind = &K_ATTENTION, .modes = BK, .prec = BF16, .a = {2, 37, 3, 16}}, /* bf16 tensors, a head size without kernels */
    /* the baseline archs' ops */
    {.kind = &K_RMSNORM, .modes = BK, .prec = FP32, .a = {37, 53, 1}},
    {.kind = &K_RMSNORM, .modes = BK, .prec = FP32, .a = {37, 53, 0}},
    {.kind = &K_RMSNORM, .modes = BK, .prec = FP32, .a = {37, 384, 1}}, /* C = 128 V: the vector kernels */
    {.kind = &K_RMSNORM, .modes = BK, .prec = FP32, .a = {9, 768, 0}},
    {.kind = &K_RMSNORM, .modes = BK, .prec = FP32, .a = {5, 800, 1}},
    PATT_ACT(ACT_GELU),
    PATT_ACT(ACT_SWIGLU),
    PATT_FEW_ROWS(PNORM_L2_GELU),
    PATT_FEW_ROWS(PNORM_GELU_L2),
    PATT_FEW_ROWS(PNORM_SOFTMAX),
    PATT_FEW_ROWS(ACT_GELU),
    PATT_FEW_ROWS(ACT_SWIGLU),
    PATT_FEW_ROWS_BF16(PNORM_L2_GELU),
    PATT_FEW_ROWS_BF16(PNORM_GELU_L2),
    PATT_FEW_ROWS_BF16(PNORM_SOFTMAX),
    PATT_FEW_ROWS_BF16(ACT_GELU),
    PATT_FEW_ROWS_BF16(ACT_SWIGLU),
    /* the fused RMS input of the Pattention modes too */
    PATT(FP32, 0, 3, 37, 53, 54, 53, NORM_RMS, 0, 0),
    PATT(BF16, 0, 3, 64, 128, 96, 128, NORM_RMS, 0, 1),
    LIN_ALL(FP32),
    LIN_ALL(BF16),
    /* frozen weights (train --freeze-old): NULL weight gradients, dX as with them */
    PATT_FROZEN(FP32),
    PATT_FROZEN(BF16),
    LIN_FROZEN(FP32),
    LIN_FROZEN(BF16),
    {.kind = &K_RMSNORM, .modes = BK, .prec = FP32, .a = {37, 53, 1, 1}},
    {.kind = &K_RMSNORM, .modes = BK, .prec = FP32, .a = {37, 384, 1, 1}},
    {.kind = &K_LAYERNORM, .modes = BK, .prec = FP32, .a = {37, 384, 1, 1}},
    {.kind = &K_EMBEDDING, .modes = BK, .prec = FP32, .a = {37, 24, 11, 1}},
    /* fp32 again: back on the cuBLAS path */
    {.kind = &K_ATTENTION, .modes = BK, .prec = FP32, .a = {2, 13, 3, 8}},
    {.kind = &K_ATTENTION, .modes = BK, .prec = FP32, .a = {2, 100, 2, 64}},
};
const int OP_N_CASES = (int)(sizeof OP_CASES / sizeof *OP_CASES);

/* ---------------------------------------------------------------- coverage */

/* Every entry of the Ops table, by name: ops.h's list of them. */
static const char *const OP_ENTRIES[] = {
#define OP_ENTRY_NAME(kind, ret, name, params, args) #name,
    OPS_LIST(OP_ENTRY_NAME)
#undef OP_ENTRY_NAME
};

/* Entries that need no case in a mode, and why. */
static const struct {
    const char *entry;
    int modes;
    const char *why;
} OP_EXEMPT[] = {
    {"memory_in_use", G | BK, "a figure for logs, no result to check"},
    {"set_precision", G, "the CPU computes in fp32 only"},
    {"set_precision", BK, "every reduced-precision case sets it"},
    {"attn_dtype", G | BK, "the harness types attention tensors by it"},
    {"set_gemm_tuning", G, "the CPU chooses no GEMM kernels"},
    {"alloc", G, "memory, no math"},
    {"free", G, "memory, no math"},
    {"to_device", G, "memory, no math"},
    {"to_host", G, "memory, no math"},
    {"to_host_start", G, "memory, no math"},
    {"to_host_wait", G, "memory, no math"},
    {"zero", G, "memory, no math"},
    {"synchronize", G, "memory, no math"},
    {"copy", G, "memory, no math (rope's cases copy with it)"},
    {"record_begin", G, "the CPU records nothing (NULL)"},
    {"record_end", G, "the CPU records nothing (NULL)"},
    {"replay", G, "the CPU records nothing (NULL)"},
    {"record_free", G, "the CPU records nothing (NULL)"},
    {"decode_step", G, "inference only; the CPU runs the step as it is (ops_decode_step_eager)"},
    {"decode_step_free", G, "inference only; the CPU keeps no recording to free"},
    {"cache_weights", G, "the CPU keeps no copy of the weights (its products take fp32)"},
    {"sample_tokens", G, "a draw, no gradient; the host sampler's code (ops_sample_row) on the CPU"},
    {"attention_decode", G, "inference only, no backward; tests/test_decode.c checks it against rope + attention_forward"},
    {"add", G, "a test helper without a backward"},
    {"accumulate", G, "a test helper without a backward"},
    {"scale", G, "a test helper without a backward"},
};

static int kind_lists(const OpKind *k, const char *entry) {
    size_t len = strlen(entry);
    for (const char *p = k->entries; p && (p = strstr(p, entry)); p += len)
        if ((p == k->entries || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0')) return 1;
    return 0;
}

static int has_case(const char *entry, int mode, const char *drop) {
    for (int i = 0; i < OP_N_CASES; i++) {
        const OpCase *c = &OP_CASES[i];
        if ((c->modes & mode) && kind_lists(c->kind, entry) && !(drop && !strcmp(drop, c->kind->name)))
            return 1;
    }
    return 0;
}

static const char *exemption(const char *entry, int mode) {
    for (size_t i = 0; i < sizeof OP_EXEMPT / sizeof *OP_EXEMPT; i++)
        if (!strcmp(OP_EXEMPT[i].entry, entry) && (OP_EXEMPT[i].modes & mode)) return OP_EXEMPT[i].why;
    return NULL;
}

/* The modes in which an entry has neither a case nor an exemption, as
 * words ("gradient and backend"), or "" when it is covered. */
static void coverage_gap(const char *entry, const char *drop, char *missing, size_t len) {
    static const struct {
        int mode;
        const char *what;
    } modes[2] = {{MODE_GRAD, "gradient"}, {MODE_BACKEND, "backend"}};
    missing[0] = '\0';
    for (int m = 0; m < 2; m++)
        if (!has_case(entry, modes[m].mode, drop) && !exemption(entry, modes[m].mode))
            snprintf(missing + strlen(missing), len - strlen(missing), "%s%s",
                     missing[0] ? " and " : "", modes[m].what);
}

void op_coverage_check(const char *drop) {
    for (size_t e = 0; e < sizeof OP_ENTRIES / sizeof *OP_ENTRIES; e++) {
        char name[96], missing[64];
        coverage_gap(OP_ENTRIES[e], drop, missing, sizeof missing);
        snprintf(name, sizeof name, "op_coverage_%s", OP_ENTRIES[e]);
        check(!missing[0], name,
              "no %s case and no exemption (tests/op_cases.c: add a case or an OP_EXEMPT line)",
              missing);
    }
    /* and the check can fail: without the layernorm cases, their two entries lack them */
    int added = 0;
    for (size_t e = 0; e < sizeof OP_ENTRIES / sizeof *OP_ENTRIES; e++) {
        char with[64], without[64];
        coverage_gap(OP_ENTRIES[e], NULL, with, sizeof with);
        coverage_gap(OP_ENTRIES[e], "layernorm", without, sizeof without);
        added += !with[0] && without[0];
    }
    check(added == 2, "op_coverage_fails_without_the_layernorm_cases",
          "%d entries uncovered without them, not 2", added);
}
