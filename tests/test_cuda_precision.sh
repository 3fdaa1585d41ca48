#!/usr/bin/env bash
# --precision on CUDA for the commands that only read a model: eval and
# sample (its KV-cache decode step, recorded and op by op) at bf16 against
# fp32, on a checkpoint trained on the CPU. Prints PASS/FAIL/SKIP lines; SKIP
# (exit 0) without a usable GPU.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_cuda_precision
tmp=$WORK

skip_without_gpu test_cuda_precision
tiny_checkpoint "$tmp/ckpt"

# val loss of the eval line (or the --full line's loss) on stdin
val_loss() { sed -n 's/.*val loss \([0-9.]*\).*/\1/p'; }
# close A B TOL: |A - B| <= TOL
close() { "$PYTHON" -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b)<=t else 1)" "$1" "$2" "$3" 2>/dev/null; }

for arch in tokenformer transformer transformerpp; do
    ck=$CKPT
    if [[ $arch != tokenformer ]]; then
        "$BIN" train "$TEXT" "${TINY[@]}" --arch "$arch" --out "$tmp/ckpt_$arch" >"$tmp/train_$arch.log" 2>&1 \
            || { fail "train_$arch" "$(tail -1 "$tmp/train_$arch.log")"; continue; }
        ck=$tmp/ckpt_$arch/latest.safetensors
    fi
    # eval: bf16 within 0.05 nats of fp32, and says which precision ran
    for p in fp32 bf16; do
        "$BIN" eval --ckpt "$ck" "$TEXT" --device cuda --precision "$p" --batches 4 --batch-size 4 \
            >"$tmp/eval_${arch}_$p" 2>"$tmp/eval_${arch}_$p.err" || fail "eval_${arch}_$p" "$(tail -1 "$tmp/eval_${arch}_$p.err")"
    done
    a=$(val_loss <"$tmp/eval_${arch}_fp32"); b=$(val_loss <"$tmp/eval_${arch}_bf16")
    [[ -n $a && -n $b ]] && close "$a" "$b" 0.05 && pass "eval_${arch}_bf16_close_to_fp32 ($a vs $b)" \
        || fail "eval_${arch}_bf16_close_to_fp32" "fp32 '$a' bf16 '$b'"
    grep -qx 'matmul precision: bf16' "$tmp/eval_${arch}_bf16.err" && pass "eval_${arch}_reports_bf16" \
        || fail "eval_${arch}_reports_bf16" "$(tr '\n' ' ' <"$tmp/eval_${arch}_bf16.err")"
    "$BIN" eval --ckpt "$ck" "$TEXT" --device cuda --precision bf16 --full --batch-size 8 >"$tmp/full_$arch" 2>&1 \
        && grep -q '^full val loss' "$tmp/full_$arch" && pass "eval_full_${arch}_bf16" \
        || fail "eval_full_${arch}_bf16" "$(tail -1 "$tmp/full_$arch")"

    # sample: the recorded decode step and op by op give the same text at
    # bf16 (the same kernels); the cache and a batch of streams run
    s=(--ckpt "$ck" --device cuda --precision bf16 --max-new-tokens 60 --seed 5 --temperature 0)
    "$BIN" sample "${s[@]}" >"$tmp/s_graph_$arch" 2>"$tmp/s_graph_$arch.err" || fail "sample_${arch}_bf16" "$(tail -1 "$tmp/s_graph_$arch.err")"
    "$BIN" sample "${s[@]}" --no-graph >"$tmp/s_eager_$arch" 2>"$tmp/s_eager_$arch.err" || fail "sample_${arch}_bf16_no_graph" "$(tail -1 "$tmp/s_eager_$arch.err")"
    [[ $(wc -m <"$tmp/s_graph_$arch") -ge 61 ]] && cmp -s "$tmp/s_graph_$arch" "$tmp/s_eager_$arch" \
        && pass "sample_${arch}_bf16_recorded_same_as_op_by_op" \
        || fail "sample_${arch}_bf16_recorded_same_as_op_by_op" "$(head -c 200 "$tmp/s_graph_$arch" | tr '\n' ' ') | $(head -c 200 "$tmp/s_eager_$arch" | tr '\n' ' ')"
    "$BIN" sample --ckpt "$ck" --device cuda --precision bf16 --max-new-tokens 30 --num-samples 3 >"$tmp/s_batch_$arch" 2>&1 \
        && [[ $(grep -c '^---------------$' "$tmp/s_batch_$arch") -eq 3 ]] && pass "sample_${arch}_bf16_batch" \
        || fail "sample_${arch}_bf16_batch" "$(tail -1 "$tmp/s_batch_$arch")"
    "$BIN" sample --ckpt "$ck" --device cuda --precision bf16 --max-new-tokens 30 --no-cache >"$tmp/s_nocache_$arch" 2>&1 \
        && pass "sample_${arch}_bf16_no_cache" || fail "sample_${arch}_bf16_no_cache" "$(tail -1 "$tmp/s_nocache_$arch")"
done

exit $((failures > 0))
