#!/usr/bin/env bash
# Growth operators (docs/MODEL.md 5a, 5b) for every arch: depth by copying
# (grow --add-layers N --init copy|copy-zero-out|zero-out --at end|interleave|stack)
# and width (grow --d-model 2x [--noise S]). Function preservation: copy-zero-out
# and zero-out bit-identical on the CPU (new blocks add an exact zero); --d-model 2x
# within 1e-5 of the loss on the CPU, and against the PyTorch reference
# (scripts/tokenformer_ref.py grow-check): the C tensors equal the reference map
# exactly, logits agree to 1e-12 in float64 (the map is exact in exact arithmetic)
# and 1e-5 in float32. Copy and stack change the function; every grown model
# trains on with --resume; bad input is refused with one line and no file.
# Prints PASS/FAIL/SKIP lines and exits non-zero on any failure. Uses $TF_BIN.
source "$(dirname "${BASH_SOURCE[0]}")/lib_grow.sh" grow_ops

cat >"$tmp/st.py" <<'PYEOF'
import json, math, sys
from ckpt_check import check, compare, finish, load, np

cmd, args = sys.argv[1], sys.argv[2:]
OUTPUT_SIDE = ("attn.o.value", "ffn.value", "attn.o.weight", "mlp.down")

def fresh_moments(dst, segs, k, step):
    for mom in ("opt.m.", "opt.v."):
        check(not dst[mom + k].any(), f"{mom}{k}: moments of a grown tensor are not zero")
    check(segs.get(k) == [[0, step, 0]], f"{k}: row_segments {segs.get(k)}, expected [[0, {step}, 0]]")

if compare(cmd, args):
    pass
elif cmd == "copied":  # copied SRC DST MAP INIT: DST layer j = SRC layer MAP[j], or a new copy 'cS' of S
    src, _, _ = load(args[0]); dst, dm, segs = load(args[1]); lm = args[2].split(","); init = args[3]
    step = int(dm["step"])
    n_layer = len({k.split(".")[1] for k in dst if k.startswith("h.")})
    check(n_layer == len(lm), f"{n_layer} layers, the map has {len(lm)}")
    for j, s in enumerate(lm):
        new = s.startswith("c")
        sl = s[1:] if new else s
        for k in [k for k in dst if k.startswith(f"h.{j}.")]:
            rest = k[len(f"h.{j}."):]
            sk = f"h.{sl}.{rest}"
            if new and init == "copy-zero-out" and rest in OUTPUT_SIDE:
                check(not dst[k].any(), f"{k}: output side of a copied block is not zero")
                check(src[sk].any(), f"{sk}: the source's output side is zero (nothing tested)")
            else:
                check(np.array_equal(dst[k], src[sk]), f"{k}: differs from {sk}")
            if new and not rest.endswith(".tau"):
                fresh_moments(dst, segs, k, step)
elif cmd == "width":  # width SRC DST: shapes doubled, moments zero, one segment born now, nothing frozen
    src, sm, _ = load(args[0]); dst, dm, segs = load(args[1])
    step = int(dm["step"])
    sc, dc = json.loads(sm["config"]), json.loads(dm["config"])
    check(dc["d_model"] == 2 * sc["d_model"] and dc["n_head"] == 2 * sc["n_head"],
          f"config d {dc['d_model']} H {dc['n_head']} from d {sc['d_model']} H {sc['n_head']}")
    for k, v in dst.items():
        if k.startswith("opt.") or k.endswith(".tau"):
            continue
        check(v.shape[-1] == 2 * src[k].shape[-1], f"{k}: shape {v.shape} from {src[k].shape}")
        fresh_moments(dst, segs, k, step)
    for k in [k for k in dst if k.endswith(".tau")]:
        check(np.array_equal(dst[k], src[k]), f"{k}: tau changed")
