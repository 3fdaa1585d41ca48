#!/usr/bin/env bash
# Where a training step's GPU time goes, kernel by kernel: runs one step of
# `tokenformer bench` under Nsight Compute (ncu), reading only each kernel's
# duration, and prints the kernels by total time with their share. Needs a
# GPU and ncu (the lent H100 machines have it). Clocks are left as the card
# has them (--clock-control none), so the times match ordinary runs.
#
#   scripts/ncu_kernels.sh [PRESET] [PRECISION]    default: shakespeare bf16
# Env: TF_BIN (./tokenformer), PY (python3), TOP (25 rows), NCU (ncu),
#      CACHE_CONTROL (all: ncu flushes the caches before each kernel, its default;
#      none: kernels see the caches the previous one left, as in a real step),
#      SAMPLE=N: decoding instead: N streams (`bench --sample --no-graph`, op by op
#      so that every kernel is a launch ncu sees), LAUNCHES kernels (default 450)
#      after the first SKIP (default 2000, past the prompt and the first steps); the
#      time per decode step is the total over the draws (`sample_kernel`, one a step
#      since the GPU draws the tokens; the embedding launches where no draw is seen).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/find_python.sh
PRESET=${1:-shakespeare}
PREC=${2:-bf16}
BIN=${TF_BIN:-./tokenformer}
NCU=${NCU:-ncu}
command -v "$NCU" >/dev/null || { echo "ncu_kernels: '$NCU' not found (Nsight Compute)" >&2; exit 1; }
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
if [[ -n ${SAMPLE:-} ]]; then
    what=(--launch-skip "${SKIP:-2000}" --launch-count "${LAUNCHES:-450}"
          "$BIN" bench --sample --no-graph --num-samples "$SAMPLE" --max-new-tokens 400)
else
    what=("$BIN" bench --steps 1 --warmup 0)
fi
"$NCU" --clock-control none --cache-control "${CACHE_CONTROL:-all}" --metrics gpu__time_duration.sum --print-summary per-kernel \
    "${what[@]}" --preset "$PRESET" --device cuda --precision "$PREC" >"$raw" 2>&1
"${PY:-$PYTHON}" - "$raw" "${TOP:-25}" "${SAMPLE:-}" <<'PYEOF'
import re, sys
text = open(sys.argv[1]).read()
rows = []
for block in re.split(r"\n\s*\n", text):
    name = re.search(r"^\s*(\S.*?)\s+\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\).*?Invocations\s*(\d+)", block, re.S | re.M)
    dur = re.search(r"gpu__time_duration.sum\s+(\w+)\s+([\d.,]+)", block)
    if name and dur:
        us = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}.get(dur.group(1), 1.0)
        calls = int(name.group(2))
        rows.append((float(dur.group(2).replace(",", "")) * us * calls, calls, name.group(1)[:90]))
if not rows:
    sys.exit("ncu_kernels: no kernel summary in ncu's output:\n" + text[-2000:])
rows.sort(reverse=True)
total = sum(r[0] for r in rows)
launches = sum(r[1] for r in rows)
if sys.argv[3]:  # decoding: one draw (or, before GPU draws, one embedding launch) a step
    steps = (sum(r[1] for r in rows if r[2].startswith("sample_kernel"))
             or sum(r[1] for r in rows if r[2].startswith("embedding_forward")))
    per = f", {total / steps:.0f} us a step" if steps else ""
    print(f"{total:.0f} us of kernel time in {launches} launches over about {steps} decode steps{per}")
else:
    print(f"{total:.0f} us of kernel time in {launches} launches (one step, the first, so cuBLAS's setup is in it)")
for t, calls, kname in rows[: int(sys.argv[2])]:
    print(f"{t:9.0f} us {calls:5d}x {100 * t / total:5.1f}%  {kname}")
PYEOF
