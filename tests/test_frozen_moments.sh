#!/usr/bin/env bash
# Frozen rows carry no optimizer state (issue 25): the checkpoint of a
# `train --resume --freeze-old` run holds Adam moments only for what trains
# (LoRA tensors; a native grow's new rows, as the last rows of each moment
# tensor) and records what is frozen; it resumes with --freeze-old, and
# without it (unfreezing: one line says those moments start at zero); a
# checkpoint written before, holding moments for its frozen tensors, still
# resumes and trains exactly as the new one does (those moments dropped);
# growing a frozen-run checkpoint gives its frozen rows zero moments; moment
# tensors of other rows are refused in one line. CPU (TF_DEVICE: another),
# tiny sizes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" frozen_moments

TEXT=$WORK/text.txt
sample_text 20000 300 >"$TEXT"
CFG=(--n-layer 2 --d-model 16 --n-head 2 --block-size 16 --batch-size 4 --eval-interval 10 --eval-iters 2)
DEV=(--threads 1 --device "${TF_DEVICE:-cpu}")
if [[ -z $PYTHON ]]; then
    skip frozen_moments "no python3"
    exit 0
fi

# st.py: reads safetensors files (header, tensors as bytes) for the checks below.
cat >"$WORK/st.py" <<'EOF'
import json, struct, sys, zlib
sys.path.insert(0, "tests")  # the tests run from the repository's root (lib.sh)
from st_tensors import load
def save(p, tensors, meta):  # re-signed: crc32 over the sorted metadata, then the data
    h, body = {}, b""
    for k, (shape, blob) in tensors.items():
        h[k] = {"dtype": "F32", "shape": shape, "data_offsets": [len(body), len(body) + len(blob)]}
        body += blob
    crc = 0
    for k in sorted(k for k in meta if k != "crc32"):
        crc = zlib.crc32(k.encode() + b"\0" + meta[k].encode() + b"\0", crc)
    meta = dict(meta, crc32="%08x" % zlib.crc32(body, crc))
    hb = json.dumps(dict(h, __metadata__=meta)).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + body)
cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "moments":  # the parameters with moments, "name:rows" (rows of the moment tensor)
    t, _ = load(args[0])
    print(" ".join(sorted(f"{k[6:]}:{s[0]}" for k, (s, _) in t.items() if k.startswith("opt.m."))))
elif cmd == "frozen":  # parameters whose row_segments mark rows frozen
    _, meta = load(args[0])
    print(" ".join(sorted(k for k, segs in json.loads(meta["row_segments"]).items() if any(s[2] for s in segs))))
elif cmd == "old_format":  # FROZEN_RUN DONOR OUT: add the donor's moments of every tensor lacking them
    t, meta = load(args[0])
    donor, _ = load(args[1])
    for k in list(t):
        if not k.startswith("opt.") and not k.endswith(".tau") and "opt.m." + k not in t:
            for mom in ("opt.m.", "opt.v."):
                t[mom + k] = donor[mom + k]
    save(args[2], t, meta)
elif cmd == "cut_moments":  # IN NAME ROWS OUT: the moments of NAME cut to their first ROWS rows
    t, meta = load(args[0])
    for mom in ("opt.m.", "opt.v."):
        shape, blob = t[mom + args[1]]
        t[mom + args[1]] = ([int(args[2])] + shape[1:], blob[:int(args[2]) * 4 * shape[1]])
    save(args[3], t, meta)
elif cmd == "same":  # A B [shapes]: every tensor of A equal (or of the same shape) in B ("same" or the names that differ)
    a, _ = load(args[0])
    b, _ = load(args[1])
    eq = (lambda x, y: x[0] == y[0]) if args[2:] == ["shapes"] else (lambda x, y: x == y)
    diff = [k for k in a if k not in b or not eq(a[k], b[k])] + [k for k in b if k not in a]
    print("same" if not diff else " ".join(diff))
elif cmd == "rows":  # FILE NAME FIRST LAST: are rows FIRST..LAST-1 of tensor NAME zero? ("zero"/"nonzero")
    t, _ = load(args[0])
    shape, blob = t[args[1]]
    w = 4 * shape[1]
    print("zero" if not any(blob[int(args[2]) * w:int(args[3]) * w]) else "nonzero")
EOF
st() { "$PYTHON" "$WORK/st.py" "$@"; }

