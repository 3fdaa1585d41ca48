#!/usr/bin/env bash
# tokenformer grow (docs/MODEL.md, growth): zero-key growth keeps the function exactly,
# --init random does not; the grown model trains and its new rows come alive;
# shrinking removes the least important rows (zero-key rows first, so grow then
# shrink gives the original back); --freeze-old, --layers, optimizer moments and
# row_segments of new rows; the schedule line of --new-stage; the defaults (--init random,
# re-warm on --resume of a just-grown checkpoint, --continue-schedule, no second re-warm).
# Prints PASS/FAIL/SKIP lines and exits non-zero on any failure. Uses $TF_BIN
# (default ./tokenformer) so that `make asan` runs it on the sanitizer binary.
source "$(dirname "${BASH_SOURCE[0]}")/lib_grow.sh" grow

# Checkpoint checks in Python (json header + numpy), one subcommand per check.
cat >"$tmp/st.py" <<'PYEOF'
import math, sys
from ckpt_check import check, compare, finish, load, np

def weights(t):
    return {k: v for k, v in t.items() if not k.startswith("opt.")}

def is_patt(name):
    return name.endswith(".key") or name.endswith(".value")

def grown_names(src, dst):
    return [k for k in weights(dst) if is_patt(k) and dst[k].shape[0] != src[k].shape[0]]

cmd, args = sys.argv[1], sys.argv[2:]

if compare(cmd, args):
    pass
elif cmd == "rows":  # rows CKPT -> "h.0.attn.q.key=16 ..." for every Pattention key
    t, _, _ = load(args[0])
    print(" ".join(f"{k}={v.shape[0]}" for k, v in t.items() if k.endswith(".key") and not k.startswith("opt.")))

elif cmd == "grown":  # grown SRC DST INIT: weights, tau, Adam moments and row_segments of a grow
    src, smeta, _ = load(args[0])
    dst, dmeta, segs = load(args[1])
    init = args[2]
    step = int(smeta["step"])
    names = grown_names(src, dst)
    check(names, "no tensor grew")
    for k in weights(dst):
        if k in names:
            n = src[k].shape[0]
            check(np.array_equal(dst[k][:n], src[k]), f"{k}: old rows changed")
            new = dst[k][n:]
            if k.endswith(".key"):
                if init == "zero-key":
                    check(not new.any(), f"{k}: new key rows are not all zero")
                else:
                    check((np.abs(new).sum(1) > 0).all(), f"{k}: some new key row is zero under --init random")
            else:
                check((np.abs(new).sum(1) > 0).all(), f"{k}: some new value row is zero (dead rows)")
            for mom in ("opt.m.", "opt.v."):
                check(mom + k in dst, f"{mom}{k} missing")
                if mom + k in dst:
                    check(np.array_equal(dst[mom + k][:n], src[mom + k]), f"{mom}{k}: old rows differ from the source")
                    check(not dst[mom + k][n:].any(), f"{mom}{k}: new rows not zero")
            seg = segs.get(k)
            check(seg is not None and seg[-1][:2] == [n, step],
                  f"{k}: row_segments {seg} does not end with [{n}, {step}, ...] (new rows born at step {step})")
        elif k.endswith(".tau"):
            base = k[:-len(".tau")]
            if base + ".key" in names:
                want = math.sqrt(dst[base + ".key"].shape[0]) if init == "random" else float(src[k][0])
                check(abs(float(dst[k][0]) - want) <= 1e-5 * want, f"{k}: tau {dst[k][0]} expected {want}")
            else:
                check(np.array_equal(dst[k], src[k]), f"{k}: changed although not grown")
        else:
            check(np.array_equal(dst[k], src[k]), f"{k}: changed although not grown")
            check(k not in segs or len(segs[k]) == 1, f"{k}: has row_segments {segs.get(k)} although not grown")
    print(f"{len(names)} grown tensors, new rows born at step {step}")

