/* tokenformer bench: training throughput on random tokens, no data or
 * checkpoints involved (compare with scripts/bench_torch.py); with --sample,
 * decoding speed (compare with scripts/bench_decode_torch.py). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapters.h"
#include "checkpoint.h"
#include "cli.h"
#include "command_setup.h"
#include "common.h"
#include "model.h"
#include "profile.h"
#include "rng.h"
#include "sampler.h"

/* CPU seconds of every thread of the process: on a shared machine the wall
 * clock counts the other jobs' time too, this counts only ours. */
static double process_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define BENCH_COMMON_FLAGS (COMMON_RUN_FLAGS | COMMON_TF32) /* --seed: a training flag */

static void bench_help(void) {
    printf("usage: tokenformer bench [--preset P] [options]\n"
           "\n"
           "Time full training steps (forward, backward, clip, AdamW) of a preset's model\n"
           "on random tokens (vocab 65) and print one JSON line with tokens/s and ms/step\n"
           "(and cpu_ms_per_step: the process's CPU time, all threads, per step).\n"
           "\n"
           "options:\n"
           "  --preset P             tiny (default), shakespeare or gpt2-124m\n"
           "  --arch A               tokenformer (default), transformer or transformerpp\n"
           "  --ckpt F               time the model of checkpoint F instead of a preset's\n"
           "                         (its shapes and row segments, e.g. a grown model;\n"
           "                         random tokens of its vocabulary)\n"
           "  --freeze-old           with --ckpt: freeze it as 'train --resume --freeze-old'\n"
           "                         does (only what the latest grow added trains, the\n"
           "                         rest has no gradients computed and no Adam moments)\n"
           "  --steps N              timed steps (default 20)\n"
           "  --warmup N             untimed steps first (default 3)\n"
           "  --profile              also time every op (synchronizing around each call)\n"
           "                         and print a table of where the step's time goes, with\n"
           "                         the share of the step's wall time the ops account for\n"
           "  --sample               time sampling instead (the model of 'sample', random\n"
           "                         weights): chars/s summed over streams, time to the\n"
           "                         first character\n"
           "  --num-samples N        with --sample: streams decoded as one batch (default 1)\n"
           "  --prompt-len N         with --sample: prompt tokens (default 1)\n"
           "  --max-new-tokens N     with --sample: characters per stream (default 500)\n"
           "  --no-cache             with --sample: without the KV cache (the old path)\n"
           "  --no-graph             with --sample: decode op by op, not by replaying the\n"
           "                         recorded (CUDA graph) single-token step\n"
           "  --no-lookahead         with --sample: read each step's characters before\n"
           "                         starting the next (as the tests do)\n");
    common_print_help(BENCH_COMMON_FLAGS, NULL);
    printf("plus every model/training flag of 'tokenformer train --help' (e.g. --batch-size).\n");
}

typedef struct {
    int enabled, streams, prompt_len, max_new, use_cache, no_graph, no_lookahead;
} DecodeBench;

/* The SLOWEST_STEPS longest steps after the first, as a JSON list of [step,
 * ms] pairs, longest first: where a run's one-time costs (a cache restart's
 * first prefill, a kernel's first load) fall. */
