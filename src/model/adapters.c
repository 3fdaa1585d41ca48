/* Tokenformer adapters and LoRA on the baselines (adapters.h): their
 * parameters after the base model's, their passes through the ops table
 * (the Pattention op for adapters, GEMMs for LoRA), insertion and merge. */
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include "adapters.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "rng.h"

static const char *ADAPTER_SITE_NAMES[ADAPT_SITES] = {"attn", "mlp"};
static const char *LORA_SITE_NAMES[LORA_SITES] = {"q", "k", "v", "o", "mlp"};

/* ---------------- site lists ---------------- */

static int site_index(const char *name, const char *const *names, int n_names) {
    for (int i = 0; i < n_names; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

static void sites_format(int bits, const char *const *names, int n_names, char *out, size_t len) {
    out[0] = '\0';
    for (int i = 0; i < n_names; i++)
        if (bits & (1 << i)) snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? "," : "", names[i]);
}

static int sites_parse(const char *list, const char *const *names, int n_names, const char *what,
                       int *bits, char *err) {
    *bits = 0;
    char *copy = strdup(list), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int i = site_index(tok, names, n_names);
        if (i >= 0) {
            *bits |= 1 << i;
            continue;
        }
        char known[64];
        sites_format((1 << n_names) - 1, names, n_names, known, sizeof known);
        rc = tf_err(err, "%s: unknown site '%.32s' (sites: %s)", what, tok, known);
    }
    free(copy);
    if (!rc && !*bits) rc = tf_err(err, "%s: no site given (e.g. %s)", what, names[0]);
    return rc;
}

int adapter_sites_parse(const char *list, int *bits, char *err) {
    return sites_parse(list, ADAPTER_SITE_NAMES, ADAPT_SITES, "--adapter-sites", bits, err);
}

int lora_sites_parse(const char *list, int *bits, char *err) {
    return sites_parse(list, LORA_SITE_NAMES, LORA_SITES, "--lora-sites", bits, err);
}

void adapter_sites_format(int bits, char *out, size_t len) {
    sites_format(bits, ADAPTER_SITE_NAMES, ADAPT_SITES, out, len);
}

void lora_sites_format(int bits, char *out, size_t len) {
    sites_format(bits, LORA_SITE_NAMES, LORA_SITES, out, len);
}

/* ---------------- the config ---------------- */

int adapters_present(const ModelConfig *c) { return c->adapter_kv > 0 || c->lora_rank > 0; }

int adapters_config_validate(const ModelConfig *c, char *err) {
    if (!adapters_present(c)) return 0;
    if (c->arch == ARCH_TOKENFORMER)
        return tf_err(err, "adapters and LoRA are for the transformer and transformerpp baselines; "
                           "a tokenformer grows native rows (grow --kv +N --init zero-key)");
    if (c->adapter_kv < 0 || c->adapter_kv > PATT_MAX_ROWS)
        return tf_err(err, "adapter rows must be in [1, %d] (got %d)", PATT_MAX_ROWS, c->adapter_kv);
    if (c->adapter_kv > 0 && (c->adapter_sites <= 0 || c->adapter_sites >= 1 << ADAPT_SITES))
        return tf_err(err, "adapter sites must be a non-empty subset of attn, mlp");
    if (c->adapter_kv > 0 && (c->adapter_pnorm < 0 || c->adapter_pnorm > PNORM_SOFTMAX))
        return tf_err(err, "unknown adapter normalization %d", c->adapter_pnorm);
    if (c->lora_rank < 0 || c->lora_rank > c->d_model)
        return tf_err(err, "LoRA rank must be in [1, d_model = %d] (got %d)", c->d_model, c->lora_rank);
    if (c->lora_rank > 0 && (c->lora_sites <= 0 || c->lora_sites >= 1 << LORA_SITES))
        return tf_err(err, "LoRA sites must be a non-empty subset of q, k, v, o, mlp");
    if (c->lora_rank > 0 && !(c->lora_alpha > 0.0f && isfinite(c->lora_alpha)))
        return tf_err(err, "LoRA alpha must be a positive number (got %g)", c->lora_alpha);
    return 0;
}

/* ---------------- the extra parameters ---------------- */

