#!/usr/bin/env bash
# Growth recipes and depth growth (docs/GROWTH.md): grow --key-init-scale and --tau,
# train --new-row-lr-mult (rows of the latest grow only, kept in the checkpoint),
# train --stop-at (grow in the middle of a schedule that ends later), the growth
# history shown by info, and grow --add-layers: bit-identical loss, new blocks'
# weights, moments, segments and tau, FLOPs carried, bad input refused.
# Prints PASS/FAIL/SKIP lines and exits non-zero on any failure. Uses $TF_BIN.
source "$(dirname "${BASH_SOURCE[0]}")/lib_grow.sh" grow_recipes

cat >"$tmp/st.py" <<'PYEOF'
import math, sys
from ckpt_check import check, compare, finish, load, np

cmd, args = sys.argv[1], sys.argv[2:]
if compare(cmd, args):
    pass
elif cmd == "keystd":  # keystd SRC DST WANT: std of the new key rows ~ WANT
    src, _, _ = load(args[0]); dst, _, _ = load(args[1]); want = float(args[2])
    new = np.concatenate([dst[k][src[k].shape[0]:].ravel() for k in dst
                          if k.endswith(".key") and not k.startswith("opt.")])
    std = float(new.std())
    check(abs(std - want) <= 0.1 * want, f"new key std {std:.4g}, expected {want:g}")
    print(f"new key std {std:.4g}")
elif cmd == "tau":  # tau SRC DST keep|reset
    src, _, _ = load(args[0]); dst, _, _ = load(args[1])
    for k in dst:
        if k.endswith(".tau"):
            n = dst[k[:-4] + ".key"].shape[0]
            want = math.sqrt(n) if args[2] == "reset" else float(src[k][0])
            check(abs(float(dst[k][0]) - want) <= 1e-5 * want, f"{k}: tau {dst[k][0]}, expected {want}")
elif cmd == "lrmult":  # lrmult GROWN STEP1 STEPM M: one step; old rows equal, new rows' change x M
    g, _, _ = load(args[0]); a, _, _ = load(args[1]); b, _, _ = load(args[2]); M = float(args[3])
    ratios = []
    _, _, segs = load(args[0])
    for k, sl in segs.items():  # the grown tensors: their last segment is the new rows
        r0 = sl[-1][0]
        da, db = a[k][r0:] - g[k][r0:], b[k][r0:] - g[k][r0:]
        m = np.abs(da) > 1e-6
        ratios.extend((db[m] / da[m]).ravel().tolist())
        # rows before the new segment: the same update with and without M
        check(np.array_equal(a[k][:r0], b[k][:r0]), f"{k}: old rows differ with --new-row-lr-mult")
    r = np.array(ratios)
    check(len(r) > 0 and np.abs(r - M).max() < 1e-2 * M, f"new-row change ratio {r.min() if len(r) else 0:.4g}..{r.max() if len(r) else 0:.4g}, expected {M}")
    print(f"{len(r)} new-row elements, change ratio {r.mean():.4f}")
elif cmd == "layers":  # layers SRC DST MAP: DST's layer j = SRC's layer MAP[j] (or new, '-')
    src, _, _ = load(args[0]); dst, dm, segs = load(args[1]); lm = args[2].split(",")
    step = int(dm["step"])
    for k in dst:
        if not k.startswith("h.") and not k.startswith("opt."):
            check(np.array_equal(dst[k], src[k]), f"{k}: changed")
    for j, s in enumerate(lm):
        for k in [k for k in dst if k.startswith(f"h.{j}.")]:
            rest = k[len(f"h.{j}."):]
            if s != "-":
                sk = f"h.{s}.{rest}"
                check(np.array_equal(dst[k], src[sk]), f"{k}: differs from {sk}")
                for mom in () if rest.endswith(".tau") else ("opt.m.", "opt.v."):
                    check(np.array_equal(dst[mom + k], src[mom + sk]), f"{mom}{k}: differs from {mom}{sk}")
                continue
            if rest.endswith(".tau"):
                n = dst[k[:-4] + ".key"].shape[0]
                check(abs(float(dst[k][0]) - math.sqrt(n)) < 1e-5, f"{k}: tau {dst[k][0]} not sqrt({n})")
                continue
            output = rest in ("attn.o.value", "ffn.value", "attn.o.weight", "mlp.down")
            if output:
                check(not dst[k].any(), f"{k}: output side of a new block is not zero")
            elif dst[k].ndim == 1:
                check((dst[k] == 1).all(), f"{k}: norm weight of a new block is not 1")
            else:
                check((np.abs(dst[k]).sum(1) > 0).all(), f"{k}: a row of a new block is zero")
            for mom in ("opt.m.", "opt.v."):
                check(not dst[mom + k].any(), f"{mom}{k}: moments of a new block are not zero")
            check(segs.get(k) == [[0, step, 0]], f"{k}: row_segments {segs.get(k)}, expected [[0, {step}, 0]]")
