"""Benchmark: DecoNoising against N2V at an equal training budget, the classical bars, PSF mismatch.

Sections (run any subset; every finished task is appended to ``results.jsonl`` in ``--out`` and
skipped when the benchmark is run again, so it can be interrupted, sharded and resumed):

* ``fmd``: the five real pairs of ``shared/data/fmd_confocal_n2f``.  Per image: N2V
  (``train_n2v`` without an objective) and DecoNoising (``train_deconoising``, Gaussian PSF
  σ = 1 px as in the paper, λ = 1), both with the same TrainConfig and the same number of
  optimiser steps (``--steps``); the Gaussian filter with σ swept against GT (oracle, grid
  0.5-3.0 px) and BM3D after the generalised Anscombe VST with the noise model fitted blindly
  on the noisy image.  DecoNoising's tiled prediction (tile ``2·halo + 64``) is compared with
  its whole-image reference.
* ``testset``: the five ``Confocal_*`` configurations of ``shared/data/fmd_testset_fm2s``; each
  network trains once on the 4 raw frames (a ``tyx`` stack) and denoises all four; PSNR is the
  mean over the frames (classical methods per frame too).
* ``sweep``: PSF mismatch on synthetic data: Set12 image ``--set12`` (default 01), blurred with a
  Gaussian of σ = 1 px (``scipy.ndimage.gaussian_filter``, reflect borders), plus Gaussian noise
  σ = 25 (0-255 scale, seed 0, no clipping).  DecoNoising with a fixed PSF σ ∈ {0, 0.5, 1, 1.5,
  2} and with a learnable σ started at 2; PSNR against the blurred clean image (the signal s).

Metrics: PSNR = 10·log10(range(GT)² / MSE), float64, no clipping (``denoise.metrics.image.psnr``).
High-frequency energy: the share of the spectral power (Hann-windowed, mean removed) above half
the Nyquist frequency (radial frequency > 0.25 cycles/px), in percent.  Seconds are wall time
on a shared machine: the load average before/after each task is stored beside it.

Run on demand, not a test (``--shard 0/2`` and ``--shard 1/2`` in two shells split the tasks)::

    .venv/bin/python benchmarks/deconoising_bench.py fmd testset sweep --steps 200
    .venv/bin/python benchmarks/deconoising_bench.py --report      # tables from results.jsonl
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
from typing import Any

# Idle OpenMP threads sleep instead of spinning (matters on a shared 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FMD = ("fish", "BPAE_B", "BPAE_G", "BPAE_R", "mice")
CONFOCAL = ("BPAE_B", "BPAE_G", "BPAE_R", "FISH", "MICE")
SWEEP_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0)
#: shared/peers.md on fish: Gaussian oracle and BM3D+VST.
PEERS_FISH = {"gauss_oracle": 31.14, "bm3d_vst": 32.06}

log = logging.getLogger("deconoising_bench")


# ----------------------------------------------------------------------------- data
def load_pair(section: str, name: str, set12: str = "01") -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, gt)``: noisy is ``(y, x)`` or ``(t, y, x)`` (testset frames); gt ``(y, x)``."""
    import tifffile

    if section == "fmd":
        d = DATA / "fmd_confocal_n2f"
        return tifffile.imread(d / "noisy" / f"{name}.tif"), tifffile.imread(
            d / "gt" / f"{name}.tif"
        )
    if section == "testset":
        from PIL import Image

        d = DATA / "fmd_testset_fm2s"
        frames = [np.array(Image.open(d / "raw" / f"Confocal_{name}_{k}.png")) for k in range(1, 5)]
        return np.stack(frames), np.array(Image.open(d / "gt" / f"Confocal_{name}.png"))
    if section == "sweep":
        from scipy import ndimage

        clean = tifffile.imread(DATA / "synthetic" / "set12_n2f" / "gt" / f"{set12}.tif")
        signal = ndimage.gaussian_filter(clean.astype(np.float64), 1.0, mode="reflect")
        noisy = signal + np.random.default_rng(0).normal(0.0, 25.0, signal.shape)
        return noisy.astype(np.float32), signal
    raise ValueError(section)


def hf_energy(img: np.ndarray, cutoff: float = 0.25) -> float:
    """Percent of the (Hann-windowed, mean-removed) power above ``cutoff`` cycles/px."""
    x = np.asarray(img, dtype=np.float64)
    x = x - x.mean()
    w = np.outer(np.hanning(x.shape[0]), np.hanning(x.shape[1]))
    p = np.abs(np.fft.fft2(x * w)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(x.shape[0]), np.fft.fftfreq(x.shape[1]), indexing="ij")
    return float(100.0 * p[np.hypot(fy, fx) > cutoff].sum() / p.sum())


