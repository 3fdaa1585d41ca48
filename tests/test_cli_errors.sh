#!/usr/bin/env bash
# Bad input to every command: each must print exactly one line on stderr that
# names the problem, exit with a status in 1..127 (>= 128 is a crash), finish
# in time, print no sanitizer report and leave no partial file behind. Also:
# no arguments prints usage and fails; --help on every command succeeds with
# usage on stdout.
#
# Environment: TF_BIN (binary under test, default ./tokenformer).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" cli_errors

# Under AddressSanitizer a huge malloc aborts unless told to return NULL like
# the real one; it then prints this warning, which is not the program's output.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1"
ASAN_ALLOC_WARNING='^==[0-9]+==WARNING: AddressSanitizer failed to allocate 0x[0-9a-f]+ bytes$'

# Text for training (TEXT, TINY: a slice of tiny shakespeare, or generated
# prose) and a real checkpoint (CKPT) for the sample/info/eval/--resume cases.
CKPT_DIR=$WORK/ckpt
tiny_checkpoint "$CKPT_DIR"

# The checks every failing invocation must pass.
# check_error NAME REGEX OUTDIR -- CMD...   (OUTDIR: where partial files would appear, or -)
check_error() {
    local name=$1 regex=$2 outdir=$3
    shift 4
    local out=$WORK/$name.out err=$WORK/$name.err rc
    timeout 60 "$@" </dev/null >"$out" 2>"$err.raw"
    rc=$?
    grep -Ev "$ASAN_ALLOC_WARNING" "$err.raw" >"$err"
    local first
    first=$(head -c 300 "$err" | head -1)
    if [[ $rc -eq 124 ]]; then
        fail "$name" "timed out after 60 s (hang): $*"
        return
    fi
    if [[ $rc -eq 0 ]]; then
        fail "$name" "exited 0, expected an error: $*"
        return
    fi
    if [[ $rc -ge 128 ]]; then
        fail "$name" "crashed with status $rc ($(kill -l $((rc - 128)) 2>/dev/null || echo ?)): $first"
        return
    fi
    if grep -Eq "$SANITIZER_RE" "$err"; then
        fail "$name" "sanitizer report: $(grep -Em1 "$SANITIZER_RE" "$err")"
        return
    fi
    local n
    n=$(grep -c '' "$err")
    if [[ $n -ne 1 ]]; then
        fail "$name" "expected exactly one line on stderr, got $n: $(head -3 "$err" | tr '\n' '|')"
        return
    fi
    if ! grep -Eq -e "$regex" "$err"; then
        fail "$name" "stderr does not match /$regex/: $first"
        return
    fi
    if [[ $outdir != - && -e $outdir ]]; then
        local junk
        junk=$(find "$outdir" \( -name '*.tmp.*' -o -name '*.safetensors' \) 2>/dev/null | head -3)
        if [[ -n $junk ]]; then
            fail "$name" "left files behind: $junk"
            return
        fi
    fi
    pass "$name"
}

# expect_error NAME EXPECTED_REGEX -- CMD...
expect_error() {
    local name=$1 regex=$2
    shift 3
    check_error "$name" "$regex" - -- "$@"
}

# train_error NAME EXPECTED_REGEX -- TRAIN ARGS...: the output directory must stay empty.
train_error() {
    local name=$1 regex=$2
    shift 3
    local out=$WORK/out_$name
    check_error "$name" "$regex" "$out" -- "$BIN" train "$@" --out "$out"
}

# --------------------------------------------------------------- usage / help
timeout 20 "$BIN" >"$WORK/noargs.out" 2>"$WORK/noargs.err"
rc=$?
if [[ $rc -ge 1 && $rc -le 127 ]] && grep -q 'usage:' "$WORK/noargs.err"; then
    pass no_args_prints_usage
else
    fail no_args_prints_usage "status $rc, stderr: $(head -1 "$WORK/noargs.err")"