#define SLOWEST_STEPS 3
static void format_slowest_steps(char *out, size_t cap, const double *step_s, int n) {
    int pick[SLOWEST_STEPS], k = 0;
    for (; k < SLOWEST_STEPS && k < n - 1; k++) {
        int best = -1;
        for (int i = 1; i < n; i++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= pick[j] == i;
            if (!taken && (best < 0 || step_s[i] > step_s[best])) best = i;
        }
        pick[k] = best;
    }
    size_t len = (size_t)snprintf(out, cap, "[");
    for (int j = 0; j < k && len < cap; j++)
        len += (size_t)snprintf(out + len, cap - len, "%s[%d, %.3f]", j ? ", " : "", pick[j],
                                step_s[pick[j]] * 1e3);
    if (len < cap) snprintf(out + len, cap - len, "]");
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the steps after the first (the first when there is only
 * one): the rate a stream holds between its window restarts. Sorts. */
static double median_later_step(double *step_s, int n) {
    if (n < 2) return n ? step_s[0] : 0.0;
    qsort(step_s + 1, (size_t)n - 1, sizeof *step_s, compare_doubles);
    return step_s[1 + (n - 1) / 2];
}

/* Sampling speed of a randomly initialized model: what a user of `sample`
 * waits for, prompt encoding included, weights do not matter. */
static int bench_decode(const ModelConfig *mc, const char *preset, const Ops *ops, int precision,
                        const char *prec_name, const DecodeBench *dc, uint64_t seed) {
    char err[TF_ERRLEN];
    Model m;
    if (model_create(&m, mc, NULL, ops, err)) tf_die("%s", err);
    cli_set_model_precision(&m, precision);
    model_init_weights(&m, seed);
    int *prompt = tf_malloc(sizeof(int) * dc->prompt_len, "prompt");
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < dc->prompt_len; i++) prompt[i] = (int)rng_below(&r, (uint64_t)mc->vocab_size);
    Sampler s;
    cli_threads_for_decoding(ops, &m);
    SamplerConfig sc = {1.0f, 0, seed, dc->use_cache, dc->no_graph, !dc->no_lookahead,
                        sampler_warm_up_pays(ops)};
    if (sampler_init(&s, &m, dc->streams, prompt, (size_t)dc->prompt_len, (size_t)dc->max_new, &sc,
                     err))
        tf_die("%s", err);
    int *next = tf_malloc(sizeof(int) * dc->streams, "sampled tokens");
    ops->synchronize(ops);
    /* the second half's rate leaves out what the first steps do once (the
     * recording of the step, workspaces, kernel choices) */
    int half = dc->max_new / 2;
    double *step_s = tf_malloc(sizeof(double) * dc->max_new, "step times");
    double t0 = tf_now_seconds(), t_first = 0.0, t_half = 0.0, t_prev = t0;
    for (int i = 0; i < dc->max_new; i++) {
        sampler_step(&s, next); /* ends with the tokens on the host: synchronized */
        double t = tf_now_seconds();
        step_s[i] = t - t_prev;
        t_prev = t;
        if (i == 0) t_first = t - t0;
        if (i == half - 1) t_half = t - t0;
    }
    double dt = tf_now_seconds() - t0;
    char slowest[160];
    format_slowest_steps(slowest, sizeof slowest, step_s, dc->max_new);
    double median_s = median_later_step(step_s, dc->max_new);
    free(step_s);
    /* the decoding rate after the first character (its latency, the prompt's
     * encoding and the GPU's first launches, is first_char_ms), and over all */
    int later = dc->max_new > 1 ? dc->max_new - 1 : 1;
    double dt_later = dc->max_new > 1 ? dt - t_first : dt;
    printf("{\"impl\": \"tokenformer\", \"mode\": \"sample\", \"preset\": \"%s\", \"device\": \"%s\", "
           "\"precision\": \"%s\", \"cache\": %s, \"graph\": %s, \"lookahead\": %s, \"batch\": %d, "
           "\"prompt_len\": %d, \"new_tokens\": %d, \"block\": %d, \"chars_per_s\": %.1f, \"ms_per_step\": %.3f, "
           "\"first_char_ms\": %.3f, \"chars_per_s_with_first\": %.1f, \"chars_per_s_second_half\": %.1f, "
           "\"slowest_steps_ms\": %s, \"step_ms_median\": %.4f, \"restart_graph\": %s, \"params\": %zu}\n",
           preset, ops->name, prec_name, dc->use_cache ? "true" : "false",
           s.kv.step.recording ? "true" : "false", s.cfg.lookahead ? "true" : "false", dc->streams,
           dc->prompt_len, dc->max_new, mc->block_size,
           (double)dc->streams * later / dt_later, dt_later * 1e3 / later, t_first * 1e3,
           (double)dc->streams * dc->max_new / dt,
           half > 0 ? (double)dc->streams * (dc->max_new - half) / (dt - t_half) : 0.0, slowest,
           median_s * 1e3, s.kv.restart.recording ? "true" : "false", model_num_params(&m, 1));
    free(next);
    free(prompt);
    sampler_free(&s);
    model_free(&m);
    return 0;
}


/* The checkpoint's model on c's device and precision, frozen as train
 * --resume --freeze-old freezes it (setup_load_checkpoint with the
 * loader of a training run). */
