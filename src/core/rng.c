#include "rng.h"

#include <math.h>

void rng_seed(Rng *r, uint64_t seed) { r->state = seed ^ 0x5851f42d4c957f2dULL; }

uint64_t rng_next(Rng *r) {
    r->state += 0x9e3779b97f4a7c15ULL;
    return tf_mix64(r->state);
}

float rng_uniform(Rng *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }

/* Box-Muller on two fresh uniforms; one output per call keeps the stream
 * simple to reproduce (no cached second value in the state). */
float rng_normal(Rng *r) {
    double u1 = ((double)(rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t rng_below(Rng *r, uint64_t n) {
    /* Lemire-free rejection keeps the draw unbiased for any n. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_next(r);
    while (x >= limit);
    return x % n;
}
