/* Training schedules: learning rate, budgets and growth inside one run. */
#include "schedule.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* ---------------- learning rate ---------------- */

static const char *LR_SCHEDULE_NAMES[] = {"cosine", "wsd"};

int lr_schedule_parse(const char *s) {
    for (int i = 0; i < 2; i++)
        if (!strcmp(s, LR_SCHEDULE_NAMES[i])) return i;
    return -1;
}

const char *lr_schedule_name(int schedule) {
    return schedule == LR_WSD ? LR_SCHEDULE_NAMES[1] : LR_SCHEDULE_NAMES[0];
}

/* The last decay_frac of the stage (at least one iteration) decays linearly
 * from lr to min_lr: lr at its first iteration, min_lr one past the last. */
static float wsd_rate(const TrainConfig *tc, int i, int total) {
    int decay = (int)lround((double)tc->decay_frac * total);
    if (decay < 1) decay = 1;
    if (i < total - decay) return tc->lr;
    double left = (double)(total - i) / (double)decay;
    return tc->min_lr + (float)left * (tc->lr - tc->min_lr);
}

float lr_schedule_at(const TrainConfig *tc, int stage_start, int iter) {
    int i = iter - stage_start, total = tc->max_iters - stage_start;
    if (i < tc->warmup_iters) return tc->lr * (float)(i + 1) / (float)(tc->warmup_iters + 1);
    if (i >= total) return tc->min_lr;
    if (tc->lr_schedule == LR_WSD) return wsd_rate(tc, i, total);
    double ratio = (double)(i - tc->warmup_iters) / (double)(total - tc->warmup_iters);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio));
    return tc->min_lr + (float)coeff * (tc->lr - tc->min_lr);
}

/* ---------------- parsing --grow ---------------- */

typedef struct {
    const char *name;
    GrowOpKind kind;
} OpName;

/* Longest names first: "attn-kv" and "ffn-kv" before "kv" and "ffn". */
static const OpName OP_NAMES[] = {{"attn-kv", GOP_ATTN_KV}, {"ffn-kv", GOP_FFN_KV}, {"layers", GOP_LAYERS},
                                  {"kv", GOP_KV},           {"ffn", GOP_FFN},       {"d", GOP_D}};

static int parse_at(const char *at, GrowPoint *p, char *err) {
    size_t n = strlen(at);
    if (n > 1 && at[n - 1] == '%') {
        char num[32];
        double v;
        snprintf(num, sizeof num, "%.*s", (int)(n - 1), at);
        if (n - 1 >= sizeof num || tf_parse_float(num, 0.0, 100.0, &v) || !(v > 0.0 && v < 100.0))
            return tf_err(err, "--grow: '%s': a percentage must be in (0%%, 100%%) (got '%s')", p->text, at);
        p->at_percent = 1;
        p->percent = v;
        return 0;
    }
    long it;
    if (tf_parse_int(at, 1, 1 << 30, &it))
        return tf_err(err, "--grow: '%s': expected AT as a percentage like 25%% or an iteration >= 1 (got '%s')",
                      p->text, at);
    p->iter = (int)it;
    return 0;
}

/* "layers*2:stack", "layers+2:interleave:copy-zero-out": where new blocks go
 * and what they start as (grow --add-layers N --at A --init I). */
static int parse_mode(char *op, GrowPoint *p, char *err) {
    p->at = GROW_AT_END;
    p->init = -1;
    char *colon = strchr(op, ':');
    if (!colon) return 0;
    *colon = '\0';
    if (p->kind != GOP_LAYERS)
        return tf_err(err, "--grow: '%s': only layers ops take a ':%s' mode", p->text, colon + 1);
    for (char *mode = colon + 1; mode; ) {
        char *next = strchr(mode, ':');
        if (next) *next++ = '\0';
        if (grow_at_parse(mode) >= 0) p->at = grow_at_parse(mode);
        else if (layer_init_parse(mode) >= 0) p->init = layer_init_parse(mode);
        else
            return tf_err(err, "--grow: '%s': expected end, interleave or stack, or zero-out, copy or copy-zero-out "
                               "after layers, got '%s'", p->text, mode);
        mode = next;
    }
    return 0;
}

