/* Causal self-attention and rotary embeddings on the CPU. q, k, v are laid
 * out (B, T, H, hd) = rows of d = H*hd; each (batch, head) pair is
 * independent, so OpenMP splits over those, and within a pair the products
 * are small GEMMs on strided views (lda = d) through OpenBLAS, which runs
 * single-threaded inside the parallel region. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "op_math.h"

#include "ops_cpu.h"

/* The RoPE table (op_math.h) for T positions, computed once per (T, rot)
 * and kept: the same angles serve every layer and step. */
static const float *rope_table(int T, int rot) {
    static float *table;
    static int table_T, table_rot;
    if (table && table_T >= T && table_rot == rot) return table;
    int half = rot / 2;
    /* decoding asks for one more position per token: grow geometrically */
    if (table && table_rot == rot && T < 2 * table_T) T = 2 * table_T;
    float *t2 = realloc(table, sizeof(float) * 2 * (size_t)T * half);
    if (!t2) tf_die("out of memory for the RoPE table");
    table = t2;
    table_T = T;
    table_rot = rot;
    tf_rope_table_fill(table, T, rot);
    return table;
}

/* Rotate row (b, t) at position pos0 + t (by -angle when inverse). */
static void rope_row(float *x, const float *cs, int b, int t, int T, int H, int hd, int half,
                     int pos0, int inverse) {
    float *row = x + ((size_t)b * T + t) * H * hd;
    const float *ct = cs + (size_t)(pos0 + t) * half * 2;
    for (int i = 0; i < half; i++) {
        float c = ct[2 * i], s = ct[2 * i + 1];
        if (inverse) s = -s;
        for (int h = 0; h < H; h++) {
            float *p = row + h * hd;
            float x1 = p[i], x2 = p[i + half];
            p[i] = x1 * c - x2 * s;
            p[i + half] = x2 * c + x1 * s;
        }
    }
}

static void rope_rows(float *x, int B, int T, int H, int hd, int rot, int pos0, int inverse) {
    if (rot < 2) return;
    int half = rot / 2;
    const float *cs = rope_table(pos0 + T, rot);
    if (B * T <= 2) { /* decoding: no OpenMP team for a row or two */
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) rope_row(x, cs, b, t, T, H, hd, half, pos0, inverse);
        return;
    }
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) rope_row(x, cs, b, t, T, H, hd, half, pos0, inverse);
}

void cpu_rope(const Ops *ops, float *x, int B, int T, int H, int hd, int rot, int inverse) {
    rope_rows(x, B, T, H, hd, rot, 0, inverse);
}

/* The new rows of every stream into the cache at pos0 .. pos0+T-1. */
static void kv_append(float *cache, const float *x, int B, int T, int T_max, int pos0, int C) {
    for (int b = 0; b < B; b++)
        memcpy(cache + ((size_t)b * T_max + pos0) * C, x + (size_t)b * T * C,
               sizeof(float) * (size_t)T * C);
}

/* Head h of stream b, every new query; p holds pos0 + T scores. The same
 * arithmetic as attention_forward's row (unscaled scores, the scale in the
 * exponent, a plain sum), so that greedy decoding with a cache picks what
 * the full forward picks. */
static void decode_head(const DecodeAttnArgs *a, int b, int h, float *p) {
    int d = a->H * a->hd;
    float scale = 1.0f / sqrtf((float)a->hd);
    const float *K = a->k_cache + (size_t)b * a->T_max * d + (size_t)h * a->hd;
    const float *Vc = a->v_cache + (size_t)b * a->T_max * d + (size_t)h * a->hd;
    for (int t = 0; t < a->T; t++) {
        const float *q = a->q + ((size_t)b * a->T + t) * d + (size_t)h * a->hd;
        float *out = a->out + ((size_t)b * a->T + t) * d + (size_t)h * a->hd;
        int n = *a->pos + t + 1;
        float mx = -INFINITY;
        for (int s = 0; s < n; s++) {
            const float *ks = K + (size_t)s * d;
            float dot = 0.0f;
            for (int i = 0; i < a->hd; i++) dot += q[i] * ks[i];
            p[s] = dot;
            mx = dot > mx ? dot : mx;
        }
        float sum = 0.0f;
        for (int s = 0; s < n; s++) {
            p[s] = expf((p[s] - mx) * scale);
            sum += p[s];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < a->hd; i++) out[i] = 0.0f;
        for (int s = 0; s < n; s++) {
            const float *vs = Vc + (size_t)s * d;
            float w = p[s] * inv;
            for (int i = 0; i < a->hd; i++) out[i] += w * vs[i];
        }
    }
}

