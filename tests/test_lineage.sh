#!/usr/bin/env bash
# A checkpoint knows its text and its run (docs/FORMAT.md 'text', 'run_id'):
# resume, eval and grow without FILE use the recorded text (never a
# data/input.txt that happens to be there), refuse a changed or vanished
# one unless --allow-other-text; the best guard compares only within one
# lineage and a fresh run replaces no other run's checkpoints without
# --force; --resume refuses fixed settings by name and prints the changed
# ones; --log appends only to its own run's log. Corpora: generated German
# (umlauts) and Chinese texts, never tiny shakespeare.
#
# Environment: TF_BIN (binary under test, default ./tokenformer).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" lineage

ABIN=$(realpath "$BIN")
gen_text() { # gen_text KIND LINES SEED: German-like words or Chinese characters
    awk -v kind="$1" -v lines="$2" -v seed="$3" 'BEGIN {
        srand(seed)
        nde = split("Äpfel über Öfen müssen schön grüßen Bäume fließen Straße Mädchen glücklich hören Käse", de, " ")
        nzh = split("春 眠 不 覺 曉 處 聞 啼 鳥 夜 來 風 雨 聲 花 落 知 多 少 床 前 明 月 光", zh, " ")
        for (i = 0; i < lines; i++) {
            line = ""
            for (j = 0; j < 10; j++) line = line (kind == "de" ? de[int(rand() * nde) + 1] " " : zh[int(rand() * nzh) + 1])
            print line
        }
    }'
}
mkdir -p "$WORK/elsewhere/data" "$WORK/texts"
DE=$WORK/texts/de.txt ZH=$WORK/texts/zh.txt
gen_text de 300 1 >"$DE"
gen_text zh 400 2 >"$ZH"
# A decoy where the old default looked: the same characters, so that using it
# would not even fail on the vocabulary.
gen_text de 300 7 >"$WORK/elsewhere/data/input.txt"
CFG=(--n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 16 --block-size 16 --batch-size 4 --eval-iters 2
     --eval-interval 10 --threads 1 --device cpu)
RES=(--eval-iters 2 --threads 1 --device cpu)
sum() { cksum <"$1" 2>/dev/null; }
# in_elsewhere CMD...: run the binary from the folder that holds the decoy data/input.txt
in_elsewhere() { (cd "$WORK/elsewhere" && "$ABIN" "$@"); }
one_line_error() { # one_line_error NAME REGEX FILE: FILE (stderr) is exactly one line matching REGEX
    if [[ $(wc -l <"$3") -eq 1 ]] && grep -qE -e "$2" "$3"; then pass "$1"; else fail "$1" "stderr: $(tr '\n' '|' <"$3")"; fi
}

"$BIN" train "$DE" "${CFG[@]}" --max-iters 20 --out "$WORK/de" --log "$WORK/de.csv" >"$WORK/de.log" 2>&1 \
    || fail train_de "$(tail -2 "$WORK/de.log")"
CK=$WORK/de/latest.safetensors

# 1. the record: path as given and absolute, size, FNV-1a 64 of the bytes
if command -v python3 >/dev/null; then
    got=$(python3 - "$CK" "$DE" 2>&1 <<'PY'
import json, os, struct, sys
raw = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
meta = json.loads(raw[8:8 + n])['__metadata__']
t = json.loads(meta['text']); data = open(sys.argv[2], 'rb').read()
h = 0xcbf29ce484222325
for b in data: h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
want = {'path': sys.argv[2], 'abspath': os.path.realpath(sys.argv[2]), 'bytes': str(len(data)), 'fnv1a64': '%016x' % h}
print('ok' if t == want and len(meta['run_id']) == 16 else 'got %s run_id %r, want %s' % (t, meta.get('run_id'), want))
PY
)
    [[ $got == ok ]] && pass text_recorded || fail text_recorded "$got"
else
    skip text_recorded "python3 not found"
fi

