/* tokenformer info: what a checkpoint holds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "common.h"

static void info_help(void) {
    printf("usage: tokenformer info --ckpt CKPT\n"
           "\n"
           "Print a checkpoint's config, parameter counts, Pattention row counts per\n"
           "layer, training step and best validation loss.\n");
}

static const char *PATT_LABELS[PATT_PER_LAYER] = {"q", "k", "v", "o", "ffn"};

int cmd_info(int argc, char **argv) {
    enum { O_CKPT = 1, O_HELP };
    static const struct option opts[] = {{"ckpt", required_argument, NULL, O_CKPT},
                                         {"help", no_argument, NULL, O_HELP},
                                         {0, 0, 0, 0}};
    const char *ckpt = NULL;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == O_CKPT) ckpt = optarg;
        else if (opt == O_HELP || opt == 'h') {
            info_help();
            return 0;
        } else cli_unknown_flag("info", argv);
    }
    if (!ckpt && optind < argc) ckpt = argv[optind++];
    if (optind < argc) tf_die("info: unexpected argument '%s'", argv[optind]);
    if (!ckpt) tf_die("info: --ckpt is required (see 'tokenformer info --help')");

    char err[TF_ERRLEN];
    Model m;
    Vocab v;
    TrainState ts;
    if (checkpoint_load(ckpt, ops_cpu(), &m, &v, &ts, err)) tf_die("%s", err);
    const ModelConfig *c = &m.cfg;
    printf("checkpoint: %s\n", ckpt);
    printf("arch: %s, %d layers, d_model %d, %d heads (head dim %d, %d rotary dims)\n",
           arch_name(c->arch), c->n_layer, c->d_model, c->n_head, c->d_model / c->n_head, model_config_rot_dims(c));
    if (model_has_tau(c))
        printf("block_size %d, vocab_size %d, dropout %g, pnorm %s\n", c->block_size, c->vocab_size,
               c->dropout, pnorm_name(c->pnorm));
    else
        printf("block_size %d, vocab_size %d, dropout %g, %s\n", c->block_size, c->vocab_size,
               c->dropout, c->arch == ARCH_TRANSFORMERPP ? "RMSNorm, SwiGLU FFN" : "LayerNorm, GeLU FFN");
    printf("parameters: %zu total, %zu without the embedding\n", model_num_params(&m, 1),
           model_num_params(&m, 0));
    if (!model_has_tau(c)) {
        printf("FFN width per layer:");
        for (int l = 0; l < c->n_layer; l++) printf(" %d", model_patt_rows(&m, l, PATT_FFN));
        printf("\n");
    } else
        printf("rows per layer (q k v o ffn) and tau:\n");
    for (int l = 0; l < c->n_layer && model_has_tau(c); l++) {
        printf("  layer %d:", l);
        for (int w = 0; w < PATT_PER_LAYER; w++)
            printf(" %s=%d (tau %.3g)", PATT_LABELS[w], model_patt_rows(&m, l, w), *model_patt_tau(&m, l, w));
        printf("\n");
    }
    printf("optimizer step %d, iteration %d, optimizer state %s\n", m.step, ts.iter,
           ts.has_optimizer ? "included" : "absent");
    if (isfinite(ts.best_val)) printf("best val loss %.4f\n", ts.best_val);
    else printf("best val loss: none recorded\n");
    printf("tokenizer %s, data split %d,%d,%d; trained on %.0f tokens, %.3e FLOPs\n", vocab_kind_name(&v),
           ts.split[0], ts.split[1], ts.split[2], ts.train_tokens, ts.train_flops);
    if (ts.growth[0] && strcmp(ts.growth, "[]")) {
        printf("growth history:\n");
        growth_history_print(&ts);
    } else {
        printf("growth history: none\n");
    }
    vocab_free(&v);
    model_free(&m);
    return tf_finish_stdout(0);
}
