/* tokenformer grow: add or remove Pattention parameter tokens (docs/MODEL.md, growth). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapters.h"
#include "checkpoint.h"
#include "cli.h"
#include "command_setup.h"
#include "common.h"
#include "data.h"
#include "evaluate.h"
#include "growth.h"
#include "output_guard.h"
#include "rank.h"

#define GROW_COMMON_FLAGS (COMMON_THREADS | COMMON_SEED) /* on the CPU, in fp32: no --device, --precision */

/* A tokenformer's row counts after grow --kv/--ffn-kv (either sign). bf16
 * GEMMs over score rows of a row count that is not a multiple of 8
 * (rows of 2n bytes, not whole 16-byte pieces) fall off cuBLAS's fast
 * kernels: a grown model then trains up to 2.3x slower on a GPU
 * (docs/BENCHMARKS.md, "Grown models against scratch"). Say so once. */
static void note_unaligned_rows(const Model *g) {
    for (int l = 0; l < g->cfg.n_layer; l++)
        for (int w = 0; w < PATT_PER_LAYER; w++) {
            int n = model_patt_rows(g, l, w);
            if (n % 8 == 0) continue;
            printf("note: layer %d has a Pattention of %d rows, not a multiple of 8: under bf16 on a GPU "
                   "such row counts train slower (add or remove rows by multiples of 8)\n", l, n);
            return;
        }
}

static void grow_help(void) {
    printf("usage: tokenformer grow --ckpt IN --kv +N|-N [options] --out OUT\n"
           "       tokenformer grow --ckpt IN --add-layers N [--init copy|copy-zero-out|zero-out]\n"
           "                        [--at end|interleave|stack] --out OUT\n"
           "       tokenformer grow --ckpt IN --d-model 2x [--noise S] --out OUT\n"
           "       tokenformer grow --ckpt IN --adapter-kv N [--adapter-sites mlp,attn] --out OUT\n"
           "       tokenformer grow --ckpt IN --lora-rank R [--lora-sites q,k,v,o,mlp] --out OUT\n"
           "       tokenformer grow --ckpt IN --merge-lora --out OUT\n"
           "\n"
           "Append N parameter tokens (key/value rows) to every attention Pattention\n"
           "(q, k, v, o) and M to every FFN Pattention, or remove them with a negative\n"
           "count; or insert N new blocks; or double the model width (docs/MODEL.md 5a,\n"
           "5b). Training resumes from OUT with 'tokenformer train --resume OUT',\n"
           "which re-warms the schedule there by default (--continue-schedule keeps it).\n"
           "\n"
           "options:\n"
           "  --ckpt IN              checkpoint to change (required)\n"
           "  --out OUT              where to write the new checkpoint (required; a new\n"
           "                         FILE.safetensors, never the input or a running\n"
           "                         training's output)\n"
           "  --force                replace OUT when it is an existing checkpoint\n"
           "  --kv +N|-N             rows added to (removed from) q, k, v and o\n"
           "  --ffn-kv +M|-M         rows for the FFN Pattention (default 4N); transformer and\n"
           "                         transformerpp: M more FFN hidden units (new down rows\n"
           "                         zero, so the function is unchanged; --kv is refused)\n"
           "  --init random|zero-key new rows: random (default, the official recipe and\n"
           "                         the growth study's best) draws keys N(0, 0.02) and\n"
           "                         values and resets tau to sqrt(n_new): the loss changes;\n"
           "                         zero-key keeps tau and sets new keys to 0, so the model\n"
           "                         computes exactly the same function (not with --pnorm\n"
           "                         softmax)\n"
           "  --key-init-scale S     new keys drawn N(0, S) (default: 0 for zero-key, 0.02\n"
           "                         for random); a small S is nearly function-preserving\n"
           "  --tau keep|reset       tau of grown Pattentions: kept or sqrt(n_new)\n"
           "                         (default: keep for zero-key, reset for random)\n"
           "  --add-layers N         insert N blocks (any arch); their Adam moments start at\n"
           "                         zero, copied blocks included\n"
           "  --init zero-out|copy|copy-zero-out   (with --add-layers) a new block is a fresh\n"
           "                         layer with its output side zero (zero-out, the default;\n"
           "                         the function is unchanged), a copy of the block it\n"
           "                         follows or repeats (copy: the function changes), or that\n"
           "                         copy with its output side zero (copy-zero-out, LLaMA Pro:\n"
           "                         unchanged). Output side: attention out and FFN down\n"
           "                         (tokenformer: the values of P_o and P_ffn)\n"
           "  --at end|interleave|stack  where: after the last block (default), spread evenly,\n"
           "                         or whole copies of the stack on top (stack, G_stack: N a\n"
           "                         multiple of the layer count; --init defaults to copy)\n"
           "  --d-model 2x           double d_model and the heads at the same head size by\n"
           "                         tiling the residual stream (the function is unchanged up\n"
           "                         to float rounding; baselines: FFN width doubles too);\n"
           "                         every Adam moment restarts at zero\n"
           "  --noise S              with --d-model: +e/-e, e ~ N(0, S), on the two halves of\n"
           "                         each halved weight, to break the copies' symmetry (the\n"
           "                         function is still kept; default 0)\n"
           "  --adapter-kv N         transformer, transformerpp: a Tokenformer adapter of N\n"
           "                         key/value tokens beside every block's MLP (and\n"
           "                         attention): y = layer(x) + Pattention(x), values zero\n"
           "                         so the function is unchanged (docs/ADAPTATION.md)\n"
           "  --adapter-sites LIST   where: mlp, attn or both (default mlp)\n"
           "  --adapter-norm MODE    the adapters' normalization: l2_norm_gelu (default),\n"
           "                         gelu_l2_norm or softmax (n * softmax)\n"
           "  --lora-rank R          transformer, transformerpp: LoRA of rank R, W + (alpha/R)\n"
           "                         B A with B zero (the function is unchanged)\n"
           "  --lora-sites LIST      which weights: q, k, v, o, mlp (default q,v)\n"
           "  --lora-alpha A         the update's scale numerator (default R: scale 1)\n"
           "  --merge-lora           fold LoRA into the weights (W += (alpha/R) B A) and drop it\n"
           "                         (train the new tensors alone with\n"
           "                         'train --resume OUT --freeze-old')\n"
           "  --layers LIST          only these layers, e.g. 0,2,4-5 (default all)\n"
           "  --data FILE            text for the loss before/after (and for ranking rows\n"
           "                         when removing; default then: the text the checkpoint\n"
           "                         records, or data/input.txt for older checkpoints)\n"
           "  --allow-other-text     use --data although it is not the recorded text\n"
           "  --batches N            evaluation batches (default 20)\n"
           );
    common_print_help(GROW_COMMON_FLAGS, "(new rows and the evaluation batches)");
    printf("\n"
           "Removing rows ranks each row j of a Pattention by its measured importance\n"
           "mean_t |S_tj| * ||V_j|| over the val batches of --data, and drops the lowest.\n");
}

