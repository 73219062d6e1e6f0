#!/usr/bin/env python3
"""PyTorch peer of flash's unet-s benchmark (CPU or CUDA, eager or torch.compile).

Builds exactly the unet-s architecture of plugins/models/unet.c (572,449
parameters, asserted), then times on the CPU or the GPU:
  train_step_s  batch B (default 64): forward, MSE loss, backward, Adam step
  nfe_b1_s      batch 1 no-grad forward (one network function evaluation)
  nfe_b64_s     batch B no-grad forward
each the median of repeated runs after warm-up. Prints one JSON line per
batch size and precision mode, with the same fields as `flash bench`.

Usage: python3 tools/bench/unet_torch.py [--threads 2] [--repeats 20]
       python3 tools/bench/unet_torch.py --device cuda --batch 64,256 --modes fp32,tf32 [--compile]
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
    dt = torch.get_default_dtype()
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dt, device=t.device) / half)
    args = t.to(dt)[:, None] * freqs[None, :]
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

    def forward(self, x, emb_act):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb_act)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class UNet(nn.Module):
    """plugins/models/unet.c in PyTorch, with the same parameter names
    (state_dict keys), so weights move between the two unchanged. The
    defaults are unet-s."""

    def __init__(self, in_ch=1, base=32, mult=(1, 2), blocks=1, mid_blocks=2, groups=8, num_classes=10,
                 time_dim=None, emb_dim=None):
        super().__init__()
        self.time_dim = time_dim or 2 * base
        emb_dim = emb_dim or 4 * base
        self.time = nn.ModuleDict({"lin1": nn.Linear(self.time_dim, emb_dim), "lin2": nn.Linear(emb_dim, emb_dim)})
        # index num_classes is the null class of classifier-free guidance
        self.label = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None
        self.conv_in = nn.Conv2d(in_ch, base, 3, padding=1)
        self.down = nn.ModuleList()
        ch = base
        for m in mult:
            cl = base * m
            res = nn.ModuleList()
            for b in range(blocks):
                res.append(ResBlock(ch, cl, emb_dim, groups))
                ch = cl
            self.down.append(nn.ModuleDict({"res": res, "downsample": nn.Conv2d(ch, ch, 3, stride=2, padding=1)}))
        self.mid = nn.ModuleDict({"res": nn.ModuleList([ResBlock(ch, ch, emb_dim, groups) for _ in range(mid_blocks)])})
        up = [None] * len(mult)
        for lvl in reversed(range(len(mult))):
            cl = base * mult[lvl]
            res = nn.ModuleList([ResBlock(ch + cl if b == 0 else cl, cl, emb_dim, groups) for b in range(blocks)])
            up[lvl] = nn.ModuleDict({"upsample": nn.Conv2d(ch, ch, 3, padding=1), "res": res})
            ch = cl
        self.up = nn.ModuleList(up)
        self.out = nn.ModuleDict({"norm": nn.GroupNorm(groups, ch), "conv": nn.Conv2d(ch, in_ch, 3, padding=1)})
        self.groups = groups

    def forward(self, x, t, y):
        emb = self.time["lin2"](F.silu(self.time["lin1"](timestep_embedding(t, self.time_dim))))
        if self.label is not None:
            emb = emb + self.label(y)
        e = F.silu(emb)
        h = self.conv_in(x)
        skips = []
        for level in self.down:
            for blk in level["res"]:
                h = blk(h, e)
            skips.append(h)
            h = level["downsample"](h)
        for blk in self.mid["res"]:
            h = blk(h, e)
        for lvl in reversed(range(len(self.up))):
            h = self.up[lvl]["upsample"](F.interpolate(h, scale_factor=2, mode="nearest"))
            h = torch.cat([h, skips[lvl]], dim=1)
            for blk in self.up[lvl]["res"]:
                h = blk(h, e)
        return self.out["conv"](F.silu(self.out["norm"](h)))


def forward_flops(model, x, t, y):
    """Multiply-adds x 2 of the convolutions and linear layers of one forward."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            total[0] += 2 * out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            total[0] += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(x, t, y)
    for h in handles:
        h.remove()
    return total[0]


def reference(args):
    """Prints the output of a small U-Net with weights and inputs given by
    closed-form formulas; tests/unit/test_unet.c builds the same network in
    flash and checks these numbers (an independent second implementation)."""
    torch.set_default_dtype(torch.float64)
    model = UNet(in_ch=1, base=8, mult=(1, 2), blocks=1, mid_blocks=1, groups=4, num_classes=3)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            h = sum((i + 1) * ord(c) for i, c in enumerate(name)) % 1000 / 100.0
            j = torch.arange(p.numel(), dtype=torch.float64)
            p.copy_((0.2 * torch.sin(0.7 * j + h)).reshape(p.shape))
        x = torch.sin(0.3 * torch.arange(2 * 1 * 8 * 8, dtype=torch.float64)).reshape(2, 1, 8, 8)
        out = model(x, torch.tensor([17.0, 503.0]), torch.tensor([1, 3]))
    flat = out.flatten()
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()),
                      "sum": flat.sum().item(), "sumsq": (flat * flat).sum().item(),
                      "at": {str(i): flat[i].item() for i in (0, 5, 31, 64, 100, 127)}}))


