#!/usr/bin/env bash
# Exact resume without signals: a 60-iteration run and a 40-iteration run
# resumed to 60 log the same evaluations (iteration, train and val loss in
# their --log CSVs; CPU, one thread). Also: `sample` prints exactly --max-new-tokens
# characters (code points) after the prompt, all from the training text,
# reproducibly; `info` prints the config and the training state.
#
# Environment: TF_BIN (binary under test, default ./tokenformer).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" resume

# Text with multi-byte characters, so that characters and bytes differ.
TEXT=$WORK/text.txt
{
    sample_text 20000 300
    for i in $(seq 40); do echo "Café — naïve façade, «déjà vu» ½ € 日本語 $i"; done
} >"$TEXT"
CFG=(--n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 16 --block-size 16 --batch-size 4
     --eval-interval 20 --eval-iters 2 --dropout 0.1 --threads 1 --device cpu)
# The default warmup (100 iterations) spans all 60: the learning rate does
# not depend on --max-iters, so the two runs follow the same schedule.

run() { # run NAME ARGS...: train, keep stdout in $WORK/NAME.log and the --log CSV in $WORK/NAME.csv
    local name=$1
    shift
    if ! timeout 300 "$BIN" train "$TEXT" "$@" --log "$WORK/$name.csv" >"$WORK/$name.log" 2>"$WORK/$name.err"; then
        fail "$name" "train failed (status $?): $(tail -2 "$WORK/$name.err" | tr '\n' ' ')"
        return 1
    fi
}
# the evaluations of run NAME: "iter train_loss val_loss" lines; one iteration's
evals() { log_rows "$WORK/$1.csv" eval iter train_loss val_loss; }
eval_at() { evals "$1" | awk -v n="$2" '$1 == n'; }

run run_a "${CFG[@]}" --max-iters 60 --out "$WORK/a"
run run_b "${CFG[@]}" --max-iters 40 --out "$WORK/b" &&
    run run_b_resumed --resume "$WORK/b/latest.safetensors" --max-iters 60 --out "$WORK/b" --threads 1 --device cpu
if [[ -s $WORK/run_a.csv && -s $WORK/run_b_resumed.csv ]]; then
    ok=1 detail=""
    for n in 40 60; do
        a=$(eval_at run_a $n)
        b=$(eval_at run_b_resumed $n)
        if [[ -z $a || $a != "$b" ]]; then
            ok=0
            detail+="step $n: uninterrupted '$a' vs resumed '$b'; "
        fi
    done
    for n in 0 20 40; do
        a=$(eval_at run_a $n)
        b=$(eval_at run_b $n)
        [[ -n $a && $a == "$b" ]] || { ok=0; detail+="step $n: 60-iteration run '$a' vs 40-iteration run '$b'; "; }
    done
    if [[ $ok -eq 1 ]]; then
        pass "resume_exact (iterations 40 and 60; at 60 iter, train and val loss: $(eval_at run_a 60))"
    else
        fail resume_exact "$detail"
    fi
    if grep -q 'resumed from .* at iteration 40' "$WORK/run_b_resumed.log"; then
        pass resume_reports_iteration
    else
        fail resume_reports_iteration "no 'resumed from ... at iteration 40' line: $(head -3 "$WORK/run_b_resumed.log" | tr '\n' '|')"
    fi
    # The resumed run trains only iterations 40..59: no evaluation before 40.
    first=$(evals run_b_resumed | head -1 | cut -d' ' -f1)
    [[ $first == 40 ]] && pass resume_starts_at_checkpoint \
        || fail resume_starts_at_checkpoint "first evaluation of the resumed run is at iteration '$first'"
fi

# Resuming a finished run evaluates again and stops: same numbers, no training.
if run run_done --threads 1 --device cpu --out "$WORK/b" --resume "$WORK/b/latest.safetensors"; then
    a=$(eval_at run_a 60)
    b=$(evals run_done)
    if [[ -n $a && $b == "$a" ]] && [[ -z $(log_rows "$WORK/run_done.csv" progress iter) ]]; then
        pass resume_finished_run_is_a_no_op
    else
        fail resume_finished_run_is_a_no_op "expected only '$a', got: $(echo "$b" | tr '\n' '|')"
    fi
fi

# --out FILE.safetensors: the latest at FILE, the best beside it; both resume.
if run run_file_out "${CFG[@]}" --max-iters 20 --out "$WORK/single.safetensors"; then
    if [[ -f $WORK/single.safetensors && -f $WORK/single.best.safetensors ]] &&
        [[ -n $(eval_at run_file_out 20) && $(eval_at run_file_out 20) == "$(eval_at run_a 20)" ]]; then
        pass out_file_path
    else
        fail out_file_path "files: $(ls "$WORK" | tr '\n' ' ')"
    fi
fi

