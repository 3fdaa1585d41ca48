#!/usr/bin/env bash
# train's schedules (schedule.h): --lr-schedule wsd (the lr column of --log, and a
# resume that keeps it), --lr-schedule cosine writes what the default writes,
# --flops-budget / --tokens-budget end at the budget within one iteration,
# --eval-every-flops evaluates on the FLOPs grid with the same batches, and
# --grow inside one run equals the --stop-at / grow / --resume sequence
# byte for byte on the CPU (tokenformer rows; a baseline's FFN width; depth, by
# zero-out, copy-zero-out and stack; d_model doubled);
# bad --grow input is one line on stderr before anything is written.
# Prints PASS/FAIL/SKIP lines; exits non-zero on failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" train_grow
TEXT=$WORK/text.txt
sample_text 120000 1500 >"$TEXT"
MODEL=(--n-layer 2 --d-model 32 --n-head 4 --n-attn 16 --n-ffn 64 --block-size 32)
RUN=(--device cpu --threads 1 --batch-size 8 --eval-interval 10 --eval-iters 2 --warmup-iters 5 --seed 7)
train() { "$BIN" train "$TEXT" "${RUN[@]}" "$@"; }
# csv_col FILE EVENT COLUMN: that column of the rows of one event, one per line
csv_col() { awk -F, -v e="$2" -v c="$3" 'NR > 1 && $9 == e { print $c }' "$1"; }

# ---------------------------------------------------------------- lr schedules
train "${MODEL[@]}" --max-iters 30 --out "$WORK/default.safetensors" >/dev/null 2>&1
train "${MODEL[@]}" --max-iters 30 --lr-schedule cosine --out "$WORK/cosine.safetensors" >/dev/null 2>&1
if cmp -s "$WORK/default.safetensors" "$WORK/cosine.safetensors"; then pass cosine_is_default
else fail cosine_is_default "--lr-schedule cosine wrote another checkpoint than the default"; fi

# warmup 5 of 40 iterations, decay over the last 10: rows are iteration + 1
train "${MODEL[@]}" --max-iters 40 --lr-schedule wsd --decay-frac 0.25 --log-interval 1 \
    --out "$WORK/wsd" --log "$WORK/wsd.csv" >/dev/null 2>&1
