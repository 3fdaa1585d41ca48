/* CUDA backend entry points (src/backends/cuda). Only present when built with CUDA
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

#ifdef __cplusplus
}
#endif

#endif
