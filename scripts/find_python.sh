# The Python that the tests and scripts run, found once: sourced by
# tests/lib.sh, tests/run_tests.sh, tests/run_cuda_tests.sh and the scripts
# that call Python. Sets and exports
#   PYTHON            $PYTHON when set (or the older $TF_PYTHON), else the first
#                     of /usr/bin/python3, python3, python that has torch, else
#                     the first that has numpy, else the first that runs;
#                     empty when there is none
#   PYTHON_HAS_TORCH  1 when $PYTHON has torch, else 0
#   PYTHON_HAS_NUMPY  1 when $PYTHON has numpy, else 0
# Finding asks whether a module is installed (importlib's find_spec) without
# importing it, so sourcing costs a few tens of milliseconds; a process that
# sources it again (a test under run_tests.sh) reuses the exported answer.
python_has() { # PY MODULE
    "$1" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$2') is None)" 2>/dev/null
}

if [[ -z ${PYTHON_FOUND:-} ]]; then
    PYTHON=${PYTHON:-${TF_PYTHON:-}}
    if [[ -z $PYTHON ]]; then
        _py_runs="" _py_numpy=""
        for _py in /usr/bin/python3 python3 python; do
            command -v "$_py" >/dev/null 2>&1 && "$_py" -c '' 2>/dev/null || continue
            _py_runs=${_py_runs:-$_py}
            if python_has "$_py" torch; then PYTHON=$_py && break; fi
            python_has "$_py" numpy && _py_numpy=${_py_numpy:-$_py}
        done
        PYTHON=${PYTHON:-${_py_numpy:-$_py_runs}}
        unset _py _py_runs _py_numpy
    fi
    PYTHON_HAS_TORCH=0 PYTHON_HAS_NUMPY=0
    if [[ -n $PYTHON ]]; then
        python_has "$PYTHON" torch && PYTHON_HAS_TORCH=1
        python_has "$PYTHON" numpy && PYTHON_HAS_NUMPY=1
    fi
    PYTHON_FOUND=1
    export PYTHON PYTHON_HAS_TORCH PYTHON_HAS_NUMPY PYTHON_FOUND
fi