static int ends_with_safetensors(const char *s) {
    size_t n = strlen(s), k = strlen(".safetensors");
    return n > k && !strcmp(s + n - k, ".safetensors");
}

/* grow writes one checkpoint: never over its input (the original would be
 * gone), a running training's output set, a file that is not a checkpoint,
 * or, without --force, an existing checkpoint. Holds OUT's set lock when it
 * has one, until exit. */
static void guard_out(const char *in, const char *out, int force) {
    tf_require_writable_target("--out", out);
    if (output_same_file(in, out))
        tf_die("grow: --out %s is the input checkpoint (--ckpt %s); write the grown model to a new path", out, in);
    if (access(out, F_OK) == 0) {
        if (!output_is_checkpoint(out))
            tf_die("grow: --out %s exists and is not a tokenformer checkpoint; refusing to overwrite it (give a new path)", out);
        if (!force) tf_die("grow: --out %s exists; give --force to replace it, or a new path", out);
    } else if (!ends_with_safetensors(out)) {
        tf_die("grow: --out %s: a checkpoint path ends in .safetensors", out);
    }
    output_set_lock_if_present(out, "grow: --out");
}

/* "0,2,4-5" -> mask[n_layer]; dies naming the bad part. */
static void parse_layers(const char *s, int n_layer, int *mask) {
    memset(mask, 0, sizeof(int) * (size_t)n_layer);
    if (!strpbrk(s, "0123456789")) tf_die("--layers: expected a list like 0,2,4-5, got '%s' (an empty list changes nothing)", s);
    char *copy = strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-');
        long lo, hi;
        if (dash) {
            *dash = '\0';
            lo = cli_int("--layers", tok, 0, n_layer - 1);
            hi = cli_int("--layers", dash + 1, 0, n_layer - 1);
            if (hi < lo) tf_die("--layers: the range %ld-%ld is reversed; write it low to high (%ld-%ld)", lo, hi, hi, lo);
        } else {
            lo = hi = cli_int("--layers", tok, 0, n_layer - 1);
        }
        for (long l = lo; l <= hi; l++) mask[l] = 1;
    }
    free(copy);
}

static long parse_signed_count(const char *flag, const char *s) {
    return cli_int(flag, s[0] == '+' ? s + 1 : s, -(long)PATT_MAX_ROWS, PATT_MAX_ROWS);
}

/* The loss on `batches` fixed val batches (of EVAL_BATCH sequences) of
 * `data`, for before/after lines, and (removing rows) the batches the rows
 * are ranked on. */
#define EVAL_BATCH 16
typedef struct {
    Dataset d;
    int *tok, *tgt;
    int batches;
    uint64_t seed;
} EvalSet;

/* Opens e on --data, or (data NULL) the text the checkpoint `in` records:
 * the one it was trained on, unless allow_other (include/lineage.h).
 * Returns the path of the text used. */
