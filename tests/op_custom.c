/* The cases of tests/op_cases.c that run themselves: they check what is no
 * forward/backward comparison (memory, recordings, the bf16 weights mirror)
 * or more than one op (the whole model's gradient). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common.h"
#include "config.h"
#include "model.h"
#include "op_cases.h"
#include "sampler.h"

/* ---------------------------------------------------------------- memory */

static void memory_round_trips(const Ops *T, OpHarness *h) {
    size_t n = 1001;
    float *g = T->alloc(T, n * sizeof(float)), *g2 = T->alloc(T, n * sizeof(float));
    float *back = op_xmalloc(n * sizeof(float)), *src = op_xmalloc(n * sizeof(float));
    T->to_host(T, back, g, n * sizeof(float));
    int zero = 1;
    for (size_t i = 0; i < n; i++) zero &= back[i] == 0.0f;
    check(zero, "alloc_zero_filled", "fresh allocation not zero");
    for (size_t i = 0; i < n; i++) src[i] = op_rand(h, 3.0f);
    T->to_device(T, g, src, n * sizeof(float));
    T->copy(T, g2, g, n * sizeof(float));
    T->synchronize(T);
    T->to_host(T, back, g2, n * sizeof(float));
    check(memcmp(back, src, n * sizeof(float)) == 0, "to_device_copy_to_host", "round trip changed data");
    T->zero(T, g2 + 10, 100 * sizeof(float));
    T->to_host(T, back, g2, n * sizeof(float));
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= (i >= 10 && i < 110) ? back[i] == 0.0f : back[i] == src[i];
    check(ok, "zero_range", "zero wrote outside or missed its range");
    T->free(T, g);
    T->free(T, g2);
    free(back);
    free(src);
}

/* Copies started and waited for later: each holds the memory as it was
 * when it was started (a zero queued after it does not reach it), the
 * most that may be in flight at once, twice round the backend's slots
 * (waited for in order, then newest first), each a different size. */
static void memory_started_copies(const Ops *T, OpHarness *h) {
    enum { ROUNDS = 2 * OPS_COPIES_IN_FLIGHT, N = 300 };
    float *g = T->alloc(T, N * sizeof(float));
    float *src = op_xmalloc(N * sizeof(float)), *back = op_xmalloc(OPS_COPIES_IN_FLIGHT * N * sizeof(float));
    for (int i = 0; i < N; i++) src[i] = op_rand(h, 3.0f);
    int ok = 1, ticket[OPS_COPIES_IN_FLIGHT];
    for (int r = 0; r < ROUNDS; r += OPS_COPIES_IN_FLIGHT) {
        for (int k = 0; k < OPS_COPIES_IN_FLIGHT; k++) {
            T->to_device(T, g, src, N * sizeof(float));
            size_t n = (size_t)(N - 37 * k - r);
            ticket[k] = T->to_host_start(T, back + (size_t)k * N, g, n * sizeof(float));
            T->zero(T, g, N * sizeof(float));
        }
        for (int j = 0; j < OPS_COPIES_IN_FLIGHT; j++) {
            int k = r ? OPS_COPIES_IN_FLIGHT - 1 - j : j; /* the second round waits newest first */
            T->to_host_wait(T, ticket[k]);
            ok &= memcmp(back + (size_t)k * N, src, (size_t)(N - 37 * k - r) * sizeof(float)) == 0;
        }
    }
    check(ok, "to_host_start_holds_the_memory_of_its_start", "a started copy saw later writes or lost data");
    T->free(T, g);
    free(back);
    free(src);
}

static void memory_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT];
    memory_round_trips(T, h);
    memory_started_copies(T, h);
    void *huge = T->alloc(T, (size_t)1 << 50); /* 1 PiB */
    check(huge == NULL, "alloc_oom_returns_null", "1 PiB allocation did not return NULL");
    if (huge) T->free(T, huge);
    float *small = T->alloc(T, 16); /* the backend still works after a failed allocation */
    check(small != NULL, "alloc_after_oom", "allocation failed after an OOM");
    if (small) T->free(T, small);
}

const OpKind K_MEMORY = {.name = "memory",
                         .entries = "alloc free to_device to_host to_host_start to_host_wait copy zero synchronize",
                         .custom = memory_case};

/* ---------------------------------------------------------------- recorded decoding */

enum { RD_Q, RD_K, RD_V, RD_OUT, RD_KC, RD_VC, RD_POS };

static DecodeAttnArgs recorded_args(CaseRun *r, int s, int B, int T_max, int H, int hd, int rot) {
    return (DecodeAttnArgs){.out = op_f(r, s, r->at[RD_OUT]), .q = op_f(r, s, r->at[RD_Q]),
                            .k = op_f(r, s, r->at[RD_K]), .v = op_f(r, s, r->at[RD_V]),
                            .k_cache = op_f(r, s, r->at[RD_KC]), .v_cache = op_f(r, s, r->at[RD_VC]),
                            .pos = op_i(r, s, r->at[RD_POS]), .B = B, .T = 1, .T_max = T_max,
                            .H = H, .hd = hd, .rot = rot};
}

