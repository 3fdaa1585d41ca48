#include "config.h"

#include <stdio.h>
#include <string.h>

#include "common.h"
#include "ops.h"

/* Defaults that docs/MODEL.md (training) leaves open follow nanoGPT: warmup 100 iterations,
 * min_lr = lr/10, weight decay 0.1, betas (0.9, 0.95), clip 1.0. */
static const Preset PRESETS[] = {
    {"tiny",
     {.n_layer = 4, .d_model = 128, .n_head = 4, .n_attn = 96, .n_ffn = 384, .block_size = 64,
      .rope_frac = 0.25f, .dropout = 0.0f, .pnorm = PNORM_L2_GELU},
     {.batch_size = 12, .max_iters = 2000, .lr = 1e-3f, .min_lr = 1e-4f, .warmup_iters = 100, .grad_accum = 1,
      .weight_decay = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f, .adam_eps = 1e-8f, .grad_clip = 1.0f,
      .eval_interval = 250, .eval_iters = 20, .log_interval = 10, .seed = 1337, .new_row_lr_mult = 1.0f}},
    {"shakespeare",
     {.n_layer = 6, .d_model = 384, .n_head = 6, .n_attn = 288, .n_ffn = 1152, .block_size = 256,
      .rope_frac = 0.25f, .dropout = 0.2f, .pnorm = PNORM_L2_GELU},
     {.batch_size = 64, .max_iters = 5000, .lr = 1e-3f, .min_lr = 1e-4f, .warmup_iters = 100, .grad_accum = 1,
      .weight_decay = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f, .adam_eps = 1e-8f, .grad_clip = 1.0f,
      .eval_interval = 250, .eval_iters = 200, .log_interval = 10, .seed = 1337, .new_row_lr_mult = 1.0f}},
    {"gpt2-124m",
     {.n_layer = 12, .d_model = 768, .n_head = 12, .n_attn = 576, .n_ffn = 2304,
      .block_size = 1024, .rope_frac = 0.25f, .dropout = 0.0f, .pnorm = PNORM_L2_GELU},
     {.batch_size = 8, .max_iters = 5000, .lr = 6e-4f, .min_lr = 6e-5f, .warmup_iters = 100, .grad_accum = 1,
      .weight_decay = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f, .adam_eps = 1e-8f, .grad_clip = 1.0f,
      .eval_interval = 250, .eval_iters = 20, .log_interval = 10, .seed = 1337, .new_row_lr_mult = 1.0f}},
};

const Preset *preset_find(const char *name) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (strcmp(PRESETS[i].name, name) == 0) return &PRESETS[i];
    return NULL;
}

const char *preset_names(void) { return "tiny, shakespeare, gpt2-124m"; }

static const char *PNORM_NAMES[] = {"l2_norm_gelu", "gelu_l2_norm", "softmax"};

const char *pnorm_name(int mode) {
    return (mode >= 0 && mode <= 2) ? PNORM_NAMES[mode] : "unknown";
}

int pnorm_parse(const char *s) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, PNORM_NAMES[i]) == 0) return i;
    return -1;
}

static const char *ARCH_NAMES[ARCH_COUNT] = {"tokenformer", "transformer", "transformerpp"};

const char *arch_name(int arch) {
    return (arch >= 0 && arch < ARCH_COUNT) ? ARCH_NAMES[arch] : "unknown";
}

int arch_parse(const char *s) {
    for (int i = 0; i < ARCH_COUNT; i++)
        if (strcmp(s, ARCH_NAMES[i]) == 0) return i;
    return -1;
}

const char *arch_names(void) { return "tokenformer, transformer, transformerpp"; }

int arch_default_ffn(const ModelConfig *c) {
    if (c->arch == ARCH_TRANSFORMER) return 4 * c->d_model;
    if (c->arch == ARCH_TRANSFORMERPP) return 64 * ((8 * c->d_model + 191) / 192); /* 64 ceil(8d / 192) */
    return c->n_ffn;
}

void model_config_apply_arch_defaults(ModelConfig *c, int ffn_given, int rope_given) {
    if (!ffn_given) c->n_ffn = arch_default_ffn(c);
    if (!rope_given && c->arch == ARCH_TRANSFORMERPP) c->rope_frac = 1.0f;
}

