#!/usr/bin/env bash
# scripts/growth_analysis.py on synthetic results with a known answer, then
# scripts/growth_study2.sh at its smallest end to end.
# Synthetic: a scratch frontier on a power law L(C) = 10 C^-0.1 at three budgets and
# three seeds (paired noise), an arm whose loss at C is the frontier's at 2C (exactly
# twice as compute-efficient: multiplier 2, growth pays) and an arm equal to the
# frontier on average (multiplier ~1, its interval and its gap's contain 1 and 0).
# Micro study: 1 budget, 1 seed, tf_full, tf_half_rows, tf_rows and the reuse arms:
# every run spends its budget (within 5%), reuse's stage spends f x C, and the
# analysis has a row per arm. Prints PASS/FAIL/SKIP lines; non-zero exit on failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" growth_analysis
PY=/usr/bin/python3
[[ -x $PY ]] || PY=python3

# ---------------------------------------------------------------- synthetic
"$PY" - "$WORK/syn" <<'PYEOF'
import os, sys
out = sys.argv[1]
def loss(c):
    return 10.0 * c ** -0.1
noise = {"1": -0.002, "2": 0.0, "3": 0.002}
rows = []
for b in (1e9, 1e10, 1e11):
    for s, e in noise.items():
        rows.append(("tf_full", "scratch", b, s, loss(b) * (1 + e)))
        rows.append(("tf_small", "scratch", b, s, loss(b) * 1.05 * (1 + e)))  # never the frontier
        rows.append(("tf_twice", "grown", b, s, loss(2 * b) * (1 + e)))
        rows.append(("tf_same", "grown", b, s, loss(b) * (1 - e)))
for arm, kind, b, s, l in rows:
    d = os.path.join(out, arm, "lr1e-3", f"b{b:g}", f"seed{s}")
    os.makedirs(d)
    with open(os.path.join(d, "result.csv"), "w") as f:
        f.write("arm,arch,kind,lr,budget,seed,stage_flops,cum_flops,final_loss,wall_s,base_budget,frac\n")
        f.write(f"{arm},tokenformer,{kind},1e-3,{b:g},{s},{b:g},{b:g},{l:.9f},1.0,{b:g},\n")
PYEOF
if "$PY" scripts/growth_analysis.py "$WORK/syn" --csv "$WORK/syn.csv" --lead "$WORK/lead.md" --boot 500 \
    >"$WORK/syn.md" 2>&1; then
    pass synthetic_runs
else
    tail -3 "$WORK/syn.md"
    fail synthetic_runs "growth_analysis.py failed"
fi
# field ARM BUDGET COLUMN: one cell of the --csv table
field() {
    awk -F, -v arm="$1" -v b="$2" -v col="$3" '
        NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        $2 == arm && $5 + 0 == b + 0 { print $c[col] }' "$WORK/syn.csv"
}
within() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x != "" && x + 0 >= lo && x + 0 <= hi) }'; }
for b in 1e9 1e10 1e11; do
    m=$(field tf_twice $b multiplier) lo=$(field tf_twice $b mult_lo) hi=$(field tf_twice $b mult_hi)
    if within "$m" 1.99 2.01 && within "$lo" 1.9 2.1 && within "$hi" 1.9 2.1; then
        pass "twice_efficient_multiplier_2_at_$b ($m [$lo, $hi])"
    else
        fail "twice_efficient_multiplier_2_at_$b" "multiplier $m [$lo, $hi], expected 2"
    fi
    m=$(field tf_same $b multiplier) lo=$(field tf_same $b mult_lo) hi=$(field tf_same $b mult_hi)
    g=$(field tf_same $b gap) glo=$(field tf_same $b gap_lo) ghi=$(field tf_same $b gap_hi)
    if within "$m" 0.98 1.02 && within 1 "$lo" "$hi" && within 0 "$glo" "$ghi" && within "$lo" 0.5 1 && within "$hi" 1 2; then
        pass "equal_arm_multiplier_1_at_$b ($m [$lo, $hi], gap $g [$glo, $ghi])"
    else
        fail "equal_arm_multiplier_1_at_$b" "multiplier $m [$lo, $hi], gap $g [$glo, $ghi]: expected ~1 and intervals holding 1 and 0"
    fi