/* Replays of the recorded step at `at` positions, new q, k, v each time,
 * against the CPU op by op. */
static void replay_at_positions(CaseRun *r, void *step, DecodeAttnArgs *ac) {
    const Ops *T = op_ops(r, SIDE_TGT), *C = op_ops(r, SIDE_REF);
    const int at[] = {7, 8, 30, 47};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        for (int j = RD_Q; j <= RD_V; j++) op_refill(r, r->at[j]);
        *op_i(r, SIDE_REF, r->at[RD_POS]) = at[i];
        T->to_device(T, op_i(r, SIDE_TGT, r->at[RD_POS]), &at[i], sizeof(int));
        check(T->replay(T, step) == 0, "decode_replay_runs", "replay refused");
        C->attention_decode(C, ac);
        static const char *what[4] = {"out", "q", "kcache", "vcache"};
        const int slot[4] = {RD_OUT, RD_Q, RD_KC, RD_VC};
        for (int j = 0; j < 4; j++) {
            char name[64];
            snprintf(name, sizeof name, "decode_replay_%s_pos%d", what[j], at[i]);
            check_err(name, "rel err", op_err(r, r->at[slot[j]]), OP_TOL_FP32);
        }
    }
}

/* A single-token attention_decode recorded once, then replayed at other
 * positions with new q, k, v each time: the replays read the position and
 * the inputs anew, as the CPU computes them op by op. A stale recording (a
 * buffer it reads moved) refuses to run. */
static void decode_recorded_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT], *C = h->side[SIDE_REF];
    if (!T->record_begin) {
        check_skip("decode_recorded", "the %s backend records nothing", T->name);
        return;
    }
    const int B = 2, H = 4, hd = 32, d = H * hd, T_max = 48, rot = 8;
    CaseRun r = op_run_new(h, c, MODE_BACKEND);
    const char *names[6] = {"q", "k", "v", "out", "kc", "vc"};
    for (int i = RD_Q; i <= RD_VC; i++)
        r.at[i] = i == RD_OUT ? op_out(&r, names[i], (size_t)B * d, 0, 0)
                              : op_in(&r, names[i], (size_t)(i >= RD_KC ? B * T_max : B) * d, 1.0f, 0);
    r.at[RD_POS] = op_ints(&r, "pos", 1);
    op_alloc(&r);
    DecodeAttnArgs ag = recorded_args(&r, SIDE_TGT, B, T_max, H, hd, rot);
    DecodeAttnArgs ac = recorded_args(&r, SIDE_REF, B, T_max, H, hd, rot);
    T->attention_decode(T, &ag); /* once op by op (the RoPE table), as the model does */
    C->attention_decode(C, &ac);
    void *step = NULL;
    if (check(T->record_begin(T) == 0, "decode_record_begin", "recording refused")) {
        T->attention_decode(T, &ag);
        step = T->record_end(T);
        check(step != NULL, "decode_recorded_step_exists", "record_end returned NULL");
    }
    if (step) {
        replay_at_positions(&r, step, &ac);
        /* a longer rotation moves the RoPE table the step reads: it must refuse */
        const int long_T = 1 << 14;
        float *x = T->alloc(T, (size_t)long_T * hd * sizeof(float));
        T->rope(T, x, 1, long_T, 1, hd, rot, 0);
        check(T->replay(T, step) != 0, "decode_replay_refuses_when_stale",
              "replayed with a moved RoPE table");
        T->free(T, x);
        T->record_free(T, step);
    }
    op_free(&r);
}

const OpKind K_DECODE_RECORDED = {.name = "decode_recorded",
                                  .entries = "record_begin record_end replay record_free attention_decode",
                                  .custom = decode_recorded_case};

/* ---------------------------------------------------------------- the sampler's recorded step */

/* The sampler cases' model: small, a window of 12 so that 30 new tokens
 * restart the cache twice. */
static ModelConfig sampler_case_config(int arch) {
    ModelConfig mc = preset_find("tiny")->model;
    mc.arch = arch;
    mc.n_layer = 2, mc.d_model = 64, mc.n_head = 2, mc.n_attn = 48, mc.n_ffn = 80;
    mc.block_size = 12, mc.vocab_size = 17, mc.dropout = 0.0f;
    model_config_apply_arch_defaults(&mc, 1, 0);
    return mc;
}

/* The sampler on the target with its recorded single-token step and
 * window restart chunk (recorded in the warm-up) against the same sampler
 * op by op (--no-graph): the same draws, so the same tokens, and logits
 * that agree at every step, through four window restarts (a prefill
 * between replays, which may move workspaces the recordings read). a[0]:
 * the arch. */
