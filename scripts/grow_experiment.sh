#!/usr/bin/env bash
# Growth experiment for docs/GROWTH.md: train a small `tiny` (n_attn 32, n_ffn 128)
# for BASE_ITERS, grow it by --kv +64 (-> n_attn 96, n_ffn 384, the tiny preset's
# size) once with zero-key rows and once with --init random (the official code),
# resume each for GROW_ITERS with --new-stage (the official recipe: new warmup +
# cosine), and compare with the small model simply trained on (also --new-stage,
# same seed and batches) and, unless SCRATCH=0, the large model trained from
# scratch for BASE_ITERS + GROW_ITERS. Prints the val loss of every run across the
# growth point as a markdown table, an ASCII plot, and a final long evaluation.
#
#   scripts/grow_experiment.sh [OUTDIR]          default out/grow_experiment
# Env: BASE_ITERS (1000), GROW_ITERS (1000), KV (64), THREADS (2), OMP_WAIT_POLICY (passive),
#      EVAL_INTERVAL (100 before growth; half of it after), EVAL_ITERS (20),
#      FINAL_BATCHES (200), SCRATCH (1), SEED (1337), TF_BIN (./tokenformer),
#      STAGE_FLAGS (extra train flags for the three resumed runs, e.g. "--lr 3e-4")
# Takes about 10 minutes on 2 cores (tiny at ~15k tokens/s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${1:-out/grow_experiment}
BIN=${TF_BIN:-./tokenformer}
source scripts/find_python.sh
PY=$PYTHON
BASE_ITERS=${BASE_ITERS:-1000}
GROW_ITERS=${GROW_ITERS:-1000}
KV=${KV:-64}
THREADS=${THREADS:-2}
EVAL_INTERVAL=${EVAL_INTERVAL:-100}
EVAL_ITERS=${EVAL_ITERS:-20}
FINAL_BATCHES=${FINAL_BATCHES:-200}
SCRATCH=${SCRATCH:-1}
SEED=${SEED:-1337}
read -r -a STAGE <<<"${STAGE_FLAGS:-}"
[[ -x $BIN ]] || make -s -j2
[[ -f data/input.txt ]] || make -s data
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS
# Passive waiting: on a shared 2-core machine spinning OpenMP threads made 2-thread
# steps ~3x slower whenever another process was running.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

GROW_EVAL=$((EVAL_INTERVAL / 2 > 0 ? EVAL_INTERVAL / 2 : 1))
EVAL=(--eval-iters "$EVAL_ITERS" --log-interval 100 --threads "$THREADS" --seed "$SEED")
SMALL=(--preset tiny --n-attn 32 --n-ffn 128)
t0=$(date +%s)
run() { # run NAME CMD...: log to $OUT/NAME.log, one line of progress here
    local name=$1
    shift
    local t=$(date +%s)
    echo "== $name: $*" | tee "$OUT/$name.log"
    "$@" >>"$OUT/$name.log" 2>&1 || { tail -5 "$OUT/$name.log"; echo "$name failed"; exit 1; }
    grep -E "^(step $BASE_ITERS|step $((BASE_ITERS + GROW_ITERS))|val loss on|schedule|parameters)" "$OUT/$name.log" | sed 's/^/   /' || true
    echo "   ($(( $(date +%s) - t )) s)"
}

echo "tokenformer growth experiment: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $THREADS threads; output in $OUT"
run small "$BIN" train data/input.txt "${SMALL[@]}" "${EVAL[@]}" --eval-interval "$EVAL_INTERVAL" \
    --max-iters "$BASE_ITERS" --out "$OUT/small"
run grow_zero "$BIN" grow --ckpt "$OUT/small/latest.safetensors" --kv +"$KV" --init zero-key \
    --batches 50 --seed "$SEED" --threads "$THREADS" --data data/input.txt --out "$OUT/grown_zero.safetensors" --force
run grow_random "$BIN" grow --ckpt "$OUT/small/latest.safetensors" --kv +"$KV" --init random \
    --batches 50 --seed "$SEED" --threads "$THREADS" --data data/input.txt --out "$OUT/grown_random.safetensors" --force
