#!/usr/bin/env bash
# The few-rows (decoding) Pattention has two CUDA paths: a scores kernel and a
# values kernel (the default, which test_cuda_ops checks), and on sm_90 with
# TF_CUDA_FUSED_SITES one kernel of a thread-block cluster per member. This
# runs test_cuda_ops's Pattention cases on the cluster kernel, under =strict:
# a call its plan admits and the GPU refuses stops the run, and its first
# launch says so on stderr (checked here), so the cases cannot pass on the two
# kernels alone. Calls whose key rows exceed shared memory (an fp32 SwiGLU FFN
# at d 384, 1152 rows) stay on the two kernels. Prints PASS/FAIL/SKIP lines;
# SKIP (exit 0) without a usable GPU or below sm_90.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_cuda_fused_sites
BUILD=${BUILD:-build}
tmp=$WORK

skip_without_gpu test_cuda_fused_sites
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
if [[ ! $cc =~ ^[0-9]+ ]] || (( ${cc%%.*} < 9 )); then
    skip test_cuda_fused_sites "the cluster kernel needs sm_90 or later (compute capability here: ${cc:-unknown})"
    exit 0
fi
ran='^TF_CUDA_FUSED_SITES=strict: few-rows Pattentions run on the cluster kernel'
if ! TF_CUDA_FUSED_SITES=strict "$BUILD/tests/test_cuda_ops" --only pattention >"$tmp/fused.log" 2>&1; then
    { grep '^FAIL' "$tmp/fused.log"; tail -2 "$tmp/fused.log"; } | head -7 # a stop under strict prints no FAIL line
    fail pattention_fused_sites "see the lines above (TF_CUDA_FUSED_SITES=strict $BUILD/tests/test_cuda_ops --only pattention)"
elif ! grep -q "$ran" "$tmp/fused.log"; then
    fail pattention_fused_sites "the cases passed but the cluster kernel never ran"
else
    pass "pattention, few rows on the cluster kernel: $(grep -c '^PASS' "$tmp/fused.log") cases against the cpu"
fi
exit $((failures > 0))