done
v_twice=$(field tf_twice 1e10 verdict) v_same=$(field tf_same 1e10 verdict) v_full=$(field tf_full 1e10 verdict)
if [[ $v_twice == pays && $v_same == not_shown && $v_full == frontier ]]; then
    pass "verdicts (tf_twice $v_twice, tf_same $v_same, tf_full $v_full)"
else
    fail verdicts "tf_twice '$v_twice' (expected pays), tf_same '$v_same' (not_shown), tf_full '$v_full' (frontier)"
fi

# --lead: a table per budget, each arm once (its best lr), the twice-efficient arm first
# among the grown with its verdict
tables=$(grep -c '^Budget ' "$WORK/lead.md" 2>/dev/null)
twice=$(grep -c '| tf_twice (1e-3) | grown |.*| 2\.00\*\{0,1\} \[.*| pays |$' "$WORK/lead.md" 2>/dev/null)
if [[ $tables == 3 && $twice == 3 ]]; then
    pass "lead_tables_per_budget"
else
    fail lead_tables_per_budget "$tables tables (3), $twice tf_twice rows reading 2.00 and pays (3)"
fi

# --paired: '*' in A carries over to B; the twice-efficient arm below the frontier at
# every budget, the never-frontier arm above it at none
"$PY" scripts/growth_analysis.py "$WORK/syn" --paired '*_twice' '*_full' >"$WORK/paired.md" 2>&1
"$PY" scripts/growth_analysis.py "$WORK/syn" --paired tf_small tf_full >>"$WORK/paired.md" 2>&1
if [[ $(grep -c '^| tf_twice | tf_full | grown | 1e-3 | .* | 3 | -0\.' "$WORK/paired.md") == 3 ]] &&
    grep -q '^grown: A below B in 3 of 3$' "$WORK/paired.md" && grep -q '^scratch: A below B in 0 of 3$' "$WORK/paired.md"; then
    pass paired_differences
else
    fail paired_differences "$(tr '\n' ' ' <"$WORK/paired.md" | head -c 300)"
fi

# ---------------------------------------------------------------- micro study
if [[ ! -f data/input.txt ]]; then
    skip micro_study "data/input.txt is missing (run 'make data')"
    exit $((failures > 0))
fi
OUT=$WORK/study
ARMS="tf_full tf_half_rows tf_full_wsd tf_half_rows_wsd tf_rows tf_rows_norewarm_wsd tf_rows_zerokey_norewarm_wsd
      reuse_grow reuse_cont reuse_grow_wsd reuse_scratch_wsd"
if SCALE=micro BUDGETS=1e8 SEEDS=1 REUSE_FRACS=0.5 DEVICE=cpu THREADS=1 ARMS="$ARMS" CKPT_DIR="$WORK/ckpt" \
    TF_BIN="$BIN" scripts/growth_study2.sh "$OUT" >"$WORK/study.log" 2>&1; then
    pass micro_study_runs
else
    tail -5 "$WORK/study.log"
    fail micro_study_runs "growth_study2.sh failed"
    exit 1
fi
# result CSV COLUMN: one cell of a run's result.csv
result() {
    awk -F, -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next } { print $c[col] }' "$1"
}
for arm in tf_full tf_half_rows tf_full_wsd tf_rows; do
    r=$OUT/$arm/lr1e-3/b1e8/seed1/result.csv
    flops=$(result "$r" cum_flops)
    if within "$flops" 0.95e8 1.05e8; then pass "compute_matched_$arm ($flops FLOPs)"; else
        fail "compute_matched_$arm" "$flops FLOPs against a budget of 1e8"; fi
done
if grep -q '^schedule: wsd' "$WORK/ckpt/tf_full_wsd/lr1e-3/b1e8/seed1/s0.log" &&
    ! grep -q '^schedule: wsd' "$WORK/ckpt/tf_full/lr1e-3/b1e8/seed1/s0.log"; then
    pass "tf_full_wsd_trains_under_wsd"
else
    fail tf_full_wsd_trains_under_wsd "its train log does not name the wsd schedule (or tf_full's does)"
