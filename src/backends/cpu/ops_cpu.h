/* Functions of the CPU backend shared between its source files. */
#ifndef TF_CPU_OPS_H
#define TF_CPU_OPS_H

#include "ops.h"

/* C = alpha op(A) op(B) + beta C, row-major, split over C's rows across threads. */
void cpu_gemm(const float *A, const float *B, float *C, int M, int N, int K, int trans_a,
              int trans_b, float alpha, float beta);


void cpu_accumulate(const Ops *ops, float *y, const float *x, size_t n);
void cpu_layernorm_forward(const Ops *ops, float *out, float *mean, float *rstd, const float *x,
                           const float *w, const float *b, int N, int C);
void cpu_rmsnorm_forward(const Ops *ops, float *out, float *rstd, const float *x, const float *w,
                         int N, int C);
void cpu_rmsnorm_backward(const Ops *ops, float *dx, float *dw, const float *dout, const float *x,
                          const float *w, const float *rstd, int N, int C);
/* The normalized input rows of a Pattention or linear (ops.h PattInput);
 * forward computes them, backward reads them back. */
const float *cpu_input_rows(const Ops *ops, PattInput in, int N, int d_in, int forward);
void cpu_linear_forward(const Ops *ops, const LinearArgs *args);
void cpu_linear_backward(const Ops *ops, const LinearArgs *args);
void cpu_pattention_forward(const Ops *ops, const PattArgs *args);
void cpu_pattention_backward(const Ops *ops, const PattArgs *args);
void cpu_rope(const Ops *ops, float *x, int B, int T, int H, int hd, int rot, int inverse);
void cpu_attention_decode(const Ops *ops, const DecodeAttnArgs *args);
void cpu_attention_forward(const Ops *ops, float *out, float *att, const float *q, const float *k,
                           const float *v, int B, int T, int H, int hd);
void cpu_attention_backward(const Ops *ops, float *dq, float *dk, float *dv, float *datt,
                            const float *dout, const float *out, const float *q, const float *k,
                            const float *v, const float *att, int B, int T, int H, int hd);

#endif
