#!/usr/bin/env bash
# Install the Debian packages tokenformer needs, only those not yet installed.
set -euo pipefail

PACKAGES=(
    build-essential        # gcc, make
    libopenblas-openmp-dev # OpenBLAS built with OpenMP: shares our OpenMP thread pool
    libopenblas-dev
    libcjson-dev           # checkpoint metadata (JSON)
    python3-torch          # reference implementation in the tests
    python3-numpy
    clang                  # libFuzzer targets
    libclang-rt-14-dev     # clang's sanitizer/fuzzer runtimes
    curl                   # scripts/get_data.sh
    gnuplot-nox            # scripts/plot.sh (training curves)
)

# dpkg -s also succeeds for removed-but-configured packages, so read the
# status word itself: only "install ok installed" counts.
is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps: all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "deps: error: not root and sudo is missing; install as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "deps: done"
