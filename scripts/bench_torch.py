#!/usr/bin/env python3
"""Training-throughput benchmark of the PyTorch reference TokenFormer.

Runs the same model as the C program (scripts/tokenformer_ref.py) on a
preset's shape (vocab 65, the preset's B and T, its dropout), with the C
trainer's optimizer settings: AdamW (betas 0.9/0.95, eps 1e-8, weight decay
0.1 on 2-D tensors only; fused on CUDA where torch has it) and global grad-norm
clipping at 1.0. Batches are random tokens made on the device before timing.
The timed region is `--steps` full steps (zero_grad, forward, backward, clip,
update) after `--warmup` untimed ones, bracketed by device synchronization.

Prints ONE JSON line, e.g.
  {"preset": "tiny", "device": "cpu", "mode": "eager", "precision": "fp32",
   "tokens_per_s": 12345.6, "ms_per_step": 62.2, "peak_mem_mb": 512.0,
   "loss": 4.17, "status": "ok", ...}
peak_mem_mb: CUDA max_memory_allocated, or on CPU the process's peak RSS.
If the combination cannot run on this torch (torch.compile before 2.0, bf16
autocast missing, no GPU) it prints a JSON line with "status": "unsupported",
"error": why, and tokens_per_s null, and exits 0; other errors exit 1.

  $PYTHON scripts/bench_torch.py --preset tiny --device cpu --threads 2
  python scripts/bench_torch.py --preset gpt2-124m --device cuda --mode compile --precision bf16
"""

import argparse
import inspect
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenformer_ref as ref  # noqa: E402

VOCAB = 65


def emit(rec):
    print(json.dumps(rec), flush=True)


def peak_rss_mb():
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    except Exception:  # noqa: BLE001
        return None


def make_optimizer(model, lr, wd, device):
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=lr, betas=(0.9, 0.95), eps=1e-8)
    fused = False
    if device.type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        kw["fused"] = True
        fused = True
    return torch.optim.AdamW(groups, **kw), fused


