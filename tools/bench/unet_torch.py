#!/usr/bin/env python3
"""PyTorch CPU peer of flash's unet-s benchmark.

Builds exactly the unet-s architecture of plugins/models/unet.c (572,449
parameters, asserted), then times on the CPU:
  train_step_s  batch 64: forward, MSE loss, backward, Adam step
  nfe_b1_s      batch 1 no-grad forward (one network function evaluation)
  nfe_b64_s     batch 64 no-grad forward
each the median of repeated runs after warm-up. Prints one JSON line with
the same fields as `flash bench`.

Usage: python3 tools/bench/unet_torch.py [--threads 2] [--repeats 20]
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

UNET_S_PARAMS = 572449


def timestep_embedding(t, dim=64, max_period=10000.0):
    # first half sin, second half cos, freq_i = exp(-ln(max_period) i / (dim/2))
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim=128, groups=8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class UNetS(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.time1 = nn.Linear(64, 128)
        self.time2 = nn.Linear(128, 128)
        self.label = nn.Embedding(num_classes + 1, 128)  # index num_classes = null class
        self.conv_in = nn.Conv2d(1, 32, 3, padding=1)
        self.down0 = ResBlock(32, 32)
        self.ds0 = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.down1 = ResBlock(32, 64)
        self.ds1 = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.mid0 = ResBlock(64, 64)
        self.mid1 = ResBlock(64, 64)
        self.us1 = nn.Conv2d(64, 64, 3, padding=1)
        self.up1 = ResBlock(128, 64)
        self.us0 = nn.Conv2d(64, 64, 3, padding=1)
        self.up0 = ResBlock(96, 32)
        self.norm_out = nn.GroupNorm(8, 32)
        self.conv_out = nn.Conv2d(32, 1, 3, padding=1)

    def forward(self, x, t, y):
        emb = self.time2(F.silu(self.time1(timestep_embedding(t)))) + self.label(y)
        h = self.conv_in(x)
        a = self.down0(h, emb)                      # 28x28
        h = self.ds0(a)
        b = self.down1(h, emb)                      # 14x14
        h = self.ds1(b)
        h = self.mid1(self.mid0(h, emb), emb)       # 7x7
        h = self.us1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.up1(torch.cat([h, b], dim=1), emb)
        h = self.us0(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.up0(torch.cat([h, a], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def median_time(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = UNetS()
    params = sum(p.numel() for p in model.parameters())
    assert params == UNET_S_PARAMS, f"unet-s has {params} parameters, expected {UNET_S_PARAMS}"
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)

    B = args.batch
    x = torch.randn(B, 1, 28, 28)
    eps = torch.randn(B, 1, 28, 28)
    t = torch.randint(0, 1000, (B,))
    y = torch.randint(0, 11, (B,))

    def train_step():
        opt.zero_grad(set_to_none=False)
        loss = F.mse_loss(model(x, t, y), eps)
        loss.backward()
        opt.step()

    train_s = median_time(train_step, args.warmup, args.repeats)

    model.eval()
    x1, t1, y1 = x[:1].clone(), t[:1].clone(), y[:1].clone()

    def nfe(xx, tt, yy):
        with torch.no_grad():
            model(xx, tt, yy)

    nfe_b1 = median_time(lambda: nfe(x1, t1, y1), args.warmup * 5, args.repeats * 10)
    nfe_b64 = median_time(lambda: nfe(x, t, y), args.warmup, args.repeats * 2)

    print(json.dumps({
        "impl": "pytorch",
        "version": torch.__version__,
        "model": "unet-s",
        "params": params,
        "threads": torch.get_num_threads(),
        "batch": B,
        "train_step_s": round(train_s, 6),
        "nfe_b1_s": round(nfe_b1, 6),
        "nfe_b64_s": round(nfe_b64, 6),
    }))


if __name__ == "__main__":
    main()
