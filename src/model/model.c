/* The TokenFormer model: parameters in one device block, activations in
 * another, and forward / backward / update as one clear pass each through
 * the ops table (in the manner of llm.c's train_gpt2.c). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters.h"
#include "common.h"
#include "rng.h"

/* ------------------------------------------------------------------ */
/* parameter layout                                                     */

/* A layer's parameters per arch, in index order (names, checkpoint order).
 * Each projection site (q, k, v, o, ffn) owns a run of them: a Pattention's
 * key and value, a linear's weight, an MLP's (gate,) up and down. The
 * RMSNorm weights (transformerpp) close the layer. Indices below count from
 * the layer's first parameter. */
typedef struct {
    int params_per_layer;
    const char *param_names[MAX_PARAMS_PER_LAYER];
    int site_first_param[PATT_PER_LAYER]; /* per site (PATT_Q..PATT_FFN) */
    int site_param_count[PATT_PER_LAYER];
    /* memory order of the layer's 2-D tensors: a block's q, k, v keys (or
     * weights) one stacked matrix, and so are its values (the groups of
     * ops.h); SwiGLU's gate and up adjacent (its key of 2h rows). The 1-D
     * tensors follow the matrices in index order. */
    int n_matrices;
    int matrix_memory_order[MAX_PARAMS_PER_LAYER];
    int norm_param[2];                    /* norm1, norm2 weights, or -1 (LayerNorm-free layer) */
    int n_final_params;                   /* after the last layer: the final norm's weight (, bias) */
    const char *final_param_names[2];
} ArchLayout;

static const ArchLayout LAYOUTS[ARCH_COUNT] = {
    [ARCH_TOKENFORMER] =
        {
            .params_per_layer = 10,
            .param_names = {"attn.q.key", "attn.q.value", "attn.k.key", "attn.k.value", "attn.v.key",
                            "attn.v.value", "attn.o.key", "attn.o.value", "ffn.key", "ffn.value"},
            .site_first_param = {0, 2, 4, 6, 8},
            .site_param_count = {2, 2, 2, 2, 2},
            .n_matrices = 10,
            .matrix_memory_order = {0, 2, 4, 1, 3, 5, 6, 7, 8, 9},
            .norm_param = {-1, -1},
            .n_final_params = 2,
            .final_param_names = {"ln_f.weight", "ln_f.bias"},
        },
    [ARCH_TRANSFORMER] =
        {
            .params_per_layer = 6,
            .param_names = {"attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.o.weight", "mlp.up",
                            "mlp.down"},
            .site_first_param = {0, 1, 2, 3, 4},
            .site_param_count = {1, 1, 1, 1, 2},
            .n_matrices = 6,
            .matrix_memory_order = {0, 1, 2, 3, 4, 5},
            .norm_param = {-1, -1},
            .n_final_params = 2,
            .final_param_names = {"ln_f.weight", "ln_f.bias"},
        },
    [ARCH_TRANSFORMERPP] =
        {
            .params_per_layer = 9,
            .param_names = {"attn.q.weight", "attn.k.weight", "attn.v.weight", "attn.o.weight", "mlp.gate",
                            "mlp.up", "mlp.down", "norm1.weight", "norm2.weight"},
            .site_first_param = {0, 1, 2, 3, 4},
            .site_param_count = {1, 1, 1, 1, 3},
            .n_matrices = 7,
            .matrix_memory_order = {0, 1, 2, 3, 4, 5, 6},
            .norm_param = {7, 8},
            .n_final_params = 1,
            .final_param_names = {"norm_f.weight", NULL},
        },
};

static const char *PATT_NAMES[PATT_PER_LAYER] = {"attn.q", "attn.k", "attn.v", "attn.o", "ffn"};

static const ArchLayout *layout_of(const ModelConfig *c) { return &LAYOUTS[c->arch]; }

int model_first_extra_param(const ModelConfig *c) {
    const ArchLayout *L = layout_of(c);
    return 1 + L->params_per_layer * c->n_layer + L->n_final_params;
}
static int n_params_for(const ModelConfig *c) {
    return model_first_extra_param(c) + c->n_layer * adapters_params_per_layer(c);
}
/* The final norm's weight and (LayerNorm only) bias; -1 when absent. */
static int lnf_w_index(const Model *m) {
    return 1 + layout_of(&m->cfg)->params_per_layer * m->cfg.n_layer;
}
static int lnf_b_index(const Model *m) {
    return layout_of(&m->cfg)->n_final_params == 2 ? lnf_w_index(m) + 1 : -1;
}
/* The weight of RMSNorm k (0: before attention, 1: before the FFN) of layer l, or -1. */
static int norm_param(const Model *m, int l, int k) {
    const ArchLayout *L = layout_of(&m->cfg);
    return L->norm_param[k] < 0 ? -1 : 1 + l * L->params_per_layer + L->norm_param[k];
}

int model_params_per_layer(const ModelConfig *c) { return layout_of(c)->params_per_layer; }

int model_config_site_count(const ModelConfig *c, int which) {
    return layout_of(c)->site_param_count[which];
}

int model_config_site_param(const ModelConfig *c, int layer, int which) {
    const ArchLayout *L = layout_of(c);
    return 1 + layer * L->params_per_layer + L->site_first_param[which];
}

int model_patt_param(const Model *m, int layer, int which) {
    return model_config_site_param(&m->cfg, layer, which);
}

int model_has_tau(const ModelConfig *c) { return c->arch == ARCH_TOKENFORMER; }

int model_site_is_linear(const Model *m, int which) {
    return m->cfg.arch != ARCH_TOKENFORMER && which != PATT_FFN;
}

int model_site_row_params(const Model *m, int layer, int which, int idx[MODEL_SITE_MAX_PARAMS]) {
    if (model_site_is_linear(m, which)) return 0;
    int first = model_patt_param(m, layer, which), n = layout_of(&m->cfg)->site_param_count[which];
    for (int k = 0; k < n; k++) idx[k] = first + k;
    return n;
}

int model_site_output_param(const Model *m, int layer, int which) {
    return model_patt_param(m, layer, which) + layout_of(&m->cfg)->site_param_count[which] - 1;
}

int model_patt_rows(const Model *m, int layer, int which) {
    return (int)m->params[model_patt_param(m, layer, which)].t.shape[0];
}

float *model_patt_tau(Model *m, int layer, int which) {
    return &m->tau[layer * PATT_PER_LAYER + which];
}

const char *model_patt_name(int which) { return PATT_NAMES[which]; }

void model_param_name(const ModelConfig *c, int index, char *out, size_t len) {
    const ArchLayout *L = layout_of(c);
    int first_final = 1 + L->params_per_layer * c->n_layer, first_extra = model_first_extra_param(c);
    if (index >= first_extra) adapters_param_name(c, index - first_extra, out, len);
    else if (index == 0) snprintf(out, len, "wte");
    else if (index >= first_final) snprintf(out, len, "%s", L->final_param_names[index - first_final]);
    else
        snprintf(out, len, "h.%d.%s", (index - 1) / L->params_per_layer,
                 L->param_names[(index - 1) % L->params_per_layer]);
}

size_t model_num_params(const Model *m, int include_embedding) {
    size_t n = 0;
    for (int i = include_embedding ? 0 : 1; i < m->n_params; i++) n += tensor_numel(&m->params[i].t);
    return n;
}

double model_train_flops_per_token(const Model *m) {
    const ModelConfig *c = &m->cfg;
    double P = (double)model_num_params(m, 0) + (double)c->vocab_size * c->d_model;
    return 6.0 * P + 12.0 * c->n_layer * (double)c->d_model * c->block_size;
}

/* Which parameter sits at memory slot k: wte; per layer its matrices in the
 * arch's memory order; the adapters.h extras (all matrices); then every 1-D
 * tensor (the layers' norm weights, the final norm), so that the decayed
 * tensors form one block. Parameter indices (names, checkpoint order) do
 * not change with it. */
static int memory_slot_param(const Model *m, int k) {
    const ArchLayout *L = layout_of(&m->cfg);
    int nl = m->cfg.n_layer, per = L->params_per_layer, n_mat = L->n_matrices, n_vec = per - n_mat;
    int first_extra = model_first_extra_param(&m->cfg), n_extra = m->n_params - first_extra;
    if (k < 1) return k;
    k -= 1;
    if (k < n_mat * nl) return 1 + (k / n_mat) * per + L->matrix_memory_order[k % n_mat];
    k -= n_mat * nl;
    if (k < n_extra) return first_extra + k;
    k -= n_extra;
    if (k < n_vec * nl) return 1 + (k / n_vec) * per + n_mat + k % n_vec;
    return 1 + per * nl + (k - n_vec * nl);
}

/* Rows of a site: Pattention tokens (n_attn, n_ffn); for the baselines d
 * for the linears and the FFN width h (n_ffn). */
