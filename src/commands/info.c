/* tokenformer info: what a checkpoint holds, or what a config would be. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adapters.h"
#include "checkpoint.h"
#include "cli.h"
#include "command_setup.h"
#include "common.h"

static void info_help(void) {
    printf("usage: tokenformer info --ckpt CKPT\n"
           "       tokenformer info --preset P [--vocab-size N] [model flags]\n"
           "\n"
           "Print a checkpoint's config, parameter counts, training FLOPs per token,\n"
           "Pattention row counts per layer, training step and best validation loss.\n"
           "With --preset, the same for a config (a preset and the model flags of\n"
           "'tokenformer train --help', e.g. --arch, --n-layer, --n-ffn) without a\n"
           "checkpoint and without allocating its weights; --vocab-size (default 65,\n"
           "tiny shakespeare's characters; 256 for --tokenizer bytes) sets the vocabulary.\n");
}

static const char *PATT_LABELS[PATT_PER_LAYER] = {"q", "k", "v", "o", "ffn"};

/* The adapters and LoRA of an adapted baseline, and what trains. */
static void print_adaptation(const Model *m) {
    const ModelConfig *c = &m->cfg;
    char sites[64];
    if (c->adapter_kv > 0) {
        adapter_sites_format(c->adapter_sites, sites, sizeof sites);
        printf("adapters: %d tokens at %s of every layer, %s\n", c->adapter_kv, sites, pnorm_name(c->adapter_pnorm));
    }
    if (c->lora_rank > 0) {
        lora_sites_format(c->lora_sites, sites, sizeof sites);
        printf("LoRA: rank %d, alpha %g, on %s of every layer\n", c->lora_rank, c->lora_alpha, sites);
    }
    if (!m->param_mem) return; /* a config: nothing grown or frozen */
    size_t total = model_num_params(m, 1), trainable = model_trainable_params(m);
    printf("trainable parameters: %zu of %zu (%zu frozen)\n", trainable, total, total - trainable);
    if (model_latest_birth(m) > 0)
        printf("added by the latest grow (step %d): %zu parameters (what train --resume --train new trains)\n",
               model_latest_birth(m), model_latest_grown_params(m));
}

/* The model's shape: arch, sizes, parameters, FLOPs per token, rows per layer. */
static void print_model(const Model *m, int show_tau) {
    const ModelConfig *c = &m->cfg;
    printf("arch: %s, %d layers, d_model %d, %d heads (head dim %d, %d rotary dims)\n",
           arch_name(c->arch), c->n_layer, c->d_model, c->n_head, c->d_model / c->n_head, model_config_rot_dims(c));
    if (model_has_tau(c))
        printf("block_size %d, vocab_size %d, dropout %g, pnorm %s\n", c->block_size, c->vocab_size,
               c->dropout, pnorm_name(c->pnorm));
    else
        printf("block_size %d, vocab_size %d, dropout %g, %s\n", c->block_size, c->vocab_size,
               c->dropout, c->arch == ARCH_TRANSFORMERPP ? "RMSNorm, SwiGLU FFN" : "LayerNorm, GeLU FFN");
    printf("parameters: %zu total, %zu without the embedding\n", model_num_params(m, 1),
           model_num_params(m, 0));
    printf("training FLOPs per token: %.6e\n", model_train_flops_per_token(m));
    print_adaptation(m);
    if (!model_has_tau(c)) {
        printf("FFN width per layer:");
        for (int l = 0; l < c->n_layer; l++) printf(" %d", model_patt_rows(m, l, PATT_FFN));
        printf("\n");
        return;
    }
    printf("rows per layer (q k v o ffn)%s:\n", show_tau ? " and tau" : "");
    for (int l = 0; l < c->n_layer; l++) {
        printf("  layer %d:", l);
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            printf(" %s=%d", PATT_LABELS[w], model_patt_rows(m, l, w));
            if (show_tau) printf(" (tau %.3g)", *model_patt_tau((Model *)m, l, w));
        }
        printf("\n");
    }
}

/* The recorded text and run id (docs/FORMAT.md 'text', 'run_id'). */
static void print_lineage(const TrainState *ts) {
    char text[2 * TEXT_PATH_LEN + 64] = "not recorded (an older checkpoint)";
    if (ts->text.known) text_record_describe(&ts->text, text, sizeof text);
    printf("text: %s", text);
    if (ts->text.known && strcmp(ts->text.abspath, ts->text.path)) printf(", absolute '%s'", ts->text.abspath);
    if (ts->run_id) printf("; run %016llx", (unsigned long long)ts->run_id);
    printf("\n");
}

