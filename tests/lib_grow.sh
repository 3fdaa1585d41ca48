# Shared by the growth tests (test_grow.sh, test_grow_ops.sh, test_grow_recipes.sh): tests/lib.sh and
# tests/lib_numpy.sh, the small model they grow, and the helpers they call.
# Usage, first thing in a test:
#     source "$(dirname "${BASH_SOURCE[0]}")/lib_grow.sh" TEST_NAME
# then write the test's own checks to "$tmp/st.py" (importing tests/ckpt_check.py)
# and call them with `st CHECK ARGS...`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$1"
source "$(dirname "${BASH_SOURCE[0]}")/lib_numpy.sh" "$1"
tmp=$WORK

MODEL=(--n-layer 2 --d-model 32 --n-head 4 --n-attn 16 --n-ffn 32 --block-size 32)
TRAIN=(--batch-size 8 --threads 1 --eval-interval 20 --eval-iters 4 --log-interval 20 --warmup-iters 5)

st() { PYTHONPATH=tests "$PY" "$tmp/st.py" "$@"; }
# "val loss on ... before X, after Y (...)" in a grow log -> "X Y"
before_after() { sed -n 's/.*before \([0-9.]*\), after \([0-9.]*\).*/\1 \2/p' "$1"; }
grow() { "$BIN" grow --threads 1 --batches 4 --data data/input.txt "$@"; }
# the val loss `eval` reports on fixed batches of checkpoint $1
val() { "$BIN" eval --ckpt "$1" --batches 4 --batch-size 8 --seed 7 --threads 1 2>&1 | sed -n 's/.*val loss \([0-9.]*\).*/\1/p'; }
# grow_refused LABEL CKPT ARGS: grow ARGS (split on spaces) must fail with one
# line on stderr and leave no output file; LABEL starts the PASS/FAIL line.
grow_refused() {
    rm -f "$tmp/bad.safetensors"
    # shellcheck disable=SC2086
    if "$BIN" grow --ckpt "$2" $3 --out "$tmp/bad.safetensors" >/dev/null 2>"$tmp/err" ||
        [[ $(wc -l <"$tmp/err") != 1 || -e "$tmp/bad.safetensors" ]]; then
        fail "${1}grow $3: $(head -2 "$tmp/err")"
    else
        pass "${1}grow $3 refused: $(cat "$tmp/err")"
    fi
}
