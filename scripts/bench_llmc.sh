#!/usr/bin/env bash
# GPU benchmark against llm.c (Karpathy's train_gpt2.cu, the C/CUDA GPT-2
# trainer): the same GPT-2 124M shapes (12 layers, d 768, 12 heads, T 1024,
# MLP 4d), bf16, our vocabulary (65, padded to 128), random tokens, same GPU,
# one run. Prints one markdown table: tok/s and MFU of llm.c and of
# `tokenformer bench` (--arch transformer and --arch tokenformer) at each batch.
#
#   LLMC_DIR=/path/to/llm.c scripts/bench_llmc.sh
#
# LLMC_DIR is a checkout of llm.c (`git clone` of github.com/karpathy/llm.c;
# measured at commit f1e2ace; any local copy works). It is copied to a scratch
# folder and patched there, never in place:
#   - its random-init path (-e d12) fixes GPT-2's 50257-token vocabulary: set
#     to 65 (padded 128) so that both programs train the same model;
#   - CUDA 13 dropped the cudaMemAdvise overload taking a device number: the
#     one call (a managed-memory fallback) gets a cudaMemLocation instead;
#   - its fused classifier's tail loop (prepare_softmax_blockwide3) compares a
#     signed index, negative for most threads when V < 8 x 1024, as unsigned
#     against V: with V = 65 no thread leaves it (the first step never ended;
#     cuda-gdb showed fused_classifier_kernel5 running). A guard `i >= 0`
#     ends it for those threads, changing nothing for V >= 8192.
# It is built without cuDNN, MPI or NCCL for the GPU's compute capability and
# fed random tokens in its shard format (256 int32 header, magic 20240520,
# version 1, token count; then uint16 tokens). Sampling, HellaSwag,
# checkpoints are off and validation runs once at each end (outside the
# timing). llm.c times each step with CUDA events around forward, backward and
# AdamW; its tok/s here is B*T over the median step time after WARMUP steps.
#
# MFU = tok/s * (6P + 12 L d T) / peak for every row, P each program's own
# parameter count, peak the bf16 matmul rate measured in the same run.
# Env: LLMC_DIR (required), BATCHES (default "8 16"), STEPS (default 30),
#      WARMUP (steps left out of llm.c's median, default 5), LLMC_TIMEOUT (seconds
#      per llm.c run, default 180), LOG_DIR (keep llm.c's logs there), LLMC_BUILD_DIR
#      (keep the patched build there and reuse it), LLMC_BUILD_ONLY=1 (build into
#      LLMC_BUILD_DIR and stop: to build while the GPU does other work, or ahead
#      on a machine without a GPU with GPU_CC=90), GPU_CC (compute capability
#      to build for; default: the GPU's), PYTHON (python
#      with torch, for the peak; default: scripts/find_python.sh finds one), TF_BIN
#      (default ./tokenformer).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${LLMC_DIR:?set LLMC_DIR to a checkout of llm.c (see the header of this script)}"
[[ -f $LLMC_DIR/train_gpt2.cu ]] || { echo "bench_llmc: no train_gpt2.cu in LLMC_DIR=$LLMC_DIR" >&2; exit 1; }
BIN=${TF_BIN:-./tokenformer}
source scripts/find_python.sh
PY=${PY:-$PYTHON}
BATCHES=${BATCHES:-8 16}
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-5}
L=12 D=768 T=1024

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build_llmc() {
    if [[ -n ${LLMC_BUILD_DIR:-} && -x $LLMC_BUILD_DIR/train_gpt2cu ]]; then # built before
        cp -r "$LLMC_BUILD_DIR" "$work/llmc"
        return
    fi
    cp -r "$LLMC_DIR"/. "$work/llmc"
    local src="$work/llmc/train_gpt2.cu" utils="$work/llmc/llmc/cuda_utils.cuh"
    sed -i 's/model->config.vocab_size = 50257;/model->config.vocab_size = 65;/;
            s/model->config.padded_vocab_size = 50304;/model->config.padded_vocab_size = 128;/' "$src"
    grep -q 'vocab_size = 65;' "$src" || { echo "bench_llmc: could not patch the vocabulary" >&2; exit 1; }
    local cls="$work/llmc/llmc/fused_classifier.cuh"
    sed -i 's/while ((i+1)\*x128::size > V) {/while (i >= 0 \&\& (i+1)*x128::size > V) {/' "$cls"
    grep -q 'while (i >= 0 && (i+1)\*x128::size > V)' "$cls" ||
        { echo "bench_llmc: could not patch the classifier's tail loop" >&2; exit 1; }
    local cuda_major
    cuda_major=$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    if [[ ${cuda_major:-0} -ge 13 ]]; then
        sed -i 's/cudaMemAdviseSetPreferredLocation, cudaCpuDeviceId)/cudaMemAdviseSetPreferredLocation, cudaMemLocation{cudaMemLocationTypeHost, 0})/' "$utils"
    fi
    # It links NVML by its unversioned name, which only a driver's development
    # files provide: point the linker at the driver's libnvidia-ml.so.1.
    # Without a driver (building ahead on a machine with no GPU) an empty
    # library named libnvidia-ml.so.1 satisfies the link: without nvml.h llm.c
    # calls none of it, and the driver's library is found at run time.
    local nvml
    nvml=$(ldconfig -p | awk '/libnvidia-ml\.so\.1 /{print $NF; exit}')
    mkdir -p "$work/nvml"
    if [[ -n $nvml ]]; then
        ln -sf "$nvml" "$work/nvml/libnvidia-ml.so"
    else
        echo 'void tokenformer_nvml_placeholder(void) {}' >"$work/nvml/empty.c"
        cc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o "$work/nvml/libnvidia-ml.so" "$work/nvml/empty.c"
    fi
    local cc=${GPU_CC:-}
    [[ -n $cc ]] || cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
    make -C "$work/llmc" train_gpt2cu USE_CUDNN=0 NO_MULTI_GPU=1 NO_USE_MPI=1 \
        GPU_COMPUTE_CAPABILITY="$cc" NVCC_LDLIBS="-L$work/nvml" >"$work/llmc_build.log" 2>&1 ||
        { tail -20 "$work/llmc_build.log" >&2; echo "bench_llmc: llm.c did not build" >&2; exit 1; }
}

