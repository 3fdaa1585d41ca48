/* Model growth: appending and removing Pattention rows by rebuilding the
 * model with a row map. */
#include "growth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

static void copy_rows(float *dst, const float *src, const int *keep, int n_kept, size_t width) {
    for (int i = 0; i < n_kept; i++) memcpy(dst + (size_t)i * width, src + (size_t)keep[i] * width, width * sizeof(float));
}

static void copy_param(const Param *s, Param *d) {
    size_t n = tensor_numel(&s->t) * sizeof(float);
    memcpy(d->t.data, s->t.data, n);
    memcpy(d->m, s->m, n);
    memcpy(d->v, s->v, n);
    d->n_seg = s->n_seg;
    memcpy(d->seg, s->seg, sizeof s->seg);
}

int model_resize(const Model *src, Model *dst, const GrowSpec *g, char *err) {
    const ModelConfig *c = &src->cfg;
    if (!ops_is_cpu(src->ops)) return tf_err(err, "resizing needs a model in host memory (CPU backend)");
    if (c->arch != ARCH_TOKENFORMER)
        return tf_err(err, "growing a %s checkpoint is not supported yet", arch_name(c->arch));
    int n_patt = c->n_layer * PATT_PER_LAYER;
    int *rows = tf_malloc(sizeof(int) * (size_t)n_patt, "row counts");
    for (int i = 0; i < n_patt; i++) {
        int n_old = model_patt_rows(src, i / PATT_PER_LAYER, i % PATT_PER_LAYER);
        rows[i] = n_old + g->delta[i];
        if (rows[i] < 1) {
            free(rows);
            return tf_err(err, "layer %d: cannot remove %d of %d rows (at least one must stay)",
                          i / PATT_PER_LAYER, -g->delta[i], n_old);
        }
    }
    int rc = model_create(dst, c, rows, src->ops, err);
    free(rows);
    if (rc) return -1;
    dst->step = src->step;
    memcpy(dst->tau, src->tau, sizeof(float) * (size_t)n_patt);

    Rng rng;
    rng_seed(&rng, g->seed);
    float value_std = model_value_init_std(c);
    /* Unchanged tensors copy whole; resized Pattentions go through the row map. */
    unsigned char *whole = tf_malloc((size_t)src->n_params, "tensor map");
    memset(whole, 1, (size_t)src->n_params);
    for (int p = 0; p < n_patt; p++)
        if (g->delta[p] != 0) {
            int key = model_patt_param(src, p / PATT_PER_LAYER, p % PATT_PER_LAYER);
            whole[key] = whole[key + 1] = 0;
        }
    for (int i = 0; i < src->n_params; i++)
        if (whole[i]) copy_param(&src->params[i], &dst->params[i]);
    free(whole);
    for (int p = 0; p < n_patt && !rc; p++) {
        int l = p / PATT_PER_LAYER, w = p % PATT_PER_LAYER;
        if (g->delta[p] == 0) continue;
        int n_old = model_patt_rows(src, l, w), n_kept;
        int *keep = kept_rows(n_old, g->delta[p], g->importance ? g->importance[p] : NULL, &n_kept);
        int n_new = model_patt_rows(dst, l, w) - n_kept;
        for (int kv = 0; kv < 2 && !rc; kv++) {
            const Param *s = &src->params[model_patt_param(src, l, w) + kv];
            Param *d = &dst->params[model_patt_param(dst, l, w) + kv];
            size_t width = (size_t)c->d_model;
            float *dv = tensor_f32(&d->t);
            copy_rows(dv, tensor_f32(&s->t), keep, n_kept, width);
            copy_rows(d->m, s->m, keep, n_kept, width);
            copy_rows(d->v, s->v, keep, n_kept, width);
            size_t start = (size_t)n_kept * width, count = (size_t)n_new * width;
            memset(d->m + start, 0, count * sizeof(float));
            memset(d->v + start, 0, count * sizeof(float));
            int is_key = kv == 0;
            for (size_t e = 0; e < count; e++) {
                float std = is_key ? g->key_scale : value_std;
                dv[start + e] = std > 0.0f ? std * rng_normal(&rng) : 0.0f;
            }
            rc = remap_segments(s, d, keep, n_kept, n_new, src->step, err);
        }
        if (g->tau_reset && n_new > 0)
            *model_patt_tau(dst, l, w) = sqrtf((float)model_patt_rows(dst, l, w));
        free(keep);
    }
    if (rc) model_free(dst);
    return rc;
}

