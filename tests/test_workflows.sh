#!/usr/bin/env bash
# Everyday workflows that must never lose a run or touch what they should not:
# where a resumed run writes, the best checkpoint of another run, output
# targets that are not regular files, a broken or full stdout, the output
# lock, --freeze-old across layers, and the small CLI rules around them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" workflows

TEXT=$WORK/text.txt
sample_text 60000 800 >"$TEXT"
TINY=(--preset tiny --n-layer 2 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 16 --block-size 16
      --batch-size 4 --eval-iters 2 --warmup-iters 2 --threads 1 --device cpu)
RES=(--eval-iters 2 --threads 1 --device cpu)
ABIN=$(realpath "$BIN")
train() { "$BIN" train "$TEXT" "$@"; }
hash() { cksum <"$1" 2>/dev/null; }

# 1. --resume without --out writes next to its checkpoint; a better best of another run stays.
(cd "$WORK" && "$ABIN" train "$TEXT" "${TINY[@]}" --max-iters 60 --eval-interval 20 >/dev/null 2>&1)
train "${TINY[@]}" --max-iters 4 --out "$WORK/B" >/dev/null 2>&1
before=$(hash "$WORK/out/best.safetensors")
(cd "$WORK" && "$ABIN" train "$TEXT" "${RES[@]}" --resume B/latest.safetensors --max-iters 6 >"$WORK/r1.log" 2>&1)
[[ -n $before && $(hash "$WORK/out/best.safetensors") == "$before" ]] && grep -q "^writing B/latest.safetensors" "$WORK/r1.log" \
    && pass resume_writes_next_to_checkpoint || fail resume_writes_next_to_checkpoint "out/best missing or changed, or: $(head -1 "$WORK/r1.log")"
(cd "$WORK" && "$ABIN" train "$TEXT" "${TINY[@]}" --max-iters 2 --force >"$WORK/r2.log" 2>&1)
[[ -n $before && $(hash "$WORK/out/best.safetensors") == "$before" ]] && grep -q "only a better model replaces it" "$WORK/r2.log" \
    && pass better_best_of_other_run_kept || fail better_best_of_other_run_kept "out/best replaced by a worse run"
# 4. every path printed at the end exists
train "${RES[@]}" --resume "$WORK/B/latest.safetensors" --max-iters 8 --lr 0.5 --out "$WORK/D" >"$WORK/d.log" 2>&1
missing=""
for p in $(grep '^done' "$WORK/d.log" | grep -o '[^ (),]*\.safetensors'); do [[ -e $p ]] || missing+=" $p"; done
grep -q '^done' "$WORK/d.log" && [[ -z $missing ]] && pass printed_paths_exist || fail printed_paths_exist "missing:$missing"

# 2. a FIFO as an output target is refused before any work, and stays a FIFO
mkfifo "$WORK/fifo" "$WORK/fifo.safetensors"
timeout 20 "$BIN" grow --ckpt "$WORK/B/latest.safetensors" --kv +4 --out "$WORK/fifo" >/dev/null 2>"$WORK/g.err"
rc=$?
[[ $rc == 1 && -p $WORK/fifo ]] && grep -q "not a regular file" "$WORK/g.err" \
    && pass grow_refuses_fifo || fail grow_refuses_fifo "status $rc: $(cat "$WORK/g.err")"
timeout 20 "$BIN" train "$TEXT" "${TINY[@]}" --max-iters 2 --out "$WORK/fifo.safetensors" >/dev/null 2>"$WORK/t.err"
rc=$?
[[ $rc == 1 && -p $WORK/fifo.safetensors ]] && grep -q "not a regular file" "$WORK/t.err" \
    && pass train_refuses_fifo || fail train_refuses_fifo "status $rc: $(cat "$WORK/t.err")"

# 3. a reader that goes away does not kill training: latest is saved
rm -rf "$WORK/P"
train "${TINY[@]}" --max-iters 1000000 --log-interval 1 --out "$WORK/P" 2>"$WORK/p.err" | head -n 3 >/dev/null
rc=${PIPESTATUS[0]}
[[ $rc == 130 && -s $WORK/P/latest.safetensors ]] && pass broken_pipe_saves_latest \
    || fail broken_pipe_saves_latest "status $rc, latest $(ls "$WORK/P" 2>&1)"

# 7. a full stdout is an error in every command
for cmd in "sample --ckpt $WORK/B/latest.safetensors --max-new-tokens 5 --threads 1 --device cpu" \
           "info --ckpt $WORK/B/latest.safetensors" \
           "info --preset tiny" \
           "eval $TEXT --ckpt $WORK/B/latest.safetensors --batches 1 --threads 1 --device cpu" \
           "train $TEXT ${TINY[*]} --max-iters 2 --out $WORK/full"; do
    # shellcheck disable=SC2086
    "$BIN" $cmd >/dev/full 2>"$WORK/full.err"
    rc=$?
    name=${cmd%% *}
    [[ $cmd == "info --preset"* ]] && name=info_preset
    [[ $rc != 0 ]] && grep -q "standard output" "$WORK/full.err" && pass "dev_full_$name" \
        || fail "dev_full_$name" "status $rc: $(tail -1 "$WORK/full.err")"