static int default_rows(const ModelConfig *c, int which) {
    if (which == PATT_FFN) return c->n_ffn;
    return c->arch == ARCH_TOKENFORMER ? c->n_attn : c->d_model;
}

static void init_tensor(Model *m, int idx, int ndim, int64_t rows) {
    char name[TF_NAME_LEN];
    model_param_name(&m->cfg, idx, name, sizeof name);
    int64_t s[2] = {ndim == 2 ? rows : m->cfg.d_model, m->cfg.d_model};
    tensor_init(&m->params[idx].t, name, DTYPE_F32, ndim, s);
}

int model_create_shapes(Model *m, const ModelConfig *cfg, const int *rows, const Ops *ops,
                        char *err) {
    memset(m, 0, sizeof *m);
    if (model_config_validate(cfg, err) || adapters_config_validate(cfg, err)) return -1;
    /* a backend may not have the baselines' ops yet: say so instead of calling NULL */
    if (cfg->arch != ARCH_TOKENFORMER && (!ops->linear_forward || !ops->rmsnorm_forward))
        return tf_err(err, "the %s backend cannot run arch %s yet (no linear/rmsnorm ops)",
                      ops->name, arch_name(cfg->arch));
    m->cfg = *cfg;
    m->ops = ops;
    m->n_params = n_params_for(cfg);
    m->params = tf_calloc((size_t)m->n_params, sizeof(Param), "parameter table");
    m->tau = tf_calloc((size_t)cfg->n_layer * PATT_PER_LAYER, sizeof(float), "tau");
    const ArchLayout *L = layout_of(cfg);
    int64_t d = cfg->d_model;

    int64_t shape[2] = {cfg->vocab_size, d};
    tensor_init(&m->params[0].t, "wte", DTYPE_F32, 2, shape);
    for (int l = 0; l < cfg->n_layer; l++) {
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            int n = rows ? rows[l * PATT_PER_LAYER + w] : default_rows(cfg, w);
            if (n < 1 || n > PATT_MAX_ROWS) {
                model_free(m);
                return tf_err(err, "layer %d %s: row count %d out of range", l, model_patt_name(w), n);
            }
            if (model_site_is_linear(m, w) && n != d) {
                model_free(m);
                return tf_err(err, "layer %d %s: a %s projection has d = %d rows, not %d", l,
                              model_patt_name(w), arch_name(cfg->arch), (int)d, n);
            }
            for (int k = 0; k < L->site_param_count[w]; k++)
                init_tensor(m, model_patt_param(m, l, w) + k, 2, n);
        }
        for (int k = 0; k < 2; k++)
            if (norm_param(m, l, k) >= 0) init_tensor(m, norm_param(m, l, k), 1, 0);
    }
    for (int k = 0; k < L->n_final_params; k++) init_tensor(m, lnf_w_index(m) + k, 1, 0);
    for (int i = model_first_extra_param(cfg); i < m->n_params; i++) {
        int64_t s[2];
        char name[TF_NAME_LEN];
        adapters_param_shape(m, i - model_first_extra_param(cfg), s);
        model_param_name(cfg, i, name, sizeof name);
        tensor_init(&m->params[i].t, name, DTYPE_F32, 2, s);
    }
    m->adapter_tau = sqrtf((float)(cfg->adapter_kv > 0 ? cfg->adapter_kv : 1));

    size_t total = 0;
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        p->decay = p->t.ndim == 2;
        p->n_seg = 1;
        p->seg[0] = (RowSegment){0, 0, 0};
        total += tensor_numel(&p->t);
    }
    m->n_param_elems = total;
    return 0;
}

int model_create_params(Model *m, const ModelConfig *cfg, const int *rows, const Ops *ops, char *err) {
    if (model_create_shapes(m, cfg, rows, ops, err)) return -1;
    size_t total = m->n_param_elems, bytes;
    if (tf_mul_overflows(total, sizeof(float), &bytes)) {
        model_free(m);
        return tf_err(err, "model too large (%zu parameters)", total);
    }
    float **blocks[3] = {&m->param_mem, &m->grad_mem, &m->lora_eff};
    for (int b = 0; b < (m->cfg.lora_rank > 0 ? 3 : 2); b++) {
        *blocks[b] = ops->alloc(ops, bytes);
        if (!*blocks[b]) {
            model_free(m);
            return tf_err(err, "out of %s memory: the parameters and their gradients need %d x %.1f MiB for %zu "
                          "parameters", ops->name, m->cfg.lora_rank > 0 ? 3 : 2, bytes / 1048576.0, total);
        }
    }
    m->lora_stale = 1;
    m->n_grad_elems = total;
    size_t off = 0;
    for (int k = 0; k < m->n_params; k++) {
        Param *p = &m->params[memory_slot_param(m, k)];
        p->t.data = m->param_mem + off;
        p->grad = m->grad_mem + off;
        off += tensor_numel(&p->t);
    }
    m->precision = MATMUL_FP32;
    m->attn_dtype = matmul_precision_attn_dtype(MATMUL_FP32);
    return 0;
}

int model_create_like(Model *m, const Model *src, const ModelConfig *cfg, const int *rows, char *err) {
    if (model_create(m, cfg, rows, src->ops, err)) return -1;
    m->precision = src->precision; /* the backend is set to it already: src computes in it */
    m->attn_dtype = matmul_precision_attn_dtype(src->precision);
    return 0;
}

int model_set_precision(Model *m, int precision, char *err) {
    const Ops *o = m->ops;
    DType want = matmul_precision_attn_dtype(precision);
    if (m->act_mem && want != m->attn_dtype)
        return tf_err(err, "internal error: precision %s set after the activations were allocated in %s",
                      matmul_precision_name(precision), dtype_name(m->attn_dtype));
    int got = o->set_precision(o, precision);
    if (got != precision)
        return tf_err(err, "the %s backend does not compute in %s (it computes in %s)", o->name,
                      matmul_precision_name(precision), matmul_precision_name(got));
    if (o->attn_dtype(o) != want)
        return tf_err(err, "internal error: the %s backend under %s holds attention tensors in %s, not %s",
                      o->name, matmul_precision_name(precision), dtype_name(o->attn_dtype(o)),
                      dtype_name(want));
    m->precision = precision;
    m->attn_dtype = want;
    return 0;
}

/* The attention tensors were allocated in one type; the backend must still
 * compute in it. Another model on the same backend at another precision
 * would have changed it, and the ops would read the buffers as the wrong
 * type: say so instead. One indirect call per pass. */
static void require_attn_dtype(const Model *m, DType have, const char *what) {
    DType now = m->ops->attn_dtype(m->ops);
    if (now != have)
        tf_die("internal error: %s holds %s attention tensors but the %s backend now computes them in %s "
               "(another precision was set on it: model_set_precision)",
               what, dtype_name(have), m->ops->name, dtype_name(now));
}

int model_param_rows(const Param *p) { return p->t.ndim == 2 ? (int)p->t.shape[0] : 1; }

size_t model_param_row_elems(const Param *p) {
    return p->t.ndim == 2 ? (size_t)p->t.shape[1] : tensor_numel(&p->t);
}

int model_moment_rows(const Param *p) { return model_param_rows(p) - p->moment_row0; }

int model_first_trainable_row(const Param *p) {
    for (int k = 0; k < p->n_seg; k++)
        if (!p->seg[k].frozen) return p->seg[k].row_start;
    return model_param_rows(p);
}

int model_alloc_moments(Model *m, int trainable_only, char *err) {
    const Ops *o = m->ops;
    size_t total = 0, bytes;
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        p->moment_row0 = trainable_only ? model_first_trainable_row(p) : 0;
        total += (size_t)model_moment_rows(p) * model_param_row_elems(p);
    }
    if (tf_mul_overflows(total, sizeof(float), &bytes))
        return tf_err(err, "model too large (%zu optimizer moments)", total);
    m->n_moment_elems = total;
    if (total) {
        m->m_mem = o->alloc(o, bytes);
        m->v_mem = m->m_mem ? o->alloc(o, bytes) : NULL;
        if (!m->v_mem)
            return tf_err(err, "out of %s memory: the Adam moments need 2 x %.1f MiB for %zu parameters", o->name,
                          bytes / 1048576.0, total);
    }
    /* memory order, as the parameters: with every row there, one offset serves both */
    size_t off = 0;
    for (int k = 0; k < m->n_params; k++) {
        Param *p = &m->params[memory_slot_param(m, k)];
        size_t n = (size_t)model_moment_rows(p) * model_param_row_elems(p);
        p->m = n ? m->m_mem + off : NULL;
        p->v = n ? m->v_mem + off : NULL;
        off += n;
    }
    return 0;
}

int model_create(Model *m, const ModelConfig *cfg, const int *rows, const Ops *ops, char *err) {
    if (model_create_params(m, cfg, rows, ops, err)) return -1;
    if (model_alloc_moments(m, 0, err)) {
        model_free(m);
        return -1;
    }
    return 0;
}

