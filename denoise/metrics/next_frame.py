"""The no-reference next-frame score of one output: the same quantity for every method.

For sampled frames ``t`` of a time-lapse (:func:`sample_frames`: at most
:data:`SAMPLE_FRAMES`, spread evenly over the series, the same frames for every row of an input)
the estimate of frame ``t`` is compared with RAW frame ``t + 1``; the score is
``mean((estimate_t − x[t + 1])²)`` pooled over those frames, every channel and ``z`` plane.
For a static scene and noise independent between frames it estimates
``MSE(estimate, signal) + noise variance`` (:mod:`denoise.metrics.noref`), so rows on the same
input can be ranked by it:

* a per-frame method (``halo_t = 0``): the estimate is its stored output for frame ``t``, which
  never saw frame ``t + 1``;
* a method that sees ``k`` neighbouring frames (``halo_t = k > 0``): its stored output for frame
  ``t`` holds frame ``t + 1``'s noise and would flatter it; the estimate is recomputed from the
  window of :func:`denoise.metrics.noref.leave_out_window` (frame ``t + 1`` left out) with the
  predictor that made the output (:func:`window_predictor`).

The same sampled pairs ``(x[t], x[t + 1])`` feed the motion check
(:func:`denoise.metrics.noref.motion_terms`, pooled over pairs and channels): where the frames
differ by more than their noise explains the score is kept for information but flagged invalid
(``valid`` False, with the ``reason``), and evaluate gives no ``next_frame_mse`` to rank by.

Known bias (``benchmarks/next_frame_bias.py``): a scene that changes between frames within the
motion check's tolerance (bleaching, transients, slow drift) adds ``MSE(s[t], s[t + 1])`` to a
per-frame method's score but less to a window method's, whose leave-out window (frames
``t − 2, t − 1, t, t + 2, t + 3`` for k = 2) leans towards ``t + 1``: on the synthetic series
at speeds 0 and 0.5 px/frame this flatters a k = 2 window mean by 5.4–6.6 (about 3 % of the
noise variance).  Methods closer than that should not be ranked by the score alone.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from denoise.metrics.noref import leave_out_window, motion_terms, motion_verdict
from denoise.noise.poisson_gaussian import channel_params, predicted_variance
from denoise.predict.protocols import predictor_kind
from denoise.progress import progress
from denoise.tiling.blend import blend_tiles, read_virtual
from denoise.tiling.grid import plan_grid

log = logging.getLogger(__name__)

#: Frames scored per series (each with its next frame), spread evenly over it.
SAMPLE_FRAMES = 8


def sample_frames(n: int, count: int = SAMPLE_FRAMES) -> list[int]:
    """Up to ``count`` frames ``t`` of an ``n``-frame series that have a next frame, spread
    evenly from the first (0) to the last such frame (``n − 2``); every one when ``n − 1 ≤
    count``."""
    m = n - 1
    if m < 1:
        return []
    if m <= count:
        return list(range(m))
    return sorted({round(float(v)) for v in np.linspace(0, m - 1, count)})


@dataclass(frozen=True)
class WindowPredictor:
    """A predictor with ``halo_t > 0`` and the tiling it predicted with."""

    predictor: Any
    #: tile edge of ``y``/``x`` and of ``z``, tiles per call (the recorded ``PredictConfig``)
    tile: int = 1024
    tile_z: int = 32
    batch_size: int = 4
    #: a single-channel model applied to every channel (channel 0's normalisation)
    each_channel: bool = False

    @property
    def halo_t(self) -> int:
        """Frames each side the predictor sees."""
        return int(getattr(self.predictor, "halo_t", 0) or 0)


def window_predictor(
    method: str,
    output_store: str | Path,
    model_dir: str | Path | None,
    noise_params: Mapping[str, Any] | None,
    each_channel: bool = False,
    given: Mapping[str, Any] | None = None,
) -> WindowPredictor | None:
    """The predictor that wrote ``output_store``, when it sees neighbouring frames; else None.

    Built only for methods that declare ``needs: frames`` (:mod:`denoise.methods.registry`),
    with the row's model directory (``each_channel``: a single-channel model applied to every
    channel) and the ``predict_config``, ``method_settings`` and ``seed`` of the prediction:
    those in ``given`` (what ``evaluate`` was passed, as ``predict`` was), else those the
    store's ``denoise`` attributes record (:func:`denoise.predict.runner.init_output` via
    ``denoise init-output``).  None when its ``halo_t`` is 0.
    """
    import zarr

    from denoise.methods.registry import build_predictor, get_method
    from denoise.settings import PredictConfig

    if "frames" not in get_method(method).needs:
        return None
    attrs = dict(zarr.open_group(str(output_store), mode="r").attrs).get("denoise", {})
    run = {k: attrs[k] for k in ("predict_config", "method_settings", "seed") if k in attrs}
    run.update({k: v for k, v in (given or {}).items() if v is not None})
    missing = [k for k in ("predict_config", "method_settings") if k not in run]
    if missing:
        raise ValueError(
            f"{output_store}: {missing} of the prediction are neither given nor recorded; the "
            f"leave-out next-frame score of '{method}' reruns its predictor: pass evaluate the "
            "--params and --method-params that predict was given"
        )
    cfg = PredictConfig.model_validate(dict(run["predict_config"]))
    predictor = build_predictor(
        method, cfg, int(run.get("seed", 0)), model_dir=model_dir,
        noise_model=None if noise_params is None else dict(noise_params),
        settings=dict(run["method_settings"]),
    )
    found = WindowPredictor(predictor, int(cfg.tile), int(cfg.tile_z), int(cfg.batch_size), each_channel)
    return found if found.halo_t > 0 else None


def window_estimate(
    wp: WindowPredictor, window: np.ndarray, index: dict[str, int], output: int = 0
) -> np.ndarray:
    """Output ``output`` of ``wp.predictor`` for the centre frame of ``window`` (``(2k + 1,
    *spatial)``) at ``index`` (its ``t``/``c``/``z``): a PlanePredictor is called on it, a
    TiledPredictor runs on the runner's lattice tiles (exact tiles: the whole-window result)."""
    predictor = wp.predictor
    window = np.ascontiguousarray(window, dtype=np.float32)
    if predictor_kind(predictor) == "plane":
        return np.asarray(predictor(window, index), dtype=np.float64)[output]
    channel = 0 if wp.each_channel else int(index.get("c", 0))
    spatial = window.shape[1:]
    tiles = [wp.tile_z] * (len(spatial) - 2) + [wp.tile] * 2
    grid = plan_grid((0,) * len(spatial), spatial, tiles, int(predictor.halo), int(predictor.multiple))
    block = read_virtual(window, grid.read_lo, grid.read_hi)
    pred = blend_tiles(lambda t: predictor(t, channel=channel), block, grid, wp.batch_size)
    return np.asarray(pred[output], dtype=np.float64)


