/* The TokenFormer model: parameters in one device block, activations in
 * another, and forward / backward / update as one clear pass each through
 * the ops table (in the manner of llm.c's train_gpt2.c). */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rng.h"

/* ------------------------------------------------------------------ */
/* parameter layout                                                     */

static const char *PATT_NAMES[PATT_PER_LAYER] = {"attn.q", "attn.k", "attn.v", "attn.o", "ffn"};

static int n_params_for(int n_layer) { return 1 + PARAMS_PER_LAYER * n_layer + 2; }
static int lnf_w_index(const Model *m) { return m->n_params - 2; }
static int lnf_b_index(const Model *m) { return m->n_params - 1; }

int model_patt_param(int layer, int which) { return 1 + layer * PARAMS_PER_LAYER + 2 * which; }

int model_patt_rows(const Model *m, int layer, int which) {
    return (int)m->params[model_patt_param(layer, which)].t.shape[0];
}

float *model_patt_tau(Model *m, int layer, int which) {
    return &m->tau[layer * PATT_PER_LAYER + which];
}

const char *model_patt_name(int which) { return PATT_NAMES[which]; }

void model_param_name(int index, int n_layer, char *out, size_t len) {
    if (index == 0) {
        snprintf(out, len, "wte");
    } else if (index >= 1 + PARAMS_PER_LAYER * n_layer) {
        snprintf(out, len, index == 1 + PARAMS_PER_LAYER * n_layer ? "ln_f.weight" : "ln_f.bias");
    } else {
        int k = index - 1, l = k / PARAMS_PER_LAYER, which = (k % PARAMS_PER_LAYER) / 2;
        snprintf(out, len, "h.%d.%s.%s", l, PATT_NAMES[which], (k % 2) ? "value" : "key");
    }
}

size_t model_num_params(const Model *m, int include_embedding) {
    size_t n = 0;
    for (int i = include_embedding ? 0 : 1; i < m->n_params; i++) n += tensor_numel(&m->params[i].t);
    return n;
}

/* Which parameter sits at memory slot k: wte; per layer the keys of q, k
 * and v, then their values (so that a block's q, k, v keys are one stacked
 * matrix, and so are its values: the Pattention group of ops.h), then o and
 * the FFN, key then value; then ln_f. Parameter indices (names, checkpoint
 * order) do not change with it. */
static int memory_slot_param(const Model *m, int k) {
    int first = 1, per_layer = PARAMS_PER_LAYER;
    if (k < first || k >= first + per_layer * m->cfg.n_layer) return k;
    int l = (k - first) / per_layer, j = (k - first) % per_layer;
    static const int LAYER_ORDER[PARAMS_PER_LAYER] = {
        2 * PATT_Q, 2 * PATT_K, 2 * PATT_V, 2 * PATT_Q + 1, 2 * PATT_K + 1, 2 * PATT_V + 1,
        2 * PATT_O, 2 * PATT_O + 1, 2 * PATT_FFN, 2 * PATT_FFN + 1};
    return first + l * per_layer + LAYER_ORDER[j];
}

static int default_rows(const ModelConfig *c, int which) {
    return which == PATT_FFN ? c->n_ffn : c->n_attn;
}

