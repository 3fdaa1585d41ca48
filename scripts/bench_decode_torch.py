#!/usr/bin/env python3
"""Sampling-speed benchmark of the PyTorch reference TokenFormer.

The counterpart of `tokenformer bench --sample`: the model of
scripts/tokenformer_ref.py on a preset's shape (vocab 65, random weights),
N streams decoded as one batch from a random prompt, one multinomial draw per
stream and step at temperature 1. Two modes:
  --mode cache     a simple KV cache written here on top of the reference's
                   modules (the same window policy as tokenformer: once the
                   cache holds block_size positions it restarts from the last
                   block_size / 2 tokens);
  --mode nocache   eager, the whole last block_size tokens per character.
The logits row of each step is moved to the host (as tokenformer does), so
every step ends synchronized.

Prints ONE JSON line, e.g.
  {"impl": "torch", "mode": "sample", "cache": true, "preset": "shakespeare",
   "device": "cuda", "batch": 1, "prompt_len": 1, "new_tokens": 500,
   "chars_per_s": 1234.5, "first_char_ms": 3.2, ...}
chars_per_s counts the characters after the first (whose latency, with the
prompt's encoding and the first launches, is first_char_ms), as tokenformer's
bench does; chars_per_s_with_first counts them all.

  $PYTHON scripts/bench_decode_torch.py --preset tiny --device cpu --threads 2
  python scripts/bench_decode_torch.py --preset shakespeare --device cuda --num-samples 64
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenformer_ref as ref  # noqa: E402

VOCAB = 65
PRESETS = {  # the model part of tokenformer's presets (src/core/config.c)
    "tiny": dict(n_layer=4, d_model=128, n_head=4, n_attn=96, n_ffn=384, block_size=64),
    "shakespeare": dict(n_layer=6, d_model=384, n_head=6, n_attn=288, n_ffn=1152, block_size=256),
    "gpt2-124m": dict(n_layer=12, d_model=768, n_head=12, n_attn=576, n_ffn=2304, block_size=1024),
}


class Cache:
    """Per layer: rotated keys and values, (B, H, block_size, hd)."""

    def __init__(self, model, B, device, dtype):
        c = model.cfg
        H, hd, T = c["n_head"], c["d_model"] // c["n_head"], c["block_size"]
        self.k = [torch.zeros(B, H, T, hd, device=device, dtype=dtype) for _ in model.h]
        self.v = [torch.zeros(B, H, T, hd, device=device, dtype=dtype) for _ in model.h]
        self.pos = 0
        self.cos, self.sin = ref.rope_tables(T, model.rot, device, dtype) if model.rot else (None, None)


def attention_cached(attn, x, cache, l):
    """The reference Attention.forward, for T new positions after cache.pos."""
    B, T, d = x.shape
    H = attn.n_head
    hd = d // H
    p0 = cache.pos
    q = attn.q(x).view(B, T, H, hd)
    k = attn.k(x).view(B, T, H, hd)
    v = attn.v(x).view(B, T, H, hd)
    if attn.rot:
        cs = (cache.cos[p0:p0 + T], cache.sin[p0:p0 + T])
        q = ref.apply_rope(q, attn.rot, *cs)
        k = ref.apply_rope(k, attn.rot, *cs)
    cache.k[l][:, :, p0:p0 + T] = k.transpose(1, 2)
    cache.v[l][:, :, p0:p0 + T] = v.transpose(1, 2)
    K, V = cache.k[l][:, :, :p0 + T], cache.v[l][:, :, :p0 + T]
    att = torch.matmul(q.transpose(1, 2), K.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
    if T > 1:  # causal among the new positions
        mask = torch.ones(T, p0 + T, dtype=torch.bool, device=x.device).tril(diagonal=p0)
        att = att.masked_fill(~mask, float("-inf"))
    y = torch.matmul(torch.softmax(att, dim=-1), V).transpose(1, 2).reshape(B, T, d)
    return attn.o(y)


def forward_cached(model, idx, cache):
    """Logits of the last new position of each stream; advances the cache."""
    x = F.embedding(idx, model.wte)
    for l, b in enumerate(model.h):
        a = attention_cached(b.attn, F.layer_norm(x, (b.d,), eps=ref.LAYERNORM_EPS), cache, l)
        h = x + a
        x = h + b.ffn(F.layer_norm(h, (b.d,), eps=ref.LAYERNORM_EPS))
    cache.pos += idx.shape[1]
    return F.linear(model.ln_f(x[:, -1]), model.wte)


def main(argv=None):
    ap = argparse.ArgumentParser(description="PyTorch TokenFormer sampling speed")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--mode", default="cache", choices=["cache", "nocache"])
    ap.add_argument("--num-samples", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    cfg = dict(PRESETS[args.preset], vocab_size=VOCAB, dropout=0.0)
    model = ref.TokenFormer(cfg).to(dev).eval()
    block, B, new = cfg["block_size"], args.num_samples, args.max_new_tokens
    hist = torch.randint(0, VOCAB, (1, args.prompt_len), device=dev).repeat(B, 1)
    gen = torch.Generator(device=dev)
    gen.manual_seed(args.seed)
    cache = Cache(model, B, dev, torch.float32) if args.mode == "cache" else None
    unfed = min(args.prompt_len, block + 1)

    def step():
        nonlocal hist, unfed
        if cache is None:
            logits = model(hist[:, -block:])[0][:, -1]
        else:
            T = unfed
            if cache.pos + T > block:  # restart: a full window for the prompt, half later
                T = min(hist.shape[1], block if cache.pos == 0 else max(block // 2, 1))
                cache.pos = 0
            logits = forward_cached(model, hist[:, -T:], cache)
        probs = torch.softmax(logits.float(), dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen)
        nxt_host = nxt.cpu()  # one transfer per step, as tokenformer's logits row
        hist = torch.cat([hist, nxt], dim=1)
        unfed = 1
        return nxt_host

    with torch.no_grad():
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        t_first = time.perf_counter() - t0
        for _ in range(new - 1):
            step()
        dt = time.perf_counter() - t0
    later, dt_later = (new - 1, dt - t_first) if new > 1 else (new, dt)
    print(json.dumps({
        "impl": "torch", "torch": torch.__version__, "mode": "sample",
        "cache": args.mode == "cache", "preset": args.preset, "device": dev.type,
        "threads": torch.get_num_threads(), "batch": B, "prompt_len": args.prompt_len,
        "new_tokens": new, "block": block,
        # after the first character, as tokenformer's bench reports it; and over all
        "chars_per_s": round(B * later / dt_later, 1),
        "ms_per_step": round(dt_later * 1e3 / later, 3), "first_char_ms": round(t_first * 1e3, 3),
        "chars_per_s_with_first": round(B * new / dt, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