static void sampler_recorded_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT];
    char err[TF_ERRLEN], tag[64], name[128];
    snprintf(tag, sizeof tag, "%s_%s", arch_name(c->a[0]), matmul_precision_name(c->prec));
    if (!T->record_begin) {
        snprintf(name, sizeof name, "sampler_recorded_%s", tag);
        check_skip(name, "the %s backend records nothing", T->name);
        return;
    }
    ModelConfig mc = sampler_case_config(c->a[0]);
    enum { B = 3, NEW = 30, L = 3 };
    const int prompt[L] = {1, 5, 9};
    Model m;
    Sampler s[2];
    if (model_create(&m, &mc, NULL, T, err) || model_set_precision(&m, c->prec, err)) tf_die("%s", err);
    model_init_weights(&m, 5);
    for (int i = 0; i < 2; i++) {
        SamplerConfig sc = {1.0f, 0, 11, 1, i, 0, 1};
        if (sampler_init(&s[i], &m, B, prompt, L, NEW, &sc, err)) tf_die("%s", err);
    }
    int V = mc.vocab_size, next[2][B], same_tokens = 1;
    float *logits = op_xmalloc(sizeof(float) * B * V * 2), *recorded = logits + B * V;
    double worst = 0.0;
    for (int step = 0; step < NEW; step++) {
        sampler_step(&s[1], next[1]); /* op by op first: s[0]'s step then runs last */
        model_logits_last(&m, logits);
        sampler_step(&s[0], next[0]);
        model_logits_last(&m, recorded);
        for (int j = 0; j < B * V; j++) {
            double e = fabs(logits[j] - recorded[j]);
            worst = isnan(e) ? INFINITY : e > worst ? e : worst;
        }
        same_tokens &= memcmp(next[0], next[1], sizeof next[0]) == 0;
    }
    snprintf(name, sizeof name, "sampler_recorded_step_used_%s", tag);
    check(s[0].kv.step.recording != NULL && s[1].kv.step.recording == NULL, name, "no recorded step");
    snprintf(name, sizeof name, "sampler_recorded_restart_used_%s", tag);
    check(s[0].kv.restart.recording != NULL && s[1].kv.restart.recording == NULL &&
              s[0].kv.restart.eager_runs == 1,
          name, "restart chunk: recording %p, %d op by op", s[0].kv.restart.recording,
          s[0].kv.restart.eager_runs);
    snprintf(name, sizeof name, "sampler_recorded_vs_op_by_op_logits_%s", tag);
    check_err(name, "max abs err", worst, 1e-5);
    snprintf(name, sizeof name, "sampler_recorded_vs_op_by_op_tokens_%s", tag);
    check(same_tokens, name, "the streams differ");
    free(logits);
    for (int i = 0; i < 2; i++) sampler_free(&s[i]);
    model_free(&m);
    T->set_precision(T, MATMUL_FP32);
}

const OpKind K_SAMPLER_RECORDED = {.name = "sampler_recorded", .entries = "decode_step decode_step_free",
                                   .custom = sampler_recorded_case};

/* A sampler that starts each step before reading the last one's tokens
 * (cfg.lookahead) against one that does not, on two copies of one model:
 * the same tokens at every step, through two window restarts (where it
 * may not run ahead), and ahead of the host in most steps. a[0]: the arch. */
static void sampler_lookahead_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT];
    char err[TF_ERRLEN], name[128];
    ModelConfig mc = sampler_case_config(c->a[0]);
    enum { B = 3, NEW = 30, L = 3 };
    const int prompt[L] = {1, 5, 9};
    Model m[2];
    Sampler s[2];
    for (int i = 0; i < 2; i++) {
        if (model_create(&m[i], &mc, NULL, T, err) || model_set_precision(&m[i], c->prec, err))
            tf_die("%s", err);
        model_init_weights(&m[i], 5);
        SamplerConfig sc = {1.0f, 0, 11, 1, 0, i};
        if (sampler_init(&s[i], &m[i], B, prompt, L, NEW, &sc, err)) tf_die("%s", err);
    }
    int next[2][B], same_tokens = 1, ahead = 0;
    for (int step = 0; step < NEW; step++) {
        for (int i = 0; i < 2; i++) sampler_step(&s[i], next[i]);
        same_tokens &= memcmp(next[0], next[1], sizeof next[0]) == 0;
        ahead += s[1].n_flight == 1;
    }
    snprintf(name, sizeof name, "sampler_lookahead_tokens_%s_%s", arch_name(c->a[0]),
             matmul_precision_name(c->prec));
    check(same_tokens && s[1].len == s[0].len, name, "the streams differ");
    snprintf(name, sizeof name, "sampler_lookahead_runs_ahead_%s_%s", arch_name(c->a[0]),
             matmul_precision_name(c->prec));
    check(ahead >= NEW - 6 && s[1].n_flight == 0 && s[0].n_flight == 0, name,
          "ahead in %d of %d steps, %d still in flight at the end", ahead, NEW, s[1].n_flight);
    for (int i = 0; i < 2; i++) {
        sampler_free(&s[i]);
        model_free(&m[i]);
    }
    T->set_precision(T, MATMUL_FP32);
}

const OpKind K_SAMPLER_LOOKAHEAD = {.name = "sampler_lookahead", .entries = "",
                                    .custom = sampler_lookahead_case};

/* ---------------------------------------------------------------- the bf16 weights mirror */

enum { MI_P, MI_G, MI_M, MI_V, MI_X, MI_Y, MI_A, MI_S };

