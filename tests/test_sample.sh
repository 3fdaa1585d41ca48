#!/usr/bin/env bash
# Sampling with the KV cache: greedy output equal to the no-cache path over
# the first block_size positions (every arch the binary knows), the window
# policy once the context passes block_size (docs/DESIGN.md, Sampling), a
# prompt longer than block_size, a prompt outside the vocabulary, a prompt
# from a file, and --num-samples streams that do not depend on how many run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" sample

TEXT=$WORK/text.txt
sample_text 60000 800 >"$TEXT"
BLOCK=32
KEEP=$((BLOCK / 2))
SMALL=(--preset tiny --n-layer 2 --d-model 32 --n-head 2 --n-attn 32 --n-ffn 64
       --block-size $BLOCK --batch-size 16 --eval-iters 1 --eval-interval 1000 --warmup-iters 2
       --max-iters 200 --lr 1e-2 --min-lr 1e-3 --threads 1 --device cpu)
S=(--threads 1 --device cpu)

# The flags that select an arch: none for tokenformer on a binary without --arch.
arch_flags() {
    if "$BIN" train --help | grep -q -- '--arch'; then
        echo "--arch $1"
    elif [[ $1 != tokenformer ]]; then
        return 1
    fi
}

# stream K of a --num-samples output (the lines before its separator)
stream() { awk -v k="$2" '$0 == "---------------" { i++; next } i == k' "$1"; }

first=""
for arch in tokenformer transformer transformerpp; do
    if ! flags=$(arch_flags "$arch"); then
        skip "cache_equals_no_cache_$arch" "this binary has no --arch"
        continue
    fi
    ck=$WORK/$arch.safetensors
    # shellcheck disable=SC2086 # flags is one flag and its value, or nothing
    if ! "$BIN" train "$TEXT" "${SMALL[@]}" $flags --out "$ck" >"$WORK/train_$arch.log" 2>&1; then
        if grep -qi "arch" "$WORK/train_$arch.log"; then
            skip "cache_equals_no_cache_$arch" "$(head -1 "$WORK/train_$arch.log")"
        else
            fail "cache_equals_no_cache_$arch" "training failed: $(tail -1 "$WORK/train_$arch.log")"
        fi
        continue
    fi
    [[ -z $first ]] && first=$ck
    # greedy, and with temperature (the same draws see the same logits), over
    # the first block_size positions
    ok=1
    for t in 0 1; do
        "$BIN" sample --ckpt "$ck" "${S[@]}" --temperature $t --prompt R --max-new-tokens $BLOCK \
            >"$WORK/c.txt" 2>&1 || ok=0
        "$BIN" sample --ckpt "$ck" "${S[@]}" --temperature $t --prompt R --max-new-tokens $BLOCK \
            --no-cache >"$WORK/n.txt" 2>&1 || ok=0
        cmp -s "$WORK/c.txt" "$WORK/n.txt" || ok=0
    done
    if ((ok)); then pass "cache_equals_no_cache_$arch"; else
        fail "cache_equals_no_cache_$arch" "outputs differ: $(head -c 80 "$WORK/c.txt") | $(head -c 80 "$WORK/n.txt")"
    fi
done
[[ -n $first ]] || { fail sample "no checkpoint to sample from"; exit 1; }
CK=$first

