/* tokenformer train: the training loop (docs/MODEL.md, training). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapters.h"
#include "checkpoint.h"
#include "cli.h"
#include "command_setup.h"
#include "common.h"
#include "crc32.h"
#include "data.h"
#include "distributed.h"
#include "evaluate.h"
#include "model.h"
#include "output_guard.h"
#include "schedule.h"

#define TRAIN_COMMON_FLAGS (COMMON_RUN_FLAGS | COMMON_TF32) /* --seed: a training flag */

static void train_help(void) {
    printf("usage: tokenformer train [FILE] [options]\n"
           "\n"
           "Train a TokenFormer on a UTF-8 text file (default data/input.txt; 'make data'\n"
           "fetches tiny shakespeare; with --resume, the text the checkpoint records).\n"
           "Prints 'step N: train loss X, val loss Y' at each evaluation, progress lines\n"
           "with tokens/s and ETA, and keeps two checkpoints: the latest and the best by\n"
           "val loss.\n"
           "\n"
           "options:\n"
           "  --preset P             tiny (default), shakespeare or gpt2-124m\n"
           "  --out PATH             a directory (writes latest.safetensors and\n"
           "                         best.safetensors in it) or a FILE.safetensors (best:\n"
           "                         FILE.best.safetensors); default out/, and with\n"
           "                         --resume where the checkpoint lives (README: 'Where\n"
           "                         a run writes')\n"
           "  --resume CKPT          continue a run from a checkpoint exactly, on the text it\n"
           "                         records (FILE, when given, must be that text)\n"
           "  --allow-other-text     with --resume: continue on FILE (or the recorded path)\n"
           "                         although its content differs from the recorded text\n"
           "  --force                replace checkpoints of another run (or lineage) in --out\n"
           "  --new-stage            with --resume: restart warmup + cosine from the\n"
           "                         checkpoint's iteration over --max-iters more iterations;\n"
           "                         default continues the schedule, except after a grow\n"
           "  --continue-schedule    with --resume of a just-grown checkpoint: continue its\n"
           "                         schedule; default under cosine re-warms (warmup + cosine\n"
           "                         restart at the checkpoint's iteration, still ending at\n"
           "                         max_iters), under wsd continues (docs/GROWTH.md 'Defaults')\n"
           "  --stop-at I            stop (and save) at iteration I, leaving the schedule to\n"
           "                         end at --max-iters: train the first part of a run that\n"
           "                         `grow` continues (docs/GROWTH.md, schedules)\n"
           "  --train WHAT           with --resume: which parameters train; the others stay\n"
           "                         frozen (no Adam moments, no weight-gradient work):\n"
           "                         all (default); new: only what the latest grow added\n"
           "                         (its rows, blocks, adapters or LoRA tensors; everything\n"
           "                         older frozen in every layer); last:N: the last N blocks\n"
           "                         and the final norm (wte stays frozen: the output head\n"
           "                         is tied to it, so it is also the input embedding)\n"
           "  --freeze-old           the same as --train new\n"
           "  --tokenizer K          chars (default: the text's distinct characters) or bytes\n"
           "                         (all 256 byte values; byte-level benchmarks like enwik8)\n"
           "  --split TRAIN,VAL[,TEST]  parts of the text (default 90,10; enwik8: 90,5,5);\n"
           "                         stored in the checkpoint for eval\n"
           "  --log FILE.csv         append one CSV row per evaluation and progress line\n"
           "                         (iter, tokens, cumulative FLOPs, lr, losses, tok/s, ...)\n"
           "  --flops-budget C       end when cumulative training FLOPs (docs/MODEL.md 3a)\n"
           "                         reach C: --max-iters is derived, counting every growth\n"
           "                         stage at its own FLOPs per token (within an iteration)\n"
           "  --tokens-budget D      end after D training tokens (--max-iters derived)\n"
           "  --lr-schedule S        cosine (default) or wsd: warmup, constant lr, then a\n"
           "                         linear decay to --min-lr over the last --decay-frac F\n"
           "                         of each stage (default 0.2)\n"
           "  --eval-every-flops X   evaluate (and save) at each multiple of X FLOPs instead\n"
           "                         of every --eval-interval, on the same batches each time\n"
           "  --grow AT:OP,...       grow inside the run: AT is P%% of the budget (the FLOPs\n"
           "                         budget when given, else --max-iters) or an iteration;\n"
           "                         OP is kv*F or kv+N (tokenformer: every Pattention; +N\n"
           "                         adds N to q,k,v,o and 4N to the FFN, as grow --kv +N),\n"
           "                         attn-kv*F|+N (q,k,v,o), ffn-kv*F|+N (FFN Pattention),\n"
           "                         ffn*F|+N (baselines' FFN width), layers*F|+N (new\n"
           "                         blocks; then :end|:interleave|:stack and\n"
           "                         :zero-out|:copy|:copy-zero-out as grow --at/--init,\n"
           "                         e.g. layers*2:stack), d*2 (grow --d-model 2x). Each uses\n"
           "                         grow's default recipe with --seed and re-warms (under\n"
           "                         wsd: continues) as --resume after a grow; e.g.\n"
           "                         --grow 25%%:kv*2,50%%:kv*2\n");
    common_print_help(TRAIN_COMMON_FLAGS, NULL);
    printf("\n"
           "Data parallel on several GPUs: start one process per GPU with torchrun\n"
           "(--no-python), mpirun or srun; --batch-size is per GPU (docs/DISTRIBUTED.md).\n"
           "\n"
           "model and training settings (override the preset):\n");
    cli_print_config_help();
}

/* ---------------- signals: finish the step, save, exit ---------------- */

static volatile sig_atomic_t g_stop_requested;

static void on_signal(int sig) {
    if (g_stop_requested) _exit(128 + sig); /* second signal: at once */
    g_stop_requested = sig;
    /* An evaluation can take seconds: say at once that the signal was heard. */
    static const char ack[] = "\ntokenformer: stopping after the current step or evaluation to save the "
                              "latest checkpoint (signal again to quit without saving)\n";
    ssize_t ignored = write(STDERR_FILENO, ack, sizeof ack - 1);
    (void)ignored;
}

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A reader that goes away (tee killed by the same Ctrl-C) must not kill the
     * run: writes then fail with EPIPE, which flush_output notices. */
    signal(SIGPIPE, SIG_IGN);
}

/* ---------------- stdout: a failed write stops the run, it does not kill it ---------------- */

static int g_stdout_errno; /* first failed write to stdout (EPIPE, ENOSPC), 0 while fine */

static void flush_output(void) {
    if (g_stdout_errno) return;
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) g_stdout_errno = errno ? errno : EIO;
}

/* ---------------- options ---------------- */

typedef struct {
    const char *file;
    const char *out;
    const char *resume;
    CommonArgs common; /* --device --threads --precision (command_setup.h) */
    int new_stage;
    int continue_schedule;
    int freeze_old;          /* --freeze-old given */
    const char *train_what;  /* --train as given, or NULL */
    CheckpointFreeze freeze; /* what --train (or --freeze-old) freezes; default: nothing */
    int stop_at;   /* --stop-at, or 0: run to max_iters */
    int allow_other_text; /* --allow-other-text */
    int force;            /* --force: replace another run's checkpoints */
    const char *preset;   /* --preset as given, or NULL */
    /* data options (tokenizer, split, CSV log) */
    int tokenizer_seen, bytes;
    int split_seen, split[3]; /* --split, parsed */
    const char *log_path;
    /* budgets, lr schedule, FLOPs evaluation grid, growth (schedule.h) */
    double flops_budget, tokens_budget, eval_every_flops;
    int lr_schedule;   /* -1: not given (the checkpoint's, else cosine) */
    float decay_frac;  /* 0: not given */
    const char *grow_spec;
    GrowSchedule grow;
    ModelConfig mc;
    TrainConfig tc;
    int model_flag_seen;
    int flag_seen[CLI_MAX_CONFIG_FLAGS]; /* which config flags the command line gave */
} TrainArgs;