static int parse_op(char *op, GrowPoint *p, char *err) {
    const OpName *name = NULL;
    for (size_t i = 0; i < sizeof OP_NAMES / sizeof OP_NAMES[0] && !name; i++) {
        size_t n = strlen(OP_NAMES[i].name);
        if (!strncmp(op, OP_NAMES[i].name, n) && (op[n] == '*' || op[n] == '+')) name = &OP_NAMES[i];
    }
    if (!name)
        return tf_err(err, "--grow: '%s': unknown operation '%s' (expected kv, attn-kv, ffn-kv, ffn, layers or d, "
                           "then *F or +N, e.g. kv*2)", p->text, op);
    p->kind = name->kind;
    if (parse_mode(op, p, err)) return -1;
    const char *num = op + strlen(name->name) + 1;
    p->by_factor = op[strlen(name->name)] == '*';
    if (p->by_factor) {
        if (tf_parse_float(num, -1e9, 1e9, &p->factor))
            return tf_err(err, "--grow: '%s': expected a factor after '*', got '%s'", p->text, num);
        if (!(p->factor > 1.0))
            return tf_err(err, "--grow: '%s': the factor must be > 1 (got %s)", p->text, num);
        if (p->kind == GOP_LAYERS && p->factor != floor(p->factor))
            return tf_err(err, "--grow: '%s': layers grow by a whole factor (got %s)", p->text, num);
        if (p->kind == GOP_D && p->factor != 2.0)
            return tf_err(err, "--grow: '%s': d_model grows by d*2 only (got %s)", p->text, num);
    } else {
        long n;
        if (tf_parse_int(num, -PATT_MAX_ROWS, PATT_MAX_ROWS, &n))
            return tf_err(err, "--grow: '%s': expected a count after '+', got '%s'", p->text, num);
        if (n < 1) return tf_err(err, "--grow: '%s': the count must be >= 1 (got %s)", p->text, num);
        if (p->kind == GOP_D) return tf_err(err, "--grow: '%s': d_model grows by d*2 only", p->text);
        p->amount = (int)n;
    }
    return 0;
}

static int parse_point(char *item, GrowPoint *p, char *err) {
    memset(p, 0, sizeof *p);
    snprintf(p->text, sizeof p->text, "%s", item);
    char *colon = strchr(item, ':');
    if (!colon) return tf_err(err, "--grow: '%s': expected AT:OP, e.g. 25%%:kv*2", item);
    *colon = '\0';
    return parse_at(item, p, err) || parse_op(colon + 1, p, err) ? -1 : 0;
}

int grow_schedule_parse(const char *s, GrowSchedule *g, char *err) {
    memset(g, 0, sizeof *g);
    char *copy = tf_malloc(strlen(s) + 1, "--grow");
    strcpy(copy, s);
    int rc = 0;
    char *item = copy;
    while (!rc) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        while (isspace((unsigned char)*item)) item++;
        if (g->n == GROW_SCHEDULE_MAX) rc = tf_err(err, "--grow: more than %d growth points", GROW_SCHEDULE_MAX);
        else rc = parse_point(item, &g->p[g->n++], err);
        if (!comma) break;
        item = comma + 1;
    }
    free(copy);
    return rc;
}

/* ---------------- shapes: what the model looks like after each point ---------------- */

void model_shape_of(const Model *m, ModelShape *s) {
    memset(s, 0, sizeof *s);
    s->cfg = m->cfg;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) s->rows[l * PATT_PER_LAYER + w] = model_patt_rows(m, l, w);
}

static int op_touches_site(GrowOpKind kind, int which) {
    switch (kind) {
    case GOP_KV: return 1;
    case GOP_ATTN_KV: return which != PATT_FFN;
    case GOP_FFN_KV:
    case GOP_FFN: return which == PATT_FFN;
    default: return 0;
    }
}

/* Rows a row op adds to a site of `rows` rows: rows (F - 1) rounded, or N
 * (kv+N gives the FFN 4N, as `grow --kv +N` does). */
