#!/usr/bin/env bash
# The few-rows (decoding) Pattention has two CUDA paths: on sm_90 one kernel
# of a thread-block cluster per member, elsewhere (and with
# TF_CUDA_FUSED_SITES=0) a scores kernel and a values kernel. test_cuda_ops
# checks the path the GPU takes by default; this runs its Pattention cases
# again on the two kernels, so that both stay checked on an sm_90 GPU.
# Prints PASS/FAIL/SKIP lines; SKIP (exit 0) without a usable GPU.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_cuda_fused_sites
BUILD=${BUILD:-build}
tmp=$WORK

if ! "$BIN" bench --device cuda --steps 1 --warmup 0 --n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 8 --block-size 8 --batch-size 2 >/dev/null 2>"$tmp/cuda_probe"; then
    skip test_cuda_fused_sites "no usable GPU ($(head -1 "$tmp/cuda_probe"))"
    exit 0
fi
if TF_CUDA_FUSED_SITES=0 "$BUILD/tests/test_cuda_ops" --only pattention >"$tmp/two.log" 2>&1; then
    pass "pattention on the two-kernel path: $(grep -c '^PASS' "$tmp/two.log") cases against the cpu"
else
    grep '^FAIL' "$tmp/two.log" | head -5
    fail two_kernel_pattention "see the lines above (TF_CUDA_FUSED_SITES=0 $BUILD/tests/test_cuda_ops --only pattention)"
fi
exit $((failures > 0))
