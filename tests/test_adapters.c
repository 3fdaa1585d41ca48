/* Tokenformer adapters and LoRA on the baselines (adapters.h), on the CPU:
 *  - insertion keeps the function bit for bit (logits memcmp-equal), for
 *    both baselines and every site choice;
 *  - the gradient of every parameter of the adapted model (the new ones
 *    and the base ones, whose gradient under LoRA is that of the effective
 *    weight) against central finite differences of the whole model's loss;
 *  - the LoRA factors' gradients, low-rank from the linears' rows (q, k, v,
 *    o) or from the weight's gradient G (the MLP), equal s G A^T and
 *    s B^T G with G the unfrozen weight's gradient, at every LoRA'd weight,
 *    frozen and unfrozen; frozen, the linears' G is not computed at all;
 *    and two half-scaled backwards accumulate to one whole;
 *  - merging LoRA gives the adapted model's logits;
 *  - decoding token by token (the KV-cache path) gives the forward's logits;
 *  - trained frozen (train --freeze-old, or --train last:1), backward
 *    computes no gradient for the frozen parameters (LoRA'd MLP weights
 *    excepted: their LoRA's gradients come from theirs), stops below the
 *    lowest layer that trains, and gives the
 *    trained ones bit for bit the gradients of the unfrozen model (native
 *    rows on a tokenformer too, grown in one layer only);
 *  - the loss and every gradient against the PyTorch reference
 *    (scripts/tokenformer_ref.py via scripts/compare_grads.py, float64; SKIP
 *    without torch in TF_PYTHON, default /usr/bin/python3).
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters.h"
#include "growth.h"
#include "model.h"
#include "ops.h"
#include "rng.h"
#include "safetensors.h"
#include "check.h"

#include <sys/wait.h>
#include <unistd.h>

#define B_ 3
#define T_ 8
#define V_ 11

static Rng g_rng;

typedef struct {
    Model *m;
    int *tok, *tgt;
} Ctx;

static double loss_of(Ctx *c) { return model_forward(c->m, c->tok, c->tgt, B_, T_, 1, 1234); }

/* The worst relative error of the analytic gradient of p against central
 * differences at up to 12 coordinates (fp32 forward: tolerance fp32-sized). */
static double loss_of_ctx(void *c) { return loss_of(c); }

static double grad_error(Ctx *c, Param *p, const float *grad) {
    return check_grad_error(tensor_f32(&p->t), grad, tensor_numel(&p->t), 12, 2e-3f, loss_of_ctx, c);
}

static float *logits_of(Model *m, const int *tok) {
    size_t n = (size_t)B_ * T_ * V_;
    model_forward(m, tok, NULL, B_, T_, 0, 0);
    float *out = malloc(n * sizeof(float));
    memcpy(out, m->logits, n * sizeof(float));
    return out;
}

static int base_model(Model *m, int arch, float dropout) {
    ModelConfig cfg = {.arch = arch, .n_layer = 2, .d_model = 16, .n_head = 2, .n_attn = 12, .n_ffn = 20,
                       .block_size = T_, .vocab_size = V_, .rope_frac = 0.5f, .dropout = dropout};
    char err[512];
    if (model_create(m, &cfg, NULL, ops_cpu(), err)) {
        check(0, "model setup", "%s", err);
        return -1;
    }
    model_init_weights(m, 7);
    /* a "trained" model: weights away from their init */
    for (size_t i = 0; i < m->n_param_elems; i++) m->param_mem[i] += 0.3f * rng_normal(&g_rng);
    m->step = 100; /* the new parameters are born here */
    return 0;
}

typedef struct {
    const char *name;
    int adapter_kv, adapter_sites, adapter_pnorm;
    int lora_rank, lora_sites;
    float lora_alpha;
} Case;