enum { O_PRESET = 1, O_OUT, O_RESUME, O_NEW_STAGE, O_FREEZE, O_TRAIN, O_HELP,
       O_TOKENIZER, O_SPLIT, O_LOG, O_STOP_AT, O_CONTINUE, O_FLOPS_BUDGET, O_TOKENS_BUDGET, O_LR_SCHEDULE,
       O_DECAY_FRAC, O_EVAL_FLOPS, O_GROW, O_ALLOW_OTHER, O_FORCE };

/* --train WHAT: all, new, or last:N with N >= 1 (its upper bound, the
 * checkpoint's depth, is checked when the checkpoint loads). */
static CheckpointFreeze parse_train_what(const char *what) {
    CheckpointFreeze f = {.mode = CKPT_UNFREEZE};
    long n;
    if (!strcmp(what, "all")) return f;
    f.mode = CKPT_FREEZE_OLD;
    if (!strcmp(what, "new")) return f;
    if (strncmp(what, "last:", 5))
        tf_die("--train: expected all, new or last:N (N blocks), got '%s'", what);
    if (tf_parse_int(what + 5, 1, 1 << 20, &n))
        tf_die("--train %s: N must be a whole number of blocks, at least 1", what);
    f.mode = CKPT_TRAIN_LAST;
    f.last_blocks = (int)n;
    return f;
}

/* The schedule options (schedule.h); 0 when opt is not one of them. */
static int parse_schedule_option(int opt, const char *value, TrainArgs *a) {
    char err[TF_ERRLEN];
    switch (opt) {
    case O_FLOPS_BUDGET: a->flops_budget = cli_float("--flops-budget", value, 1.0, 1e30); return 1;
    case O_TOKENS_BUDGET: a->tokens_budget = cli_float("--tokens-budget", value, 1.0, 1e30); return 1;
    case O_EVAL_FLOPS: a->eval_every_flops = cli_float("--eval-every-flops", value, 1.0, 1e30); return 1;
    case O_DECAY_FRAC: a->decay_frac = (float)cli_float("--decay-frac", value, 1e-6, 1.0); return 1;
    case O_LR_SCHEDULE:
        if ((a->lr_schedule = lr_schedule_parse(value)) < 0)
            tf_die("--lr-schedule: expected cosine or wsd, got '%s'", value);
        return 1;
    case O_GROW:
        a->grow_spec = value;
        if (grow_schedule_parse(value, &a->grow, err)) tf_die("%s", err);
        return 1;
    default: return 0;
    }
}

/* What the schedule options cannot be combined with, before any work. */
static void check_schedule_options(const TrainArgs *a) {
    const char *budget = a->flops_budget > 0 ? "--flops-budget" : a->tokens_budget > 0 ? "--tokens-budget" : NULL;
    if (a->flops_budget > 0 && a->tokens_budget > 0) tf_die("--flops-budget and --tokens-budget: give one budget");
    if (budget && cli_config_flag_seen(a->flag_seen, "max-iters"))
        tf_die("%s derives the run's length: drop --max-iters", budget);
    if (a->resume && (budget || a->grow_spec))
        tf_die("%s: a budget and a growth schedule plan a run from its start (a resumed run keeps the "
               "checkpoint's --max-iters and growth points); drop it with --resume", budget ? budget : "--grow");
    if (a->decay_frac > 0 && a->lr_schedule != LR_WSD && !a->resume)
        tf_die("--decay-frac is for --lr-schedule wsd");
}

static void parse_train_args(int argc, char **argv, TrainArgs *a) {
    static const struct option own[] = {
        {"preset", required_argument, NULL, O_PRESET},   {"out", required_argument, NULL, O_OUT},
        {"resume", required_argument, NULL, O_RESUME},
        {"new-stage", no_argument, NULL, O_NEW_STAGE},   {"freeze-old", no_argument, NULL, O_FREEZE},
        {"train", required_argument, NULL, O_TRAIN},
        {"help", no_argument, NULL, O_HELP},
        {"tokenizer", required_argument, NULL, O_TOKENIZER}, {"split", required_argument, NULL, O_SPLIT},
        {"log", required_argument, NULL, O_LOG},         {"stop-at", required_argument, NULL, O_STOP_AT},
        {"continue-schedule", no_argument, NULL, O_CONTINUE},
        {"flops-budget", required_argument, NULL, O_FLOPS_BUDGET},
        {"tokens-budget", required_argument, NULL, O_TOKENS_BUDGET},
        {"lr-schedule", required_argument, NULL, O_LR_SCHEDULE},
        {"decay-frac", required_argument, NULL, O_DECAY_FRAC},
        {"eval-every-flops", required_argument, NULL, O_EVAL_FLOPS}, {"grow", required_argument, NULL, O_GROW},
        {"allow-other-text", no_argument, NULL, O_ALLOW_OTHER}, {"force", no_argument, NULL, O_FORCE}};
    struct option all[64];
    common_options(all, sizeof all / sizeof all[0], own, sizeof own / sizeof own[0], TRAIN_COMMON_FLAGS, 1);
    const char *preset_given = NULL;
    const Preset *preset = cli_preset_arg(argc, argv, &preset_given);
    memset(a, 0, sizeof *a);
    a->preset = preset_given;
    a->mc = preset->model;
    a->tc = preset->train;
    common_args_init(&a->common, 0); /* --seed is the training flag (tc.seed) */
    a->lr_schedule = -1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", all, NULL)) != -1) {
        switch (opt) {
        case O_PRESET: break;
        case O_OUT: a->out = optarg; break;
        case O_RESUME: a->resume = optarg; break;
        case O_NEW_STAGE: a->new_stage = 1; break;
        case O_CONTINUE: a->continue_schedule = 1; break;
        case O_FREEZE: a->freeze_old = 1; break;
        case O_TRAIN:
            a->train_what = optarg;
            a->freeze = parse_train_what(optarg);
            break;
        case O_ALLOW_OTHER: a->allow_other_text = 1; break;
        case O_FORCE: a->force = 1; break;
        case O_TOKENIZER:
            if (strcmp(optarg, "chars") && strcmp(optarg, "bytes"))
                tf_die("--tokenizer: expected chars or bytes, got '%s'", optarg);
            a->bytes = !strcmp(optarg, "bytes");
            a->tokenizer_seen = 1;
            break;
        case O_SPLIT: {
            char err[TF_ERRLEN];
            if (data_split_parse(optarg, a->split, err)) tf_die("%s", err);
            a->split_seen = 1;
            break;
        }
        case O_LOG: a->log_path = optarg; break;
        case O_STOP_AT: a->stop_at = (int)cli_int("--stop-at", optarg, 1, 1 << 30); break;
        case 'h':
        case O_HELP: train_help(); exit(0);
        default:
            if (parse_schedule_option(opt, optarg, a) || common_apply(opt, optarg, &a->common)) break;
            if (opt >= CLI_CONFIG_OPT_BASE &&
                cli_apply_config_flag(opt, optarg, &a->mc, &a->tc, &a->model_flag_seen)) {
                a->flag_seen[opt - CLI_CONFIG_OPT_BASE] = 1;
                break;
            }
            cli_unknown_flag("train", argv);
        }
    }
    if (optind < argc - 1) tf_die("train: expected one input file, got '%s' and '%s'", argv[optind], argv[optind + 1]);
    a->file = optind < argc ? argv[optind] : NULL; /* a resumed run: the checkpoint's text */
    if (!cli_config_flag_seen(a->flag_seen, "min-lr")) a->tc.min_lr = a->tc.lr / 10.0f;
    cli_apply_arch_defaults(&a->mc, a->flag_seen);
    if ((a->new_stage || a->freeze_old || a->continue_schedule || a->allow_other_text) && !a->resume)
        tf_die("--new-stage, --continue-schedule, --freeze-old and --allow-other-text need --resume");
    if (a->train_what && !a->resume) tf_die("--train %s needs --resume (a new model trains every parameter)", a->train_what);
    if (a->train_what && a->freeze_old)
        tf_die("--train %s and --freeze-old: give one (--freeze-old is --train new)", a->train_what);
    if (a->freeze_old) a->freeze.mode = CKPT_FREEZE_OLD;
    if (a->new_stage && a->continue_schedule) tf_die("--new-stage and --continue-schedule contradict each other; give one");
    if (a->tokenizer_seen && a->resume) tf_die("--tokenizer: the tokenizer comes from the checkpoint; drop --tokenizer");
    check_schedule_options(a);
}

