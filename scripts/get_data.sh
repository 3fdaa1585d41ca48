#!/usr/bin/env bash
# Fetch a training corpus into data/ (`make data CORPUS=NAME` runs this).
#
#   scripts/get_data.sh [NAME]
#
#   shakespeare  (default) data/input.txt, tiny shakespeare, 1115394 bytes: the
#                copy in shared/data beside the repository (no network needed,
#                and what CI uses), else a download with curl or wget.
#   linux-docs   data/linux-docs.txt: every html/_sources/**/*.rst.txt of the
#                Debian package linux-doc-6.1 (fetched with apt-get download),
#                concatenated in byte-sorted path order; deterministic for a
#                given package version, md5 and size printed (docs/MODEL.md 4).
#   kjv          data/kjv.txt: the King James Bible, Genesis 1:1 to Revelation
#                22:21, printed by the Debian packages bible-kjv and bible-kjv-text
#                (apt-get download; the program runs from the unpacked package, so
#                an amd64 machine) in 80 columns, chapter headings and verse
#                numbers included; deterministic, md5 and size printed.
#   enwik8       data/enwik8: the first 10^8 bytes of an English Wikipedia dump,
#                from mattmahoney.net (needs internet). Train it as bytes:
#                --tokenizer bytes --split 90,5,5.
#
# Environment (for the tests): TF_DATA_DIR replaces data/, TF_ENWIK8_URL the URL.
# Each output appears complete or not at all (written beside it, then renamed).
set -euo pipefail

SHAKESPEARE_URL="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_BYTES=1115394
ENWIK8_URL="${TF_ENWIK8_URL:-http://mattmahoney.net/dc/enwik8.zip}"
ENWIK8_BYTES=100000000
LINUX_DOC_PACKAGE="linux-doc-6.1"
KJV_PACKAGES="bible-kjv bible-kjv-text"

usage() {
    echo "usage: scripts/get_data.sh [shakespeare|linux-docs|kjv|enwik8]"
}

corpus="${1:-shakespeare}"
case "$corpus" in
    -h|--help) usage; exit 0 ;;
    shakespeare|linux-docs|kjv|enwik8) ;;
    *) echo "get_data: error: unknown corpus '$corpus' (expected shakespeare, linux-docs, kjv or enwik8)" >&2; exit 2 ;;