# ----------------------------------------------------------------------------- tasks
def plan(sections: list[str], set12: str) -> list[dict[str, Any]]:
    """Every task of the chosen sections, in a fixed order."""
    tasks: list[dict[str, Any]] = []
    for sec in sections:
        if sec in ("fmd", "testset"):
            for name in FMD if sec == "fmd" else CONFOCAL:
                tasks += [
                    {"section": sec, "image": name, "method": "n2v"},
                    {"section": sec, "image": name, "method": "deconoising", "sigma": 1.0},
                    {"section": sec, "image": name, "method": "classical"},
                ]
        elif sec == "sweep":
            for s in SWEEP_SIGMAS:
                tasks.append({"section": sec, "image": set12, "method": "deconoising", "sigma": s})
            tasks.append(
                {
                    "section": sec,
                    "image": set12,
                    "method": "deconoising",
                    "sigma": 2.0,
                    "learn": True,
                }
            )
        else:
            raise ValueError(f"unknown section {sec!r}; choose fmd, testset, sweep")
    return tasks


def task_key(task: dict[str, Any], steps: int, seed: int) -> str:
    """Identity of a task's result in results.jsonl."""
    return json.dumps(
        {**task, "steps": steps if task["method"] != "classical" else 0, "seed": seed},
        sort_keys=True,
    )