/* ---------------- output paths ---------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* A run's best is only ever replaced by a better model of its own run. */
static void refuse_best_as_latest(const char *out) {
    if (output_is_best_name(out))
        tf_die("--out: '%s' is named as a run's best checkpoint, not a place for a latest; give a directory "
               "or another FILE.safetensors", out);
}

static void output_paths(const char *out, char *latest, char *best, size_t len) {
    if (ends_with(out, ".safetensors")) {
        refuse_best_as_latest(out);
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

/* Without --out a resumed run keeps writing where its checkpoint lives: next
 * to DIR/latest.safetensors or DIR/best.safetensors into DIR, otherwise into
 * the checkpoint file itself (best: FILE.best.safetensors), and from
 * FILE.best.safetensors into FILE.safetensors, its set's latest. */
static void default_out_for_resume(const char *resume, char *out, size_t len) {
    const char *slash = strrchr(resume, '/'), *base = slash ? slash + 1 : resume;
    size_t n = strlen(resume), best_suffix = strlen(".best.safetensors");
    if (strcmp(base, "best.safetensors") && ends_with(base, ".best.safetensors")) /* its set's latest */
        snprintf(out, len, "%.*s.safetensors", (int)(n - best_suffix), resume);
    else if (strcmp(base, "latest.safetensors") && strcmp(base, "best.safetensors")) snprintf(out, len, "%s", resume);
    else if (!slash) snprintf(out, len, ".");
    else snprintf(out, len, "%.*s", slash == resume ? 1 : (int)(slash - resume), resume);
}

/* ---------------- schedule and evaluation ---------------- */

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

/* --train new (--freeze-old): "old" is every row that existed before the latest grow (the
 * largest birth step of any row), in every layer alike; only the rows that
 * grow added then train, and only they have Adam moments (the loader froze
 * the rest: model_freeze_old). A layer the latest grow skipped trains nothing. */
static void check_rows_frozen(const TrainArgs *a, const Model *m) {
    if (model_trainable_params(m) == m->n_param_elems)
        tf_die("%s: the checkpoint has no rows added by 'grow'; nothing would train",
               a->freeze_old ? "--freeze-old" : "--train new");
}

/* The line that says what a freezing run trains (scripts read its counts). */
static void print_what_trains(const TrainArgs *a, const Model *m) {
    size_t trainable = model_trainable_params(m), total = model_num_params(m, 1);
    if (a->freeze.mode == CKPT_FREEZE_OLD) {
        check_rows_frozen(a, m);
        printf("freeze-old: only rows added by the latest grow are trained (older rows frozen in every layer): "
               "%zu of %zu parameters, Adam moments for %zu\n", trainable, total, m->n_moment_elems);
    } else if (a->freeze.mode == CKPT_TRAIN_LAST) {
        int n = a->freeze.last_blocks;
        printf("train last:%d: only the last %d of %d blocks and the final norm are trained (wte, tied to the "
               "head, and earlier blocks frozen): %zu of %zu parameters, Adam moments for %zu\n", n, n,
               m->cfg.n_layer, trainable, total, m->n_moment_elems);
    }
}

/* A growth point's schedule, the same for a resume just after a grow and for
 * train --grow (which must equal stop / grow / resume): the grown model keeps
 * its own best checkpoint, and a cosine schedule re-warms at iteration `iter`
 * while a wsd one continues. Growth study II (docs/GROWTH.md): under cosine,
 * growth pays only with a fresh warmup (the cosine would otherwise leave the new
 * rows a low lr); under wsd, growing in the constant phase and keeping the
 * schedule did as well or better than re-warming, at every budget. Returns
 * whether it re-warmed. */
static int start_grown_stage(TrainState *ts, const TrainConfig *tc, int iter) {
    ts->best_val = INFINITY;
    if (tc->lr_schedule == LR_WSD) return 0;
    ts->stage_start = iter;
    return 1;
}

/* A resumed checkpoint whose newest rows (or blocks) were born at its current
 * optimizer step has been grown and not trained since: the log marks a growth
 * point and the schedule starts a grown stage there by default. */
static int just_grown(const Model *m) { return m->step > 0 && model_latest_birth(m) == m->step; }

/* Settings that the checkpoint fixes, refused by name when given with
 * another value: the model, the preset (its model and settings), and the
 * split (a new one would put trained-on text into val). */
static void refuse_fixed_settings(const TrainArgs *a, const Model *m, const TrainState *ts) {
    char list[1024];
    cli_model_flags_differing(a->flag_seen, &a->mc, &m->cfg, list, sizeof list);
    if (list[0])
        tf_die("--resume: the model comes from the checkpoint; drop %s", list);
    if (a->preset)
        tf_die("--resume: --preset %s: the model and settings come from the checkpoint; drop --preset (give "
               "single settings such as --lr or --max-iters to change them)", a->preset);
    if (a->split_seen && memcmp(a->split, ts->split, sizeof a->split))
        tf_die("--resume: --split %d,%d,%d differs from the checkpoint's %d,%d,%d (val would then hold text "
               "already trained on); drop --split", a->split[0], a->split[1], a->split[2], ts->split[0],
               ts->split[1], ts->split[2]);
}

/* The training settings that a resumed run changes, said once. */
static void print_changed_settings(const TrainConfig *before, const TrainConfig *after) {
    char list[2048];
    cli_train_settings_changed(before, after, list, sizeof list);
    if (list[0]) printf("resume: settings changed from the checkpoint: %s\n", list);
}

static void setup_resume(TrainArgs *a, const Ops *ops, Model *m, Vocab *v, TrainState *ts) {
    char err[TF_ERRLEN];
    if (checkpoint_load_for_training(a->resume, ops, a->freeze, m, v, ts, err))
        tf_die("%s", err);
    refuse_fixed_settings(a, m, ts);
    if (cli_config_flag_seen(a->flag_seen, "arch") && a->mc.arch != m->cfg.arch)
        tf_die("--resume: --arch %s contradicts %s, which is a %s checkpoint", arch_name(a->mc.arch),
               a->resume, arch_name(m->cfg.arch));
    if (!ts->has_optimizer) tf_warn("%s has no optimizer state: Adam moments start at zero", a->resume);
    if (ts->moments_zeroed) /* freezing lasts one run: its frozen rows train again, without moments saved */
        printf("unfreeze: %zu parameters frozen in %s train again; their Adam moments start at zero\n",
               ts->moments_zeroed, a->resume);
    /* Training settings come from the checkpoint unless given again on the command
     * line; a new stage's length is --max-iters, else the checkpoint's max_iters. */
    if (ts->has_train) {
        TrainConfig given = a->tc;
        a->tc = ts->train;
        cli_override_train_config(&a->tc, &given, a->flag_seen);
        if (cli_config_flag_seen(a->flag_seen, "lr") && !cli_config_flag_seen(a->flag_seen, "min-lr"))
            a->tc.min_lr = a->tc.lr / 10.0f;
        print_changed_settings(&ts->train, &a->tc);
    }
    if (a->new_stage) {
        ts->stage_start = ts->iter;
        ts->best_val = INFINITY; /* a new stage keeps its own best checkpoint */
        a->tc.max_iters = ts->iter + a->tc.max_iters;
        printf("schedule: new stage from iteration %d: warmup %d + cosine to iteration %d\n",
               ts->iter, a->tc.warmup_iters, a->tc.max_iters);
    } else if (!a->continue_schedule && just_grown(m) && a->tc.max_iters > ts->iter) {
        if (start_grown_stage(ts, &a->tc, ts->iter)) {
            printf("grown checkpoint: warmup restarts at iteration %d, cosine ends at %d "
                   "(--continue-schedule to keep the schedule)\n", ts->iter, a->tc.max_iters);
        } else {
            printf("grown checkpoint: the wsd schedule continues (stage start %d) to iteration %d "
                   "(--new-stage --max-iters N to re-warm for N more)\n", ts->stage_start, a->tc.max_iters);
        }
    } else {
        printf("schedule: continuing the checkpoint's schedule (stage start %d) to iteration %d\n",
               ts->stage_start, a->tc.max_iters);
    }
    if (!a->new_stage && a->tc.max_iters == ts->iter)
        printf("nothing to train: %s is at iteration %d = --max-iters; evaluating it only\n", a->resume, ts->iter);
    if (!a->new_stage && a->tc.max_iters < ts->iter)
        tf_die("--resume: %s is already at iteration %d and --max-iters is %d, so nothing would train; "
               "give a larger --max-iters (the total), or --new-stage --max-iters N for N more",
               a->resume, ts->iter, a->tc.max_iters);
    print_what_trains(a, m);
    char best[64] = "no best val loss yet: a new stage keeps its own best";
    if (isfinite(ts->best_val)) snprintf(best, sizeof best, "best val loss %.4f", ts->best_val);
    printf("resumed from %s at iteration %d (optimizer step %d, %s)\n", a->resume, ts->iter, m->step, best);
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
    float best_on_disk; /* val loss recorded in `best` before this run (INFINITY: none) */
    int wrote_best;
    double t_start, t_last;
    double t_launch; /* the command's start: "done in" counts reading the text too */
    int first_iter;
    float loss_acc;
    int loss_count;
    int timed_steps; /* steps since t_last (evaluations reset both) */
    double flops_per_token; /* of the model as it is in this run */
    FILE *log;              /* --log CSV, or NULL */
    int bar_shown;          /* a progress bar is on the terminal's last line */
    Dist dist;              /* data-parallel ranks (a world of one without a launcher) */
    int *step_tok, *step_tgt; /* the windows of one whole step, all ranks and micro-batches */
    int stop_agreed;        /* some rank has been asked to stop (data parallel) */
    double next_eval_flops; /* --eval-every-flops: the next grid point */
    int next_grow;          /* --grow: the next point of a->grow */
} TrainRun;

/* Sequences one optimizer step consumes over every rank and micro-batch. */
static int step_sequences(const TrainRun *r) {
    return r->dist.world * r->a->tc.grad_accum * r->a->tc.batch_size;
}

static int is_rank0(const TrainRun *r) { return r->dist.rank == 0; }

/* ---------------- lineage: the text, the run id, what --out already holds ---------------- */

/* A resumed run's text: FILE, else the one its checkpoint records (include/lineage.h).
 * Returns 1 when it is other text (--allow-other-text). */
static int read_resume_text(TrainRun *r, Text *chars, TextRecord *text) {
    TrainArgs *a = r->a;
    char ckpt[1024], how[1200];
    shell_quote(a->resume, ckpt, sizeof ckpt);
    snprintf(how, sizeof how, "pass the text as FILE (tokenformer train FILE --resume %s)", ckpt);
    TextChoice choice = {a->file, a->allow_other_text, a->resume, how};
    return setup_read_checkpoint_text(&choice, &r->ts, &r->vocab, chars, text, &a->file);
}

/* The checkpoints record the text; a fresh run gets a new id, a resumed one
 * keeps its own (older checkpoints have none: a new one). Other text makes
 * the losses incomparable with the checkpoint's best. */
static void record_lineage(TrainRun *r, const TextRecord *text, int other_text) {
    r->ts.text = *text;
    if (!r->a->resume || !r->ts.run_id) r->ts.run_id = lineage_run_id(checkpoint_run_digest(&r->m, &r->vocab, &r->ts));
    if (other_text && isfinite(r->ts.best_val)) {
        printf("other text: the checkpoint's best val loss %.4f was on its own text; this run keeps its own best\n",
               r->ts.best_val);
        r->ts.best_val = INFINITY;
    }
}

/* "PATH (iteration N, best val loss X, text 'T')", or why it is unreadable. */
static void describe_checkpoint(const char *path, const CheckpointLineage *l, int readable, char *out, size_t len) {
    if (!readable) {
        snprintf(out, len, "%.900s (not a readable checkpoint)", path);
        return;
    }
    char best[48] = "";
    if (isfinite(l->best_val)) snprintf(best, sizeof best, ", best val loss %.4f", l->best_val);
    snprintf(out, len, "%.900s (iteration %d%s, text %s%.600s%s)", path, l->iter, best, l->text.known ? "'" : "",
             l->text.known ? l->text.path : "not recorded", l->text.known ? "'" : "");
}

static void append_listed(char *list, size_t len, const char *item) {
    size_t used = strlen(list);
    snprintf(list + used, len - used, "%s%s", used ? "; " : "", item);
}

/* What --out already holds. A fresh run replaces nothing without --force; a
 * resumed one, no latest of another run (another run id) and no best of
 * another lineage (other text, vocabulary, arch or split: its loss does not
 * compare). A best of this lineage is kept unless this run beats it. */
static void check_existing_outputs(TrainRun *r) {
    const TrainArgs *a = r->a;
    CheckpointLineage self, latest, best;
    checkpoint_lineage_of(&r->m, &r->vocab, &r->ts, &self);
    int has_latest = access(r->latest, F_OK) == 0 && !(a->resume && output_same_file(r->latest, a->resume));
    int latest_ok = has_latest && checkpoint_peek_lineage(r->latest, &latest) == 0;
    /* a run's own latest may be replaced, but not by an earlier point of it */
    int latest_ahead = latest_ok && a->resume && latest.run_id == self.run_id && latest.iter > self.iter;
    int latest_foreign = has_latest && (!a->resume || !latest_ok || latest.run_id != self.run_id || latest_ahead);
    int has_best = access(r->best, F_OK) == 0;
    int best_ok = has_best && checkpoint_peek_lineage(r->best, &best) == 0;
    const char *differs = best_ok ? checkpoint_lineage_difference(&self, &best) : "unreadable";
    int best_other_lineage = has_best && differs;
    int best_foreign = has_best && (!a->resume || best_other_lineage);
    char list[4096] = "", item[2048];
    if (latest_foreign) {
        describe_checkpoint(r->latest, &latest, latest_ok, item, sizeof item);
        if (latest_ahead) snprintf(item + strlen(item), sizeof item - strlen(item),
                                   ", ahead of this run's iteration %d", self.iter);
        else if (a->resume) snprintf(item + strlen(item), sizeof item - strlen(item), ", another run");
        append_listed(list, sizeof list, item);
    }
    if (best_foreign) {
        describe_checkpoint(r->best, &best, best_ok, item, sizeof item);
        if (best_other_lineage && best_ok) snprintf(item + strlen(item), sizeof item - strlen(item),
                                                    ", another lineage: other %s", differs);
        append_listed(list, sizeof list, item);
    }
    if (list[0] && !a->force)
        tf_die("--out %s holds %s: %s; give another --out, or --force to replace them", a->out,
               a->resume ? "checkpoints this run must not replace" : "another run's checkpoints", list);
    if (list[0] && latest_foreign) printf("--force: replacing %s\n", r->latest);
    if (list[0] && best_other_lineage) /* one of this lineage stays unless beaten (below) */
        printf("--force: %s is %s%s%s; this run's first evaluation replaces it\n", r->best,
               best_ok ? "of another lineage (" : "not a readable checkpoint", best_ok ? differs : "", best_ok ? ")" : "");
    r->best_on_disk = best_other_lineage ? INFINITY : best_ok ? best.best_val : INFINITY;
    if (isfinite(r->best_on_disk) && r->best_on_disk < r->ts.best_val)
        printf("note: %s holds val loss %.4f from an earlier run of this lineage (same text, vocabulary, arch and "
               "split); only a better model replaces it\n", r->best, r->best_on_disk);
}

/* ---------------- data accounting: FLOPs, CSV log, progress bar ---------------- */

static const char LOG_HEADER[] = "iter,tokens,flops,lr,train_loss,val_loss,tok_per_s,params,event,arch,run";

/* The last column of the last row of an existing log (the run id of the
 * run that wrote it), "" when it has only the header. Dies unless its first
 * line is LOG_HEADER. */
static void log_last_run(FILE *f, const char *path, char *run, size_t len) {
    char line[1024];
    run[0] = '\0';
    if (!fgets(line, sizeof line, f) || strcspn(line, "\n") != strlen(LOG_HEADER) ||
        strncmp(line, LOG_HEADER, strlen(LOG_HEADER)))
        tf_die("--log: '%s' is not a log of this version of tokenformer (its first line is not the header '%s'); "
               "give a new file", path, LOG_HEADER);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        const char *comma = strrchr(line, ',');
        if (comma) snprintf(run, len, "%s", comma + 1);
    }
}

/* Before anything is written: an existing log must have this header and,
 * for a resumed run, end with a row of this run (its 'run' id); a fresh run
 * starts its own table. One table never mixes two runs (not even two
 * identical ones) or lands in a file that is not a log. */
static void check_log(const TrainRun *r) {
    const char *path = r->a->log_path;
    if (!path || !is_rank0(r)) return;
    FILE *f = fopen(path, "r");
    if (!f) return; /* new (or unreadable: open_log says why) */
    fseek(f, 0, SEEK_END);
    if (ftell(f) > 0) {
        char run[64], want[24];
        rewind(f);
        log_last_run(f, path, run, sizeof run);
        snprintf(want, sizeof want, "%016llx", (unsigned long long)r->ts.run_id);
        if (run[0] && !r->a->resume)
            tf_die("--log: '%s' holds rows of another run (run %s); a fresh run starts its own log: give a new file",
                   path, run);
        if (run[0] && strcmp(run, want))
            tf_die("--log: '%s' holds rows of another run (run %s; this resumed run is %s); give a new file", path,
                   run, want);
    }
    fclose(f);
}

/* Append to the log (check_log accepted it); the header only when the file
 * is new or empty, so that a resumed or grown run continues the same table. */
static void open_log(TrainRun *r) {
    const char *path = r->a->log_path;
    if (!path || !is_rank0(r)) return;
    r->log = fopen(path, "a");
    if (!r->log) tf_die("--log: cannot open '%s': %s", path, strerror(errno));
    if (ftell(r->log) == 0) fprintf(r->log, "%s\n", LOG_HEADER);
    fflush(r->log);
}

/* One CSV row; a NAN value is an empty cell. */
static void log_row(TrainRun *r, int iter, const char *event, double lr, double train_loss, double val_loss,
                    double tok_per_s) {
    if (!r->log) return;
    char cells[4][32];
    const double v[4] = {lr, train_loss, val_loss, tok_per_s};
    for (int i = 0; i < 4; i++) {
        if (isnan(v[i])) cells[i][0] = '\0';
        else snprintf(cells[i], sizeof cells[i], i == 3 ? "%.0f" : "%.6g", v[i]);
    }
    fprintf(r->log, "%d,%.0f,%.6e,%s,%s,%s,%s,%zu,%s,%s,%016llx\n", iter, r->ts.train_tokens, r->ts.train_flops,
            cells[0], cells[1], cells[2], cells[3], model_num_params(&r->m, 1), event,
            arch_name(r->m.cfg.arch), (unsigned long long)r->ts.run_id);
    fflush(r->log);
}

static void account_step(TrainRun *r) {
    double tokens = (double)step_sequences(r) * r->m.cfg.block_size;
    r->ts.train_tokens += tokens;
    r->ts.train_flops += tokens * r->flops_per_token;
}

/* On a terminal the progress line is redrawn in place; anything else printed
 * meanwhile first clears it. */
static void clear_bar(TrainRun *r) {
    if (!r->bar_shown) return;
    fputs("\r\033[K", stdout);
    r->bar_shown = 0;
}

static void draw_bar(TrainRun *r, int iter, float loss, double tok_s, const char *eta) {
    enum { WIDTH = 24 };
    int max = r->a->tc.max_iters, filled = max > 0 ? (int)((long)WIDTH * iter / max) : WIDTH;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
    bar[WIDTH] = '\0';
    printf("\r\033[K[%s] iter %d/%d, loss %.4f, %.0f tok/s, ETA %s", bar, iter, max, loss, tok_s, eta);
    flush_output();
    r->bar_shown = 1;
}
/* ---------------- end of data accounting ---------------- */

/* --lr-schedule / --decay-frac over the preset's or the checkpoint's. */
static void apply_lr_schedule_flags(TrainArgs *a) {
    if (a->lr_schedule >= 0) a->tc.lr_schedule = a->lr_schedule;
    if (a->tc.lr_schedule != LR_WSD) {
        if (a->decay_frac > 0) tf_die("--decay-frac is for --lr-schedule wsd (this run's schedule is cosine)");
        a->tc.decay_frac = 0.0f; /* so that a cosine checkpoint stays as before wsd existed */
        return;
    }
    if (a->decay_frac > 0) a->tc.decay_frac = a->decay_frac;
    else if (!(a->tc.decay_frac > 0)) a->tc.decay_frac = WSD_DEFAULT_DECAY_FRAC;
}

/* Model, vocabulary and state: from --resume, or fresh from the text. */
static void setup_model(TrainRun *r, const Ops *ops, const Text *chars) {
    TrainArgs *a = r->a;
    char err[TF_ERRLEN];
    train_state_init(&r->ts);
    if (a->resume) {
        setup_resume(a, ops, &r->m, &r->vocab, &r->ts);
    } else {
        if (a->bytes) vocab_bytes(&r->vocab);
        else if (vocab_build(&r->vocab, chars->alphabet, (size_t)chars->n_alphabet, err))
            tf_die("%s: %s", a->file, err);
        a->mc.vocab_size = r->vocab.size;
        if (model_create(&r->m, &a->mc, NULL, ops, err)) tf_die("%s", err);
        model_init_weights(&r->m, a->tc.seed);
        Rng rng;
        rng_seed(&rng, a->tc.seed);
        r->ts.data_rng = rng.state;
    }
    apply_lr_schedule_flags(a);
    if (train_config_validate(&a->tc, err)) tf_die("%s", err);
    r->ts.train = a->tc;
    r->ts.has_train = 1;
}

/* "N", or "LO-HI" when grow gave the layers (or the attention Pattentions) different row counts. */
static void format_rows(const Model *m, int w_lo, int w_hi, char *buf, size_t len) {
    int lo = 1 << 30, hi = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int w = w_lo; w <= w_hi; w++) {
            int n = model_patt_rows(m, l, w);
            lo = n < lo ? n : lo;
            hi = n > hi ? n : hi;
        }
    if (lo == hi) snprintf(buf, len, "%d", lo);
    else snprintf(buf, len, "%d-%d", lo, hi);
}