void model_copy_moment_rows(const Ops *o, const Param *s, int s_row, Param *d, int d_row, int n_rows) {
    size_t re = model_param_row_elems(d);
    for (int r = 0; r < n_rows;) {
        int sr = s_row + r, dr = d_row + r;
        if (dr < d->moment_row0) { /* d keeps nothing here: skip to its first row with moments */
            r += d->moment_row0 - dr;
            continue;
        }
        /* a run of rows that s has (copy) or has not (zero) */
        int has = sr >= s->moment_row0, run = has ? n_rows - r : s->moment_row0 - sr;
        if (run > n_rows - r) run = n_rows - r;
        size_t bytes = (size_t)run * re * sizeof(float), doff = (size_t)(dr - d->moment_row0) * re;
        if (has) {
            size_t soff = (size_t)(sr - s->moment_row0) * re;
            o->copy(o, d->m + doff, s->m + soff, bytes);
            o->copy(o, d->v + doff, s->v + soff, bytes);
        } else {
            o->zero(o, d->m + doff, bytes);
            o->zero(o, d->v + doff, bytes);
        }
        r += run;
    }
}

size_t model_param_offset(const Model *m, int index) {
    return (size_t)(tensor_f32(&m->params[index].t) - m->param_mem);
}

void model_free(Model *m) {
    const Ops *o = m->ops;
    if (o) {
        o->free(o, m->param_mem);
        o->free(o, m->grad_mem);
        o->free(o, m->m_mem);
        o->free(o, m->v_mem);
        o->free(o, m->lora_eff);
        o->free(o, m->act_mem);
        o->free(o, m->grad_scratch);
        o->free(o, m->tokens);
        o->free(o, m->targets);
    }
    free(m->params);
    free(m->tau);
    free(m->layers);
    free(m->adam_ranges);
    memset(m, 0, sizeof *m);
}

static void fill_normal(float *host, size_t n, float std, Rng *r) {
    for (size_t i = 0; i < n; i++) host[i] = std * rng_normal(r);
}

float model_value_init_std(const ModelConfig *c) {
    return 2.0f / ((float)c->n_layer * sqrtf((float)c->d_model));
}

/* The std of parameter i's N(0, std) init, or a constant fill (norm
 * weights 1, the final LayerNorm's bias 0) when *fill is set. */
static float init_std(const Model *m, int i, int *fill, float *value) {
    const ArchLayout *L = layout_of(&m->cfg);
    *fill = 0;
    if (m->params[i].t.ndim == 1) {
        *fill = 1;
        *value = i == lnf_b_index(m) ? 0.0f : 1.0f;
        return 0.0f;
    }
    if (i == 0 || i >= model_first_extra_param(&m->cfg)) return 0.02f; /* extras: grow inits them */
    int j = (i - 1) % L->params_per_layer, w = 0;
    while (w + 1 < PATT_PER_LAYER && L->site_first_param[w + 1] <= j) w++;
    int last_of_site = j == L->site_first_param[w] + L->site_param_count[w] - 1;
    if (m->cfg.arch == ARCH_TOKENFORMER) /* keys 0.02, values (the site's last) scaled */
        return last_of_site ? model_value_init_std(&m->cfg) : 0.02f;
    /* the baselines' output projections (attn.o, mlp.down) are scaled down */
    if (w == PATT_O || (w == PATT_FFN && last_of_site))
        return 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer);
    return 0.02f;
}

void model_init_weights(Model *m, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    float *host = tf_malloc(m->n_param_elems * sizeof(float), "initial weights");
    for (int i = 0; i < m->n_params; i++) {
        size_t n = tensor_numel(&m->params[i].t);
        float *h = host + model_param_offset(m, i), value;
        int fill;
        float std = init_std(m, i, &fill, &value);
        if (fill)
            for (size_t j = 0; j < n; j++) h[j] = value;
        else
            fill_normal(h, n, std, &r);
    }
    m->ops->to_device(m->ops, m->param_mem, host, m->n_param_elems * sizeof(float));
    free(host);
    /* tau = sqrt(n) for a Pattention; the baselines' MLP ignores it (1) */
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++)
            *model_patt_tau(m, l, w) =
                m->cfg.arch == ARCH_TOKENFORMER ? sqrtf((float)model_patt_rows(m, l, w)) : 1.0f;
}

/* ------------------------------------------------------------------ */
/* activations                                                          */

/* q, k and v of layer l run as one Pattention group (ops.h) when they have
 * the same rows, which `grow` keeps so. */
static int qkv_group_size(const Model *m, int l) {
    int n = model_patt_rows(m, l, PATT_Q);
    return model_patt_rows(m, l, PATT_K) == n && model_patt_rows(m, l, PATT_V) == n ? 3 : 1;
}

/* Floats that hold n elements of an attention tensor (ops.h) of the
 * model's type, and the tensor that starts n elements after p. */
static size_t attn_floats(const Model *m, size_t n) {
    return (n * dtype_size(m->attn_dtype) + sizeof(float) - 1) / sizeof(float);
}
static float *attn_offset(const Model *m, float *p, size_t n) {
    return (float *)((char *)p + n * dtype_size(m->attn_dtype));
}

/* The mode a Pattention-op site runs (ops.h PNormMode): the config's
 * normalization, or the baselines' MLP activation for their FFN. */
static int site_mode(const Model *m, int w) {
    if (w == PATT_FFN && m->cfg.arch == ARCH_TRANSFORMER) return ACT_GELU;
    if (w == PATT_FFN && m->cfg.arch == ARCH_TRANSFORMERPP) return ACT_SWIGLU;
    return m->cfg.pnorm;
}

/* The score columns of a Pattention-op site, as pattention_sizes takes
 * them (2h under SwiGLU); 0 for a linear site, which saves no scores. */
static int site_score_cols(const Model *m, int l, int w) {
    if (model_site_is_linear(m, w)) return 0;
    return model_patt_rows(m, l, w) * (site_mode(m, w) == ACT_SWIGLU ? 2 : 1);
}

/* The dA scratch serves every Pattention (group) of the model in turn. */
static size_t dA_scratch_floats(const Model *m, int N) {
    size_t most = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            if (model_site_is_linear(m, w)) continue;
            int G = w == PATT_Q ? qkv_group_size(m, l) : 1;
            size_t a, s, da;
            m->ops->pattention_sizes(m->ops, G, N, site_score_cols(m, l, w), &a, &s, &da);
            if (da > most) most = da;
        }
    for (int site = 0; site < ADAPT_SITES; site++) {
        size_t a, s, da;
        if (!adapters_score_cols(m, site)) continue;
        m->ops->pattention_sizes(m->ops, 1, N, adapters_score_cols(m, site), &a, &s, &da);
        if (da > most) most = da;
    }
    return most;
}

/* Walks the activation layout twice: once to count (base NULL), once to
 * hand out pointers, so that the two can never disagree. */
static size_t layout_activations(Model *m, float *base, int B, int T) {
    size_t N = (size_t)B * T, d = m->cfg.d_model, V = m->cfg.vocab_size, H = m->cfg.n_head;
    size_t att_floats, datt_floats;
    m->ops->attention_sizes(m->ops, B, T, (int)H, (int)(d / H), &att_floats, &datt_floats);
    size_t off = 0;
#define TAKE(ptr, count)                            \
    do {                                            \
        if (base) (ptr) = base + off;               \
        off += ((size_t)(count) + 15) & ~(size_t)15; \
    } while (0)
    /* Shared by all layers: the branch outputs o and f (consumed by the
     * residual sum at once, not needed by backward). */
    float *branch_shared = NULL;
    TAKE(branch_shared, N * d);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        LayerActs *a = &m->layers[l];
        a->o = a->f = branch_shared;
        /* the normalized inputs of the Pattentions, which normalize them
         * themselves in forward (ops.h PattInput): attention-tensor typed */
        TAKE(a->ln1, attn_floats(m, N * d));
        TAKE(a->ln2, attn_floats(m, N * d));
        TAKE(a->x, N * d);
        TAKE(a->ln1_mean, N);
        TAKE(a->ln1_rstd, N);
        a->qkv_group = qkv_group_size(m, l);
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            int G = w == PATT_Q ? a->qkv_group : 1;
            a->A[w] = a->S[w] = NULL;
            if (w > PATT_Q && w < PATT_Q + a->qkv_group) continue; /* in q's group */
            if (model_site_is_linear(m, w)) continue;
            size_t a_floats, s_floats, da_floats;
            m->ops->pattention_sizes(m->ops, G, (int)N, site_score_cols(m, l, w), &a_floats,
                                     &s_floats, &da_floats);
            TAKE(a->A[w], a_floats);
            TAKE(a->S[w], s_floats);
        }
        for (int site = 0; site < ADAPT_SITES; site++) {
            size_t a_floats, s_floats, da_floats;
            a->adA[site] = a->adS[site] = NULL;
            if (!adapters_score_cols(m, site)) continue;
            m->ops->pattention_sizes(m->ops, 1, (int)N, adapters_score_cols(m, site), &a_floats,
                                     &s_floats, &da_floats);
            TAKE(a->adA[site], a_floats);
            TAKE(a->adS[site], s_floats);
        }
        TAKE(a->q, attn_floats(m, 3 * N * d)); /* q, k, v: stack_qkv places k and v */
        TAKE(a->att, att_floats);
        TAKE(a->y, attn_floats(m, N * d));
        TAKE(a->h, N * d);
        TAKE(a->ln2_mean, N);
        TAKE(a->ln2_rstd, N);
    }
    TAKE(m->x_final, N * d);
    TAKE(m->lnf, N * d);
    TAKE(m->lnf_mean, N);
    TAKE(m->lnf_rstd, N);
    TAKE(m->logits, N * V);
    TAKE(m->probs, N * V);
