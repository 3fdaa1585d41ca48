#!/usr/bin/env bash
# The compute-matched growth study (docs/GROWTH.md, issue "Make growth pay").
#
#   scripts/growth_study.sh [OUTDIR]            default out/growth_study_$SIZE[_recipes]
#
# Every arm trains on the same text with the same batches (one --seed per seed index for
# every arm: data order, eval batches) and ends its cosine schedule exactly when its
# cumulative training FLOPs (docs/MODEL.md 3a) reach its from-scratch arm's budget:
#   tf_scratch         tokenformer from scratch, SCRATCH_ITERS iterations (the budget)
#   tf_grow_best       tokenformer from 1/4 of the rows, grown x2 twice (recipe BEST_RECIPE)
#   tf_grow_official   the same growth with the official recipe (random init, re-warm)
#   tf_depth           tokenformer from half the layers, grown in depth once
#   pp_scratch         transformerpp from scratch
#   pp_ffn             transformerpp from 1/4 of the FFN width, grown x2 twice
#   pp_depth           transformerpp from half the layers, grown in depth once
#   tr_scratch         transformer from scratch
# Arms with grow's default recipe (official; depth and FFN width) are one `train
# --flops-budget C --grow "25%:kv*2,50%:kv*2"` each: the binary grows inside the run when
# g1 < g2 < ... of the budget C is spent and derives the run's length from every stage's
# FLOPs per token (docs/GROWTH.md). The other recipes (RECIPES=1) need grow flags, so they
# run in stages: an arm that grows at fractions g_k of its own schedule length E gets
# E = budget / (B T sum_k (g_{k+1} - g_k) f_k) iterations, f_k the FLOPs per token of
# stage k; it is stopped at each growth point with `train --stop-at` and resumed after
# `grow` (the cosine continues to E, or with a re-warm recipe restarts and still ends at E).
# At the end every arm gets `eval --full` (the whole val split), and summary.md has per
# arm: the final full-val loss (mean and spread over seeds), the fraction of the budget
# at which the arm's logged val loss first reached its scratch arm's final logged val loss
# (same eval batches; conservative, the grown curve's schedule ends later), and the loss
# just before and after each growth (train's eval batches of that iteration, or for arms
# grown in stages grow's own fixed batches).
# Plots via scripts/plot.sh.
#
# RECIPES=1 runs the recipe search instead: tf_scratch and the tokenformer grown with each
# recipe of RECIPE_LIST (same growth points, same batches).
#
# Env: SIZE small (CPU smoke test, about a minute) | tiny (the tiny preset's size: a CPU
#      recipe check) | real (about the shakespeare preset; for one GPU), RECIPES (0|1), SEEDS ("1337 1338 1339" real, "1337" small),
#      SCRATCH_ITERS (real 5000; the H200 study used 1500, small 120), DATA (real data/linux-docs.txt from
#      'make data CORPUS=linux-docs'; small data/input.txt), GROW_AT ("0.25 0.5"),
#      DEPTH_AT (0.5), DEPTH_PLACE (interleave|end), BEST_RECIPE (official, the study's winner),
#      RECIPE_LIST, KEY_SCALE (0.01), LR_MULT (3), DEVICE (auto), PRECISION (real bf16,
#      small fp32), THREADS, TF_BIN (./tokenformer), ARMS (a subset of the arm names),
#      JOBS (runs side by side on the device, default 1), SUMMARY_ONLY (1: summarize OUT).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SIZE=${SIZE:-small}
RECIPES=${RECIPES:-0}
BIN=${TF_BIN:-./tokenformer}
source scripts/find_python.sh
PY=$PYTHON
case $SIZE in
small)
    L=2 D=32 NH=4 A=16 F=64 T=32 B=8 EI=20 EV=4 LI=20 GB=4
    SCRATCH_ITERS=${SCRATCH_ITERS:-120}
    SEEDS=${SEEDS:-1337}
    DATA=${DATA:-data/input.txt}
    PRECISION=${PRECISION:-fp32}
    ;;
tiny) # the tiny preset's size: a CPU recipe check in minutes per arm
    L=4 D=128 NH=4 A=96 F=384 T=64 B=12 EI=50 EV=20 LI=50 GB=20
    SCRATCH_ITERS=${SCRATCH_ITERS:-1000}
    SEEDS=${SEEDS:-1337}
    DATA=${DATA:-data/input.txt}
    PRECISION=${PRECISION:-fp32}
    ;;