enum { EX_ADAPTER_KEY, EX_ADAPTER_VALUE, EX_LORA_A, EX_LORA_B };
#define MAX_EXTRAS_PER_LAYER (2 * ADAPT_SITES + 2 * (PATT_PER_LAYER + MODEL_SITE_MAX_PARAMS))

typedef struct {
    int kind;  /* EX_* */
    int site;  /* AdapterSite of an adapter tensor; the PATT_* site of a LoRA tensor's base */
    int base;  /* the base parameter of a LoRA tensor */
} Extra;

/* Layer l's extras in index order; returns their count. */
static int layer_extras(const ModelConfig *c, int l, Extra out[MAX_EXTRAS_PER_LAYER]) {
    int n = 0;
    for (int site = 0; c->adapter_kv > 0 && site < ADAPT_SITES; site++)
        if (c->adapter_sites & (1 << site)) {
            out[n++] = (Extra){EX_ADAPTER_KEY, site, -1};
            out[n++] = (Extra){EX_ADAPTER_VALUE, site, -1};
        }
    for (int w = 0; c->lora_rank > 0 && w < PATT_PER_LAYER; w++) {
        int bit = w == PATT_FFN ? LORA_MLP : w;
        if (!(c->lora_sites & (1 << bit))) continue;
        for (int k = 0; k < model_config_site_count(c, w); k++) {
            int base = model_config_site_param(c, l, w) + k;
            out[n++] = (Extra){EX_LORA_A, w, base};
            out[n++] = (Extra){EX_LORA_B, w, base};
        }
    }
    return n;
}

int adapters_params_per_layer(const ModelConfig *c) {
    Extra e[MAX_EXTRAS_PER_LAYER];
    return adapters_present(c) ? layer_extras(c, 0, e) : 0;
}

static Extra extra_at(const ModelConfig *c, int j, int *layer) {
    Extra e[MAX_EXTRAS_PER_LAYER];
    int per = adapters_params_per_layer(c);
    *layer = j / per;
    layer_extras(c, *layer, e);
    return e[j % per];
}

void adapters_param_name(const ModelConfig *c, int j, char *out, size_t len) {
    int l;
    Extra e = extra_at(c, j, &l);
    if (e.kind == EX_ADAPTER_KEY || e.kind == EX_ADAPTER_VALUE) {
        snprintf(out, len, "h.%d.adapter.%s.%s", l, ADAPTER_SITE_NAMES[e.site],
                 e.kind == EX_ADAPTER_KEY ? "key" : "value");
        return;
    }
    char base[TF_NAME_LEN];
    model_param_name(c, e.base, base, sizeof base);
    snprintf(out, len, "%s_lora_%c", base, e.kind == EX_LORA_A ? 'A' : 'B');
}

int adapters_key_param(const ModelConfig *c, int l, int site) {
    if (c->adapter_kv <= 0 || !(c->adapter_sites & (1 << site))) return -1;
    Extra e[MAX_EXTRAS_PER_LAYER];
    int n = layer_extras(c, l, e), first = model_first_extra_param(c) + l * n;
    for (int k = 0; k < n; k++)
        if (e[k].kind == EX_ADAPTER_KEY && e[k].site == site) return first + k;
    return -1;
}

/* LoRA'd base parameters lie in one layer: the lookup stays within it. */
/* The index of base's LoRA A (B follows it) and, in *site, the site of the
 * base weight; -1: base has no LoRA. */
static int lora_of(const ModelConfig *c, int base, int *site) {
    if (c->lora_rank <= 0 || base < 1 || base >= model_first_extra_param(c)) return -1;
    int l = (base - 1) / model_params_per_layer(c);
    if (l >= c->n_layer) return -1;
    Extra e[MAX_EXTRAS_PER_LAYER];
    int n = layer_extras(c, l, e), first = model_first_extra_param(c) + l * n;
    for (int k = 0; k < n; k++)
        if (e[k].kind == EX_LORA_A && e[k].base == base) {
            if (site) *site = e[k].site;
            return first + k;
        }
    return -1;
}

int adapters_lora_param(const ModelConfig *c, int base) { return lora_of(c, base, NULL); }