#undef TAKE
    return off;
}

/* Backward scratch: residual gradient, branch gradients, scores, attention. */
typedef struct {
    float *dres, *dtmp, *dln, *dq, *dk, *dv, *dy, *dA, *datt, *dlogits;
    float *lora_u, *lora_v; /* N x r each: the low-rank LoRA backward (adapters.h) */
} Scratch;

static size_t layout_scratch(const Model *m, float *base, Scratch *s) {
    size_t N = (size_t)m->B_alloc * m->T_alloc, d = m->cfg.d_model, V = m->cfg.vocab_size;
    size_t att, datt;
    m->ops->attention_sizes(m->ops, m->B_alloc, m->T_alloc, m->cfg.n_head,
                            m->cfg.d_model / m->cfg.n_head, &att, &datt);
    size_t da = dA_scratch_floats(m, (int)N);
    /* Every gradient has its own buffer, so that no reordering of
     * model_backward can clobber a live one; dy and dtmp cost N x d each,
     * little beside the activations. dq, dk, dv and dy are attention
     * tensors; dA and datt have the backend's sizes. */
    size_t Nr = N * (size_t)m->cfg.lora_rank;
    size_t sizes[10] = {N * d, attn_floats(m, 3 * N * d), N * d, attn_floats(m, N * d), N * d,
                        da, datt, N * V, Nr, Nr};
    float **ptrs[10] = {&s->dres, &s->dq, &s->dln, &s->dy, &s->dtmp, &s->dA, &s->datt, &s->dlogits,
                        &s->lora_u, &s->lora_v};
    size_t off = 0;
    for (int i = 0; i < 10; i++) {
        if (base) *ptrs[i] = base + off;
        off += (sizes[i] + 15) & ~(size_t)15;
    }
    if (!base) return off;
    /* dq, dk, dv stacked for the current shape, as q, k, v (stack_qkv) */
    size_t Nd = (size_t)m->B * m->T * d;
    s->dk = attn_offset(m, s->dq, Nd);
    s->dv = attn_offset(m, s->dk, Nd);
    return off;
}

static Scratch scratch_of(const Model *m) {
    Scratch s;
    layout_scratch(m, m->grad_scratch, &s);
    return s;
}

int model_alloc_activations(Model *m, int B, int T, char *err) {
    const Ops *o = m->ops;
    if (T > m->cfg.block_size) return tf_err(err, "T=%d exceeds block_size %d", T, m->cfg.block_size);
    o->free(o, m->act_mem);
    o->free(o, m->grad_scratch);
    o->free(o, m->tokens);
    o->free(o, m->targets);
    m->act_mem = m->grad_scratch = NULL;
    m->tokens = m->targets = NULL;
    m->attn_dtype = matmul_precision_attn_dtype(m->precision);
    if (o->attn_dtype(o) != m->attn_dtype)
        return tf_err(err, "internal error: the %s backend computes attention tensors in %s, the model (precision "
                      "%s) in %s: set the backend with model_set_precision", o->name,
                      dtype_name(o->attn_dtype(o)), matmul_precision_name(m->precision),
                      dtype_name(m->attn_dtype));
    free(m->layers);
    m->layers = tf_calloc((size_t)m->cfg.n_layer, sizeof(LayerActs), "layer activations");
    m->B = m->B_alloc = B;
    m->T = m->T_alloc = T;
    size_t n_act = layout_activations(m, NULL, B, T);
    Scratch unused;
    size_t n_scratch = layout_scratch(m, NULL, &unused);
    size_t act_bytes, scratch_bytes;
    if (tf_mul_overflows(n_act, sizeof(float), &act_bytes) ||
        tf_mul_overflows(n_scratch, sizeof(float), &scratch_bytes))
        return tf_err(err, "activations for B=%d, T=%d do not fit in memory", B, T);
    m->act_mem = o->alloc(o, act_bytes);
    m->grad_scratch = o->alloc(o, scratch_bytes);
    m->tokens = o->alloc(o, (size_t)B * T * sizeof(int));
    m->targets = o->alloc(o, (size_t)B * T * sizeof(int));
    if (!m->act_mem || !m->grad_scratch || !m->tokens || !m->targets)
        return tf_err(err, "out of %s memory: activations for B=%d, T=%d need %.1f MiB", o->name,
                      B, T, (act_bytes + scratch_bytes) / 1048576.0);
    layout_activations(m, m->act_mem, B, T);
    return 0;
}

/* ------------------------------------------------------------------ */
/* forward / backward                                                   */

static uint64_t dropout_seed_for(uint64_t seed, int layer, int site) {
    return tf_mix64(seed + 0x632be59bd9b4e019ULL * (uint64_t)(2 * layer + site + 1));
}

/* A site's input: the attention output y, or the block's norm of x (h)
 * (non-affine LayerNorm, or RMSNorm with the layer's weight), which the op
 * normalizes itself (ops.h PattInput), saving the statistics and the
 * normalized rows (the layer's ln1/ln2) for backward. */
static PattInput attn_input(const float *y) { return (PattInput){.x = y, .attn = 1}; }
static PattInput block_norm_input(const Model *m, int l, int k, const float *x, float *xn,
                                  float *mean, float *rstd) {
    int w = norm_param(m, l, k);
    return (PattInput){.x = x, .xn = xn, .mean = mean, .rstd = rstd,
                       .norm = w >= 0 ? NORM_RMS : NORM_LAYER,
                       .w = w >= 0 ? tensor_f32(&m->params[w].t) : NULL};
}
static PattInput ln1_input(const Model *m, int l, LayerActs *a) {
    return block_norm_input(m, l, 0, a->x, a->ln1, a->ln1_mean, a->ln1_rstd);
}
static PattInput ln2_input(const Model *m, int l, LayerActs *a) {
    return block_norm_input(m, l, 1, a->h, a->ln2, a->ln2_mean, a->ln2_rstd);
}

/* dx += the gradient through block norm k of layer l, given d(its output). */
static void block_norm_backward(Model *m, int l, int k, float *dx, const float *dxn,
                                PattInput in) {
    const Ops *o = m->ops;
    int N = m->B * m->T, d = m->cfg.d_model, w = norm_param(m, l, k);
    if (in.norm == NORM_RMS)
        o->rmsnorm_backward(o, dx, model_grad_if_needed(m, w), dxn, in.x, in.w, in.rstd, N, d);
    else
        o->layernorm_backward(o, dx, NULL, NULL, dxn, in.x, NULL, in.mean, in.rstd, N, d);
}

PattInput model_patt_last_input(const Model *m, int l, int w) {
    const LayerActs *a = &m->layers[l];
    const float *rows = w == PATT_O ? a->y : w == PATT_FFN ? a->ln2 : a->ln1;
    return attn_input(rows);
}

/* q, k and v are attention tensors (ops.h), the outputs of o and the FFN not. */
static int output_is_attn(int w) { return w <= PATT_V; }

/* The weights the passes multiply by: the parameter itself, or under LoRA
 * its copy in lora_eff with the low-rank update added (lora_refresh). */
static const float *pass_weight(const Model *m, int idx) {
    if (!m->lora_eff) return tensor_f32(&m->params[idx].t);
    return m->lora_eff + model_param_offset(m, idx);
}

/* The arguments shared by both directions of the Pattention-op site
 * (group) that starts at w of layer l: key = the site's first parameter,
 * value = its last (a Pattention's key/value, an MLP's (gate+)up/down). */
static PattArgs patt_args(Model *m, int l, int w, int G, float *dA, PattInput in,
                          const LayerActs *a) {
    int d = m->cfg.d_model, idx = model_patt_param(m, l, w);
    int last = idx + layout_of(&m->cfg)->site_param_count[w] - 1;
    return (PattArgs){.X = in,
                      .K = pass_weight(m, idx),
                      .V = pass_weight(m, last),
                      .tau = model_patt_tau(m, l, w),
                      .G = G,
                      .mode = site_mode(m, w),
                      .N = m->B * m->T,
                      .d_in = d,
                      .n = model_patt_rows(m, l, w),
                      .d_out = d,
                      .y_attn = output_is_attn(w),
                      .A = a->A[w],
                      .S = a->S[w],
                      .dA = dA};
}