real)
    L=6 D=384 NH=6 A=288 F=1152 T=256 B=64 EI=250 EV=50 LI=50 GB=${GB:-2}
    SCRATCH_ITERS=${SCRATCH_ITERS:-5000}
    SEEDS=${SEEDS:-1337 1338 1339}
    DATA=${DATA:-data/linux-docs.txt}
    PRECISION=${PRECISION:-bf16}
    ;;
*) echo "growth_study: error: SIZE must be small, tiny or real, got '$SIZE'" >&2; exit 2 ;;
esac
SUFFIX=""
[[ $RECIPES == 1 ]] && SUFFIX=_recipes
OUT=${1:-out/growth_study_${SIZE}${SUFFIX}}
GROW_AT=${GROW_AT:-0.25 0.5}
DEPTH_AT=${DEPTH_AT:-0.5}
DEPTH_PLACE=${DEPTH_PLACE:-interleave}
BEST_RECIPE=${BEST_RECIPE:-official}
RECIPE_LIST=${RECIPE_LIST:-official zero_continue zero_rewarm random_continue keyscale tau_reset lrmult keyscale_lrmult}
KEY_SCALE=${KEY_SCALE:-0.01}
LR_MULT=${LR_MULT:-3}
DEVICE=${DEVICE:-auto}
THREADS=${THREADS:-$(nproc)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
V=256 # --tokenizer bytes for every arm: one vocabulary whatever the corpus
# FFN widths of the baselines: the arch defaults (docs/MODEL.md 3)
H_TR=$((4 * D))
H_PP=$((64 * ((8 * D + 191) / 192)))

[[ -x $BIN ]] || { echo "growth_study: error: $BIN not built (make)" >&2; exit 1; }
[[ -f $DATA ]] || {
    echo "growth_study: error: $DATA is missing (make data CORPUS=linux-docs, or DATA=FILE)" >&2; exit 1; }
mkdir -p "$OUT"

# ---------------------------------------------------------------- recipes
# Every recipe names its init and schedule explicitly, so that it keeps its
# meaning whatever the defaults of grow (--init random) and train --resume
# (re-warm after a grow) are.
recipe_grow_flags() {
    case $1 in
    official | random_continue) echo "--init random" ;;
    zero_continue | zero_rewarm | lrmult) echo "--init zero-key" ;;
    keyscale | keyscale_lrmult) echo "--init zero-key --key-init-scale $KEY_SCALE" ;;
    tau_reset) echo "--init zero-key --key-init-scale $KEY_SCALE --tau reset" ;;
    plain) ;; # depth and FFN-width growth, scratch runs: no recipe flags
    *) echo "growth_study: error: unknown recipe '$1'" >&2; exit 2 ;;
    esac
}
recipe_train_flags() { case $1 in lrmult | keyscale_lrmult) echo "--new-row-lr-mult $LR_MULT" ;; esac; }
recipe_rewarm() { case $1 in official | zero_rewarm) echo 1 ;; *) echo 0 ;; esac; }
for r in $BEST_RECIPE $RECIPE_LIST; do recipe_grow_flags "$r" >/dev/null; done

# ---------------------------------------------------------------- FLOPs plan
# plan ARCH "L:ROWS_ATTN:ROWS_FFN ..." "FRACS" -> "E i1 i2 ..." such that the stages'
# FLOPs sum to the budget of the arch's scratch run (stage k runs from i_k to i_{k+1}).
plan() {
    "$PY" - "$@" <<PYEOF
import functools, re, subprocess, sys
arch, stages, fracs = sys.argv[1], sys.argv[2].split(), [float(x) for x in sys.argv[3].split()]
d, V, T, B, iters = $D, $V, $T, $B, $SCRATCH_ITERS
full = {"tokenformer": "$L:$A:$F", "transformer": "$L:0:$H_TR", "transformerpp": "$L:0:$H_PP"}[arch]
@functools.lru_cache(maxsize=None)  # a stage is asked for up to three times
def flops_per_token(spec):  # the binary's own rule (docs/MODEL.md 3a), for L layers of a rows / f FFN
    L, a, f = map(int, spec.split(":"))
    cmd = ["$BIN", "info", "--preset", "tiny", "--arch", arch, "--n-layer", str(L), "--d-model",
           str(d), "--n-head", "$NH", "--block-size", str(T), "--vocab-size", str(V), "--n-ffn", str(f)]
    if a > 0:
        cmd += ["--n-attn", str(a)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"training FLOPs per token: (\S+)", out).group(1))
