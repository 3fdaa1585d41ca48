/* The TokenFormer language model (docs/MODEL.md, TokenFormer LM): parameters, optimizer
 * state, preallocated activations, and one forward/backward/update pass,
 * all through an Ops table. */
#ifndef TF_MODEL_H
#define TF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ops.h"
#include "tensor.h"

/* The five projection sites of a block: Pattentions (tokenformer), or
 * linears and the MLP (the baselines; docs/MODEL.md). */
enum { PATT_Q = 0, PATT_K, PATT_V, PATT_O, PATT_FFN, PATT_PER_LAYER };

#define MAX_PARAMS_PER_LAYER 10 /* tokenformer: key + value of each site */
#define MODEL_SITE_MAX_PARAMS 3 /* SwiGLU: gate, up, down */
#define MAX_SEGMENTS 32
/* N(0, std) of the weights whose init is not scaled (keys, linears, MLP up/gate). */
#define MODEL_INIT_STD 0.02f

/* Rows appended by `grow` get their own Adam step count: rows >= row_start
 * were born at optimizer step `birth` (bias correction uses step - birth).
 * Frozen segments are not updated (--freeze-old). */
typedef struct {
    int row_start;
    int birth;
    int frozen;
} RowSegment;

typedef struct {
    Tensor t;           /* value, in the model's backend memory: (rows, d_model), (d_model) for
                           a norm; LoRA B (rows, r) */
    float *grad;        /* same shape, same memory; NULL when backward never writes it
                           (frozen whole, after model_alloc_grads) */
    /* Adam moments of rows moment_row0 .. rows-1 only (a 1-D tensor is one
     * row): rows frozen before the first trainable segment have none, and a
     * parameter frozen whole has none at all (m, v NULL), so that an adapted
     * model holds no optimizer state for its base (model_alloc_moments). */
    float *m, *v;
    int moment_row0;
    int decay;          /* weight decay applies (2-D tensors) */
    int n_seg;
    RowSegment seg[MAX_SEGMENTS];
} Param;

/* Per-layer activations saved for backward (pointers into one buffer).
 * ln1/ln2 hold the normalized inputs that the Pattentions write in forward
 * and read in backward (ops.h PattInput; bf16 under CUDA bf16); o/f point to
 * one buffer shared by all layers, as they are not needed after the
 * residual sum. */
typedef struct {
    float *x;                 /* block input (residual), N x d */
    float *ln1, *ln1_mean, *ln1_rstd;
    /* Saved state of each Pattention (ops.h): when q, k and v have the same
     * rows they run as one group, whose state is in A[PATT_Q], S[PATT_Q]. */
    int qkv_group;            /* 3 (grouped) or 1 */
    float *A[PATT_PER_LAYER]; /* scores */
    float *S[PATT_PER_LAYER]; /* normalized scores */
    /* q, k, v and y are attention tensors (ops.h: bf16 under CUDA bf16) */
    float *q, *k, *v;         /* after RoPE for q, k; N x d each, one after another */
    float *att;               /* B x H x T x T */
    float *y;                 /* attention output before P_o, N x d */
    float *o;                 /* P_o output, N x d */
    float *h;                 /* x + drop(o), N x d */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *f;                 /* FFN output, N x d */
    float *adA[2], *adS[2];   /* saved state of the adapters (adapters.h AdapterSite), or NULL */
} LayerActs;