#define MIRROR_ROWS 48 /* the rows of the mirror cases' Pattention (Y's size) */

/* A Pattention whose keys and values are the weights from element `at` on. */
static void mirror_forward_at(CaseRun *r, size_t at, int kn, int N, int d, int n, float *tau) {
    for (int s = 0; s < SIDES; s++) {
        const Ops *o = op_ops(r, s);
        float *P = op_f(r, s, r->at[MI_P]) + at, *S = op_f(r, s, r->at[MI_S]);
        /* Y is compared whole: rows past N, which this call leaves, must agree too */
        o->zero(o, op_f(r, s, r->at[MI_Y]), sizeof(float) * (size_t)MIRROR_ROWS * d);
        PattArgs a = {.X = {.x = op_f(r, s, r->at[MI_X])}, .K = P, .V = P + kn, .tau = tau,
                      .G = 1, .mode = PNORM_L2_GELU, .N = N, .d_in = d, .n = n, .d_out = d,
                      .A = op_f(r, s, r->at[MI_A]), .S = S, .dA = S, .Y = op_f(r, s, r->at[MI_Y])};
        o->pattention_forward(o, &a);
    }
}

static void mirror_forward(CaseRun *r, int kn, int N, int d, int n, float *tau) {
    mirror_forward_at(r, 0, kn, N, d, n, tau);
}

/* A weights block of `total` floats with AdamW's gradient and moments, and
 * a Pattention of N rows (d columns, n keys) that reads its first keys and
 * values: the mirror cases' tensors, allocated. */
static void mirror_tensors(CaseRun *r, size_t total, int N, int d, int n) {
    r->at[MI_P] = op_in(r, "P", total, 0.5f, 0);
    r->at[MI_G] = op_in(r, "G", total, 1.0f, 0);
    r->at[MI_M] = op_in(r, "M", total, 0.1f, 0);
    r->at[MI_V] = op_in(r, "V", total, 0.1f, 0);
    r->spec[r->at[MI_V]].positive = 1;
    r->at[MI_X] = op_in(r, "X", (size_t)N * d, 1.0f, 0);
    r->at[MI_Y] = op_out(r, "Y", (size_t)N * d, 0, 0);
    r->at[MI_A] = op_out(r, "A", (size_t)N * n, 0, 0);
    r->at[MI_S] = op_out(r, "S", (size_t)N * n, 0, 0); /* S: also the scratch */
    op_alloc(r);
}

/* A bf16 mirror case's run: the target at bf16, the tensors of mirror_tensors
 * for a weights block of `total` floats and the Pattention of N x d, n keys. */
static CaseRun mirror_run(OpHarness *h, const OpCase *c, size_t total, int N, int d, int n) {
    h->side[SIDE_TGT]->set_precision(h->side[SIDE_TGT], MATMUL_BF16);
    CaseRun r = op_run_new(h, c, MODE_BACKEND);
    mirror_tensors(&r, total, N, d, n);
    return r;
}

/* Under bf16, AdamW leaves a bf16 mirror of the parameters it updated that
 * the Pattentions read K and V from; two adjacent AdamW calls (decayed and
 * not, as the model makes them) extend one mirror. It must match the fp32
 * parameters and be dropped when a memory op writes them. */
static void bf16_mirror_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT];
    const int N = MIRROR_ROWS, d = 64, n = 80;
    const size_t kn = (size_t)n * d, total = 2 * kn + 10;
    float tau = sqrtf((float)n);
    CaseRun r = mirror_run(h, c, total, N, d, n);
    char name[96];
    for (int step = 1; step <= 3; step++) {
        size_t split = kn + 7; /* two adjacent calls, as model_update makes */
        for (int half = 0; half < 2; half++) {
            size_t off = half ? split : 0, cnt = half ? total - split : split;
            for (int s = 0; s < SIDES; s++) {
                const Ops *o = op_ops(&r, s);
                o->adamw(o, op_f(&r, s, r.at[MI_P]) + off, op_f(&r, s, r.at[MI_G]) + off,
                         op_f(&r, s, r.at[MI_M]) + off, op_f(&r, s, r.at[MI_V]) + off, cnt, 1e-2f,
                         0.9f, 0.95f, 1e-8f, half ? 0.0f : 0.1f, 1.0f, step);
            }
        }
        mirror_forward(&r, (int)kn, N, d, n, &tau);
        snprintf(name, sizeof name, "bf16_mirror_step%d", step);
        check_err(name, "rel err", op_err(&r, r.at[MI_Y]), OP_TOL_BF16);
    }
    op_refill(&r, r.at[MI_P]); /* new weights, uploaded */
    mirror_forward(&r, (int)kn, N, d, n, &tau);
    check_err("bf16_mirror_dropped_after_upload", "rel err", op_err(&r, r.at[MI_Y]), OP_TOL_BF16);
    T->set_precision(T, MATMUL_FP32);
    op_free(&r);
}

const OpKind K_BF16_MIRROR = {.name = "bf16_mirror", .entries = "", .custom = bf16_mirror_case};

