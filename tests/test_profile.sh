#!/usr/bin/env bash
# bench --profile times every op the model calls (the wrappers come from
# OPS_LIST in include/ops.h): on every arch the timed ops account for at
# least 97% of the profiled steps' wall time, and the baselines' linear
# projections and RMSNorm have rows of their own.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_profile

# profile ARCH: the table bench --profile prints (stderr) on a short CPU run.
profile() {
    "$BIN" bench --device cpu --threads 1 --arch "$1" --n-layer 2 --steps 3 --warmup 1 \
        --batch-size 2 --block-size 32 --profile 2>&1 >/dev/null
}

for arch in tokenformer transformer transformerpp; do
    out=$(profile "$arch")
    share=$(awk '/^step \(wall; share timed in ops\)/ {sub(/%$/, "", $NF); print $NF}' <<<"$out")
    if [[ -z "$share" ]]; then
        fail "profile_share_$arch" "no 'step (wall; share timed in ops)' line in: $(head -2 <<<"$out")"
    elif awk -v s="$share" 'BEGIN {exit !(s >= 97)}'; then
        pass "profile_share_$arch ($share%)"
    else
        fail "profile_share_$arch" "ops account for $share% of the step (want >= 97%)"
    fi
done

out=$(profile transformer)
for op in linear_forward linear_backward layernorm_backward adamw; do
    if grep -q "^$op" <<<"$out"; then pass "profile_transformer_has_$op"
    else fail "profile_transformer_has_$op" "no row for $op"; fi
done
out=$(profile transformerpp)
for op in rmsnorm_forward rmsnorm_backward; do
    if grep -q "^$op" <<<"$out"; then pass "profile_transformerpp_has_$op"
    else fail "profile_transformerpp_has_$op" "no row for $op"; fi
done

exit $((failures > 0))
