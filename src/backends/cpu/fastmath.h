/* Branch-free exp and erf that the compiler can vectorize (libm's calls
 * block SIMD loops). Accuracy: exp within ~2 ulp on [-87, 88]; erf within
 * 1.5e-7 absolute (Abramowitz & Stegun 7.1.26). GeLU built on them differs
 * from the erf form by < 1e-7 * |x|. */
#ifndef TF_CPU_FASTMATH_H
#define TF_CPU_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float fast_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    /* x = n ln2 + f, |f| <= ln2/2, ln2 split in two for an exact product */
    /* round to nearest by the 1.5 * 2^23 trick: no libm call, so it vectorizes */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float f = x - n * 0.693145751953125f;
    f -= n * 1.428606765330187e-06f;
    /* e^f by its Taylor polynomial to degree 6 (error < 2e-8 on the range) */
    float p = 1.0f / 720.0f;
    p = p * f + 1.0f / 120.0f;
    p = p * f + 1.0f / 24.0f;
    p = p * f + 1.0f / 6.0f;
    p = p * f + 0.5f;
    p = p * f + 1.0f;
    p = p * f + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* unsigned: a NaN x must not shift a negative */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float fast_erff(float x) {
    float ax = x < 0.0f ? -x : x;
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    float y = 1.0f - poly * fast_expf(-ax * ax);
    return x < 0.0f ? -y : y;
}

#define TF_INV_SQRT2 0.70710678118654752f
#define TF_INV_SQRT_2PI 0.39894228040143268f

static inline float fast_gelu(float x) { return 0.5f * x * (1.0f + fast_erff(x * TF_INV_SQRT2)); }

static inline float fast_gelu_grad(float x) {
    return 0.5f * (1.0f + fast_erff(x * TF_INV_SQRT2)) + x * TF_INV_SQRT_2PI * fast_expf(-0.5f * x * x);
}

#endif
