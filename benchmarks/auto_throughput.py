"""Prediction throughput of the default (empty ``method`` cell) against plain N2V, same run.

The default (:mod:`denoise.methods.auto`) gives single images and stacks ``bm3d_vst`` up to
``auto_method.large_mpix`` megapixels and ``n2v`` above.  This runs both through the prediction
stage itself (``init_output`` + ``predict_units``: read an OME-Zarr store, tile with halo,
predict, blend, write) on the same ``z, y, x`` stack of FMD confocal ``fish`` planes (512²
uint8, ``--planes`` copies, each with fresh Poisson-Gaussian noise added), ``--threads``
threads; N2V is the default network (depth 2, 32 features) trained for 2 steps only (speed
does not depend on the weights).  Prints output MPix/s of each, the ratio of their prediction
times, and the extrapolation to 1 TB of uint16 pixels (5·10^11 pixels) on this machine,
below and above the size threshold.  ::

    .venv/bin/python benchmarks/auto_throughput.py [--planes 8 --threads 2 --repeats 2]

Measured 2026-12-04 (the defaults: 8 × 512², 2 threads, best of 2; 2-core box at load 1.4-1.9)::

    bm3d_vst  51.3 s  0.041 MPix/s   (6.4 s per 512² plane)
    n2v        3.6 s  0.586 MPix/s
    up to 64 MPix (bm3d_vst): 14.3x N2V's prediction time; 1 TB of uint16 ~3,400 h here
    above 64 MPix (n2v):       1.00x N2V's prediction time; 1 TB of uint16 ~240 h here
    a 64-MPix input with bm3d_vst: 26 min here (scatter spreads it over cluster jobs)

At load 3.7 (another benchmark running): 0.020 vs 0.271 MPix/s, 13.3x. Training N2V (the
``train`` stage, ``train.max_minutes``) comes on top of N2V's figure; ``bm3d_vst`` has none.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import tifffile
import torch
from st_throughput import run_once  # the same timed prediction stage (benchmarks/)

from denoise.config import NoiseModelConfig, PredictConfig, TrainConfig
from denoise.io import omezarr
from denoise.methods.auto import AutoMethodConfig
from denoise.methods.n2v import train_n2v
from denoise.methods.registry import build_predictor
from denoise.noise.poisson_gaussian import estimate_poisson_gaussian

FISH = Path(__file__).resolve().parents[1].parent / "shared/data/fmd_confocal_n2f/noisy/fish.tif"
TB_PIXELS = 5e11  # 1 TB of uint16


def make_store(path: Path, planes: int, seed: int = 0) -> str:
    """``planes`` noisy copies of fish (extra Poisson-Gaussian noise each) as a zyx store."""
    rng = np.random.default_rng(seed)
    fish = tifffile.imread(FISH).astype(np.float32)
    data = np.stack([fish + rng.normal(0, 2, fish.shape).astype(np.float32) for _ in range(planes)])
    arr = omezarr.create_image(path, data.shape, np.float32, "zyx", (1, 512, 512))
    arr[...] = data
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--planes", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="auto_throughput_"))
    try:
        store = make_store(work / "raw.ome.zarr", args.planes)
        noise = estimate_poisson_gaussian(store, NoiseModelConfig(), seed=0)
        cfg = TrainConfig(epochs=1, steps_per_epoch=2, validation_fraction=0.0, dims="2d",
                          threads=args.threads)  # fmt: skip
        train_n2v(store, work / "n2v", cfg, seed=0, progress=False)
        pcfg = PredictConfig(threads=args.threads)
        preds = {
            "bm3d_vst": build_predictor("bm3d_vst", pcfg, 0, noise_model=noise),
            "n2v": build_predictor("n2v", pcfg, 0, model_dir=work / "n2v"),
        }
        mpix = args.planes * 512 * 512 / 1e6
        print(f"{args.planes} x 512 x 512 ({mpix:.2f} MPix), {args.threads} threads, "
              f"load {os.getloadavg()}", flush=True)  # fmt: skip
        best: dict[str, float] = {}
        for rep in range(args.repeats):
            for name, pred in preds.items():
                s = run_once(store, work / f"{name}.ome.zarr", pred, args.threads)["seconds"]
                print(f"  run {rep + 1} {name:9s} {s:7.1f} s  {mpix / s:6.3f} MPix/s", flush=True)
                best[name] = min(best.get(name, s), s)
        rate = {n: mpix / s for n, s in best.items()}
        auto = AutoMethodConfig()
        print(f"bm3d_vst {rate['bm3d_vst']:.3f} MPix/s, n2v {rate['n2v']:.3f} MPix/s (best of "
              f"{args.repeats}); bm3d_vst / n2v prediction time {best['bm3d_vst'] / best['n2v']:.1f}x")  # fmt: skip
        for label, method in (
            (f"up to {auto.large_mpix:g} MPix (default {auto.single_image})", auto.single_image),
            (f"above {auto.large_mpix:g} MPix (default {auto.large_image})", auto.large_image),
        ):
            hours = TB_PIXELS / 1e6 / rate[method] / 3600
            ratio = best[method] / best["n2v"]
            print(f"{label}: {rate[method]:.3f} MPix/s on {args.threads} threads, "
                  f"{ratio:.2f}x N2V's prediction time; 1 TB (uint16) would take {hours:,.0f} h "
                  f"({hours / 24:,.1f} days) here")  # fmt: skip
        print(f"a {auto.large_mpix:g}-MPix input with bm3d_vst: "
              f"{auto.large_mpix / rate['bm3d_vst'] / 60:.1f} min here; load {os.getloadavg()}")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