# 2. without FILE, resume and eval use the recorded text, not ./data/input.txt
in_elsewhere train --resume "$CK" "${RES[@]}" --max-iters 30 >"$WORK/r.log" 2>&1
grep -q "^data: $DE," "$WORK/r.log" && grep -q '^step 30:' "$WORK/r.log" && pass resume_uses_recorded_text \
    || fail resume_uses_recorded_text "$(grep -E '^data|error' "$WORK/r.log")"
E=(--batches 2 --threads 1 --device cpu)
in_elsewhere eval --ckpt "$CK" "${E[@]}" >"$WORK/e1.log" 2>&1
"$BIN" eval --ckpt "$CK" "$DE" "${E[@]}" >"$WORK/e2.log" 2>&1
[[ -s $WORK/e1.log && $(grep '^train loss' "$WORK/e1.log") == "$(grep '^train loss' "$WORK/e2.log")" ]] \
    && pass eval_uses_recorded_text || fail eval_uses_recorded_text "$(cat "$WORK/e1.log") vs $(cat "$WORK/e2.log")"
in_elsewhere grow --ckpt "$CK" --kv -2 --batches 2 --threads 1 --out "$WORK/pruned.safetensors" >"$WORK/g.log" 2>&1
grep -q "fixed batches of $DE:" "$WORK/g.log" && pass grow_prunes_on_recorded_text \
    || fail grow_prunes_on_recorded_text "$(tail -3 "$WORK/g.log")"
# the printed hint is the whole command, text included
grep -qF "resume with: tokenformer train $DE --resume $WORK/pruned.safetensors" "$WORK/g.log" \
    && pass grow_hint_names_text || fail grow_hint_names_text "$(grep 'resume with' "$WORK/g.log")"

# 3. a changed, vanished or other text is refused in one line, and nothing is written
before=$(sum "$CK")
echo "über Käse schön grüßen" >>"$DE"
in_elsewhere train --resume "$CK" "${RES[@]}" --max-iters 40 >/dev/null 2>"$WORK/c.err"
one_line_error resume_changed_text_refused "has changed.*--allow-other-text" "$WORK/c.err"
in_elsewhere eval --ckpt "$CK" "${E[@]}" >/dev/null 2>"$WORK/c2.err"
one_line_error eval_changed_text_refused "has changed.*--allow-other-text" "$WORK/c2.err"
mv "$DE" "$WORK/de.moved"
in_elsewhere grow --ckpt "$CK" --kv -2 --threads 1 --out "$WORK/p2.safetensors" >/dev/null 2>"$WORK/v.err"
one_line_error grow_vanished_text_refused "de\.txt.*which is gone.*--data FILE" "$WORK/v.err"
"$BIN" train "$ZH" --resume "$CK" "${RES[@]}" --max-iters 40 >/dev/null 2>"$WORK/o.err"
one_line_error resume_other_text_refused "zh\.txt. is not the text .*de\.txt.*--allow-other-text" "$WORK/o.err"
[[ $(sum "$CK") == "$before" && ! -e $WORK/p2.safetensors ]] && pass refused_writes_nothing \
    || fail refused_writes_nothing "latest changed or p2 written"
# deliberate: --allow-other-text says what it uses and records the new text
mv "$WORK/de.moved" "$DE"
echo "über Käse schön grüßen" >>"$DE"
in_elsewhere train --resume "$CK" "${RES[@]}" --max-iters 40 --allow-other-text --force >"$WORK/a.log" 2>&1
bytes=$(wc -c <"$DE")
grep -q "^note: --allow-other-text: using '$DE' ($bytes bytes" "$WORK/a.log" && grep -q '^step 40:' "$WORK/a.log" \
    && pass allow_other_text_says_what_it_uses || fail allow_other_text_says_what_it_uses "$(grep -E 'note|error' "$WORK/a.log")"
in_elsewhere eval --ckpt "$CK" "${E[@]}" >/dev/null 2>"$WORK/a2.err" && pass allowed_text_recorded \
    || fail allowed_text_recorded "$(cat "$WORK/a2.err")"