elif cmd == "ffn":  # ffn SRC DST M: M new hidden units; up/gate rows drawn, down rows zero, old rows kept
    src, _, _ = load(args[0]); dst, dm, segs = load(args[1]); M = int(args[2]); step = int(dm["step"])
    grown = [k for k in dst if not k.startswith("opt.") and k.split(".")[-1] in ("up", "gate", "down")]
    check(grown, "no MLP tensors")
    for k in grown:
        n = src[k].shape[0]
        check(dst[k].shape[0] == n + M, f"{k}: {dst[k].shape[0]} rows, expected {n + M}")
        check(np.array_equal(dst[k][:n], src[k]), f"{k}: old rows changed")
        new = dst[k][n:]
        if k.endswith(".down"):
            check(not new.any(), f"{k}: new down rows are not zero")
        else:
            check(abs(float(new.std()) - 0.02) < 0.004, f"{k}: new rows std {new.std():.4g}, expected 0.02")
        check(not dst["opt.m." + k][n:].any(), f"opt.m.{k}: new rows not zero")
        check(segs.get(k, [[0]])[-1][:2] == [n, step], f"{k}: row_segments {segs.get(k)}")
    for k in dst:
        if k not in grown and not k.startswith("opt."):
            check(np.array_equal(dst[k], src[k]), f"{k}: changed although not grown")
finish()
PYEOF
refused() { grow_refused "grow_recipes: $1" "$2" "$3"; } # refused LABEL CKPT ARGS

# -------------------------------------------------- base model: 40 iterations of a schedule to 80
if ! "$BIN" train data/input.txt "${MODEL[@]}" "${TRAIN[@]}" --max-iters 80 --stop-at 40 --out "$tmp/base.safetensors" >"$tmp/base.log" 2>&1; then
    tail -5 "$tmp/base.log"; fail "grow_recipes: training the base model"; exit 1
fi
base="$tmp/base.safetensors"

# -------------------------------------------------- --stop-at: the schedule ends later
if [[ $(st meta "$base" iter) == 40 && $(st trainmeta "$base" max_iters) == 80 ]] &&
    grep -q "stopping at iteration 40; the schedule ends at iteration 80" "$tmp/base.log"; then
    # continuing to 80 gives the run that never stopped
    "$BIN" train data/input.txt "${MODEL[@]}" "${TRAIN[@]}" --max-iters 80 --out "$tmp/full.safetensors" >/dev/null 2>&1
    "$BIN" train --resume "$base" --threads 1 --out "$tmp/cont.safetensors" >"$tmp/cont.log" 2>&1
    if [[ $(val "$tmp/full.safetensors") == $(val "$tmp/cont.safetensors") && -n $(val "$tmp/full.safetensors") ]]; then
        pass "grow_recipes: --stop-at 40 of an 80-iteration schedule, then --resume, equals the 80-iteration run"
    else
        fail "grow_recipes: --stop-at then --resume: val $(val "$tmp/cont.safetensors") vs one run $(val "$tmp/full.safetensors")"
    fi
else
    fail "grow_recipes: --stop-at 40: iter $(st meta "$base" iter), max_iters $(st trainmeta "$base" max_iters)"
fi

# -------------------------------------------------- --key-init-scale
if grow --ckpt "$base" --kv +8 --init zero-key --key-init-scale 0.01 --out "$tmp/ks.safetensors" >"$tmp/ks.log" 2>&1 &&
    out=$(st keystd "$base" "$tmp/ks.safetensors" 0.01); then
    read -r b a <<<"$(before_after "$tmp/ks.log")"
    if [[ -n ${a:-} ]] && st close "$b" "$a" 0.01 >/dev/null && [[ $b != "$a" ]]; then
        pass "grow_recipes: --key-init-scale 0.01: $out, loss $b -> $a (nearly, not exactly, kept)"
    else
        fail "grow_recipes: --key-init-scale 0.01: loss $b -> $a"
    fi
else
    fail "grow_recipes: --key-init-scale 0.01: ${out:-$(tail -2 "$tmp/ks.log")}"