#define A_(s) (1 << (s))
static const Case CASES[] = {
    {"adapter mlp", 6, A_(ADAPT_MLP), PNORM_L2_GELU, 0, 0, 0},
    {"adapter attn", 6, A_(ADAPT_ATTN), PNORM_L2_GELU, 0, 0, 0},
    {"adapter attn,mlp", 6, A_(ADAPT_ATTN) | A_(ADAPT_MLP), PNORM_L2_GELU, 0, 0, 0},
    {"adapter attn,mlp gelu_l2_norm", 5, A_(ADAPT_ATTN) | A_(ADAPT_MLP), PNORM_GELU_L2, 0, 0, 0},
    {"adapter attn,mlp softmax", 7, A_(ADAPT_ATTN) | A_(ADAPT_MLP), PNORM_SOFTMAX, 0, 0, 0},
    {"lora q", 0, 0, 0, 3, A_(LORA_Q), 3.0f},
    {"lora k", 0, 0, 0, 3, A_(LORA_K), 6.0f},
    {"lora v", 0, 0, 0, 2, A_(LORA_V), 2.0f},
    {"lora o", 0, 0, 0, 3, A_(LORA_O), 1.5f},
    {"lora mlp", 0, 0, 0, 4, A_(LORA_MLP), 4.0f},
    {"lora q,k,v,o,mlp", 0, 0, 0, 2, A_(LORA_Q) | A_(LORA_K) | A_(LORA_V) | A_(LORA_O) | A_(LORA_MLP), 5.0f},
};

static int insert(const Case *k, Model *base, Model *out, char *err) {
    if (k->adapter_kv)
        return adapters_insert(base, out, k->adapter_kv, k->adapter_sites, k->adapter_pnorm, 11, err);
    return lora_insert(base, out, k->lora_rank, k->lora_sites, k->lora_alpha, 11, err);
}

/* Every parameter's gradient of the adapted model, its new ones moved away
 * from zero so that each path carries gradient. */
static void check_gradients(const char *label, Model *a, int *tok, int *tgt) {
    for (int i = model_first_extra_param(&a->cfg); i < a->n_params; i++) {
        Param *p = &a->params[i];
        for (size_t j = 0; j < tensor_numel(&p->t); j++) tensor_f32(&p->t)[j] += 0.2f * rng_normal(&g_rng);
    }
    Ctx c = {a, tok, tgt};
    loss_of(&c);
    model_zero_grad(a);
    model_backward(a);
    float *grad = malloc(a->n_param_elems * sizeof(float));
    memcpy(grad, a->grad_mem, a->n_param_elems * sizeof(float));
    double worst_new = 0.0, worst_base = 0.0;
    const char *worst_name = "", *worst_base_name = "";
    for (int i = 0; i < a->n_params; i++) {
        double e = grad_error(&c, &a->params[i], grad + model_param_offset(a, i));
        int is_new = i >= model_first_extra_param(&a->cfg);
        if (is_new && e > worst_new) {
            worst_new = e;
            worst_name = a->params[i].t.name;
        }
        if (!is_new && e > worst_base) {
            worst_base = e;
            worst_base_name = a->params[i].t.name;
        }
    }
    char what[256];
    snprintf(what, sizeof what, "gradcheck %s: new tensors (worst %s, rel err %.2e), base tensors (worst %s, rel err %.2e)",
             label, worst_name, worst_new, worst_base_name, worst_base);
    check(worst_new <= 3e-2 && worst_base <= 3e-2, what, "not as expected");
    free(grad);
}

/* Every parameter's gradient after one backward of the model as it is
 * frozen now, laid out as the parameters (0 where it has no buffer). */
static float *grads_of(Model *a, int *tok, int *tgt) {
    model_forward(a, tok, tgt, B_, T_, 1, 1234);
    model_zero_grad(a);
    model_backward(a);
    float *g = calloc(a->n_param_elems, sizeof(float));
    for (int i = 0; i < a->n_params; i++)
        if (a->params[i].grad)
            memcpy(g + model_param_offset(a, i), a->params[i].grad, tensor_bytes(&a->params[i].t));
    return g;
}

static int all_zero(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return 0;
    return 1;
}

/* Whether parameter i is one of the q, k, v keys (values) of a tokenformer
 * layer, which backward computes as one group (model.c): the group gets
 * every member's gradient when one member needs it. (Linear q, k, v
 * weights get theirs member by member.) */
static int in_trained_qkv_group(Model *a, int i) {
    if (a->cfg.arch != ARCH_TOKENFORMER) return 0;
    for (int l = 0; l < a->cfg.n_layer; l++) {
        int mine = 0, any = 0;
        for (int w = PATT_Q; w <= PATT_V; w++)
            for (int k = 0; k < model_config_site_count(&a->cfg, w); k++) {
                int idx = model_patt_param(a, l, w) + k;
                mine |= idx == i;
                any |= model_param_needs_grad(a, idx);
            }
        if (mine) return any;
    }
    return 0;
}

