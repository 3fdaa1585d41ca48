#!/usr/bin/env python3
"""PyTorch reference of the tokenformer model and its baselines (docs/MODEL.md).

Used (a) by tests (scripts/compare_grads.py) to check the C model's loss and
every parameter gradient on identical weights, and (b) by benchmarks
(scripts/bench_torch.py) to compare training throughput against PyTorch.

Conventions match the C program exactly:

  * parameter names (state_dict keys == safetensors names):
      wte                      (V, d)
      h.{l}.attn.{q,k,v,o}.key   (n, d)   .value (n, d)   .tau [1] (buffer)
      h.{l}.ffn.key            (n, d)   .value (n, d)   .tau [1] (buffer)
      ln_f.weight, ln_f.bias   (d)
    Row counts may differ per Pattention (after `grow`): they are taken from
    the tensors when loading.
    arch "transformer" (config "arch"; a config without it is a tokenformer):
      h.{l}.attn.{q,k,v,o}.weight (d, d)   bias-free nn.Linear weights (out, in)
      h.{l}.mlp.up (h, d), h.{l}.mlp.down (h, d)   (down stored transposed: row j
        holds hidden unit j's output weights): GeLU(x up^T) down
      ln_f.weight, ln_f.bias
    arch "transformerpp": as transformer plus h.{l}.mlp.gate (h, d) (SwiGLU:
      (SiLU(x gate^T) * (x up^T)) down), RMSNorms h.{l}.norm1.weight,
      h.{l}.norm2.weight (d) in the blocks and norm_f.weight (d) at the end
      (eps 1e-5, no bias); full RoPE by default.
  * Pattention: A = X K^T, S = pnorm(A), Y = S V, no biases. pnorm modes:
      l2_norm_gelu  S = GeLU(tau * A / sqrt(sum_k A^2 + 1e-6))   (default)
      gelu_l2_norm  S = tau * GeLU(A) / sqrt(sum_k GeLU(A)^2 + 1e-6)
      softmax       S = n * softmax(A)
    GeLU is the exact erf form. tau is NOT trained (a buffer).
  * block: h = x + drop(Attn(LN(x))); x = h + drop(Pffn(LN(h))); the in-block
    LayerNorms have no weights, eps 1e-5; final LN_f has weight and bias;
    logits = LN_f(x) @ wte^T; loss = mean cross-entropy (targets < 0 ignored).
  * adaptation (docs/ADAPTATION.md; config adapter_kv, adapter_sites,
    adapter_pnorm, lora_rank, lora_sites, lora_alpha; baselines only):
      h.{l}.adapter.{attn,mlp}.key/.value (n, d): a Pattention beside the
        attention sub-layer (input norm1(x), added to h) or the MLP (input
        norm2(h), added to the block's output), outside dropout
      <weight>_lora_A (r, cols), <weight>_lora_B (rows, r) of a chosen weight
        (attn.{q,k,v,o}.weight, mlp.{gate,up,down}): the passes use
        W + (alpha / r) B A
  * RoPE (GPT-NeoX style) on the first `rot` dims of each head, rot =
    int(rope_frac * head_dim) rounded down to even; dim i < rot/2 pairs with
    i + rot/2, angle = t * 10000^(-2i/rot); x1' = x1 cos - x2 sin,
    x2' = x2 cos + x1 sin.

CLI:
  tokenformer_ref.py selftest           independent checks of the reference
  tokenformer_ref.py info CKPT          config and parameter counts of a checkpoint
  tokenformer_ref.py loss CKPT [--batch B --seed S]
                                        loss of a checkpoint on random tokens
  tokenformer_ref.py grow-check SMALL GROWN [SMALL GROWN ...]
                                        GROWN (grow --d-model 2x of SMALL) against
                                        the reference map; logits before/after (one
                                        JSON line per pair: torch loads once)
Use Debian's /usr/bin/python3 (it has torch); works with torch >= 1.13.
"""

import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

PNORM_MODES = ("l2_norm_gelu", "gelu_l2_norm", "softmax")
ARCHS = ("tokenformer", "transformer", "transformerpp")
PNORM_EPS = 1e-6
LAYERNORM_EPS = 1e-5
ROPE_BASE = 10000.0
PATT_NAMES = ("q", "k", "v", "o", "ffn")  # order of the C side's rows[] per layer

# Presets (mirror of src/core/config.c; vocab is set from the data, 65 for tiny
# shakespeare). batch_size is the training batch of the preset.
PRESETS = {
    "tiny": dict(n_layer=4, d_model=128, n_head=4, n_attn=96, n_ffn=384, block_size=64,
                 rope_frac=0.25, dropout=0.0, pnorm="l2_norm_gelu", batch_size=12, lr=1e-3),
    "shakespeare": dict(n_layer=6, d_model=384, n_head=6, n_attn=288, n_ffn=1152,
                        block_size=256, rope_frac=0.25, dropout=0.2, pnorm="l2_norm_gelu",
                        batch_size=64, lr=1e-3),
    "gpt2-124m": dict(n_layer=12, d_model=768, n_head=12, n_attn=576, n_ffn=2304,
                      block_size=1024, rope_frac=0.25, dropout=0.0, pnorm="l2_norm_gelu",
                      batch_size=8, lr=6e-4),
}

CONFIG_KEYS = ("arch", "n_layer", "d_model", "n_head", "n_attn", "n_ffn", "block_size", "vocab_size",
               "rope_frac", "dropout", "pnorm")


# ----------------------------------------------------------------------------
# config helpers

