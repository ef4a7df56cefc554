"""Methods on the synthetic dynamic time-lapses (issue 17): true PSNR and the no-reference score.

For every speed of :data:`denoise.synthetic.timelapse.SPEEDS` and seed of
``BENCHMARK_SEEDS`` (parameters fixed in :class:`~denoise.synthetic.timelapse.TimeLapseParams`)
each method predicts every frame through :func:`denoise.predict.reference.predict_whole_series`
(the runner's windows and reflected ends) and is scored by

* ``psnr``: PSNR against the truth over the whole series, range = max − min of the truth;
* ``score``: :func:`denoise.metrics.noref.leave_out_next_frame_score` (frame t+1 left out of
  frame t's window), with ``valid`` / ``motion_ratio`` from its motion check.

Methods: ``identity``, ``gaussian_1px``, ``window_mean_k{1,2,3}`` (cheap, the default) and, with
``--bm3d``, ``bm3d_vst`` and ``window_bm3d_vst_k{1,2,3}`` (BM3D: ~2 s per 128² frame on one core,
so 12 series × 16 frames × 4 methods ≈ 30 min).  Writes a TSV and prints the table::

    .venv/bin/python benchmarks/timelapse_synthetic.py --out /tmp/timelapse.tsv [--bm3d]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from denoise.metrics.noref import leave_out_next_frame_score
from denoise.synthetic.timelapse import BENCHMARK_SEEDS, SPEEDS, timelapse


class _Window:
    """PlanePredictor of a window function ``(window, t) -> frame`` with ``halo_t = k``."""

    kind, ndim, output_names = "plane", 2, ("denoised",)

    def __init__(self, k: int, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.halo_t, self.fn = k, fn

    def __call__(self, x: np.ndarray, index: dict[str, int]) -> np.ndarray:
        return np.asarray(self.fn(x), dtype=np.float32)[None]


def methods(noise: dict[str, float], bm3d: bool) -> dict[str, Any]:
    """Name -> predictor (PlanePredictor, ``halo_t`` as declared)."""
    out: dict[str, Any] = {
        "identity": _Window(0, lambda x: x),
        "gaussian_1px": _Window(0, lambda x: ndimage.gaussian_filter(x, 1.0)),
        **{f"window_mean_k{k}": _Window(k, lambda w: w.mean(axis=0)) for k in (1, 2, 3)},
    }
    if bm3d:
        from denoise.config import PredictConfig
        from denoise.methods.registry import build_predictor

        cfg = PredictConfig()
        out["bm3d_vst"] = build_predictor("bm3d_vst", cfg, 0, noise_model=noise)
        for k in (1, 2, 3):
            out[f"window_bm3d_vst_k{k}"] = build_predictor(
                "window_bm3d_vst", cfg, 0, noise_model=noise, settings={"k": k}
            )
    return out


def run_one(speed: float, seed: int, bm3d: bool) -> list[dict[str, Any]]:
    """Every method on one series."""
    from denoise.predict.reference import predict_whole_series

    s = timelapse(speed, seed)
    truth = s.truth.astype(np.float64)
    rng = float(truth.max() - truth.min())
    rows = []
    for name, pred in methods(s.noise_params(), bm3d).items():
        out = predict_whole_series(pred, s.noisy)[0].astype(np.float64)
        psnr = 10 * np.log10(rng**2 / np.mean((out - truth) ** 2))
        k = int(pred.halo_t)
        score = leave_out_next_frame_score(
            lambda w, t, p=pred: p(w if p.halo_t else w[0], {"t": t, "c": 0})[0],
            s.noisy, k, s.noise_params(),
        )
        rows.append({
            "speed": speed, "seed": seed, "method": name, "k": k, "psnr": round(float(psnr), 3),
            "score": round(score["score"], 3), "valid": score["valid"],
            "motion_ratio": round(score["motion"]["ratio"], 4),
        })
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/timelapse_synthetic.tsv"))
    p.add_argument("--bm3d", action="store_true", help="also bm3d_vst and window_bm3d_vst k = 1, 2, 3")
    p.add_argument("--speeds", type=float, nargs="*", default=list(SPEEDS))
    p.add_argument("--seeds", type=int, nargs="*", default=list(BENCHMARK_SEEDS))
    a = p.parse_args()
    rows = [r for v in a.speeds for s in a.seeds for r in run_one(v, s, a.bm3d)]
    cols = list(rows[0])
    a.out.write_text("\n".join(["\t".join(cols)] + ["\t".join(str(r[c]) for c in cols) for r in rows]) + "\n")
    print(f"\nmean over seeds (psnr dB / score / valid), written {a.out}")
    for v in a.speeds:
        sel = [r for r in rows if r["speed"] == v]
        for m in dict.fromkeys(r["method"] for r in sel):
            mr = [r for r in sel if r["method"] == m]
            print(f"speed {v:3g}  {m:20s} {np.mean([r['psnr'] for r in mr]):6.2f}  "
                  f"{np.mean([r['score'] for r in mr]):8.1f}  {all(r['valid'] for r in mr)}")


if __name__ == "__main__":
    main()