int model_create(Model *m, const ModelConfig *cfg, const int *rows, const Ops *ops, char *err) {
    memset(m, 0, sizeof *m);
    if (model_config_validate(cfg, err)) return -1;
    m->cfg = *cfg;
    m->ops = ops;
    m->n_params = n_params_for(cfg->n_layer);
    m->params = tf_calloc((size_t)m->n_params, sizeof(Param), "parameter table");
    m->tau = tf_calloc((size_t)cfg->n_layer * PATT_PER_LAYER, sizeof(float), "tau");
    int64_t d = cfg->d_model;

    int64_t shape[2] = {cfg->vocab_size, d};
    tensor_init(&m->params[0].t, "wte", DTYPE_F32, 2, shape);
    for (int l = 0; l < cfg->n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            int n = rows ? rows[l * PATT_PER_LAYER + w] : default_rows(cfg, w);
            if (n < 1 || n > PATT_MAX_ROWS) {
                model_free(m);
                return tf_err(err, "layer %d %s: row count %d out of range", l, model_patt_name(w), n);
            }
            for (int kv = 0; kv < 2; kv++) {
                int idx = model_patt_param(l, w) + kv;
                char name[TF_NAME_LEN];
                model_param_name(idx, cfg->n_layer, name, sizeof name);
                int64_t s[2] = {n, d};
                tensor_init(&m->params[idx].t, name, DTYPE_F32, 2, s);
            }
        }
    int64_t sd[1] = {d};
    tensor_init(&m->params[lnf_w_index(m)].t, "ln_f.weight", DTYPE_F32, 1, sd);
    tensor_init(&m->params[lnf_b_index(m)].t, "ln_f.bias", DTYPE_F32, 1, sd);

    size_t total = 0;
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        p->decay = p->t.ndim == 2;
        p->n_seg = 1;
        p->seg[0] = (RowSegment){0, 0, 0};
        p->t.device = ops_is_cpu(ops) ? DEVICE_CPU : DEVICE_CUDA;
        total += tensor_numel(&p->t);
    }
    m->n_param_elems = total;
    size_t bytes;
    if (tf_mul_overflows(total, sizeof(float), &bytes)) {
        model_free(m);
        return tf_err(err, "model too large (%zu parameters)", total);
    }
    float **blocks[4] = {&m->param_mem, &m->grad_mem, &m->m_mem, &m->v_mem};
    for (int b = 0; b < 4; b++) {
        *blocks[b] = ops->alloc(ops, bytes);
        if (!*blocks[b]) {
            model_free(m);
            return tf_err(err, "out of %s memory: the model needs 4 x %.1f MiB for %zu parameters",
                          ops->name, bytes / 1048576.0, total);
        }
    }
    size_t off = 0;
    for (int k = 0; k < m->n_params; k++) {
        Param *p = &m->params[memory_slot_param(m, k)];
        p->t.data = m->param_mem + off;
        p->grad = m->grad_mem + off;
        p->m = m->m_mem + off;
        p->v = m->v_mem + off;
        off += tensor_numel(&p->t);
    }
    return 0;
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
        o->free(o, m->act_mem);
        o->free(o, m->grad_scratch);
        o->free(o, m->tokens);
        o->free(o, m->targets);
    }
    free(m->params);
    free(m->tau);
    free(m->layers);
    memset(m, 0, sizeof *m);
}

static void fill_normal(float *host, size_t n, float std, Rng *r) {
    for (size_t i = 0; i < n; i++) host[i] = std * rng_normal(r);
}

float model_value_init_std(const ModelConfig *c) {
    return 2.0f / ((float)c->n_layer * sqrtf((float)c->d_model));
}

void model_init_weights(Model *m, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    float *host = tf_malloc(m->n_param_elems * sizeof(float), "initial weights");
    float value_std = model_value_init_std(&m->cfg);
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        size_t n = tensor_numel(&p->t);
        float *h = host + model_param_offset(m, i);
        if (i == lnf_w_index(m)) {
            for (size_t j = 0; j < n; j++) h[j] = 1.0f;
        } else if (i == lnf_b_index(m)) {
            memset(h, 0, n * sizeof(float));
        } else {
            int is_value = i > 0 && ((i - 1) % 2 == 1);
            fill_normal(h, n, is_value ? value_std : 0.02f, &r);
        }
    }
    m->ops->to_device(m->ops, m->param_mem, host, m->n_param_elems * sizeof(float));
    free(host);
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++)
            *model_patt_tau(m, l, w) = sqrtf((float)model_patt_rows(m, l, w));
}

/* ------------------------------------------------------------------ */
/* activations                                                          */

/* q, k and v of layer l run as one Pattention group (ops.h) when they have
 * the same rows, which `grow` keeps so. */
static int qkv_group_size(const Model *m, int l) {
    int n = model_patt_rows(m, l, PATT_Q);
    return model_patt_rows(m, l, PATT_K) == n && model_patt_rows(m, l, PATT_V) == n ? 3 : 1;
}

/* Floats that hold n elements of an attention tensor (ops.h), and the
 * tensor that starts n elements after p. */
static size_t attn_floats(const Model *m, size_t n) {
    return (n * m->ops->attn_elem_bytes(m->ops) + sizeof(float) - 1) / sizeof(float);
}
static float *attn_offset(const Model *m, float *p, size_t n) {
    return (float *)((char *)p + n * m->ops->attn_elem_bytes(m->ops));
}

