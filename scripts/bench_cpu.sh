#!/usr/bin/env bash
# CPU benchmark: tokenformer vs the PyTorch reference (scripts/bench_torch.py)
# on the same model, threads and machine, in one run; then sampling speed.
# Prints a markdown table (paste into docs/BENCHMARKS.md).
#
#   scripts/bench_cpu.sh [THREADS] [PRESETS...]      default: 2 tiny shakespeare
# Env: STEPS (timed steps, default 40 for tiny, 4 for others), REPEATS (default 5; medians),
#      PYTHON (python with torch; default: scripts/find_python.sh finds one),
#      ARCH (tokenformer, transformer or transformerpp; default tokenformer),
#      TF_BIN (the binary, default ./tokenformer), OMP_WAIT_POLICY (default passive, both sides).
# Besides wall-clock tok/s, each side reports the CPU time of its timed steps
# (all threads); "CPU tok/s" = tokens x THREADS / CPU seconds, the rate the
# run would have with its cores to itself. On a shared machine it is the less
# noisy figure (passive waiting, so that idle threads do not burn CPU time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS=${1:-2}
shift || true
PRESETS=("$@")
[[ ${#PRESETS[@]} -gt 0 ]] || PRESETS=(tiny shakespeare)
source scripts/find_python.sh
PY=${PY:-$PYTHON}
ARCH=${ARCH:-tokenformer}
BIN=${TF_BIN:-./tokenformer}
[[ -x $BIN ]] || make -s -j2
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

json_field() { "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); v=r.get(sys.argv[1]); print("n/a" if v is None else v)' "$1"; }

REPEATS=${REPEATS:-5}
echo "arch: $ARCH"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; threads used: $THREADS"
has_flag() { grep -qw "$1" /proc/cpuinfo && echo yes || echo no; }
echo "cpu flags: avx2 $(has_flag avx2), avx512f $(has_flag avx512f); OpenBLAS core: $(OPENBLAS_VERBOSE=2 "$BIN" --help 2>&1 >/dev/null | sed -n 's/^Core: //p' | head -1)${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)}"
echo "torch: $("$PY" -c 'import torch; print(torch.__version__)')"
echo
echo "| preset | B x T | tokenformer tok/s | PyTorch eager tok/s | ratio (median of pairs) | tokenformer CPU tok/s | PyTorch CPU tok/s | CPU ratio | tokenformer ms/step | PyTorch ms/step |  (medians of $REPEATS)"
echo "|---|---|---|---|---|---|---|---|---|---|"
# Each side runs REPEATS times, interleaved, and medians count: on a shared
# VM single runs move by 10-30%. The ratio is the median of the ratios of
# back-to-back pairs.
median() { "$PY" -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
pair_ratio() { "$PY" -c "import statistics,sys; o=[float(x) for x in sys.argv[1].split()]; t=[float(x) for x in sys.argv[2].split()]; print(f'{statistics.median(a/b for a, b in zip(o, t)):.2f}x')" "$1" "$2"; }
# tokens x threads / CPU seconds of the timed steps
# (nan for a binary from before cpu_ms_per_step)
cpu_rate() { "$PY" -c 'import sys; print(float("nan") if sys.argv[1] == "n/a" else float(sys.argv[2]) * float(sys.argv[3]) * 1000.0 / float(sys.argv[1]))' "$1" "$2" "$THREADS"; }
for p in "${PRESETS[@]}"; do
    steps=${STEPS:-$([[ $p == tiny ]] && echo 40 || echo 4)}
    ot=() om=() oc=() tt=() tm=() tc=()
    for ((r = 0; r < REPEATS; r++)); do
        ours=$(OMP_NUM_THREADS=$THREADS "$BIN" bench --arch "$ARCH" --preset "$p" --device cpu --threads "$THREADS" --steps "$steps" --warmup 2)
        theirs=$(OMP_NUM_THREADS=$THREADS "$PY" scripts/bench_torch.py --arch "$ARCH" --preset "$p" --device cpu --threads "$THREADS" --steps "$steps" --warmup 2)
        ot+=("$(echo "$ours" | json_field tokens_per_s)"); om+=("$(echo "$ours" | json_field ms_per_step)")
        tt+=("$(echo "$theirs" | json_field tokens_per_s)"); tm+=("$(echo "$theirs" | json_field ms_per_step)")
        tokens=$(( $(echo "$ours" | json_field batch) * $(echo "$ours" | json_field block) ))
        oc+=("$(cpu_rate "$(echo "$ours" | json_field cpu_ms_per_step)" "$tokens")")
        tc+=("$(cpu_rate "$(echo "$theirs" | json_field cpu_ms_per_step)" "$tokens")")
    done
    bt="$(echo "$ours" | json_field batch) x $(echo "$ours" | json_field block)"
    printf '| %s | %s | %.0f | %.0f | %s | %.0f | %.0f | %s | %.1f | %.1f |\n' "$p" "$bt" \
        "$(median "${ot[@]}")" "$(median "${tt[@]}")" "$(pair_ratio "${ot[*]}" "${tt[*]}")" \
        "$(median "${oc[@]}")" "$(median "${tc[@]}")" "$(pair_ratio "${oc[*]}" "${tc[*]}")" \
        "$(median "${om[@]}")" "$(median "${tm[@]}")"
    echo "  (runs: tokenformer ${ot[*]}; PyTorch ${tt[*]}; CPU tok/s: tokenformer ${oc[*]}; PyTorch ${tc[*]})" >&2
done

# Sampling: a tiny model trained for a few steps is enough to time generation.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
[[ -f data/input.txt ]] || make -s data
"$BIN" train --max-iters 1 --eval-iters 1 --threads "$THREADS" --out "$tmp" >/dev/null 2>&1
N=2000
t0=$(date +%s.%N)
"$BIN" sample --ckpt "$tmp/latest.safetensors" --max-new-tokens $N --threads "$THREADS" --device cpu >/dev/null
t1=$(date +%s.%N)
echo
"$PY" -c "print(f'sampling (tiny, context 64, cpu, $THREADS threads): {$N/($t1-$t0):.0f} characters/s ($N characters in {$t1-$t0:.2f} s, model load included)')"