def set_precision(precision, device):
    if device.type == "cuda":
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if hasattr(torch, "set_float32_matmul_precision"):
        torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch TokenFormer training throughput")
    ap.add_argument("--preset", default="tiny", choices=sorted(ref.PRESETS))
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile here)")
    ap.add_argument("--mode", default="eager", choices=["eager", "compile"])
    ap.add_argument("--compile-mode", default=None,
                    help="torch.compile mode (default, reduce-overhead, max-autotune)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--batch", type=int, default=0, help="batch size (default: the preset's)")
    ap.add_argument("--attn", default="auto", choices=["auto", "sdpa", "manual"],
                    help="attention kernel: F.scaled_dot_product_attention (torch >= 2.0) or "
                         "the explicit softmax (auto: sdpa when available)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--arch", default="tokenformer", choices=list(ref.ARCHS))
    args = ap.parse_args(argv)

    p = dict(ref.PRESETS[args.preset])
    B = args.batch or p["batch_size"]
    T = p["block_size"]
    rec = {"arch": args.arch, "preset": args.preset, "device": args.device, "mode": args.mode,
           "precision": args.precision, "tokens_per_s": None, "ms_per_step": None,
           "peak_mem_mb": None, "loss": None, "status": "ok", "batch": B, "block_size": T,
           "torch": torch.__version__}

    def unsupported(why):
        rec["status"] = "unsupported"
        rec["error"] = why
        emit(rec)
        return 0

    if args.steps < 1 or args.warmup < 0 or B < 1:
        print("bench_torch: --steps must be >= 1, --warmup >= 0, --batch >= 1", file=sys.stderr)
        return 1
    try:
        device = torch.device(args.device)
    except Exception as e:  # noqa: BLE001
        print("bench_torch: bad --device %r: %s" % (args.device, e), file=sys.stderr)
        return 1
    if device.type == "cuda" and not torch.cuda.is_available():
        return unsupported("--device cuda but torch sees no GPU")
    if device.type not in ("cpu", "cuda"):
        return unsupported("device %s is not benchmarked (cpu or cuda)" % device.type)
    if args.mode == "compile" and not hasattr(torch, "compile"):
        return unsupported("torch.compile needs torch >= 2.0 (this is torch %s)" % torch.__version__)
    if args.precision == "bf16" and not hasattr(torch, "autocast"):
        return unsupported("bf16 autocast is not available in torch %s" % torch.__version__)
    if args.precision == "tf32" and device.type == "cpu":
        rec["note"] = "tf32 has no effect on CPU (same as fp32)"
    use_sdpa = args.attn == "sdpa" or (args.attn == "auto" and ref._HAS_SDPA)
    if args.attn == "sdpa" and not ref._HAS_SDPA:
        return unsupported("F.scaled_dot_product_attention needs torch >= 2.0")
    rec["attn"] = "sdpa" if use_sdpa else "manual"

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rec["threads"] = torch.get_num_threads() if device.type == "cpu" else None
    torch.manual_seed(args.seed)
    set_precision(args.precision, device)

    cfg = {k: p[k] for k in ("n_layer", "d_model", "n_head", "n_attn", "n_ffn", "block_size",
                             "rope_frac", "dropout", "pnorm")}
    cfg["vocab_size"] = VOCAB
    cfg["arch"] = args.arch
    if args.arch != "tokenformer":  # the arch's own FFN width and (transformerpp) full RoPE
        del cfg["n_ffn"]
        if args.arch == "transformerpp":
            cfg["rope_frac"] = 1.0
    model = ref.TokenFormer(cfg).to(device)
    model.set_sdpa(use_sdpa)
    model.train()
    rec["params"] = model.num_params()
    opt, fused = make_optimizer(model, p["lr"], 0.1, device)
    rec["fused_adamw"] = fused
    params = [q for q in model.parameters() if q.requires_grad]

    fwd = model
    if args.mode == "compile":
        kw = {"mode": args.compile_mode} if args.compile_mode else {}
        fwd = torch.compile(model, **kw)

    g = torch.Generator(device="cpu").manual_seed(args.seed)
    batches = []
    for _ in range(4):
        xy = torch.randint(0, VOCAB, (B, T + 1), generator=g)
        batches.append((xy[:, :-1].contiguous().to(device), xy[:, 1:].contiguous().to(device)))

    if args.precision == "bf16":
        def autocast():
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    else:
        import contextlib

        def autocast():
            return contextlib.nullcontext()

    def step(i):
        x, y = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        with autocast():
            _, loss = fwd(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        rec["gpu"] = torch.cuda.get_device_name(device)
    try:
        t_w = time.perf_counter()
        for i in range(args.warmup):
            step(i)
        sync()
        rec["warmup_s"] = round(time.perf_counter() - t_w, 3)
        t0 = time.perf_counter()
        c0 = time.process_time()
        loss = None
        for i in range(args.steps):
            loss = step(args.warmup + i)
        sync()
        t1 = time.perf_counter()
        c1 = time.process_time()
    except torch.cuda.OutOfMemoryError if hasattr(torch.cuda, "OutOfMemoryError") else MemoryError as e:  # noqa: E501
        rec["status"] = "oom"
        rec["error"] = str(e).splitlines()[0]
        emit(rec)
        return 1
    except RuntimeError as e:
        msg = str(e)
        if args.precision == "bf16" and ("BFloat16" in msg or "bfloat16" in msg):
            return unsupported("bf16 on %s: %s" % (device.type, msg.splitlines()[0]))
        raise

    dt = t1 - t0
    rec["steps"] = args.steps
    rec["warmup"] = args.warmup
    rec["tokens_per_s"] = round(B * T * args.steps / dt, 1)
    rec["ms_per_step"] = round(1000.0 * dt / args.steps, 3)
    # CPU seconds of all the process's threads: unlike the wall clock, other jobs' time is not in it
    rec["cpu_ms_per_step"] = round(1000.0 * (c1 - c0) / args.steps, 3)
    if device.type == "cuda":
        rec["peak_mem_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    else:
        rss = peak_rss_mb()
        rec["peak_mem_mb"] = round(rss, 1) if rss is not None else None
    lv = float(loss.item())
    rec["loss"] = round(lv, 5) if math.isfinite(lv) else None
    emit(rec)
    return 0


if __name__ == "__main__":
    sys.exit(main())
