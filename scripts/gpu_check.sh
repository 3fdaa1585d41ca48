#!/usr/bin/env bash
# One GPU machine call's worth of checks, in order of importance, each bounded
# so that a short lease still returns the first ones: the CUDA tests, the
# adapted models on CUDA, throughput against a baseline binary, profile
# coverage per arch, llm.c side by side, grown against scratch.
#
#   OUT=/results/folder [BASE_BIN=/path/to/older/tokenformer] scripts/gpu_check.sh
#
# Builds with CUDA first unless ./tokenformer and the CUDA test programs exist
# (on a machine without OpenBLAS/cJSON headers: scripts/devdeps.sh here, carry
# .devdeps, and BUILD_CMD="./.devdeps/devbuild.sh"). LLMC_DIR (a copy of
# llm.c) enables the llm.c table. Every section writes its output to $OUT.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${OUT:?set OUT to a folder for the results}"
mkdir -p "$OUT"
BUILD_CMD=${BUILD_CMD:-make -j"$(nproc)"}
BUILD_DIR=${BUILD:-build/cuda}
T0=$(date +%s)
step() { echo "[$(($(date +%s) - T0))s] $*"; }

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
git log -1 --format='%h %s' 2>/dev/null | cut -c1-100 | tee -a "$OUT/gpu.txt"

step build
if [[ ! -x ./tokenformer || ! -x $BUILD_DIR/tests/test_cuda_ops ]]; then
    $BUILD_CMD tokenformer "$BUILD_DIR/tests/test_cuda_ops" "$BUILD_DIR/tests/test_cuda_contexts" \
        >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi

step "CUDA tests"
BUILD=$BUILD_DIR timeout 300 tests/run_cuda_tests.sh >"$OUT/cuda_tests.log" 2>&1
tail -1 "$OUT/cuda_tests.log"
grep '^FAIL' "$OUT/cuda_tests.log" | head -20

step "adapters and LoRA on CUDA"
TF_DEVICE=cuda timeout 120 bash tests/test_adapt_cli.sh >"$OUT/adapt_cuda.log" 2>&1
grep -c '^PASS' "$OUT/adapt_cuda.log"
grep '^FAIL' "$OUT/adapt_cuda.log" | head

step "throughput (bf16; against BASE_BIN when given)"
bins=(./tokenformer)
[[ -n ${BASE_BIN:-} ]] && bins=("$BASE_BIN" ./tokenformer "$BASE_BIN" ./tokenformer)
for a in tokenformer transformer transformerpp; do
    for b in "${bins[@]}"; do
        echo "$b $($b bench --preset shakespeare --arch "$a" --precision bf16 --device cuda --steps 20 --warmup 3 | tail -1)"
    done
done >"$OUT/throughput.jsonl" 2>&1
for b in "${bins[@]}"; do
    echo "$b $($b bench --preset gpt2-124m --precision bf16 --device cuda --batch-size 16 --steps 10 --warmup 3 | tail -1)"
done >>"$OUT/throughput.jsonl" 2>&1

step "profile coverage"
for a in tokenformer transformer transformerpp; do
    echo "$a: $(./tokenformer bench --preset shakespeare --arch "$a" --precision bf16 --device cuda --steps 5 --profile 2>&1 | grep 'share timed')"
done | tee "$OUT/profile.txt"

if [[ -n ${LLMC_DIR:-} ]]; then
    step "llm.c"
    LOG_DIR=$OUT timeout 400 scripts/bench_llmc.sh >"$OUT/llmc.md" 2>&1
    tail -8 "$OUT/llmc.md"
fi

step "grown against scratch"
timeout 300 scripts/bench_grown.sh shakespeare gpt2-124m >"$OUT/grown.md" 2>&1
tail -4 "$OUT/grown.md"
step done
