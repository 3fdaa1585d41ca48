#!/usr/bin/env bash
# The baselines (--arch transformer, transformerpp) through every command on
# the CPU, at tiny sizes: exact --resume (a 30-iteration run and a
# 20-iteration run resumed to 30 log the same evaluations in their --log CSVs), the checkpoint
# round trip (info shows the arch, eval and sample load it, sampling is
# reproducible, the PyTorch reference loads the same parameters when torch
# is there), and bad input: an unknown --arch, an --arch on --resume that
# contradicts the checkpoint; a checkpoint config without "arch" loads as a
# tokenformer, one with an unknown arch is refused.
#
# Environment: TF_BIN (binary under test, default ./tokenformer), PYTHON
# (a python with torch; default: scripts/find_python.sh finds one).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" archs

TEXT=$WORK/text.txt
sample_text 20000 300 >"$TEXT"
CFG=(--n-layer 2 --d-model 16 --n-head 2 --block-size 16 --batch-size 4 --eval-interval 10
     --eval-iters 2 --dropout 0.1 --threads 1 --device cpu)

train() { # train NAME ARGS...: stdout in $WORK/NAME.log, stderr in $WORK/NAME.err, --log CSV in $WORK/NAME.csv
    local name=$1
    shift
    if ! timeout 300 "$BIN" train "$@" --log "$WORK/$name.csv" >"$WORK/$name.log" 2>"$WORK/$name.err"; then
        fail "$name" "train failed (status $?): $(tail -2 "$WORK/$name.err" | tr '\n' ' ')"
        return 1
    fi
}
# eval_at NAME N: "iter train_loss val_loss" of run NAME's evaluation at iteration N
eval_at() { log_rows "$WORK/$1.csv" eval iter train_loss val_loss | awk -v n="$2" '$1 == n'; }

for arch in transformer transformerpp; do
    train "${arch}_a" "$TEXT" --arch "$arch" "${CFG[@]}" --max-iters 30 --out "$WORK/${arch}_a"
    train "${arch}_b" "$TEXT" --arch "$arch" "${CFG[@]}" --max-iters 20 --out "$WORK/${arch}_b" &&
        train "${arch}_b2" "$TEXT" --resume "$WORK/${arch}_b/latest.safetensors" --arch "$arch" \
            --max-iters 30 --threads 1 --device cpu
    if [[ -s $WORK/${arch}_a.csv && -s $WORK/${arch}_b2.csv ]]; then
        ok=1 detail=""
        for n in 20 30; do
            a=$(eval_at "${arch}_a" $n)
            b=$(eval_at "${arch}_b2" $n)
            [[ -n $a && $a == "$b" ]] || { ok=0; detail+="iteration $n: '$a' vs resumed '$b'; "; }
        done
        if [[ $ok -eq 1 ]]; then pass "${arch}_resume_exact (iter, train and val loss: $(eval_at "${arch}_a" 30))"
        else fail "${arch}_resume_exact" "$detail"; fi
    fi
    grep -q "^model: $arch, 2 layers" "$WORK/${arch}_a.log" && pass "${arch}_header" ||
        fail "${arch}_header" "$(grep '^model:' "$WORK/${arch}_a.log")"

    CK=$WORK/${arch}_a/latest.safetensors
    [[ -s $CK ]] || { fail "${arch}_checkpoint" "no $CK"; continue; }
    info=$("$BIN" info "$CK" 2>&1)
    want=$(log_rows "$WORK/${arch}_a.csv" eval params | head -1)
    if grep -q "^arch: $arch, 2 layers" <<<"$info" && grep -q "^parameters: $want total" <<<"$info"; then
        pass "${arch}_info"
    else
        fail "${arch}_info" "$(head -4 <<<"$info" | tr '\n' '|') (expected $want parameters)"
    fi
    # info --preset on the same config: the same parameter count and FLOPs per token, no checkpoint
    vocab=$(grep -o 'vocab_size [0-9]*' <<<"$info" | grep -o '[0-9]*$')
    cfg=$("$BIN" info --preset tiny --arch "$arch" --n-layer 2 --d-model 16 --n-head 2 --block-size 16 \
        --vocab-size "${vocab:-0}" 2>&1)
    same=1
    for key in "parameters:" "training FLOPs per token:"; do
        [[ -n $(grep "^$key" <<<"$info") && $(grep "^$key" <<<"$info") == "$(grep "^$key" <<<"$cfg")" ]] || same=0
    done
    [[ $same == 1 ]] && pass "${arch}_info_preset_matches_checkpoint" ||
        fail "${arch}_info_preset_matches_checkpoint" "$(grep -E '^(parameters|training FLOPs)' <<<"$cfg" | tr '\n' '|') vs $(grep -E '^(parameters|training FLOPs)' <<<"$info" | tr '\n' '|')"
    s1=$("$BIN" sample --ckpt "$CK" --max-new-tokens 40 --seed 5 --device cpu --threads 1 2>&1)
    s2=$("$BIN" sample --ckpt "$CK" --max-new-tokens 40 --seed 5 --device cpu --threads 1 2>&1)
    [[ -n $s1 && $s1 == "$s2" ]] && pass "${arch}_sample_reproducible" || fail "${arch}_sample_reproducible" "'$s1' vs '$s2'"
    if ev=$("$BIN" eval --ckpt "$CK" "$TEXT" --batches 2 --batch-size 4 --device cpu --threads 1 2>&1) &&
        grep -q "val loss [0-9]" <<<"$ev"; then
        pass "${arch}_eval"
    else
        fail "${arch}_eval" "$(tr '\n' '|' <<<"$ev")"
    fi
    if [[ $PYTHON_HAS_TORCH == 1 ]]; then
        ref=$("$PYTHON" scripts/tokenformer_ref.py info "$CK" 2>&1)
        grep -q "^params: $want " <<<"$ref" && pass "${arch}_torch_loads_checkpoint" ||
            fail "${arch}_torch_loads_checkpoint" "$(tail -2 <<<"$ref" | tr '\n' '|') (expected $want)"
    else
        skip "${arch}_torch_loads_checkpoint" "no python with torch (PYTHON=${PYTHON:-none})"
    fi