fi
expect_error unknown_command "unknown command 'frobnicate'" -- "$BIN" frobnicate

for cmd in "" train sample info eval grow bench; do
    for h in --help -h; do
        name="help_${cmd:-main}${h//-/_}"
        # shellcheck disable=SC2086
        timeout 20 "$BIN" $cmd $h >"$WORK/help.out" 2>"$WORK/help.err"
        rc=$?
        if [[ $rc -eq 0 ]] && grep -q 'usage:' "$WORK/help.out" && [[ ! -s $WORK/help.err ]]; then
            pass "$name"
        else
            fail "$name" "status $rc, stdout $(head -1 "$WORK/help.out"), stderr $(head -1 "$WORK/help.err")"
        fi
    done
done

# --------------------------------------------------------------- train: the input file
printf '' >"$WORK/empty.txt"
mkdir -p "$WORK/a_dir"
printf 'abc\xffdef and more text here\n' >"$WORK/bad_utf8.txt"
printf 'overlong \xc0\xaf slash\n' >"$WORK/overlong.txt"
printf 'surrogate \xed\xa0\x80 here\n' >"$WORK/surrogate.txt"
printf 'cut at the end \xe2\x82' >"$WORK/truncated_utf8.txt"
printf 'nul\0byte in text\n' >"$WORK/nul.txt"
cp "$BIN" "$WORK/binary.bin"
printf 'short text\n' >"$WORK/short.txt"

train_error train_missing_file "cannot open '.*nonexistent\.txt'.*No such file" -- "$WORK/nonexistent.txt" "${TINY[@]}"
train_error train_directory "'.*a_dir' is a directory" -- "$WORK/a_dir" "${TINY[@]}"
truncate -s 1100M "$WORK/huge.txt" # sparse: no disk used
train_error train_file_over_1gib "huge\.txt' is larger than 1 GiB" -- "$WORK/huge.txt" "${TINY[@]}"
rm -f "$WORK/huge.txt"
# Read as bytes, an endless stream ends at 1 GiB; as text, at its first NUL byte.
train_error train_endless_stream "'/dev/zero' is larger than 1 GiB" -- /dev/zero "${TINY[@]}" --tokenizer bytes
train_error train_endless_zeros_as_text "'/dev/zero'.*binary data \(NUL byte\) at byte offset 0" -- /dev/zero "${TINY[@]}"
train_error train_empty_file "empty\.txt' is empty" -- "$WORK/empty.txt" "${TINY[@]}"
train_error train_invalid_utf8 "bad_utf8\.txt.*invalid UTF-8 at byte offset 3" -- "$WORK/bad_utf8.txt" "${TINY[@]}"
train_error train_overlong_utf8 "overlong\.txt.*invalid UTF-8 at byte offset 9" -- "$WORK/overlong.txt" "${TINY[@]}"
train_error train_surrogate_utf8 "surrogate\.txt.*invalid UTF-8 at byte offset 10" -- "$WORK/surrogate.txt" "${TINY[@]}"
train_error train_truncated_utf8 "truncated_utf8\.txt.*(invalid|truncated|incomplete).*(UTF-8|offset)" -- "$WORK/truncated_utf8.txt" "${TINY[@]}"
train_error train_nul_byte "nul\.txt.*(NUL|binary).*offset 3" -- "$WORK/nul.txt" "${TINY[@]}"
train_error train_binary_file "binary\.bin.*(binary|invalid UTF-8).*offset" -- "$WORK/binary.bin" "${TINY[@]}"
train_error train_text_too_short "short\.txt.*too short.*block_size 16" -- "$WORK/short.txt" "${TINY[@]}"
if [[ $(id -u) -ne 0 ]]; then
    printf 'secret text\n' >"$WORK/unreadable.txt"
    chmod 000 "$WORK/unreadable.txt"
    train_error train_unreadable_file "unreadable\.txt.*Permission denied" -- "$WORK/unreadable.txt" "${TINY[@]}"