static int site_delta(const GrowPoint *op, int which, int rows) {
    if (!op_touches_site(op->kind, which)) return 0;
    if (op->by_factor) return (int)lround(rows * (op->factor - 1.0));
    return op->kind == GOP_KV && which == PATT_FFN ? 4 * op->amount : op->amount;
}

static int check_arch(const ModelShape *s, const GrowPoint *op, char *err) {
    int tf = s->cfg.arch == ARCH_TOKENFORMER;
    const char *arch = arch_name(s->cfg.arch);
    if ((op->kind == GOP_KV || op->kind == GOP_ATTN_KV || op->kind == GOP_FFN_KV) && !tf)
        return tf_err(err, "--grow: '%s': a %s has no parameter tokens (kv ops are tokenformer's); grow its FFN "
                           "width with ffn*F or its depth with layers*F", op->text, arch);
    if (op->kind == GOP_FFN && tf)
        return tf_err(err, "--grow: '%s': a tokenformer's FFN is a Pattention: use ffn-kv*F or ffn-kv+N", op->text);
    return 0;
}

static int shape_grow_rows(ModelShape *s, const GrowPoint *op, char *err) {
    for (int l = 0; l < s->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            int *rows = &s->rows[l * PATT_PER_LAYER + w];
            if (!op_touches_site(op->kind, w)) continue;
            int delta = site_delta(op, w, *rows);
            if (delta < 1)
                return tf_err(err, "--grow: '%s' adds no rows to layer %d %s (%d rows)", op->text, l,
                              model_patt_name(w), *rows);
            if (*rows + delta > PATT_MAX_ROWS)
                return tf_err(err, "--grow: '%s': layer %d %s would have %d rows (at most %d)", op->text, l,
                              model_patt_name(w), *rows + delta, PATT_MAX_ROWS);
            *rows += delta;
        }
    return 0;
}

/* New blocks take the rows of their source block (growth.c's layer map):
 * the one they follow, or (stack) the one they repeat. */
static int shape_grow_layers(ModelShape *s, const GrowPoint *op, char *err) {
    int n_old = s->cfg.n_layer, n_new = op->by_factor ? (int)(n_old * (op->factor - 1.0)) : op->amount;
    if (n_old + n_new > MAX_LAYERS)
        return tf_err(err, "--grow: '%s': %d + %d layers is more than %d", op->text, n_old, n_new, MAX_LAYERS);
    if (op->at == GROW_AT_STACK && n_new % n_old)
        return tf_err(err, "--grow: '%s': stack repeats the whole stack: the %d new layers must be a multiple of %d",
                      op->text, n_new, n_old);
    int old[MAX_LAYERS * PATT_PER_LAYER], j = 0, k = 0;
    size_t layer_bytes = sizeof(int) * PATT_PER_LAYER;
    memcpy(old, s->rows, layer_bytes * (size_t)n_old);
    for (int l = 0; l < n_old; l++) {
        memcpy(&s->rows[j++ * PATT_PER_LAYER], &old[l * PATT_PER_LAYER], layer_bytes);
        while (op->at != GROW_AT_STACK && k < n_new &&
               (op->at == GROW_AT_INTERLEAVE ? (int)(((long)k * n_old) / n_new) : n_old - 1) == l) {
            memcpy(&s->rows[j++ * PATT_PER_LAYER], &old[l * PATT_PER_LAYER], layer_bytes);
            k++;
        }
    }
    for (; op->at == GROW_AT_STACK && k < n_new; k++)
        memcpy(&s->rows[j++ * PATT_PER_LAYER], &old[(k % n_old) * PATT_PER_LAYER], layer_bytes);
    s->cfg.n_layer = n_old + n_new;
    return 0;
}

/* d_model and n_head doubled at the same head size; the baselines' linear
 * sites are d wide and their FFN width doubles too (growth.h). */
static int shape_double_d(ModelShape *s, const GrowPoint *op, char *err) {
    ModelConfig c = s->cfg;
    c.d_model *= 2;
    c.n_head *= 2;
    if (model_config_validate(&c, err))
        return tf_err(err, "--grow: '%s': %d heads over d_model %d cannot double: %.200s", op->text, s->cfg.n_head,
                      s->cfg.d_model, err);
    if (c.arch != ARCH_TOKENFORMER)
        for (int i = 0; i < c.n_layer * PATT_PER_LAYER; i++) s->rows[i] *= 2;
    s->cfg = c;
    return 0;
}