# Past block_size the cache restarts from the last block_size/2 tokens: the
# next characters are what the no-cache path writes from those tokens alone.
# (A prompt of real text nearly filling the window, so that those tokens are
# not yet the loop a small model falls into.)
P=$(head -c $((BLOCK - 2)) "$TEXT" | tr '\n' ' ')
"$BIN" sample --ckpt "$CK" "${S[@]}" --temperature 0 --prompt "$P" --max-new-tokens $((2 * BLOCK + 2 - ${#P})) \
    >"$WORK/long.txt" 2>&1
out=$(head -c -1 "$WORK/long.txt") # without the final newline
q=${out:$((BLOCK + 1 - KEEP)):$KEEP}
want=${out:$((BLOCK + 1)):$((BLOCK - KEEP + 1))}
got=$("$BIN" sample --ckpt "$CK" "${S[@]}" --temperature 0 --prompt "$q" \
      --max-new-tokens $((BLOCK - KEEP + 1)) --no-cache 2>&1)
if [[ ${#out} -eq $((2 * BLOCK + 2)) && "$got" == "$q$want" ]]; then
    pass window_shift
else
    fail window_shift "after the shift: '${got:KEEP}' expected '$want' (length ${#out})"
fi

# A prompt longer than block_size: the first character as without a cache
# (the last block_size tokens), then generation goes on.
long_prompt=$(head -c $((3 * BLOCK)) "$TEXT" | tr -d '\n')
c1=$("$BIN" sample --ckpt "$CK" "${S[@]}" --temperature 0 --prompt "$long_prompt" --max-new-tokens 1 2>&1)
n1=$("$BIN" sample --ckpt "$CK" "${S[@]}" --temperature 0 --prompt "$long_prompt" --max-new-tokens 1 --no-cache 2>&1)
c40=$("$BIN" sample --ckpt "$CK" "${S[@]}" --prompt "$long_prompt" --max-new-tokens 40 2>&1)
rc=$?
if [[ "$c1" == "$n1" && $rc -eq 0 && ${#c40} -eq $((${#long_prompt} + 40)) ]]; then
    pass long_prompt
else
    fail long_prompt "rc $rc, '${c1: -5}' vs '${n1: -5}', length ${#c40}"
fi

# A character the model has never seen: one clear line, no output.
"$BIN" sample --ckpt "$CK" "${S[@]}" --prompt "R€x" --max-new-tokens 5 >"$WORK/o.txt" 2>"$WORK/e.txt"
rc=$?
if [[ $rc -ne 0 && ! -s $WORK/o.txt && $(wc -l <"$WORK/e.txt") -eq 1 ]] &&
    grep -q "not in the model's vocabulary" "$WORK/e.txt"; then
    pass prompt_outside_vocab
else
    fail prompt_outside_vocab "rc $rc, stderr: $(cat "$WORK/e.txt")"
fi

# --prompt-file: the file's text is the prompt, newlines included (what
# --prompt with the same text writes); alone, not beside --prompt; a file
# that cannot be read or holds a character outside the vocabulary: one line.
pf_text=$(head -c $((BLOCK + 9)) "$TEXT")
printf '%s' "$pf_text" >"$WORK/prompt.txt"
from_file=$("$BIN" sample --ckpt "$CK" "${S[@]}" --seed 3 --prompt-file "$WORK/prompt.txt" --max-new-tokens 20 2>&1)
from_flag=$("$BIN" sample --ckpt "$CK" "${S[@]}" --seed 3 --prompt "$pf_text" --max-new-tokens 20 2>&1)
if [[ "$from_file" == "$from_flag" && "$from_file" == "$pf_text"* && $pf_text == *$'\n'* ]]; then
    pass prompt_file
else
    fail prompt_file "'${from_file:0:60}' vs '${from_flag:0:60}'"
fi
printf 'R\xe2\x82\xacx' >"$WORK/euro.txt"
pf_ok=1
for args in "--prompt-file $WORK/missing.txt" "--prompt-file $WORK/euro.txt" \
    "--prompt-file $WORK/prompt.txt --prompt R" "--prompt-file $WORK"; do
    # shellcheck disable=SC2086 # args: flags and paths without spaces
    "$BIN" sample --ckpt "$CK" "${S[@]}" $args --max-new-tokens 5 >"$WORK/o.txt" 2>"$WORK/e.txt"
    rc=$?
    if [[ $rc -eq 0 || -s $WORK/o.txt || $(wc -l <"$WORK/e.txt") -ne 1 ]]; then
        pf_ok=0
        echo "  $args: rc $rc, stderr: $(head -c 200 "$WORK/e.txt")"
    fi
done
if ((pf_ok)); then pass prompt_file_errors; else fail prompt_file_errors "see above"; fi

# --num-samples: stream i's text depends on (seed, i) only.
run_n() { "$BIN" sample --ckpt "$CK" "${S[@]}" --prompt R --seed 7 --num-samples "$1" --max-new-tokens 50 "${@:2}"; }
run_n 1 >"$WORK/n1.txt" && run_n 2 >"$WORK/n2.txt" && run_n 3 >"$WORK/n3.txt" && run_n 3 >"$WORK/n3b.txt"
seps=$(grep -c '^---------------$' "$WORK/n3.txt")
if cmp -s "$WORK/n3.txt" "$WORK/n3b.txt" && [[ $seps -eq 3 ]] &&
    [[ "$(cat "$WORK/n1.txt")" == "$(stream "$WORK/n3.txt" 0)" ]] &&
    [[ "$(stream "$WORK/n2.txt" 1)" == "$(stream "$WORK/n3.txt" 1)" ]] &&
    [[ "$(stream "$WORK/n3.txt" 1)" != "$(stream "$WORK/n3.txt" 2)" ]]; then
    pass num_samples_reproducible
else
    fail num_samples_reproducible "$seps separators; streams: $(head -c 200 "$WORK/n3.txt")"
fi
# within the first block, batched streams see the logits of the no-cache path
run_n 3 --max-new-tokens $((BLOCK - 1)) >"$WORK/m3.txt"
run_n 3 --max-new-tokens $((BLOCK - 1)) --no-cache >"$WORK/m3n.txt"
if cmp -s "$WORK/m3.txt" "$WORK/m3n.txt"; then pass num_samples_no_cache; else
    fail num_samples_no_cache "batched streams differ with and without the cache"
fi

# the sampler's lookahead (sample starts each step before printing the last)
# and the copies it reads through, on the CPU backend as tests/op_custom.c
# runs them on a GPU: the same tokens as without it, through window restarts
OPS_BIN=${BUILD:-build}/tests/test_ops
if [[ -x $OPS_BIN ]]; then
    for kind in sampler_lookahead memory; do
        # the memory case asks for 1 PiB and expects NULL, which ASan aborts on unless told
        out=$(ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1" \
            "$OPS_BIN" --backend cpu --only $kind 2>&1)
        rc=$?
        grep -E '^(PASS|FAIL) ' <<<"$out"
        grep -q '^FAIL ' <<<"$out" && failures=$((failures + 1))
        if ! grep -q '^PASS ' <<<"$out" || { [[ $rc -ne 0 ]] && ! grep -q '^FAIL ' <<<"$out"; }; then
            fail "ops_cpu_$kind" "rc $rc: $(tail -1 <<<"$out")" # nothing ran, or it stopped without a FAIL
        fi
    done
else
    skip ops_cpu_sampler_lookahead "$OPS_BIN not built"
fi

exit $((failures > 0))
