#!/usr/bin/env bash
# --precision on every command that runs a model (train, bench, sample,
# eval), on the CPU: it computes in fp32 only, so a reduced precision is a
# note on stderr and the same output as fp32, the same way on every command;
# a bad value is the same one-line error everywhere. (CUDA: test_cuda_precision.sh.)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" precision_cli
tiny_checkpoint "$WORK/ckpt"
NOTE='note: --precision bf16 has no effect on the CPU (it computes in fp32)'

# run_both NAME ARGS...: the command at fp32 and at bf16 on the CPU: same
# stdout, the note on bf16's stderr only.
run_both() {
    local name=$1
    shift
    "$@" --precision fp32 >"$WORK/$name.fp32" 2>"$WORK/$name.fp32.err" || { fail "${name}_fp32" "$(tail -1 "$WORK/$name.fp32.err")"; return; }
    "$@" --precision bf16 >"$WORK/$name.bf16" 2>"$WORK/$name.bf16.err" || { fail "${name}_bf16" "$(tail -1 "$WORK/$name.bf16.err")"; return; }
    if cmp -s "$WORK/$name.fp32" "$WORK/$name.bf16"; then pass "${name}_cpu_bf16_same_output"
    else fail "${name}_cpu_bf16_same_output" "stdout differs"; fi
    if grep -qxF "$NOTE" "$WORK/$name.bf16.err" && ! grep -q 'note: --precision' "$WORK/$name.fp32.err"; then
        pass "${name}_cpu_bf16_note"
    else
        fail "${name}_cpu_bf16_note" "stderr: $(tr '\n' ' ' <"$WORK/$name.bf16.err")"
    fi
}

run_both sample "$BIN" sample --ckpt "$CKPT" --device cpu --threads 1 --max-new-tokens 40 --seed 3
run_both sample_batch "$BIN" sample --ckpt "$CKPT" --device cpu --threads 1 --max-new-tokens 20 --num-samples 3
run_both eval "$BIN" eval --ckpt "$CKPT" "$TEXT" --device cpu --threads 1 --batches 2 --batch-size 2
run_both eval_full "$BIN" eval --ckpt "$CKPT" "$TEXT" --device cpu --threads 1 --full --batch-size 8

# train: its checkpoint the same bytes at bf16 as at fp32 on the CPU
for p in fp32 bf16; do
    "$BIN" train "$TEXT" "${TINY[@]}" --precision "$p" --out "$WORK/train_$p" >"$WORK/train_$p.log" 2>&1 \
        || fail "train_$p" "$(tail -1 "$WORK/train_$p.log")"
done
cmp -s "$WORK/train_fp32/latest.safetensors" "$WORK/train_bf16/latest.safetensors" \
    && pass train_cpu_bf16_same_checkpoint || fail train_cpu_bf16_same_checkpoint "checkpoints differ"
grep -qxF "$NOTE" "$WORK/train_bf16.log" && pass train_cpu_bf16_note || fail train_cpu_bf16_note "no note"

for cmd in sample eval; do
    out=$("$BIN" $cmd --ckpt "$CKPT" --device cpu --precision fp16 2>&1 >/dev/null)
    [[ $? -ne 0 && $out == "tokenformer: error: --precision: expected fp32, tf32 or bf16, got 'fp16'" ]] \
        && pass "${cmd}_bad_precision" || fail "${cmd}_bad_precision" "$out"
    "$BIN" $cmd --help | grep -q -- '--precision P' && pass "${cmd}_help_lists_precision" \
        || fail "${cmd}_help_lists_precision" "no --precision in --help"
done
# The common flags come from one table (src/commands/command_setup.c): every
# command that takes one shows it with the same help lines.
common_help() { # CMD: its --device, --threads and --precision help lines, continuations included
    "$BIN" "$1" --help | awk '/^  --(device D|threads N|precision P) /{p = 1; print; next} /^                         /{if (p) print; next} {p = 0}'
}
common_help train >"$WORK/help_train"
[[ $(wc -l <"$WORK/help_train") -eq 6 ]] || fail common_help_train "$(cat "$WORK/help_train")"
for cmd in bench sample eval; do
    common_help $cmd >"$WORK/help_$cmd"
    cmp -s "$WORK/help_train" "$WORK/help_$cmd" && pass "common_flags_help_${cmd}_same_as_train" \
        || fail "common_flags_help_${cmd}_same_as_train" "$(diff "$WORK/help_train" "$WORK/help_$cmd" | tr '\n' ' ')"
done
seed_line() { "$BIN" "$1" --help | grep '^  --seed S'; }
[[ "$(seed_line sample)" == "$(seed_line eval)" && "$(seed_line eval)" == "$(seed_line grow)" && -n "$(seed_line grow)" ]] \
    && pass common_seed_help_same || fail common_seed_help_same "$(seed_line sample) | $(seed_line eval) | $(seed_line grow)"
[[ "$("$BIN" grow --help | grep '^  --threads N')" == "$(grep '^  --threads N' "$WORK/help_train")" ]] \
    && pass common_threads_help_grow || fail common_threads_help_grow "differs"

exit $((failures > 0))
