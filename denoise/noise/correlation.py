"""Spatial correlation of the noise, estimated from one variance-stabilised plane.

Some detectors do not give pixel-independent noise: the FMD wide-field camera images have a
lag-1 noise correlation near 0.6 and, after the Poisson-Gaussian fit (which reads the
diagonal Haar detail, where correlated noise has little power), about six times the pixel
variance the fit predicts.  BM3D told "white noise of variance 1" then hardly denoises (our
``bm3d_vst``: 23.0 dB on ``WideField_BPAE_G`` frame 1, 31.2 dB with the noise's power spectrum).

Estimate (:func:`estimate_noise_correlation`), on ``z``, the plane after the generalised
Anscombe transform of the fitted model (unit variance if the noise were white and the fit
right):

1. Cut ``z`` into non-overlapping ``block`` × ``block`` blocks; keep those with no pixel at the
   transform's floor (clipped) and a mean of at least ``min_photons`` photons (below that the
   transform does not stabilise and the variance reads low).
2. Remove a quadratic surface from every block (least squares), which takes smooth signal out.
3. Keep the ``quantile`` of blocks with the smallest residual variance (the flattest: residual
   texture would read as correlation) and average their autocovariance at lags up to
   ``radius`` pixels.

Selecting the flattest quarter reads the variance low where the correlation is long (fewer
independent samples per block spread the block variances): 10-20 % on synthetic noise blurred
by a Gaussian of width 0.7-1 px (lag-1 0.58-0.78; ``tests/noise/test_correlation.py``); on the
FMD wide-field frames the estimate (6.1-6.5, lag-1 0.59) agrees with the difference of two raw
frames of the field of view (6.2-7.9, lag-1 0.58-0.64).

The gate (:func:`noise_psd`): the estimate still carries some residual texture (on the FMD
confocal and two-photon frames, whose noise is nearly white, lag-1 correlation 0.05-0.08 from
the difference of two frames of one field of view, it reads lag-1 0.15-0.46 and variances
1.1-1.8), so the power spectrum is used only where the correlation is unmistakable: variance
at least ``min_variance`` (3), mean lag-1 correlation at least ``min_lag1`` (0.3), a short
range (lag 2 at most half of lag 1) and enough blocks; the FMD wide-field frames read 6.1-6.5,
0.59 and 0.11-0.18 at lag 2.  Without the range test the textured mean of a static synthetic
window (white noise, n_eff = 5) read variance 4.1, lag-1 0.67 and BM3D lost 4 dB.  Otherwise BM3D keeps the white model (``None``).
Measured: ``benchmarks/bm3d_psd.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from denoise.noise.vst import anscombe_forward

#: Fewer usable blocks than this cannot support an estimate (the white model is kept).
MIN_BLOCKS = 8


def _quadratic_residuals(blocks: np.ndarray) -> np.ndarray:
    """Blocks ``(n, b, b)`` minus their least-squares quadratic surfaces."""
    n, b, _ = blocks.shape
    yy, xx = np.mgrid[:b, :b].astype(np.float64)
    yy, xx = yy.ravel() / b, xx.ravel() / b
    a = np.stack([np.ones_like(yy), yy, xx, yy * yy, xx * xx, yy * xx], axis=1)
    flat = blocks.reshape(n, -1).T
    coef = np.linalg.lstsq(a, flat, rcond=None)[0]
    return (flat - a @ coef).T.reshape(n, b, b)


def estimate_noise_correlation(
    z: np.ndarray,
    radius: int = 4,
    block: int = 32,
    quantile: float = 0.25,
    min_photons: float = 2.0,
) -> dict[str, Any] | None:
    """Autocovariance of the noise of a stabilised plane ``z`` at lags ``|dy|, |dx| <= radius``.

    Returns ``{"acov": (2r+1, 2r+1) array (centre = lag 0), "variance", "lag1", "lag2"
    (correlations at 1 and 2 pixels, mean of y and x), "blocks" (kept)}``, or
    ``None`` when fewer than :data:`MIN_BLOCKS` blocks qualify (module docstring).
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"estimate_noise_correlation needs a (y, x) plane, got shape {z.shape}")
    ny, nx = z.shape[0] // block, z.shape[1] // block
    if ny * nx == 0:
        return None
    blocks = (
        z[: ny * block, : nx * block].reshape(ny, block, nx, block).transpose(0, 2, 1, 3)
    ).reshape(-1, block, block)
    floor = 2.0 * np.sqrt(0.375 + min_photons)  # the transform of min_photons photons
    ok = (blocks.min(axis=(1, 2)) > 0) & (blocks.mean(axis=(1, 2)) >= floor)
    if ok.sum() < MIN_BLOCKS:
        return None
    res = _quadratic_residuals(blocks[ok])
    var = res.var(axis=(1, 2))
    keep = res[var <= np.quantile(var, quantile)]
    if len(keep) < 2:
        return None
    r = radius
    acov = np.zeros((2 * r + 1, 2 * r + 1))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            a = keep[:, max(dy, 0) : block + min(dy, 0), max(dx, 0) : block + min(dx, 0)]
            b = keep[:, max(-dy, 0) : block + min(-dy, 0), max(-dx, 0) : block + min(-dx, 0)]
            acov[dy + r, dx + r] = float(np.mean(a * b))
    v = acov[r, r]
    lag = [0.5 * (acov[r, r + d] + acov[r + d, r]) / v if v > 0 else 0.0 for d in (1, 2)]
    return {
        "acov": acov, "variance": float(v), "lag1": float(lag[0]), "lag2": float(lag[1]),
        "blocks": len(keep),
    }  # fmt: skip


