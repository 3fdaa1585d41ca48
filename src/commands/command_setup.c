/* The commands' common flags and shared setup (command_setup.h). */
#include "command_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "lineage.h"

/* One row per common flag: its name, what its value is called and its
 * help, whose lines after the first are indented under the first. */
typedef struct {
    unsigned mask;
    const char *name, *metavar, *help;
} CommonFlag;

static const CommonFlag COMMON_FLAGS[] = {
    {COMMON_DEVICE, "device", "D", "cpu, cuda or auto (default auto: cuda when usable)"},
    {COMMON_THREADS, "threads", "N", "CPU threads (default: all cores)"},
    {COMMON_SEED, "seed", "S", "random seed (default 1337)"},
    {COMMON_PRECISION, "precision", "P",
     "GPU math: fp32 (default, the reference), tf32 (TF32\n"
     "GEMMs) or bf16 (bf16 tensor-core Pattentions and fused\n"
     "attention; fp32 weights, optimizer state and sums);\n"
     "the CPU computes in fp32 whatever is asked"},
    {COMMON_TF32, "tf32", NULL, "the same as --precision tf32"},
};
#define N_COMMON ((int)(sizeof COMMON_FLAGS / sizeof COMMON_FLAGS[0]))
_Static_assert(COMMON_OPT_BASE + sizeof COMMON_FLAGS / sizeof COMMON_FLAGS[0] < CLI_CONFIG_OPT_BASE,
               "common flags' getopt values run into the config flags'");

void common_args_init(CommonArgs *c, long default_seed) {
    c->device = "auto";
    c->threads = 0;
    c->seed = default_seed;
    c->precision = MATMUL_FP32;
}

void common_options(struct option *all, size_t cap, const struct option *own, size_t n_own, unsigned mask,
                    int with_config) {
    size_t n = 0, n_cfg = 0;
    while (with_config && CLI_CONFIG_OPTIONS[n_cfg].name) n_cfg++;
    if (n_own + N_COMMON + n_cfg + 1 > cap) tf_die("internal: the options do not fit in %zu", cap);
    memcpy(all, own, sizeof(struct option) * n_own);
    n = n_own;
    for (int i = 0; i < N_COMMON; i++)
        if (mask & COMMON_FLAGS[i].mask)
            all[n++] = (struct option){COMMON_FLAGS[i].name,
                                       COMMON_FLAGS[i].metavar ? required_argument : no_argument, NULL,
                                       COMMON_OPT_BASE + i};
    memcpy(all + n, CLI_CONFIG_OPTIONS, sizeof(struct option) * n_cfg);
    all[n + n_cfg] = (struct option){0, 0, 0, 0};
}

int common_apply(int opt, const char *value, CommonArgs *c) {
    int i = opt - COMMON_OPT_BASE;
    if (i < 0 || i >= N_COMMON) return 0;
    switch (COMMON_FLAGS[i].mask) {
    case COMMON_DEVICE: c->device = value; break;
    case COMMON_THREADS: c->threads = (int)cli_int("--threads", value, 1, 4096); break;
    case COMMON_SEED: c->seed = cli_int("--seed", value, 0, 0x7fffffffffffffffL); break;
    case COMMON_PRECISION: c->precision = cli_precision(value); break;
    case COMMON_TF32: c->precision = MATMUL_TF32; break;
    }
    return 1;
}

/* "  --flag V" padded to the help column, then the help, each further
 * line under the first. */
static void print_flag_help(const char *left, const char *help) {
    printf("  %-22s ", left);
    for (const char *p = help; *p; p++) {
        putchar(*p);
        if (*p == '\n') printf("%25s", "");
    }
    putchar('\n');
}

void common_print_help(unsigned mask, const char *seed_more) {
    for (int i = 0; i < N_COMMON; i++) {
        const CommonFlag *f = &COMMON_FLAGS[i];
        if (!(mask & f->mask)) continue;
        char left[40];
        snprintf(left, sizeof left, "--%s%s%s", f->name, f->metavar ? " " : "", f->metavar ? f->metavar : "");
        print_flag_help(left, f->help);
        if (f->mask == COMMON_SEED && seed_more) print_flag_help("", seed_more);
    }
    print_flag_help("-h, --help", "this help");
}

void setup_load_checkpoint(LoadedCheckpoint *lc, const char *path, const CommonArgs *c) {
    char err[TF_ERRLEN];
    lc->ops = cli_open_device(c->device, c->threads, 1);
    if (checkpoint_load(path, lc->ops, &lc->m, &lc->v, &lc->ts, err)) tf_die("%s", err);
    cli_set_model_precision(&lc->m, c->precision);
    if (c->precision != MATMUL_FP32) cli_report_precision(lc->ops, c->precision);
}

void setup_free_checkpoint(LoadedCheckpoint *lc) {
    vocab_free(&lc->v);
    model_free(&lc->m);
}

int setup_read_checkpoint_text(const TextChoice *tc, const TrainState *ts, const Vocab *v, Text *chars,
                               TextRecord *used, const char **path) {
    char err[TF_ERRLEN];
    int other = lineage_read_text(tc->given, tc->allow_other, tc->ckpt, &ts->text, v->bytes, tc->how, chars, used,
                                  path, err);
    if (other < 0) tf_die("%s", err);
    return other;
}

void setup_dataset(Dataset *d, Text *chars, const Vocab *v, int block_size, const int parts[3], const char *path,
                   int report_load) {
    char err[TF_ERRLEN];
    if (report_load || chars->seconds >= 1.0) text_print_loaded(path, chars); /* a quick load adds no line */
    if (dataset_from_text(d, chars, v, block_size, parts, err)) tf_die("%s: %s", path, err);
}

void setup_checkpoint_text(Dataset *d, const TextChoice *tc, const TrainState *ts, const Vocab *v, int block_size,
                           const int parts[3], const char **path) {
    Text chars;
    TextRecord used;
    const char *text;
    setup_read_checkpoint_text(tc, ts, v, &chars, &used, &text);
    setup_dataset(d, &chars, v, block_size, parts, text, 0);
    if (path) *path = text;
}

int *setup_batch(int B, int T, int **targets) {
    int *tokens = tf_malloc(sizeof(int) * (size_t)B * T * 2, "batch");
    *targets = tokens + (size_t)B * T;
    return tokens;
}