elif cmd == "moved":  # moved SRC GROWN TRAINED: new rows moved away from their init, none dead
    src, _, _ = load(args[0])
    g, _, _ = load(args[1])
    tr, _, _ = load(args[2])
    names = grown_names(src, g)
    check(names, "no tensor grew")
    min_key, min_dv = math.inf, math.inf
    for k in names:
        n = src[k].shape[0]
        new_g, new_t = g[k][n:], tr[k][n:]
        delta = np.abs(new_t - new_g).max(1)
        min_dv = min(min_dv, float(delta.min()))
        check((delta > 0).all(), f"{k}: {(delta == 0).sum()} of {len(delta)} new rows did not move")
        if k.endswith(".key"):
            norms = np.linalg.norm(new_t, axis=1)
            min_key = min(min_key, float(norms.min()))
            check((norms > 0).all(), f"{k}: {(norms == 0).sum()} new key rows still zero")
    print(f"{len(names)} grown tensors; smallest new key row norm {min_key:.3g}, smallest max|change| of a new row {min_dv:.3g}")

elif cmd == "frozen":  # frozen SRC GROWN TRAINED: old rows and ungrown tensors bit-identical, new rows move
    src, _, _ = load(args[0])
    g, _, _ = load(args[1])
    tr, _, _ = load(args[2])
    names = grown_names(src, g)
    check(names, "no tensor grew")
    n_same = 0
    for k in weights(g):
        if k in names:
            n = src[k].shape[0]
            check(np.array_equal(tr[k][:n], g[k][:n]), f"{k}: frozen old rows changed (max {np.abs(tr[k][:n] - g[k][:n]).max():.3g})")
            moved = np.abs(tr[k][n:] - g[k][n:]).max(1) > 0
            check(moved.all(), f"{k}: {(~moved).sum()} new rows did not move")
        else:
            check(np.array_equal(tr[k], g[k]), f"{k}: changed although frozen (max {np.abs(tr[k] - g[k]).max():.3g})")
            n_same += 1
    print(f"{len(names)} grown tensors (old rows unchanged, new rows moved), {n_same} other tensors unchanged")

elif cmd == "same":  # same A B: every weight and Adam moment bit-identical
    a, am, _ = load(args[0])
    b, bm, _ = load(args[1])
    check(sorted(a) == sorted(b), "different tensor names")
    for k in a:
        if k in b:
            check(a[k].shape == b[k].shape and np.array_equal(a[k], b[k]), f"{k}: differs")

finish()
PYEOF

# "train loss A (...), val loss B (...)" -> "A B"
ev() {
    "$BIN" eval --ckpt "$1" --batches 4 --batch-size 8 --seed 7 --threads 1 "${@:2}" 2>&1 |
        sed -n 's/^train loss \([0-9.]*\) .*, val loss \([0-9.]*\) .*/\1 \2/p'
}

# ---------------------------------------------------------------- base model
if ! "$BIN" train data/input.txt "${MODEL[@]}" "${TRAIN[@]}" --max-iters 40 --out "$tmp/base.safetensors" >"$tmp/base.log" 2>&1; then
    tail -5 "$tmp/base.log"
    fail "grow: training the base model"
    exit 1
fi
base="$tmp/base.safetensors"
read -r base_tl base_vl <<<"$(ev "$base")"

