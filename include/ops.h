/* The ops table: every numerical operation the model needs, forward and
 * backward. Each backend (src/backends/cpu, src/backends/cuda) fills one table; the model
 * calls only through it and never branches on the device.
 *
 * Conventions (all backends):
 *  - every float* / int* points to memory of the backend's device;
 *  - matrices are row-major, fp32; N = number of token rows (B*T);
 *  - "accumulates" means += into the output (parameter gradients and
 *    gradients of tensors with several consumers); otherwise outputs are
 *    overwritten;
 *  - functions returning a float return it on the host (a sync point);
 *  - parameters change only through adamw and the memory ops (to_device,
 *    copy, zero): a backend may keep derived copies of them (CUDA under
 *    bf16 keeps a bf16 mirror that adamw refreshes and the memory ops drop).
 *
 * Adding an op: add its line to OPS_LIST below, beside its kin, taking
 * `const Ops *` first, and document shapes, layout and what accumulates in
 * the contracts above the list; group more than about eight arguments in a
 * struct as PattArgs does. The table field, the profiler's wrapper and the
 * CUDA declaration and table entry follow from that line. Implement it in
 * both backends (src/backends/cpu: a plain reference loop or BLAS call, and
 * its table entry in ops_cpu.c; src/backends/cuda: cu_<name> taking the
 * table, the kernel in its own file) and give it a case in the op tests
 * (ops_op_names lists the ops that need one).
 */
#ifndef TF_OPS_H
#define TF_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* Pattention's modified softmax (docs/MODEL.md, Pattention). */
typedef enum {
    PNORM_L2_GELU = 0, /* GeLU(tau * A / ||A||)           (default) */
    PNORM_GELU_L2 = 1, /* tau * GeLU(A) / ||GeLU(A)||              */
    PNORM_SOFTMAX = 2, /* n * softmax(A)                             */
    /* The baselines' FFN is the same op with an elementwise activation in
     * place of the row-normalized score (no tau, no row norm): */
    ACT_GELU = 3,      /* S = GeLU(A): the GeLU MLP, K = mlp.up, V = mlp.down */
    ACT_SWIGLU = 4     /* K holds 2n rows (n gate rows, then n up rows), so A
                        * is N x 2n; S = SiLU(A_gate) * A_up is N x n: SwiGLU */
} PNormMode;

#define OPS_COPIES_IN_FLIGHT 4 /* to_host_start calls not yet waited for */

#define PNORM_EPS 1e-6f
#define PATT_MAX_GROUP 4 /* members of a Pattention group (q, k, v: 3) */
#define LAYERNORM_EPS 1e-5f
#define RMSNORM_EPS 1e-5f

/* How an op's input rows are normalized before the products take them. */
typedef enum {
    NORM_NONE = 0,  /* x itself */
    NORM_LAYER = 1, /* LayerNorm(x), no affine, eps LAYERNORM_EPS: mean, rstd saved */
    NORM_RMS = 2    /* x * rstd * w, rstd = 1/sqrt(mean(x^2) + RMSNORM_EPS): rstd saved */
} NormKind;

/* The input of a Pattention or linear (group): x (N x d_in) itself
 * (norm NORM_NONE), LayerNorm(x) (NORM_LAYER: no affine, eps LAYERNORM_EPS;
 * mean and rstd set) or RMSNorm(x) (NORM_RMS: x * rstd * w, w a d_in weight
 * or NULL for 1; rstd set, mean unused). Then forward
 * writes the row statistics there and the normalized rows to xn (N x d_in
 * elements of the attention tensors' type, below: bf16 under CUDA bf16, in
 * which the products take them), and backward reads the rows back from xn;
 * the caller keeps x, mean, rstd and xn intact from a forward to its
 * backward. Fusing the normalization into the Pattention spares a backend
 * writing and reading an fp32 LayerNorm output it does not need. */
typedef struct {
    const float *x;
    float *xn, *mean, *rstd;
    int attn;       /* x is an attention tensor (below); then norm is NORM_NONE */
    int norm;       /* NormKind */
    const float *w; /* NORM_RMS weight (d_in) or NULL (1) */
} PattInput;

