/* Width growth: d_model doubled by tiling the residual stream (docs/MODEL.md 5b).
 * Each tensor is tiled in host memory and written back through the model's
 * ops table, so that any backend's model can grow. */
#include <stdlib.h>
#include <string.h>

#include "adapters.h"
#include "common.h"
#include "growth.h"
#include "rng.h"

/* How one stored tensor (rows x cols, a 1-D one as 1 x d) maps into the
 * doubled model. Columns always double (every tensor's last axis is d):
 * column c + d copies column c. Rows double when they are d (the baselines'
 * linears) or the baselines' FFN hidden units (split in two). A halved axis
 * is one that reads a doubled quantity: its two copies sum to the old weight. */
typedef struct {
    int tile_rows;
    int half_cols; /* the columns read the residual stream or the attention output */
    int half_rows; /* the rows read the split hidden units (mlp.down) */
    float scale;   /* 1/2 for the final norm, so that the tied head sums to the old logits */
} TileMap;

static int is_halved(const TileMap *t) { return t->half_cols || t->half_rows; }

/* The map of every site parameter of layer l: a Pattention's key reads the
 * stream (halved) and its value writes it (tiled); a linear reads and writes
 * it; the MLP's gate and up read it and split their hidden units, down reads
 * the units (halved) and writes the stream. */
static void set_layer_maps(const Model *m, int l, TileMap *maps) {
    int baseline = !model_has_tau(&m->cfg), idx[MODEL_SITE_MAX_PARAMS];
    for (int w = 0; w < PATT_PER_LAYER; w++) {
        if (model_site_is_linear(m, w)) {
            maps[model_patt_param(m, l, w)] = (TileMap){1, 1, 0, 1.0f};
            continue;
        }
        int n = model_site_row_params(m, l, w, idx);
        for (int k = 0; k < n - 1; k++) maps[idx[k]] = (TileMap){baseline, 1, 0, 1.0f};
        maps[idx[n - 1]] = (TileMap){baseline, 0, baseline, 1.0f};
    }
}

/* Every parameter's map: wte and the blocks' norm weights tile as they are
 * (the embedding writes [e, e]; a norm of [x, x] is [norm(x), norm(x)]), the
 * final norm tiles at half scale, the sites as set_layer_maps says. */
static TileMap *tile_maps(const Model *m) {
    TileMap *maps = tf_malloc(sizeof(TileMap) * (size_t)m->n_params, "tile maps");
    for (int i = 0; i < m->n_params; i++) maps[i] = (TileMap){0, 0, 0, 1.0f};
    for (int l = 0; l < m->cfg.n_layer; l++) set_layer_maps(m, l, maps);
    int first_final = 1 + m->cfg.n_layer * model_params_per_layer(&m->cfg);
    for (int i = first_final; i < m->n_params; i++) maps[i].scale = 0.5f;
    return maps;
}

/* dst (rows' x 2 cols) from src (rows x cols) by map t. The noise of a
 * source element is drawn once: +e on the first copy along the halved axis,
 * -e on the second, the same e on every tiled copy, so that copies that are
 * meant to be equal stay bit-identical. */
static void tile_tensor(const float *src, int64_t rows, int64_t cols, const TileMap *t, float noise, Rng *rng,
                        float *dst) {
    size_t n = (size_t)(rows * cols);
    float *e = tf_calloc(n, sizeof(float), "tiling noise");
    if (noise > 0.0f && is_halved(t))
        for (size_t k = 0; k < n; k++) e[k] = noise * rng_normal(rng);
    int64_t dst_rows = t->tile_rows ? 2 * rows : rows, dst_cols = 2 * cols;
    for (int64_t r = 0; r < dst_rows; r++)
        for (int64_t c = 0; c < dst_cols; c++) {
            size_t s = (size_t)((r % rows) * cols + c % cols);
            float v = src[s] * t->scale;
            if (is_halved(t)) {
                int second = t->half_cols ? c >= cols : r >= rows;
                v = 0.5f * v + (second ? -e[s] : e[s]);
            }
            dst[r * dst_cols + c] = v;
        }
    free(e);
}

/* The doubled config: 2d, 2H (the same head size, so RoPE and the
 * attention scale are unchanged); the baselines' FFN width doubles. */
static ModelConfig doubled_config(const ModelConfig *c) {
    ModelConfig nc = *c;
    nc.d_model = 2 * c->d_model;
    nc.n_head = 2 * c->n_head;
    if (!model_has_tau(c)) nc.n_ffn = 2 * c->n_ffn;
    return nc;
}

/* Row counts of the doubled model: Pattentions keep theirs; the baselines'
 * linear sites have 2d and their FFN twice its hidden units. */
static int *doubled_rows(const Model *src, const ModelConfig *nc) {
    int L = src->cfg.n_layer, baseline = !model_has_tau(&src->cfg);
    int *rows = tf_malloc(sizeof(int) * (size_t)L * PATT_PER_LAYER, "row counts");
    for (int l = 0; l < L; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            int n = model_patt_rows(src, l, w);
            rows[l * PATT_PER_LAYER + w] = model_site_is_linear(src, w) ? nc->d_model : baseline ? 2 * n : n;
        }
    return rows;
}

int growth_double_d_model(const Model *src, Model *dst, float noise, uint64_t seed, char *err) {
    if (adapters_present(&src->cfg)) /* their tensors follow the base layout */
        return tf_err(err, "the model has adapters or LoRA: grow the base model before adapting it");
    if (!(noise >= 0.0f)) return tf_err(err, "--noise must be >= 0 (got %g)", noise);
    ModelConfig nc = doubled_config(&src->cfg);
    char why[TF_ERRLEN];
    if (model_config_validate(&nc, why)) return tf_err(err, "cannot double d_model %d: %s", src->cfg.d_model, why);
    int *rows = doubled_rows(src, &nc);
    int rc = model_create_like(dst, src, &nc, rows, err);
    free(rows);
    if (rc) return -1;
    dst->step = src->step;
    memcpy(dst->tau, src->tau, sizeof(float) * (size_t)src->cfg.n_layer * PATT_PER_LAYER);
    TileMap *maps = tile_maps(src);
    const Ops *o = src->ops;
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < src->n_params; i++) {
        const Param *s = &src->params[i];
        Param *d = &dst->params[i];
        int64_t rows_i = s->t.ndim == 2 ? s->t.shape[0] : 1, cols = s->t.shape[s->t.ndim - 1];
        size_t bytes = tensor_numel(&d->t) * sizeof(float);
        float *from = tf_malloc(tensor_numel(&s->t) * sizeof(float), "tiling source");
        float *to = tf_malloc(bytes, "tiled tensor");
        o->to_host(o, from, tensor_f32(&s->t), tensor_numel(&s->t) * sizeof(float));
        tile_tensor(from, rows_i, cols, &maps[i], noise, &rng, to);
        o->to_device(o, tensor_f32(&d->t), to, bytes);
        free(from);
        free(to);
        o->zero(o, d->m, bytes);
        o->zero(o, d->v, bytes);
        d->n_seg = 1;
        d->seg[0] = (RowSegment){0, src->step, 0};
    }
    free(maps);
    return 0;
}
