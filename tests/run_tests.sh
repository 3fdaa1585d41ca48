#!/usr/bin/env bash
# Test runner for `make test` / `make asan`.
#
# Runs every C test program $BUILD/tests/test_* and every script
# tests/test_*.sh, except the CUDA ones (test_cuda_*: `make test-cuda` runs
# them alone, through tests/run_cuda_tests.sh, which sets TF_TESTS=cuda). The list is printed first. Each test prints one line per check
# beginning with "PASS ", "FAIL " or "SKIP " and exits non-zero if anything
# failed; a non-zero exit with no FAIL line counts as one failure (a crash, a
# sanitizer report, a timeout). The last line printed is exactly
# "N passed, N failed, N skipped", after a line naming the ten slowest tests
# with their seconds; the exit status is 1 if any failed.
#
# Environment: BUILD (build dir, default build), TF_BIN (binary under test,
# default ./tokenformer), TF_TEST_TIMEOUT (seconds per test, default 1200),
# TF_TEST_JOBS (tests run at once, default the number of cores; with more
# than one, each test's output is printed whole when it ends, in the order
# they end; 1: one after the other, output as it comes),
# PYTHON (the Python the tests run; default: scripts/find_python.sh finds one
# with torch).
# Arguments, if any, name the tests to run, with or without .sh and path:
#     tests/run_tests.sh test_tokenizer test_resume.sh
#     make test T="test_tokenizer test_resume"
# A name that matches no test is an error (so that a typo does not pass).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export BUILD="${BUILD:-build}"
export TF_BIN="${TF_BIN:-./tokenformer}"
TIMEOUT="${TF_TEST_TIMEOUT:-1200}"
JOBS="${TF_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "run_tests: TF_TEST_JOBS must be a positive integer, got '$JOBS'" >&2; exit 2; }
# Idle OpenMP threads sleep instead of spinning: on a machine whose cores are
# shared (CI, several jobs), spinning threads of one test starve the others'
# and a 400-step training run took 12 minutes instead of 1.5.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
source scripts/find_python.sh # PYTHON, found once for every test (C programs read it too)

is_cuda_test() { [[ "$1" == test_cuda_* ]]; }
# TF_TESTS=cuda (make test-cuda, tests/run_cuda_tests.sh): the CUDA tests
# instead of the others.
wanted() { if [[ ${TF_TESTS:-} == cuda ]]; then is_cuda_test "$1"; else ! is_cuda_test "$1"; fi; }

# Order: the C programs first (unit tests, seconds, so that a broken basic
# piece shows up at once), then the scripts, which drive the binary.
all_tests() {
    local f
    for f in "$BUILD"/tests/test_*; do # a program whose source is gone is stale: not run
        [[ -f "$f" && -x "$f" && -f tests/$(basename "$f").c ]] && wanted "$(basename "$f")" && echo "$f"
    done
    for f in tests/test_*.sh; do
        [[ -f "$f" ]] && wanted "$(basename "$f")" && echo "$f"
    done
}

# The name a test is selected by: its file name without directory and .sh.
test_name() { local b; b="$(basename "$1")"; echo "${b%.sh}"; }