def psd_from_acov(acov: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Power spectrum of an image of ``shape`` with noise autocovariance ``acov``, in the
    convention of PyPI ``bm3d`` (``|FFT(kernel)|² · M · N``: white noise of variance σ² is
    the constant σ²·M·N), floored at 2 % of its mean (a truncated autocovariance can dip
    below zero at some frequencies)."""
    r = acov.shape[0] // 2
    w = np.zeros(shape)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            w[dy % shape[0], dx % shape[1]] = acov[dy + r, dx + r]
    p = np.real(np.fft.fft2(w))
    p = np.maximum(p, 0.02 * p.mean())
    return p * (shape[0] * shape[1])


#: The gate's thresholds (module docstring; measured on the FMD sets).
MIN_VARIANCE, MIN_LAG1, MAX_LAG2_RATIO, MIN_KEPT = 3.0, 0.3, 0.5, 16


def is_correlated(est: dict[str, Any] | None) -> bool:
    """The gate: is the noise of an :func:`estimate_noise_correlation` result clearly spatially
    correlated?  All of: ``variance >= 3``, ``lag1 >= 0.3``, ``lag2 <= 0.5 · lag1`` (short
    range, as detector cross-talk gives; texture left in the flattest blocks decays slowly:
    0.24-0.48 at lag 2 on the synthetic time-lapse and FMD confocal frames, against 0.11-0.18
    on the wide-field frames) and at least 16 blocks kept (a 256² flat area)."""
    return (
        est is not None
        and est["variance"] >= MIN_VARIANCE
        and est["lag1"] >= MIN_LAG1
        and est["lag2"] <= MAX_LAG2_RATIO * est["lag1"]
        and est["blocks"] >= MIN_KEPT
    )


def noise_psd(z: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The noise power spectrum to give BM3D for the stabilised plane ``z`` where
    :func:`is_correlated`, else ``None`` (the white model); plus what was measured
    (``variance``, ``lag1``, ``lag2``, ``blocks``, ``used``)."""
    est = estimate_noise_correlation(z)
    if est is None:
        return None, {"used": False, "reason": "too few flat blocks"}
    info = _summary(est)
    used = info.pop("correlated")
    return (psd_from_acov(est["acov"], z.shape) if used else None), {**info, "used": used}


def _summary(est: dict[str, Any]) -> dict[str, Any]:
    """An estimate without its autocovariance array, plus the gate's verdict."""
    out = {k: round(float(est[k]), 4) for k in ("variance", "lag1", "lag2")}
    return {**out, "blocks": est["blocks"], "correlated": is_correlated(est)}


def correlation_summary(plane: np.ndarray, p: dict[str, float]) -> dict[str, Any] | None:
    """What the noise stage records of one raw plane with fitted model ``p``: the estimate on
    its stabilised version (``variance`` in units of the fitted variance, ``lag1``, ``lag2``,
    ``blocks``) and ``correlated`` (:func:`is_correlated`); ``None`` without a positive gain or
    enough flat blocks."""
    if not p.get("gain", 0) > 0:
        return None
    z = anscombe_forward(plane, p["gain"], p["read_var"], p["offset"])
    est = estimate_noise_correlation(z)
    return None if est is None else _summary(est)
