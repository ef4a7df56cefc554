"""No-reference quality checks for data without ground truth.

* :func:`residual_check` — is the residual ``noisy − denoised`` what the noise model says noise
  looks like?  Its variance, binned by the denoised level, should match the model's predicted
  variance (ratio ≈ 1: the method removed about one noise's worth; ≪ 1: noise left in the
  output; > 1 with positive lag-1 autocorrelation: signal removed too, since structure left in
  the residual is signal).  Real detectors can have spatially correlated noise (e.g. the FMD
  confocal scans, lag-1 ≈ 0.05–0.26 along x), so judge the autocorrelation against the data's
  own, not against zero.
* :func:`masked_pixel_score` — the blind-spot self-supervised loss on held-out masked pixels,
  for ANY method (it only needs a ``denoise_fn``); it estimates ``MSE(prediction, signal) +
  noise variance``, so methods can be ranked on the same data and seed without ground truth.
  It is defined in :mod:`denoise.methods.classical` (the Gaussian method uses it to pick σ) and
  re-exported here.
* :func:`next_frame_score` — for repeated frames of a (nearly) static scene (a ``t`` axis): the
  mean squared difference between a frame's denoised estimate and the RAW neighbouring frames.
  Their noise is independent of the estimate, so it estimates ``MSE(estimate, signal) + noise
  variance`` (+ the scene's change between neighbours) for ANY method, without masking: unlike
  the blind-spot score it scores the method's real output (a filter that uses the centre pixel
  is not handicapped) and it does not depend on the noise being spatially independent.  Where
  the data have frames it is the score to rank by.  It is biased for methods that see the
  neighbouring frames (their estimate of frame t contains frame t+1's noise): use
* :func:`leave_out_next_frame_score` — the next-frame score of such a method, computed from
  windows that leave frame ``t + 1`` out, and only where :func:`frame_motion_check` finds that
  consecutive raw frames differ by no more than their noise explains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from denoise.methods.classical import masked_pixel_score
from denoise.noise.poisson_gaussian import channel_params, predicted_variance
from denoise.tiling.grid import reflect_index

log = logging.getLogger(__name__)

__all__ = [
    "frame_motion_check",
    "lag1_autocorrelation",
    "leave_out_next_frame_score",
    "leave_out_window",
    "masked_pixel_score",
    "motion_terms",
    "motion_verdict",
    "next_frame_score",
    "rank_methods",
    "residual_check",
]


def next_frame_score(estimate: np.ndarray, neighbours: list[np.ndarray]) -> float:
    """Mean squared difference between ``estimate`` (of one frame) and its raw neighbours.

    Parameters
    ----------
    estimate
        Denoised frame (raw units).
    neighbours
        The raw frames before and/or after it (same shape), e.g. ``[x[t - 1], x[t + 1]]``.

    Returns
    -------
    float
        ``mean((estimate − neighbour)²)`` over every neighbour: ``MSE(estimate, signal) +
        noise variance`` for a static scene (module docstring); lower is better.
    """
    if not neighbours:
        raise ValueError("next_frame_score needs at least one neighbouring frame")
    est = np.asarray(estimate, dtype=np.float64)
    diffs = []
    for nb in neighbours:
        nb = np.asarray(nb, dtype=np.float64)
        if nb.shape != est.shape:
            raise ValueError(f"neighbouring frame has shape {nb.shape}, the estimate {est.shape}")
        diffs.append(float(np.mean((est - nb) ** 2)))
    return float(np.mean(diffs))


#: Largest ratio ``mean((x[t+1] − x[t])²) / (2 · predicted noise variance)`` at which
#: consecutive raw frames count as noisy copies of one scene (:func:`frame_motion_check`).
#: 1.1: the scene's own change may add up to 0.2 noise variances (mean square) to a
#: next-frame score.  Measured on :mod:`denoise.synthetic.timelapse` (seeds 0–2): 1.04–1.05
#: at 0 px/frame (transients, bleaching), 1.07–1.08 at 0.5, 1.38–1.47 at 2, 2.0–2.3 at 5.
MOTION_RATIO_MAX = 1.1


def frame_motion_check(
    frames: np.ndarray,
    noise_params: Mapping[str, Any],
    channel: int = 0,
    max_ratio: float = MOTION_RATIO_MAX,
) -> dict[str, Any]:
    """Do consecutive raw frames differ by more than their noise explains?

    For a static scene ``x[t+1] − x[t]`` is the difference of two independent noises, of
    variance ``2 · (gain · (s − offset) + read_var)``; ``s`` is estimated by the frames' mean
    (unbiased, the model being linear in ``s``).  The ratio of the measured mean square to that
    prediction is 1 for a static scene and grows with motion and intensity changes.

    Parameters
    ----------
    frames
        ``(t, *spatial)`` raw frames of one channel (at least 2).
    noise_params
        A noise-model result (``channels``) or one channel's ``{"gain", "read_var", "offset"}``.
    max_ratio
        The ratio above which the frames are declared to move (:data:`MOTION_RATIO_MAX`).

    Returns
    -------
    dict
        ``valid`` (ratio ≤ ``max_ratio``), ``ratio``, ``max_ratio``, ``pair_ratios`` (per
        consecutive pair) and ``reason`` (None when valid, else why a next-frame score is
        invalid on these frames).
    """
    x = np.asarray(frames, dtype=np.float64)
    if x.ndim < 3 or x.shape[0] < 2:
        raise ValueError(f"frame_motion_check needs (t >= 2, y, x) frames, got shape {x.shape}")
    params = channel_params(dict(noise_params), channel)
    terms = [motion_terms(x[t], x[t + 1], params) for t in range(x.shape[0] - 1)]
    verdict = motion_verdict(sum(m for m, _ in terms), sum(p for _, p in terms), max_ratio)
    return {**verdict, "pair_ratios": [m / p for m, p in terms]}


def motion_terms(a: np.ndarray, b: np.ndarray, params: Mapping[str, Any]) -> tuple[float, float]:
    """``mean((b − a)²)`` of two consecutive raw frames and its static-scene prediction.

    Parameters
    ----------
    a, b
        Raw frames ``t`` and ``t + 1`` of one channel (same shape).
    params
        That channel's ``{"gain", "read_var", "offset"}``.

    Returns
    -------
    measured, predicted
        The measured mean square and ``2 · mean(predicted variance)`` at the pair's mean level;
        pool them over pairs (sums) before taking their ratio (:func:`motion_verdict`).
    """
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    measured = float(np.mean((b64 - a64) ** 2))
    predicted = 2.0 * float(np.mean(predicted_variance(dict(params), 0.5 * (a64 + b64))))
    return measured, predicted


def motion_verdict(measured: float, predicted: float, max_ratio: float = MOTION_RATIO_MAX) -> dict[str, Any]:
    """``valid``, ``ratio``, ``max_ratio`` and ``reason`` from pooled :func:`motion_terms`."""
    ratio = float(measured / predicted) if predicted > 0 else float("inf")
    valid = ratio <= max_ratio
    reason = None if valid else (
        f"consecutive raw frames differ by {ratio:.2f}× what their noise explains (> {max_ratio}): "
        "the scene moves or changes between frames, so raw frame t+1 is not a noisy copy of "
        "frame t's signal and a next-frame score would mostly measure that change"
    )
    return {"valid": valid, "ratio": ratio, "max_ratio": max_ratio, "reason": reason}


def leave_out_window(n: int, t: int, k: int) -> np.ndarray:
    """Frames of the ``2k + 1`` window of frame ``t`` with frame ``t + 1`` left out.

    The window is taken from the series with frame ``t + 1`` deleted (``n − 1`` frames, frame
    ``t`` keeping its position), reflected at its ends like the prediction runner
    (:func:`denoise.tiling.grid.reflect_index`): the frames after ``t`` are ``t + 2 …
    t + k + 1``, and at the series' start the reflected ones come from the same shortened
    series, so frame ``t + 1`` never enters and every other frame keeps its role.
    """
    if not 0 <= t < n - 1:
        raise ValueError(f"frame {t} has no next frame in a series of {n}")
    keep = np.array([i for i in range(n) if i != t + 1])
    return keep[reflect_index(t - k, t + k + 1, n - 1)]


def leave_out_next_frame_score(
    predict_window: Callable[[np.ndarray, int], np.ndarray],
    frames: np.ndarray,
    k: int,
    noise_params: Mapping[str, Any] | None = None,
    channel: int = 0,
    max_ratio: float = MOTION_RATIO_MAX,
) -> dict[str, Any]:
    """Next-frame score of a method that sees ``2k + 1`` frames, without frame t+1's noise.

    :func:`next_frame_score` compares the output for frame ``t`` with raw frame ``t + 1``;
    when frame ``t + 1`` was an input for frame ``t`` its noise is in both and the score
    flatters the method.  Here the output for frame ``t`` is recomputed from
    :func:`leave_out_window` (frame ``t + 1`` left out) and compared with raw ``x[t + 1]``,
    for every ``t < n − 1``: for a static scene and noise independent across frames the score
    estimates ``MSE(estimate, signal) + noise variance`` for methods of any ``k`` (``k = 0``:
    single-frame methods, the plain next-frame score), so methods can be ranked by it.

    Parameters
    ----------
    predict_window
        ``(window (2k + 1, *spatial) float32, t) -> (*spatial)`` estimate of the centre frame
        (the PlanePredictor convention of ``docs/architecture.md``, first output only).
    frames
        ``(t, *spatial)`` raw frames of one channel (at least 3).
    k
        Frames each side the method sees (its ``halo_t``).
    noise_params
        The noise model; with it the motion check runs (:func:`frame_motion_check`) and
        ``estimated_mse`` (score − mean predicted noise variance of the target frames) is given.
        Without it ``valid`` is None: the score's validity is not checked.

    Returns
    -------
    dict
        ``score`` (lower is better), ``per_frame``, ``k``, ``valid`` (True, False, or None
        without a noise model), ``reason`` (why it is invalid, or None), ``motion`` (the
        check's result) and, with a noise model, ``noise_var`` and ``estimated_mse``.
    """
    x = np.asarray(frames, dtype=np.float32)
    if x.ndim < 3 or x.shape[0] < 3:
        raise ValueError(f"leave_out_next_frame_score needs (t >= 3, y, x) frames, got {x.shape}")
    n = x.shape[0]
    per_frame = []
    for t in range(n - 1):
        est = np.asarray(predict_window(x[leave_out_window(n, t, k)], t), dtype=np.float64)
        if est.shape != x.shape[1:]:
            raise ValueError(f"predict_window returned shape {est.shape}, expected {x.shape[1:]}")
        per_frame.append(float(np.mean((est - x[t + 1]) ** 2)))
    out: dict[str, Any] = {"score": float(np.mean(per_frame)), "per_frame": per_frame, "k": k,
                           "valid": None, "reason": None, "motion": None}
    if noise_params is not None:
        motion = frame_motion_check(x, noise_params, channel, max_ratio)
        params = channel_params(dict(noise_params), channel)
        noise_var = float(np.mean(predicted_variance(params, x[1:].astype(np.float64))))
        out.update(valid=motion["valid"], reason=motion["reason"], motion=motion,
                   noise_var=noise_var, estimated_mse=out["score"] - noise_var)
        if not motion["valid"]:
            log.warning("leave-out next-frame score invalid: %s", motion["reason"])
    return out


def lag1_autocorrelation(r: np.ndarray) -> dict[str, float]:
    """Lag-1 autocorrelation of ``r`` along ``y`` and ``x`` (last two axes), pooled over planes."""
    a = np.asarray(r, dtype=np.float64)
    a = a - a.mean()
    var = float(np.mean(a * a))
    if var <= 0:
        return {"y": 0.0, "x": 0.0}
    ry = float(np.mean(a[..., 1:, :] * a[..., :-1, :])) / var
    rx = float(np.mean(a[..., :, 1:] * a[..., :, :-1])) / var
    return {"y": ry, "x": rx}


def residual_check(
    noisy: np.ndarray,
    denoised: np.ndarray,
    noise_params: Mapping[str, Any],
    n_bins: int = 16,
    channel: int = 0,
) -> dict[str, Any]:
    """Compare the residual ``noisy − denoised`` with the noise model.

    Parameters
    ----------
    noisy, denoised
        Same-shaped arrays in raw units (``y x`` last).
    noise_params
        A noise-model result (``channels``) or one channel's ``{"gain", "read_var", "offset"}``.
    n_bins
        Equal-count bins of the denoised level.
    channel
        Channel of a full noise-model result to use.

    Returns
    -------
    dict
        ``bins`` (per bin: ``level``, ``residual_var``, ``predicted_var``, ``ratio``,
        ``residual_mean``, ``n``), ``ratio`` (overall residual variance / mean predicted
        variance), ``residual_mean``, ``autocorrelation`` ``{"y", "x"}``.
    """
    x = np.asarray(noisy, dtype=np.float64)
    d = np.asarray(denoised, dtype=np.float64)
    if x.shape != d.shape:
        raise ValueError(f"noisy shape {x.shape} differs from denoised shape {d.shape}")
    if x.ndim < 2:
        raise ValueError(f"residual_check needs y x images, got shape {x.shape}")
    params = channel_params(dict(noise_params), channel)
    r = x - d
    pred = predicted_variance(params, d)
    order = np.argsort(d, axis=None, kind="stable")
    rf, pf, df = r.ravel()[order], pred.ravel()[order], d.ravel()[order]
    bins = []
    for idx in np.array_split(np.arange(order.size), max(1, min(n_bins, order.size))):
        if idx.size < 2:
            continue
        rv = float(np.var(rf[idx]))
        pv = float(np.mean(pf[idx]))
        bins.append(
            {
                "level": float(np.mean(df[idx])),
                "residual_var": rv,
                "predicted_var": pv,
                "ratio": rv / pv if pv > 0 else None,
                "residual_mean": float(np.mean(rf[idx])),
                "n": int(idx.size),
            }
        )
    mean_pred = float(np.mean(pred))
    out = {
        "ratio": float(np.var(r)) / mean_pred if mean_pred > 0 else None,
        "residual_mean": float(np.mean(r)),
        "residual_var": float(np.var(r)),
        "predicted_var": mean_pred,
        "autocorrelation": lag1_autocorrelation(r),
        "bins": bins,
    }
    log.info(
        "residual check: variance ratio %.3f, lag-1 autocorrelation y %.3f x %.3f",
        out["ratio"] or float("nan"),
        out["autocorrelation"]["y"],
        out["autocorrelation"]["x"],
    )
    return out


def rank_methods(
    noisy: np.ndarray,
    methods: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    fraction: float = 1 / 16,
    seed: int = 0,
    passes: int = 1,
) -> list[dict[str, Any]]:
    """Blind-spot score of several methods on the same plane and masks, best (lowest) first.

    Returns
    -------
    list of dict
        ``{"method", "score"}`` sorted by score.
    """
    scores = [
        {"method": name, "score": masked_pixel_score(noisy, fn, fraction, seed, passes)}
        for name, fn in methods.items()
    ]
    return sorted(scores, key=lambda s: s["score"])
