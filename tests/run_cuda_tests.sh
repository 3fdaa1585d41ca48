#!/usr/bin/env bash
# The CUDA tests (make test-cuda): tests/run_tests.sh on the test_cuda_*
# programs and scripts alone (test_cuda_ops: every op case against the CPU;
# test_cuda_contexts: two backend contexts in one process; test_cuda_model.sh;
# test_cuda_fused_sites.sh: the Pattention cases on the sm_90 cluster kernel;
# test_cuda_dp.sh). Without a GPU each prints SKIP and the run passes. The
# last line is "N passed, N failed, N skipped"; the exit status is 1 if any
# failed. Arguments select tests as for run_tests.sh. They run one after the
# other (TF_TEST_JOBS=1 unless set): two at once would share the GPUs and
# upset what they time and how much memory they find free.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
TF_TESTS=cuda TF_TEST_JOBS=${TF_TEST_JOBS:-1} exec ./tests/run_tests.sh "$@"