static const char *eval_set_open(EvalSet *e, const char *data, const Vocab *v, Model *m, const TrainState *ts,
                                 int batches, uint64_t seed, int allow_other, const char *in) {
    char quoted[1024], how[1200];
    shell_quote(in, quoted, sizeof quoted);
    snprintf(how, sizeof how, "pass the text with --data FILE (tokenformer grow --ckpt %s --data FILE ...)", quoted);
    TextChoice text = {data, allow_other, in, how};
    memset(e, 0, sizeof *e);
    setup_checkpoint_text(&e->d, &text, ts, v, m->cfg.block_size, ts->split, &data);
    e->tok = setup_batch(EVAL_BATCH, m->cfg.block_size, &e->tgt);
    e->batches = batches;
    e->seed = seed;
    return data;
}

static float eval_set_loss(EvalSet *e, Model *m) {
    char err[TF_ERRLEN];
    if (model_alloc_activations(m, EVAL_BATCH, m->cfg.block_size, err)) tf_die("%s", err);
    return evaluate_loss(m, &e->d, SPLIT_VAL, e->batches, e->seed, e->tok, e->tgt);
}

static void eval_set_close(EvalSet *e) {
    free(e->tok);
    dataset_free(&e->d);
}

/* The text `out`'s checkpoint records (FILE when none is recorded, its
 * absolute path when the recorded one is gone from here) and `out`, shell-quoted. */
static void quote_hint_paths(const char *out, const TrainState *ts, char *text, char *ckpt, size_t size) {
    shell_quote(!ts->text.known ? "FILE" : access(ts->text.path, F_OK) == 0 ? ts->text.path : ts->text.abspath, text,
                size);
    shell_quote(out, ckpt, size);
}

/* The command that continues training from `out`, with the text its
 * checkpoint records (FILE when none is recorded). */
static void print_resume_hint(const char *out, const TrainState *ts) {
    char text[1024], ckpt[1024];
    quote_hint_paths(out, ts, text, ckpt, sizeof text);
    printf("wrote %s (resume with: tokenformer train %s --resume %s, which re-warms the schedule there; "
           "--continue-schedule keeps it)\n", out, text, ckpt);
}

/* The command that trains only what `out` added, on the text its checkpoint records. */
static void print_freeze_hint(const char *out, const TrainState *ts) {
    char text[1024], ckpt[1024];
    quote_hint_paths(out, ts, text, ckpt, sizeof text);
    printf("wrote %s (train only the new tensors with: tokenformer train %s --resume %s --freeze-old)\n", out, text,
           ckpt);
}

/* The input checkpoint of a grow, on the CPU: growth rebuilds models in
 * host memory (growth.h). */
static void load_grow_input(const char *in, int threads, Model *m, Vocab *v, TrainState *ts) {
    CommonArgs c;
    common_args_init(&c, 0);
    c.device = "cpu";
    c.threads = threads;
    LoadedCheckpoint lc;
    setup_load_checkpoint(&lc, in, &c);
    *m = lc.m;
    *v = lc.v;
    *ts = lc.ts;
}

/* The loss of m before growing; NAN (and e untouched) without --data. */
static float eval_before(EvalSet *e, const char *data, const Vocab *v, Model *m, const TrainState *ts, int batches,
                         uint64_t seed, int allow_other, const char *in) {
    if (!data) return NAN;
    eval_set_open(e, data, v, m, ts, batches, seed * 2 + 1, allow_other, in);
    return eval_set_loss(e, m);
}

/* The before/after line for the grown model g, when --data opened e. */
static void eval_after(EvalSet *e, Model *g, float before, const char *data, int batches) {
    if (!data) return;
    float after = eval_set_loss(e, g);
    printf("val loss on %d fixed batches of %s: before %.6f, after %.6f (change %+.2e)\n", batches, data, before,
           after, after - before);
    eval_set_close(e);
}

/* Writes the grown model, with the input's optimizer state when it has one. */
static void save_grown(const char *in, const char *out, const Model *g, const Vocab *v, const TrainState *ts) {
    char err[TF_ERRLEN];
    if (!ts->has_optimizer) printf("%s has no optimizer state: %s has none either\n", in, out);
    if (checkpoint_save(out, g, v, ts, ts->has_optimizer, err)) tf_die("%s", err);
}

/* Records ev in the history of the grown model g (from m), writes it to out and
 * ends the command with the hint to resume training. */
static int save_grown_with_event(const char *in, const char *out, Model *m, Model *g, Vocab *v, TrainState *ts,
                                 const GrowthEvent *ev) {
    char err[TF_ERRLEN];
    if (train_state_add_growth(ts, m->step, ev, err)) tf_die("%s", err);
    save_grown(in, out, g, v, ts);
    print_resume_hint(out, ts);
    model_free(g);
    model_free(m);
    vocab_free(v);
    return tf_finish_stdout(0);
}