static LinearArgs linear_args(Model *m, int l, int w, int G, PattInput in) {
    int d = m->cfg.d_model;
    return (LinearArgs){.X = in,
                        .W = pass_weight(m, model_patt_param(m, l, w)),
                        .G = G,
                        .N = m->B * m->T,
                        .d_in = d,
                        .d_out = d,
                        .y_attn = output_is_attn(w)};
}

/* Sites w .. w + G - 1 of layer l (a group when G > 1: their parameters
 * and outputs are stacked) on the same input, through the arch's op (a
 * Pattention, the MLP, or a linear); out = residual + their output when
 * residual is set (G = 1). */
static void site_forward_onto(Model *m, int l, int w, int G, float *out, const float *residual,
                              float *dA, PattInput in, const LayerActs *a) {
    if (model_site_is_linear(m, w)) {
        LinearArgs args = linear_args(m, l, w, G, in);
        args.Y = out;
        args.residual = residual;
        m->ops->linear_forward(m->ops, &args);
        return;
    }
    PattArgs args = patt_args(m, l, w, G, dA, in, a);
    args.Y = out;
    args.residual = residual;
    m->ops->pattention_forward(m->ops, &args);
}
static void site_forward(Model *m, int l, int w, int G, float *out, float *dA, PattInput in,
                         const LayerActs *a) {
    site_forward_onto(m, l, w, G, out, NULL, dA, in, a);
}

/* Where the Pattention-op site (group) starting at w of layer l accumulates
 * the gradient of its parameters `from` .. `to` (places in each member's
 * run of parameters; the op writes the G members' stacked): the first
 * one's buffer, or NULL when none of them needs one, so that the op skips
 * the product (ops.h). A group with one member trained computes them all
 * (its dK is one product). */
static float *site_grads(Model *m, int l, int w, int G, int from, int to) {
    int needed = 0;
    for (int g = 0; g < G; g++)
        for (int k = from; k <= to; k++) needed |= model_param_needs_grad(m, model_patt_param(m, l, w + g) + k);
    return needed ? m->params[model_patt_param(m, l, w) + from].grad : NULL;
}

/* The LoRA factors' gradients of the members of the linear group (q, k, v,
 * or o alone) that have one, from the group's input rows and its members'
 * output gradients (adapters.h lora_linear_backward): no dW product for them. */
static void lora_site_backward(Model *m, int l, int w, int G, const float *dout, PattInput in) {
    Scratch s = scratch_of(m);
    size_t Ny = (size_t)m->B * m->T * m->cfg.d_model;
    /* the rows the product took: the normalized rows (as an attention tensor) or y */
    PattInput rows = in.attn ? in : attn_input(in.xn);
    for (int g = 0; g < G; g++) {
        int idx = model_patt_param(m, l, w + g);
        if (!lora_low_rank(m, idx)) continue;
        const float *dy = (const float *)((const char *)dout + (size_t)g * Ny * dtype_size(m->attn_dtype));
        lora_linear_backward(m, idx, rows, dy, output_is_attn(w + g), s.lora_u, s.lora_v);
    }
}

/* The linear group (q, k, v) backward: dX through every member, dW for
 * those that need it: all (or none) in the group's one call, or, when only
 * some do (LoRA on q and v), their products member by member after a call
 * for dX alone, so that a frozen member costs no dW product; and the
 * members' LoRA factors. */
static void linear_site_backward(Model *m, int l, int w, int G, float *din, int accumulate,
                                 const float *dout, PattInput in) {
    lora_site_backward(m, l, w, G, dout, in);
    int needed = 0;
    for (int g = 0; g < G; g++) needed += model_param_needs_grad(m, model_patt_param(m, l, w + g));
    LinearArgs args = linear_args(m, l, w, G, in);
    args.dX = din;
    args.dW = needed == G ? model_grad_if_needed(m, model_patt_param(m, l, w)) : NULL;
    args.dY = dout;
    args.accumulate_dx = accumulate;
    m->ops->linear_backward(m->ops, &args);
    if (needed == G || !needed) return;
    size_t Ny = (size_t)m->B * m->T * m->cfg.d_model;
    for (int g = 0; g < G; g++) {
        int idx = model_patt_param(m, l, w + g);
        if (!model_param_needs_grad(m, idx)) continue;
        LinearArgs one = linear_args(m, l, w + g, 1, in);
        one.dW = model_grad_if_needed(m, idx);
        /* member g's rows of the stacked dY (q, k, v: attention tensors) */
        one.dY = (const float *)((const char *)dout + (size_t)g * Ny * dtype_size(m->attn_dtype));
        m->ops->linear_backward(m->ops, &one); /* dX NULL: dW alone */
    }
}

/* din += (accumulate) or = the gradient of the input rows (the norm's
 * output, for a normalized input) of the site (group) starting at w of
 * layer l; dout is stacked like its outputs. */
static void site_backward(Model *m, int l, int w, int G, float *din, int accumulate, float *dA,
                          const float *dout, PattInput in, const LayerActs *a) {
    if (model_site_is_linear(m, w)) {
        linear_site_backward(m, l, w, G, din, accumulate, dout, in);
        return;
    }
    /* keys: every parameter but the last (SwiGLU: gate and up, stacked); values: the last */
    int last = layout_of(&m->cfg)->site_param_count[w] - 1;
    PattArgs args = patt_args(m, l, w, G, dA, in, a);
    args.dX = din;
    args.dK = site_grads(m, l, w, G, 0, last - 1);
    args.dV = site_grads(m, l, w, G, last, last);
    args.dY = dout;
    args.accumulate_dx = accumulate;
    m->ops->pattention_backward(m->ops, &args);
}

/* q, k, v = P_q(LN1(x)), P_k(LN1(x)), P_v(LN1(x)): one group, or three Pattentions. */
static void qkv_forward(Model *m, int l, LayerActs *a, float *dA) {
    if (a->qkv_group == 3) {
        site_forward(m, l, PATT_Q, 3, a->q, dA, ln1_input(m, l, a), a);
        return;
    }
    site_forward(m, l, PATT_Q, 1, a->q, dA, ln1_input(m, l, a), a);
    site_forward(m, l, PATT_K, 1, a->k, dA, ln1_input(m, l, a), a);
    site_forward(m, l, PATT_V, 1, a->v, dA, ln1_input(m, l, a), a);
}

/* dln = d(LN1(x)) from dq, dk, dv (stacked). */
static void qkv_backward(Model *m, int l, LayerActs *a, float *dqkv, float *dln,
                         float *dA) {
    size_t Nd = (size_t)m->B * m->T * m->cfg.d_model;
    if (a->qkv_group == 3) {
        site_backward(m, l, PATT_Q, 3, dln, 0, dA, dqkv, ln1_input(m, l, a), a);
        return;
    }
    for (int w = PATT_Q; w <= PATT_V; w++)
        site_backward(m, l, w, 1, dln, w != PATT_Q, dA, attn_offset(m, dqkv, (w - PATT_Q) * Nd),
                      ln1_input(m, l, a), a);
}

/* out = x + drop(P_w(in)) for the block's o (w = PATT_O) or FFN, dropout only
 * while training. Without dropout the Pattention adds x itself (ops.h: a
 * backend may fuse the sum into its product); with it, its output goes to
 * the branch buffer and dropout_add makes the sum. */
static void residual_branch(Model *m, int l, int w, float *out, const float *x, float *dA,
                            PattInput in, LayerActs *a, uint64_t seed) {
    size_t n = (size_t)m->B * m->T * m->cfg.d_model;
    float p = m->last_training ? m->cfg.dropout : 0.0f;
    if (p <= 0.0f) {
        site_forward_onto(m, l, w, 1, out, x, dA, in, a);
        return;
    }
    float *branch = w == PATT_O ? a->o : a->f;
    site_forward(m, l, w, 1, branch, dA, in, a);
    m->ops->dropout_add(m->ops, out, x, branch, p, seed, n);
}

/* The q, k, v group writes its members one after another, N x d apart for
 * the N of the call: k and v follow q at that distance (inside the block
 * allocated for the largest N). */
static void stack_qkv(Model *m, size_t N) {
    size_t Nd = N * (size_t)m->cfg.d_model;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        LayerActs *a = &m->layers[l];
        a->k = attn_offset(m, a->q, Nd);
        a->v = attn_offset(m, a->k, Nd);
    }
}

/* The final norm: affine LayerNorm, or RMSNorm with weight (transformerpp). */
static void final_norm_forward(Model *m) {
    const Ops *o = m->ops;
    int N = m->B * m->T, d = m->cfg.d_model, b = lnf_b_index(m);
    const float *w = tensor_f32(&m->params[lnf_w_index(m)].t);
    if (b < 0) o->rmsnorm_forward(o, m->lnf, m->lnf_rstd, m->x_final, w, N, d);
    else
        o->layernorm_forward(o, m->lnf, m->lnf_mean, m->lnf_rstd, m->x_final, w,
                             tensor_f32(&m->params[b].t), N, d);
}

