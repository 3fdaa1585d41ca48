/* The op tests of `make test-cuda`: every case of tests/op_cases.c on the
 * CUDA backend against the CPU, at each precision: "PASS <name> (rel err X)",
 * rel err = max_i |cuda_i - cpu_i| / max_i |cpu_i|; exits 1 on any failure.
 * Without a usable GPU (or a build without CUDA) one SKIP line, exit 0. */
#include "op_cases.h"

int main(int argc, char **argv) {
    return op_tests_main(argc, argv, "test_cuda_ops", MODE_BACKEND, "cuda");
}
