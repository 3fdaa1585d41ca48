#!/usr/bin/env bash
# Create data/input.txt (tiny shakespeare, 1115394 bytes) in the repository.
# Source, in order: the copy in shared/data beside the repository (no network
# needed, and what CI uses), then a download with curl or wget.
set -euo pipefail

URL="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
EXPECTED_BYTES=1115394

# Resolve paths from the script's own location so that it works from any cwd.
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$script_dir/.." && pwd)"
shared_copy="$(cd "$repo_root/.." && pwd)/shared/data/tinyshakespeare.txt"
dest="$repo_root/data/input.txt"

if [[ -s "$dest" ]]; then
    echo "get_data: $dest already exists"
    exit 0
fi

mkdir -p "$(dirname "$dest")"
# The temporary file lives beside the destination so that mv is an atomic
# rename on one file system: data/input.txt is either absent or complete.
tmp="$(mktemp "$dest.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

fetch() {
    if [[ -f "$shared_copy" ]]; then
        echo "get_data: copying $shared_copy"
        cp "$shared_copy" "$tmp" && return 0
    fi
    if command -v curl >/dev/null 2>&1; then
        echo "get_data: downloading $URL (curl)"
        curl -fsSL --retry 2 --connect-timeout 20 -o "$tmp" "$URL" && return 0
    fi
    if command -v wget >/dev/null 2>&1; then
        echo "get_data: downloading $URL (wget)"
        wget -q --tries=2 --timeout=20 -O "$tmp" "$URL" && return 0
    fi
    return 1
}

if ! fetch || [[ ! -s "$tmp" ]]; then
    cat >&2 <<MSG
get_data: error: could not obtain tiny shakespeare.
  Neither $shared_copy exists nor could it be downloaded from
  $URL
  Provide it by hand: download that URL and save it as
  $dest
  (any UTF-8 text file placed there works for training too).
MSG
    exit 1
fi

size="$(wc -c <"$tmp" | tr -d ' ')"
if [[ "$size" != "$EXPECTED_BYTES" ]]; then
    echo "get_data: warning: got $size bytes, expected $EXPECTED_BYTES for tiny shakespeare" >&2
fi
chmod 644 "$tmp" # mktemp makes it private; the data is not
mv "$tmp" "$dest"
trap - EXIT
echo "get_data: wrote $dest ($size bytes)"