verdict=$(csv_col "$WORK/wsd.csv" progress 4 | awk '
    { lr[NR] = $1 }
    END {
        if (NR != 40) { print "rows " NR; exit }
        for (i = 2; i <= 6; i++) if (!(lr[i] > lr[i - 1])) { print "warmup not rising at " i; exit }
        for (i = 6; i <= 31; i++) if (lr[i] != 0.001) { print "not stable at " i ": " lr[i]; exit }
        for (i = 32; i <= 40; i++) {
            want = 0.0001 + 0.0009 * (41 - i) / 10
            if ((lr[i] - want)^2 > 1e-14) { print "decay at " i ": " lr[i] " want " want; exit }
        }
        print "ok"
    }')
if [[ $verdict == ok ]]; then pass wsd_shape; else fail wsd_shape "$verdict"; fi

# the schedule is in the checkpoint: a resume continues the same lr
train "${MODEL[@]}" --max-iters 40 --lr-schedule wsd --decay-frac 0.25 --log-interval 1 --stop-at 20 \
    --out "$WORK/wsd_a" --log "$WORK/wsd_resumed.csv" >/dev/null 2>&1
"$BIN" train "$TEXT" --resume "$WORK/wsd_a/latest.safetensors" --device cpu --threads 1 \
    --out "$WORK/wsd_b" --log "$WORK/wsd_resumed.csv" >/dev/null 2>&1
resumed_lr=$(csv_col "$WORK/wsd_resumed.csv" progress 4)
# (an empty column on both sides, e.g. two failed runs, must not pass)
if [[ -n $resumed_lr && $resumed_lr == "$(csv_col "$WORK/wsd.csv" progress 4)" ]]; then
    pass wsd_resume
else
    fail wsd_resume "the resumed run's lr column differs from the whole run's"
fi

# ---------------------------------------------------------------- budgets
# within one iteration of the last stage (the FLOPs of the last progress step)
check_budget() { # NAME CSV COLUMN BUDGET
    local got per
    got=$(csv_col "$2" eval "$3" | tail -1)
    per=$(csv_col "$2" progress "$3" | tail -2 | awk 'NR == 1 { a = $1 } NR == 2 { print $1 - a }')
    if awk -v g="$got" -v b="$4" -v p="$per" 'BEGIN { d = g - b; if (d < 0) d = -d; exit !(p > 0 && d <= p) }'; then
        pass "$1 ($got of $4, one iteration $per)"
    else
        fail "$1" "ended at $got, budget $4, one iteration $per"
    fi
}
train "${MODEL[@]}" --flops-budget 2e9 --grow "25%:kv*2,50%:kv*2" --log-interval 1 --out "$WORK/fb" \
    --log "$WORK/fb.csv" >"$WORK/fb.log" 2>&1
check_budget flops_budget_grown "$WORK/fb.csv" 3 2e9
train --arch transformerpp --n-layer 1 --d-model 32 --n-head 4 --n-ffn 32 --block-size 32 --flops-budget 1e9 \
    --grow "30%:ffn*2,60%:layers+1" --log-interval 1 --out "$WORK/fbpp" --log "$WORK/fbpp.csv" >/dev/null 2>&1
check_budget flops_budget_transformerpp "$WORK/fbpp.csv" 3 1e9
train "${MODEL[@]}" --tokens-budget 5000 --log-interval 1 --out "$WORK/tb" --log "$WORK/tb.csv" >/dev/null 2>&1
check_budget tokens_budget "$WORK/tb.csv" 2 5000
if [[ $(csv_col "$WORK/fb.csv" grow 1 | tr '\n' ' ') == "$(sed -n 's/^plan: grow .* at iteration //p' "$WORK/fb.log" | tr '\n' ' ')" &&
    $(csv_col "$WORK/fb.csv" grow 1 | wc -l) == 2 ]]; then
    pass grow_events_logged
else
    fail grow_events_logged "the CSV's grow rows do not match the plan lines"
fi
if [[ $("$BIN" info "$WORK/fb/latest.safetensors" | grep -c "init random, layers all") == 4 ]]; then
    pass growth_history
else
    fail growth_history "expected 4 events (kv and ffn, twice) in the growth history"
fi

# ---------------------------------------------------------------- FLOPs grid
# lr 1e-9 keeps the weights: the same batches give the same losses every time
train "${MODEL[@]}" --max-iters 20 --lr 1e-9 --eval-every-flops 2e8 --log-interval 1 --out "$WORK/grid" \
    --log "$WORK/grid.csv" >/dev/null 2>&1
verdict=$(awk -F, 'NR > 1 && $9 == "eval" { n++; f[n] = $3; v[n] = $6 }
    NR > 1 && $9 == "progress" { step = $3 - last; last = $3 }
    END {
        if (n < 5) { print "only " n " evaluations"; exit }
        for (i = 2; i < n; i++) {
            k = int(f[i] / 2e8)
            if (k <= int(f[i - 1] / 2e8) || f[i] - k * 2e8 >= step) { print "evaluation " i " at " f[i] " is off the grid"; exit }
            if (v[i] != v[1]) { print "val loss " v[i] " != " v[1] ": other batches"; exit }
        }
        print "ok"
    }' "$WORK/grid.csv")
if [[ $verdict == ok ]]; then pass eval_every_flops; else fail eval_every_flops "$verdict"; fi

# ---------------------------------------------------------------- in-run growth = stop / grow / resume
same_as_stages() { # NAME "TRAIN FLAGS" "GROW FLAGS" GROW_SPEC
    local name=$1 d=$WORK/$1
    mkdir -p "$d"
    # shellcheck disable=SC2086
    train $2 --max-iters 30 --stop-at 12 --out "$d/s0" >/dev/null 2>&1 &&
        "$BIN" grow --threads 1 --ckpt "$d/s0/latest.safetensors" $3 --seed 7 --out "$d/g.safetensors" >/dev/null &&
        "$BIN" train "$TEXT" --resume "$d/g.safetensors" --device cpu --threads 1 --out "$d/s1" >/dev/null 2>&1 &&
        train $2 --max-iters 30 --grow "$4" --out "$d/inrun" >/dev/null 2>&1 || {
        fail "$name" "a run failed"
        return
    }
    if cmp -s "$d/s1/latest.safetensors" "$d/inrun/latest.safetensors"; then pass "$name"
    else fail "$name" "the in-run grown checkpoint differs from the stop/grow/resume one"; fi
}
same_as_stages inrun_kv "${MODEL[*]}" "--kv +16 --ffn-kv +64" "12:kv*2"
same_as_stages inrun_attn_kv "${MODEL[*]}" "--kv +4 --ffn-kv 0" "40%:attn-kv+4"
same_as_stages inrun_ffn_pp "--arch transformerpp --n-layer 1 --d-model 32 --n-head 4 --n-ffn 32 --block-size 32" \
    "--ffn-kv +32" "12:ffn*2"
same_as_stages inrun_layers_tr "--arch transformer --n-layer 2 --d-model 32 --n-head 4 --n-ffn 32 --block-size 32" \
    "--add-layers 1 --at interleave" "12:layers+1:interleave"
same_as_stages inrun_layers_stack "${MODEL[*]}" "--add-layers 2 --at stack" "12:layers*2:stack"
same_as_stages inrun_layers_copy_zero_out "${MODEL[*]}" "--add-layers 1 --init copy-zero-out --at interleave" \
    "12:layers+1:interleave:copy-zero-out"
same_as_stages inrun_d_model "${MODEL[*]}" "--d-model 2x" "12:d*2"
# under wsd the growth points keep the schedule (no re-warm), in-run and resumed alike:
# the lr column after the growth is the lr of the same run without one
same_as_stages inrun_kv_wsd "${MODEL[*]} --lr-schedule wsd" "--kv +16 --ffn-kv +64" "12:kv*2"
train "${MODEL[@]}" --max-iters 30 --lr-schedule wsd --log-interval 1 --out "$WORK/wsd_plain" \
    --log "$WORK/wsd_plain.csv" >/dev/null 2>&1
train "${MODEL[@]}" --max-iters 30 --lr-schedule wsd --log-interval 1 --grow "12:kv*2" --out "$WORK/wsd_grown" \
    --log "$WORK/wsd_grown.csv" >"$WORK/wsd_grown.log" 2>&1
if [[ -n $(csv_col "$WORK/wsd_grown.csv" progress 4) &&
    $(csv_col "$WORK/wsd_grown.csv" progress 4) == "$(csv_col "$WORK/wsd_plain.csv" progress 4)" ]] &&
    grep -q "the wsd schedule continues" "$WORK/wsd_grown.log"; then
    pass wsd_growth_keeps_schedule
else
    fail wsd_growth_keeps_schedule "the grown wsd run's lr column differs from the plain run's (or no message)"
fi
same_as_stages inrun_d_model_pp "--arch transformerpp --n-layer 1 --d-model 32 --n-head 4 --n-ffn 32 --block-size 32" \
    "--d-model 2x" "40%:d*2"

# an interrupted --grow run resumes with the points it had not reached
d=$WORK/interrupted
mkdir -p "$d"
train "${MODEL[@]}" --max-iters 30 --grow "8:kv*2,20:attn-kv+4" --out "$d/whole" >/dev/null 2>&1
train "${MODEL[@]}" --max-iters 30 --grow "8:kv*2,20:attn-kv+4" --stop-at 14 --out "$d/a" >/dev/null 2>&1
"$BIN" train "$TEXT" --resume "$d/a/latest.safetensors" --device cpu --threads 1 --out "$d/b" >"$d/b.log" 2>&1
if grep -q "^plan: grow 20:attn-kv+4 at iteration 20" "$d/b.log" &&
    cmp -s "$d/whole/latest.safetensors" "$d/b/latest.safetensors"; then
    pass grow_plan_resumed
else
    fail grow_plan_resumed "the resumed run did not finish the growth plan as the whole run did"
fi

# ---------------------------------------------------------------- bad input
bad() { # NAME EXPECTED-TEXT ARGS...
    local name=$1 want=$2
    shift 2
    rm -rf "$WORK/bad"
    if train "$@" --out "$WORK/bad" >/dev/null 2>"$WORK/bad.err"; then fail "bad_$name" "accepted"; return; fi
    if [[ $(wc -l <"$WORK/bad.err") == 1 ]] && grep -q -- "$want" "$WORK/bad.err" && [[ ! -e $WORK/bad ]]; then
        pass "bad_$name"
    else
        fail "bad_$name" "expected one line with '$want' and no output, got: $(head -3 "$WORK/bad.err")"
    fi
}
bad out_of_order "increasing order" "${MODEL[@]}" --max-iters 20 --grow "50%:kv*2,25%:kv*2"
bad past_the_end "past the end" "${MODEL[@]}" --max-iters 20 --grow "30:kv*2"
bad past_the_budget "past the end" "${MODEL[@]}" --flops-budget 1e9 --grow "1000:kv*2"
bad percent_100 "must be in (0%, 100%)" "${MODEL[@]}" --max-iters 20 --grow "100%:kv*2"
bad factor_1 "must be > 1" "${MODEL[@]}" --max-iters 20 --grow "25%:kv*1"
bad factor_half "must be > 1" "${MODEL[@]}" --max-iters 20 --grow "25%:ffn-kv*0.5"
bad kv_on_baseline "no parameter tokens" --arch transformer "${MODEL[@]}" --max-iters 20 --grow "25%:kv*2"
bad ffn_on_tokenformer "ffn-kv" "${MODEL[@]}" --max-iters 20 --grow "25%:ffn*2"
bad stack_not_multiple "multiple of" "${MODEL[@]}" --max-iters 20 --grow "25%:layers+1:stack"
bad d_model_too_wide "cannot double" --d-model 40000 --n-head 4 --n-layer 1 --n-attn 4 --n-ffn 4 --block-size 8 \
    --max-iters 20 --grow "25%:d*2"
bad unknown_op "unknown operation" "${MODEL[@]}" --max-iters 20 --grow "25%:heads*2"
bad syntax "expected AT:OP" "${MODEL[@]}" --max-iters 20 --grow "25%kv*2"
bad budget_and_iters "drop --max-iters" "${MODEL[@]}" --max-iters 20 --flops-budget 1e9
bad two_budgets "give one budget" "${MODEL[@]}" --tokens-budget 1e5 --flops-budget 1e9
bad decay_frac_cosine "wsd" "${MODEL[@]}" --max-iters 20 --decay-frac 0.1
exit $((failures > 0))