int model_shape_grow(ModelShape *s, const GrowPoint *op, char *err) {
    if (check_arch(s, op, err)) return -1;
    if (op->kind == GOP_D) return shape_double_d(s, op, err);
    return op->kind == GOP_LAYERS ? shape_grow_layers(s, op, err) : shape_grow_rows(s, op, err);
}

double model_shape_flops_per_token(const ModelShape *s, const Ops *ops, char *err) {
    Model m;
    if (model_create_shapes(&m, &s->cfg, s->rows, ops, err)) return -1.0;
    double f = model_train_flops_per_token(&m);
    model_free(&m);
    return f;
}

/* ---------------- the plan: length and growth iterations ---------------- */

/* Iterations of the points given as percentages of the budget, walking the
 * stages' FLOPs; then the length that spends what is left. */
static int plan_by_flops(GrowSchedule *g, const double *fpt, double budget, double tpi, int *max_iters,
                         char *err) {
    int iter = 0;
    double flops = 0.0;
    for (int k = 0; k < g->n; k++) {
        GrowPoint *p = &g->p[k];
        if (p->at_percent) {
            double left = p->percent / 100.0 * budget - flops;
            p->iter = iter + (int)lround(left / (tpi * fpt[k]));
        }
        if (p->iter <= iter) break; /* out of order: grow_schedule_check says so */
        flops += (double)(p->iter - iter) * tpi * fpt[k];
        iter = p->iter;
    }
    double left = budget - flops;
    long end = iter + lround(left / (tpi * fpt[g->n]));
    if (left <= 0.0 || end <= iter) end = iter; /* the last point is past the budget */
    if (end < 1 || end > (1 << 30))
        return tf_err(err, "--flops-budget %.3e gives %ld iterations (must be in [1, 2^30])", budget, end);
    *max_iters = (int)end;
    return 0;
}

static int grow_schedule_check(const GrowSchedule *g, int max_iters, char *err) {
    for (int k = 0; k < g->n; k++) {
        const GrowPoint *p = &g->p[k];
        if (p->iter < 1)
            return tf_err(err, "--grow: '%s' falls before the first iteration (of %d)", p->text, max_iters);
        if (k > 0 && p->iter <= g->p[k - 1].iter)
            return tf_err(err, "--grow: '%s' (iteration %d) is not after '%s' (iteration %d): give the points in "
                               "increasing order", p->text, p->iter, g->p[k - 1].text, g->p[k - 1].iter);
        if (p->iter >= max_iters)
            return tf_err(err, "--grow: '%s' (iteration %d) is at or past the end of the run (iteration %d)",
                          p->text, p->iter, max_iters);
    }
    return 0;
}

int grow_schedule_plan(GrowSchedule *g, const ModelShape *start, const Ops *ops, double flops_budget,
                       double tokens_budget, double tokens_per_iter, int *max_iters, char *err) {
    double fpt[GROW_SCHEDULE_MAX + 1];
    ModelShape *s = tf_malloc(sizeof *s, "model shape");
    *s = *start;
    int rc = (fpt[0] = model_shape_flops_per_token(s, ops, err)) < 0.0 ? -1 : 0;
    for (int k = 0; k < g->n && !rc; k++) {
        rc = model_shape_grow(s, &g->p[k], err);
        if (!rc) {
            if ((fpt[k + 1] = model_shape_flops_per_token(s, ops, err)) < 0.0)
                rc = tf_err(err, "--grow: '%s': the grown model is not valid: %.200s", g->p[k].text, err);
            g->p[k].flops_per_token = fpt[k + 1];
        }
    }
    free(s);
    if (rc) return -1;
    if (flops_budget > 0.0) {
        if (plan_by_flops(g, fpt, flops_budget, tokens_per_iter, max_iters, err)) return -1;
    } else {
        if (tokens_budget > 0.0) {
            double n = tokens_budget / tokens_per_iter;
            if (!(n >= 0.5 && n < (double)(1 << 30)))
                return tf_err(err, "--tokens-budget %.3e is %.3g iterations of %.0f tokens (must be in [1, 2^30])",
                              tokens_budget, n, tokens_per_iter);
            *max_iters = (int)lround(n);
        }
        for (int k = 0; k < g->n; k++)
            if (g->p[k].at_percent) g->p[k].iter = (int)lround(g->p[k].percent / 100.0 * *max_iters);
    }
    return grow_schedule_check(g, *max_iters, err);
}