void adapters_param_shape(const Model *m, int j, int64_t shape[2]) {
    int l;
    Extra e = extra_at(&m->cfg, j, &l);
    int64_t r = m->cfg.lora_rank;
    if (e.kind == EX_ADAPTER_KEY || e.kind == EX_ADAPTER_VALUE) {
        shape[0] = m->cfg.adapter_kv;
        shape[1] = m->cfg.d_model;
        return;
    }
    const int64_t *bs = m->params[e.base].t.shape;
    shape[0] = e.kind == EX_LORA_A ? r : bs[0];
    shape[1] = e.kind == EX_LORA_A ? bs[1] : r;
}

/* ---------------- the passes ---------------- */

int adapters_score_cols(const Model *m, int site) {
    return adapters_key_param(&m->cfg, 0, site) >= 0 ? m->cfg.adapter_kv : 0;
}

static PattArgs adapter_args(Model *m, int key, PattInput in, float *A, float *S, float *dA) {
    int d = m->cfg.d_model;
    return (PattArgs){.X = in,
                      .K = tensor_f32(&m->params[key].t),
                      .V = tensor_f32(&m->params[key + 1].t),
                      .tau = &m->adapter_tau,
                      .G = 1,
                      .mode = m->cfg.adapter_pnorm,
                      .N = m->B * m->T,
                      .d_in = d,
                      .n = m->cfg.adapter_kv,
                      .d_out = d,
                      .A = A,
                      .S = S,
                      .dA = dA};
}

void adapters_forward(Model *m, int l, int site, PattInput in, float *A, float *S, float *dA,
                      float *branch, float *out) {
    int key = adapters_key_param(&m->cfg, l, site);
    if (key < 0) return;
    PattArgs args = adapter_args(m, key, in, A, S, dA);
    args.Y = branch;
    m->ops->pattention_forward(m->ops, &args);
    /* out + 0 is out: with zero values the function is the base model's bit for bit */
    m->ops->dropout_add(m->ops, out, out, branch, 0.0f, 0, (size_t)m->B * m->T * m->cfg.d_model);
}

void adapters_backward(Model *m, int l, int site, PattInput in, float *A, float *S, float *dA,
                       const float *dout, float *din) {
    int key = adapters_key_param(&m->cfg, l, site);
    if (key < 0) return;
    PattArgs args = adapter_args(m, key, in, A, S, dA);
    args.dX = din;
    args.dK = model_grad_if_needed(m, key); /* NULL when frozen: no product (ops.h) */
    args.dV = model_grad_if_needed(m, key + 1);
    args.dY = dout;
    args.accumulate_dx = 1;
    m->ops->pattention_backward(m->ops, &args);
}

static float lora_scale(const ModelConfig *c) { return c->lora_alpha / (float)c->lora_rank; }

/* The LoRA'd base parameters of c in index order, into bases (room for
 * every base parameter, freed by the caller); returns their count. */
static int lora_bases(const ModelConfig *c, int **bases) {
    int n = 0, first_extra = model_first_extra_param(c);
    *bases = tf_malloc(sizeof(int) * (size_t)first_extra, "LoRA list");
    for (int base = 1; base < first_extra; base++)
        if (adapters_lora_param(c, base) >= 0) (*bases)[n++] = base;
    return n;
}

/* C (rows x cols) = s * B A + beta * C for the LoRA of base parameter `base` of m. */
static void lora_product(const Model *m, int base, float *C, float beta) {
    const Tensor *w = &m->params[base].t;
    int a = adapters_lora_param(&m->cfg, base);
    m->ops->matmul(m->ops, C, tensor_f32(&m->params[a + 1].t), tensor_f32(&m->params[a].t), (int)w->shape[0],
                   (int)w->shape[1], m->cfg.lora_rank, 0, 0, lora_scale(&m->cfg), beta);
}

void lora_refresh(Model *m) {
    int *bases, n = lora_bases(&m->cfg, &bases);
    /* the whole block, not only the LoRA weights: fused products (q, k and v
     * as one GEMM) read a weight's neighbours from the same block */
    m->ops->copy(m->ops, m->lora_eff, m->param_mem, m->n_param_elems * sizeof(float));
    for (int i = 0; i < n; i++) /* eff = W + s B A; B = 0 adds exact zeros */
        lora_product(m, bases[i], m->lora_eff + model_param_offset(m, bases[i]), 1.0f);
    free(bases);
    m->lora_stale = 0;
}

int lora_low_rank(const Model *m, int base) {
    int site;
    return lora_of(&m->cfg, base, &site) >= 0 && model_site_is_linear(m, site);
}