done

# Bad input: one line on stderr naming the problem, non-zero exit, nothing written.
if "$BIN" train "$TEXT" --arch gpt5 "${CFG[@]}" --max-iters 2 --out "$WORK/bad" >"$WORK/bad.log" 2>"$WORK/bad.err"; then
    fail unknown_arch "exit status 0"
elif [[ $(wc -l <"$WORK/bad.err") -eq 1 ]] && grep -q -- "--arch: unknown arch 'gpt5'" "$WORK/bad.err" && [[ ! -e $WORK/bad ]]; then
    pass unknown_arch
else
    fail unknown_arch "$(tr '\n' '|' <"$WORK/bad.err")"
fi
CK=$WORK/transformer_b/latest.safetensors
if [[ -s $CK ]]; then
    before=$(cksum <"$CK")
    if "$BIN" train --resume "$CK" --arch tokenformer --max-iters 40 --threads 1 --device cpu >"$WORK/c.log" 2>"$WORK/c.err"; then
        fail resume_arch_contradiction "exit status 0"
    elif [[ $(wc -l <"$WORK/c.err") -eq 1 ]] && grep -q "contradicts .* transformer checkpoint" "$WORK/c.err" &&
        [[ $(cksum <"$CK") == "$before" ]]; then
        pass resume_arch_contradiction
    else
        fail resume_arch_contradiction "$(tr '\n' '|' <"$WORK/c.err")"
    fi
fi

# A checkpoint whose config has no "arch" (written before the baselines) is a
# tokenformer; an unknown arch there is refused. The files are re-signed
# (crc32 over the sorted metadata, then the data) so that only the config differs.
if [[ -n $PYTHON ]]; then
    if train tf_old "$TEXT" "${CFG[@]}" --n-attn 8 --n-ffn 16 --max-iters 2 --out "$WORK/tf_old"; then
        cat >"$WORK/recfg.py" <<'PYEOF'
import json, struct, sys, zlib
src, dst, arch = sys.argv[1], sys.argv[2], sys.argv[3]
raw = open(src, 'rb').read()
hlen = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + hlen])
data = raw[8 + hlen:]
meta = h['__metadata__']
cfg = json.loads(meta['config'])
if arch == '-':
    del cfg['arch']
else:
    cfg['arch'] = arch
meta['config'] = json.dumps(cfg)
crc = 0
for k in sorted(k for k in meta if k != 'crc32'):
    crc = zlib.crc32(k.encode() + b'\0' + meta[k].encode() + b'\0', crc)
meta['crc32'] = '%08x' % zlib.crc32(data, crc)
hb = json.dumps(h).encode()
hb += b' ' * ((8 - len(hb) % 8) % 8)
open(dst, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
PYEOF
        "$PYTHON" "$WORK/recfg.py" "$WORK/tf_old/latest.safetensors" "$WORK/noarch.safetensors" - &&
            "$PYTHON" "$WORK/recfg.py" "$WORK/tf_old/latest.safetensors" "$WORK/badarch.safetensors" mamba
        out=$("$BIN" info "$WORK/noarch.safetensors" 2>&1)
        grep -q "^arch: tokenformer" <<<"$out" && pass config_without_arch_is_tokenformer ||
            fail config_without_arch_is_tokenformer "$(head -2 <<<"$out" | tr '\n' '|')"
        if out=$("$BIN" info "$WORK/badarch.safetensors" 2>&1); then
            fail config_unknown_arch "exit status 0"
        else
            grep -q "config 'arch' is not one of" <<<"$out" && pass config_unknown_arch ||
                fail config_unknown_arch "$out"
        fi
    fi
else
    skip config_without_arch_is_tokenformer "no python found"
fi
exit $((failures > 0))
