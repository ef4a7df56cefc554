"""How static are the FMD 4-frame fields of view?  Per-frame intensity and position changes.

Issue 17 scores time-lapse methods on the FMD test set's 4 raw frames per field of view against
a ground truth that is the mean of 50 frames.  For each configuration and frame this fits, by
least squares, the frame's deviation from the 4-frame mean (both smoothed by a Gaussian of 2 px,
which leaves mostly signal) as ``gain · mean + dy · ∂y mean + dx · ∂x mean + c``: a relative
intensity change and a sub-pixel shift.  ``R²`` is the share of the smoothed deviation that
they explain (the rest is noise and other change)::

    .venv/bin/python benchmarks/fmd_frame_changes.py [--modality Confocal]

Measured 2026-12-05 (Confocal; relative gain of each frame, in %, shift in px)::

    BPAE_B  gain +3.5 -8.5 +2.7 +2.3  |dy| <= 0.32  R² 0.30-0.64
    BPAE_G  gain -7.4 +1.5 -0.8 +6.7  |dy| <= 0.33  R² 0.03-0.27
    BPAE_R  gain +4.7 +3.4 -13.7 +5.6 |dy| <= 0.22  R² 0.18-0.59
    FISH    gain within ±0.7 %        |dy| <= 0.05  R² <= 0.01
    MICE    gain within ±0.5 %        |dy| <= 0.06  R² <= 0.04

The three BPAE fields of view flicker by 3-14 % from frame to frame and jitter by up to a third
of a pixel; FISH and MICE are static.  These are the configurations where ``spatiotemporal``
loses most to ``window_bm3d_vst`` (-2.07 / -1.66 / -2.08 dB on BPAE_B / G / R, -0.48 / -0.68 on
FISH / MICE; ``st_fmd.py``), but the per-frame gain is not most of it: scored with the
affine-fitted PSNR, which removes a frame's gain, the gaps are -1.94 / -1.51 / -1.30 dB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import st_fmd


def changes(raw: np.ndarray) -> list[dict[str, float]]:
    """Per frame: relative gain, shift (dy, dx) and R² against the frames' mean."""
    r = raw.astype(np.float64)
    m = r.mean(axis=0)
    ms = gaussian_filter(m, 2.0)
    gy, gx = np.gradient(gaussian_filter(m, 1.5))
    a = np.stack([ms.ravel(), gy.ravel(), gx.ravel(), np.ones(m.size)], axis=1)
    out = []
    for f in r:
        d = gaussian_filter(f - m, 2.0).ravel()
        c = np.linalg.lstsq(a, d, rcond=None)[0]
        r2 = 1 - np.mean((a @ c - d) ** 2) / np.var(d)
        out.append({"gain": float(c[0]), "dy": float(-c[1]), "dx": float(-c[2]), "r2": float(r2)})
    return out


def main() -> int:
    """Print the table; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--modality", default="Confocal")
    args = ap.parse_args()
    for name in st_fmd.MODALITY_CONFIGS[args.modality]:
        raw, _ = st_fmd.load(name, args.modality)
        rows = changes(raw)
        print(
            f"{name:7s} gain " + " ".join(f"{100 * c['gain']:+5.1f}" for c in rows) + " %  shift "
            + " ".join(f"({c['dy']:+.2f},{c['dx']:+.2f})" for c in rows) + "  R² "
            + " ".join(f"{c['r2']:.2f}" for c in rows)
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
