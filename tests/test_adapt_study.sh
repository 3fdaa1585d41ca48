#!/usr/bin/env bash
# scripts/adapt_study.sh end to end at a toy scale: every arm writes its row
# with finite losses (the study resumes and evaluates checkpoints on another
# text than theirs, which the binary refuses unless told: a change there broke
# it once without a test noticing).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_adapt_study

if [[ $SLOW == 1 ]]; then # a minute of evaluations at full speed: the sanitizer build adds nothing here
    skip adapt_study "not under the sanitizer build"
    exit 0
fi
if [[ ! -s data/input.txt ]]; then
    skip adapt_study "no data/input.txt (make data)"
    exit 0
fi
sample_text 20000 300 >"$WORK/a.txt" # corpus A: a slice (every arm evaluates all of A)
tr 'a-z' 'b-za' <"$WORK/a.txt" >"$WORK/b.txt" # corpus B: other text
if scripts/adapt_study.sh --base-iters 4 --adapt-iters 2 --budgets 2 --seeds 1337 --threads 1 --eval-iters 2 \
    --base-args "--n-layer 2 --d-model 32 --n-head 2 --block-size 32" \
    --a-text "$WORK/a.txt" --b-text "$WORK/b.txt" --b-bytes 20000 --out "$WORK/study" >"$WORK/study.log" 2>&1; then
    pass adapt_study_runs
else
    fail adapt_study_runs "$(tail -1 "$WORK/study.log")"
fi
res=$WORK/study/results.csv
for arm in full last1 lora adapter native native_nf; do
    row=$(awk -F, -v a="$arm" '$2 == a' "$res" 2>/dev/null)
    # val_B_before .. val_A_after: four finite positive losses
    if [[ -n $row ]] && awk -F, '{for (i = 6; i <= 9; i++) if (!($i > 0 && $i < 100)) exit 1}' <<<"$row"; then
        pass "adapt_study_row_$arm"
    else
        fail "adapt_study_row_$arm" "row: '$row'"
    fi
done
# the last-block arm trains part of the model, the full one all of it
last1=$(awk -F, '$2 == "last1" { print $4 "," $5 }' "$res" 2>/dev/null)
full=$(awk -F, '$2 == "full" { print $4 "," $5 }' "$res" 2>/dev/null)
if [[ -n $last1 && ${full%,*} == "${full#*,}" ]] && ((${last1%,*} > 0 && ${last1%,*} < ${last1#*,})); then
    pass "adapt_study_last1_trainable ($last1 of the base)"
else
    fail adapt_study_last1_trainable "last1 '$last1', full '$full' (trainable,total)"
fi
exit $((failures > 0))
