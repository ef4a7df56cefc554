"""Axis strings: validation and reordering to the canonical ``tczyx`` order."""

from __future__ import annotations

CANONICAL = "tczyx"
SPATIAL = "zyx"


class AxesError(ValueError):
    """An axes string that is malformed or does not fit the array."""


def validate_axes(axes: str, ndim: int | None = None, where: str = "") -> str:
    """Check an axes string and return it lower-cased.

    Parameters
    ----------
    axes
        Letters from ``tczyx`` (e.g. ``"tyx"``), each at most once, including ``y`` and ``x``.
    ndim
        If given, the number of dimensions of the array the axes describe.
    where
        Name of the file or key, used in the error message.
    """
    prefix = f"{where}: " if where else ""
    a = axes.strip().lower()
    bad = sorted({ch for ch in a if ch not in CANONICAL})
    if bad:
        raise AxesError(
            f"{prefix}axes '{axes}' has unknown letter(s) {bad}; use letters from 'tczyx' "
            "(t=time, c=channel, z=depth, y, x)"
        )
    dup = sorted({ch for ch in a if a.count(ch) > 1})
    if dup:
        raise AxesError(f"{prefix}axes '{axes}' repeats {dup}; each axis may appear once")
    if "y" not in a or "x" not in a:
        raise AxesError(f"{prefix}axes '{axes}' must contain both 'y' and 'x'")
    if ndim is not None and len(a) != ndim:
        raise AxesError(
            f"{prefix}axes '{axes}' has {len(a)} letters but the image has {ndim} dimensions; "
            "give one letter per dimension in the file's order"
        )
    return a


def canonical_order(axes: str) -> str:
    """The same letters in canonical ``tczyx`` order."""
    return "".join(ch for ch in CANONICAL if ch in axes)


def transpose_to_canonical(axes: str) -> tuple[int, ...]:
    """Permutation that reorders an array with ``axes`` to :func:`canonical_order`."""
    return tuple(axes.index(ch) for ch in canonical_order(axes))


def spatial_axes(axes: str) -> str:
    """The spatial letters (``zyx`` subset) of ``axes``."""
    return "".join(ch for ch in axes if ch in SPATIAL)
