/* The tensor type: a named, shaped block of memory of one backend. */
#ifndef TF_TENSOR_H
#define TF_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TF_MAX_DIMS 4
#define TF_NAME_LEN 64

/* BF16 types the buffers a backend keeps in bfloat16 (CUDA's attention
 * tensors under --precision bf16, ops.h). Checkpoints hold F32 and I32
 * only: safetensors.c refuses BF16 both ways. */
typedef enum { DTYPE_F32 = 0, DTYPE_I32 = 1, DTYPE_BF16 = 2 } DType;

typedef struct {
    char name[TF_NAME_LEN];
    int ndim;
    int64_t shape[TF_MAX_DIMS];
    DType dtype;
    void *data; /* memory of the backend that allocated it (its ops table knows which), owned there */
} Tensor;

#ifdef __cplusplus
extern "C" {
#endif

size_t dtype_size(DType t);
const char *dtype_name(DType t);
size_t tensor_numel(const Tensor *t);
size_t tensor_bytes(const Tensor *t);
/* Fill name/shape/dtype; data stays NULL. */
void tensor_init(Tensor *t, const char *name, DType dtype, int ndim, const int64_t *shape);
static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }

#ifdef __cplusplus
}
#endif

#endif
