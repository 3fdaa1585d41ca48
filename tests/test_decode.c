/* Incremental decoding on the CPU: the decode ops against the full-sequence
 * ops (RoPE at an offset, the cache append and the attention of new queries
 * over the cache, in chunks of several sizes), then the sampler's logits at
 * every step against a plain forward over the window that the documented
 * policy says the cache holds (docs/DESIGN.md, Sampling), past block_size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "ops.h"
#include "rng.h"
#include "sampler.h"
#include "check.h"

static float *randn(Rng *r, size_t n) {
    float *x = tf_malloc(n * sizeof(float), "test");
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(r);
    return x;
}

/* The running max error, made infinite by a NaN (fmax would drop it). */
static double worse(double worst, double a, double b) {
    double d = fabs(a - b);
    if (isnan(d)) return INFINITY;
    return d > worst ? d : worst;
}

/* rows (b, t) of x: (B, T, d) */
static float *row(float *x, int b, int t, int T, int d) { return x + ((size_t)b * T + t) * d; }

static void test_ops(void) {
    const Ops *o = ops_cpu();
    enum { B = 2, T = 11, H = 3, HD = 8, D = H * HD, ROT = 4, TMAX = 16 };
    Rng r;
    rng_seed(&r, 5);
    float *q = randn(&r, B * T * D), *k = randn(&r, B * T * D), *v = randn(&r, B * T * D);
    /* the training path: the whole sequence at once */
    float *qk = tf_malloc(sizeof(float) * 2 * B * T * D, "test");
    memcpy(qk, q, sizeof(float) * B * T * D);
    memcpy(qk + B * T * D, k, sizeof(float) * B * T * D);
    o->rope(o, qk, 2 * B, T, H, HD, ROT, 0);
    size_t att_f, datt_f;
    o->attention_sizes(o, B, T, H, HD, &att_f, &datt_f);
    float *att = tf_malloc(sizeof(float) * att_f, "test"), *full = tf_malloc(sizeof(float) * B * T * D, "test");
    o->attention_forward(o, full, att, qk, qk + B * T * D, v, B, T, H, HD);

    /* decoding: chunks of 4, 1, 1 and 5 new positions */
    float *kc = tf_calloc(B * TMAX * D, sizeof(float), "test"), *vc = tf_calloc(B * TMAX * D, sizeof(float), "test");
    float *cq = tf_malloc(sizeof(float) * 2 * B * T * D, "test"), *cv = tf_malloc(sizeof(float) * B * T * D, "test");
    float *out = tf_malloc(sizeof(float) * B * T * D, "test");
    const int chunks[] = {4, 1, 1, 5};
    double err_rope = 0.0, err_att = 0.0, err_v = 0.0;
    int pos = 0;
    for (int c = 0; c < 4; c++) {
        int n = chunks[c];
        for (int b = 0; b < B; b++) /* gather the chunk's rows: (B, n, D), q then k */
            for (int t = 0; t < n; t++) {
                memcpy(row(cq, b, t, n, D), row(q, b, pos + t, T, D), sizeof(float) * D);
                memcpy(row(cq + B * n * D, b, t, n, D), row(k, b, pos + t, T, D), sizeof(float) * D);
                memcpy(row(cv, b, t, n, D), row(v, b, pos + t, T, D), sizeof(float) * D);
            }
        DecodeAttnArgs a = {.out = out, .q = cq, .k = cq + B * n * D, .v = cv, .k_cache = kc,
                            .v_cache = vc, .pos = &pos, .B = B, .T = n, .T_max = TMAX, .H = H,
                            .hd = HD, .rot = ROT, .at_start = n > 1 && pos == 0};
        o->attention_decode(o, &a);
        for (int b = 0; b < B; b++) /* q rotated in place, k rotated into the cache */
            for (int t = 0; t < n; t++)
                for (int i = 0; i < D; i++) {
                    err_rope = worse(err_rope, row(cq, b, t, n, D)[i], row(qk, b, pos + t, T, D)[i]);
                    err_rope = worse(err_rope, kc[((size_t)b * TMAX + pos + t) * D + i],
                                     row(qk + B * T * D, b, pos + t, T, D)[i]);
                    err_v = worse(err_v, vc[((size_t)b * TMAX + pos + t) * D + i],
                                  row(v, b, pos + t, T, D)[i]);
                }
        for (int b = 0; b < B; b++)
            for (int t = 0; t < n; t++)
                for (int i = 0; i < D; i++)
                    err_att = worse(err_att, row(out, b, t, n, D)[i], row(full, b, pos + t, T, D)[i]);
        pos += n;
    }
    check_err("decode_rope_vs_rope", "max err", err_rope, 1e-6);
    check_err("decode_v_cache_rows", "max err", err_v, 0.0);
    check_err("attention_decode_vs_forward", "max err", err_att, 1e-5);
    free(q), free(k), free(v), free(qk), free(att), free(full), free(kc), free(vc), free(cq), free(cv), free(out);
}

