"""Poisson-Gaussian noise model estimated from the noisy data alone.

Model (review Box 2; Foi et al. 2008): a pixel with clean value ``s`` (raw units) reads

    x = gain · Poisson((s − offset) / gain) + offset + N(0, read_var),

so ``E[x | s] = s`` and ``Var[x | s] = gain · (s − offset) + read_var``.

Estimation, per channel:

1. Random chunks of the store are read until ``cfg.max_samples`` pixels are in hand (never the
   whole array).  Every chunk is cut into 2D ``y x`` planes.
2. Each plane is cut into non-overlapping 2×2 cells and Haar-transformed (orthonormal bands
   ``LL``, ``LH``, ``HL``, ``HH``), at all four grid phases (shifts of 0/1 pixel in y and x),
   and the cells are grouped into ``cfg.block`` × ``cfg.block`` blocks.  A block's *level* is
   the mean of its pixels; its *noise variance* is the mean of ``HH²``, the diagonal detail
   ``(x[i,j] − x[i,j+1] − x[i+1,j] + x[i+1,j+1]) / 2``, which cancels constant levels, linear
   ramps and edges aligned with the axes and, for pixel-independent noise, has the average of
   the four pixels' variances (the model is linear in ``s``, so averaging keeps it exact).
3. Blocks containing a clipped pixel (the integer dtype's limits, or a sample extreme that
   occurs as an over-represented spike, i.e. saturation) are dropped.
4. Blocks are grouped into equal-count bins of level.  Within each bin the fraction
   ``cfg.smooth_quantile`` with the lowest *structure score* is kept — the mean of
   ``LH² + HL²`` plus the squared ``LL`` gradient between neighbouring cells, bands that are
   uncorrelated with ``HH``, so the choice does not bias the variance — together with every
   block whose score is within what pure noise produces (ranking featureless blocks would only
   rank the noise; for Poisson noise that picks low counts and biases the variance low).
   Selecting per bin keeps every intensity level represented.
5. Per bin: mean level and mean noise variance.  ``var = gain · mean + intercept`` is fitted by
   iteratively reweighted least squares with weights ``n / var_fit²`` (the sampling variance of
   a variance estimate) and Huber down-weighting of outlying bins.

Limits (measured with ``benchmarks/noise_estimator.py``): the read noise is identifiable only
when some pixels are dark enough that ``gain·(s − offset)`` is comparable to ``read_var``;
spatially correlated noise (e.g. FMD confocal scans) has less power in the diagonal detail
than its pixel variance, so there the fitted variance reads low (4–36 % on the FMD pairs).

Identifiability and the ``offset`` convention: the data determine only the line
``var = gain · mean + intercept`` (``intercept = read_var − gain · offset``); a black level and a
read noise cannot be told apart from the variance curve.  We report the *minimal-offset*
parametrisation of that same line: ``offset = 0, read_var = intercept`` when the intercept is
non-negative, otherwise ``read_var = 0, offset = −intercept / gain`` (the level at which the
variance would vanish).  Consumers that only need the variance curve (VST, likelihoods) get the
same answer either way; the fitted ``intercept`` is reported too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from denoise.io.omezarr import open_image
from denoise.noise.correlation import correlation_summary
from denoise.settings import NoiseModelConfig

log = logging.getLogger(__name__)

#: Fewer usable blocks than this cannot support a reliable fit.
MIN_BLOCKS = 64
#: Fewer bins than this cannot support a reliable line fit.
MIN_BINS = 4
#: Target number of blocks per level bin (bins are equal-count).
BLOCKS_PER_BIN = 60
MAX_BINS = 64
#: Smallest y x window read from a chunk when the sample budget is nearly spent.
_MIN_WINDOW = 64
#: Structure score of a block of pure noise is ≈ 4 × its variance; 1.6× that is its 99th
#: percentile (measured on Gaussian and low-count Poisson noise).
NOISE_SCORE = 4.0 * 1.6


def _clip_levels(samples: Sequence[np.ndarray], dtype: np.dtype) -> list[float]:
    """Values treated as clipped: integer dtype limits plus over-represented sample extremes."""
    levels: set[float] = set()
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        levels.update((float(info.min), float(info.max)))
    lo = min(float(np.min(s)) for s in samples)
    hi = max(float(np.max(s)) for s in samples)
    n = sum(s.size for s in samples)
    for v in (lo, hi):
        count = sum(int(np.count_nonzero(s == v)) for s in samples)
        # A saturated detector piles pixels onto one extreme value; noise alone does not.
        if count >= max(10, 1e-3 * n):
            levels.add(v)
    return sorted(levels)


def block_statistics(
    plane: np.ndarray, block: int, clip_levels: Sequence[float] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level, noise variance and structure score of blocks at all four 2×2 grid phases.

    :func:`haar_block_statistics` is run on the plane shifted by 0 or 1 pixel in ``y`` and
    ``x``, so every pixel pair contributes a diagonal detail (four times the coefficients of a
    single grid) while each block's score stays independent of its own variance.

    Parameters
    ----------
    plane
        One ``y x`` plane (raw units).
    block
        Block edge in pixels (rounded down to an even number of at least 4).
    clip_levels
        Pixel values that mark clipping; blocks containing them are dropped.

    Returns
    -------
    mean, var, score
        1-D float64 arrays, one entry per kept block (all phases concatenated).
    """
    p = np.asarray(plane, dtype=np.float64)
    parts = [
        haar_block_statistics(p[dy:, dx:], block, clip_levels) for dy in (0, 1) for dx in (0, 1)
    ]
    return tuple(np.concatenate([q[i] for q in parts]) for i in range(3))  # type: ignore[return-value]


