/* Model growth: appending and removing Pattention rows by rebuilding the
 * model with a row map. Parameters change through the model's ops table
 * (copy, zero, to_device) only, so growth runs on whichever backend holds
 * the model, with the same results. */
#include "growth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adapters.h"
#include "common.h"
#include "rng.h"

/* Rows of the old tensor to keep, in order: all of them when growing,
 * all but the |delta| least important when shrinking. */
static int *kept_rows(int n_old, int delta, const float *importance, int *n_kept) {
    int *keep = tf_malloc(sizeof(int) * (size_t)n_old, "row map");
    int k = 0;
    if (delta >= 0) {
        for (int r = 0; r < n_old; r++) keep[k++] = r;
    } else {
        char *drop = tf_calloc((size_t)n_old, 1, "row mask");
        for (int removed = 0; removed < -delta; removed++) {
            int worst = -1;
            for (int r = 0; r < n_old; r++)
                if (!drop[r] && (worst < 0 || importance[r] < importance[worst])) worst = r;
            drop[worst] = 1;
        }
        for (int r = 0; r < n_old; r++)
            if (!drop[r]) keep[k++] = r;
        free(drop);
    }
    *n_kept = k;
    return keep;
}

static int segment_of(const Param *p, int row) {
    int k = 0;
    while (k + 1 < p->n_seg && p->seg[k + 1].row_start <= row) k++;
    return k;
}

/* Segments after the row map: runs of kept rows from one old segment, then
 * one new segment for appended rows. */
static int remap_segments(const Param *src, Param *dst, const int *keep, int n_kept, int n_new,
                          int birth, char *err) {
    dst->n_seg = 0;
    int last = -1;
    for (int i = 0; i < n_kept; i++) {
        int s = segment_of(src, keep[i]);
        if (s == last) continue;
        if (dst->n_seg == MAX_SEGMENTS) return tf_err(err, "%s: too many growth stages", src->t.name);
        dst->seg[dst->n_seg] = src->seg[s];
        dst->seg[dst->n_seg++].row_start = i;
        last = s;
    }
    if (n_new > 0) {
        if (dst->n_seg == MAX_SEGMENTS) return tf_err(err, "%s: too many growth stages (max %d)", src->t.name, MAX_SEGMENTS);
        dst->seg[dst->n_seg++] = (RowSegment){n_kept, birth, 0};
    }
    return 0;
}

/* Rows keep[0 .. n_kept) of src's values and moments to rows 0 .. n_kept of
 * dst: one copy per run of consecutive kept rows (a whole tensor when
 * growing), as each copy may be a device call. */
static void copy_rows(const Ops *o, Param *dst, const Param *src, const int *keep, int n_kept, size_t width) {
    for (int i = 0, run; i < n_kept; i += run) {
        for (run = 1; i + run < n_kept && keep[i + run] == keep[i] + run; run++) {}
        o->copy(o, tensor_f32(&dst->t) + (size_t)i * width, tensor_f32(&src->t) + (size_t)keep[i] * width,
                (size_t)run * width * sizeof(float));
        model_copy_moment_rows(o, src, keep[i], dst, i, run);
    }
}

/* Value, moments (zero for rows that s, frozen there, keeps none of) and
 * segments of s into d (the same shape, the same backend). */
static void copy_param(const Ops *o, const Param *s, Param *d) {
    size_t n = tensor_numel(&s->t) * sizeof(float);
    o->copy(o, d->t.data, s->t.data, n);
    model_copy_moment_rows(o, s, 0, d, 0, model_param_rows(s));
    d->n_seg = s->n_seg;
    memcpy(d->seg, s->seg, sizeof s->seg);
}

/* `count` new floats at dst: N(0, std) drawn in order on the host (the
 * stream of draws is the same on every backend), or zero without a draw
 * when std is 0. */
static void draw_new_values(const Ops *o, float *dst, size_t count, float std, Rng *rng) {
    if (count == 0) return;
    if (std <= 0.0f) {
        o->zero(o, dst, count * sizeof(float));
        return;
    }
    float *host = tf_malloc(count * sizeof(float), "new rows");
    for (size_t e = 0; e < count; e++) host[e] = std * rng_normal(rng);
    o->to_device(o, dst, host, count * sizeof(float));
    free(host);
}

