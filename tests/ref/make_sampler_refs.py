#!/usr/bin/env python3
"""Reference outputs for flash's samplers, computed with diffusers' own
schedulers driving an exact Gaussian-mixture denoiser written here in numpy
float64 (independently of flash's C code).

Writes tests/data/ref/:
  xT.npy            (64, 2) float32  the fixed starting-noise bank
  labels.npy        (64,)   int64    class labels for the guided case
  <case>.npy        (64, 2) float64  final samples, one file per case below
  acp.npy           (4, 1000) float32 diffusers' alphas_cumprod for linear,
                                      scaled_linear, squaredcos_cap_v2 and
                                      scaled_linear + rescale_betas_zero_snr
  timesteps.npy     (81, 51) float64 diffusers' timesteps per (scheduler,
                                      spacing, N), row = [N, t_0..t_{N-1}, -1 pad]

The schedulers run on a float64 alphas_cumprod computed here (checked against
diffusers' own float32 table to 1e-5). DDIMScheduler steps in float64;
DPMSolverMultistepScheduler and EulerDiscreteScheduler cast the sample to
float32 inside step() ("upcast"), so their references carry float32 rounding
(about 1e-6 relative); a float64 re-derivation of DPM-Solver++(2M) from the
paper, also here, checks that bound.

Usage (made with diffusers 0.31.0, torch 1.13 and numpy 1.24; newer
diffusers need a newer torch):
  python3 -m venv --system-site-packages venv-ref
  venv-ref/bin/pip install diffusers==0.31.0
  venv-ref/bin/python tests/ref/make_sampler_refs.py [OUTDIR]
"""
import os
import sys

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

T = 1000
B0, B1 = 0.00085, 0.012
W = np.array([0.5, 0.3, 0.2])
MU = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
SD = np.array([0.3, 0.5, 0.2])
CLASSES = np.array([0, 1, 2])  # one component per class in the guided case