/* The adaptation flags of grow (adapters.h); kv/rank 0: not asked. */
typedef struct {
    long adapter_kv, lora_rank;
    int adapter_sites, lora_sites, adapter_pnorm, merge;
    float lora_alpha; /* <= 0: the rank */
    int sites_given;
} AdaptArgs;

static int adapt_asked(const AdaptArgs *a) { return a->adapter_kv || a->lora_rank || a->merge; }

static const char *adapt_what(const AdaptArgs *a) {
    return a->merge ? "--merge-lora" : a->lora_rank ? "--lora-rank" : "--adapter-kv";
}

/* grow --adapter-kv / --lora-rank / --merge-lora: a new checkpoint whose base
 * weights are the input's (merging: plus the LoRA update). */
static int grow_adapt(const char *in, const char *out, const AdaptArgs *a, uint64_t seed, const char *data,
                      int batches, int threads, int allow_other) {
    char err[TF_ERRLEN];
    Model m, g;
    Vocab v;
    TrainState ts;
    load_grow_input(in, threads, &m, &v, &ts);
    if (m.cfg.arch == ARCH_TOKENFORMER)
        tf_die("grow: %s is for the transformer and transformerpp baselines; %s is a tokenformer, which "
               "adapts with native rows (grow --kv +N --init zero-key, then train --resume --freeze-old)",
               adapt_what(a), in);
    EvalSet e;
    float before = eval_before(&e, data, &v, &m, &ts, batches, seed, allow_other, in);
    int rc = a->merge ? lora_merge(&m, &g, err)
             : a->lora_rank ? lora_insert(&m, &g, (int)a->lora_rank, a->lora_sites,
                                          a->lora_alpha > 0.0f ? a->lora_alpha : (float)a->lora_rank, seed, err)
                            : adapters_insert(&m, &g, (int)a->adapter_kv, a->adapter_sites, a->adapter_pnorm,
                                              seed, err);
    if (rc) tf_die("grow: %s: %s", in, err);
    char sites[64];
    if (a->merge) lora_sites_format(m.cfg.lora_sites, sites, sizeof sites);
    else if (a->lora_rank) lora_sites_format(g.cfg.lora_sites, sites, sizeof sites);
    else adapter_sites_format(g.cfg.adapter_sites, sites, sizeof sites);
    if (a->merge) printf("merged LoRA (rank %d, on %s) into the weights\n", m.cfg.lora_rank, sites);
    else if (a->lora_rank) {
        printf("added LoRA: rank %d, alpha %g, on %s of every layer (A random, B zero: the function is unchanged)\n",
               g.cfg.lora_rank, g.cfg.lora_alpha, sites);
    } else {
        printf("added Tokenformer adapters: %d tokens, %s, at %s of every layer (values zero: the function is "
               "unchanged)\n", g.cfg.adapter_kv, pnorm_name(g.cfg.adapter_pnorm), sites);
    }
    printf("%s: %zu parameters; %s: %zu parameters, %zu of them new\n", in, model_num_params(&m, 1), out,
           model_num_params(&g, 1), a->merge ? (size_t)0 : model_num_params(&g, 1) - model_num_params(&m, 1));
    eval_after(&e, &g, before, data, batches);
    GrowthEvent ev = {a->merge ? "lora-merge" : a->lora_rank ? "lora" : "adapter",
                      a->merge ? -m.cfg.lora_rank : a->lora_rank ? g.cfg.lora_rank : g.cfg.adapter_kv,
                      a->merge ? "merged" : "zero-output", sites, MODEL_INIT_STD, "-"};
    if (train_state_add_growth(&ts, m.step, &ev, err)) tf_die("%s", err);
    save_grown(in, out, &g, &v, &ts);
    if (a->merge) printf("wrote %s\n", out);
    else print_freeze_hint(out, &ts);
    model_free(&g);
    model_free(&m);
    vocab_free(&v);
    return tf_finish_stdout(0);
}

/* Rows and blocks are grown on plain models: the adapters' tensors follow
 * the base layout, which growing would change under them. */
static void refuse_adapted(const Model *m, const char *in) {
    if (adapters_present(&m->cfg))
        tf_die("grow: %s has %s; grow the base model before adapting it%s", in,
               m->cfg.lora_rank ? "LoRA" : "adapters", m->cfg.lora_rank ? " (or --merge-lora first)" : "");
}

/* What new blocks start as, for the log line. */
static const char *new_layer_words(const Model *m, LayerInit init) {
    int patt = model_has_tau(&m->cfg);
    if (init == LAYER_INIT_COPY) return "copies of the block each follows or repeats (the function changes)";
    if (init == LAYER_INIT_COPY_ZERO_OUT)
        return patt ? "copies with a zero output side (values of P_o and P_ffn)"
                    : "copies with a zero output side (attn.o.weight and mlp.down)";
    return patt ? "fresh layers with a zero output side (values of P_o and P_ffn; tau = sqrt(n))"
                : "fresh layers with a zero output side (attn.o.weight and mlp.down)";
}