fi
# zero-key with --key-init-scale 0 stays exact
if grow --ckpt "$base" --kv +8 --init zero-key --key-init-scale 0 --out "$tmp/k0.safetensors" >"$tmp/k0.log" 2>&1; then
    read -r b a <<<"$(before_after "$tmp/k0.log")"
    [[ -n ${a:-} && $b == "$a" ]] && pass "grow_recipes: --key-init-scale 0 keeps the loss exactly ($b)" ||
        fail "grow_recipes: --key-init-scale 0: $b -> $a"
else
    fail "grow_recipes: --key-init-scale 0: $(tail -1 "$tmp/k0.log")"
fi

# -------------------------------------------------- --tau
for mode in keep reset; do
    for init in zero-key random; do
        if grow --ckpt "$base" --kv +8 --init $init --tau $mode --out "$tmp/t.safetensors" --force >"$tmp/t.log" 2>&1 &&
            out=$(st tau "$base" "$tmp/t.safetensors" $mode); then
            pass "grow_recipes: --init $init --tau $mode"
        else
            fail "grow_recipes: --init $init --tau $mode: ${out:-$(tail -1 "$tmp/t.log")}"
        fi
    done
done

# -------------------------------------------------- --new-row-lr-mult: one step, new rows x M, old rows as without
g="$tmp/ks.safetensors"
ok=1
"$BIN" train --resume "$g" --threads 1 --max-iters 41 --out "$tmp/m1.safetensors" >"$tmp/m1.log" 2>&1 || ok=0
"$BIN" train --resume "$g" --threads 1 --max-iters 41 --new-row-lr-mult 3 --out "$tmp/m3.safetensors" >"$tmp/m3.log" 2>&1 || ok=0
if ((ok)) && out=$(st lrmult "$g" "$tmp/m1.safetensors" "$tmp/m3.safetensors" 3); then
    pass "grow_recipes: --new-row-lr-mult 3: $out; old rows as with 1"
else
    fail "grow_recipes: --new-row-lr-mult 3: ${out:-$(tail -1 "$tmp/m3.log")}"
fi
if [[ $(st trainmeta "$tmp/m3.safetensors" new_row_lr_mult) == 3 ]] &&
    "$BIN" train --resume "$tmp/m3.safetensors" --threads 1 --max-iters 42 --out "$tmp/m3b.safetensors" >/dev/null 2>&1 &&
    [[ $(st trainmeta "$tmp/m3b.safetensors" new_row_lr_mult) == 3 ]]; then
    pass "grow_recipes: --new-row-lr-mult is stored in train_config and kept by --resume"
else
    fail "grow_recipes: new_row_lr_mult in train_config: $(st trainmeta "$tmp/m3.safetensors" new_row_lr_mult)"
fi
if "$BIN" train --resume "$g" --threads 1 --new-row-lr-mult 0 --out "$tmp/bad.safetensors" >/dev/null 2>"$tmp/err" ||
    [[ $(wc -l <"$tmp/err") != 1 ]]; then
    fail "grow_recipes: --new-row-lr-mult 0 is refused with one line: $(cat "$tmp/err")"
else
    pass "grow_recipes: --new-row-lr-mult 0 is refused"
fi

# -------------------------------------------------- growth history
"$BIN" info "$tmp/ks.safetensors" >"$tmp/info" 2>&1
if grep -q "iteration 40 (step 40): kv +8, init zero-key, layers all, key scale 0.01, tau keep" "$tmp/info" &&
    grep -q "iteration 40 (step 40): ffn +32" "$tmp/info" && "$BIN" info "$base" | grep -q "growth history: none"; then
    pass "grow_recipes: info shows the growth history"
else
    fail "grow_recipes: growth history: $(grep -A3 growth "$tmp/info")"
fi

# -------------------------------------------------- --add-layers: exact, new blocks, FLOPs carried
for spec in "1 end 0,1,-" "2 end 0,1,-,-" "2 interleave 0,-,1,-" "1 interleave 0,-,1" "3 interleave 0,-,-,1,-"; do
    read -r n at map <<<"$spec"
    if grow --ckpt "$base" --add-layers $n --at $at --out "$tmp/d.safetensors" --force >"$tmp/d.log" 2>&1; then
        read -r b a <<<"$(before_after "$tmp/d.log")"
        if [[ -n ${a:-} && $b == "$a" && $(val "$base") == $(val "$tmp/d.safetensors") ]] &&
            out=$(st layers "$base" "$tmp/d.safetensors" "$map"); then
            pass "grow_recipes: --add-layers $n --at $at: loss bit-identical ($b), layers $map, new blocks zero on the output side"
        else
            fail "grow_recipes: --add-layers $n --at $at: $b -> $a, eval $(val "$base") -> $(val "$tmp/d.safetensors"); $out"
        fi
    else
        fail "grow_recipes: --add-layers $n --at $at: $(tail -1 "$tmp/d.log")"
    fi