static void load_frozen(LoadedCheckpoint *lc, const char *path, const CommonArgs *c) {
    char err[TF_ERRLEN];
    lc->ops = cli_open_device(c->device, c->threads, 1);
    CheckpointFreeze freeze_old = {.mode = CKPT_FREEZE_OLD};
    if (checkpoint_load_for_training(path, lc->ops, freeze_old, &lc->m, &lc->v, &lc->ts, err))
        tf_die("%s", err);
    if (model_trainable_params(&lc->m) == lc->m.n_param_elems)
        tf_die("bench: --freeze-old: %s has no rows added by 'grow'; nothing would train", path);
    cli_set_model_precision(&lc->m, c->precision);
    if (c->precision != MATMUL_FP32) cli_report_precision(lc->ops, c->precision);
}

int cmd_bench(int argc, char **argv) {
    enum { O_PRESET = 1, O_CKPT, O_FREEZE, O_STEPS, O_WARMUP, O_PROFILE, O_SAMPLE, O_NUM, O_PROMPT_LEN,
           O_MAX_NEW, O_NOCACHE, O_NOGRAPH, O_NOAHEAD, O_HELP };
    static const struct option own[] = {
        {"preset", required_argument, NULL, O_PRESET}, {"ckpt", required_argument, NULL, O_CKPT},
        {"freeze-old", no_argument, NULL, O_FREEZE},
        {"steps", required_argument, NULL, O_STEPS},
        {"warmup", required_argument, NULL, O_WARMUP}, {"profile", no_argument, NULL, O_PROFILE},
        {"sample", no_argument, NULL, O_SAMPLE}, {"num-samples", required_argument, NULL, O_NUM},
        {"prompt-len", required_argument, NULL, O_PROMPT_LEN},
        {"max-new-tokens", required_argument, NULL, O_MAX_NEW},
        {"no-cache", no_argument, NULL, O_NOCACHE}, {"no-graph", no_argument, NULL, O_NOGRAPH},
        {"no-lookahead", no_argument, NULL, O_NOAHEAD}, {"help", no_argument, NULL, O_HELP}};
    struct option all[64];
    common_options(all, sizeof all / sizeof all[0], own, sizeof own / sizeof own[0], BENCH_COMMON_FLAGS, 1);
    CommonArgs c;
    common_args_init(&c, 0); /* --seed is the training flag (tc.seed) */
    const char *ckpt = NULL;
    const Preset *preset = cli_preset_arg(argc, argv, NULL);
    ModelConfig mc = preset->model;
    TrainConfig tc = preset->train;
    long steps = 20, warmup = 3;
    int profile = 0, freeze_old = 0, seen = 0, flag_seen[CLI_MAX_CONFIG_FLAGS] = {0};
    DecodeBench dc = {0, 1, 1, 500, 1, 0, 0};
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", all, NULL)) != -1) {
        switch (opt) {
        case O_PRESET: break;
        case O_CKPT: ckpt = optarg; break;
        case O_FREEZE: freeze_old = 1; break;
        case O_STEPS: steps = cli_int("--steps", optarg, 1, 1000000); break;
        case O_WARMUP: warmup = cli_int("--warmup", optarg, 0, 1000000); break;
        case O_PROFILE: profile = 1; break;
        case O_SAMPLE: dc.enabled = 1; break;
        case O_NUM: dc.streams = (int)cli_int("--num-samples", optarg, 1, 65536); break;
        case O_PROMPT_LEN: dc.prompt_len = (int)cli_int("--prompt-len", optarg, 1, 1000000); break;
        case O_MAX_NEW: dc.max_new = (int)cli_int("--max-new-tokens", optarg, 1, 100000000); break;
        case O_NOCACHE: dc.use_cache = 0; break;
        case O_NOGRAPH: dc.no_graph = 1; break;
        case O_NOAHEAD: dc.no_lookahead = 1; break;
        case 'h':
        case O_HELP: bench_help(); return 0;
        default:
            if (common_apply(opt, optarg, &c)) break;
            if (opt >= CLI_CONFIG_OPT_BASE && cli_apply_config_flag(opt, optarg, &mc, &tc, &seen)) {
                flag_seen[opt - CLI_CONFIG_OPT_BASE] = 1;
                break;
            }
            cli_unknown_flag("bench", argv);
        }
    }
    if (optind < argc) tf_die("bench: unexpected argument '%s'", argv[optind]);
    if (freeze_old && !ckpt) tf_die("bench: --freeze-old needs --ckpt (a grown checkpoint)");
    cli_apply_arch_defaults(&mc, flag_seen);
    int precision = c.precision;
    const Ops *ops = cli_open_device(c.device, c.threads, 1);
    if (precision != MATMUL_FP32 && !ckpt) cli_report_precision(ops, precision);
    /* what actually runs: the CPU computes in fp32 whatever was asked */
    const char *prec_name = !ops_is_cpu(ops) ? matmul_precision_name(precision) : "fp32";
    mc.vocab_size = 65;
    char err[TF_ERRLEN];
    Model m;
    if (dc.enabled) {
        if (ckpt) tf_die("bench: --ckpt times training steps; --sample takes a preset");
        return bench_decode(&mc, preset->name, ops, precision, prec_name, &dc, tc.seed);
    }
    const char *label = preset->name;
    if (ckpt) { /* as stored: a grown one keeps the per-birth row segments the update walks */
        LoadedCheckpoint lc;
        if (freeze_old) load_frozen(&lc, ckpt, &c);
        else setup_load_checkpoint(&lc, ckpt, &c);
        m = lc.m;
        vocab_free(&lc.v);
        label = ckpt;
    } else {
        if (model_create(&m, &mc, NULL, ops, err)) tf_die("%s", err);
        model_init_weights(&m, tc.seed);
        cli_set_model_precision(&m, precision);
    }
    int B = tc.batch_size, T = m.cfg.block_size, V = m.cfg.vocab_size;
    if (model_alloc_activations(&m, B, T, err)) tf_die("%s", err);
    size_t n = (size_t)B * T;
    int *tok = tf_malloc(sizeof(int) * n * 2, "batch"), *tgt = tok + n;
    Rng r;
    rng_seed(&r, tc.seed);
    for (size_t i = 0; i < n; i++) {
        tok[i] = (int)rng_below(&r, (uint64_t)V);
        tgt[i] = (int)rng_below(&r, (uint64_t)V);
    }
    float loss = 0.0f, norm;
    double t0 = 0.0, cpu0 = 0.0;
    for (long s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            ops->synchronize(ops);
            t0 = tf_now_seconds();
            cpu0 = process_cpu_seconds();
        }
        loss = model_train_step(&m, tok, tgt, tc.lr, &tc, (uint64_t)s, &norm);
    }
    ops->synchronize(ops);
    double dt = (tf_now_seconds() - t0) / (double)steps;
    double cpu_dt = (process_cpu_seconds() - cpu0) / (double)steps;
    printf("{\"impl\": \"tokenformer\", \"arch\": \"%s\", \"preset\": \"%s\", \"device\": \"%s\", \"precision\": \"%s\", "
           "\"batch\": %d, \"block\": %d, \"tokens_per_s\": %.1f, \"ms_per_step\": %.3f, \"cpu_ms_per_step\": %.3f, "
           "\"loss\": %.4f, \"params\": %zu, \"trainable_params\": %zu, \"flops_per_token\": %.6g, "
           "\"peak_mem_mb\": %.1f}\n",
           arch_name(m.cfg.arch), label, ops->name, prec_name, B, T, (double)n / dt, dt * 1e3,
           cpu_dt * 1e3, loss, model_num_params(&m, 1), model_trainable_params(&m),
           model_train_flops_per_token(&m), ops->memory_in_use(ops) / 1048576.0);
    if (profile) { /* after the timing above, which it would disturb */
        m.ops = ops_profiled(ops);
        double p0 = tf_now_seconds();
        for (long s = 0; s < steps; s++) model_train_step(&m, tok, tgt, tc.lr, &tc, (uint64_t)s, &norm);
        ops->synchronize(ops);
        double wall = tf_now_seconds() - p0;
        fprintf(stderr, "profile of %s on %s (%s), B=%d T=%d:\n", label, ops->name,
                prec_name, B, T);
        profile_print(stderr, (int)steps, wall);
        m.ops = ops;
    }
    free(tok);
    model_free(&m);
    return 0;
}