typedef struct Model {
    ModelConfig cfg;
    const Ops *ops;
    /* How the model computes on its backend (MatmulPrecision): a run
     * setting (model_set_precision), never stored in a checkpoint;
     * MATMUL_FP32 from model_create. */
    int precision;
    /* The element type of the activations' and scratch's attention tensors
     * (ops.h), fixed when model_alloc_activations allocated them. */
    DType attn_dtype;

    Param *params;   /* wte, then per layer the arch's parameters (model.c ArchLayout;
                        tokenformer: (q,k,v,o,ffn) x (key,value)), then the final
                        norm (memory order differs: model_param_offset) */
    int n_params;
    float *tau;      /* host, n_layer * PATT_PER_LAYER (1 and unused for the baselines) */
    float *param_mem, *grad_mem, *m_mem, *v_mem; /* one device block each */
    size_t n_param_elems;
    size_t n_moment_elems; /* in m_mem and in v_mem: n_param_elems unless rows are frozen */
    size_t n_grad_elems;   /* in grad_mem: n_param_elems, less after model_alloc_grads */
    int step;        /* optimizer steps taken */
    AdamwRange *adam_ranges; /* model_update's plan for segmented rows (host) */
    int adam_ranges_cap;
    /* adapters.h: the adapters' tau (sqrt of their rows), and under LoRA the
     * weights the passes use (W + (alpha/r) B A, same layout as param_mem),
     * recomputed by every forward and, decoding, after an update (stale) */
    float adapter_tau;
    float *lora_eff;
    int lora_stale;

    /* activations, sized by model_alloc_activations(B, T) */
    int B_alloc, T_alloc; /* what the buffers hold */
    int B, T;             /* the last forward's shape (<= allocated) */
    float *act_mem;
    LayerActs *layers;
    float *x_final, *lnf, *lnf_mean, *lnf_rstd, *logits, *probs;
    float *grad_scratch; /* backward scratch block */
    int *tokens, *targets; /* device */
    int has_targets;
    int n_targets;       /* rows of the last forward with a target in [0, V) */
    int last_training;   /* forward ran with dropout */
    uint64_t last_dropout_seed;
} Model;

/* Create a model with parameters and Adam moments of every row allocated
 * (zero) on ops' device, at precision MATMUL_FP32.
 * rows: n per Pattention (n_layer * PATT_PER_LAYER) or NULL for the config's
 * n_attn / n_ffn. Returns 0 or -1 with err. */
int model_create(Model *m, const ModelConfig *cfg, const int *rows, const Ops *ops, char *err);
/* model_create on src's backend at src's precision: a model made from
 * another (growth, adapters) computes as its source did. */
int model_create_like(Model *m, const Model *src, const ModelConfig *cfg, const int *rows, char *err);
/* Set the backend to the model's precision (MatmulPrecision) and check
 * that it computes in it; before model_alloc_activations and
 * model_kv_alloc, whose attention tensors take its type. Returns 0, or -1
 * with err when the backend has no such precision (the CPU: fp32 only) or
 * the activations are allocated in another type. */
int model_set_precision(Model *m, int precision, char *err);
/* model_create without the moments (m_mem, v_mem NULL): a checkpoint's reader
 * allocates them once it knows which rows are frozen. */
int model_create_params(Model *m, const ModelConfig *cfg, const int *rows, const Ops *ops, char *err);
/* Allocate the Adam moments (zero; none may be allocated yet): for every row,
 * or (trainable_only) only from each parameter's first unfrozen segment on,
 * none for a parameter frozen whole. The layout is the parameters' whenever
 * every row has moments. Returns 0 or -1 with err. */
int model_alloc_moments(Model *m, int trainable_only, char *err);
/* Gradient buffers again (grad_mem replaced; the gradients zero): for every
 * parameter, or (needed_only) only for those backward writes (those that
 * model_param_needs_grad, with the members of a group that backward
 * computes as one, e.g. q, k and v, when one of them needs it), the others'
 * grad NULL, so that a model frozen but for its adapters holds no gradient
 * memory for its base. The layout is the parameters' whenever every one
 * has a buffer. Freezing more later is safe; unfreezing needs another
 * call. Returns 0 or -1 with err (the old buffers kept). */
int model_alloc_grads(Model *m, int needed_only, char *err);
/* Rows of a parameter (a 1-D tensor is one row) and the floats per row. */
int model_param_rows(const Param *p);
size_t model_param_row_elems(const Param *p);
/* The first row of the first unfrozen segment: the rows before it are frozen
 * (all of them when none trains). */
int model_first_trainable_row(const Param *p);
/* Rows that have moments: those from moment_row0 on. */
int model_moment_rows(const Param *p);
/* Moments of n_rows rows of s from row s_row into rows d_row.. of d (the
 * same row width, same backend): rows s has none for become zero in d; rows
 * d has none for are skipped. */
void model_copy_moment_rows(const Ops *o, const Param *s, int s_row, Param *d, int d_row, int n_rows);
/* --freeze-old: every segment born before the latest grow is frozen, every
 * other one unfrozen. Returns the number of frozen segments. */
int model_freeze_old(Model *m);
/* --train last:N: every segment of the last n_blocks blocks (their adapters
 * and LoRA factors too) and of the final norm trains, every other one is
 * frozen, wte included (the head is tied to it). Returns the number of
 * frozen segments, or -1 when n_blocks is not 1 .. n_layer (nothing changed). */
