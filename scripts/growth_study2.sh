#!/usr/bin/env bash
# Growth study II (issue 27): does growth beat the best model trainable from
# scratch, at several budgets, and as reuse of a trained model?
#
#   scripts/growth_study2.sh [OUTDIR]        default out/growth_study2_$SCALE
#
# A run is (arm, lr, budget, seed). Every run spends exactly its budget of training
# FLOPs (docs/MODEL.md 3a): its length E and growth iterations are planned from each
# stage's FLOPs per token (`tokenformer info`), it is stopped at each growth point
# (`train --stop-at`), grown with `grow`, and resumed either re-warmed (`--new-stage`,
# the official recipe) or continuing its schedule (`--continue-schedule`, the
# "_norewarm" arms); one path for every arm (rather than `train --grow`), so that the
# arms with and without re-warm and the control differ only there. Every run
# evaluates on the same FLOPs grid (--eval-every-flops
# budget/EVALS, fixed batches) so curves interpolate at equal FLOPs, and ends with
# `eval --full` (the whole val split).
#
# Arms (final size: L layers, d_model D, n_attn A, n_ffn F; transformerpp FFN H):
#   scratch frontier   tf_full tf_half_rows tf_quarter_rows tf_half_depth
#                      pp_full pp_half_ffn pp_half_depth
#   schedule control   tf_restarts pp_restarts: full size, lr re-warmed at GROW_AT
#   noise floor        tf_full_rerun pp_full_rerun (any scratch arm + _rerun): the same
#                      run again, same seed (on a GPU, reductions are not deterministic)
#   WSD schedule       any arm + _wsd (tf_full_wsd, tf_rows_norewarm_wsd, ...): the same
#                      under --lr-schedule wsd (warmup, constant lr, linear decay to
#                      lr/10 over the last 20% of the stage) instead of cosine; a scratch
#                      arm so trained joins the frontier wherever it ends lower; a grown
#                      arm without re-warm grows in the constant phase and decays over
#                      the last 20% of the run; with re-warm, each growth starts a stage
#                      (warmup again) that runs to the end and decays over its last 20%
#   growth             tf_rows      1/4 rows, x2 at each GROW_AT (grow --kv, official init)
#                      tf_rows_zerokey  the same with --init zero-key (the function kept)
#                      tf_depth     L/2 layers, + L/2 zero-output blocks at DEPTH_AT
#                      pp_ffn       1/4 FFN width, x2 at each GROW_AT
#                      pp_stack     L/2 layers, G_stack (--at stack, copies) at DEPTH_AT
#                      pp_llamapro  L/2 layers, LLaMA Pro (copy-zero-out, interleaved)
#                      pp_dmodel    d_model D/2 (heads and FFN halved), --d-model 2x
#                      each also as NAME_norewarm (the schedule continues at growth)
#   reuse              reuse_grow reuse_cont reuse_scratch: REUSE_FROM (a scratch arm),
#                      trained at budget C (its cost sunk), grown by REUSE_GROW and
#                      trained dC = f x C more (f in REUSE_FRACS); against the small
#                      model trained on for dC (reuse_cont) and the full size from
#                      scratch at dC (reuse_scratch). The analysis reports both
#                      accountings: the stage only (dC) and cumulative (C + dC).
#                      With _wsd (reuse_grow_wsd, ...) they start from REUSE_FROM's
#                      _wsd arm, and the stage after it (reuse_scratch: its run) is WSD.
# Frontier sizes and growth arms are trained at every lr of LRS; the control and
# reuse arms at LRS's first value.
#
# Output: OUTDIR/ARM/lrLR/bBUDGET/seedS/{log.csv,result.csv} (small, to commit; wall_s
# runs from the first train to the end of eval --full), written when the run ends: while
# it trains, its log.csv grows under CKPT_DIR with its checkpoints and stdout logs, so
# that nothing under OUTDIR (a git checkout, say) changes under a running run. A run
# with a result.csv is skipped, so the study can be spread over several device calls
# (ARMS, BUDGETS subsets).
# At the end scripts/growth_analysis.py writes OUTDIR/analysis.md, OUTDIR/analysis.csv
# and, with gnuplot, OUTDIR/plot-final.png and OUTDIR/plot-curves.png.
#
# Env: SCALE micro (the test: seconds) | pilot (CPU, d 64) | d192 | real (d 384, the
#      shakespeare preset's size; GPU), or the sizes alone: N_LAYER D_MODEL N_HEAD N_ATTN
#      N_FFN N_FFN_PP BLOCK BATCH WARMUP EVAL_ITERS; BUDGETS (FLOPs, >= 3 spanning >= 10x
#      for the study), SEEDS, LRS, ARMS, EVALS (evaluations per run, default 10),
#      GROW_AT ("0.25 0.5"), DEPTH_AT (0.5), REUSE_FROM (tf_half_rows), REUSE_GROW
#      (grow flags, default the rest of the rows), REUSE_FRACS ("0.25 0.5 1"),
#      REUSE_BUDGETS (default BUDGETS), DATA, DEVICE (auto), PRECISION, THREADS,
#      JOBS (runs side by side, default 1; 4 on a GPU), CKPT_DIR, TF_BIN, SUMMARY_ONLY.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SCALE=${SCALE:-pilot}
BIN=${TF_BIN:-./tokenformer}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3
die() { echo "growth_study2: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- sizes
# s_L s_D s_NH s_A s_F s_T s_B s_WU s_EV; budgets; seeds; lrs; data; precision
set_scale() {
    case $1 in
    micro) set -- 2 16 2 16 32 16 4 5 2 "3e7 1e8 3e8" "1" "1e-3" data/input.txt fp32 ;;
    pilot) set -- 2 64 4 64 256 64 8 20 4 "1e11 3.2e11 1e12" "1337 1338" "2e-3" data/input.txt fp32 ;;
    d192) set -- 6 192 6 144 576 256 64 100 20 "1.5e14 5e14 1.5e15" "1337 1338 1339" "1e-3 2e-3" data/linux-docs.txt bf16 ;;
    real) set -- 6 384 6 288 1152 256 64 100 20 "5e14 1.754e15 5.26e15" "1337 1338 1339" "1e-3 2e-3" data/linux-docs.txt bf16 ;;
    *) die "SCALE must be micro, pilot, d192 or real, got '$1'" ;;
    esac
    L=${N_LAYER:-$1} D=${D_MODEL:-$2} NH=${N_HEAD:-$3} A=${N_ATTN:-$4} F=${N_FFN:-$5}
    T=${BLOCK:-$6} B=${BATCH:-$7} WU=${WARMUP:-$8} EV=${EVAL_ITERS:-$9}
    BUDGETS=${BUDGETS:-${10}} SEEDS=${SEEDS:-${11}} LRS=${LRS:-${12}}
    DATA=${DATA:-${13}} PRECISION=${PRECISION:-${14}}
}
set_scale "$SCALE"
OUT=${1:-out/growth_study2_$SCALE}
CKPT_DIR=${CKPT_DIR:-${TMPDIR:-/tmp}/growth_study2_ckpt/$(basename "$OUT")}
H=${N_FFN_PP:-$((64 * ((8 * D + 191) / 192)))} # transformerpp's default FFN width
HL=$((L / 2 > 0 ? L / 2 : 1))
GROW_AT=${GROW_AT:-0.25 0.5}
DEPTH_AT=${DEPTH_AT:-0.5}
EVALS=${EVALS:-10}
REUSE_FROM=${REUSE_FROM:-tf_half_rows}
REUSE_GROW=${REUSE_GROW:---kv +$((A / 2)) --ffn-kv +$((F / 2))}
REUSE_FRACS=${REUSE_FRACS:-0.25 0.5 1}
REUSE_BUDGETS=${REUSE_BUDGETS:-$BUDGETS}
DEVICE=${DEVICE:-auto}
THREADS=${THREADS:-$(nproc)}
JOBS=${JOBS:-1}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
LR0=${LRS%% *}

