/* Adaptation parameters on a trained baseline (docs/ADAPTATION.md):
 * Tokenformer adapters, a Pattention over adapter key/value tokens beside a
 * block's MLP (and attention) whose output is added to the layer's, and
 * LoRA, a low-rank update (alpha / r) B A of chosen weight matrices. Both
 * start as the identity on the model's function (adapter values, LoRA B
 * zero) and are the parameters that `grow --adapter-kv` / `--lora-rank`
 * add after every other one; `train --resume --freeze-old` trains only them.
 */
#ifndef TF_ADAPTERS_H
#define TF_ADAPTERS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ops.h"

struct Model;

/* Where an adapter sits: beside the attention sub-layer (its input the
 * block's first norm, its output added to the residual after attention)
 * or beside the MLP (the second norm's rows in, added after the MLP). */
typedef enum { ADAPT_ATTN = 0, ADAPT_MLP = 1, ADAPT_SITES } AdapterSite;

/* The weights LoRA can update: the attention projections, or every matrix
 * of the MLP (up and down; SwiGLU: gate too). */
typedef enum { LORA_Q = 0, LORA_K, LORA_V, LORA_O, LORA_MLP, LORA_SITES } LoraSite;

/* "mlp,attn" -> AdapterSite bits; "q,v,mlp" -> LoraSite bits. 0, or -1
 * with err naming the unknown part. */
int adapter_sites_parse(const char *list, int *bits, char *err);
int lora_sites_parse(const char *list, int *bits, char *err);
/* The bits as a list ("attn,mlp"), into out. */
void adapter_sites_format(int bits, char *out, size_t len);
void lora_sites_format(int bits, char *out, size_t len);

/* Whether the config carries adapters or LoRA; their fields checked (0 or
 * -1 with err). */
int adapters_present(const ModelConfig *c);
int adapters_config_validate(const ModelConfig *c, char *err);

/* The extra parameters, after the base model's (model.h): per layer the
 * adapters' key and value (attn, then mlp), then per LoRA'd matrix its A
 * (r x cols) and B (rows x r). */
int adapters_params_per_layer(const ModelConfig *c);
/* Name of extra parameter j (0-based among the extras), e.g.
 * "h.0.adapter.mlp.key", "h.1.attn.q.weight_lora_A". */
void adapters_param_name(const ModelConfig *c, int j, char *out, size_t len);
/* The index of the key of layer l's adapter at `site` (its value is +1), or -1. */
int adapters_key_param(const ModelConfig *c, int l, int site);
/* The index of base parameter `base`'s LoRA A (B is +1), or -1. */
int adapters_lora_param(const ModelConfig *c, int base);
/* The shape of extra parameter j of model m, whose base parameters are
 * already shaped. */
void adapters_param_shape(const struct Model *m, int j, int64_t shape[2]);

/* ---- in the model's passes (model.c) ---- */

/* out += adapter(in) for layer l's adapter at site (nothing when absent);
 * A, S: its saved scores, dA scratch, branch an N x d buffer it may use. */
void adapters_forward(struct Model *m, int l, int site, PattInput in, float *A, float *S,
                      float *dA, float *branch, float *out);
/* Backward of the same: dout = d(out); din += d(in rows). */
void adapters_backward(struct Model *m, int l, int site, PattInput in, float *A, float *S,
                       float *dA, const float *dout, float *din);
/* The score columns the adapter at site of layer l saves (0 when absent). */
int adapters_score_cols(const struct Model *m, int site);
/* The weights the forward uses: W + (alpha/r) B A for every LoRA'd matrix,
 * into m->lora_eff (a copy of the parameter block). */
void lora_refresh(struct Model *m);
/* Whether base parameter `base` has a LoRA whose factors get their
 * gradients in backward from the linear's input rows X and output gradient
 * dY (lora_linear_backward), without the gradient of the weight: the q, k,
 * v, o linears. The MLP's weights are not: its hidden rows and their
 * gradient live inside the fused Pattention-op product (ops.h), in the
 * backend's layout, so theirs come from the weight's gradient (lora_grads). */
int lora_low_rank(const struct Model *m, int base);
/* For such a base (a linear d_out x d_in, LoRA A r x d_in, B d_out x r,
 * s = alpha / r): dB += s dY^T (X A^T), dA += s (dY B)^T X, those that train,
 * at 2 N r (d_in + d_out) multiply-adds each instead of the N d_in d_out of
 * dW. rows: the input rows as the product took them (an attention tensor:
 * the normalized rows or the attention output); dY: its output's gradient
 * (N x d_out, an attention tensor when y_attn); u, v: N x r floats of scratch. */
void lora_linear_backward(struct Model *m, int base, PattInput rows, const float *dY, int y_attn,
                          float *u, float *v);
/* d(A), d(B) of every other LoRA'd matrix (the MLP's) from its base
 * gradient (the gradient of the effective weight, accumulated over
 * micro-batches): overwritten. */
void lora_grads(struct Model *m);

/* ---- grow (CPU models) ---- */

/* *dst = src with adapters (kv rows at sites, normalization pnorm) or LoRA
 * (rank, sites, alpha) added: base parameters, moments and segments copied,
 * new ones born at src->step with zero moments (adapter keys N(0, 0.02),
 * values 0; LoRA A N(0, 1/sqrt(3 cols)), B 0): the function is unchanged. */
int adapters_insert(const struct Model *src, struct Model *dst, int kv, int sites, int pnorm,
                    uint64_t seed, char *err);
int lora_insert(const struct Model *src, struct Model *dst, int rank, int sites, float alpha,
                uint64_t seed, char *err);
/* *dst = src with every W <- W + (alpha/r) B A and the LoRA tensors gone. */
int lora_merge(const struct Model *src, struct Model *dst, char *err);

/* Elements of the parameters that train (segments not frozen), and of
 * those born in the latest grow (what --freeze-old trains). */
size_t model_trainable_params(const struct Model *m);
size_t model_latest_grown_params(const struct Model *m);

#endif
