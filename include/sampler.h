/* Sampling: N independent streams that continue one prompt, decoded as one
 * batch, with or without a KV cache (docs/DESIGN.md, Sampling). */
#ifndef TF_SAMPLER_H
#define TF_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "rng.h"

typedef struct {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: all */
    uint64_t seed;     /* stream i draws from its own generator, sampler_stream_seed */
    int use_cache;     /* 0: re-run the whole window for every token */
    int no_graph;      /* 1: decode op by op, never replaying a recorded step */
    int lookahead;     /* 1: with the cache, start the next step before reading
                        * this one's tokens (the host's round trip overlaps
                        * the next step); the model's logits are then the next step's */
    int warm_up;       /* 1: a stream that will outgrow the window runs a window
                        * restart's chunk before its first token (warm_restart_path);
                        * sampler_warm_up_pays says for which backends */
} SamplerConfig;

/* Whether the warm-up pays on this backend: where steps are recorded (CUDA),
 * whose libraries also load on first use; elsewhere it only adds work. */
int sampler_warm_up_pays(const Ops *ops);

/* Steps started and not read: the one being read and, with lookahead, the next. */
#define SAMPLER_IN_FLIGHT 2

typedef struct {
    Model *m;
    SamplerConfig cfg; /* as given, except lookahead: 0 without the cache */
    int B;          /* streams */
    size_t cap;     /* tokens a stream can hold: prompt + new */
    size_t len;     /* tokens each stream has (all advance together) */
    int *hist;      /* B x cap token ids */
    int n_unfed;    /* tokens at the end of each stream not yet in the cache */
    KVCache kv;
    Rng *rng;       /* B generators */
    int *feed;      /* B x block_size: the tokens of one model call */
    double *u_host; /* u_steps x B uniforms, drawn ahead (sample_token's draws) */
    double *u_dev;  /* the same in backend memory, then B ints: out_dev */
    int *out_dev;   /* the ids of a draw without the cache (with it: kv.tokens_dev) */
    int u_steps, u_next; /* steps a chunk of draws holds; the next one's row */
    int resident;   /* the next single-token step's ids and position are in kv's block */
    int warm_restart; /* the first step runs a window restart's chunk first (warm_restart_path) */
    int n_flight;   /* steps started whose ids are not read yet (at most SAMPLER_IN_FLIGHT) */
    int flight_head;                         /* the oldest one's slot */
    int flight_ticket[SAMPLER_IN_FLIGHT];    /* each slot's to_host_start ticket */
    int *flight_ids;                         /* SAMPLER_IN_FLIGHT x B: where each slot's ids land */
} Sampler;

/* Uniforms drawn and copied to the backend at a time (at least one step's). */
#define SAMPLER_DRAWS_AHEAD 16384

/* The seed of stream i: a function of (seed, i) only, so that stream i's
 * text does not depend on how many streams run; stream 0 uses seed itself. */
uint64_t sampler_stream_seed(uint64_t seed, int i);

/* Prepare n_streams streams that continue prompt (n_prompt >= 1 ids) by up
 * to max_new tokens each; sizes the model's activations. 0 or -1 with err. */
int sampler_init(Sampler *s, Model *m, int n_streams, const int *prompt, size_t n_prompt,
                 size_t max_new, const SamplerConfig *cfg, char *err);
/* One new token for every stream, written to out[0 .. B-1]. The logits
 * of the step stay in the model (model_logits_last), unless cfg.lookahead
 * started the next step already. */
void sampler_step(Sampler *s, int *out);
/* Replace the tokens the last step drew (B ids): what the next step feeds
 * (tests: to give two samplers the same text). */
void sampler_set_last(Sampler *s, const int *tokens);
void sampler_free(Sampler *s);

/* Pick a token from V logits: temperature (0: argmax), optional top-k, then
 * a draw from rng. work holds V floats. */
int sample_token(const float *logits, int V, float temperature, int top_k, Rng *rng,
                 float *work);

#endif
