/* tokenformer train: the training loop (docs/MODEL.md, training). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "common.h"
#include "data.h"
#include "evaluate.h"
#include "model.h"

static void train_help(void) {
    printf("usage: tokenformer train [FILE] [options]\n"
           "\n"
           "Train a TokenFormer on a UTF-8 text file (default data/input.txt; 'make data'\n"
           "fetches tiny shakespeare). Prints 'step N: train loss X, val loss Y' at each\n"
           "evaluation, progress lines with tokens/s and ETA, and keeps two checkpoints:\n"
           "the latest and the best by val loss.\n"
           "\n"
           "options:\n"
           "  --preset P             tiny (default), shakespeare or gpt2-124m\n"
           "  --out PATH             a directory (writes latest.safetensors and\n"
           "                         best.safetensors in it) or a FILE.safetensors (best:\n"
           "                         FILE.best.safetensors); default out/\n"
           "  --resume CKPT          continue a run from a checkpoint exactly\n"
           "  --new-stage            with --resume: restart warmup + cosine from the\n"
           "                         checkpoint's iteration over --max-iters more iterations\n"
           "                         (the official grow recipe); default continues the schedule\n"
           "  --freeze-old           with --resume: train only rows added by 'grow'\n"
           "  --device D             cpu, cuda or auto (default auto: cuda when usable)\n"
           "  --threads N            CPU threads (default: all cores)\n"
           "  --precision P          GPU math: fp32 (default, the reference), tf32 (TF32\n"
           "                         GEMMs) or bf16 (bf16 tensor-core Pattentions and fused\n"
           "                         attention; fp32 weights, optimizer state and sums)\n"
           "  --tf32                 the same as --precision tf32\n"
           "  -h, --help             this help\n"
           "\n"
           "model and training settings (override the preset):\n");
    cli_print_config_help();
}

/* ---------------- signals: finish the step, save, exit ---------------- */

static volatile sig_atomic_t g_stop_requested;

static void on_signal(int sig) {
    if (g_stop_requested) _exit(128 + sig); /* second signal: at once */
    g_stop_requested = sig;
}

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---------------- options ---------------- */

typedef struct {
    const char *file;
    const char *out;
    const char *resume;
    const char *device;
    int threads;
    int precision; /* MatmulPrecision */
    int new_stage;
    int freeze_old;
    ModelConfig mc;
    TrainConfig tc;
    int model_flag_seen;
    int flag_seen[CLI_MAX_CONFIG_FLAGS]; /* which config flags the command line gave */
} TrainArgs;

enum { O_PRESET = 1, O_OUT, O_RESUME, O_DEVICE, O_THREADS, O_TF32, O_PRECISION, O_NEW_STAGE, O_FREEZE, O_HELP };

