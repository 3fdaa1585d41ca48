/* Helpers shared by the commands: device selection, flag values, and the
 * table of config flags (one row per overridable field). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "common.h"
#include "cpu_threads.h"
#include "gpu_presence.h"

/* Why --device auto chose what it did, for the device line. */
static void describe_auto_choice(const Ops *chosen, char *out, size_t out_len) {
    char why[TF_ERRLEN] = "";
    if (strcmp(chosen->name, "cpu") != 0) {
        snprintf(out, out_len, "; auto: a usable GPU was found");
        return;
    }
    ops_cuda(why, sizeof why); /* the answer auto got, cached: writes why it was NULL */
    snprintf(out, out_len, "; auto: %s%s", gpu_none_on_host() ? "" : "no usable GPU: ", why);
}

void cli_threads_for_decoding(const Ops *ops, const Model *m) {
    if (!ops_is_cpu(ops)) return;
    size_t largest = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].t.ndim == 2 && tensor_numel(&m->params[i].t) > largest)
            largest = tensor_numel(&m->params[i].t);
    cpu_threads_for_decoding(largest);
}

const Ops *cli_open_device(const char *name, int threads, int quiet) {
    char err[TF_ERRLEN];
    const Ops *o = ops_by_name(name, err, sizeof err);
    if (!o) tf_die("%s", err);
    static int warned_threads; /* train opens the device twice */
    if (threads > cpu_cores() && !warned_threads++)
        tf_warn("--threads %d: this machine has %d cores; threads beyond them only take turns (slower, not faster)",
                threads, cpu_cores());
    if (threads > 0) cpu_threads_set(threads);
    if (!quiet) {
        char choice[TF_ERRLEN + 64] = "";
        if (strcmp(name, "auto") == 0) describe_auto_choice(o, choice, sizeof choice);
        if (ops_is_cpu(o))
            fprintf(stderr, "device: cpu (%d threads)%s\n", cpu_threads(), choice);
        else
            fprintf(stderr, "device: %s (%s)%s\n", o->name, o->device, choice);
    }
    return o;
}

void cli_report_precision(const Ops *ops, int precision) {
    if (!ops_is_cpu(ops))
        fprintf(stderr, "matmul precision: %s\n", matmul_precision_name(precision));
    else if (precision != MATMUL_FP32)
        fprintf(stderr, "note: --precision %s has no effect on the CPU (it computes in fp32)\n",
                matmul_precision_name(precision));
}

void cli_set_model_precision(Model *m, int requested) {
    char err[TF_ERRLEN];
    int precision = ops_is_cpu(m->ops) ? MATMUL_FP32 : requested;
    if (model_set_precision(m, precision, err)) tf_die("%s", err);
}

int cli_precision(const char *value) {
    int p = matmul_precision_parse(value);
    if (p < 0) tf_die("--precision: expected fp32, tf32 or bf16, got '%s'", value ? value : "");
    return p;
}

long cli_int(const char *flag, const char *value, long lo, long hi) {
    long v;
    if (tf_parse_int(value, lo, hi, &v))
        tf_die("%s: expected an integer in [%ld, %ld], got '%s'", flag, lo, hi, value ? value : "");
    return v;
}

double cli_float(const char *flag, const char *value, double lo, double hi) {
    double v;
    if (tf_parse_float(value, lo, hi, &v))
        tf_die("%s: expected a number in [%g, %g], got '%s'", flag, lo, hi, value ? value : "");
    return v;
}

/* Whether arg is a cluster of short options ("-xyz") that holds c. */
static int short_cluster_has(const char *arg, int c) {
    return arg && arg[0] == '-' && arg[1] && arg[1] != '-' && strchr(arg + 1, c);
}

void cli_unknown_flag(const char *cmd, char **argv) {
    /* getopt leaves optind on the element it is inside while it walks a
     * cluster of short options, and moves past it after its last one. */
    if (optopt > ' ' && optopt < 0x7f) {
        const char *arg = short_cluster_has(argv[optind - 1], optopt) && optind > 1 ? argv[optind - 1]
                          : short_cluster_has(argv[optind], optopt)                 ? argv[optind]
                                                                                    : NULL;
        if (arg)
            tf_die("%s: unknown option '-%c' in '%s' (see 'tokenformer %s --help'; a file name starting with '-' "
                   "needs a path like ./%s)", cmd, optopt, arg, cmd, arg);
    }
    tf_die("%s: unknown or malformed option '%s' (see 'tokenformer %s --help')", cmd,
           argv[optind - 1], cmd);
}

typedef enum { F_INT, F_FLOAT, F_U64 } FieldType;

typedef struct {
    const char *flag;
    FieldType type;
    int is_model;
    size_t offset;
    double lo, hi;
    const char *help;
} ConfigFlag;

