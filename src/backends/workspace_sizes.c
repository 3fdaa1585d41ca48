/* Workspace sizes of the full (unfused) Pattention and attention paths,
 * shared by every backend: a backend sizes its buffers with these, and the
 * model never needs to know which backend asked. Kept apart from backend.c
 * (which creates the backends) so that no backend source depends on the file
 * that depends on it. */
#include <stddef.h>

#include "ops.h"

void ops_pattention_sizes_full(int G, int N, int n, size_t *a_floats, size_t *s_floats,
                               size_t *da_floats) {
    *a_floats = *s_floats = *da_floats = (size_t)G * N * n;
}

void ops_attention_sizes_full(int B, int T, int H, int hd, size_t *att_floats, size_t *datt_floats) {
    (void)hd;
    *att_floats = *datt_floats = (size_t)B * H * T * T;
}