static void parse_train_args(int argc, char **argv, TrainArgs *a) {
    static const struct option own[] = {
        {"preset", required_argument, NULL, O_PRESET},   {"out", required_argument, NULL, O_OUT},
        {"resume", required_argument, NULL, O_RESUME},   {"device", required_argument, NULL, O_DEVICE},
        {"threads", required_argument, NULL, O_THREADS}, {"tf32", no_argument, NULL, O_TF32},
        {"precision", required_argument, NULL, O_PRECISION},
        {"new-stage", no_argument, NULL, O_NEW_STAGE},   {"freeze-old", no_argument, NULL, O_FREEZE},
        {"help", no_argument, NULL, O_HELP}};
    size_t n_own = sizeof own / sizeof own[0], n_cfg = 0;
    while (CLI_CONFIG_OPTIONS[n_cfg].name) n_cfg++;
    struct option all[64];
    memcpy(all, own, sizeof own);
    memcpy(all + n_own, CLI_CONFIG_OPTIONS, sizeof(struct option) * (n_cfg + 1));

    /* The preset comes first so that other flags override it wherever they stand. */
    const Preset *preset = preset_find("tiny");
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) v = argv[i + 1];
        else if (!strncmp(argv[i], "--preset=", 9)) v = argv[i] + 9;
        if (v && !(preset = preset_find(v)))
            tf_die("--preset: unknown preset '%s' (expected %s)", v, preset_names());
    }
    memset(a, 0, sizeof *a);
    a->mc = preset->model;
    a->tc = preset->train;
    a->out = "out";
    a->device = "auto";
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", all, NULL)) != -1) {
        switch (opt) {
        case O_PRESET: break;
        case O_OUT: a->out = optarg; break;
        case O_RESUME: a->resume = optarg; break;
        case O_DEVICE: a->device = optarg; break;
        case O_THREADS: a->threads = (int)cli_int("--threads", optarg, 1, 4096); break;
        case O_TF32: a->precision = MATMUL_TF32; break;
        case O_PRECISION: a->precision = cli_precision(optarg); break;
        case O_NEW_STAGE: a->new_stage = 1; break;
        case O_FREEZE: a->freeze_old = 1; break;
        case 'h':
        case O_HELP: train_help(); exit(0);
        default:
            if (opt >= CLI_CONFIG_OPT_BASE &&
                cli_apply_config_flag(opt, optarg, &a->mc, &a->tc, &a->model_flag_seen)) {
                a->flag_seen[opt - CLI_CONFIG_OPT_BASE] = 1;
                break;
            }
            cli_unknown_flag("train", argv);
        }
    }
    if (optind < argc - 1) tf_die("train: expected one input file, got '%s' and '%s'", argv[optind], argv[optind + 1]);
    a->file = optind < argc ? argv[optind] : "data/input.txt";
    if (!cli_config_flag_seen(a->flag_seen, "min-lr")) a->tc.min_lr = a->tc.lr / 10.0f;
    if ((a->new_stage || a->freeze_old) && !a->resume) tf_die("--new-stage and --freeze-old need --resume");
}

/* ---------------- output paths ---------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void output_paths(const char *out, char *latest, char *best, size_t len) {
    if (ends_with(out, ".safetensors")) {
        snprintf(latest, len, "%s", out);
        snprintf(best, len, "%.*s.best.safetensors", (int)(strlen(out) - 12), out);
        /* Check the directory now rather than fail at the first save. */
        const char *slash = strrchr(out, '/');
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash == out ? 1 : slash - out) : 1, slash ? out : ".");
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            tf_die("--out: '%s' is not an existing directory (for '%s')", dir, out);
        if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) tf_die("--out: '%s' is a directory", out);
        return;
    }
    struct stat st;
    if (stat(out, &st) != 0) {
        if (mkdir(out, 0755) != 0) tf_die("--out: cannot create directory '%s': %s", out, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        tf_die("--out: '%s' exists and is not a directory (give a directory or a .safetensors path)", out);
    }
    snprintf(latest, len, "%s/latest.safetensors", out);
    snprintf(best, len, "%s/best.safetensors", out);
}

/* ---------------- schedule and evaluation ---------------- */

/* Linear warmup, then cosine from lr to min_lr, measured from the stage start. */
static float learning_rate(const TrainConfig *tc, int stage_start, int iter) {
    int i = iter - stage_start, total = tc->max_iters - stage_start;
    if (i < tc->warmup_iters) return tc->lr * (float)(i + 1) / (float)(tc->warmup_iters + 1);
    if (i >= total) return tc->min_lr;
    double ratio = (double)(i - tc->warmup_iters) / (double)(total - tc->warmup_iters);
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio));
    return tc->min_lr + (float)coeff * (tc->lr - tc->min_lr);
}

/* Mean loss over eval_iters batches of a split. Its own generator (seeded by
 * the iteration) keeps the training batch stream untouched. */
static float estimate_loss(Model *m, const Dataset *d, Split split, const TrainConfig *tc, int iter,
                           int *tok, int *tgt) {
    uint64_t seed = tc->seed ^ tf_mix64(0xe7a1ULL + (uint64_t)iter * 2 + split);
    return evaluate_loss(m, d, split, tc->eval_iters, seed, tok, tgt);
}

static void format_duration(double s, char *buf, size_t len) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, len, "%lds", t);
}

static void report_nonfinite(const char *what, int iter, const char *latest) {
    if (access(latest, F_OK) == 0)
        fprintf(stderr, "tokenformer: error: non-finite %s at iteration %d; stopping. The last good checkpoint (%s) is intact.\n",
                what, iter, latest);
    else
        fprintf(stderr, "tokenformer: error: non-finite %s at iteration %d; stopping before any checkpoint was written.\n",
                what, iter);
}