/* How check_frozen_grads freezes the model: as train --freeze-old, the same
 * with the newest parameters of every layer but the last frozen too, or as
 * train --train last:1 (the last block and the final norm train). */
enum { FROZEN_OLD = 0, FROZEN_OLD_TOP_ONLY = 1, TRAIN_LAST_BLOCK = 2 };

static void freeze_as(Model *a, int how) {
    if (how == TRAIN_LAST_BLOCK) {
        model_train_last_blocks(a, 1);
        return;
    }
    model_freeze_old(a);
    int top = a->cfg.n_layer - 1, per = adapters_params_per_layer(&a->cfg), first = model_first_extra_param(&a->cfg);
    for (int i = 0; how == FROZEN_OLD_TOP_ONLY && i < a->n_params; i++) {
        Param *p = &a->params[i];
        int layer = i >= first ? (i - first) / per : i >= 1 ? (i - 1) / model_params_per_layer(&a->cfg) : -1;
        if (layer < top)
            for (int k = 0; k < p->n_seg; k++) p->seg[k].frozen = 1;
    }
}

/* Frozen as `how` says (above), first with every
 * gradient buffer, then (compact) with buffers only for what backward
 * writes (model_alloc_grads, as a frozen training run has them): every
 * parameter that needs a gradient (or shares a q, k, v group with one) gets
 * the unfrozen model's, bit for bit; every other one none (its buffer stays
 * zero where the unfrozen model's is not, or it has none when compact). */
static void check_frozen_grads(const char *label, Model *a, int *tok, int *tgt, int how, int compact) {
    static const char *how_name[] = {"", " (top layer only)", " (train last:1)"};
    char err[512];
    model_unfreeze(a);
    float *full = grads_of(a, tok, tgt);
    freeze_as(a, how);
    if (compact && model_alloc_grads(a, 1, err)) {
        check(0, label, "%s", err);
        free(full);
        return;
    }
    float *got = grads_of(a, tok, tgt);
    int trained = 0, skipped = 0, bad = 0;
    const char *worst = "";
    for (int i = 0; i < a->n_params; i++) {
        size_t off = model_param_offset(a, i), n = tensor_numel(&a->params[i].t);
        int ok, written = model_param_needs_grad(a, i) || in_trained_qkv_group(a, i);
        if (written) {
            ok = !memcmp(got + off, full + off, n * sizeof(float));
            trained++;
        } else {
            ok = all_zero(got + off, n) && !all_zero(full + off, n);
            skipped++;
        }
        if (compact) ok = ok && !a->params[i].grad == !written;
        if (!ok && !bad++) worst = a->params[i].t.name;
    }
    char what[400];
    snprintf(what, sizeof what, "frozen %s%s%s: %d tensors with the unfrozen model's gradients bit for bit, "
             "%d frozen with none computed (%d wrong, first %s)%s", label, how_name[how],
             compact ? " (compact gradients)" : "", trained, skipped, bad, worst,
             compact ? "; gradient floats " : "");
    if (compact)
        snprintf(what + strlen(what), sizeof what - strlen(what), "%zu of %zu", a->n_grad_elems, a->n_param_elems);
    check(bad == 0 && trained > 0 && skipped > 0 && (!compact || a->n_grad_elems < a->n_param_elems), what, "not as expected");
    model_unfreeze(a);
    if (compact && model_alloc_grads(a, 0, err)) {
        check(0, label, "%s", err);
    }
    free(full);
    free(got);
}

/* The relative error ||got - s op(x) op(y)|| / ||s op(x) op(y)|| of an r x c
 * product (tx: x stored k x r; ty: y stored c x k), in double; *ref_norm
 * gets the reference's norm. */
