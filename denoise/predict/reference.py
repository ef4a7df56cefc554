"""The whole-image reference prediction of any predictor (what tiled output must equal).

For a TiledPredictor the image is reflect-padded by the predictor's ``halo`` on both sides of
every spatial axis plus ``(-n) % multiple`` at the end, the predictor runs once on the whole
padded image, and the result is cropped back (:func:`denoise.tiling.blend.reference_predict`,
the convention of :func:`denoise.models.store.predict_whole`).  A PlanePredictor is simply
called on the whole plane.  Tests and benchmarks use this one function;
:func:`predict_whole_series` is its counterpart for predictors that see neighbouring frames
(``halo_t > 0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from denoise.predict.protocols import predictor_kind
from denoise.tiling.blend import reference_predict
from denoise.tiling.grid import pad_widths, reflect_index


def predict_whole_image(
    predictor: Any, image: np.ndarray, channel: int = 0, index: dict[str, int] | None = None
) -> np.ndarray:
    """``(n_outputs, *image.shape)`` float32 prediction of the whole ``image``.

    Parameters
    ----------
    predictor
        A TiledPredictor or PlanePredictor (:mod:`denoise.predict.protocols`).
    image
        ``(*spatial)`` raw intensities with the predictor's ``ndim`` spatial axes; extra
        leading axes (planes of a stack, frames) are predicted one at a time.
    channel
        The ``c`` index (selects the normalisation of a TiledPredictor).
    index
        The plane's position passed to a PlanePredictor (default ``{"c": channel}``).
    """
    image = np.asarray(image, dtype=np.float32)
    ndim = int(predictor.ndim)
    if image.ndim < ndim:
        raise ValueError(f"image of shape {image.shape} has fewer than {ndim} spatial axes")
    if image.ndim > ndim:
        lead = image.shape[: image.ndim - ndim]
        flat = image.reshape(-1, *image.shape[-ndim:])
        outs = np.stack([predict_whole_image(predictor, p, channel, index) for p in flat], 1)
        return outs.reshape(outs.shape[0], *lead, *image.shape[-ndim:])
    if predictor_kind(predictor) == "plane":
        where = {"c": channel} if index is None else index
        return np.asarray(predictor(image, where), dtype=np.float32)
    return reference_predict(
        lambda t: predictor(t, channel=channel), image, int(predictor.halo), int(predictor.multiple)
    )


def predict_whole_series(predictor: Any, series: np.ndarray, channel: int = 0) -> np.ndarray:
    """``(n_outputs, t, *spatial)`` float32 prediction of a whole ``(t, *spatial)`` series.

    Frame ``t`` is predicted from frames ``t - k .. t + k`` (``k = predictor.halo_t``),
    reflected at the ends like ``np.pad(mode="reflect")`` for any ``k``
    (:func:`denoise.tiling.grid.reflect_index`): a PlanePredictor gets the ``(2k + 1,
    *spatial)`` window and ``{"t": t, "c": channel}``; a TiledPredictor gets the window with
    its spatial axes reflect-padded as in :func:`predict_whole_image`, as one tile. With
    ``k = 0`` every frame is predicted alone (a window of one frame is not passed: the frame is).
    """
    series = np.asarray(series, dtype=np.float32)
    k = int(getattr(predictor, "halo_t", 0) or 0)
    ndim = int(predictor.ndim)
    if series.ndim != ndim + 1:
        raise ValueError(f"series of shape {series.shape} is not (t, *{ndim} spatial axes)")
    n = series.shape[0]
    outs = []
    for t in range(n):
        if k == 0:
            outs.append(predict_whole_image(predictor, series[t], channel, {"t": t, "c": channel}))
            continue
        window = series[reflect_index(t - k, t + k + 1, n)]
        if predictor_kind(predictor) == "plane":
            outs.append(np.asarray(predictor(window, {"t": t, "c": channel}), dtype=np.float32))
            continue
        halo, m = int(predictor.halo), int(predictor.multiple)
        widths = [(0, 0), *pad_widths(window.shape[1:], halo, m)]
        padded = np.pad(window, widths, mode="reflect")
        out = np.asarray(predictor(padded[None], channel=channel), dtype=np.float32)[0]
        outs.append(out[(slice(None), *(slice(halo, halo + s) for s in window.shape[1:]))])
    return np.stack(outs, axis=1)