def normalize_config(cfg):
    """Return a clean config dict: ints/floats typed, pnorm as its name."""
    c = dict(cfg)
    for k in ("n_layer", "d_model", "n_head", "n_attn", "n_ffn", "block_size", "vocab_size"):
        if k in c and c[k] is not None:
            c[k] = int(c[k])
    c["rope_frac"] = float(c.get("rope_frac", 0.25))
    c["dropout"] = float(c.get("dropout", 0.0))
    p = c.get("pnorm", "l2_norm_gelu")
    if isinstance(p, (int, float)) or (isinstance(p, str) and p.isdigit()):
        p = PNORM_MODES[int(p)]
    if p not in PNORM_MODES:
        raise ValueError("unknown pnorm %r (expected one of %s)" % (p, ", ".join(PNORM_MODES)))
    c["pnorm"] = p
    c["arch"] = c.get("arch") or "tokenformer"
    if c["arch"] not in ARCHS:
        raise ValueError("unknown arch %r (expected one of %s)" % (c["arch"], ", ".join(ARCHS)))
    if "n_ffn" not in c or c["n_ffn"] is None:
        c["n_ffn"] = default_ffn(c)
    if c.get("n_attn") is None:
        c["n_attn"] = c["d_model"]
    if c["d_model"] % c["n_head"] != 0:
        raise ValueError("n_head (%d) must divide d_model (%d)" % (c["n_head"], c["d_model"]))
    return c


def default_ffn(cfg):
    """The FFN width when none is given (as arch_default_ffn in src/core/config.c)."""
    d = cfg["d_model"]
    if cfg.get("arch") == "transformer":
        return 4 * d
    if cfg.get("arch") == "transformerpp":
        return 64 * ((8 * d + 191) // 192)
    return 4 * cfg["n_attn"]


def rot_dims(cfg):
    """Rotary dims per head: rope_frac * head_dim rounded down to even (as
    model_config_rot_dims in src/core/config.c)."""
    hd = cfg["d_model"] // cfg["n_head"]
    rot = int(cfg["rope_frac"] * hd + 1e-4)
    return rot & ~1


def default_rows(cfg):
    attn = cfg["n_attn"] if cfg.get("arch", "tokenformer") == "tokenformer" else cfg["d_model"]
    rows = []
    for _ in range(cfg["n_layer"]):
        rows += [attn] * 4 + [cfg["n_ffn"]]
    return rows


# ----------------------------------------------------------------------------
# the model

def pattention_norm(A, tau, mode):
    """S = pnorm(A) over the last dim (the n parameter tokens)."""
    if mode == "l2_norm_gelu":
        r = torch.sqrt((A * A).sum(-1, keepdim=True) + PNORM_EPS)
        return F.gelu(A * (tau / r))
    if mode == "gelu_l2_norm":
        g = F.gelu(A)
        r = torch.sqrt((g * g).sum(-1, keepdim=True) + PNORM_EPS)
        return g * (tau / r)
    if mode == "softmax":
        return A.shape[-1] * torch.softmax(A, dim=-1)
    raise ValueError("unknown pnorm mode %r" % (mode,))


class Pattention(nn.Module):
    """Token-parameter attention: Y = pnorm(X K^T) V (docs/MODEL.md, Pattention)."""

    def __init__(self, d_in, d_out, n, mode="l2_norm_gelu"):
        super().__init__()
        self.mode = mode
        self.key = nn.Parameter(torch.empty(n, d_in))
        self.value = nn.Parameter(torch.empty(n, d_out))
        self.register_buffer("tau", torch.full((1,), math.sqrt(n)))

    @property
    def n(self):
        return self.key.shape[0]

    def forward(self, x):
        A = F.linear(x, self.key)  # (.., n)
        S = pattention_norm(A, self.tau.to(A.dtype), self.mode)
        return torch.matmul(S, self.value)


class MLP(nn.Module):
    """The baselines' FFN: GeLU(x up^T) down, or SwiGLU (SiLU(x gate^T) *
    (x up^T)) down; up, gate (h, d) and down (h, d) as stored."""

    def __init__(self, d, h, swiglu):
        super().__init__()
        if swiglu:
            self.gate = nn.Parameter(torch.empty(h, d))
        self.up = nn.Parameter(torch.empty(h, d))
        self.down = nn.Parameter(torch.empty(h, d))
        self.swiglu = swiglu

    def forward(self, x):
        u = F.linear(x, weight_of(self, "up"))
        a = F.silu(F.linear(x, weight_of(self, "gate"))) * u if self.swiglu else F.gelu(u)
        return torch.matmul(a, weight_of(self, "down"))


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight (eps 1e-5, weight init 1)."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + LAYERNORM_EPS) * self.weight


def projection(cfg, n):
    """A d -> d projection of the arch: a Pattention with n tokens, or a linear."""
    d = cfg["d_model"]
    if cfg["arch"] == "tokenformer":
        return Pattention(d, d, n, cfg["pnorm"])
    return nn.Linear(d, d, bias=False)


# ----------------------------------------------------------------------------
# adaptation: Tokenformer adapters and LoRA on the baselines

ADAPTER_SITES = ("attn", "mlp")
LORA_SITES = ("q", "k", "v", "o", "mlp")


def _site_list(s, known):
    sites = [x for x in s.split(",") if x] if isinstance(s, str) else list(s or ())
    for x in sites:
        if x not in known:
            raise ValueError("unknown site %r (expected %s)" % (x, ", ".join(known)))
    return sites


def weight_of(module, attr):
    """A weight as the passes use it: W, or W + (alpha/r) B A under LoRA."""
    w = getattr(module, attr)
    a = getattr(module, attr + "_lora_A", None)
    if a is None:
        return w
    return w + module.lora_scale * torch.matmul(getattr(module, attr + "_lora_B"), a)


def project(module, x):
    """A projection of the block: a Pattention, or a linear (with its LoRA)."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight_of(module, "weight"))
    return module(x)


def add_lora(module, attr, rank, scale):
    """LoRA on module.<attr>: A N(0, 1/sqrt(3 cols)) as PEFT draws it, B 0."""
    w = getattr(module, attr)
    rows, cols = w.shape
    module.register_parameter(attr + "_lora_A", nn.Parameter(
        torch.randn(rank, cols, dtype=w.dtype) / math.sqrt(3.0 * cols)))
    module.register_parameter(attr + "_lora_B", nn.Parameter(torch.zeros(rows, rank, dtype=w.dtype)))
    module.lora_scale = scale


def attach_adaptation(block, cfg):
    """The adapters and LoRA that the config asks of a baseline block."""
    d = cfg["d_model"]
    kv = int(cfg.get("adapter_kv") or 0)
    if kv:
        mode = cfg.get("adapter_pnorm", "l2_norm_gelu")
        block.adapter = nn.ModuleDict()
        for site in _site_list(cfg.get("adapter_sites", "mlp"), ADAPTER_SITES):
            p = Pattention(d, d, kv, mode)
            with torch.no_grad():
                p.key.normal_(0.0, 0.02)
                p.value.zero_()  # the function is unchanged at insertion
            block.adapter[site] = p
    r = int(cfg.get("lora_rank") or 0)
    if r:
        scale = float(cfg.get("lora_alpha") or r) / r
        for site in _site_list(cfg.get("lora_sites", "q,v"), LORA_SITES):
            if site == "mlp":
                for attr in ("gate", "up", "down"):
                    if hasattr(block.mlp, attr):
                        add_lora(block.mlp, attr, r, scale)
            else:
                add_lora(getattr(block.attn, site), "weight", r, scale)


def merge_lora(model):
    """W += (alpha/r) B A for every LoRA'd weight, the LoRA tensors removed."""
    with torch.no_grad():
        for mod in model.modules():
            for name in [n for n, _ in mod.named_parameters(recurse=False) if n.endswith("_lora_A")]:
                attr = name[:-len("_lora_A")]
                getattr(mod, attr).copy_(weight_of(mod, attr))
                del mod._parameters[attr + "_lora_A"]
                del mod._parameters[attr + "_lora_B"]
    for k in ("lora_rank", "lora_sites", "lora_alpha"):
        model.cfg.pop(k, None)
    return model


def rope_tables(T, rot, device, dtype):
    """cos, sin of shape (T, rot/2), angles computed in float64."""
    half = rot // 2
    i = torch.arange(half, dtype=torch.float64, device=device)
    inv_freq = ROPE_BASE ** (-2.0 * i / rot)
    t = torch.arange(T, dtype=torch.float64, device=device)
    ang = t[:, None] * inv_freq[None, :]
    return torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)


