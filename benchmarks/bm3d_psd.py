"""``bm3d_vst`` with the measured noise spectrum (``noise_psd: auto``) against the white model.

Per image (each frame alone): the Poisson-Gaussian fit of the noise stage
(:func:`denoise.noise.poisson_gaussian.estimate_from_array` on that frame), the generalised
Anscombe transform, then BM3D with ``noise_psd="auto"`` (the spectrum estimated on the plane
where the gate of :mod:`denoise.noise.correlation` finds the noise clearly correlated) and with
``"white"`` (σ = 1, the method before the spectrum; run only where the gate fired, since
otherwise the two are the same computation).  Sets: the five FMD confocal pairs and every raw
frame of the FMD test set's Confocal, TwoPhoton and WideField configurations.  PSNR per
``shared/data/README.md`` (range of GT)::

    .venv/bin/python benchmarks/bm3d_psd.py [--sets pairs,Confocal,TwoPhoton,WideField]

Measured 2026-12-05 on the 2-core dev box (one thread, load 1-2), PSNR in dB::

    set        images  spectrum used  white   auto    auto - white
    pairs           5              0  33.85   33.85   +0.00
    Confocal       20              0  34.44   34.44   +0.00
    TwoPhoton      16              0  32.00   32.00   +0.00
    WideField      12             12  24.86   32.24   +7.38  (per frame +6.51 to +8.16)

The gate fired on every wide-field frame (variance 6.1-6.7 in stabilised units, lag-1 0.58-0.60)
and on no other: there the two are the same computation.  BM3D with the spectrum takes the
same time as with σ = 1 (6-12 s per 512² frame).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import st_fmd

from denoise.methods.classical import bm3d_vst, import_bm3d
from denoise.noise.poisson_gaussian import channel_params, estimate_from_array
from denoise.settings import NoiseModelConfig

PAIRS = st_fmd.DATA.parent / "fmd_confocal_n2f"
CONFIGS = st_fmd.MODALITY_CONFIGS


def images(set_name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, noisy, gt)`` of one set."""
    if set_name == "pairs":
        return [
            (n, tifffile.imread(PAIRS / "noisy" / f"{n}.tif"), tifffile.imread(PAIRS / "gt" / f"{n}.tif"))
            for n in ("fish", "BPAE_B", "BPAE_G", "BPAE_R", "mice")
        ]  # fmt: skip
    out = []
    for c in CONFIGS[set_name]:
        raw, gt = st_fmd.load(c, set_name)
        out += [(f"{c}_{i + 1}", raw[i], gt) for i in range(raw.shape[0])]
    return out


def main() -> int:
    """Run the comparison; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sets", default="pairs,Confocal,TwoPhoton,WideField")
    args = ap.parse_args()
    bm3d = import_bm3d("bench")
    table = []
    for s in args.sets.split(","):
        auto, white, fired = [], [], 0
        for name, noisy, gt in images(s):
            x = np.asarray(noisy, np.float32)
            p = channel_params(estimate_from_array(x[None], NoiseModelConfig(), seed=0), 0)
            info: dict = {}
            t0 = time.perf_counter()
            a = st_fmd.psnr(bm3d_vst(x, p, bm3d, "auto", info), gt)
            secs = time.perf_counter() - t0
            w = st_fmd.psnr(bm3d_vst(x, p, bm3d, "white"), gt) if info.get("used") else a
            fired += bool(info.get("used"))
            auto.append(a)
            white.append(w)
            print(
                f"{s:9s} {name:10s} white {w:6.2f}  auto {a:6.2f}  variance "
                f"{info.get('variance', float('nan')):5.2f} lag1 {info.get('lag1', float('nan')):5.2f}"
                f"  used {bool(info.get('used'))}  {secs:4.1f} s",
                flush=True,
            )
        table.append((s, len(auto), fired, float(np.mean(white)), float(np.mean(auto))))
    print("\nset        images  spectrum used  white (dB)  auto (dB)  auto - white")
    for s, n, f, w, a in table:
        print(f"{s:10s} {n:6d}  {f:13d}  {w:10.2f}  {a:9.2f}  {a - w:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
