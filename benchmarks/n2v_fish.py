"""Benchmark: N2V (or N2V2) with the default TrainConfig on FMD confocal ``fish``.

Ingests ``noisy/fish.tif`` into a temporary OME-Zarr store, trains on that single image with
the defaults, denoises it with the whole-image reference predictor and prints the PSNR against
``gt/fish.tif`` (PSNR = 10·log10(range(GT)² / MSE), float64, no clipping), the training time and
the ratio to CAREamics N2V's 30.36 dB (shared/peers.md).  Run on demand, not a test::

    .venv/bin/python benchmarks/n2v_fish.py [--n2v2] [--seconds 120] [--seed 42]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# make a 2-thread torch run ~4x slower than a 1-thread one.  Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

CAREAMICS_N2V_DB = 30.36
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fmd_confocal_n2f"


def psnr(gt: np.ndarray, x: np.ndarray) -> float:
    """PSNR with range(GT) = max - min, float64, no clipping."""
    gt = gt.astype(np.float64)
    x = x.astype(np.float64)
    r = gt.max() - gt.min()
    return float(10 * np.log10(r * r / np.mean((gt - x) ** 2)))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    import tifffile

    from denoise.config import TrainConfig
    from denoise.io.ingest import ingest
    from denoise.methods.n2v import train_n2v
    from denoise.models.store import load_model, predict_whole

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n2v2", action="store_true", help="train N2V2 instead of N2V")
    ap.add_argument(
        "--seconds", type=float, default=None, help="wall-clock training budget (max_minutes × 60)"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data", type=Path, default=DATA, help="folder with noisy/ and gt/")
    ap.add_argument("--image", default="fish", help="image name in noisy/ and gt/ (without .tif)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TrainConfig field (JSON value), e.g. --set epochs=20",
    )
    ap.add_argument("--keep", type=Path, default=None, help="keep the work directory here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    overrides = {}
    for item in args.set:
        k, _, v = item.partition("=")
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    if args.seconds:
        overrides["max_minutes"] = args.seconds / 60.0
    cfg = TrainConfig(**overrides)
    noisy_path = args.data / "noisy" / f"{args.image}.tif"
    gt = tifffile.imread(args.data / "gt" / f"{args.image}.tif")
    noisy = tifffile.imread(noisy_path)

    with tempfile.TemporaryDirectory(prefix="n2v_fish_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        store = work / f"{args.image}.ome.zarr"
        ingest(str(noisy_path), store)
        model_dir = work / ("n2v2" if args.n2v2 else "n2v")
        t0, c0 = time.perf_counter(), time.process_time()
        summary = train_n2v(store, model_dir, cfg, seed=args.seed, n2v2=args.n2v2, progress=False)
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        model, meta = load_model(model_dir)
        t1 = time.perf_counter()
        pred = predict_whole(model, meta, noisy)
        pred_s = time.perf_counter() - t1
    db = psnr(gt, pred)
    result = {
        "method": summary["method"],
        "image": args.image,
        "config": {
            k: v
            for k, v in cfg.model_dump().items()
            if k in overrides or k in ("epochs", "steps_per_epoch")
        },
        "psnr_noisy": round(psnr(gt, noisy), 3),
        "psnr": round(db, 3),
        "ratio_vs_careamics_n2v": round(db / CAREAMICS_N2V_DB, 4),
        "train_seconds": round(train_s, 1),
        # CPU seconds of all threads: on a shared machine wall time is noisy; on an idle
        # 2-core machine the wall time is about train_cpu_seconds / 2 (or / threads used).
        "train_cpu_seconds": round(train_cpu, 1),
        "load_average_1min": round(os.getloadavg()[0], 1),
        "steps_done": summary["steps_done"],
        "steps_per_second": summary["steps_per_second"],
        "stopped": summary["stopped"],
        "final_val_loss": summary["final_val_loss"],
        "predict_seconds": round(pred_s, 2),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
