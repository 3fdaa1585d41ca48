#!/usr/bin/env bash
# Adapters and LoRA through the commands (docs/ADAPTATION.md), on the CPU at
# tiny sizes: grow --adapter-kv / --lora-rank keep the loss exactly (eval
# --full prints the same number); train --resume --freeze-old moves every new
# tensor and leaves every base tensor bit-identical, records what was
# frozen (info: trainable vs total); the adapted checkpoint resumes, samples
# and evaluates; grow --merge-lora gives a plain checkpoint with the same
# loss to 1e-5. Bad input: one line on stderr, a failing status, nothing
# written.
#
# Environment: TF_BIN (binary under test, default ./tokenformer), TF_DEVICE
# (cpu, the default, or cuda: then "keeps the loss" allows 2e-6, the GEMMs
# of the base and the adapted model being free to differ in order).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" adapt_cli

TEXT=$WORK/text.txt
sample_text 20000 300 >"$TEXT"
CFG=(--n-layer 2 --d-model 16 --n-head 2 --block-size 16 --batch-size 4 --eval-interval 10
     --eval-iters 2 --threads 1 --device "${TF_DEVICE:-cpu}")
DEV=(--threads 1 --device "${TF_DEVICE:-cpu}")
PY=$(command -v python3 || true)

run() { # run NAME CMD...: stdout in $WORK/NAME.log, stderr in $WORK/NAME.err; status
    local name=$1
    shift
    timeout 300 "$BIN" "$@" >"$WORK/$name.log" 2>"$WORK/$name.err"
}
full_loss() { "$BIN" eval --ckpt "$1" "$TEXT" --full "${DEV[@]}" 2>&1 | grep -o 'loss [0-9.]*' | head -1; }
# same_loss A B TOL: "loss X" strings within TOL
same_loss() { [[ -n $1 && -n $2 ]] && awk -v a="${1#loss }" -v b="${2#loss }" -v t="$3" 'BEGIN { d = a - b; exit !(d <= t && d >= -t) }'; }
KEEP_TOL=0
[[ ${TF_DEVICE:-cpu} == cpu ]] || KEEP_TOL=2e-6

# tensors_compare BASE NEW: "same changed new_moved new_total" over BASE's
# parameters (equal bytes or not in NEW) and NEW's other parameters (moved
# from their value in the grown checkpoint GROWN).
tensors_compare() {
    "$PY" - "$@" <<'EOF'
import json, struct, sys
def load(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n]); h.pop("__metadata__", None)
    d = raw[8 + n:]
    return {k: d[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items() if not k.startswith("opt.")}
base, grown, trained = (load(p) for p in sys.argv[1:4])
same = sum(trained[k] == v for k, v in base.items())
new = [k for k in trained if k not in base]
moved = sum(trained[k] != grown[k] for k in new)
print(same, len(base) - same, moved, len(new))
EOF
}