# ---------------------------------------------------------------- zero-key: exact function
if grow --ckpt "$base" --kv +8 --init zero-key --out "$tmp/g.safetensors" >"$tmp/g.log" 2>&1; then
    read -r b a <<<"$(before_after "$tmp/g.log")"
    if [[ -n ${a:-} ]] && out=$(st close "$b" "$a" 1e-6); then
        pass "grow --kv +8 (zero-key): grow's own val loss before $b = after $a"
    else
        fail "grow --kv +8 (zero-key): before ${b:-?} vs after ${a:-?} ${out:-}"
    fi
    read -r g_tl g_vl <<<"$(ev "$tmp/g.safetensors")"
    if [[ -n ${g_vl:-} ]] && out=$(st close "$base_vl" "$g_vl" 1e-6) && out2=$(st close "$base_tl" "$g_tl" 1e-6); then
        pass "grow --kv +8 (zero-key): eval train/val loss $base_tl/$base_vl before = $g_tl/$g_vl after"
    else
        fail "grow --kv +8 (zero-key): eval $base_tl/$base_vl before vs ${g_tl:-?}/${g_vl:-?} after ${out:-} ${out2:-}"
    fi
    rows=$(st rows "$tmp/g.safetensors")
    want="h.0.attn.q.key=24 h.0.attn.k.key=24 h.0.attn.v.key=24 h.0.attn.o.key=24 h.0.ffn.key=64 h.1.attn.q.key=24 h.1.attn.k.key=24 h.1.attn.v.key=24 h.1.attn.o.key=24 h.1.ffn.key=64"
    [[ $rows == "$want" ]] && pass "grow --kv +8: attention 16 -> 24 rows, ffn 32 -> 64 (4N by default)" \
        || fail "grow --kv +8: rows $rows, expected $want"
    "$BIN" info --ckpt "$tmp/g.safetensors" 2>&1 | grep -q "layer 1: q=24 (tau 4) k=24 (tau 4) v=24 (tau 4) o=24 (tau 4) ffn=64 (tau 5.66)" \
        && pass "info shows the grown row counts with tau kept" || fail "info on the grown checkpoint: $("$BIN" info --ckpt "$tmp/g.safetensors" 2>&1 | grep 'layer 1')"
    out=$(st grown "$base" "$tmp/g.safetensors" zero-key) \
        && pass "grow zero-key: old rows and other tensors copied, new keys 0, values random, tau kept; Adam moments of new rows 0, of old rows = source; row_segments birth = source step ($out)" \
        || fail "grow zero-key checkpoint contents: $out"
else
    tail -3 "$tmp/g.log"
    fail "grow --kv +8 (zero-key) exited non-zero"
fi

# ---------------------------------------------------------------- --init random: not function-preserving
if grow --ckpt "$base" --kv +8 --init random --out "$tmp/r.safetensors" >"$tmp/r.log" 2>&1; then
    read -r b a <<<"$(before_after "$tmp/r.log")"
    read -r r_tl r_vl <<<"$(ev "$tmp/r.safetensors")"
    if [[ -n ${a:-} && -n ${r_vl:-} ]] && st differ "$b" "$a" 1e-4 >/dev/null && st differ "$base_vl" "$r_vl" 1e-4 >/dev/null; then
        pass "grow --init random changes the function: grow's val loss $b -> $a, eval $base_vl -> $r_vl"
    else
        fail "grow --init random: loss should change: grow ${b:-?} -> ${a:-?}, eval $base_vl -> ${r_vl:-?}"
    fi
    out=$(st grown "$base" "$tmp/r.safetensors" random) \
        && pass "grow --init random: random new keys and values, tau = sqrt(n), new Adam moments 0 ($out)" \
        || fail "grow --init random checkpoint contents: $out"
else
    tail -3 "$tmp/r.log"
    fail "grow --init random exited non-zero"
fi

# ---------------------------------------------------------------- the default recipe is --init random
if grow --ckpt "$base" --kv +8 --out "$tmp/dr.safetensors" >"$tmp/dr.log" 2>&1; then
    read -r b a <<<"$(before_after "$tmp/dr.log")"
    [[ -n ${a:-} ]] && st differ "$b" "$a" 1e-4 >/dev/null         && pass "grow without --init changes the loss: $b -> $a" || fail "grow without --init: loss ${b:-?} -> ${a:-?}"
    out=$(st grown "$base" "$tmp/dr.safetensors" random) && out2=$(st same "$tmp/r.safetensors" "$tmp/dr.safetensors") \
        && pass "grow without --init = --init random: random keys and values, tau = sqrt(n_new) ($out)" \
        || fail "grow without --init is not --init random: $out ${out2:-}"
    grep -q "^recipe: --init random (default, the official recipe: the loss changes" "$tmp/dr.log" \
        && pass "grow without --init names the default recipe: $(grep '^recipe' "$tmp/dr.log")" \
        || fail "grow without --init: no 'recipe: --init random (default...' line: $(grep '^recipe' "$tmp/dr.log")"
    grep -q "^recipe: --init zero-key (the function is unchanged)" "$tmp/g.log" \
        && pass "grow --init zero-key names its recipe" || fail "grow --init zero-key: no recipe line: $(grep '^recipe' "$tmp/g.log")"
else
    tail -3 "$tmp/dr.log"
    fail "grow --kv +8 without --init exited non-zero"
fi