int model_config_rot_dims(const ModelConfig *c) {
    int hd = c->d_model / c->n_head;
    int rot = (int)(c->rope_frac * (float)hd + 1e-4f);
    return rot & ~1;
}

int model_config_validate(const ModelConfig *c, char *err) {
    if (c->arch < 0 || c->arch >= ARCH_COUNT) return tf_err(err, "unknown arch %d", c->arch);
    if (c->n_layer < 1 || c->n_layer > 256) return tf_err(err, "n_layer must be in [1, 256] (got %d)", c->n_layer);
    if (c->d_model < 1 || c->d_model > 65536) return tf_err(err, "d_model must be in [1, 65536] (got %d)", c->d_model);
    if (c->n_head < 1) return tf_err(err, "n_head must be >= 1 (got %d)", c->n_head);
    if (c->d_model % c->n_head != 0)
        return tf_err(err, "n_head (%d) must divide d_model (%d)", c->n_head, c->d_model);
    if (c->n_attn < 1 || c->n_attn > (1 << 20)) return tf_err(err, "n_attn must be in [1, 1048576] (got %d)", c->n_attn);
    if (c->n_ffn < 1 || c->n_ffn > PATT_MAX_ROWS)
        return tf_err(err, "n_ffn must be in [1, %d] (got %d)", PATT_MAX_ROWS, c->n_ffn);
    if (c->block_size < 1 || c->block_size > (1 << 16)) return tf_err(err, "block_size must be in [1, 65536] (got %d)", c->block_size);
    if (c->vocab_size < 1 || c->vocab_size > 0x110000) return tf_err(err, "vocab_size must be in [1, 1114112] (got %d)", c->vocab_size);
    if (!(c->rope_frac >= 0.0f && c->rope_frac <= 1.0f)) return tf_err(err, "rope_frac must be in [0, 1] (got %g)", c->rope_frac);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) return tf_err(err, "dropout must be in [0, 1) (got %g)", c->dropout);
    if (c->pnorm < 0 || c->pnorm > 2) return tf_err(err, "unknown pattention norm %d", c->pnorm);
    return 0;
}

int train_config_validate(const TrainConfig *c, char *err) {
    if (c->batch_size < 1 || c->batch_size > (1 << 16)) return tf_err(err, "batch_size must be in [1, 65536] (got %d)", c->batch_size);
    if (c->grad_accum < 1 || c->grad_accum > (1 << 16)) return tf_err(err, "grad_accum must be in [1, 65536] (got %d)", c->grad_accum);
    if (c->max_iters < 0) return tf_err(err, "max_iters must be >= 0 (got %d)", c->max_iters);
    if (!(c->lr > 0.0f && c->lr < 10.0f)) return tf_err(err, "learning rate must be in (0, 10) (got %g)", c->lr);
    if (!(c->min_lr >= 0.0f && c->min_lr <= c->lr)) return tf_err(err, "min_lr must be in [0, lr] (got %g)", c->min_lr);
    if (c->warmup_iters < 0) return tf_err(err, "warmup_iters must be >= 0 (got %d)", c->warmup_iters);
    if (!(c->weight_decay >= 0.0f)) return tf_err(err, "weight_decay must be >= 0 (got %g)", c->weight_decay);
    if (!(c->grad_clip >= 0.0f)) return tf_err(err, "grad_clip must be >= 0 (got %g)", c->grad_clip);
    if (c->eval_interval < 1) return tf_err(err, "eval_interval must be >= 1 (got %d)", c->eval_interval);
    if (c->eval_iters < 1) return tf_err(err, "eval_iters must be >= 1 (got %d)", c->eval_iters);
    if (c->log_interval < 1) return tf_err(err, "log_interval must be >= 1 (got %d)", c->log_interval);
    if (!(c->new_row_lr_mult > 0.0f && c->new_row_lr_mult <= 1000.0f))
        return tf_err(err, "new_row_lr_mult must be in (0, 1000] (got %g)", c->new_row_lr_mult);
    if (c->lr_schedule < 0 || c->lr_schedule > 1) return tf_err(err, "unknown lr schedule %d", c->lr_schedule);
    if (c->lr_schedule == 1 && !(c->decay_frac > 0.0f && c->decay_frac <= 1.0f))
        return tf_err(err, "decay_frac must be in (0, 1] (got %g)", c->decay_frac);
    return 0;
}
