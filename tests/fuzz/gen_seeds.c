/* Writes a few valid safetensors files into DIR to seed the fuzzer's
 * corpus (and to give tests/python_load_check.py something to load).
 * Usage: gen_seeds DIR */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "safetensors.h"

static int put(const char *dir, const char *file, const StTensorOut *t, int n, const char *const *mk,
               const char *const *mv, int nm) {
    char path[4096], err[TF_ERRLEN];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (st_write_atomic(path, t, n, mk, mv, nm, err) != 0) {
        fprintf(stderr, "gen_seeds: %s\n", err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds DIR\n");
        return 2;
    }
    float w[12], b[3] = {0.5f, -1.0f, 2.0f}, s = 1.0f;
    int ids[6] = {1, 2, 3, 4, 5, 6};
    for (int i = 0; i < 12; i++) w[i] = (float)i / 4.0f;
    int64_t s34[2] = {3, 4}, s3[1] = {3}, s23[2] = {2, 3}, s0[1] = {0}, s1111[4] = {1, 1, 1, 3};
    const char *mk[2] = {"config", "step"}, *mv[2] = {"{\"n_layer\":2,\"d_model\":4}", "10"};

    StTensorOut model[3] = {{"wte", DTYPE_F32, 2, s34, w}, {"ln.bias", DTYPE_F32, 1, s3, b}, {"scale", DTYPE_F32, 0, NULL, &s}};
    StTensorOut mixed[3] = {{"tokens", DTYPE_I32, 2, s23, ids}, {"empty", DTYPE_F32, 1, s0, NULL},
                            {"deep", DTYPE_F32, 4, s1111, b}};
    int rc = 0;
    rc |= put(argv[1], "model.safetensors", model, 3, mk, mv, 2);
    rc |= put(argv[1], "mixed.safetensors", mixed, 3, NULL, NULL, 0);
    rc |= put(argv[1], "empty.safetensors", NULL, 0, mk, mv, 1);
    rc |= put(argv[1], "one.safetensors", model + 1, 1, NULL, NULL, 0);
    return rc ? 1 : 0;
}