/* Attention tensors: q, k, v, the attention output and their gradients.
 * Their element type is attn_dtype(): DTYPE_F32 on the CPU and under CUDA
 * fp32/tf32; DTYPE_BF16 under CUDA bf16, where they only ever feed bf16
 * products (the fused attention, the Pattention GEMMs), so that fp32 copies
 * would cost a conversion per use and twice the memory. The table keeps
 * float * for them; whoever allocates one records its DType beside it (the
 * model: Model.attn_dtype, KVCache.dtype) and checks, before calling the
 * ops that take it, that the backend still computes in that type. rope and attention_forward/backward read and write only attention
 * tensors; a Pattention does where flagged: its input (PattInput.attn, and
 * then dX) and its output (y_attn: Y, and then dY). */

/* The arguments of a Pattention (group) call, forward and backward (see
 * pattention_forward below). The caller fills one struct per Pattention and
 * passes it to both directions; each reads only its own fields. */
typedef struct {
    /* both directions */
    PattInput X;          /* N x d_in */
    const float *K, *V;   /* G stacked n x d_in keys, n x d_out values */
    const float *tau;     /* G scales (a host array) */
    int G, mode;          /* group size, PNormMode */
    int N, d_in, n, d_out;
    int y_attn;           /* Y and dY are attention tensors */
    float *A, *S, *dA;    /* saved scores, normalized scores, scratch */
    /* forward */
    float *Y;             /* G stacked N x d_out */
    const float *residual; /* NULL or N x d_out (G = 1): Y = residual + output */
    /* backward */
    float *dX, *dK, *dV;  /* dK, dV accumulate, or NULL: not computed (frozen weights);
                           * dX see accumulate_dx */
    const float *dY;      /* stacked like Y */
    int accumulate_dx;
} PattArgs;

/* The arguments of a linear projection (group), forward and backward (see
 * linear_forward below), with the input convention and group stacking of
 * PattArgs. */
typedef struct {
    /* both directions */
    PattInput X;           /* N x d_in */
    const float *W;        /* G stacked d_out x d_in weights (nn.Linear layout) */
    int G, N, d_in, d_out;
    int y_attn;            /* Y and dY are attention tensors */
    /* forward */
    float *Y;              /* G stacked N x d_out */
    const float *residual; /* NULL or N x d_out (G = 1): Y = residual + output */
    /* backward */
    float *dX, *dW;        /* dW accumulates, or NULL: not computed (frozen weights);
                            * dX see accumulate_dx, or NULL: not computed (dW alone) */
    const float *dY;       /* stacked like Y */
    int accumulate_dx;
} LinearArgs;

/* attention_decode: T new positions pos0 .. pos0+T-1 of each stream (pos0 =
 * *pos, an int in backend memory that the op reads when it runs, not when
 * it is called, so that a recorded decode step (record_begin) serves every
 * position). q, k, v (B, T, H*hd) are the new rows as the q, k, v
 * Pattentions wrote them; the op rotates q and k in place (rope, GPT-NeoX
 * style over the first `rot` dims of each head, at their positions),
 * appends the rotated k and v to the caches k_cache, v_cache (B, T_max,
 * H*hd: stream b's position t at row b*T_max + t) and writes to out the
 * attention of each new query over everything cached: query t attends to
 * positions s <= pos0 + t with softmax(q.k / sqrt(hd)), causal among the new
 * ones, as rope + attention_forward over the whole sequence would.
 * pos0 + T <= T_max. All attention tensors. */
typedef struct {
    float *out, *q, *k;
    const float *v;
    float *k_cache, *v_cache;
    const int *pos; /* backend memory, one int */
    int B, T, T_max, H, hd, rot;
    /* 1: pos0 is 0, which the caller knows (a chunk fed from the host: a
     * prompt, a window restart), so the chunk attends to itself only and a
     * backend may take its training attention without reading pos back;
     * 0: pos0 is only in pos (any position) */
    int at_start;
} DecodeAttnArgs;

/* adamw_ranges: one AdamW range, with the settings that differ between the
 * row segments of a grown model (its own step count for the bias
 * correction, the new rows' lr, decay or none). */
typedef struct {
    float *p;
    const float *g;
    float *m, *v;
    size_t n;
    float lr, weight_decay;
    int t;
} AdamwRange;

/* sample_tokens: one token per stream from the logits (row b at logits +
 * b * stride, V floats), drawn as ops_sample_row draws it with the uniform
 * u[b] (unused at temperature 0: the argmax), written to tokens[b]; then,
 * when pos is set, *pos = pos_value (the position the next decode step
 * reads), so that a step can follow without a copy from the host. */
