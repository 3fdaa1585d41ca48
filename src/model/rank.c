/* Row ranking through the ops table (see rank.h). The normalized scores S
 * are the backend's saved state, in its own layout (ops.h), so they are not
 * read there: after each forward of the evaluation, every Pattention runs
 * once more on the rows it took, with the values replaced by columns of the
 * identity, whose output is then S itself (exactly: every other product
 * term is 0), in fp32 host-readable rows. */
#include "rank.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "evaluate.h"

/* Identity columns per pass: a block of them costs n * width floats. */
#define RANK_IDENTITY_FLOATS ((size_t)1 << 22)

typedef struct {
    double **colsum; /* per Pattention: sum over tokens of |S_tj| */
    long tokens;
    float *host;     /* N x width scores of one pass */
} Importance;

static void *alloc_or_die(const Ops *o, size_t floats, const char *what) {
    void *p = o->alloc(o, (floats ? floats : 1) * sizeof(float));
    if (!p) tf_die("out of %s memory for %s (%zu floats)", o->name, what, floats);
    return p;
}

/* colsum[j] += sum_t |S_tj| for columns [c0, c0 + width) of Pattention w of layer l. */
static void add_score_columns(Model *m, int l, int w, int c0, int width, double *colsum,
                              float *host) {
    const Ops *o = m->ops;
    int N = m->B * m->T, n = model_patt_rows(m, l, w), d = m->cfg.d_model;
    size_t a_floats, s_floats, da_floats;
    o->pattention_sizes(o, 1, N, n, &a_floats, &s_floats, &da_floats);
    float *A = alloc_or_die(o, a_floats, "ranking scores");
    float *S = alloc_or_die(o, s_floats, "ranking scores");
    float *dA = alloc_or_die(o, da_floats, "ranking scores");
    float *Y = alloc_or_die(o, (size_t)N * width, "ranking scores");
    float *eye = alloc_or_die(o, (size_t)n * width, "ranking identity");
    float *eye_host = tf_calloc((size_t)n * width, sizeof(float), "ranking identity");
    for (int c = 0; c < width; c++) eye_host[(size_t)(c0 + c) * width + c] = 1.0f;
    o->to_device(o, eye, eye_host, (size_t)n * width * sizeof(float));
    free(eye_host);

    PattArgs args = {.X = model_patt_last_input(m, l, w),
                     .K = tensor_f32(&m->params[model_patt_param(m, l, w)].t),
                     .V = eye,
                     .tau = model_patt_tau(m, l, w),
                     .G = 1,
                     .mode = m->cfg.pnorm,
                     .N = N,
                     .d_in = d,
                     .n = n,
                     .d_out = width,
                     .y_attn = 0,
                     .A = A,
                     .S = S,
                     .dA = dA,
                     .Y = Y};
    o->pattention_forward(o, &args);
    o->to_host(o, host, Y, (size_t)N * width * sizeof(float));
    for (int t = 0; t < N; t++)
        for (int c = 0; c < width; c++) colsum[c0 + c] += fabsf(host[(size_t)t * width + c]);
    float *bufs[5] = {A, S, dA, Y, eye};
    for (int i = 0; i < 5; i++) o->free(o, bufs[i]);
}

static int identity_width(int n) {
    size_t w = RANK_IDENTITY_FLOATS / (size_t)n;
    return w < 1 ? 1 : w > (size_t)n ? n : (int)w;
}

static void accumulate_importance(Model *m, void *ctx) {
    Importance *imp = ctx;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            int n = model_patt_rows(m, l, w), width = identity_width(n);
            for (int c0 = 0; c0 < n; c0 += width)
                add_score_columns(m, l, w, c0, n - c0 < width ? n - c0 : width,
                                  imp->colsum[l * PATT_PER_LAYER + w], imp->host);
        }
    imp->tokens += m->B * m->T;
}

float **model_rank_rows(Model *m, const Dataset *d, int batches, uint64_t seed, int *tok,
                        int *tgt) {
    const Ops *o = m->ops;
    int n_patt = m->cfg.n_layer * PATT_PER_LAYER, dm = m->cfg.d_model, widest = 1;
    for (int p = 0; p < n_patt; p++) {
        int n = model_patt_rows(m, p / PATT_PER_LAYER, p % PATT_PER_LAYER);
        if (identity_width(n) > widest) widest = identity_width(n);
    }
    Importance imp = {tf_calloc((size_t)n_patt, sizeof(double *), "importance"), 0,
                      tf_malloc(sizeof(float) * (size_t)m->B_alloc * m->T_alloc * widest,
                                "importance")};
    for (int p = 0; p < n_patt; p++)
        imp.colsum[p] = tf_calloc((size_t)model_patt_rows(m, p / PATT_PER_LAYER, p % PATT_PER_LAYER),
                                  sizeof(double), "importance");
    evaluate_loss_hooked(m, d, SPLIT_VAL, batches, seed, tok, tgt, accumulate_importance, &imp);
    free(imp.host);

    float **score = tf_calloc((size_t)n_patt, sizeof(float *), "importance");
    for (int p = 0; p < n_patt; p++) {
        int l = p / PATT_PER_LAYER, w = p % PATT_PER_LAYER, n = model_patt_rows(m, l, w);
        float *V = tf_malloc(sizeof(float) * (size_t)n * dm, "importance");
        o->to_host(o, V, tensor_f32(&m->params[model_site_output_param(m, l, w)].t),
                   sizeof(float) * (size_t)n * dm);
        score[p] = tf_malloc(sizeof(float) * (size_t)n, "importance");
        for (int j = 0; j < n; j++) {
            double vn = 0.0;
            for (int k = 0; k < dm; k++) vn += (double)V[(size_t)j * dm + k] * V[(size_t)j * dm + k];
            score[p][j] = (float)(imp.colsum[p][j] / (double)imp.tokens * sqrt(vn));
        }
        free(V);
        free(imp.colsum[p]);
    }
    free(imp.colsum);
    return score;
}

void model_free_ranks(const Model *m, float **importance) {
    if (!importance) return;
    for (int p = 0; p < m->cfg.n_layer * PATT_PER_LAYER; p++) free(importance[p]);
    free(importance);
}
