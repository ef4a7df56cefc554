"""Benchmark: classical baselines on the five FMD confocal pairs, against shared/peers.md.

For each pair of ``shared/data/fmd_confocal_n2f`` prints the noisy PSNR, the Gaussian filter
with σ swept against the GT (oracle, grid 0.5–3.0 px), the Gaussian filter with σ chosen blindly
(blind-spot masked-pixel score, no GT), BM3D after the generalised Anscombe VST with the noise
model fitted blindly on the noisy image (PSNR and seconds), the mean row and the difference to
the peers.md table.  For speed, a bare ``bm3d.bm3d`` call on the same stabilised image runs right
beside ours (this machine is shared and noisy: compare the ratio, not absolute seconds).
PSNR = 10·log10(range(GT)² / MSE), float64, no clipping.  Run on demand, not a test::

    .venv/bin/python benchmarks/classical_fmd.py [--no-bm3d] [--images fish mice]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fmd_confocal_n2f"
IMAGES = ("fish", "BPAE_B", "BPAE_G", "BPAE_R", "mice")
#: shared/peers.md: noisy, Gaussian oracle (σ), BM3D+VST.
PEERS = {
    "fish": (22.08, 31.14, 1.4, 32.06),
    "BPAE_B": (28.43, 35.70, 1.2, 35.75),
    "BPAE_G": (28.22, 32.56, 0.8, 33.06),
    "BPAE_R": (26.68, 30.93, 0.9, 30.82),
    "mice": (27.44, 36.43, 1.2, 36.18),
}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    import tifffile
    from scipy import ndimage

    from denoise.config import NoiseModelConfig
    from denoise.methods.classical import (
        SIGMA_GRID,
        Bm3dVstPredictor,
        GaussianPredictor,
        anscombe_forward,
    )
    from denoise.metrics.image import psnr
    from denoise.noise.poisson_gaussian import estimate_from_array

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--no-bm3d", action="store_true", help="skip BM3D+VST (about 6–25 s per image)")
    ap.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not DATA.exists():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 1

    cols = [
        "image", "noisy", "gauss oracle (σ)", "gauss blind (σ)", "blind − oracle",
        "BM3D+VST", "s", "bare bm3d s", "gain", "intercept",
        "Δ oracle vs peers", "Δ BM3D+VST vs peers",
    ]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    rows = []
    for name in args.images:
        noisy = tifffile.imread(DATA / "noisy" / f"{name}.tif")
        gt = tifffile.imread(DATA / "gt" / f"{name}.tif")
        x = noisy.astype(np.float32)
        p_noisy = psnr(gt, noisy)
        sweep = {s: psnr(gt, ndimage.gaussian_filter(x.astype(np.float64), s)) for s in SIGMA_GRID}
        s_or = max(sweep, key=sweep.__getitem__)
        blind = GaussianPredictor(None, None, seed=args.seed)
        p_blind = psnr(gt, blind(x, {"c": 0})[0])
        s_blind = blind.chosen["c=0"]["sigma"]
        t0 = time.perf_counter()
        fit = estimate_from_array(noisy, NoiseModelConfig(), seed=args.seed)
        t_fit = time.perf_counter() - t0
        p_bm3d = secs = bare = None
        if not args.no_bm3d:
            pred = Bm3dVstPredictor(fit)
            t0 = time.perf_counter()
            out = pred(x, {"c": 0})[0]
            secs = time.perf_counter() - t0 + t_fit
            p_bm3d = psnr(gt, out)
            import bm3d

            z = anscombe_forward(x, fit["gain"], fit["read_var"], fit["offset"])
            t0 = time.perf_counter()
            bm3d.bm3d(z, 1.0)
            bare = time.perf_counter() - t0
        peer = PEERS[name]
        rows.append((p_noisy, sweep[s_or], p_blind, p_bm3d, secs))
        fmt = lambda v, f="{:.2f}": "–" if v is None else f.format(v)  # noqa: E731
        print(
            "| "
            + " | ".join(
                [
                    name,
                    fmt(p_noisy),
                    f"{sweep[s_or]:.2f} ({s_or})",
                    f"{p_blind:.2f} ({s_blind})",
                    f"{p_blind - sweep[s_or]:+.2f}",
                    fmt(p_bm3d),
                    fmt(secs, "{:.1f}"),
                    fmt(bare, "{:.1f}"),
                    f"{fit['gain']:.2f}",
                    f"{fit['intercept']:.1f}",
                    f"{sweep[s_or] - peer[1]:+.2f}",
                    "–" if p_bm3d is None else f"{p_bm3d - peer[3]:+.2f}",
                ]
            )
            + " |",
            flush=True,
        )
    if len(rows) > 1:
        arr = np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
        mean = np.nanmean(arr, axis=0) if not np.all(np.isnan(arr[:, 3])) else arr.mean(axis=0)
        peers_mean = np.mean([PEERS[n] for n in args.images], axis=0)
        bm3d_txt = "–" if np.isnan(mean[3]) else f"{mean[3]:.2f}"
        d_bm3d = "–" if np.isnan(mean[3]) else f"{mean[3] - peers_mean[3]:+.2f}"
        secs_txt = "–" if np.isnan(mean[4]) else f"{mean[4]:.1f}"
        print(
            f"| mean | {mean[0]:.2f} | {mean[1]:.2f} | {mean[2]:.2f} | {mean[2] - mean[1]:+.2f} | "
            f"{bm3d_txt} | {secs_txt} | | | | {mean[1] - peers_mean[1]:+.2f} | {d_bm3d} |"
        )
        print(
            f"\npeers.md means over these images: noisy {peers_mean[0]:.2f}, Gaussian oracle "
            f"{peers_mean[1]:.2f}, BM3D+VST {peers_mean[3]:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