done

# 8. one run per output: the second is refused, naming the first's pid
rm -rf "$WORK/L"
"$BIN" train "$TEXT" "${TINY[@]}" --max-iters 1000000 --out "$WORK/L" >/dev/null 2>"$WORK/l1.err" &
first=$!
PIDS+=("$first")
for _ in $(seq 200); do [[ -s $WORK/L/latest.safetensors ]] && break; sleep 0.05; done
train "${TINY[@]}" --max-iters 2 --out "$WORK/L" >/dev/null 2>"$WORK/l.err"
rc=$?
kill -TERM "$first"; wait "$first" 2>/dev/null
[[ $rc == 1 ]] && grep -q "in use by another process (pid $first" "$WORK/l.err" \
    && pass output_locked || fail output_locked "status $rc: $(cat "$WORK/l.err")"
grep -q "stopping after the current step" "$WORK/l1.err" && pass first_signal_acknowledged \
    || fail first_signal_acknowledged "$(cat "$WORK/l1.err")"

# 5. sample's default prompt works on a vocabulary without a newline
for _ in $(seq 400); do printf 'abcd efgh ijkl '; done >"$WORK/nonl.txt"
train_nonl() { "$BIN" train "$WORK/nonl.txt" "${TINY[@]}" --max-iters 2 --out "$WORK/nonl.safetensors" >/dev/null 2>&1; }
train_nonl && "$BIN" sample --ckpt "$WORK/nonl.safetensors" --max-new-tokens 5 --threads 1 --device cpu \
    >/dev/null 2>"$WORK/s.err" && pass sample_default_prompt_no_newline \
    || fail sample_default_prompt_no_newline "$(cat "$WORK/s.err")"

# 6. an empty --layers list is an error
for list in "" ","; do
    "$BIN" grow --ckpt "$WORK/B/latest.safetensors" --kv +4 --layers "$list" --out "$WORK/e.safetensors" >/dev/null 2>"$WORK/e.err"
    rc=$?
    [[ $rc == 1 && ! -e $WORK/e.safetensors ]] && grep -q -- "--layers" "$WORK/e.err" && pass "grow_layers_empty '$list'" \
        || fail "grow_layers_empty '$list'" "status $rc"
done

# 9. --freeze-old: rows that existed before the latest grow are frozen in every layer
G=(--threads 1)
"$BIN" train "$TEXT" "${TINY[@]}" --n-layer 4 --max-iters 4 --out "$WORK/f0.safetensors" >/dev/null 2>&1
"$BIN" grow --ckpt "$WORK/f0.safetensors" --kv +8 --out "$WORK/f1.safetensors" "${G[@]}" >/dev/null 2>&1
train "${RES[@]}" --resume "$WORK/f1.safetensors" --max-iters 8 --out "$WORK/f2.safetensors" >/dev/null 2>&1
"$BIN" grow --ckpt "$WORK/f2.safetensors" --kv +4 --layers 0,2 --out "$WORK/f3.safetensors" "${G[@]}" >/dev/null 2>&1
train "${RES[@]}" --resume "$WORK/f3.safetensors" --new-stage --freeze-old --max-iters 4 \
    --out "$WORK/f4.safetensors" >"$WORK/f4.log" 2>&1
if [[ -z $PYTHON ]]; then
    skip freeze_old_every_layer "no python found"
else
    out=$("$PYTHON" - "$WORK/f3.safetensors" "$WORK/f4.safetensors" <<'PY'
import json, struct, sys
def load(p):
    raw = open(p, 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]
(h0, d0), (h1, d1) = load(sys.argv[1]), load(sys.argv[2])
bad, moved = [], 0
for name, e in h0.items():
    if name == '__metadata__' or name.startswith('opt.') or '.key' not in name and '.value' not in name: continue
    b0, e0 = e['data_offsets']; b1, e1 = h1[name]['data_offsets']
    rows = e['shape'][0]; old = rows - (4 * (4 if '.ffn.' in name else 1) if name.split('.')[1] in ('0', '2') else 0)
    row = (e0 - b0) // rows
    if d0[b0:b0 + old * row] != d1[b1:b1 + old * row]: bad.append(name)
    if d0[b0 + old * row:e0] != d1[b1 + old * row:e1]: moved += 1
print('ok' if not bad and moved else 'old rows moved in %s; %d tensors with new rows moved' % (bad[:4], moved))
PY
)
    [[ $out == ok ]] && pass freeze_old_every_layer || fail freeze_old_every_layer "$out $(tail -1 "$WORK/f4.log")"
fi
"$BIN" train "$TEXT" "${RES[@]}" --resume "$WORK/f3.safetensors" --max-iters 9 --out "$WORK/h.safetensors" \
    >"$WORK/h.log" 2>&1
grep -q "^model: .*n_attn=16-20, n_ffn=48-64" "$WORK/h.log" && pass header_shows_grown_rows \
    || fail header_shows_grown_rows "$(grep '^model' "$WORK/h.log")"

