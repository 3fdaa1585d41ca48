#!/usr/bin/env bash
# Loading a text: train says how large it was and how long reading it took,
# and the text costs about its own size in memory (one byte a character for
# at most 256 distinct ones), not five times it (a 603 MB text once took
# 3 GB and 16 s, reported as nothing). Peak RSS is GNU time's.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" text_load

SMALL=(--n-layer 1 --d-model 16 --n-head 2 --n-attn 8 --n-ffn 8 --block-size 16 --batch-size 4
       --max-iters 1 --eval-interval 1 --eval-iters 1 --device cpu --threads 1)

# prose LINES: generated text, the same every time (no corpus needed).
prose() {
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++)
        printf "ROMEO %d: The quick brown fox jumps over the lazy dog; what, ho! Said she, %d.\n", i % 997, i }'
}
prose 110000 >"$WORK/big.txt"   # about 8.6 MB
prose 2000 >"$WORK/small.txt"   # about 150 KB: the same run without the text
size=$(stat -c %s "$WORK/big.txt")

# run NAME FILE [FLAGS]: train on FILE; stdout in $WORK/NAME.log, peak RSS
# (KiB) in $WORK/NAME.rss when GNU time is there.
run() {
    local name=$1 file=$2
    shift 2
    if [[ -x /usr/bin/time ]]; then
        /usr/bin/time -f %M -o "$WORK/$name.rss" "$BIN" train "$file" "${SMALL[@]}" "$@" --out "$WORK/out_$name" \
            >"$WORK/$name.log" 2>"$WORK/$name.err"
    else
        "$BIN" train "$file" "${SMALL[@]}" "$@" --out "$WORK/out_$name" >"$WORK/$name.log" 2>"$WORK/$name.err"
    fi
}

if ! run big "$WORK/big.txt" || ! run small "$WORK/small.txt"; then
    fail text_load_runs "$(tail -1 "$WORK/big.err") $(tail -1 "$WORK/small.err")"
    exit 1
fi

mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')
line=$(grep '^loaded ' "$WORK/big.log")
if [[ $line =~ ^loaded\ .*big\.txt:\ $mb\ MB,\ $size\ characters\ \([0-9]+\ distinct\)\ in\ [0-9]+\.[0-9]+s$ ]]; then
    pass "text_load_reports_size_and_time ($line)"
else
    fail text_load_reports_size_and_time "want 'loaded ...big.txt: $mb MB, $size characters (N distinct) in Xs', got '$line'"
fi

run bytes "$WORK/big.txt" --tokenizer bytes
line=$(grep '^loaded ' "$WORK/bytes.log")
[[ $line == *": $mb MB, $size bytes ("*" distinct) in "*s ]] && pass "text_load_reports_bytes ($line)" ||
    fail text_load_reports_bytes "got '$line'"

# The same run on a small text is the baseline: what the big one costs more
# is its text. Before the text was streamed it was 5 bytes a character.
# A sanitizer's shadow memory and quarantine grow with every allocation:
# its peak says nothing about the loader's.
if ((SLOW)); then
    skip text_load_peak_rss "a sanitizer build's peak memory is the sanitizer's"
elif [[ -s $WORK/big.rss && -s $WORK/small.rss ]]; then
    big=$(tail -1 "$WORK/big.rss") small=$(tail -1 "$WORK/small.rss")
    extra=$((big - small)) bound=$((2 * size / 1024))
    if ((extra <= bound)); then
        pass "text_load_peak_rss (a $((size / 1024)) KiB text: $extra KiB over the small text's $small, bound $bound)"
    else
        fail text_load_peak_rss "a $((size / 1024)) KiB text took $extra KiB over the small text's $small KiB (bound 2x: $bound)"
    fi
else
    skip text_load_peak_rss "GNU time (/usr/bin/time) not found"
fi

exit $((failures > 0))
