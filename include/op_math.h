/* Element math that both backends compute, written once for the host and
 * the device (as rng.h does for the dropout mask), so that the CPU and CUDA
 * copies cannot drift apart. */
#ifndef TF_OP_MATH_H
#define TF_OP_MATH_H

#include <math.h>

#include "rng.h" /* TF_HOSTDEV */

/* RoPE's table (ops.h rope): cos, sin of t * 10000^(-2i/rot) for t < T,
 * i < rot/2, at [(t * rot/2 + i) * 2], computed in double so that the
 * backends agree bit for bit even at large t (a float angle loses ~1e-4). */
static inline void tf_rope_table_fill(float *table, int T, int rot) {
    int half = rot / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow(10000.0, -2.0 * i / (double)rot);
            table[((size_t)t * half + i) * 2] = (float)cos(ang);
            table[((size_t)t * half + i) * 2 + 1] = (float)sin(ang);
        }
}

/* AdamW's bias corrections 1 - beta^t of step t (ops.h adamw: t >= 1; a
 * smaller t counts as 1). */
typedef struct {
    float bc1, bc2;
} AdamwCorrections;

static inline AdamwCorrections tf_adamw_corrections(float beta1, float beta2, int t) {
    if (t < 1) t = 1;
    AdamwCorrections c = {1.0f - powf(beta1, (float)t), 1.0f - powf(beta2, (float)t)};
    return c;
}

/* One element of AdamW: the gradient g scaled by grad_scale (clipping)
 * updates the moments *m and *v in place; returns the updated parameter,
 * with decoupled weight decay lr * wd * p. */
static inline TF_HOSTDEV float tf_adamw_element(float p, float g, float *m, float *v, float lr,
                                                float beta1, float beta2, float eps, float wd,
                                                float grad_scale, AdamwCorrections c) {
    float gi = g * grad_scale;
    float mi = beta1 * *m + (1.0f - beta1) * gi;
    float vi = beta2 * *v + (1.0f - beta2) * gi * gi;
    *m = mi;
    *v = vi;
    float mhat = mi / c.bc1, vhat = vi / c.bc2;
    return p - lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
}

#endif