for arch in transformer transformerpp; do
    run "${arch}_base" train "$TEXT" --arch "$arch" "${CFG[@]}" --max-iters 20 --out "$WORK/$arch" ||
        { fail "${arch}_base" "$(tail -1 "$WORK/${arch}_base.err")"; continue; }
    BASE=$WORK/$arch/latest.safetensors
    base_loss=$(full_loss "$BASE")
    for kind in adapter lora; do
        G=$WORK/${arch}_$kind.safetensors
        if [[ $kind == adapter ]]; then args=(--adapter-kv 8 --adapter-sites mlp,attn)
        else args=(--lora-rank 2 --lora-sites q,k,v,o,mlp --lora-alpha 4); fi
        run "${arch}_${kind}_grow" grow --ckpt "$BASE" "${args[@]}" --out "$G" --threads 1 ||
            { fail "${arch}_${kind}_grow" "$(tail -1 "$WORK/${arch}_${kind}_grow.err")"; continue; }
        loss=$(full_loss "$G")
        same_loss "$loss" "$base_loss" "$KEEP_TOL" && pass "${arch}_${kind}_keeps_loss ($loss)" ||
            fail "${arch}_${kind}_keeps_loss" "base '$base_loss', adapted '$loss'"

        T=$WORK/${arch}_${kind}_t
        if run "${arch}_${kind}_train" train "$TEXT" --resume "$G" --new-stage --freeze-old --max-iters 10 \
            --lr 1e-2 "${DEV[@]}" --out "$T"; then
            grep -q "^freeze-old: only rows added by the latest grow are trained" "$WORK/${arch}_${kind}_train.log" &&
                pass "${arch}_${kind}_freeze_line" || fail "${arch}_${kind}_freeze_line" "no freeze-old line"
            if [[ -n $PY ]]; then
                read -r same changed moved total <<<"$(tensors_compare "$BASE" "$G" "$T/latest.safetensors")"
                [[ $changed == 0 && $total -gt 0 && $moved == "$total" ]] &&
                    pass "${arch}_${kind}_frozen_base ($same base tensors bit-identical, $moved/$total new moved)" ||
                    fail "${arch}_${kind}_frozen_base" "base changed $changed, new moved $moved of $total"
            else
                skip "${arch}_${kind}_frozen_base" "no python3"
            fi
            new=$(grep -o ', [0-9]* of them new' "$WORK/${arch}_${kind}_grow.log" | grep -o '[0-9]*')
            info=$("$BIN" info --ckpt "$T/latest.safetensors")
            grep -q "^trainable parameters: $new of " <<<"$info" && pass "${arch}_${kind}_info_trainable ($new)" ||
                fail "${arch}_${kind}_info_trainable" "$(grep '^trainable' <<<"$info"), expected $new"
            # the adapted checkpoint resumes (every tensor trains again), samples and evaluates
            run "${arch}_${kind}_resume" train "$TEXT" --resume "$T/latest.safetensors" --max-iters 34 \
                "${DEV[@]}" --out "$T/r" && pass "${arch}_${kind}_resume" ||
                fail "${arch}_${kind}_resume" "$(tail -1 "$WORK/${arch}_${kind}_resume.err")"
            out=$("$BIN" sample --ckpt "$T/latest.safetensors" --max-new-tokens 20 "${DEV[@]}" 2>&1)
            [[ $? -eq 0 && ${#out} -ge 20 ]] && pass "${arch}_${kind}_sample" || fail "${arch}_${kind}_sample" "$out"
            tl=$(full_loss "$T/latest.safetensors")
            [[ -n $tl ]] && pass "${arch}_${kind}_eval ($tl)" || fail "${arch}_${kind}_eval" "no loss"
        else
            fail "${arch}_${kind}_train" "$(tail -1 "$WORK/${arch}_${kind}_train.err")"
        fi
        if [[ $kind == lora && -s $T/latest.safetensors ]]; then
            M=$WORK/${arch}_merged.safetensors
            if run "${arch}_merge" grow --ckpt "$T/latest.safetensors" --merge-lora --out "$M" --threads 1; then
                a=$(full_loss "$T/latest.safetensors") b=$(full_loss "$M")
                "$BIN" info --ckpt "$M" | grep -q "^LoRA" && fail "${arch}_merge" "info still shows LoRA" ||
                    { same_loss "$a" "$b" 1e-5 &&
                          pass "${arch}_merge_same_loss ($a, merged $b)" ||
                          fail "${arch}_merge_same_loss" "adapted '$a', merged '$b'"; }
            else
                fail "${arch}_merge" "$(tail -1 "$WORK/${arch}_merge.err")"
            fi
        fi
    done
done

# ---------------------------------------------------------------- bad input
run tf_base train "$TEXT" "${CFG[@]}" --n-attn 8 --n-ffn 16 --max-iters 2 --out "$WORK/tf" ||
    fail tf_base "$(tail -1 "$WORK/tf_base.err")"
PP=$WORK/transformerpp/latest.safetensors
PPL=$WORK/transformerpp_lora.safetensors
PPA=$WORK/transformerpp_adapter.safetensors
bad() { refused "bad_$1" "$2" "$WORK/bad_$1.safetensors" "${@:3}"; } # NAME WANT ARGS...: no --out file
bad adapter_on_tokenformer "for the transformer and transformerpp baselines" grow --ckpt "$WORK/tf/latest.safetensors" --adapter-kv 4
bad lora_on_tokenformer "for the transformer and transformerpp baselines" grow --ckpt "$WORK/tf/latest.safetensors" --lora-rank 2
bad lora_rank_zero "expected an integer in \[1," grow --ckpt "$PP" --lora-rank 0
bad lora_rank_negative "expected an integer in \[1," grow --ckpt "$PP" --lora-rank -3
bad lora_rank_above_d "LoRA rank must be in \[1, d_model" grow --ckpt "$PP" --lora-rank 17
bad adapter_kv_zero "expected an integer in \[1," grow --ckpt "$PP" --adapter-kv 0
bad adapter_kv_negative "expected an integer in \[1," grow --ckpt "$PP" --adapter-kv -4
bad lora_alpha_zero "lora-alpha: expected a number" grow --ckpt "$PP" --lora-rank 2 --lora-alpha 0
bad lora_site_unknown "unknown site 'x'" grow --ckpt "$PP" --lora-rank 2 --lora-sites q,x
bad adapter_site_unknown "unknown site 'ffn'" grow --ckpt "$PP" --adapter-kv 4 --adapter-sites ffn
bad adapter_norm_unknown "--adapter-norm: expected" grow --ckpt "$PP" --adapter-kv 4 --adapter-norm relu
bad sites_without_rank "need --lora-rank" grow --ckpt "$PP" --lora-sites q
bad alpha_without_rank "need --lora-rank" grow --ckpt "$PP" --lora-alpha 4
bad adapter_sites_without_kv "need --adapter-kv" grow --ckpt "$PP" --adapter-sites mlp
bad merge_nothing "no LoRA to merge" grow --ckpt "$PP" --merge-lora
bad merge_adapters_only "no LoRA to merge" grow --ckpt "$PPA" --merge-lora
bad lora_twice "has LoRA already" grow --ckpt "$PPL" --lora-rank 2
bad adapters_twice "has adapters already" grow --ckpt "$PPA" --adapter-kv 4
bad grow_adapted "grow the base model before adapting it" grow --ckpt "$PPA" --ffn-kv +8
bad adapter_and_lora "separate calls" grow --ckpt "$PP" --adapter-kv 4 --lora-rank 2
bad adapter_with_kv "takes none of" grow --ckpt "$PP" --adapter-kv 4 --ffn-kv +8
bad freeze_never_grown "no rows added by 'grow'" train "$TEXT" --resume "$PP" --freeze-old --new-stage \
    --max-iters 2 --threads 1 --device cpu
# merging LoRA leaves nothing newly grown: the merged model is a plain baseline
bad freeze_merged "no rows added by 'grow'" train "$TEXT" --resume "$WORK/transformerpp_merged.safetensors" \
    --freeze-old --new-stage --max-iters 2 --threads 1 --device cpu

echo "adapt_cli: $failures failure(s)"
[[ $failures -eq 0 ]]