# ---------------------------------------------------------------- resume: loss falls, new rows come alive
if "$BIN" train data/input.txt "${TRAIN[@]}" --resume "$tmp/g.safetensors" --new-stage --max-iters 40 \
    --out "$tmp/gt.safetensors" >"$tmp/gt.log" 2>&1; then
    grep -q "^schedule: new stage from iteration 40: warmup 5 + cosine to iteration 80" "$tmp/gt.log" \
        && pass "train --resume --new-stage logs that the schedule restarts ($(grep '^schedule' "$tmp/gt.log"))" \
        || fail "train --new-stage: no 'schedule: new stage' line: $(grep '^schedule' "$tmp/gt.log")"
    read -r t_tl t_vl <<<"$(ev "$tmp/gt.safetensors")"
    [[ -n ${t_vl:-} ]] && st less "$t_vl" "$base_vl" >/dev/null \
        && pass "40 steps after growing lower the val loss: $base_vl -> $t_vl" \
        || fail "40 steps after growing: val loss $base_vl -> ${t_vl:-?}"
    out=$(st moved "$base" "$tmp/g.safetensors" "$tmp/gt.safetensors") \
        && pass "after 40 steps every new key row is non-zero and every new row moved from its init ($out)" \
        || fail "new rows after 40 steps: $out"
else
    tail -3 "$tmp/gt.log"
    fail "train --resume of the grown checkpoint exited non-zero"
fi
if "$BIN" train data/input.txt --threads 1 --resume "$tmp/g.safetensors" --max-iters 60 --continue-schedule \
    --out "$tmp/gc.safetensors" >"$tmp/gc.log" 2>&1; then
    grep -q "^schedule: continuing the checkpoint's schedule (stage start 0) to iteration 60" "$tmp/gc.log" \
        && ! grep -q "^grown checkpoint" "$tmp/gc.log" \
        && pass "train --resume --continue-schedule of a grown checkpoint logs that the schedule continues" \
        || fail "train --resume --continue-schedule: no 'schedule: continuing' line: $(grep '^schedule\|^grown' "$tmp/gc.log")"
    grep -q "^step 60:" "$tmp/gc.log" && pass "train --resume continues to --max-iters 60" \
        || fail "train --resume --max-iters 60: no 'step 60' line"
else
    tail -3 "$tmp/gc.log"
    fail "train --resume (continuing schedule) exited non-zero"
fi