[[ -x $BIN ]] || die "$BIN not built (make)"
[[ -f $DATA ]] || die "$DATA is missing (make data CORPUS=linux-docs, or DATA=FILE)"
((D % 2 == 0 && NH % 2 == 0 && A % 4 == 0 && F % 4 == 0 && H % 4 == 0 && L % 2 == 0)) ||
    die "the arms halve and quarter sizes: need even N_LAYER, D_MODEL, N_HEAD and N_ATTN, N_FFN, N_FFN_PP divisible by 4"

# ---------------------------------------------------------------- arms
tfm() { echo "--arch tokenformer --n-layer $1 --d-model $D --n-head $NH --n-attn $2 --n-ffn $3"; }
ppm() { echo "--arch transformerpp --n-layer $1 --d-model ${3:-$D} --n-head ${4:-$NH} --n-ffn $2"; }
each_at() { local _ out=""; for _ in $1; do out+="${out:+;}$2"; done; echo "$out"; }

# arm_def NAME: sets KIND (scratch|control|grown), STAGES (model flags per stage,
# '|'-separated), FRACS (growth points, fractions of the run), GROWS (grow flags per
# point, ';'-separated; empty: no grow, only the lr restart) and REWARM (1|0).
arm_def() {
    local base=${1%_norewarm}
    REWARM=1
    [[ $base != "$1" ]] && REWARM=0
    if [[ $1 == *_rerun ]]; then # the noise floor: a scratch arm run again, same seed
        arm_def "${1%_rerun}"
        [[ $KIND == scratch ]] || die "unknown arm '$1' (only scratch arms have a _rerun)"
        KIND=rerun
        return
    fi
    if [[ $1 == *_wsd ]]; then # any arm under the WSD schedule
        arm_def "${1%_wsd}"
        SCHEDULE=(--lr-schedule wsd)
        return
    fi
    KIND=grown FRACS="" GROWS="" SCHEDULE=()
    case $base in
    tf_full) KIND=scratch STAGES=$(tfm "$L" "$A" "$F") ;;
    tf_half_rows) KIND=scratch STAGES=$(tfm "$L" $((A / 2)) $((F / 2))) ;;
    tf_quarter_rows) KIND=scratch STAGES=$(tfm "$L" $((A / 4)) $((F / 4))) ;;
    tf_half_depth) KIND=scratch STAGES=$(tfm "$HL" "$A" "$F") ;;
    pp_full) KIND=scratch STAGES=$(ppm "$L" "$H") ;;
    pp_half_ffn) KIND=scratch STAGES=$(ppm "$L" $((H / 2))) ;;
    pp_half_depth) KIND=scratch STAGES=$(ppm "$HL" "$H") ;;
    tf_restarts | pp_restarts)
        local m
        if [[ $base == tf_* ]]; then m=$(tfm "$L" "$A" "$F"); else m=$(ppm "$L" "$H"); fi
        KIND=control STAGES="$m$(for _ in $GROW_AT; do printf '|%s' "$m"; done)" FRACS=$GROW_AT
        GROWS=$(each_at "$GROW_AT" "") ;;
    tf_rows | tf_rows_zerokey)
        local init=random
        [[ $base == tf_rows_zerokey ]] && init=zero-key
        STAGES="$(tfm "$L" $((A / 4)) $((F / 4)))|$(tfm "$L" $((A / 2)) $((F / 2)))|$(tfm "$L" "$A" "$F")"
        FRACS=$GROW_AT GROWS="--kv +$((A / 4)) --ffn-kv +$((F / 4)) --init $init;--kv +$((A / 2)) --ffn-kv +$((F / 2)) --init $init" ;;
    tf_depth)
        STAGES="$(tfm "$HL" "$A" "$F")|$(tfm "$L" "$A" "$F")" FRACS=$DEPTH_AT
        GROWS="--add-layers $((L - HL)) --init zero-out --at interleave" ;;
    pp_ffn)
        STAGES="$(ppm "$L" $((H / 4)))|$(ppm "$L" $((H / 2)))|$(ppm "$L" "$H")"
        FRACS=$GROW_AT GROWS="--ffn-kv +$((H / 4));--ffn-kv +$((H / 2))" ;;
    pp_stack)
        STAGES="$(ppm "$HL" "$H")|$(ppm "$L" "$H")" FRACS=$DEPTH_AT GROWS="--add-layers $((L - HL)) --init copy --at stack" ;;
    pp_llamapro)
        STAGES="$(ppm "$HL" "$H")|$(ppm "$L" "$H")" FRACS=$DEPTH_AT
        GROWS="--add-layers $((L - HL)) --init copy-zero-out --at interleave" ;;
    pp_dmodel)
        STAGES="$(ppm "$L" $((H / 2)) $((D / 2)) $((NH / 2)))|$(ppm "$L" "$H")" FRACS=$DEPTH_AT GROWS="--d-model 2x" ;;
    *) die "unknown arm '$1'" ;;
    esac
    if [[ $KIND == scratch && $REWARM == 0 ]]; then die "unknown arm '$1' (scratch arms have no _norewarm)"; fi
}