elif cmd == "ref":  # ref JSON MAPTOL: grow-check's numbers within the stated tolerances
    r = json.loads(args[0]); maptol = float(args[1])
    check(r["config_ok"], "grown config is not the doubled one")
    check(r["map_max_diff"] <= maptol, f"C tensors vs the reference map: {r['map_max_diff']:.3g} > {maptol:g}")
    check(r["ref_logits_max_diff_f64"] <= 1e-12, f"reference map, float64 logits: {r['ref_logits_max_diff_f64']:.3g}")
    check(r["logits_max_diff_f64"] <= (1e-12 if maptol == 0 else 1e-6),
          f"C-grown model, float64 logits: {r['logits_max_diff_f64']:.3g}")
    check(r["logits_max_diff_f32"] <= 1e-5, f"C-grown model, float32 logits: {r['logits_max_diff_f32']:.3g}")
elif cmd == "trained":  # trained CSV: the val loss of the last eval row is below the first (the grow point)
    rows = [l.split(",") for l in open(args[0]).read().split("\n")[1:] if ",eval," in l]
    vals = [float(r[5]) for r in rows if r[5]]
    check(len(vals) >= 2 and all(math.isfinite(v) for v in vals) and vals[-1] < vals[0],
          f"val losses {vals}: no training progress after the grow")
    print(" -> ".join(f"{v:.4f}" for v in vals[:1] + vals[-1:]))
else:
    sys.exit(f"unknown check {cmd}")
finish()
PYEOF

# The PyTorch reference's grow-check of every widened model, in one process
# after the loop (torch loads once): REF_PAIRS holds "SMALL GROWN" pairs and
# REF_NAMES what each pair is.
TORCH_PY=""
[[ $PYTHON_HAS_TORCH == 1 ]] && TORCH_PY=$PYTHON
REF_PAIRS=() REF_NAMES=()

refused() { grow_refused "grow_ops: " "$1" "$2"; } # refused CKPT ARGS

# exact ARCH N INIT AT MAP: a function-preserving depth growth, bit-identical loss
exact() {
    local arch=$1 n=$2 init=$3 at=$4 map=$5 base="$tmp/$1.safetensors" out="$tmp/$1-e.safetensors"
    local name="$arch --add-layers $n --init $init --at $at" o b a
    if ! grow --ckpt "$base" --add-layers "$n" --init "$init" --at "$at" --force --out "$out" >"$tmp/g.log" 2>&1; then
        fail "grow_ops: $name: $(tail -1 "$tmp/g.log")"
        return
    fi
    read -r b a <<<"$(before_after "$tmp/g.log")"
    if [[ -n ${a:-} && $b == "$a" && $(val "$base") == $(val "$out") ]] && o=$(st copied "$base" "$out" "$map" "$init"); then
        pass "grow_ops: $name: loss bit-identical ($b), layers $map"
        [[ $at == end ]] && trains "$name" "$out"
    else
        fail "grow_ops: $name: $b -> $a; ${o:-}"
    fi
}

# trains NAME CKPT: --resume trains the grown model on (the val loss falls)
trains() {
    local o
    rm -f "$tmp/t.csv" "$tmp/t.safetensors" "$tmp/t.best.safetensors" # a fresh output for each model: another run's is refused
    if "$BIN" train --resume "$2" --threads 1 --max-iters 100 --eval-interval 30 --log "$tmp/t.csv" \
        --out "$tmp/t.safetensors" >"$tmp/t.log" 2>&1 && o=$(st trained "$tmp/t.csv"); then
        pass "grow_ops: $1 trains on with --resume (val $o)"
    else
        fail "grow_ops: $1 does not train on: ${o:-$(tail -1 "$tmp/t.log")}"
    fi
}