/* Said after the setup, so that a setup error stays the only line on stderr. */
static void warn_unreached_warmup(const TrainRun *r) {
    const TrainConfig *t = &r->a->tc;
    int stage_len = t->max_iters - r->ts.stage_start;
    if (t->warmup_iters >= stage_len)
        tf_warn("--warmup-iters %d is not shorter than the %d iterations of this schedule: the peak lr %g is "
                "never reached", t->warmup_iters, stage_len, t->lr);
}

static void print_run_header(const TrainRun *r) {
    const ModelConfig *c = &r->m.cfg;
    char attn[32], ffn[32];
    format_rows(&r->m, PATT_Q, PATT_O, attn, sizeof attn);
    format_rows(&r->m, PATT_FFN, PATT_FFN, ffn, sizeof ffn);
    if (c->arch == ARCH_TOKENFORMER)
        printf("model: %s, %d layers, d=%d, %d heads, n_attn=%s, n_ffn=%s, T=%d, vocab=%d, pnorm=%s\n",
               arch_name(c->arch), c->n_layer, c->d_model, c->n_head, attn, ffn, c->block_size,
               c->vocab_size, pnorm_name(c->pnorm));
    else
        printf("model: %s, %d layers, d=%d, %d heads, ffn width=%s, T=%d, vocab=%d\n",
               arch_name(c->arch), c->n_layer, c->d_model, c->n_head, ffn, c->block_size,
               c->vocab_size);
    printf("parameters: %zu (%zu without the embedding)\n", model_num_params(&r->m, 1),
           model_num_params(&r->m, 0));
    char test[48] = "";
    if (r->ts.split[2]) snprintf(test, sizeof test, " / %zu test", r->data.n - r->data.n_train - r->data.n_val);
    char layout[96] = "";
    if (r->a->tc.grad_accum > 1 || r->dist.world > 1)
        snprintf(layout, sizeof layout, " (%d rank%s x %d micro-batch%s of %d)", r->dist.world,
                 r->dist.world == 1 ? "" : "s", r->a->tc.grad_accum, r->a->tc.grad_accum == 1 ? "" : "es",
                 r->a->tc.batch_size);
    printf("data: %s, %zu train / %zu val%s %s; batch %d x %d%s; %d iterations\n", r->a->file, r->data.n_train,
           r->data.n_val, test, r->vocab.bytes ? "bytes" : "characters", step_sequences(r), c->block_size,
           layout, r->a->tc.max_iters);
    const TrainConfig *t = &r->a->tc;
    printf("train: lr %g (min %g, warmup %d), dropout %g, rope_frac %g, weight decay %g, "
           "grad clip %g, seed %llu; eval every %d iterations over %d batches\n",
           t->lr, t->min_lr, t->warmup_iters, c->dropout, c->rope_frac, t->weight_decay,
           t->grad_clip, (unsigned long long)t->seed, t->eval_interval, t->eval_iters);
    flush_output();
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
    /* on a FLOPs grid every evaluation reads the same batches (those of iteration 0) */
    int batches_of = r->a->eval_every_flops > 0 ? 0 : iter;
    float tl = estimate_loss(&r->m, &r->data, SPLIT_TRAIN, tc, batches_of, r->tok, r->tgt);
    float vl = estimate_loss(&r->m, &r->data, SPLIT_VAL, tc, batches_of, r->tok, r->tgt);
    clear_bar(r);
    printf("step %d: train loss %.4f, val loss %.4f, flops %.3e\n", iter, tl, vl, r->ts.train_flops);
    flush_output();
    log_row(r, iter, "eval", NAN, tl, vl, NAN);
    if (!isfinite(tl) || !isfinite(vl)) { /* saving now would replace the last good checkpoint */
        if (is_rank0(r)) report_nonfinite(isfinite(tl) ? "val loss" : "train loss", iter, r->latest);
        return -1;
    }
    mark_position(r, iter);
    if (!is_rank0(r)) { /* the others hold the same weights: rank 0 alone writes */
        r->t_last = tf_now_seconds();
        r->timed_steps = 0;
        return 0;
    }
    if (vl < r->ts.best_val) r->ts.best_val = vl;
    if (vl == r->ts.best_val && vl < r->best_on_disk) { /* never replace a better model of another run */
        save_or_die(r->best, &r->m, &r->vocab, &r->ts);
        r->best_on_disk = vl;
        r->wrote_best = 1;
    }
    save_or_die(r->latest, &r->m, &r->vocab, &r->ts);
    r->t_last = tf_now_seconds(); /* keep evaluation out of the step timing */
    r->timed_steps = 0;
    return 0;
}

