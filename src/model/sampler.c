/* N streams sampled as one batch. With the cache, the prompt is encoded
 * once and each new token costs one token's forward; without it, every
 * token re-runs the whole window (the reference the cache must match).
 * The draw runs on the backend (ops.h sample_tokens): the host reads back
 * the B token ids, and with the cache the next single-token step finds
 * them, and its position, in backend memory, so a token costs one copy
 * (the ids out), not three (tokens and position in, logits out). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int sample_token(const float *logits, int V, float temperature, int top_k, Rng *rng,
                 float *work) {
    double u = temperature > 0.0f ? rng_uniform(rng) : 0.0;
    return ops_sample_row(logits, V, temperature, top_k, u, work);
}

int sampler_warm_up_pays(const Ops *ops) { return ops->record_begin != NULL; }

uint64_t sampler_stream_seed(uint64_t seed, int i) {
    return i == 0 ? seed : tf_mix64(seed ^ tf_mix64((uint64_t)i * 0x9e3779b97f4a7c15ULL));
}

/* The tokens kept when the cache is full: half a window, re-encoded from
 * position 0, so that the next block_size / 2 tokens cost one token each. */
static int window_keep(int block) { return block / 2 > 0 ? block / 2 : 1; }

int sampler_init(Sampler *s, Model *m, int n_streams, const int *prompt, size_t n_prompt,
                 size_t max_new, const SamplerConfig *cfg, char *err) {
    memset(s, 0, sizeof *s);
    int block = m->cfg.block_size;
    if (n_prompt < 1) return tf_err(err, "internal: empty prompt");
    s->m = m;
    s->cfg = *cfg;
    s->cfg.lookahead = cfg->lookahead && cfg->use_cache; /* ahead of what: no cache, no resident ids */
    s->B = n_streams;
    s->cap = n_prompt + max_new;
    s->len = n_prompt;
    s->n_unfed = (int)(n_prompt < (size_t)block ? n_prompt : (size_t)block + 1);
    if (model_alloc_activations(m, n_streams, block, err)) return -1;
    /* every token reads all the weights: in the form the products take (CUDA
     * bf16), once for all tokens. Not lora_eff, which lora_refresh rewrites
     * through compute ops. */
    if (!m->lora_eff) m->ops->cache_weights(m->ops, m->param_mem, m->n_param_elems);
    /* a sampler's GEMM shapes (the prefills at window restarts) recur too
     * rarely for timing candidate kernels to pay back (docs/BENCHMARKS.md);
     * sampler_free turns it back on for whoever uses the backend next */
    m->ops->set_gemm_tuning(m->ops, 0);
    if (cfg->use_cache && model_kv_alloc(m, &s->kv, n_streams, err)) return -1;
    if (cfg->no_graph) model_kv_never_record(&s->kv);
    s->kv.restart_T = window_keep(block);
    s->warm_restart = cfg->warm_up && cfg->use_cache && s->cap > (size_t)s->kv.T_max && window_keep(block) > 1;
    s->hist = tf_malloc(sizeof(int) * s->cap * n_streams, "sampled tokens");
    for (int b = 0; b < n_streams; b++) memcpy(s->hist + b * s->cap, prompt, sizeof(int) * n_prompt);
    s->rng = tf_malloc(sizeof(Rng) * n_streams, "stream generators");
    for (int b = 0; b < n_streams; b++) rng_seed(&s->rng[b], sampler_stream_seed(cfg->seed, b));
    s->feed = tf_malloc(sizeof(int) * (size_t)block * n_streams, "model input");
    s->flight_ids = tf_malloc(sizeof(int) * SAMPLER_IN_FLIGHT * (size_t)n_streams, "sampled tokens in flight");
    /* the uniforms of SAMPLER_DRAWS_AHEAD draws or one step, whichever is more */
    size_t steps = SAMPLER_DRAWS_AHEAD / (size_t)n_streams;
    steps = steps < max_new ? steps : max_new;
    s->u_steps = (int)(steps > 0 ? steps : 1);
    s->u_next = s->u_steps;
    s->u_host = tf_malloc(sizeof(double) * (size_t)s->u_steps * n_streams, "draws");
    const Ops *o = m->ops;
    size_t dev_bytes = sizeof(double) * (size_t)s->u_steps * n_streams + sizeof(int) * n_streams;
    s->u_dev = o->alloc(o, dev_bytes);
    if (!s->u_dev) return tf_err(err, "out of %s memory for the sampler's draws", o->name);
    s->out_dev = (int *)(s->u_dev + (size_t)s->u_steps * n_streams);
    return 0;
}

static void read_step(Sampler *s, int *out);

void sampler_free(Sampler *s) {
    while (s->n_flight > 0) read_step(s, NULL); /* the copies write flight_ids */
    if (s->kv.mem) model_kv_free(s->m, &s->kv);
    if (s->u_dev) s->m->ops->free(s->m->ops, s->u_dev);
    if (s->m) s->m->ops->set_gemm_tuning(s->m->ops, 1);
    free(s->hist);
    free(s->rng);
    free(s->feed);
    free(s->u_host);
    free(s->flight_ids);
    memset(s, 0, sizeof *s);
}

