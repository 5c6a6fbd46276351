#!/usr/bin/env python3
"""PyTorch reference of undo's model and training step, for bench/run and launch/gpu-check.

Same architecture as src/model/transformer.cpp (Gemma-style: RMSNorm with 1+w,
rotary positions, GeGLU, tied embeddings), same optimizer (AdamW, grad clip),
bf16 autocast over fp32 weights, same thread count. Prints one JSON line.
Variants: --attention masked (scores, mask, softmax: "eager") or sdpa
(F.scaled_dot_product_attention, with the fused AdamW), --compile (torch.compile
of the model), --device cpu|cuda.
"""
import argparse, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1 + self.weight)).to(x.dtype)


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class Block(nn.Module):
    def __init__(self, d, heads, ff, gelu):
        super().__init__()
        self.heads, self.gelu = heads, gelu
        self.attn_norm, self.mlp_norm = RMSNorm(d), RMSNorm(d)
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False)
        self.down = nn.Linear(ff, d, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, D = x.shape
        h = self.attn_norm(x)
        shape = lambda t: t.view(B, T, self.heads, D // self.heads).transpose(1, 2)
        q, k, v = rope(shape(self.wq(h)), cos, sin), rope(shape(self.wk(h)), cos, sin), shape(self.wv(h))
        if mask is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D // self.heads))
            p = torch.softmax(s.masked_fill(mask, float("-inf")).float(), -1).to(v.dtype)
            o = p @ v
        x = x + self.wo(o.transpose(1, 2).reshape(B, T, D))
        h = self.mlp_norm(x)
        return x + self.down(F.gelu(self.gate(h), approximate=self.gelu) * self.up(h))


class Model(nn.Module):
    def __init__(self, vocab, d, layers, heads, ff, seq, gelu="none", sdpa=False):
        super().__init__()
        self.d, self.sdpa = d, sdpa
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(Block(d, heads, ff, gelu) for _ in range(layers))
        self.final_norm = RMSNorm(d)
        hd = d // heads
        inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.outer(torch.arange(seq, dtype=torch.float64), inv)
        self.register_buffer("cos", ang.cos().float())
        self.register_buffer("sin", ang.sin().float())
        for n, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.normal_(p, 0, 0.02 / math.sqrt(2 * layers) if ("wo" in n or "down" in n) else 0.02)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed(tokens) * math.sqrt(self.d)
        mask = None if self.sdpa else torch.ones(T, T, dtype=torch.bool, device=tokens.device).triu(1)
        for layer in self.layers:
            x = layer(x, self.cos[:T], self.sin[:T], mask)
        return (self.final_norm(x) @ self.embed.weight.t()).float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-ff", type=int, default=768)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--gelu", default="erf", choices=["erf", "tanh"])
    ap.add_argument("--attention", default="masked", choices=["masked", "sdpa"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    sdpa = a.attention == "sdpa"
    model = Model(a.vocab, a.d_model, a.layers, a.heads, a.d_ff, a.seq, "tanh" if a.gelu == "tanh" else "none",
                  sdpa).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0, fused=sdpa)
    forward = torch.compile(model) if a.compile else model
    data = torch.randint(a.vocab, (a.batch, a.seq + 1)).to(a.device)
    bf16 = a.precision == "bf16"
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    def step():
        opt.zero_grad()
        with torch.autocast(a.device, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(data[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), data[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a.warmup):
        step()
    sync()
    t = time.time()
    for _ in range(a.steps):
        step()
    sync()
    dt = time.time() - t
    tps = a.batch * a.seq * a.steps / dt
    impl = "pytorch-" + ("sdpa" if sdpa else "eager") + ("+compile" if a.compile else "")
    print(json.dumps({"impl": impl, "device": a.device, "tokens_per_s": tps, "step_ms": 1000 * dt / a.steps,
                      "params": sum(p.numel() for p in model.parameters()), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