/* The dA scratch serves every Pattention (group) of the model in turn. */
static size_t dA_scratch_floats(const Model *m, int N) {
    size_t most = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            int G = w == PATT_Q ? qkv_group_size(m, l) : 1;
            size_t a, s, da;
            m->ops->pattention_sizes(m->ops, G, N, model_patt_rows(m, l, w), &a, &s, &da);
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
            size_t a_floats, s_floats, da_floats;
            m->ops->pattention_sizes(m->ops, G, (int)N, model_patt_rows(m, l, w), &a_floats,
                                     &s_floats, &da_floats);
            TAKE(a->A[w], a_floats);
            TAKE(a->S[w], s_floats);
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
    size_t sizes[8] = {N * d, attn_floats(m, 3 * N * d), N * d, attn_floats(m, N * d), N * d,
                       da, datt, N * V};
    float **ptrs[8] = {&s->dres, &s->dq, &s->dln, &s->dy, &s->dtmp, &s->dA, &s->datt, &s->dlogits};
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
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

/* A Pattention's input: the attention output y, or LayerNorm(x) of a block
 * (non-parametric), which the op normalizes itself (ops.h PattInput), saving
 * the statistics and the normalized rows (the layer's ln1/ln2) for backward. */
static PattInput attn_input(const float *y) { return (PattInput){y, NULL, NULL, NULL, 1}; }
static PattInput ln1_input(LayerActs *a) {
    return (PattInput){a->x, a->ln1, a->ln1_mean, a->ln1_rstd, 0};
}
static PattInput ln2_input(LayerActs *a) {
    return (PattInput){a->h, a->ln2, a->ln2_mean, a->ln2_rstd, 0};
}

PattInput model_patt_last_input(const Model *m, int l, int w) {
    const LayerActs *a = &m->layers[l];
    const float *rows = w == PATT_O ? a->y : w == PATT_FFN ? a->ln2 : a->ln1;
    return attn_input(rows);
}

/* q, k and v are attention tensors (ops.h), the outputs of o and the FFN not. */
static int output_is_attn(int w) { return w <= PATT_V; }

/* Pattentions w .. w + G - 1 of layer l (a group when G > 1: their keys,
 * values, taus and outputs are stacked) on the same input; out = residual +
 * their output when residual is set (G = 1). */
/* The arguments shared by both directions of the Pattention (group) that
 * starts at w of layer l. */
static PattArgs patt_args(Model *m, int l, int w, int G, float *dA, PattInput in,
                          const LayerActs *a) {
    int d = m->cfg.d_model, idx = model_patt_param(l, w);
    return (PattArgs){.X = in,
                      .K = tensor_f32(&m->params[idx].t),
                      .V = tensor_f32(&m->params[idx + 1].t),
                      .tau = model_patt_tau(m, l, w),
                      .G = G,
                      .mode = m->cfg.pnorm,
                      .N = m->B * m->T,
                      .d_in = d,
                      .n = model_patt_rows(m, l, w),
                      .d_out = d,
                      .y_attn = output_is_attn(w),
                      .A = a->A[w],
                      .S = a->S[w],
                      .dA = dA};
}

static void patt_forward_onto(Model *m, int l, int w, int G, float *out, const float *residual,
                              float *dA, PattInput in, const LayerActs *a) {
    PattArgs args = patt_args(m, l, w, G, dA, in, a);
    args.Y = out;
    args.residual = residual;
    m->ops->pattention_forward(m->ops, &args);
}
static void patt_forward(Model *m, int l, int w, int G, float *out, float *dA, PattInput in,
                         const LayerActs *a) {
    patt_forward_onto(m, l, w, G, out, NULL, dA, in, a);
}

/* din += (accumulate) or = the gradient of the input rows (the LayerNorm
 * output, for a normalized input) of the Pattention (group) starting at w of
 * layer l; dout is stacked like its outputs. */
static void patt_backward(Model *m, int l, int w, int G, float *din, int accumulate, float *dA,
                          const float *dout, PattInput in, const LayerActs *a) {
    int idx = model_patt_param(l, w);
    PattArgs args = patt_args(m, l, w, G, dA, in, a);
    args.dX = din;
    args.dK = m->params[idx].grad;
    args.dV = m->params[idx + 1].grad;
    args.dY = dout;
    args.accumulate_dx = accumulate;
    m->ops->pattention_backward(m->ops, &args);
}

/* q, k, v = P_q(LN1(x)), P_k(LN1(x)), P_v(LN1(x)): one group, or three Pattentions. */
static void qkv_forward(Model *m, int l, LayerActs *a, float *dA) {
    if (a->qkv_group == 3) {
        patt_forward(m, l, PATT_Q, 3, a->q, dA, ln1_input(a), a);
        return;
    }
    patt_forward(m, l, PATT_Q, 1, a->q, dA, ln1_input(a), a);
    patt_forward(m, l, PATT_K, 1, a->k, dA, ln1_input(a), a);
    patt_forward(m, l, PATT_V, 1, a->v, dA, ln1_input(a), a);
}

/* dln = d(LN1(x)) from dq, dk, dv (stacked). */
static void qkv_backward(Model *m, int l, LayerActs *a, float *dqkv, float *dln,
                         float *dA) {
    size_t Nd = (size_t)m->B * m->T * m->cfg.d_model;
    if (a->qkv_group == 3) {
        patt_backward(m, l, PATT_Q, 3, dln, 0, dA, dqkv, ln1_input(a), a);
        return;
    }
    for (int w = PATT_Q; w <= PATT_V; w++)
        patt_backward(m, l, w, 1, dln, w != PATT_Q, dA, attn_offset(m, dqkv, (w - PATT_Q) * Nd),
                      ln1_input(a), a);
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
        patt_forward_onto(m, l, w, 1, out, x, dA, in, a);
        return;
    }
    float *branch = w == PATT_O ? a->o : a->f;
    patt_forward(m, l, w, 1, branch, dA, in, a);
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

float model_forward(Model *m, const int *tokens, const int *targets, int B, int T, int training,
                    uint64_t dropout_seed) {
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    /* Callers size activations first; a larger batch would overrun them. */
    if ((size_t)B * T > (size_t)m->B_alloc * m->T_alloc || T > m->T_alloc)
        tf_die("internal: forward with B=%d T=%d beyond allocated B=%d T=%d", B, T, m->B_alloc, m->T_alloc);
    m->B = B;
    m->T = T;
    stack_qkv(m, (size_t)B * T);
    m->last_training = training;
    m->last_dropout_seed = dropout_seed;
    int N = B * T, d = c->d_model, H = c->n_head, hd = d / H, V = c->vocab_size;
    int rot = model_config_rot_dims(c);
    float *dA = scratch_of(m).dA; /* the Pattentions' forward scratch */

    o->to_device(o, m->tokens, tokens, (size_t)N * sizeof(int));
    o->embedding_forward(o, m->layers[0].x, m->tokens, tensor_f32(&m->params[0].t), N, d);
    for (int l = 0; l < c->n_layer; l++) {
        LayerActs *a = &m->layers[l];
        float *x_next = l + 1 < c->n_layer ? m->layers[l + 1].x : m->x_final;
        qkv_forward(m, l, a, dA);
        o->rope(o, a->q, 2 * B, T, H, hd, rot, 0); /* q and k: adjacent (stack_qkv) */
        o->attention_forward(o, a->y, a->att, a->q, a->k, a->v, B, T, H, hd);
        residual_branch(m, l, PATT_O, a->h, a->x, dA, attn_input(a->y), a,
                        dropout_seed_for(dropout_seed, l, 0));
        residual_branch(m, l, PATT_FFN, x_next, a->h, dA, ln2_input(a), a,
                        dropout_seed_for(dropout_seed, l, 1));
    }
    o->layernorm_forward(o, m->lnf, m->lnf_mean, m->lnf_rstd, m->x_final,
                         tensor_f32(&m->params[lnf_w_index(m)].t),
                         tensor_f32(&m->params[lnf_b_index(m)].t), N, d);
    /* tied head: logits = LN_f(x) wte^T */
    o->matmul(o, m->logits, m->lnf, tensor_f32(&m->params[0].t), N, V, d, 0, 1, 1.0f, 0.0f);
    m->has_targets = targets != NULL;
    if (!targets) return 0.0f;
    o->to_device(o, m->targets, targets, (size_t)N * sizeof(int));
    /* the loss is a mean over rows with a target (>= 0): backward scales by the same count */
    m->n_targets = 0;
    for (int i = 0; i < N; i++) m->n_targets += targets[i] >= 0 && targets[i] < V;
    return o->cross_entropy_forward(o, m->probs, m->logits, m->targets, N, V);
}

void model_zero_grad(Model *m) {
    m->ops->zero(m->ops, m->grad_mem, m->n_param_elems * sizeof(float));
}

/* d(branch) from d(residual sum) through dropout: a copy when dropout is off. */
static const float *branch_grad(Model *m, const float *dres, float *tmp, uint64_t seed) {
    if (!(m->last_training && m->cfg.dropout > 0.0f)) return dres;
    m->ops->dropout_backward(m->ops, tmp, dres, m->cfg.dropout, seed,
                             (size_t)m->B * m->T * m->cfg.d_model);
    return tmp;
}

void model_backward(Model *m) {
    const Ops *o = m->ops;
    const ModelConfig *c = &m->cfg;
    if (!m->has_targets) tf_die("internal: backward without a forward with targets");
    int B = m->B, T = m->T, N = B * T, d = c->d_model, H = c->n_head, hd = d / H,
        V = c->vocab_size;
    int rot = model_config_rot_dims(c);
    size_t Nd = (size_t)N * d * sizeof(float);
    Scratch s = scratch_of(m);
    Param *wte = &m->params[0], *lnw = &m->params[lnf_w_index(m)], *lnb = &m->params[lnf_b_index(m)];

    o->cross_entropy_backward(o, s.dlogits, m->probs, m->targets,
                              1.0f / (float)(m->n_targets ? m->n_targets : 1), N, V);
    o->matmul(o, wte->grad, s.dlogits, m->lnf, V, d, N, 1, 0, 1.0f, 1.0f);
    o->matmul(o, s.dln, s.dlogits, tensor_f32(&wte->t), N, d, V, 0, 0, 1.0f, 0.0f);
    o->zero(o, s.dres, Nd);
    o->layernorm_backward(o, s.dres, lnw->grad, lnb->grad, s.dln, m->x_final, tensor_f32(&lnw->t),
                          m->lnf_mean, m->lnf_rstd, N, d);

    for (int l = c->n_layer - 1; l >= 0; l--) {
        LayerActs *a = &m->layers[l];
        uint64_t seed = m->last_dropout_seed;
        /* x_next = h + drop(f) */
        const float *df = branch_grad(m, s.dres, s.dtmp, dropout_seed_for(seed, l, 1));
        patt_backward(m, l, PATT_FFN, 1, s.dln, 0, s.dA, df, ln2_input(a), a);
        o->layernorm_backward(o, s.dres, NULL, NULL, s.dln, a->h, NULL, a->ln2_mean, a->ln2_rstd, N,
                              d);
        /* h = x + drop(o) */
        const float *dout = branch_grad(m, s.dres, s.dtmp, dropout_seed_for(seed, l, 0));
        patt_backward(m, l, PATT_O, 1, s.dy, 0, s.dA, dout, attn_input(a->y), a);
        o->attention_backward(o, s.dq, s.dk, s.dv, s.datt, s.dy, a->y, a->q, a->k, a->v, a->att, B,
                              T, H, hd);
        o->rope(o, s.dq, 2 * B, T, H, hd, rot, 1); /* dq and dk: adjacent */
        qkv_backward(m, l, a, s.dq, s.dln, s.dA);
        o->layernorm_backward(o, s.dres, NULL, NULL, s.dln, a->x, NULL, a->ln1_mean, a->ln1_rstd, N,
                              d);
    }
    o->embedding_backward(o, wte->grad, s.dres, m->tokens, N, d);
}

/* ------------------------------------------------------------------ */
/* optimizer                                                            */

static size_t row_elems(const Param *p) {
    return p->t.ndim == 2 ? (size_t)p->t.shape[1] : tensor_numel(&p->t);
}

static size_t segment_rows_end(const Param *p, int k) {
    return k + 1 < p->n_seg ? (size_t)p->seg[k + 1].row_start
                            : (p->t.ndim == 2 ? (size_t)p->t.shape[0] : 1);
}

/* True when every row of every parameter trains with the shared step count:
 * then whole-block calls are exact and cheapest. */
static int all_rows_uniform(const Model *m) {
    for (int i = 0; i < m->n_params; i++) {
        const Param *p = &m->params[i];
        if (p->n_seg != 1 || p->seg[0].birth != 0 || p->seg[0].frozen) return 0;
    }
    return 1;
}

float model_grad_norm(Model *m) {
    if (all_rows_uniform(m))
        return sqrtf(m->ops->sum_squares(m->ops, m->grad_mem, m->n_param_elems));
    double total = 0.0;
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        size_t re = row_elems(p);
        for (int k = 0; k < p->n_seg; k++) {
            if (p->seg[k].frozen) continue;
            size_t r0 = (size_t)p->seg[k].row_start, r1 = segment_rows_end(p, k);
            total += m->ops->sum_squares(m->ops, p->grad + r0 * re, (r1 - r0) * re);
        }
    }
    return (float)sqrt(total);
}

