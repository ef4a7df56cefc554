"""The whole-image reference prediction of any predictor (what tiled output must equal).

For a TiledPredictor the image is reflect-padded by the predictor's ``halo`` on both sides of
every spatial axis plus ``(-n) % multiple`` at the end, the predictor runs once on the whole
padded image, and the result is cropped back (:func:`denoise.tiling.blend.reference_predict`,
the convention of :func:`denoise.models.store.predict_whole`).  A PlanePredictor is simply
called on the whole plane.  Tests and benchmarks use this one function.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from denoise.predict.protocols import predictor_kind
from denoise.tiling.blend import reference_predict


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
