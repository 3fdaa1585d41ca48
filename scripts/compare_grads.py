#!/usr/bin/env python3
"""Check the C model's loss and parameter gradients against the PyTorch reference.

Input: one or more "gradient dump" safetensors file written by tests/test_model_torch.c:
  - every parameter under its name (wte, h.{l}.attn.{q,k,v,o}.{key,value,tau},
    h.{l}.ffn.{key,value,tau}, ln_f.weight, ln_f.bias),
  - grad.<name> for each trainable parameter (not tau),
  - batch.tokens, batch.targets: I32 (B, T),
  - loss: F32 [1],
  - metadata "config" (JSON: n_layer, d_model, n_head, n_attn, n_ffn,
    block_size, vocab_size, rope_frac, dropout, pnorm).

The reference is rebuilt in float64 on the same weights (dropout 0), and for
the loss and each gradient the relative error is reported:
    PASS torch_loss (rel X)            |loss_c - loss_ref| / |loss_ref|
    PASS torch_grad <name> (rel X)     ||g_c - g_ref|| / ||g_ref||
(FAIL instead of PASS above --tol). Exit status 1 on any failure, 2 on a
malformed input. Run with a Python that has torch: $PYTHON after
`source scripts/find_python.sh`.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenformer_ref as ref  # noqa: E402


def rel_err(c, r):
    c = c.double().reshape(-1)
    r = r.double().reshape(-1)
    num = (c - r).norm().item()
    den = r.norm().item()
    if den == 0.0:
        return num  # absolute when the reference is exactly zero
    return num / den


def main(argv=None):
    ap = argparse.ArgumentParser(description="compare C gradients with the PyTorch reference")
    ap.add_argument("dumps", nargs="+", metavar="DUMP",
                    help="gradient dump(s) (.safetensors) from test_model_torch")
    ap.add_argument("--tol", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    ap.add_argument("--device", default="cpu", help="device of the reference (cpu, cuda)")
    ap.add_argument("--label", default="", help="prefix for the printed lines")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print max abs errors")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("FAIL torch_device: --device %s but torch sees no GPU" % args.device)
        return 2
    worst = 0
    for path in args.dumps:
        if len(args.dumps) > 1:
            print("# %s" % path, flush=True)
        worst = max(worst, compare_one(path, args))
        sys.stdout.flush()
    return worst


def compare_one(path, args):
    try:
        tensors, meta = ref.read_safetensors(path)
        cfg = ref.config_from_metadata(meta)
    except Exception as e:  # noqa: BLE001
        print("FAIL torch_dump: cannot read %s: %s" % (path, e))
        return 2
    if meta.get("case") and len(args.dumps) > 1:
        print("# case %s" % meta["case"])
    cfg["dropout"] = 0.0
    dev = torch.device(args.device)
    pre = (args.label + " ") if args.label else ""

    try:
        params = {k: v for k, v in tensors.items()
                  if not k.startswith("grad.") and not k.startswith("batch.") and k != "loss"}
        model = ref.model_from_tensors(cfg, params, dtype=torch.float64, device=dev)
        tokens = tensors["batch.tokens"].long().to(dev)
        targets = tensors["batch.targets"].long().to(dev)
        loss_c = tensors["loss"].double().reshape(-1)[0].item()
    except Exception as e:  # noqa: BLE001
        print("FAIL torch_dump: %s" % e)
        return 2
    for k in params:
        if k.endswith(".tau"):
            continue
        if k not in model.state_dict():
            print("FAIL torch_dump: unexpected tensor %s" % k)
            return 2
    if tokens.max().item() >= cfg["vocab_size"] or tokens.min().item() < 0:
        print("FAIL torch_dump: token ids out of range [0, %d)" % cfg["vocab_size"])
        return 2

    model.eval()
    model.zero_grad(set_to_none=True)
    _, loss = model(tokens, targets)
    loss.backward()

    failed = 0
    e = abs(loss_c - loss.item()) / max(abs(loss.item()), 1e-30)
    ok = e <= args.tol
    failed += not ok
    extra = " c=%.9g ref=%.9g" % (loss_c, loss.item()) if (args.verbose or not ok) else ""
    print("%s %storch_loss (rel %.3g)%s" % ("PASS" if ok else "FAIL", pre, e, extra))

    for name, p in model.named_parameters():
        gname = "grad." + name
        if gname not in tensors:
            print("FAIL %storch_grad %s (missing %s in the dump)" % (pre, name, gname))
            failed += 1
            continue
        gc = tensors[gname]
        if tuple(gc.shape) != tuple(p.shape):
            print("FAIL %storch_grad %s (shape %s, expected %s)"
                  % (pre, name, tuple(gc.shape), tuple(p.shape)))
            failed += 1
            continue
        gr = p.grad.detach().cpu()
        e = rel_err(gc, gr)
        ok = e <= args.tol and torch.isfinite(gc).all().item()
        failed += not ok
        extra = ""
        if args.verbose or not ok:
            d = (gc.double() - gr).abs()
            extra = " max_abs %.3g at %s, |g_ref| %.3g, |g_c| %.3g" % (
                d.max().item(), tuple(int(i) for i in torch.nonzero(d == d.max())[0]),
                gr.norm().item(), gc.double().norm().item())
        print("%s %storch_grad %s (rel %.3g)%s" % ("PASS" if ok else "FAIL", pre, name, e, extra))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