def apply_rope(x, rot, cos=None, sin=None):
    """x: (B, T, H, hd). Rotates the first `rot` dims of each head (NeoX)."""
    if rot == 0:
        return x
    T = x.shape[1]
    half = rot // 2
    if cos is None:
        cos, sin = rope_tables(T, rot, x.device, x.dtype)
    cos = cos[:T, None, :]  # (T, 1, half), broadcasts over (B, T, H, half)
    sin = sin[:T, None, :]
    x1 = x[..., :half]
    x2 = x[..., half:rot]
    out = [x1 * cos - x2 * sin, x2 * cos + x1 * sin]
    if rot < x.shape[-1]:
        out.append(x[..., rot:])
    return torch.cat(out, dim=-1)


_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def causal_attention(q, k, v, use_sdpa):
    """q, k, v: (B, H, T, hd) -> (B, H, T, hd), softmax scaled by 1/sqrt(hd)."""
    if use_sdpa and _HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T, hd = q.shape[-2], q.shape[-1]
    att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = att.masked_fill(~mask, float("-inf"))
    att = torch.softmax(att, dim=-1)
    return torch.matmul(att, v)


class Attention(nn.Module):
    def __init__(self, cfg, rows):
        super().__init__()
        d = cfg["d_model"]
        self.n_head = cfg["n_head"]
        self.rot = rot_dims(cfg)
        self.use_sdpa = False
        self.q = projection(cfg, rows[0])
        self.k = projection(cfg, rows[1])
        self.v = projection(cfg, rows[2])
        self.o = projection(cfg, rows[3])

    def forward(self, x, rope=None):
        B, T, d = x.shape
        H = self.n_head
        hd = d // H
        q = project(self.q, x).view(B, T, H, hd)
        k = project(self.k, x).view(B, T, H, hd)
        v = project(self.v, x).view(B, T, H, hd)
        cos, sin = rope if rope is not None else (None, None)
        q = apply_rope(q, self.rot, cos, sin)
        k = apply_rope(k, self.rot, cos, sin)
        y = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                             self.use_sdpa)
        y = y.transpose(1, 2).reshape(B, T, d)
        return project(self.o, y)


