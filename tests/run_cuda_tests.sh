#!/usr/bin/env bash
# CUDA checks: compares the CUDA backend with the CPU one (build/tests/test_cuda_ops),
# two backend contexts in one process (build/tests/test_cuda_contexts).
# Without a GPU every check prints SKIP and the script exits 0.
# Prints a final line "N passed, N failed, N skipped" and exits 1 on any failure.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."

pass=0 fail=0 skip=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run() { # run one test program, count its PASS/FAIL/SKIP lines
    local bin=$1
    if [ ! -x "$bin" ]; then
        echo "FAIL $(basename "$bin"): not built ($bin missing; run make)"
        fail=$((fail + 1))
        return
    fi
    "$bin" >"$log" 2>&1
    local rc=$?
    cat "$log"
    local p f s
    p=$(grep -c '^PASS ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    s=$(grep -c '^SKIP ' "$log")
    pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then # crashed or exited 1 without saying why
        echo "FAIL $(basename "$bin"): exit status $rc"
        fail=$((fail + 1))
    fi
}

run "$BUILD/tests/test_cuda_ops"
run "$BUILD/tests/test_cuda_contexts"
run tests/test_cuda_model.sh
run tests/test_cuda_dp.sh

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