# ---------------------------------------------------------------- default re-warm after a grow
# A run stopped at 20 of 40, grown: a plain --resume restarts the warmup at 20 and
# still ends at 40; resumed again after 5 more steps, it continues (no second re-warm).
if "$BIN" train data/input.txt "${MODEL[@]}" "${TRAIN[@]}" --max-iters 40 --stop-at 20 --out "$tmp/h.safetensors" >"$tmp/h.log" 2>&1 &&
    grow --ckpt "$tmp/h.safetensors" --kv +8 --out "$tmp/hg.safetensors" >"$tmp/hg.log" 2>&1; then
    if "$BIN" train data/input.txt --threads 1 --resume "$tmp/hg.safetensors" --stop-at 25 --log-interval 1 --log "$tmp/hr.csv" --out "$tmp/hr.safetensors" >"$tmp/hr.log" 2>&1; then
        grep -q "^grown checkpoint: warmup restarts at iteration 20, cosine ends at 40 (--continue-schedule to keep the schedule)" "$tmp/hr.log" \
            && ! grep -q "^schedule: continuing" "$tmp/hr.log" \
            && pass "train --resume of a just-grown checkpoint re-warms at its iteration and keeps max_iters: $(grep '^grown' "$tmp/hr.log")" \
            || fail "train --resume of a just-grown checkpoint: $(grep '^schedule\|^grown' "$tmp/hr.log")"
        # warmup 5 from iteration 20: the first step's lr is lr * 1/6 (the --log CSV's progress row)
        lr21=$(log_rows "$tmp/hr.csv" progress iter lr | awk '$1 == 21 { print $2 }')
        awk -v x="${lr21:-0}" 'BEGIN { d = x - 1e-3 / 6; exit !(d < 1e-9 && d > -1e-9) }' \
            && pass "the re-warmed schedule's first step runs at the warmup lr: $lr21 = 1e-3/6" \
            || fail "re-warm: first step's lr is ${lr21:-missing}, not 1e-3/6"
        if "$BIN" train data/input.txt --threads 1 --resume "$tmp/hr.safetensors" --out "$tmp/hr2.safetensors" >"$tmp/hr2.log" 2>&1; then
            grep -q "^schedule: continuing the checkpoint's schedule (stage start 20) to iteration 40" "$tmp/hr2.log" \
                && ! grep -q "^grown checkpoint" "$tmp/hr2.log" \
                && pass "a second --resume (trained since the grow) continues the re-warmed schedule: $(grep '^schedule' "$tmp/hr2.log")" \
                || fail "second --resume after a grow: $(grep '^schedule\|^grown' "$tmp/hr2.log")"
        else
            tail -3 "$tmp/hr2.log"
            fail "second --resume after a grow exited non-zero"
        fi
    else
        tail -3 "$tmp/hr.log"
        fail "train --resume of a just-grown checkpoint exited non-zero"
    fi
    if "$BIN" train data/input.txt --threads 1 --resume "$tmp/hg.safetensors" --continue-schedule --stop-at 21 --log-interval 1 --log "$tmp/hc.csv" --out "$tmp/hc.safetensors" >"$tmp/hc.log" 2>&1; then
        lr21=$(log_rows "$tmp/hc.csv" progress iter lr | awk '$1 == 21 { print $2 }')
        grep -q "^schedule: continuing the checkpoint's schedule (stage start 0) to iteration 40" "$tmp/hc.log" \
            && awk -v x="${lr21:-0}" 'BEGIN { d = x - 1e-3 / 6; exit !(x > 0 && (d > 1e-6 || d < -1e-6)) }' \
            && pass "--continue-schedule keeps the schedule of a just-grown checkpoint: lr $lr21 at iteration 21" \
            || fail "--continue-schedule: $(grep '^schedule\|^grown' "$tmp/hc.log")"
    else
        tail -3 "$tmp/hc.log"
        fail "train --resume --continue-schedule exited non-zero"
    fi
else
    tail -3 "$tmp/h.log" "$tmp/hg.log"
    fail "training to --stop-at 20 and growing"
fi

# ---------------------------------------------------------------- --freeze-old
if "$BIN" train data/input.txt "${TRAIN[@]}" --resume "$tmp/g.safetensors" --new-stage --freeze-old --max-iters 20 \
    --out "$tmp/gf.safetensors" >"$tmp/gf.log" 2>&1; then
    grep -q "^freeze-old: only rows added by the latest grow are trained" "$tmp/gf.log" \
        && pass "train --freeze-old says so in the log" || fail "train --freeze-old: no 'freeze-old' line"
    out=$(st frozen "$base" "$tmp/g.safetensors" "$tmp/gf.safetensors") \
        && pass "--freeze-old, 20 steps: old rows, wte, ln_f and tau bit-identical; every new row moved ($out)" \
        || fail "--freeze-old: $out"
else
    tail -3 "$tmp/gf.log"
    fail "train --freeze-old exited non-zero"
fi
if "$BIN" train data/input.txt --threads 1 --resume "$base" --freeze-old --max-iters 50 --out "$tmp/nf.safetensors" >"$tmp/nf.log" 2>&1; then
    fail "train --freeze-old on a never-grown checkpoint should refuse"
else
    grep -q "no rows added by 'grow'" "$tmp/nf.log" && pass "train --freeze-old on a never-grown checkpoint refuses with a clear message" \
        || fail "train --freeze-old on a never-grown checkpoint: $(tail -1 "$tmp/nf.log")"
fi