static void save_or_die(const char *path, const Model *m, const Vocab *v, const TrainState *ts) {
    char err[TF_ERRLEN];
    if (checkpoint_save(path, m, v, ts, 1, err)) tf_die("saving checkpoint: %s", err);
}

/* ---------------- setup ---------------- */

static void mark_rows_frozen(Model *m) {
    /* --freeze-old: everything that existed before the last grow stays put. */
    int grown = 0;
    for (int i = 0; i < m->n_params; i++) grown |= m->params[i].n_seg > 1;
    if (!grown) tf_die("--freeze-old: the checkpoint has no rows added by 'grow'; nothing would train");
    for (int i = 0; i < m->n_params; i++) {
        Param *p = &m->params[i];
        int newest_birth = p->seg[p->n_seg - 1].birth;
        for (int k = 0; k < p->n_seg; k++)
            if (p->n_seg == 1 || p->seg[k].birth < newest_birth) p->seg[k].frozen = 1;
    }
}

static void setup_resume(TrainArgs *a, const Ops *ops, Model *m, Vocab *v, TrainState *ts) {
    char err[TF_ERRLEN];
    if (checkpoint_load(a->resume, ops, m, v, ts, err)) tf_die("%s", err);
    if (a->model_flag_seen) tf_die("--resume: model settings come from the checkpoint; drop the model flags");
    if (!checkpoint_had_optimizer()) tf_warn("%s has no optimizer state: Adam moments start at zero", a->resume);
    /* Training settings come from the checkpoint unless given again on the command
     * line; a new stage's length is --max-iters, else the checkpoint's max_iters. */
    if (ts->has_train) {
        TrainConfig given = a->tc;
        a->tc = ts->train;
        cli_override_train_config(&a->tc, &given, a->flag_seen);
        if (cli_config_flag_seen(a->flag_seen, "lr") && !cli_config_flag_seen(a->flag_seen, "min-lr"))
            a->tc.min_lr = a->tc.lr / 10.0f;
    }
    if (!a->freeze_old) /* freezing lasts one run: a later resume trains every row again */
        for (int i = 0; i < m->n_params; i++)
            for (int k = 0; k < m->params[i].n_seg; k++) m->params[i].seg[k].frozen = 0;
    if (a->new_stage) {
        ts->stage_start = ts->iter;
        ts->best_val = INFINITY; /* a new stage keeps its own best checkpoint */
        a->tc.max_iters = ts->iter + a->tc.max_iters;
        printf("schedule: new stage from iteration %d: warmup %d + cosine to iteration %d\n",
               ts->iter, a->tc.warmup_iters, a->tc.max_iters);
    } else {
        printf("schedule: continuing the checkpoint's schedule (stage start %d) to iteration %d\n",
               ts->stage_start, a->tc.max_iters);
    }
    if (a->freeze_old) {
        mark_rows_frozen(m);
        printf("freeze-old: only rows added by grow are trained\n");
    }
    printf("resumed from %s at iteration %d (optimizer step %d, best val loss %.4f)\n", a->resume,
           ts->iter, m->step, ts->best_val);
}

/* Everything one training run holds, so that its steps can be small functions. */
typedef struct {
    TrainArgs *a;
    Model m;
    Vocab vocab;
    TrainState ts;
    Dataset data;
    int *tok, *tgt; /* host batch, B*T each */
    Rng data_rng;
    char latest[4096], best[4096];
    double t_start, t_last;
    int first_iter;
    float loss_acc;
    int loss_count;
    int timed_steps; /* steps since t_last (evaluations reset both) */
} TrainRun;

