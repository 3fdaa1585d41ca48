/* Training schedules (docs/MODEL.md, training): the learning-rate schedule
 * (cosine or warmup-stable-decay), budgets in FLOPs or tokens, and growth
 * inside one run (`train --grow "25%:kv*2,50%:kv*2"`). */
#ifndef TF_SCHEDULE_H
#define TF_SCHEDULE_H

#include <stdint.h>

#include "checkpoint.h"
#include "config.h"
#include "growth.h"
#include "model.h"

/* ---------------- learning rate ---------------- */

/* TrainConfig.lr_schedule: 0 (the zero of the presets) is cosine. */
enum { LR_COSINE = 0, LR_WSD = 1 };
#define WSD_DEFAULT_DECAY_FRAC 0.2f

int lr_schedule_parse(const char *s); /* -1 if unknown */
const char *lr_schedule_name(int schedule);
/* The learning rate of iteration `iter` of a stage that started at
 * stage_start and ends at tc->max_iters: linear warmup, then cosine to
 * min_lr, or (wsd) constant lr until the last decay_frac of the stage and a
 * linear decay to min_lr over it (Hagele et al. 2405.18392). */
float lr_schedule_at(const TrainConfig *tc, int stage_start, int iter);

/* ---------------- growth inside a run ---------------- */

typedef enum {
    GOP_KV = 0,  /* tokenformer: every Pattention (q, k, v, o and FFN) */
    GOP_ATTN_KV, /* tokenformer: q, k, v, o only */
    GOP_FFN_KV,  /* tokenformer: the FFN Pattention only */
    GOP_FFN,     /* transformer, transformerpp: FFN hidden width */
    GOP_LAYERS,  /* every arch: more blocks */
    GOP_D        /* every arch: d_model and n_head doubled (growth_double_d_model) */
} GrowOpKind;

#define GROW_SCHEDULE_MAX 32

typedef struct {
    char text[64];     /* "25%:kv*2" as given, for messages */
    int at_percent;    /* AT was "P%" (of the budget) rather than an iteration */
    double percent;    /* P when at_percent */
    int iter;          /* the iteration the growth happens before (resolved) */
    GrowOpKind kind;
    int by_factor;     /* "*F" rather than "+N" */
    double factor;     /* F > 1 */
    int amount;        /* N >= 1 */
    int at;            /* layers: GrowAt (":end", ":interleave", ":stack"; default end) */
    int init;          /* layers: LayerInit (":zero-out", ":copy", ":copy-zero-out"; default
                          zero-out, stack: copy), as grow --add-layers --init */
    double flops_per_token; /* of the model after the point, as planned */
} GrowPoint;

typedef struct {
    int n;
    GrowPoint p[GROW_SCHEDULE_MAX];
} GrowSchedule;

/* Parse "AT:OP,AT:OP,..." (AT: "P%" or an iteration; OP: see train --help).
 * 0, or -1 with a one-line message in err. */
int grow_schedule_parse(const char *s, GrowSchedule *g, char *err);

/* The shape of a model as a growth schedule changes it: config and rows per
 * site (MAX_LAYERS x PATT_PER_LAYER). */
typedef struct {
    ModelConfig cfg;
    int rows[MAX_LAYERS * PATT_PER_LAYER];
} ModelShape;

void model_shape_of(const Model *m, ModelShape *s);
/* Apply a growth point to a shape (what the model will look like after it);
 * -1 with err when the op does not fit the arch or the factor adds nothing. */
int model_shape_grow(ModelShape *s, const GrowPoint *op, char *err);
/* Training FLOPs per token (docs/MODEL.md 3a) of a model of that shape. */
double model_shape_flops_per_token(const ModelShape *s, const Ops *ops, char *err);

/* The run's plan: its length and each growth point's iteration.
 * flops_budget / tokens_budget: 0 when not given; tokens_per_iter: tokens one
 * optimizer step consumes. With a FLOPs budget, percentages are of that
 * budget and the length is such that the stages' FLOPs (each at its own
 * FLOPs per token) add up to the budget within half an iteration; with a
 * tokens budget the length is budget / tokens_per_iter; otherwise
 * *max_iters is kept and percentages are of it. Checks that the points are
 * in order and before the end. 0, or -1 with err. */
int grow_schedule_plan(GrowSchedule *g, const ModelShape *start, const Ops *ops, double flops_budget,
                       double tokens_budget, double tokens_per_iter, int *max_iters, char *err);

/* Apply growth point op to the live model *m with grow's default recipe
 * (the same functions, spec and growth-history events as `tokenformer grow`
 * with --seed seed): the model is rebuilt in host memory and moved back to
 * its device when it lives elsewhere. *m is replaced (activations not
 * allocated); the growth history of ts gets the events. 0, or -1 with err. */
int grow_point_apply(Model *m, TrainState *ts, const GrowPoint *op, uint64_t seed, char *err);

#endif
