#!/usr/bin/env bash
# Checkpoint robustness: truncated, corrupted, foreign and hostile checkpoint
# files get one clear error line (never a crash, hang or sanitizer report)
# from `info`, `sample` and `train --resume`; flipped bits anywhere, the
# tensor data included, are refused by the checksum; checkpoints are written atomically (temporary file, fsync,
# rename), so SIGKILL at any moment leaves a loadable checkpoint; a
# non-finite loss stops training, names the iteration and leaves the last
# good checkpoint intact.
#
# Environment: TF_BIN (binary under test, default ./tokenformer),
# TF_FLIP_STRIDE (test every Nth header byte in the bit-flip sweep; default
# 8, 60 for a sanitizer build).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" checkpoint_robust
FLIP_STRIDE=${TF_FLIP_STRIDE:-$((SLOW ? 60 : 8))}

TEXT=$WORK/text.txt
sample_text 20000 400 >"$TEXT"
TINY=(--n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 16 --block-size 16 --batch-size 4
      --eval-iters 1 --threads 1 --device cpu)

if ! timeout 120 "$BIN" train "$TEXT" --out "$WORK/good" "${TINY[@]}" --max-iters 4 --eval-interval 2 \
        >"$WORK/setup.log" 2>&1; then
    fail setup_train "training the fixture checkpoint failed: $(tail -2 "$WORK/setup.log" | tr '\n' ' ')"
    exit 1
fi
GOOD=$WORK/good/latest.safetensors
if timeout 60 "$BIN" info --ckpt "$GOOD" >"$WORK/info.out" 2>&1; then
    pass good_checkpoint_loads
else
    fail good_checkpoint_loads "$(head -1 "$WORK/info.out")"
fi