/* The dropout seed of micro-batch g (counted over all ranks) of a step: the
 * first keeps the single-batch seed, so one rank without accumulation draws
 * the masks it always did. Other layouts draw other (equally random) masks:
 * equal losses across layouts hold with dropout 0. */
static uint64_t micro_batch_dropout_seed(uint64_t step_seed, int g) {
    return g == 0 ? step_seed : tf_mix64(step_seed + 0xd1b54a32d192ed03ULL * (uint64_t)g);
}

/* Forward and backward of this rank's micro-batches, gradients summed over
 * the ranks: the gradient of the mean loss over the whole step's windows.
 * Returns that mean loss (the same on every rank). */
static float accumulate_gradients(TrainRun *r, int iter) {
    const TrainConfig *tc = &r->a->tc;
    int B = tc->batch_size, T = r->m.cfg.block_size, K = tc->grad_accum, W = r->dist.world;
    /* Every rank draws the whole step's windows, so that the generator moves
     * as in a single process with batch W*K*B; rank r keeps [rKB, (r+1)KB). */
    dataset_batch(&r->data, SPLIT_TRAIN, &r->data_rng, step_sequences(r), T, r->step_tok, r->step_tgt);
    uint64_t step_seed = tf_mix64(tc->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)iter);
    float loss_scale = 1.0f / (float)(K * W), loss_sum = 0.0f;
    model_zero_grad(&r->m);
    for (int k = 0; k < K; k++) {
        int g = r->dist.rank * K + k;
        size_t at = (size_t)g * B * T;
        loss_sum += model_forward(&r->m, r->step_tok + at, r->step_tgt + at, B, T, 1,
                                  micro_batch_dropout_seed(step_seed, g));
        model_backward_scaled(&r->m, loss_scale);
    }
    dist_allreduce_sum(&r->dist, r->m.grad_mem, r->m.n_grad_elems);
    /* The mean loss, and whether some rank was asked to stop, agreed by all. */
    float shared[2] = {loss_sum, (g_stop_requested || g_stdout_errno) ? 1.0f : 0.0f};
    dist_allreduce_host(&r->dist, shared, 2);
    r->stop_agreed = shared[1] > 0.0f;
    return shared[0] / (float)(K * W);
}