/* adamw_ranges under bf16 (a grown model's update): ranges in memory order
 * extend the mirror as adjacent adamw calls do, also while it moves to a
 * larger buffer in the middle of a batch of ranges (a block larger than any
 * mirror before it), and a range after a gap (frozen rows) restarts it
 * without the ranges before the gap writing into it. */
static void update_ranges(CaseRun *r, size_t from, size_t to, int pieces, int step) {
    AdamwRange rg[80];
    for (int s = 0; s < SIDES; s++) {
        for (int k = 0; k < pieces; k++) {
            size_t o0 = from + (to - from) * (size_t)k / (size_t)pieces,
                   o1 = from + (to - from) * (size_t)(k + 1) / (size_t)pieces;
            rg[k] = (AdamwRange){.p = op_f(r, s, r->at[MI_P]) + o0, .g = op_f(r, s, r->at[MI_G]) + o0,
                                 .m = op_f(r, s, r->at[MI_M]) + o0, .v = op_f(r, s, r->at[MI_V]) + o0,
                                 .n = o1 - o0, .lr = 1e-2f, .weight_decay = k % 2 ? 0.0f : 0.1f, .t = step + k % 3};
        }
        op_ops(r, s)->adamw_ranges(op_ops(r, s), rg, pieces, 0.9f, 0.95f, 1e-8f, 1.0f);
    }
}

static void bf16_mirror_ranges_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT];
    const int N = MIRROR_ROWS, d = 64, n = 80;
    const size_t kn = (size_t)n * d, total = ((size_t)1 << 23) + 2 * kn, gap0 = 1000, gap1 = 2000;
    float tau = sqrtf((float)n);
    CaseRun r = mirror_run(h, c, total, N, d, n);
    char name[96];
    for (int step = 1; step <= 2; step++) {
        update_ranges(&r, 0, total, 70, step);
        mirror_forward(&r, (int)kn, N, d, n, &tau);
        snprintf(name, sizeof name, "bf16_mirror_ranges_step%d", step);
        check_err(name, "rel err", op_err(&r, r.at[MI_Y]), OP_TOL_BF16);
    }
    for (int s = 0; s < SIDES; s++) { /* one range, frozen rows, then many: one call */
        const Ops *o = op_ops(&r, s);
        AdamwRange rg[41];
        float *P = op_f(&r, s, r.at[MI_P]), *G = op_f(&r, s, r.at[MI_G]), *M = op_f(&r, s, r.at[MI_M]),
              *V = op_f(&r, s, r.at[MI_V]);
        rg[0] = (AdamwRange){.p = P, .g = G, .m = M, .v = V, .n = gap0, .lr = 1e-2f, .weight_decay = 0.1f, .t = 3};
        for (int k = 0; k < 40; k++) {
            size_t o0 = gap1 + 2 * kn * (size_t)k / 40, o1 = gap1 + 2 * kn * (size_t)(k + 1) / 40;
            rg[k + 1] = (AdamwRange){.p = P + o0, .g = G + o0, .m = M + o0, .v = V + o0, .n = o1 - o0,
                                     .lr = 1e-2f, .weight_decay = 0.1f, .t = 3};
        }
        o->adamw_ranges(o, rg, 41, 0.9f, 0.95f, 1e-8f, 1.0f);
    }
    mirror_forward_at(&r, gap1, (int)kn, N, d, n, &tau);
    check_err("bf16_mirror_ranges_restarted_after_a_gap", "rel err", op_err(&r, r.at[MI_Y]), OP_TOL_BF16);
    T->set_precision(T, MATMUL_FP32);
    op_free(&r);
}

const OpKind K_BF16_MIRROR_RANGES = {.name = "bf16_mirror_ranges", .entries = "",
                                     .custom = bf16_mirror_ranges_case};

/* ---------------------------------------------------------------- cache_weights */

/* cache_weights under bf16 (what the sampler calls before decoding a model
 * no AdamW ran on): the bf16 copy of a weights block is made by the call
 * (the GPU holds at least a byte more per weight after it) and only once
 * (a second call takes no such memory again); the Pattentions, one row
 * (the decoding kernels) or many (the GEMMs), read it and match the CPU;
 * an upload of new weights drops it (results follow the new weights), and
 * AdamW's own mirror takes over after an update. */
static void cache_weights_forwards(CaseRun *r, int kn, int d, int n, float *tau, const char *when) {
    const int rows[2] = {1, MIRROR_ROWS};
    char name[96];
    for (int i = 0; i < 2; i++) {
        mirror_forward(r, kn, rows[i], d, n, tau);
        snprintf(name, sizeof name, "cache_weights_%s_N%d", when, rows[i]);
        check_err(name, "rel err", op_err(r, r->at[MI_Y]), OP_TOL_BF16);
    }
}