static void final_norm_backward(Model *m, float *dx, const float *dout) {
    const Ops *o = m->ops;
    int N = m->B * m->T, d = m->cfg.d_model, b = lnf_b_index(m);
    const float *w = tensor_f32(&m->params[lnf_w_index(m)].t);
    float *dw = model_grad_if_needed(m, lnf_w_index(m));
    if (b < 0) o->rmsnorm_backward(o, dx, dw, dout, m->x_final, w, m->lnf_rstd, N, d);
    else
        o->layernorm_backward(o, dx, dw, model_grad_if_needed(m, b), dout, m->x_final, w,
                              m->lnf_mean, m->lnf_rstd, N, d);
}

/* The block's attention on its q, k, v (q and k adjacent: stack_qkv). The
 * training forward rotates positions 0 .. T-1 and attends within the rows;
 * decoding (kv set) rotates positions kv->pos .., appends k and v to the
 * layer's cache and attends over everything cached, in one op. */
static void attention_step(Model *m, int l, LayerActs *a, int B, int T, KVCache *kv) {
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, H = c->n_head, hd = d / H, rot = model_config_rot_dims(c);
    if (!kv) {
        o->rope(o, a->q, 2 * B, T, H, hd, rot, 0);
        o->attention_forward(o, a->y, a->att, a->q, a->k, a->v, B, T, H, hd);
        return;
    }
    DecodeAttnArgs args = {.out = a->y, .q = a->q, .k = a->k, .v = a->v, .k_cache = kv->k[l],
                           .v_cache = kv->v[l], .pos = kv->pos_dev, .B = B, .T = T,
                           .T_max = kv->T_max, .H = H, .hd = hd, .rot = rot,
                           .at_start = T > 1 && kv->pos == 0};
    o->attention_decode(o, &args);
}

static float forward_pass(Model *m, const int *tokens, const int *targets, int B, int T,
                          int training, uint64_t dropout_seed, KVCache *kv);

float model_forward(Model *m, const int *tokens, const int *targets, int B, int T, int training,
                    uint64_t dropout_seed) {
    return forward_pass(m, tokens, targets, B, T, training, dropout_seed, NULL);
}

int model_kv_alloc(Model *m, KVCache *kv, int B, char *err) {
    const Ops *o = m->ops;
    int L = m->cfg.n_layer;
    memset(kv, 0, sizeof *kv);
    kv->B = B;
    kv->T_max = m->cfg.block_size;
    kv->dtype = m->attn_dtype;
    size_t one = attn_floats(m, (size_t)B * kv->T_max * m->cfg.d_model);
    /* the position and the tokens after the caches (ints, a float's room each) */
    size_t inputs = 1 + (size_t)B * kv->T_max;
    kv->mem = o->alloc(o, (2 * (size_t)L * one + inputs) * sizeof(float));
    if (!kv->mem)
        return tf_err(err, "out of %s memory: the KV cache for %d streams needs %.1f MiB", o->name,
                      B, 2.0 * L * one * sizeof(float) / 1048576.0);
    kv->k = tf_malloc(2 * (size_t)L * sizeof(float *), "KV cache table");
    kv->v = kv->k + L;
    for (int l = 0; l < L; l++) {
        kv->k[l] = kv->mem + (2 * (size_t)l) * one;
        kv->v[l] = kv->mem + (2 * (size_t)l + 1) * one;
    }
    kv->pos_dev = (int *)(kv->mem + 2 * (size_t)L * one);
    kv->tokens_dev = kv->pos_dev + 1;
    kv->inputs = tf_malloc(inputs * sizeof(int), "decode inputs");
    return 0;
}

void model_kv_free(Model *m, KVCache *kv) {
    m->ops->decode_step_free(m->ops, &kv->step);
    m->ops->decode_step_free(m->ops, &kv->restart);
    if (kv->mem) m->ops->free(m->ops, kv->mem);
    free(kv->k);
    free(kv->inputs);
    memset(kv, 0, sizeof *kv);
}

/* The host side of a forward: its shape, where q, k and v lie, its flags. */
static void forward_begin(Model *m, int B, int T, int training, uint64_t dropout_seed) {
    /* Callers size activations first; a larger batch would overrun them. */
    if ((size_t)B * T > (size_t)m->B_alloc * m->T_alloc || T > m->T_alloc)
        tf_die("internal: forward with B=%d T=%d beyond allocated B=%d T=%d", B, T, m->B_alloc, m->T_alloc);
    require_attn_dtype(m, m->attn_dtype, "the model's activations");
    m->B = B;
    m->T = T;
    stack_qkv(m, (size_t)B * T);
    m->last_training = training;
    m->last_dropout_seed = dropout_seed;
    m->has_targets = 0;
}

/* The tokens into backend memory; decoding, the cache's position and the
 * tokens in one copy, into the cache's block (where sample_tokens may put
 * the next step's). */
static void forward_inputs(Model *m, const int *tokens, KVCache *kv) {
    const Ops *o = m->ops;
    size_t n = (size_t)m->B * m->T;
    if (!kv) {
        o->to_device(o, m->tokens, tokens, n * sizeof(int));
        return;
    }
    kv->inputs[0] = kv->pos;
    memcpy(kv->inputs + 1, tokens, n * sizeof(int));
    o->to_device(o, kv->pos_dev, kv->inputs, (n + 1) * sizeof(int));
}

/* From the tokens in backend memory to the logits: what a recorded decode
 * step holds, so nothing here may touch host memory. */
static void forward_layers(Model *m, KVCache *kv) {
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    int B = m->B, T = m->T, N = B * T, d = c->d_model, V = c->vocab_size;
    uint64_t dropout_seed = m->last_dropout_seed;
    float *dA = scratch_of(m).dA; /* the Pattentions' forward scratch */
    o->embedding_forward(o, m->layers[0].x, kv ? kv->tokens_dev : m->tokens,
                         tensor_f32(&m->params[0].t), N, d);
    for (int l = 0; l < c->n_layer; l++) {
        LayerActs *a = &m->layers[l];
        float *x_next = l + 1 < c->n_layer ? m->layers[l + 1].x : m->x_final;
        qkv_forward(m, l, a, dA);
        attention_step(m, l, a, B, T, kv);
        residual_branch(m, l, PATT_O, a->h, a->x, dA, attn_input(a->y), a,
                        dropout_seed_for(dropout_seed, l, 0));
        adapters_forward(m, l, ADAPT_ATTN, ln1_input(m, l, a), a->adA[ADAPT_ATTN],
                         a->adS[ADAPT_ATTN], dA, a->o, a->h);
        residual_branch(m, l, PATT_FFN, x_next, a->h, dA, ln2_input(m, l, a), a,
                        dropout_seed_for(dropout_seed, l, 1));
        adapters_forward(m, l, ADAPT_MLP, ln2_input(m, l, a), a->adA[ADAPT_MLP],
                         a->adS[ADAPT_MLP], dA, a->f, x_next);
    }
    final_norm_forward(m);
    /* tied head: logits = norm_f(x) wte^T */
    o->matmul(o, m->logits, m->lnf, tensor_f32(&m->params[0].t), N, V, d, 0, 1, 1.0f, 0.0f);
}

static float forward_pass(Model *m, const int *tokens, const int *targets, int B, int T,
                          int training, uint64_t dropout_seed, KVCache *kv) {
    const Ops *o = m->ops;
    forward_begin(m, B, T, training, dropout_seed);
    forward_inputs(m, tokens, kv);
    /* a training or evaluation forward may follow any change of the weights */
    if (m->lora_eff && (!kv || m->lora_stale)) lora_refresh(m);
    forward_layers(m, kv);
    if (!targets) return 0.0f;
    int N = B * T, V = m->cfg.vocab_size;
    m->has_targets = 1;
    o->to_device(o, m->targets, targets, (size_t)N * sizeof(int));
    /* the loss is a mean over rows with a target (>= 0): backward scales by the same count */
    m->n_targets = 0;
    for (int i = 0; i < N; i++) m->n_targets += targets[i] >= 0 && targets[i] < V;
    return o->cross_entropy_forward(o, m->probs, m->logits, m->targets, N, V);
}

/* What a single-token decode step runs (ops.h decode_step). */
typedef struct {
    Model *m;
    KVCache *kv;
} DecodeLayers;

static void decode_layers(void *arg) {
    DecodeLayers *d = arg;
    forward_layers(d->m, d->kv);
}

/* The steps that repeat with the same shapes, which the backend may record
 * and replay (ops.h decode_step): the single token, every time, and a chunk
 * of restart_T tokens from position 0 (every window restart's; a prompt of
 * that length too). Other chunks (a prompt's): NULL. */