/* grow --add-layers: new blocks, fresh or copied. */
static int grow_layers(const char *in, const char *out, int n_new, LayerInit init, GrowAt at, uint64_t seed,
                       const char *data, int batches, int threads, int allow_other) {
    char err[TF_ERRLEN];
    Model m, g;
    Vocab v;
    TrainState ts;
    load_grow_input(in, threads, &m, &v, &ts);
    refuse_adapted(&m, in);
    if (m.cfg.n_layer + n_new > MAX_LAYERS)
        tf_die("--add-layers: %d + %d layers is more than %d", m.cfg.n_layer, n_new, MAX_LAYERS);
    EvalSet e;
    float before = eval_before(&e, data, &v, &m, &ts, batches, seed, allow_other, in);
    if (growth_add_layers(&m, &g, n_new, init, at, seed, err)) tf_die("%s", err);
    printf("%s: %d layers, %zu parameters (%zu without the embedding)\n", in, m.cfg.n_layer, model_num_params(&m, 1),
           model_num_params(&m, 0));
    printf("added %d layer%s (%s); new blocks: %s\n", n_new, n_new == 1 ? "" : "s",
           at == GROW_AT_END ? "after the last block" : at == GROW_AT_STACK ? "the stack repeated on top" : "interleaved",
           new_layer_words(&m, init));
    printf("%s: %d layers, %zu parameters (%zu without the embedding)\n", out, g.cfg.n_layer, model_num_params(&g, 1),
           model_num_params(&g, 0));
    eval_after(&e, &g, before, data, batches);
    GrowthEvent ev = growth_layers_event(&m.cfg, n_new, init, at);
    return save_grown_with_event(in, out, &m, &g, &v, &ts, &ev);
}

/* grow --d-model 2x: the residual stream tiled (docs/MODEL.md 5b). */
static int grow_width(const char *in, const char *out, float noise, uint64_t seed, const char *data, int batches,
                      int threads, int allow_other) {
    char err[TF_ERRLEN];
    Model m, g;
    Vocab v;
    TrainState ts;
    load_grow_input(in, threads, &m, &v, &ts);
    refuse_adapted(&m, in);
    EvalSet e;
    float before = eval_before(&e, data, &v, &m, &ts, batches, seed, allow_other, in);
    if (growth_double_d_model(&m, &g, noise, seed, err)) tf_die("grow: --d-model 2x: %s", err);
    printf("%s: d_model %d, %d heads, %zu parameters (%zu without the embedding)\n", in, m.cfg.d_model,
           m.cfg.n_head, model_num_params(&m, 1), model_num_params(&m, 0));
    printf("doubled d_model by tiling the residual stream (readers' weights halved%s); noise %g\n",
           model_has_tau(&m.cfg) ? ", Pattention rows and tau kept" : ", FFN hidden units split in two", noise);
    printf("%s: d_model %d, %d heads, %zu parameters (%zu without the embedding)\n", out, g.cfg.d_model,
           g.cfg.n_head, model_num_params(&g, 1), model_num_params(&g, 0));
    eval_after(&e, &g, before, data, batches);
    GrowthEvent ev = growth_d_model_event(&m.cfg, noise);
    return save_grown_with_event(in, out, &m, &g, &v, &ts, &ev);
}

/* --d-model: only "2x" (or "2") for now: the tiling doubles. */
static int parse_width_factor(const char *s) {
    if (strcmp(s, "2x") && strcmp(s, "2"))
        tf_die("--d-model: expected 2x (the width doubles by tiling), got '%s'", s);
    return 2;
}