else
    skip train_unreadable_file "running as root: file permissions do not apply"
fi
if [[ -r /proc/self/mem ]]; then # opens fine, every read fails (EIO) even for root
    train_error train_read_error "/proc/self/mem.*(error|Input/output)" -- /proc/self/mem "${TINY[@]}"
fi

# Just long enough: each split holds exactly block_size + 1 characters.
head -c 170 /dev/zero | tr '\0' 'a' | sed 's/aaaaa/abcde/g' >"$WORK/minimal.txt"
if timeout 60 "$BIN" train "$WORK/minimal.txt" "${TINY[@]}" --max-iters 2 --out "$WORK/out_minimal" \
        >"$WORK/minimal.log" 2>&1; then
    pass train_text_exactly_one_block
else
    fail train_text_exactly_one_block "170 characters (val split 17 = block 16 + 1) refused: $(tail -1 "$WORK/minimal.log")"
fi
head -c 160 "$WORK/minimal.txt" >"$WORK/minimal_minus.txt" # val split 16 < 17
train_error train_text_one_short "minimal_minus\.txt.*too short.*val split has 16" -- "$WORK/minimal_minus.txt" "${TINY[@]}"

# --------------------------------------------------------------- train: flags
train_error train_unknown_flag "unknown or malformed option '--frobnicate'" -- "$TEXT" "${TINY[@]}" --frobnicate
train_error train_unknown_short_flag "unknown option '-x' in '-x'" -- "$TEXT" "${TINY[@]}" -x
check_error train_flag_missing_value "option '--d-model'" "$WORK/out_missing_value" -- \
    "$BIN" train "$TEXT" "${TINY[@]}" --out "$WORK/out_missing_value" --d-model
train_error train_two_files "expected one input file" -- "$TEXT" "$TEXT" "${TINY[@]}"
for spec in "d-model 0" "d-model -16" "d-model abc" "d-model 16.5" "d-model 16x" "d-model =" \
            "n-layer 0" "n-layer 257" "n-head 0" "n-attn 0" "n-ffn -1" "block-size 0" "block-size 65537" \
            "batch-size 0" "batch-size -4" "max-iters -1" "eval-interval 0" "eval-iters 0" "log-interval 0" \
            "warmup-iters -1" "lr 0" "lr -0.1" "lr nan" "lr inf" "lr 1e400" "lr 10" "min-lr -1" "dropout 1" \
            "dropout -0.5" "rope-frac 1.5" "beta1 1" "beta2 -1" "weight-decay -1" "grad-clip -1" \
            "seed -1" "seed 1e3" "threads 0" "threads -2" "threads 99999"; do
    set -- $spec
    flag=$1 value=$2
    [[ $value == = ]] && value=
    name="train_bad_${flag//-/_}_${value//[^a-z0-9]/_}"
    train_error "$name" "--$flag: expected (an integer|a number) in .*got '$value'" -- "$TEXT" "${TINY[@]}" "--$flag" "$value"