static DecodeStep *decode_recording_for(KVCache *kv, int T) {
    if (T == 1) return &kv->step;
    if (T == kv->restart_T && kv->pos == 0) return &kv->restart;
    return NULL;
}

void model_decode(Model *m, KVCache *kv, const int *tokens, int T) {
    if (T < 1 || kv->pos + T > kv->T_max || (!tokens && T != 1))
        tf_die("internal: decode of %d tokens at position %d beyond the cache (%d)", T, kv->pos,
               kv->T_max);
    require_attn_dtype(m, kv->dtype, "the KV cache");
    DecodeStep *recordable = decode_recording_for(kv, T);
    if (recordable) {
        const Ops *o = m->ops;
        DecodeLayers d = {m, kv};
        forward_begin(m, kv->B, T, 0, 0);
        if (tokens) forward_inputs(m, tokens, kv);
        if (m->lora_eff && m->lora_stale) lora_refresh(m); /* outside the recorded step */
        o->decode_step(o, recordable, decode_layers, &d);
    } else {
        forward_pass(m, tokens, NULL, kv->B, T, 0, 0, kv);
    }
    kv->pos += T;
}

void model_kv_restart(KVCache *kv) { kv->pos = 0; }

void model_kv_never_record(KVCache *kv) { kv->step.off = kv->restart.off = 1; }

void model_zero_grad(Model *m) {
    if (m->n_grad_elems) m->ops->zero(m->ops, m->grad_mem, m->n_grad_elems * sizeof(float));
}

/* d(branch) from d(residual sum) through dropout: a copy when dropout is off. */
static const float *branch_grad(Model *m, const float *dres, float *tmp, uint64_t seed) {
    if (!(m->last_training && m->cfg.dropout > 0.0f)) return dres;
    m->ops->dropout_backward(m->ops, tmp, dres, m->cfg.dropout, seed,
                             (size_t)m->B * m->T * m->cfg.d_model);
    return tmp;
}

void model_backward(Model *m) { model_backward_scaled(m, 1.0f); }

/* The layer parameter i belongs to: -1 for wte, n_layer for the final norm. */
static int param_layer(const Model *m, int i) {
    int first_final = lnf_w_index(m), first_extra = model_first_extra_param(&m->cfg);
    if (i == 0) return -1;
    if (i < first_final) return (i - 1) / layout_of(&m->cfg)->params_per_layer;
    if (i < first_extra) return m->cfg.n_layer;
    return (i - first_extra) / adapters_params_per_layer(&m->cfg);
}

/* The lowest layer with a parameter that needs a gradient (-1: wte needs
 * one): below it nothing trains, so the input gradients need not go on. */
static int lowest_layer_with_grads(const Model *m) {
    int lowest = m->cfg.n_layer;
    for (int i = 0; i < m->n_params && lowest >= 0; i++)
        if (param_layer(m, i) < lowest && model_param_needs_grad(m, i)) lowest = param_layer(m, i);
    return lowest;
}

void model_backward_scaled(Model *m, float loss_scale) {
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    if (!m->has_targets) tf_die("internal: backward without a forward with targets");
    require_attn_dtype(m, m->attn_dtype, "the model's activations");
    int B = m->B, T = m->T, N = B * T, d = c->d_model, H = c->n_head, hd = d / H,
        V = c->vocab_size;
    int rot = model_config_rot_dims(c);
    size_t Nd = (size_t)N * d * sizeof(float);
    Scratch s = scratch_of(m);
    Param *wte = &m->params[0];
    /* frozen parameters get no gradient (model_param_needs_grad); below the
     * lowest layer that trains, backward stops */
    float *dwte = model_grad_if_needed(m, 0);
    int lowest = lowest_layer_with_grads(m);

    o->cross_entropy_backward(o, s.dlogits, m->probs, m->targets,
                              loss_scale / (float)(m->n_targets ? m->n_targets : 1), N, V);
    if (dwte) o->matmul(o, dwte, s.dlogits, m->lnf, V, d, N, 1, 0, 1.0f, 1.0f);
    o->matmul(o, s.dln, s.dlogits, tensor_f32(&wte->t), N, d, V, 0, 0, 1.0f, 0.0f);
    o->zero(o, s.dres, Nd);
    final_norm_backward(m, s.dres, s.dln);

    for (int l = c->n_layer - 1; l >= (lowest > 0 ? lowest : 0); l--) {
        LayerActs *a = &m->layers[l];
        uint64_t seed = m->last_dropout_seed;
        /* x_next = h + drop(f) */
        const float *df = branch_grad(m, s.dres, s.dtmp, dropout_seed_for(seed, l, 1));
        site_backward(m, l, PATT_FFN, 1, s.dln, 0, s.dA, df, ln2_input(m, l, a), a);
        adapters_backward(m, l, ADAPT_MLP, ln2_input(m, l, a), a->adA[ADAPT_MLP],
                          a->adS[ADAPT_MLP], s.dA, s.dres, s.dln);
        block_norm_backward(m, l, 1, s.dres, s.dln, ln2_input(m, l, a));
        /* h = x + drop(o) */
        const float *dout = branch_grad(m, s.dres, s.dtmp, dropout_seed_for(seed, l, 0));
        site_backward(m, l, PATT_O, 1, s.dy, 0, s.dA, dout, attn_input(a->y), a);
        o->attention_backward(o, s.dq, s.dk, s.dv, s.datt, s.dy, a->y, a->q, a->k, a->v, a->att, B,
                              T, H, hd);
        o->rope(o, s.dq, 2 * B, T, H, hd, rot, 1); /* dq and dk: adjacent */
        qkv_backward(m, l, a, s.dq, s.dln, s.dA);
        adapters_backward(m, l, ADAPT_ATTN, ln1_input(m, l, a), a->adA[ADAPT_ATTN],
                          a->adS[ADAPT_ATTN], s.dA, s.dres, s.dln);
        block_norm_backward(m, l, 0, s.dres, s.dln, ln1_input(m, l, a));
    }
    if (dwte) o->embedding_backward(o, dwte, s.dres, m->tokens, N, d);
    if (m->lora_eff) lora_grads(m);
}

/* ------------------------------------------------------------------ */
/* optimizer                                                            */

static size_t segment_rows_end(const Param *p, int k) {
    return k + 1 < p->n_seg ? (size_t)p->seg[k + 1].row_start
                            : (p->t.ndim == 2 ? (size_t)p->t.shape[0] : 1);
}

/* True when every row of every parameter trains with the shared step count
 * (and so has moments and gradients, laid out as the parameters): then whole-block calls
 * are exact and cheapest. */
static int all_rows_uniform(const Model *m) {
    if (m->n_moment_elems != m->n_param_elems || m->n_grad_elems != m->n_param_elems) return 0;
    for (int i = 0; i < m->n_params; i++) {
        const Param *p = &m->params[i];
        if (p->n_seg != 1 || p->seg[0].birth != 0 || p->seg[0].frozen) return 0;
    }
    return 1;
}

static int any_row_frozen(const Model *m) {
    for (int i = 0; i < m->n_params; i++)
        for (int k = 0; k < m->params[i].n_seg; k++)
            if (m->params[i].seg[k].frozen) return 1;
    return 0;
}

/* Frozen rows get gradients too (an op computes a tensor's whole gradient);
 * zeroing them leaves one reduction over the block for the norm of what
 * trains, where a sum per row segment returned to the host each time
 * (hundreds of device syncs per step after a few grows). Adjacent frozen
 * rows are zeroed together. */
static void zero_frozen_grads(Model *m) {
    float *start = NULL;
    size_t len = 0;
    for (int k = 0; k < m->n_params; k++) {
        Param *p = &m->params[memory_slot_param(m, k)];
        if (!p->grad) continue;
        size_t re = model_param_row_elems(p);
        for (int s = 0; s < p->n_seg; s++) {
            if (!p->seg[s].frozen) continue;
            size_t r0 = (size_t)p->seg[s].row_start, r1 = segment_rows_end(p, s);
            float *g = p->grad + r0 * re;
            if (start && g == start + len) {
                len += (r1 - r0) * re;
                continue;
            }
            if (start) m->ops->zero(m->ops, start, len * sizeof(float));
            start = g, len = (r1 - r0) * re;
        }
    }
    if (start) m->ops->zero(m->ops, start, len * sizeof(float));
}

/* The norm of the gradients of what trains. Zeroes frozen rows' gradients. */
float model_grad_norm(Model *m) {
    if (any_row_frozen(m)) zero_frozen_grads(m);
    return sqrtf(m->ops->sum_squares(m->ops, m->grad_mem, m->n_grad_elems));
}

int model_latest_birth(const Model *m) {
    int latest = 0;
    for (int i = 0; i < m->n_params; i++)
        for (int k = 0; k < m->params[i].n_seg; k++)
            if (m->params[i].seg[k].birth > latest) latest = m->params[i].seg[k].birth;
    return latest;
}