# ---------------------------------------------------------------- LoRA on a transformerpp
run_bin pp_base train "$TEXT" --arch transformerpp "${CFG[@]}" "${DEV[@]}" --max-iters 6 --out "$WORK/pp" || exit 1
G=$WORK/pp_lora.safetensors
run_bin pp_grow grow --ckpt "$WORK/pp/latest.safetensors" --lora-rank 2 --lora-sites q,v --out "$G" --threads 1 || exit 1
run_bin pp_frozen train "$TEXT" --resume "$G" --new-stage --freeze-old --max-iters 4 --lr 1e-2 "${DEV[@]}" \
    --out "$WORK/t" || exit 1
T=$WORK/t/latest.safetensors
moments=$(st moments "$T")
want=$(for l in 0 1; do for s in q v; do for ab in A B; do echo "h.$l.attn.$s.weight_lora_$ab"; done; done; done | sort)
got=$(tr ' ' '\n' <<<"$moments" | sed 's/:.*//' | sort)
[[ $got == "$want" ]] && pass "lora_moments_only_for_lora ($(wc -w <<<"$moments") tensors)" ||
    fail lora_moments_only_for_lora "moments for: $moments"
frozen=$(st frozen "$T")
[[ $frozen == *wte* && $frozen == *h.0.attn.q.weight* && $frozen != *lora* ]] &&
    pass lora_frozen_recorded || fail lora_frozen_recorded "row_segments frozen: $frozen"
gsize=$(stat -c %s "$G") tsize=$(stat -c %s "$T")
((tsize * 2 < gsize)) && pass "lora_checkpoint_smaller ($gsize -> $tsize bytes)" ||
    fail lora_checkpoint_smaller "grown $gsize, frozen run $tsize bytes"

# resumed frozen again: no moments needed for the base
if run_bin pp_refreeze train "$TEXT" --resume "$T" --freeze-old --max-iters 14 "${DEV[@]}" --out "$WORK/t2"; then
    ! grep -q "^unfreeze" "$WORK/pp_refreeze.log" && [[ $(st moments "$WORK/t2/latest.safetensors") == "$moments" ]] &&
        pass lora_resume_frozen || fail lora_resume_frozen "$(grep '^unfreeze' "$WORK/pp_refreeze.log")"
fi
# resumed without --freeze-old: everything trains, the base's moments from zero, said once
if run_bin pp_unfreeze train "$TEXT" --resume "$T" --max-iters 14 "${DEV[@]}" --out "$WORK/u"; then
    n_frozen=$("$BIN" info --ckpt "$T" | sed -n 's/^trainable parameters: .* (\([0-9]*\) frozen)$/\1/p')
    line=$(grep "^unfreeze" "$WORK/pp_unfreeze.log")
    [[ $(grep -c "^unfreeze" "$WORK/pp_unfreeze.log") == 1 && $line == "unfreeze: $n_frozen parameters frozen in "* &&
       $line == *"Adam moments start at zero" ]] && pass "lora_unfreeze_line ($line)" ||
        fail lora_unfreeze_line "'$line', expected $n_frozen parameters"
    n=$(st moments "$WORK/u/latest.safetensors" | wc -w)
    [[ $n == $(st moments "$G" | wc -w) && -z $(st frozen "$WORK/u/latest.safetensors") ]] &&
        pass "lora_unfrozen_all_moments ($n)" || fail lora_unfrozen_all_moments "$n tensors with moments"
fi

# a checkpoint written before this change held the frozen tensors' moments: it
# still resumes either way, and with --freeze-old trains bit-identically
O=$WORK/old_format.safetensors
st old_format "$T" "$G" "$O"
if run_bin old_refreeze train "$TEXT" --resume "$O" --freeze-old --max-iters 14 "${DEV[@]}" --out "$WORK/o2"; then
    # bit-identical on the CPU; a GPU's reductions may differ between runs: the same tensors there
    same=$(st same "$WORK/t2/latest.safetensors" "$WORK/o2/latest.safetensors" $([[ ${TF_DEVICE:-cpu} == cpu ]] || echo shapes))
    [[ $same == same ]] && pass old_format_frozen_moments_dropped || fail old_format_frozen_moments_dropped "$same"