class Block(nn.Module):
    def __init__(self, cfg, rows):
        super().__init__()
        self.d = cfg["d_model"]
        self.dropout = cfg["dropout"]
        self.attn = Attention(cfg, rows[:4])
        if cfg["arch"] == "tokenformer":
            self.ffn = Pattention(self.d, self.d, rows[4], cfg["pnorm"])
        else:
            self.mlp = MLP(self.d, rows[4], cfg["arch"] == "transformerpp")
        if cfg["arch"] == "transformerpp":
            self.norm1 = RMSNorm(self.d)
            self.norm2 = RMSNorm(self.d)

    def norm(self, x, k):
        if hasattr(self, "norm1"):
            return (self.norm1, self.norm2)[k](x)
        return F.layer_norm(x, (self.d,), eps=LAYERNORM_EPS)

    def adapter_out(self, site, xn):
        """The output of the block's adapter at site (0 when it has none)."""
        ad = getattr(self, "adapter", None)
        return ad[site](xn) if ad is not None and site in ad else 0.0

    def forward(self, x, rope=None):
        xn = self.norm(x, 0)
        a = self.attn(xn, rope)
        h = x + F.dropout(a, self.dropout, self.training) + self.adapter_out("attn", xn)
        hn = self.norm(h, 1)
        f = (self.ffn if hasattr(self, "ffn") else self.mlp)(hn)
        return h + F.dropout(f, self.dropout, self.training) + self.adapter_out("mlp", hn)


class TokenFormer(nn.Module):
    """The TokenFormer LM (docs/MODEL.md, TokenFormer LM). cfg: dict with CONFIG_KEYS.
    rows: n per Pattention, n_layer * 5 in the order (q, k, v, o, ffn) per
    layer (as model_create's `rows`), or None for n_attn / n_ffn."""

    def __init__(self, cfg, rows=None):
        super().__init__()
        cfg = normalize_config(cfg)
        self.cfg = cfg
        L = cfg["n_layer"]
        if rows is None:
            rows = default_rows(cfg)
        rows = [int(r) for r in rows]
        if len(rows) != 5 * L:
            raise ValueError("rows must have n_layer*5 = %d entries (got %d)" % (5 * L, len(rows)))
        self.rows = rows
        self.rot = rot_dims(cfg)
        self.wte = nn.Parameter(torch.empty(cfg["vocab_size"], cfg["d_model"]))
        self.h = nn.ModuleList([Block(cfg, rows[5 * l:5 * l + 5]) for l in range(L)])
        if cfg["arch"] == "transformerpp":
            self.norm_f = RMSNorm(cfg["d_model"])
        else:
            self.ln_f = nn.LayerNorm(cfg["d_model"], eps=LAYERNORM_EPS)
        self.init_weights()
        for b in self.h:  # after init_weights, which would redraw them
            attach_adaptation(b, cfg)

    def set_sdpa(self, on):
        """Use F.scaled_dot_product_attention (torch >= 2.0) for attention."""
        for b in self.h:
            b.attn.use_sdpa = bool(on) and _HAS_SDPA

    def pattentions(self):
        """(name, Pattention) in the C side's order (none for the baselines)."""
        out = []
        if self.cfg["arch"] != "tokenformer":
            return out
        for l, b in enumerate(self.h):
            for w in ("q", "k", "v", "o"):
                out.append(("h.%d.attn.%s" % (l, w), getattr(b.attn, w)))
            out.append(("h.%d.ffn" % l, b.ffn))
        return out

    @torch.no_grad()
    def init_weights(self, generator=None):
        """Official init: keys N(0, 0.02); values N(0, std = 2/(L*sqrt(d)));
        wte N(0, 0.02); tau = sqrt(n); ln_f weight 1, bias 0."""
        L, d = self.cfg["n_layer"], self.cfg["d_model"]
        vstd = 2.0 / (L * math.sqrt(d))
        self.wte.normal_(0.0, 0.02, generator=generator)
        if self.cfg["arch"] != "tokenformer":
            # nanoGPT: weights N(0, 0.02), the output projections 0.02 / sqrt(2 L)
            ostd = 0.02 / math.sqrt(2 * L)
            for b in self.h:
                for w in ("q", "k", "v", "o"):
                    getattr(b.attn, w).weight.normal_(0.0, ostd if w == "o" else 0.02,
                                                      generator=generator)
                for name, p in b.mlp.named_parameters():
                    p.normal_(0.0, ostd if name == "down" else 0.02, generator=generator)
                if hasattr(b, "norm1"):
                    b.norm1.weight.fill_(1.0)
                    b.norm2.weight.fill_(1.0)
            if hasattr(self, "norm_f"):
                self.norm_f.weight.fill_(1.0)
            else:
                self.ln_f.weight.fill_(1.0)
                self.ln_f.bias.zero_()
            return
        for _, p in self.pattentions():
            p.key.normal_(0.0, 0.02, generator=generator)
            p.value.normal_(0.0, vstd, generator=generator)
            p.tau.fill_(math.sqrt(p.n))
        self.ln_f.weight.fill_(1.0)
        self.ln_f.bias.zero_()

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = F.embedding(idx, self.wte)
        rope = rope_tables(T, self.rot, x.device, x.dtype) if self.rot else None
        for b in self.h:
            x = b(x, rope)
        x = self.norm_f(x) if hasattr(self, "norm_f") else self.ln_f(x)
        logits = F.linear(x, self.wte)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float()
                                   if logits.dtype in (torch.float16, torch.bfloat16)
                                   else logits.reshape(-1, logits.shape[-1]),
                                   targets.reshape(-1).long(), ignore_index=-1)
        return logits, loss

    def num_params(self, include_embedding=True):
        n = sum(p.numel() for p in self.parameters())
        return n if include_embedding else n - self.wte.numel()


# ----------------------------------------------------------------------------
# safetensors (pure python; uses the `safetensors` package when importable)

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
_ST_NAMES = {v: k for k, v in _ST_DTYPES.items()}

try:  # optional
    import safetensors  # noqa: F401
    from safetensors import safe_open as _st_safe_open
    from safetensors.torch import save_file as _st_save_file
    HAVE_SAFETENSORS = True