static void cache_weights_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT];
    const int N = MIRROR_ROWS, d = 64, n = 80;
    const size_t kn = (size_t)n * d, total = (size_t)1 << 22; /* 16 MB of fp32: a visible copy */
    float tau = sqrtf((float)n);
    T->set_precision(T, MATMUL_BF16);
    CaseRun r = op_run_new(h, c, MODE_BACKEND);
    mirror_tensors(&r, total, N, d, n);
    float *P = op_f(&r, SIDE_TGT, r.at[MI_P]);
    for (int s = 0; s < SIDES; s++) op_ops(&r, s)->synchronize(op_ops(&r, s));
    size_t before = T->memory_in_use(T);
    T->cache_weights(T, P, total);
    T->synchronize(T);
    size_t once = T->memory_in_use(T);
    T->cache_weights(T, P, total);
    T->synchronize(T);
    size_t twice = T->memory_in_use(T);
    if (ops_is_cpu(T)) {
        check_skip("cache_weights_copy_made", "the CPU keeps no copy");
    } else {
        check(once >= before + total, "cache_weights_copy_made",
              "device memory grew by %zu bytes for %zu weights", once - before, total);
        check(twice < once + total, "cache_weights_copy_made_once",
              "a second call took %zu bytes more", twice - once);
    }
    cache_weights_forwards(&r, (int)kn, d, n, &tau, "cached");
    op_refill(&r, r.at[MI_P]); /* new weights, uploaded: the copy is stale */
    cache_weights_forwards(&r, (int)kn, d, n, &tau, "after_upload");
    T->cache_weights(T, P, total);
    cache_weights_forwards(&r, (int)kn, d, n, &tau, "cached_again");
    for (int s = 0; s < SIDES; s++) {
        const Ops *o = op_ops(&r, s);
        o->adamw(o, op_f(&r, s, r.at[MI_P]), op_f(&r, s, r.at[MI_G]), op_f(&r, s, r.at[MI_M]),
                 op_f(&r, s, r.at[MI_V]), total, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1);
    }
    cache_weights_forwards(&r, (int)kn, d, n, &tau, "after_adamw");
    T->set_precision(T, MATMUL_FP32);
    op_free(&r);
}

const OpKind K_CACHE_WEIGHTS = {.name = "cache_weights", .entries = "cache_weights",
                                .custom = cache_weights_case};

/* ---------------------------------------------------------------- set_gemm_tuning */

/* A bf16 Pattention (its GEMMs: rows past the decoding kernels') with the
 * kernel choice by timing off, as the sampler runs, and on again: both
 * match the CPU. On CUDA the first runs cublasGemmEx, the second the tuned
 * kernel (TF_GEMM_TUNE in the environment overrides both). */
static void gemm_tuning_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT];
    const int N = MIRROR_ROWS, d = 64, n = 80;
    float tau = sqrtf((float)n);
    CaseRun r = mirror_run(h, c, 2 * (size_t)n * d, N, d, n);
    for (int on = 0; on <= 1; on++) {
        T->set_gemm_tuning(T, on);
        mirror_forward(&r, n * d, N, d, n, &tau);
        check_err(on ? "gemm_tuning_on" : "gemm_tuning_off", "rel err", op_err(&r, r.at[MI_Y]),
                  OP_TOL_BF16);
    }
    T->set_precision(T, MATMUL_FP32);
    op_free(&r);
}

const OpKind K_GEMM_TUNING = {.name = "gemm_tuning", .entries = "set_gemm_tuning",
                              .custom = gemm_tuning_case};

/* ---------------------------------------------------------------- decoding against the CPU */

/* The target's table with cache_weights counted: what the sampler asks for. */
static const Ops *g_counted_inner;
static int g_cache_calls;
static const float *g_cache_p;
static size_t g_cache_n;
static void counted_cache_weights(const Ops *ops, const float *p, size_t n) {
    g_cache_calls++;
    g_cache_p = p;
    g_cache_n = n;
    g_counted_inner->cache_weights(g_counted_inner, p, n);
}

/* The sampler with the KV cache on the target at the case's precision (bf16:
 * the weights copy of cache_weights, the few-rows Pattentions on bf16
 * tensors, the recorded step) against the same sampler on the CPU (fp32),
 * both fed the CPU's tokens, through two window restarts: the logits of
 * every step within tol (max abs err / max |logit|: 1e-4 in fp32; under
 * bf16 5e-2, the tolerance of one bf16 op over two layers and the head; a
 * kernel that is wrong errs by the logits' size) of the CPU's, and, while the
 * window has not moved, of the target's own no-cache path (its GEMMs on the
 * whole window). The sampler
 * asks once for the copy of every parameter. a[0]: streams (1 and 3: the
 * one-row and the several-row kernels). */
