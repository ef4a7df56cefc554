"""What ``predict`` runs: the two predictor kinds, as typing protocols.

Both map raw intensities to raw intensities (normalisation is the predictor's business) and
return one image per name in ``output_names`` (``denoised`` first).  The runner
(:mod:`denoise.predict.runner`) reads ``kind`` to choose how to cut the data into units; it
never guesses from attributes.

- ``"tiled"`` (:class:`TiledPredictor`): fully convolutional networks.  The runner cuts each
  plane (or volume) into lattice tiles of edge ``tile`` with a ``halo`` of context, so the
  blended tiled output equals the whole-image output exactly.
- ``"plane"`` (:class:`PlanePredictor`): zero-shot and classical methods that need a whole
  plane (or ``zyx`` volume) at once.

Either may declare ``halo_t = k``: how many neighbouring frames along ``t`` (each side) it
needs to predict one frame.  ``k = 0`` is frame by frame (the calls below).  With ``k > 0`` the
runner passes a *window* of ``2k + 1`` frames of one channel (and, for 2D predictors, one ``z``
plane) with the output frame in the middle:

- PlanePredictor: ``predictor(window, index)``, ``window`` of shape ``(2k + 1, *spatial)``,
  the output frame at ``window[k]`` and ``index["t"]`` its frame number;
- TiledPredictor: ``predictor(tiles, channel=c)``, ``tiles`` of shape ``(N, 2k + 1,
  *tile_shape)``; spatial tiling and halo are unchanged.

Both return the output frame only, ``(n_outputs, *spatial)`` / ``(N, n_outputs, *tile_shape)``.
Frames before the first and after the last come by reflection without repeating the edge
frame (``np.pad(mode="reflect")``: frame ``-1`` is frame ``1``), repeated for series shorter
than ``k + 1`` frames (a one-frame series repeats its frame): window entries may therefore be
the same frame twice.  An image without a ``t`` axis is refused.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

PredictorKind = Literal["tiled", "plane"]


@runtime_checkable
class TiledPredictor(Protocol):
    """A fully convolutional predictor run on lattice tiles with a halo."""

    kind: Literal["tiled"]
    #: spatial dims it works on (2: yx planes, 3: zyx volumes)
    ndim: int
    #: context needed per side (>= receptive field), a multiple of ``multiple``
    halo: int
    #: tile sizes and origins must be multiples of this (``2**depth``)
    multiple: int
    #: neighbouring frames needed on each side along ``t`` (0: frame by frame)
    halo_t: int
    output_names: tuple[str, ...]

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        """``(N, *spatial)`` float32 tiles of channel ``channel`` → ``(N, n_outputs, *spatial)``.

        With ``halo_t = k > 0``: ``(N, 2k + 1, *spatial)`` windows → the centre frame's
        ``(N, n_outputs, *spatial)``.
        """


@runtime_checkable
class PlanePredictor(Protocol):
    """A predictor that needs the whole plane (or volume) at once."""

    kind: Literal["plane"]
    #: 2 (yx planes) or 3 (a whole zyx volume per t/c)
    ndim: int
    halo_t: int
    output_names: tuple[str, ...]

    def __call__(self, plane: np.ndarray, index: dict[str, int]) -> np.ndarray:
        """``(*spatial)`` float32 at ``index`` (its t/c/z position) → ``(n_outputs, *spatial)``.

        With ``halo_t = k > 0``: a ``(2k + 1, *spatial)`` window centred on frame
        ``index["t"]`` → that frame's ``(n_outputs, *spatial)``.
        """


def predictor_kind(predictor: Any) -> PredictorKind:
    """The declared kind of ``predictor``; a clear error when it declares none."""
    kind = getattr(predictor, "kind", None)
    if kind not in ("tiled", "plane"):
        raise TypeError(
            f"{type(predictor).__name__} declares no predictor kind: set kind = 'tiled' "
            "(TiledPredictor) or 'plane' (PlanePredictor), see denoise.predict.protocols"
        )
    return kind
