"""Checkpoint checks shared by the shell tests that read safetensors in Python
(tests/lib_grow.sh puts this folder on PYTHONPATH): load a checkpoint, collect
failed checks, the generic comparisons, and the exit that reports them."""
import importlib
import json
import struct
import sys


class _NumpyOnUse:
    """numpy, imported at its first use: a check of numbers alone (close,
    differ, less) then starts in a tenth of the time, and the growth tests
    run dozens of them."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("numpy"), name)


np = _NumpyOnUse()  # the checks of each test import this np
errors = []


def load(path):
    """(tensors by name, metadata, row_segments) of a float32 checkpoint."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    t = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", name
        a, b = info["data_offsets"]
        t[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"])
    return t, meta, json.loads(meta.get("row_segments", "{}") or "{}")


def check(cond, msg):
    if not cond:
        errors.append(msg)


def compare(cmd, args):
    """The checks of numbers and metadata every test shares; False if cmd is none of them."""
    if cmd == "close":  # close X Y REL: |X - Y| <= REL * |X|
        x, y, rel = map(float, args)
        check(abs(x - y) <= rel * abs(x), f"{x} vs {y}: relative difference {abs(x - y) / abs(x):.2e} > {rel:g}")
    elif cmd == "differ":  # differ X Y MIN: |X - Y| > MIN
        x, y, m = map(float, args)
        check(abs(x - y) > m, f"{x} vs {y}: differ by {abs(x - y):.2e}, not more than {m:g}")
    elif cmd == "less":  # less X Y: X < Y
        x, y = map(float, args)
        check(x < y, f"{x} is not below {y}")
    elif cmd == "meta":  # meta CKPT KEY -> value
        print(load(args[0])[1].get(args[1], ""))
    elif cmd == "trainmeta":  # trainmeta CKPT FIELD -> value
        print(json.loads(load(args[0])[1]["train_config"]).get(args[1], ""))
    else:
        return False
    return True


def finish():
    """Print the first failed checks as comments and exit 1 if any failed."""
    for e in errors[:6]:
        print("# " + e)
    if len(errors) > 6:
        print(f"# ... and {len(errors) - 6} more")
    sys.exit(1 if errors else 0)
