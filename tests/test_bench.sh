#!/usr/bin/env bash
# bench --ckpt: the model of a checkpoint (its shapes, its grown row segments)
# is what gets timed; bad uses are one-line errors; bench --sample's JSON line.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_bench

sample_text 60000 800 >"$WORK/text.txt"
"$BIN" train "$WORK/text.txt" --device cpu --max-iters 1 --eval-interval 1 --eval-iters 1 --n-layer 1 \
    --d-model 32 --n-head 2 --n-attn 16 --n-ffn 32 --block-size 16 --batch-size 2 --out "$WORK/run" >/dev/null 2>&1 ||
    fail bench_setup "train failed"
"$BIN" grow --ckpt "$WORK/run/latest.safetensors" --kv +8 --out "$WORK/grown.safetensors" >/dev/null 2>&1 ||
    fail bench_setup "grow failed"

json=$("$BIN" bench --ckpt "$WORK/grown.safetensors" --device cpu --steps 1 --warmup 0 2>/dev/null | tail -1)
params=$("$BIN" info --ckpt "$WORK/grown.safetensors" | sed -n 's/^parameters: \([0-9]*\) total.*/\1/p')
got=$(sed -n 's/.*"params": \([0-9]*\).*/\1/p' <<<"$json")
if [[ -n $params && $got == "$params" ]]; then pass bench_ckpt_params; else fail bench_ckpt_params "bench $got vs info $params"; fi
block=$(sed -n 's/.*"block": \([0-9]*\).*/\1/p' <<<"$json")
[[ $block == 16 ]] && pass bench_ckpt_block || fail bench_ckpt_block "block $block, the checkpoint's is 16"
tps=$(sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' <<<"$json")
awk -v t="${tps:-0}" 'BEGIN {exit !(t > 0)}' && pass bench_ckpt_runs || fail bench_ckpt_runs "no tokens/s in: $json"

# CPU time of the timed steps: positive, and on one thread no more than their wall time
json=$("$BIN" bench --ckpt "$WORK/grown.safetensors" --device cpu --threads 1 --steps 3 --warmup 1 2>/dev/null | tail -1)
ms=$(sed -n 's/.*"ms_per_step": \([0-9.]*\).*/\1/p' <<<"$json")
cpu_ms=$(sed -n 's/.*"cpu_ms_per_step": \([0-9.]*\).*/\1/p' <<<"$json")
awk -v c="${cpu_ms:-0}" -v w="${ms:-0}" 'BEGIN {exit !(c > 0 && c <= w * 1.05 + 0.05)}' && pass bench_cpu_time ||
    fail bench_cpu_time "cpu_ms_per_step '$cpu_ms', ms_per_step '$ms' in: $json"

# --freeze-old: the checkpoint frozen as train --resume --freeze-old freezes it (only the new rows train)
json=$("$BIN" bench --ckpt "$WORK/grown.safetensors" --freeze-old --device cpu --steps 1 --warmup 0 2>/dev/null | tail -1)
new=$("$BIN" info --ckpt "$WORK/grown.safetensors" | sed -n 's/^added by the latest grow (step [0-9]*): \([0-9]*\) parameters.*/\1/p')
got=$(sed -n 's/.*"trainable_params": \([0-9]*\).*/\1/p' <<<"$json")
all=$(sed -n 's/.*"trainable_params": \([0-9]*\).*/\1/p' <<<"$("$BIN" bench --ckpt "$WORK/grown.safetensors" --device cpu \
    --steps 1 --warmup 0 2>/dev/null | tail -1)")
[[ -n $new && $got == "$new" && $all == "$params" ]] && pass "bench_freeze_old_trains_new_rows ($got of $all)" ||
    fail bench_freeze_old_trains_new_rows "trainable $got with --freeze-old (info: $new), $all without (info: $params)"
for args in "--freeze-old" "--ckpt $WORK/run/latest.safetensors --freeze-old"; do
    err=$("$BIN" bench $args --device cpu --steps 1 2>&1 >/dev/null)
    rc=$?
    [[ $rc -ne 0 && $(wc -l <<<"$err") -eq 1 && $err == *--freeze-old* ]] && pass "bench_freeze_old_refused ($err)" ||
        fail bench_freeze_old_refused "bench $args: rc $rc: $err"
done

err=$("$BIN" bench --ckpt "$WORK/missing.safetensors" --device cpu 2>&1 >/dev/null)
rc=$?
[[ $rc -ne 0 && $(wc -l <<<"$err") -eq 1 && $err == *missing.safetensors* ]] && pass bench_ckpt_missing ||
    fail bench_ckpt_missing "rc $rc: $err"
err=$("$BIN" bench --ckpt "$WORK/grown.safetensors" --sample --device cpu 2>&1 >/dev/null)
rc=$?
[[ $rc -ne 0 && $err == *--ckpt* ]] && pass bench_ckpt_sample_refused || fail bench_ckpt_sample_refused "rc $rc: $err"

# bench --sample: one JSON line whose fields say how it decoded (cache, one step
# ahead or not), rates that are positive, the three slowest later steps and
# the median step, no more than the slowest
sample_fields() { # ARGS...: "cache lookahead chars_per_s second_half new_tokens" of one run
    "$BIN" bench --sample --device cpu --threads 1 --preset tiny --max-new-tokens 24 "$@" 2>/dev/null | tail -1 |
        "$PYTHON" -c 'import json, sys; j = json.loads(sys.stdin.read())
slow = j["slowest_steps_ms"]  # [step, ms] pairs after the first step, longest first
ok = len(slow) == 3 and all(0 < i < j["new_tokens"] and ms > 0 for i, ms in slow) and \
    [ms for _, ms in slow] == sorted((ms for _, ms in slow), reverse=True) and len({i for i, _ in slow}) == 3
ok = ok and 0 < j["step_ms_median"] <= slow[0][1] and j["restart_graph"] is False  # the CPU records nothing
print(j["cache"], j["lookahead"], j["chars_per_s"] > 0 and j["chars_per_s_second_half"] > 0 and ok, j["new_tokens"])'
}
for args in "" "--no-lookahead" "--no-cache"; do
    case $args in
    "") want="True True True 24" ;;
    --no-lookahead) want="True False True 24" ;;
    --no-cache) want="False False True 24" ;; # nothing to run ahead of without the cache
    esac
    got=$(sample_fields $args)
    [[ $got == "$want" ]] && pass "bench_sample_fields${args:+_${args#--}}" ||
        fail "bench_sample_fields${args:+_${args#--}}" "bench --sample $args: '$got', want '$want'"
done

exit $((failures > 0))