RESUME=(--new-stage --max-iters "$GROW_ITERS" "${EVAL[@]}" --eval-interval "$GROW_EVAL" ${STAGE[@]+"${STAGE[@]}"})
run zero "$BIN" train data/input.txt --resume "$OUT/grown_zero.safetensors" "${RESUME[@]}" --out "$OUT/zero"
run random "$BIN" train data/input.txt --resume "$OUT/grown_random.safetensors" "${RESUME[@]}" --out "$OUT/random"
run continued "$BIN" train data/input.txt --resume "$OUT/small/latest.safetensors" "${RESUME[@]}" --out "$OUT/continued"
if [[ $SCRATCH == 1 ]]; then
    run scratch "$BIN" train data/input.txt --preset tiny "${EVAL[@]}" --eval-interval "$EVAL_INTERVAL" \
        --max-iters $((BASE_ITERS + GROW_ITERS)) --out "$OUT/scratch"
fi

echo
echo "final evaluation: $FINAL_BATCHES val batches of 16 x 64 (same batches for every model)"
for name in small continued zero random scratch; do
    f="$OUT/$name/latest.safetensors"
    [[ -f $f ]] || continue
    echo "$name $("$BIN" eval --ckpt "$f" --batches "$FINAL_BATCHES" --seed "$SEED" --threads "$THREADS" --device cpu)"
done | tee "$OUT/final.txt"

echo
"$PY" - "$OUT" "$BASE_ITERS" "$KV" <<'PYEOF'
import os, re, sys
out, base, kv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def steps(name):
    p = os.path.join(out, name + ".log")
    if not os.path.exists(p):
        return {}
    return {int(s): float(v) for s, v in re.findall(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)", open(p).read(), re.M)}
def params(name):
    p = os.path.join(out, name + ".log")
    m = re.search(r"^parameters: (\d+) \((\d+) without", open(p).read(), re.M) if os.path.exists(p) else None
    return f"{int(m.group(2)):,}" if m else "?"
small = steps("small")
cols = [("small, continued", {**small, **steps("continued")}),
        (f"zero-key +{kv}", steps("zero")),
        (f"random +{kv}", steps("random")),
        ("large from scratch", steps("scratch"))]
cols = [(n, d) for n, d in cols if d]
print("non-embedding parameters: " + ", ".join(f"{n} {params(f)}" for n, f in
      (("small", "small"), ("grown", "zero"), ("large from scratch", "scratch")) if steps(f)))
print()
print("val loss at each evaluation (eval batches are the same for every run at a given step;")
print(f"step {base} is the growth point: the grown runs' first line is the grown model before any step)")
print()
print("| step | " + " | ".join(n for n, _ in cols) + " |")
print("|---:|" + "---:|" * len(cols))
allsteps = sorted(set().union(*[d.keys() for _, d in cols]))
for s in allsteps:
    cells = [f"{d[s]:.4f}" if s in d and (s >= base or n.startswith("small") or n.startswith("large")) else "" for n, d in cols]
    print(f"| {s}{' (grow)' if s == base else ''} | " + " | ".join(cells) + " |")

# ASCII plot of the val loss from a little before the growth point on
lo_step = max(0, base - 200)
series = [(n, {s: v for s, v in d.items() if s >= lo_step}) for n, d in cols]
vals = [v for _, d in series for v in d.values()]
if vals:
    W, H = 64, 18
    hi_step = max(allsteps)
    vmin, vmax = min(vals), max(vals)
    vmax = min(vmax, vmin + 0.5)  # keep the interesting range readable; spikes clip at the top
    grid = [[" "] * W for _ in range(H)]
    marks = "sz*+x"
    for (n, d), mk in zip(series, marks):
        for s, v in d.items():
            x = round((s - lo_step) / max(1, hi_step - lo_step) * (W - 1))
            y = round((min(v, vmax) - vmin) / max(1e-9, vmax - vmin) * (H - 1))
            grid[H - 1 - y][x] = mk if grid[H - 1 - y][x] in (" ", mk) else "#"
    gx = round((base - lo_step) / max(1, hi_step - lo_step) * (W - 1))
    print()
    print("val loss, steps %d..%d (%s; # = overlap, | = growth point)" % (lo_step, hi_step,
          ", ".join(f"{mk} {n}" for (n, _), mk in zip(series, marks))))
    for i, row in enumerate(grid):
        v = vmax - (vmax - vmin) * i / (H - 1)
        if row[gx] == " ":
            row[gx] = "|"
        print(f"{v:7.3f} |" + "".join(row))
    print("        +" + "-" * W)
    print(f"         {lo_step:<{W // 2}}{hi_step:>{W // 2}}")
PYEOF
echo
echo "total $(( $(date +%s) - t0 )) s"