/* Model, vocabulary and state: from --resume, or fresh from the text. */
static void setup_model(TrainRun *r, const Ops *ops, const uint32_t *cps, size_t n_cps) {
    TrainArgs *a = r->a;
    char err[TF_ERRLEN];
    train_state_init(&r->ts);
    if (a->resume) {
        setup_resume(a, ops, &r->m, &r->vocab, &r->ts);
    } else {
        if (vocab_build(&r->vocab, cps, n_cps, err)) tf_die("%s: %s", a->file, err);
        a->mc.vocab_size = r->vocab.size;
        if (model_create(&r->m, &a->mc, NULL, ops, err)) tf_die("%s", err);
        model_init_weights(&r->m, a->tc.seed);
        Rng rng;
        rng_seed(&rng, a->tc.seed);
        r->ts.data_rng = rng.state;
    }
    if (train_config_validate(&a->tc, err)) tf_die("%s", err);
    r->ts.train = a->tc;
    r->ts.has_train = 1;
}

static void print_run_header(const TrainRun *r) {
    const ModelConfig *c = &r->m.cfg;
    printf("model: %d layers, d=%d, %d heads, n_attn=%d, n_ffn=%d, T=%d, vocab=%d, pnorm=%s\n",
           c->n_layer, c->d_model, c->n_head, c->n_attn, c->n_ffn, c->block_size, c->vocab_size,
           pnorm_name(c->pnorm));
    printf("parameters: %zu (%zu without the embedding)\n", model_num_params(&r->m, 1),
           model_num_params(&r->m, 0));
    printf("data: %s, %zu train / %zu val characters; batch %d x %d; %d iterations\n", r->a->file,
           r->data.n_train, r->data.n - r->data.n_train, r->a->tc.batch_size, c->block_size,
           r->a->tc.max_iters);
    const TrainConfig *t = &r->a->tc;
    printf("train: lr %g (min %g, warmup %d), dropout %g, rope_frac %g, weight decay %g, "
           "grad clip %g, seed %llu; eval every %d iterations over %d batches\n",
           t->lr, t->min_lr, t->warmup_iters, c->dropout, c->rope_frac, t->weight_decay,
           t->grad_clip, (unsigned long long)t->seed, t->eval_interval, t->eval_iters);
    fflush(stdout);
}

/* The state a checkpoint written before iteration `iter` must carry. */
static void mark_position(TrainRun *r, int iter) {
    r->ts.iter = iter;
    r->ts.data_rng = r->data_rng.state;
}

/* gpt.py's evaluation line, then the best and latest checkpoints. Returns -1
 * (without saving) when a loss is not finite. */
static int evaluate_and_save(TrainRun *r, int iter) {
    const TrainConfig *tc = &r->a->tc;
    float tl = estimate_loss(&r->m, &r->data, SPLIT_TRAIN, tc, iter, r->tok, r->tgt);
    float vl = estimate_loss(&r->m, &r->data, SPLIT_VAL, tc, iter, r->tok, r->tgt);
    printf("step %d: train loss %.4f, val loss %.4f\n", iter, tl, vl);
    fflush(stdout);
    if (!isfinite(tl) || !isfinite(vl)) { /* saving now would replace the last good checkpoint */
        report_nonfinite(isfinite(tl) ? "val loss" : "train loss", iter, r->latest);
        return -1;
    }
    mark_position(r, iter);
    if (vl < r->ts.best_val) {
        r->ts.best_val = vl;
        save_or_die(r->best, &r->m, &r->vocab, &r->ts);
    }
    save_or_die(r->latest, &r->m, &r->vocab, &r->ts);
    r->t_last = tf_now_seconds(); /* keep evaluation out of the step timing */
    r->timed_steps = 0;
    return 0;
}

/* One optimizer step on a fresh batch; -1 when the loss or gradient is not finite. */
static int train_one_step(TrainRun *r, int iter, float *lr_out, float *norm_out) {
    const TrainConfig *tc = &r->a->tc;
    int B = tc->batch_size, T = r->m.cfg.block_size;
    float lr = learning_rate(tc, r->ts.stage_start, iter);
    dataset_batch(&r->data, SPLIT_TRAIN, &r->data_rng, B, T, r->tok, r->tgt);
    uint64_t drop_seed = tf_mix64(tc->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)iter);
    float loss = model_train_step(&r->m, r->tok, r->tgt, lr, tc, drop_seed, norm_out);
    if (!isfinite(loss) || !isfinite(*norm_out)) {
        report_nonfinite(isfinite(loss) ? "gradient norm" : "loss", iter, r->latest);
        return -1;
    }
    r->loss_acc += loss;
    r->loss_count++;
    r->timed_steps++;
    *lr_out = lr;
    return 0;
}