def median_time(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_one(model, step_model, opt, dev, B, args, mode):
    """One JSON record: the training step and the NFEs at batch B, with
    `step_model` (the model itself, or its torch.compile'd wrapper)."""
    if dev.type == "cuda":
        tf32 = mode == "tf32"
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(B, 1, 28, 28, generator=g).to(dev)
    eps = torch.randn(B, 1, 28, 28, generator=g).to(dev)
    t = torch.randint(0, 1000, (B,), generator=g).to(dev)
    y = torch.randint(0, 11, (B,), generator=g).to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # autocast_bf16: PyTorch's own mixed precision on the CPU (convolutions
    # and matrix products in bfloat16, float32 weights and loss), the peer
    # of `flash bench --dtype bf16`
    import contextlib
    amp = (lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16)) if mode == "autocast_bf16" \
        else contextlib.nullcontext

    def train_step():
        opt.zero_grad(set_to_none=False)
        with amp():
            out = step_model(x, t, y)
        loss = F.mse_loss(out.float(), eps)
        loss.backward()
        opt.step()
        sync()

    # the first call compiles (torch.compile): timed apart, as compile_s
    t0 = time.perf_counter()
    model.train()
    train_step()
    model.eval()
    x1, t1, y1 = x[:1].clone(), t[:1].clone(), y[:1].clone()

    def nfe(xx, tt, yy):
        with torch.no_grad(), amp():
            step_model(xx, tt, yy)
        sync()

    nfe(x1, t1, y1)
    nfe(x, t, y)
    first_s = time.perf_counter() - t0
    model.train()
    train_s = median_time(train_step, args.warmup, args.repeats)
    model.eval()
    nfe_b1 = median_time(lambda: nfe(x1, t1, y1), args.warmup * 5, args.repeats * 10)
    nfe_b64 = median_time(lambda: nfe(x, t, y), args.warmup, args.repeats * 2)
    flops_b1 = forward_flops(model, x1, t1, y1)
    suffix = "-tf32" if dev.type == "cuda" and mode == "tf32" else ""
    return {
        "impl": "pytorch-compile" if args.compile else "pytorch",
        "version": torch.__version__,
        "device": args.device + suffix,
        "mode": mode,
        "model": "unet-s",
        "params": UNET_S_PARAMS,
        "threads": torch.get_num_threads(),
        "batch": B,
        "train_step_s": round(train_s, 6),
        "nfe_b1_s": round(nfe_b1, 6),
        "nfe_b64_s": round(nfe_b64, 6),
        "first_calls_s": round(first_s, 3),
        "fwd_gflop_per_sample": round(flops_b1 / 1e9, 6),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", default="64", help="batch size, or several comma-separated (one JSON line each)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", action="store_true", help="print the values tests/unit/test_unet.c checks")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (each timed run ends with a synchronize)")
    ap.add_argument("--tf32", action="store_true",
                    help="on cuda, let cuDNN and cuBLAS use TF32 (PyTorch's default for convolutions); "
                         "off by default, to compare float32 with float32 (the same as --modes tf32)")
    ap.add_argument("--modes", default=None,
                    help="fp32, tf32 (cuda), autocast_bf16 (torch.autocast in bfloat16), several "
                         "comma-separated (one JSON line each): one process, so "
                         "torch.compile compiles each graph once for all of them")
    ap.add_argument("--compile", action="store_true",
                    help="time torch.compile(model) instead of eager mode (the first calls, which "
                         "compile, are reported apart as first_calls_s)")
    args = ap.parse_args()
    if args.reference:
        return reference(args)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = UNet()
    params = sum(p.numel() for p in model.parameters())
    assert params == UNET_S_PARAMS, f"unet-s has {params} parameters, expected {UNET_S_PARAMS}"
    model = model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    if args.compile:
        # one graph per batch size, grad mode and precision: more than the default allows
        # (imported under another name: `import torch._dynamo` here would
        # make `torch` a local of main and break its uses above)
        import torch._dynamo as dynamo
        for limit in ("cache_size_limit", "recompile_limit"):
            if hasattr(dynamo.config, limit):
                setattr(dynamo.config, limit, 64)
    step_model = torch.compile(model, dynamic=False) if args.compile else model
    modes = args.modes.split(",") if args.modes else ["tf32" if args.tf32 else "fp32"]
    for mode in modes:
        for B in (int(b) for b in str(args.batch).split(",")):
            print(json.dumps(bench_one(model, step_model, opt, dev, B, args, mode)), flush=True)


if __name__ == "__main__":
    main()