except Exception:  # pragma: no cover - depends on the environment
    HAVE_SAFETENSORS = False


def _read_safetensors_py(path):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (hlen,) = struct.unpack("<Q", buf[:8])
    if 8 + hlen > len(buf):
        raise ValueError("%s: header length %d beyond end of file" % (path, hlen))
    header = json.loads(buf[8:8 + hlen].decode("utf-8"))
    data = memoryview(buf)[8 + hlen:]
    meta = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, e in header.items():
        dt = _ST_DTYPES.get(e["dtype"])
        if dt is None:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, e["dtype"]))
        b, end = e["data_offsets"]
        shape = [int(s) for s in e["shape"]]
        if not (0 <= b <= end <= len(data)):
            raise ValueError("%s: tensor %s offsets out of range" % (path, name))
        numel = 1
        for s in shape:
            numel *= s
        esize = torch.empty((), dtype=dt).element_size()
        if numel * esize != end - b:
            raise ValueError("%s: tensor %s size does not match its shape" % (path, name))
        if numel == 0:
            t = torch.empty(shape, dtype=dt)
        else:
            t = torch.frombuffer(bytearray(data[b:end]), dtype=dt).reshape(shape)
        tensors[name] = t
    return tensors, {str(k): str(v) for k, v in meta.items()}


def read_safetensors(path):
    """-> (dict name -> CPU tensor, dict metadata)."""
    if HAVE_SAFETENSORS:
        tensors = {}
        with _st_safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        return tensors, dict(meta)
    return _read_safetensors_py(path)


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> tensor (any device; written as stored dtype)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
    if HAVE_SAFETENSORS:
        _st_save_file(tensors, path, metadata=metadata or None)
        return
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs = []
    off = 0
    for name, t in tensors.items():
        if t.dtype not in _ST_NAMES:
            raise ValueError("tensor %s: unsupported dtype %s" % (name, t.dtype))
        if t.numel():
            raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        else:
            raw = b""
        header[name] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------
# checkpoints

def config_from_metadata(meta):
    if "config" not in meta:
        raise ValueError("no 'config' metadata in file")
    return normalize_config(json.loads(meta["config"]))


def rows_from_tensors(cfg, tensors):
    rows = []
    if cfg.get("arch", "tokenformer") != "tokenformer":
        for l in range(cfg["n_layer"]):
            up = tensors.get("h.%d.mlp.up" % l)
            rows += [cfg["d_model"]] * 4 + [int(up.shape[0]) if up is not None else cfg["n_ffn"]]
        return rows
    for l in range(cfg["n_layer"]):
        for w in PATT_NAMES:
            pre = "h.%d.ffn" % l if w == "ffn" else "h.%d.attn.%s" % (l, w)
            k = tensors.get(pre + ".key")
            rows.append(int(k.shape[0]) if k is not None else
                        (cfg["n_ffn"] if w == "ffn" else cfg["n_attn"]))
    return rows


def model_from_tensors(cfg, tensors, dtype=torch.float32, device="cpu", strict=True):
    """Build a TokenFormer with rows taken from the tensor shapes and load the
    tensors (taus included; a missing tau keeps sqrt(n))."""
    cfg = normalize_config(cfg)
    model = TokenFormer(cfg, rows_from_tensors(cfg, tensors))
    sd = model.state_dict()
    missing = []
    with torch.no_grad():
        for name, dst in sd.items():
            src = tensors.get(name)
            if src is None:
                if not name.endswith(".tau"):
                    missing.append(name)
                continue
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError("tensor %s: shape %s, model expects %s"
                                 % (name, tuple(src.shape), tuple(dst.shape)))
            dst.copy_(src.to(dst.dtype))
    if missing and strict:
        raise ValueError("missing tensors: %s" % ", ".join(missing))
    return model.to(device=device, dtype=dtype)


def load_checkpoint(path, dtype=torch.float32, device="cpu"):
    """-> (cfg dict, TokenFormer) from a C checkpoint (metadata 'config')."""
    tensors, meta = read_safetensors(path)
    cfg = config_from_metadata(meta)
    return cfg, model_from_tensors(cfg, tensors, dtype=dtype, device=device)


def save_checkpoint(path, model, extra_metadata=None):
    """Write model parameters + taus with metadata 'config' (float32)."""
    cfg = {k: model.cfg[k] for k in CONFIG_KEYS}
    meta = {"config": json.dumps(cfg)}
    meta.update(extra_metadata or {})
    tensors = {k: v.float() for k, v in model.state_dict().items()}
    write_safetensors(path, tensors, meta)


# ----------------------------------------------------------------------------
# growth: d_model doubled by tiling (docs/MODEL.md 5b), the map `grow --d-model 2x`
# applies without --noise

def doubled_config(cfg):
    c = dict(cfg)
    c["d_model"] = 2 * cfg["d_model"]
    c["n_head"] = 2 * cfg["n_head"]
    if cfg["arch"] != "tokenformer":
        c["n_ffn"] = 2 * cfg["n_ffn"]
    return c


