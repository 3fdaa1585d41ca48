/* tokenformer sample: stream text from a checkpoint. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "command_setup.h"
#include "common.h"
#include "data.h"
#include "rng.h"
#include "sampler.h"

#define SAMPLE_COMMON_FLAGS (COMMON_RUN_FLAGS | COMMON_SEED)

static void sample_help(void) {
    printf("usage: tokenformer sample --ckpt CKPT [options]\n"
           "\n"
           "Generate characters from a checkpoint, streamed to stdout as they come. A\n"
           "model of --tokenizer bytes prints bytes, which need not be valid UTF-8.\n"
           "\n"
           "options:\n"
           "  --ckpt CKPT            checkpoint to sample from (required)\n"
           "  --prompt S             text to continue (default: a newline, or the first\n"
           "                         vocabulary character when the model has no newline)\n"
           "  --prompt-file F        the text of file F to continue, instead of --prompt\n"
           "                         (UTF-8, or any bytes for a --tokenizer bytes model)\n"
           "  --max-new-tokens N     characters to generate (default 500)\n"
           "  --temperature T        softmax temperature, > 0 (default 1.0); 0 = greedy\n"
           "  --top-k K              keep only the K most likely characters (default 0: all)\n"
           "  --num-samples N        N independent samples of the prompt, decoded as one\n"
           "                         batch and printed one after another, each followed by\n"
           "                         a line of dashes (default 1: streamed as it comes);\n"
           "                         more than 64 run as further batches of 64\n"
           "  --no-cache             re-run the whole context for every character instead\n"
           "                         of the KV cache (slow; the reference for tests)\n"
           "  --no-graph             on a GPU, decode op by op instead of replaying the\n"
           "                         recorded steps (CUDA graphs: the single-token step\n"
           "                         and the chunk a window restart re-encodes)\n");
    common_print_help(SAMPLE_COMMON_FLAGS, "(stream i of --num-samples draws from a seed made of\n"
                                           "(S, i), so its text does not depend on how many\n"
                                           "streams run)");
}

/* The bytes of token id: a byte model's output is bytes, UTF-8 or not. */
static int token_bytes(const Vocab *vocab, int id, char *buf) {
    if (vocab->bytes) {
        buf[0] = (char)id;
        return 1;
    }
    return utf8_encode(vocab->codepoints[id], buf);
}

/* Several streams: each one's text whole, then a separator line (nanoGPT's
 * layout), once all are done. */
/* The prompt as printed: its bytes (a byte model's need not be a C string). */
typedef struct {
    const char *bytes;
    size_t len;
} PromptText;

static void print_streams(char **text, const size_t *len, int n, const PromptText *prompt) {
    for (int i = 0; i < n; i++) {
        fwrite(prompt->bytes, 1, prompt->len, stdout);
        fwrite(text[i], 1, len[i], stdout);
        fputs("\n---------------\n", stdout);
    }
}

/* One stream, printed as it comes. */
static void sample_stream(Model *m, const Vocab *vocab, const int *ids, size_t n_prompt, long max_new,
                          const SamplerConfig *sc, const PromptText *prompt) {
    char err[TF_ERRLEN];
    Sampler smp;
    if (sampler_init(&smp, m, 1, ids, n_prompt, (size_t)max_new, sc, err)) tf_die("%s", err);
    fwrite(prompt->bytes, 1, prompt->len, stdout);
    fflush(stdout);
    for (long i = 0; i < max_new; i++) {
        int next;
        char buf[4];
        sampler_step(&smp, &next);
        fwrite(buf, 1, (size_t)token_bytes(vocab, next, buf), stdout);
        if (fflush(stdout) != 0) break; /* nowhere to write: tf_finish_stdout reports it */
    }
    fputc('\n', stdout);
    sampler_free(&smp);
}

/* Streams decoded as one batch: the KV cache and activations grow with it
 * (4096 streams of tiny took 14.8 GB), so more streams run as further
 * batches. 64 keeps a GPU's decoding busy (docs/BENCHMARKS.md). */
#define SAMPLE_MAX_BATCH 64

/* n > 1 streams in batches of at most SAMPLE_MAX_BATCH, each batch printed
 * when it is done. Stream i's text does not depend on the batching: its
 * generator's seed depends on i alone. */
