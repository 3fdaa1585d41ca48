/* CUDA backend entry points (src/backends/cuda). Only present when built with CUDA
 * (the Makefile defines TF_CUDA for C files then). */
#ifndef TF_OPS_CUDA_H
#define TF_OPS_CUDA_H

#include <stddef.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A new CUDA backend context on the current device: its own table, cuBLAS
 * handle, precision, workspaces and caches, so that several may live in one
 * process (ops_cuda() in backend.c keeps the one the commands share).
 * Returns NULL and writes a one-line reason into `why` when no GPU is usable
 * (no driver, no device, a device this binary has no kernels for, cuBLAS
 * failing to start). */
const Ops *ops_cuda_create(char *why, size_t why_len);
/* Frees a context of ops_cuda_create and all it holds (after the device
 * finishes its work); the memory its table allocated is the caller's to
 * free before. NULL: nothing. */
void ops_cuda_destroy(const Ops *ops);

#ifdef __cplusplus
}
#endif

#endif