/* One optimizer step on a fresh batch; -1 when the loss or gradient is not finite. */
static int train_one_step(TrainRun *r, int iter, float *lr_out, float *norm_out) {
    const TrainConfig *tc = &r->a->tc;
    float lr = lr_schedule_at(tc, r->ts.stage_start, iter);
    float loss = accumulate_gradients(r, iter);
    model_clip_and_update(&r->m, lr, tc, isfinite(loss), norm_out);
    if (!isfinite(loss) || !isfinite(*norm_out)) {
        clear_bar(r);
        if (is_rank0(r)) report_nonfinite(isfinite(loss) ? "gradient norm" : "loss", iter, r->latest);
        return -1;
    }
    account_step(r);
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
    double tok_s = (double)step_sequences(r) * r->m.cfg.block_size / dt;
    float loss = r->loss_acc / r->loss_count;
    if (isatty(STDOUT_FILENO))
        draw_bar(r, iter + 1, loss, tok_s, eta);
    else
        printf("iter %d/%d: loss %.4f, lr %.2e, norm %.2f, %.1f ms/iter, %.0f tok/s, ETA %s\n", iter + 1,
               tc->max_iters, loss, lr, norm, dt * 1e3, tok_s, eta);
    flush_output();
    log_row(r, iter + 1, "progress", lr, loss, NAN, tok_s);
    r->t_last = now;
    r->timed_steps = 0;
    r->loss_acc = 0.0f;
    r->loss_count = 0;
}

