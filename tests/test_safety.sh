#!/usr/bin/env bash
# No writer destroys another run's file, the CPU does not spin by default, and
# error messages say what to do (issue 23): grow --out guards, one lock per
# output set, OpenMP's wait policy, launchers without GPUs, message wording.
#
# Environment: TF_BIN (binary under test, default ./tokenformer).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" safety

RUN=$WORK/run
tiny_checkpoint "$RUN" # TEXT, TINY, CKPT
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
# Resumed from FILE.best.safetensors without --out: the set's latest is FILE.safetensors
# (--force: that latest is ahead of the best, which a resumed run replaces only when told).
"$BIN" train "$TEXT" --out "$WORK/m.safetensors" "${TINY[@]}" >/dev/null 2>&1
if [[ -e $WORK/m.best.safetensors ]]; then
    cp "$WORK/m.best.safetensors" "$WORK/mbest.orig"
    "$BIN" train "$TEXT" --resume "$WORK/m.best.safetensors" --max-iters 6 --threads 1 --device cpu --force \
        >"$WORK/resume_best.log" 2>&1
    if grep -q "latest $WORK/m.safetensors" "$WORK/resume_best.log" && [[ ! -e $WORK/m.best.best.safetensors ]]; then
        pass resume_from_best_writes_its_latest
    else
        fail resume_from_best_writes_its_latest "$(tail -2 "$WORK/resume_best.log" | tr '\n' ' ')"
    fi
else
    fail resume_from_best_writes_its_latest "the run wrote no $WORK/m.best.safetensors"
fi

