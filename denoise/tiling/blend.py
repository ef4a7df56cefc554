"""Tiled prediction of one region: cut tiles, predict them in batches, blend Σw·p / Σw.

Also the whole-image reference the tiles must reproduce (:func:`reference_predict`) and an
in-memory convenience (:func:`predict_tiled`) used by tests and small images.  The runner in
``denoise.predict`` feeds :func:`blend_tiles` with blocks read straight from a store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from denoise.tiling.grid import TileGrid, pad_widths, plan_grid, reflect_index
from denoise.tiling.windows import tile_window

log = logging.getLogger(__name__)

#: ``(N, *spatial) float32 -> (N, n_outputs, *spatial) float32``, like a TiledPredictor.
PredictFn = Callable[[np.ndarray], np.ndarray]


def read_virtual(
    image: np.ndarray | Any,
    lo: Sequence[int],
    hi: Sequence[int],
    lead: tuple[int | slice, ...] | None = None,
) -> np.ndarray:
    """Block ``[lo, hi)`` of the virtual reflect-padded ``image`` (its last ``len(lo)`` axes).

    Parameters
    ----------
    image
        A numpy array or anything sliceable like one (``zarr.Array``): only the source box the
        block needs is read, in one slicing call.
    lo, hi
        Virtual range per spatial axis (may extend beyond the image on either side).
    lead
        Index of the leading (non-spatial) axes; default all of them.
    """
    nsp = len(lo)
    nlead = len(image.shape) - nsp
    lead = (slice(None),) * nlead if lead is None else tuple(lead)
    idx = [reflect_index(a, b, n) for a, b, n in zip(lo, hi, image.shape[nlead:], strict=True)]
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
    out = np.asarray(image[(*lead, *box)])
    first = out.ndim - nsp
    for ax, (i, b) in enumerate(zip(idx, box, strict=True)):
        local = i - b.start
        if not (len(local) == out.shape[first + ax] and np.array_equal(local, np.arange(len(local)))):
            out = np.take(out, local, axis=first + ax)
    return out


def blend_tiles(predict_fn: PredictFn, block: np.ndarray, grid: TileGrid, batch_size: int = 4) -> np.ndarray:
    """Predict every tile of ``grid`` from ``block`` and blend them into the grid's region.

    Parameters
    ----------
    predict_fn
        Maps a batch of tiles ``(N, *tile_shape)`` to ``(N, n_outputs, *tile_shape)``.
    block
        The virtual image over ``[grid.read_lo, grid.read_hi)`` (float32): the spatial axes,
        optionally after leading axes that every tile keeps whole (e.g. the ``2k + 1`` frames
        of a predictor with ``halo_t = k``: tiles are then ``(N, 2k + 1, *tile_shape)``).
    grid
        Tiles on the lattice (see :func:`denoise.tiling.grid.plan_grid`).
    batch_size
        Tiles per call of ``predict_fn``.

    Returns
    -------
    np.ndarray
        ``(n_outputs, *grid.region_shape)`` float32: Σ w·p / Σ w over the tiles.
    """
    expected = tuple(h - lo for lo, h in zip(grid.read_lo, grid.read_hi, strict=True))
    if block.shape[block.ndim - len(expected):] != expected:
        raise ValueError(f"block of shape {block.shape} does not match the grid's read box {expected}")
    keeps = [[a.keep(k) for k in range(a.count)] for a in grid.axes]
    if len(grid) == 1:  # one tile: nothing to blend
        pred = np.asarray(predict_fn(np.ascontiguousarray(block, dtype=np.float32)[None]))[0]
        return np.ascontiguousarray(pred[(slice(None), *(k[0][0] for k in keeps))], dtype=np.float32)
    acc: np.ndarray | None = None
    wsum = np.zeros(grid.region_shape, dtype=np.float32)
    tiles = list(grid.tiles())
    origin = [a.read_range[0] for a in grid.axes]
    for b0 in range(0, len(tiles), batch_size):
        batch = tiles[b0 : b0 + batch_size]
        cut = []
        for idx in batch:
            sl = tuple(
                slice(a.origins[k] - o, a.origins[k] - o + a.size)
                for a, k, o in zip(grid.axes, idx, origin, strict=True)
            )
            cut.append(block[(..., *sl)])
        pred = np.asarray(predict_fn(np.stack(cut).astype(np.float32, copy=False)), dtype=np.float32)
        if acc is None:
            acc = np.zeros((pred.shape[1], *grid.region_shape), dtype=np.float32)
        for p, idx in zip(pred, batch, strict=True):
            tsl = tuple(keeps[ax][k][0] for ax, k in enumerate(idx))
            osl = tuple(keeps[ax][k][1] for ax, k in enumerate(idx))
            w = tile_window(grid, idx)[tsl]
            acc[(slice(None), *osl)] += w * p[(slice(None), *tsl)]
            wsum[osl] += w
    assert acc is not None
    acc /= wsum
    return acc


def predict_tiled(
    predict_fn: PredictFn,
    image: np.ndarray,
    halo: int,
    multiple: int,
    tile: int | Sequence[int],
    region: tuple[Sequence[int], Sequence[int]] | None = None,
    ramp: int | None = None,
    batch_size: int = 4,
) -> np.ndarray:
    """Tiled prediction of an in-memory image (spatial axes only).

    Parameters
    ----------
    predict_fn, batch_size
        See :func:`blend_tiles`.
    image
        ``(*spatial)`` array.
    halo, multiple, ramp
        See :func:`denoise.tiling.grid.plan_grid`.
    tile
        Largest tile edge (one value for all axes, or one per axis).
    region
        ``(start, stop)`` of the output box; default the whole image.

    Returns
    -------
    np.ndarray
        ``(n_outputs, *region_shape)`` float32.
    """
    nd = image.ndim
    tiles = [int(tile)] * nd if np.isscalar(tile) else list(tile)  # type: ignore[arg-type]
    start, stop = region if region is not None else ((0,) * nd, image.shape)
    grid = plan_grid(start, stop, tiles, halo, multiple, ramp)
    block = read_virtual(np.asarray(image, dtype=np.float32), grid.read_lo, grid.read_hi)
    return blend_tiles(predict_fn, block, grid, batch_size)


def reference_predict(predictor_fn: PredictFn, image: np.ndarray, halo: int, multiple: int) -> np.ndarray:
    """Whole-image reference: reflect-pad, one call of the network, crop.

    The convention of ``denoise.models.store.predict_whole``: ``np.pad(mode="reflect")`` by
    ``halo`` on both sides of every axis plus ``(-n) % multiple`` at the end (an axis of length
    1 is repeated, which ``np.pad`` does by itself).  Normalisation, being per pixel, is left to
    ``predictor_fn``.

    Returns
    -------
    np.ndarray
        ``(n_outputs, *image.shape)`` float32.
    """
    if halo % multiple:
        raise ValueError(f"halo {halo} must be a multiple of {multiple}")
    widths = pad_widths(image.shape, halo, multiple)
    padded = np.pad(np.asarray(image, dtype=np.float32), widths, mode="reflect")
    out = np.asarray(predictor_fn(padded[None]), dtype=np.float32)[0]
    return out[(slice(None), *(slice(halo, halo + n) for n in image.shape))]
