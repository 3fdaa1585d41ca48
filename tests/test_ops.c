/* The op tests of `make test`: every CPU op's backward against finite
 * differences of its forward (and the whole model's gradient), then the
 * check that every Ops entry has its cases (tests/op_cases.h). Also, by
 * flag: `--backend cuda` compares a backend with the CPU (what
 * tests/test_cuda_ops runs), `--time` times each case; --help. */
#include "op_cases.h"

int main(int argc, char **argv) { return op_tests_main(argc, argv, "test_ops", MODE_GRAD, NULL); }