budget = iters * B * T * flops_per_token(full)
bounds = [0.0] + fracs + [1.0]
per_iter = sum((bounds[k + 1] - bounds[k]) * flops_per_token(s) for k, s in enumerate(stages)) * B * T
E = budget / per_iter
points = [round(g * E) for g in fracs]
# the last stage takes what the earlier ones left, rounded to whole iterations
used, prev = 0, 0
for k, s in enumerate(stages[:-1]):
    used += (points[k] - prev) * B * T * flops_per_token(s)
    prev = points[k]
last = (budget - used) / (B * T * flops_per_token(stages[-1]))
E = prev + round(last)
print(E, *points, "%.6e" % budget)
PYEOF
}

# ---------------------------------------------------------------- one arm, one seed
COMMON=(--tokenizer bytes --block-size "$T" --d-model "$D" --n-head "$NH" --dropout 0)
TRAIN_FLAGS=(--batch-size "$B" --eval-interval "$EI" --eval-iters "$EV" --log-interval "$LI"
             --device "$DEVICE" --precision "$PRECISION" --threads "$THREADS")
say() { echo "[$(date +%H:%M:%S)] $*"; }
die_log() { tail -3 "$1" >&2; echo "growth_study: error: $2 failed (log: $1)" >&2; exit 1; }