def acp_scaled_linear():
    betas = np.linspace(B0 ** 0.5, B1 ** 0.5, T, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def gmm_posterior(x, a, s, label=None):
    """Exact E[eps | x_t] and E[x0 | x_t] for the mixture, float64.
    x (N, D); label (N,) selects the components of that class, or None."""
    var = a * a * SD ** 2 + s * s  # (K,)
    diff = x[:, None, :] - a * MU[None, :, :]  # (N, K, D)
    logw = np.log(W)[None, :].repeat(len(x), 0)
    if label is not None:
        mask = CLASSES[None, :] == label[:, None]
        logw = np.where(mask, logw, -np.inf)
    logp = logw - 0.5 * MU.shape[1] * np.log(2 * np.pi * var) - 0.5 * (diff ** 2).sum(-1) / var
    logp -= logp.max(1, keepdims=True)
    r = np.exp(logp)
    r /= r.sum(1, keepdims=True)
    eps = s * (r[:, :, None] * diff / var[None, :, None]).sum(1)
    x0 = (r[:, :, None] * (MU[None] + (a * SD ** 2 / var)[None, :, None] * diff)).sum(1)
    return eps, x0


def model_out(x, t, acp, pred, label=None, w=1.0, n_classes=3):
    a, s = np.sqrt(acp[t]), np.sqrt(1.0 - acp[t])

    def one(lab):
        eps, x0 = gmm_posterior(x, a, s, lab)
        return {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[pred]

    if label is None or w == 1.0:
        return one(label)
    cond, uncond = one(label), one(None)
    return uncond + w * (cond - uncond)


def override_table(sched, acp):
    ref = sched.alphas_cumprod.double().numpy()
    assert np.max(np.abs(ref - acp) / acp) < 1e-5, "float64 table disagrees with diffusers'"
    sched.alphas_cumprod = torch.from_numpy(acp.copy())
    if hasattr(sched, "alpha_t"):  # DPM-Solver keeps derived tables
        sched.alpha_t = torch.sqrt(sched.alphas_cumprod)
        sched.sigma_t = torch.sqrt(1 - sched.alphas_cumprod)
        sched.lambda_t = torch.log(sched.alpha_t) - torch.log(sched.sigma_t)
        sched.sigmas = ((1 - sched.alphas_cumprod) / sched.alphas_cumprod) ** 0.5
    if hasattr(sched, "final_alpha_cumprod") and not sched.config.set_alpha_to_one:
        sched.final_alpha_cumprod = torch.tensor(acp[0], dtype=torch.float64)


def run_vp(sched, xT, acp, pred="epsilon", label=None, w=1.0, steps=25):
    """DDIM and DPM-Solver: the sample is the VP x_t; starts at x_T."""
    sched.set_timesteps(steps)
    x = torch.from_numpy(xT.astype(np.float64))
    for t in sched.timesteps:
        ti = int(t)
        out = model_out(x.numpy(), ti, acp, pred, label, w)
        x = sched.step(torch.from_numpy(out), t, x).prev_sample.double()
    return x.numpy()


def run_euler(sched, xT, acp, steps=25):
    """EulerDiscrete works on x~ = x / alpha. The VP start x_T is the noise,
    so x~ starts at x_T sqrt(sigma~_0^2 + 1) (diffusers' init_noise_sigma for
    leading spacing)."""
    sched.set_timesteps(steps)
    s0 = float(sched.sigmas[0])
    x = torch.from_numpy(xT.astype(np.float64)) * (s0 ** 2 + 1) ** 0.5
    for t in sched.timesteps:
        ti = int(round(float(t)))
        xin = sched.scale_model_input(x, t).double()
        out = model_out(xin.numpy(), ti, acp, "epsilon")
        x = sched.step(torch.from_numpy(out), t, x).prev_sample.double()
    return x.numpy()


def dpmpp2m_numpy(xT, acp, timesteps):
    """DPM-Solver++(2M) in float64 from Lu et al. 2022 (Algorithm 2), first
    order at the first and the final (sigma = 0) step: a check on the
    float32 rounding of diffusers' step()."""
    ab = [(np.sqrt(acp[t]), np.sqrt(1 - acp[t])) for t in timesteps] + [(1.0, 0.0)]
    lam = [np.log(a) - np.log(s) if s > 0 else np.inf for a, s in ab]
    x, prev, hprev = xT.astype(np.float64), None, None
    for i, t in enumerate(timesteps):
        eps = model_out(x, t, acp, "epsilon")
        a, s = ab[i]
        d0 = (x - s * eps) / a
        an, sn = ab[i + 1]
        h = lam[i + 1] - lam[i]
        if prev is None or i == len(timesteps) - 1:
            x = (sn / s) * x - an * np.expm1(-h) * d0
        else:
            r = hprev / h
            x = (sn / s) * x - an * np.expm1(-h) * d0 - 0.5 * an * np.expm1(-h) * (d0 - prev) / r
        prev, hprev = d0, h
    return x


def timestep_table():
    rows = []
    ns = [1, 2, 3, 4, 5, 7, 10, 25, 50]
    for cls in (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler):
        for spacing in ("leading", "trailing", "linspace"):
            for n in ns:
                sc = cls(beta_schedule="scaled_linear", beta_start=B0, beta_end=B1, timestep_spacing=spacing,
                         steps_offset=1 if spacing == "leading" else 0)
                sc.set_timesteps(n)
                ts = sc.timesteps.double().numpy()
                row = np.full(51, -1.0)
                row[0] = n
                row[1:1 + len(ts)] = ts
                rows.append(row)
    return np.array(rows)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "ref")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240607)
    xT = rng.standard_normal((64, 2)).astype(np.float32)
    labels = rng.integers(0, 3, 64).astype(np.int64)
    np.save(os.path.join(out, "xT.npy"), xT)
    np.save(os.path.join(out, "labels.npy"), labels)
    acp = acp_scaled_linear()
    kw = dict(beta_schedule="scaled_linear", beta_start=B0, beta_end=B1, num_train_timesteps=T)

    cases = {}
    for spacing in ("leading", "trailing"):
        off = 1 if spacing == "leading" else 0
        s = DDIMScheduler(**kw, timestep_spacing=spacing, steps_offset=off, set_alpha_to_one=False,
                          clip_sample=False)
        override_table(s, acp)
        cases["ddim_" + spacing] = run_vp(s, xT, acp)
        s = DPMSolverMultistepScheduler(**kw, timestep_spacing=spacing, steps_offset=off,
                                        algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True)
        override_table(s, acp)
        cases["dpmpp_2m_" + spacing] = run_vp(s, xT, acp)
        check = dpmpp2m_numpy(xT, acp, [int(t) for t in s.timesteps])
        rel = np.abs(check - cases["dpmpp_2m_" + spacing]).max() / np.abs(check).max()
        print(f"dpmpp_2m_{spacing}: diffusers vs float64 re-derivation {rel:.2e} (max abs / max)")
        assert rel < 1e-5
        s = EulerDiscreteScheduler(**kw, timestep_spacing=spacing, steps_offset=off)
        override_table(s, acp)
        cases["euler_" + spacing] = run_euler(s, xT, acp)
    s = DDIMScheduler(**kw, timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False,
                      prediction_type="v_prediction")
    override_table(s, acp)
    cases["ddim_leading_v"] = run_vp(s, xT, acp, pred="v_prediction")
    s = DPMSolverMultistepScheduler(**kw, timestep_spacing="trailing", algorithm_type="dpmsolver++",
                                    solver_order=2)
    override_table(s, acp)
    cases["dpmpp_2m_trailing_cfg3"] = run_vp(s, xT, acp, label=labels, w=3.0)
    for name, x in cases.items():
        assert np.all(np.isfinite(x))
        np.save(os.path.join(out, name + ".npy"), x)
        print(f"{name}: mean {x.mean(0)}, std {x.std(0)}")

    tables = []
    for extra in ({"beta_schedule": "linear"}, {"beta_schedule": "scaled_linear", "beta_start": B0, "beta_end": B1},
                  {"beta_schedule": "squaredcos_cap_v2"},
                  {"beta_schedule": "scaled_linear", "beta_start": B0, "beta_end": B1,
                   "rescale_betas_zero_snr": True}):
        tables.append(DDIMScheduler(**extra).alphas_cumprod.numpy().astype(np.float32))
    np.save(os.path.join(out, "acp.npy"), np.stack(tables))
    np.save(os.path.join(out, "timesteps.npy"), timestep_table())


if __name__ == "__main__":
    main()