# Echo the tests to run, in run order; exit 2 naming any selection that
# matches nothing.
list_tests() {
    local all sel t found missing=()
    mapfile -t all < <(all_tests)
    if [[ ${#SELECTED[@]} -eq 0 ]]; then
        printf '%s\n' "${all[@]}"
        return 0
    fi
    for sel in "${SELECTED[@]}"; do
        found=0
        for t in "${all[@]}"; do [[ "$(test_name "$t")" == "$(test_name "$sel")" ]] && found=1; done
        [[ $found -eq 1 ]] || missing+=("$sel")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "run_tests: no test named ${missing[*]} (tests: $(for t in "${all[@]}"; do printf '%s ' "$(test_name "$t")"; done))" >&2
        return 2
    fi
    for t in "${all[@]}"; do
        for sel in "${SELECTED[@]}"; do
            [[ "$(test_name "$t")" == "$(test_name "$sel")" ]] && { echo "$t"; break; }
        done
    done
    return 0
}

count_lines() { grep -c "^$1 " "$2" || true; }

passed=0 failed=0 skipped=0
failed_tests=()
TIMES=() # "seconds name" per test run

# Add up the check lines of a test's output (log), its exit status (rc)
# and seconds; a non-zero exit without a FAIL line is one failure.
tally() {
    local test=$1 log=$2 rc=$3 secs=$4 p f s
    TIMES+=("$secs $(test_name "$test")")
    p=$(count_lines PASS "$log")
    f=$(count_lines FAIL "$log")
    s=$(count_lines SKIP "$log")
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

test_command() { if [[ "$1" == *.sh ]]; then echo bash; fi; echo "$1"; }

# One test at a time (JOBS=1): its output echoed as it comes.
run_one() {
    local test=$1 log rc t0
    local cmd
    mapfile -t cmd < <(test_command "$test")
    echo "=== $test"
    log="$(mktemp)"
    t0=$SECONDS
    timeout --kill-after=30 "$TIMEOUT" "${cmd[@]}" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    tally "$test" "$log" "$rc" $((SECONDS - t0))
    rm -f "$log"
}

# JOBS tests at a time (each test works in its own temporary folder): each
# one's output is printed whole when it ends, so that tests' lines never mix.
run_parallel() {
    local dir i next=0 done=0 running=0 n=${#TESTS[@]}
    local -a reported=()
    dir=$(mktemp -d)
    while [[ $done -lt $n ]]; do
        while [[ $running -lt $JOBS && $next -lt $n ]]; do
            start_in_background "${TESTS[$next]}" "$dir/$next"
            next=$((next + 1)) running=$((running + 1))
        done
        wait -n 2>/dev/null || true
        for ((i = 0; i < next; i++)); do
            [[ -z ${reported[$i]:-} && -f $dir/$i.rc ]] || continue
            reported[$i]=1
            done=$((done + 1)) running=$((running - 1))
            echo "=== ${TESTS[$i]}"
            cat "$dir/$i.log"
            tally "${TESTS[$i]}" "$dir/$i.log" $(cat "$dir/$i.rc")
        done
    done
    rm -rf "$dir"
}

# The test's output in OUT.log; "STATUS SECONDS" in OUT.rc once it ended.
start_in_background() {
    local cmd
    mapfile -t cmd < <(test_command "$1")
    (
        t0=$SECONDS
        timeout --kill-after=30 "$TIMEOUT" "${cmd[@]}" >"$2.log" 2>&1
        rc=$?
        echo "$rc $((SECONDS - t0))" >"$2.rc.tmp" && mv "$2.rc.tmp" "$2.rc"
    ) &
}

# The longest tests start first, so that the parallel lanes end together.
LONGEST_FIRST=(test_train test_grow_ops test_checkpoint_robust test_adapt_study test_cli_errors test_adapters)
longest_first() {
    local t l
    for l in "${LONGEST_FIRST[@]}"; do
        for t in "${TESTS[@]}"; do [[ $(test_name "$t") == "$l" ]] && echo "$t"; done
    done
    for t in "${TESTS[@]}"; do
        [[ " ${LONGEST_FIRST[*]} " == *" $(test_name "$t") "* ]] || echo "$t"
    done
}

SELECTED=()
for arg in "$@"; do for word in $arg; do SELECTED+=("$word"); done; done # T="a b" arrives as one word
listing="$(list_tests)" || exit 2
mapfile -t TESTS < <([[ -n "$listing" ]] && echo "$listing")
names=()
for t in "${TESTS[@]}"; do names+=("$(test_name "$t")"); done
echo "running ${#TESTS[@]} tests: ${names[*]}"
if [[ ${#TESTS[@]} -eq 0 ]]; then
    echo "FAIL run_tests: no test programs in $BUILD/tests nor scripts tests/test_*.sh"
    failed=1
    failed_tests+=(run_tests)
fi
if [[ $JOBS -gt 1 && ${#TESTS[@]} -gt 1 ]]; then
    mapfile -t TESTS < <(longest_first)
    run_parallel
else
    for t in "${TESTS[@]}"; do run_one "$t"; done
fi

echo "==="
# The slowest tests, so that `make test` stays short (it must stay under 4
# minutes on 2 cores): seconds each, slowest first.
if [[ ${#TIMES[@]} -gt 1 ]]; then
    echo "slowest: $(printf '%s\n' "${TIMES[@]}" | sort -rn | head -10 | awk '{printf "%s%s %ss", (NR > 1 ? ", " : ""), $2, $1}')"
fi
[[ ${#failed_tests[@]} -gt 0 ]] && echo "failing: ${failed_tests[*]}"
echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
