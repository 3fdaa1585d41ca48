#!/usr/bin/env bash
# The adaptation study (docs/ADAPTATION.md): a model trained on corpus A
# (tiny shakespeare) learns corpus B (Linux kernel documentation, `make data
# CORPUS=linux-docs`) by each arm below, all on the same B tokens; reported
# per arm: the full-split val loss on B after (what was learnt) and on A
# after (forgetting), trainable parameters, adaptation FLOPs and wall time.
#
# Arms (budget k: the trainable parameters of LoRA of rank k on every weight,
# q,k,v,o,mlp, of the transformerpp base; the other arms matched to it):
#   full      transformerpp, every parameter trains (the upper bound)
#   last1     transformerpp, --train last:1: only the last block and the final
#             norm train (wte, tied to the head, stays frozen); once per seed
#   lora      transformerpp + grow --lora-rank k --lora-sites q,k,v,o,mlp, --freeze-old
#   adapter   transformerpp + grow --adapter-kv N --adapter-sites attn,mlp, --freeze-old
#   native    tokenformer + grow --kv +N --ffn-kv +M --init zero-key, --freeze-old
#   native_nf the same rows without freezing (every parameter trains)
# Both corpora are read as bytes (--tokenizer bytes: one vocabulary for both).
#
# usage: scripts/adapt_study.sh [--preset P] [--device D] [--threads N]
#          [--base-iters N] [--adapt-iters N] [--budgets "2 8"] [--seeds "1337"]
#          [--b-bytes N] [--b-text FILE] [--a-text FILE] [--lr LR] [--eval-iters N]
#          [--base-args "FLAGS"] [--out DIR] [--precision P] [--arm-lrs "ARM=LR ..."]
#          [--base-seed S] [--jobs N]
# --b-text: corpus B (default data/linux-docs.txt, fetched by make data);
# --a-text: corpus A (default data/input.txt; tests pass a slice, since
# every arm evaluates the whole of A); --eval-iters: batches per evaluation
# while training (default: the preset's); --base-args: model flags over the
# preset's for both base models (tests: "--n-layer 2 --d-model 32");
# --arm-lrs: an lr per arm over --lr (e.g. "lora=1e-2 full=3e-3"); --base-seed:
# one base model per arch, trained with that seed, shared by every seed (the
# seeds then vary the adaptation only); --jobs: seeds side by side (a GPU). A
# row already in OUT/results.csv is not run again (a study spread over calls).
# Defaults are the CPU scale of docs/ADAPTATION.md (preset tiny, minutes on
# two cores); a GPU run: --device cuda --preset shakespeare --base-iters 5000
# --adapt-iters 1000 --budgets "1 4 16" --seeds "1337 1338 1339" --b-bytes 0 (all of B)
# --precision bf16 --base-seed 1337 --jobs 3 --eval-iters 20, with the arms' lrs of the
# CPU sweep: --arm-lrs "full=3e-3 last1=3e-3 lora=1e-2 adapter=3e-3 native=1e-2 native_nf=3e-3".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PRESET=tiny DEVICE=cpu THREADS=2 BASE_ITERS=500 ADAPT_ITERS=200 BUDGETS="2 8" SEEDS=1337
B_BYTES=2000000 LR=1e-3 OUT=out/adapt_study BIN=${TF_BIN:-./tokenformer} A=data/input.txt
EVAL=() BASE_ARGS=() PREC=() ARM_LRS="" BASE_SEED="" JOBS=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --preset) PRESET=$2 ;;
    --device) DEVICE=$2 ;;
    --threads) THREADS=$2 ;;
    --base-iters) BASE_ITERS=$2 ;;
    --adapt-iters) ADAPT_ITERS=$2 ;;
    --budgets) BUDGETS=$2 ;;
    --seeds) SEEDS=$2 ;;
    --b-bytes) B_BYTES=$2 ;;
    --lr) LR=$2 ;;
    --out) OUT=$2 ;;
    --b-text) B_TEXT=$2 ;;
    --a-text) A=$2 ;;
    --eval-iters) EVAL=(--eval-iters "$2") ;;
    --base-args) read -ra BASE_ARGS <<<"$2" ;;
    --precision) PREC=(--precision "$2") ;;
    --arm-lrs) ARM_LRS=$2 ;;
    --base-seed) BASE_SEED=$2 ;;
    --jobs) JOBS=$2 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "adapt_study: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[[ -x $BIN ]] || { echo "adapt_study: $BIN not found (make first)" >&2; exit 1; }