# run_arm NAME SEED ARCH "MODEL FLAGS" "STAGES" "FRACS" "GROW ARGS per point (;-separated)" RECIPE
run_arm() {
    local name=$1 seed=$2 arch=$3 model=$4 stages=$5 fracs=$6 grows=$7 recipe=$8
    local dir=$OUT/$name/seed$seed log
    rm -rf "$dir"
    mkdir -p "$dir"
    log=$dir/log.csv
    read -r -a p <<<"$(plan "$arch" "$stages" "$fracs")"
    local E=${p[0]} budget=${p[-1]} points=("${p[@]:1:${#p[@]}-2}")
    echo "$E ${points[*]:-} $budget" >"$dir/plan.txt"
    IFS=';' read -r -a gargs <<<"$grows"
    local rewarm grow_extra train_extra
    rewarm=$(recipe_rewarm "$recipe")
    grow_extra=$(recipe_grow_flags "$recipe")
    train_extra=$(recipe_train_flags "$recipe")
    local stop=()
    [[ ${#points[@]} -gt 0 ]] && stop=(--stop-at "${points[0]}")
    say "$name seed $seed: $arch, $E iterations${points[*]:+, grows at ${points[*]}}, budget $budget FLOPs"
    # shellcheck disable=SC2086
    "$BIN" train "$DATA" --arch "$arch" $model "${COMMON[@]}" "${TRAIN_FLAGS[@]}" --seed "$seed" \
        --max-iters "$E" "${stop[@]}" --out "$dir/s0" --log "$log" >"$dir/s0.log" 2>&1 || die_log "$dir/s0.log" "$name s0"
    local ck=$dir/s0/latest.safetensors k
    for ((k = 0; k < ${#points[@]}; k++)); do
        local i=${points[k]} flags=()
        # shellcheck disable=SC2086
        "$BIN" grow --ckpt "$ck" ${gargs[k]} $grow_extra --data "$DATA" --batches "$GB" --seed "$seed" \
            --threads "$THREADS" --out "$dir/g$k.safetensors" >"$dir/g$k.log" 2>&1 || die_log "$dir/g$k.log" "$name grow $k"
        sed -n "s/.*before \([0-9.]*\), after \([0-9.]*\).*/$i \1 \2/p" "$dir/g$k.log" >>"$dir/grow_losses.txt"
        if [[ $rewarm == 1 ]]; then flags+=(--new-stage --max-iters $((E - i))); else flags+=(--continue-schedule); fi
        [[ $((k + 1)) -lt ${#points[@]} ]] && flags+=(--stop-at "${points[k + 1]}")
        # shellcheck disable=SC2086
        "$BIN" train "$DATA" --resume "$dir/g$k.safetensors" "${flags[@]}" $train_extra --device "$DEVICE" \
            --precision "$PRECISION" --threads "$THREADS" --out "$dir/s$((k + 1))" --log "$log" \
            >"$dir/s$((k + 1)).log" 2>&1 || die_log "$dir/s$((k + 1)).log" "$name s$((k + 1))"
        ck=$dir/s$((k + 1))/latest.safetensors
    done
    "$BIN" eval --ckpt "$ck" "$DATA" --full --device "$DEVICE" --threads "$THREADS" >"$dir/eval.log" 2>&1 ||
        die_log "$dir/eval.log" "$name eval --full"
    sed -n 's/^full val loss \([0-9.]*\).*/\1/p' "$dir/eval.log" >"$dir/final.txt"
    "$BIN" info "$ck" | sed -n 's/.*trained on \([0-9]*\) tokens, \([0-9.e+]*\) FLOPs.*/\2/p' >"$dir/flops.txt"
    say "$name seed $seed: full val loss $(cat "$dir/final.txt"), $(cat "$dir/flops.txt") FLOPs (budget $budget)"
}

# run_inrun NAME SEED ARCH "MODEL FLAGS" FULL-STAGE "GROW SPEC": one train command that
# spends the scratch arm's FLOPs budget, growing inside the run (train --grow)
run_inrun() {
    local name=$1 seed=$2 arch=$3 model=$4 full=$5 spec=$6
    local dir=$OUT/$name/seed$seed budget grow=()
    rm -rf "$dir"
    mkdir -p "$dir"
    read -r -a p <<<"$(plan "$arch" "$full" "")"
    budget=${p[-1]}
    [[ -n $spec ]] && grow=(--grow "$spec")
    say "$name seed $seed: $arch, budget $budget FLOPs${spec:+, --grow $spec}"
    # shellcheck disable=SC2086
    "$BIN" train "$DATA" --arch "$arch" $model "${COMMON[@]}" "${TRAIN_FLAGS[@]}" --seed "$seed" \
        --flops-budget "$budget" "${grow[@]}" --out "$dir/s0" --log "$dir/log.csv" >"$dir/s0.log" 2>&1 ||
        die_log "$dir/s0.log" "$name"
    # plan.txt as the staged arms write it: E, the growth iterations, the budget
    sed -n 's/^grow .* at iteration \([0-9]*\): .*val loss before \([0-9.]*\), after \([0-9.]*\);.*/\1 \2 \3/p' \
        "$dir/s0.log" >"$dir/grow_losses.txt"
    local E points
    E=$(sed -n 's/^plan: \([0-9]*\) iterations for a budget.*/\1/p' "$dir/s0.log")
    points=$(sed -n 's/^plan: grow .* at iteration //p' "$dir/s0.log" | tr '\n' ' ')
    echo "$E $points$budget" >"$dir/plan.txt"
    local ck=$dir/s0/latest.safetensors
    "$BIN" eval --ckpt "$ck" "$DATA" --full --device "$DEVICE" --threads "$THREADS" >"$dir/eval.log" 2>&1 ||
        die_log "$dir/eval.log" "$name eval --full"
    sed -n 's/^full val loss \([0-9.]*\).*/\1/p' "$dir/eval.log" >"$dir/final.txt"
    "$BIN" info "$ck" | sed -n 's/.*trained on \([0-9]*\) tokens, \([0-9.e+]*\) FLOPs.*/\2/p' >"$dir/flops.txt"
    say "$name seed $seed: full val loss $(cat "$dir/final.txt"), $(cat "$dir/flops.txt") FLOPs (budget $budget)"
}

# "0.25 0.5" OP -> "25%:OP,50%:OP"
grow_spec() { awk -v op="$2" '{ for (i = 1; i <= NF; i++) printf "%s%g%%:%s", (i > 1 ? "," : ""), 100 * $i, op }' <<<"$1"; }

# ---------------------------------------------------------------- arms
q() { echo $(($1 / 4)); } # a quarter
TF_FULL="$L:$A:$F"
TF_STAGES="$L:$(q "$A"):$(q "$F") $L:$((A / 2)):$((F / 2)) $TF_FULL"
TF_GROWS="--kv +$(q "$A") --ffn-kv +$(q "$F");--kv +$((A / 2)) --ffn-kv +$((F / 2))"
HALF_L=$((L / 2 > 0 ? L / 2 : 1))
TFM="--n-layer $L --n-attn $A --n-ffn $F"

# kv*2 twice takes the quarter-size arms to the full rows, as TF_GROWS does in stages
TF_INRUN=$(grow_spec "$GROW_AT" "kv*2")
DEPTH_INRUN=$(grow_spec "$DEPTH_AT" "layers+$((L - HALF_L)):$DEPTH_PLACE")
PP_INRUN=$(grow_spec "$GROW_AT" "ffn*2")
TF_SMALL="--n-layer $L --n-attn $(q "$A") --n-ffn $(q "$F")"
tf_grown() { # tf_grown NAME SEED RECIPE: in the run with the default recipe, else in stages
    if [[ $3 == official ]]; then run_inrun "$1" "$2" tokenformer "$TF_SMALL" "$TF_FULL" "$TF_INRUN"
    else run_arm "$1" "$2" tokenformer "$TF_SMALL" "$TF_STAGES" "$GROW_AT" "$TF_GROWS" "$3"; fi
}

arm() { # arm NAME SEED: the arm's definition
    local s=$2
    case $1 in
    tf_scratch) run_inrun "$1" "$s" tokenformer "$TFM" "$TF_FULL" "" ;;
    tf_grow_best) tf_grown "$1" "$s" "$BEST_RECIPE" ;;
    tf_grow_*) tf_grown "$1" "$s" "${1#tf_grow_}" ;;
    tf_depth) run_inrun "$1" "$s" tokenformer "--n-layer $HALF_L --n-attn $A --n-ffn $F" "$TF_FULL" "$DEPTH_INRUN" ;;
    pp_scratch) run_inrun "$1" "$s" transformerpp "--n-layer $L --n-ffn $H_PP" "$L:0:$H_PP" "" ;;
    pp_ffn) run_inrun "$1" "$s" transformerpp "--n-layer $L --n-ffn $(q "$H_PP")" "$L:0:$H_PP" "$PP_INRUN" ;;
    pp_depth) run_inrun "$1" "$s" transformerpp "--n-layer $HALF_L --n-ffn $H_PP" "$L:0:$H_PP" "$DEPTH_INRUN" ;;
    tr_scratch) run_inrun "$1" "$s" transformer "--n-layer $L --n-ffn $H_TR" "$L:0:$H_TR" "" ;;
    *) echo "growth_study: error: unknown arm '$1'" >&2; exit 2 ;;
    esac
}
if [[ $RECIPES == 1 ]]; then
    DEFAULT_ARMS="tf_scratch$(for r in $RECIPE_LIST; do printf ' tf_grow_%s' "$r"; done)"