def double_d_model_tensors(tensors):
    """name -> tensor of the doubled model: the residual stream becomes [x, x].
    Last axes (d) tile; an axis that reads a doubled quantity is halved: keys,
    the baselines' linears and MLP (whose rows tile too: for q, k, v, o they are
    d, for the MLP the hidden units split in two, which down reads); values,
    wte and in-block norm weights tile as they are; the final norm tiles at half
    scale so that the tied head's sum over 2d gives the old logits; tau kept."""
    out = {}
    for name, t in tensors.items():
        if name.endswith(".tau"):
            out[name] = t.clone()
        elif name.startswith("ln_f.") or name.startswith("norm_f."):
            out[name] = torch.cat([t, t]) / 2
        elif name == "wte" or name.endswith(".value") or name.endswith("norm1.weight") \
                or name.endswith("norm2.weight"):
            out[name] = torch.cat([t, t], -1)
        elif name.endswith(".key"):
            out[name] = torch.cat([t, t], 1) / 2
        else:  # attn.{q,k,v,o}.weight, mlp.{gate,up,down}
            out[name] = t.repeat(2, 2) / 2
    return out


def grow_check(small_path, grown_path, batch=4, seed=0):
    """Compare a C `grow --d-model 2x` result with this map and both models'
    logits on random tokens. -> dict of the largest differences."""
    cfg, small = load_checkpoint(small_path)
    tensors, meta = read_safetensors(grown_path)
    gcfg = config_from_metadata(meta)
    res = {"config_ok": all(gcfg[k] == v for k, v in doubled_config(cfg).items()
                            if k in ("d_model", "n_head", "n_ffn", "n_layer"))}
    mapped = double_d_model_tensors(small.state_dict())
    res["map_max_diff"] = max(float((mapped[k] - tensors[k].float()).abs().max())
                              for k in mapped if not k.endswith(".tau"))
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, cfg["vocab_size"], (batch, cfg["block_size"]), generator=g)
    for dtype, key in ((torch.float64, "logits_max_diff_f64"), (torch.float32, "logits_max_diff_f32")):
        a = model_from_tensors(cfg, small.state_dict(), dtype=dtype).eval()
        b = model_from_tensors(gcfg, tensors, dtype=dtype).eval()
        ref = model_from_tensors(doubled_config(cfg), mapped, dtype=dtype).eval()
        with torch.no_grad():
            la, lb, lr = a(x)[0], b(x)[0], ref(x)[0]
        res[key] = float((la - lb).abs().max())
        res[key.replace("logits", "ref_logits")] = float((la - lr).abs().max())
    res["logits_max_abs"] = float(la.abs().max())
    return res


# ----------------------------------------------------------------------------
# self tests (independent of autograd where possible)

def _manual_pattention_backward(X, K, V, tau, mode, dY):
    """The Pattention backward formulas of docs/MODEL.md (Pattention) written out (float64)."""
    A = X @ K.T
    n = A.shape[-1]
    if mode == "l2_norm_gelu":
        r = torch.sqrt((A * A).sum(-1, keepdim=True) + PNORM_EPS)
        u = tau * A / r
        S = 0.5 * u * (1 + torch.erf(u / math.sqrt(2)))
        dS = dY @ V.T
        gp = 0.5 * (1 + torch.erf(u / math.sqrt(2))) + u * torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
        dU = dS * gp
        dA = (tau / r) * (dU - u * (dU * u).sum(-1, keepdim=True) / tau ** 2)
    elif mode == "gelu_l2_norm":
        g = 0.5 * A * (1 + torch.erf(A / math.sqrt(2)))
        r = torch.sqrt((g * g).sum(-1, keepdim=True) + PNORM_EPS)
        S = tau * g / r
        dS = dY @ V.T
        # S = tau g / r: dg = (tau / r) (dS - (S . dS) S / tau^2)
        dg = (tau / r) * (dS - S * (dS * S).sum(-1, keepdim=True) / tau ** 2)
        gp = 0.5 * (1 + torch.erf(A / math.sqrt(2))) + A * torch.exp(-0.5 * A * A) / math.sqrt(2 * math.pi)
        dA = dg * gp
    else:
        p = torch.softmax(A, -1)
        S = n * p
        dS = dY @ V.T
        dA = S * (dS - (dS * p).sum(-1, keepdim=True))
    Y = S @ V
    return Y, dA @ K, dA.T @ X, S.T @ dY


def _rope_direct(x, rot):
    """Per-element loops straight from the convention in include/ops.h."""
    B, T, H, hd = x.shape
    out = x.clone()
    half = rot // 2
    for t in range(T):
        for i in range(half):
            ang = t * ROPE_BASE ** (-2.0 * i / rot)
            c, s = math.cos(ang), math.sin(ang)
            x1 = x[:, t, :, i]
            x2 = x[:, t, :, i + half]
            out[:, t, :, i] = x1 * c - x2 * s
            out[:, t, :, i + half] = x2 * c + x1 * s
    return out


def _attention_direct(q, k, v):
    """(B, T, H, hd) loops over positions; returns (B, T, H, hd)."""
    B, T, H, hd = q.shape
    out = torch.zeros_like(q)
    for t in range(T):
        s = torch.einsum("bhd,bjhd->bhj", q[:, t], k[:, :t + 1]) / math.sqrt(hd)
        p = torch.softmax(s, -1)
        out[:, t] = torch.einsum("bhj,bjhd->bhd", p, v[:, :t + 1])
    return out


