/* The C model's loss and every parameter gradient against the PyTorch
 * reference (scripts/tokenformer_ref.py, via scripts/compare_grads.py).
 *
 * For each case: build a small model on the backend named by TF_DEVICE
 * (default cpu), initialise it, then overwrite the weights with values that
 * make every gradient well conditioned (unit-scale scores, see below), move
 * each tau away from sqrt(n), draw random tokens, run forward + backward and
 * write a "gradient dump" (parameters, taus, grad.<name>, batch.tokens,
 * batch.targets, loss, metadata "config"). Then one run of
 *     $PYTHON scripts/compare_grads.py DUMP...  (scripts/find_python.sh; default python3)
 * rebuilds the model in float64 and prints PASS/FAIL torch_loss and
 * torch_grad <name> lines. Without torch: SKIP. Run from the repo root.
 *
 * Environment: TF_DEVICE (cpu | cuda | auto), PYTHON, TF_TORCH_TOL
 * (relative tolerance, default 1e-4), TF_KEEP_DUMPS=1 keeps the dump files.
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "config.h"
#include "model.h"
#include "ops.h"
#include "rng.h"
#include "safetensors.h"
#include "check.h"

#define MAX_CASES 16

typedef struct {
    const char *name;
    int L, d, H, n_attn, n_ffn, block, V;
    int B, T;            /* forward batch (T may be < block) */
    float rope_frac;
    int pnorm;
    const int *rows;     /* NULL: n_attn / n_ffn */
    int zero_key_rows;   /* last rows of every key set to 0 (as after `grow`) */
    int arch;            /* Arch (0: tokenformer) */
} Case;

static const int ROWS_GROWN[] = {24, 20, 28, 16, 40, /* layer 0: q k v o ffn */
                                 30, 24, 18, 26, 56};

static const Case CASES[] = {
    {"l2_norm_gelu_rope0.25", 2, 32, 4, 24, 40, 16, 11, 3, 16, 0.25f, PNORM_L2_GELU, NULL, 0, 0},
    {"l2_norm_gelu_rope1.0", 2, 32, 4, 24, 40, 16, 11, 3, 16, 1.0f, PNORM_L2_GELU, NULL, 0, 0},
    {"gelu_l2_norm_rope0.25", 2, 32, 4, 24, 40, 16, 11, 3, 16, 0.25f, PNORM_GELU_L2, NULL, 0, 0},
    {"gelu_l2_norm_rope1.0", 2, 32, 4, 24, 40, 16, 11, 3, 16, 1.0f, PNORM_GELU_L2, NULL, 0, 0},
    {"softmax_rope0.25", 2, 32, 4, 24, 40, 16, 11, 3, 16, 0.25f, PNORM_SOFTMAX, NULL, 0, 0},
    {"softmax_rope1.0", 2, 32, 4, 24, 40, 16, 11, 3, 16, 1.0f, PNORM_SOFTMAX, NULL, 0, 0},
    /* grown model: different rows per Pattention, new key rows zero */
    {"grown_rows_l2_norm_gelu", 2, 32, 4, 24, 40, 16, 11, 3, 16, 0.5f, PNORM_L2_GELU, ROWS_GROWN, 4, 0},
    /* odd sizes, one layer, head_dim 6 (rot 2 at 0.5), T shorter than allocated */
    {"odd_sizes_short_T", 1, 18, 3, 13, 29, 12, 7, 2, 9, 0.5f, PNORM_L2_GELU, NULL, 0, 0},
    /* the baselines (n_ffn: their FFN width) */
    {"transformer", 2, 32, 4, 24, 128, 16, 11, 3, 16, 0.25f, 0, NULL, 0, ARCH_TRANSFORMER},
    {"transformer_odd_short_T", 1, 18, 3, 13, 40, 12, 7, 2, 9, 0.5f, 0, NULL, 0, ARCH_TRANSFORMER},
    {"transformerpp", 2, 32, 4, 24, 96, 16, 11, 3, 16, 1.0f, 0, NULL, 0, ARCH_TRANSFORMERPP},
    {"transformerpp_odd_short_T", 1, 18, 3, 13, 40, 12, 7, 2, 9, 0.5f, 0, NULL, 0, ARCH_TRANSFORMERPP},
};

static void fail(const char *fmt, const char *a, const char *b) {
    char why[1024];
    snprintf(why, sizeof why, fmt, a, b);
    check(0, "test_model_torch", "%s", why);
}