done
train_error train_n_head_not_dividing "n_head \(3\) must divide d_model \(16\)" -- "$TEXT" "${TINY[@]}" --n-head 3
train_error train_huge_model "(out of .*memory|too large)" -- "$TEXT" "${TINY[@]}" --d-model 65536 --n-attn 1000000
train_error train_huge_layers "(out of .*memory|too large)" -- "$TEXT" "${TINY[@]}" --n-layer 256 --d-model 65536 --n-head 1 --n-ffn 4194304
train_error train_block_longer_than_text "too short.*block_size 4096" -- "$TEXT" "${TINY[@]}" --block-size 4096
train_error train_min_lr_above_lr "min_lr must be in \[0, lr\]" -- "$TEXT" "${TINY[@]}" --lr 0.001 --min-lr 0.01
train_error train_bad_preset "unknown preset 'enormous'" -- "$TEXT" "${TINY[@]}" --preset enormous
train_error train_bad_pnorm "--pnorm: expected .* got 'cubic'" -- "$TEXT" "${TINY[@]}" --pnorm cubic
train_error train_bad_device "unknown device 'tpu'" -- "$TEXT" "${TINY[@]/cpu/tpu}"
train_error train_bad_precision "--precision: expected fp32, tf32 or bf16, got 'fp16'" -- "$TEXT" "${TINY[@]}" --precision fp16
expect_error bench_bad_precision "--precision: expected fp32, tf32 or bf16, got 'int8'" -- "$BIN" bench --device cpu --precision int8
expect_error bench_precision_missing_value "option '--precision'" -- "$BIN" bench --device cpu --precision
train_error train_new_stage_without_resume "need --resume" -- "$TEXT" "${TINY[@]}" --new-stage
train_error train_freeze_old_without_resume "need --resume" -- "$TEXT" "${TINY[@]}" --freeze-old
train_error train_continue_schedule_without_resume "need --resume" -- "$TEXT" "${TINY[@]}" --continue-schedule
train_error train_continue_schedule_and_new_stage "contradict" -- "$TEXT" --resume "$CKPT" --new-stage --continue-schedule --threads 1
check_error train_out_is_a_file "--out: '.*text\.txt' exists and is not a directory" - -- \
    "$BIN" train "$TEXT" "${TINY[@]}" --out "$TEXT"
check_error train_out_parent_missing "--out: .*nonexistent_dir" "$WORK/nonexistent_dir" -- \
    "$BIN" train "$TEXT" "${TINY[@]}" --out "$WORK/nonexistent_dir/run.safetensors"
check_error train_out_parent_is_file "--out: .*text\.txt" - -- \
    "$BIN" train "$TEXT" "${TINY[@]}" --out "$TEXT/run.safetensors"

# --------------------------------------------------------------- train --resume
RES=(--threads 1 --device cpu --max-iters 6)
train_error resume_missing_checkpoint "nonexistent\.safetensors.*cannot open" -- "$TEXT" "${RES[@]}" --resume "$WORK/nonexistent.safetensors"
train_error resume_directory "a_dir.*not a regular file" -- "$TEXT" "${RES[@]}" --resume "$WORK/a_dir"
train_error resume_text_file "text\.txt.*header length" -- "$TEXT" "${RES[@]}" --resume "$TEXT"
train_error resume_with_model_flags "drop --d-model 32 .checkpoint: " -- "$TEXT" "${RES[@]}" --resume "$CKPT" --d-model 32
printf 'Zebras \xe2\x80\x94 and quokkas \xe2\x80\x94 are not in the vocabulary. %.0s' $(seq 40) >"$WORK/foreign_chars.txt"
train_error resume_other_text "foreign_chars\.txt. is not the text .* was trained on.*--allow-other-text" -- "$WORK/foreign_chars.txt" "${RES[@]}" --resume "$CKPT"
train_error resume_text_outside_vocab "foreign_chars\.txt.*not in the (model's )?vocabulary" -- "$WORK/foreign_chars.txt" "${RES[@]}" --resume "$CKPT" --allow-other-text

# --------------------------------------------------------------- sample
S=(--threads 1 --device cpu --max-new-tokens 5)
expect_error sample_no_ckpt "--ckpt is required" -- "$BIN" sample "${S[@]}"
expect_error sample_ckpt_missing_value "option '--ckpt'" -- "$BIN" sample "${S[@]}" --ckpt
expect_error sample_missing_ckpt "nonexistent\.safetensors.*cannot open" -- "$BIN" sample "${S[@]}" --ckpt "$WORK/nonexistent.safetensors"
expect_error sample_ckpt_directory "a_dir.*not a regular file" -- "$BIN" sample "${S[@]}" --ckpt "$WORK/a_dir"
expect_error sample_ckpt_empty "empty\.txt.*too short" -- "$BIN" sample "${S[@]}" --ckpt "$WORK/empty.txt"
expect_error sample_ckpt_text "text\.txt.*header length" -- "$BIN" sample "${S[@]}" --ckpt "$TEXT"
expect_error sample_ckpt_dev_zero "/dev/zero.*not a regular file" -- "$BIN" sample "${S[@]}" --ckpt /dev/zero
mkfifo "$WORK/fifo" 2>/dev/null && \
    expect_error sample_ckpt_fifo "fifo.*not a regular file" -- "$BIN" sample "${S[@]}" --ckpt "$WORK/fifo"
