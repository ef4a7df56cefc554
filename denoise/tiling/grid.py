"""Tile grids on the global ``2**depth`` lattice, and the virtual reflect-padded image.

A fully convolutional U-Net of depth ``d`` pools ``d`` times, so its output depends on where
the ``2**d`` pooling lattice sits.  The whole-image reference (``denoise.models.store.
predict_whole``) pads the image with ``np.pad(mode="reflect")`` by ``halo`` pixels before and
``halo + (-n) % 2**d`` after every spatial axis and runs the network once; with ``halo`` a
multiple of ``2**d`` its lattice is the set of image coordinates divisible by ``2**d``.

A tile here is a window of that *virtual* padded image: origin on the lattice (image
coordinates, possibly negative), size a multiple of ``2**d``.  Of its output only the *valid*
part, ``halo`` pixels away from either tile edge, is kept; every kept pixel then sees at least
the receptive field of real (or identically padded) context and equals the whole-image output.
Pixels outside the image are read through :func:`reflect_index`, which reproduces
``np.pad(mode="reflect")`` for any pad width (an axis of length 1 repeats its only pixel,
which is also what ``np.pad`` does).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``>= value``."""
    return -(-int(value) // int(multiple)) * int(multiple)


def pad_widths(shape: Sequence[int], halo: int, multiple: int) -> list[tuple[int, int]]:
    """Reflect padding of a whole-image prediction, per axis: ``halo`` before, ``halo`` +
    ``(-n) % multiple`` after.

    The one padding convention of the whole-image reference (:func:`denoise.tiling.blend.
    reference_predict`, ``denoise.models.store.predict_whole``).  With ``halo`` a multiple of
    ``multiple`` (every halo is: ``halo_for`` rounds up) the padded length is a multiple too.
    """
    return [(int(halo), int(halo) + (-int(n)) % int(multiple)) for n in shape]


def round_down(value: int, multiple: int) -> int:
    """Largest multiple of ``multiple`` that is ``<= value``."""
    return (int(value) // int(multiple)) * int(multiple)


def reflect_index(lo: int, hi: int, n: int) -> np.ndarray:
    """Source indices of virtual coordinates ``lo..hi-1`` of an axis of length ``n``.

    Equal to what ``np.pad(mode="reflect")`` places there, for any pad width: the reflected
    image is periodic with period ``2 (n - 1)``; an axis of length 1 maps everything to 0.
    """
    if n < 1:
        raise ValueError(f"axis length must be >= 1, got {n}")
    p = np.arange(lo, hi, dtype=np.int64)
    if n == 1:
        return np.zeros_like(p)
    period = 2 * (n - 1)
    q = np.mod(p, period)
    return np.where(q >= n, period - q, q)


@dataclass(frozen=True)
class AxisTiles:
    """Tiles along one axis whose valid parts cover the output range ``[start, stop)``.

    Attributes
    ----------
    start, stop
        Output range (image coordinates) the tiles must produce.
    origins
        Tile origins in image coordinates (the first is usually negative: it starts in the
        padding); each must be a multiple of ``multiple``.
    size
        Tile length (all tiles equal), a multiple of ``multiple``.
    halo
        Pixels discarded at each tile edge (>= the receptive-field radius for exact output).
    ramp
        Width of the raised-cosine cross-fade between neighbouring tiles (multiple of
        ``multiple``; consecutive origins are ``size - 2 halo - ramp`` apart).
    multiple
        The pooling lattice ``2**depth``.
    """

    start: int
    stop: int
    origins: tuple[int, ...]
    size: int
    halo: int
    ramp: int
    multiple: int

    def __post_init__(self) -> None:
        m = self.multiple
        if m < 1 or self.halo < 0 or self.ramp < 0:
            raise ValueError(f"invalid tiling parameters (multiple={m}, halo={self.halo}, ramp={self.ramp})")
        if self.size % m or self.halo % m or self.ramp % m:
            raise ValueError(
                f"tile size {self.size}, halo {self.halo} and ramp {self.ramp} must be multiples of "
                f"2**depth = {m}; otherwise tiles leave the network's pooling lattice"
            )
        off = [o for o in self.origins if o % m]
        if off:
            raise ValueError(
                f"tile origin(s) {off} are off the 2**depth = {m} lattice; tiled output would "
                "differ from whole-image output"
            )
        if not self.origins or self.stop <= self.start:
            raise ValueError(f"empty tiling for range [{self.start}, {self.stop})")
        least = max(m, 2 * self.ramp) if len(self.origins) > 1 else m
        if self.valid < least:
            raise ValueError(
                f"tile size {self.size} leaves a valid part of {self.valid} px after a halo of "
                f"{self.halo} on each side; it must be at least {least}"
            )
        steps = {b - a for a, b in itertools.pairwise(self.origins)}
        if steps and steps != {self.valid - self.ramp}:
            raise ValueError(f"tile origins {self.origins} are not evenly spaced by valid - ramp")
        first = self.origins[0] + self.halo
        last = self.origins[-1] + self.halo + self.valid
        if first > self.start or last < self.stop:
            raise ValueError(
                f"tiles cover [{first}, {last}) which does not contain [{self.start}, {self.stop})"
            )

    @property
    def valid(self) -> int:
        """Length of the kept part of each tile."""
        return self.size - 2 * self.halo

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.origins)

    @property
    def read_range(self) -> tuple[int, int]:
        """Virtual-image range ``[lo, hi)`` the tiles read."""
        return self.origins[0], self.origins[-1] + self.size

    def keep(self, k: int) -> tuple[slice, slice]:
        """Part of tile ``k`` that contributes to the output.

        Returns
        -------
        (slice, slice)
            The slice in tile coordinates and the matching slice in output coordinates
            (relative to ``start``); the valid part clipped to ``[start, stop)``.
        """
        lo = max(self.origins[k] + self.halo, self.start)
        hi = min(self.origins[k] + self.halo + self.valid, self.stop)
        o = self.origins[k]
        return slice(lo - o, hi - o), slice(lo - self.start, hi - self.start)


def plan_axis(start: int, stop: int, tile: int, halo: int, multiple: int, ramp: int) -> AxisTiles:
    """Evenly sized lattice tiles whose valid parts cover ``[start, stop)``.

    The first valid part starts at the lattice point at or before ``start``; the fewest tiles
    of at most ``tile`` pixels are used, all of the same size (so they batch together), and a
    single tile shrinks to what the range needs.

    Parameters
    ----------
    start, stop
        Output range in image coordinates.
    tile
        Largest tile length (halo included); raised, with a log message, when it cannot hold
        ``2 halo + max(multiple, 3 ramp)`` pixels.
    halo, multiple, ramp
        See :class:`AxisTiles`; ``halo`` and ``ramp`` must be multiples of ``multiple``.
    """
    if stop <= start:
        raise ValueError(f"empty range [{start}, {stop})")
    first = round_down(start, multiple)
    length = stop - first
    vmax = round_down(tile - 2 * halo, multiple)
    # 3 ramps keep the rising and falling ramps of a middle tile apart after rounding
    need = max(multiple, 3 * ramp)
    if vmax < need:
        log.info(
            "tile %d cannot hold a halo of %d px on both sides; using %d",
            tile, halo, 2 * halo + need,
        )
        vmax = need
    if round_up(length, multiple) <= vmax:
        count, valid = 1, round_up(length, multiple)
    else:
        count = -(-(length - ramp) // (vmax - ramp))
        valid = round_up(-(-(length + (count - 1) * ramp) // count), multiple)
    origins = tuple(first - halo + k * (valid - ramp) for k in range(count))
    return AxisTiles(start, stop, origins, valid + 2 * halo, halo, ramp if count > 1 else 0, multiple)


@dataclass(frozen=True)
class TileGrid:
    """An N-d grid of tiles: the product of one :class:`AxisTiles` per spatial axis."""

    axes: tuple[AxisTiles, ...]

    @property
    def tile_shape(self) -> tuple[int, ...]:
        """Shape of every tile."""
        return tuple(a.size for a in self.axes)

    @property
    def region_shape(self) -> tuple[int, ...]:
        """Shape of the output region the grid produces."""
        return tuple(a.stop - a.start for a in self.axes)

    @property
    def read_lo(self) -> tuple[int, ...]:
        """Virtual-image start of the block the tiles read."""
        return tuple(a.read_range[0] for a in self.axes)

    @property
    def read_hi(self) -> tuple[int, ...]:
        """Virtual-image end (exclusive) of the block the tiles read."""
        return tuple(a.read_range[1] for a in self.axes)

    def __len__(self) -> int:
        return int(np.prod([a.count for a in self.axes]))

    def tiles(self) -> Iterator[tuple[int, ...]]:
        """Per-axis tile numbers of every tile, in C order."""
        return itertools.product(*(range(a.count) for a in self.axes))


def plan_grid(
    start: Sequence[int],
    stop: Sequence[int],
    tile: Sequence[int],
    halo: int,
    multiple: int,
    ramp: int | None = None,
) -> TileGrid:
    """Tile grid covering the output box ``[start, stop)`` (one entry per spatial axis).

    Parameters
    ----------
    start, stop
        Output box in image coordinates.
    tile
        Largest tile edge per axis (halo included).
    halo
        Context per side; a multiple of ``multiple``.
    multiple
        ``2**depth`` of the network.
    ramp
        Cross-fade width; ``None`` uses ``multiple`` (exact tiles make blending a formality).
    """
    ramp = multiple if ramp is None else ramp
    return TileGrid(
        tuple(plan_axis(a, b, t, halo, multiple, ramp) for a, b, t in zip(start, stop, tile, strict=True))
    )