static void sampler_vs_cpu_case(OpHarness *h, const OpCase *c) {
    const Ops *T = h->side[SIDE_TGT], *C = h->side[SIDE_REF];
    char err[TF_ERRLEN], name[128], tag[64];
    const int B = c->a[0];
    snprintf(tag, sizeof tag, "%s_B%d", matmul_precision_name(c->prec), B);
    Ops counted = *T;
    g_counted_inner = T;
    g_cache_calls = 0;
    counted.cache_weights = counted_cache_weights;
    ModelConfig mc = sampler_case_config(ARCH_TOKENFORMER);
    enum { NEW = 30, L = 3, REF = 0, CACHED = 1, WINDOW = 2, MAX_B = 8 };
    const int prompt[L] = {1, 5, 9};
    if (B > MAX_B) tf_die("internal: sampler_vs_cpu takes up to %d streams", MAX_B);
    Model m[2]; /* the CPU's; the target's, which both target samplers share */
    Sampler s[3];
    for (int i = 0; i < 2; i++) {
        if (model_create(&m[i], &mc, NULL, i == REF ? C : &counted, err) ||
            model_set_precision(&m[i], i == REF ? MATMUL_FP32 : c->prec, err))
            tf_die("%s", err);
        model_init_weights(&m[i], 5);
    }
    for (int i = 0; i < 3; i++) {
        SamplerConfig sc = {1.0f, 0, 11, i != WINDOW, 0, 0};
        if (sampler_init(&s[i], &m[i == REF ? 0 : 1], B, prompt, L, NEW, &sc, err))
            tf_die("%s", err);
    }
    snprintf(name, sizeof name, "sampler_caches_the_weights_%s", tag);
    check(g_cache_calls == 2 && g_cache_p == m[1].param_mem && g_cache_n == m[1].n_param_elems,
          name, "%d calls, the last for %zu weights", g_cache_calls, g_cache_n);
    const int V = mc.vocab_size;
    int next[MAX_B], drawn[MAX_B];
    float *logits = op_xmalloc(sizeof(float) * B * V * 3);
    double worst_ref = 0.0, worst_window = 0.0;
    for (int step = 0; step < NEW; step++) {
        const int same_window = s[CACHED].len <= (size_t)mc.block_size;
        for (int i = 0; i < 3; i++) {
            sampler_step(&s[i], i == REF ? drawn : next);
            model_logits_last(&m[i == REF ? 0 : 1], logits + (size_t)i * B * V);
        }
        const float *ref = logits, *cached = ref + B * V, *window = cached + B * V;
        worst_ref = fmax(worst_ref, rel_err(cached, ref, (size_t)B * V));
        if (same_window) worst_window = fmax(worst_window, rel_err(cached, window, (size_t)B * V));
        for (int i = CACHED; i <= WINDOW; i++) sampler_set_last(&s[i], drawn); /* the CPU's draws */
    }
    free(logits);
    const double tol = c->prec == MATMUL_BF16 ? 5e-2 : 1e-4;
    snprintf(name, sizeof name, "sampler_cached_vs_cpu_logits_%s", tag);
    check_err(name, "rel err", worst_ref, tol);
    snprintf(name, sizeof name, "sampler_cached_vs_no_cache_logits_%s", tag);
    check_err(name, "rel err", worst_window, tol);
    if (T->record_begin) {
        snprintf(name, sizeof name, "sampler_vs_cpu_recorded_step_used_%s", tag);
        check(s[CACHED].kv.step.recording != NULL, name, "no recorded step");
    }
    for (int i = 0; i < 3; i++) sampler_free(&s[i]);
    for (int i = 0; i < 2; i++) model_free(&m[i]);
    T->set_precision(T, MATMUL_FP32);
}

const OpKind K_SAMPLER_VS_CPU = {.name = "sampler_vs_cpu", .entries = "",
                                 .custom = sampler_vs_cpu_case};

/* ---------------------------------------------------------------- sampling on the backend */

/* sample_tokens on the target against the CPU (ops_sample_row) on the same
 * logits and uniforms: the same token in every row, at temperature 0 (ties:
 * the first largest), with and without top-k (ties at the cutoff), rows a
 * stride apart (a chunk's last positions), uniforms 0 and near 1 among
 * them; the tokens in range and the position written. a: B V stride
 * top_k; f[0]: the temperature. The logits are multiples of 1/8 in +-3:
 * many ties. */
