#include "common.cuh"
#include "op_math.h"

// AdamW with decoupled weight decay (ops.h adamw, adamw_ranges); the bf16
// mirror (when the context keeps one) gets the updated parameters again.
// The ranges go to the kernel by value, ADAMW_BATCH at a time
// (a parameter block of a few KB, recordable, no upload): blockIdx.y picks
// the range, blockIdx.x strides over it.
#define ADAMW_BATCH 32

struct AdamwRangeDev {
    float *p, *m, *v;
    const float *g;
    bf16 *mirror;
    size_t n;
    float lr, wd;
    AdamwCorrections bc;
};

struct AdamwBatch {
    AdamwRangeDev r[ADAMW_BATCH];
};

__global__ void adamw_ranges_kernel(AdamwBatch b, float beta1, float beta2, float eps,
                                    float grad_scale) {
    const AdamwRangeDev &r = b.r[blockIdx.y];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < r.n;
         i += (size_t)gridDim.x * blockDim.x) {
        float pn = tf_adamw_element(r.p[i], r.g[i], &r.m[i], &r.v[i], r.lr, beta1, beta2, eps,
                                    r.wd, grad_scale, r.bc);
        r.p[i] = pn;
        if (r.mirror) r.mirror[i] = __float2bfloat16(pn);
    }
}

// The mirror may move while it grows over a batch's ranges (mirror_reserve)
// and restarts at a range not adjacent to the last: each range's place in it
// is read after the whole batch has extended it, and a range the mirror no
// longer covers writes none (two ranges would write the same place).
static void resolve_mirrors(OpsCtx *c, AdamwBatch *b, int count) {
    for (int k = 0; k < count; k++) {
        AdamwRangeDev &r = b->r[k];
        bool covered = c->mirror_base && r.p >= c->mirror_base &&
                       r.p + r.n <= c->mirror_base + c->mirror_len;
        r.mirror = covered ? c->mirror_buf + (r.p - c->mirror_base) : nullptr;
    }
}

void cu_adamw_ranges(const Ops *ops, const AdamwRange *ranges, int n, float beta1, float beta2,
                     float eps, float grad_scale) {
    OpsCtx *c = ops->ctx;
    for (int k0 = 0; k0 < n; k0 += ADAMW_BATCH) {
        AdamwBatch b;
        int count = 0;
        size_t longest = 0;
        bool mirrored = false;
        for (int k = k0; k < n && k < k0 + ADAMW_BATCH; k++) {
            const AdamwRange *r = &ranges[k];
            if (!r->n) continue;
            mirrored |= tfc_mirror_extend(c, r->p, r->n) != nullptr;
            b.r[count++] = {r->p, r->m, r->v, r->g, nullptr, r->n, r->lr, r->weight_decay,
                            tf_adamw_corrections(beta1, beta2, r->t)};
            longest = r->n > longest ? r->n : longest;
        }
        if (!count) continue;
        if (mirrored) resolve_mirrors(c, &b, count);
        dim3 grid(tfc_blocks(longest, 256, 2048), (unsigned)count);
        adamw_ranges_kernel<<<grid, 256, 0, c->stream>>>(b, beta1, beta2, eps, grad_scale);
        KERNEL_CHECK(c);
    }
}

// One range: the same kernel (a single launch either way).
void cu_adamw(const Ops *ops, float *p, const float *g, float *m, float *v, size_t n, float lr,
              float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t) {
    const AdamwRange r = {p, g, m, v, n, lr, weight_decay, t};
    cu_adamw_ranges(ops, &r, 1, beta1, beta2, eps, grad_scale);
}
