/* How many threads the CPU backend computes with: its OpenMP loops and
 * OpenBLAS's GEMMs. Commands set them here; only the CPU backend talks to
 * OpenMP's and OpenBLAS's thread controls. */
#ifndef TF_CPU_THREADS_H
#define TF_CPU_THREADS_H

#include <stddef.h>

/* The cores the machine offers this process. */
int cpu_cores(void);
/* The threads the next parallel region (and GEMM) will use. */
int cpu_threads(void);
/* Use `threads` (> 0) for both the OpenMP loops and OpenBLAS. */
void cpu_threads_set(int threads);
/* Before decoding with a model whose largest weight matrix has
 * `largest_matrix` elements: OpenBLAS single-threaded (its own threads,
 * woken by a few-row GEMM, only cost), the OpenMP loops as many threads as
 * its matrix-vector products can use (ops_cpu_decode_threads). */
void cpu_threads_for_decoding(size_t largest_matrix);

#endif
