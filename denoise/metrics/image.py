"""Full-reference image metrics: MSE, PSNR, SSIM and scale-and-offset-invariant PSNR.

Protocol (``shared/data/README.md``, review Box 1): everything in float64 on the stored values,
no rescaling, no clipping; ``PSNR = 10·log10(range(GT)² / MSE)`` with
``range(GT) = max(GT) − min(GT)`` unless a ``data_range`` is given.  ``psnr_255`` fixes the range
at 255 (what Noise2Fast / FM2S report for 8-bit data).
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)


def _pair(gt: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(gt, dtype=np.float64)
    y = np.asarray(x, dtype=np.float64)
    if g.shape != y.shape:
        raise ValueError(f"ground truth shape {g.shape} differs from image shape {y.shape}")
    if g.size == 0:
        raise ValueError("metrics of an empty image")
    return g, y


def gt_range(gt: np.ndarray) -> float:
    """``max(gt) − min(gt)`` in float64."""
    g = np.asarray(gt, dtype=np.float64)
    return float(g.max() - g.min())


def mse(gt: np.ndarray, x: np.ndarray) -> float:
    """Mean squared error in float64."""
    g, y = _pair(gt, x)
    return float(np.mean((g - y) ** 2))


def psnr_from_mse(err: float, data_range: float) -> float:
    """``10·log10(range² / mse)``; ``inf`` for a perfect match."""
    if err <= 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / err)


def psnr(gt: np.ndarray, x: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio (dB) of ``x`` against ``gt``.

    Parameters
    ----------
    gt, x
        Same-shaped arrays (any dtype; compared in float64, no clipping).
    data_range
        Peak value; default ``max(gt) − min(gt)``.
    """
    g, y = _pair(gt, x)
    r = gt_range(g) if data_range is None else float(data_range)
    return psnr_from_mse(float(np.mean((g - y) ** 2)), r)


def psnr_255(gt: np.ndarray, x: np.ndarray) -> float:
    """PSNR with the range fixed at 255 (the convention of the 8-bit denoising papers)."""
    return psnr(gt, x, 255.0)


def affine_fit(gt: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Least-squares ``a, b`` minimising ``‖gt − (a·x + b)‖²``."""
    g, y = _pair(gt, x)
    g, y = g.ravel(), y.ravel()
    ym, gm = y.mean(), g.mean()
    dy = y - ym
    denom = float(np.dot(dy, dy))
    a = float(np.dot(dy, g - gm) / denom) if denom > 0 else 0.0
    return a, float(gm - a * ym)


def si_psnr(gt: np.ndarray, x: np.ndarray, data_range: float | None = None) -> float:
    """Scale-and-offset-invariant PSNR: ``x`` replaced by its least-squares fit ``a·x + b`` to ``gt``.

    For acquisitions whose intensity scale or offset differs from the ground truth (paper 004).
    """
    a, b = affine_fit(gt, x)
    return psnr(gt, a * np.asarray(x, dtype=np.float64) + b, data_range)


def ssim(gt: np.ndarray, x: np.ndarray, data_range: float | None = None) -> float:
    """Structural similarity (Wang et al. 2004), averaged over the 2D ``y x`` planes.

    scikit-image's ``structural_similarity`` with ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False`` (the settings of the papers), computed per plane in float64.

    Parameters
    ----------
    gt, x
        Same-shaped arrays with ``y x`` as the last two axes.
    data_range
        Dynamic range; default ``max(gt) − min(gt)`` over the whole array.
    """
    from skimage.metrics import structural_similarity

    g, y = _pair(gt, x)
    if g.ndim < 2:
        raise ValueError(f"SSIM needs images with y and x axes, got shape {g.shape}")
    r = gt_range(g) if data_range is None else float(data_range)
    if r <= 0:
        raise ValueError("SSIM of a constant ground truth needs an explicit data_range > 0")
    gp = g.reshape(-1, *g.shape[-2:])
    yp = y.reshape(-1, *y.shape[-2:])
    vals = [
        structural_similarity(
            a, b, data_range=r, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        for a, b in zip(gp, yp, strict=True)
    ]
    return float(np.mean(vals))