static int info_checkpoint(const char *ckpt) {
    CommonArgs c;
    common_args_init(&c, 0);
    c.device = "cpu"; /* the host reads the weights */
    LoadedCheckpoint lc;
    setup_load_checkpoint(&lc, ckpt, &c);
    const Model *m = &lc.m;
    const TrainState *ts = &lc.ts;
    printf("checkpoint: %s\n", ckpt);
    print_model(m, 1);
    printf("optimizer step %d, iteration %d, optimizer state %s\n", m->step, ts->iter,
           ts->has_optimizer ? "included" : "absent");
    if (isfinite(ts->best_val)) printf("best val loss %.4f\n", ts->best_val);
    else printf("best val loss: none recorded\n");
    printf("tokenizer %s, data split %d,%d,%d; trained on %.0f tokens, %.3e FLOPs\n", vocab_kind_name(&lc.v),
           ts->split[0], ts->split[1], ts->split[2], ts->train_tokens, ts->train_flops);
    print_lineage(ts);
    if (ts->growth[0] && strcmp(ts->growth, "[]")) {
        printf("growth history:\n");
        growth_history_print(ts);
    } else {
        printf("growth history: none\n");
    }
    setup_free_checkpoint(&lc);
    return tf_finish_stdout(0);
}

/* A config's shape: the table of parameters, no weights. */
static int info_config(const char *preset_name, ModelConfig mc) {
    char err[TF_ERRLEN];
    Model m;
    if (model_create_shapes(&m, &mc, NULL, cli_open_device("cpu", 0, 1), err)) tf_die("%s", err);
    printf("config: preset %s and the flags given (no checkpoint)\n", preset_name);
    print_model(&m, 0);
    model_free(&m);
    return tf_finish_stdout(0);
}

/* The long name of config option opt. */
static const char *flag_name(int opt) {
    for (const struct option *o = CLI_CONFIG_OPTIONS; o->name; o++)
        if (o->val == opt) return o->name;
    return "?";
}

int cmd_info(int argc, char **argv) {
    enum { O_CKPT = 1, O_PRESET, O_VOCAB, O_HELP };
    static const struct option own[] = {{"ckpt", required_argument, NULL, O_CKPT},
                                        {"preset", required_argument, NULL, O_PRESET},
                                        {"vocab-size", required_argument, NULL, O_VOCAB},
                                        {"help", no_argument, NULL, O_HELP}};
    struct option all[64];
    common_options(all, sizeof all / sizeof all[0], own, sizeof own / sizeof own[0], 0, 1);
    const char *ckpt = NULL, *preset_name = NULL;
    const Preset *preset = cli_preset_arg(argc, argv, &preset_name);
    ModelConfig mc = preset->model;
    TrainConfig tc = preset->train;
    long vocab = 65;
    int model_flags = 0, vocab_given = 0, flag_seen[CLI_MAX_CONFIG_FLAGS] = {0};
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", all, NULL)) != -1) {
        switch (opt) {
        case O_CKPT: ckpt = optarg; break;
        case O_PRESET: break;
        case O_VOCAB:
            vocab = cli_int("--vocab-size", optarg, 1, 1 << 24);
            vocab_given = 1;
            break;
        case 'h':
        case O_HELP: info_help(); return 0;
        default: {
            int is_model = 0;
            if (opt >= CLI_CONFIG_OPT_BASE && cli_apply_config_flag(opt, optarg, &mc, &tc, &is_model)) {
                const char *name = flag_name(opt);
                if (!is_model && strcmp(name, "arch") != 0)
                    tf_die("info: --%s is a training flag; info takes the model flags", name);
                flag_seen[opt - CLI_CONFIG_OPT_BASE] = 1;
                model_flags = 1;
                break;
            }
            cli_unknown_flag("info", argv);
        }
        }
    }
    if (!ckpt && !preset_name && optind < argc) ckpt = argv[optind++];
    if (optind < argc) tf_die("info: unexpected argument '%s'", argv[optind]);
    if (ckpt && (preset_name || model_flags || vocab_given))
        tf_die("info: --ckpt describes a checkpoint as saved: --preset, --vocab-size and model "
               "flags go without it");
    if (ckpt) return info_checkpoint(ckpt);
    if (!preset_name)
        tf_die("info: --ckpt is required, or --preset for a config (see 'tokenformer info --help')");
    cli_apply_arch_defaults(&mc, flag_seen);
    mc.vocab_size = (int)vocab;
    return info_config(preset_name, mc);
}