expect_error sample_prompt_outside_vocab "--prompt: character '€' \(U\+20AC\) is not in the model's vocabulary" -- \
    "$BIN" sample "${S[@]}" --ckpt "$CKPT" --prompt "the €"
expect_error sample_prompt_invalid_utf8 "--prompt: invalid UTF-8 at byte offset 2" -- \
    "$BIN" sample "${S[@]}" --ckpt "$CKPT" --prompt $'ab\xffcd'
expect_error sample_bad_max_new_tokens "--max-new-tokens: expected an integer .* got '-1'" -- \
    "$BIN" sample --ckpt "$CKPT" --threads 1 --max-new-tokens -1
expect_error sample_bad_max_new_tokens_text "--max-new-tokens: expected an integer .* got 'lots'" -- \
    "$BIN" sample --ckpt "$CKPT" --threads 1 --max-new-tokens lots
expect_error sample_bad_temperature "--temperature: expected a number .* got '-1'" -- \
    "$BIN" sample "${S[@]}" --ckpt "$CKPT" --temperature -1
expect_error sample_nan_temperature "--temperature: expected a number .* got 'nan'" -- \
    "$BIN" sample "${S[@]}" --ckpt "$CKPT" --temperature nan
expect_error sample_bad_top_k "--top-k: expected an integer .* got '-3'" -- "$BIN" sample "${S[@]}" --ckpt "$CKPT" --top-k -3
expect_error sample_bad_seed "--seed: expected an integer .* got 'x'" -- "$BIN" sample "${S[@]}" --ckpt "$CKPT" --seed x
expect_error sample_bad_threads "--threads: expected an integer .* got '0'" -- "$BIN" sample --ckpt "$CKPT" --threads 0
expect_error sample_bad_device "unknown device 'tpu'" -- "$BIN" sample --ckpt "$CKPT" --threads 1 --device tpu
expect_error sample_unknown_flag "sample: unknown or malformed option '--frobnicate'" -- "$BIN" sample "${S[@]}" --ckpt "$CKPT" --frobnicate
expect_error sample_extra_argument "unexpected argument 'extra'" -- "$BIN" sample "${S[@]}" --ckpt "$CKPT" extra

# --------------------------------------------------------------- info
expect_error info_no_ckpt "--ckpt is required" -- "$BIN" info
expect_error info_missing_ckpt "nonexistent\.safetensors.*cannot open" -- "$BIN" info --ckpt "$WORK/nonexistent.safetensors"
expect_error info_ckpt_directory "a_dir.*not a regular file" -- "$BIN" info --ckpt "$WORK/a_dir"
expect_error info_ckpt_binary "binary\.bin.*header" -- "$BIN" info --ckpt "$WORK/binary.bin"
expect_error info_unknown_flag "info: unknown or malformed option '--frobnicate'" -- "$BIN" info --ckpt "$CKPT" --frobnicate
expect_error info_extra_argument "unexpected argument 'extra'" -- "$BIN" info --ckpt "$CKPT" extra
expect_error info_preset_training_flag "info: --lr is a training flag" -- "$BIN" info --preset tiny --lr 0.1
expect_error info_ckpt_and_preset "go without it" -- "$BIN" info --ckpt "$CKPT" --preset tiny
expect_error info_unknown_preset "unknown preset 'huge'" -- "$BIN" info --preset huge
expect_error info_bad_vocab "vocab-size" -- "$BIN" info --preset tiny --vocab-size 0
# --preset=P is --preset P for every command that takes it (bench and info once read only the latter)
for cmd in "info --preset=shakespeare" "bench --preset=shakespeare --n-layer 1 --steps 1 --warmup 0 --batch-size 1 --block-size 8 --device cpu --threads 1"; do
    # shellcheck disable=SC2086
    out=$("$BIN" $cmd 2>&1)
    if grep -q 'preset shakespeare\|"preset": "shakespeare"' <<<"$out"; then
        pass "preset_equals_form_${cmd%% *}"
    else
        fail "preset_equals_form_${cmd%% *}" "$(head -c 200 <<<"$out")"
    fi
