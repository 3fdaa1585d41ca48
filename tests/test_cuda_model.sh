#!/usr/bin/env bash
# The whole model on CUDA: loss and gradients against the PyTorch reference,
# 200 training steps tracking the CPU run (100 per baseline arch), and
# checkpoints crossing devices.
# Prints PASS/FAIL/SKIP lines; SKIP (exit 0) without a usable GPU.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_cuda_model
BUILD=${BUILD:-build}
tmp=$WORK

skip_without_gpu test_cuda_model
[[ -f data/input.txt ]] || make -s data

# 1. loss and every gradient against PyTorch (float64 reference), on cuda
if TF_DEVICE=cuda "$BUILD/tests/test_model_torch" >"$tmp/torch.log" 2>&1; then
    pass "cuda model vs torch: $(grep -c '^PASS' "$tmp/torch.log") loss/gradient checks"
else
    grep '^FAIL' "$tmp/torch.log" | head -5
    fail cuda_model_vs_torch "see the lines above"
fi

# losses_track CPU_CSV CUDA_CSV EVALS DROP: both runs' --log tables have EVALS
# evaluation rows at the same steps, their train and val losses within 0.02 at
# each, and the CPU run's val loss fell by more than DROP from the first
# evaluation to the last.
losses_track() {
    "$PYTHON" - "$@" <<'PYEOF'
import csv, sys
def evals(p):
    return [(int(r["iter"]), float(r["train_loss"]), float(r["val_loss"]))
            for r in csv.DictReader(open(p)) if r["event"] == "eval"]
a, b = evals(sys.argv[1]), evals(sys.argv[2])
n, drop = int(sys.argv[3]), float(sys.argv[4])
print("# cpu ", a); print("# cuda", b)
ok = len(a) == len(b) == n and all(x[0] == y[0] and abs(x[2] - y[2]) <= 0.02 and abs(x[1] - y[1]) <= 0.02 for x, y in zip(a, b))
ok = ok and a[-1][2] < a[0][2] - drop
sys.exit(0 if ok else 1)
PYEOF
}

# 2. 200 steps of tiny on tiny shakespeare: CPU and CUDA losses track
common=(--max-iters 200 --eval-interval 50 --eval-iters 5 --log-interval 50 --seed 7)
"$BIN" train data/input.txt "${common[@]}" --device cpu --threads 4 --out "$tmp/cpu" --log "$tmp/cpu.csv" >"$tmp/cpu.log" 2>&1 || fail cpu_training_run "$(tail -1 "$tmp/cpu.log")"
"$BIN" train data/input.txt "${common[@]}" --device cuda --out "$tmp/cuda" --log "$tmp/cuda.csv" >"$tmp/cuda.log" 2>&1 || fail cuda_training_run "$(tail -1 "$tmp/cuda.log")"
losses_track "$tmp/cpu.csv" "$tmp/cuda.csv" 5 1.0 && pass "200 steps: cuda val losses track cpu (|diff| <= 0.02)" \
    || fail cuda_losses_track_cpu "200 steps: cuda val losses diverge from cpu"

# same_loss A B: two losses within 1e-5 relative
same_loss() { "$PYTHON" -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if abs(a-b)<=1e-5*abs(a) else 1)" "$1" "$2" 2>/dev/null; }
# eval loss of checkpoint $1 on device $2, on fixed batches
ev() { "$BIN" eval --ckpt "$1" --device "$2" --batches 4 --seed 3 | sed -n 's/.*val loss \([0-9.]*\).*/\1/p'; }

# 2b. the baseline archs: 100 steps each on both devices, losses track
for arch in transformer transformerpp; do
    a=(--max-iters 100 --eval-interval 50 --eval-iters 5 --log-interval 50 --seed 7 --arch "$arch")
    "$BIN" train data/input.txt "${a[@]}" --device cpu --threads 4 --out "$tmp/cpu_$arch" --log "$tmp/cpu_$arch.csv" >"$tmp/cpu_$arch.log" 2>&1 || fail "cpu_training_run_$arch" "$(tail -1 "$tmp/cpu_$arch.log")"
    "$BIN" train data/input.txt "${a[@]}" --device cuda --out "$tmp/cuda_$arch" --log "$tmp/cuda_$arch.csv" >"$tmp/cuda_$arch.log" 2>&1 || fail "cuda_training_run_$arch" "$(tail -1 "$tmp/cuda_$arch.log")"
    losses_track "$tmp/cpu_$arch.csv" "$tmp/cuda_$arch.csv" 3 0.5 \
        && pass "--arch $arch, 100 steps: cuda losses track cpu (|diff| <= 0.02)" \
        || fail "cuda_losses_track_cpu_$arch" "100 steps: cuda losses diverge from cpu"
    e1=$(ev "$tmp/cuda_$arch/latest.safetensors" cpu); e2=$(ev "$tmp/cuda_$arch/latest.safetensors" cuda)
    same_loss "$e1" "$e2" && pass "--arch $arch cuda checkpoint: eval on cpu $e1 = on cuda $e2" \
        || fail "cuda_checkpoint_eval_$arch" "on cpu $e1 vs on cuda $e2"
done

# 3. checkpoints cross devices: same loss on fixed batches, resume and sample either way
c1=$(ev "$tmp/cuda/latest.safetensors" cpu); c2=$(ev "$tmp/cuda/latest.safetensors" cuda)
same_loss "$c1" "$c2" && pass "cuda checkpoint: eval on cpu $c1 = on cuda $c2" \
    || fail cuda_checkpoint_eval "on cpu $c1 vs on cuda $c2"
"$BIN" train data/input.txt --resume "$tmp/cuda/latest.safetensors" --max-iters 220 --device cpu --out "$tmp/cpu_resumed" >/dev/null 2>&1 \
    && pass "resume a cuda checkpoint on cpu" || fail resume_cuda_checkpoint_on_cpu "exit status $?"
"$BIN" train data/input.txt --resume "$tmp/cpu/latest.safetensors" --max-iters 220 --device cuda --out "$tmp/cuda_resumed" >/dev/null 2>&1 \
    && pass "resume a cpu checkpoint on cuda" || fail resume_cpu_checkpoint_on_cuda "exit status $?"
n=$("$BIN" sample --ckpt "$tmp/cpu/latest.safetensors" --device cuda --max-new-tokens 100 --prompt "ROMEO:" | "$PYTHON" -c "import sys; print(len(sys.stdin.buffer.read().decode()))")
[[ $n -eq 107 ]] && pass "sample --device cuda emits the prompt + 100 characters" \
    || fail cuda_sample_length "$n characters, expected 107"

# 4. sampling with the KV cache on cuda: greedy output equal to the no-cache
# path over the first block_size (64) positions; a batch of streams
ck=$tmp/cpu/latest.safetensors
c=$("$BIN" sample --ckpt "$ck" --device cuda --temperature 0 --max-new-tokens 64 --prompt R)
n=$("$BIN" sample --ckpt "$ck" --device cuda --temperature 0 --max-new-tokens 64 --prompt R --no-cache)
[[ -n $c && "$c" == "$n" ]] && pass "cuda sample: KV cache greedy equals no-cache" \
    || fail cuda_sample_cache_equals_no_cache "greedy '$c' with the cache, '$n' without"
seps=$("$BIN" sample --ckpt "$ck" --device cuda --max-new-tokens 300 --prompt R --num-samples 8 | grep -c '^---------------$')
[[ $seps -eq 8 ]] && pass "cuda sample: --num-samples 8 past block_size" \
    || fail cuda_sample_num_samples "--num-samples 8 printed $seps separators"
exit $((failures > 0))