def next_frame_figures(
    raw: Any,
    axes: str,
    output: Any,
    noise_params: Mapping[str, Any] | None = None,
    window: WindowPredictor | None = None,
    output_name: str = "denoised",
) -> dict[str, Any] | None:
    """The next-frame score of one output on the sampled frames, with its validity.

    Parameters
    ----------
    raw, axes
        The noisy input (``t`` among its axes) and its axes.
    output
        The stored output (same shape); read only for per-frame methods.
    noise_params
        The noise model; without it ``valid`` is None (the motion check cannot run).
    window
        The predictor of a method with ``halo_t > 0`` (:func:`window_predictor`); None: the
        stored output is the estimate.
    output_name
        Which of the predictor's outputs ``output`` is.

    Returns
    -------
    dict or None
        None without two frames; else ``score``, ``valid``, ``reason``, ``motion_ratio``,
        ``frames`` (the sampled ``t``), ``halo_t``, ``estimate`` (``stored output`` or
        ``leave-out window``) and, with a noise model, ``noise_var`` and ``estimated_mse``.
    """
    if "t" not in axes or raw.shape[axes.index("t")] < 2:
        return None
    n = raw.shape[axes.index("t")]
    k = window.halo_t if window is not None else 0
    frames = sample_frames(n)
    lead = [a for a in axes if a in "cz"]
    combos = list(itertools.product(*(range(raw.shape[axes.index(a)]) for a in lead)))
    names = list(getattr(window.predictor, "output_names", [output_name])) if window else []
    out_idx = names.index(output_name) if k else 0
    sums = np.zeros(5)  # squared error, pixels, measured, predicted, noise variance
    with progress(len(combos) * len(frames), "evaluate (next-frame score)", unit="frame") as bar:
        for combo in combos:
            plane = dict(zip(lead, combo, strict=True))
            c = int(plane.get("c", 0))
            params = channel_params(dict(noise_params), c) if noise_params is not None else None
            for t in frames:
                est, nxt, cur = _estimate_pair(raw, axes, output, window, plane, t, out_idx)
                sums[0] += float(np.sum((est - nxt) ** 2))
                sums[1] += nxt.size
                if params is not None:
                    m, p = motion_terms(cur, nxt, params)
                    sums[2:4] += (m * nxt.size, p * nxt.size)
                    sums[4] += float(np.sum(predicted_variance(params, nxt)))
                bar.update(1)
    return _figures(sums, frames, k, noise_params is not None)


def _estimate_pair(
    raw: Any, axes: str, output: Any, window: WindowPredictor | None, plane: dict[str, int],
    t: int, out_idx: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(estimate of frame t, raw frame t + 1, raw frame t)`` (float64) of one channel/z plane."""

    def key(frame: int | np.ndarray) -> tuple[Any, ...]:
        idx = {**plane, "t": frame}
        return tuple(idx[a] if a in idx else slice(None) for a in axes)

    n = raw.shape[axes.index("t")]
    nxt = np.asarray(raw[key(t + 1)], dtype=np.float64)
    if window is None or window.halo_t == 0:
        cur = np.asarray(raw[key(t)], dtype=np.float64)
        return np.asarray(output[key(t)], dtype=np.float64), nxt, cur
    k = window.halo_t
    uniq, inv = np.unique(leave_out_window(n, t, k), return_inverse=True)
    frames = np.stack([np.asarray(raw[key(int(u))], dtype=np.float32) for u in uniq])[inv]
    est = window_estimate(window, frames, {**plane, "t": t}, out_idx)
    return est, nxt, frames[k].astype(np.float64)


def _figures(sums: np.ndarray, frames: list[int], k: int, checked: bool) -> dict[str, Any]:
    """The result dict of :func:`next_frame_figures` from its pooled sums."""
    score = float(sums[0] / sums[1])
    out: dict[str, Any] = {
        "score": score, "valid": None, "reason": None, "motion_ratio": None, "frames": frames,
        "halo_t": k, "estimate": "leave-out window" if k else "stored output",
    }
    if checked:
        verdict = motion_verdict(float(sums[2]), float(sums[3]))
        noise_var = float(sums[4] / sums[1])
        out.update(valid=verdict["valid"], reason=verdict["reason"], motion_ratio=verdict["ratio"],
                   noise_var=noise_var, estimated_mse=score - noise_var)
        if not verdict["valid"]:
            log.warning("next-frame score not used for ranking: %s", verdict["reason"])
    return out