# ------------------------------------------------------------ OpenMP spins briefly by default
# libgomp prints its settings once per start: the last GOMP_SPINCOUNT line is
# the one the run used (0: passive; 300000 is libgomp's spinning default; the
# binary's own default is 1000).
spincount() {
    OMP_DISPLAY_ENV=verbose "$@" "$BIN" info --preset tiny 2>&1 >/dev/null | grep "GOMP_SPINCOUNT" | tail -1 |
        tr -dc '0-9'
}
got=$(spincount env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
[[ $got == 1000 ]] && pass openmp_bounded_spin_by_default ||
    fail openmp_bounded_spin_by_default "GOMP_SPINCOUNT '$got', expected 1000"
got=$(spincount env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active)
[[ -n $got && $got != 0 ]] && pass openmp_user_policy_kept || fail openmp_user_policy_kept "OMP_WAIT_POLICY=active ran with spin count '$got'"
got=$(spincount env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=1234)
[[ $got == 1234 ]] && pass openmp_user_spincount_kept || fail openmp_user_spincount_kept "spin count '$got', expected 1234"

# ------------------------------------------------------------ launchers and GPUs
# TF_GPU_DEV_ROOT points the GPU lookup at an empty folder: a machine without GPUs.
NOGPU=(env TF_GPU_DEV_ROOT="$WORK/nodev")
DP_RE="data-parallel training \(%s, world 2\) needs one GPU per process, and no GPU was found"
refused dp_torchrun_without_gpu "$(printf "$DP_RE" torchrun)" -- "${NOGPU[@]}" WORLD_SIZE=2 RANK=0 LOCAL_RANK=0 \
    "$BIN" train "$TEXT" --out "$WORK/dp" "${TINY[@]/cpu/auto}"
refused dp_mpirun_device_cpu_without_gpu "$(printf "$DP_RE" mpirun)" -- "${NOGPU[@]}" OMPI_COMM_WORLD_SIZE=2 \
    OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_LOCAL_RANK=1 "$BIN" train "$TEXT" --out "$WORK/dp" "${TINY[@]}"
refused dp_srun_without_gpu "$(printf "$DP_RE" srun)" -- "${NOGPU[@]}" SLURM_NTASKS=2 SLURM_PROCID=0 SLURM_LOCALID=0 \
    "$BIN" train "$TEXT" --out "$WORK/dp" "${TINY[@]}"
if [[ -e /dev/nvidiactl || -e /dev/nvidia0 || -e /dev/dxg || -e /proc/driver/nvidia ]]; then
    skip device_cuda_without_gpu "this machine has a GPU"
else
    refused device_cuda_without_gpu "^tokenformer: error: --device cuda: no GPU found" -- \
        "$BIN" sample --ckpt "$CKPT" --device cuda --max-new-tokens 2
fi

# ------------------------------------------------------------ messages that say what to do
printf 'abc\xff\xfedef and some more text here\n' >"$WORK/latin.txt"
refused invalid_utf8_suggests_bytes "invalid UTF-8 at byte offset 3.*--tokenizer bytes" -- \
    "$BIN" train "$WORK/latin.txt" --out "$WORK/u" "${TINY[@]}"
head -c 150 "$TEXT" >"$WORK/short.txt"
refused short_text_suggests_block_size "too short: the val split has 15 characters.*--block-size 14 or less" -- \
    "$BIN" train "$WORK/short.txt" --out "$WORK/u" "${TINY[@]}"
"$BIN" grow --ckpt "$CKPT" --out "$WORK/two.safetensors" --add-layers 2 --threads 1 >/dev/null 2>&1
refused grow_layers_reversed "the range 1-0 is reversed; write it low to high \(0-1\)" -- \
    "$BIN" grow --ckpt "$WORK/two.safetensors" --out "$WORK/rev.safetensors" --kv +4 --layers 1-0 --threads 1

# ------------------------------------------------------------ smaller wording
"$BIN" grow --ckpt "$CKPT" --out "$WORK/shrunk.safetensors" --kv -2 --data "$TEXT" --threads 1 >"$WORK/shrink.log" 2>&1
if grep -q "^removed rows: attention -2, ffn -8" "$WORK/shrink.log" && ! grep -q "added FFN units\|new units: -" "$WORK/shrink.log"; then
    pass grow_remove_wording
else
    fail grow_remove_wording "$(tr '\n' '|' <"$WORK/shrink.log")"
fi
"$BIN" grow --ckpt "$CKPT" --out "$WORK/one.safetensors" --add-layers 1 --threads 1 >"$WORK/one.log" 2>&1
grep -q "^added 1 layer (" "$WORK/one.log" && pass grow_one_layer_singular || fail grow_one_layer_singular "$(grep added "$WORK/one.log")"

"$BIN" train "$TEXT" --resume "$WORK/one.safetensors" --max-iters 6 --threads 1 --device cpu >"$WORK/rg.log" 2>&1
if grep -q "^resumed from" "$WORK/rg.log" && ! grep -q "^resumed from.*inf" "$WORK/rg.log"; then
    pass resume_grown_no_inf
else
    fail resume_grown_no_inf "$(grep -m1 resumed "$WORK/rg.log")"
fi

"$BIN" train "$TEXT" --out "$WORK/bytes" --tokenizer bytes "${TINY[@]}" >/dev/null 2>&1
"$BIN" eval --ckpt "$WORK/bytes/latest.safetensors" "$TEXT" --batches 1 --threads 1 --device cpu >"$WORK/be.log" 2>&1
grep -q "bits/byte" "$WORK/be.log" && ! grep -q "bits/char" "$WORK/be.log" && pass eval_bytes_says_bits_per_byte \
    || fail eval_bytes_says_bits_per_byte "$(head -1 "$WORK/be.log")"
"$BIN" sample --help | grep -q "need not be valid UTF-8" && pass sample_help_bytes_not_utf8 \
    || fail sample_help_bytes_not_utf8 "sample --help does not say byte models may print non-UTF-8"

"$BIN" train "$TEXT" --out "$WORK/w" "${TINY[@]}" --stop-at 9 >/dev/null 2>"$WORK/stop.err"
grep -q "warning: --stop-at 9 is not before the schedule's end (--max-iters 4)" "$WORK/stop.err" &&
    pass stop_at_past_max_iters_warns || fail stop_at_past_max_iters_warns "$(tr '\n' '|' <"$WORK/stop.err")"
"$BIN" sample --ckpt "$CKPT" --device cpu --threads 1000 --max-new-tokens 2 >/dev/null 2>"$WORK/thr.err"
[[ $(grep -c "warning: --threads 1000: this machine has" "$WORK/thr.err") -eq 1 ]] &&
    pass threads_past_cores_warns || fail threads_past_cores_warns "$(tr '\n' '|' <"$WORK/thr.err")"

if command -v gnuplot >/dev/null 2>&1; then
    "$BIN" train "$TEXT" --out "$WORK/pl" "${TINY[@]}" --log "$WORK/pl.csv" >/dev/null 2>&1
    scripts/plot.sh "$WORK/pl.csv" -o "$WORK/missing/dir/x" >"$WORK/plot.out" 2>"$WORK/plot.err"
    rc=$?
    if [[ $rc -ne 0 && ! -s $WORK/plot.out ]] && grep -q "not a writable directory" "$WORK/plot.err"; then
        pass plot_missing_dir_refused
    else
        fail plot_missing_dir_refused "status $rc, $(wc -c <"$WORK/plot.out") bytes on stdout: $(head -c 200 "$WORK/plot.err")"
    fi
else
    skip plot_missing_dir_refused "gnuplot not installed"
fi

# ------------------------------------------------------------ sample: streams in bounded batches
# 400 streams of a block-256 model took 630 MiB of activations as one batch;
# in batches of 64 they fit in a 500 MB address space. (Sanitizers reserve
# terabytes of address space: not under ASan.)
if [[ $SLOW -eq 1 ]]; then
    skip sample_streams_bounded "address-space limit not usable under sanitizers"
else
    "$BIN" train "$TEXT" --out "$WORK/b256" --n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 16 --block-size 256 \
        --max-iters 0 --eval-iters 1 --batch-size 1 --threads 1 --device cpu >/dev/null 2>&1
    (ulimit -v 500000; "$BIN" sample --ckpt "$WORK/b256/latest.safetensors" --num-samples 400 --max-new-tokens 1 \
        --device cpu --threads 1 >"$WORK/many.out" 2>"$WORK/many.err")
    n=$(grep -c -- "^---------------$" "$WORK/many.out")
    [[ $n -eq 400 ]] && pass sample_streams_bounded || fail sample_streams_bounded "$n of 400 streams: $(head -c 200 "$WORK/many.err")"
    # Stream i's text does not depend on the batching: the first 3 of 130 are the 3 of --num-samples 3.
    "$BIN" sample --ckpt "$CKPT" --num-samples 130 --max-new-tokens 12 --device cpu --threads 1 >"$WORK/s130" 2>/dev/null
    "$BIN" sample --ckpt "$CKPT" --num-samples 3 --max-new-tokens 12 --device cpu --threads 1 >"$WORK/s3" 2>/dev/null
    if [[ -s $WORK/s3 ]] && cmp -s "$WORK/s3" <(head -c "$(wc -c <"$WORK/s3")" "$WORK/s130"); then
        pass sample_batches_same_streams
    else
        fail sample_batches_same_streams "the first streams of 130 differ from --num-samples 3"
    fi
fi

exit $((failures > 0))