[[ -s $A || $A != data/input.txt ]] || make data
[[ -s $A ]] || { echo "adapt_study: no corpus A at $A" >&2; exit 1; }
B_TEXT=${B_TEXT:-data/linux-docs.txt}
[[ -s $B_TEXT || $B_TEXT != data/linux-docs.txt ]] || make data CORPUS=linux-docs
[[ -s $B_TEXT ]] || { echo "adapt_study: no corpus B at $B_TEXT" >&2; exit 1; }
mkdir -p "$OUT"
B=$OUT/corpus_b.txt
if [[ $B_BYTES -gt 0 ]]; then head -c "$B_BYTES" "$B_TEXT" >"$B"; else cp "$B_TEXT" "$B"; fi
DEV=(--device "$DEVICE" --threads "$THREADS" "${PREC[@]}")
RUN=(--preset "$PRESET" --tokenizer bytes "${DEV[@]}" --lr "$LR" "${EVAL[@]}")
RES=$OUT/results.csv
[[ -s $RES ]] ||
    echo "seed,arm,budget,trainable,total,val_B_before,val_B_after,val_A_before,val_A_after,adapt_flops,wall_s" >"$RES"

# The lr of ARM: its --arm-lrs entry, else --lr.
arm_lr() {
    local e
    for e in $ARM_LRS; do [[ ${e%%=*} == "$1" ]] && { echo "${e#*=}"; return; }; done
    echo "$LR"
}

# Evaluations and adaptation are on another text than a checkpoint's on purpose.
full_loss() { "$BIN" eval --ckpt "$1" "$2" --full --allow-other-text "${DEV[@]}" | grep -o 'loss [0-9.]*' | head -1 | cut -d' ' -f2; }
# "val_B,val_A" of a base checkpoint: evaluated once and kept beside it, so that
# the seeds sharing a base (--base-seed) read one value instead of each
# evaluating all of A and B again.
before_of() {
    local f=${1%.safetensors}.before b a
    if [[ ! -s $f ]]; then
        b=$(full_loss "$1" "$B") a=$(full_loss "$1" "$A")
        [[ -n $b && -n $a ]] || { echo "adapt_study: could not evaluate $1" >&2; return 1; }
        echo "$b,$a" >"$f.$$" && mv "$f.$$" "$f"
    fi
    cat "$f"
}
flops_of() { "$BIN" info --ckpt "$1" | grep -o '[0-9.e+]* FLOPs' | cut -d' ' -f1; }
info_num() { "$BIN" info --ckpt "$1" | grep "$2" | grep -o '[0-9][0-9]*' | head -"$3" | tail -1; }

# adapt SEED ARM BUDGET IN BEFORE [FREEZE]: train IN on B, evaluate, append a
# row; BEFORE: "val_B,val_A" of IN (its base's: growing kept the function);
# FREEZE: train's flags for what trains (--freeze-old, --train last:1)
adapt() {
    local seed=$1 arm=$2 budget=$3 in=$4 before=$5 freeze=${6:-} dir=$OUT/s$1_$2_$3
    local t0 t1 lr
    lr=$(arm_lr "$arm")
    grep -q "^$seed,$arm,$budget," "$RES" && return # done in an earlier call
    t0=$(date +%s.%N)
    # eight evaluations on B along the way: the curve of B-loss against adaptation tokens
    # --force: a run an earlier call cut short (no row yet) is made again from its start
    rm -f "$dir.csv"
    "$BIN" train "$B" --resume "$in" --allow-other-text --new-stage --max-iters "$ADAPT_ITERS" $freeze --seed "$seed" \
        --eval-interval $(((ADAPT_ITERS + 7) / 8)) "${DEV[@]}" --lr "$lr" "${EVAL[@]}" --log "$dir.csv" --out "$dir" \
        --force >"$dir.log" 2>&1 || { echo "adapt_study: $arm (seed $seed, budget $budget) failed: $(tail -1 "$dir.log")" >&2; return 1; }
    t1=$(date +%s.%N)
    local ck=$dir/latest.safetensors
    local trainable total
    trainable=$(info_num "$ck" '^trainable parameters' 1)
    total=$(info_num "$ck" '^trainable parameters' 2)
    local row
    row="$seed,$arm,$budget,$trainable,$total,${before%,*},$(full_loss "$ck" "$B"),${before#*,},$(full_loss "$ck" "$A")"
    row+=",$(awk -v a="$(flops_of "$ck")" -v b="$(flops_of "$in")" 'BEGIN { printf "%.4g", a - b }')"
    row+=",$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    echo "$row" | tee -a "$RES"
}

