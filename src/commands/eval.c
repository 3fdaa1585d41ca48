/* tokenformer eval: mean loss of a checkpoint on fixed, seeded batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "cli.h"
#include "common.h"
#include "data.h"
#include "evaluate.h"

static void eval_help(void) {
    printf("usage: tokenformer eval --ckpt CKPT [FILE] [options]\n"
           "\n"
           "Mean cross-entropy (nats and bits per character) of a checkpoint on fixed,\n"
           "seeded batches of FILE's train (first 90%%) and val parts, so that two\n"
           "checkpoints can be compared on exactly the same data. FILE defaults to\n"
           "data/input.txt.\n"
           "\n"
           "options:\n"
           "  --ckpt CKPT            checkpoint to evaluate (required)\n"
           "  --batches N            batches per split (default 50)\n"
           "  --batch-size B         sequences per batch (default 16)\n"
           "  --seed S               batch seed (default 1337)\n"
           "  --device D             cpu, cuda or auto (default auto)\n"
           "  --threads N            CPU threads (default: all cores)\n"
           "  -h, --help             this help\n");
}

int cmd_eval(int argc, char **argv) {
    enum { O_CKPT = 1, O_BATCHES, O_BS, O_SEED, O_DEVICE, O_THREADS, O_HELP };
    static const struct option opts[] = {
        {"ckpt", required_argument, NULL, O_CKPT},     {"batches", required_argument, NULL, O_BATCHES},
        {"batch-size", required_argument, NULL, O_BS}, {"seed", required_argument, NULL, O_SEED},
        {"device", required_argument, NULL, O_DEVICE}, {"threads", required_argument, NULL, O_THREADS},
        {"help", no_argument, NULL, O_HELP},           {0, 0, 0, 0}};
    const char *ckpt = NULL, *device = "auto";
    long batches = 50, bs = 16, seed = 1337, threads = 0;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case O_CKPT: ckpt = optarg; break;
        case O_BATCHES: batches = cli_int("--batches", optarg, 1, 1000000); break;
        case O_BS: bs = cli_int("--batch-size", optarg, 1, 65536); break;
        case O_SEED: seed = cli_int("--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_DEVICE: device = optarg; break;
        case O_THREADS: threads = cli_int("--threads", optarg, 1, 4096); break;
        case 'h':
        case O_HELP: eval_help(); return 0;
        default: cli_unknown_flag("eval", argv);
        }
    }
    if (optind < argc - 1) tf_die("eval: expected one text file, got '%s' and '%s'", argv[optind], argv[optind + 1]);
    const char *file = optind < argc ? argv[optind] : "data/input.txt";
    if (!ckpt) tf_die("eval: --ckpt is required (see 'tokenformer eval --help')");

    char err[TF_ERRLEN];
    uint32_t *cps;
    size_t n;
    if (text_file_read(file, &cps, &n, err)) tf_die("%s", err);
    const Ops *ops = cli_open_device(device, (int)threads, 1);
    Model m;
    Vocab v;
    TrainState ts;
    if (checkpoint_load(ckpt, ops, &m, &v, &ts, err)) tf_die("%s", err);
    Dataset d;
    if (dataset_build(&d, cps, n, &v, m.cfg.block_size, err)) tf_die("%s: %s", file, err);
    free(cps);
    if (model_alloc_activations(&m, (int)bs, m.cfg.block_size, err)) tf_die("%s", err);
    int *tok = tf_malloc(sizeof(int) * (size_t)bs * m.cfg.block_size * 2, "batch");
    int *tgt = tok + (size_t)bs * m.cfg.block_size;
    float tl = evaluate_loss(&m, &d, SPLIT_TRAIN, (int)batches, (uint64_t)seed * 2 + 0, tok, tgt);
    float vl = evaluate_loss(&m, &d, SPLIT_VAL, (int)batches, (uint64_t)seed * 2 + 1, tok, tgt);
    printf("train loss %.6f (%.4f bits/char), val loss %.6f (%.4f bits/char); %ld batches of %ld x %d, seed %ld, %s\n",
           tl, tl / log(2.0), vl, vl / log(2.0), batches, bs, m.cfg.block_size, seed, ops->name);
    free(tok);
    dataset_free(&d);
    vocab_free(&v);
    model_free(&m);
    return tf_finish_stdout(0);
}
