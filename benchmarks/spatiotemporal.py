"""``spatiotemporal`` vs per-frame N2V vs ``window_bm3d_vst`` on the synthetic time-lapses.

For every speed of :data:`denoise.synthetic.timelapse.SPEEDS` (one seed, 0 by default) the two
networks are trained on the noisy series itself with the same fixed step budget and network
(``--steps`` × batch 8 of 32² patches, depth-2 U-Net with ``--features`` features, lr 3e-3,
5 % blind spots, one thread, training seed 0); ``spatiotemporal`` and ``window_bm3d_vst`` use
``k = --k`` (2) frames each side; ``window_bm3d_vst`` and per-frame ``bm3d_vst`` get the series'
true noise parameters.  Every
frame is predicted through :func:`denoise.predict.reference.predict_whole_series` (the runner's
windows and reflected ends) and scored by PSNR against the truth over the whole series (range
= max − min of the truth), plus the PSNR of the transients' onset frames (where a window mean
blurs the one-frame rise).  Writes a TSV and prints the table::

    .venv/bin/python benchmarks/spatiotemporal.py --steps 300 --out /tmp/spatiotemporal.tsv

BM3D takes ~2 s per 128² frame on one core (64 frames for the four speeds); ``--no-bm3d`` skips
it.  Training is bit-reproducible on the CPU (same thread count); the seconds are not.

Measured (2026-12-04, seed 0, k = 2, 8 features, 16 × 128 × 128 series; PSNR vs truth in dB,
in parentheses the transients' onset frames only)::

    steps  speed  noisy          spatiotemporal  n2v            window_bm3d_vst
      300  0      26.10 (25.85)  37.35 (36.71)   34.99 (34.57)  36.66 (33.99)
      300  0.5    25.98 (25.73)  36.95 (36.58)   34.85 (34.57)  35.84 (33.62)
      300  2      25.77 (25.56)  34.56 (34.51)   34.59 (34.26)  29.41 (28.63)
      300  5      26.17 (25.57)  34.83 (34.15)   35.03 (34.42)  26.44 (25.21)
     1500  0      26.10 (25.85)  38.53 (38.49)   34.61 (34.24)  36.66 (33.99)
     1500  0.5    25.98 (25.73)  37.68 (37.98)   34.50 (34.24)  35.84 (33.62)
     1500  2      25.77 (25.56)  35.13 (35.01)   34.32 (34.02)  29.41 (28.63)
     1500  5      26.17 (25.57)  34.95 (34.38)   34.72 (34.08)  26.44 (25.21)

One seed only: the spatiotemporal network beats window_bm3d_vst at every speed (by 0.7–1.9 dB
on the static series, by 5–8.5 dB at 2–5 px/frame, where the window mean blurs) and beats
per-frame N2V by 2.1–3.9 dB at 0–0.5 px/frame; at 2–5 px/frame it is level with N2V after 300
steps and 0.2–0.8 dB ahead after 1500 (with this small network the moved neighbours add
little).  N2V at 1500 steps is 0.3–0.4 dB below its 300-step figure here (not investigated).

Three seeds (2026-12-04, seeds 0/1/2, 300 steps, k = 2, 8 features; per-frame ``bm3d_vst``
added; 2-core dev box at load 2-4, one thread), mean PSNR vs truth in dB (onset frames)::

    speed  noisy          spatiotemporal  n2v            bm3d_vst       window_bm3d_vst  ST - best per-frame
    0      26.17 (25.92)  37.32 (35.75)   34.79 (34.45)  34.76 (34.43)  36.65 (33.44)    +2.53
    0.5    26.08 (25.89)  36.61 (35.83)   34.74 (34.54)  34.68 (34.47)  35.73 (33.19)    +1.87
    2      26.10 (25.58)  34.57 (34.17)   34.74 (34.19)  34.71 (34.15)  29.33 (28.15)    -0.16
    5      26.34 (25.90)  34.70 (34.18)   35.01 (34.55)  34.96 (34.49)  26.19 (25.18)    -0.30

Issue 17's margins: met at 0 and 0.5 px/frame (>= +1.5 dB), not at 2 px/frame (+0.5 wanted)
nor at 5 px/frame (>= -0.2 wanted) at this budget; ``window_bm3d_vst`` is below
``spatiotemporal`` at 2 and 5 px/frame and on the onset frames at every speed.

A first look at ``k`` (300 steps, seed 0, ``--no-bm3d``), spatiotemporal at speeds 0/0.5/2/5:
k = 1: 36.50/36.28/34.54/34.90 dB; k = 2: 37.35/36.95/34.56/34.83; k = 3: 37.34/36.65/34.67/34.77
(onset frames: k = 1 35.60/35.42/34.40/34.31, k = 2 36.71/36.58/34.51/34.15, k = 3
35.90/35.70/34.43/34.16).  k = 2 stays the default; one seed and one short budget do not
settle it (more seeds and longer training are needed).

1500 steps, three seeds (2026-12-04, seeds 0/1/2, 8 features, one thread; 2-core box at load
3-6; k = 2 with every method, then ``--k 3 --no-per-frame`` for the k = 3 network and window;
the per-frame rows do not depend on k), mean PSNR vs truth in dB (onset frames)::

    speed  n2v            bm3d_vst       ST k=2         window k=2     ST k=3         window k=3
    0      34.50 (34.18)  34.76 (34.43)  38.52 (38.32)  36.65 (33.44)  38.79 (38.40)  36.32 (32.76)
    0.5    34.39 (34.21)  34.68 (34.47)  37.49 (37.79)  35.73 (33.19)  37.25 (37.10)  34.58 (32.17)
    2      34.42 (33.88)  34.71 (34.15)  35.12 (34.72)  29.33 (28.15)  35.30 (34.88)  27.67 (26.53)
    5      34.70 (34.25)  34.96 (34.49)  34.96 (34.53)  26.19 (25.18)  35.24 (34.83)  25.40 (24.41)

spatiotemporal minus the better per-frame method (bm3d_vst at every speed), issue 17's margins
+1.5 / +1.5 / +0.5 / >= -0.2 dB: k = 3 **+4.04 / +2.57 / +0.59 / +0.28** (per seed at 2 px/frame
+0.63 / +0.57 / +0.56, at 5 px/frame +0.28 / +0.30 / +0.26): met at every speed; k = 2 +3.77 /
+2.81 / +0.41 / -0.00 (2 px/frame short).  ``window_bm3d_vst`` is below ``spatiotemporal`` at 2
and 5 px/frame and on the onset frames at every speed, for both k.  k = 3 is the default
(with the FMD k sweep of ``benchmarks/st_fmd.py``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.config import PredictConfig, TrainConfig
from denoise.io import omezarr
from denoise.methods.n2v import train_n2v
from denoise.methods.registry import build_predictor
from denoise.methods.spatiotemporal import train_spatiotemporal
from denoise.predict.reference import predict_whole_series
from denoise.synthetic.timelapse import SPEEDS, timelapse


def psnr(x: np.ndarray, truth: np.ndarray) -> float:
    truth = truth.astype(np.float64)
    rng = float(truth.max() - truth.min())
    return float(10 * np.log10(rng**2 / np.mean((x.astype(np.float64) - truth) ** 2)))


def _store(path: Path, data: np.ndarray) -> Path:
    arr = omezarr.create_image(path, data.shape, data.dtype, "tyx", (1, *data.shape[1:]))
    arr[...] = data
    return path


def run_one(speed: float, seed: int, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Every method on one series."""
    s = timelapse(speed, seed)
    onsets = sorted({tr["onset"] for tr in s.transients})
    store = _store(work / f"v{speed:g}.ome.zarr", s.noisy)
    cfg = TrainConfig(
        depth=2, features=args.features, patch_size=32, batch_size=8, epochs=1,
        steps_per_epoch=args.steps, learning_rate=3e-3, mask_fraction=0.05, threads=1,
        validation_fraction=0.0,
    )  # fmt: skip
    pcfg = PredictConfig(threads=1)
    preds: dict[str, tuple[Any, float]] = {}
    t0 = time.perf_counter()
    train_spatiotemporal(store, work / f"st{speed:g}", cfg, seed=0, k=args.k, progress=False)
    st = build_predictor(
        "spatiotemporal", pcfg, 0, model_dir=work / f"st{speed:g}", settings={"k": args.k}
    )
    preds["spatiotemporal"] = (st, t0)
    t0 = time.perf_counter()
    if args.per_frame:
        train_n2v(store, work / f"n2v{speed:g}", cfg, seed=0, progress=False)
        preds["n2v"] = (build_predictor("n2v", pcfg, 0, model_dir=work / f"n2v{speed:g}"), t0)
    if args.bm3d:
        wb = build_predictor(
            "window_bm3d_vst", pcfg, 0, noise_model=s.noise_params(), settings={"k": args.k}
        )
        preds["window_bm3d_vst"] = (wb, time.perf_counter())
        if args.per_frame:
            bm = build_predictor("bm3d_vst", pcfg, 0, noise_model=s.noise_params())
            preds["bm3d_vst"] = (bm, time.perf_counter())
    rows = [
        {"speed": speed, "seed": seed, "method": "noisy", "psnr": psnr(s.noisy, s.truth),
         "psnr_onsets": psnr(s.noisy[onsets], s.truth[onsets]), "seconds": 0.0},
    ]  # fmt: skip
    for name, (pred, start) in preds.items():
        out = predict_whole_series(pred, s.noisy)[0]
        rows.append({
            "speed": speed, "seed": seed, "method": name, "psnr": psnr(out, s.truth),
            "psnr_onsets": psnr(out[onsets], s.truth[onsets]),
            "seconds": time.perf_counter() - start,
        })  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("/tmp/spatiotemporal.tsv"))
    p.add_argument("--steps", type=int, default=300, help="training steps of each network")
    p.add_argument("--features", type=int, default=8, help="U-Net features (both networks)")
    p.add_argument("--k", type=int, default=2, help="frames each side (spatiotemporal, window)")
    p.add_argument("--speeds", type=float, nargs="*", default=list(SPEEDS))
    p.add_argument("--seed", type=int, default=0, help="synthetic series seed")
    p.add_argument("--no-bm3d", dest="bm3d", action="store_false", help="skip window_bm3d_vst")
    p.add_argument(
        "--no-per-frame", dest="per_frame", action="store_false",
        help="skip per-frame n2v and bm3d_vst (they do not depend on k: for k sweeps)",
    )  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="spatiotemporal_bench_"))
    rows: list[dict[str, Any]] = []
    try:
        for speed in args.speeds:
            rows += run_one(speed, args.seed, args, work)
            for r in (x for x in rows if x["speed"] == speed):
                print(
                    f"speed {r['speed']:>4g}  {r['method']:<16} PSNR {r['psnr']:6.2f} dB  "
                    f"onsets {r['psnr_onsets']:6.2f} dB  {r['seconds']:6.1f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cols = ["speed", "seed", "method", "psnr", "psnr_onsets", "seconds"]
    lines = ["\t".join(cols)]
    for r in rows:
        lines.append(
            "\t".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols)
        )
    args.out.write_text("\n".join(lines) + "\n")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    print(
        f"\nPSNR vs truth (dB), {args.steps} steps, seed {args.seed}, k = {args.k}; wrote {args.out}"
    )
    print("| speed | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for speed in args.speeds:
        cells = [
            f"{r['psnr']:.2f} ({r['psnr_onsets']:.2f})"
            for m in methods
            for r in rows
            if r["speed"] == speed and r["method"] == m
        ]
        print(f"| {speed:g} | " + " | ".join(cells) + " |")
    print("(in parentheses: the transients' onset frames only)")


if __name__ == "__main__":
    main()