fi
# reuse under wsd: from tf_half_rows_wsd's checkpoint, its stage under wsd too; the
# scratch reference, a new run that only the arm's schedule flag makes wsd, as well
if grep -q '^schedule: wsd' "$WORK/ckpt/reuse_grow_wsd/lr1e-3/b1e8_x0.5/seed1/s1.log" &&
    ! grep -q '^schedule: wsd' "$WORK/ckpt/reuse_grow/lr1e-3/b1e8_x0.5/seed1/s1.log" &&
    grep -q '^schedule: wsd' "$WORK/ckpt/reuse_scratch_wsd/lr1e-3/b1e8_x0.5/seed1/s0.log" &&
    [[ $(result "$OUT/reuse_grow_wsd/lr1e-3/b1e8_x0.5/seed1/result.csv" kind) == reuse_grow ]] &&
    [[ $(result "$OUT/reuse_scratch_wsd/lr1e-3/b1e8_x0.5/seed1/result.csv" kind) == reuse_scratch ]]; then
    pass "reuse_wsd_stages_under_wsd"
else
    fail reuse_wsd_stages_under_wsd "a stage log of reuse_grow_wsd / reuse_scratch_wsd does not name wsd, reuse_grow's does, or a kind is wrong"
fi
# a grown arm under wsd: every stage after a grow keeps the schedule
logs=("$WORK"/ckpt/tf_rows_norewarm_wsd/lr1e-3/b1e8/seed1/s[0-9].log)
if [[ ${#logs[@]} == 3 && $(grep -l '^schedule: wsd' "${logs[@]}" | wc -l) == 3 ]]; then
    pass "tf_rows_norewarm_wsd_every_stage_wsd"
else
    fail tf_rows_norewarm_wsd_every_stage_wsd "${#logs[@]} stage logs, $(grep -l '^schedule: wsd' "${logs[@]}" 2>/dev/null | wc -l) naming wsd"
fi
# zero-key rows: both grows keep the function (grow's loss change exactly 0); the
# official rows change it
zk=$WORK/ckpt/tf_rows_zerokey_norewarm_wsd/lr1e-3/b1e8/seed1
if [[ $(cat "$zk"/g[01].log | grep -c 'new rows: zero keys.*\|(change +0.00e+00)') == 4 ]] &&
    ! grep -q '(change +0.00e+00)' "$WORK/ckpt/tf_rows/lr1e-3/b1e8/seed1/g0.log"; then
    pass "tf_rows_zerokey_keeps_the_function"
else
    fail tf_rows_zerokey_keeps_the_function "$(grep -h 'new rows\|change' "$zk"/g[01].log | tr '\n' ' ')"
fi
# a run's log grows beside its checkpoints and reaches the run folder (a git checkout,
# say) when the run ends, so that nothing there changes under a running run
if [[ -s $WORK/ckpt/tf_rows/lr1e-3/b1e8/seed1/log.csv ]] &&
    cmp -s "$WORK/ckpt/tf_rows/lr1e-3/b1e8/seed1/log.csv" "$OUT/tf_rows/lr1e-3/b1e8/seed1/log.csv"; then
    pass "run_log_copied_at_the_end"
else
    fail run_log_copied_at_the_end "no log.csv beside tf_rows's checkpoints, or it differs from the run folder's"
fi
grows=$(grep -c ',grow,' "$OUT/tf_rows/lr1e-3/b1e8/seed1/log.csv")
if [[ $grows == 2 ]]; then pass "tf_rows_grew_twice"; else fail tf_rows_grew_twice "$grows grow rows in its log"; fi
for arm in reuse_grow reuse_cont reuse_grow_wsd; do
    from=tf_half_rows
    [[ $arm == *_wsd ]] && from=tf_half_rows_wsd
    base=$(result "$OUT/$from/lr1e-3/b1e8/seed1/result.csv" cum_flops)
    r=$OUT/$arm/lr1e-3/b1e8_x0.5/seed1/result.csv
    stage=$(result "$r" stage_flops) cum=$(result "$r" cum_flops)
    if within "$stage" 0.45e8 0.55e8 && within "$(awk -v a="$cum" -v b="$base" 'BEGIN { print a - b }')" 0.45e8 0.55e8; then
        pass "reuse_stage_$arm (stage $stage, cumulative $cum FLOPs)"
    else
        fail "reuse_stage_$arm" "stage $stage, cumulative $cum FLOPs, base $base: expected a stage of 0.5e8 on top of the base"
    fi
done
for arm in $ARMS; do
    if grep -q "^| .*$arm | " "$OUT/analysis.md"; then pass "analysis_row_$arm"; else
        fail "analysis_row_$arm" "no row in analysis.md"; fi
done
exit $((failures > 0))