void lora_linear_backward(Model *m, int base, PattInput rows, const float *dY, int y_attn, float *u,
                          float *v) {
    const Ops *o = m->ops;
    int a = adapters_lora_param(&m->cfg, base);
    float *dA = model_grad_if_needed(m, a), *dB = model_grad_if_needed(m, a + 1);
    if (!dA && !dB) return;
    const Tensor *w = &m->params[base].t;
    int N = m->B * m->T, r = m->cfg.lora_rank;
    size_t Nr = (size_t)N * r;
    float s = lora_scale(&m->cfg);
    /* A as a linear from the site's input rows to r outputs, B from r to its outputs */
    LinearArgs by_a = {.X = rows, .W = tensor_f32(&m->params[a].t), .G = 1, .N = N,
                       .d_in = (int)w->shape[1], .d_out = r, .Y = u};
    LinearArgs by_b = {.X = {.x = u}, .W = tensor_f32(&m->params[a + 1].t), .G = 1, .N = N, .d_in = r,
                       .d_out = (int)w->shape[0], .y_attn = y_attn, .dY = dY, .dW = dB,
                       .dX = dA ? v : NULL};
    if (dB) { /* u = s X A^T: dB += dY^T u */
        o->linear_forward(o, &by_a);
        o->scale(o, u, s, Nr);
    }
    o->linear_backward(o, &by_b); /* and v = dY B */
    if (!dA) return;
    o->scale(o, v, s, Nr);
    by_a.Y = NULL;
    by_a.dY = v;
    by_a.dW = dA;
    o->linear_backward(o, &by_a); /* dA += v^T X; no dX */
}

void lora_grads(Model *m) {
    const Ops *o = m->ops;
    int r = m->cfg.lora_rank, *bases, n = lora_bases(&m->cfg, &bases);
    float s = lora_scale(&m->cfg);
    for (int i = 0; i < n; i++) {
        if (lora_low_rank(m, bases[i])) continue; /* done in backward (lora_linear_backward) */
        const Param *w = &m->params[bases[i]];
        int a = adapters_lora_param(&m->cfg, bases[i]);
        int rows = (int)w->t.shape[0], cols = (int)w->t.shape[1];
        float *dA = model_grad_if_needed(m, a), *dB = model_grad_if_needed(m, a + 1);
        /* G = dL/d(eff): dB = s G A^T (rows x r), dA = s B^T G (r x cols); frozen factors
         * get none, and then G was not computed either (model_param_needs_grad) */
        if (dB) o->matmul(o, dB, w->grad, tensor_f32(&m->params[a].t), rows, r, cols, 0, 1, s, 0.0f);
        if (dA) o->matmul(o, dA, tensor_f32(&m->params[a + 1].t), w->grad, r, cols, rows, 1, 0, s, 0.0f);
    }
    free(bases);
}

/* ---------------- insertion and merge (CPU) ---------------- */

static const Param *param_named(const Model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].t.name, name)) return &m->params[i];
    return NULL;
}

/* *dst with config cfg and src's rows, every parameter of src that dst
 * also has copied (values, moments, segments); the rest zero, born at
 * src->step. */
static int build_from(const Model *src, Model *dst, const ModelConfig *cfg, char *err) {
    if (!ops_is_cpu(src->ops)) return tf_err(err, "internal: adapters are inserted on the CPU");
    int n_patt = src->cfg.n_layer * PATT_PER_LAYER;
    int *rows = tf_malloc(sizeof(int) * (size_t)n_patt, "row counts");
    for (int p = 0; p < n_patt; p++) rows[p] = model_patt_rows(src, p / PATT_PER_LAYER, p % PATT_PER_LAYER);
    int rc = model_create_like(dst, src, cfg, rows, err);
    free(rows);
    if (rc) return -1;
    dst->step = src->step;
    memcpy(dst->tau, src->tau, sizeof(float) * (size_t)n_patt);
    for (int i = 0; i < dst->n_params; i++) {
        Param *d = &dst->params[i];
        const Param *s = param_named(src, d->t.name);
        if (!s) {
            d->n_seg = 1;
            d->seg[0] = (RowSegment){0, src->step, 0};
            continue;
        }
        size_t bytes = tensor_bytes(&s->t);
        memcpy(d->t.data, s->t.data, bytes);
        model_copy_moment_rows(src->ops, s, 0, d, 0, model_param_rows(s));
        d->n_seg = s->n_seg;
        memcpy(d->seg, s->seg, sizeof s->seg);
    }
    return 0;
}