/* ---------------- applying a point to the live model ---------------- */

/* The grown model g keeps its event in the history, or is freed. */
static int record_event(TrainState *ts, const Model *m, Model *g, const GrowthEvent *ev, char *err) {
    if (train_state_add_growth(ts, m->step, ev, err) == 0) return 0;
    model_free(g);
    return -1;
}

/* Rows: grow's default recipe, as `grow --kv +N --ffn-kv +M` (tokenformer:
 * random keys N(0, 0.02), tau reset) or `grow --ffn-kv +M` (baselines). */
static int apply_rows(const Model *m, TrainState *ts, const GrowPoint *op, uint64_t seed, Model *g, char *err) {
    int L = m->cfg.n_layer, patt = model_has_tau(&m->cfg);
    int *delta = tf_calloc((size_t)L * PATT_PER_LAYER, sizeof(int), "row changes");
    for (int l = 0; l < L; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++)
            delta[l * PATT_PER_LAYER + w] = site_delta(op, w, model_patt_rows(m, l, w));
    GrowSpec spec = {delta, MODEL_INIT_STD, patt, seed, NULL};
    int rc = model_resize(m, g, &spec, err);
    int amounts[2] = {delta[PATT_Q], delta[PATT_FFN]};
    free(delta);
    if (rc) return -1;
    for (int kind = 0; kind < 2; kind++) {
        if (!amounts[kind]) continue;
        GrowthEvent ev = {kind ? "ffn" : "kv", amounts[kind], patt ? "random" : "zero-output", "all", MODEL_INIT_STD,
                          patt ? "reset" : "-"};
        if (record_event(ts, m, g, &ev, err)) return -1;
    }
    return 0;
}

/* Blocks: as `grow --add-layers N --at A --init I` (stack's default init: copy). */
static int apply_layers(const Model *m, TrainState *ts, const GrowPoint *op, uint64_t seed, Model *g, char *err) {
    int n_new = op->by_factor ? (int)(m->cfg.n_layer * (op->factor - 1.0)) : op->amount;
    LayerInit init = op->init >= 0 ? (LayerInit)op->init : op->at == GROW_AT_STACK ? LAYER_INIT_COPY : LAYER_INIT_ZERO_OUT;
    if (growth_add_layers(m, g, n_new, init, (GrowAt)op->at, seed, err)) return -1;
    GrowthEvent ev = growth_layers_event(&m->cfg, n_new, init, (GrowAt)op->at);
    return record_event(ts, m, g, &ev, err);
}

/* d_model: as `grow --d-model 2x` (no noise). */
static int apply_d_model(const Model *m, TrainState *ts, uint64_t seed, Model *g, char *err) {
    if (growth_double_d_model(m, g, 0.0f, seed, err)) return -1;
    GrowthEvent ev = growth_d_model_event(&m->cfg, 0.0f);
    return record_event(ts, m, g, &ev, err);
}

int grow_point_apply(Model *m, TrainState *ts, const GrowPoint *op, uint64_t seed, char *err) {
    ModelShape *check = tf_malloc(sizeof *check, "model shape");
    model_shape_of(m, check);
    int rc = model_shape_grow(check, op, err);
    free(check);
    if (rc) return -1;
    /* Growth builds the grown model on m's own backend (growth.h), so a
     * GPU-resident model grows without leaving the device. */
    Model grown;
    rc = op->kind == GOP_LAYERS ? apply_layers(m, ts, op, seed, &grown, err)
         : op->kind == GOP_D        ? apply_d_model(m, ts, seed, &grown, err)
                                    : apply_rows(m, ts, op, seed, &grown, err);
    if (rc) return -1;
    model_free(m);
    *m = grown;
    return 0;
}