def _worst_fd_grad_error(m, idx, tgt, params, h=1e-6):
    """Largest relative gap between autograd and central finite differences
    of the loss, over a sample of every parameter's entries (float64 model)."""
    grads = torch.autograd.grad(m(idx, tgt)[1], params)
    worst = 0.0
    for p, g in zip(params, grads):
        flat = p.data.view(-1)
        for j in range(0, flat.numel(), max(1, flat.numel() // 6)):
            old = flat[j].item()
            flat[j] = old + h
            lp = m(idx, tgt)[1].item()
            flat[j] = old - h
            lm = m(idx, tgt)[1].item()
            flat[j] = old
            fd = (lp - lm) / (2 * h)
            worst = max(worst, abs(fd - g.view(-1)[j].item()) / max(1e-3, abs(fd)))
    return worst


def selftest(verbose=True):
    torch.manual_seed(0)
    dt = torch.float64
    ok = True

    def report(name, err, tol):
        nonlocal ok
        good = err <= tol
        ok &= good
        if verbose:
            print("%s selftest %s (err %.3g)" % ("PASS" if good else "FAIL", name, err))

    # 1. Pattention: manual backward (docs/MODEL.md) vs autograd, and gradcheck.
    for mode in PNORM_MODES:
        N, din, n, dout = 7, 5, 9, 6
        X = torch.randn(N, din, dtype=dt, requires_grad=True)
        K = torch.randn(n, din, dtype=dt, requires_grad=True)
        V = torch.randn(n, dout, dtype=dt, requires_grad=True)
        tau = 1.7
        dY = torch.randn(N, dout, dtype=dt)
        Y = pattention_norm(X @ K.T, torch.tensor([tau], dtype=dt), mode) @ V
        gX, gK, gV = torch.autograd.grad(Y, (X, K, V), dY)
        mY, mX, mK, mV = _manual_pattention_backward(X.detach(), K.detach(), V.detach(), tau,
                                                     mode, dY)
        err = max((Y - mY).abs().max().item(), (gX - mX).abs().max().item(),
                  (gK - mK).abs().max().item(), (gV - mV).abs().max().item())
        report("pattention_manual_backward[%s]" % mode, err, 1e-10)
        f = lambda X_, K_, V_: pattention_norm(X_ @ K_.T, torch.tensor([tau], dtype=dt), mode) @ V_
        g = torch.autograd.gradcheck(f, (X, K, V), eps=1e-6, atol=1e-6, rtol=1e-5,
                                     raise_exception=False)
        report("pattention_gradcheck[%s]" % mode, 0.0 if g else 1.0, 0.0)

    # 2. RoPE vs the direct formula, and its inverse.
    for hd, frac in ((8, 0.25), (8, 1.0), (12, 0.5), (6, 0.4)):
        cfg = dict(d_model=hd * 3, n_head=3, rope_frac=frac)
        rot = rot_dims(cfg)
        x = torch.randn(2, 11, 3, hd, dtype=dt)
        err = (apply_rope(x, rot) - _rope_direct(x, rot)).abs().max().item()
        report("rope[hd=%d,rot=%d]" % (hd, rot), err, 1e-12)
    assert rot_dims(dict(d_model=32, n_head=4, rope_frac=0.25)) == 2
    assert rot_dims(dict(d_model=32, n_head=4, rope_frac=1.0)) == 8
    assert rot_dims(dict(d_model=384, n_head=6, rope_frac=0.25)) == 16
    assert rot_dims(dict(d_model=24, n_head=4, rope_frac=0.5)) == 2

    # 3. attention: matrix form (and SDPA where present) vs loops.
    q, k, v = (torch.randn(2, 9, 3, 4, dtype=dt) for _ in range(3))
    ref = _attention_direct(q, k, v)
    for sd in ((False, True) if _HAS_SDPA else (False,)):
        y = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), sd)
        err = (y.transpose(1, 2) - ref).abs().max().item()
        report("attention[sdpa=%d]" % sd, err, 1e-12)

    # 4. whole model: names, gradcheck of the loss w.r.t. every parameter.
    for mode in PNORM_MODES:
        cfg = dict(n_layer=2, d_model=8, n_head=2, n_attn=5, n_ffn=7, block_size=6,
                   vocab_size=7, rope_frac=1.0, dropout=0.0, pnorm=mode)
        rows = [5, 6, 4, 7, 9, 3, 5, 6, 4, 8]
        m = TokenFormer(cfg, rows).to(dt)
        with torch.no_grad():
            for _, p in m.pattentions():
                p.tau.mul_(1.3)
            m.ln_f.weight.add_(0.1 * torch.randn_like(m.ln_f.weight))
            m.ln_f.bias.add_(0.1 * torch.randn_like(m.ln_f.bias))
            for _, p in m.pattentions():  # bigger keys: exercise the norm
                p.key.mul_(10)
        idx = torch.randint(0, 7, (2, 6))
        tgt = torch.randint(0, 7, (2, 6))
        params = list(m.parameters())
        names = [n for n, _ in m.named_parameters()]

        # central finite differences on a sample of every parameter's entries
        report("model_fd_grads[%s]" % mode, _worst_fd_grad_error(m, idx, tgt, params), 1e-5)
    expect = ["wte"]
    for l in range(2):
        for w in ("q", "k", "v", "o"):
            expect += ["h.%d.attn.%s.key" % (l, w), "h.%d.attn.%s.value" % (l, w)]
        expect += ["h.%d.ffn.key" % l, "h.%d.ffn.value" % l]
    expect += ["ln_f.weight", "ln_f.bias"]
    report("param_names", 0.0 if names == expect else 1.0, 0.0)
    taus = [k for k in m.state_dict() if k.endswith(".tau")]
    report("tau_buffers", 0.0 if len(taus) == 10 and all(
        m.state_dict()[t].shape == (1,) for t in taus) else 1.0, 0.0)

    # 4b. the baselines: finite-difference gradients and parameter names.
    for arch in ("transformer", "transformerpp"):
        cfg = dict(arch=arch, n_layer=2, d_model=8, n_head=2, block_size=6, vocab_size=7,
                   rope_frac=0.5, dropout=0.0, n_ffn=12)
        mb = TokenFormer(cfg).to(dt)
        with torch.no_grad():
            for p_ in mb.parameters():
                p_.add_(0.3 * torch.randn_like(p_))
        idx = torch.randint(0, 7, (2, 6))
        tgt = torch.randint(0, 7, (2, 6))
        report("model_fd_grads[%s]" % arch,
               _worst_fd_grad_error(mb, idx, tgt, list(mb.parameters())), 1e-5)
        want = {"wte"}
        for l in range(2):
            want |= {"h.%d.attn.%s.weight" % (l, w) for w in "qkvo"}
            want |= {"h.%d.mlp.up" % l, "h.%d.mlp.down" % l}
            if arch == "transformerpp":
                want |= {"h.%d.mlp.gate" % l, "h.%d.norm1.weight" % l, "h.%d.norm2.weight" % l}
        want |= {"norm_f.weight"} if arch == "transformerpp" else {"ln_f.weight", "ln_f.bias"}
        got = {n for n, _ in mb.named_parameters()}
        report("param_names[%s]" % arch, 0.0 if got == want else 1.0, 0.0)

    # 4c. adaptation: function kept at insertion, gradients, merge.
    for arch in ("transformer", "transformerpp"):
        base_cfg = dict(arch=arch, n_layer=2, d_model=8, n_head=2, block_size=6, vocab_size=7,
                        rope_frac=0.5, dropout=0.0, n_ffn=12)
        for extra in (dict(adapter_kv=5, adapter_sites="attn,mlp"),
                      dict(lora_rank=2, lora_sites="q,k,v,o,mlp", lora_alpha=3.0)):
            torch.manual_seed(3)
            mb = TokenFormer(base_cfg).to(dt)
            with torch.no_grad():
                for p_ in mb.parameters():
                    p_.add_(0.3 * torch.randn_like(p_))
            ma = TokenFormer(dict(base_cfg, **extra)).to(dt)
            ma.load_state_dict(mb.state_dict(), strict=False)
            idx = torch.randint(0, 7, (2, 6))
            tgt = torch.randint(0, 7, (2, 6))
            same = (mb(idx)[0] - ma(idx)[0]).abs().max().item()
            what = "adapter" if "adapter_kv" in extra else "lora"
            report("adapt_insert_identity[%s %s]" % (arch, what), same, 0.0)
            with torch.no_grad():
                for n_, p_ in ma.named_parameters():
                    if "adapter" in n_ or "lora" in n_:
                        p_.add_(0.3 * torch.randn_like(p_))
            report("adapt_fd_grads[%s %s]" % (arch, what),
                   _worst_fd_grad_error(ma, idx, tgt, list(ma.parameters())), 1e-5)
            if what == "lora":
                before = ma(idx)[0]
                merge_lora(ma)
                left = [n_ for n_, _ in ma.named_parameters() if "lora" in n_]
                err = (before - ma(idx)[0]).abs().max().item()
                report("lora_merge[%s]" % arch, err if not left else 1.0, 1e-12)

    # 5. safetensors round trip (pure-python path) incl. rows after growing.
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.safetensors")
        m32 = m.float()
        save_checkpoint(p, m32)
        t1, meta = _read_safetensors_py(p)
        cfg2, m2 = load_checkpoint(p)
        err = max((a - b).abs().max().item() for a, b in
                  zip(m32.state_dict().values(), m2.state_dict().values()))
        same_rows = m2.rows == rows
        report("safetensors_roundtrip", err if same_rows else 1.0, 0.0)
    return ok


