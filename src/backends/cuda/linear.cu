// Linear projections (ops.h linear_forward/backward) for a group of G
// members sharing the input X (PattInput: normalized here as for a
// Pattention), weights stacked G x (d_out x d_in) in nn.Linear's layout:
//   forward:  Y_g = X W_g^T (+ residual, in the GEMM's epilogue)
//   backward: dW_g += dY_g^T X, dX (+)= sum_g dY_g W_g (either NULL: skipped; ops.h)
// The members' outputs are stacked G x (N x d_out), so forward and dW are
// one batched GEMM each (X shared: batch stride 0); dX sums the members in
// turn (G GEMMs, the first overwriting or accumulating, the rest adding).
// With --precision bf16 the operands are bf16 (W from the AdamW mirror, X
// as the input helpers give it, dY rounded unless an attention tensor) and
// the products accumulate in fp32, as the Pattention's do; otherwise fp32
// operands (TF32 under --precision tf32).
#include "common.cuh"

namespace {

void check_args(const LinearArgs *a) {
    if (a->G < 1) tfc_fail("linear", "group size out of range", __FILE__, __LINE__);
    if (a->d_in <= 0 || a->d_out <= 0) tfc_fail("linear", "empty weight", __FILE__, __LINE__);
}

// TY: the type of Y (bf16 when Y is an attention tensor in bf16 mode).
template <typename T, typename TY>
void forward(OpsCtx *c, TY *Y, const T *X, const T *W, const float *residual, int G, int N,
             int d_in, int d_out) {
    if (residual) { // Y = residual + X W^T
        tfc_gemm_from(c, Y, residual, d_out, Dt<TY>::type(), TfcOperand{X, d_in, 0},
                      TfcOperand{W, d_in, 0}, Dt<T>::type(), N, d_out, d_in, 0, 1, 1.0f, 1.0f,
                      Dt<T>::compute(c));
        return;
    }
    tfc_gemm(c, Y, d_out, (long long)N * d_out, X, d_in, 0, W, d_in, (long long)d_out * d_in, N,
             d_out, d_in, 0, 1, 0.0f, G);
}

// TX: the type of dX (that of X).
template <typename T, typename TX>
void backward(OpsCtx *c, TX *dX, float *dW, const T *dY, const T *X, const T *W, int G, int N,
              int d_in, int d_out, float dx_beta) {
    const long long y_stride = (long long)N * d_out, w_stride = (long long)d_out * d_in;
    if (dW) // dW_g += dY_g^T X
        tfc_gemm(c, dW, d_in, w_stride, dY, d_out, y_stride, X, d_in, 0, d_out, d_in, N, 1, 0, 1.0f,
                 G);
    if (!dX) return;
    for (int g = 0; g < G; g++) // dX (+)= dY_g W_g
        tfc_gemm(c, dX, d_in, 0, dY + g * y_stride, d_out, 0, W + g * w_stride, d_in, 0, N, d_in,
                 d_out, 0, 0, g ? 1.0f : dx_beta, 1);
}

} // namespace

void cu_linear_forward(const Ops *ops, const LinearArgs *a) {
    OpsCtx *c = ops->ctx;
    check_args(a);
    if (a->residual && (a->G != 1 || a->y_attn))
        tfc_fail("linear", "a residual with a group or an attention-tensor output", __FILE__,
                 __LINE__);
    const int G = a->G, N = a->N, d_in = a->d_in, d_out = a->d_out;
    if (N <= 0) return;
    if (c->precision != MATMUL_BF16) {
        forward<float>(c, a->Y, tfc_input_fp32(c, a->X, N, d_in, true), a->W, a->residual, G, N,
                       d_in, d_out);
        return;
    }
    const bf16 *Xb = tfc_input_bf16(c, a->X, N, d_in, true);
    const bf16 *Wb = tfc_bf16_input(c, TFC_WS_BF16_K, a->W, (size_t)G * d_out * d_in);
    if (a->y_attn)
        forward<bf16>(c, (bf16 *)a->Y, Xb, Wb, nullptr, G, N, d_in, d_out);
    else
        forward<bf16>(c, a->Y, Xb, Wb, a->residual, G, N, d_in, d_out);
}

void cu_linear_backward(const Ops *ops, const LinearArgs *a) {
    OpsCtx *c = ops->ctx;
    check_args(a);
    const int G = a->G, N = a->N, d_in = a->d_in, d_out = a->d_out;
    if (N <= 0) return;
    if (a->X.attn && a->accumulate_dx)
        tfc_fail("linear", "accumulating into an attention-tensor dX", __FILE__, __LINE__);
    const float dx_beta = a->accumulate_dx ? 1.0f : 0.0f;
    if (c->precision != MATMUL_BF16) {
        backward<float>(c, a->dX, a->dW, a->dY, tfc_input_fp32(c, a->X, N, d_in, false), a->W, G, N,
                        d_in, d_out, dx_beta);
        return;
    }
    const bf16 *dYb = a->y_attn ? (const bf16 *)a->dY
                                : tfc_bf16_copy(c, TFC_WS_BF16_DY, a->dY, (size_t)G * N * d_out);
    const bf16 *Xb = tfc_input_bf16(c, a->X, N, d_in, false);
    const bf16 *Wb = tfc_bf16_input(c, TFC_WS_BF16_K, a->W, (size_t)G * d_out * d_in);
    if (a->X.attn)
        backward<bf16>(c, (bf16 *)a->dX, a->dW, dYb, Xb, Wb, G, N, d_in, d_out, dx_beta);
    else
        backward<bf16>(c, a->dX, a->dW, dYb, Xb, Wb, G, N, d_in, d_out, dx_beta);
}
