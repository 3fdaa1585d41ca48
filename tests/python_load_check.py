#!/usr/bin/env python3
"""Load a safetensors file into PyTorch tensors and print names and shapes.

Usage: python_load_check.py FILE [--expect NAME ...]

Uses safetensors.torch.load_file when the `safetensors` package is
installed; otherwise a small pure-Python reader (json header +
torch.frombuffer) that follows the same format rules, so the check still
shows PyTorch can consume our checkpoints. Exits 0 on success, 1 with a
one-line message on stderr otherwise.
"""
import json
import struct
import sys

import torch

DTYPES = {
    "F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2), "I64": (torch.int64, 8), "I32": (torch.int32, 4),
    "I16": (torch.int16, 2), "I8": (torch.int8, 1), "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1),
}


def load_pure_python(path):
    """Returns (tensors dict, metadata dict); raises ValueError on bad input."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("file shorter than 8 bytes")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > len(raw) - 8:
        raise ValueError(f"header length {hlen} exceeds file size {len(raw)}")
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("__metadata__ values must be strings")
    data = bytearray(raw[8 + hlen:])  # writable, so frombuffer does not warn
    tensors, spans = {}, []
    for name, info in header.items():
        dtype, size = DTYPES[info["dtype"]]
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(x) for x in info["data_offsets"])
        numel = 1
        for d in shape:
            if d < 0:
                raise ValueError(f"{name}: negative dimension")
            numel *= d
        if not 0 <= begin <= end <= len(data) or end - begin != numel * size:
            raise ValueError(f"{name}: bad data_offsets [{begin}, {end}] for {info['dtype']} {shape}")
        spans.append((begin, end, name))
        if numel == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            flat = torch.frombuffer(data, dtype=dtype, count=numel, offset=begin)
            tensors[name] = flat.reshape(shape).clone()
    spans.sort()
    for (b0, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"tensors {n0} and {n1} overlap")
    return tensors, meta


def load(path):
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return "pure-python", *load_pure_python(path)
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    return "safetensors", safetensors.torch.load_file(path), meta


def main(argv):
    if len(argv) < 2:
        print("usage: python_load_check.py FILE [--expect NAME ...]", file=sys.stderr)
        return 2
    path = argv[1]
    expect = argv[3:] if len(argv) > 2 and argv[2] == "--expect" else []
    try:
        how, tensors, meta = load(path)
    except Exception as e:  # any failure to load is the answer we report
        print(f"python_load_check: {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"loaded {path} with {how} (torch {torch.__version__}): {len(tensors)} tensors, {len(meta)} metadata keys")
    for name, t in tensors.items():
        finite = bool(torch.isfinite(t).all()) if t.is_floating_point() else True
        print(f"  {name}: {str(t.dtype).replace('torch.', '')} {list(t.shape)}{'' if finite else ' (non-finite values)'}")
    missing = [n for n in expect if n not in tensors]
    if missing:
        print(f"python_load_check: {path}: missing tensors: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