else
    DEFAULT_ARMS="tf_scratch tf_grow_best tf_grow_official tf_depth pp_scratch pp_ffn pp_depth tr_scratch"
fi
ARMS=${ARMS:-$DEFAULT_ARMS}
say "growth study: SIZE=$SIZE RECIPES=$RECIPES, $DATA, seeds $SEEDS, arms: $ARMS; output in $OUT"
say "tokenformer L=$L d=$D n_attn=$A n_ffn=$F; transformer h=$H_TR; transformerpp h=$H_PP; B=$B T=$T; scratch $SCRATCH_ITERS iterations"
# JOBS runs (arm, seed) pairs side by side on the one device (small models
# leave a GPU partly idle); any failing run fails the study.
JOBS=${JOBS:-1}
failed_runs=0
wait_one() { wait -n || failed_runs=$((failed_runs + 1)); }
# SUMMARY_ONLY=1: no runs, only the summary and plots of what OUT holds.
[[ ${SUMMARY_ONLY:-0} == 1 ]] && SEEDS_TO_RUN="" || SEEDS_TO_RUN=$SEEDS
for seed in $SEEDS_TO_RUN; do
    for a in $ARMS; do
        if [[ $JOBS -le 1 ]]; then
            arm "$a" "$seed"
            continue
        fi
        while [[ $(jobs -rp | wc -l) -ge $JOBS ]]; do wait_one; done
        arm "$a" "$seed" &
    done