# smaller items
train "${RES[@]}" --resume "$WORK/B/latest.safetensors" --max-iters 3 --out "$WORK/m" >/dev/null 2>"$WORK/m.err"
rc=$?
[[ $rc == 1 ]] && grep -q "nothing would train" "$WORK/m.err" && pass resume_max_iters_behind_refused \
    || fail resume_max_iters_behind_refused "status $rc"
train "${TINY[@]}" --warmup-iters 50 --max-iters 2 --out "$WORK/w" >/dev/null 2>"$WORK/w.err"
grep -q "warmup-iters 50.*never reached" "$WORK/w.err" && pass warmup_longer_than_run_warns \
    || fail warmup_longer_than_run_warns "$(cat "$WORK/w.err")"
{ printf '\xef\xbb\xbf'; for _ in $(seq 400); do printf 'abc\n'; done; } >"$WORK/bom.txt"
"$BIN" train "$WORK/bom.txt" "${TINY[@]}" --max-iters 1 --out "$WORK/bom" >"$WORK/bom.log" 2>&1
grep -q "vocab=4," "$WORK/bom.log" && grep -q "byte order mark" "$WORK/bom.log" && pass utf8_bom_stripped \
    || fail utf8_bom_stripped "$(grep -E '^model|order' "$WORK/bom.log")"
(ulimit -f 16; "$BIN" grow --ckpt "$WORK/f0.safetensors" --kv +64 --out "$WORK/big.safetensors" --threads 1 \
    >/dev/null 2>"$WORK/x.err")
rc=$?
[[ $rc == 1 ]] && ! ls "$WORK"/big.safetensors* >/dev/null 2>&1 && grep -q "too large" "$WORK/x.err" \
    && pass file_size_limit_like_full_disk || fail file_size_limit_like_full_disk "status $rc: $(cat "$WORK/x.err")"
if [[ -n $PYTHON ]]; then
    "$PYTHON" - "$WORK/esc.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({'__metadata__': {'format': '\x1b[31mred'}}).encode()
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h)
PY
    "$BIN" info --ckpt "$WORK/esc.safetensors" >/dev/null 2>"$WORK/esc.err"
    ! grep -q $'\x1b' "$WORK/esc.err" && grep -qF '\x1B[31mred' "$WORK/esc.err" && pass error_escapes_control_bytes \
        || fail error_escapes_control_bytes "$(cat -v "$WORK/esc.err")"
    "$PYTHON" - "$WORK/B/latest.safetensors" "$WORK/nan.safetensors" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = bytearray(raw[8 + n:])
b, e = h['lm_head']['data_offsets'] if 'lm_head' in h else h['wte']['data_offsets']
data[b:b + 4] = struct.pack('<f', float('inf'))
open(sys.argv[2], 'wb').write(raw[:8 + n] + bytes(data))
PY
    "$BIN" info --ckpt "$WORK/nan.safetensors" >/dev/null 2>"$WORK/nan.err"
    grep -q "tensor '[a-z_]*' holds a non-finite value" "$WORK/nan.err" && pass nonfinite_weights_refused \
        || fail nonfinite_weights_refused "$(cat "$WORK/nan.err")"
    # grow on a checkpoint without optimizer state does not claim to have any
    "$PYTHON" - "$WORK/B/latest.safetensors" "$WORK/noopt.safetensors" <<'PY'
import json, struct, sys, zlib
raw = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
meta = h.pop('__metadata__'); meta['optimizer'] = 'none'
out, blob = {}, b''
for name, e in sorted(h.items(), key=lambda kv: kv[1]['data_offsets'][0]):
    if name.startswith('opt.'): continue
    b, end = e['data_offsets']
    out[name] = dict(e, data_offsets=[len(blob), len(blob) + end - b]); blob += data[b:end]
crc = 0
for k in sorted(k for k in meta if k != 'crc32'):
    crc = zlib.crc32(k.encode() + b'\0' + meta[k].encode() + b'\0', crc)
meta['crc32'] = '%08x' % zlib.crc32(blob, crc)
out['__metadata__'] = meta
hdr = json.dumps(out).encode(); hdr += b' ' * (-len(hdr) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hdr)) + hdr + blob)
PY
    "$BIN" grow --ckpt "$WORK/noopt.safetensors" --kv +4 --out "$WORK/noopt2.safetensors" --threads 1 >/dev/null 2>"$WORK/no.err"
    "$BIN" info --ckpt "$WORK/noopt2.safetensors" 2>&1 | grep -q "optimizer state absent" && pass grow_keeps_no_optimizer \
        || fail grow_keeps_no_optimizer "$(cat "$WORK/no.err"; "$BIN" info --ckpt "$WORK/noopt2.safetensors" 2>&1 | grep optim)"
fi
"$BIN" train -dash.txt >/dev/null 2>"$WORK/o.err"
grep -q "'-d' in '-dash.txt'" "$WORK/o.err" && pass unknown_short_option_named || fail unknown_short_option_named "$(cat "$WORK/o.err")"

exit $((failures > 0))
