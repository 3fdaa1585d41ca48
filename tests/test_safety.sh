#!/usr/bin/env bash
# No writer destroys another run's file, the CPU does not spin by default, and
# error messages say what to do (issue 23): grow --out guards, one lock per
# output set, OpenMP's wait policy, launchers without GPUs, message wording.
#
# Environment: TF_BIN (binary under test, default ./tokenformer).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" safety

TEXT=$WORK/text.txt
sample_text 20000 400 >"$TEXT"
TINY=(--n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 16 --block-size 16 --batch-size 4
      --max-iters 4 --eval-interval 2 --eval-iters 1 --threads 1 --device cpu)
RUN=$WORK/run
if ! timeout 120 "$BIN" train "$TEXT" --out "$RUN" "${TINY[@]}" >"$WORK/setup.log" 2>&1; then
    fail setup_train "training the fixture checkpoint failed: $(tail -2 "$WORK/setup.log" | tr '\n' ' ')"
    exit 1
fi
CKPT=$RUN/latest.safetensors
cp "$CKPT" "$WORK/ckpt.orig"

# refused NAME REGEX -- CMD...: fails with status 1..127 and exactly one
# stderr line that matches REGEX.
refused() {
    local name=$1 regex=$2 rc n
    shift 3
    timeout 60 "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err"
    rc=$?
    n=$(grep -c '' "$WORK/$name.err")
    if [[ $rc -eq 0 || $rc -ge 124 ]]; then
        fail "$name" "exit status $rc, expected a refusal: $(head -c 300 "$WORK/$name.err")"
    elif [[ $n -ne 1 ]]; then
        fail "$name" "expected one line on stderr, got $n: $(head -3 "$WORK/$name.err" | tr '\n' '|')"
    elif ! grep -Eq -e "$regex" "$WORK/$name.err"; then
        fail "$name" "stderr does not match /$regex/: $(head -c 300 "$WORK/$name.err")"
    else
        pass "$name"
    fi
}

# unchanged NAME FILE COPY: FILE still holds COPY's bytes.
unchanged() {
    if cmp -s "$2" "$3"; then pass "$1"; else fail "$1" "$2 was changed"; fi
}

GROW=(--kv +4 --threads 1)

# ------------------------------------------------------------ grow --out
refused grow_own_input "is the input checkpoint" -- "$BIN" grow --ckpt "$CKPT" --out "$CKPT" "${GROW[@]}" --force
unchanged grow_own_input_kept "$CKPT" "$WORK/ckpt.orig"
ln -s "$CKPT" "$WORK/link.safetensors"
refused grow_own_input_via_symlink "is the input checkpoint" -- \
    "$BIN" grow --ckpt "$CKPT" --out "$WORK/link.safetensors" "${GROW[@]}" --force
refused grow_own_input_via_other_path "is the input checkpoint" -- \
    "$BIN" grow --ckpt "$CKPT" --out "$RUN/../run/./latest.safetensors" "${GROW[@]}" --force
unchanged grow_own_input_via_links_kept "$CKPT" "$WORK/ckpt.orig"

cp "$RUN/best.safetensors" "$WORK/best.orig"
refused grow_existing_needs_force "exists; give --force" -- \
    "$BIN" grow --ckpt "$CKPT" --out "$RUN/best.safetensors" "${GROW[@]}"
unchanged grow_existing_kept "$RUN/best.safetensors" "$WORK/best.orig"
if "$BIN" grow --ckpt "$CKPT" --out "$WORK/g.safetensors" "${GROW[@]}" >/dev/null 2>&1 &&
    "$BIN" grow --ckpt "$CKPT" --out "$WORK/g.safetensors" --kv +8 --threads 1 --force >/dev/null 2>&1 &&
    "$BIN" info --ckpt "$WORK/g.safetensors" | grep -q "q=16 "; then
    pass grow_force_replaces_a_checkpoint
else
    fail grow_force_replaces_a_checkpoint "grow --force did not replace $WORK/g.safetensors with the +8 model"
