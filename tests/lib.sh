# Shared by the shell tests: the binary under test, a scratch folder removed
# on exit (processes listed in PIDS are killed first), PASS/FAIL/SKIP lines
# with a failure count, and the Python to run ($PYTHON). Usage, first thing in a test:
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" TEST_NAME
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
BIN=${TF_BIN:-./tokenformer}
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" # see run_tests.sh
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    chmod -R u+rwx "$WORK" 2>/dev/null # tests make unreadable files in it
    rm -rf "$WORK"
}
trap cleanup EXIT
export LC_ALL=C.UTF-8

failures=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2+: $2}"; failures=$((failures + 1)); } # NAME [WHY]
skip() { echo "SKIP $1: $2"; }

# skip_without_gpu NAME: prints "SKIP NAME: no usable GPU (why)" and exits 0
# when a one-step CUDA bench cannot run here (no GPU, no driver, a CPU build).
skip_without_gpu() {
    if ! "$BIN" bench --device cuda --steps 1 --warmup 0 --n-layer 1 --d-model 16 --n-head 2 --n-attn 8 \
        --n-ffn 8 --block-size 8 --batch-size 2 >/dev/null 2>"$WORK/cuda_probe"; then
        skip "$1" "no usable GPU ($(head -1 "$WORK/cuda_probe"))"
        exit 0
    fi
}

# PYTHON: the Python to run (with torch when one has it; PYTHON_HAS_TORCH,
# PYTHON_HAS_NUMPY say what it has), found once: scripts/find_python.sh.
source scripts/find_python.sh

# sample_text BYTES LINES: the first BYTES of tiny shakespeare, or LINES of
# generated prose when the corpus is missing (CI without network).
sample_text() {
    if [[ -s data/input.txt ]]; then
        head -c "$1" data/input.txt
    else
        for i in $(seq "$2"); do
            echo "ROMEO: The quick brown fox $i jumps over the lazy dog; what, ho! Said he."
        done
    fi
}

# What a sanitizer report looks like, in a command's output.
SANITIZER_RE='AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|MemorySanitizer|ThreadSanitizer'

# Sanitizer builds run several times slower: tests scale their work down.
SLOW=0
[[ $BIN == *asan* ]] && SLOW=1

if [[ ! -x $BIN ]]; then
    fail "${1:-test}" "binary '$BIN' not found (build it first)"
    exit 1
fi

# tiny_checkpoint DIR: TEXT (a slice of text), TINY (the flags of a one-layer
# model that trains in seconds on the CPU) and CKPT, the latest checkpoint of
# a run with them in DIR. A failed run is a FAIL that ends the test.
tiny_checkpoint() {
    TEXT=$WORK/text.txt
    sample_text 20000 400 >"$TEXT"
    TINY=(--n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 16 --block-size 16 --batch-size 4
          --max-iters 4 --eval-interval 2 --eval-iters 1 --threads 1 --device cpu)
    if ! timeout 120 "$BIN" train "$TEXT" --out "$1" "${TINY[@]}" >"$WORK/setup.log" 2>&1; then
        fail setup_train "training the fixture checkpoint failed: $(tail -2 "$WORK/setup.log" | tr '\n' ' ')"
        exit 1
    fi
    CKPT=$1/latest.safetensors
}

# log_rows CSV EVENT COLUMN...: the named columns of the rows of EVENT
# (eval, progress, resume, grow) in a `train --log` CSV, one row a line,
# space-separated. Numbers are read from the log, which holds them at full
# precision, rather than from the English lines printed for people.
log_rows() {
    awk -F, -v event="$2" -v cols="${*:3}" '
        NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; n = split(cols, want, " ")
                  for (j = 1; j <= n; j++) if (!(want[j] in c)) { print "no column " want[j] > "/dev/stderr"; exit 1 }
                  next }
        $c["event"] == event { line = ""; for (j = 1; j <= n; j++) line = line (j > 1 ? " " : "") $c[want[j]]; print line }' "$1"
}

# run_bin NAME ARGS...: the binary with ARGS, its stdout in $WORK/NAME.log and
# stderr in $WORK/NAME.err; a failure is reported (its last stderr line) and
# returned.
run_bin() {
    local name=$1
    shift
    timeout 300 "$BIN" "$@" >"$WORK/$name.log" 2>"$WORK/$name.err" ||
        { fail "$name" "$(tail -1 "$WORK/$name.err")"; return 1; }
}

# refused NAME WANT OUT ARGS...: the binary with ARGS --out OUT must fail with
# one line on stderr that contains WANT, and leave OUT unwritten.
refused() {
    local name=$1 want=$2 out=$3
    shift 3
    if timeout 120 "$BIN" "$@" --out "$out" >"$WORK/$name.log" 2>"$WORK/$name.err"; then
        fail "$name" "exited 0"
    elif [[ -e $out ]]; then
        fail "$name" "wrote $out"
    elif [[ $(wc -l <"$WORK/$name.err") -ne 1 ]] || ! grep -q -- "$want" "$WORK/$name.err"; then
        fail "$name" "stderr: $(tr '\n' '|' <"$WORK/$name.err")"
    else
        pass "$name ($(cat "$WORK/$name.err"))"
    fi
}
