/* tokenformer sample: stream text from a checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "common.h"
#include "rng.h"

static void sample_help(void) {
    printf("usage: tokenformer sample --ckpt CKPT [options]\n"
           "\n"
           "Generate characters from a checkpoint, streamed to stdout as they come.\n"
           "\n"
           "options:\n"
           "  --ckpt CKPT            checkpoint to sample from (required)\n"
           "  --prompt S             text to continue (default: a newline, or the first\n"
           "                         vocabulary character when the model has no newline)\n"
           "  --max-new-tokens N     characters to generate (default 500)\n"
           "  --temperature T        softmax temperature, > 0 (default 1.0); 0 = greedy\n"
           "  --top-k K              keep only the K most likely characters (default 0: all)\n"
           "  --seed S               random seed (default 1337)\n"
           "  --device D             cpu, cuda or auto (default auto)\n"
           "  --threads N            CPU threads (default: all cores)\n"
           "  -h, --help             this help\n");
}

/* Pick the next token from logits: temperature, optional top-k, then a draw. */
static int sample_token(float *logits, int V, float temperature, int top_k, Rng *rng, float *work) {
    if (temperature <= 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++) best = logits[i] > logits[best] ? i : best;
        return best;
    }
    float cutoff = -INFINITY;
    if (top_k > 0 && top_k < V) {
        memcpy(work, logits, sizeof(float) * V);
        /* k-th largest by partial selection: V is a character vocabulary, small. */
        for (int k = 0; k < top_k; k++) {
            int arg = k;
            for (int i = k + 1; i < V; i++) arg = work[i] > work[arg] ? i : arg;
            float t = work[k];
            work[k] = work[arg];
            work[arg] = t;
        }
        cutoff = work[top_k - 1];
    }
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        double p = logits[i] >= cutoff ? exp((logits[i] - mx) / temperature) : 0.0;
        work[i] = (float)p;
        sum += p;
    }
    double u = rng_uniform(rng) * sum, acc = 0.0;
    for (int i = 0; i < V; i++) {
        acc += work[i];
        if (u < acc && work[i] > 0.0f) return i;
    }
    int last = V - 1;
    while (last > 0 && work[last] == 0.0f) last--;
    return last;
}

int cmd_sample(int argc, char **argv) {
    enum { O_CKPT = 1, O_PROMPT, O_MAX, O_TEMP, O_TOPK, O_SEED, O_DEVICE, O_THREADS, O_HELP };
    static const struct option opts[] = {
        {"ckpt", required_argument, NULL, O_CKPT},      {"prompt", required_argument, NULL, O_PROMPT},
        {"max-new-tokens", required_argument, NULL, O_MAX}, {"temperature", required_argument, NULL, O_TEMP},
        {"top-k", required_argument, NULL, O_TOPK},     {"seed", required_argument, NULL, O_SEED},
        {"device", required_argument, NULL, O_DEVICE},  {"threads", required_argument, NULL, O_THREADS},
        {"help", no_argument, NULL, O_HELP},            {0, 0, 0, 0}};
    const char *ckpt = NULL, *prompt = "", *device = "auto";
    long max_new = 500, top_k = 0, seed = 1337, threads = 0;
    double temperature = 1.0;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case O_CKPT: ckpt = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_MAX: max_new = cli_int("--max-new-tokens", optarg, 0, 100000000); break;
        case O_TEMP: temperature = cli_float("--temperature", optarg, 0.0, 100.0); break;
        case O_TOPK: top_k = cli_int("--top-k", optarg, 0, 0x110000); break;
        case O_SEED: seed = cli_int("--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case O_DEVICE: device = optarg; break;
        case O_THREADS: threads = cli_int("--threads", optarg, 1, 4096); break;
        case 'h':
        case O_HELP: sample_help(); return 0;
        default: cli_unknown_flag("sample", argv);
        }
    }
    if (optind < argc) tf_die("sample: unexpected argument '%s'", argv[optind]);
    if (!ckpt) tf_die("sample: --ckpt is required (see 'tokenformer sample --help')");

    char err[TF_ERRLEN];
    const Ops *ops = cli_open_device(device, (int)threads, 1);
    Model m;
    Vocab vocab;
    TrainState ts;
    if (checkpoint_load(ckpt, ops, &m, &vocab, &ts, err)) tf_die("%s", err);

    uint32_t *cps;
    size_t n_prompt;
    if (vocab.bytes) {
        n_prompt = strlen(prompt);
        cps = tf_malloc((n_prompt ? n_prompt : 1) * sizeof *cps, "prompt");
        for (size_t i = 0; i < n_prompt; i++) cps[i] = (unsigned char)prompt[i];
    } else if (utf8_decode((const unsigned char *)prompt, strlen(prompt), &cps, &n_prompt, err)) {
        tf_die("--prompt: %s", err);
    }
    char start[5] = "";
    if (n_prompt == 0) { /* no prompt: a newline where the vocabulary has one, else its first character */
        free(cps);
        cps = tf_malloc(sizeof(uint32_t), "prompt");
        cps[0] = vocab_lookup(&vocab, '\n') >= 0 ? '\n' : vocab.codepoints[0];
        n_prompt = 1;
        start[utf8_encode(cps[0], start)] = '\0';
        prompt = start;
    }
    int T = m.cfg.block_size, V = m.cfg.vocab_size;
    size_t cap = n_prompt + (size_t)max_new;
    int *ids = tf_malloc(sizeof(int) * cap, "context");
    if (vocab_encode(&vocab, cps, n_prompt, ids, err)) tf_die("--prompt: %s", err);
    free(cps);
    if (model_alloc_activations(&m, 1, T, err)) tf_die("%s", err);
    float *logits = tf_malloc(sizeof(float) * V * 2, "logits");
    Rng rng;
    rng_seed(&rng, (uint64_t)seed);

    fputs(prompt, stdout);
    fflush(stdout);
    size_t len = n_prompt;
    for (long i = 0; i < max_new; i++) {
        int ctx = len > (size_t)T ? T : (int)len; /* crop to the last block_size tokens */
        model_forward(&m, ids + len - ctx, NULL, 1, ctx, 0, 0);
        model_logits_row(&m, 0, ctx - 1, logits);
        int next = sample_token(logits, V, (float)temperature, (int)top_k, &rng, logits + V);
        ids[len++] = next;
        char buf[4];
        if (vocab.bytes) /* a byte model's output is bytes, UTF-8 or not */
            fputc(next, stdout);
        else
            fwrite(buf, 1, (size_t)utf8_encode(vocab.codepoints[next], buf), stdout);
        if (fflush(stdout) != 0) break; /* nowhere to write: tf_finish_stdout reports it */
    }
    fputc('\n', stdout);
    free(logits);
    free(ids);
    vocab_free(&vocab);
    model_free(&m);
    return tf_finish_stdout(0);
}