static double product_error(const float *got, const float *x, const float *y, int r, int c, int k,
                            int tx, int ty, double s, double *ref_norm) {
    double diff = 0.0, ref = 0.0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) {
            double sum = 0.0;
            for (int t = 0; t < k; t++)
                sum += (double)(tx ? x[(size_t)t * r + i] : x[(size_t)i * k + t]) *
                       (ty ? y[(size_t)j * k + t] : y[(size_t)t * c + j]);
            sum *= s;
            diff += (got[(size_t)i * c + j] - sum) * (got[(size_t)i * c + j] - sum);
            ref += sum * sum;
        }
    *ref_norm = sqrt(ref);
    return ref > 0.0 ? sqrt(diff / ref) : INFINITY;
}

/* The worst error of every LoRA'd weight's dA, dB (grads: laid out as the
 * parameters) against s B^T G, s G A^T for G its gradient in base_grads;
 * the count of weights into *n_weights. */
static double lora_factor_error(Model *a, const float *grads, const float *base_grads, int *n_weights,
                                const char **worst) {
    double s = a->cfg.lora_alpha / a->cfg.lora_rank, most = 0.0, norm;
    int r = a->cfg.lora_rank;
    *n_weights = 0;
    for (int i = 1; i < model_first_extra_param(&a->cfg); i++) {
        int f = adapters_lora_param(&a->cfg, i);
        if (f < 0) continue;
        const Tensor *w = &a->params[i].t;
        int rows = (int)w->shape[0], cols = (int)w->shape[1];
        const float *G = base_grads + model_param_offset(a, i);
        double e_b = product_error(grads + model_param_offset(a, f + 1), G, tensor_f32(&a->params[f].t), rows,
                                   r, cols, 0, 1, s, &norm);
        double e_a = product_error(grads + model_param_offset(a, f), tensor_f32(&a->params[f + 1].t), G, r,
                                   cols, rows, 1, 0, s, &norm);
        double e = e_a > e_b ? e_a : e_b;
        if (e > most || !(e == e)) {
            most = e;
            *worst = w->name;
        }
        ++*n_weights;
    }
    return most;
}

/* LoRA's factor gradients against the weight-gradient formulas, unfrozen
 * (G from the same backward) and frozen (G from the unfrozen one): a
 * LoRA'd weight whose factors backward misses fails (B and A away from
 * zero, check_gradients, so both references are non-zero). Frozen, the
 * linears' weights need no gradient (the low-rank path) and the MLP's
 * still do. */
static void check_lora_factor_grads(const char *label, Model *a, int *tok, int *tgt) {
    char what[400];
    const char *worst = "";
    int n_weights, linear_needing = 0, mlp_not_needing = 0;
    model_unfreeze(a);
    float *full = grads_of(a, tok, tgt);
    double e_full = lora_factor_error(a, full, full, &n_weights, &worst);
    snprintf(what, sizeof what, "lora factors %s unfrozen: dA, dB of %d weights = s B^T G, s G A^T (worst %s)",
             label, n_weights, worst);
    check_err(what, "rel err", e_full, 1e-5);
    model_freeze_old(a);
    float *frozen = grads_of(a, tok, tgt);
    double e_frozen = lora_factor_error(a, frozen, full, &n_weights, &worst);
    snprintf(what, sizeof what, "lora factors %s frozen: dA, dB of %d weights = s B^T G, s G A^T with the unfrozen G "
             "(worst %s)", label, n_weights, worst);
    check_err(what, "rel err", e_frozen, 1e-5);
    for (int i = 1; i < model_first_extra_param(&a->cfg); i++) {
        if (adapters_lora_param(&a->cfg, i) < 0) continue;
        int linear = strstr(a->params[i].t.name, ".attn.") != NULL;
        linear_needing += linear && model_param_needs_grad(a, i);
        mlp_not_needing += !linear && !model_param_needs_grad(a, i);
    }
    snprintf(what, sizeof what, "lora factors %s frozen: no LoRA'd q, k, v, o weight needs its gradient, every LoRA'd "
             "MLP weight does", label);
    check(!linear_needing && !mlp_not_needing, what, "%d linear weights need one, %d MLP weights do not",
          linear_needing, mlp_not_needing);
    /* micro-batches: two backwards at half the loss accumulate to one at the
     * whole (a forward each: backward may consume the saved state, ops.h) */
    model_zero_grad(a);
    for (int k = 0; k < 2; k++) {
        model_forward(a, tok, tgt, B_, T_, 1, 1234);
        model_backward_scaled(a, 0.5f);
    }
    double diff = 0.0, ref = 0.0;
    for (int i = model_first_extra_param(&a->cfg); i < a->n_params; i++) {
        size_t off = model_param_offset(a, i);
        for (size_t j = 0; j < tensor_numel(&a->params[i].t); j++) {
            double d = (double)a->params[i].grad[j] - frozen[off + j];
            diff += d * d;
            ref += (double)frozen[off + j] * frozen[off + j];
        }
    }
    snprintf(what, sizeof what, "lora factors %s frozen: two half-scaled backwards give one backward's gradients", label);
    check_err(what, "rel err", ref > 0.0 ? sqrt(diff / ref) : INFINITY, 1e-6);
    model_unfreeze(a);
    free(full);
    free(frozen);
}

