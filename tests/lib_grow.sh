# Shared by the growth tests (test_grow.sh, test_grow_recipes.sh): tests/lib.sh and
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