# classify RC ERRFILE: sets CLASS to ok / error / crash:<why> and ERR to the
# file's text (bash builtins only: this runs a few hundred times).
classify() {
    local rc=$1 nl
    ERR=$(<"$2")
    nl=${ERR//[!$'\n']/}
    ERR1=${ERR//$'\n'/|}
    if [[ $rc -eq 124 ]]; then CLASS="crash:hang"
    elif [[ $rc -ge 128 ]]; then CLASS="crash:status $rc"
    elif [[ $ERR =~ $SANITIZER_RE ]]; then CLASS="crash:sanitizer report: ${ERR1:0:300}"
    elif [[ $rc -eq 0 ]]; then CLASS=ok
    elif [[ -z $ERR || ${#nl} -ne 0 ]]; then CLASS="crash:expected one stderr line, got $((${#nl} + 1)): ${ERR1:0:300}"
    else CLASS=error
    fi
}

# expect_bad_ckpt NAME REGEX FILE: info, sample and train --resume must each
# fail with one line matching REGEX and naming FILE, leaving no files.
expect_bad_ckpt() {
    local name=$1 regex=$2 file=$3 how out=$WORK/out_$1 bad="" cmd
    for how in ${HOWS:-info sample resume}; do
        case $how in
        info) cmd=("$BIN" info --ckpt "$file") ;;
        sample) cmd=("$BIN" sample --ckpt "$file" --max-new-tokens 3 --threads 1 --device cpu) ;;
        resume) cmd=("$BIN" train "$TEXT" --resume "$file" --out "$out" --threads 1 --device cpu --max-iters 8) ;;
        esac
        timeout 60 "${cmd[@]}" </dev/null >/dev/null 2>"$WORK/cmd.err"
        classify $? "$WORK/cmd.err"
        if [[ $CLASS == ok ]]; then
            bad="$how loaded it (status 0)"
        elif [[ $CLASS == crash:* ]]; then
            bad="$how: ${CLASS#crash:}"
        elif [[ $ERR != *"${file##*/}"* ]]; then
            bad="$how: error does not name the file: $ERR"
        elif ! [[ $ERR =~ $regex ]]; then
            bad="$how: error does not match /$regex/: $ERR"
        elif [[ -e $out ]] && compgen -G "$out/*.safetensors*" >/dev/null; then
            bad="$how: left files in --out: $(ls "$out" | head -3 | tr '\n' ' ')"
        fi
        [[ -n $bad ]] && break
    done
    if [[ -n $bad ]]; then fail "$name" "$bad"; else pass "$name"; fi
}

# --------------------------------------------------------------- simple damage (no python needed)
BAD=$WORK/bad
mkdir -p "$BAD"
size=$(stat -c %s "$GOOD")
hlen=$(od -An -t u8 -j 0 -N 8 "$GOOD" | tr -d ' ')
head -c 0 "$GOOD" >"$BAD/trunc_empty.safetensors"
head -c 5 "$GOOD" >"$BAD/trunc_5_bytes.safetensors"
head -c 8 "$GOOD" >"$BAD/trunc_length_only.safetensors"
head -c $((8 + hlen / 2)) "$GOOD" >"$BAD/trunc_mid_header.safetensors"
head -c $((8 + hlen)) "$GOOD" >"$BAD/trunc_header_only.safetensors"
head -c $(((size + 8 + hlen) / 2)) "$GOOD" >"$BAD/trunc_mid_data.safetensors"
head -c $((size - 1)) "$GOOD" >"$BAD/trunc_last_byte.safetensors"
{ cat "$GOOD"; printf 'appended'; } >"$BAD/appended_bytes.safetensors"
expect_bad_ckpt truncated_empty "too short" "$BAD/trunc_empty.safetensors"
expect_bad_ckpt truncated_5_bytes "too short" "$BAD/trunc_5_bytes.safetensors"
expect_bad_ckpt truncated_length_only "header length $hlen exceeds file size" "$BAD/trunc_length_only.safetensors"
expect_bad_ckpt truncated_mid_header "exceeds file size" "$BAD/trunc_mid_header.safetensors"
expect_bad_ckpt truncated_header_only "out of range|cover" "$BAD/trunc_header_only.safetensors"
expect_bad_ckpt truncated_mid_data "out of range|cover" "$BAD/trunc_mid_data.safetensors"
expect_bad_ckpt truncated_last_byte "out of range|cover" "$BAD/trunc_last_byte.safetensors"
expect_bad_ckpt appended_bytes "cover|trailing|extra" "$BAD/appended_bytes.safetensors"
# Header length fields that lie.
for spec in "huge_length ffffffffffffffff" "length_2_63 0000000000000080" "length_zero 0000000000000000"; do
    set -- $spec
    { printf "$(echo "$2" | sed 's/../\\x&/g')"; tail -c +9 "$GOOD"; } >"$BAD/$1.safetensors"
done
expect_bad_ckpt header_length_huge "header length 18446744073709551615 exceeds" "$BAD/huge_length.safetensors"
expect_bad_ckpt header_length_2_63 "header length 9223372036854775808 exceeds" "$BAD/length_2_63.safetensors"
expect_bad_ckpt header_length_zero "not valid JSON|not a JSON object" "$BAD/length_zero.safetensors"
# A length just under the file size limit check: 100 MiB + 1 of header in a sparse file.
if truncate -s $((100 * 1048576 + 64)) "$BAD/header_over_limit.safetensors" 2>/dev/null; then
    printf '\x01\x00\x40\x06\x00\x00\x00\x00' | dd of="$BAD/header_over_limit.safetensors" conv=notrunc status=none
    expect_bad_ckpt header_length_over_limit "exceeds the .*limit" "$BAD/header_over_limit.safetensors"
    rm -f "$BAD/header_over_limit.safetensors"
fi
expect_bad_ckpt text_file_as_checkpoint "header length .* exceeds" "$TEXT"
cp "$BIN" "$BAD/program.safetensors"
expect_bad_ckpt binary_as_checkpoint "header" "$BAD/program.safetensors"
expect_bad_ckpt dev_zero_as_checkpoint "not a regular file" /dev/zero

# --------------------------------------------------------------- crafted files (python3)
if [[ -z $PYTHON ]]; then
    skip crafted_checkpoints "no python found"
else
    cat >"$WORK/craft.py" <<'EOF'
# Writes damaged variants of a good checkpoint: NAME.safetensors in OUT and
# "NAME<TAB>REGEX" lines (the expected error) on stdout.
import json, struct, sys
good, out = sys.argv[1], sys.argv[2]
raw = open(good, 'rb').read()
hlen = struct.unpack('<Q', raw[:8])[0]
header = json.loads(raw[8:8 + hlen])
data = raw[8 + hlen:]

def write(name, regex, blob):
    open(f'{out}/{name}.safetensors', 'wb').write(blob)
    print(f'{name}\t{regex}')

def pack(hdr_bytes, body=data):
    return struct.pack('<Q', len(hdr_bytes)) + hdr_bytes + body

def with_header(name, regex, h, body=data):
    write(name, regex, pack(json.dumps(h).encode(), body))

def copy():
    return json.loads(json.dumps(header))

def tensors(h):
    return [k for k in h if k != '__metadata__']

# Rebuild a checkpoint from (name, dtype, shape, bytes) with fresh offsets.
def rebuild(entries, meta):
    h, body = {'__metadata__': meta}, b''
    for name, dtype, shape, blob in entries:
        h[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [len(body), len(body) + len(blob)]}
        body += blob
    return h, body

def entries_of(h=header):
    return [(k, h[k]['dtype'], h[k]['shape'], data[h[k]['data_offsets'][0]:h[k]['data_offsets'][1]]) for k in tensors(h)]

meta = header['__metadata__']
first = tensors(header)[0]

# -- not JSON / wrong JSON
write('header_garbage', 'not valid JSON', pack(b'\x00garbage!' * (hlen // 9)))
write('header_json_array', 'not a JSON object', pack(b'[1, 2, 3]'))
write('header_deep_nesting', 'not valid JSON|nest', pack(b'{"a":' + b'[' * 100000 + b']' * 100000 + b'}'))
write('header_trailing_json', 'trailing', pack(json.dumps(header).encode() + b' {}'))
write('header_unterminated', 'not valid JSON', pack(json.dumps(header).encode()[:-1]))
# -- tensor table
h = copy(); h[first]['data_offsets'] = [0, len(data) + 4]
with_header('offsets_past_end', 'out of range', h)
h = copy(); h[first]['data_offsets'] = [len(data) + 100, len(data) + 100 + (h[first]['data_offsets'][1] - h[first]['data_offsets'][0])]
with_header('offsets_outside_file', 'out of range', h)
h = copy(); b0, e0 = h[first]['data_offsets']; h[first]['data_offsets'] = [e0, b0]
with_header('offsets_reversed', 'out of range|data_offsets', h)
h = copy(); h[first]['data_offsets'] = [-4, 0]
with_header('offsets_negative', 'data_offsets', h)
h = copy(); h[first]['data_offsets'] = [0.5, 4.5]
with_header('offsets_fractional', 'data_offsets', h)
h = copy(); h[first]['data_offsets'] = ['0', '4']
with_header('offsets_strings', 'data_offsets', h)
h = copy(); h[first]['data_offsets'] = [0, 2**64]
with_header('offsets_2_64', 'data_offsets', h)
# Two tensors of the same size sharing bytes (the taus: shape [1]).
taus = [k for k in tensors(header) if k.endswith('.tau')]
h = copy(); h[taus[1]]['data_offsets'] = list(h[taus[0]]['data_offsets'])
with_header('offsets_overlapping', 'overlap', h)
h = copy(); h[first]['shape'] = [h[first]['shape'][0] + 1, h[first]['shape'][1]]
with_header('shape_disagrees_with_offsets', 'hold .* bytes but dtype and shape need', h)
h = copy(); h[first]['shape'] = [-1, 16]
with_header('shape_negative', 'shape', h)
h = copy(); h[first]['shape'] = [2**40, 2**40, 2**40]
with_header('shape_overflow', 'too large|overflow', h)
h = copy(); h[first]['shape'] = [1] * 64
with_header('shape_too_many_dims', 'dimensions', h)
h = copy(); h[first]['dtype'] = 'F16'
with_header('dtype_f16', "unsupported dtype 'F16'", h)
h = copy(); h[first]['dtype'] = 7
with_header('dtype_number', 'dtype', h)
h = copy(); del h[first]['dtype']
with_header('dtype_missing', 'no dtype', h)
# Duplicate tensor name: JSON text with the same key twice.
dup = json.dumps(header)[:-1] + ', "%s": %s}' % (first, json.dumps(header[first]))
write('duplicate_tensor', 'duplicate', pack(dup.encode()))
dupm = json.dumps(header)[:-1] + ', "__metadata__": {"format": "tokenformer-1"}}'
write('duplicate_metadata', 'duplicate', pack(dupm.encode()))
# -- metadata
h = copy(); h['__metadata__']['step'] = 5
with_header('metadata_not_string', 'metadata', h)
h = copy(); h['__metadata__'] = 'hello'
with_header('metadata_not_object', '__metadata__', h)
h = copy(); del h['__metadata__']
with_header('no_metadata', 'not a tokenformer checkpoint', h)
h = copy(); h['__metadata__']['format'] = 'tokenformer-99'
with_header('format_unknown', "not a tokenformer checkpoint.*'tokenformer-99'", h)
for key in ['config', 'vocab', 'step', 'iter', 'train_config', 'best_val_loss', 'data_rng', 'row_segments', 'optimizer']:
    h = copy(); del h['__metadata__'][key]
    with_header('missing_meta_' + key, "'%s' is missing|missing.*'%s'|%s" % (key, key, key), h)
cfg = json.loads(meta['config'])
for field, value, regex in [('vocab_size', cfg['vocab_size'] + 1, 'vocab'), ('n_head', 3, 'n_head'),
                            ('d_model', 0, 'd_model'), ('n_layer', 100000, 'n_layer'), ('arch', 'gpt2', 'arch'),
                            ('pnorm', 'cubic', 'pnorm'), ('block_size', -1, 'block_size'),
                            ('d_model', 32, 'shape|d_model'), ('n_layer', 2, 'missing'),
                            ('rope_frac', 'x', 'rope_frac'), ('dropout', 1.5, 'dropout')]:
    c = dict(cfg); c[field] = value
    h = copy(); h['__metadata__']['config'] = json.dumps(c)
    with_header(f'config_{field}_{value}'.replace('-', 'minus').replace('.', '_'), regex, h)
h = copy(); h['__metadata__']['config'] = '{"arch": "tokenformer", "n_layer": '
with_header('config_not_json', 'config', h)
voc = meta['vocab']
for name, v in [('vocab_unsorted', voc[1] + voc[0] + voc[2:]), ('vocab_duplicate', voc[0] + voc[:-1]),
                ('vocab_empty', '')]:
    h = copy(); h['__metadata__']['vocab'] = v
    with_header(name, 'vocab', h)
for key, value in [('step', '-1'), ('step', 'ten'), ('iter', '1e3'), ('iter', '99999999999999999999'),
                   ('best_val_loss', 'nan'), ('best_val_loss', '2.5x'), ('data_rng', '-5'), ('data_rng', '12abc'),
                   ('data_rng', '99999999999999999999999'), ('optimizer', 'sgd'), ('optimizer', 'none'),
                   ('row_segments', '[1,2]'), ('row_segments', '{"wte": [[5, 0, 0]]}'),
                   ('row_segments', '{"nope": [[0, 0, 0]]}')]:
    h = copy(); h['__metadata__'][key] = value
    with_header(f'meta_{key}_{value}'.replace('-', 'minus').replace('.', '_').replace('"', '').replace(' ', '')
                .replace('[', '').replace(']', '').replace('{', '').replace('}', '').replace(':', '').replace(',', '_'),
                key, h)
tc = json.loads(meta['train_config'])
for field, value in [('lr', 'fast'), ('batch_size', 0), ('seed', 42), ('seed', '12x'), ('eval_interval', -3)]:
    t = dict(tc); t[field] = value
    h = copy(); h['__metadata__']['train_config'] = json.dumps(t)
    with_header(f'train_config_{field}_{value}'.replace('-', 'minus'), field + '|train_config', h)
h = copy(); h['__metadata__']['train_config'] = '[]'
with_header('train_config_not_object', 'train_config', h)
# -- foreign files: valid safetensors, not ours
h, body = rebuild([('foo', 'F32', [2, 2], struct.pack('<4f', 1, 2, 3, 4))], {})
with_header('foreign_foo', 'not a tokenformer checkpoint', h, body)
h, body = rebuild([('foo', 'F32', [2, 2], struct.pack('<4f', 1, 2, 3, 4))], dict(meta))
with_header('foreign_foo_with_our_metadata', "missing", h, body)
h, body = rebuild([('weight', 'F32', [4], struct.pack('<4f', 1, 2, 3, 4))], {'format': 'pt'})
with_header('foreign_pytorch_style', "not a tokenformer checkpoint.*'pt'", h, body)
h, body = rebuild(entries_of() + [('foo', 'F32', [1], struct.pack('<f', 1))], dict(meta))
with_header('extra_tensor_foo', "unexpected tensor 'foo'", h, body)
ents = [e for e in entries_of() if e[0] != 'ln_f.bias']
h, body = rebuild(ents, dict(meta))
with_header('missing_tensor', "'ln_f.bias' is missing", h, body)
ents = [e for e in entries_of() if not e[0].startswith('opt.')]
h, body = rebuild(ents, dict(meta))
with_header('optimizer_tensors_removed', 'optimizer', h, body)
ents = [(n, d, s, b) for n, d, s, b in entries_of() if n != 'opt.v.wte']
h, body = rebuild(ents, dict(meta))
with_header('one_moment_missing', "'opt.v.wte' is missing", h, body)
ents = [('opt.m.wtf' if n == 'opt.m.wte' else n, d, s, b) for n, d, s, b in entries_of()]
h, body = rebuild(ents, dict(meta))
with_header('renamed_moment', 'optimizer|unexpected', h, body)
ents = [(n, 'I32' if n == 'ln_f.weight' else d, s, b) for n, d, s, b in entries_of()]
h, body = rebuild(ents, dict(meta))
with_header('wrong_dtype_i32', "'ln_f.weight' must be F32", h, body)
ents = [(n, d, [1] if n.endswith('.tau') else s, struct.pack('<f', -1.0) if n.endswith('.tau') else b)
        for n, d, s, b in entries_of()]
h, body = rebuild(ents, dict(meta))
with_header('tau_negative', 'positive', h, body)
ents = [(n, d, [] if n.endswith('.tau') else s, b) for n, d, s, b in entries_of()]
h, body = rebuild(ents, dict(meta))
with_header('tau_scalar_shape', 'shape', h, body)
ents = [(n, d, [s[1], s[0]] if n == 'wte' else s, b) for n, d, s, b in entries_of()]
h, body = rebuild(ents, dict(meta))
with_header('wte_transposed', "'wte'", h, body)
EOF
    if ! "$PYTHON" "$WORK/craft.py" "$GOOD" "$BAD" >"$WORK/manifest.tsv" 2>"$WORK/craft.err"; then
        fail crafted_checkpoints "craft.py failed: $(tail -1 "$WORK/craft.err")"
    fi
    # A sanitizer build is slow: there `sample` (the same loader as `info`) sits these out.
    ((SLOW)) && HOWS="info resume"
    while IFS=$'\t' read -r name regex; do
        expect_bad_ckpt "$name" "$regex" "$BAD/$name.safetensors"
    done <"$WORK/manifest.tsv"
    HOWS=""

    # NaN weights are data, not structure: loading is fine, sampling must not crash.
    "$PYTHON" - "$GOOD" "$BAD/nan_weights.safetensors" <<'EOF'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = bytearray(raw[8 + n:])
b, e = h['wte']['data_offsets']
data[b:e] = struct.pack('<f', float('nan')) * ((e - b) // 4)
open(sys.argv[2], 'wb').write(raw[:8 + n] + bytes(data))
EOF
    timeout 60 "$BIN" sample --ckpt "$BAD/nan_weights.safetensors" --max-new-tokens 20 --threads 1 --device cpu \
        >"$WORK/nan.out" 2>"$WORK/nan.err"
    classify $? "$WORK/nan.err"
    if [[ $CLASS == crash:* ]]; then fail sample_nan_weights_no_crash "${CLASS#crash:}"; else pass sample_nan_weights_no_crash; fi

    # Single-bit flips: in the data every flip loads (or is refused cleanly:
    # a tau that turns negative); in the header every flip must be refused.
    cat >"$WORK/flip.py" <<'EOF'
import random, struct, subprocess, sys, collections, re, json, concurrent.futures, os
binp, good, work, stride = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
raw = open(good, 'rb').read(); hlen = struct.unpack('<Q', raw[:8])[0]
hdr = raw[8:8 + hlen].decode()
SAN = re.compile(rb'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:')
def run(blob, n):  # n: a name of its own for the file
    p = f'{work}/flip_{n}.safetensors'; open(p, 'wb').write(blob)
    try:
        r = subprocess.run([binp, 'info', '--ckpt', p], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return 'crash', 'hang'
    finally:
        os.remove(p)
    lines = r.stderr.splitlines()
    if r.returncode >= 128 or r.returncode < 0 or SAN.search(r.stderr):
        return 'crash', f'status {r.returncode}: {r.stderr[:200]!r}'
    if r.returncode == 0: return 'ok', ''
    if len(lines) != 1: return 'crash', f'{len(lines)} stderr lines: {r.stderr[:200]!r}'
    return 'error', ''
# which metadata value (or table part) holds a header offset
def span(k):  # [start of the value, end) of '"k":"value"' in the header text
    s = hdr.find('"%s":"' % k)
    if s < 0: return (0, 0)
    e = s + len(k) + 4
    while hdr[e] != '"': e += 2 if hdr[e] == '\\' else 1
    return (s + len(k) + 4, e)
spans = {k: span(k) for k in json.loads(hdr)['__metadata__']}
def where(i):  # 'value:KEY' inside a metadata value, else the structure
    for k, (s, e) in spans.items():
        if s <= i - 8 < e: return 'value:' + k
    return 'length' if i < 8 else 'structure'
def flipped(i, bit):
    b = bytearray(raw); b[i] ^= 1 << bit
    return bytes(b)
# The runs are independent processes: as many at once as there are cores.
pool = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
res = collections.Counter(); silent = collections.Counter(); crashes = []
header = list(range(0, 8)) + list(range(8, 8 + hlen, stride))
for i, (kind, why) in zip(header, pool.map(lambda i: run(flipped(i, i % 8), i), header)):
    res[kind] += 1
    if kind == 'crash': crashes.append(f'header byte {i}: {why}')
    if kind == 'ok': silent[where(i)] += 1
rng = random.Random(1234); dres = collections.Counter()
data = [(i, rng.randrange(8)) for i in (rng.randrange(8 + hlen, len(raw)) for _ in range(40))]
for (i, _), (kind, why) in zip(data, pool.map(lambda ib: run(flipped(*ib), ib[0]), data)):
    dres[kind] += 1
    if kind == 'crash': crashes.append(f'data byte {i}: {why}')
structural = sum(v for k, v in silent.items() if not k.startswith('value:'))
print('HEADER', res['ok'], res['error'], res['crash'], structural,
      ', '.join(f'{k}: {v}' for k, v in silent.most_common()) or 'none')
print('DATA', dres['ok'], dres['error'], dres['crash'])
for c in crashes[:5]: print('CRASH', c)
EOF
    "$PYTHON" "$WORK/flip.py" "$BIN" "$GOOD" "$WORK" "$FLIP_STRIDE" >"$WORK/flip.out" 2>&1
    read -r _ h_ok h_err h_crash h_struct h_where < <(grep '^HEADER' "$WORK/flip.out")
    read -r _ d_ok d_err d_crash < <(grep '^DATA' "$WORK/flip.out")
    if [[ -z ${h_ok:-} || -z ${d_ok:-} ]]; then
        fail bit_flips "flip.py failed: $(tail -2 "$WORK/flip.out" | tr '\n' ' ')"
    else
        if [[ $h_crash -eq 0 && $d_crash -eq 0 ]]; then
            pass "bit_flips_never_crash ($((h_ok + h_err)) header and $((d_ok + d_err)) data flips)"
        else
            fail bit_flips_never_crash "$(grep '^CRASH' "$WORK/flip.out" | head -3 | tr '\n' ' ')"
        fi
        # The crc32 metadata covers the data: every flipped bit there is refused.
        if [[ $d_ok -eq 0 ]]; then
            pass "data_bit_flips_refused (all $d_err flips caught by the checksum)"
        else
            fail data_bit_flips_refused "$d_ok of $((d_ok + d_err)) data flips load without error"
        fi
        # Flips in the structure (length, tensor table, JSON syntax, metadata
        # keys) must all be refused; flips inside metadata values are counted
        # here and tested deterministically below.
        if [[ $h_struct -eq 0 ]]; then
            pass "header_structure_bit_flips_refused (every ${FLIP_STRIDE}th byte; inside metadata values $h_ok of $((h_ok + h_err)) flips loaded: $h_where)"
        else
            fail header_structure_bit_flips_refused "$h_struct flips outside metadata values load without error (all silent loads: $h_where)"
        fi
    fi

    # Same-length corruption of metadata values that stay well-formed: a
    # digit of the learning rate, of the sampler state, of the best loss, of
    # the iteration, and a vocabulary character (order kept). The issue asks
    # that header corruption be an error; only a checksum can tell these.
    "$PYTHON" - "$GOOD" "$BAD" >"$WORK/values.tsv" <<'EOF'
import re, struct, sys
raw = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
hdr = raw[8:8 + n].decode()
def alter(name, pattern, repl):
    m = re.search(pattern, hdr)
    if not m: return
    new = hdr[:m.start(1)] + repl(m.group(1)) + hdr[m.end(1):]
    assert len(new.encode()) == n
    open(f'{sys.argv[2]}/{name}.safetensors', 'wb').write(raw[:8] + new.encode() + raw[8 + n:])
    print(name)
bump = lambda d: str((int(d) + 1) % 10)
alter('value_lr_digit', r'\\"lr\\":0\.00(\d)', bump)
alter('value_data_rng_digit', r'"data_rng":"\d+(\d)"', bump)
alter('value_best_val_loss_digit', r'"best_val_loss":"\d\.(\d)', bump)
alter('value_iter_digit', r'"iter":"(\d)', lambda d: str(int(d) - 1) if d != '0' else '1')
alter('value_vocab_last_char', r'"vocab":"[^"]*(z)"', lambda c: '{')
EOF
    silent_values=""
    while read -r name; do
        timeout 60 "$BIN" info --ckpt "$BAD/$name.safetensors" >/dev/null 2>"$WORK/value.err"
        classify $? "$WORK/value.err"
        case $CLASS in
        ok) silent_values+="${name#value_} " ;;
        crash:*) fail "$name" "${CLASS#crash:}" ;;
        esac
    done <"$WORK/values.tsv"
    if [[ ! -s $WORK/values.tsv ]]; then
        fail header_value_corruption_refused "could not craft the corrupted values"
    elif [[ -z $silent_values ]]; then
        pass "header_value_corruption_refused ($(wc -l <"$WORK/values.tsv") cases)"
    else
        fail header_value_corruption_refused "these corrupted metadata values load without error: $silent_values(well-formed digits and characters: needs a checksum of the header)"
    fi
fi

# --------------------------------------------------------------- atomic writes
# The writer's system calls, in order: temporary file, fsync, rename, fsync of the directory.
if command -v strace >/dev/null && strace -o /dev/null true 2>/dev/null; then
    strace -f -e trace=openat,fsync,fdatasync,rename,renameat,renameat2 -o "$WORK/strace.log" \
        timeout 120 "$BIN" train "$TEXT" --out "$WORK/traced" "${TINY[@]}" --max-iters 0 >/dev/null 2>&1
    if awk -v dir="$WORK/traced" '
        /openat\(.*latest\.safetensors\.tmp\.[0-9]+".*O_CREAT/ { fd = $0; sub(/.*= /, "", fd); opened = 1; next }
        opened && /fsync\(/ { f = $0; sub(/.*fsync\(/, "", f); sub(/\).*/, "", f); if (f == fd) synced = 1; next }
        synced && /rename.*latest\.safetensors\.tmp\.[0-9]+".*latest\.safetensors"/ { renamed = 1; next }
        renamed && /openat\(.*O_DIRECTORY/ { dirsync = 1 }
        END { exit !(opened && synced && renamed && dirsync) }' "$WORK/strace.log"; then
        pass save_is_temp_fsync_rename
    else
        fail save_is_temp_fsync_rename "no open(tmp) -> fsync -> rename -> fsync(dir) sequence: $(grep -E 'latest|fsync' "$WORK/strace.log" | head -6 | tr '\n' ' ')"
    fi
else
    skip save_is_temp_fsync_rename "strace not available"
fi

# SIGKILL at random moments of a run that saves every iteration (a few MB
# each, so that most kills land in the middle of a save): after each kill,
# whatever is at the output path must load. Each run resumes the last one.
KOUT=$WORK/kill
KCFG=(--n-layer 2 --d-model 128 --n-head 4 --n-attn 64 --n-ffn 256 --block-size 16 --batch-size 2
      --eval-interval 1 --eval-iters 1 --log-interval 1000 --threads 1 --device cpu --max-iters 1000000)
RANDOM=4242
kills=0 midsave=0 kill_fail=""
for k in $(seq 10); do
    args=("$BIN" train "$TEXT" --out "$KOUT" "${KCFG[@]}")
    [[ -f $KOUT/latest.safetensors ]] && args=("$BIN" train "$TEXT" --out "$KOUT" --resume "$KOUT/latest.safetensors"
        --threads 1 --device cpu --max-iters 1000000)
    "${args[@]}" >"$WORK/kill_$k.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # Wait for the first save of this run (or of the first run), then a random 0-400 ms.
    for _ in $(seq 300); do
        [[ -f $KOUT/latest.safetensors ]] && grep -q '^step' "$WORK/kill_$k.log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    sleep "0.$(printf '%03d' $((RANDOM % 400)))"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    kills=$((kills + 1))
    ls "$KOUT"/*.tmp.* >/dev/null 2>&1 && midsave=$((midsave + 1))
    rm -f "$KOUT"/*.tmp.*
    for f in latest best; do
        if [[ ! -f $KOUT/$f.safetensors ]]; then
            kill_fail="after kill $k: $f.safetensors is missing"
        elif ! timeout 60 "$BIN" info --ckpt "$KOUT/$f.safetensors" >"$WORK/kill_info.out" 2>&1; then
            kill_fail="after kill $k: $f.safetensors does not load: $(head -1 "$WORK/kill_info.out")"
        fi
    done
    [[ -n $kill_fail ]] && break
done
PIDS=()
if [[ -n $kill_fail ]]; then
    fail sigkill_leaves_loadable_checkpoint "$kill_fail"
else
    pass "sigkill_leaves_loadable_checkpoint ($kills kills, $midsave in the middle of a save)"
fi

# --------------------------------------------------------------- non-finite loss
# lr 9 without clipping diverges; with no warmup in the first training step,
# with a warmup (here) in an evaluation. Either way training must stop with
# one error naming the iteration, and the checkpoint left behind must be a
# good one: it loads, samples and evaluates to a finite loss.
diverge() { # diverge NAME ARGS...
    local name=$1 out=$WORK/$1 rc it saved
    shift
    timeout 120 "$BIN" train "$TEXT" --out "$out" "${TINY[@]}" --lr 9 --grad-clip 0 --max-iters 2000 \
        --log-interval 1000 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    rc=$?
    grep -v '^device:' "$WORK/$name.err" >"$WORK/$name.err1" # the device line is normal output here
    classify $rc "$WORK/$name.err1"
    if [[ $rc -eq 0 ]]; then
        skip "$name" "lr 9 without clipping did not diverge within 2000 iterations"
        return
    elif [[ $CLASS == crash:* ]]; then
        fail "$name" "${CLASS#crash:}"
        return
    elif ! [[ $ERR =~ non-finite\ .*\ at\ iteration\ ([0-9]+) ]]; then
        fail "$name" "message does not name the iteration: $ERR"
        return
    fi
    it=${BASH_REMATCH[1]}
    if [[ ! -f $out/latest.safetensors ]]; then
        [[ $ERR == *"before any checkpoint"* ]] && pass "$name (at iteration $it, before any checkpoint)" \
            || fail "$name" "no checkpoint, and the message claims one: $ERR"
        return
    fi
    if [[ $ERR != *"$out/latest.safetensors"* ]]; then
        fail "$name" "message does not name the last good checkpoint: $ERR"
    elif ! timeout 60 "$BIN" info --ckpt "$out/latest.safetensors" >"$WORK/$name.info" 2>&1; then
        fail "$name" "last checkpoint does not load: $(head -1 "$WORK/$name.info")"
    elif ! timeout 60 "$BIN" sample --ckpt "$out/latest.safetensors" --max-new-tokens 10 --threads 1 --device cpu \
            >/dev/null 2>&1; then
        fail "$name" "last checkpoint does not sample"
    elif ! timeout 60 "$BIN" eval --ckpt "$out/latest.safetensors" "$TEXT" --batches 2 --batch-size 4 --threads 1 \
            --device cpu >"$WORK/$name.eval" 2>&1 ||
        ! grep -Eq '^train loss [0-9.]+ .*val loss [0-9.]+ ' "$WORK/$name.eval"; then
        fail "$name" "the checkpoint left behind is not finite: $(head -1 "$WORK/$name.eval")"
    else
        saved=$(sed -n 's/.*, iteration \([0-9]*\),.*/\1/p' "$WORK/$name.info" | head -1)
        if [[ -n $saved && $saved -le $it ]]; then
            pass "$name (status $rc at iteration $it; checkpoint of iteration $saved intact: $(cut -d';' -f1 "$WORK/$name.eval"))"
        else
            fail "$name" "checkpoint iteration '$saved' is not before the failing iteration $it"
        fi
    fi
}
diverge nonfinite_loss_in_step --warmup-iters 0 --eval-interval 50
diverge nonfinite_loss_in_eval --warmup-iters 30 --eval-interval 5

# Temporary files of dead writers are swept by the next good save; a live
# writer's (here: this shell's) is left alone.
mkdir -p "$WORK/stale"
dead=999999
while kill -0 $dead 2>/dev/null; do dead=$((dead - 1)); done
touch "$WORK/stale/c.safetensors.tmp.$dead" "$WORK/stale/c.safetensors.tmp.$$"
"$BIN" train "$TEXT" "${TINY[@]}" --max-iters 2 --eval-interval 2 --eval-iters 1 --out "$WORK/stale/c.safetensors" >/dev/null 2>&1
if [[ -f $WORK/stale/c.safetensors && ! -e $WORK/stale/c.safetensors.tmp.$dead && -e $WORK/stale/c.safetensors.tmp.$$ ]]; then
    pass "stale_temp_files_swept (a dead writer's temp file removed, a live one kept)"
else
    fail stale_temp_files_swept "left: $(ls "$WORK/stale" | tr '\n' ' ')"
fi

echo "checkpoint_robust: $failures failure(s)"
[[ $failures -eq 0 ]]