# ---------------------------------------------------------------- FLOPs plan
# plan BUDGET "FRACS" "STAGES" -> "E i1 i2 ... F1 F2 ...": E iterations whose stages
# (stage k from i_k to i_{k+1}) spend BUDGET, and each stage's FLOPs per token.
plan() {
    "$PY" - "$BIN" "$B" "$T" "$@" <<'PYEOF'
import re, subprocess, sys
binary, B, T, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fracs = [float(x) for x in sys.argv[5].split()]
stages = sys.argv[6].split("|")
def flops_per_token(flags):  # the binary's own count (docs/MODEL.md 3a)
    cmd = [binary, "info", "--preset", "tiny", "--vocab-size", "256", "--block-size", str(T)] + flags.split()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"training FLOPs per token: (\S+)", out).group(1))
fpt = [flops_per_token(s) for s in stages]
bounds = [0.0] + fracs + [1.0]
E = budget / (B * T * sum((bounds[k + 1] - bounds[k]) * f for k, f in enumerate(fpt)))
points = [round(g * E) for g in fracs]
used, prev = 0.0, 0
for k, p in enumerate(points):  # the last stage takes what the earlier ones left
    used += (p - prev) * B * T * fpt[k]
    prev = p
E = prev + max(1, round((budget - used) / (B * T * fpt[-1])))
print(E, *points, *("%.6e" % f for f in fpt))
PYEOF
}

