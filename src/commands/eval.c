/* tokenformer eval: mean loss of a checkpoint on fixed, seeded batches, or
 * (--full) exactly over a whole split. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "command_setup.h"
#include "common.h"
#include "data.h"
#include "evaluate.h"

#define EVAL_COMMON_FLAGS (COMMON_RUN_FLAGS | COMMON_SEED)

static void eval_help(void) {
    printf("usage: tokenformer eval --ckpt CKPT [FILE] [options]\n"
           "\n"
           "Mean cross-entropy (nats and bits per character; per byte for a model of\n"
           "--tokenizer bytes) of a checkpoint on fixed,\n"
           "seeded batches of FILE's train (first 90%%) and val parts, so that two\n"
           "checkpoints can be compared on exactly the same data. FILE defaults to the\n"
           "text the checkpoint records (data/input.txt for older checkpoints); other text\n"
           "needs --allow-other-text. With --full, the exact mean over a whole split instead:\n"
           "non-overlapping windows of block_size, every token predicted once.\n"
           "\n"
           "options:\n"
           "  --ckpt CKPT            checkpoint to evaluate (required)\n"
           "  --full[=SPLIT]         exact loss over all of SPLIT: val (default), test or train\n"
           "  --split TRAIN,VAL[,TEST]  the text's parts (default: the checkpoint's, which\n"
           "                         is 90,10 unless train was given --split; enwik8: 90,5,5)\n"
           "  --allow-other-text     evaluate on FILE although it is not the recorded text\n"
           "                         (or on the recorded path although it has changed)\n"
           "  --batches N            batches per split (default 50)\n"
           "  --batch-size B         sequences per batch (default 16)\n");
    common_print_help(EVAL_COMMON_FLAGS, "(the batches: train's from 2S, val's from 2S+1)");
}

static int parse_split_name(const char *s, Split *out) {
    if (!strcmp(s, "val")) *out = SPLIT_VAL;
    else if (!strcmp(s, "test")) *out = SPLIT_TEST;
    else if (!strcmp(s, "train")) *out = SPLIT_TRAIN;
    else return -1;
    return 0;
}

static const char *split_label(Split s) { return s == SPLIT_TRAIN ? "train" : s == SPLIT_VAL ? "val" : "test"; }

/* --full: one line with the exact mean loss, bits per token and the count. */
/* What a token is, for "bits/char": a byte model's tokens are bytes. */
static const char *token_unit(const Vocab *v) { return v->bytes ? "byte" : "char"; }

static int eval_full(Model *m, const Dataset *d, Split split, int bs, const char *device, const char *unit) {
    char err[TF_ERRLEN];
    int T = m->cfg.block_size;
    if (model_alloc_activations(m, bs, T, err)) tf_die("%s", err);
    int *tgt, *tok = setup_batch(bs, T, &tgt);
    size_t count;
    double loss = evaluate_full(m, d, split, tok, tgt, &count);
    printf("full %s loss %.6f (%.4f bits/%s) over %zu tokens in windows of %d, %s\n", split_label(split), loss,
           loss / log(2.0), unit, count, T, device);
    free(tok);
    return isfinite(loss) ? 0 : 1;
}