typedef struct {
    int *tokens;         /* B ints, backend memory */
    const float *logits;
    const double *u;     /* B uniforms in [0, 1), backend memory; NULL at temperature 0 */
    int B, V, stride;
    float temperature;   /* <= 0: the argmax */
    int top_k;           /* 0 (or >= V): every token */
    int *pos;            /* NULL, or one int of backend memory */
    int pos_value;
} SampleArgs;

typedef enum { BACKEND_CPU = 0, BACKEND_CUDA = 1 } BackendKind;

/* A backend's own state (CUDA: cuBLAS handle, precision, workspaces, the
 * bf16 weights mirror); opaque outside the backend, NULL on the CPU. */
typedef struct OpsCtx OpsCtx;

typedef struct Ops Ops;

/* The state of a decode step (decode_step below): zero-initialised by the
 * caller, managed by the backend. */
typedef struct {
    void *recording; /* the backend's recording of the step, NULL when none */
    int eager_runs;  /* steps run op by op so far */
    int off;         /* 1: never record (asked for, or recording failed) */
} DecodeStep;

/* The op list, declared once: OP(kind, return type, name, (parameters),
 * (arguments after the table)) for each entry of the table, in the X-macro
 * style of src/backends/cuda/cuda_libs.c. From it come the table's fields
 * (struct Ops below), the CUDA backend's table fill and declarations
 * (src/backends/cuda), the profiler's wrappers (src/backends/profile.c) and
 * the names the op tests check their cases against (ops_op_names).
 * kind: OP_COMPUTE, an op that computes (timed by the profiler, and each
 * needs an op-test case), OP_COMPUTE_FLOAT the same returning a float on
 * the host, OP_SERVICE an entry that manages memory, sizes or recordings
 * (tested through the ops that use it; the profiler times only the copies
 * between host and device among them). Every entry takes the
 * table itself first (its ctx is the state). The entries' contracts: */
