#!/usr/bin/env bash
# `train --resume CKPT --train last:N` (issue 25's last-layers arm): only the
# last N blocks and the final norm train. On every arch and on a LoRA-adapted
# checkpoint, after a `--train last:1` run every tensor outside the last block
# and ln_f is byte-identical to the input checkpoint, every one inside it has
# changed, only those hold Adam moments, the checkpoint records the others as
# frozen, and `info` and the run's line count the same trainable parameters.
# `--train new` is `--freeze-old`; `--train all` unfreezes. Bad input: one
# line on stderr, non-zero exit, nothing written. CPU (TF_DEVICE: another),
# tiny sizes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" train_last

TEXT=$WORK/text.txt
sample_text 20000 300 >"$TEXT"
CFG=(--n-layer 2 --d-model 16 --n-head 2 --block-size 16 --batch-size 4 --eval-interval 10 --eval-iters 2)
DEV=(--threads 1 --device "${TF_DEVICE:-cpu}")
# a short warmup, so that every trained tensor moves in the few steps
ADAPT=(--new-stage --max-iters 4 --warmup-iters 1 --lr 1e-2)
if [[ -z $PYTHON ]]; then
    skip train_last "no python3"
    exit 0
fi

# st.py: what the checks below read from safetensors files.
cat >"$WORK/st.py" <<'EOF'
import json, re, struct, sys
sys.path.insert(0, "tests")  # the tests run from the repository's root (lib.sh)
from st_tensors import load
def weights(t):  # the model's parameters: no moments, no Pattention scales
    return sorted(k for k in t if not k.startswith("opt.") and not k.endswith(".tau"))
cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "changed":  # IN OUT: the parameters whose bytes differ
    a, _ = load(args[0])
    b, _ = load(args[1])
    print(" ".join(k for k in weights(a) if a[k] != b[k]))
elif cmd == "matching":  # FILE REGEX: the parameters whose names match
    t, _ = load(args[0])
    print(" ".join(k for k in weights(t) if re.match(args[1], k)))
elif cmd == "numel":  # FILE REGEX: their number of elements
    t, _ = load(args[0])
    n = 0
    for k in weights(t):
        if re.match(args[1], k):
            s = 1
            for x in t[k][0]:
                s *= x
            n += s
    print(n)
elif cmd == "moments":  # FILE: the parameters with moments
    t, _ = load(args[0])
    print(" ".join(sorted(k[6:] for k in t if k.startswith("opt.m."))))
elif cmd == "frozen":  # FILE: the parameters whose row_segments mark rows frozen
    _, meta = load(args[0])
    print(" ".join(sorted(k for k, segs in json.loads(meta["row_segments"]).items() if any(s[2] for s in segs))))
elif cmd == "same":  # A B [shapes]: every tensor equal (or of the same shape) in both: "same" or those that differ
    a, _ = load(args[0])
    b, _ = load(args[1])
    eq = (lambda x, y: x[0] == y[0]) if args[2:] == ["shapes"] else (lambda x, y: x == y)
    diff = [k for k in a if k not in b or not eq(a[k], b[k])] + [k for k in b if k not in a]
    print("same" if not diff else " ".join(diff))
EOF
st() { "$PYTHON" "$WORK/st.py" "$@"; }

LAST='^(h\.1\.|ln_f\.|norm_f\.)' # a 2-layer model's last block and final norm (ln_f; norm_f in transformerpp)

# check_last1 NAME IN: trains IN with --train last:1 and checks what moved,
# what holds moments, what is recorded frozen and the counts.
check_last1() {
    local name=$1 in=$2 out=$WORK/$1
    run_bin "$name" train "$TEXT" --resume "$in" "${ADAPT[@]}" --train last:1 "${DEV[@]}" --out "$out" || return
    local ck=$out/latest.safetensors
    local want changed all_names outside moments frozen
    want=$(st matching "$in" "$LAST")
    changed=$(st changed "$in" "$ck")
    all_names=$(st matching "$in" '.')
    outside=$(tr ' ' '\n' <<<"$all_names" | grep -Ev "$LAST" | tr '\n' ' ' | sed 's/ $//')
    [[ -n $want && $changed == "$want" ]] && pass "${name}_only_last_block_changed ($(wc -w <<<"$want") tensors)" ||
        fail "${name}_only_last_block_changed" "changed: '$changed', expected '$want'"
    moments=$(st moments "$ck")
    [[ $(tr ' ' '\n' <<<"$moments" | sort) == $(tr ' ' '\n' <<<"$want" | sort) ]] &&
        pass "${name}_moments_only_trainable" || fail "${name}_moments_only_trainable" "moments for: $moments"
    frozen=$(st frozen "$ck")
    [[ $(tr ' ' '\n' <<<"$frozen" | sort) == $(tr ' ' '\n' <<<"$outside" | sort) ]] &&
        pass "${name}_frozen_recorded" || fail "${name}_frozen_recorded" "frozen: $frozen"
    local n line info
    n=$(st numel "$in" "$LAST")
    line=$(grep "^train last:1: only the last 1 of 2 blocks" "$WORK/$name.log")
    info=$("$BIN" info --ckpt "$ck" | grep "^trainable parameters:")
    [[ $line == *": $n of "* && $line == *"Adam moments for $n" && $info == "trainable parameters: $n of "* ]] &&
        pass "${name}_counts ($n)" || fail "${name}_counts" "expected $n: '$line' / '$info'"
}