/* ---------------- depth growth ---------------- */

/* Old layer that new layer k of n_new goes after: the last one for
 * GROW_AT_END; for interleave spread evenly from layer 0 on (always in
 * [0, n_old - 1], nondecreasing in k). */
static int insert_after(int k, int n_new, int n_old, GrowAt at) {
    if (at == GROW_AT_END) return n_old - 1;
    return (int)(((long)k * n_old) / n_new);
}

/* map[j] = the old layer that new layer j copies, or -1 for an inserted one;
 * like[j] = the old layer whose row counts an inserted layer takes. */
static void layer_map(int n_old, int n_new, GrowAt at, int *map, int *like) {
    int j = 0, k = 0;
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

/* Index of layer l's parameter j (0 .. PARAMS_PER_LAYER-1) in a model of any depth. */
static int layer_param(int l, int j) { return model_patt_param(l, j / 2) + j % 2; }

/* The output side of a block: what the residual stream receives. Zero there
 * makes the block the identity, whatever its other weights are. */
static int is_output_param(int j) {
    int which = j / 2, is_value = j % 2;
    return is_value && (which == PATT_O || which == PATT_FFN);
}

static void init_new_layer(Model *dst, int l, uint64_t seed, float value_std) {
    Rng rng;
    rng_seed(&rng, seed ^ tf_mix64(0x1a7e5ULL + (uint64_t)l));
    for (int j = 0; j < PARAMS_PER_LAYER; j++) {
        Param *p = &dst->params[layer_param(l, j)];
        size_t n = tensor_numel(&p->t);
        float *v = tensor_f32(&p->t);
        float std = is_output_param(j) ? 0.0f : (j % 2 ? value_std : 0.02f);
        for (size_t e = 0; e < n; e++) v[e] = std > 0.0f ? std * rng_normal(&rng) : 0.0f;
        memset(p->m, 0, n * sizeof(float));
        memset(p->v, 0, n * sizeof(float));
        p->n_seg = 1;
        p->seg[0] = (RowSegment){0, dst->step, 0};
    }
    for (int w = 0; w < PATT_PER_LAYER; w++)
        *model_patt_tau(dst, l, w) = sqrtf((float)model_patt_rows(dst, l, w));
}

int model_add_layers(const Model *src, Model *dst, int n_new, GrowAt at, uint64_t seed, char *err) {
    const ModelConfig *c = &src->cfg;
    if (!ops_is_cpu(src->ops)) return tf_err(err, "adding layers needs a model in host memory (CPU backend)");
    if (n_new < 1 || c->n_layer + n_new > MAX_LAYERS)
        return tf_err(err, "cannot add %d layers to %d (the total must be at most %d)", n_new, c->n_layer, MAX_LAYERS);
    ModelConfig nc = *c;
    nc.n_layer = c->n_layer + n_new;
    int *map = tf_malloc(sizeof(int) * 2 * (size_t)nc.n_layer, "layer map"), *like = map + nc.n_layer;
    layer_map(c->n_layer, n_new, at, map, like);
    int *rows = tf_malloc(sizeof(int) * (size_t)nc.n_layer * PATT_PER_LAYER, "row counts");
    for (int l = 0; l < nc.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) rows[l * PATT_PER_LAYER + w] = model_patt_rows(src, like[l], w);
    int rc = model_create(dst, &nc, rows, src->ops, err);
    free(rows);
    if (rc) {
        free(map);
        return -1;
    }
    dst->step = src->step;
    /* wte and the final norm keep their indices from the front and the back */
    copy_param(&src->params[0], &dst->params[0]);
    for (int t = 1; t <= src->n_params - model_patt_param(c->n_layer, 0); t++)
        copy_param(&src->params[src->n_params - t], &dst->params[dst->n_params - t]);
    /* Values of the new q, k, v rows as at init of a model of the new depth */
    float value_std = model_value_init_std(&nc);
    for (int l = 0; l < nc.n_layer; l++) {
        if (map[l] < 0) {
            init_new_layer(dst, l, seed, value_std);
            continue;
        }
        for (int j = 0; j < PARAMS_PER_LAYER; j++)
            copy_param(&src->params[layer_param(map[l], j)], &dst->params[layer_param(l, j)]);
        for (int w = 0; w < PATT_PER_LAYER; w++)
            *model_patt_tau(dst, l, w) = src->tau[map[l] * PATT_PER_LAYER + w];
    }
    free(map);
    return 0;
}
