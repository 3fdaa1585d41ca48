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
if scripts/adapt_study.sh --base-iters 20 --adapt-iters 2 --budgets 2 --seeds 1337 --threads 1 --eval-iters 2 \
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
# shared bases, seeds side by side, an lr per arm; run again, nothing is added
study2=(--base-iters 20 --adapt-iters 2 --budgets 2 --seeds "1337 1338" --threads 1 --eval-iters 2
    --base-args "--n-layer 2 --d-model 32 --n-head 2 --block-size 32" --a-text "$WORK/a.txt"
    --b-text "$WORK/b.txt" --b-bytes 20000 --base-seed 7 --jobs 2 --arm-lrs "lora=1e-2 full=3e-3"
    --out "$WORK/study2")
if scripts/adapt_study.sh "${study2[@]}" >"$WORK/study2.log" 2>&1 &&
    [[ $(tail -n +2 "$WORK/study2/results.csv" | wc -l) == 12 ]]; then
    pass adapt_study_shared_bases_in_parallel
else
    fail adapt_study_shared_bases_in_parallel "$(tail -1 "$WORK/study2.log"); rows: $(wc -l <"$WORK/study2/results.csv")"
fi
lr_of() { sed -n 's/^train: lr \([0-9.e-]*\) .*/\1/p' "$WORK/study2/s1338_$1_2.log" 2>/dev/null | head -1; }
[[ -d $WORK/study2/base_transformerpp && ! -d $WORK/study2/s1337_base_transformerpp &&
    $(lr_of lora) == 0.01 && $(lr_of adapter) == 0.001 ]] &&
    pass adapt_study_arm_lr_and_one_base ||
    fail adapt_study_arm_lr_and_one_base "lr lora '$(lr_of lora)' adapter '$(lr_of adapter)'; $(ls "$WORK/study2" | grep base | tr '\n' ' ')"
before=$(md5sum <"$WORK/study2/results.csv")
scripts/adapt_study.sh "${study2[@]}" >"$WORK/study3.log" 2>&1
[[ $(md5sum <"$WORK/study2/results.csv") == "$before" ]] && pass adapt_study_resumes_without_rerunning ||
    fail adapt_study_resumes_without_rerunning "results changed on the second run"
# a study cut short (rows missing, grown checkpoints already written) completes
# them on the next run: grow's outputs are reused, not refused
head -n -3 "$WORK/study2/results.csv" >"$WORK/cut.csv" && cp "$WORK/cut.csv" "$WORK/study2/results.csv"
if scripts/adapt_study.sh "${study2[@]}" >"$WORK/study4.log" 2>&1 &&
    [[ $(tail -n +2 "$WORK/study2/results.csv" | wc -l) == 12 ]]; then
    pass adapt_study_completes_a_cut_study
else
    fail adapt_study_completes_a_cut_study "$(tail -1 "$WORK/study4.log"); rows: $(wc -l <"$WORK/study2/results.csv")"
fi
# the tables of docs/ADAPTATION.md: a row per arm, the adapters paired against LoRA
# over the two seeds (a mean and an interval)
if scripts/adapt_analysis.py "$WORK/study2/results.csv" >"$WORK/tables.md" 2>&1 &&
    grep -q '^| adapter | .* | 2 | .* | [+-][0-9.]* | [+-][0-9.]* \[[+-][0-9.]*, [+-][0-9.]*\] | [0-9]* |$' "$WORK/tables.md" &&
    [[ $(grep -c "^| " "$WORK/tables.md") == 8 ]]; then # a header and 2, a header and 4 arms
    pass adapt_analysis_tables
else
    fail adapt_analysis_tables "$(head -c 300 "$WORK/tables.md")"
fi
# the B curves of every arm from their --log CSVs, the evaluation before adapting first
scripts/adapt_analysis.py --curves "$WORK/study2" >"$WORK/curves.csv" 2>&1
arms=$(awk -F, 'NR > 1 { print $2 }' "$WORK/curves.csv" | sort -u | tr '\n' ' ')
first=$(awk -F, '$2 == "lora" { print $6; exit }' "$WORK/curves.csv")
before=$(awk -F, 'NR > 1 && $2 == "lora" { print $6; exit }' "$WORK/study2/results.csv")
if [[ $arms == "adapter full last1 lora native native_nf " ]] && awk -v a="$first" -v b="$before" 'BEGIN { exit !(a > b - 0.3 && a < b + 0.3) }'; then
    pass "adapt_analysis_curves ($arms; lora starts at $first, B before $before)"
else
    fail adapt_analysis_curves "arms '$arms', lora's first B loss '$first' against B before '$before'"
fi
exit $((failures > 0))