int model_freeze_old(Model *m) {
    int latest = model_latest_birth(m), frozen = 0;
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        for (int k = 0; k < p->n_seg; k++) {
            p->seg[k].frozen = p->seg[k].birth < latest;
            frozen += p->seg[k].frozen;
        }
    }
    return frozen;
}

int model_train_last_blocks(Model *m, int n_blocks) {
    if (n_blocks < 1 || n_blocks > m->cfg.n_layer) return -1;
    int first = m->cfg.n_layer - n_blocks, frozen = 0; /* wte is layer -1, the final norm n_layer */
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        int trains = param_layer(m, i) >= first;
        for (int k = 0; k < p->n_seg; k++) {
            p->seg[k].frozen = !trains;
            frozen += !trains;
        }
    }
    return frozen;
}

void model_unfreeze(Model *m) {
    for (int i = 0; i < m->n_params; i++)
        for (int k = 0; k < m->params[i].n_seg; k++) m->params[i].seg[k].frozen = 0;
}

static int param_trains(const Param *p) {
    for (int k = 0; k < p->n_seg; k++)
        if (!p->seg[k].frozen) return 1;
    return 0;
}

int model_param_needs_grad(const Model *m, int i) {
    if (param_trains(&m->params[i])) return 1;
    int a = adapters_lora_param(&m->cfg, i); /* its LoRA A (B is a + 1) */
    return a >= 0 && !lora_low_rank(m, i) && (param_trains(&m->params[a]) || param_trains(&m->params[a + 1]));
}

float *model_grad_if_needed(Model *m, int i) {
    if (!model_param_needs_grad(m, i)) return NULL;
    if (!m->params[i].grad)
        tf_die("internal error: %s trains but has no gradient buffer (model_alloc_grads after unfreezing)",
               m->params[i].t.name);
    return m->params[i].grad;
}

/* Marks, in written[], the parameters of sites w .. w + G - 1 of layer l at
 * places from .. to of each site's run when one of them needs a gradient:
 * the op computes theirs together (site_grads). */
static void mark_site_grads(const Model *m, int l, int w, int G, int from, int to, int *written) {
    int needed = 0;
    for (int g = 0; g < G; g++)
        for (int k = from; k <= to; k++) needed |= model_param_needs_grad(m, model_patt_param(m, l, w + g) + k);
    for (int g = 0; g < G && needed; g++)
        for (int k = from; k <= to; k++) written[model_patt_param(m, l, w + g) + k] = 1;
}

/* Which parameters backward writes a gradient into: those that need one,
 * and every member of a Pattention group (site_grads) that has a member
 * needing one. */
static void mark_written_grads(const Model *m, int *written) {
    for (int i = 0; i < m->n_params; i++) written[i] = model_param_needs_grad(m, i);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        int G = qkv_group_size(m, l);
        for (int w = PATT_Q; w < PATT_PER_LAYER; w += w == PATT_Q ? G : 1) {
            int g = w == PATT_Q ? G : 1, last = layout_of(&m->cfg)->site_param_count[w] - 1;
            if (model_site_is_linear(m, w)) continue; /* member by member: linear_site_backward */
            mark_site_grads(m, l, w, g, 0, last - 1, written);
            mark_site_grads(m, l, w, g, last, last, written);
        }
    }
}

int model_alloc_grads(Model *m, int needed_only, char *err) {
    const Ops *o = m->ops;
    int *written = tf_malloc(sizeof(int) * (size_t)m->n_params, "gradient plan");
    if (needed_only) mark_written_grads(m, written);
    size_t total = 0;
    for (int i = 0; i < m->n_params; i++) {
        if (!needed_only) written[i] = 1;
        if (written[i]) total += tensor_numel(&m->params[i].t);
    }
    float *mem = total ? o->alloc(o, total * sizeof(float)) : NULL;
    if (total && !mem) {
        free(written);
        return tf_err(err, "out of %s memory: the gradients need %.1f MiB", o->name, total * 4.0 / 1048576.0);
    }
    o->free(o, m->grad_mem);
    m->grad_mem = mem;
    m->n_grad_elems = total;
    size_t off = 0; /* memory order: a group's members stay stacked, as the ops write them */
    for (int k = 0; k < m->n_params; k++) {
        int i = memory_slot_param(m, k);
        Param *p = &m->params[i];
        p->grad = written[i] ? mem + off : NULL;
        off += written[i] ? tensor_numel(&p->t) : 0;
    }
    free(written);
    return 0;
}

void model_update(Model *m, float lr, const TrainConfig *tc, float grad_scale) {
    m->step++;
    m->lora_stale = 1;
    if (all_rows_uniform(m)) {
        /* Two ranges: the decayed 2-D tensors are contiguous from wte on, the
         * 1-D ones (no decay) close the block (memory_slot_param). */
        size_t n_decay = 0;
        for (int i = 0; i < m->n_params; i++)
            if (m->params[i].decay) n_decay += tensor_numel(&m->params[i].t);
        AdamwRange r[2] = {
            {m->param_mem, m->grad_mem, m->m_mem, m->v_mem, n_decay, lr, tc->weight_decay, m->step},
            {m->param_mem + n_decay, m->grad_mem + n_decay, m->m_mem + n_decay, m->v_mem + n_decay,
             m->n_param_elems - n_decay, lr, 0.0f, m->step}};
        m->ops->adamw_ranges(m->ops, r, 2, tc->beta1, tc->beta2, tc->adam_eps, grad_scale);
        return;
    }
    /* rows of the latest grow (never the rows of the initial model) */
    int newest = model_latest_birth(m), n = 0;
    /* In memory order, so that the ranges walk the block from its start, each
     * adjacent to the last: the CUDA backend's bf16 copy of the weights
     * grows only over adjacent ranges (ops.h adamw), and a copy cut short
     * leaves every later product converting its weights again. */
    for (int k = 0; k < m->n_params; k++) {
        Param *p = &m->params[memory_slot_param(m, k)];
        size_t re = model_param_row_elems(p);
        for (int s = 0; s < p->n_seg; s++) {
            if (p->seg[s].frozen) continue;
            size_t r0 = (size_t)p->seg[s].row_start, r1 = segment_rows_end(p, s);
            size_t off = r0 * re, moff = (r0 - (size_t)p->moment_row0) * re; /* trainable rows have moments */
            if (n == m->adam_ranges_cap) {
                m->adam_ranges_cap = m->adam_ranges_cap ? 2 * m->adam_ranges_cap : 64;
                m->adam_ranges = tf_realloc(m->adam_ranges, sizeof(AdamwRange) * (size_t)m->adam_ranges_cap,
                                            "update plan");
            }
            m->adam_ranges[n++] = (AdamwRange){
                .p = tensor_f32(&p->t) + off, .g = p->grad + off, .m = p->m + moff, .v = p->v + moff,
                .n = (r1 - r0) * re,
                .lr = newest > 0 && p->seg[s].birth == newest ? lr * tc->new_row_lr_mult : lr,
                .weight_decay = p->decay ? tc->weight_decay : 0.0f, .t = m->step - p->seg[s].birth};
        }
    }
    m->ops->adamw_ranges(m->ops, m->adam_ranges, n, tc->beta1, tc->beta2, tc->adam_eps, grad_scale);
}

float model_train_step(Model *m, const int *tokens, const int *targets, float lr,
                       const TrainConfig *tc, uint64_t dropout_seed, float *norm_out) {
    float loss = model_forward(m, tokens, targets, m->B_alloc, m->T_alloc, 1, dropout_seed);
    model_zero_grad(m);
    model_backward(m);
    model_clip_and_update(m, lr, tc, isfinite(loss), norm_out);
    return loss;
}

void model_clip_and_update(Model *m, float lr, const TrainConfig *tc, int loss_finite, float *norm_out) {
    float norm = model_grad_norm(m);
    *norm_out = norm;
    if (!loss_finite || !isfinite(norm)) return;
    float scale = (tc->grad_clip > 0.0f && norm > tc->grad_clip) ? tc->grad_clip / norm : 1.0f;
    model_update(m, lr, tc, scale);
}

void model_logits_last(const Model *m, float *host_out) {
    size_t V = (size_t)m->cfg.vocab_size;
    if (m->T == 1) { /* the rows are adjacent: one copy (one sync on a GPU) */
        m->ops->to_host(m->ops, host_out, m->logits, (size_t)m->B * V * sizeof(float));
        return;
    }
    for (int b = 0; b < m->B; b++) model_logits_row(m, b, m->T - 1, host_out + (size_t)b * V);
}

void model_logits_row(const Model *m, int b, int t, float *host_out) {
    size_t V = (size_t)m->cfg.vocab_size;
    m->ops->to_host(m->ops, host_out, m->logits + ((size_t)b * m->T + t) * V, V * sizeof(float));
}
