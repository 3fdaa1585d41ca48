#!/usr/bin/env bash
# The few-rows (decoding) Pattention has two CUDA paths: a scores kernel and a
# values kernel, and on sm_90 with TF_CUDA_FUSED_SITES=1 one kernel of a
# thread-block cluster per member. This runs test_cuda_ops's Pattention cases
# on each, so that both stay checked whichever is the default.
# Prints PASS/FAIL/SKIP lines; SKIP (exit 0) without a usable GPU.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_cuda_fused_sites
BUILD=${BUILD:-build}
tmp=$WORK

skip_without_gpu test_cuda_fused_sites
for fused in 0 1; do
    what=$([[ $fused == 1 ]] && echo "one cluster kernel (sm_90; the two kernels elsewhere)" || echo "two kernels")
    if TF_CUDA_FUSED_SITES=$fused "$BUILD/tests/test_cuda_ops" --only pattention >"$tmp/f$fused.log" 2>&1; then
        pass "pattention, few rows on $what: $(grep -c '^PASS' "$tmp/f$fused.log") cases against the cpu"
    else
        grep '^FAIL' "$tmp/f$fused.log" | head -5
        fail "pattention_fused_sites_$fused" "see the lines above (TF_CUDA_FUSED_SITES=$fused $BUILD/tests/test_cuda_ops --only pattention)"
    fi
done
exit $((failures > 0))
