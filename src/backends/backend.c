/* Choosing a backend: "cpu", "cuda" or "auto". */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "gpu_presence.h"
#include "ops.h"
#ifdef TF_CUDA
#include "cuda/cuda_libs.h"
#include "cuda/ops_cuda.h"
#endif

const Ops *ops_cuda(char *why, size_t why_len) {
#ifdef TF_CUDA
    static const Ops *cached;
    static char cached_why[256];
    static int tried;
    if (!tried) {
        tried = 1;
        cached = ops_cuda_create(cached_why, sizeof cached_why);
        /* cuBLAS loads on its first call, inside ops_cuda_create, which can
         * only say it failed to start: the loader knows which file was missing. */
        if (!cached && cuda_libs_error()[0])
            snprintf(cached_why, sizeof cached_why, "%s", cuda_libs_error());
        if (!cached && gpu_none_on_host()) snprintf(cached_why, sizeof cached_why, "%s", GPU_NONE_FOUND);
    }
    if (!cached && why) snprintf(why, why_len, "%s", cached_why);
    return cached;
#else
    if (why)
        snprintf(why, why_len, "%s", gpu_none_on_host() ? GPU_NONE_FOUND
                                     : "this tokenformer was built without CUDA (nvcc not found or CUDA=0)");
    return NULL;
#endif
}

const Ops *ops_by_name(const char *name, char *err, size_t err_len) {
    char why[256] = "";
    if (strcmp(name, "cpu") == 0) return ops_cpu();
    if (strcmp(name, "cuda") == 0) {
        const Ops *o = ops_cuda(why, sizeof why);
        if (!o) snprintf(err, err_len, "--device cuda: %s%s", gpu_none_on_host() ? "" : "no usable GPU: ", why);
        return o;
    }
    if (strcmp(name, "auto") == 0) {
        const Ops *o = ops_cuda(why, sizeof why);
        return o ? o : ops_cpu();
    }
    snprintf(err, err_len, "unknown device '%s' (expected cpu, cuda or auto)", name);
    return NULL;
}

static const char *const PRECISION_NAMES[] = {"fp32", "tf32", "bf16"};

int matmul_precision_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, PRECISION_NAMES[i]) == 0) return i;
    return -1;
}

const char *matmul_precision_name(int precision) {
    return precision >= 0 && precision < 3 ? PRECISION_NAMES[precision] : "?";
}

DType matmul_precision_attn_dtype(int precision) {
    return precision == MATMUL_BF16 ? DTYPE_BF16 : DTYPE_F32;
}

#define OP_NAME_OP_SERVICE(name)
#define OP_NAME_OP_COMPUTE(name) #name,
#define OP_NAME_OP_COMPUTE_FLOAT(name) #name,
#define OP_NAME(kind, ret, name, params, args) OP_NAME_##kind(name)
static const char *const OP_NAMES[] = {OPS_LIST(OP_NAME) NULL};
#undef OP_NAME

const char *const *ops_op_names(void) { return OP_NAMES; }

void ops_decode_step_eager(const Ops *ops, DecodeStep *step, void (*run)(void *arg), void *arg) {
    run(arg);
    step->eager_runs++;
}

void ops_decode_step_free_none(const Ops *ops, DecodeStep *step) { step->recording = NULL; }

int ops_sample_row(const float *logits, int V, float temperature, int top_k, double u,
                   float *work) {
    if (temperature <= 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++) best = logits[i] > logits[best] ? i : best;
        return best;
    }
    float cutoff = -INFINITY;
    if (top_k > 0 && top_k < V) {
        memcpy(work, logits, sizeof(float) * V);
        /* k-th largest by partial selection: V is a character vocabulary, small. */
        for (int k = 0; k < top_k; k++) {
            int arg = k;
            for (int i = k + 1; i < V; i++) arg = work[i] > work[arg] ? i : arg;
            float t = work[k];
            work[k] = work[arg];
            work[arg] = t;
        }
        cutoff = work[top_k - 1];
    }
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        double p = logits[i] >= cutoff ? exp((logits[i] - mx) / temperature) : 0.0;
        work[i] = (float)p;
        sum += p;
    }
    double target = u * sum, acc = 0.0;
    for (int i = 0; i < V; i++) {
        acc += work[i];
        if (target < acc && work[i] > 0.0f) return i;
    }
    int last = V - 1;
    while (last > 0 && work[last] == 0.0f) last--;
    return last;
}
