/* Model growth (docs/MODEL.md, growth): append rows (parameter tokens) to
 * Pattentions, or remove the least important ones (ranked by rank.h); add
 * blocks; double d_model. Each builds *dst on src's backend (whichever it
 * is, with the same results) through its ops table. */
#ifndef TF_GROWTH_H
#define TF_GROWTH_H

#include <stdint.h>

#include "checkpoint.h"
#include "model.h"

typedef enum {
    GROW_ZERO_KEY = 0, /* keys 0, values random, tau kept: the function is unchanged */
    GROW_RANDOM = 1    /* official release: keys and values random, tau = sqrt(n_new) */
} GrowInit;

/* Per-Pattention row changes: delta[l * PATT_PER_LAYER + w] rows to add
 * (> 0) or remove (< 0). */
typedef struct {
    const int *delta;
    /* New Pattention rows (GrowInit picks the defaults: zero-key 0 and kept,
     * random 0.02 and reset); the baselines' FFN ignores both. */
    float key_scale; /* std of new keys (0 keeps the function exactly) */
    int tau_reset;   /* 1: tau = sqrt(n_new) of each grown Pattention; 0: kept */
    uint64_t seed;
    /* For removal: importance[l * PATT_PER_LAYER + w][row]; lowest go first. */
    float *const *importance;
} GrowSpec;

/* Build *dst from src with the rows changed. New rows get zero Adam
 * moments and a segment born at src->step (own bias correction); kept rows
 * keep their values, moments and segments. */
int model_resize(const Model *src, Model *dst, const GrowSpec *g, char *err);

/* Where `grow --add-layers` puts the new blocks. */
typedef enum {
    GROW_AT_END = 0,    /* after the last block */
    GROW_AT_INTERLEAVE, /* spread evenly: new block k after old block floor(k n_layer / n_new) */
    GROW_AT_STACK       /* whole copies of the stack on top, [0..L-1, 0..L-1] (G_stack,
                           Du et al. 2405.15319): n_new a multiple of L, new block j
                           takes after old block j mod L */
} GrowAt;

/* What a new block starts as. Each new block has a source: the old block it
 * follows (end, interleave) or the one it repeats (stack). */
typedef enum {
    LAYER_INIT_ZERO_OUT = 0,  /* a fresh layer (tau = sqrt(n), rows as the source) with
                                 its output side zero: the function is kept */
    LAYER_INIT_COPY,          /* a copy of the source (tau too): the function changes */
    LAYER_INIT_COPY_ZERO_OUT  /* a copy with its output side zero (LLaMA Pro, Wu et al.
                                 2401.02415): the function is kept */
} LayerInit;

/* The CLI names of the above ("end", "copy-zero-out", ...); parse: -1 if unknown. */
const char *grow_at_name(GrowAt at);
int grow_at_parse(const char *s);
const char *layer_init_name(LayerInit init);
int layer_init_parse(const char *s);

/* The most blocks a model may have (what checkpoints accept). */
#define MAX_LAYERS 256

/* Build *dst from src with n_new blocks inserted. Old blocks keep their
 * weights, moments, segments and tau. A new block's output side is the last
 * parameter of its o and FFN sites (tokenformer: the values of P_o and P_ffn;
 * the baselines: attn.o.weight and mlp.down). Every parameter of a new block
 * (copied or drawn) starts with zero Adam moments and one segment born at
 * src->step. Errors (bad count, stack with n_new not a multiple of L): -1
 * with err, dst untouched. */
int growth_add_layers(const Model *src, Model *dst, int n_new, LayerInit init, GrowAt at, uint64_t seed,
                      char *err);
/* growth_add_layers with LAYER_INIT_ZERO_OUT. */
int model_add_layers(const Model *src, Model *dst, int n_new, GrowAt at, uint64_t seed, char *err);

/* Build *dst from src with d_model and n_head doubled at the same head
 * size, by the tiling of docs/MODEL.md 5b: the residual stream becomes [x, x],
 * weights that read it have their input columns halved, the final norm is
 * halved for the tied head; the baselines' FFN width doubles too (hidden units
 * split in two, mlp.down rows halved); Pattention row counts and tau are kept.
 * The function is kept up to float rounding. noise > 0 adds +e / -e
 * (e ~ N(0, noise)) to the two halves of every halved weight, which breaks the
 * symmetry of the copies and still keeps the function. Every parameter starts
 * with zero Adam moments and one segment born at src->step (nothing frozen).
 * -1 with err when the doubled config is invalid. */
int growth_double_d_model(const Model *src, Model *dst, float noise, uint64_t seed, char *err);

/* The history events of those growths, for `grow` and `train --grow` alike
 * (what a model of config c records when it gets them). */
GrowthEvent growth_layers_event(const ModelConfig *c, int n_new, LayerInit init, GrowAt at);
GrowthEvent growth_d_model_event(const ModelConfig *c, float noise);

#endif