/* "iter N/M: loss, lr, norm, ms/iter, tok/s, ETA" over the last log interval. */
static void print_progress(TrainRun *r, int iter, float lr, float norm) {
    const TrainConfig *tc = &r->a->tc;
    double now = tf_now_seconds(), dt = (now - r->t_last) / (r->timed_steps ? r->timed_steps : 1);
    double per_iter = (now - r->t_start) / (iter + 1 - r->first_iter);
    char eta[32];
    format_duration(per_iter * (tc->max_iters - iter - 1), eta, sizeof eta);
    printf("iter %d/%d: loss %.4f, lr %.2e, norm %.2f, %.1f ms/iter, %.0f tok/s, ETA %s\n", iter + 1,
           tc->max_iters, r->loss_acc / r->loss_count, lr, norm, dt * 1e3,
           (double)tc->batch_size * r->m.cfg.block_size / dt, eta);
    fflush(stdout);
    r->t_last = now;
    r->timed_steps = 0;
    r->loss_acc = 0.0f;
    r->loss_count = 0;
}

/* The loop: evaluate every eval_interval (and at the end), stop cleanly on a
 * signal, step, log. Returns the exit status. */
static int train_loop(TrainRun *r) {
    const TrainConfig *tc = &r->a->tc;
    install_signal_handlers();
    r->t_start = r->t_last = tf_now_seconds();
    r->first_iter = r->ts.iter;
    for (int iter = r->ts.iter;; iter++) {
        int last = iter >= tc->max_iters;
        if ((iter % tc->eval_interval == 0 || last) && evaluate_and_save(r, iter)) return 1;
        if (last) break;
        if (g_stop_requested) {
            mark_position(r, iter);
            save_or_die(r->latest, &r->m, &r->vocab, &r->ts);
            printf("interrupted (signal %d) before iteration %d: saved %s; continue with --resume %s\n",
                   (int)g_stop_requested, iter, r->latest, r->latest);
            return 130;
        }
        float lr, norm;
        if (train_one_step(r, iter, &lr, &norm)) return 1;
        if ((iter + 1) % tc->log_interval == 0) print_progress(r, iter, lr, norm);
    }
    char took[32];
    format_duration(tf_now_seconds() - r->t_start, took, sizeof took);
    printf("done in %s: best val loss %.4f (%s), latest %s\n", took, r->ts.best_val, r->best, r->latest);
    return 0;
}

int cmd_train(int argc, char **argv) {
    TrainArgs a;
    parse_train_args(argc, argv, &a);
    char err[TF_ERRLEN];
    uint32_t *cps;
    size_t n_cps;
    if (text_file_read(a.file, &cps, &n_cps, err)) tf_die("%s", err);

    /* Quiet until the setup has succeeded, so that an error is the only line on stderr. */
    const Ops *ops = cli_open_device(a.device, a.threads, 1);
    ops->set_precision(ops, a.precision);
    TrainRun r;
    memset(&r, 0, sizeof r);
    r.a = &a;
    setup_model(&r, ops, cps, n_cps);
    if (dataset_build(&r.data, cps, n_cps, &r.vocab, r.m.cfg.block_size, err)) tf_die("%s: %s", a.file, err);
    free(cps);
    int B = a.tc.batch_size, T = r.m.cfg.block_size;
    if (model_alloc_activations(&r.m, B, T, err)) tf_die("%s", err);
    output_paths(a.out, r.latest, r.best, sizeof r.latest);
    cli_open_device(a.device, a.threads, 0); /* the same device again (cached): prints its line */
    cli_report_precision(ops, a.precision);
    print_run_header(&r);

    r.tok = tf_malloc(sizeof(int) * (size_t)B * T * 2, "batch");
    r.tgt = r.tok + (size_t)B * T;
    r.data_rng.state = r.ts.data_rng;
    int status = train_loop(&r);
    free(r.tok);
    dataset_free(&r.data);
    vocab_free(&r.vocab);
    model_free(&r.m);
    return status;
}