#define MF(field) 1, offsetof(ModelConfig, field)
#define TF(field) 0, offsetof(TrainConfig, field)
static const ConfigFlag FLAGS[] = {
    {"n-layer", F_INT, MF(n_layer), 1, 256, "number of blocks"},
    {"d-model", F_INT, MF(d_model), 1, 65536, "model width d"},
    {"n-head", F_INT, MF(n_head), 1, 65536, "attention heads (must divide d-model)"},
    {"n-attn", F_INT, MF(n_attn), 1, 1 << 20, "parameter tokens of each attention Pattention"},
    {"n-ffn", F_INT, MF(n_ffn), 1, PATT_MAX_ROWS, "parameter tokens of the FFN Pattention"},
    {"block-size", F_INT, MF(block_size), 1, 65536, "context length T"},
    {"rope-frac", F_FLOAT, MF(rope_frac), 0, 1, "fraction of head dims with RoPE"},
    {"dropout", F_FLOAT, MF(dropout), 0, 0.999, "dropout on the branch outputs"},
    {"batch-size", F_INT, TF(batch_size), 1, 65536, "sequences per step B"},
    {"max-iters", F_INT, TF(max_iters), 0, 1 << 30, "training iterations"},
    {"lr", F_FLOAT, TF(lr), 1e-9, 9.99, "peak learning rate"},
    {"min-lr", F_FLOAT, TF(min_lr), 0, 9.99, "cosine floor (default lr/10)"},
    {"warmup-iters", F_INT, TF(warmup_iters), 0, 1 << 30, "linear warmup iterations"},
    {"weight-decay", F_FLOAT, TF(weight_decay), 0, 100, "AdamW decoupled weight decay"},
    {"beta1", F_FLOAT, TF(beta1), 0, 0.999999, "AdamW beta1"},
    {"beta2", F_FLOAT, TF(beta2), 0, 0.999999, "AdamW beta2"},
    {"grad-clip", F_FLOAT, TF(grad_clip), 0, 1e6, "global grad-norm clip (0: off)"},
    {"eval-interval", F_INT, TF(eval_interval), 1, 1 << 30, "iterations between evaluations"},
    {"eval-iters", F_INT, TF(eval_iters), 1, 1 << 20, "batches per evaluation"},
    {"log-interval", F_INT, TF(log_interval), 1, 1 << 30, "iterations between progress lines"},
    {"seed", F_U64, TF(seed), 0, 0, "random seed"},
    {"grad-accum", F_INT, TF(grad_accum), 1, 65536, "micro-batches per step (batch K x B)"},
    {"new-row-lr-mult", F_FLOAT, TF(new_row_lr_mult), 1e-6, 1000, "lr x M for rows of the latest grow"},
};
#define N_FLAGS ((int)(sizeof FLAGS / sizeof FLAGS[0]))
/* CLI_CONFIG_OPTIONS below lists OPT(0)..OPT(22) by hand: keep the two in step. */
_Static_assert(sizeof FLAGS / sizeof FLAGS[0] == 23, "update CLI_CONFIG_OPTIONS");
_Static_assert(sizeof FLAGS / sizeof FLAGS[0] < CLI_MAX_CONFIG_FLAGS, "raise CLI_MAX_CONFIG_FLAGS");

const struct option CLI_CONFIG_OPTIONS[] = {
#define OPT(i) {FLAGS[i].flag, required_argument, NULL, CLI_CONFIG_OPT_BASE + i}
    OPT(0), OPT(1), OPT(2), OPT(3), OPT(4), OPT(5), OPT(6), OPT(7), OPT(8), OPT(9), OPT(10),
    OPT(11), OPT(12), OPT(13), OPT(14), OPT(15), OPT(16), OPT(17), OPT(18), OPT(19), OPT(20), OPT(21), OPT(22),
#undef OPT
    {"pnorm", required_argument, NULL, CLI_CONFIG_OPT_BASE + N_FLAGS},
    {"arch", required_argument, NULL, CLI_CONFIG_OPT_BASE + N_FLAGS + 1},
    {0, 0, 0, 0}};

int cli_apply_config_flag(int opt, const char *value, ModelConfig *mc, TrainConfig *tc,
                          int *model_flag_seen) {
    int i = opt - CLI_CONFIG_OPT_BASE;
    if (i == N_FLAGS) {
        int mode = pnorm_parse(value);
        if (mode < 0) tf_die("--pnorm: expected l2_norm_gelu, gelu_l2_norm or softmax, got '%s'", value);
        mc->pnorm = mode;
        *model_flag_seen = 1;
        return 1;
    }
    if (i == N_FLAGS + 1) { /* not a model flag for --resume: it may confirm the checkpoint's */
        int arch = arch_parse(value);
        if (arch < 0) tf_die("--arch: unknown arch '%s' (expected %s)", value, arch_names());
        mc->arch = arch;
        return 1;
    }
    if (i < 0 || i > N_FLAGS) return 0;
    const ConfigFlag *f = &FLAGS[i];
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", f->flag);
    char *base = f->is_model ? (char *)mc : (char *)tc;
    if (f->is_model) *model_flag_seen = 1;
    if (f->type == F_INT) *(int *)(base + f->offset) = (int)cli_int(flag, value, (long)f->lo, (long)f->hi);
    else if (f->type == F_FLOAT) *(float *)(base + f->offset) = (float)cli_float(flag, value, f->lo, f->hi);
    else *(unsigned long long *)(base + f->offset) = (unsigned long long)cli_int(flag, value, 0, 0x7fffffffffffffffL);
    return 1;
}