done
while [[ $(jobs -rp | wc -l) -gt 0 ]]; do wait_one; done
[[ $failed_runs -eq 0 ]] || { echo "growth_study: error: $failed_runs run(s) failed (see the logs under $OUT)" >&2; exit 1; }

# ---------------------------------------------------------------- summary and plots
"$PY" - "$OUT" "$ARMS" "$SEEDS" <<'PYEOF' | tee "$OUT/summary.md"
import csv, statistics, sys
out, arms, seeds = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()

def scratch_of(arm):
    return {"tf": "tf_scratch", "pp": "pp_scratch", "tr": "tr_scratch"}[arm[:2]]

def curve(arm, seed):  # (flops, val_loss) of the eval rows, in order
    rows = []
    with open(f"{out}/{arm}/seed{seed}/log.csv") as f:
        for r in csv.DictReader(f):
            if r["event"] == "eval" and r["val_loss"]:
                rows.append((float(r["flops"]), float(r["val_loss"])))
    return rows

def read(path):
    with open(path) as f:
        return f.read().split()

def fmt(xs, nd=4):
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.{nd}f}"
    return f"{statistics.mean(xs):.{nd}f} ± {statistics.stdev(xs):.{nd}f}"

print("| arm | final full-val loss (mean ± std over seeds) | FLOPs (budget) | fraction of the budget to reach the scratch arm's final val loss | loss before → after each growth |")
print("|---|---|---|---|---|")
for arm in arms:
    finals, fracs, grows, flops, budget = [], [], [], [], None
    for s in seeds:
        d = f"{out}/{arm}/seed{s}"
        try:
            finals.append(float(read(f"{d}/final.txt")[0]))
            flops.append(float(read(f"{d}/flops.txt")[0]))
            budget = float(read(f"{d}/plan.txt")[-1])
        except (OSError, IndexError, ValueError):
            continue
        ref = scratch_of(arm)
        try:
            target = curve(ref, s)[-1][1]
            reached = [fl for fl, vl in curve(arm, s) if vl <= target]
            fracs.append(reached[0] / budget if reached else float("nan"))
        except (OSError, IndexError, KeyError):
            pass
        try:
            with open(f"{d}/grow_losses.txt") as f:
                grows.append([line.split() for line in f if line.strip()])
        except OSError:
            pass
    growth = ""
    if grows and grows[0]:
        parts = []
        for k, (it, _, _) in enumerate(grows[0]):
            b = [float(g[k][1]) for g in grows if len(g) > k]
            a = [float(g[k][2]) for g in grows if len(g) > k]
            parts.append(f"it {it}: {statistics.mean(b):.4f} → {statistics.mean(a):.4f}")
        growth = "; ".join(parts)
    reached = [x for x in fracs if x == x]
    frac = "–" if not fracs else (f"{statistics.mean(reached):.2f}" + ("" if len(reached) == len(fracs) else f" ({len(fracs) - len(reached)} of {len(fracs)} seeds never)") if reached else "never")
    fl = f"{statistics.mean(flops):.3e} ({budget:.3e})" if flops and budget else "–"
    print(f"| {arm} | {fmt(finals)} | {fl} | {frac} | {growth} |")
print()
print("Fractions are read off the logged val-loss curve (eval_iters random val batches, the same")
print("batches for every arm at a given iteration) against the scratch arm's last logged val loss;")
print("a grown arm's cosine ends only at the full budget, so reaching the target earlier in its")
print("schedule is a conservative estimate.")
PYEOF
if command -v gnuplot >/dev/null 2>&1; then
    first=${SEEDS%% *}
    logs=()
    for a in $ARMS; do
        [[ -f $OUT/$a/seed$first/log.csv ]] && { cp "$OUT/$a/seed$first/log.csv" "$OUT/$a.csv"; logs+=("$OUT/$a.csv"); }
    done
    scripts/plot.sh "${logs[@]}" -o "$OUT/plot" && say "plots: $OUT/plot-val-iter.png, $OUT/plot-val-flops.png"
else
    say "gnuplot not installed: no plots (apt-get install gnuplot-nox; then scripts/plot.sh $OUT/*/seed*/log.csv)"
fi
say "summary: $OUT/summary.md"