fi

cp "$TEXT" "$WORK/text.copy"
refused grow_text_file_even_with_force "not a tokenformer checkpoint" -- \
    "$BIN" grow --ckpt "$CKPT" --out "$TEXT" "${GROW[@]}" --force
unchanged grow_text_file_kept "$TEXT" "$WORK/text.copy"
refused grow_new_path_not_a_checkpoint "ends in \.safetensors" -- \
    "$BIN" grow --ckpt "$CKPT" --out "$WORK/notes.txt" "${GROW[@]}"
[[ -e $WORK/notes.txt ]] && fail grow_new_path_not_written "$WORK/notes.txt was written" || pass grow_new_path_not_written

# ------------------------------------------------------------ a running train's output set
# start_training OUT: a long run in the background, its pid in TRAIN_PID once
# its lock is taken (its first progress line is printed after that).
start_training() {
    "$BIN" train "$TEXT" --out "$1" "${TINY[@]}" --max-iters 1000000 --eval-interval 1000000 --log-interval 1 \
        >"$WORK/bg.log" 2>&1 &
    TRAIN_PID=$!
    PIDS+=("$TRAIN_PID")
    for _ in $(seq 300); do
        grep -q "tok/s" "$WORK/bg.log" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
stop_training() { kill "$TRAIN_PID" 2>/dev/null; wait "$TRAIN_PID" 2>/dev/null; }

if start_training "$WORK/live"; then
    refused grow_into_running_training "in use by another process \(pid $TRAIN_PID" -- \
        "$BIN" grow --ckpt "$CKPT" --out "$WORK/live/best.safetensors" "${GROW[@]}" --force
    refused train_latest_of_running_set "in use by another process \(pid $TRAIN_PID" -- \
        "$BIN" train "$TEXT" --out "$WORK/live/latest.safetensors" "${TINY[@]}"
    stop_training
else
    fail grow_into_running_training "the background training never started: $(tail -2 "$WORK/bg.log")"
fi
if start_training "$WORK/stem.safetensors"; then
    refused grow_into_running_stem_set "in use by another process \(pid $TRAIN_PID" -- \
        "$BIN" grow --ckpt "$CKPT" --out "$WORK/stem.best.safetensors" "${GROW[@]}" --force
    stop_training
else
    fail grow_into_running_stem_set "the background training never started: $(tail -2 "$WORK/bg.log")"
fi

# ------------------------------------------------------------ a best is never a latest
refused train_out_dir_best "named as a run's best checkpoint" -- \
    "$BIN" train "$TEXT" --out "$RUN/best.safetensors" "${TINY[@]}"
refused train_out_stem_best "named as a run's best checkpoint" -- \
    "$BIN" train "$TEXT" --out "$WORK/m.best.safetensors" "${TINY[@]}"
unchanged train_out_best_kept "$RUN/best.safetensors" "$WORK/best.orig"
# Resumed from FILE.best.safetensors without --out: the set's latest is FILE.safetensors.
"$BIN" train "$TEXT" --out "$WORK/m.safetensors" "${TINY[@]}" >/dev/null 2>&1
if [[ -e $WORK/m.best.safetensors ]]; then
    cp "$WORK/m.best.safetensors" "$WORK/mbest.orig"
    "$BIN" train "$TEXT" --resume "$WORK/m.best.safetensors" --max-iters 6 --threads 1 --device cpu \
        >"$WORK/resume_best.log" 2>&1
    if grep -q "latest $WORK/m.safetensors" "$WORK/resume_best.log" && [[ ! -e $WORK/m.best.best.safetensors ]]; then
        pass resume_from_best_writes_its_latest
    else
        fail resume_from_best_writes_its_latest "$(tail -2 "$WORK/resume_best.log" | tr '\n' ' ')"
    fi
else
    fail resume_from_best_writes_its_latest "the run wrote no $WORK/m.best.safetensors"
fi

exit $((failures > 0))