void cli_print_config_help(void) {
    for (int i = 0; i < N_FLAGS; i++) {
        char left[40];
        snprintf(left, sizeof left, "--%s %s", FLAGS[i].flag, FLAGS[i].type == F_INT || FLAGS[i].type == F_U64 ? "N" : "X");
        printf("  %-22s %s\n", left, FLAGS[i].help);
    }
    printf("  %-22s %s\n", "--pnorm MODE", "l2_norm_gelu (default), gelu_l2_norm or softmax");
    printf("  %-22s %s\n", "--arch A", "tokenformer (default), transformer or transformerpp");
}

int cli_config_flag_seen(const int *seen, const char *flag) {
    if (!strcmp(flag, "arch")) return seen[N_FLAGS + 1];
    for (int i = 0; i < N_FLAGS; i++)
        if (!strcmp(FLAGS[i].flag, flag)) return seen[i];
    return 0;
}

void cli_apply_arch_defaults(ModelConfig *mc, const int *seen) {
    model_config_apply_arch_defaults(mc, cli_config_flag_seen(seen, "n-ffn"),
                                     cli_config_flag_seen(seen, "rope-frac"));
}

void cli_override_train_config(TrainConfig *dst, const TrainConfig *given, const int *seen) {
    for (int i = 0; i < N_FLAGS; i++) {
        const ConfigFlag *f = &FLAGS[i];
        if (f->is_model || !seen[i]) continue;
        size_t size = f->type == F_U64 ? sizeof(unsigned long long) : f->type == F_INT ? sizeof(int) : sizeof(float);
        memcpy((char *)dst + f->offset, (const char *)given + f->offset, size);
    }
}

const Preset *cli_preset_arg(int argc, char **argv, const char **given) {
    const char *name = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) name = argv[i + 1];
        else if (!strncmp(argv[i], "--preset=", 9)) name = argv[i] + 9;
    }
    const Preset *p = preset_find(name ? name : "tiny");
    if (!p) tf_die("--preset: unknown preset '%s' (expected %s)", name, preset_names());
    if (given) *given = name;
    return p;
}

/* ---------------- settings on --resume ---------------- */

/* A config field as text ("64", "0.001"), for the settings lines of --resume. */
static void config_field_text(const ConfigFlag *f, const void *base, char *out, size_t len) {
    const char *p = (const char *)base + f->offset;
    if (f->type == F_INT) snprintf(out, len, "%d", *(const int *)p);
    else if (f->type == F_FLOAT) snprintf(out, len, "%g", *(const float *)p);
    else snprintf(out, len, "%llu", *(const unsigned long long *)p);
}

static void append_item(char *out, size_t len, const char *item) {
    size_t used = strlen(out);
    snprintf(out + used, len - used, "%s%s", used ? ", " : "", item);
}

void cli_model_flags_differing(const int *seen, const ModelConfig *given, const ModelConfig *ckpt, char *out,
                               size_t len) {
    out[0] = '\0';
    for (int i = 0; i < N_FLAGS; i++) {
        const ConfigFlag *f = &FLAGS[i];
        if (!f->is_model || !seen[i]) continue;
        char a[32], b[32], item[96];
        config_field_text(f, given, a, sizeof a);
        config_field_text(f, ckpt, b, sizeof b);
        snprintf(item, sizeof item, "--%s %s (checkpoint: %s)", f->flag, a, b);
        if (strcmp(a, b)) append_item(out, len, item);
    }
    if (seen[N_FLAGS] && given->pnorm != ckpt->pnorm) {
        char item[96];
        snprintf(item, sizeof item, "--pnorm %s (checkpoint: %s)", pnorm_name(given->pnorm), pnorm_name(ckpt->pnorm));
        append_item(out, len, item);
    }
}

void cli_train_settings_changed(const TrainConfig *before, const TrainConfig *after, char *out, size_t len) {
    out[0] = '\0';
    for (int i = 0; i < N_FLAGS; i++) {
        const ConfigFlag *f = &FLAGS[i];
        if (f->is_model) continue;
        char a[32], b[32], item[96];
        config_field_text(f, before, a, sizeof a);
        config_field_text(f, after, b, sizeof b);
        snprintf(item, sizeof item, "--%s %s -> %s", f->flag, a, b);
        if (strcmp(a, b)) append_item(out, len, item);
    }
}