def _train_config(steps: int, threads: int, **extra: Any) -> Any:
    from denoise.config import TrainConfig

    spe = 25
    if steps % spe:
        raise ValueError(f"--steps must be a multiple of {spe}")
    return TrainConfig(epochs=steps // spe, steps_per_epoch=spe, threads=threads, **extra)


def run_network(
    task: dict[str, Any], steps: int, seed: int, threads: int, work: Path, set12: str
) -> dict[str, Any]:
    """Train N2V or DecoNoising on the task's noisy data and score its outputs."""
    from denoise.config import PredictConfig
    from denoise.io.ingest import ingest
    from denoise.methods.deconoising import (
        DecoNoisingPredictor,
        DecoNoisingSettings,
        train_deconoising,
    )
    from denoise.methods.n2v import train_n2v
    from denoise.metrics.image import psnr
    from denoise.models.store import load_model, predict_whole
    from denoise.tiling.blend import predict_tiled

    noisy, gt = load_pair(task["section"], task["image"], set12)
    axes = "tyx" if noisy.ndim == 3 else "yx"
    tag = f"{task['section']}_{task['image']}_{task['method']}_{task.get('sigma', '')}{'L' if task.get('learn') else ''}"
    tmp = Path(tempfile.mkdtemp(prefix=tag, dir=work))
    np.save(tmp / "noisy.npy", noisy)
    ingest(str(tmp / "noisy.npy"), tmp / "noisy.ome.zarr", axes=axes)
    frames = noisy if noisy.ndim == 3 else noisy[None]
    result: dict[str, Any] = {}
    t0 = time.perf_counter()
    if task["method"] == "n2v":
        summary = train_n2v(
            tmp / "noisy.ome.zarr",
            tmp / "model",
            _train_config(steps, threads),
            seed,
            progress=False,
        )
        train_s = time.perf_counter() - t0
        model, meta = load_model(tmp / "model")
        outs = np.stack([predict_whole(model, meta, f) for f in frames])
    else:
        settings = DecoNoisingSettings(psf_sigma=task["sigma"], learn_psf=bool(task.get("learn")))
        cfg = _train_config(steps, threads)
        summary = train_deconoising(
            tmp / "noisy.ome.zarr", tmp / "model", cfg, seed, progress=False, settings=settings
        )
        train_s = time.perf_counter() - t0
        pred = DecoNoisingPredictor.from_model_dir(tmp / "model", PredictConfig(threads=threads))
        both = np.stack([pred.predict_whole(f) for f in frames])  # (F, 2, y, x)
        outs, phantom = both[:, 0], both[:, 1]
        result["psf"] = summary["psf"]
        result["sigma_learned"] = summary["psf"].get("sigma")
        result["z_min"] = float(phantom.min())
        result["hf_deconvolved"] = float(np.mean([hf_energy(z) for z in phantom]))
        if task["section"] == "fmd":
            tiled = predict_tiled(
                lambda t: pred(t), frames[0], pred.halo, pred.multiple, 2 * pred.halo + 64
            )
            ref = both[0]
            result["tiled_vs_whole_rel"] = float(np.abs(tiled - ref).max() / np.abs(ref).max())
            result["halo"] = pred.halo
        np.save(work / f"{tag}_z.npy", phantom[0])
    np.save(work / f"{tag}.npy", outs[0])
    psnrs = [psnr(gt, o) for o in outs]
    result.update(
        psnr=float(np.mean(psnrs)),
        psnr_frames=psnrs,
        hf=float(np.mean([hf_energy(o) for o in outs])),
        hf_gt=hf_energy(gt),
        psnr_noisy=float(np.mean([psnr(gt, f) for f in frames])),
        steps_done=summary["steps_done"],
        train_s=round(train_s, 1),
        predict_s=round(time.perf_counter() - t0 - train_s, 1),
        final_val_loss=summary["final_val_loss"],
    )
    return result


def run_classical(task: dict[str, Any], seed: int, set12: str) -> dict[str, Any]:
    """Gaussian filter with σ swept on GT (oracle) and BM3D+VST (noise model fitted blindly)."""
    from scipy import ndimage

    from denoise.config import NoiseModelConfig
    from denoise.methods.classical import SIGMA_GRID, Bm3dVstPredictor
    from denoise.metrics.image import psnr
    from denoise.noise.poisson_gaussian import estimate_from_array

    noisy, gt = load_pair(task["section"], task["image"], set12)
    frames = noisy if noisy.ndim == 3 else noisy[None]
    g_psnr, g_sigma, g_hf, b_psnr, b_hf, b_s = [], [], [], [], [], []
    for f in frames:
        x = f.astype(np.float64)
        sweep = {s: ndimage.gaussian_filter(x, float(s)) for s in SIGMA_GRID}
        scores = {s: psnr(gt, o) for s, o in sweep.items()}
        best = max(scores, key=scores.__getitem__)
        g_psnr.append(scores[best])
        g_sigma.append(float(best))
        g_hf.append(hf_energy(sweep[best]))
        t0 = time.perf_counter()
        fit = estimate_from_array(f, NoiseModelConfig(), seed=seed)
        out = Bm3dVstPredictor(fit)(f.astype(np.float32), {"c": 0})[0]
        b_s.append(time.perf_counter() - t0)
        b_psnr.append(psnr(gt, out))
        b_hf.append(hf_energy(out))
    return {
        "gauss_oracle": float(np.mean(g_psnr)),
        "gauss_sigma": g_sigma,
        "hf_gauss": float(np.mean(g_hf)),
        "bm3d_vst": float(np.mean(b_psnr)),
        "bm3d_frames": b_psnr,
        "hf_bm3d": float(np.mean(b_hf)),
        "bm3d_s": round(float(np.mean(b_s)), 1),
        "hf_gt": hf_energy(gt),
    }


# ----------------------------------------------------------------------------- report
def _load(path: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows[r["key"]] = r
    return rows


def report(results: Path, steps: int, seed: int, set12: str) -> str:
    """Markdown tables from ``results.jsonl`` (rows present so far)."""
    rows = _load(results)

    def get(task: dict[str, Any]) -> dict[str, Any] | None:
        r = rows.get(task_key(task, steps, seed))
        return None if r is None else r["result"]

    out: list[str] = []
    fmt = lambda v, f="{:.2f}": "–" if v is None else f.format(v)  # noqa: E731
    for sec, names in (("fmd", FMD), ("testset", CONFOCAL)):
        table, acc = [], []
        for name in names:
            n = get({"section": sec, "image": name, "method": "n2v"})
            d = get({"section": sec, "image": name, "method": "deconoising", "sigma": 1.0})
            c = get({"section": sec, "image": name, "method": "classical"})
            if not (n or d or c):
                continue
            vals = [
                (n or d or {}).get("psnr_noisy"),
                n and n["psnr"],
                d and d["psnr"],
                (n and d) and d["psnr"] - n["psnr"],
                c and c["gauss_oracle"],
                c and c["bm3d_vst"],
                n and n["hf"],
                d and d["hf"],
                d and d["hf_deconvolved"],
                c and c["hf_gauss"],
                (n or d or c or {}).get("hf_gt"),
                n and n["train_s"],
                d and d["train_s"],
            ]
            acc.append(vals)
            table.append(
                f"| {name} | "
                + " | ".join(
                    fmt(v, "{:+.2f}" if i == 3 else "{:.1f}" if i >= 11 else "{:.2f}")
                    for i, v in enumerate(vals)
                )
                + " |"
            )
        if not table:
            continue
        title = (
            "five FMD confocal pairs (fmd_confocal_n2f)"
            if sec == "fmd"
            else "FMD test set, Confocal configurations, mean over the 4 raw frames (fmd_testset_fm2s)"
        )
        out += [
            f"### {title}, {steps} steps per network, seed {seed}",
            "",
            "| image | noisy | N2V | DecoNoising σ=1 | Δ | Gauss oracle | BM3D+VST | HF% N2V | "
            "HF% Deco s | HF% Deco z | HF% Gauss | HF% GT | N2V s | Deco s |",
            "|---|" + "---|" * 13,
            *table,
        ]
        if len(acc) > 1:
            arr = np.array([[np.nan if v is None else v for v in r] for r in acc], dtype=float)
            mean = np.nanmean(arr, axis=0)
            out.append(
                "| **mean** | "
                + " | ".join(
                    fmt(
                        None if np.isnan(v) else v,
                        "{:+.2f}" if i == 3 else "{:.1f}" if i >= 11 else "{:.2f}",
                    )
                    for i, v in enumerate(mean)
                )
                + " |"
            )
        out.append("")
    sweep = []
    for s in SWEEP_SIGMAS:
        r = get({"section": "sweep", "image": set12, "method": "deconoising", "sigma": s})
        if r:
            sweep.append(f"| {s:.1f} | {r['psnr']:.2f} | {r['hf']:.2f} | {r['train_s']:.0f} |")
    learn = get(
        {"section": "sweep", "image": set12, "method": "deconoising", "sigma": 2.0, "learn": True}
    )
    if sweep or learn:
        out += [
            f"### PSF mismatch: Set12 {set12}, blurred σ = 1 px, noise σ = 25, {steps} steps",
            "",
            "| PSF σ | PSNR vs signal | HF% | train s |",
            "|---|---|---|---|",
            *sweep,
        ]
        if learn:
            out.append(
                f"| learned from 2.0 → **{learn['sigma_learned']:.3f}** | {learn['psnr']:.2f} | "
                f"{learn['hf']:.2f} | {learn['train_s']:.0f} |"
            )
        out.append("")
    loads = [r["load"] for r in rows.values() if "load" in r]
    if loads:
        arr = np.array(loads)
        out.append(
            f"Load average (1 min) during the tasks: {arr.min():.1f}–{arr.max():.1f} "
            f"(median {np.median(arr):.1f}) on 2 cores."
        )
    return "\n".join(out)


def figure(work: Path, out: Path, results: Path, steps: int, seed: int, crop: int = 160) -> None:
    """Fish crops (noisy, N2V, DecoNoising s and z, GT), the PSF, and the sweep curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from denoise.models.psf import gaussian_psf

    noisy, gt = load_pair("fmd", "fish")
    n2v = work / "fmd_fish_n2v_.npy"
    deco = work / "fmd_fish_deconoising_1.0.npy"
    if not (n2v.is_file() and deco.is_file()):
        return
    y0, x0 = 176, 176
    sl = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    panels = [
        ("noisy", noisy),
        ("N2V", np.load(n2v)),
        ("DecoNoising s (denoised)", np.load(deco)),
        ("DecoNoising z (deconvolved)", np.load(work / "fmd_fish_deconoising_1.0_z.npy")),
        ("GT (50-frame mean)", gt),
    ]
    fig, axs = plt.subplots(1, 6, figsize=(20, 3.8))
    lo, hi = np.percentile(gt[sl], [0.5, 99.8])
    for ax, (title, img) in zip(axs, panels, strict=False):
        ax.imshow(img[sl], cmap="magma", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    axs[5].imshow(gaussian_psf(1.0), cmap="gray")
    axs[5].set_title("PSF: Gaussian σ = 1 px", fontsize=9)
    axs[5].axis("off")
    fig.tight_layout()
    fig.savefig(out / "fish_crops.png", dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections (skipping finished tasks), then print the tables."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sections", nargs="*", default=[], help="fmd, testset, sweep")
    ap.add_argument(
        "--steps", type=int, default=200, help="optimiser steps per network (equal for all)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--set12", default="01", help="Set12 image for the sweep")
    ap.add_argument("--shard", default="0/1", help="k/n: run every n-th task starting at k")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deconoising")
    ap.add_argument("--report", action="store_true", help="only print the tables")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    results = args.out / "results.jsonl"
    if not args.report:
        k, n = (int(v) for v in args.shard.split("/"))
        tasks = plan(args.sections, args.set12)[k::n]
        done = _load(results)
        for i, task in enumerate(tasks):
            key = task_key(task, args.steps, args.seed)
            if key in done:
                continue
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            if task["method"] == "classical":
                res = run_classical(task, args.seed, args.set12)
            else:
                res = run_network(task, args.steps, args.seed, args.threads, work, args.set12)
            row = {
                "key": key,
                "task": task,
                "result": res,
                "seconds": round(time.perf_counter() - t0, 1),
                "load": round((load0 + os.getloadavg()[0]) / 2, 2),
            }
            with open(results, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(
                f"[{i + 1}/{len(tasks)}] {json.dumps(task)} {row['seconds']} s load {row['load']}: "
                + json.dumps({k: v for k, v in res.items() if not isinstance(v, list | dict)}),
                flush=True,
            )
    text = report(results, args.steps, args.seed, args.set12)
    (args.out / "deconoising.md").write_text(text + "\n")
    figure(work, args.out, results, args.steps, args.seed)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
