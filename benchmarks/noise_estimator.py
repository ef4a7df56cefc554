"""Benchmark: accuracy of the Poisson-Gaussian noise estimator.

1. Synthetic data with known noise: the fluorescence-like phantom
   (:func:`denoise.noise.poisson_gaussian.phantom`, dark background, blobs and sharp-edged
   cells) scaled to a peak of ``--photons`` photons, ``x = gain·Poisson(s/gain) + N(0, σ²)``,
   for gain ∈ {0.5, 2, 8} × σ ∈ {2, 10}; ``--seeds`` independent phantoms and noise draws each.
   Prints the mean and worst relative error of the estimated gain and σ.
2. A textured natural image (Set12 ``08``, 2–200 photons): gain error (σ is not identifiable
   without dark pixels, printed for information).
3. Real FMD confocal pairs: the blind estimate against the line fitted to the noisy−GT
   residual variance binned by GT level (that reference includes the GT's own small noise).

Run on demand, not a test::

    .venv/bin/python benchmarks/noise_estimator.py [--size 1024] [--photons 500] [--seeds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _residual_line(noisy: np.ndarray, gt: np.ndarray, n_bins: int = 10) -> tuple[float, float]:
    """Gain and intercept of the noisy−GT residual variance against the GT level."""
    g = gt.astype(np.float64).ravel()
    r = noisy.astype(np.float64).ravel() - g
    order = np.argsort(g, kind="stable")
    parts = np.array_split(order, n_bins)
    m = np.array([g[p].mean() for p in parts])
    v = np.array([r[p].var() for p in parts])
    a, c = np.linalg.lstsq(np.stack([m, np.ones_like(m)], 1), v, rcond=None)[0]
    return float(a), float(c)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    from denoise.config import NoiseModelConfig
    from denoise.noise.poisson_gaussian import estimate_from_array, phantom, simulate

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=int, default=1024, help="phantom edge (pixels)")
    ap.add_argument("--photons", type=float, default=500.0, help="photons at the bright level")
    ap.add_argument("--seeds", type=int, default=5, help="phantoms / noise draws per setting")
    args = ap.parse_args(argv)
    cfg = NoiseModelConfig()

    print(
        f"## Synthetic phantom {args.size}², peak {args.photons:g} photons, {args.seeds} seeds, "
        f"block {cfg.block}, smooth_quantile {cfg.smooth_quantile}"
    )
    print(
        "| gain | σ | gain err mean (%) | gain err worst (%) | σ err mean (%) | σ err worst (%) | s/fit |"
    )
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for gain in (0.5, 2.0, 8.0):
        for sigma in (2.0, 10.0):
            eg, es, secs = [], [], []
            for seed in range(args.seeds):
                s = gain * args.photons * phantom((args.size, args.size), seed=100 + seed)
                x = simulate(s, gain, sigma, seed=seed)
                t0 = time.perf_counter()
                fit = estimate_from_array(x, cfg, seed=0)
                secs.append(time.perf_counter() - t0)
                eg.append(100 * (fit["gain"] / gain - 1))
                es.append(100 * (np.sqrt(fit["read_var"]) / sigma - 1))
            w = max(np.max(np.abs(eg)), np.max(np.abs(es)))
            worst = max(worst, w)
            print(
                f"| {gain:g} | {sigma:g} | {np.mean(eg):+.1f} | {np.max(np.abs(eg)):.1f} | "
                f"{np.mean(es):+.1f} | {np.max(np.abs(es)):.1f} | {np.mean(secs):.2f} |"
            )
    print(f"worst relative error over all settings and seeds: {worst:.1f} %\n")

    set12 = DATA / "synthetic" / "set12_n2f" / "gt" / "08.tif"
    if set12.exists():
        import tifffile

        img = tifffile.imread(set12).astype(np.float64) / 255.0
        print("## Set12 08 (textured natural image, 2–200 photons)")
        print("| gain | σ | est gain | gain err (%) | est σ |")
        print("|---|---|---|---|---|")
        for gain in (0.5, 2.0, 8.0):
            for sigma in (2.0, 10.0):
                x = simulate(gain * (2 + 198 * img), gain, sigma, seed=1)
                fit = estimate_from_array(x, cfg, seed=0)
                print(
                    f"| {gain:g} | {sigma:g} | {fit['gain']:.3f} | {100 * (fit['gain'] / gain - 1):+.1f} "
                    f"| {np.sqrt(fit['read_var']):.2f} |"
                )
        print()

    fmd = DATA / "fmd_confocal_n2f"
    if fmd.exists():
        import tifffile

        print("## Real FMD confocal: blind estimate vs the noisy−GT residual line")
        print(
            "| image | est gain | est intercept | residual gain | residual intercept | est var / residual var |"
        )
        print("|---|---|---|---|---|---|")
        for name in ("fish", "BPAE_B", "BPAE_G", "BPAE_R", "mice"):
            noisy = tifffile.imread(fmd / "noisy" / f"{name}.tif")
            gt = tifffile.imread(fmd / "gt" / f"{name}.tif")
            fit = estimate_from_array(noisy, cfg, seed=0)
            a, c = _residual_line(noisy, gt)
            res_var = float(np.var(noisy.astype(np.float64) - gt))
            est_var = float(np.mean(fit["gain"] * gt + fit["intercept"]))
            print(
                f"| {name} | {fit['gain']:.2f} | {fit['intercept']:.1f} | {a:.2f} | {c:.1f} | "
                f"{est_var / res_var:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
