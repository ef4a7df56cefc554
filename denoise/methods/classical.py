"""Classical baselines as plane predictors: Gaussian filter and BM3D after a variance-stabilising transform.

Both follow the ``PlanePredictor`` contract of ``docs/architecture.md``: ``ndim = 2``,
``output_names = ("denoised",)``, and ``predictor(plane, index)`` maps a ``(y, x)`` float32
plane in raw units to a ``(1, y, x)`` float32 array in raw units.

:func:`masked_pixel_score` (the blind-spot self-supervised loss of any denoiser, usable without
ground truth) lives here because the Gaussian method needs it to choose its σ; the metrics
package re-exports it for ranking methods.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import numpy as np
from pydantic import Field
from scipy import ndimage

from denoise.methods.registry import MethodSpec
from denoise.noise.correlation import noise_psd as noise_psd_for
from denoise.noise.poisson_gaussian import channel_params
from denoise.noise.vst import anscombe_forward, anscombe_inverse
from denoise.settings import Strict

log = logging.getLogger(__name__)

#: σ grid (pixels) searched when the Gaussian method chooses σ without ground truth.
SIGMA_GRID: tuple[float, ...] = tuple(round(0.5 + 0.1 * i, 1) for i in range(26))


def blind_spot_mask(
    shape: tuple[int, int], fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified random pixel subset: one pixel in every ``k × k`` cell, ``k ≈ 1/√fraction``.

    Returns
    -------
    yy, xx
        Integer coordinates of the masked pixels.
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"mask fraction must be in (0, 0.5], got {fraction}")
    k = max(2, round(1.0 / math.sqrt(fraction)))
    ny, nx = shape
    cy, cx = np.arange(0, ny, k), np.arange(0, nx, k)
    yy = cy[:, None] + rng.integers(0, k, (cy.size, cx.size))
    xx = cx[None, :] + rng.integers(0, k, (cy.size, cx.size))
    ok = (yy < ny) & (xx < nx)
    return yy[ok], xx[ok]


def mask_with_neighbours(
    x: np.ndarray, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, radius: int = 2
) -> np.ndarray:
    """Copy of ``x`` whose pixels ``(yy, xx)`` hold a random neighbour's value.

    The neighbour is drawn uniformly from the ``(2·radius + 1)²`` window minus its centre
    (Noise2Void's replacement), clamped at the image border.
    """
    ny, nx = x.shape
    off = rng.integers(-radius, radius + 1, (yy.size, 2))
    centre = (off == 0).all(axis=1)
    off[centre, 0] = np.where(yy[centre] + 1 < ny, 1, -1)
    out = np.array(x, copy=True)
    out[yy, xx] = x[np.clip(yy + off[:, 0], 0, ny - 1), np.clip(xx + off[:, 1], 0, nx - 1)]
    return out


def masked_pixel_score(
    noisy: np.ndarray,
    denoise_fn: Callable[[np.ndarray], np.ndarray],
    fraction: float = 1 / 16,
    seed: int = 0,
    passes: int = 1,
) -> float:
    """Blind-spot self-supervised loss of a denoiser on held-out masked pixels (no ground truth).

    A stratified random ``fraction`` of the pixels is replaced by random neighbours' values, the
    masked image is denoised with ``denoise_fn`` and the squared difference to the *noisy* value
    is averaged over the masked pixels.  The prediction at a masked pixel never saw that pixel's
    noise, so for pixel-independent noise the score estimates ``MSE(prediction, signal) +
    mean noise variance``: lower is better, and scores of different methods on the same data and
    seed are directly comparable.  Spatially correlated noise leaks through the neighbours and
    flatters methods that smooth less.

    Parameters
    ----------
    noisy
        One ``(y, x)`` plane.
    denoise_fn
        Maps a ``(y, x)`` float array to a same-shaped denoised array.
    fraction
        Fraction of pixels masked per pass (one per ``k × k`` cell, ``k = round(1/√fraction)``).
    seed
        Seed of the mask and the replacement draws (use the same seed to compare methods).
    passes
        Independent masks averaged.
    """
    x = np.asarray(noisy, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"masked_pixel_score works on 2D (y x) planes, got shape {x.shape}")
    rng = np.random.default_rng(seed)
    total, count = 0.0, 0
    for _ in range(passes):
        yy, xx = blind_spot_mask(x.shape, fraction, rng)
        masked = mask_with_neighbours(x, yy, xx, rng)
        pred = np.asarray(denoise_fn(masked), dtype=np.float64)
        if pred.shape != x.shape:
            raise ValueError(f"denoise_fn returned shape {pred.shape}, expected {x.shape}")
        total += float(np.sum((pred[yy, xx] - x[yy, xx]) ** 2))
        count += yy.size
    return total / count


def choose_gaussian_sigma(
    plane: np.ndarray, grid: Sequence[float] = SIGMA_GRID, fraction: float = 1 / 16, seed: int = 0
) -> tuple[float, list[float]]:
    """σ of the Gaussian filter minimising :func:`masked_pixel_score` on ``plane`` (same mask for all σ).

    Returns
    -------
    sigma, scores
        The chosen σ and the score of every grid value.
    """
    x = np.asarray(plane, dtype=np.float64)
    rng = np.random.default_rng(seed)
    yy, xx = blind_spot_mask(x.shape, fraction, rng)
    masked = mask_with_neighbours(x, yy, xx, rng)
    target = x[yy, xx]
    scores = []
    for s in grid:
        pred = ndimage.gaussian_filter(masked, float(s), mode="reflect")
        scores.append(float(np.mean((pred[yy, xx] - target) ** 2)))
    return float(grid[int(np.argmin(scores))]), scores


class GaussianPredictor:
    """Gaussian low-pass filter; σ fixed, or chosen per plane without ground truth.

    Parameters
    ----------
    sigma
        Filter σ in pixels; ``None`` chooses it per plane by minimising the blind-spot score
        (:func:`choose_gaussian_sigma`, grid 0.5–3.0 px in steps of 0.1).
    noise_params
        Optional noise model (a full noise-model result or one channel's dict); used only to
        report the estimated MSE against the signal (score minus predicted noise variance).
    seed
        Seed of the blind-spot masks.
    """

    ndim = 2
    kind = "plane"
    halo_t = 0
    output_names: tuple[str, ...] = ("denoised",)

    def __init__(
        self, sigma: float | None = None, noise_params: dict[str, Any] | None = None, seed: int = 0
    ) -> None:
        if sigma is not None and not sigma > 0:
            raise ValueError(f"Gaussian σ must be > 0 pixels, got {sigma}")
        self.sigma = sigma
        self.noise_params = noise_params
        self.seed = seed
        #: Per plane (key: sorted ``index`` items as text): chosen σ and its score.
        self.chosen: dict[str, dict[str, float]] = {}

    def __call__(self, plane: np.ndarray, index: dict[str, int]) -> np.ndarray:
        x = np.asarray(plane, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"GaussianPredictor works on (y, x) planes, got shape {x.shape}")
        sigma = self.sigma
        if sigma is None:
            sigma, scores = choose_gaussian_sigma(x, seed=self.seed)
            info: dict[str, float] = {"sigma": sigma, "score": min(scores)}
            if self.noise_params is not None:
                p = channel_params(self.noise_params, int(index.get("c", 0)))
                noise_var = float(
                    np.mean(p["gain"] * np.maximum(x - p["offset"], 0) + p["read_var"])
                )
                info["estimated_mse"] = min(scores) - noise_var
            self.chosen[_index_key(index)] = info
            log.info(
                "gaussian: plane %s σ = %.1f px (blind-spot score %.4g)", index, sigma, min(scores)
            )
        out = ndimage.gaussian_filter(x, float(sigma), mode="reflect")
        return out.astype(np.float32)[None]


def _index_key(index: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(index.items())) or "plane"


class Bm3dVstPredictor:
    """BM3D after a generalised Anscombe transform with the fitted Poisson-Gaussian model.

    The plane is stabilised to unit noise variance, BM3D (PyPI ``bm3d``, imported lazily) runs
    with σ = 1, and the unbiased inverse returns raw units.

    Parameters
    ----------
    noise_params
        A full noise-model result (the plane's ``index["c"]`` selects the channel) or one
        channel's ``{"gain", "read_var", "offset"}``.
    """

    ndim = 2
    kind = "plane"
    halo_t = 0
    output_names: tuple[str, ...] = ("denoised",)

    def __init__(self, noise_params: dict[str, Any] | None, noise_psd: str = "auto") -> None:
        if noise_psd not in NOISE_PSD:
            raise ValueError(f"bm3d_vst: noise_psd must be one of {NOISE_PSD}, got {noise_psd!r}")
        self.noise_psd = noise_psd
        if noise_params is None:
            raise ValueError(
                "method bm3d_vst needs the fitted noise model (gain, read_var, offset): "
                "run the noise_model stage first and pass its JSON"
            )
        channel_params(noise_params, 0)  # validate early, with a clear message
        self.noise_params = noise_params
        self._bm3d = import_bm3d()
        #: Seconds spent in BM3D per plane (key: sorted ``index`` items as text).
        self.seconds: dict[str, float] = {}
        #: Per plane: the noise-correlation estimate and whether its spectrum was used.
        self.psd_info: dict[str, dict[str, Any]] = {}

    def __call__(self, plane: np.ndarray, index: dict[str, int]) -> np.ndarray:
        x = np.asarray(plane, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"Bm3dVstPredictor works on (y, x) planes, got shape {x.shape}")
        p = channel_params(self.noise_params, int(index.get("c", 0)))
        t0 = time.perf_counter()
        info: dict[str, Any] = {}
        out = bm3d_vst(x, p, self._bm3d, self.noise_psd, info)
        self.seconds[_index_key(index)] = time.perf_counter() - t0
        self.psd_info[_index_key(index)] = info
        return out.astype(np.float32)[None]


def bm3d_vst(
    plane: np.ndarray,
    p: dict[str, float],
    bm3d: Any,
    noise_psd: str = "auto",
    info: dict[str, Any] | None = None,
) -> np.ndarray:
    """BM3D+VST of one ``(y, x)`` plane with noise ``{"gain", "read_var", "offset"}``: the
    generalised Anscombe transform to unit variance, ``bm3d.bm3d``, the unbiased inverse.

    ``noise_psd="auto"`` gives BM3D the noise power spectrum measured on the stabilised plane
    where the noise is clearly spatially correlated
    (:func:`denoise.noise.correlation.noise_psd`), σ = 1 (white) otherwise; ``"white"``
    always σ = 1.  ``info`` (if given) receives what was measured.

    The one code path of ``bm3d_vst`` and ``window_bm3d_vst`` (which passes the parameters of
    a mean of frames, :func:`denoise.methods.window_bm3d_vst.mean_noise_params`).
    """
    if not p["gain"] > 0:
        raise ValueError(f"BM3D+VST needs a positive noise-model gain, got {p['gain']}")
    z = anscombe_forward(plane, p["gain"], p["read_var"], p["offset"])
    psd, measured = noise_psd_for(z) if noise_psd == "auto" else (None, {"used": False})
    if info is not None:
        info.update(measured)
    d = np.asarray(bm3d.bm3d(z, sigma_psd=1.0 if psd is None else psd), dtype=np.float64)
    return anscombe_inverse(d, p["gain"], p["read_var"], p["offset"])


def import_bm3d(method: str = "bm3d_vst") -> Any:
    try:
        import bm3d
    except ImportError as exc:
        raise ImportError(
            f"method {method} needs the optional package bm3d: pip install bm3d"
        ) from exc
    if not hasattr(np, "trapz"):
        # bm3d 4.0.3's coloured-noise path calls np.trapz, removed in NumPy 2.4.
        setattr(np, "trapz", np.trapezoid)  # noqa: B010
    return bm3d


#: ``methods.bm3d_vst.noise_psd``: the measured spectrum where the noise is correlated, or white.
NoisePsd = Literal["auto", "white"]
NOISE_PSD: tuple[str, ...] = get_args(NoisePsd)


class Bm3dVstSettings(Strict):
    """``methods.bm3d_vst``: BM3D after the generalised Anscombe transform."""

    noise_psd: NoisePsd = Field(
        "auto",
        description=(
            "auto: give BM3D the noise power spectrum measured on each plane where the noise "
            "is clearly spatially correlated (FMD wide-field frames: +6.5 to +8.2 dB), white "
            "otherwise; white: always the white-noise model."
        ),
    )


class GaussianSettings(Strict):
    """``methods.gaussian``: the Gaussian baseline."""

    sigma: float | None = Field(
        None, gt=0, description="σ in pixels; None chooses it per plane without ground truth."
    )


METHODS = (
    MethodSpec(
        name="gaussian",
        kind="classical",
        summary="Gaussian filter; σ chosen per plane without ground truth (blind-spot score)",
        settings=GaussianSettings,
        predictor=lambda r: GaussianPredictor(r.settings.sigma, r.noise_model),
    ),
    MethodSpec(
        name="bm3d_vst",
        kind="classical",
        summary=(
            "BM3D after a generalised Anscombe transform built from the fitted "
            "Poisson-Gaussian model (`bm3d` is in the `classical` extra)"
        ),
        settings=Bm3dVstSettings,
        predictor=lambda r: Bm3dVstPredictor(r.noise_model, r.settings.noise_psd),
    ),
)

