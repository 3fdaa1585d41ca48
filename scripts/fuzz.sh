#!/usr/bin/env bash
# Fuzz the safetensors reader with libFuzzer + ASan + UBSan.
#   scripts/fuzz.sh                  run for FUZZ_SECONDS (default 60)
#   FUZZ_SECONDS=300 scripts/fuzz.sh
# Output (binary, corpus, crash files) goes to FUZZ_OUT (default fuzz-out/).
# The corpus persists between runs and is re-seeded with valid files each
# time. Exit status is non-zero if the fuzzer found a crash, leak or hang.
# FUZZ_COVERAGE=1 also replays the corpus through a clang source-coverage
# build and prints line/branch coverage of src/io/safetensors.c (llvm-cov).
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN="${FUZZ_SECONDS:-60}"
OUT="${FUZZ_OUT:-fuzz-out}"
CC_FUZZ="${CC_FUZZ:-clang}"
CFLAGS_FUZZ=(-std=c11 -g -O1 -fno-omit-frame-pointer -Iinclude -I/usr/include/cjson)
SRCS=(src/io/safetensors.c src/core/common.c src/core/tensor.c)

if ! command -v "$CC_FUZZ" >/dev/null; then
    echo "fuzz.sh: $CC_FUZZ not found (apt-get install -y clang)" >&2
    exit 2
fi
mkdir -p "$OUT/corpus" "$OUT/crashes" "$OUT/seeds"

# The seed generator is built without the fuzzer runtime (it has a main).
"$CC_FUZZ" "${CFLAGS_FUZZ[@]}" "${SRCS[@]}" tests/fuzz/gen_seeds.c -lcjson -lm -o "$OUT/gen_seeds"
"$OUT/gen_seeds" "$OUT/seeds"
cp "$OUT"/seeds/*.safetensors "$OUT/corpus/"

if ! "$CC_FUZZ" "${CFLAGS_FUZZ[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        "${SRCS[@]}" tests/fuzz/fuzz_safetensors.c -lcjson -lm -o "$OUT/fuzz_safetensors"; then
    echo "fuzz.sh: building with -fsanitize=fuzzer failed (Debian: apt-get install -y libclang-rt-14-dev)" >&2
    exit 2
fi

echo "fuzz.sh: fuzzing st_parse for ${SECONDS_TO_RUN}s, corpus $OUT/corpus ($(ls "$OUT/corpus" | wc -l) files)"
LOG="$OUT/fuzz.log"
set +e
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
"$OUT/fuzz_safetensors" "$OUT/corpus" \
    -dict=tests/fuzz/safetensors.dict \
    -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$OUT/crashes/" >"$LOG" 2>&1
RC=$?
set -e

# Summary: libFuzzer's final stats, the last coverage line, and any crash.
grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$LOG" || true
grep -E '^#[0-9]+[[:space:]]+(DONE|REDUCE|NEW|pulse)' "$LOG" | tail -n 1 || true
echo "corpus: $(ls "$OUT/corpus" | wc -l) files"
if [ "$RC" -ne 0 ]; then
    echo "fuzz.sh: FOUND A PROBLEM (exit $RC); log: $LOG; reproducer(s):" >&2
    ls -1 "$OUT/crashes" >&2 || true
    grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$LOG" | head -n 20 >&2 || true
    exit 1
fi
echo "fuzz.sh: no crashes in ${SECONDS_TO_RUN}s"

if [ "${FUZZ_COVERAGE:-0}" = 1 ]; then
    # libFuzzer's "cov:" counts edges only in instrumented code (not the
    # system libcjson); this gives per-line numbers for our reader.
    PROFDATA="$(command -v llvm-profdata || command -v llvm-profdata-14)"
    LLVMCOV="$(command -v llvm-cov || command -v llvm-cov-14)"
    "$CC_FUZZ" "${CFLAGS_FUZZ[@]}" -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping \
        "${SRCS[@]}" tests/fuzz/fuzz_safetensors.c -lcjson -lm -o "$OUT/fuzz_cov"
    LLVM_PROFILE_FILE="$OUT/cov.profraw" "$OUT/fuzz_cov" -runs=0 "$OUT/corpus" >/dev/null 2>&1
    "$PROFDATA" merge -sparse "$OUT/cov.profraw" -o "$OUT/cov.profdata"
    "$LLVMCOV" report "$OUT/fuzz_cov" -instr-profile="$OUT/cov.profdata" src/io/safetensors.c
fi
