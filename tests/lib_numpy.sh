# Shared by the shell tests that read checkpoints in Python: sets PY to a
# python with numpy (Debian's here; on the GPU machine the one on PATH, or
# $TF_PYTHON), failing the test without one, and skips the test when the
# corpus is missing. Usage, after `cd` to the repository root:
#     source "$(dirname "${BASH_SOURCE[0]}")/lib_numpy.sh" TEST_NAME
PY=${TF_PYTHON:-}
for cand in /usr/bin/python3 python3; do
    [[ -z $PY ]] && "$cand" -c 'import numpy' 2>/dev/null && PY=$cand
done
if [[ -z $PY ]]; then
    echo "FAIL $1: no python3 with numpy to read checkpoints (apt-get install python3-numpy)"
    exit 1
fi
if [[ ! -f data/input.txt ]]; then
    echo "SKIP test_$1: data/input.txt is missing (run 'make data')"
    exit 0
fi