int model_latest_birth(const Model *m) {
    int latest = 0;
    for (int i = 0; i < m->n_params; i++)
        for (int k = 0; k < m->params[i].n_seg; k++)
            if (m->params[i].seg[k].birth > latest) latest = m->params[i].seg[k].birth;
    return latest;
}

void model_update(Model *m, float lr, const TrainConfig *tc, float grad_scale) {
    m->step++;
    if (all_rows_uniform(m)) {
        /* Two launches: the decayed 2-D tensors are contiguous from wte up to
         * ln_f, which (1-D, no decay) closes the block. */
        size_t n_decay = (size_t)(tensor_f32(&m->params[lnf_w_index(m)].t) - m->param_mem);
        const Ops *o = m->ops;
        o->adamw(o, m->param_mem, m->grad_mem, m->m_mem, m->v_mem, n_decay, lr, tc->beta1,
                 tc->beta2, tc->adam_eps, tc->weight_decay, grad_scale, m->step);
        o->adamw(o, m->param_mem + n_decay, m->grad_mem + n_decay, m->m_mem + n_decay,
                 m->v_mem + n_decay, m->n_param_elems - n_decay, lr, tc->beta1, tc->beta2,
                 tc->adam_eps, 0.0f, grad_scale, m->step);
        return;
    }
    /* rows of the latest grow (never the rows of the initial model) */
    int newest = model_latest_birth(m);
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        size_t re = row_elems(p);
        float wd = p->decay ? tc->weight_decay : 0.0f;
        for (int k = 0; k < p->n_seg; k++) {
            if (p->seg[k].frozen) continue;
            size_t r0 = (size_t)p->seg[k].row_start, r1 = segment_rows_end(p, k);
            size_t off = r0 * re, n = (r1 - r0) * re;
            int t = m->step - p->seg[k].birth;
            float seg_lr = newest > 0 && p->seg[k].birth == newest ? lr * tc->new_row_lr_mult : lr;
            m->ops->adamw(m->ops, tensor_f32(&p->t) + off, p->grad + off, p->m + off, p->v + off, n,
                          seg_lr, tc->beta1, tc->beta2, tc->adam_eps, wd, grad_scale, t);
        }
    }
}

float model_train_step(Model *m, const int *tokens, const int *targets, float lr,
                       const TrainConfig *tc, uint64_t dropout_seed, float *norm_out) {
    float loss = model_forward(m, tokens, targets, m->B_alloc, m->T_alloc, 1, dropout_seed);
    model_zero_grad(m);
    model_backward(m);
    float norm = model_grad_norm(m);
    *norm_out = norm;
    if (!isfinite(loss) || !isfinite(norm)) return loss;
    float scale = (tc->grad_clip > 0.0f && norm > tc->grad_clip) ? tc->grad_clip / norm : 1.0f;
    model_update(m, lr, tc, scale);
    return loss;
}

void model_logits_row(const Model *m, int b, int t, float *host_out) {
    size_t V = (size_t)m->cfg.vocab_size;
    m->ops->to_host(m->ops, host_out, m->logits + ((size_t)b * m->T + t) * V, V * sizeof(float));
}
