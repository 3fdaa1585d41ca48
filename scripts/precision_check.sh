#!/usr/bin/env bash
# Do reduced-precision matmuls train like fp32? Trains the same model with the
# same seed and batches for ITERS steps under --precision fp32 and each of
# PRECISIONS on the GPU, evaluating every EVAL_INTERVAL steps, and prints the
# train/val losses side by side with the largest gap to fp32. Exits 1 when a
# gap exceeds TOL (nats).
#
#   scripts/precision_check.sh [PRESET]      default shakespeare
# Env: ITERS (500), EVAL_INTERVAL (100), EVAL_ITERS (50), PRECISIONS ("tf32 bf16"),
#      TOL (0.03), TF_BIN (./tokenformer), OUTDIR (out/precision_check)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PRESET=${1:-shakespeare}
BIN=${TF_BIN:-./tokenformer}
ITERS=${ITERS:-500}
EVAL_INTERVAL=${EVAL_INTERVAL:-100}
EVAL_ITERS=${EVAL_ITERS:-50}
TOL=${TOL:-0.03}
OUTDIR=${OUTDIR:-out/precision_check}
read -r -a PRECS <<<"${PRECISIONS:-tf32 bf16}"
[[ -f data/input.txt ]] || make -s data
mkdir -p "$OUTDIR"
for p in fp32 "${PRECS[@]}"; do
    "$BIN" train data/input.txt --preset "$PRESET" --device cuda --precision "$p" --max-iters "$ITERS" \
        --eval-interval "$EVAL_INTERVAL" --eval-iters "$EVAL_ITERS" --log-interval "$ITERS" \
        --out "$OUTDIR/$p.safetensors" >"$OUTDIR/$p.log" 2>&1 || { cat "$OUTDIR/$p.log"; exit 1; }
done
# "step N: train loss X, val loss Y" lines -> one table
awk -v tol="$TOL" -v precs="${PRECS[*]}" '
    FNR == 1 { p = FILENAME; sub(/.*\//, "", p); sub(/\.log$/, "", p) }
    /^step [0-9]+: train loss/ { s = $2 + 0; tr[p, s] = $5 + 0; va[p, s] = $8 + 0; steps[s] = 1 }
    END {
        n = split(precs, P, " ")
        printf "| step | fp32 train | fp32 val |"
        for (i = 1; i <= n; i++) printf " %s train | %s val |", P[i], P[i]
        printf "\n|---|---|---|"
        for (i = 1; i <= n; i++) printf "---|---|"
        printf "\n"
        worst = 0
        for (s = 0; s <= 1000000; s++) {
            if (!(s in steps)) continue
            printf "| %d | %.4f | %.4f |", s, tr["fp32", s], va["fp32", s]
            for (i = 1; i <= n; i++) {
                printf " %.4f | %.4f |", tr[P[i], s], va[P[i], s]
                g1 = tr[P[i], s] - tr["fp32", s]; if (g1 < 0) g1 = -g1
                g2 = va[P[i], s] - va["fp32", s]; if (g2 < 0) g2 = -g2
                if (g1 > worst) worst = g1
                if (g2 > worst) worst = g2
            }
            printf "\n"
        }
        printf "largest |loss - fp32 loss|: %.4f nats (tolerance %.3f): %s\n", worst, tol, worst <= tol ? "PASS" : "FAIL"
        exit worst <= tol ? 0 : 1
    }' "$OUTDIR"/fp32.log $(for p in "${PRECS[@]}"; do echo "$OUTDIR/$p.log"; done)
