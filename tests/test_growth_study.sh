#!/usr/bin/env bash
# scripts/growth_study.sh at its smallest (SIZE=small, 40 scratch iterations, one
# seed, four arms): every arm, grown in rows, in depth or in FFN width, ends with
# cumulative training FLOPs (as the checkpoint records them) within one scratch
# iteration of its scratch arm's budget: the study is compute-matched. And the
# summary has a row per arm. Prints PASS/FAIL/SKIP lines; exits non-zero on failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" growth_study
if [[ ! -f data/input.txt ]]; then
    skip growth_study "data/input.txt is missing (run 'make data')"
    exit 0
fi
ITERS=40
ARMS="tf_scratch tf_grow_official tf_depth pp_ffn"
OUT=$WORK/study
if ! SIZE=small SCRATCH_ITERS=$ITERS SEEDS=1337 THREADS=2 DEVICE=cpu ARMS="$ARMS" TF_BIN="$BIN" \
    scripts/growth_study.sh "$OUT" >"$WORK/study.log" 2>&1; then
    tail -5 "$WORK/study.log"
    fail growth_study_runs "growth_study.sh failed"
    exit 1
fi
pass growth_study_runs
for arm in $ARMS; do
    dir=$OUT/$arm/seed1337
    read -r -a plan <"$dir/plan.txt" # E, growth points, budget
    budget=${plan[-1]}
    flops=$(cat "$dir/flops.txt")
    verdict=$(awk -v f="$flops" -v b="$budget" -v n="$ITERS" \
        'BEGIN { d = f - b; if (d < 0) d = -d; print (f > 0 && d <= b / n) ? "ok" : "off" }')
    if [[ $verdict == ok ]]; then
        pass "compute_matched_$arm ($flops FLOPs, budget $budget, ${plan[0]} iterations)"
    else
        fail "compute_matched_$arm" "$flops FLOPs against a budget of $budget (more than one scratch iteration apart)"
    fi
    if grep -q "^| $arm " "$OUT/summary.md"; then
        pass "summary_row_$arm"
    else
        fail "summary_row_$arm" "no row in summary.md"
    fi
done
exit $((failures > 0))
