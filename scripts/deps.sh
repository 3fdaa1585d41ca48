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

# The OpenMP build of OpenBLAS must be the one loaded: with the pthread build
# beside it (installed first, it wins the alternative on priority), OpenBLAS's
# threads and ours contend for the cores and training runs several times slower.
use_openmp_openblas() {
    local alt=libopenblas.so.0-x86_64-linux-gnu
    local want=/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0
    [[ -e $want ]] || return 0
    if [[ "$(readlink -f /etc/alternatives/$alt 2>/dev/null)" != "$want" ]]; then
        echo "deps: selecting the OpenMP build of OpenBLAS ($want)"
        "${sudo[@]}" update-alternatives --set "$alt" "$want" >/dev/null
    fi
}

sudo=()
[[ "$(id -u)" -ne 0 ]] && command -v sudo >/dev/null 2>&1 && sudo=(sudo)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "deps: all ${#PACKAGES[@]} packages already installed"
    use_openmp_openblas
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
use_openmp_openblas
echo "deps: done"
