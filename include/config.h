/* Model and training configuration, presets (docs/MODEL.md, training). */
#ifndef TF_CONFIG_H
#define TF_CONFIG_H

/* The most parameter tokens (rows of K and V) one Pattention may have: what
 * configs, checkpoints and `grow` accept. */
#define PATT_MAX_ROWS (1 << 22)

/* The model family (docs/MODEL.md): TokenFormer, or the baselines written in
 * the same code path with linear projections and an MLP. */
typedef enum { ARCH_TOKENFORMER = 0, ARCH_TRANSFORMER = 1, ARCH_TRANSFORMERPP = 2, ARCH_COUNT } Arch;

typedef struct {
    int arch;        /* Arch */
    int n_layer;
    int d_model;
    int n_head;
    int n_attn;      /* parameter tokens of each attention Pattention (q, k, v, o);
                        no meaning for the baselines */
    int n_ffn;       /* parameter tokens of the FFN Pattention; the baselines' FFN
                        hidden width h */
    int block_size;  /* T: context length */
    int vocab_size;  /* set from the data / checkpoint */
    float rope_frac; /* fraction of each head's dims that get RoPE */
    float dropout;
    int pnorm;       /* PNormMode */
    /* Adaptation parameters that `grow` adds to a baseline (adapters.h); 0: none. */
    int adapter_kv;     /* rows of each Tokenformer adapter */
    int adapter_sites;  /* AdapterSite bits */
    int adapter_pnorm;  /* PNormMode of the adapters */
    int lora_rank;
    int lora_sites;     /* LoraSite bits */
    float lora_alpha;   /* the update is (alpha / rank) B A */
} ModelConfig;

typedef struct {
    int batch_size;     /* sequences per micro-batch (per rank when data parallel) */
    int grad_accum;     /* micro-batches per optimizer step (>= 1) */
    int max_iters;
    float lr;
    float min_lr;       /* cosine floor; default lr / 10 */
    int warmup_iters;
    float weight_decay;
    float beta1, beta2, adam_eps;
    float grad_clip;    /* 0 disables */
    int eval_interval;
    int eval_iters;
    int log_interval;
    unsigned long long seed;
    /* lr multiplier of the rows born in the latest grow (docs/GROWTH.md); 1: off */
    float new_row_lr_mult;
    /* lr schedule (schedule.h): 0 cosine, 1 warmup-stable-decay over the
     * last decay_frac of each stage */
    int lr_schedule;
    float decay_frac;
} TrainConfig;

typedef struct {
    const char *name;
    ModelConfig model;
    TrainConfig train;
} Preset;

const Preset *preset_find(const char *name);
const char *preset_names(void); /* "tiny, shakespeare, gpt2-124m" */
/* Check a model config; 0 or -1 with a message in err (TF_ERRLEN). */
int model_config_validate(const ModelConfig *c, char *err);
int train_config_validate(const TrainConfig *c, char *err);
const char *pnorm_name(int mode);
const char *arch_name(int arch);
int arch_parse(const char *s); /* -1 if unknown */
const char *arch_names(void);  /* "tokenformer, transformer, transformerpp" */
/* The FFN hidden width of a baseline when none is given: 4d (transformer),
 * 64 ceil(8d/3/64) (transformerpp); tokenformer: the config's n_ffn. */
int arch_default_ffn(const ModelConfig *c);
/* Fill in what an arch changes in a preset: the FFN width and (transformerpp)
 * full RoPE, each unless given on the command line. */
void model_config_apply_arch_defaults(ModelConfig *c, int ffn_given, int rope_given);
int pnorm_parse(const char *s); /* -1 if unknown */
/* Rotary dims per head: rope_frac * head_dim rounded down to even. */
int model_config_rot_dims(const ModelConfig *c);

#endif