# ----------------------------------------------------------------------------
# CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    sub.add_parser("selftest", help="check the reference against direct formulas")
    pi = sub.add_parser("info", help="print a checkpoint's config and sizes")
    pi.add_argument("ckpt")
    pl = sub.add_parser("loss", help="loss of a checkpoint on random tokens")
    pl.add_argument("ckpt")
    pl.add_argument("--batch", type=int, default=4)
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--device", default="cpu")
    pg = sub.add_parser("grow-check", help="compare a C `grow --d-model 2x` checkpoint with the "
                        "reference map and the logits before/after (JSON)")
    pg.add_argument("pairs", nargs="+", metavar="SMALL GROWN")
    pg.add_argument("--batch", type=int, default=4)
    pg.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.cmd == "grow-check":
        if len(args.pairs) % 2:
            ap.error("grow-check: SMALL GROWN pairs expected, got %d paths" % len(args.pairs))
        for small, grown in zip(args.pairs[::2], args.pairs[1::2]):
            print(json.dumps(grow_check(small, grown, args.batch, args.seed)), flush=True)
        return 0
    if args.cmd == "selftest":
        ok = selftest()
        print("selftest: %s" % ("ok" if ok else "FAILED"))
        return 0 if ok else 1
    if args.cmd == "info":
        cfg, m = load_checkpoint(args.ckpt)
        print(json.dumps(cfg))
        print("rows: %s" % m.rows)
        print("params: %d (%d without embedding)" % (m.num_params(), m.num_params(False)))
        for name, p in m.pattentions():
            print("%-14s n=%-6d tau=%.6g" % (name, p.n, p.tau.item()))
        return 0
    if args.cmd == "loss":
        cfg, m = load_checkpoint(args.ckpt, device=args.device)
        g = torch.Generator().manual_seed(args.seed)
        x = torch.randint(0, cfg["vocab_size"], (args.batch, cfg["block_size"] + 1), generator=g)
        m.eval()
        with torch.no_grad():
            _, loss = m(x[:, :-1].to(args.device), x[:, 1:].to(args.device))
        print("loss %.6f (random tokens; uniform would be %.6f)"
              % (loss.item(), math.log(cfg["vocab_size"])))
        return 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
