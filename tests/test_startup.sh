#!/usr/bin/env bash
# Start-up of the CUDA build: the binary links no GPU library (ldd), and
# commands that use no GPU never load cuBLAS, cuBLASLt or NCCL (LD_DEBUG=libs
# lists every library the dynamic linker maps, dlopen included). With a GPU,
# --device auto picks it, loads cuBLAS and says why. SKIP for a CPU-only build.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" test_startup

# The loader names the libraries it opens: a CUDA build carries their names.
if ! grep -q "libcublasLt.so" "$BIN"; then
    skip startup "a CPU-only build (no GPU library to load lazily)"
    exit 0
fi

# ------------------------------------------------------------- linked libs
linked=$(ldd "$BIN" 2>&1)
if grep -Eq 'libcublas|libcudart|libnccl|libcuda\.so' <<<"$linked"; then
    fail startup_ldd "the binary links a GPU library: $(grep -E 'libcublas|libcudart|libnccl|libcuda\.so' <<<"$linked" | tr -s ' \t\n' ' ')"
else
    pass startup_ldd
fi

# ------------------------------------------------- commands that use no GPU
TEXT=$WORK/text.txt
sample_text 20000 400 >"$TEXT"
TINY=(--n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 16 --block-size 16 --batch-size 4
      --max-iters 2 --eval-interval 2 --eval-iters 1 --threads 1)
CKPT=$WORK/ckpt/latest.safetensors

# gpu_libs_loaded NAME CMD...: the GPU libraries CMD made the dynamic linker
# look for, one per line (none: empty); CMD's own status must be 0 and the
# linker's log must show CMD ran under LD_DEBUG.
gpu_libs_loaded() {
    local name=$1
    shift
    local log=$WORK/$name.ld
    if ! LD_DEBUG=libs LD_DEBUG_OUTPUT="$log" timeout 120 "$@" >"$WORK/$name.out" 2>&1; then
        echo "COMMAND-FAILED: $(tail -1 "$WORK/$name.out")"
        return
    fi
    # No record of CMD itself: LD_DEBUG was ignored, so "none loaded" would prove nothing.
    if ! cat "$log".* 2>/dev/null | grep -qF "initialize program: $1"; then
        echo "NO-LD-DEBUG: the dynamic linker recorded nothing for $1"
        return
    fi
    cat "$log".* 2>/dev/null | grep -oE 'find library=(libcublas[A-Za-z]*|libnccl)[^;]*' | sort -u |
        tr '\n' ' '
}

expect_no_gpu_libs() {
    local name=$1 loaded
    shift
    loaded=$(gpu_libs_loaded "$name" "$@")
    if [[ -z $loaded ]]; then pass "$name"; else fail "$name" "$loaded"; fi
}

expect_no_gpu_libs startup_train_cpu "$BIN" train "$TEXT" --out "$WORK/ckpt" "${TINY[@]}" --device cpu
expect_no_gpu_libs startup_help "$BIN" --help
expect_no_gpu_libs startup_info "$BIN" info --ckpt "$CKPT"
expect_no_gpu_libs startup_grow "$BIN" grow --ckpt "$CKPT" --kv +4 --out "$WORK/grown.safetensors" --threads 1
expect_no_gpu_libs startup_sample_cpu "$BIN" sample --ckpt "$CKPT" --device cpu --max-new-tokens 8 --threads 1

# ------------------------------------------------------------ --device auto
loaded=$(gpu_libs_loaded startup_auto "$BIN" train "$TEXT" --out "$WORK/auto" "${TINY[@]}" --device auto)
device_line=$(grep -m1 '^device:' "$WORK/startup_auto.out")
if [[ $loaded == COMMAND-FAILED* ]]; then
    fail startup_auto "$loaded"
elif [[ $device_line == "device: cpu "*"; auto: no usable GPU: "?* || $device_line == "device: cpu "*"; auto: no GPU found"* ]]; then
    # No GPU here: auto falls back, says why, and loads no GPU library.
    if [[ -z $loaded ]]; then pass startup_auto_cpu_fallback; else fail startup_auto_cpu_fallback "$loaded"; fi
elif [[ $device_line == "device: cuda "*"; auto: a usable GPU was found" ]]; then
    if [[ $loaded == *libcublas* ]]; then
        pass startup_auto_gpu
    else
        fail startup_auto_gpu "picked the GPU but the linker never looked for cuBLAS"
    fi
else
    fail startup_auto "the device line does not say why auto chose: '$device_line'"
fi

exit $((failures > 0))