for arch in tokenformer transformer transformerpp; do
    run_bin "${arch}_base" train "$TEXT" --arch "$arch" "${CFG[@]}" "${DEV[@]}" --max-iters 6 --out "$WORK/$arch" || exit 1
    check_last1 "${arch}_last1" "$WORK/$arch/latest.safetensors"
done
PP=$WORK/transformerpp/latest.safetensors

# an adapted checkpoint: the last block's LoRA factors train with its weights
G=$WORK/pp_lora.safetensors
run_bin pp_grow grow --ckpt "$PP" --lora-rank 2 --lora-sites q,v --out "$G" --threads 1 || exit 1
check_last1 lora_last1 "$G"

# --train last:2 on two blocks: everything but wte
if run_bin pp_last2 train "$TEXT" --resume "$PP" "${ADAPT[@]}" --train last:2 "${DEV[@]}" --out "$WORK/l2"; then
    [[ $(st frozen "$WORK/l2/latest.safetensors") == wte && $(st changed "$PP" "$WORK/l2/latest.safetensors") != *wte* ]] &&
        pass last2_freezes_only_wte || fail last2_freezes_only_wte "frozen: $(st frozen "$WORK/l2/latest.safetensors")"
fi

# --train new is --freeze-old (bit-identical on the CPU; the same tensors on a GPU)
if run_bin new_train train "$TEXT" --resume "$G" "${ADAPT[@]}" --train new "${DEV[@]}" --out "$WORK/tn" &&
    run_bin new_freeze train "$TEXT" --resume "$G" "${ADAPT[@]}" --freeze-old "${DEV[@]}" --out "$WORK/tf"; then
    same=$(st same "$WORK/tn/latest.safetensors" "$WORK/tf/latest.safetensors" $([[ ${TF_DEVICE:-cpu} == cpu ]] || echo shapes))
    [[ $same == same ]] && grep -q "^freeze-old: only rows added by the latest grow" "$WORK/new_train.log" &&
        pass train_new_is_freeze_old || fail train_new_is_freeze_old "$same"
fi
# --train all after a last:1 run: everything trains again, said by the unfreeze line
if run_bin all_after_last train "$TEXT" --resume "$WORK/transformerpp_last1/latest.safetensors" "${ADAPT[@]}" --train all \
    "${DEV[@]}" --out "$WORK/ta"; then
    [[ -z $(st frozen "$WORK/ta/latest.safetensors") ]] && grep -q "^unfreeze: [0-9]* parameters frozen" "$WORK/all_after_last.log" &&
        pass train_all_unfreezes || fail train_all_unfreezes "frozen: $(st frozen "$WORK/ta/latest.safetensors")"
fi

bad() { refused "bad_$1" "$2" "$WORK/bad_$1" "${@:3}"; } # NAME WANT ARGS...: nothing in --out
bad last_zero "N must be a whole number of blocks, at least 1" train "$TEXT" --resume "$PP" --train last:0 "${DEV[@]}"
bad last_negative "N must be a whole number of blocks" train "$TEXT" --resume "$PP" --train last:-1 "${DEV[@]}"
bad last_not_a_number "N must be a whole number of blocks" train "$TEXT" --resume "$PP" --train last:x "${DEV[@]}"
bad last_above_depth "--train last:3: the model has 2 blocks" train "$TEXT" --resume "$PP" --train last:3 "${DEV[@]}"
bad unknown_what "expected all, new or last:N" train "$TEXT" --resume "$PP" --train head "${DEV[@]}"
bad without_resume "--train last:1 needs --resume" train "$TEXT" "${CFG[@]}" --train last:1 "${DEV[@]}"
bad new_never_grown "--train new: the checkpoint has no rows added by 'grow'" \
    train "$TEXT" --resume "$PP" --train new --new-stage "${DEV[@]}"
bad with_freeze_old "give one (--freeze-old is --train new)" \
    train "$TEXT" --resume "$G" --train last:1 --freeze-old "${DEV[@]}"

echo "train_last: $failures failure(s)"
[[ $failures -eq 0 ]]