void sampler_set_last(Sampler *s, const int *tokens) {
    if (s->n_flight) tf_die("internal: sampler_set_last with a step in flight");
    for (int b = 0; b < s->B; b++) s->hist[b * s->cap + s->len - 1] = tokens[b];
    s->resident = 0;
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

/* A window restart is the first chunk a stream encodes after its prompt: on
 * a GPU, where libraries initialize and kernels load on first use, the first
 * one stalled the stream in its middle (docs/BENCHMARKS.md, decoding), and
 * the second records the chunk (model_decode). A stream that will restart
 * runs all of that before its first token instead, on its first token
 * repeated: the chunk, one single-token step after it (whose first use may
 * grow a workspace, which would make a recording made before it stale), and
 * the chunk again, recorded; the cache is emptied after each pass. The
 * stall and the recording move to the time to the first token, the
 * single-token step is recorded at its next use, and no token changes. */
static void warm_restart_path(Sampler *s) {
    KVCache *kv = &s->kv;
    int T = window_keep(kv->T_max);
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < T; t++) s->feed[(size_t)b * T + t] = s->hist[(size_t)b * s->cap];
    model_decode(s->m, kv, s->feed, T);
    model_decode(s->m, kv, s->feed, 1); /* T + 1 <= T_max: window_keep is half of it */
    model_kv_restart(kv);
    if (!kv->restart.off) { /* off (--no-graph): nothing to record */
        model_decode(s->m, kv, s->feed, T);
        model_kv_restart(kv);
    }
    s->warm_restart = 0;
}

/* With the cache: feed what is not cached yet; when it does not fit, start
 * the cache again from the last tokens (a full window for the prompt, as
 * the no-cache path would see it; half a window later). */
static void decode_new(Sampler *s) {
    KVCache *kv = &s->kv;
    int T = s->n_unfed;
    if (s->warm_restart) warm_restart_path(s);
    if (kv->pos + T > kv->T_max) {
        T = kv->pos == 0 ? kv->T_max : window_keep(kv->T_max);
        if ((size_t)T > s->len) T = (int)s->len;
        model_kv_restart(kv);
        s->resident = 0; /* the device's position is the old one */
    }
    if (T == 1 && s->resident) { /* the last draw left its tokens in the cache's block */
        model_decode(s->m, kv, NULL, 1);
        return;
    }
    gather_tail(s, T);
    model_decode(s->m, kv, s->feed, T);
}

/* This step's uniforms in backend memory (NULL when greedy): stream b's
 * generator draws once per step, as sample_token would, a chunk of steps
 * at a time so that the copy is rare. Drawn at the first step that needs
 * them, so that generators seeded after sampler_init count. */
static const double *step_draws(Sampler *s) {
    if (s->cfg.temperature <= 0.0f) return NULL;
    if (s->u_next == s->u_steps) {
        for (int j = 0; j < s->u_steps; j++)
            for (int b = 0; b < s->B; b++)
                s->u_host[(size_t)j * s->B + b] = rng_uniform(&s->rng[b]);
        const Ops *o = s->m->ops;
        o->to_device(o, s->u_dev, s->u_host, sizeof(double) * (size_t)s->u_steps * s->B);
        s->u_next = 0;
    }
    return s->u_dev + (size_t)s->u_next++ * s->B;
}

/* Start the step that draws token len + n_flight of every stream: feed what
 * the cache lacks, draw on the backend, and start copying the ids out.
 * A step started while another is in flight feeds the ids that one left
 * in backend memory (can_start_ahead). */
static void start_step(Sampler *s) {
    Model *m = s->m;
    const Ops *o = m->ops;
    int V = m->cfg.vocab_size, cached = s->cfg.use_cache;
    if (s->len + (size_t)s->n_flight >= s->cap) tf_die("internal: sampler past its %zu tokens", s->cap);
    if (cached)
        decode_new(s);
    else
        forward_window(s);
    /* each stream's last position; with the cache, the ids where the next
     * step reads its input, and the position it will be at */
    SampleArgs a = {.tokens = cached ? s->kv.tokens_dev : s->out_dev,
                    .logits = m->logits + (size_t)(m->T - 1) * V,
                    .u = step_draws(s),
                    .B = s->B,
                    .V = V,
                    .stride = m->T * V,
                    .temperature = s->cfg.temperature,
                    .top_k = s->cfg.top_k,
                    .pos = cached ? s->kv.pos_dev : NULL,
                    .pos_value = s->kv.pos};
    o->sample_tokens(o, &a);
    int slot = (s->flight_head + s->n_flight) % SAMPLER_IN_FLIGHT;
    s->flight_ticket[slot] =
        o->to_host_start(o, s->flight_ids + (size_t)slot * s->B, a.tokens, sizeof(int) * s->B);
    s->n_flight++;
    s->n_unfed = 1;
    s->resident = cached;
}

/* The next step can start before the host has the last one's ids when it
 * needs nothing but them: a single-token step from backend memory that does
 * not restart the cache (a restart re-encodes tokens from the host). */
static int can_start_ahead(const Sampler *s) {
    return s->cfg.lookahead && s->n_flight == 1 && s->resident &&
           s->kv.pos + 1 <= s->kv.T_max && s->len + 2 <= s->cap;
}

/* Wait for the oldest step in flight; its ids into out (NULL: dropped) and
 * the streams' history. */
static void read_step(Sampler *s, int *out) {
    const Ops *o = s->m->ops;
    int slot = s->flight_head;
    const int *ids = s->flight_ids + (size_t)slot * s->B;
    o->to_host_wait(o, s->flight_ticket[slot]);
    s->flight_head = (slot + 1) % SAMPLER_IN_FLIGHT;
    s->n_flight--;
    if (!out) return;
    memcpy(out, ids, sizeof(int) * s->B);
    for (int b = 0; b < s->B; b++) s->hist[b * s->cap + s->len] = ids[b];
    s->len++;
}

void sampler_step(Sampler *s, int *out) {
    if (s->n_flight == 0) start_step(s);
    if (can_start_ahead(s)) start_step(s);
    read_step(s, out);
}