for arch in tokenformer transformer transformerpp; do
    base="$tmp/$arch.safetensors"
    if ! "$BIN" train data/input.txt --arch $arch "${MODEL[@]}" "${TRAIN[@]}" --max-iters 60 --out "$base" \
        >"$tmp/$arch.log" 2>&1; then
        fail "grow_ops: training a $arch: $(tail -1 "$tmp/$arch.log")"
        continue
    fi
    # ---------------------------------------------- depth (2 layers)
    exact $arch 2 copy-zero-out end 0,1,c1,c1
    exact $arch 1 copy-zero-out interleave 0,c0,1
    exact $arch 2 copy-zero-out stack 0,1,c0,c1
    exact $arch 4 copy-zero-out stack 0,1,c0,c1,c0,c1
    if grow --ckpt "$base" --add-layers 2 --at stack --force --out "$tmp/s.safetensors" >"$tmp/g.log" 2>&1 &&
        read -r b a <<<"$(before_after "$tmp/g.log")" && o=$(st differ "$b" "$a" 1e-4) &&
        o=$(st copied "$base" "$tmp/s.safetensors" 0,1,c0,c1 copy) &&
        "$BIN" info "$tmp/s.safetensors" | grep -q "layers +2, init copy, at stack"; then
        pass "grow_ops: $arch --add-layers 2 --at stack (G_stack, --init copy by default): [0,1,0,1], loss $b -> $a"
        trains "$arch stacked" "$tmp/s.safetensors"
    else
        fail "grow_ops: $arch --at stack: ${b:-} -> ${a:-}; ${o:-$(tail -1 "$tmp/g.log")}"
    fi
    if grow --ckpt "$base" --add-layers 1 --init copy --force --out "$tmp/c.safetensors" >"$tmp/g.log" 2>&1 &&
        read -r b a <<<"$(before_after "$tmp/g.log")" && o=$(st differ "$b" "$a" 1e-4) &&
        o=$(st copied "$base" "$tmp/c.safetensors" 0,1,c1 copy); then
        pass "grow_ops: $arch --add-layers 1 --init copy: the last block repeated, loss $b -> $a"
    else
        fail "grow_ops: $arch --init copy: ${b:-} -> ${a:-}; ${o:-$(tail -1 "$tmp/g.log")}"
    fi
    # ---------------------------------------------- width
    for noise in 0 0.01; do
        w="$tmp/$arch-w$noise.safetensors"
        if ! grow --ckpt "$base" --d-model 2x --noise $noise --out "$w" >"$tmp/g.log" 2>&1; then
            fail "grow_ops: $arch --d-model 2x --noise $noise: $(tail -1 "$tmp/g.log")"
            continue
        fi
        read -r b a <<<"$(before_after "$tmp/g.log")"
        if [[ -n ${a:-} ]] && o=$(st close "$b" "$a" 1e-5) && o=$(st width "$base" "$w"); then
            pass "grow_ops: $arch --d-model 2x --noise $noise: d 32 -> 64, 4 -> 8 heads, loss $b -> $a (within 1e-5)"
        else
            fail "grow_ops: $arch --d-model 2x --noise $noise: $b -> $a; ${o:-}"
        fi
        REF_PAIRS+=("$base" "$w")
        REF_NAMES+=("$arch --d-model 2x --noise $noise")
    done
    trains "$arch widened (noise 0.01)" "$tmp/$arch-w0.01.safetensors"
done

# ---------------------------------------------- widened models against the PyTorch reference
if [[ -z $TORCH_PY ]]; then
    skip "grow_ops: --d-model 2x vs the PyTorch reference" "no python with torch"
else
    mapfile -t REFS < <("$TORCH_PY" scripts/tokenformer_ref.py grow-check "${REF_PAIRS[@]}" 2>"$tmp/ref.err")
    for i in "${!REF_NAMES[@]}"; do
        r=${REFS[$i]:-} name=${REF_NAMES[$i]}
        if [[ -n $r ]] && o=$(st ref "$r" "$([[ $name == *"noise 0" ]] && echo 0 || echo 1)"); then
            pass "grow_ops: $name vs the PyTorch reference: $r"
        else
            fail "grow_ops: $name vs the PyTorch reference: ${r:-$(tail -1 "$tmp/ref.err")} ${o:-}"
        fi
    done
fi

# ---------------------------------------------- bad input: one line, non-zero exit, no file
base="$tmp/tokenformer.safetensors"
for bad in "--add-layers 3 --at stack" "--add-layers 1 --init zero-key" "--add-layers 1 --init copy --layers 0" \
           "--kv +8 --init copy" "--d-model 3x" "--d-model 1x" "--d-model 2x --kv +8" "--d-model 2x --add-layers 2" \
           "--d-model 2x --init copy" "--noise 0.1" "--d-model 2x --noise -1" "--add-layers 1 --at top"; do
    refused "$base" "$bad"
done
exit $((failures > 0))