/* Native rows (grow --kv, zero keys) on a tokenformer, in the last layer
 * only: the grown Pattentions train their new rows (a partly frozen
 * parameter: its whole gradient), the rest of the model is frozen, and
 * backward stops above layer 0. */
static void run_native_case(void) {
    ModelConfig cfg = {.arch = ARCH_TOKENFORMER, .n_layer = 2, .d_model = 16, .n_head = 2, .n_attn = 12,
                       .n_ffn = 20, .block_size = T_, .vocab_size = V_, .rope_frac = 0.5f};
    Model base, g;
    char err[512];
    int delta[2 * PATT_PER_LAYER] = {0, 0, 0, 0, 0, 3, 3, 3, 3, 5};
    GrowSpec spec = {.delta = delta, .key_scale = 0.02f, .seed = 5};
    if (model_create(&base, &cfg, NULL, ops_cpu(), err) || (model_init_weights(&base, 7), base.step = 100, 0) ||
        model_resize(&base, &g, &spec, err) || model_alloc_activations(&g, B_, T_, err)) {
        check(0, "native setup", "%s", err);
        return;
    }
    int tok[B_ * T_], tgt[B_ * T_];
    for (int i = 0; i < B_ * T_; i++) {
        tok[i] = (int)rng_below(&g_rng, V_);
        tgt[i] = (int)rng_below(&g_rng, V_);
    }
    for (int compact = 0; compact < 2; compact++) {
        check_frozen_grads("tokenformer native rows in layer 1", &g, tok, tgt, FROZEN_OLD, compact);
        check_frozen_grads("tokenformer native rows in layer 1", &g, tok, tgt, TRAIN_LAST_BLOCK, compact);
    }
    model_free(&g);
    model_free(&base);
}

/* Merged LoRA: the adapted model's logits (the same product, once). */
static void check_merge(const char *label, Model *a, const int *tok) {
    Model merged;
    char err[512], what[256];
    if (lora_merge(a, &merged, err) || model_alloc_activations(&merged, B_, T_, err)) {
        check(0, label, "merge: %s", err);
        return;
    }
    float *la = logits_of(a, tok), *lm = logits_of(&merged, tok);
    double worst = 0.0;
    for (size_t i = 0; i < (size_t)B_ * T_ * V_; i++) worst = fmax(worst, fabs(la[i] - lm[i]));
    snprintf(what, sizeof what, "merge %s: logits of the merged model equal the adapted model's (max diff %.1e), "
             "%d -> %d tensors", label, worst, a->n_params, merged.n_params);
    check(worst <= 1e-5 && merged.n_params == model_first_extra_param(&a->cfg), what, "not as expected");
    free(la);
    free(lm);
    model_free(&merged);
}

/* The KV-cache path runs the adapters too: token-by-token logits are the forward's. */
static void check_decode(const char *label, Model *a, const int *tok) {
    float *full = logits_of(a, tok);
    KVCache kv;
    char err[512], what[256];
    if (model_kv_alloc(a, &kv, B_, err)) {
        check(0, label, "decode: %s", err);
        return;
    }
    double worst = 0.0;
    int step[B_];
    float row[B_ * V_];
    for (int t = 0; t < T_; t++) {
        for (int b = 0; b < B_; b++) step[b] = tok[b * T_ + t];
        model_decode(a, &kv, step, 1);
        model_logits_last(a, row);
        for (int b = 0; b < B_; b++)
            for (int v = 0; v < V_; v++)
                worst = fmax(worst, fabs(row[b * V_ + v] - full[((size_t)b * T_ + t) * V_ + v]));
    }
    model_kv_free(a, &kv);
    snprintf(what, sizeof what, "decode %s: token-by-token logits equal the forward's (max diff %.1e)", label, worst);
    check(worst <= 1e-4, what, "not as expected");
    free(full);
}