/*
 * memory_in_use: device memory this process holds now, in bytes (CUDA: in
 *   use on the GPU since the backend started, workspaces included; CPU: 0).
 * set_precision: how GEMMs multiply (MatmulPrecision, below); returns the
 *   precision the backend computes in from now on: the one asked for, or
 *   MATMUL_FP32 where it has no other (the CPU). Set it before allocating
 *   attention tensors and scratch: types and sizes follow it.
 * attn_dtype: the element type of attention tensors (see above) at the
 *   current precision: matmul_precision_attn_dtype of it.
 * set_gemm_tuning: whether the backend may time candidate kernels at a
 *   GEMM shape's first call and keep the fastest (CUDA under bf16; on by
 *   default, and TF_GEMM_TUNE in the environment, 0 or 1, overrides both).
 *   It pays where each shape runs many times (training); a sampler turns it
 *   off while it lives (sampler_init to sampler_free). No effect on the CPU.
 *
 * ---- memory ----
 * alloc: zero-filled; NULL when out of memory. free, to_device, to_host,
 *   synchronize. zero and copy (device to device) are timed ops.
 * to_host_start, to_host_wait: a copy to the host that does not wait for
 *   the device: to_host_start queues a copy of bytes of backend memory into
 *   host_dst after the ops called so far and returns a ticket; host_dst
 *   holds them once to_host_wait(ticket) returns (and may not be read, or
 *   freed, before). At most OPS_COPIES_IN_FLIGHT copies are started and not
 *   waited for, in any order (samplers sharing a backend interleave them);
 *   each ticket is waited for once. The sampler reads one step's tokens
 *   while the next step runs (CPU: the copy is made at once).
 *
 * matmul: C[M,N] = alpha * op(A) op(B) + beta * C, op(A) is M x K, op(B) is
 *   K x N. trans_a: A is stored K x M; trans_b: B is stored N x K.
 *
 * Weight gradients may be skipped: every backward op that computes the
 *   gradient of a weight (layernorm/rmsnorm dw, db; linear dW; Pattention
 *   dK, dV; embedding dwte) takes NULL for it and then spends nothing on it,
 *   while dx / dX come out bit for bit as with the gradient computed. A
 *   frozen parameter (train --freeze-old) costs no weight-gradient product
 *   that way, and the input gradients still flow through it to the trained
 *   parameters below.
 *
 * embedding_forward: out[i,:] = wte[tokens[i],:]; embedding_backward
 *   accumulates into dwte (NULL: nothing to do).
 *
 * layernorm_forward/backward: LayerNorm over the last dim (C) with eps
 *   LAYERNORM_EPS. w and b may be NULL (non-parametric LN: weight 1, bias 0).
 *   mean/rstd (N each) are saved for backward. Backward: dx accumulates; dw,
 *   db accumulate and may be NULL.
 *
 * rmsnorm_forward/backward: RMSNorm over the last dim (C): out = x * rstd *
 *   w, rstd = 1 / sqrt(mean(x^2) + RMSNORM_EPS) saved (N) for backward; w may
 *   be NULL (1). Backward: dx accumulates; dw accumulates and may be NULL;
 *   dout is fp32 (the d(xn) a fused PattInput's backward returns, or the
 *   final norm's).
 *
 * linear_forward/backward: linear projection group (LinearArgs): member g <
 *   G shares the input X (PattInput: normalized as for a Pattention;
 *   backward returns d(xn)), weight W + g*d_out*d_in, output Y + g*N*d_out:
 *   Y_g = Xn W_g^T (+ residual). Backward: dW_g += dY_g^T Xn (dW NULL: the
 *   G products skipped); dX = sum_g dY_g W_g, accumulated when accumulate_dx
 *   is 1, overwritten when 0 (dX NULL: skipped, for a member's dW alone when
 *   only some members of a group need theirs). y_attn: Y and dY are
 *   attention tensors.
 *
 * pattention_forward/backward: Pattention (docs/MODEL.md, Pattention) over a
 *   group of G members (1 <= G <= PATT_MAX_GROUP) that share the input X (N x
 *   d_in, see PattInput) and the row count n: member g has keys K + g*n*d_in
 *   (n x d_in: the group's keys are stacked, G*n x d_in), values V +
 *   g*n*d_out, scale tau[g] (a host array), and writes Y + g*N*d_out. G = 1
 *   is one Pattention. The q, k and v of a block form a group of 3, which a
 *   backend may compute as one (CUDA: one score GEMM over the stacked keys,
 *   one dX GEMM); the result is that of G separate Pattentions. Forward saves
 *   the scores A = X K^T and the normalized scores S in A and S, whose layout
 *   is the backend's; dA is scratch for both directions (the same buffer may
 *   serve both). Backward consumes the saved state: it may overwrite A and S
 *   (CUDA under bf16 writes S over A). dY is stacked like Y, dK and dV like K
 *   and V and accumulate, each NULL to skip its product (dV = S^T dY, dK =
 *   dA^T X: two of backward's four GEMMs); dX (N x d_in) gets the sum over members (the
 *   gradient of X, the LayerNorm output when the input is normalized: the
 *   caller runs layernorm_backward), accumulated when accumulate_dx is 1,
 *   overwritten when 0 (which an attention-tensor dX requires). y_attn: Y and
 *   dY are attention tensors. residual (forward; NULL or N x d_out, G = 1, Y
 *   not an attention tensor): Y = residual + the Pattention's output, the
 *   block's residual step when there is no dropout, which a backend may fuse
 *   into its product (CUDA: the GEMM's epilogue reads residual). Modes
 *   ACT_GELU and ACT_SWIGLU (the baselines' MLP) ignore tau; under ACT_SWIGLU
 *   K + g*2n*d_in holds 2n key rows and A has 2n columns.
 * pattention_sizes: floats to allocate for A, S and the dA scratch of a
 *   group: G*N*n each (under ACT_SWIGLU pass n = 2h, the score columns, for a
 *   hidden width h) in fp32; a backend that keeps them in a narrower type or
 *   recomputes one (CUDA under bf16: A and dA in bf16, S recomputed from A in
 *   backward, 0 floats) asks for less.
 *
 * rope: rotary embedding in place on x (an attention tensor) laid out (B, T,
 *   H, hd), GPT-NeoX style: over the first `rot` dims of each head (rot
 *   even), dim i < rot/2 pairs with i + rot/2, angle = t * 10000^(-2i/rot).
 *   inverse=1 rotates by -angle (that is the backward pass).
 *
 * attention_forward/backward: causal softmax attention, q/k/v/out (attention
 *   tensors, as are dq, dk, dv, dout) laid out (B, T, H*hd). att is the state
 *   forward saves for backward, datt backward's scratch; their sizes in
 *   floats come from attention_sizes (which may depend on the matmul
 *   precision: allocate after setting it). The CPU saves the probabilities
 *   (B, H, T, T, zero above the diagonal); a fused kernel may save less.
 *   Backward overwrites dq, dk, dv; it also takes forward's output `out` (a
 *   fused kernel needs rowsum(dout * out); others may ignore it).
 *
 * cache_weights: [p, p + n) are weights (parameters, or any memory written
 *   only by adamw and the memory ops) that the coming forwards read again
 *   and again, as decoding does once per token: a backend may derive from
 *   them now the copy its products take (CUDA under bf16: the bf16 weights
 *   mirror, unless the one adamw keeps already holds the range; adamw keeps
 *   it current and the memory ops drop it, as they do adamw's). Costs one
 *   conversion; no effect on the CPU or at another precision.
 *
 * ---- incremental decoding (inference only: no backward, no gradcheck) ----
 * attention_decode: a KV cache holds, per layer, the rotated keys and the
 *   values of every position decoded so far; attention_decode adds the new
 *   positions to it and attends over it (DecodeAttnArgs).
 *
 * sample_tokens: the sampler's draw on the backend (SampleArgs), so that
 *   the host reads back B token ids, not B x V logits, and the next decode
 *   step finds its tokens and position in backend memory.
 *
 * dropout_backward: inverted dropout. The keep mask of element i is a pure
 *   function of (seed, i) (tf_dropout_keep in rng.h), so backends agree bit
 *   for bit and backward recomputes the mask instead of storing it. In place
 *   allowed. dropout_forward: out = dropout(x) with that mask.
 * dropout_add: the residual step out = x + dropout(branch) in one pass, with
 *   the mask of dropout_backward (p = 0: out = x + branch). out may alias x.
 *
 * cross_entropy_forward/backward: softmax cross-entropy over V classes per
 *   row. Forward writes probs (N x V) and returns the mean loss over rows
 *   whose target is in [0, V); other rows are ignored (no loss, zero
 *   gradient). Backward: dlogits = (probs - onehot(target)) * scale
 *   (overwrites).
 *
 * sum_squares: sum of x_i^2 (accumulated in at least fp32 with
 *   pairwise/blocked sums).
 *
 * adamw: AdamW on n elements: g is multiplied by grad_scale first
 *   (clipping); bias correction uses step t (t >= 1); decoupled decay
 *   lr*wd*p.
 *
 * adamw_ranges: adamw over each of n ranges (AdamwRange: its own p, g, m, v,
 *   length, lr, decay and step), the shared settings once: what a grown
 *   model's update is, in as few launches as the backend can (one per
 *   group of ranges on the GPU instead of one per range). Ranges in
 *   memory order, each adjacent to the last, keep the CUDA bf16 mirror
 *   whole, as consecutive adamw calls do.
 *
 * add, accumulate, scale: out = a + b (out may alias a or b); y += x; x *= s.
 *   Used by the tests and the profiler, not the model.
 *
 * ---- recorded op sequences (optional: NULL on a backend without them) ----
 * Between record_begin and record_end the ops called are recorded instead
 * of run (a CUDA graph): replaying the recording runs them again with the
 * same arguments, reading their inputs from backend memory anew, at the
 * cost of one launch. Only ops that take no host values that change
 * between replays belong in a recording (the decode ops read their
 * position from backend memory for this), and none may copy to or from
 * the host. record_end returns NULL when recording failed (the ops did
 * not run: call them again). replay returns -1, running nothing, once
 * the recording is stale (a backend workspace it uses has moved since):
 * free it and record again.
 *
 * decode_step: one step of incremental decoding, `run(arg)`: ops from
 *   backend memory to backend memory only (the inputs already copied in,
 *   nothing read back), the same ops with the same arguments at every step.
 *   The backend decides how it runs: the CPU calls run; CUDA runs the first
 *   step op by op (it warms up what a recording may not do: workspaces,
 *   GEMM kernel choices), records the next one and replays it from then on,
 *   recording again when the recording went stale and running op by op for
 *   good when recording fails or step->off is set. step is the caller's
 *   (zero-initialised), the recording in it the backend's:
 *   decode_step_free frees it. A table that times its ops (the profiler)
 *   runs every step op by op.
 */