/* The sampler's logits, step by step, against model_forward over the tokens
 * the cache should hold: everything since the last restart, a restart
 * keeping the last block_size / 2 tokens when the window is full (block 2:
 * one token, fed like any single token, from the position the restart
 * set, not the one the last draw left on the device). */
static void test_sampler_window(int block_size, int warm_up) {
    const Ops *o = ops_cpu();
    ModelConfig mc = preset_find("tiny")->model;
    mc.n_layer = 2, mc.d_model = 32, mc.n_head = 2, mc.n_attn = 24, mc.n_ffn = 40;
    mc.block_size = block_size, mc.vocab_size = 17, mc.dropout = 0.0f;
    char err[TF_ERRLEN];
    Model m;
    if (model_create(&m, &mc, NULL, o, err)) tf_die("%s", err);
    model_init_weights(&m, 3);
    enum { B = 2, NEW = 40, L = 3 };
    int prompt[L] = {1, 5, 9};
    Sampler s;
    SamplerConfig sc = {1.0f, 0, 11, 1, 0, 0, warm_up};
    if (sampler_init(&s, &m, B, prompt, L, NEW, &sc, err)) tf_die("%s", err);
    int block = mc.block_size, V = mc.vocab_size, keep = block / 2;
    float *ref = tf_malloc(sizeof(float) * B * V, "test");
    float *got = tf_malloc(sizeof(float) * B * V, "test");
    int *win = tf_malloc(sizeof(int) * B * block, "test");
    int next[B];
    double worst = 0.0;
    int start = 0, cached = 0, restarts = 0;
    for (int i = 0; i < NEW; i++) {
        size_t len = s.len;
        int fresh = i == 0 ? L : 1;
        if (cached + fresh > block) { /* a prompt keeps a whole window, a full cache half */
            int kept = cached == 0 ? block : keep;
            kept = kept < (int)len ? kept : (int)len;
            start = (int)len - kept;
            cached = kept;
            restarts++;
        } else {
            cached += fresh;
        }
        sampler_step(&s, next);
        model_logits_last(&m, got);
        int T = (int)len - start;
        for (int b = 0; b < B; b++) memcpy(win + b * T, s.hist + b * s.cap + start, sizeof(int) * T);
        model_forward(&m, win, NULL, B, T, 0, 0);
        model_logits_last(&m, ref);
        for (int j = 0; j < B * V; j++) worst = worse(worst, ref[j], got[j]);
    }
    char name[64];
    snprintf(name, sizeof name, "sampler_window_logits_block%d%s", block_size,
             warm_up ? "_warm_up" : "");
    check_err(name, "max err", restarts >= 2 ? worst : INFINITY, 1e-4);
    if (keep > 1) { /* every restart's chunk went through decode_step, the warm-up's two too */
        snprintf(name, sizeof name, "sampler_restart_chunks_block%d%s", block_size,
                 warm_up ? "_warm_up" : "");
        check(s.kv.restart.eager_runs == restarts + 2 * warm_up, name,
              "restart chunks through decode_step %d, restarts %d", s.kv.restart.eager_runs, restarts);
    }
    free(ref);
    free(got);
    free(win);
    sampler_free(&s);
    model_free(&m);
}

int main(void) {
    test_ops();
    test_sampler_window(12, 0);
    test_sampler_window(12, 1);
    test_sampler_window(2, 1);
    return check_exit("test_decode");
}
