"""Benchmark: PN2V with three noise models against N2V, BM3D+VST and the Gaussian oracle on FMD.

Honest protocol (per Confocal configuration of ``shared/data/fmd_testset_fm2s``):

* the network is trained on the 4 raw frames of the field of view (a ``t y x`` store) and every
  frame is scored against the field's ground truth (PSNR = 10·log10(range(GT)² / MSE), float64,
  no clipping; the per-config figure is the mean over the 4 frames);
* noise models never see the scored ground truth:
  - ``pn2v_hist``: histogram calibrated on the pair of the SAME configuration in
    ``shared/data/fmd_confocal_n2f`` (one raw frame + its 50-frame average), a different field
    of view of the same microscope setting (GT correlation < 0.25, shared/data/README.md);
  - ``pn2v_gmm_bootstrap``: Gaussian mixture fitted to (raw frames, N2V prediction of them),
    no calibration at all; the N2V model is the ``n2v`` baseline of this run;
  - ``pn2v_pg``: the data-only Poisson-Gaussian estimate of the raw frames;
* every network (N2V and the PN2Vs) gets the same budget: the same number of optimiser steps,
  batch, patch and U-Net (``--steps``; learning rate per method, ``--lr-n2v`` / ``--lr-pn2v``);
  the bootstrapped PN2V also needs the N2V model first, so its total is twice that (stated in
  the table);
* references on the same frames: the Gaussian filter with σ swept against the GT (an oracle)
  and BM3D after the generalised Anscombe VST with the noise fitted blindly on each frame;
* uncertainty: Spearman correlation, over all pixels of the 4 frames, between PN2V's posterior
  standard deviation and |MMSE − GT|.

Writes ``<out>/pn2v_fmd.md`` (table), ``<out>/pn2v_fmd.json`` (every number) and
``<out>/noise_models_<config>.png`` (the noise models against the calibration pairs; the
models themselves are kept in the work directory).  Timings
are noisy on a shared machine: the load average is recorded beside them.  Run on demand::

    .venv/bin/python benchmarks/pn2v_fmd.py [--steps 400] [--samples 64] [--configs Confocal_FISH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/n2v_fish.py

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TESTSET = SHARED / "fmd_testset_fm2s"
CALIBRATION = SHARED / "fmd_confocal_n2f"
#: Configuration -> calibration pair of the same configuration (another field of view).
CONFIGS = {
    "Confocal_BPAE_B": "BPAE_B",
    "Confocal_BPAE_G": "BPAE_G",
    "Confocal_BPAE_R": "BPAE_R",
    "Confocal_FISH": "fish",
    "Confocal_MICE": "mice",
}
NETWORKS = ("n2v", "pn2v_hist", "pn2v_gmm_bootstrap", "pn2v_pg")
REFERENCES = ("gauss_oracle", "bm3d_vst")


def psnr(gt: np.ndarray, x: np.ndarray) -> float:
    """PSNR with range(GT) = max − min, float64, no clipping (shared/data/README.md)."""
    gt = gt.astype(np.float64)
    x = x.astype(np.float64)
    r = gt.max() - gt.min()
    return float(10 * np.log10(r * r / np.mean((gt - x) ** 2)))


def load_config(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The 4 raw frames ``(4, y, x)`` uint8 and the ground truth ``(y, x)`` of a configuration."""
    from PIL import Image

    raw = np.stack([np.array(Image.open(TESTSET / "raw" / f"{name}_{k}.png")) for k in range(1, 5)])
    gt = np.array(Image.open(TESTSET / "gt" / f"{name}.png"))
    return raw, gt