#define OPS_LIST(OP)                                                                               \
    OP(OP_SERVICE, size_t, memory_in_use, (const Ops *ops), ())                                    \
    OP(OP_SERVICE, int, set_precision, (const Ops *ops, int precision), (precision))               \
    OP(OP_SERVICE, DType, attn_dtype, (const Ops *ops), ())                                        \
    OP(OP_SERVICE, void, set_gemm_tuning, (const Ops *ops, int on), (on))                          \
    OP(OP_SERVICE, void *, alloc, (const Ops *ops, size_t bytes), (bytes))                         \
    OP(OP_SERVICE, void, free, (const Ops *ops, void *p), (p))                                     \
    OP(OP_SERVICE, void, to_device, (const Ops *ops, void *dst, const void *host_src, size_t bytes), \
       (dst, host_src, bytes))                                                                    \
    OP(OP_SERVICE, void, to_host, (const Ops *ops, void *host_dst, const void *src, size_t bytes), \
       (host_dst, src, bytes))                                                                    \
    OP(OP_SERVICE, int, to_host_start, (const Ops *ops, void *host_dst, const void *src, size_t bytes), \
       (host_dst, src, bytes))                                                                    \
    OP(OP_SERVICE, void, to_host_wait, (const Ops *ops, int ticket), (ticket))                     \
    OP(OP_SERVICE, void, synchronize, (const Ops *ops), ())                                        \
    OP(OP_COMPUTE, void, zero, (const Ops *ops, void *p, size_t bytes), (p, bytes))                \
    OP(OP_COMPUTE, void, copy, (const Ops *ops, void *dst, const void *src, size_t bytes),         \
       (dst, src, bytes))                                                                         \
    OP(OP_COMPUTE, void, matmul,                                                                   \
       (const Ops *ops, float *C, const float *A, const float *B, int M, int N, int K,             \
        int trans_a, int trans_b, float alpha, float beta),                                       \
       (C, A, B, M, N, K, trans_a, trans_b, alpha, beta))                                         \
    OP(OP_COMPUTE, void, embedding_forward,                                                        \
       (const Ops *ops, float *out, const int *tokens, const float *wte, int N, int C),           \
       (out, tokens, wte, N, C))                                                                  \
    OP(OP_COMPUTE, void, embedding_backward,                                                       \
       (const Ops *ops, float *dwte, const float *dout, const int *tokens, int N, int C),         \
       (dwte, dout, tokens, N, C))                                                                \
    OP(OP_COMPUTE, void, layernorm_forward,                                                        \
       (const Ops *ops, float *out, float *mean, float *rstd, const float *x, const float *w,     \
        const float *b, int N, int C),                                                            \
       (out, mean, rstd, x, w, b, N, C))                                                          \
    OP(OP_COMPUTE, void, layernorm_backward,                                                       \
       (const Ops *ops, float *dx, float *dw, float *db, const float *dout, const float *x,       \
        const float *w, const float *mean, const float *rstd, int N, int C),                      \
       (dx, dw, db, dout, x, w, mean, rstd, N, C))                                                \
    OP(OP_COMPUTE, void, rmsnorm_forward,                                                          \
       (const Ops *ops, float *out, float *rstd, const float *x, const float *w, int N, int C),   \
       (out, rstd, x, w, N, C))                                                                   \
    OP(OP_COMPUTE, void, rmsnorm_backward,                                                         \
       (const Ops *ops, float *dx, float *dw, const float *dout, const float *x, const float *w,  \
        const float *rstd, int N, int C),                                                         \
       (dx, dw, dout, x, w, rstd, N, C))                                                          \
    OP(OP_COMPUTE, void, linear_forward, (const Ops *ops, const LinearArgs *args), (args))         \
    OP(OP_COMPUTE, void, linear_backward, (const Ops *ops, const LinearArgs *args), (args))        \
    OP(OP_SERVICE, void, cache_weights, (const Ops *ops, const float *p, size_t n), (p, n))        \
    OP(OP_SERVICE, void, pattention_sizes,                                                         \
       (const Ops *ops, int G, int N, int n, size_t *a_floats, size_t *s_floats,                  \
        size_t *da_floats),                                                                       \
       (G, N, n, a_floats, s_floats, da_floats))                                                  \
    OP(OP_COMPUTE, void, pattention_forward, (const Ops *ops, const PattArgs *args), (args))       \
    OP(OP_COMPUTE, void, pattention_backward, (const Ops *ops, const PattArgs *args), (args))      \
    OP(OP_COMPUTE, void, rope,                                                                     \
       (const Ops *ops, float *x, int B, int T, int H, int hd, int rot, int inverse),             \
       (x, B, T, H, hd, rot, inverse))                                                            \
    OP(OP_SERVICE, void, attention_sizes,                                                          \
       (const Ops *ops, int B, int T, int H, int hd, size_t *att_floats, size_t *datt_floats),    \
       (B, T, H, hd, att_floats, datt_floats))                                                    \
    OP(OP_COMPUTE, void, attention_forward,                                                        \
       (const Ops *ops, float *out, float *att, const float *q, const float *k, const float *v,   \
        int B, int T, int H, int hd),                                                             \
       (out, att, q, k, v, B, T, H, hd))                                                          \
    OP(OP_COMPUTE, void, attention_backward,                                                       \
       (const Ops *ops, float *dq, float *dk, float *dv, float *datt, const float *dout,          \
        const float *out, const float *q, const float *k, const float *v, const float *att,       \
        int B, int T, int H, int hd),                                                             \
       (dq, dk, dv, datt, dout, out, q, k, v, att, B, T, H, hd))                                  \
    OP(OP_COMPUTE, void, attention_decode, (const Ops *ops, const DecodeAttnArgs *args), (args))   \
    OP(OP_COMPUTE, void, sample_tokens, (const Ops *ops, const SampleArgs *args), (args))          \
    OP(OP_COMPUTE, void, dropout_forward,                                                          \
       (const Ops *ops, float *out, const float *x, float p, uint64_t seed, size_t n),            \
       (out, x, p, seed, n))                                                                      \
    OP(OP_COMPUTE, void, dropout_backward,                                                         \
       (const Ops *ops, float *dx, const float *dout, float p, uint64_t seed, size_t n),          \
       (dx, dout, p, seed, n))                                                                    \
    OP(OP_COMPUTE, void, dropout_add,                                                              \
       (const Ops *ops, float *out, const float *x, const float *branch, float p, uint64_t seed,  \
        size_t n),                                                                                \
       (out, x, branch, p, seed, n))                                                              \
    OP(OP_COMPUTE_FLOAT, float, cross_entropy_forward,                                             \
       (const Ops *ops, float *probs, const float *logits, const int *targets, int N, int V),     \
       (probs, logits, targets, N, V))                                                            \
    OP(OP_COMPUTE, void, cross_entropy_backward,                                                   \
       (const Ops *ops, float *dlogits, const float *probs, const int *targets, float scale,      \
        int N, int V),                                                                            \
       (dlogits, probs, targets, scale, N, V))                                                    \
    OP(OP_COMPUTE_FLOAT, float, sum_squares, (const Ops *ops, const float *x, size_t n), (x, n))   \
    OP(OP_COMPUTE, void, adamw,                                                                    \
       (const Ops *ops, float *p, const float *g, float *m, float *v, size_t n, float lr,         \
        float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t),        \
       (p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, t))                       \
    OP(OP_COMPUTE, void, adamw_ranges,                                                             \
       (const Ops *ops, const AdamwRange *ranges, int n, float beta1, float beta2, float eps,     \
        float grad_scale),                                                                        \
       (ranges, n, beta1, beta2, eps, grad_scale))                                                \
    OP(OP_COMPUTE, void, add, (const Ops *ops, float *out, const float *a, const float *b, size_t n), \
       (out, a, b, n))                                                                            \
    OP(OP_COMPUTE, void, accumulate, (const Ops *ops, float *y, const float *x, size_t n),         \
       (y, x, n))                                                                                 \
    OP(OP_COMPUTE, void, scale, (const Ops *ops, float *x, float s, size_t n), (x, s, n))          \
    OP(OP_SERVICE, int, record_begin, (const Ops *ops), ())                                        \
    OP(OP_SERVICE, void *, record_end, (const Ops *ops), ())                                       \
    OP(OP_SERVICE, int, replay, (const Ops *ops, void *recording), (recording))                    \
    OP(OP_SERVICE, void, record_free, (const Ops *ops, void *recording), (recording))             \
    OP(OP_SERVICE, void, decode_step,                                                              \
       (const Ops *ops, DecodeStep *step, void (*run)(void *arg), void *arg), (step, run, arg))    \
    OP(OP_SERVICE, void, decode_step_free, (const Ops *ops, DecodeStep *step), (step))

