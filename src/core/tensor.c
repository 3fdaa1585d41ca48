#include "tensor.h"

#include <string.h>

size_t dtype_size(DType t) { return t == DTYPE_BF16 ? 2 : 4; }

const char *dtype_name(DType t) {
    return t == DTYPE_I32 ? "I32" : t == DTYPE_BF16 ? "BF16" : "F32";
}

size_t tensor_numel(const Tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

size_t tensor_bytes(const Tensor *t) { return tensor_numel(t) * dtype_size(t->dtype); }

void tensor_init(Tensor *t, const char *name, DType dtype, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    strncpy(t->name, name, TF_NAME_LEN - 1);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
}
