"""How much can fusing N2V with BM3D+VST add on single images? (issue 19, a lever measured)

For each of the five FMD confocal pairs: BM3D+VST (our ``bm3d_vst``: the noise model fitted
blindly on the noisy image), N2V trained on that image alone (the default ``TrainConfig`` for
``--steps`` steps, one thread, seed 42; or the models of an earlier run with ``--models``,
``<dir>/<tag with {n} = image name>``), and their convex combination ``N + w (B - N)``
with ``w`` chosen two ways:

* oracle: the best ``w`` on a 0.025 grid against the ground truth (an upper bound on any
  ground-truth-free choice of one weight per image);
* SURE: Stein's unbiased risk estimate with the fitted Poisson-Gaussian variance ``σ²(B)``
  and Monte-Carlo divergences of both denoisers (one extra run of each on ``y + ε σ b``,
  ``b ~ N(0, 1)``, ``ε`` = ``--eps``), minimised in closed form and clipped to [0, 1].

PSNR per ``shared/data/README.md`` (range of GT, float64, no clipping)::

    .venv/bin/python benchmarks/fusion_bound.py --steps 100
    .venv/bin/python benchmarks/fusion_bound.py --models /tmp/pooling/models \\
        --tag A_img_{n}_seed42_steps100      # benchmarks/pooling.py's per-image models

Measured 2026-12-04 on the 2-core box (load 3-7) with ``benchmarks/pooling.py``'s per-image
N2V models (default TrainConfig, 100 steps, seed 42; the second command), PSNR in dB::

    image   bm3d_vst  n2v     oracle fusion (w on BM3D)
    fish    31.680    31.299  31.839 (0.65)
    BPAE_B  35.819    35.408  36.145 (0.60)
    BPAE_G  33.231    31.939  33.297 (0.85)
    BPAE_R  30.721    30.487  30.932 (0.60)
    mice    37.786    36.844  37.903 (0.75)
    mean    33.848    33.195  34.023 (+0.176 over bm3d_vst; 5 of 5 above it)

With the group model of the five images (500 steps, ``A_group_seed42_steps500``) the oracle
fusion adds +0.103 dB (errors correlate 0.82-0.90 with BM3D's). The SURE weight on fish was
0.31 (eps 0.05: 31.681 dB, +0.001) and 0.04 (eps 0.2: 31.354 dB, -0.33): Monte-Carlo
divergence of BM3D is unstable here and the blind noise fit reads the variance ~13 % low on
fish, so SURE does not find the oracle weight. Conclusion: at CPU training budgets, fusing the
network into BM3D+VST cannot reach issue 19's +0.3 dB even with the oracle weight; it is not
the default.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import tifffile
import torch

from denoise.config import NoiseModelConfig, TrainConfig
from denoise.io.ingest import ingest
from denoise.methods.classical import bm3d_vst, import_bm3d
from denoise.methods.n2v import train_n2v
from denoise.metrics.image import psnr
from denoise.models.store import load_model, predict_whole
from denoise.noise.poisson_gaussian import estimate_from_array, predicted_variance

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fmd_confocal_n2f"
IMAGES = ("fish", "BPAE_B", "BPAE_G", "BPAE_R", "mice")


def sure_weight(y, b0, n0, b_eps, n_eps, var, eps_sd, noise) -> float:
    """The SURE-minimising ``w`` of ``n0 + w (b0 - n0)`` (clipped to [0, 1])."""
    div_b = np.mean(var * noise * (b_eps - b0) / eps_sd)
    div_n = np.mean(var * noise * (n_eps - n0) / eps_sd)
    d, r = b0 - n0, n0 - y
    return float(np.clip(-(np.mean(d * r) + div_b - div_n) / np.mean(d * d), 0.0, 1.0))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--models", type=Path, default=None, help="reuse model dirs of an earlier run")
    ap.add_argument("--tag", default="A_img_{n}_seed42_steps100")
    ap.add_argument("--eps", type=float, default=0.05, help="MC perturbation, in noise sd")
    ap.add_argument("--images", nargs="+", default=list(IMAGES))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    bm3d = import_bm3d("bench")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fusion_bound_") as tmp:
        for name in args.images:
            path = DATA / "noisy" / f"{name}.tif"
            y = tifffile.imread(path).astype(np.float64)
            gt = tifffile.imread(DATA / "gt" / f"{name}.tif")
            fit = estimate_from_array(y.astype(np.float32), NoiseModelConfig(), seed=0)
            if args.models:
                model_dir = args.models / args.tag.format(n=name)
            else:
                store = Path(tmp) / f"{name}.ome.zarr"
                ingest(str(path), store)
                model_dir = Path(tmp) / f"n2v_{name}"
                cfg = TrainConfig(epochs=1, steps_per_epoch=args.steps, threads=1)
                train_n2v(store, model_dir, cfg, seed=42, progress=False)
            model, meta = load_model(model_dir)

            def den_b(x: np.ndarray, fit: dict = fit) -> np.ndarray:
                return np.asarray(bm3d_vst(x, fit, bm3d), np.float64)

            def den_n(
                x: np.ndarray, model: torch.nn.Module = model, meta: dict = meta
            ) -> np.ndarray:
                return predict_whole(model, meta, x.astype(np.float32)).astype(np.float64)

            b0, n0 = den_b(y), den_n(y)
            var = np.maximum(predicted_variance(fit, b0), 1e-6)
            noise = np.random.default_rng(0).standard_normal(y.shape)
            eps_sd = args.eps * np.sqrt(var)
            w_sure = sure_weight(
                y, b0, n0, den_b(y + eps_sd * noise), den_n(y + eps_sd * noise), var, eps_sd, noise
            )
            grid = np.linspace(0, 1, 41)
            fused = [psnr(gt, n0 + w * (b0 - n0)) for w in grid]
            i = int(np.argmax(fused))
            row = (psnr(gt, b0), psnr(gt, n0), fused[i], float(grid[i]),
                   psnr(gt, n0 + w_sure * (b0 - n0)), w_sure)  # fmt: skip
            rows.append(row)
            print(f"{name:7s} bm3d_vst {row[0]:.3f}  n2v {row[1]:.3f}  oracle {row[2]:.3f} "
                  f"(w {row[3]:.3f})  SURE {row[4]:.3f} (w {row[5]:.2f})", flush=True)  # fmt: skip
    m = np.mean(np.array(rows), axis=0)
    print(f"mean    bm3d_vst {m[0]:.3f}  n2v {m[1]:.3f}  oracle {m[2]:.3f} ({m[2] - m[0]:+.3f})  "
          f"SURE {m[4]:.3f} ({m[4] - m[0]:+.3f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