/* "tokenformer train TEXT --resume LATEST": the command that continues this run. */
static void resume_command(const TrainRun *r, char *out, size_t len) {
    char text[1024], latest[1024];
    shell_quote(r->a->file, text, sizeof text);
    shell_quote(r->latest, latest, sizeof latest);
    snprintf(out, len, "tokenformer train %s --resume %s", text, latest);
}

/* A signal, or a stdout that can no longer be written (the reader of a pipe
 * went away, a full disk): save the latest checkpoint and stop. */
static int stop_early(TrainRun *r, int iter) {
    mark_position(r, iter);
    if (!is_rank0(r)) return g_stop_requested ? 130 : 1; /* rank 0 saves */
    save_or_die(r->latest, &r->m, &r->vocab, &r->ts);
    char again[2200];
    resume_command(r, again, sizeof again);
    if (!g_stop_requested && !g_stdout_errno) { /* another rank was asked to stop */
        printf("stopped: another rank was interrupted before iteration %d: saved %s; continue with: %s\n",
               iter, r->latest, again);
        flush_output();
        return 130;
    }
    if (g_stop_requested) {
        printf("interrupted (signal %d) before iteration %d: saved %s; continue with: %s\n",
               (int)g_stop_requested, iter, r->latest, again);
        flush_output();
        if (g_stdout_errno)
            fprintf(stderr, "tokenformer: interrupted before iteration %d: saved %s\n", iter, r->latest);
        return 130;
    }
    fprintf(stderr, "tokenformer: error: writing to standard output failed (%s): stopped before iteration %d, "
            "saved %s; continue with: %s\n", strerror(g_stdout_errno), iter, r->latest, again);
    return g_stdout_errno == EPIPE ? 130 : 1;
}

/* The last line names only files that exist: a resumed run whose evaluations
 * never beat the checkpoint's best has written no best file of its own. */
static void print_summary(const TrainRun *r) {
    char took[32];
    format_duration(tf_now_seconds() - r->t_launch, took, sizeof took);
    if (r->wrote_best || (r->best_on_disk == r->ts.best_val && access(r->best, F_OK) == 0))
        printf("done in %s: best val loss %.4f (%s), latest %s\n", took, r->ts.best_val, r->best, r->latest);
    else if (access(r->best, F_OK) == 0)
        printf("done in %s: best val loss %.4f; %s kept (it holds val loss %.4f), latest %s\n", took,
               r->ts.best_val, r->best, r->best_on_disk, r->latest);
    else
        printf("done in %s: best val loss %.4f (from the checkpoint; no better model, so no best file), latest %s\n",
               took, r->ts.best_val, r->latest);
}

/* Where this run writes: paths, the lock, and what `best` already holds. */
static void prepare_outputs(TrainRun *r) {
    TrainArgs *a = r->a;
    static char derived[4096]; /* a->out points here for the rest of the run */
    if (!a->out && a->resume) {
        default_out_for_resume(a->resume, derived, sizeof derived);
        a->out = derived;
    }
    if (!a->out) a->out = "out";
    output_paths(a->out, r->latest, r->best, sizeof r->latest);
    tf_require_writable_target("--out", r->latest);
    tf_require_writable_target("--out", r->best);
    output_set_lock(r->latest, "--out");
    check_existing_outputs(r);
    printf("writing %s and %s\n", r->latest, r->best);
}

/* ---------------- budgets, FLOPs grid, growth inside the run ---------------- */

/* Every eval_interval iterations, or (--eval-every-flops X) at the first
 * iteration at or past each multiple of X cumulative training FLOPs. */
static int evaluation_due(TrainRun *r, int iter) {
    double x = r->a->eval_every_flops;
    if (!(x > 0)) return iter % r->a->tc.eval_interval == 0;
    if (r->ts.train_flops < r->next_eval_flops) return 0;
    r->next_eval_flops = (floor(r->ts.train_flops / x) + 1.0) * x;
    return 1;
}

/* The points not reached yet, with their iterations, for the checkpoint. */
static void record_grow_plan(TrainRun *r) {
    char *out = r->ts.grow_plan;
    size_t cap = sizeof r->ts.grow_plan, used = 0;
    out[0] = '\0';
    for (int k = r->next_grow; k < r->a->grow.n; k++) {
        const GrowPoint *p = &r->a->grow.p[k];
        int n = snprintf(out + used, cap - used, "%s%d:%s", used ? "," : "", p->iter, strchr(p->text, ':') + 1);
        if (n < 0 || (size_t)n >= cap - used) tf_die("--grow: the growth plan is longer than %zu bytes", cap - 1);
        used += (size_t)n;
    }
}

/* A resumed run takes the points its checkpoint had not reached. */
static void resume_grow_plan(TrainRun *r) {
    char err[TF_ERRLEN];
    if (!r->ts.grow_plan[0]) return;
    if (grow_schedule_parse(r->ts.grow_plan, &r->a->grow, err)) tf_die("%s: %s", r->a->resume, err);
    printf("growth plan from the checkpoint: %s\n", r->ts.grow_plan);
}

/* --flops-budget, --tokens-budget and --grow: the run's length and the
 * iteration of every growth point, before any training. */
static void plan_run(TrainRun *r) {
    TrainArgs *a = r->a;
    if (a->resume) resume_grow_plan(r);
    if (!(a->flops_budget > 0 || a->tokens_budget > 0 || a->grow.n)) return;
    char err[TF_ERRLEN];
    ModelShape *shape = tf_malloc(sizeof *shape, "model shape");
    model_shape_of(&r->m, shape);
    double tokens_per_iter = (double)step_sequences(r) * r->m.cfg.block_size;
    int max_iters = a->tc.max_iters;
    int rc = grow_schedule_plan(&a->grow, shape, r->m.ops, a->flops_budget, a->tokens_budget, tokens_per_iter,
                                &max_iters, err);
    free(shape);
    if (rc) tf_die("%s", err);
    a->tc.max_iters = r->ts.train.max_iters = max_iters;
    record_grow_plan(r);
}

/* "plan:" lines, which scripts read: the derived length and growth iterations. */
static void print_plan(const TrainRun *r) {
    const TrainArgs *a = r->a;
    if (a->flops_budget > 0) printf("plan: %d iterations for a budget of %.6e FLOPs\n", a->tc.max_iters, a->flops_budget);
    if (a->tokens_budget > 0) printf("plan: %d iterations for a budget of %.6e tokens\n", a->tc.max_iters, a->tokens_budget);
    for (int k = 0; k < a->grow.n; k++) printf("plan: grow %s at iteration %d\n", a->grow.p[k].text, a->grow.p[k].iter);
    if (a->tc.lr_schedule == LR_WSD)
        printf("schedule: wsd, decay over the last %g of each stage\n", a->tc.decay_frac);
}

/* A growth point: the same functions and default recipe as `grow`, then
 * the grown stage that `train --resume` gives a just-grown checkpoint. The val
 * loss just before and after (the same batches) says what the growth did. */
