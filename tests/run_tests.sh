#!/usr/bin/env bash
# Test runner for `make test` / `make asan`.
#
# Runs every test program $BUILD/tests/test_* (except CUDA ones, which belong
# to `make test-cuda`) and every script tests/test_*.sh. Each prints one line
# per check beginning with "PASS ", "FAIL " or "SKIP " and exits non-zero if
# anything failed; a non-zero exit with no FAIL line counts as one failure (a
# crash, a sanitizer report, a timeout). The last line printed is exactly
# "N passed, N failed, N skipped"; the exit status is 1 if any failed.
#
# Environment: BUILD (build dir, default build), TF_BIN (binary under test,
# default ./tokenformer), TF_TEST_TIMEOUT (seconds per program, default 1200).
# Arguments, if any, name the tests to run (e.g. test_tokenizer test_cli.sh).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export BUILD="${BUILD:-build}"
export TF_BIN="${TF_BIN:-./tokenformer}"
TIMEOUT="${TF_TEST_TIMEOUT:-1200}"

# Ordering: quick unit tests first so that a broken basic piece shows up in
# seconds; then the other programs, the slow ones, and the CLI scripts last.
FAST_FIRST=(test_tokenizer test_rng test_config test_tensor test_safetensors)
is_slow() { [[ "$1" == *train* || "$1" == *converge* || "$1" == *slow* || "$1" == *e2e* ]]; }

is_cuda_test() { [[ "$1" == *cuda* ]]; }

wanted() {
    local name=$1 arg
    [[ ${#SELECTED[@]} -eq 0 ]] && return 0
    for arg in "${SELECTED[@]}"; do [[ "$(basename "$arg")" == "$name" ]] && return 0; done
    return 1
}

# Echo test commands, one per line, in run order.
list_tests() {
    local fast=() normal=() slow=() f name
    for f in "$BUILD"/tests/test_*; do
        [[ -f "$f" && -x "$f" ]] || continue
        name="$(basename "$f")"
        is_cuda_test "$name" && continue
        wanted "$name" || continue
        if [[ " ${FAST_FIRST[*]} " == *" $name "* ]]; then
            fast+=("$name")
        elif is_slow "$name"; then
            slow+=("$f")
        else
            normal+=("$f")
        fi
    done
    for name in "${FAST_FIRST[@]}"; do
        [[ " ${fast[*]} " == *" $name "* ]] && echo "$BUILD/tests/$name"
    done
    for f in "${normal[@]}" "${slow[@]}"; do echo "$f"; done
    for f in tests/test_*.sh; do
        [[ -f "$f" ]] || continue
        wanted "$(basename "$f")" && echo "$f"
    done
}

count_lines() { grep -c "^$1 " "$2" || true; }

passed=0 failed=0 skipped=0
failed_tests=()

# Run one test, echo its output as it comes, and add up its check lines.
run_one() {
    local test=$1 log rc p f s
    local cmd=("$test")
    [[ "$test" == *.sh ]] && cmd=(bash "$test")
    echo "=== $test"
    log="$(mktemp)"
    timeout --kill-after=30 "$TIMEOUT" "${cmd[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    p=$(count_lines PASS "$log")
    f=$(count_lines FAIL "$log")
    s=$(count_lines SKIP "$log")
    rm -f "$log"
    if [[ $rc -ne 0 && $f -eq 0 ]]; then
        if [[ $rc -eq 124 || $rc -eq 137 ]]; then
            echo "FAIL $test: timed out after ${TIMEOUT} s"
        else
            echo "FAIL $test: exited with status $rc without a FAIL line (crash?)"
        fi
        f=1
    fi
    [[ $f -gt 0 ]] && failed_tests+=("$test")
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
}

SELECTED=("$@")
mapfile -t TESTS < <(list_tests)
if [[ ${#TESTS[@]} -eq 0 ]]; then
    echo "FAIL run_tests: no test programs in $BUILD/tests nor scripts tests/test_*.sh"
    failed=1
    failed_tests+=(run_tests)
fi
for t in "${TESTS[@]}"; do run_one "$t"; done

echo "==="
[[ ${#failed_tests[@]} -gt 0 ]] && echo "failing: ${failed_tests[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
