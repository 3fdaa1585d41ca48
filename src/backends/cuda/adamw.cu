// AdamW with decoupled weight decay (ops.h).
#include "common.cuh"

// mirror (optional): the updated parameters again, in bf16.
__global__ void adamw_kernel(float *p, bf16 *mirror, const float *g, float *m, float *v, size_t n,
                             float lr, float beta1, float beta2, float eps, float wd,
                             float grad_scale, float bc1, float bc2) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / bc1;
        float vhat = vi / bc2;
        float pi = p[i];
        float pn = pi - lr * (mhat / (sqrtf(vhat) + eps) + wd * pi);
        p[i] = pn;
        if (mirror) mirror[i] = __float2bfloat16(pn);
    }
}

void tfc_adamw(float *p, const float *g, float *m, float *v, size_t n, float lr, float beta1,
               float beta2, float eps, float weight_decay, float grad_scale, int t) {
    if (!n) return;
    if (t < 1) t = 1;
    float bc1 = 1.0f - powf(beta1, (float)t);
    float bc2 = 1.0f - powf(beta2, (float)t);
    bf16 *mirror = tfc_mirror_extend(p, n);
    adamw_kernel<<<tfc_blocks(n, 256), 256>>>(p, mirror, g, m, v, n, lr, beta1, beta2, eps,
                                              weight_decay, grad_scale, bc1, bc2);
    KERNEL_CHECK();
}