static void grow_in_run(TrainRun *r, int iter) {
    const GrowPoint *p = &r->a->grow.p[r->next_grow++];
    char err[TF_ERRLEN];
    size_t before = model_num_params(&r->m, 1);
    float loss_before = estimate_loss(&r->m, &r->data, SPLIT_VAL, &r->a->tc, iter, r->tok, r->tgt);
    mark_position(r, iter); /* the growth history records the iteration */
    if (grow_point_apply(&r->m, &r->ts, p, r->a->tc.seed, err))
        tf_die("--grow: '%s' at iteration %d: %s", p->text, iter, err);
    if (model_alloc_activations(&r->m, r->a->tc.batch_size, r->m.cfg.block_size, err)) tf_die("%s", err);
    r->flops_per_token = model_train_flops_per_token(&r->m);
    if (r->flops_per_token != p->flops_per_token) /* the plan would miss the budget */
        tf_warn("--grow: '%s' gave %.6e FLOPs per token where the plan expected %.6e; the run may not end at "
                "its budget", p->text, r->flops_per_token, p->flops_per_token);
    int rewarm = start_grown_stage(&r->ts, &r->a->tc, iter);
    record_grow_plan(r);
    float loss_after = estimate_loss(&r->m, &r->data, SPLIT_VAL, &r->a->tc, iter, r->tok, r->tgt);
    clear_bar(r);
    printf("grow %s at iteration %d: %zu -> %zu parameters, val loss before %.6f, after %.6f; %s, "
           "the schedule ends at %d\n", p->text, iter, before, model_num_params(&r->m, 1), loss_before, loss_after,
           rewarm ? "warmup restarts" : "the wsd schedule continues", r->a->tc.max_iters);
    flush_output();
    log_row(r, iter, "grow", NAN, NAN, NAN, NAN);
}

/* The loop: evaluate every eval_interval (and at the end), stop cleanly on a
 * signal, step, log. Returns the exit status. */
static int train_loop(TrainRun *r) {
    const TrainConfig *tc = &r->a->tc;
    install_signal_handlers();
    r->t_start = r->t_last = tf_now_seconds();
    r->first_iter = r->ts.iter;
    for (int iter = r->ts.iter;; iter++) {
        if (r->next_grow < r->a->grow.n && r->a->grow.p[r->next_grow].iter == iter) grow_in_run(r, iter);
        int last = iter >= tc->max_iters || (r->a->stop_at && iter >= r->a->stop_at);
        if ((evaluation_due(r, iter) || last) && evaluate_and_save(r, iter)) return 1;
        if (last) break;
        /* Data-parallel ranks stop together, at the step after any of them was asked. */
        if (r->dist.world > 1 ? r->stop_agreed : (g_stop_requested || g_stdout_errno)) {
            clear_bar(r);
            return stop_early(r, iter);
        }
        float lr, norm;
        if (train_one_step(r, iter, &lr, &norm)) return 1;
        if ((iter + 1) % tc->log_interval == 0) print_progress(r, iter, lr, norm);
    }
    clear_bar(r);
    print_summary(r);
    return tf_finish_stdout(0);
}

/* Every rank must start from the same weights (the same seed, or the same
 * checkpoint). A CRC of them is compared across ranks in 4-bit pieces, with
 * their squares: float sums carry those exactly, and sum(x) = W x and
 * sum(x^2) = W x^2 hold on a rank only when every rank has x. */
static void check_same_weights(TrainRun *r) {
    if (r->dist.world == 1) return;
    size_t bytes = r->m.n_param_elems * sizeof(float);
    float *host = tf_malloc(bytes, "weights check");
    r->m.ops->to_host(r->m.ops, host, r->m.param_mem, bytes);
    uint32_t crc = crc32_update(0, host, bytes);
    crc = crc32_update(crc, r->m.tau, sizeof(float) * (size_t)r->m.cfg.n_layer * PATT_PER_LAYER);
    free(host);
    float W = (float)r->dist.world;
    for (int half = 0; half < 2; half++) {
        float v[8], own[8];
        for (int i = 0; i < 4; i++) {
            float x = (float)((crc >> (16 * half + 4 * i)) & 15u);
            own[i] = v[i] = x;
            own[4 + i] = v[4 + i] = x * x;
        }
        dist_allreduce_host(&r->dist, v, 8);
        for (int i = 0; i < 8; i++)
            if (v[i] != W * own[i])
                tf_die("data parallel: the ranks do not start from the same weights (a different --seed or "
                       "checkpoint on some rank?)");
    }
}

/* Data-parallel ranks from the launcher's environment (a world of one
 * without): every rank but 0 trains silently, on GPU LOCAL_RANK. */
static void start_ranks(TrainRun *r) {
    char err[TF_ERRLEN];
    if (dist_from_env(&r->dist, err)) tf_die("%s", err);
    if (r->dist.world == 1) return;
    if (dist_select_device(&r->dist, err)) tf_die("%s", err); /* first: it says when there is no GPU at all */
    if (!strcmp(r->a->common.device, "cpu"))
        tf_die("data parallel (%s, world %d) runs on GPUs only: drop --device cpu", r->dist.launcher,
               r->dist.world);
    if (r->dist.rank != 0 && !freopen("/dev/null", "w", stdout))
        tf_die("rank %d: cannot silence standard output: %s", r->dist.rank, strerror(errno));
}

int cmd_train(int argc, char **argv) {
    double t_launch = tf_now_seconds();
    TrainArgs a;
    parse_train_args(argc, argv, &a);
    char err[TF_ERRLEN];
    Text chars = {0};
    /* A fresh run's tokenizer is --tokenizer; a resumed one's, the checkpoint's. */
    TextRecord text;
    if (!a.resume && !a.file) a.file = "data/input.txt";
    if (!a.resume && text_load(a.file, a.bytes, &chars, &text, err)) tf_die("%s", err);

    TrainRun r;
    memset(&r, 0, sizeof r);
    r.a = &a;
    r.t_launch = t_launch;
    start_ranks(&r);
    /* Quiet until the setup has succeeded, so that an error is the only line on stderr. */
    const Ops *ops = cli_open_device(a.common.device, a.common.threads, 1);
    if (dist_start(&r.dist, ops, err)) tf_die("%s", err);
    setup_model(&r, ops, &chars);
    cli_set_model_precision(&r.m, a.common.precision);
    check_same_weights(&r);
    plan_run(&r);
    if (a.split_seen) memcpy(r.ts.split, a.split, sizeof r.ts.split);
    int other_text = a.resume ? read_resume_text(&r, &chars, &text) : 0;
    record_lineage(&r, &text, other_text);
    check_log(&r);
    /* Loading is not training, but the summary's "done in" counts it too: said always. */
    setup_dataset(&r.data, &chars, &r.vocab, r.m.cfg.block_size, r.ts.split, a.file, 1);
    int B = a.tc.batch_size, T = r.m.cfg.block_size;
    if (model_alloc_activations(&r.m, B, T, err)) tf_die("%s", err);
    if (is_rank0(&r)) prepare_outputs(&r);
    cli_open_device(a.common.device, a.common.threads, 0); /* the same device again (cached): prints its line */
    cli_report_precision(ops, a.common.precision);
    print_run_header(&r);
    print_plan(&r);
    if (a.stop_at && a.stop_at < a.tc.max_iters)
        printf("stopping at iteration %d; the schedule ends at iteration %d\n", a.stop_at, a.tc.max_iters);
    else if (a.stop_at)
        tf_warn("--stop-at %d is not before the schedule's end (--max-iters %d): the run ends there and "
                "--stop-at changes nothing", a.stop_at, a.tc.max_iters);
    warn_unreached_warmup(&r);
    if (g_stdout_errno) tf_die("writing to standard output failed: %s", strerror(g_stdout_errno));

    r.tok = setup_batch(B, T, &r.tgt);
    r.step_tok = setup_batch(step_sequences(&r), T, &r.step_tgt); /* every rank's and micro-batch's windows */
    r.data_rng.state = r.ts.data_rng;
    r.flops_per_token = model_train_flops_per_token(&r.m);
    open_log(&r);
    if (a.resume) log_row(&r, r.ts.iter, just_grown(&r.m) ? "grow" : "resume", NAN, NAN, NAN, NAN);
    int status = train_loop(&r);
    dist_finish(&r.dist);
    if (r.log && fclose(r.log)) tf_warn("--log: error writing '%s'", a.log_path);
    free(r.tok);
    free(r.step_tok);
    dataset_free(&r.data);
    vocab_free(&r.vocab);
    model_free(&r.m);
    return status;
}