static void sample_batches(Model *m, const Vocab *vocab, int n, const int *ids, size_t n_prompt, long max_new,
                           const SamplerConfig *sc, const PromptText *prompt) {
    char err[TF_ERRLEN];
    int cap = n < SAMPLE_MAX_BATCH ? n : SAMPLE_MAX_BATCH;
    int *next = tf_malloc(sizeof(int) * (size_t)cap, "sampled tokens");
    char **text = tf_calloc((size_t)cap, sizeof(char *), "sample texts");
    size_t *text_len = tf_calloc((size_t)cap, sizeof(size_t), "sample lengths");
    for (int i = 0; i < cap; i++) text[i] = tf_malloc((size_t)max_new * 4 + 1, "sample text");
    for (int first = 0; first < n && !ferror(stdout); first += cap) {
        int b = n - first < cap ? n - first : cap;
        Sampler smp;
        if (sampler_init(&smp, m, b, ids, n_prompt, (size_t)max_new, sc, err)) tf_die("%s", err);
        for (int k = 0; k < b; k++) rng_seed(&smp.rng[k], sampler_stream_seed(sc->seed, first + k));
        memset(text_len, 0, sizeof(size_t) * (size_t)cap);
        for (long i = 0; i < max_new; i++) {
            sampler_step(&smp, next);
            for (int k = 0; k < b; k++) text_len[k] += (size_t)token_bytes(vocab, next[k], text[k] + text_len[k]);
        }
        sampler_free(&smp);
        print_streams(text, text_len, b, prompt);
        fflush(stdout);
    }
    for (int i = 0; i < cap; i++) free(text[i]);
    free(text);
    free(text_len);
    free(next);
}

/* Prompts past this many characters are refused: each stream keeps its
 * whole history (the prompt and what it draws) in memory. */
#define PROMPT_MAX_CHARS ((size_t)1 << 20)

/* Characters (code points, byte values for a byte model) of a prompt file,
 * and its bytes as printed into *owned. */
static uint32_t *prompt_file_chars(const Vocab *vocab, const char *path, size_t *n,
                                   PromptText *shown, char **owned) {
    char err[TF_ERRLEN];
    Text t;
    if (text_load(path, vocab->bytes, &t, NULL, err)) tf_die("--prompt-file: %s", err);
    if (t.n > PROMPT_MAX_CHARS)
        tf_die("--prompt-file: '%s' has %zu characters; a prompt takes at most %zu", path, t.n,
               PROMPT_MAX_CHARS);
    uint32_t *cps = tf_malloc(t.n * sizeof *cps, "prompt");
    char *bytes = tf_malloc(t.n * 4, "prompt");
    size_t len = 0;
    for (size_t i = 0; i < t.n; i++) {
        cps[i] = text_char(&t, i);
        if (vocab->bytes) bytes[len++] = (char)cps[i];
        else len += (size_t)utf8_encode(cps[i], bytes + len);
    }
    *n = t.n;
    text_free(&t);
    *shown = (PromptText){bytes, len};
    *owned = bytes;
    return cps;
}

/* The prompt's characters (code points, byte values for a byte model) from
 * --prompt S or --prompt-file F, and its bytes as printed (*owned: what
 * the caller frees); with neither, a newline where the vocabulary has one,
 * else its first character. */
static uint32_t *prompt_chars(const Vocab *vocab, const char *prompt, const char *file, size_t *n,
                              PromptText *shown, char **owned) {
    char err[TF_ERRLEN];
    *owned = NULL;
    if (file) return prompt_file_chars(vocab, file, n, shown, owned);
    uint32_t *cps = NULL;
    size_t len = prompt ? strlen(prompt) : 0;
    if (len && vocab->bytes) {
        cps = tf_malloc(len * sizeof *cps, "prompt");
        for (size_t i = 0; i < len; i++) cps[i] = (unsigned char)prompt[i];
        *n = len;
    } else if (len && utf8_decode((const unsigned char *)prompt, len, &cps, n, err)) {
        tf_die("--prompt: %s", err);
    }
    if (len) {
        *shown = (PromptText){prompt, len};
        return cps;
    }
    cps = tf_malloc(sizeof *cps, "prompt");
    cps[0] = vocab_lookup(vocab, '\n') >= 0 ? '\n' : vocab->codepoints[0];
    *n = 1;
    *owned = tf_malloc(4, "prompt");
    *shown = (PromptText){*owned, (size_t)utf8_encode(cps[0], *owned)};
    return cps;
}