int cmd_eval(int argc, char **argv) {
    enum { O_CKPT = 1, O_BATCHES, O_BS, O_HELP, O_FULL, O_SPLIT, O_ALLOW_OTHER };
    static const struct option own[] = {
        {"full", optional_argument, NULL, O_FULL},     {"split", required_argument, NULL, O_SPLIT},
        {"ckpt", required_argument, NULL, O_CKPT},     {"batches", required_argument, NULL, O_BATCHES},
        {"batch-size", required_argument, NULL, O_BS}, {"help", no_argument, NULL, O_HELP},
        {"allow-other-text", no_argument, NULL, O_ALLOW_OTHER}};
    struct option all[32];
    common_options(all, sizeof all / sizeof all[0], own, sizeof own / sizeof own[0], EVAL_COMMON_FLAGS, 0);
    CommonArgs c;
    common_args_init(&c, 1337);
    const char *ckpt = NULL;
    int allow_other = 0;
    long batches = 50, bs = 16;
    const char *full = NULL, *split_arg = NULL;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", all, NULL)) != -1) {
        switch (opt) {
        case O_CKPT: ckpt = optarg; break;
        case O_BATCHES: batches = cli_int("--batches", optarg, 1, 1000000); break;
        case O_BS: bs = cli_int("--batch-size", optarg, 1, 65536); break;
        case O_FULL: full = optarg ? optarg : "val"; break;
        case O_SPLIT: split_arg = optarg; break;
        case O_ALLOW_OTHER: allow_other = 1; break;
        case 'h':
        case O_HELP: eval_help(); return 0;
        default:
            if (!common_apply(opt, optarg, &c)) cli_unknown_flag("eval", argv);
        }
    }
    if (optind < argc - 1) tf_die("eval: expected one text file, got '%s' and '%s'", argv[optind], argv[optind + 1]);
    const char *file = optind < argc ? argv[optind] : NULL; /* NULL: the checkpoint's text */
    if (!ckpt) tf_die("eval: --ckpt is required (see 'tokenformer eval --help')");

    char err[TF_ERRLEN];
    Split full_split = SPLIT_VAL;
    Split ignored;
    if (full && optind < argc && !parse_split_name(file, &ignored) && access(file, F_OK) != 0)
        tf_die("eval: '%s' is not a file; a split for --full is written --full=%s", file, file);
    if (full && parse_split_name(full, &full_split)) tf_die("--full: expected val, test or train, got '%s'", full);
    int parts[3];
    if (split_arg && data_split_parse(split_arg, parts, err)) tf_die("%s", err);
    LoadedCheckpoint lc;
    setup_load_checkpoint(&lc, ckpt, &c);
    Model *m = &lc.m;
    if (!split_arg) memcpy(parts, lc.ts.split, sizeof parts);
    if (full_split == SPLIT_TEST && parts[2] == 0)
        tf_die("--full=test: the split %d,%d has no test part (give --split TRAIN,VAL,TEST, e.g. 90,5,5)", parts[0],
               parts[1]);
    char quoted[1024], how[1200];
    shell_quote(ckpt, quoted, sizeof quoted);
    snprintf(how, sizeof how, "pass the text as FILE (tokenformer eval --ckpt %s FILE)", quoted);
    Dataset d;
    TextChoice text = {file, allow_other, ckpt, how};
    setup_checkpoint_text(&d, &text, &lc.ts, &lc.v, m->cfg.block_size, parts, &file);
    int status = 0;
    if (full) {
        status = eval_full(m, &d, full_split, (int)bs, lc.ops->name, token_unit(&lc.v));
    } else {
        int T = m->cfg.block_size, *tgt;
        if (model_alloc_activations(m, (int)bs, T, err)) tf_die("%s", err);
        int *tok = setup_batch((int)bs, T, &tgt);
        float tl = evaluate_loss(m, &d, SPLIT_TRAIN, (int)batches, (uint64_t)c.seed * 2 + 0, tok, tgt);
        float vl = evaluate_loss(m, &d, SPLIT_VAL, (int)batches, (uint64_t)c.seed * 2 + 1, tok, tgt);
        const char *unit = token_unit(&lc.v);
        printf("train loss %.6f (%.4f bits/%s), val loss %.6f (%.4f bits/%s); %ld batches of %ld x %d, seed %ld, "
               "%s\n", tl, tl / log(2.0), unit, vl, vl / log(2.0), unit, batches, bs, T, c.seed, lc.ops->name);
        free(tok);
        status = tf_finish_stdout(0);
    }
    dataset_free(&d);
    setup_free_checkpoint(&lc);
    return status;
}
