// AdamW with decoupled weight decay (ops.h).
#include "common.cuh"
#include "op_math.h"

// mirror (optional): the updated parameters again, in bf16.
__global__ void adamw_kernel(float *p, bf16 *mirror, const float *g, float *m, float *v, size_t n,
                             float lr, float beta1, float beta2, float eps, float wd,
                             float grad_scale, AdamwCorrections bc) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float pn =
            tf_adamw_element(p[i], g[i], &m[i], &v[i], lr, beta1, beta2, eps, wd, grad_scale, bc);
        p[i] = pn;
        if (mirror) mirror[i] = __float2bfloat16(pn);
    }
}

void cu_adamw(const Ops *ops, float *p, const float *g, float *m, float *v, size_t n, float lr,
              float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t) {
    OpsCtx *c = ops->ctx;
    if (!n) return;
    AdamwCorrections bc = tf_adamw_corrections(beta1, beta2, t);
    bf16 *mirror = tfc_mirror_extend(c, p, n);
    adamw_kernel<<<tfc_blocks(n, 256), 256, 0, c->stream>>>(p, mirror, g, m, v, n, lr, beta1, beta2,
                                                            eps, weight_decay, grad_scale, bc);
    KERNEL_CHECK(c);
}
