"""Tune PN2V's posterior on repeated frames: no ground truth, the next frame is the target.

PN2V's MMSE weighs the prior samples by the likelihood of the observed value.  A short
training run leaves the prior's spread off by an intensity-independent factor (the blind-spot
loss is nearly flat in it where the noise dominates), and a noise model calibrated on another
acquisition may be a little too narrow or too wide for this one, so the paper's posterior is not
the best estimate of the signal it could give: on FMD ``Confocal_MICE`` (300 steps, histogram
from another field of view) MMSE 36.32 dB where the prior's mean alone reaches 37.12.

Two numbers fix that: ``scale`` multiplies the samples' spread about their mean and
``temperature`` the log-likelihood.  With two frames ``x_i, x_j`` of the same scene whose noises
are independent, ``E‖f(x_i) − x_j‖² = E‖f(x_i) − s‖² + E‖x_j − s‖²`` (the second term does not
depend on ``f``), so the mean squared difference between the estimate from one frame and the
NEXT frame ranks candidate posteriors as their true MSE would (Noise2Noise's observation, used
here for selection only).  Every pair of neighbouring frames of the first ``max_frames`` counts,
both ways; neighbours, because in a time-lapse they differ least.  The grid is
:data:`SCALES` × :data:`TEMPERATURES`; ``(1, 1)`` is the paper's posterior.

Needs a ``t`` axis with at least two frames of a (nearly) static scene: a repeated acquisition,
a calibration stack or a slow time-lapse.  Motion between neighbouring frames adds the same
difference to every candidate only to first order, so fast-moving samples should keep the
paper's posterior.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.io.omezarr import open_image
from denoise.methods.pn2v_predictor import PN2VPredictor, rewrite_objective
from denoise.models.store import load_model, pad_widths
from denoise.settings import PredictConfig

log = logging.getLogger(__name__)

#: Spread factors and likelihood temperatures tried (their product grid).
SCALES = (0.5, 0.7, 1.0, 1.4, 2.0)
TEMPERATURES = (0.5, 0.7, 1.0)
#: Frames used at most (from the first), and the centred crop per spatial axis (y, x; z ≤ 16).
MAX_FRAMES = 4
CROP = 512
CROP_Z = 16


def _frames(store: str | Path, ndim: int, max_frames: int, crop: int) -> np.ndarray:
    """The first ``max_frames`` frames of channel 0, centred crop: ``(n, *spatial)`` float32."""
    arr, axes = open_image(store)
    if "t" not in axes or arr.shape[axes.index("t")] < 2:
        n = arr.shape[axes.index("t")] if "t" in axes else 0
        raise ValueError(
            f"{store}: tuning the PN2V posterior on frames needs at least two frames along t "
            f"(axes {axes!r}, {n} frame(s)); set methods.pn2v.posterior to 'paper'"
        )
    index: list[Any] = []
    for ax, size in zip(axes, arr.shape, strict=True):
        if ax == "t":
            index.append(slice(0, min(max_frames, size)))
        elif ax == "c":
            index.append(0)
        elif ax == "z" and ndim == 2:
            index.append(size // 2)
        else:
            n = min(size, CROP_Z if ax == "z" else crop)
            lo = (size - n) // 2
            index.append(slice(lo, lo + n))
    return np.asarray(arr[tuple(index)], dtype=np.float32)


def posterior_scores(
    predictor: PN2VPredictor,
    frames: np.ndarray,
    scales: tuple[float, ...] = SCALES,
    temperatures: tuple[float, ...] = TEMPERATURES,
) -> list[tuple[float, float, float]]:
    """Next-frame MSE of every ``(scale, temperature)``: ``[(scale, temperature, score)]``.

    Parameters
    ----------
    predictor
        The trained model's predictor.
    frames
        ``(n, *spatial)`` raw frames of one scene (n ≥ 2), in order.
    """
    mean, std = predictor.net.norm(0)
    widths = pad_widths(frames.shape[1:], predictor.halo, predictor.multiple)
    crop = tuple(slice(a, a + n) for (a, _), n in zip(widths, frames.shape[1:], strict=True))
    grid = [(s, t) for s in scales for t in temperatures]
    ref = frames.astype(np.float64)
    n = len(frames)
    # Squared differences are summed as the estimates come, so no estimate is kept.
    sums = np.zeros(len(grid))
    pairs = 0
    for i, frame in enumerate(frames):
        padded = np.pad(frame, widths, mode="reflect")
        feat = predictor.features(np.ascontiguousarray((padded[None] - mean) / std))
        x = torch.from_numpy(padded).to(predictor.net.device)
        near = [j for j in (i - 1, i + 1) if 0 <= j < n]
        pairs += len(near)
        for a, s in enumerate(scales):
            # One likelihood evaluation per scale serves every temperature.
            outs = predictor.posteriors(feat, x, mean, std, s, tuple(temperatures))
            for b, (mmse, _) in enumerate(outs):
                est = mmse.cpu().numpy()[crop].astype(np.float64)
                sums[a * len(temperatures) + b] += sum(np.mean((est - ref[j]) ** 2) for j in near)
    return [(s, t, float(sums[g] / pairs)) for g, (s, t) in enumerate(grid)]


def tune_posterior(
    model_dir: str | Path,
    store: str | Path,
    cfg: PredictConfig | None = None,
    max_frames: int = MAX_FRAMES,
    crop: int = CROP,
) -> dict[str, Any]:
    """Choose the posterior's ``scale`` and ``temperature`` on the store's frames (module doc).

    The choice is written into the model's metadata (``objective.posterior``), where
    :class:`~denoise.methods.pn2v.PN2VPredictor` reads it.

    Returns
    -------
    dict
        ``scale``, ``temperature``, ``frames``, ``scores`` (every candidate's next-frame MSE)
        and the new ``sha256`` of model.pt.

    Raises
    ------
    ValueError
        The store has no ``t`` axis with two frames or more.
    """

    model, meta = load_model(model_dir)
    predictor = PN2VPredictor(model, meta, cfg or PredictConfig(device="cpu"))
    frames = _frames(store, predictor.ndim, max_frames, crop)
    scores = posterior_scores(predictor, frames)
    scale, temperature, best = min(scores, key=lambda r: r[2])
    paper = next(r[2] for r in scores if r[0] == 1.0 and r[1] == 1.0)
    log.info(
        "PN2V posterior tuned on %d frames: scale %.2g, temperature %.2g "
        "(next-frame MSE %.4g; the paper's posterior %.4g)",
        len(frames),
        scale,
        temperature,
        best,
        paper,
    )
    objective = dict(meta["objective"])
    objective["posterior"] = {
        "scale": scale,
        "temperature": temperature,
        "criterion": "next-frame MSE",
        "frames": len(frames),
        "scores": [list(r) for r in scores],
    }
    info = rewrite_objective(model_dir, model, meta, objective)
    return {
        "scale": scale,
        "temperature": temperature,
        "frames": len(frames),
        "scores": scores,
        "sha256": info["sha256"],
    }


def reset_posterior(model_dir: str | Path) -> str | None:
    """Drop a tuned posterior from the model's metadata (back to the paper's posterior).

    Returns the new ``sha256`` of model.pt, or ``None`` when there was nothing to drop.
    """

    model, meta = load_model(model_dir)
    objective = dict(meta.get("objective") or {})
    if objective.pop("posterior", None) is None:
        return None
    return str(rewrite_objective(model_dir, model, meta, objective)["sha256"])