/* The parenthesised argument list of an OPS_LIST entry, unwrapped. */
#define OPS_UNPAREN(...) __VA_ARGS__

struct Ops {
    BackendKind kind;
    const char *name;   /* "cpu" or "cuda" */
    const char *device; /* what it runs on, for logs: "NVIDIA H100 80GB HBM3, sm_90" */
    OpsCtx *ctx;
#define OPS_FIELD(kind, ret, name, params, args) ret(*name) params;
    OPS_LIST(OPS_FIELD)
#undef OPS_FIELD
};

#ifdef __cplusplus
extern "C" {
#endif

/* pattention_sizes of a backend that keeps A, S and dA in fp32 (G*N*n each;
 * the CPU keeps member g's N x n scores at g*N*n). */
void ops_pattention_sizes_full(int G, int N, int n, size_t *a_floats,
                               size_t *s_floats, size_t *da_floats);

/* attention_sizes of a backend that keeps the B*H*T*T probabilities
 * (att) and a B*H*T*T backward scratch (datt). */
void ops_attention_sizes_full(int B, int T, int H, int hd, size_t *att_floats,
                              size_t *datt_floats);

/* The names of the ops that compute (OP_COMPUTE and OP_COMPUTE_FLOAT
 * entries of OPS_LIST), in list order, NULL-terminated: what the op tests
 * must each cover. */
const char *const *ops_op_names(void);

/* The draw of sample_tokens for one row (and the host sampler's,
 * sampler.h sample_token): temperature <= 0: the first largest logit; else,
 * with cutoff the top_k-th largest logit (top_k in 1 .. V-1; else no
 * cutoff) and mx the largest, p_i = exp((double)((l_i - mx) / temperature))
 * (the quotient in float) for l_i >= cutoff, else 0, w_i = (float)p_i; the
 * first i with u * sum_j p_j < w_0 + .. + w_i (summed in double) and w_i >
 * 0, else the last i with w_i > 0 (0 if none). work: V floats. A backend
 * may sum in another order (the same draw but where u falls within
 * rounding of a boundary). */
int ops_sample_row(const float *logits, int V, float temperature, int top_k, double u,
                   float *work);

/* decode_step and decode_step_free of a backend that records nothing: run
 * the step; nothing to free. */
void ops_decode_step_eager(const Ops *ops, DecodeStep *step, void (*run)(void *arg), void *arg);
void ops_decode_step_free_none(const Ops *ops, DecodeStep *step);

/* Backends. ops_cuda() returns NULL when built without CUDA or when no GPU
 * is usable (then `why` says why). */
const Ops *ops_cpu(void);
/* Threads worth using on the CPU to decode one token per stream with a model
 * whose largest weight matrix has `largest_matrix` elements: 1 when none is
 * large enough for the CPU's matrix-vector products to split (then extra
 * threads only pay for parallel regions), else `threads`. */
int ops_cpu_decode_threads(size_t largest_matrix, int threads);
const Ops *ops_cuda(char *why, size_t why_len);
/* "cpu", "cuda" or "auto" (cuda when usable, else cpu). NULL + message on failure. */
const Ops *ops_by_name(const char *name, char *err, size_t err_len);
/* How CUDA GEMMs multiply (no effect on the CPU): fp32 (exact), tf32
 * (tensor cores, 10-bit mantissa inputs) or bf16 (the Pattention GEMMs take
 * bf16 operands, the other GEMMs TF32). Weights, optimizer state, the
 * residual stream and reductions stay fp32, attention tensors become bf16
 * (attn_dtype), and every product accumulates in fp32. */
typedef enum { MATMUL_FP32 = 0, MATMUL_TF32 = 1, MATMUL_BF16 = 2 } MatmulPrecision;
/* "fp32", "tf32", "bf16" -> MatmulPrecision, or -1. */
int matmul_precision_parse(const char *name);
const char *matmul_precision_name(int precision);
/* The element type of attention tensors at a precision a backend computes
 * in: DTYPE_BF16 under MATMUL_BF16, else DTYPE_F32. */
DType matmul_precision_attn_dtype(int precision);

/* Whether the table computes in host memory (the CPU backend): the one
 * place that asks which backend a table is. */
static inline int ops_is_cpu(const Ops *ops) { return ops->kind == BACKEND_CPU; }

#ifdef __cplusplus
}
#endif

#endif