# Random tokens below 65 in llm.c's shard format.
write_shards() {
    "$PY" - "$work" <<'PYEOF'
import struct, sys, random
def shard(path, n, seed):
    rng = random.Random(seed)
    header = [20240520, 1, n] + [0] * 253
    with open(path, "wb") as f:
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{n}H", *(rng.randrange(65) for _ in range(n))))
shard(sys.argv[1] + "/train.bin", 4_000_000, 1)
shard(sys.argv[1] + "/val.bin", 200_000, 2)
PYEOF
}

measure_peak() { "$PY" scripts/bf16_peak.py; }

# LOG_DIR, when set, keeps llm.c's logs.
keep_log() { [[ -n ${LOG_DIR:-} ]] && cp "$1" "$LOG_DIR/" || true; }

# One llm.c run at batch B: "tok_per_s params".
run_llmc() {
    local B=$1 log="$work/llmc_b$1.log"
    # line-buffered, so that a run the timeout stops still shows where it was
    (cd "$work/llmc" && timeout "${LLMC_TIMEOUT:-180}" stdbuf -oL ./train_gpt2cu -i "$work/train.bin" -j "$work/val.bin" -e d12 -b "$B" -t $T \
        -x "$STEPS" -v 1000000 -m 1 -s 0 -h 0 -n 0 -y 0) >"$log" 2>&1 ||
        { keep_log "$log"; tail -20 "$log" >&2; echo "bench_llmc: llm.c failed or timed out at B=$B" >&2; exit 1; }
    keep_log "$log"
    local params ms
    params=$(sed -n 's/^num_parameters: \([0-9]*\).*/\1/p' "$log" | head -1)
    ms=$(sed -n 's/^step *\([0-9]*\)\/[0-9]* |.*| \([0-9.]*\) ms |.*/\1 \2/p' "$log" |
        awk -v w="$WARMUP" '$1 > w {print $2}' | sort -n |
        awk '{a[NR] = $1} END {if (NR == 0) exit 1; print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    [[ -n $params && -n $ms ]] || { echo "bench_llmc: could not read llm.c's step times ($log)" >&2; exit 1; }
    awk -v b="$B" -v t=$T -v ms="$ms" -v p="$params" 'BEGIN {printf "%.1f %d\n", b * t / ms * 1000, p}'
}

# One tokenformer run: "tok_per_s params".
run_ours() {
    local arch=$1 B=$2 extra=()
    [[ $arch == transformer ]] && extra=(--n-ffn $((4 * D)))
    "$BIN" bench --arch "$arch" --preset gpt2-124m --precision bf16 --device cuda --batch-size "$B" \
        --steps 20 --warmup 3 "${extra[@]}" | tail -1 |
        "$PY" -c 'import json, sys; j = json.loads(sys.stdin.read()); print(j["tokens_per_s"], j["params"])'
}

mfu() { awk -v tps="$1" -v p="$2" -v peak="$3" -v l=$L -v d=$D -v t=$T \
    'BEGIN {printf "%.1f%%", 100 * tps * (6 * p + 12 * l * d * t) / (peak * 1e12)}'; }

build_llmc
if [[ -n ${LLMC_BUILD_DIR:-} && ! -x $LLMC_BUILD_DIR/train_gpt2cu ]]; then
    rm -rf "$LLMC_BUILD_DIR" && cp -r "$work/llmc" "$LLMC_BUILD_DIR"
fi
[[ ${LLMC_BUILD_ONLY:-0} == 1 ]] && { echo "bench_llmc: built llm.c in $LLMC_BUILD_DIR"; exit 0; }
write_shards
peak=$(measure_peak)
echo "GPU: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); measured bf16 matmul peak: $peak TFLOP/s"
llmc_rev="local copy"
[[ -e $LLMC_DIR/.git ]] && llmc_rev=$(git -C "$LLMC_DIR" log -1 --format=%h)
echo "llm.c: $llmc_rev; tokenformer: $(git log -1 --format=%h 2>/dev/null || echo '?')"
echo
echo "| B | program | params | tok/s | MFU | vs llm.c |"
echo "|---|---|---|---|---|---|"
for B in $BATCHES; do
    read -r ltps lparams < <(run_llmc "$B")
    echo "| $B | llm.c train_gpt2cu | $lparams | $ltps | $(mfu "$ltps" "$lparams" "$peak") | 1.00x |"
    for arch in transformer tokenformer; do
        read -r tps params < <(run_ours "$arch" "$B")
        ratio=$(awk -v a="$tps" -v b="$ltps" 'BEGIN {printf "%.2fx", a / b}')
        echo "| $B | tokenformer --arch $arch | $params | $tps | $(mfu "$tps" "$params" "$peak") | $ratio |"
    done
done