# --------------------------------------------------------------- info
CKPT=$WORK/a/latest.safetensors
if timeout 60 "$BIN" info --ckpt "$CKPT" >"$WORK/info.out" 2>"$WORK/info.err"; then
    vocab=$("$PYTHON" -c 'import sys; print(len(set(open(sys.argv[1], encoding="utf-8").read())))' "$TEXT" 2>/dev/null)
    missing=""
    for want in "1 layers" "d_model 16" "2 heads" "block_size 16" "dropout 0.1" "pnorm l2_norm_gelu" \
                "q=8" "k=8" "v=8" "o=8" "ffn=16" "iteration 60" "optimizer state included" "best val loss" \
                ${vocab:+"vocab_size $vocab"}; do
        grep -Fq "$want" "$WORK/info.out" || missing+="'$want' "
    done
    if [[ -z $missing ]]; then
        pass info_prints_config
    else
        fail info_prints_config "missing $missing in: $(tr '\n' '|' <"$WORK/info.out")"
    fi
    [[ ! -s $WORK/info.err ]] && pass info_quiet_stderr || fail info_quiet_stderr "$(head -2 "$WORK/info.err")"
    # The positional form gives the same output.
    if timeout 60 "$BIN" info "$CKPT" 2>/dev/null | cmp -s - "$WORK/info.out"; then
        pass info_positional_path
    else
        fail info_positional_path "'info CKPT' differs from 'info --ckpt CKPT'"
    fi
else
    fail info_prints_config "info failed: $(head -1 "$WORK/info.err")"
fi

# --------------------------------------------------------------- sample
if [[ -z $PYTHON ]]; then
    skip sample_checks "no python found (needed to count code points)"
else
    cat >"$WORK/check_sample.py" <<'EOF'
# check_sample.py TEXT OUT PROMPT N: OUT must be PROMPT + N characters of TEXT + "\n".
import sys
text = open(sys.argv[1], encoding='utf-8').read()
raw = open(sys.argv[2], 'rb').read()
prompt, n = sys.argv[3], int(sys.argv[4])
try:
    out = raw.decode('utf-8')
except UnicodeDecodeError as e:
    sys.exit(f'output is not UTF-8: {e}')
if not out.startswith(prompt):
    sys.exit(f'output does not start with the prompt: {out[:40]!r}')
if not out.endswith('\n'):
    sys.exit('output does not end with a newline')
gen = out[len(prompt):-1]
if len(gen) != n:
    sys.exit(f'{len(gen)} characters generated ({len(gen.encode())} bytes), expected {n}')
foreign = sorted(set(gen) - set(text))
if foreign:
    sys.exit(f'characters outside the training text: {foreign[:5]}')
print(f'{n} characters, {len(gen.encode())} bytes, {len(set(gen))} distinct')
EOF
    sample() { # sample OUTFILE ARGS...
        local o=$1
        shift
        timeout 120 "$BIN" sample --ckpt "$CKPT" --threads 1 --device cpu "$@" >"$o" 2>"$WORK/sample.err"
    }
    for spec in "plain|ROMEO:|300|--seed 7" "unicode_prompt|Café — |120|--seed 3" "top_k|The |80|--top-k 5" \
                "greedy|ho|64|--temperature 0" "hot|a|64|--temperature 3" "zero_tokens|Said|0|" \
                "long_prompt|$(head -c 200 "$TEXT" | tr -d '\n\r' | cut -c1-150)|40|"; do
        IFS='|' read -r name prompt n extra <<<"$spec"
        # shellcheck disable=SC2086
        if ! sample "$WORK/s_$name.out" --prompt "$prompt" --max-new-tokens "$n" $extra; then
            fail "sample_$name" "sample failed: $(head -1 "$WORK/sample.err")"
        elif msg=$("$PYTHON" "$WORK/check_sample.py" "$TEXT" "$WORK/s_$name.out" "$prompt" "$n" 2>&1); then
            pass "sample_$name ($msg)"
        else
            fail "sample_$name" "$msg"
        fi
    done
    # Reproducible: the same seed gives the same text, another seed another text.
    sample "$WORK/r1.out" --prompt "ROMEO:" --max-new-tokens 300 --seed 7
    sample "$WORK/r2.out" --prompt "ROMEO:" --max-new-tokens 300 --seed 8
    if cmp -s "$WORK/r1.out" "$WORK/s_plain.out" && ! cmp -s "$WORK/r2.out" "$WORK/s_plain.out"; then
        pass sample_seeded
    else
        fail sample_seeded "same seed differs or different seeds agree"
    fi
    # top-k 1 keeps only the most likely character: the same as greedy.
    sample "$WORK/k1.out" --prompt "ho" --max-new-tokens 64 --top-k 1 --seed 99
    if cmp -s "$WORK/k1.out" "$WORK/s_greedy.out"; then
        pass sample_top_k_1_is_greedy
    else
        fail sample_top_k_1_is_greedy "$(head -c 80 "$WORK/k1.out") vs $(head -c 80 "$WORK/s_greedy.out")"
    fi
fi

echo "resume: $failures failure(s)"
[[ $failures -eq 0 ]]
