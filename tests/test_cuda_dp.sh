#!/usr/bin/env bash
# Data parallel on 2 GPUs (docs/DISTRIBUTED.md): 2 ranks at batch B follow the
# loss curve of 1 GPU at batch 2B and of 1 GPU with --grad-accum 2 (bf16,
# within precision_check.sh's tolerance); a 2-rank checkpoint resumes on 1
# GPU; a killed rank stops the other within the bound, leaving the latest
# checkpoint intact. SKIP with fewer than 2 GPUs.
# Environment: TF_BIN (./tokenformer), TOL (0.03 nats), ITERS (200).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_cuda_dp
TOL=${TOL:-0.03}
ITERS=${ITERS:-200}
tmp=$WORK # lib.sh removes it, and kills the processes in PIDS, on exit

n_gpus=$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU')
if [[ ${n_gpus:-0} -lt 2 ]]; then
    skip test_cuda_dp "needs 2 GPUs, found ${n_gpus:-0}"
    exit 0
fi
[[ -f data/input.txt ]] || make -s data
PORT=$((21000 + $$ % 4000 * 2))

CFG=(data/input.txt --device cuda --precision bf16 --n-layer 2 --d-model 128 --n-head 4 --n-attn 64
     --n-ffn 256 --block-size 64 --dropout 0 --max-iters "$ITERS" --log-interval 10 --eval-interval 100
     --eval-iters 4)

# launch2 OUT ARGS...: two ranks, with torchrun when present, else by hand.
launch2() {
    local out=$1
    shift
    if command -v torchrun >/dev/null; then
        timeout 600 torchrun --standalone --nproc_per_node=2 --no-python "$BIN" train "$@" \
            >"$out.log" 2>"$out.err"
    else
        local r pids=()
        for r in 0 1; do
            RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
                timeout 600 "$BIN" train "$@" >"$out.$r.log" 2>"$out.$r.err" &
            pids+=($!)
        done
        local st=0
        for r in 0 1; do wait "${pids[$r]}" || st=1; done
        cat "$out.0.log" >"$out.log"
        cat "$out.0.err" "$out.1.err" >"$out.err"
        return $st
    fi
}
losses() { awk -F, '$9 == "progress" { print $5 }' "$1"; }
# close A B: as many losses, each within TOL
close() {
    paste -d' ' <(losses "$1") <(losses "$2") | awk -v tol="$TOL" '
        NF != 2 { bad = 1 } NF == 2 { d = $1 - $2; if (d < 0) d = -d; if (d > worst) worst = d; n++ }
        END { printf "largest gap %.4f over %d rows", worst, n; exit (bad || n < 5 || worst > tol) }'
}

CUDA_VISIBLE_DEVICES=0 timeout 600 "$BIN" train "${CFG[@]}" --batch-size 16 --out "$tmp/one" --log "$tmp/one.csv" \
    >"$tmp/one.log" 2>&1 || fail dp_one_gpu_batch16_run "$(tail -1 "$tmp/one.log")"
CUDA_VISIBLE_DEVICES=0 timeout 600 "$BIN" train "${CFG[@]}" --batch-size 8 --grad-accum 2 --out "$tmp/acc" \
    --log "$tmp/acc.csv" >"$tmp/acc.log" 2>&1 || fail dp_one_gpu_grad_accum_run "$(tail -1 "$tmp/acc.log")"
if launch2 "$tmp/dp" "${CFG[@]}" --batch-size 8 --out "$tmp/dp" --log "$tmp/dp.csv"; then
    grep -q "(2 ranks x 1 micro-batch of 8)" "$tmp/dp.log" && pass "dp: 2 ranks started" ||
        fail dp_two_ranks_started "header: $(grep '^data:' "$tmp/dp.log")"
    if msg=$(close "$tmp/one.csv" "$tmp/dp.csv"); then pass "dp: 2 GPUs x 8 = 1 GPU x 16 ($msg)"
    else fail dp_matches_one_gpu_batch16 "2 GPUs x 8 vs 1 GPU x 16: $msg"; fi
    if msg=$(close "$tmp/acc.csv" "$tmp/dp.csv"); then pass "dp: 2 GPUs x 8 = 1 GPU --grad-accum 2 ($msg)"
    else fail dp_matches_grad_accum "2 GPUs x 8 vs --grad-accum 2: $msg"; fi
    # A checkpoint of 2 ranks continues on 1.
    if CUDA_VISIBLE_DEVICES=0 timeout 600 "$BIN" train data/input.txt --device cuda --resume "$tmp/dp/latest.safetensors" \
        --max-iters $((ITERS + 20)) >"$tmp/res.log" 2>&1; then pass "dp: 2-rank checkpoint resumes on 1 GPU"
    else fail dp_checkpoint_resumes_on_one_gpu "$(tail -1 "$tmp/res.log")"; fi
else
    fail dp_two_rank_run "$(grep -v '^W' "$tmp/dp.err" | tail -3 | tr '\n' ' ')"
fi

# A rank killed mid-run: the other exits within the bound with one line;
# the latest checkpoint (written at step 0) stays loadable.
mkdir -p "$tmp/kill"
for r in 0 1; do
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((PORT + 2)) \
        "$BIN" train "${CFG[@]}" --batch-size 8 --max-iters 1000000 --eval-interval 1000000 \
        --out "$tmp/kill" >"$tmp/kill.$r.log" 2>"$tmp/kill.$r.err" &
    PIDS+=($!)
done
for _ in $(seq 240); do grep -q '^iter ' "$tmp/kill.0.log" 2>/dev/null && break; sleep 0.5; done
kill -9 "${PIDS[1]}"
t0=$(date +%s)
for _ in $(seq 120); do kill -0 "${PIDS[0]}" 2>/dev/null || break; sleep 0.5; done
kill -9 "${PIDS[0]}" 2>/dev/null # still running after 60 s: the check below fails
wait "${PIDS[0]}"
st=$? took=$(($(date +%s) - t0))
if [[ $st -ne 0 && $took -le 30 ]] && grep -q "rank 1 went away" "$tmp/kill.0.err" &&
    "$BIN" info "$tmp/kill/latest.safetensors" >/dev/null 2>&1; then
    pass "dp: killed rank 1 stops rank 0 in ${took}s, checkpoint intact"
else
    fail dp_killed_rank_stops_peer "status $st after ${took}s: $(tail -2 "$tmp/kill.0.err" | tr '\n' ' ')"
fi
exit $((failures > 0))