# ---------------------------------------------------------------- shrinking
if grow --ckpt "$base" --kv -4 --out "$tmp/s.safetensors" >"$tmp/s.log" 2>&1; then
    rows=$(st rows "$tmp/s.safetensors")
    want="h.0.attn.q.key=12 h.0.attn.k.key=12 h.0.attn.v.key=12 h.0.attn.o.key=12 h.0.ffn.key=16 h.1.attn.q.key=12 h.1.attn.k.key=12 h.1.attn.v.key=12 h.1.attn.o.key=12 h.1.ffn.key=16"
    [[ $rows == "$want" ]] && pass "grow --kv -4: attention 16 -> 12 rows, ffn 32 -> 16" || fail "grow --kv -4: rows $rows, expected $want"
    grep -q '^note: layer 0 has a Pattention of 12 rows, not a multiple of 8' "$tmp/s.log" &&
        pass "grow --kv -4 notes the 12 rows" || fail grow_shrink_unaligned_note "$(grep '^note' "$tmp/s.log")"
    read -r b a <<<"$(before_after "$tmp/s.log")"
    [[ -n ${a:-} ]] && pass "grow --kv -4 reports the val loss before $b and after $a" \
        || fail "grow --kv -4: no 'val loss ... before X, after Y' line: $(cat "$tmp/s.log")"
    grep -q "^removed rows: attention -4, ffn -16" "$tmp/s.log" && pass "grow --kv -4 says it removed rows" \
        || fail "grow --kv -4: no 'removed rows' line"
    read -r s_tl s_vl <<<"$(ev "$tmp/s.safetensors")"
    [[ -n ${s_vl:-} ]] && pass "the shrunk checkpoint loads and evaluates (val loss $base_vl -> $s_vl)" \
        || fail "eval of the shrunk checkpoint failed"
else
    tail -3 "$tmp/s.log"
    fail "grow --kv -4 exited non-zero"
fi
# grow +8 then shrink -8 (default data file): the zero-key rows go first, the original comes back
if "$BIN" grow --threads 1 --batches 4 --ckpt "$tmp/g.safetensors" --kv -8 --out "$tmp/gs.safetensors" >"$tmp/gs.log" 2>&1; then
    read -r gs_tl gs_vl <<<"$(ev "$tmp/gs.safetensors")"
    [[ "$gs_tl $gs_vl" == "$base_tl $base_vl" ]] \
        && pass "grow +8 then -8: eval losses $gs_tl/$gs_vl = original $base_tl/$base_vl" \
        || fail "grow +8 then -8: eval ${gs_tl:-?}/${gs_vl:-?} vs original $base_tl/$base_vl"
    out=$(st same "$base" "$tmp/gs.safetensors") \
        && pass "grow +8 then -8: every weight and Adam moment bit-identical to the original (zero-key rows removed first)" \
        || fail "grow +8 then -8 is not the original: $out"
else
    tail -3 "$tmp/gs.log"
    fail "grow --kv -8 of the grown checkpoint exited non-zero"
fi
if "$BIN" grow --ckpt "$base" --kv -16 --threads 1 --batches 2 --out "$tmp/bad.safetensors" >"$tmp/bad.log" 2>&1; then
    fail "grow --kv -16 of 16 rows should refuse"
else
    grep -q "at least one must stay" "$tmp/bad.log" && [[ ! -e "$tmp/bad.safetensors" ]] \
        && pass "grow --kv -16 (all rows) refuses: $(tail -1 "$tmp/bad.log")" || fail "grow --kv -16: $(tail -1 "$tmp/bad.log")"
fi

# ---------------------------------------------------------------- --layers
if grow --ckpt "$base" --kv +8 --ffn-kv +4 --layers 1 --init zero-key --out "$tmp/l.safetensors" >"$tmp/l.log" 2>&1; then
    rows=$(st rows "$tmp/l.safetensors")
    want="h.0.attn.q.key=16 h.0.attn.k.key=16 h.0.attn.v.key=16 h.0.attn.o.key=16 h.0.ffn.key=32 h.1.attn.q.key=24 h.1.attn.k.key=24 h.1.attn.v.key=24 h.1.attn.o.key=24 h.1.ffn.key=36"
    [[ $rows == "$want" ]] && pass "grow --layers 1 --kv +8 --ffn-kv +4: only layer 1 changes shape" || fail "grow --layers 1: rows $rows, expected $want"
    # 36 FFN rows in layer 1: the GPU note on row counts, once; none for the +8 grow above
    if [[ $(grep -c '^note: layer 1 has a Pattention of 36 rows, not a multiple of 8' "$tmp/l.log") == 1 ]] &&
        ! grep -q '^note:' "$tmp/g.log"; then
        pass "grow notes a row count that is not a multiple of 8 (and only then)"
    else
        fail grow_unaligned_rows_note "$(grep '^note' "$tmp/l.log" "$tmp/g.log")"
    fi
    out=$(st grown "$base" "$tmp/l.safetensors" zero-key) && pass "grow --layers 1: layer 0 tensors untouched ($out)" \
        || fail "grow --layers 1 contents: $out"
    read -r b a <<<"$(before_after "$tmp/l.log")"
    [[ -n ${a:-} ]] && st close "$b" "$a" 1e-6 >/dev/null && pass "grow --layers 1 (zero-key) keeps the loss: $b = $a" \
        || fail "grow --layers 1: loss ${b:-?} -> ${a:-?}"
    if "$BIN" train data/input.txt "${TRAIN[@]}" --resume "$tmp/l.safetensors" --new-stage --max-iters 10 --out "$tmp/lt.safetensors" >"$tmp/lt.log" 2>&1; then
        pass "a checkpoint with different row counts per layer trains"
    else
        tail -3 "$tmp/lt.log"
        fail "training a checkpoint grown in one layer"
    fi
