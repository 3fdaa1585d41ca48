/* N streams sampled as one batch. With the cache, the prompt is encoded
 * once and each new token costs one token's forward; without it, every
 * token re-runs the whole window (the reference the cache must match). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int sample_token(const float *logits, int V, float temperature, int top_k, Rng *rng,
                 float *work) {
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

uint64_t sampler_stream_seed(uint64_t seed, int i) {
    return i == 0 ? seed : tf_mix64(seed ^ tf_mix64((uint64_t)i * 0x9e3779b97f4a7c15ULL));
}

int sampler_init(Sampler *s, Model *m, int n_streams, const int *prompt, size_t n_prompt,
                 size_t max_new, const SamplerConfig *cfg, char *err) {
    memset(s, 0, sizeof *s);
    int block = m->cfg.block_size, V = m->cfg.vocab_size;
    if (n_prompt < 1) return tf_err(err, "internal: empty prompt");
    s->m = m;
    s->cfg = *cfg;
    s->B = n_streams;
    s->cap = n_prompt + max_new;
    s->len = n_prompt;
    s->n_unfed = (int)(n_prompt < (size_t)block ? n_prompt : (size_t)block + 1);
    if (model_alloc_activations(m, n_streams, block, err)) return -1;
    /* every token reads all the weights: in the form the products take (CUDA
     * bf16), once for all tokens. Not lora_eff, which lora_refresh rewrites
     * through compute ops. */
    if (!m->lora_eff) m->ops->cache_weights(m->ops, m->param_mem, m->n_param_elems);
    if (cfg->use_cache && model_kv_alloc(m, &s->kv, n_streams, err)) return -1;
    if (cfg->no_graph) model_kv_never_record(&s->kv);
    s->hist = tf_malloc(sizeof(int) * s->cap * n_streams, "sampled tokens");
    for (int b = 0; b < n_streams; b++) memcpy(s->hist + b * s->cap, prompt, sizeof(int) * n_prompt);
    s->rng = tf_malloc(sizeof(Rng) * n_streams, "stream generators");
    for (int b = 0; b < n_streams; b++) rng_seed(&s->rng[b], sampler_stream_seed(cfg->seed, b));
    s->feed = tf_malloc(sizeof(int) * (size_t)block * n_streams, "model input");
    s->logits = tf_malloc(sizeof(float) * (size_t)V * n_streams * 2, "logits");
    s->work = s->logits + (size_t)V * n_streams;
    return 0;
}

void sampler_free(Sampler *s) {
    if (s->kv.mem) model_kv_free(s->m, &s->kv);
    free(s->hist);
    free(s->rng);
    free(s->feed);
    free(s->logits);
    memset(s, 0, sizeof *s);
}

/* The last T tokens of every stream, stream-major, into feed. */
static void gather_tail(Sampler *s, int T) {
    for (int b = 0; b < s->B; b++)
        memcpy(s->feed + (size_t)b * T, s->hist + b * s->cap + s->len - T, sizeof(int) * T);
}

/* Without a cache: the last block_size tokens, positions from 0, every time. */
static void forward_window(Sampler *s) {
    int block = s->m->cfg.block_size;
    int ctx = s->len > (size_t)block ? block : (int)s->len;
    gather_tail(s, ctx);
    model_forward(s->m, s->feed, NULL, s->B, ctx, 0, 0);
}

/* The tokens kept when the cache is full: half a window, re-encoded from
 * position 0, so that the next block_size / 2 tokens cost one token each. */
static int window_keep(int block) { return block / 2 > 0 ? block / 2 : 1; }

/* With the cache: feed what is not cached yet; when it does not fit, start
 * the cache again from the last tokens (a full window for the prompt, as
 * the no-cache path would see it; half a window later). */
static void decode_new(Sampler *s) {
    KVCache *kv = &s->kv;
    int T = s->n_unfed;
    if (kv->pos + T > kv->T_max) {
        T = kv->pos == 0 ? kv->T_max : window_keep(kv->T_max);
        if ((size_t)T > s->len) T = (int)s->len;
        model_kv_restart(kv);
    }
    gather_tail(s, T);
    model_decode(s->m, kv, s->feed, T);
}

void sampler_step(Sampler *s, int *out) {
    Model *m = s->m;
    int V = m->cfg.vocab_size;
    if (s->len >= s->cap) tf_die("internal: sampler past its %zu tokens", s->cap);
    if (s->cfg.use_cache)
        decode_new(s);
    else
        forward_window(s);
    model_logits_last(m, s->logits);
    /* the streams draw from their own generators: any order gives the same text */
#pragma omp parallel for if (s->B >= 16) schedule(static)
    for (int b = 0; b < s->B; b++) {
        int next = sample_token(s->logits + (size_t)b * V, V, s->cfg.temperature, s->cfg.top_k,
                                &s->rng[b], s->work + (size_t)b * V);
        s->hist[b * s->cap + s->len] = next;
        out[b] = next;
    }
    s->len++;
    s->n_unfed = 1;
}