int cmd_grow(int argc, char **argv) {
    enum { O_CKPT = 1, O_OUT, O_KV, O_FFN, O_INIT, O_LAYERS, O_DATA, O_BATCHES, O_HELP,
           O_KEY_SCALE, O_TAU, O_ADD_LAYERS, O_AT, O_D_MODEL, O_NOISE, O_ALLOW_OTHER, O_FORCE,
           O_ADAPTER_KV, O_ADAPTER_SITES, O_ADAPTER_NORM, O_LORA_RANK, O_LORA_SITES, O_LORA_ALPHA,
           O_MERGE_LORA };
    static const struct option own[] = {
        {"ckpt", required_argument, NULL, O_CKPT},       {"out", required_argument, NULL, O_OUT},
        {"kv", required_argument, NULL, O_KV},           {"ffn-kv", required_argument, NULL, O_FFN},
        {"init", required_argument, NULL, O_INIT},       {"layers", required_argument, NULL, O_LAYERS},
        {"data", required_argument, NULL, O_DATA},       {"batches", required_argument, NULL, O_BATCHES},
        {"help", no_argument, NULL, O_HELP},
        {"key-init-scale", required_argument, NULL, O_KEY_SCALE}, {"tau", required_argument, NULL, O_TAU},
        {"add-layers", required_argument, NULL, O_ADD_LAYERS}, {"at", required_argument, NULL, O_AT},
        {"d-model", required_argument, NULL, O_D_MODEL}, {"noise", required_argument, NULL, O_NOISE},
        {"allow-other-text", no_argument, NULL, O_ALLOW_OTHER},
        {"force", no_argument, NULL, O_FORCE},
        {"adapter-kv", required_argument, NULL, O_ADAPTER_KV},
        {"adapter-sites", required_argument, NULL, O_ADAPTER_SITES},
        {"adapter-norm", required_argument, NULL, O_ADAPTER_NORM},
        {"lora-rank", required_argument, NULL, O_LORA_RANK},
        {"lora-sites", required_argument, NULL, O_LORA_SITES},
        {"lora-alpha", required_argument, NULL, O_LORA_ALPHA},
        {"merge-lora", no_argument, NULL, O_MERGE_LORA}};
    struct option opts[48];
    common_options(opts, sizeof opts / sizeof opts[0], own, sizeof own / sizeof own[0], GROW_COMMON_FLAGS, 0);
    CommonArgs c;
    common_args_init(&c, 1337);
    AdaptArgs ad = {.adapter_sites = 1 << ADAPT_MLP, .lora_sites = (1 << LORA_Q) | (1 << LORA_V),
                    .adapter_pnorm = PNORM_L2_GELU};
    int adapter_opts = 0, lora_opts = 0;
    char aerr[TF_ERRLEN];
    const char *in = NULL, *out = NULL, *layers = NULL, *data = NULL;
    long kv = 0, ffn = 0, batches = 20;
    int kv_set = 0, ffn_set = 0, tau_reset = -1;
    long add_layers = 0;
    float key_scale = -1.0f;
    GrowInit init = GROW_RANDOM; /* the growth study's best recipe (docs/GROWTH.md) */
    GrowAt at = GROW_AT_END;
    int at_set = 0, init_set = 0, width = 0, allow_other = 0, force = 0;
    float noise = -1.0f;
    const char *init_arg = NULL;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case O_CKPT: in = optarg; break;
        case O_OUT: out = optarg; break;
        case O_KV: kv = parse_signed_count("--kv", optarg); kv_set = 1; break;
        case O_FFN: ffn = parse_signed_count("--ffn-kv", optarg); ffn_set = 1; break;
        case O_INIT:
            init_set = 1;
            init_arg = optarg; /* its names depend on the kind of growth: read below */
            break;
        case O_LAYERS: layers = optarg; break;
        case O_KEY_SCALE: key_scale = (float)cli_float("--key-init-scale", optarg, 0.0, 10.0); break;
        case O_TAU:
            if (!strcmp(optarg, "keep")) tau_reset = 0;
            else if (!strcmp(optarg, "reset")) tau_reset = 1;
            else tf_die("--tau: expected keep or reset, got '%s'", optarg);
            break;
        case O_ADD_LAYERS:
            add_layers = cli_int("--add-layers", optarg[0] == '+' ? optarg + 1 : optarg, 1, MAX_LAYERS);
            break;
        case O_AT:
            if (grow_at_parse(optarg) < 0) tf_die("--at: expected end, interleave or stack, got '%s'", optarg);
            at = (GrowAt)grow_at_parse(optarg);
            at_set = 1;
            break;
        case O_D_MODEL: width = parse_width_factor(optarg); break;
        case O_NOISE: noise = (float)cli_float("--noise", optarg, 0.0, 1.0); break;
        case O_ADAPTER_KV: ad.adapter_kv = cli_int("--adapter-kv", optarg, 1, PATT_MAX_ROWS); break;
        case O_ADAPTER_SITES:
            if (adapter_sites_parse(optarg, &ad.adapter_sites, aerr)) tf_die("grow: %s", aerr);
            adapter_opts = 1;
            break;
        case O_ADAPTER_NORM:
            if ((ad.adapter_pnorm = pnorm_parse(optarg)) < 0)
                tf_die("--adapter-norm: expected l2_norm_gelu, gelu_l2_norm or softmax, got '%s'", optarg);
            adapter_opts = 1;
            break;
        case O_LORA_RANK: ad.lora_rank = cli_int("--lora-rank", optarg, 1, 65536); break;
        case O_LORA_SITES:
            if (lora_sites_parse(optarg, &ad.lora_sites, aerr)) tf_die("grow: %s", aerr);
            lora_opts = 1;
            break;
        case O_LORA_ALPHA:
            ad.lora_alpha = (float)cli_float("--lora-alpha", optarg, 1e-6, 1e6);
            lora_opts = 1;
            break;
        case O_MERGE_LORA: ad.merge = 1; break;
        case O_DATA: data = optarg; break;
        case O_ALLOW_OTHER: allow_other = 1; break;
        case O_FORCE: force = 1; break;
        case O_BATCHES: batches = cli_int("--batches", optarg, 1, 1000000); break;
        case 'h':
        case O_HELP: grow_help(); return 0;
        default:
            if (!common_apply(opt, optarg, &c)) cli_unknown_flag("grow", argv);
        }
    }
    if (optind < argc) tf_die("grow: unexpected argument '%s'", argv[optind]);
    if (!in) tf_die("grow: --ckpt is required (see 'tokenformer grow --help')");
    if (!out) tf_die("grow: --out is required");
    guard_out(in, out, force);
    if (adapter_opts && !ad.adapter_kv) tf_die("grow: --adapter-sites and --adapter-norm need --adapter-kv N");
    if (lora_opts && !ad.lora_rank) tf_die("grow: --lora-sites and --lora-alpha need --lora-rank R");
    if (!!ad.adapter_kv + !!ad.lora_rank + ad.merge > 1)
        tf_die("grow: --adapter-kv, --lora-rank and --merge-lora are separate calls (grow twice)");
    if (adapt_asked(&ad) && (kv_set || ffn_set || add_layers || init_set || layers || key_scale >= 0.0f ||
                             tau_reset >= 0 || at_set || width || noise >= 0.0f))
        tf_die("grow: %s takes none of --kv, --ffn-kv, --add-layers, --init, --layers, --key-init-scale, --tau, --at, "
               "--d-model, --noise", adapt_what(&ad));
    if (adapt_asked(&ad))
        return grow_adapt(in, out, &ad, (uint64_t)c.seed, data, (int)batches, c.threads, allow_other);
    if (add_layers && (kv_set || ffn_set)) tf_die("grow: --add-layers and --kv/--ffn-kv are separate calls (grow twice)");
    if (width && (add_layers || kv_set || ffn_set || init_set || at_set || layers || key_scale >= 0.0f || tau_reset >= 0))
        tf_die("grow: --d-model is a growth of its own: no --add-layers, --kv, --ffn-kv, --init, --at, --layers, "
               "--key-init-scale or --tau with it (grow twice)");
    if (noise >= 0.0f && !width) tf_die("grow: --noise needs --d-model");
    if (width)
        return grow_width(in, out, noise < 0.0f ? 0.0f : noise, (uint64_t)c.seed, data, (int)batches, c.threads,
                          allow_other);
    if (add_layers && (layers || key_scale >= 0.0f || tau_reset >= 0))
        tf_die("grow: --add-layers takes no --layers, --key-init-scale or --tau (new blocks are whole layers)");
    if (at_set && !add_layers) tf_die("grow: --at needs --add-layers");
    if (add_layers) {
        LayerInit li = at == GROW_AT_STACK ? LAYER_INIT_COPY : LAYER_INIT_ZERO_OUT; /* G_stack copies */
        if (init_arg && layer_init_parse(init_arg) < 0)
            tf_die("grow: --init with --add-layers: expected zero-out, copy or copy-zero-out, got '%s'", init_arg);
        if (init_arg) li = (LayerInit)layer_init_parse(init_arg);
        return grow_layers(in, out, (int)add_layers, li, at, (uint64_t)c.seed, data, (int)batches, c.threads,
                           allow_other);
    }
    if (init_arg && !strcmp(init_arg, "zero-key")) init = GROW_ZERO_KEY;
    else if (init_arg && !strcmp(init_arg, "random")) init = GROW_RANDOM;
    else if (init_arg) tf_die("--init: expected zero-key or random, got '%s'", init_arg);
    if (!kv_set && !ffn_set) tf_die("grow: give --kv (and/or --ffn-kv) with a row count like +64 or -32");
    if (!ffn_set) ffn = 4 * kv;
    if ((kv < 0 && ffn > 0) || (kv > 0 && ffn < 0)) tf_die("grow: --kv and --ffn-kv must both add or both remove rows");
    if (kv == 0 && ffn == 0) tf_die("grow: nothing to change (--kv 0)");
    int shrinking = kv < 0 || ffn < 0;
    int read_text = data || shrinking; /* removal ranks rows on text: the checkpoint's without --data */

    char err[TF_ERRLEN];
    Model m;
    Vocab v;
    TrainState ts;
    load_grow_input(in, c.threads, &m, &v, &ts);
    refuse_adapted(&m, in);
    int patt = model_has_tau(&m.cfg); /* tokenformer; else a baseline: only its FFN width grows */
    const char *arch = arch_name(m.cfg.arch);
    if (!patt && kv != 0)
        tf_die("grow: --kv: a %s checkpoint has no attention parameter tokens (q, k, v, o are linear); "
               "grow its FFN width with --ffn-kv +M or its depth with --add-layers N", arch);
    if (!patt && shrinking) tf_die("grow: removing FFN units is for tokenformer checkpoints only (this is a %s)", arch);
    if (!patt && (init_set || key_scale >= 0.0f || tau_reset >= 0))
        tf_die("grow: --init, --key-init-scale and --tau are for tokenformer checkpoints (new FFN units of a %s: "
               "up/gate rows at their init, down rows zero)", arch);
    int L = m.cfg.n_layer, n_patt = L * PATT_PER_LAYER;
    int *mask = tf_malloc(sizeof(int) * (size_t)L, "layer mask");
    if (layers) parse_layers(layers, L, mask);
    else for (int l = 0; l < L; l++) mask[l] = 1;
    int *delta = tf_calloc((size_t)n_patt, sizeof(int), "row changes");
    for (int p = 0; p < n_patt; p++)
        if (mask[p / PATT_PER_LAYER]) delta[p] = (int)(p % PATT_PER_LAYER == PATT_FFN ? ffn : kv);

    EvalSet e;
    float before = NAN;
    if (read_text) {
        data = eval_set_open(&e, data, &v, &m, &ts, (int)batches, (uint64_t)c.seed * 2 + 1, allow_other, in);
        before = eval_set_loss(&e, &m);
    }
    float **importance = shrinking ? model_rank_rows(&m, &e.d, e.batches, e.seed, e.tok, e.tgt) : NULL;

    if (patt && !shrinking && init == GROW_ZERO_KEY && m.cfg.pnorm == PNORM_SOFTMAX)
        tf_warn("pnorm softmax: zero-key rows do NOT keep the function (n * softmax(A) gives each new row "
                "exp(0) of the mass and n changes); only l2_norm_gelu and gelu_l2_norm are preserved exactly");
    if (key_scale < 0.0f) key_scale = patt ? (init == GROW_RANDOM ? MODEL_INIT_STD : 0.0f) : MODEL_INIT_STD;
    if (tau_reset < 0) tau_reset = patt && init == GROW_RANDOM;
    GrowSpec spec = {delta, key_scale, tau_reset, (uint64_t)c.seed, importance};
    Model g;
    if (model_resize(&m, &g, &spec, err)) tf_die("%s", err);
    printf("%s: %zu parameters (%zu without the embedding)\n", in, model_num_params(&m, 1), model_num_params(&m, 0));
    char how[96];
    if (shrinking) snprintf(how, sizeof how, "-");
    else if (!patt) snprintf(how, sizeof how, "up%s rows at their init, down rows zero", m.cfg.arch == ARCH_TRANSFORMERPP ? "/gate" : "");
    else if (init == GROW_ZERO_KEY && key_scale == 0.0f && !tau_reset) snprintf(how, sizeof how, "zero keys, random values, tau kept");
    else if (init == GROW_RANDOM && key_scale == 0.02f && tau_reset) snprintf(how, sizeof how, "random keys and values, tau = sqrt(n)");
    else snprintf(how, sizeof how, "keys N(0, %g), random values, tau %s", key_scale, tau_reset ? "= sqrt(n)" : "kept");
    if (patt && shrinking)
        printf("removed rows: attention %+ld, ffn %+ld, in %s; the least important on %s\n", kv, ffn,
               layers ? layers : "every layer", data);
    else if (patt)
        printf("added rows: attention %+ld, ffn %+ld, in %s; new rows: %s\n", kv, ffn,
               layers ? layers : "every layer", how);
    if (patt && !shrinking)
        printf("recipe: --init %s%s\n", init == GROW_RANDOM ? "random" : "zero-key",
               init == GROW_RANDOM ? (init_set ? " (the loss changes)"
                                               : " (default, the official recipe: the loss changes; "
                                                 "--init zero-key keeps the function)")
               : key_scale == 0.0f && !tau_reset && m.cfg.pnorm != PNORM_SOFTMAX ? " (the function is unchanged)" : "");
    else if (!patt)
        printf("added FFN units: %+ld, in %s; new units: %s\n", ffn, layers ? layers : "every layer", how);
    const char *init_name = shrinking ? "importance" : !patt ? "zero-output" : init == GROW_RANDOM ? "random" : "zero-key";
    for (int kind = 0; kind < 2; kind++) {
        long amount = kind ? ffn : kv;
        if (!amount) continue;
        GrowthEvent ev = {kind ? "ffn" : "kv", (int)amount, init_name, layers ? layers : "all",
                          shrinking ? 0.0f : key_scale, !patt ? "-" : tau_reset && !shrinking ? "reset" : "keep"};
        if (train_state_add_growth(&ts, m.step, &ev, err)) tf_die("%s", err);
    }
    printf("%s: %zu parameters (%zu without the embedding)\n", out, model_num_params(&g, 1), model_num_params(&g, 0));
    if (patt) note_unaligned_rows(&g);
    eval_after(&e, &g, before, data, (int)batches); /* data: the text read, if any */
    save_grown(in, out, &g, &v, &ts);
    print_resume_hint(out, &ts);

    model_free_ranks(&m, importance);
    free(mask);
    free(delta);
    model_free(&g);
    model_free(&m);
    vocab_free(&v);
    return tf_finish_stdout(0);
}