static int have_torch(const char *python) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", python);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

static void config_json(const ModelConfig *c, char *out, size_t len) {
    snprintf(out, len,
             "{\"arch\": \"%s\", \"n_layer\": %d, \"d_model\": %d, \"n_head\": %d, \"n_attn\": %d, \"n_ffn\": %d, "
             "\"block_size\": %d, \"vocab_size\": %d, \"rope_frac\": %.9g, \"dropout\": %.9g, "
             "\"pnorm\": \"%s\"}",
             arch_name(c->arch), c->n_layer, c->d_model, c->n_head, c->n_attn, c->n_ffn, c->block_size,
             c->vocab_size, (double)c->rope_frac, (double)c->dropout, pnorm_name(c->pnorm));
}

/* Weights for a well-conditioned check: with the official init (keys
 * N(0, 0.02)) the scores are ~0.1, softmax/GeLU are nearly flat, and the
 * q/k gradients are ~1e-6 of the others -- fp32 rounding then dominates a
 * relative comparison. So: keys N(0, 1/sqrt(d)) (unit-scale scores on the
 * LayerNorm output), values N(0, 1/sqrt(n)) (unit-scale outputs), wte
 * N(0, 0.3) (logits of std ~0.3 sqrt(d): a softmax neither flat nor
 * saturated), norm weights 1 + N(0, 0.1), LN_f bias N(0, 0.1). The
 * baselines' input-side weights (linears, mlp.up/gate) are scaled as keys,
 * mlp.down as values. */
static int name_ends(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void set_test_weights(Model *m, const Case *cs, uint64_t seed) {
    const Ops *o = m->ops;
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        size_t n = tensor_numel(&p->t);
        float *h = tf_malloc(n * sizeof(float), "test weights");
        float std = 1.0f, mean = 0.0f;
        const char *nm = p->t.name;
        int is_key = name_ends(nm, ".key");
        if (i == 0) {
            std = 0.3f;
        } else if (p->t.ndim == 1) {
            mean = name_ends(nm, "bias") ? 0.0f : 1.0f;
            std = 0.1f;
        } else if (name_ends(nm, ".value") || name_ends(nm, "mlp.down")) {
            std = 1.0f / sqrtf((float)p->t.shape[0]);
        } else {
            std = 1.0f / sqrtf((float)m->cfg.d_model);
        }
        for (size_t j = 0; j < n; j++) h[j] = mean + std * rng_normal(&r);
        if (is_key && cs->zero_key_rows > 0) {
            size_t rows = (size_t)p->t.shape[0], cols = (size_t)p->t.shape[1];
            size_t z = (size_t)cs->zero_key_rows < rows ? (size_t)cs->zero_key_rows : rows - 1;
            memset(h + (rows - z) * cols, 0, z * cols * sizeof(float));
        }
        o->to_device(o, p->t.data, h, n * sizeof(float));
        free(h);
    }
    /* tau away from sqrt(n): factors in [0.6, 1.4) (the baselines have none) */
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++)
            *model_patt_tau(m, l, w) *= 0.6f + 0.8f * rng_uniform(&r);
}

/* The official init, checked loosely on the first case (std of keys 0.02,
 * values 2 / (L sqrt d), wte 0.02; tau = sqrt(n); ln_f 1 / 0). */
static void check_init(Model *m) {
    const Ops *o = m->ops;
    int ok = 1;
    char name[TF_NAME_LEN], why[256] = "";
    float vstd = 2.0f / ((float)m->cfg.n_layer * sqrtf((float)m->cfg.d_model));
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        size_t n = tensor_numel(&p->t);
        float *h = tf_malloc(n * sizeof(float), "init check");
        o->to_host(o, h, p->t.data, n * sizeof(float));
        double s = 0, s2 = 0;
        for (size_t j = 0; j < n; j++) {
            s += h[j];
            s2 += (double)h[j] * h[j];
        }
        double mean = s / n, std = sqrt(s2 / n - mean * mean);
        model_param_name(&m->cfg, i, name, sizeof name);
        double want_mean = 0, want_std;
        if (i == m->n_params - 2) {
            want_mean = 1, want_std = 0;
        } else if (i == m->n_params - 1) {
            want_std = 0;
        } else {
            want_std = (i == 0 || ((i - 1) % 2) == 0) ? 0.02 : vstd;
        }
        int good = want_std == 0 ? (fabs(mean - want_mean) < 1e-7 && std < 1e-7)
                                 : (fabs(std / want_std - 1) < 0.2 && fabs(mean) < 0.3 * want_std);
        if (!good && ok) {
            snprintf(why, sizeof why, "%s: mean %.4g std %.4g, expected mean %.4g std %.4g", name,
                     mean, std, want_mean, want_std);
            ok = 0;
        }
        free(h);
    }
    for (int l = 0; l < m->cfg.n_layer && ok; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            float t = *model_patt_tau(m, l, w), want = sqrtf((float)model_patt_rows(m, l, w));
            if (fabsf(t - want) > 1e-6f * want) {
                snprintf(why, sizeof why, "tau of layer %d pattention %d is %g, expected sqrt(n) = %g",
                         l, w, (double)t, (double)want);
                ok = 0;
                break;
            }
        }
    char label[160];
    snprintf(label, sizeof label, "test_model_torch: official init statistics (keys/wte std 0.02, "
             "values std %.4g, tau sqrt(n), ln_f 1/0)", (double)vstd);
    check(ok, label, "%s", why);
}

