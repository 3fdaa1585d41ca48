/* CPU thread control (cpu_threads.h): the one place that sets OpenMP's and
 * OpenBLAS's thread counts. */
#include "cpu_threads.h"

#include <omp.h>

#include "ops.h"

void openblas_set_num_threads(int); /* from OpenBLAS, not in every cblas.h */

int cpu_cores(void) { return omp_get_num_procs(); }

int cpu_threads(void) { return omp_get_max_threads(); }

void cpu_threads_set(int threads) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

void cpu_threads_for_decoding(size_t largest_matrix) {
    /* read before OpenBLAS's call: its OpenMP build sets OpenMP's count too */
    int threads = omp_get_max_threads();
    openblas_set_num_threads(1);
    omp_set_num_threads(ops_cpu_decode_threads(largest_matrix, threads));
}
