"""Speed benchmark: tiled U-Net prediction of a 2048 × 2048 image against the machine's roofline.

Roofline (MPix/s) = measured GFLOP/s of a 3×3 64→64 convolution on 1×64×512×512 float32 (the
better of contiguous and channels-last layouts) ÷ the model's GFLOP per megapixel (counted
from its convolutions, 2 FLOP per multiply-add).  The stage is timed end to end
(``predict_units``: read from an OME-Zarr store, tile with halo, predict, blend, write), and
the roofline is re-measured around every round (mean of the measurements right before and
right after the stage), because this machine is shared and its speed drifts.  Prints MPix/s and the ratio to the roofline per round.

    .venv/bin/python benchmarks/predict_speed.py            # tuned: 1024² units, one 1072² tile each
    .venv/bin/python benchmarks/predict_speed.py --tile 256 --chunk 1024   # the config defaults
    .venv/bin/python benchmarks/predict_speed.py --threads 1   # CPU-time ratio, robust to sharing
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def conv_gflops(reps: int = 3) -> dict[str, float]:
    """GFLOP/s of a 3×3 64→64 convolution on 1×64×512×512 (contiguous and channels-last).

    Best of ``reps`` by wall clock, and (``cpu_`` keys) by process CPU time, which is what a
    core delivers while scheduled: on a shared machine it is the contention-free figure
    (meaningful with one torch thread; with more, OpenMP spin-waits count as CPU time).
    """
    out = {}
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.randn(1, 64, 512, 512)
    flop = 2 * 9 * 64 * 64 * 512 * 512
    with torch.inference_mode():
        for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
            c = conv.to(memory_format=fmt)
            xx = x.contiguous(memory_format=fmt)
            c(xx)
            best, best_cpu = float("inf"), float("inf")
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                c(xx)
                best = min(best, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
            out[name] = flop / best / 1e9
            out[f"cpu_{name}"] = flop / best_cpu / 1e9
    return out


def gflop_per_mpix(model: nn.Module, ndim: int = 2, size: int = 64) -> float:
    """Convolution GFLOP per megapixel of input (hooks on every Conv layer)."""
    total = 0

    def hook(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = int(np.prod(mod.kernel_size))
        total += 2 * k * (mod.in_channels // mod.groups) * mod.out_channels * out[0, 0].numel()

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    with torch.inference_mode():
        model(torch.zeros((1, 1) + (size,) * ndim))
    for h in hooks:
        h.remove()
    return total / size**ndim * 1e6 / 1e9


def careamics_speed(python: Path, size: int, threads: int) -> dict:
    """Run ``careamics_predict_speed.py`` in the CAREamics venv; its ``RESULT`` dict."""
    import subprocess
    import sys

    if not python.exists():
        sys.exit(f"CAREamics python not found: {python} (install recipe: shared/peers.md)")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    script = Path(__file__).with_name("careamics_predict_speed.py")
    proc = subprocess.run([str(python), str(script), "--size", str(size), "--threads", str(threads),
                           "--untiled"], capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"CAREamics speed run failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--tile", type=int, default=1072, help="tile edge incl. halo (default: one tile per unit)")
    p.add_argument("--chunk", type=int, default=1024, help="output chunk edge = unit of work")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--careamics", type=Path, default=None, nargs="?", const=Path(".venv-careamics/bin/python"),
                   help="also time CAREamics 0.3.5 tiled prediction (tile 256, overlap 48) with this "
                        "python (default .venv-careamics/bin/python) and print our ratio to it")
    args = p.parse_args()

    from denoise.config import PredictConfig
    from denoise.io import omezarr
    from denoise.models.receptive_field import measure_receptive_field
    from denoise.models.unet import UNet
    from denoise.predict.network import NetworkPredictor
    from denoise.predict.runner import init_output, predict_units

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet(ndim=2, depth=args.depth, features=args.features).eval()
    gpm = gflop_per_mpix(model)
    twin = UNet(ndim=2, depth=args.depth, features=2)
    rf = measure_receptive_field(twin, 2, multiple=twin.multiple)  # reach does not depend on width

    work = Path(tempfile.mkdtemp(prefix="denoise_speed_"))
    try:
        rng = np.random.default_rng(0)
        img = (500 + 100 * rng.standard_normal((args.size, args.size))).clip(0, 65535).astype(np.uint16)
        src = work / "in.ome.zarr"
        omezarr.create_image(src, img.shape, img.dtype, "yx", (256, 256))[...] = img
        meta = {"ndim": 2, "receptive_field": rf, "hparams": model.hparams,
                "norm": {"mean": [float(img.mean())], "std": [float(img.std())]}}
        cfg = PredictConfig(tile=args.tile, batch_size=args.batch, device="cpu", threads=args.threads)
        pred = NetworkPredictor(model, meta, cfg)
        mpix = args.size**2 / 1e6
        print(f"model: depth {args.depth}, {args.features} features, {gpm:.1f} GFLOP/MPix, receptive field "
              f"{rf} px, halo {pred.halo}; image {args.size}²; units {args.chunk}², tile ≤ {args.tile}, "
              f"batch {args.batch}; torch threads {torch.get_num_threads()}; fused decoder {pred.fused}")
        rows = []
        after = conv_gflops()
        for r in range(args.rounds):
            before = after
            g = {k: v for k, v in before.items()}
            out = {"denoised": str(work / f"out{r}.ome.zarr")}
            init_output(src, out, f"r{r}", {}, chunks=(args.chunk, args.chunk))
            t0, c0 = time.perf_counter(), time.process_time()
            s = predict_units(src, out, pred, cfg, f"r{r}")
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            after = conv_gflops()
            # the roofline around the stage: mean of the measurements just before and after it
            g = {k: (before[k] + after[k]) / 2 for k in before}
            roof = max(g["contiguous"], g["channels_last"]) / gpm
            roof_cpu = max(g["cpu_contiguous"], g["cpu_channels_last"]) / gpm
            rate, rate_cpu = mpix / sec, mpix / cpu
            rows.append({"conv_gflops": g, "roofline_mpix_s": roof, "mpix_s": rate, "ratio": rate / roof,
                         "cpu_roofline_mpix_s": roof_cpu, "cpu_mpix_s": rate_cpu, "cpu_ratio": rate_cpu / roof_cpu,
                         "seconds": sec, "cpu_seconds": cpu, "phases": s["seconds"], "load": os.getloadavg()[0]})
            print(f"round {r}: conv {g['contiguous']:.0f} / {g['channels_last']:.0f} GFLOP/s "
                  f"(contiguous / channels-last) -> roofline {roof:.3f} MPix/s; stage {sec:.1f} s = "
                  f"{rate:.3f} MPix/s; ratio {rate / roof:.2f} | CPU time: conv {g['cpu_channels_last']:.0f} "
                  f"GFLOP/s, stage {cpu:.1f} s, ratio {rate_cpu / roof_cpu:.2f}; load {os.getloadavg()[0]:.1f}",
                  flush=True)
            shutil.rmtree(out["denoised"])
        ratios = [r["ratio"] for r in rows]
        cpu_ratios = [r["cpu_ratio"] for r in rows]
        print(f"ratio to roofline (wall clock): best {max(ratios):.2f}, median {statistics.median(ratios):.2f} "
              f"(target >= 0.60); stage MPix/s best {max(r['mpix_s'] for r in rows):.3f}")
        print(f"ratio to roofline (CPU time, meaningful with --threads 1): best {max(cpu_ratios):.2f}, "
              f"median {statistics.median(cpu_ratios):.2f}")
        peer = None
        if args.careamics is not None:
            peer = careamics_speed(args.careamics, args.size, torch.get_num_threads())
            best = max(r["mpix_s"] for r in rows)
            med = statistics.median(r["mpix_s"] for r in rows)
            print(f"CAREamics 0.3.5 tiled (256, overlap 48): {peer['tiled_mpix_s']:.3f} MPix/s (best of "
                  f"{len(peer['tiled_s'])}), untiled {peer.get('untiled_mpix_s', float('nan')):.3f}; ours / "
                  f"CAREamics tiled: best {best / peer['tiled_mpix_s']:.2f}x, median "
                  f"{med / peer['tiled_mpix_s']:.2f}x (target >= 2)")
        print("RESULT", json.dumps({"gflop_per_mpix": gpm, "rounds": rows, "careamics": peer, "args": vars(args)},
                                   default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