/* ---- the PyTorch reference: one dump per case, one compare_grads.py run ---- */

#define MAX_DUMPS 32
static char g_dump_dir[] = "/tmp/tf_adapters_XXXXXX";
static char g_dumps[MAX_DUMPS][64];
static int g_n_dumps, g_torch;

static void config_json(const ModelConfig *c, char *out, size_t len) {
    char asites[64], lsites[64];
    adapter_sites_format(c->adapter_sites, asites, sizeof asites);
    lora_sites_format(c->lora_sites, lsites, sizeof lsites);
    snprintf(out, len,
             "{\"arch\": \"%s\", \"n_layer\": %d, \"d_model\": %d, \"n_head\": %d, \"n_attn\": %d, "
             "\"n_ffn\": %d, \"block_size\": %d, \"vocab_size\": %d, \"rope_frac\": %.9g, \"dropout\": 0, "
             "\"pnorm\": \"%s\", \"adapter_kv\": %d, \"adapter_sites\": \"%s\", \"adapter_pnorm\": \"%s\", "
             "\"lora_rank\": %d, \"lora_sites\": \"%s\", \"lora_alpha\": %.9g}",
             arch_name(c->arch), c->n_layer, c->d_model, c->n_head, c->n_attn, c->n_ffn, c->block_size,
             c->vocab_size, (double)c->rope_frac, pnorm_name(c->pnorm), c->adapter_kv, asites,
             pnorm_name(c->adapter_pnorm), c->lora_rank, lsites, (double)c->lora_alpha);
}

/* Parameters, gradients, batch and loss of one forward + backward (no dropout). */
static void dump_for_torch(const char *label, Model *a, int *tok, int *tgt) {
    if (g_n_dumps == MAX_DUMPS) return;
    float loss = model_forward(a, tok, tgt, B_, T_, 0, 0);
    model_zero_grad(a);
    model_backward(a);
    int P = a->n_params, k = 0;
    StTensorOut *out = calloc((size_t)2 * P + 3, sizeof *out);
    char(*names)[TF_NAME_LEN + 8] = calloc((size_t)P, sizeof *names);
    int64_t batch_shape[2] = {B_, T_}, one = 1;
    for (int i = 0; i < P; i++) {
        Param *p = &a->params[i];
        snprintf(names[i], sizeof names[i], "grad.%s", p->t.name);
        out[k++] = (StTensorOut){p->t.name, DTYPE_F32, p->t.ndim, p->t.shape, p->t.data};
        out[k++] = (StTensorOut){names[i], DTYPE_F32, p->t.ndim, p->t.shape, p->grad};
    }
    out[k++] = (StTensorOut){"batch.tokens", DTYPE_I32, 2, batch_shape, tok};
    out[k++] = (StTensorOut){"batch.targets", DTYPE_I32, 2, batch_shape, tgt};
    out[k++] = (StTensorOut){"loss", DTYPE_F32, 1, &one, &loss};
    char cfg[1024], err[512], path[64];
    config_json(&a->cfg, cfg, sizeof cfg);
    const char *mk[2] = {"config", "case"}, *mv[2] = {cfg, label};
    snprintf(path, sizeof path, "%s/%02d.safetensors", g_dump_dir, g_n_dumps);
    if (st_write_atomic(path, out, k, mk, mv, 2, err)) {
        check(0, label, "torch dump: %s", err);
    } else {
        snprintf(g_dumps[g_n_dumps++], sizeof g_dumps[0], "%s", path);
    }
    free(names);
    free(out);
}

static int have_torch(const char *python) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", python);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

static void compare_with_torch(const char *python) {
    char cmd[4096];
    int len = snprintf(cmd, sizeof cmd, "%s scripts/compare_grads.py --tol 1e-4", python);
    for (int i = 0; i < g_n_dumps; i++) len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s", g_dumps[i]);
    fflush(stdout);
    int rc = system(cmd);
    check(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "adapted models' loss and gradients equal the "
           "PyTorch reference's (compare_grads.py)", "not as expected");
    for (int i = 0; i < g_n_dumps; i++) unlink(g_dumps[i]);
    rmdir(g_dump_dir);
}