/* The std of new rows of parameter k of a site's n row-growing parameters:
 * a Pattention's key (k = 0) and value (k = n - 1); the baselines' MLP
 * (gate,) up rows at their init and down rows (its output side) zero, so
 * that the new hidden units add nothing until they train. */
static float new_row_std(const Model *m, const GrowSpec *g, int k, int n) {
    if (model_has_tau(&m->cfg)) return k == 0 ? g->key_scale : model_value_init_std(&m->cfg);
    return k == n - 1 ? 0.0f : MODEL_INIT_STD;
}

int model_resize(const Model *src, Model *dst, const GrowSpec *g, char *err) {
    const ModelConfig *c = &src->cfg;
    const Ops *o = src->ops;
    if (adapters_present(&src->cfg)) /* their tensors follow the base layout */
        return tf_err(err, "the model has adapters or LoRA: grow the base model before adapting it");
    int n_patt = c->n_layer * PATT_PER_LAYER, idx[MODEL_SITE_MAX_PARAMS];
    int *rows = tf_malloc(sizeof(int) * (size_t)n_patt, "row counts");
    for (int i = 0; i < n_patt; i++) {
        int l = i / PATT_PER_LAYER, w = i % PATT_PER_LAYER, n_old = model_patt_rows(src, l, w);
        rows[i] = n_old + g->delta[i];
        const char *why = NULL;
        if (g->delta[i] && !model_site_row_params(src, l, w, idx)) why = "a linear projection has no rows to grow";
        else if (g->delta[i] < 0 && !model_has_tau(c)) why = "removing rows is for tokenformer checkpoints only";
        if (why || rows[i] < 1) {
            free(rows);
            if (why)
                return tf_err(err, "layer %d %s: cannot change %d rows by %+d (%s)", l, model_patt_name(w), n_old,
                              g->delta[i], why);
            return tf_err(err, "layer %d: cannot remove %d of %d rows (at least one must stay)", l, -g->delta[i], n_old);
        }
    }
    int rc = model_create_like(dst, src, c, rows, err);
    free(rows);
    if (rc) return -1;
    dst->step = src->step;
    memcpy(dst->tau, src->tau, sizeof(float) * (size_t)n_patt);

    Rng rng;
    rng_seed(&rng, g->seed);
    /* Unchanged tensors copy whole; resized sites go through the row map. */
    unsigned char *whole = tf_malloc((size_t)src->n_params, "tensor map");
    memset(whole, 1, (size_t)src->n_params);
    for (int p = 0; p < n_patt; p++)
        if (g->delta[p] != 0) {
            int n = model_site_row_params(src, p / PATT_PER_LAYER, p % PATT_PER_LAYER, idx);
            for (int k = 0; k < n; k++) whole[idx[k]] = 0;
        }
    for (int i = 0; i < src->n_params; i++)
        if (whole[i]) copy_param(o, &src->params[i], &dst->params[i]);
    free(whole);
    for (int p = 0; p < n_patt && !rc; p++) {
        int l = p / PATT_PER_LAYER, w = p % PATT_PER_LAYER;
        if (g->delta[p] == 0) continue;
        int n_old = model_patt_rows(src, l, w), n_kept;
        int *keep = kept_rows(n_old, g->delta[p], g->importance ? g->importance[p] : NULL, &n_kept);
        int n_new = model_patt_rows(dst, l, w) - n_kept;
        int n_par = model_site_row_params(src, l, w, idx); /* the same indices in dst: depth is unchanged */
        for (int k = 0; k < n_par && !rc; k++) {
            const Param *s = &src->params[idx[k]];
            Param *d = &dst->params[idx[k]];
            size_t width = (size_t)c->d_model;
            float *dv = tensor_f32(&d->t);
            copy_rows(o, d, s, keep, n_kept, width);
            size_t start = (size_t)n_kept * width, count = (size_t)n_new * width;
            if (count) {
                o->zero(o, d->m + start, count * sizeof(float));
                o->zero(o, d->v + start, count * sizeof(float));
            }
            draw_new_values(o, dv + start, count, new_row_std(src, g, k, n_par), &rng);
            rc = remap_segments(s, d, keep, n_kept, n_new, src->step, err);
        }
        if (g->tau_reset && n_new > 0 && model_has_tau(c))
            *model_patt_tau(dst, l, w) = sqrtf((float)model_patt_rows(dst, l, w));
        free(keep);
    }
    if (rc) model_free(dst);
    return rc;
}

