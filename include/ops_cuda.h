/* CUDA backend entry points (src/cuda). Only present when built with CUDA
 * (the Makefile defines TF_CUDA for C files then). */
#ifndef TF_OPS_CUDA_H
#define TF_OPS_CUDA_H

#include <stddef.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Initialise the CUDA device (once; later calls return the same table).
 * Returns NULL and writes a one-line reason into `why` when no GPU is usable
 * (no driver, no device, a device this binary has no kernels for, cuBLAS
 * failing to start). */
const Ops *ops_cuda_create(char *why, size_t why_len);

/* Global switch for every GEMM: MATMUL_FP32 (the default), MATMUL_TF32 or
 * MATMUL_BF16 tensor-core math (see ops.h). May be called before or after
 * ops_cuda_create. */
void ops_cuda_set_matmul_precision(int precision);

#ifdef __cplusplus
}
#endif

#endif