esac
[[ $# -le 1 ]] || { echo "get_data: error: expected one corpus name, got $#: $*" >&2; exit 2; }

# Resolve paths from the script's own location so that it works from any cwd.
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
data_dir="${TF_DATA_DIR:-$repo_root/data}" # the override is for the tests

work=""
tmp=""
cleanup() { rm -rf "$work" "$tmp"; }
trap cleanup EXIT

# A temporary file beside the destination, so that mv is an atomic rename.
start_output() {
    mkdir -p "$data_dir"
    tmp="$(mktemp "$1.tmp.XXXXXX")"
}

finish_output() {
    local dest=$1 size
    size="$(wc -c <"$tmp" | tr -d ' ')"
    chmod 644 "$tmp" # mktemp makes it private; the data is not
    mv "$tmp" "$dest"
    tmp=""
    echo "get_data: wrote $dest ($size bytes, md5 $(md5sum "$dest" | cut -d' ' -f1))"
}

download() { # URL FILE: curl or wget, quietly; non-zero on any failure
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 --connect-timeout 20 -o "$2" "$1" 2>/dev/null && return 0
    elif command -v wget >/dev/null 2>&1; then
        wget -q --tries=2 --timeout=20 -O "$2" "$1" && return 0
    fi
    return 1
}

get_shakespeare() {
    local dest="$data_dir/input.txt"
    local shared_copy
    shared_copy="$(cd "$repo_root/.." && pwd)/shared/data/tinyshakespeare.txt"
    if [[ -s "$dest" ]]; then echo "get_data: $dest already exists"; return 0; fi
    start_output "$dest"
    if [[ -f "$shared_copy" ]]; then
        echo "get_data: copying $shared_copy"
        cp "$shared_copy" "$tmp"
    else
        echo "get_data: downloading $SHAKESPEARE_URL"
        if ! download "$SHAKESPEARE_URL" "$tmp" || [[ ! -s "$tmp" ]]; then
            cat >&2 <<MSG
get_data: error: could not obtain tiny shakespeare.
  Neither $shared_copy exists nor could it be downloaded from
  $SHAKESPEARE_URL
  Provide it by hand: download that URL and save it as
  $dest
  (any UTF-8 text file placed there works for training too).
MSG
            exit 1
        fi
    fi
    local size
    size="$(wc -c <"$tmp" | tr -d ' ')"
    [[ "$size" == "$SHAKESPEARE_BYTES" ]] ||
        echo "get_data: warning: got $size bytes, expected $SHAKESPEARE_BYTES for tiny shakespeare" >&2
    finish_output "$dest"
}

# unpack_debs CORPUS PACKAGE...: apt-get download the packages into a fresh
# $work and unpack them all into $work/root (nothing is installed).
unpack_debs() {
    local corpus=$1 deb
    shift
    command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || {
        echo "get_data: error: $corpus needs apt-get and dpkg-deb (a Debian-based system)" >&2; exit 1; }
    work="$(mktemp -d)"
    echo "get_data: apt-get download $*"
    if ! (cd "$work" && apt-get download "$@" >/dev/null 2>&1); then
        echo "get_data: download failed; running apt-get update first"
        apt-get update >/dev/null 2>&1 || true
        (cd "$work" && apt-get download "$@" >/dev/null 2>&1) || {
            echo "get_data: error: could not download the Debian package(s) $* (no Debian mirror reachable?)" >&2
            exit 1; }
    fi
    for deb in "$work"/*.deb; do
        echo "get_data: $(basename "$deb")"
        dpkg-deb -x "$deb" "$work/root"
    done
}

get_linux_docs() {
    local dest="$data_dir/linux-docs.txt"
    if [[ -s "$dest" ]]; then echo "get_data: $dest already exists"; return 0; fi
    unpack_debs linux-docs "$LINUX_DOC_PACKAGE"
    local sources
    sources="$(find "$work/root" -type d -path '*/html/_sources' | head -n 1)"
    [[ -n "$sources" ]] || { echo "get_data: error: no html/_sources folder in $LINUX_DOC_PACKAGE" >&2; exit 1; }
    start_output "$dest"
    # Byte order of the relative paths (LC_ALL=C), so that the text is the
    # same wherever it is built.
    (cd "$sources" && find . -type f -name '*.rst.txt' | LC_ALL=C sort | tr '\n' '\0' | xargs -0 cat) >"$tmp"
    [[ -s "$tmp" ]] || { echo "get_data: error: no .rst.txt files under html/_sources" >&2; exit 1; }
    echo "get_data: $(cd "$sources" && find . -type f -name '*.rst.txt' | wc -l) files"
    finish_output "$dest"
}

get_kjv() {
    local dest="$data_dir/kjv.txt"
    if [[ -s "$dest" ]]; then echo "get_data: $dest already exists"; return 0; fi
    # shellcheck disable=SC2086
    unpack_debs kjv $KJV_PACKAGES
    local bible="$work/root/usr/bin/bible"
    [[ -x "$bible" && -s "$work/root/usr/lib/bible.data" ]] || {
        echo "get_data: error: the bible packages hold no usr/bin/bible or usr/lib/bible.data" >&2; exit 1; }
    start_output "$dest"
    # -l80: the line width, else taken from the terminal's COLUMNS
    "$bible" -p "$work/root/usr/lib" -l80 "gen1:1-rev22:21" </dev/null >"$tmp" || {
        echo "get_data: error: the unpacked bible program failed (an amd64 machine is needed)" >&2; exit 1; }
    [[ -s "$tmp" ]] || { echo "get_data: error: the bible program printed nothing" >&2; exit 1; }
    finish_output "$dest"
}

get_enwik8() {
    local dest="$data_dir/enwik8"
    if [[ -s "$dest" ]]; then echo "get_data: $dest already exists"; return 0; fi
    command -v unzip >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || {
        echo "get_data: error: enwik8 needs unzip or python3 to unpack" >&2; exit 1; }
    work="$(mktemp -d)"
    if ! download "$ENWIK8_URL" "$work/enwik8.zip"; then
        echo "get_data: error: could not download $ENWIK8_URL (no internet?); save its 'enwik8' as $dest by hand" >&2
        exit 1
    fi
    start_output "$dest"
    if command -v unzip >/dev/null 2>&1; then
        unzip -p "$work/enwik8.zip" enwik8 >"$tmp"
    else
        python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("enwik8"))' \
            "$work/enwik8.zip" >"$tmp"
    fi
    local size
    size="$(wc -c <"$tmp" | tr -d ' ')"
    [[ "$size" == "$ENWIK8_BYTES" ]] ||
        { echo "get_data: error: enwik8.zip held $size bytes, expected $ENWIK8_BYTES" >&2; exit 1; }
    finish_output "$dest"
}

case "$corpus" in
    shakespeare) get_shakespeare ;;
    linux-docs) get_linux_docs ;;
    kjv) get_kjv ;;
    enwik8) get_enwik8 ;;
esac