def haar_block_statistics(
    plane: np.ndarray, block: int, clip_levels: Sequence[float] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level, noise variance and structure score of every unclipped block of one plane.

    The plane is cut into non-overlapping 2×2 cells and Haar-transformed (orthonormal):
    ``LL`` (level), ``LH``/``HL`` (horizontal/vertical detail) and ``HH`` (diagonal detail).
    The noise variance of a block is the mean of ``HH²``; its structure score is the mean of
    ``LH² + HL²`` plus the squared gradient of ``LL`` between neighbouring cells.  For noise of
    locally constant variance the four Haar bands are uncorrelated, so choosing blocks by their
    score does not bias their ``HH`` variance (a score built from the same detail would prefer
    blocks whose noise happened to come out low or high).

    Parameters
    ----------
    plane
        One ``y x`` plane (raw units).
    block
        Block edge in pixels (rounded down to an even number of at least 4).
    clip_levels
        Pixel values that mark clipping; blocks containing them are dropped.

    Returns
    -------
    mean, var, score
        1-D float64 arrays, one entry per kept block.
    """
    p = np.asarray(plane, dtype=np.float64)
    cells = max(2, block // 2)
    ny, nx = p.shape[0] // (2 * cells), p.shape[1] // (2 * cells)
    if ny < 1 or nx < 1:
        empty = np.empty(0)
        return empty, empty, empty
    p = p[: ny * 2 * cells, : nx * 2 * cells]
    a, b, c, d = p[0::2, 0::2], p[0::2, 1::2], p[1::2, 0::2], p[1::2, 1::2]
    ll = 0.5 * (a + b + c + d)
    hh = 0.5 * (a - b - c + d)
    lh = 0.5 * (a + b - c - d)
    hl = 0.5 * (a - b + c - d)
    gy = np.zeros_like(ll)
    gx = np.zeros_like(ll)
    gy[:-1] = np.diff(ll, axis=0) ** 2
    gx[:, :-1] = np.diff(ll, axis=1) ** 2
    # Each difference of two LL cells carries twice the noise variance; halve it so every term
    # of the score sits at one noise variance for pure noise.
    structure = lh * lh + hl * hl + 0.5 * (gy + gx)

    def blocks(arr: np.ndarray) -> np.ndarray:
        return arr.reshape(ny, cells, nx, cells).mean(axis=(1, 3)).ravel()

    mean = blocks(ll) / 2.0
    var = blocks(hh * hh)
    score = blocks(structure)
    keep = var > 0
    if len(clip_levels):
        clipped = np.isin(p, np.asarray(clip_levels, dtype=np.float64))
        if clipped.any():
            hit = clipped.reshape(ny, 2 * cells, nx, 2 * cells).any(axis=(1, 3)).ravel()
            keep &= ~hit
    return mean[keep], var[keep], score[keep]


def _as_planes(x: np.ndarray) -> list[np.ndarray]:
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"noise model needs at least a 2D (y x) image, got shape {x.shape}")
    return list(x.reshape(-1, *x.shape[-2:]))


def _fit_line(m: np.ndarray, v: np.ndarray, n: np.ndarray, iters: int = 30) -> tuple[float, float]:
    """Robust weighted fit of ``v = a·m + c`` (IRLS, weights n/v², Huber on standardised residuals)."""
    a_mat = np.stack([m, np.ones_like(m)], axis=1)
    w = n / np.maximum(v, 1e-12) ** 2
    coef = np.linalg.lstsq(a_mat * np.sqrt(w)[:, None], v * np.sqrt(w), rcond=None)[0]
    for _ in range(iters):
        pred = np.maximum(a_mat @ coef, 1e-3 * np.max(np.abs(v)))
        base = n / pred**2
        z = (v - pred) * np.sqrt(base)
        scale = 1.4826 * np.median(np.abs(z - np.median(z)))
        if not np.isfinite(scale) or scale <= 0:
            scale = 1.0
        k = 1.345 * scale
        huber = np.where(np.abs(z) <= k, 1.0, k / np.maximum(np.abs(z), 1e-12))
        w = base * huber
        new = np.linalg.lstsq(a_mat * np.sqrt(w)[:, None], v * np.sqrt(w), rcond=None)[0]
        if np.allclose(new, coef, rtol=1e-9, atol=1e-12):
            coef = new
            break
        coef = new
    return float(coef[0]), float(coef[1])


def fit_block_statistics(
    mean: np.ndarray, var: np.ndarray, score: np.ndarray, cfg: NoiseModelConfig, signal_mean: float
) -> dict[str, Any]:
    """Bin blocks by level, keep the smoothest per bin and fit the variance line.

    Raises
    ------
    ValueError
        When too few blocks or bins remain for a reliable fit.
    """
    need = MIN_BLOCKS
    if mean.size < need:
        raise ValueError(
            f"noise model fit on too few pixels: {mean.size} blocks, need ≥ {need}; "
            "use a larger image or smaller block"
        )
    order = np.argsort(mean, kind="stable")
    n_bins = int(np.clip(mean.size // max(BLOCKS_PER_BIN, 1), MIN_BINS, MAX_BINS))
    bm, bv, bn = [], [], []
    for idx in np.array_split(order, n_bins):
        if idx.size == 0:
            continue
        k = max(1, math.ceil(cfg.smooth_quantile * idx.size))
        smooth = np.zeros(idx.size, dtype=bool)
        smooth[np.argsort(score[idx], kind="stable")[:k]] = True
        # Featureless blocks are all kept: ranking them would rank the noise itself, and for
        # Poisson noise a low score means a low count, hence a low variance (biased low).
        smooth |= score[idx] <= NOISE_SCORE * np.median(var[idx])
        sel = idx[smooth]
        bm.append(float(mean[sel].mean()))
        bv.append(float(var[sel].mean()))
        bn.append(float(sel.size))
    m_arr, v_arr, n_arr = np.array(bm), np.array(bv), np.array(bn)
    if m_arr.size < MIN_BINS or float(np.ptp(m_arr)) <= 0:
        raise ValueError(
            f"noise model fit on too few pixels: {mean.size} blocks in {m_arr.size} distinct level "
            f"bins, need ≥ {MIN_BINS} bins spanning a range of intensities; "
            "use a larger image or smaller block"
        )
    gain, intercept = _fit_line(m_arr, v_arr, n_arr)
    if gain <= 0:
        log.warning("fitted gain %.4g ≤ 0: the variance does not grow with intensity", gain)
    if intercept >= 0 or gain <= 0:
        read_var, offset = max(intercept, 0.0), 0.0
    else:
        read_var, offset = 0.0, -intercept / gain
    sig = max(signal_mean - offset, 0.0)
    noise_var = max(gain * sig + read_var, 1e-12)
    # SNR of the mean level: (mean − offset)² over the predicted noise variance there; None
    # when the mean sits at or below the black level (JSON has no infinity).
    snr_db = 10.0 * math.log10(sig * sig / noise_var) if sig > 0 else None
    return {
        "gain": gain,
        "read_var": read_var,
        "offset": offset,
        "intercept": intercept,
        "n_blocks": int(n_arr.sum()),
        "n_blocks_total": int(mean.size),
        "snr_db": snr_db,
        "bins": {"mean": m_arr.tolist(), "var": v_arr.tolist(), "n": n_arr.astype(int).tolist()},
    }


def estimate_from_array(x: np.ndarray, cfg: NoiseModelConfig, seed: int = 0) -> dict[str, Any]:
    """Fit the Poisson-Gaussian model to one channel's samples.

    Parameters
    ----------
    x
        ``(..., y, x)`` raw samples of one channel; leading axes are stacked planes.
    cfg
        Block edge, sampling cap and smooth-block fraction.
    seed
        Seed for the plane subsampling applied when ``x`` holds more than ``cfg.max_samples``.

    Returns
    -------
    dict
        ``gain``, ``read_var``, ``offset``, ``intercept``, ``n_blocks``, ``snr_db``, ``bins``.
    """
    planes = _as_planes(x)
    total = sum(p.size for p in planes)
    if total > cfg.max_samples and len(planes) > 1:
        rng = np.random.default_rng(seed)
        per = planes[0].size
        keep = max(1, cfg.max_samples // per)
        idx = np.sort(rng.choice(len(planes), size=min(keep, len(planes)), replace=False))
        planes = [planes[i] for i in idx]
    return _estimate_planes(planes, np.asarray(x).dtype, cfg)


def _estimate_planes(
    planes: list[np.ndarray], dtype: np.dtype, cfg: NoiseModelConfig
) -> dict[str, Any]:
    lo = min(float(np.min(p)) for p in planes)
    if lo == max(float(np.max(p)) for p in planes):
        raise ValueError(
            f"the image is constant (every sampled pixel is {lo:g}), so there is no noise to "
            "model (too few pixels: 0 blocks with any variation); check the acquisition "
            "(blank or saturated frames?) or remove the dataset"
        )
    clip = _clip_levels(planes, dtype)
    stats = [block_statistics(p, cfg.block, clip) for p in planes]
    mean = np.concatenate([s[0] for s in stats])
    var = np.concatenate([s[1] for s in stats])
    score = np.concatenate([s[2] for s in stats])
    signal_mean = float(np.mean([np.mean(p, dtype=np.float64) for p in planes]))
    out = fit_block_statistics(mean, var, score, cfg, signal_mean)
    out["clip_levels"] = clip
    out["n_pixels"] = int(sum(p.size for p in planes))
    log.info(
        "noise model: gain %.4g, read_var %.4g, offset %.4g from %d blocks",
        out["gain"],
        out["read_var"],
        out["offset"],
        out["n_blocks"],
    )
    out["spatial_correlation"] = _correlation(planes, out)
    return out


def _correlation(planes: list[np.ndarray], fit: dict[str, Any]) -> dict[str, Any] | None:
    """The noise-correlation summary of the largest sampled plane
    (:func:`denoise.noise.correlation.correlation_summary`); warns when it is correlated."""
    big = max(planes, key=lambda q: q.size)
    out = correlation_summary(np.asarray(big, dtype=np.float64), fit)
    if out is not None and out["correlated"]:
        log.warning(
            "the noise is spatially correlated (lag-1 correlation %.2f, %.1fx the variance the "
            "pixel-wise fit reads): a pixel blind spot leaves most of it (FMD wide-field: N2V "
            "22.85 dB, noisy 22.32); n2v, n2v2 and spatiotemporal widen theirs (mask_radius "
            "auto: 29.07, 33.20), bm3d_vst uses the measured noise spectrum (31.07); pn2v "
            "assumes pixel-independent noise",
            out["lag1"],
            out["variance"],
        )
    return out


def _sample_channel(
    arr: Any, axes: str, c: int | None, cfg: NoiseModelConfig, rng: np.random.Generator
) -> list[np.ndarray]:
    """Read random chunks of one channel until ``cfg.max_samples`` pixels are in hand.

    Chunks are visited in random order and read whole while they fit the remaining budget;
    the last one is trimmed (fewer planes, then a random ``y x`` window of at least 64²), so
    at most ``max_samples`` pixels are held (or one 64² window, if that is more).
    """
    chunks = arr.chunks
    ci = axes.index("c") if "c" in axes else None
    iy, ix = axes.index("y"), axes.index("x")
    lead = [d for d in range(len(axes)) if d not in (ci, iy, ix)]
    shape_grid = [math.ceil(n / ch) for n, ch in zip(arr.shape, chunks, strict=True)]
    if ci is not None:
        shape_grid[ci] = 1
    order = rng.permutation(int(np.prod(shape_grid)))
    planes: list[np.ndarray] = []
    got = 0
    for flat in order:
        remaining = cfg.max_samples - got
        if remaining <= 0 or (got and remaining < _MIN_WINDOW**2):
            break
        pos = np.unravel_index(int(flat), shape_grid)
        bounds = []
        for d, (p, ch, n) in enumerate(zip(pos, chunks, arr.shape, strict=True)):
            bounds.append((c, c + 1) if d == ci else (int(p) * ch, min((int(p) + 1) * ch, n)))
        area = (bounds[iy][1] - bounds[iy][0]) * (bounds[ix][1] - bounds[ix][0])
        n_planes = int(np.prod([bounds[d][1] - bounds[d][0] for d in lead])) if lead else 1
        if n_planes * area > remaining:
            keep = max(1, remaining // area)
            for d in lead:  # one random index on every leading axis but the last, ...
                lo, hi = bounds[d]
                take = min(hi - lo, keep) if d == lead[-1] else 1
                start = lo + int(rng.integers(0, hi - lo - take + 1))
                bounds[d] = (start, start + take)
            if area > remaining:  # ... and a random y x window when one plane is too big
                side = max(_MIN_WINDOW, math.isqrt(remaining))
                for d in (iy, ix):
                    lo, hi = bounds[d]
                    take = min(hi - lo, side)
                    start = lo + int(rng.integers(0, hi - lo - take + 1))
                    bounds[d] = (start, start + take)
        block = np.asarray(arr[tuple(slice(lo, hi) for lo, hi in bounds)])
        planes.extend(_as_planes(block))
        got += block.size
    return planes


def estimate_poisson_gaussian(
    store: str | Path | list[str | Path], cfg: NoiseModelConfig, seed: int
) -> dict[str, Any]:
    """Estimate the noise model of every channel of an OME-Zarr image.

    Parameters
    ----------
    store
        OME-Zarr image (level ``s0`` is read, a random subset of whole chunks per channel), or
        the stores of a sheet group (one fit to all of them: each store gives a share of
        ``cfg.max_samples`` in proportion to its size).
    cfg
        :class:`~denoise.config.NoiseModelConfig`.
    seed
        Seed of the chunk sampling (same seed, same result).

    Returns
    -------
    dict
        ``{"channels": [per-channel fit, ...], "axes", "shape", "dtype", "block",
        "max_samples", "seed", "model", "convention"}``; JSON-serialisable (``axes``/``shape``
        are the first store's; a group adds ``stores``).
    """
    stores = list(store) if isinstance(store, list | tuple) else [store]
    images = [open_image(s) for s in stores]
    arr, axes = images[0]
    n_c = arr.shape[axes.index("c")] if "c" in axes else 1
    sizes = [float(np.prod(a.shape, dtype=np.float64)) for a, _ in images]
    channels = []
    for c in range(n_c):
        rng = np.random.default_rng([seed, c])
        planes: list[np.ndarray] = []
        for (a, ax), size in zip(images, sizes, strict=True):
            share = cfg.model_copy(
                update={"max_samples": max(1, int(cfg.max_samples * size / sum(sizes)))}
            )
            planes += _sample_channel(a, ax, c if "c" in ax else None, share, rng)
        try:
            fit = _estimate_planes(planes, np.dtype(arr.dtype), cfg)
        except ValueError as exc:
            raise ValueError(f"{'; '.join(map(str, stores))} channel {c}: {exc}") from None
        fit["channel"] = c
        channels.append(fit)
    out = {
        "model": "poisson_gaussian",
        "convention": "var = gain * (mean - offset) + read_var; minimal-offset parametrisation of the fitted line",
        "axes": axes,
        "shape": [int(s) for s in arr.shape],
        "dtype": str(arr.dtype),
        "block": cfg.block,
        "max_samples": cfg.max_samples,
        "smooth_quantile": cfg.smooth_quantile,
        "seed": seed,
        "channels": channels,
    }
    if len(stores) > 1:
        out["stores"] = [str(s) for s in stores]
    return out


def predicted_variance(params: dict[str, Any], mean: np.ndarray | float) -> np.ndarray:
    """Noise variance the model predicts at clean level ``mean`` (raw units)."""
    m = np.asarray(mean, dtype=np.float64)
    return params["gain"] * np.maximum(m - params["offset"], 0.0) + params["read_var"]


def channel_params(noise_params: dict[str, Any], channel: int = 0) -> dict[str, float]:
    """``{"gain", "read_var", "offset"}`` of one channel from a full result or a channel dict."""
    if "channels" in noise_params:
        chans = noise_params["channels"]
        if not 0 <= channel < len(chans):
            raise ValueError(
                f"noise model has {len(chans)} channel(s); channel {channel} requested"
            )
        noise_params = chans[channel]
    missing = [k for k in ("gain", "read_var", "offset") if k not in noise_params]
    if missing:
        raise ValueError(f"noise parameters lack {missing}; expected gain, read_var and offset")
    return {k: float(noise_params[k]) for k in ("gain", "read_var", "offset")}


def phantom(shape: tuple[int, int] = (512, 512), seed: int = 0) -> np.ndarray:
    """Fluorescence-like clean test image (≥ 0, 99.9th percentile 1): blobs, sharp-edged cells.

    A dark background with a faint ramp (0 to 0.2 % of the peak), Gaussian blobs of radius
    2–12 px and elliptical cells with sharp edges, used to check the estimator on data with
    known noise and both kinds of structure (smooth intensity changes and edges).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    img = np.tile(0.002 * np.arange(nx, dtype=np.float64) / nx, (ny, 1))
    for _ in range(max(4, ny * nx // 4000)):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        r = rng.uniform(2.0, 12.0)
        amp = rng.uniform(0.1, 1.0)
        h = int(4 * r) + 1
        y0, y1 = max(0, int(cy) - h), min(ny, int(cy) + h + 1)
        x0, x1 = max(0, int(cx) - h), min(nx, int(cx) + h + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1] += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    for _ in range(max(2, ny * nx // 30000)):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        ry, rx = rng.uniform(8, 40), rng.uniform(8, 40)
        amp = rng.uniform(0.1, 0.5)
        y0, y1 = max(0, int(cy - ry)), min(ny, int(cy + ry) + 1)
        x0, x1 = max(0, int(cx - rx)), min(nx, int(cx + rx) + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1] += amp * (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0)
    img -= img.min()
    # Scale by a high percentile, not the maximum, so one overlap of blobs does not dim the rest.
    return img / np.quantile(img, 0.999)


def simulate(
    clean: np.ndarray, gain: float, read_sigma: float, offset: float = 0.0, seed: int = 0
) -> np.ndarray:
    """Poisson-Gaussian observation ``gain·Poisson((s − offset)/gain) + offset + N(0, σ²)`` (float64)."""
    rng = np.random.default_rng(seed)
    s = np.asarray(clean, dtype=np.float64)
    photons = rng.poisson(np.maximum(s - offset, 0.0) / gain)
    return gain * photons + offset + rng.normal(0.0, read_sigma, s.shape)
