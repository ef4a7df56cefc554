"""Units of work: output chunks (tiled predictors) or whole planes (plane predictors).

A unit is a box of the output array that is written in one assignment and covers whole
chunks, so jobs writing different units never touch the same chunk file.  Units are numbered
in C order over the unit grid; job ``i`` of ``N`` owns the units ``u`` with ``u % N == i``.

Axes are split into *sample* axes (``t``, ``c`` and, for 2D predictors, ``z``), which are
looped over, and the predictor's *spatial* axes (``yx`` or ``zyx``).  Canonical ``tczyx`` order
puts every sample axis before the spatial ones.

Predictors that see neighbouring frames (``halo_t = k > 0``) get units that are contiguous
blocks of :func:`t_block` frames (``T_BLOCK_PER_HALO · k``, whole output chunks along ``t``):
a unit reads its frames plus ``k`` on each side once, so along ``t`` the input is read about
``(T + 2k) / T = 1.25`` times (less at the series' ends, where the halo is reflected from frames
the unit reads anyway; a short last block reads relatively more), whatever the scatter count.
One-frame units would read every frame ``2k + 1`` times.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Output chunk edges chosen by :func:`output_chunks` (float32: 4 MiB 2D, 8 MiB 3D chunks).
CHUNK_YX_2D = 1024
CHUNK_YX_3D = 256
CHUNK_Z = 32
#: Frames per unit along ``t`` per frame of ``halo_t`` (8: units read ≤ 1.25× their frames).
T_BLOCK_PER_HALO = 8


def t_block(halo_t: int, n_frames: int, chunk_t: int = 1) -> int:
    """Frames per unit along ``t``: 1 for ``halo_t = 0``, else ``T_BLOCK_PER_HALO · halo_t``
    rounded up to whole chunks and capped at the series (rounded up to a chunk)."""
    if halo_t < 0:
        raise ValueError(f"halo_t must be >= 0, got {halo_t}")
    chunk_t = max(1, int(chunk_t))
    if halo_t == 0:
        return chunk_t
    want = min(T_BLOCK_PER_HALO * halo_t, max(1, n_frames))
    return -(-want // chunk_t) * chunk_t


def output_chunks(shape: Sequence[int], axes: str) -> tuple[int, ...]:
    """Default chunks of a prediction output; one chunk is one unit of tiled work.

    ``t`` and ``c`` get 1; images without ``z`` get ``1024`` in Y/X (4 MiB float32); stacks get
    ``32`` planes of ``256 × 256`` (8 MiB), which suits 3D models (Z halo) and 2D models (Z
    planes are looped) alike.  Chunks are clipped to the image.
    """
    out = []
    for n, ax in zip(shape, axes, strict=True):
        if ax in "tc":
            out.append(1)
        elif ax == "z":
            out.append(min(n, CHUNK_Z))
        else:
            out.append(min(n, CHUNK_YX_3D if "z" in axes else CHUNK_YX_2D))
    return tuple(out)


def split_axes(axes: str, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Positions of the sample axes and of the ``ndim`` spatial axes within ``axes``."""
    if ndim not in (2, 3):
        raise ValueError(f"predictor ndim must be 2 or 3, got {ndim}")
    letters = "yx" if ndim == 2 else "zyx"
    if ndim == 3 and "z" not in axes:
        raise ValueError(f"a 3D predictor needs a 'z' axis, but the image axes are '{axes}'")
    spatial = tuple(axes.index(a) for a in letters)
    sample = tuple(i for i in range(len(axes)) if i not in spatial)
    if sample and spatial and max(sample) > min(spatial):
        raise ValueError(f"axes '{axes}' are not in canonical tczyx order")
    return sample, spatial


@dataclass(frozen=True)
class Unit:
    """One unit of work: its id and its box of the output array (one slice per axis)."""

    id: int
    region: tuple[slice, ...]

    def samples(self, sample_axes: Sequence[int]) -> Iterator[tuple[int, ...]]:
        """Global indices of every sample (one int per sample axis) inside the unit."""
        return itertools.product(*(range(self.region[i].start, self.region[i].stop) for i in sample_axes))


@dataclass(frozen=True)
class UnitLayout:
    """How an output array of ``shape``/``chunks`` splits into units for a predictor.

    Parameters
    ----------
    shape, chunks, axes
        The output array (same shape and axes as the input).
    ndim
        Spatial dimensions of the predictor.
    whole_planes
        Plane predictors: a unit spans the whole spatial extent (all chunks of its planes).
    halo_t
        Neighbouring frames the predictor needs on each side along ``t``; > 0 makes units
        blocks of :func:`t_block` frames (the axes must then contain ``t``).
    """

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    axes: str
    ndim: int
    whole_planes: bool = False
    halo_t: int = 0

    def __post_init__(self) -> None:
        if self.halo_t and "t" not in self.axes:
            raise ValueError(
                f"the predictor needs {self.halo_t} neighbouring frame(s) along t (halo_t) but "
                f"the image has no t axis (axes '{self.axes}')"
            )

    @property
    def t_block(self) -> int:
        """Frames per unit along ``t`` (1 without a ``t`` halo and one-frame chunks)."""
        if "t" not in self.axes:
            return 1
        i = self.axes.index("t")
        if not self.halo_t:
            return self.chunks[i]
        return t_block(self.halo_t, self.shape[i], self.chunks[i])

    @property
    def sample_axes(self) -> tuple[int, ...]:
        """Positions of the looped axes."""
        return split_axes(self.axes, self.ndim)[0]

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        """Positions of the predictor's spatial axes."""
        return split_axes(self.axes, self.ndim)[1]

    @property
    def unit_edges(self) -> tuple[int, ...]:
        """Unit edge per axis: a chunk, the whole axis for planes' spatial axes, and
        :attr:`t_block` frames along ``t``."""
        spatial = self.spatial_axes
        return tuple(
            n if (self.whole_planes and i in spatial)
            else self.t_block if self.axes[i] == "t"
            else c
            for i, (n, c) in enumerate(zip(self.shape, self.chunks, strict=True))
        )

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of units along each axis."""
        return tuple(math.ceil(n / e) for n, e in zip(self.shape, self.unit_edges, strict=True))

    def __len__(self) -> int:
        return math.prod(self.grid)

    def unit(self, uid: int) -> Unit:
        """The unit with id ``uid`` (C order over :attr:`grid`)."""
        if not 0 <= uid < len(self):
            raise IndexError(f"unit {uid} out of range 0..{len(self) - 1}")
        pos = []
        rest = uid
        for g in reversed(self.grid):
            pos.append(rest % g)
            rest //= g
        pos.reverse()
        region = tuple(
            slice(p * e, min((p + 1) * e, n))
            for p, e, n in zip(pos, self.unit_edges, self.shape, strict=True)
        )
        return Unit(uid, region)

    def owned(self, scatter_index: int = 0, scatter_count: int = 1) -> list[int]:
        """Ids of the units job ``scatter_index`` of ``scatter_count`` owns (``u % N == i``)."""
        if not 0 <= scatter_index < scatter_count:
            raise ValueError(f"scatter index {scatter_index} outside 0..{scatter_count - 1}")
        return list(range(scatter_index, len(self), scatter_count))