# 4. the best guard and --force: a fresh run replaces no other run's files
"$BIN" train "$DE" "${CFG[@]}" --max-iters 20 --out "$WORK/g1" >/dev/null 2>&1
lb=$(sum "$WORK/g1/latest.safetensors") bb=$(sum "$WORK/g1/best.safetensors")
"$BIN" train "$DE" "${CFG[@]}" --max-iters 2 --out "$WORK/g1" >/dev/null 2>"$WORK/f.err"
one_line_error fresh_run_refuses_other_runs_files "latest\.safetensors .iteration 20.*--force" "$WORK/f.err"
printf 'a%.0s' $(seq 3000) >"$WORK/texts/one.txt"
"$BIN" train "$WORK/texts/one.txt" "${CFG[@]}" --max-iters 20 --out "$WORK/g1" >/dev/null 2>"$WORK/one.err"
one_line_error one_character_text_refused "best\.safetensors .*another lineage: other text.*--force" "$WORK/one.err"
[[ $(sum "$WORK/g1/latest.safetensors") == "$lb" && $(sum "$WORK/g1/best.safetensors") == "$bb" ]] \
    && pass refused_run_kept_files || fail refused_run_kept_files "g1 changed"
# a resumed run whose best target holds another lineage's model is refused too
"$BIN" train "$ZH" "${CFG[@]}" --max-iters 10 --out "$WORK/zh" >/dev/null 2>&1
cp "$WORK/g1/best.safetensors" "$WORK/zh/best.safetensors"
"$BIN" train --resume "$WORK/zh/latest.safetensors" "${RES[@]}" --max-iters 20 >/dev/null 2>"$WORK/z.err"
one_line_error resume_refuses_best_of_other_lineage "zh/best\.safetensors .*another lineage: other text" "$WORK/z.err"
"$BIN" train --resume "$WORK/zh/latest.safetensors" "${RES[@]}" --max-iters 20 --force >"$WORK/z.log" 2>&1
grep -q "another lineage (text); this run's first evaluation replaces it" "$WORK/z.log" \
    && grep -q "^done.*best val loss [0-9.]* (.*zh/best.safetensors)" "$WORK/z.log" \
    && pass force_replaces_best_of_other_lineage || fail force_replaces_best_of_other_lineage "$(tail -2 "$WORK/z.log")"