else
    tail -3 "$tmp/l.log"
    fail "grow --layers 1 exited non-zero"
fi

# ---------------------------------------------------------------- the other pnorm modes
# gelu_l2_norm: GeLU(0) = 0 adds nothing to the norm, so zero keys keep the function;
# softmax (n * softmax(A)): a zero key still takes exp(0) of the mass, so grow must say so.
for pn in gelu_l2_norm softmax; do
    if ! "$BIN" train data/input.txt "${MODEL[@]}" "${TRAIN[@]}" --pnorm $pn --max-iters 20 --out "$tmp/$pn.safetensors" >"$tmp/$pn.log" 2>&1; then
        tail -3 "$tmp/$pn.log"
        fail "training a --pnorm $pn model"
        continue
    fi
    if ! grow --ckpt "$tmp/$pn.safetensors" --kv +8 --init zero-key --out "$tmp/g$pn.safetensors" >"$tmp/g$pn.log" 2>&1; then
        tail -3 "$tmp/g$pn.log"
        fail "grow --kv +8 of a --pnorm $pn model"
        continue
    fi
    read -r b a <<<"$(before_after "$tmp/g$pn.log")"
    if [[ $pn == softmax ]]; then
        grep -q "warning.*softmax.*do NOT keep the function" "$tmp/g$pn.log" \
            && pass "grow zero-key on a --pnorm softmax model warns that the function changes (loss $b -> $a)" \
            || fail "grow zero-key on --pnorm softmax: no warning (loss ${b:-?} -> ${a:-?})"
    else
        [[ -n ${a:-} ]] && st close "$b" "$a" 1e-6 >/dev/null && ! grep -q warning "$tmp/g$pn.log" \
            && pass "grow zero-key on a --pnorm $pn model keeps the loss: $b = $a" \
            || fail "grow zero-key on --pnorm $pn: loss ${b:-?} -> ${a:-?} $(grep warning "$tmp/g$pn.log")"
    fi
done

# ---------------------------------------------------------------- CUDA: zero-key on the GPU
if "$BIN" eval --device cuda --ckpt "$base" --batches 1 --batch-size 2 --threads 1 >"$tmp/cuda_probe.log" 2>&1; then
    read -r cb_tl cb_vl <<<"$(ev "$base" --device cuda)"
    read -r cg_tl cg_vl <<<"$(ev "$tmp/g.safetensors" --device cuda)"
    if [[ -n ${cg_vl:-} ]] && st close "$cb_vl" "$cg_vl" 1e-6 >/dev/null && st close "$cb_tl" "$cg_tl" 1e-6 >/dev/null; then
        pass "cuda: zero-key grow keeps the eval loss ($cb_tl/$cb_vl before, $cg_tl/$cg_vl after)"
    else
        fail "cuda: zero-key grow changed the eval loss: ${cb_tl:-?}/${cb_vl:-?} -> ${cg_tl:-?}/${cg_vl:-?}"
    fi
else
    echo "SKIP grow on cuda: eval --device cuda is not usable here ($(tail -1 "$tmp/cuda_probe.log"))"
fi

exit $((failures > 0))