fi
run_bin old_unfreeze train "$TEXT" --resume "$O" --max-iters 14 "${DEV[@]}" --out "$WORK/o3" &&
    { ! grep -q "^unfreeze" "$WORK/old_unfreeze.log" && pass old_format_unfreeze_keeps_moments ||
          fail old_format_unfreeze_keeps_moments "$(grep '^unfreeze' "$WORK/old_unfreeze.log")"; }
# moments of other rows than the parameter's, or its trained ones, are refused
st cut_moments "$O" wte 3 "$WORK/cut.safetensors"
if timeout 60 "$BIN" train "$TEXT" --resume "$WORK/cut.safetensors" --max-iters 14 "${DEV[@]}" --out "$WORK/c" \
    >"$WORK/cut.log" 2>"$WORK/cut.err"; then
    fail bad_moment_rows "exited 0"
else
    [[ $(wc -l <"$WORK/cut.err") == 1 ]] && grep -q "optimizer tensor 'opt.m.wte' must be F32 with the shape of 'wte'" \
        "$WORK/cut.err" && [[ ! -e $WORK/c/latest.safetensors ]] && pass "bad_moment_rows ($(cat "$WORK/cut.err"))" ||
        fail bad_moment_rows "$(tr '\n' '|' <"$WORK/cut.err")"
fi
# merging folds LoRA into a model that has moments again for every tensor
run_bin pp_merge grow --ckpt "$T" --merge-lora --out "$WORK/merged.safetensors" --threads 1 &&
    run_bin merged_resume train "$TEXT" --resume "$WORK/merged.safetensors" --max-iters 14 "${DEV[@]}" --out "$WORK/m" &&
    pass merge_frozen_run

# ---------------------------------------------------------------- native rows on a tokenformer
run_bin tf_base train "$TEXT" "${CFG[@]}" "${DEV[@]}" --n-attn 8 --n-ffn 16 --max-iters 6 --out "$WORK/tf" || exit 1
NG=$WORK/tf_grown.safetensors
run_bin tf_grow grow --ckpt "$WORK/tf/latest.safetensors" --kv +2 --ffn-kv +4 --init zero-key --out "$NG" --threads 1 ||
    exit 1
run_bin tf_frozen train "$TEXT" --resume "$NG" --new-stage --freeze-old --max-iters 4 "${DEV[@]}" --out "$WORK/n" || exit 1
N=$WORK/n/latest.safetensors
moments=$(st moments "$N")
bad=$(tr ' ' '\n' <<<"$moments" | grep -Ev '^h\.[01]\.(attn\.[qkvo]\.(key|value):2|ffn\.(key|value):4)$')
[[ -n $moments && -z $bad && $(wc -w <<<"$moments") == 20 ]] && pass "native_moments_only_new_rows ($moments)" ||
    fail native_moments_only_new_rows "unexpected: $(tr "\n" " " <<<"${bad:-$moments}")"
if run_bin tf_unfreeze train "$TEXT" --resume "$N" --max-iters 14 "${DEV[@]}" --out "$WORK/nu"; then
    grep -q "^unfreeze: [0-9]* parameters frozen in" "$WORK/tf_unfreeze.log" && pass native_unfreeze ||
        fail native_unfreeze "no unfreeze line"
fi
run_bin tf_refreeze train "$TEXT" --resume "$N" --freeze-old --max-iters 14 "${DEV[@]}" --out "$WORK/nf" &&
    pass native_resume_frozen
# growing the frozen run's checkpoint: moments for every row again, zero for the rows it froze
if run_bin tf_regrow grow --ckpt "$N" --kv +2 --out "$WORK/regrown.safetensors" --threads 1; then
    R=$WORK/regrown.safetensors
    z=$(st rows "$R" opt.v.h.0.attn.q.key 0 8) nz=$(st rows "$R" opt.v.h.0.attn.q.key 8 10)
    [[ $(st moments "$R" | wc -w) == $(st moments "$NG" | wc -w) && $z == zero && $nz == nonzero ]] &&
        pass regrow_frozen_rows_zero_moments || fail regrow_frozen_rows_zero_moments "old rows $z, trained rows $nz"
    run_bin regrown_train train "$TEXT" --resume "$R" --freeze-old --max-iters 16 "${DEV[@]}" --out "$WORK/r" &&
        pass regrown_trains
fi

echo "frozen_moments: $failures failure(s)"
[[ $failures -eq 0 ]]
