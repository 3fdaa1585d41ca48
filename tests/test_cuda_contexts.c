/* Two CUDA backend contexts in one process (src/backends/cuda/ops_cuda.h):
 * one fp32, one bf16, each training the same tiny model with steps
 * interleaved, must each match a run of that model alone on a context of
 * its own. The precision is per context: setting bf16 on one leaves the
 * other's attention tensors fp32. Prints PASS/FAIL per check; exits 1 on
 * any failure. Without a usable GPU (or a build without CUDA) prints one
 * SKIP line, exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "model.h"
#include "ops.h"
#include "rng.h"
#include "check.h"
#ifdef TF_CUDA
#include "ops_cuda.h"
#endif

#ifndef TF_CUDA
int main(void) {
    check_skip("test_cuda_contexts", "built without CUDA (nvcc not found or CUDA=0)");
    return 0;
}
#else

#define STEPS 6
#define B 4
#define T 32
#define VOCAB 65
/* The parameters' difference between a run alone and the same run
 * interleaved with another context, as ||alone - mixed|| / ||alone|| (a
 * norm, not the largest element: AdamW turns a last-bit difference in a
 * gradient near zero into a whole step of lr for that element). Both runs
 * launch the same kernels on the same inputs; what may differ is the order
 * of atomic additions (the embedding's backward) and, under bf16, the GEMM
 * kernel each context's tuning picks (gemm_tuned.cu) with the bf16 rounding
 * that follows. State shared between contexts (a precision, a mirror, a
 * workspace) would differ by far more. */
#define TOL_FP32 1e-5
#define TOL_BF16 3e-3

/* A tiny TokenFormer, small enough to train in well under a second. */
static ModelConfig tiny_config(void) {
    ModelConfig c = preset_find("tiny")->model;
    c.n_layer = 2;
    c.d_model = 64;
    c.n_head = 2; /* head size 32: the fused attention under bf16 */
    c.n_attn = 32;
    c.n_ffn = 48;
    c.block_size = T;
    c.vocab_size = VOCAB;
    c.dropout = 0.0f;
    return c;
}

/* One model on its own context, with the batch it trains on. */
typedef struct {
    const Ops *ops;
    Model m;
    int tokens[B * T], targets[B * T];
    TrainConfig tc;
} Run;

static const Ops *new_context(void) {
    char why[256] = "";
    const Ops *o = ops_cuda_create(why, sizeof why);
    if (!o) tf_die("test_cuda_contexts: a second context failed: %s", why);
    return o;
}

static void run_start(Run *r, int precision) {
    char err[TF_ERRLEN];
    ModelConfig cfg = tiny_config();
    r->ops = new_context(); /* the model sets the precision (model_set_precision) */
    r->tc = preset_find("tiny")->train;
    if (model_create(&r->m, &cfg, NULL, r->ops, err) || model_set_precision(&r->m, precision, err) ||
        model_alloc_activations(&r->m, B, T, err))
        tf_die("test_cuda_contexts: %s", err);
    model_init_weights(&r->m, 1234);
    Rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < B * T; i++) {
        r->tokens[i] = (int)rng_below(&rng, VOCAB);
        r->targets[i] = (int)rng_below(&rng, VOCAB);
    }
}

static float run_step(Run *r, int step) {
    float norm;
    return model_train_step(&r->m, r->tokens, r->targets, 1e-3f, &r->tc, (uint64_t)step, &norm);
}

/* The parameters on the host (the caller frees them), then the run's end:
 * its model and its context freed. */
static float *run_finish(Run *r) {
    size_t n = r->m.n_param_elems;
    float *host = malloc(n * sizeof(float));
    if (!host) tf_die("test_cuda_contexts: out of host memory");
    r->ops->to_host(r->ops, host, r->m.param_mem, n * sizeof(float));
    model_free(&r->m);
    ops_cuda_destroy(r->ops);
    return host;
}

static double rel_norm_diff(const float *a, const float *b, size_t n) {
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        diff += d * d;
        norm += (double)a[i] * a[i];
    }
    return norm > 0 ? sqrt(diff / norm) : sqrt(diff);
}

static float *train_alone(int precision, float *losses) {
    Run r;
    run_start(&r, precision);
    for (int s = 0; s < STEPS; s++) losses[s] = run_step(&r, s);
    return run_finish(&r);
}

static void test_precision_is_per_context(void) {
    /* set on one context, read on both: the setting must not leak */
    const Ops *a = new_context(), *b = new_context();
    b->set_precision(b, MATMUL_BF16);
    check(a != b && a->ctx != b->ctx, "contexts_are_distinct", "one table or context for both");
    check(a->attn_dtype(a) == DTYPE_F32, "fp32_context_keeps_fp32_attention", "%s",
          dtype_name(a->attn_dtype(a)));
    check(b->attn_dtype(b) == DTYPE_BF16, "bf16_context_has_bf16_attention", "%s",
          dtype_name(b->attn_dtype(b)));
    ops_cuda_destroy(a);
    ops_cuda_destroy(b);
}

static void test_interleaved_training(void) {
    float loss_alone[2][STEPS], loss_mixed[2][STEPS];
    float *alone[2] = {train_alone(MATMUL_FP32, loss_alone[0]),
                       train_alone(MATMUL_BF16, loss_alone[1])};
    Run r[2];
    run_start(&r[0], MATMUL_FP32);
    run_start(&r[1], MATMUL_BF16);
    size_t n = r[0].m.n_param_elems;
    for (int s = 0; s < STEPS; s++)
        for (int k = 0; k < 2; k++) loss_mixed[k][s] = run_step(&r[k], s);
    float *mixed[2] = {run_finish(&r[0]), run_finish(&r[1])};
    const char *names[2] = {"fp32", "bf16"};
    const double tol[2] = {TOL_FP32, TOL_BF16};
    for (int k = 0; k < 2; k++) {
        char name[96];
        double d = rel_norm_diff(alone[k], mixed[k], n);
        snprintf(name, sizeof name, "interleaved_%s_params_match_alone", names[k]);
        check_err(name, "rel norm diff", d, tol[k]);
        double dl = fabs((double)loss_alone[k][STEPS - 1] - loss_mixed[k][STEPS - 1]);
        snprintf(name, sizeof name, "interleaved_%s_loss_matches_alone", names[k]);
        check_err(name, "loss diff", isfinite(loss_mixed[k][STEPS - 1]) ? dl : INFINITY,
                  tol[k] * fabs(loss_alone[k][0]));
        snprintf(name, sizeof name, "%s_run_learns", names[k]);
        check(loss_mixed[k][STEPS - 1] < loss_mixed[k][0], name, "loss %.4f -> %.4f",
              loss_mixed[k][0], loss_mixed[k][STEPS - 1]);
        free(alone[k]);
        free(mixed[k]);
    }
}

int main(void) {
    char why[256] = "";
    const Ops *probe = ops_cuda_create(why, sizeof why);
    if (!probe) {
        check_skip("test_cuda_contexts", "%s", why[0] ? why : "no usable GPU");
        return 0;
    }
    ops_cuda_destroy(probe);
    test_precision_is_per_context();
    test_interleaved_training();
    return check_exit("test_cuda_contexts");
}
#endif