int model_train_last_blocks(Model *m, int n_blocks);
/* Every segment trains again. */
void model_unfreeze(Model *m);
/* Whether backward computes parameter i's gradient: some of its rows train,
 * or it is a weight whose LoRA factors train and take their gradients from
 * its own (an MLP matrix: adapters.h lora_grads; a linear's factors get
 * theirs from its rows, lora_linear_backward, and it needs none). A
 * parameter frozen whole otherwise costs no gradient product (ops.h: NULL
 * weight gradients); a partly frozen one gets the gradient of every row
 * (the frozen rows' unused). */
int model_param_needs_grad(const Model *m, int i);
/* Its gradient buffer when backward computes it, else NULL. */
float *model_grad_if_needed(Model *m, int i);
/* The parameter table and shapes only, no memory: enough for model_num_params
 * and model_train_flops_per_token of a config (info --preset); model_free
 * releases it. */
int model_create_shapes(Model *m, const ModelConfig *cfg, const int *rows, const Ops *ops,
                        char *err);
void model_free(Model *m);
/* Official init (docs/MODEL.md, Pattention), deterministic in seed; tau = sqrt(n). */
void model_init_weights(Model *m, uint64_t seed);
/* The std of a Pattention value row at init, 2 / (n_layer sqrt(d)); new rows
 * that growth appends are drawn the same way. */
float model_value_init_std(const ModelConfig *c);

int model_alloc_activations(Model *m, int B, int T, char *err);

/* Forward over B x T tokens (host arrays). With targets, returns the mean
 * cross-entropy; without, returns 0 and leaves logits. training enables
 * dropout with masks derived from dropout_seed. */
float model_forward(Model *m, const int *tokens, const int *targets, int B, int T, int training,
                    uint64_t dropout_seed);
void model_zero_grad(Model *m);
/* Gradients of the mean loss of the last forward (which had targets),
 * accumulated (+=) into the gradients of the parameters that need one
 * (model_param_needs_grad; the others' stay as they were): model_zero_grad
 * starts a step. */
void model_backward(Model *m);
/* The same for loss_scale times that mean loss: 1/K for each of K equal
 * micro-batches gives the gradient of the mean over all of them. */
void model_backward_scaled(Model *m, float loss_scale);
/* Global L2 norm of the gradients of the trainable parameters (it zeroes
 * the gradients of frozen rows first). */
float model_grad_norm(Model *m);
/* The optimizer step at which the latest grow added rows (0: never grown). */
int model_latest_birth(const Model *m);
/* One AdamW update of every unfrozen row; grad_scale multiplies gradients
 * (clipping); rows born in the latest grow train at lr * tc->new_row_lr_mult. */
void model_update(Model *m, float lr, const TrainConfig *tc, float grad_scale);

/* The end of a step whose gradients are in place: the global norm into
 * *norm_out, then (when loss_finite and the norm is finite) clipping and
 * AdamW at learning rate lr. */
void model_clip_and_update(Model *m, float lr, const TrainConfig *tc, int loss_finite, float *norm_out);

/* One training step: forward (dropout on), backward, global-norm clip and
 * AdamW at learning rate lr. When the loss or the gradient norm is not
 * finite the update is skipped (the weights stay as they were); the caller
 * checks with isfinite(). *norm_out gets the gradient norm before clipping. */
float model_train_step(Model *m, const int *tokens, const int *targets, float lr,
                       const TrainConfig *tc, uint64_t dropout_seed, float *norm_out);

/* Where parameter `index` starts in param_mem (and grad_mem, m_mem, v_mem),
 * in floats: the memory order is not the index order (model.c). */
size_t model_param_offset(const Model *m, int index);
/* Rows of site `which` of layer `layer`: a Pattention's n, the baselines'
 * FFN width h, d for a linear site. */
int model_patt_rows(const Model *m, int layer, int which);
/* The index of the site's first parameter (a Pattention's key; a linear's
 * weight; the MLP's up or, SwiGLU, gate). */
int model_patt_param(const Model *m, int layer, int which);
/* The same from a config (before a model exists: a checkpoint's reader). */
int model_config_site_param(const ModelConfig *c, int layer, int which);
/* Whether the model's sites have Pattention scales tau (tokenformer). */
int model_has_tau(const ModelConfig *c);
/* Whether the site is a linear projection (the baselines' q, k, v, o). */
int model_site_is_linear(const Model *m, int which);
/* The parameters of the site that grow along rows when its rows grow
 * (Pattention: key, value; GeLU MLP: up, down; SwiGLU: gate, up, down;
 * linear: none), written to idx; returns their count. Each is rows x d. */
