/* The CUDA libraries the binary does not link: cuBLAS/cuBLASLt and NCCL are
 * opened with dlopen on their first use (src/backends/cuda/cuda_libs.c), so commands
 * that never touch a GPU do not pay for mapping them at start. Their API
 * functions are defined there as forwarding wrappers with the headers'
 * prototypes: callers use cuBLAS and NCCL as if linked. Only in CUDA builds. */
#ifndef TF_CUDA_LIBS_H
#define TF_CUDA_LIBS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Groups of libraries loaded together. */
typedef enum {
    CUDA_LIBS_CUBLAS, /* libcublasLt + libcublas: the first cuBLAS call loads them */
    CUDA_LIBS_NCCL,   /* libnccl: loaded only when asked (or on the first NCCL call) */
    CUDA_LIBS_GROUPS
} CudaLibGroup;

/* Loads a group (once; later calls return the first answer). Returns 0 when
 * every entry point resolved; otherwise -1 and a one-line reason in `why`
 * naming the files looked for. */
int cuda_libs_load(CudaLibGroup group, char *why, size_t why_len);

/* The reason the last failed load gave, "" when none failed. */
const char *cuda_libs_error(void);

/* dlopen of the first of `names` (n of them) that opens; NULL and a one-line
 * reason naming `what` and every name otherwise. */
void *cuda_libs_open_first(const char *what, const char *const *names, int n, char *why,
                           size_t why_len);

#ifdef __cplusplus
}
#endif

#endif
