# Shared by the shell tests that read checkpoints in Python: PY is $PYTHON
# (tests/lib.sh), which must have numpy (the test fails without it), and
# the test is skipped when the corpus is missing. Usage, after tests/lib.sh:
#     source "$(dirname "${BASH_SOURCE[0]}")/lib_numpy.sh" TEST_NAME
PY=$PYTHON
if [[ ${PYTHON_HAS_NUMPY:-0} != 1 ]]; then
    echo "FAIL $1: no python with numpy to read checkpoints (PYTHON=${PYTHON:-none}; apt-get install python3-numpy)"
    exit 1
fi
if [[ ! -f data/input.txt ]]; then
    echo "SKIP test_$1: data/input.txt is missing (run 'make data')"
    exit 0
fi