def load_calibration(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Calibration pair (noisy, 50-frame average) of ``fmd_confocal_n2f``."""
    import tifffile

    return (
        tifffile.imread(CALIBRATION / "noisy" / f"{name}.tif"),
        tifffile.imread(CALIBRATION / "gt" / f"{name}.tif"),
    )


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equally shaped arrays (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a.ravel(), b.ravel())[0])


def run_config(name: str, args: argparse.Namespace, work: Path, out: Path) -> dict[str, Any]:
    """Every method on one configuration; returns its results."""
    import torch

    from denoise.config import NoiseModelConfig, PredictConfig, TrainConfig
    from denoise.io.ingest import ingest
    from denoise.methods.n2v import train_n2v
    from denoise.methods.pn2v import PN2VPredictor, PN2VSettings, train_pn2v
    from denoise.models.store import load_model, predict_whole
    from denoise.noise.calibration import fit_from_pairs, fit_noise_model
    from denoise.noise.plot_models import plot_noise_models

    raw, gt = load_config(name)
    res: dict[str, Any] = {"config": name, "noisy": float(np.mean([psnr(gt, f) for f in raw]))}
    store = work / name / "raw.ome.zarr"
    if not store.exists():
        ingest(str(TESTSET / "raw" / f"{name}_*.png"), store, axes="tyx")
    base = dict(
        epochs=args.epochs,
        steps_per_epoch=max(1, args.steps // args.epochs),
        device="cpu",
        threads=args.threads,
    )
    pcfg = PredictConfig(device="cpu", threads=args.threads)
    methods = args.methods
    needs_n2v = any(m in methods for m in ("n2v", "pn2v_gmm_bootstrap"))
    n2v_dir = work / name / "n2v"
    if needs_n2v:
        t0 = time.perf_counter()
        summary = train_n2v(
            store,
            n2v_dir,
            TrainConfig(**base, learning_rate=args.lr_n2v),
            args.seed,
            progress=False,
            fingerprint=f"pn2v_fmd:{name}",
        )
        model, meta = load_model(n2v_dir)
        pred = np.stack([predict_whole(model, meta, f) for f in raw])
        res["n2v"] = {
            "psnr": float(np.mean([psnr(gt, p) for p in pred])),
            "psnr_frames": [psnr(gt, p) for p in pred],
            "train_s": time.perf_counter() - t0,
            "steps": summary["steps_done"],
        }
        log_line(name, "n2v", res["n2v"])
    cal_x, cal_s = load_calibration(CONFIGS[name])
    models: dict[str, Any] = {}
    t0 = time.perf_counter()
    if "pn2v_hist" in methods:
        models["pn2v_hist"] = fit_from_pairs(
            "histogram", cal_x, cal_s, cal_x.dtype, args.seed, align=not args.no_align
        )
    if "pn2v_gmm_bootstrap" in methods:
        models["pn2v_gmm_bootstrap"] = fit_noise_model(
            "gmm_bootstrap", store, NoiseModelConfig(), n2v_model_dir=n2v_dir, seed=args.seed
        )[0]
    if "pn2v_pg" in methods:
        models["pn2v_pg"] = fit_noise_model(
            "poisson_gaussian", store, NoiseModelConfig(), seed=args.seed
        )[0]
    res["noise_model_s"] = time.perf_counter() - t0
    if models:
        for key, m in models.items():
            m.save(work / name / f"noise_model_{key.removeprefix('pn2v_')}.json")
        plot_noise_models(
            [{k.removeprefix("pn2v_"): m for k, m in models.items()}],
            out / f"noise_models_{name}.png",
            pairs=[(cal_x, cal_s)],
            title=f"{name}: noise models vs the calibration pair {CONFIGS[name]} (fmd_confocal_n2f)",
        )
    gt64 = gt.astype(np.float64)
    for key, nm in models.items():
        d = work / name / key
        t0 = time.perf_counter()
        summary = train_pn2v(
            store,
            d,
            TrainConfig(**base, learning_rate=args.lr_pn2v),
            args.seed,
            nm,
            fingerprint=f"pn2v_fmd:{name}:{key}:{digest(nm, args)}",
            progress=False,
            spread=args.spread,
            learn_spread=args.spread != 1.0,
            calibrate=not args.no_calibrate,
            settings=PN2VSettings(
                samples=args.samples, mean_weight=args.mean_weight, posterior=args.posterior
            ),
        )
        train_s = time.perf_counter() - t0
        predictor = PN2VPredictor.from_model_dir(d, pcfg)
        t0 = time.perf_counter()
        outs = np.stack([predictor.predict_image(f.astype(np.float32)) for f in raw])
        pred_s = time.perf_counter() - t0
        err = np.abs(outs[:, 0] - gt64[None])
        res[key] = {
            "psnr": float(np.mean([psnr(gt, o[0]) for o in outs])),
            "psnr_frames": [psnr(gt, o[0]) for o in outs],
            "spearman": spearman(outs[:, 1], err),
            "train_s": train_s,
            "predict_s": pred_s,
            "steps": summary["steps_done"],
            "spread": summary["spread"],
            "calibration": summary.get("calibration"),
            "val_nll": summary["final_val_loss"],
            "posterior": {
                k: v for k, v in (summary.get("posterior") or {}).items() if k != "scores"
            },
        }
        log_line(name, key, res[key])
        torch.set_num_threads(args.threads)
    if "gauss_oracle" in methods:
        from scipy import ndimage

        from denoise.methods.classical import SIGMA_GRID

        ps, sig = [], []
        for f in raw:
            x = f.astype(np.float64)
            scores = {s: psnr(gt, ndimage.gaussian_filter(x, s)) for s in SIGMA_GRID}
            best = max(scores, key=scores.__getitem__)
            ps.append(scores[best])
            sig.append(best)
        res["gauss_oracle"] = {"psnr": float(np.mean(ps)), "psnr_frames": ps, "sigma": sig}
        log_line(name, "gauss_oracle", res["gauss_oracle"])
    if "bm3d_vst" in methods:
        from denoise.config import NoiseModelConfig
        from denoise.methods.classical import Bm3dVstPredictor
        from denoise.noise.poisson_gaussian import estimate_from_array

        ps, t0 = [], time.perf_counter()
        for f in raw:
            fit = estimate_from_array(f, NoiseModelConfig(), seed=args.seed)
            ps.append(psnr(gt, Bm3dVstPredictor(fit)(f.astype(np.float32), {"c": 0})[0]))
        res["bm3d_vst"] = {
            "psnr": float(np.mean(ps)),
            "psnr_frames": ps,
            "seconds": time.perf_counter() - t0,
        }
        log_line(name, "bm3d_vst", res["bm3d_vst"])
    return res


def digest(noise_model: Any, args: argparse.Namespace) -> str:
    """Short hash of the noise model and the PN2V settings (so a reused work dir never resumes
    a model trained with other ones)."""
    import hashlib

    blob = json.dumps(
        [noise_model.to_dict(), args.spread, args.samples, args.no_calibrate], sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def log_line(name: str, method: str, r: dict[str, Any]) -> None:
    extra = "".join(
        f" {k} {r[k]:.3f}" if isinstance(r.get(k), float) else ""
        for k in ("spearman", "train_s", "predict_s", "spread")
    )
    print(
        f"# {name:16s} {method:20s} PSNR {r['psnr']:.2f}{extra}  load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown table: per config and mean, PSNR of every method and the Spearman figures."""
    cols = [m for m in (*NETWORKS, *REFERENCES) if any(m in r for r in results)]
    sp_cols = [m for m in cols if m.startswith("pn2v")]
    head = ["config", "noisy", *cols, *[f"ρ {m.removeprefix('pn2v_')}" for m in sp_cols]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [*results, None]
    for r in rows:
        if r is None:
            vals = ["**mean**", f"{np.mean([x['noisy'] for x in results]):.2f}"]
            for m in cols:
                have = [x[m]["psnr"] for x in results if m in x]
                vals.append(f"**{np.mean(have):.2f}**" if have else "–")
            for m in sp_cols:
                have = [x[m]["spearman"] for x in results if m in x]
                vals.append(f"{np.mean(have):.3f}" if have else "–")
        else:
            vals = [r["config"], f"{r['noisy']:.2f}"]
            vals += [f"{r[m]['psnr']:.2f}" if m in r else "–" for m in cols]
            vals += [f"{r[m]['spearman']:.3f}" if m in r else "–" for m in sp_cols]
        lines.append("| " + " | ".join(vals) + " |")
    if "n2v" in cols:
        lines.append("")
        for m in sp_cols:
            d = [x[m]["psnr"] - x["n2v"]["psnr"] for x in results if m in x and "n2v" in x]
            if d:
                lines.append(
                    f"- {m} − n2v: mean {np.mean(d):+.2f} dB (per config: "
                    + ", ".join(f"{v:+.2f}" for v in d)
                    + ")"
                )
    for m in sp_cols:
        tuned = [(x["config"], x[m].get("posterior")) for x in results if m in x]
        if any(p for _, p in tuned):
            lines.append(
                f"- {m} posterior tuned on the frames (spread × scale, temperature): "
                + ", ".join(
                    f"{c.removeprefix('Confocal_')} {p['scale']:g} / {p['temperature']:g}"
                    for c, p in tuned
                    if p
                )
            )
    return "\n".join(lines)


def footer(ns: argparse.Namespace, timing: str) -> str:
    """Budget and settings line under the table."""
    return (
        f"\n\nBudget: {ns.steps} optimiser steps per network (batch 16, patch 64, U-Net depth 2, "
        f"32 features), K = {ns.samples}, lr N2V {ns.lr_n2v:g} / PN2V {ns.lr_pn2v:g}, initial "
        f"spread {ns.spread:g}, prior calibration {'off' if ns.no_calibrate else 'on'}, "
        f"histogram {'as calibrated' if ns.no_align else 'with E[x|s] = s alignment'}, N2V "
        f"term weight {getattr(ns, 'mean_weight', 0.0):g}, posterior "
        f"{getattr(ns, 'posterior', 'paper')}; the "
        f"bootstrapped PN2V also uses the N2V model (2 × {ns.steps} steps in all).  {timing} "
        "(2 shared cores).\n"
    )


def merge(paths: list[Path], out: Path) -> int:
    """Combine runs made on disjoint sets of configurations (same settings) into one table."""
    runs = [json.loads(p.read_text()) for p in paths]
    settings = runs[0]["settings"]
    for r in runs[1:]:
        diff = {
            k
            for k in settings
            if k not in ("configs", "out") and r["settings"].get(k) != settings.get(k)
        }
        if diff:
            print(f"runs differ in settings {sorted(diff)}; not merging", file=sys.stderr)
            return 1
    by_name = {x["config"]: x for r in runs for x in r["results"]}
    results = [by_name[c] for c in CONFIGS if c in by_name]
    ns = argparse.Namespace(**settings)
    loads = [r["load"] for r in runs]
    text = table(results, ns) + footer(
        ns,
        f"{len(runs)} runs side by side, wall {max(r['wall_s'] for r in runs):.0f} s; load "
        "average (1 min) at start/end of each run: "
        + ", ".join(f"{lo[0][0]:.1f}/{lo[1][0]:.1f}" for lo in loads),
    )
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pn2v_fmd.md").write_text(text)
    (out / "pn2v_fmd.json").write_text(
        json.dumps(
            {
                "settings": settings,
                "runs": [str(p) for p in paths],
                "load": loads,
                "results": results,
            },
            indent=1,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument(
        "--methods", nargs="+", default=[*NETWORKS, *REFERENCES], choices=[*NETWORKS, *REFERENCES]
    )
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps of every network")
    ap.add_argument("--epochs", type=int, default=8, help="epochs the steps are split into")
    ap.add_argument("--samples", type=int, default=64, help="PN2V samples K")
    ap.add_argument(
        "--lr-n2v", type=float, default=4e-4, help="N2V learning rate (project default)"
    )
    ap.add_argument("--lr-pn2v", type=float, default=2e-3)
    ap.add_argument(
        "--spread", type=float, default=0.1, help="PN2V initial sample spread (1: plain)"
    )
    ap.add_argument(
        "--posterior",
        choices=("paper", "frames"),
        default="paper",
        help="PN2V posterior: the paper's MMSE, or spread and temperature tuned by next-frame "
        "MSE on the 4 raw frames (methods.pn2v.posterior; no ground truth)",
    )
    ap.add_argument(
        "--mean-weight",
        type=float,
        default=0.0,
        help="weight of the N2V term on the PN2V samples' centre (0: the paper's loss)",
    )
    ap.add_argument(
        "--no-align",
        action="store_true",
        help="use the calibration's clean image as is (no E[x|s] = s rescaling)",
    )
    ap.add_argument(
        "--no-calibrate", action="store_true", help="skip the post-training prior calibration"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: temporary)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pn2v_fmd")
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        metavar="JSON",
        help="only combine the pn2v_fmd.json of runs split over configs into one table in --out",
    )
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if not TESTSET.exists() or not CALIBRATION.exists():
        print(f"shared data not found under {SHARED}", file=sys.stderr)
        return 1
    import tempfile

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="pn2v_fmd_")
        args.work = Path(tmp.name)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    results = [run_config(name, args, args.work, args.out) for name in args.configs]
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    settings = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "work"
    }
    text = table(results, args) + footer(
        args,
        f"Wall {wall:.0f} s; load average (1 min) {load0[0]:.1f} at start, {load1[0]:.1f} at end",
    )
    print(text)
    (args.out / "pn2v_fmd.md").write_text(text)
    (args.out / "pn2v_fmd.json").write_text(
        json.dumps(
            {"settings": settings, "load": [load0, load1], "wall_s": wall, "results": results},
            indent=1,
        )
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
