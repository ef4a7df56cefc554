"""Blending windows: zero margin, raised-cosine ramp, flat core.

Along one axis a tile's window is zero over its ``halo`` margins, rises as ``sin²`` over the
``ramp`` pixels it shares with the previous tile, is flat over its core and falls as ``cos²``
over the ramp it shares with the next tile.  Sides without a neighbour (image borders and the
edges of the unit being predicted) are flat up to the margin, so neighbouring windows sum to
one everywhere.  N-d windows are outer products of the per-axis ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import reduce

import numpy as np

from denoise.tiling.grid import AxisTiles, TileGrid

log = logging.getLogger(__name__)


def ramp_up(width: int) -> np.ndarray:
    """Rising raised-cosine ramp of ``width`` samples (float64, strictly between 0 and 1).

    ``sin²(π/2 · (i + ½) / width)``; reversed it is ``1 - ramp_up``, so a rising and a falling
    ramp over the same pixels sum to one.
    """
    i = np.arange(width, dtype=np.float64)
    return np.sin(0.5 * np.pi * (i + 0.5) / width) ** 2


def axis_window(size: int, halo: int, ramp: int, rise: bool, fall: bool) -> np.ndarray:
    """Window of one tile along one axis (float32, length ``size``).

    Parameters
    ----------
    size
        Tile length.
    halo
        Zero margin on both ends.
    ramp
        Cross-fade width.
    rise, fall
        Whether the tile has a neighbour before (rising ramp) / after (falling ramp) it.
    """
    w = np.zeros(size, dtype=np.float64)
    w[halo : size - halo] = 1.0
    if ramp:
        up = ramp_up(ramp)
        if rise:
            w[halo : halo + ramp] = up
        if fall:
            w[size - halo - ramp : size - halo] = 1.0 - up
    return w.astype(np.float32)


def tile_axis_window(axis: AxisTiles, k: int) -> np.ndarray:
    """Window of tile ``k`` of ``axis``: ramps only towards neighbouring tiles."""
    return axis_window(axis.size, axis.halo, axis.ramp, rise=k > 0, fall=k < axis.count - 1)


def outer(windows: Sequence[np.ndarray]) -> np.ndarray:
    """N-d window as the outer product of per-axis windows (float32)."""
    return reduce(np.multiply.outer, windows).astype(np.float32, copy=False)


def tile_window(grid: TileGrid, index: Sequence[int]) -> np.ndarray:
    """N-d window of the tile with per-axis numbers ``index`` in ``grid``."""
    return outer([tile_axis_window(a, k) for a, k in zip(grid.axes, index, strict=True)])
