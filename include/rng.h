/* Random numbers: a seeded host generator (data windows, weight init,
 * sampling) and a stateless hash for dropout masks shared by all backends. */
#ifndef TF_RNG_H
#define TF_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define TF_HOSTDEV __host__ __device__
#else
#define TF_HOSTDEV
#endif

typedef struct {
    uint64_t state;
} Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);          /* 64 random bits */
float rng_uniform(Rng *r);          /* [0, 1) */
float rng_normal(Rng *r);           /* N(0, 1) */
uint64_t rng_below(Rng *r, uint64_t n); /* uniform in [0, n) */

/* splitmix64 finalizer: a good 64-bit mix, cheap on CPU and GPU. */
static inline TF_HOSTDEV uint64_t tf_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Keep element i under dropout rate p? Pure function of (seed, i). */
static inline TF_HOSTDEV int tf_dropout_keep(uint64_t seed, uint64_t i, float p) {
    uint64_t h = tf_mix64(seed ^ tf_mix64(i + 0x9e3779b97f4a7c15ULL));
    float u = (float)(h >> 40) * (1.0f / 16777216.0f); /* 24 bits -> [0,1) */
    return u >= p;
}

#endif