/* Build, run and dump one case; 0 on success. */
static int run_case(const Case *cs, const Ops *ops, const char *path, uint64_t seed) {
    ModelConfig c = {.n_layer = cs->L, .d_model = cs->d, .n_head = cs->H, .n_attn = cs->n_attn,
                     .n_ffn = cs->n_ffn, .block_size = cs->block, .vocab_size = cs->V,
                     .rope_frac = cs->rope_frac, .dropout = 0.0f, .pnorm = cs->pnorm,
                     .arch = cs->arch};
    char err[TF_ERRLEN];
    Model m;
    if (model_create(&m, &c, cs->rows, ops, err)) {
        fail("%s: model_create: %s", cs->name, err);
        return -1;
    }
    model_init_weights(&m, seed);
    if (cs == &CASES[0]) check_init(&m);
    set_test_weights(&m, cs, seed * 7919 + 1);
    /* Allocate for the full block and a larger batch; forward may use less. */
    if (model_alloc_activations(&m, cs->B + 1, cs->block, err)) {
        fail("%s: model_alloc_activations: %s", cs->name, err);
        model_free(&m);
        return -1;
    }
    int B = cs->B, T = cs->T, N = B * T;
    int *tokens = tf_malloc((size_t)N * sizeof(int), "tokens");
    int *targets = tf_malloc((size_t)N * sizeof(int), "targets");
    Rng r;
    rng_seed(&r, seed + 12345);
    for (int i = 0; i < N; i++) {
        tokens[i] = (int)rng_below(&r, (uint64_t)cs->V);
        targets[i] = (int)rng_below(&r, (uint64_t)cs->V);
    }
    float loss = model_forward(&m, tokens, targets, B, T, 0, 0);
    model_zero_grad(&m);
    model_backward(&m);
    ops->synchronize(ops);

    /* tensors: params, grads, taus, batch, loss */
    int L = c.n_layer, P = m.n_params, ntau = model_has_tau(&c) ? L * PATT_PER_LAYER : 0;
    int nt = 2 * P + ntau + 3;
    StTensorOut *out = tf_calloc((size_t)nt, sizeof(StTensorOut), "dump table");
    char(*names)[TF_NAME_LEN + 8] = tf_calloc((size_t)nt, sizeof *names, "dump names");
    float **bufs = tf_calloc((size_t)2 * P, sizeof(float *), "dump buffers");
    int64_t tau_shape[1] = {1}, batch_shape[2] = {B, T}, loss_shape[1] = {1};
    int k = 0;
    for (int i = 0; i < P; i++) {
        Param *p = &m.params[i];
        size_t bytes = tensor_numel(&p->t) * sizeof(float);
        char pname[TF_NAME_LEN];
        model_param_name(&c, i, pname, sizeof pname);
        bufs[2 * i] = tf_malloc(bytes, "dump param");
        bufs[2 * i + 1] = tf_malloc(bytes, "dump grad");
        ops->to_host(ops, bufs[2 * i], p->t.data, bytes);
        ops->to_host(ops, bufs[2 * i + 1], p->grad, bytes);
        snprintf(names[k], sizeof names[k], "%s", pname);
        out[k] = (StTensorOut){names[k], DTYPE_F32, p->t.ndim, p->t.shape, bufs[2 * i]};
        k++;
        snprintf(names[k], sizeof names[k], "grad.%s", pname);
        out[k] = (StTensorOut){names[k], DTYPE_F32, p->t.ndim, p->t.shape, bufs[2 * i + 1]};
        k++;
    }
    static const char *WHICH[PATT_PER_LAYER] = {"attn.q", "attn.k", "attn.v", "attn.o", "ffn"};
    for (int l = 0; l < L && ntau; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            snprintf(names[k], sizeof names[k], "h.%d.%s.tau", l, WHICH[w]);
            out[k] = (StTensorOut){names[k], DTYPE_F32, 1, tau_shape, model_patt_tau(&m, l, w)};
            k++;
        }
    out[k++] = (StTensorOut){"batch.tokens", DTYPE_I32, 2, batch_shape, tokens};
    out[k++] = (StTensorOut){"batch.targets", DTYPE_I32, 2, batch_shape, targets};
    out[k++] = (StTensorOut){"loss", DTYPE_F32, 1, loss_shape, &loss};

    char cfg_json[1024];
    config_json(&c, cfg_json, sizeof cfg_json);
    const char *mk[2] = {"config", "case"};
    const char *mv[2] = {cfg_json, cs->name};
    int rc = 0;
    if (!isfinite(loss)) {
        fail("%s: loss is not finite", cs->name, "");
        rc = -1;
    } else if (st_write_atomic(path, out, k, mk, mv, 2, err)) {
        fail("%s: writing the dump: %s", cs->name, err);
        rc = -1;
    }
    for (int i = 0; i < 2 * P; i++) free(bufs[i]);
    free(bufs);
    free(names);
    free(out);
    free(tokens);
    free(targets);
    model_free(&m);
    return rc;
}