int model_site_row_params(const Model *m, int layer, int which, int idx[MODEL_SITE_MAX_PARAMS]);
/* The index of the site's last parameter, through which it writes its
 * output: a Pattention's value, a linear's weight, the MLP's down. */
int model_site_output_param(const Model *m, int layer, int which);
/* Parameters per layer of the config's arch (adapters.h extras not counted). */
int model_params_per_layer(const ModelConfig *c);
/* Parameters of site `which` of a layer (a Pattention 2, a linear 1, the MLP 2 or 3). */
int model_config_site_count(const ModelConfig *c, int which);
/* The index of the first adapters.h extra parameter: the base model's count. */
int model_first_extra_param(const ModelConfig *c);
/* The rows Pattention `which` of layer `layer` took in the last forward, as
 * an input another pattention_forward can take: an attention tensor (the
 * normalized rows, or the attention output for PATT_O), valid until the
 * next forward. */
PattInput model_patt_last_input(const Model *m, int layer, int which);
float *model_patt_tau(Model *m, int layer, int which);
size_t model_num_params(const Model *m, int include_embedding);
/* Training FLOPs per token (docs/MODEL.md 3a): 6 P + 12 L d T, where P counts
 * the non-embedding parameters plus the vocab x d output projection (tied
 * head); the one rule for train's cumulative FLOPs and bench's MFU. */
double model_train_flops_per_token(const Model *m);
/* Incremental decoding: per layer, the rotated keys and the values of the
 * positions fed so far (ops.h attention tensors, (B, T_max, d) each), so that
 * a new token costs one token's forward. T_max is the block size. */
typedef struct {
    int B, T_max;    /* streams, positions the cache holds */
    int pos;         /* positions cached: the next token's position */
    float **k, **v;  /* per layer */
    float *mem;      /* one device block */
    DType dtype;     /* the element type of k and v (the model's attention type) */
    int *pos_dev;    /* pos in backend memory, where the decode ops read it, */
    int *tokens_dev; /* and right after it the tokens being fed (B x T_max) */
    int *inputs;     /* host: pos and the tokens, staged for one copy */
    /* The single-token step, which the backend may record once and replay
     * for every later token (ops.h decode_step): its state, the backend's. */
    DecodeStep step;
    /* A window restart's chunk, restart_T tokens from position 0 (set by
     * the user of the cache; 0: none), repeats too: its recording. */
    DecodeStep restart;
    int restart_T;
} KVCache;

/* An empty cache (pos 0) for B streams. Returns 0 or -1 with err. */
int model_kv_alloc(Model *m, KVCache *kv, int B, char *err);
void model_kv_free(Model *m, KVCache *kv);
/* Empty the cache (pos 0): the next decode starts it again. */
void model_kv_restart(KVCache *kv);
/* Decode op by op from now on, never replaying a recorded step. */
void model_kv_never_record(KVCache *kv);
/* Feed T new tokens per stream (host, B x T, stream-major) at positions
 * kv->pos .. kv->pos+T-1 (which must fit in T_max) through the same layers
 * as model_forward, attending over the cache; leaves the logits of the new
 * positions (model_logits_last) and advances kv->pos. Needs activations
 * for (kv->B, T). model_kv_restart empties the cache. Single tokens
 * (T = 1), and chunks of kv->restart_T tokens at position 0, go through
 * the backend's decode_step (a recorded step replayed where the backend
 * records). tokens NULL (T = 1): the tokens are in
 * kv->tokens_dev and kv->pos in kv->pos_dev already (ops.h sample_tokens
 * wrote them there), so nothing is copied in. */
void model_decode(Model *m, KVCache *kv, const int *tokens, int T);
/* The logits of the last position of every stream of the last forward or
 * decode, B x V on the host (one copy when T = 1). */
void model_logits_last(const Model *m, float *host_out);
/* Copy the logits row of (batch b, position t) to host. */
void model_logits_row(const Model *m, int b, int t, float *host_out);

/* Parameter names (of the config's arch), as in docs/FORMAT.md. */
void model_param_name(const ModelConfig *c, int index, char *out, size_t len);
/* The name of Pattention `which` (PATT_Q ..) within a layer, "attn.q" ..
 * "ffn": its tensors are h.<layer>.<name>.key / .value. */
const char *model_patt_name(int which);

#endif