/* ---------------- depth growth ---------------- */

static const char *AT_NAMES[] = {"end", "interleave", "stack"};
static const char *INIT_NAMES[] = {"zero-out", "copy", "copy-zero-out"};

static int name_index(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

const char *grow_at_name(GrowAt at) { return AT_NAMES[at]; }
int grow_at_parse(const char *s) { return name_index(s, AT_NAMES, 3); }
const char *layer_init_name(LayerInit init) { return INIT_NAMES[init]; }
int layer_init_parse(const char *s) { return name_index(s, INIT_NAMES, 3); }

/* Old layer that new layer k of n_new goes after: the last one for
 * GROW_AT_END; for interleave spread evenly from layer 0 on (always in
 * [0, n_old - 1], nondecreasing in k). */
static int insert_after(int k, int n_new, int n_old, GrowAt at) {
    if (at == GROW_AT_END) return n_old - 1;
    return (int)(((long)k * n_old) / n_new);
}

/* map[j] = the old layer that new layer j is, or -1 for an inserted one;
 * like[j] = the old layer an inserted one takes its row counts (and, when
 * copying, its weights) from: the one it follows, or for stack the one it
 * repeats. */
static void layer_map(int n_old, int n_new, GrowAt at, int *map, int *like) {
    int j = 0, k = 0;
    if (at == GROW_AT_STACK) {
        for (; j < n_old + n_new; j++) {
            map[j] = j < n_old ? j : -1;
            like[j] = j % n_old;
        }
        return;
    }
    for (int l = 0; l < n_old; l++) {
        map[j] = l;
        like[j++] = l;
        while (k < n_new && insert_after(k, n_new, n_old, at) == l) {
            map[j] = -1;
            like[j++] = l;
            k++;
        }
    }
}

/* Index of parameter j of layer l (0 .. model_params_per_layer - 1), at any depth. */
static int layer_param(const ModelConfig *c, int l, int j) { return 1 + l * model_params_per_layer(c) + j; }

/* The output side of a block, what the residual stream receives: the last
 * parameter of its o and FFN sites (a Pattention's value, attn.o.weight,
 * mlp.down). Zero there makes the block the identity. */
static int is_output_param(const Model *m, int l, int index) {
    return index == model_site_output_param(m, l, PATT_O) || index == model_site_output_param(m, l, PATT_FFN);
}

/* New block l of dst: its weights as init_weights drew them (zero-out) or
 * those of old block `source` with its tau (copy modes); then the output
 * side zeroed unless plain copy; zero moments and one segment born now
 * either way (the copies' optimizer history does not carry over). */
static void make_new_layer(const Model *src, Model *dst, int l, int source, LayerInit init) {
    const Ops *o = dst->ops;
    int per = model_params_per_layer(&dst->cfg);
    for (int j = 0; j < per; j++) {
        int i = layer_param(&dst->cfg, l, j);
        Param *p = &dst->params[i];
        size_t bytes = tensor_numel(&p->t) * sizeof(float);
        if (init != LAYER_INIT_ZERO_OUT)
            o->copy(o, tensor_f32(&p->t), tensor_f32(&src->params[layer_param(&src->cfg, source, j)].t), bytes);
        if (init != LAYER_INIT_COPY && is_output_param(dst, l, i)) o->zero(o, tensor_f32(&p->t), bytes);
        o->zero(o, p->m, bytes);
        o->zero(o, p->v, bytes);
        p->n_seg = 1;
        p->seg[0] = (RowSegment){0, dst->step, 0};
    }
    if (init != LAYER_INIT_ZERO_OUT)
        for (int w = 0; w < PATT_PER_LAYER; w++) *model_patt_tau(dst, l, w) = src->tau[source * PATT_PER_LAYER + w];
}

static int check_layer_count(const ModelConfig *c, int n_new, GrowAt at, char *err) {
    if (n_new < 1 || c->n_layer + n_new > MAX_LAYERS)
        return tf_err(err, "cannot add %d layers to %d (the total must be at most %d)", n_new, c->n_layer, MAX_LAYERS);
    if (at == GROW_AT_STACK && n_new % c->n_layer)
        return tf_err(err, "--at stack adds whole copies of the %d-layer stack: the count must be a multiple of %d "
                      "(got %d)", c->n_layer, c->n_layer, n_new);
    return 0;
}

int growth_add_layers(const Model *src, Model *dst, int n_new, LayerInit init, GrowAt at, uint64_t seed,
                      char *err) {
    const ModelConfig *c = &src->cfg;
    if (adapters_present(&src->cfg)) /* their tensors follow the base layout */
        return tf_err(err, "the model has adapters or LoRA: grow the base model before adapting it");
    if (check_layer_count(c, n_new, at, err)) return -1;
    ModelConfig nc = *c;
    nc.n_layer = c->n_layer + n_new;
    int *map = tf_malloc(sizeof(int) * 2 * (size_t)nc.n_layer, "layer map"), *like = map + nc.n_layer;
    layer_map(c->n_layer, n_new, at, map, like);
    int *rows = tf_malloc(sizeof(int) * (size_t)nc.n_layer * PATT_PER_LAYER, "row counts");
    for (int l = 0; l < nc.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) rows[l * PATT_PER_LAYER + w] = model_patt_rows(src, like[l], w);
    int rc = model_create_like(dst, src, &nc, rows, err);
    free(rows);
    if (rc) {
        free(map);
        return -1;
    }
    /* Every tensor drawn as in a fresh model of the new depth (new zero-out
     * blocks keep that, tau = sqrt(n) included); the old ones are then copied over. */
    model_init_weights(dst, seed);
    dst->step = src->step;
    int per = model_params_per_layer(c), n_final = src->n_params - layer_param(c, c->n_layer, 0);
    const Ops *o = src->ops;
    copy_param(o, &src->params[0], &dst->params[0]);
    for (int t = 1; t <= n_final; t++)
        copy_param(o, &src->params[src->n_params - t], &dst->params[dst->n_params - t]);
    for (int l = 0; l < nc.n_layer; l++) {
        if (map[l] < 0) {
            make_new_layer(src, dst, l, like[l], init);
            continue;
        }
        for (int j = 0; j < per; j++)
            copy_param(o, &src->params[layer_param(c, map[l], j)], &dst->params[layer_param(&nc, l, j)]);
        for (int w = 0; w < PATT_PER_LAYER; w++)
            *model_patt_tau(dst, l, w) = src->tau[map[l] * PATT_PER_LAYER + w];
    }
    free(map);
    return 0;
}

int model_add_layers(const Model *src, Model *dst, int n_new, GrowAt at, uint64_t seed, char *err) {
    return growth_add_layers(src, dst, n_new, LAYER_INIT_ZERO_OUT, at, seed, err);
}

GrowthEvent growth_layers_event(const ModelConfig *c, int n_new, LayerInit init, GrowAt at) {
    int fresh = init == LAYER_INIT_ZERO_OUT;
    /* "zero-output" is what histories called zero-out before the copy modes */
    return (GrowthEvent){"layers", n_new, fresh ? "zero-output" : layer_init_name(init), grow_at_name(at),
                         fresh ? MODEL_INIT_STD : 0.0f, !model_has_tau(c) ? "-" : fresh ? "reset" : "copied"};
}

GrowthEvent growth_d_model_event(const ModelConfig *c, float noise) {
    return (GrowthEvent){"d_model", c->d_model, "tile", "all", noise, model_has_tau(c) ? "keep" : "-"};
}