static void fill_normal(const Param *p, float std, Rng *r) {
    float *x = tensor_f32(&p->t);
    for (size_t i = 0; i < tensor_numel(&p->t); i++) x[i] = std * rng_normal(r);
}

/* dst: src under config c, with the generator that draws its new tensors. */
static int build_seeded(const Model *src, Model *dst, const ModelConfig *c, uint64_t seed, Rng *r, char *err) {
    if (build_from(src, dst, c, err)) return -1;
    rng_seed(r, seed);
    return 0;
}

int adapters_insert(const Model *src, Model *dst, int kv, int sites, int pnorm, uint64_t seed, char *err) {
    if (src->cfg.adapter_kv > 0) return tf_err(err, "the checkpoint has adapters already");
    ModelConfig c = src->cfg;
    c.adapter_kv = kv;
    c.adapter_sites = sites;
    c.adapter_pnorm = pnorm;
    Rng r;
    if (build_seeded(src, dst, &c, seed, &r, err)) return -1;
    for (int l = 0; l < c.n_layer; l++)
        for (int site = 0; site < ADAPT_SITES; site++) {
            int key = adapters_key_param(&c, l, site);
            if (key >= 0) fill_normal(&dst->params[key], MODEL_INIT_STD, &r); /* values stay 0 */
        }
    return 0;
}

int lora_insert(const Model *src, Model *dst, int rank, int sites, float alpha, uint64_t seed, char *err) {
    if (src->cfg.lora_rank > 0) return tf_err(err, "the checkpoint has LoRA already (grow --merge-lora first)");
    ModelConfig c = src->cfg;
    c.lora_rank = rank;
    c.lora_sites = sites;
    c.lora_alpha = alpha;
    Rng r;
    if (build_seeded(src, dst, &c, seed, &r, err)) return -1;
    int *bases, n = lora_bases(&c, &bases);
    for (int i = 0; i < n; i++) /* A as PEFT draws it (std 1/sqrt(3 cols)); B stays 0 */
        fill_normal(&dst->params[adapters_lora_param(&c, bases[i])],
                    1.0f / sqrtf(3.0f * (float)dst->params[bases[i]].t.shape[1]), &r);
    free(bases);
    return 0;
}

int lora_merge(const Model *src, Model *dst, char *err) {
    if (src->cfg.lora_rank <= 0) return tf_err(err, "the checkpoint has no LoRA to merge");
    ModelConfig c = src->cfg;
    c.lora_rank = 0;
    c.lora_sites = 0;
    c.lora_alpha = 0.0f;
    if (build_from(src, dst, &c, err)) return -1;
    /* the same product lora_refresh computes: the merged weights are the adapted passes' */
    int *bases, n = lora_bases(&src->cfg, &bases);
    for (int i = 0; i < n; i++) lora_product(src, bases[i], tensor_f32(&dst->params[bases[i]].t), 1.0f);
    free(bases);
    return 0;
}

/* ---------------- counts ---------------- */

static size_t segment_elems(const Param *p, int k) {
    size_t width = p->t.ndim == 2 ? (size_t)p->t.shape[1] : tensor_numel(&p->t);
    size_t rows = p->t.ndim == 2 ? (size_t)p->t.shape[0] : 1;
    size_t end = k + 1 < p->n_seg ? (size_t)p->seg[k + 1].row_start : rows;
    return (end - (size_t)p->seg[k].row_start) * width;
}

size_t model_trainable_params(const Model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        for (int k = 0; k < m->params[i].n_seg; k++)
            if (!m->params[i].seg[k].frozen) n += segment_elems(&m->params[i], k);
    return n;
}

size_t model_latest_grown_params(const Model *m) {
    int latest = model_latest_birth(m);
    size_t n = 0;
    for (int i = 0; i < m->n_params && latest > 0; i++)
        for (int k = 0; k < m->params[i].n_seg; k++)
            if (m->params[i].seg[k].birth == latest) n += segment_elems(&m->params[i], k);
    return n;
}
