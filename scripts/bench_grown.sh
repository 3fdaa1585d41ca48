#!/usr/bin/env bash
# Does a grown model train as fast as the same size trained from scratch?
# For each preset: a tokenformer with 1/4 of the preset's rows is trained for
# one iteration, grown to 1/2 and then to the full rows (grow --kv/--ffn-kv,
# so its rows live in three per-birth segments), and `bench --ckpt` times
# training steps of it against a checkpoint of the full size written by one
# iteration from scratch (one segment). Same device, precision and batch, one
# run; prints a markdown table with the ratio grown / scratch.
#
#   scripts/bench_grown.sh [PRESETS...]      default: shakespeare gpt2-124m
# Env: DEVICE (default cuda), PRECISION (default bf16), STEPS (default 20),
#      REPEATS (alternated pairs, default 2), TF_BIN, TEXT (default data/input.txt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${TF_BIN:-./tokenformer}
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}
STEPS=${STEPS:-20}
REPEATS=${REPEATS:-2}
TEXT=${TEXT:-data/input.txt}
PRESETS=("$@")
[[ ${#PRESETS[@]} -gt 0 ]] || PRESETS=(shakespeare gpt2-124m)
[[ -s $TEXT ]] || { echo "bench_grown: no text at $TEXT (make data)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The preset's rows per attention site and per FFN, from `info --preset`.
preset_rows() {
    "$BIN" info --preset "$1" | awk '/layer 0:/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "q") a = kv[2]; if (kv[1] == "ffn") f = kv[2] }
        print a, f; exit }'
}

one_iteration() { # OUT [model flags...]
    local out=$1
    shift
    "$BIN" train "$TEXT" --device "$DEVICE" --precision "$PRECISION" --max-iters 1 --eval-interval 1 \
        --eval-iters 1 --out "$out" "$@" >"$work/train.log" 2>&1 ||
        { tail -5 "$work/train.log" >&2; exit 1; }
}

tok_per_s() {
    "$BIN" bench --ckpt "$1" --device "$DEVICE" --precision "$PRECISION" --steps "$STEPS" --warmup 3 |
        tail -1 | sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p'
}

echo "device: $DEVICE, precision: $PRECISION, $(git log -1 --format=%h 2>/dev/null || echo '?')"
echo
echo "| preset | scratch tok/s | grown 1/4 -> 1/2 -> 1 tok/s | grown / scratch |"
echo "|---|---|---|---|"
for p in "${PRESETS[@]}"; do
    read -r A F < <(preset_rows "$p")
    one_iteration "$work/$p-scratch" --preset "$p"
    one_iteration "$work/$p-small" --preset "$p" --n-attn $((A / 4)) --n-ffn $((F / 4))
    "$BIN" grow --ckpt "$work/$p-small/latest.safetensors" --kv +$((A / 4)) --ffn-kv +$((F / 4)) \
        --out "$work/$p-half.safetensors" >/dev/null
    "$BIN" grow --ckpt "$work/$p-half.safetensors" --kv +$((A / 2)) --ffn-kv +$((F / 2)) \
        --out "$work/$p-grown.safetensors" >/dev/null
    s_all=() g_all=()
    for ((r = 0; r < REPEATS; r++)); do # alternated, so drifts of the GPU's clock hit both
        s_all+=("$(tok_per_s "$work/$p-scratch/latest.safetensors")")
        g_all+=("$(tok_per_s "$work/$p-grown.safetensors")")
    done
    s=$(printf '%s\n' "${s_all[@]}" | sort -g | tail -1)
    g=$(printf '%s\n' "${g_all[@]}" | sort -g | tail -1)
    echo "| $p | ${s_all[*]} | ${g_all[*]} | $(awk -v g="$g" -v s="$s" 'BEGIN {printf "%.3f", g / s}') (best of each) |"
done
