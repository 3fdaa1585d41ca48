#!/usr/bin/env bash
# How long idle OpenMP threads should spin: CPU training and sampling alone
# ("idle") and two at once ("loaded", each), for each setting, interleaved.
# Prints the markdown table of docs/BENCHMARKS.md "Shared machines". Run it on
# an otherwise quiet machine.
#
#   scripts/bench_spin.sh          # Env: REPEATS (default 2), TF_BIN, SETTINGS
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${TF_BIN:-./tokenformer}
REPEATS=${REPEATS:-2}
# "default" runs the binary with neither variable set (its own choice).
SETTINGS=${SETTINGS:-GOMP_SPINCOUNT=300000 GOMP_SPINCOUNT=10000 GOMP_SPINCOUNT=3000 GOMP_SPINCOUNT=1000 OMP_WAIT_POLICY=passive default}
TRAIN=(bench --device cpu --steps 40 --warmup 5)
SAMPLE=(bench --device cpu --sample --preset shakespeare --max-new-tokens 300)

rate() { # SETTING FIELD ARGS...: one run's rate
    local setting=$1 field=$2
    shift 2
    local env_args=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
    [[ $setting != default ]] && env_args+=("$setting")
    "${env_args[@]}" "$BIN" "$@" 2>/dev/null | tail -1 | sed -n "s/.*\"$field\": \([0-9.]*\).*/\1/p"
}

pair() { # SETTING FIELD ARGS...: two runs at once, "a + b"
    local a b
    a=$(mktemp) b=$(mktemp)
    rate "$@" >"$a" &
    rate "$@" >"$b" &
    wait
    echo "$(cat "$a") + $(cat "$b")"
    rm -f "$a" "$b"
}

declare -A cell
for ((r = 0; r < REPEATS; r++)); do
    for s in $SETTINGS; do
        cell[$s,ti]+="$(rate "$s" tokens_per_s "${TRAIN[@]}") "
        cell[$s,tl]+="$(pair "$s" tokens_per_s "${TRAIN[@]}"); "
        cell[$s,si]+="$(rate "$s" chars_per_s "${SAMPLE[@]}") "
        cell[$s,sl]+="$(pair "$s" chars_per_s "${SAMPLE[@]}"); "
    done
done
echo "$(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(git log -1 --format=%h 2>/dev/null)"
echo
echo "| setting | train idle tok/s | train loaded (each) | sample idle chars/s | sample loaded (each) |"
echo "|---|---|---|---|---|"
for s in $SETTINGS; do
    echo "| $s | ${cell[$s,ti]}| ${cell[$s,tl]}| ${cell[$s,si]}| ${cell[$s,sl]}|"
done
