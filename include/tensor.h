/* The tensor type: a named, shaped block of memory on one device. */
#ifndef TF_TENSOR_H
#define TF_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TF_MAX_DIMS 4
#define TF_NAME_LEN 64

typedef enum { DTYPE_F32 = 0, DTYPE_I32 = 1 } DType;
typedef enum { DEVICE_CPU = 0, DEVICE_CUDA = 1 } DeviceKind;

typedef struct {
    char name[TF_NAME_LEN];
    int ndim;
    int64_t shape[TF_MAX_DIMS];
    DType dtype;
    DeviceKind device;
    void *data; /* device memory of `device`, owned by whoever allocated it */
} Tensor;

size_t dtype_size(DType t);
const char *dtype_name(DType t);
size_t tensor_numel(const Tensor *t);
size_t tensor_bytes(const Tensor *t);
/* Fill name/shape/dtype; data stays NULL. */
void tensor_init(Tensor *t, const char *name, DType dtype, int ndim, const int64_t *shape);
static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }

#endif