static void run_case(int arch, const Case *k) {
    Model base, a;
    char err[512], label[128], what[256];
    snprintf(label, sizeof label, "%s %s", arch_name(arch), k->name);
    if (base_model(&base, arch, 0.0f)) return;
    int tok[B_ * T_], tgt[B_ * T_];
    for (int i = 0; i < B_ * T_; i++) {
        tok[i] = (int)rng_below(&g_rng, V_);
        tgt[i] = (int)rng_below(&g_rng, V_);
    }
    if (model_alloc_activations(&base, B_, T_, err) || insert(k, &base, &a, err) ||
        model_alloc_activations(&a, B_, T_, err)) {
        check(0, label, "%s", err);
        model_free(&base);
        return;
    }
    float *before = logits_of(&base, tok), *after = logits_of(&a, tok);
    int same = !memcmp(before, after, sizeof(float) * B_ * T_ * V_);
    snprintf(what, sizeof what, "insert %s: logits bit-identical (%d -> %d tensors, born at step %d)", label,
             base.n_params, a.n_params, model_latest_birth(&a));
    check(same && a.n_params > base.n_params && model_latest_birth(&a) == 100, what, "not as expected");
    free(before);
    free(after);
    check_gradients(label, &a, tok, tgt);
    if (k->lora_rank) check_lora_factor_grads(label, &a, tok, tgt);
    for (int compact = 0; compact < 2; compact++) {
        check_frozen_grads(label, &a, tok, tgt, FROZEN_OLD, compact);
        check_frozen_grads(label, &a, tok, tgt, FROZEN_OLD_TOP_ONLY, compact);
        check_frozen_grads(label, &a, tok, tgt, TRAIN_LAST_BLOCK, compact);
    }
    if (g_torch) dump_for_torch(label, &a, tok, tgt);
    if (k->lora_rank) check_merge(label, &a, tok);
    check_decode(label, &a, tok);
    model_free(&a);
    model_free(&base);
}

/* Dropout on: the training forward keeps the function too (the adapter's
 * output is added after the dropped branch). */
static void run_dropout_case(int arch) {
    Model base, a;
    char err[512], what[256];
    if (base_model(&base, arch, 0.2f)) return;
    int tok[B_ * T_], tgt[B_ * T_];
    for (int i = 0; i < B_ * T_; i++) {
        tok[i] = (int)rng_below(&g_rng, V_);
        tgt[i] = (int)rng_below(&g_rng, V_);
    }
    const Case *k = &CASES[2];
    if (model_alloc_activations(&base, B_, T_, err) || insert(k, &base, &a, err) ||
        model_alloc_activations(&a, B_, T_, err)) {
        check(0, "dropout setup", "%s", err);
        return;
    }
    float l0 = model_forward(&base, tok, tgt, B_, T_, 1, 99), l1 = model_forward(&a, tok, tgt, B_, T_, 1, 99);
    snprintf(what, sizeof what, "insert %s adapter attn,mlp, dropout 0.2: training loss bit-identical (%.7f, %.7f)",
             arch_name(arch), l0, l1);
    check(!memcmp(&l0, &l1, sizeof l0), what, "not as expected");
    check_gradients("dropout 0.2 adapter attn,mlp", &a, tok, tgt);
    model_free(&a);
    model_free(&base);
}

int main(void) {
    rng_seed(&g_rng, 2026);
    const char *python = getenv("TF_PYTHON");
    if (!python || !*python) python = "/usr/bin/python3";
    g_torch = have_torch(python) && mkdtemp(g_dump_dir);
    int archs[2] = {ARCH_TRANSFORMER, ARCH_TRANSFORMERPP};
    for (int i = 0; i < 2; i++) {
        for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) run_case(archs[i], &CASES[k]);
        run_dropout_case(archs[i]);
    }
    run_native_case();
    if (g_torch) compare_with_torch(python);
    else printf("SKIP adapters against the PyTorch reference: %s cannot import torch\n", python);
    return check_exit("test_adapters");
}