train_base() { # ARCH SEED DIR
    [[ -s $3/latest.safetensors ]] ||
        "$BIN" train "$A" --arch "$1" "${RUN[@]}" "${BASE_ARGS[@]}" --max-iters "$BASE_ITERS" --seed "$2" \
            --out "$3" >"$3.log" 2>&1
}

run_seed() {
    local seed=$1 base_pp=$OUT/s$1_base_transformerpp base_tf=$OUT/s$1_base_tokenformer
    if [[ -n $BASE_SEED ]]; then base_pp=$OUT/base_transformerpp base_tf=$OUT/base_tokenformer; fi
    train_base transformerpp "${BASE_SEED:-$seed}" "$base_pp"
    train_base tokenformer "${BASE_SEED:-$seed}" "$base_tf"
    # the base: its best checkpoint by val loss on A (the shakespeare recipe's
    # last one overfits tiny shakespeare: val 2.53 after 5000 iterations, best
    # 1.49 near 750, docs/ADAPTATION.md), so that "A after" measures forgetting
    local PP=$base_pp/best.safetensors TF=$base_tf/best.safetensors
    L=$(info_num "$PP" '^arch' 1) d=$(info_num "$PP" '^arch' 2)
    h=$("$BIN" info --ckpt "$PP" | grep '^FFN width' | grep -o '[0-9][0-9]*' | head -1)
    PP_BEFORE=$(before_of "$PP") TF_BEFORE=$(before_of "$TF")
    adapt "$seed" full - "$PP" "$PP_BEFORE"
    adapt "$seed" last1 - "$PP" "$PP_BEFORE" "--train last:1"
    for k in $BUDGETS; do
        P=$((k * L * (8 * d + 3 * (h + d)))) # LoRA of rank k on q,k,v,o and gate,up,down
        kv=$((P / (4 * d * L)))              # adapters at attn and mlp: 2 x (key + value) x kv x d per layer
        u=$((P / (2 * d * L)))               # native: 4 attention Pattentions x N rows + M FFN rows
        n=$(((u + 9) / 10)) m=$((u - 4 * ((u + 9) / 10)))
        g=$OUT/s${seed}_grown_$k
        # written atomically: one that exists is whole (an earlier call's)
        [[ -s ${g}_lora.safetensors ]] ||
            "$BIN" grow --ckpt "$PP" --lora-rank "$k" --lora-sites q,k,v,o,mlp --seed "$seed" --threads "$THREADS" \
                --out "${g}_lora.safetensors" >"${g}_lora.log"
        [[ -s ${g}_adapter.safetensors ]] ||
            "$BIN" grow --ckpt "$PP" --adapter-kv "$kv" --adapter-sites attn,mlp --seed "$seed" --threads "$THREADS" \
                --out "${g}_adapter.safetensors" >"${g}_adapter.log"
        [[ -s ${g}_native.safetensors ]] ||
            "$BIN" grow --ckpt "$TF" --kv "+$n" --ffn-kv "+$m" --init zero-key --seed "$seed" --threads "$THREADS" \
                --out "${g}_native.safetensors" >"${g}_native.log"
        adapt "$seed" lora "$k" "${g}_lora.safetensors" "$PP_BEFORE" --freeze-old
        adapt "$seed" adapter "$k" "${g}_adapter.safetensors" "$PP_BEFORE" --freeze-old
        adapt "$seed" native "$k" "${g}_native.safetensors" "$TF_BEFORE" --freeze-old
        adapt "$seed" native_nf "$k" "${g}_native.safetensors" "$TF_BEFORE"
    done
}

if [[ -n $BASE_SEED ]]; then # the shared bases first, once
    train_base transformerpp "$BASE_SEED" "$OUT/base_transformerpp" &
    train_base tokenformer "$BASE_SEED" "$OUT/base_tokenformer" &
    wait
    before_of "$OUT/base_transformerpp/best.safetensors" >/dev/null
    before_of "$OUT/base_tokenformer/best.safetensors" >/dev/null
fi
pids=() failed=0
for seed in $SEEDS; do
    if ((JOBS > 1)); then
        while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
        run_seed "$seed" >"$OUT/seed_$seed.out" 2>&1 &
        pids+=("$!:$seed")
    else
        run_seed "$seed"
    fi
done
for p in "${pids[@]}"; do
    wait "${p%%:*}" && continue
    failed=1
    echo "adapt_study: seed ${p#*:} failed: $(tail -1 "$OUT/seed_${p#*:}.out")" >&2
done
((failed == 0)) || exit 1
echo "adapt_study: results in $RES (logs and --log CSVs beside it)"