done
d="$tmp/d.safetensors"
if [[ $(st meta "$d" train_flops) == $(st meta "$base" train_flops) && -n $(st meta "$base" train_flops) ]] &&
    "$BIN" info "$d" | grep -q "layers +3, init zero-output, at interleave"; then
    pass "grow_recipes: --add-layers keeps train_flops ($(st meta "$d" train_flops)) and records the event"
else
    fail "grow_recipes: --add-layers: train_flops $(st meta "$d" train_flops) vs $(st meta "$base" train_flops)"
fi
# the grown model trains, and the new blocks' output side moves
if "$BIN" train --resume "$d" --threads 1 --max-iters 50 --log "$tmp/dt.csv" --out "$tmp/dt.safetensors" >"$tmp/dt.log" 2>&1 &&
    grep -q "^40,.*,grow," "$tmp/dt.csv" &&
    PYTHONPATH=tests "$PY" -c "
import sys; from ckpt_check import load
t,_,_=load('$tmp/dt.safetensors'); sys.exit(0 if abs(t['h.4.ffn.value']).max()>0 and abs(t['h.4.attn.o.value']).max()>0 else 1)"; then
    pass "grow_recipes: a model with added layers trains (the log marks the grow); the new blocks' output values move"
else
    fail "grow_recipes: training after --add-layers: $(tail -2 "$tmp/dt.log")"
fi
# bad input: one line on stderr, non-zero exit, no output file
for bad in "--add-layers 0" "--add-layers -1" "--add-layers 1000" "--add-layers 255" "--add-layers x" \
           "--add-layers 1 --kv +8" "--add-layers 1 --at middle" "--at end --kv +8" "--add-layers 1 --init random"; do
    refused "" "$base" "$bad"
done
# -------------------------------------------------- the baselines: FFN width and depth
for arch in transformer transformerpp; do
    ab="$tmp/$arch.safetensors"
    if ! "$BIN" train data/input.txt --arch $arch --n-layer 2 --d-model 32 --n-head 4 --n-ffn 64 --block-size 32 \
        "${TRAIN[@]}" --max-iters 30 --out "$ab" >"$tmp/$arch.log" 2>&1; then
        fail "grow_recipes: training a $arch: $(tail -1 "$tmp/$arch.log")"
        continue
    fi
    if grow --ckpt "$ab" --ffn-kv +32 --out "$tmp/$arch-f.safetensors" >"$tmp/f.log" 2>&1; then
        read -r b a <<<"$(before_after "$tmp/f.log")"
        if [[ -n ${a:-} && $b == "$a" && $(val "$ab") == $(val "$tmp/$arch-f.safetensors") ]] &&
            out=$(st ffn "$ab" "$tmp/$arch-f.safetensors" 32); then
            pass "grow_recipes: $arch --ffn-kv +32: loss bit-identical ($b); new up/gate rows drawn, down rows zero"
        else
            fail "grow_recipes: $arch --ffn-kv +32: $b -> $a; $out"
        fi
    else
        fail "grow_recipes: $arch --ffn-kv +32: $(tail -1 "$tmp/f.log")"
    fi
    if grow --ckpt "$ab" --add-layers 2 --at interleave --out "$tmp/$arch-d.safetensors" >"$tmp/d.log" 2>&1; then
        read -r b a <<<"$(before_after "$tmp/d.log")"
        if [[ -n ${a:-} && $b == "$a" && $(val "$ab") == $(val "$tmp/$arch-d.safetensors") ]] &&
            out=$(st layers "$ab" "$tmp/$arch-d.safetensors" "0,-,1,-"); then
            pass "grow_recipes: $arch --add-layers 2 --at interleave: loss bit-identical ($b), new blocks' attn.o and mlp.down zero"
        else
            fail "grow_recipes: $arch --add-layers 2: $b -> $a; $out"
        fi
    else
        fail "grow_recipes: $arch --add-layers 2: $(tail -1 "$tmp/d.log")"
    fi
    if "$BIN" train --resume "$tmp/$arch-d.safetensors" --threads 1 --max-iters 40 --out "$tmp/$arch-t.safetensors" >"$tmp/t.log" 2>&1; then
        pass "grow_recipes: a grown $arch trains"
    else
        fail "grow_recipes: training a grown $arch: $(tail -1 "$tmp/t.log")"
    fi
    for bad in "--kv +8" "--ffn-kv -8" "--ffn-kv +8 --init random" "--ffn-kv +8 --tau reset" "--add-layers 0"; do
        refused "$arch " "$ab" "$bad"
    done
done
exit $((failures > 0))