# 6. --resume: fixed settings refused by name, changed ones printed
for args in "--preset tiny:--preset tiny" "--split 80,20:--split 80,20,0 differs" \
            "--d-model 32 --n-head 4:--d-model 32 .checkpoint: 16., --n-head 4 .checkpoint: 2."; do
    flags=${args%%:*} want=${args#*:}
    # shellcheck disable=SC2086
    "$BIN" train --resume "$CK" "${RES[@]}" --max-iters 50 $flags >/dev/null 2>"$WORK/s.err"
    one_line_error "resume_refuses '$flags'" "$want" "$WORK/s.err"
done
"$BIN" train --resume "$CK" "${RES[@]}" --max-iters 50 --lr 0.002 --split 90,10 --d-model 16 --out "$WORK/s" \
    >"$WORK/s.log" 2>&1
grep -q "^resume: settings changed from the checkpoint: .*--lr 0.001 -> 0.002, --min-lr 0.0001 -> 0.0002" "$WORK/s.log" \
    && pass resume_prints_changed_settings || fail resume_prints_changed_settings "$(grep -E '^resume|error' "$WORK/s.log")"

# two identical fresh runs are byte-identical (the run id is a digest of the run's start, not a clock)
"$BIN" train "$DE" "${CFG[@]}" --max-iters 10 --out "$WORK/same1" >/dev/null 2>&1
"$BIN" train "$DE" "${CFG[@]}" --max-iters 10 --out "$WORK/same2" >/dev/null 2>&1
cmp -s "$WORK/same1/latest.safetensors" "$WORK/same2/latest.safetensors" && pass identical_runs_identical_checkpoints \
    || fail identical_runs_identical_checkpoints "two identical fresh runs wrote different latest checkpoints"

# 7. --log appends only to a log of the same run
"$BIN" train --resume "$WORK/de/latest.safetensors" "$DE" "${RES[@]}" --max-iters 50 --out "$WORK/s2" --force \
    --log "$WORK/de.csv" >/dev/null 2>"$WORK/l0.err"
runs=$(tail -n +2 "$WORK/de.csv" | awk -F, '{print $NF}' | sort -u | wc -l)
[[ $runs -eq 1 ]] && grep -q '^50,.*,eval,' "$WORK/de.csv" && pass log_continues_own_run \
    || fail log_continues_own_run "$runs run ids; $(cat "$WORK/l0.err")"
csv_before=$(sum "$WORK/de.csv") text_before=$(sum "$ZH")
"$BIN" train "$DE" "${CFG[@]}" --max-iters 2 --out "$WORK/l1" --log "$WORK/de.csv" >/dev/null 2>"$WORK/l1.err"
one_line_error log_fresh_run_refuses_rows "--log: .*de\.csv. holds rows of another run .*a fresh run starts its own log" "$WORK/l1.err"
"$BIN" train --resume "$WORK/zh/latest.safetensors" "${RES[@]}" --max-iters 30 --out "$WORK/l4" --log "$WORK/de.csv" \
    >/dev/null 2>"$WORK/l4.err"
one_line_error log_of_other_run_refused "--log: .*de\.csv. holds rows of another run .*this resumed run is" "$WORK/l4.err"
"$BIN" train "$DE" "${CFG[@]}" --max-iters 2 --out "$WORK/l2" --log "$ZH" >/dev/null 2>"$WORK/l2.err"
one_line_error log_text_file_refused "--log: .*zh\.txt. is not a log" "$WORK/l2.err"
printf 'step,loss\n1,2.5\n' >"$WORK/other.csv"
"$BIN" train "$DE" "${CFG[@]}" --max-iters 2 --out "$WORK/l3" --log "$WORK/other.csv" >/dev/null 2>"$WORK/l3.err"
one_line_error log_other_header_refused "--log: .*other\.csv. is not a log" "$WORK/l3.err"
[[ $(sum "$WORK/de.csv") == "$csv_before" && $(sum "$ZH") == "$text_before" && ! -e $WORK/l1/latest.safetensors && ! -e $WORK/l4/latest.safetensors ]] \
    && pass refused_log_untouched || fail refused_log_untouched "a refused log or its run wrote something"

# older checkpoints (no record): today's default, with a note
if command -v python3 >/dev/null; then
    python3 - "$WORK/s/latest.safetensors" "$WORK/old.safetensors" <<'PY'
import json, struct, sys, zlib
raw = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); data = raw[8 + n:]
meta = h['__metadata__']
for k in ('text', 'run_id'): meta.pop(k)
crc = 0
for k in sorted(k for k in meta if k != 'crc32'):
    crc = zlib.crc32(k.encode() + b'\0' + meta[k].encode() + b'\0', crc)
meta['crc32'] = '%08x' % zlib.crc32(data, crc)
hdr = json.dumps(h).encode(); hdr += b' ' * (-len(hdr) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hdr)) + hdr + data)
PY
    in_elsewhere eval --ckpt "$WORK/old.safetensors" "${E[@]}" >"$WORK/old.log" 2>&1
    grep -q "^note: .*old.safetensors records no training text .*using data/input.txt" "$WORK/old.log" \
        && grep -q '^train loss' "$WORK/old.log" && pass old_checkpoint_falls_back_with_note \
        || fail old_checkpoint_falls_back_with_note "$(cat "$WORK/old.log")"
else
    skip old_checkpoint_falls_back_with_note "python3 not found"
fi

# an interrupted run's hint is the whole command, text included
rm -rf "$WORK/int"
"$BIN" train "$DE" "${CFG[@]}" --max-iters 1000000 --out "$WORK/int" >"$WORK/int.log" 2>/dev/null &
pid=$!
PIDS+=("$pid")
for _ in $(seq 200); do [[ -s $WORK/int/latest.safetensors ]] && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid" 2>/dev/null
grep -qF "continue with: tokenformer train $DE --resume $WORK/int/latest.safetensors" "$WORK/int.log" \
    && pass interrupt_hint_names_text || fail interrupt_hint_names_text "$(grep -E 'interrupted' "$WORK/int.log")"

exit $((failures > 0))