static void sample_case(OpHarness *h, const OpCase *c) {
    enum { MAX_B = 64 };
    const int B = c->a[0], V = c->a[1], stride = c->a[2], top_k = c->a[3];
    const float temperature = c->f[0];
    char name[96];
    snprintf(name, sizeof name, "sample_tokens_B%d_V%d_stride%d_topk%d_t%g", B, V, stride, top_k,
             temperature);
    if (B > MAX_B) tf_die("internal: sample case of %d rows", B);
    const size_t n = (size_t)(B - 1) * stride + V;
    float *logits = op_xmalloc(n * sizeof(float));
    double u[MAX_B];
    for (size_t i = 0; i < n; i++) logits[i] = roundf(op_rand(h, 24.0f)) / 8.0f;
    for (int b = 0; b < B; b++) u[b] = (op_rand(h, 1.0f) + 1.0f) / 2.0f;
    u[0] = 0.0;
    u[B - 1] = 1.0 - 1e-9;
    int got[SIDES][MAX_B], pos[SIDES];
    for (int s = 0; s < SIDES; s++) {
        const Ops *o = h->side[s];
        float *dl = o->alloc(o, n * sizeof(float));
        double *du = o->alloc(o, sizeof u);
        int *dt = o->alloc(o, (MAX_B + 1) * sizeof(int));
        if (!dl || !du || !dt) tf_die("out of memory in the sample case");
        o->to_device(o, dl, logits, n * sizeof(float));
        o->to_device(o, du, u, sizeof u);
        SampleArgs a = {.tokens = dt + 1, .logits = dl, .u = du, .B = B, .V = V,
                        .stride = stride, .temperature = temperature, .top_k = top_k,
                        .pos = dt, .pos_value = 1234};
        o->sample_tokens(o, &a);
        o->to_host(o, got[s], dt + 1, (size_t)B * sizeof(int));
        o->to_host(o, &pos[s], dt, sizeof(int));
        o->free(o, dl);
        o->free(o, du);
        o->free(o, dt);
    }
    int bad = -1, differ = 0;
    for (int b = B - 1; b >= 0; b--) {
        if (got[SIDE_TGT][b] != got[SIDE_REF][b] || got[SIDE_TGT][b] < 0 || got[SIDE_TGT][b] >= V)
            bad = b;
        differ |= got[SIDE_REF][b] != got[SIDE_REF][0];
    }
    check(bad < 0, name, "row %d: %d on %s, %d on the cpu", bad, bad < 0 ? 0 : got[SIDE_TGT][bad],
          h->side[SIDE_TGT]->name, bad < 0 ? 0 : got[SIDE_REF][bad]);
    snprintf(name + strlen(name), sizeof name - strlen(name), "_pos");
    check(pos[SIDE_TGT] == 1234, name, "position %d written, not 1234", pos[SIDE_TGT]);
    if (temperature > 0.0f && top_k != 1 && B > 2) { /* the draws do spread */
        snprintf(name + strlen(name) - 4, sizeof name - strlen(name) + 4, "_spread");
        check(differ, name, "every row drew token %d", got[SIDE_REF][0]);
    }
    free(logits);
}

const OpKind K_SAMPLE = {.name = "sample_tokens", .entries = "sample_tokens",
                         .custom = sample_case};

/* ---------------------------------------------------------------- the whole model */

typedef struct {
    Model *m;
    int *tok, *tgt;
    int B, T;
} ModelLoss;

static double model_loss(const ModelLoss *c) {
    return model_forward(c->m, c->tok, c->tgt, c->B, c->T, 1, 1234);
}

static double model_loss_of(void *ml) { return model_loss(ml); }

/* Central differences (h 1e-2) of the loss at `probes` coordinates of one parameter. */
static void check_param(const OpCase *c, ModelLoss *ml, const char *name, float *x, const float *g, size_t n) {
    check_err(name, "max rel err", check_grad_error(x, g, n, (size_t)c->probes, 1e-2f, model_loss_of, ml), c->tol);
}

/* a: arch pnorm; f: dropout, rope fraction. Every parameter's gradient. */
static void model_case(OpHarness *h, const OpCase *c) {
    const int arch = c->a[0], pnorm = c->a[1];
    const float dropout = c->f[0], rope_frac = c->f[1];
    ModelConfig cfg = {.arch = arch, .n_layer = 2, .d_model = 16, .n_head = 2, .n_attn = 12,
                       .n_ffn = 20, .block_size = 8, .vocab_size = 11, .rope_frac = rope_frac,
                       .dropout = dropout, .pnorm = pnorm};
    Model m;
    char err[512];
    if (model_create(&m, &cfg, NULL, h->side[SIDE_REF], err) || model_alloc_activations(&m, 3, 8, err)) {
        check(0, "gradcheck model setup", "%s", err);
        return;
    }
    model_init_weights(&m, 7);
    /* larger values than the init, so that every path carries gradient */
    for (size_t i = 0; i < m.n_param_elems; i++) m.param_mem[i] += 0.3f * rng_normal(&h->rng);
    int tok[24], tgt[24];
    for (int i = 0; i < 24; i++) {
        tok[i] = (int)rng_below(&h->rng, 11);
        tgt[i] = (int)rng_below(&h->rng, 11);
    }
    ModelLoss ml = {&m, tok, tgt, 3, 8};
    model_loss(&ml);
    model_zero_grad(&m);
    model_backward(&m);
    float *grad = op_xmalloc(m.n_param_elems * 4);
    memcpy(grad, m.grad_mem, m.n_param_elems * 4);
    for (int i = 0; i < m.n_params; i++) {
        Param *p = &m.params[i];
        char name[128];
        snprintf(name, sizeof name, "gradcheck model %s%s%s (%s, dropout %.1f, rope %.2f)",
                 arch ? arch_name(arch) : "", arch ? " " : "", p->t.name,
                 arch ? "-" : pnorm_name(pnorm), dropout, rope_frac);
        float *x = tensor_f32(&p->t);
        check_param(c, &ml, name, x, grad + (x - m.param_mem), tensor_numel(&p->t));
    }
    free(grad);
    model_free(&m);
}

static void model_label(const OpCase *c, char *b, size_t n) {
    snprintf(b, n, "%s_%s_dropout%.1f_rope%.2f", arch_name(c->a[0]),
             c->a[0] == ARCH_TOKENFORMER ? pnorm_name(c->a[1]) : "-", c->f[0], c->f[1]);
}

const OpKind K_MODEL = {.name = "model", .entries = "", .label = model_label, .custom = model_case};
