/* Causal self-attention and rotary embeddings on the CPU. q, k, v are laid
 * out (B, T, H, hd) = rows of d = H*hd; each (batch, head) pair is
 * independent, so OpenMP splits over those. */
#include <math.h>
#include <string.h>

#include "cpu_ops.h"

void cpu_rope(float *x, int B, int T, int H, int hd, int rot, int inverse) {
    if (rot < 2) return;
    int half = rot / 2;
    int d = H * hd;
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = x + ((size_t)b * T + t) * d;
            for (int i = 0; i < half; i++) {
                double freq = pow(10000.0, -2.0 * i / (double)rot);
                double ang = t * freq;
                float c = (float)cos(ang), s = (float)(inverse ? -sin(ang) : sin(ang));
                for (int h = 0; h < H; h++) {
                    float *p = row + h * hd;
                    float x1 = p[i], x2 = p[i + half];
                    p[i] = x1 * c - x2 * s;
                    p[i + half] = x2 * c + x1 * s;
                }
            }
        }
}

void cpu_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                           int B, int T, int H, int hd) {
    int d = H * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *P = att + ((size_t)b * H + h) * T * T;
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)b * T + t) * d + h * hd;
                float *p = P + (size_t)t * T;
                float mx = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    const float *ks = k + ((size_t)b * T + s) * d + h * hd;
                    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                    for (int i = 0; i < hd; i++) dot += qt[i] * ks[i];
                    p[s] = dot * scale;
                    mx = p[s] > mx ? p[s] : mx;
                }
                float sum = 0.0f;
                for (int s = 0; s <= t; s++) {
                    p[s] = expf(p[s] - mx);
                    sum += p[s];
                }
                float inv = 1.0f / sum;
                for (int s = 0; s <= t; s++) p[s] *= inv;
                for (int s = t + 1; s < T; s++) p[s] = 0.0f;
                float *o = out + ((size_t)b * T + t) * d + h * hd;
                memset(o, 0, sizeof(float) * hd);
                for (int s = 0; s <= t; s++) {
                    const float *vs = v + ((size_t)b * T + s) * d + h * hd;
                    for (int i = 0; i < hd; i++) o[i] += p[s] * vs[i];
                }
            }
        }
}

void cpu_attention_backward(float *dq, float *dk, float *dv, float *datt, const float *dout,
                            const float *q, const float *k, const float *v, const float *att, int B,
                            int T, int H, int hd) {
    int d = H * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *P = att + ((size_t)b * H + h) * T * T;
            float *dP = datt + ((size_t)b * H + h) * T * T;
            for (int t = 0; t < T; t++) {
                memset(dq + ((size_t)b * T + t) * d + h * hd, 0, sizeof(float) * hd);
                memset(dk + ((size_t)b * T + t) * d + h * hd, 0, sizeof(float) * hd);
                memset(dv + ((size_t)b * T + t) * d + h * hd, 0, sizeof(float) * hd);
            }
            for (int t = 0; t < T; t++) {
                const float *p = P + (size_t)t * T;
                float *dp = dP + (size_t)t * T;
                const float *go = dout + ((size_t)b * T + t) * d + h * hd;
                /* dP = dout . v ; dv += p dout */
                float dot_pdp = 0.0f;
                for (int s = 0; s <= t; s++) {
                    const float *vs = v + ((size_t)b * T + s) * d + h * hd;
                    float *dvs = dv + ((size_t)b * T + s) * d + h * hd;
                    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                    for (int i = 0; i < hd; i++) {
                        acc += go[i] * vs[i];
                        dvs[i] += p[s] * go[i];
                    }
                    dp[s] = acc;
                    dot_pdp += p[s] * acc;
                }
                /* softmax backward, then the scaled dot product */
                const float *qt = q + ((size_t)b * T + t) * d + h * hd;
                float *dqt = dq + ((size_t)b * T + t) * d + h * hd;
                for (int s = 0; s <= t; s++) {
                    float ds = p[s] * (dp[s] - dot_pdp) * scale;
                    const float *ks = k + ((size_t)b * T + s) * d + h * hd;
                    float *dks = dk + ((size_t)b * T + s) * d + h * hd;
                    for (int i = 0; i < hd; i++) {
                        dqt[i] += ds * ks[i];
                        dks[i] += ds * qt[i];
                    }
                }
            }
        }
}