done

# --------------------------------------------------------------- eval
E=(--threads 1 --device cpu --batches 2 --batch-size 2)
expect_error eval_no_ckpt "--ckpt is required" -- "$BIN" eval "${E[@]}" "$TEXT"
expect_error eval_missing_ckpt "nonexistent\.safetensors.*cannot open" -- "$BIN" eval "${E[@]}" --ckpt "$WORK/nonexistent.safetensors" "$TEXT"
expect_error eval_missing_text "cannot open '.*nonexistent\.txt'" -- "$BIN" eval "${E[@]}" --ckpt "$CKPT" "$WORK/nonexistent.txt"
expect_error eval_directory_text "a_dir' is a directory" -- "$BIN" eval "${E[@]}" --ckpt "$CKPT" "$WORK/a_dir"
expect_error eval_invalid_utf8 "bad_utf8\.txt.*invalid UTF-8 at byte offset 3" -- "$BIN" eval "${E[@]}" --ckpt "$CKPT" "$WORK/bad_utf8.txt"
expect_error eval_text_too_short "short\.txt.*too short" -- "$BIN" eval "${E[@]}" --ckpt "$CKPT" "$WORK/short.txt" --allow-other-text
expect_error eval_text_outside_vocab "foreign_chars\.txt.*not in the (model's )?vocabulary" -- "$BIN" eval "${E[@]}" --ckpt "$CKPT" "$WORK/foreign_chars.txt" --allow-other-text
expect_error eval_bad_batches "--batches: expected an integer .* got '0'" -- "$BIN" eval --ckpt "$CKPT" --batches 0 "$TEXT"
expect_error eval_unknown_flag "eval: unknown or malformed option '--frobnicate'" -- "$BIN" eval "${E[@]}" --ckpt "$CKPT" --frobnicate "$TEXT"
expect_error eval_two_files "expected one text file" -- "$BIN" eval "${E[@]}" --ckpt "$CKPT" "$TEXT" "$TEXT"

# --------------------------------------------------------------- grow
G_OUT=$WORK/out_grow
mkdir -p "$G_OUT"
check_error grow_no_ckpt "--ckpt is required" "$G_OUT" -- "$BIN" grow --kv +4 --out "$G_OUT/g.safetensors"
check_error grow_missing_ckpt "nonexistent\.safetensors.*cannot open" "$G_OUT" -- \
    "$BIN" grow --ckpt "$WORK/nonexistent.safetensors" --kv +4 --out "$G_OUT/g.safetensors" --threads 1
check_error grow_unknown_flag "unknown or malformed option '--frobnicate'" "$G_OUT" -- \
    "$BIN" grow --ckpt "$CKPT" --kv +4 --out "$G_OUT/g.safetensors" --frobnicate
check_error grow_bad_kv "--kv" "$G_OUT" -- "$BIN" grow --ckpt "$CKPT" --kv lots --out "$G_OUT/g.safetensors" --threads 1

echo "cli_errors: $failures failure(s)"
[[ $failures -eq 0 ]]
