#!/usr/bin/env bash
# What freezing saves (docs/ADAPTATION.md, Freezing): for LoRA (rank 8 on
# q,v), Tokenformer adapters (64 kv on mlp,attn) on a transformerpp base and
# native rows (+32 attention, +128 FFN, zero-key) on a tokenformer base, at a
# preset's shape: the checkpoint size and peak host memory (max RSS) of a short
# `train --resume --freeze-old` run, and the training step's CPU time of the
# adapted model frozen (`bench --ckpt` of that run's checkpoint) and trained
# whole (`bench --ckpt` of the grown one). TF_BIN=OLD gives the "before".
# Prints one markdown table.
#
#   scripts/bench_frozen.sh [PRESET]            default shakespeare
# Env: DEVICE (default cpu), THREADS (default 1), BATCH (bench's batch size,
#      default 4), STEPS (default 5), TF_BIN (default ./tokenformer), TEXT
#      (default data/input.txt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PRESET=${1:-shakespeare}
BIN=${TF_BIN:-./tokenformer} TEXT=${TEXT:-data/input.txt}
DEV=(--device "${DEVICE:-cpu}" --threads "${THREADS:-1}")
[[ -x /usr/bin/time ]] || { echo "bench_frozen: needs GNU time (/usr/bin/time)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

json_num() { sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p"; }
echo "| base | adapted by | checkpoint bytes | max RSS KiB | CPU ms/step frozen | CPU ms/step whole |"
echo "|---|---|---|---|---|---|"
for arch in transformerpp tokenformer; do
    "$BIN" train "$TEXT" --preset "$PRESET" --arch $arch "${DEV[@]}" --max-iters 2 --batch-size 2 \
        --eval-interval 2 --eval-iters 1 --warmup-iters 0 --out "$work/base_$arch" >/dev/null
    kinds=(lora adapter) && [[ $arch == tokenformer ]] && kinds=(native)
    for kind in "${kinds[@]}"; do
        case $kind in
        lora) g=(--lora-rank 8) ;;
        adapter) g=(--adapter-kv 64 --adapter-sites mlp,attn) ;;
        native) g=(--kv +32 --ffn-kv +128 --init zero-key) ;;
        esac
        grown=$work/${kind}_grown.safetensors
        "$BIN" grow --ckpt "$work/base_$arch/latest.safetensors" "${g[@]}" --out "$grown" >/dev/null
        /usr/bin/time -f %M -o "$work/$kind.rss" "$BIN" train "$TEXT" --resume "$grown" --freeze-old --new-stage \
            --max-iters 2 --batch-size 2 --eval-interval 2 --eval-iters 1 --warmup-iters 0 "${DEV[@]}" --out "$work/$kind" >/dev/null
        # The frozen run's checkpoint records its frozen segments (older
        # binaries, without `bench --freeze-old`, honour them too).
        ms() { "$BIN" bench --ckpt "$1" "${DEV[@]}" --batch-size "${BATCH:-4}" --steps "${STEPS:-5}" \
            --warmup 1 | tail -1 | json_num cpu_ms_per_step; }
        echo "| $arch | $kind | $(stat -c %s "$work/$kind/latest.safetensors") | $(tail -1 "$work/$kind.rss") |" \
            "$(ms "$work/$kind/latest.safetensors") | $(ms "$grown") |"
    done
done
