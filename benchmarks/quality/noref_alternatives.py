"""Which no-reference score ranks denoisers best?  The blind-spot score against SURE and PURE.

The quality benchmark ranks methods with :func:`denoise.metrics.noref.masked_pixel_score`, which
scores the *J-invariant version* of each denoiser (the masked pixel replaced by a neighbour), so
it is exact for blind-spot networks but penalises filters that use the centre pixel (Gaussian,
BM3D).  This script compares it, on real FMD confocal pairs, with two estimators of the MSE of
the denoiser's *actual* output:

* ``sure``: Monte-Carlo SURE for heteroscedastic Gaussian noise,
  ``mean (f(x) − x)² + 2·mean(v ∘ ∂f/∂x)``, the divergence estimated with one perturbation
  ``x + ε·√v·b`` (``b`` white, ``ε`` = 0.05), ``v`` the Poisson-Gaussian variance predicted at a
  σ = 2 px smoothing of ``x`` (one map for every method).  ``sure_corr`` draws ``b`` with the
  noise's spatial correlation measured on ``noisy − GT`` (an oracle: what SURE could do with a
  perfect correlation estimate).
* ``pure``: PURE for scaled Poisson noise (``x = a·p + offset``): the cross term uses
  ``f_i(x − a·e_i)`` (one photon removed), estimated on a stratified ``fraction`` of the pixels
  perturbed at once, averaged over ``draws`` masks.

Methods: Gaussian filters σ ∈ {0.8, 1, 1.4, 2, 3}, BM3D+VST (blind noise fit), our N2V and
DecoNoising trained ``--budget-s`` seconds (stored under ``--work`` and reused).  For every
score, the printed ``agree/pairs`` counts method pairs ordered as the true MSE orders them.

Run on demand (not a test)::

    .venv/bin/python benchmarks/quality/noref_alternatives.py --images fish,BPAE_G,BPAE_R
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parents[1]), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import methods as M  # noqa: E402
from datasets import load  # noqa: E402

from denoise.methods.classical import blind_spot_mask, masked_pixel_score  # noqa: E402
from denoise.metrics.image import psnr  # noqa: E402
from denoise.noise.poisson_gaussian import channel_params, predicted_variance  # noqa: E402

Fn = Callable[[np.ndarray], np.ndarray]


def correlation_kernel(noise: np.ndarray, radius: int = 2) -> np.ndarray:
    """Kernel ``k`` with ``k ⋆ k`` = the normalised autocorrelation of ``noise`` (|lag| ≤ radius)."""
    n = noise - noise.mean()
    var = float(np.mean(n * n))
    size, h, w = 32, *n.shape
    acf = np.zeros((size, size))
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            a = n[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
            b = n[max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)]
            acf[dy % size, dx % size] = float(np.mean(a * b)) / var
    psd = np.clip(np.real(np.fft.fft2(acf)), 0.0, None)
    k = np.fft.fftshift(np.real(np.fft.ifft2(np.sqrt(psd))))
    c = size // 2
    return k[c - radius : c + radius + 1, c - radius : c + radius + 1]


def sure(x: np.ndarray, f: Fn, fx: np.ndarray, var: np.ndarray, seed: int,
         kernel: np.ndarray | None = None, eps: float = 0.05) -> float:  # fmt: skip
    """Monte-Carlo SURE + mean noise variance (estimates ``MSE + mean(var)``)."""
    b = np.random.default_rng(seed).standard_normal(x.shape)
    if kernel is not None:
        b = ndimage.convolve(b, kernel, mode="reflect")
    b *= np.sqrt(np.maximum(var, 1e-6))
    div = float(np.sum(b * (np.asarray(f(x + eps * b), np.float64) - fx))) / eps
    return float(np.mean((fx - x) ** 2) + 2.0 * div / x.size)


def pure(x: np.ndarray, f: Fn, fx: np.ndarray, fit: dict[str, Any], seed: int,
         fraction: float = 1 / 64, draws: int = 4) -> float:  # fmt: skip
    """PURE estimate of the MSE for ``x = gain·Poisson + offset (+ read noise)``."""
    a, off, rv = float(fit["gain"]), float(fit["offset"]), float(fit["read_var"])
    rng = np.random.default_rng(seed)
    total, count = 0.0, 0
    for _ in range(draws):
        yy, xx = blind_spot_mask(x.shape, fraction, rng)
        xm = x.copy()
        xm[yy, xx] -= a
        fm = np.asarray(f(xm), np.float64)[yy, xx]
        xi, fi = x[yy, xx] - off, fx[yy, xx]
        total += float(np.sum(fi**2 - 2.0 * xi * fm + xi**2 - a * xi - rv))
        count += yy.size
    return total / count


def main(argv: list[str] | None = None) -> int:
    """Score every method on every image with every estimator; print agreement counts."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="fish,BPAE_G,BPAE_R")
    ap.add_argument("--budget-s", type=float, default=30.0)
    ap.add_argument("--work", type=Path, default=HERE / "results" / "noref_work")
    args = ap.parse_args(argv)
    ctx = M.Context(work=args.work, budgets={"fmd_confocal": args.budget_s})
    totals: dict[str, list[int]] = {}
    for item in load("fmd_confocal"):
        if item.name not in args.images.split(","):
            continue
        x, gt = item.plane(0).astype(np.float64), item.gt.astype(np.float64)
        fit = channel_params(M.noise_fit(item, ctx))
        kernel = correlation_kernel(x - gt)
        var = predicted_variance(fit, ndimage.gaussian_filter(x, 2.0))
        fns: dict[str, Fn] = {
            f"gauss{s}": (lambda m, s=s: ndimage.gaussian_filter(np.asarray(m, np.float64), s))
            for s in (0.8, 1.0, 1.4, 2.0, 3.0)
        }
        outputs = {name: fn(x) for name, fn in fns.items()}
        for name, runner in (("bm3d_vst", M.run_bm3d_vst), ("n2v", M.RUNNERS["n2v"]),
                             ("deconoising", M.run_deconoising)):  # fmt: skip
            denoised, _, extra = runner(item, ctx)
            fns[name], outputs[name] = extra["score_fns"][0], denoised[0]
        rows = []
        for name, f in fns.items():
            fx = np.asarray(outputs[name], np.float64)
            rows.append({
                "method": name, "psnr": psnr(gt, fx), "mse": float(np.mean((fx - gt) ** 2)),
                "mask": masked_pixel_score(x, f, 1 / 16, 1, 1),
                "sure": sure(x, f, fx, var, 1),
                "sure_corr": sure(x, f, fx, var, 1, kernel),
                "pure": pure(x, f, fx, fit, 1),
            })  # fmt: skip
            print(item.name, {k: round(v, 2) if isinstance(v, float) else v
                              for k, v in rows[-1].items()}, flush=True)  # fmt: skip
        for key in ("mask", "sure", "sure_corr", "pure"):
            pairs = list(itertools.combinations(rows, 2))
            ok = sum((a["mse"] < b["mse"]) == (a[key] < b[key]) for a, b in pairs)
            totals.setdefault(key, [0, 0])
            totals[key][0] += ok
            totals[key][1] += len(pairs)
            print(f"  {item.name} {key}: {ok}/{len(pairs)}")
    for key, (ok, n) in totals.items():
        print(f"all {key}: {ok}/{n} = {100.0 * ok / max(n, 1):.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