# ---------------------------------------------------------------- one run
COMMON=(--tokenizer bytes --block-size "$T" --dropout 0 --batch-size "$B" --warmup-iters "$WU"
        --eval-iters "$EV" --log-interval 1000000)
DEV=(--device "$DEVICE" --threads "$THREADS")
say() { echo "[$(date +%H:%M:%S)] $*"; }
now() { date +%s.%N; }
fail_run() { tail -3 "$1" >&2; echo "growth_study2: error: $2 failed (log: $1)" >&2; return 1; }

# finish_run DIR CK ARM ARCH KIND LR BUDGET SEED STAGE_FLOPS BASE_BUDGET FRAC T0: eval
# --full of the final checkpoint and the run's one-row result.csv (written last:
# its presence marks the run done).
finish_run() {
    local dir=$1 ck=$2 sd=$CKPT_DIR/${1#"$OUT"/} loss cum wall
    "$BIN" eval --ckpt "$ck" "$DATA" --full "${DEV[@]}" >"$sd/eval.log" 2>&1 || fail_run "$sd/eval.log" "$3 eval --full" || return 1
    loss=$(sed -n 's/^full val loss \([0-9.]*\).*/\1/p' "$sd/eval.log")
    cum=$("$BIN" info "$ck" | sed -n 's/.*trained on [0-9]* tokens, \([0-9.e+]*\) FLOPs.*/\1/p')
    wall=$(awk -v a="${11}" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    local stage=$9
    [[ $stage == cum ]] && stage=$cum
    mkdir -p "$dir"
    cp "$sd/log.csv" "$dir/log.csv.tmp" && mv "$dir/log.csv.tmp" "$dir/log.csv" || return 1
    printf 'arm,arch,kind,lr,budget,seed,stage_flops,cum_flops,final_loss,wall_s,base_budget,frac\n%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' \
        "$3" "$4" "$5" "$6" "$7" "$8" "$stage" "$cum" "$loss" "$wall" "${10}" "${12}" >"$dir/result.csv.tmp"
    mv "$dir/result.csv.tmp" "$dir/result.csv"
    say "$3 lr $6 budget $7 seed $8: full val loss $loss, $cum FLOPs, ${wall}s"
}

run_dir() { echo "$OUT/$1/lr$2/b$3/seed$4"; }

# run_arm ARM LR BUDGET SEED: train in stages, growing at the planned iterations
run_arm() {
    local arm=$1 lr=$2 budget=$3 seed=$4 dir sd t0 k
    dir=$(run_dir "$@")
    [[ -f $dir/result.csv ]] && return 0
    sd=$CKPT_DIR/${dir#"$OUT"/}
    rm -rf "$dir" "$sd"
    mkdir -p "$sd"
    arm_def "$arm"
    local stages grows plan_out
    IFS='|' read -r -a stages <<<"$STAGES"
    IFS=';' read -r -a grows <<<"$GROWS"
    plan_out=$(plan "$budget" "$FRACS" "$STAGES") || die "planning $arm failed"
    read -r -a p <<<"$plan_out"
    local E=${p[0]} points=("${p[@]:1:${#stages[@]}-1}")
    local arch
    arch=$(awk '{ print $2 }' <<<"${stages[0]}")
    local grid
    grid=$(awk -v c="$budget" -v n="$EVALS" 'BEGIN { printf "%.6e", c / n }')
    local flags=(--max-iters "$E")
    [[ ${#points[@]} -gt 0 ]] && flags+=(--stop-at "${points[0]}")
    say "$arm lr $lr budget $budget seed $seed: $E iterations${points[*]:+, grows at ${points[*]}}"
    t0=$(now)
    # shellcheck disable=SC2086
    "$BIN" train "$DATA" ${stages[0]} "${COMMON[@]}" "${DEV[@]}" --precision "$PRECISION" --lr "$lr" \
        --seed "$seed" --eval-every-flops "$grid" "${flags[@]}" "${SCHEDULE[@]}" --out "$sd/s0" --log "$sd/log.csv" \
        >"$sd/s0.log" 2>&1 || fail_run "$sd/s0.log" "$arm s0" || return 1
    local ck=$sd/s0/latest.safetensors
    for ((k = 0; k < ${#points[@]}; k++)); do
        if [[ -n ${grows[k]:-} ]]; then
            # shellcheck disable=SC2086
            "$BIN" grow --ckpt "$ck" ${grows[k]} --data "$DATA" --batches 2 --seed "$seed" --threads "$THREADS" \
                --out "$sd/g$k.safetensors" >"$sd/g$k.log" 2>&1 || fail_run "$sd/g$k.log" "$arm grow $k" || return 1
            ck=$sd/g$k.safetensors
        fi
        flags=()
        if [[ $REWARM == 1 ]]; then flags+=(--new-stage --max-iters $((E - points[k]))); else flags+=(--continue-schedule); fi
        [[ $((k + 1)) -lt ${#points[@]} ]] && flags+=(--stop-at "${points[k + 1]}")
        "$BIN" train "$DATA" --resume "$ck" "${flags[@]}" "${DEV[@]}" --precision "$PRECISION" \
            --eval-every-flops "$grid" --out "$sd/s$((k + 1))" --log "$sd/log.csv" \
            >"$sd/s$((k + 1)).log" 2>&1 || fail_run "$sd/s$((k + 1)).log" "$arm s$((k + 1))" || return 1
        ck=$sd/s$((k + 1))/latest.safetensors
    done
    finish_run "$dir" "$ck" "$arm" "$arch" "$KIND" "$lr" "$budget" "$seed" cum "$budget" "$t0" ""
}

# The arm a reuse arm starts from: REUSE_FROM, or its _wsd arm for a _wsd reuse arm.
reuse_from() { if [[ $1 == *_wsd ]]; then echo "${REUSE_FROM%_wsd}_wsd"; else echo "$REUSE_FROM"; fi; }

# run_reuse ARM LR C SEED FRAC: from REUSE_FROM's final checkpoint at budget C (its
# cost sunk), train FRAC x C more: grown (reuse_grow), as it is (reuse_cont), or the
# full size from scratch at FRAC x C (reuse_scratch).
run_reuse() {
    local arm=$1 lr=$2 c=$3 seed=$4 f=$5 dc dir sd t0 kind=${1%_wsd} sched=()
    [[ $kind != "$arm" ]] && sched=(--lr-schedule wsd)
    dc=$(awk -v c="$c" -v f="$f" 'BEGIN { printf "%.6e", c * f }')
    dir=$(run_dir "$arm" "$lr" "${c}_x$f" "$seed")
    [[ -f $dir/result.csv ]] && return 0
    sd=$CKPT_DIR/${dir#"$OUT"/}
    rm -rf "$dir" "$sd"
    mkdir -p "$sd"
    local grid
    grid=$(awk -v c="$dc" -v n="$EVALS" 'BEGIN { printf "%.6e", c / n }')
    if [[ $kind == reuse_scratch ]]; then
        arm_def "${REUSE_FROM%%_*}_full"
        local E
        E=$(plan "$dc" "" "$STAGES" | awk '{ print $1 }')
        t0=$(now)
        # shellcheck disable=SC2086
        "$BIN" train "$DATA" $STAGES "${COMMON[@]}" "${sched[@]}" "${DEV[@]}" --precision "$PRECISION" --lr "$lr" \
            --seed "$seed" --eval-every-flops "$grid" --max-iters "$E" --out "$sd/s0" --log "$sd/log.csv" >"$sd/s0.log" 2>&1 ||
            fail_run "$sd/s0.log" "$arm" || return 1
        finish_run "$dir" "$sd/s0/latest.safetensors" "$arm" "$(awk '{ print $2 }' <<<"$STAGES")" reuse_scratch \
            "$lr" "$dc" "$seed" cum "$c" "$t0" "$f"
        return
    fi
    local base
    base=$CKPT_DIR/$(reuse_from "$arm")/lr$lr/b$c/seed$seed/s0/latest.safetensors
    [[ -f $base ]] || { echo "growth_study2: error: $arm needs $base (run the arm $(reuse_from "$arm") at budget $c first)" >&2; return 1; }
    local ck=$base before fpt
    before=$("$BIN" info "$base" | sed -n 's/.*trained on [0-9]* tokens, \([0-9.e+]*\) FLOPs.*/\1/p')
    t0=$(now)
    if [[ $kind == reuse_grow ]]; then
        # shellcheck disable=SC2086
        "$BIN" grow --ckpt "$base" $REUSE_GROW --data "$DATA" --batches 2 --seed "$seed" --threads "$THREADS" \
            --out "$sd/g.safetensors" >"$sd/g.log" 2>&1 || fail_run "$sd/g.log" "$arm grow" || return 1
        ck=$sd/g.safetensors
    fi
    fpt=$("$BIN" info "$ck" | sed -n 's/^training FLOPs per token: \(.*\)/\1/p')
    local n
    n=$(awk -v dc="$dc" -v f="$fpt" -v bt=$((B * T)) 'BEGIN { n = int(dc / (f * bt) + 0.5); print (n < 1 ? 1 : n) }')
    "$BIN" train "$DATA" --resume "$ck" --new-stage --max-iters "$n" "${sched[@]}" "${DEV[@]}" --precision "$PRECISION" \
        --eval-every-flops "$grid" --out "$sd/s1" --log "$sd/log.csv" >"$sd/s1.log" 2>&1 ||
        fail_run "$sd/s1.log" "$arm" || return 1
    local after
    after=$("$BIN" info "$sd/s1/latest.safetensors" | sed -n 's/.*trained on [0-9]* tokens, \([0-9.e+]*\) FLOPs.*/\1/p')
    finish_run "$dir" "$sd/s1/latest.safetensors" "$arm" "$(awk '{ print $2 }' <<<"$STAGES")" "$kind" "$lr" "$dc" \
        "$seed" "$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.6e", a - b }')" "$c" "$t0" "$f"
}

# ---------------------------------------------------------------- the study
DEFAULT_ARMS="tf_full tf_half_rows tf_quarter_rows tf_half_depth pp_full pp_half_ffn pp_half_depth
 tf_full_rerun pp_full_rerun tf_restarts pp_restarts tf_rows tf_rows_norewarm tf_depth tf_depth_norewarm pp_ffn pp_ffn_norewarm
 pp_stack pp_stack_norewarm pp_llamapro pp_llamapro_norewarm pp_dmodel pp_dmodel_norewarm
 reuse_grow reuse_cont reuse_scratch"
ARMS=$(echo ${ARMS:-$DEFAULT_ARMS})
for a in $ARMS; do [[ $a == reuse_* ]] || arm_def "$a"; done
arm_def "$REUSE_FROM"
mkdir -p "$OUT" "$CKPT_DIR"
say "growth study II: SCALE=$SCALE, $DATA, $PRECISION on $DEVICE; budgets $BUDGETS; seeds $SEEDS; lrs $LRS"
say "final size L=$L d=$D heads=$NH n_attn=$A n_ffn=$F (transformerpp FFN $H), B=$B T=$T; logs in $OUT, checkpoints in $CKPT_DIR"

failed=0
wait_one() { wait -n || failed=$((failed + 1)); }
launch() { # launch CMD...: at most JOBS at a time
    if [[ $JOBS -le 1 ]]; then "$@" || failed=$((failed + 1)); return; fi
    while [[ $(jobs -rp | wc -l) -ge $JOBS ]]; do wait_one; done
    "$@" &
}
drain() { while [[ $(jobs -rp | wc -l) -gt 0 ]]; do wait_one; done; }
lrs_of() { case $1 in *_restarts | *_rerun) echo "$LR0" ;; *) echo "$LRS" ;; esac; }
largest_first() { tr ' ' '\n' <<<"$1" | sort -g -r | tr '\n' ' '; }

if [[ ${SUMMARY_ONLY:-0} != 1 ]]; then
    for budget in $(largest_first "$BUDGETS"); do # large runs first: the side-by-side slots stay full
        for seed in $SEEDS; do
            for a in $ARMS; do
                [[ $a == reuse_* ]] && continue
                for lr in $(lrs_of "$a"); do launch run_arm "$a" "$lr" "$budget" "$seed"; done
            done
        done
    done
    drain
    # reuse runs start from REUSE_FROM's checkpoints of the first phase
    for c in $REUSE_BUDGETS; do
        for seed in $SEEDS; do
            for a in $ARMS; do
                [[ $a == reuse_* ]] || continue
                if [[ $a != reuse_scratch* && " $ARMS " != *" $(reuse_from "$a") "* ]]; then
                    die "$a needs the arm $(reuse_from "$a") in ARMS (REUSE_FROM=$REUSE_FROM)"
                fi
                for f in $REUSE_FRACS; do launch run_reuse "$a" "$LR0" "$c" "$seed" "$f"; done
            done
        done
    done
    drain
    [[ $failed -eq 0 ]] || die "$failed run(s) failed (logs under $CKPT_DIR)"
fi
"$PY" scripts/growth_analysis.py "$OUT" --csv "$OUT/analysis.csv" --plot "$OUT/plot" | tee "$OUT/analysis.md"
say "analysis: $OUT/analysis.md"
