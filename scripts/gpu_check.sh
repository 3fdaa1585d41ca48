#!/usr/bin/env bash
# One GPU machine call's worth of checks, in order of importance, each bounded
# so that a short lease still returns the first ones: the CUDA tests, the
# adapted and frozen models on CUDA, growth inside a run on CUDA, throughput
# against a baseline binary, profile coverage per arch, decoding, llm.c side
# by side, grown against scratch.
#
#   OUT=/results/folder [BASE_BIN=/path/to/older/tokenformer] scripts/gpu_check.sh
#
# Builds with CUDA first unless ./tokenformer and the CUDA test programs exist.
# A GPU machine without OpenBLAS/cJSON headers: build ahead on this side with
# scripts/devdeps.sh (the libraries into .devdeps) and
#   make BUILD=build/gpu OPT="-O3 -march=x86-64-v3" tokenformer \
#        build/gpu/tests/test_cuda_ops build/gpu/tests/test_cuda_contexts
# carry ./tokenformer, build/gpu/tests/test_cuda_* and .devdeps/lib (their
# libraries are found there), and set BUILD=build/gpu; llm.c likewise
# (scripts/bench_llmc.sh: GPU_CC=90 LLMC_BUILD_ONLY=1 LLMC_BUILD_DIR=DIR, then
# LLMC_DIR=DIR LLMC_BUILD_DIR=DIR here). Every section writes its output to $OUT
# (at most 8 files: what a device call brings back).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${OUT:?set OUT to a folder for the results}"
mkdir -p "$OUT"
BUILD_CMD=${BUILD_CMD:-make -j"$(nproc)"}
BUILD_DIR=${BUILD:-build/cuda}
[[ -d .devdeps/lib ]] && export LD_LIBRARY_PATH=$PWD/.devdeps/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
T0=$(date +%s)
step() { echo "[$(($(date +%s) - T0))s] $*"; }

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
git log -1 --format='%h %s' 2>/dev/null | cut -c1-100

step build
if [[ ! -x ./tokenformer || ! -x $BUILD_DIR/tests/test_cuda_ops ]]; then
    $BUILD_CMD tokenformer "$BUILD_DIR/tests/test_cuda_ops" "$BUILD_DIR/tests/test_cuda_contexts" \
        >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi

step "CUDA tests"
BUILD=$BUILD_DIR timeout 300 tests/run_cuda_tests.sh >"$OUT/cuda_tests.log" 2>&1
tail -1 "$OUT/cuda_tests.log"
grep '^FAIL' "$OUT/cuda_tests.log" | head -20

step "adapters, LoRA and frozen weights on CUDA; growth inside a run"
{
    TF_DEVICE=cuda timeout 120 bash tests/test_adapt_cli.sh
    TF_DEVICE=cuda timeout 60 bash tests/test_frozen_moments.sh
    TF_DEVICE=cuda timeout 60 bash tests/test_train_last.sh
    # A frozen LoRA / adapter step against the same checkpoint trained whole.
    ./tokenformer train data/input.txt --preset shakespeare --arch transformerpp --device cuda \
        --max-iters 1 --out "$OUT/.fb" >/dev/null 2>&1
    ./tokenformer grow --ckpt "$OUT/.fb/latest.safetensors" --lora-rank 8 --out "$OUT/.fb/lora.safetensors" >/dev/null
    ./tokenformer grow --ckpt "$OUT/.fb/latest.safetensors" --adapter-kv 64 --out "$OUT/.fb/ad.safetensors" >/dev/null
    for c in lora ad; do
        for f in "" --freeze-old; do
            echo "frozen_bench $c ${f:-whole} $(./tokenformer bench --ckpt "$OUT/.fb/$c.safetensors" $f \
                --device cuda --precision bf16 --steps 20 --warmup 3 2>&1 | tail -1)"
        done
    done
    rm -rf "$OUT/.fb"
    for spec in "tokenformer 25%:kv*2,50%:layers*2:stack,75%:d*2" \
        "transformerpp 30%:ffn*2,60%:layers+1:interleave:copy-zero-out,80%:d*2"; do
        set -- $spec
        for dev in cpu cuda; do
            echo "in_run_growth $1 $dev: $(timeout 60 ./tokenformer train data/input.txt --preset tiny --arch "$1" \
                --device $dev --max-iters 40 --eval-interval 40 --grow "$2" --out "$OUT/.ig" 2>&1 | tail -2 | head -1)"
            rm -rf "$OUT/.ig"
        done
    done
} >"$OUT/adapt_cuda.log" 2>&1
grep -c '^PASS' "$OUT/adapt_cuda.log"
grep '^FAIL\|^frozen_bench\|^in_run' "$OUT/adapt_cuda.log" | cut -c1-240 | head -20

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

step "decoding (bf16 and fp32; against BASE_BIN when given)"
for p in fp32 bf16; do
    for b in "${bins[@]}"; do
        echo "$p $b $($b bench --sample --preset shakespeare --device cuda --precision $p --max-new-tokens 1000 | tail -1)"
    done
done >"$OUT/decode.jsonl" 2>&1
# bf16's one-time cost at the first window restart (docs/BENCHMARKS.md): which
# steps take it (slowest_steps_ms), whether loading kernels up front moves it,
# and where the sampler's warm-up before the first token puts it (first_char_ms;
# against BASE_BIN when given)
for b in "${bins[@]}"; do
    for env in "" CUDA_MODULE_LOADING=EAGER; do
        echo "bf16-3000 $b ${env:-default} $(env $env $b bench --sample --preset shakespeare --device cuda \
            --precision bf16 --max-new-tokens 3000 | tail -1)"
    done
done >>"$OUT/decode.jsonl" 2>&1
# one line a run: what it measured, the fields an older binary lacks as '-'
grep '^bf16-3000' "$OUT/decode.jsonl" | python3 -c '
import json, sys
keys = ("chars_per_s", "first_char_ms", "chars_per_s_with_first", "chars_per_s_second_half",
        "step_ms_median", "restart_graph", "slowest_steps_ms")
for line in sys.stdin:
    head, _, js = line.partition("{")
    j = json.loads("{" + js) if js else {}
    print(head.strip(), " ".join("%s=%s" % (k, j.get(k, "-")) for k in keys))'

step "profile coverage"
for a in tokenformer transformer transformerpp; do
    echo "$a: $(./tokenformer bench --preset shakespeare --arch "$a" --precision bf16 --device cuda --steps 5 --profile 2>&1 | grep 'share timed')"
done | tee "$OUT/profile.txt"

if [[ -n ${LLMC_DIR:-} ]]; then
    step "llm.c"
    llmc_logs=$(mktemp -d) # its logs go into llmc.md: a device call brings back 8 files at most
    LOG_DIR=$llmc_logs timeout 400 scripts/bench_llmc.sh >"$OUT/llmc.md" 2>&1
    for f in "$llmc_logs"/*.log; do [[ -f $f ]] && { echo; echo "== $f (last 30 lines)"; tail -30 "$f"; }; done >>"$OUT/llmc.md"
    tail -8 "$OUT/llmc.md"
fi

step "grown against scratch"
timeout 300 scripts/bench_grown.sh shakespeare gpt2-124m >"$OUT/grown.md" 2>&1
tail -4 "$OUT/grown.md"
step done