int main(void) {
    const char *python = getenv("PYTHON"); /* tests/run_tests.sh finds one with torch */
    if (!python || !*python) python = "python3";
    if (!have_torch(python)) {
        check_skip("test_model_torch", "no torch (%s cannot import torch)", python);
        return 0;
    }
    const char *dev = getenv("TF_DEVICE");
    if (!dev || !*dev) dev = "cpu";
    char err[TF_ERRLEN];
    const Ops *ops = ops_by_name(dev, err, sizeof err);
    if (!ops) {
        if (strcmp(dev, "cuda") == 0) {
            check_skip("test_model_torch", "%s", err);
            return 0;
        }
        check(0, "test_model_torch", "TF_DEVICE=%s: %s", dev, err);
        return 1;
    }
    const char *tol = getenv("TF_TORCH_TOL");
    if (!tol || !*tol) tol = "1e-4";
    const char *keep = getenv("TF_KEEP_DUMPS");
    int keep_dumps = keep && *keep && strcmp(keep, "0") != 0;

    char dir[] = "/tmp/tf_model_torch_XXXXXX";
    if (!mkdtemp(dir)) {
        check(0, "test_model_torch", "cannot create a temporary directory");
        return 1;
    }
    int n_cases = (int)(sizeof CASES / sizeof CASES[0]);
    char paths[MAX_CASES][96];
    char cmd[4096];
    int len = snprintf(cmd, sizeof cmd, "%s scripts/compare_grads.py --tol %s", python, tol);
    int n_dumps = 0;
    for (int i = 0; i < n_cases; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%02d.safetensors", dir, i);
        if (run_case(&CASES[i], ops, paths[i], 1000 + (uint64_t)i) == 0) {
            len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s", paths[i]);
            n_dumps++;
        } else {
            paths[i][0] = 0;
        }
    }
    printf("# test_model_torch: %d cases on %s, tolerance %s (relative, vs float64 torch)\n",
           n_dumps, ops->name, tol);
    fflush(stdout);
    int py_ok = 1;
    if (n_dumps > 0) {
        int rc = system(cmd);
        py_ok = rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
        if (!py_ok) {
            check(0, "test_model_torch", "compare_grads.py reported failures (exit %d); dumps kept in %s",
                  (rc != -1 && WIFEXITED(rc)) ? WEXITSTATUS(rc) : -1, dir);
        }
    }
    if (py_ok && check_failures() == 0 && !keep_dumps) {
        for (int i = 0; i < n_cases; i++)
            if (paths[i][0]) unlink(paths[i]);
        rmdir(dir);
    } else if (keep_dumps) {
        printf("# dumps kept in %s\n", dir);
    }
    return check_failures() ? 1 : 0;
}
