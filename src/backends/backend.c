/* Choosing a backend: "cpu", "cuda" or "auto". */
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
