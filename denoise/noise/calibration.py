"""Calibration pairs ``(x, s)`` and the one entry point that fits any noise model.

Where the clean signal ``s`` comes from, per kind:

* ``poisson_gaussian``: no pairs; the data-only estimator
  (:func:`denoise.noise.poisson_gaussian.estimate_poisson_gaussian`).
* ``histogram`` / ``gmm``: a calibration stack, i.e. noisy frames of a static scene (along
  ``t``, or ``z`` when there is no ``t``); ``s`` = the mean over frames, each frame gives
  ``x``.  The mean keeps ``1/N`` of the noise variance, so ``N`` should be large (tens of
  frames); with few frames the model reads too narrow (``x`` and ``s`` share noise).
* ``gmm_bootstrap``: no calibration at all; ``s`` = the prediction of a trained N2V model on
  the data itself, used as pseudo-clean signal (Prakash et al., "Fully unsupervised
  probabilistic Noise2Void", 2020).  The N2V model directory is read with
  :mod:`denoise.models.store` (imported only for this kind).

Every model is per channel; pairs are bounded by ``NoiseModelConfig.max_samples`` per channel
(random pixels of every frame, or random planes for the bootstrap), so memory does not grow
with the data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from denoise.io.omezarr import open_image
from denoise.io.readers import open_input
from denoise.models.store import load_model, predict_whole  # stated layering exception
from denoise.noise.base import NoiseModelBase, PoissonGaussianNoiseModel, recording_conventions
from denoise.noise.gmm import GMMNoiseModel
from denoise.noise.histogram import HistogramNoiseModel
from denoise.noise.poisson_gaussian import estimate_poisson_gaussian
from denoise.settings import NoiseModelConfig

log = logging.getLogger(__name__)

KINDS = ("poisson_gaussian", "histogram", "gmm", "gmm_bootstrap")
#: Fewer calibration frames than this trigger a warning (see the module docstring).
FEW_FRAMES = 10


def pairs_from_stack(
    uri: str | Path,
    axes: str = "",
    channel: int = 0,
    max_samples: int = 2_000_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Calibration pairs from a static noisy stack: ``s`` = mean over frames, ``x`` = each frame.

    Parameters
    ----------
    uri, axes
        Calibration input (any format :func:`denoise.io.readers.open_input` reads) and its axes
        when the file has none.  Frames lie along ``t`` (else ``z``); a ``c`` axis is indexed
        by ``channel``.
    max_samples
        Pairs kept at most (random pixels, the same in every frame).
    seed
        Seed of the pixel choice.

    Returns
    -------
    x, s, dtype
        Flat float64 arrays of equal length, and the stack's dtype.
    """
    img = open_input(str(uri), axes)
    data, ax = img.data, img.axes
    if "c" in ax:
        n_c = data.shape[ax.index("c")]
        if not 0 <= channel < n_c:
            raise ValueError(
                f"{uri}: calibration has {n_c} channel(s); channel {channel} was requested "
                "(give one calibration channel per data channel)"
            )
        data = data[(slice(None),) * ax.index("c") + (channel,)]
        ax = ax.replace("c", "")
    elif channel != 0:
        raise ValueError(f"{uri}: calibration has one channel; channel {channel} was requested")
    frame_axis = "t" if "t" in ax else ("z" if "z" in ax else "")
    if not frame_axis or data.shape[ax.index(frame_axis)] < 2:
        raise ValueError(
            f"{uri}: a calibration stack needs several noisy frames of a static scene along t "
            f"(or z); got axes '{ax}' with shape {tuple(data.shape)}"
        )
    fi = ax.index(frame_axis)
    data = data.transpose((fi, *[i for i in range(data.ndim) if i != fi]))  # frames first
    n_frames = int(data.shape[0])
    if n_frames < FEW_FRAMES:
        log.warning(
            "%s: only %d calibration frames; their mean keeps 1/%d of the noise variance, so "
            "the noise model will read narrower than the truth",
            uri,
            n_frames,
            n_frames,
        )
    s_full = np.asarray(data.astype(np.float64).mean(axis=0)).ravel()
    rng = np.random.default_rng(seed)
    per_frame = max(1, min(s_full.size, max_samples // n_frames))
    idx = np.sort(rng.choice(s_full.size, size=per_frame, replace=False))
    xs = [np.asarray(data[k]).ravel()[idx].astype(np.float64) for k in range(n_frames)]
    return np.concatenate(xs), np.tile(s_full[idx], n_frames), np.dtype(data.dtype)


def pairs_from_n2v(
    store: str | Path,
    n2v_model_dir: str | Path,
    channel: int = 0,
    max_samples: int = 2_000_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Bootstrap pairs: ``x`` = the data, ``s`` = a trained N2V model's prediction of it.

    Random planes (2D models) or volumes (3D models) of ``channel`` are predicted whole until
    ``max_samples`` pixels are in hand.
    """
    arr, axes = open_image(store)
    model, meta = load_model(n2v_model_dir)
    spatial = "zyx" if int(meta["ndim"]) == 3 else "yx"
    if int(meta["ndim"]) == 3 and "z" not in axes:
        raise ValueError(f"{n2v_model_dir}: a 3D model cannot predict {store} (axes '{axes}')")
    lead = [a for a in axes if a not in spatial]
    index_shape = [arr.shape[axes.index(a)] if a != "c" else 1 for a in lead]
    rng = np.random.default_rng(seed)
    xs, ss, got = [], [], 0
    for flat in rng.permutation(int(np.prod(index_shape)) if index_shape else 1):
        if got >= max_samples:
            break
        pos = np.unravel_index(int(flat), index_shape) if index_shape else ()
        key: list[Any] = [slice(None)] * len(axes)
        for a, p in zip(lead, pos, strict=True):
            key[axes.index(a)] = channel if a == "c" else int(p)
        x = np.asarray(arr[tuple(key)])
        s = predict_whole(model, meta, x, channel)
        xs.append(x.ravel().astype(np.float64))
        ss.append(s.ravel().astype(np.float64))
        got += x.size
    x_all, s_all = np.concatenate(xs), np.concatenate(ss)
    if x_all.size > max_samples:
        keep = np.sort(rng.choice(x_all.size, size=max_samples, replace=False))
        x_all, s_all = x_all[keep], s_all[keep]
    return x_all, s_all, np.dtype(arr.dtype)


def _bootstrap_pairs(
    stores: list[str | Path],
    n2v_model_dir: str | Path,
    channel: int,
    max_samples: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """:func:`pairs_from_n2v` of one store, or of every store of a group (each a share of
    ``max_samples`` in proportion to its size), concatenated."""
    if len(stores) == 1:
        return pairs_from_n2v(stores[0], n2v_model_dir, channel, max_samples, seed)
    sizes = [float(np.prod(open_image(s)[0].shape, dtype=np.float64)) for s in stores]
    parts = [
        pairs_from_n2v(s, n2v_model_dir, channel, max(1, int(max_samples * n / sum(sizes))), seed)
        for s, n in zip(stores, sizes, strict=True)
    ]
    xs, ss, dtypes = zip(*parts, strict=True)
    return np.concatenate(xs), np.concatenate(ss), dtypes[0]


def align_signal(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Rescale a calibration's clean image so that the recorded values average to it.

    Every model here reads ``s`` as the expected recorded value, ``E[x | s] = s``.  A clean
    image taken separately (e.g. the average of many frames, some of them bleached) can
    differ from a single frame by a gain and an offset; the least-squares line
    ``x ≈ a·s + b`` gives the corrected signal ``a·s + b``.  For ``s`` = the mean of the very
    frames ``x`` (a calibration stack) the line is the identity.

    Returns
    -------
    s_aligned, a, b
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(s)
    a, b = np.polyfit(s[ok], x[ok], 1) if np.ptp(s[ok]) > 0 else (1.0, 0.0)
    if abs(a - 1.0) > 0.02 or abs(b) > 0.02 * max(float(np.std(s[ok])), 1e-12):
        log.info("calibration signal rescaled: E[x | s] ≈ %.4f·s %+.4g", a, b)
    return a * s + b, float(a), float(b)


def fit_from_pairs(
    kind: str,
    x: np.ndarray,
    s: np.ndarray,
    dtype: np.dtype | str,
    seed: int = 0,
    align: bool = True,
    **options: Any,
) -> NoiseModelBase:
    """Fit a ``histogram`` or ``gmm`` model (``gmm_bootstrap`` is a ``gmm``) to pairs.

    ``dtype`` (of ``x``) sets the recording conventions (quantum, clip levels); ``align``
    rescales ``s`` first (:func:`align_signal`); ``options`` go to
    :meth:`HistogramNoiseModel.fit <denoise.noise.histogram.HistogramNoiseModel.fit>` or
    :meth:`GMMNoiseModel.fit <denoise.noise.gmm.GMMNoiseModel.fit>`.
    """
    if align:
        s = align_signal(x, s)[0]
    conv = recording_conventions(dtype)
    if kind == "histogram":
        return HistogramNoiseModel.fit(
            x, s, clip_low=conv["clip_low"], clip_high=conv["clip_high"], **options
        )
    if kind in ("gmm", "gmm_bootstrap"):
        return GMMNoiseModel.fit(x, s, seed=seed, **conv, **options)
    raise ValueError(f"fit_from_pairs: kind must be histogram, gmm or gmm_bootstrap, got {kind!r}")


def fit_noise_model(
    kind: str,
    store: str | Path | list[str | Path],
    cfg: NoiseModelConfig,
    calibration_uri: str = "",
    calibration_axes: str = "",
    n2v_model_dir: str | Path | None = None,
    seed: int = 0,
) -> list[NoiseModelBase]:
    """Fit the noise model of every channel of ``store``.

    Parameters
    ----------
    kind
        ``poisson_gaussian`` (data only), ``histogram`` / ``gmm`` (calibration stack),
        ``gmm_bootstrap`` (N2V prediction as pseudo-clean signal).
    store
        The OME-Zarr image to be denoised, or the stores of a sheet group (one model fitted to
        all of them: pooled Poisson-Gaussian estimate, or bootstrap pairs from every store,
        each giving a share of ``cfg.max_samples`` in proportion to its size).
    cfg
        Estimator settings; ``max_samples`` bounds the pairs per channel.
    calibration_uri, calibration_axes
        The calibration stack (``histogram`` and ``gmm``).
    n2v_model_dir
        A trained N2V model of ``store`` (``gmm_bootstrap``; of all the group's stores).
    seed
        Seed of every sampling and fit.

    Returns
    -------
    list
        One model per channel (save with :func:`denoise.noise.base.save_noise_models`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown noise model '{kind}'; choose one of {', '.join(KINDS)}")
    stores = list(store) if isinstance(store, list | tuple) else [store]
    arr, axes = open_image(stores[0])
    n_c = arr.shape[axes.index("c")] if "c" in axes else 1
    if kind == "poisson_gaussian":
        result = estimate_poisson_gaussian(store, cfg, seed)
        conv = recording_conventions(arr.dtype)
        return [
            PoissonGaussianNoiseModel(ch["gain"], ch["read_var"], ch["offset"], **conv)
            for ch in result["channels"]
        ]
    models: list[NoiseModelBase] = []
    for c in range(n_c):
        if kind == "gmm_bootstrap":
            if n2v_model_dir is None:
                raise ValueError(
                    "noise model gmm_bootstrap needs a trained N2V model of the same data "
                    "(its prediction is the pseudo-clean signal); train method n2v first"
                )
            x, s, _ = _bootstrap_pairs(stores, n2v_model_dir, c, cfg.max_samples, seed)
            dtype = arr.dtype
        else:
            if not calibration_uri:
                raise ValueError(
                    f"noise model {kind} needs a calibration stack (noisy frames of a static "
                    "scene): set the dataset's 'calibration' column, or use noise_model "
                    "poisson_gaussian or gmm_bootstrap"
                )
            x, s, dtype = pairs_from_stack(
                calibration_uri, calibration_axes, c, cfg.max_samples, seed
            )
        models.append(fit_from_pairs(kind, x, s, dtype, seed))
        log.info("%s noise model for channel %d of %s: %d pairs", kind, c, stores, x.size)
    return models
