#!/usr/bin/env bash
# Data-parallel throughput: gpt2-124m (bf16) on 1 GPU and on 2 GPUs at the
# same per-GPU batch, in one call. Prints the tokens/s of each (the median of
# the progress lines after the first, all ranks' tokens counted) and their
# ratio against the target (>= 1.9x). Exit status 1 when the target is missed.
#
#   scripts/bench_dp.sh [EXTRA TRAIN FLAGS...]
# Env: TF_BIN (./tokenformer), PRESET (gpt2-124m), BATCH (per GPU, default the
#      preset's), ITERS (60), TARGET (1.9), DATA (data/input.txt).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${TF_BIN:-./tokenformer}
PRESET=${PRESET:-gpt2-124m}
ITERS=${ITERS:-60}
TARGET=${TARGET:-1.9}
DATA=${DATA:-data/input.txt}
[[ -f $DATA ]] || make -s data
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n_gpus=$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU')
if [[ ${n_gpus:-0} -lt 2 ]]; then
    echo "bench_dp: needs 2 GPUs, found ${n_gpus:-0}" >&2
    exit 1
fi
ARGS=("$DATA" --preset "$PRESET" --device cuda --precision bf16 --max-iters "$ITERS" --log-interval 10
      --eval-interval 1000000 --eval-iters 1 ${BATCH:+--batch-size "$BATCH"} "$@")
PORT=$((23000 + $$ % 4000 * 2))

# Median tokens/s of the progress lines but the first (startup, warmup).
tok_s() { grep '^iter ' "$1" | tail -n +2 | sed 's/.* \([0-9]*\) tok\/s.*/\1/' | sort -n |
          awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }

CUDA_VISIBLE_DEVICES=0 "$BIN" train "${ARGS[@]}" --out "$tmp/one" >"$tmp/one.log" 2>"$tmp/one.err" ||
    { echo "bench_dp: 1-GPU run failed: $(tail -1 "$tmp/one.err")" >&2; exit 1; }
if command -v torchrun >/dev/null; then
    torchrun --standalone --nproc_per_node=2 --no-python "$BIN" train "${ARGS[@]}" --out "$tmp/two" \
        >"$tmp/two.log" 2>"$tmp/two.err"
else
    for r in 0 1; do
        RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
            "$BIN" train "${ARGS[@]}" --out "$tmp/two" >"$tmp/two.$r.log" 2>"$tmp/two.$r.err" &
    done
    wait
    cp "$tmp/two.0.log" "$tmp/two.log"
    cat "$tmp/two.0.err" "$tmp/two.1.err" >"$tmp/two.err"
fi
one=$(tok_s "$tmp/one.log") two=$(tok_s "$tmp/two.log")
[[ $two -gt 0 ]] || { echo "bench_dp: 2-GPU run failed: $(tail -2 "$tmp/two.err" | tr '\n' ' ')" >&2; exit 1; }
grep '^data:' "$tmp/two.log"
awk -v a="$one" -v b="$two" -v t="$TARGET" -v p="$PRESET" 'BEGIN {
    r = b / a
    printf "| %s bf16 | 1 GPU | %d tok/s |\n| %s bf16 | 2 GPUs | %d tok/s |\n", p, a, p, b
    printf "speedup %.2fx (target %.2fx): %s\n", r, t, r >= t ? "PASS" : "FAIL"
    exit r >= t ? 0 : 1 }'
