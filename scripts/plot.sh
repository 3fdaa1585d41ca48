#!/usr/bin/env bash
# Plot training logs written by `tokenformer train --log FILE.csv`.
#
#   scripts/plot.sh LOG.csv [LOG2.csv ...] [-o PREFIX]
#
# Writes PREFIX-val-iter.png (val loss against iteration) and
# PREFIX-val-flops.png (val loss against cumulative training FLOPs, log x),
# one curve per log, growth points (rows with event "grow") marked by a
# dashed vertical line. PREFIX defaults to the first log's path without .csv.
# Needs gnuplot (Debian: gnuplot-nox, in scripts/deps.sh).
set -euo pipefail

usage() { echo "usage: scripts/plot.sh LOG.csv [LOG2.csv ...] [-o PREFIX]"; }

logs=()
prefix=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -o) [[ $# -ge 2 ]] || { echo "plot: error: -o needs a PREFIX" >&2; exit 2; }; prefix=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "plot: error: unknown option '$1'" >&2; usage >&2; exit 2 ;;
        *) logs+=("$1"); shift ;;
    esac
done
[[ ${#logs[@]} -gt 0 ]] || { usage >&2; exit 2; }
command -v gnuplot >/dev/null 2>&1 || {
    echo "plot: error: gnuplot is not installed (Debian: apt-get install gnuplot-nox, or make deps)" >&2; exit 1; }
for log in "${logs[@]}"; do
    [[ -r "$log" ]] || { echo "plot: error: cannot read '$log'" >&2; exit 1; }
    head -n 1 "$log" | grep -q '^iter,tokens,flops,' ||
        { echo "plot: error: '$log' is not a tokenformer --log CSV (no header row)" >&2; exit 1; }
done
[[ -n "$prefix" ]] || prefix="${logs[0]%.csv}"
# gnuplot writes a PNG it cannot open a file for to the terminal instead.
prefix_dir=$(dirname -- "$prefix")
[[ -d "$prefix_dir" && -w "$prefix_dir" ]] ||
    { echo "plot: error: -o $prefix: '$prefix_dir' is not a writable directory (create it first)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Per log: the eval rows as "iter flops val_loss", the growth rows as "iter flops".
# Columns are found by name, so that added columns do not break the plot.
extract() {
    awk -F, -v want="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        want == "eval" && $col["event"] == "eval" && $col["val_loss"] != "" {
            print $col["iter"], $col["flops"], $col["val_loss"] }
        want == "grow" && $col["event"] == "grow" { print $col["iter"], $col["flops"] }' "$1"
}

plot_iter="" plot_flops="" marks_iter="" marks_flops=""
for k in "${!logs[@]}"; do
    log="${logs[$k]}"
    extract "$log" eval >"$work/eval$k"
    extract "$log" grow >"$work/grow$k"
    [[ -s "$work/eval$k" ]] || { echo "plot: warning: '$log' has no eval rows" >&2; continue; }
    title="$(basename "${log%.csv}")"
    plot_iter+="${plot_iter:+, }'$work/eval$k' using 1:3 with linespoints title '$title' noenhanced"
    plot_flops+="${plot_flops:+, }'$work/eval$k' using 2:3 with linespoints title '$title' noenhanced"
    while read -r iter flops; do
        marks_iter+="set arrow from $iter, graph 0 to $iter, graph 1 nohead dashtype 2 linecolor rgb 'gray40'"$'\n'
        [[ "$flops" != 0* ]] &&
            marks_flops+="set arrow from $flops, graph 0 to $flops, graph 1 nohead dashtype 2 linecolor rgb 'gray40'"$'\n'
    done <"$work/grow$k"
done
[[ -n "$plot_iter" ]] || { echo "plot: error: no eval rows in any log" >&2; exit 1; }

common="set terminal pngcairo size 900,600 noenhanced
set grid
set key top right
set ylabel 'val loss (nats/token)'"

gnuplot <<GP
$common
set output '$prefix-val-iter.png'
set xlabel 'iteration'
set title 'val loss against iteration (dashed: growth)'
$marks_iter
plot $plot_iter
GP

gnuplot <<GP
$common
set output '$prefix-val-flops.png'
set logscale x
set format x '%.0e'
set xlabel 'cumulative training FLOPs'
set title 'val loss against training FLOPs (dashed: growth)'
$marks_flops
plot $plot_flops
GP
echo "plot: wrote $prefix-val-iter.png and $prefix-val-flops.png"
