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
  the data have frames it is the score to rank by.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from denoise.methods.classical import masked_pixel_score
from denoise.noise.poisson_gaussian import channel_params, predicted_variance

log = logging.getLogger(__name__)

__all__ = [
    "lag1_autocorrelation",
    "masked_pixel_score",
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