int cmd_sample(int argc, char **argv) {
    enum { O_CKPT = 1, O_PROMPT, O_PROMPT_FILE, O_MAX, O_TEMP, O_TOPK, O_NUM, O_NOCACHE, O_NOGRAPH, O_HELP };
    static const struct option own[] = {
        {"ckpt", required_argument, NULL, O_CKPT},      {"prompt", required_argument, NULL, O_PROMPT},
        {"prompt-file", required_argument, NULL, O_PROMPT_FILE},
        {"max-new-tokens", required_argument, NULL, O_MAX}, {"temperature", required_argument, NULL, O_TEMP},
        {"top-k", required_argument, NULL, O_TOPK},     {"num-samples", required_argument, NULL, O_NUM},
        {"no-cache", no_argument, NULL, O_NOCACHE},     {"no-graph", no_argument, NULL, O_NOGRAPH},
        {"help", no_argument, NULL, O_HELP}};
    struct option all[32];
    common_options(all, sizeof all / sizeof all[0], own, sizeof own / sizeof own[0], SAMPLE_COMMON_FLAGS, 0);
    CommonArgs c;
    common_args_init(&c, 1337);
    const char *ckpt = NULL, *prompt = NULL, *prompt_file = NULL;
    long max_new = 500, top_k = 0, n_samples = 1;
    int use_cache = 1, no_graph = 0;
    double temperature = 1.0;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", all, NULL)) != -1) {
        switch (opt) {
        case O_CKPT: ckpt = optarg; break;
        case O_PROMPT: prompt = optarg; break;
        case O_PROMPT_FILE: prompt_file = optarg; break;
        case O_MAX: max_new = cli_int("--max-new-tokens", optarg, 0, 100000000); break;
        case O_TEMP: temperature = cli_float("--temperature", optarg, 0.0, 100.0); break;
        case O_TOPK: top_k = cli_int("--top-k", optarg, 0, 0x110000); break;
        case O_NUM: n_samples = cli_int("--num-samples", optarg, 1, 65536); break;
        case O_NOCACHE: use_cache = 0; break;
        case O_NOGRAPH: no_graph = 1; break;
        case 'h':
        case O_HELP: sample_help(); return 0;
        default:
            if (!common_apply(opt, optarg, &c)) cli_unknown_flag("sample", argv);
        }
    }
    if (optind < argc) tf_die("sample: unexpected argument '%s'", argv[optind]);
    if (!ckpt) tf_die("sample: --ckpt is required (see 'tokenformer sample --help')");
    if (prompt && prompt_file) tf_die("sample: --prompt and --prompt-file are alternatives; give one");

    char err[TF_ERRLEN];
    LoadedCheckpoint lc;
    setup_load_checkpoint(&lc, ckpt, &c);
    Model *m = &lc.m;
    Vocab *vocab = &lc.v;
    size_t n_prompt;
    PromptText shown;
    char *shown_owned = NULL;
    uint32_t *cps = prompt_chars(vocab, prompt, prompt_file, &n_prompt, &shown, &shown_owned);
    int *ids = tf_malloc(sizeof(int) * n_prompt, "prompt ids");
    if (vocab_encode(vocab, cps, n_prompt, ids, err))
        tf_die("%s: %s", prompt_file ? "--prompt-file" : "--prompt", err);
    free(cps);
    cli_threads_for_decoding(lc.ops, m);
    SamplerConfig sc = {(float)temperature, (int)top_k, (uint64_t)c.seed, use_cache, no_graph, 1,
                        sampler_warm_up_pays(lc.ops)};
    if (n_samples > 1) sample_batches(m, vocab, (int)n_samples, ids, n_prompt, max_new, &sc, &shown);
    else sample_stream(m, vocab, ids, n_prompt, max_new, &sc, &shown);
    free(ids);
    free(shown_owned);
    setup_free_checkpoint(&lc);
    return tf_finish_stdout(0);
}