void cpu_attention_decode(const Ops *ops, const DecodeAttnArgs *a) {
    int pos0 = *a->pos, n_ctx = pos0 + a->T, d = a->H * a->hd;
    rope_rows(a->q, a->B, a->T, a->H, a->hd, a->rot, pos0, 0);
    rope_rows(a->k, a->B, a->T, a->H, a->hd, a->rot, pos0, 0);
    kv_append(a->k_cache, a->k, a->B, a->T, a->T_max, pos0, d);
    kv_append(a->v_cache, a->v, a->B, a->T, a->T_max, pos0, d);
    if ((long)a->B * a->H * n_ctx * a->T * a->hd <= (1L << 16)) { /* a token's worth: serial */
        float *p = tf_malloc(sizeof(float) * (size_t)n_ctx, "decode scores");
        for (int b = 0; b < a->B; b++)
            for (int h = 0; h < a->H; h++) decode_head(a, b, h, p);
        free(p);
        return;
    }
#pragma omp parallel
    {
        float *p = tf_malloc(sizeof(float) * (size_t)n_ctx, "decode scores");
#pragma omp for collapse(2)
        for (int b = 0; b < a->B; b++)
            for (int h = 0; h < a->H; h++) decode_head(a, b, h, p);
        free(p);
    }
}

/* Row t of P (T x T): softmax over the scores s <= t, zero above the diagonal. */
static void causal_softmax_rows(float *P, int T, float scale) {
    for (int t = 0; t < T; t++) {
        float *p = P + (size_t)t * T;
        float mx = -INFINITY;
        for (int s = 0; s <= t; s++) mx = p[s] > mx ? p[s] : mx;
        float sum = 0.0f;
        for (int s = 0; s <= t; s++) {
            p[s] = expf((p[s] - mx) * scale);
            sum += p[s];
        }
        float inv = 1.0f / sum;
        for (int s = 0; s <= t; s++) p[s] *= inv;
        for (int s = t + 1; s < T; s++) p[s] = 0.0f;
    }
}

/* Where head h of batch row b starts: in q/k/v/out (rows of d = H*hd
 * columns) and in the (B, H, T, T) probabilities. */
static size_t head_columns(int b, int h, int T, int H, int hd) { return (size_t)b * T * H * hd + (size_t)h * hd; }
static size_t head_scores(int b, int h, int T, int H) { return ((size_t)b * H + h) * T * T; }

void cpu_attention_forward(const Ops *ops, float *out, float *att, const float *q, const float *k,
                           const float *v, int B, int T, int H, int hd) {
    int d = H * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t off = head_columns(b, h, T, H, hd);
            float *P = att + head_scores(b, h, T, H);
            /* scores = Q K^T (unscaled; the scale goes into the exponent) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, q + off, d,
                        k + off, d, 0.0f, P, T);
            causal_softmax_rows(P, T, scale);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, v + off,
                        d, 0.0f, out + off, d);
        }
}

void cpu_attention_backward(const Ops *ops, float *dq, float *dk, float *dv, float *datt,
                            const float *dout, const float *out, const float *q, const float *k,
                            const float *v, const float *att, int B, int T, int H, int hd) {
    int d = H * hd;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t off = head_columns(b, h, T, H, hd);
            const float *P = att + head_scores(b, h, T, H);
            float *dP = datt + head_scores(b, h, T, H);
            /* dP = dO V^T ; dV = P^T dO */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dout + off, d,
                        v + off, d, 0.0f, dP, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, P, T, dout + off,
                        d, 0.0f, dv + off, d);
            /* softmax backward, with the score scale folded in: dS = P (dP - rowdot) scale */
            for (int t = 0; t < T; t++) {
                const float *p = P + (size_t)t * T;
                float *dp = dP + (size_t)t * T;
                float dot = 0.0f;
                for (int s = 0; s <= t; s++) dot += p[s] * dp[s];
                for (int s = 0; s <= t; s++) dp[s] = p[s] * (dp[s] - dot) * scale;
                for (int s = t + 1; s < T; s++) dp[s] = 0.0f;
            }
            /* dQ = dS K ; dK = dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dP, T, k + off,
                        d, 0.0f, dq + off, d);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dP, T, q + off, d,
                        0.0f, dk + off, d);
        }
}
