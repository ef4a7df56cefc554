"""What the report shows of a store: planes, centre crops, frames, XZ sections, kymographs.

All views read only the planes they need (lazy zarr slicing), so a report of a large store
costs a few planes per panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from denoise.io import omezarr

__all__ = [
    "Plane",
    "bright_point",
    "crop_window",
    "frame_indices",
    "kymograph",
    "open_ground_truth",
    "open_store",
    "pixel_sizes",
    "plane",
    "residual",
    "window_around",
    "xz_aspect",
    "xz_display_size",
    "xz_section",
]

Plane = dict[str, int]  #: the t / c / z position of a plane, e.g. ``{"t": 0, "c": 1}``


def open_store(path: str | Path) -> tuple[Any, str]:
    """``(zarr array, axes)`` of level 0 of an OME-Zarr store."""
    return omezarr.open_image(path)


def pixel_sizes(path: str | Path) -> dict[str, float]:
    """Physical size per spatial axis of level 0 (1.0 where the metadata give none)."""
    group = omezarr.open_group(path)
    axes, scales, _ = omezarr.read_axes(group, where=str(path))
    level0 = scales[0] if scales else [1.0] * len(axes)
    return {a: float(s) for a, s in zip(axes, level0, strict=False) if a in "zyx"}


def crop_window(shape: tuple[int, ...], size: int) -> tuple[slice, slice]:
    """The centred ``size × size`` window of the last two axes (clipped to the image)."""
    out = []
    for n in shape[-2:]:
        s = min(size, n)
        start = (n - s) // 2
        out.append(slice(start, start + s))
    return out[0], out[1]


def _key(axes: str, pos: Plane, **spatial: Any) -> tuple[Any, ...]:
    return tuple(
        spatial[a] if a in spatial else pos.get(a, 0) if a in "tcz" else slice(None) for a in axes
    )


def plane(arr: Any, axes: str, pos: Plane, window: tuple[slice, slice] | None = None) -> np.ndarray:
    """One ``y x`` plane (``pos`` gives t/c/z; missing ones are 0) as float32, optionally cropped."""
    wy, wx = window or (slice(None), slice(None))
    key = _key(axes, pos, y=wy, x=wx)
    return np.asarray(arr[key], dtype=np.float32)


def frame_indices(n: int) -> list[int]:
    """First, middle and last frame of ``n`` (fewer when ``n < 3``)."""
    return sorted({0, n // 2, n - 1}) if n > 0 else []


def bright_point(img: np.ndarray, margin: int = 2) -> tuple[int, int]:
    """``(y, x)`` of the brightest point of a 5×5-box-smoothed ``img`` (away from the border)."""
    from scipy.ndimage import uniform_filter

    sm = uniform_filter(np.nan_to_num(np.asarray(img, dtype=np.float64)), size=5, mode="nearest")
    if sm.shape[0] > 2 * margin and sm.shape[1] > 2 * margin:
        inner = sm[margin:-margin, margin:-margin]
        y, x = np.unravel_index(int(np.argmax(inner)), inner.shape)
        return int(y) + margin, int(x) + margin
    y, x = np.unravel_index(int(np.argmax(sm)), sm.shape)
    return int(y), int(x)


def kymograph(arr: Any, axes: str, pos: Plane, y: int, xs: slice) -> np.ndarray:
    """``(T, X)`` image: the row ``y`` (columns ``xs``) of every frame."""
    nt = arr.shape[axes.index("t")]
    rows = [plane(arr, axes, {**pos, "t": t}, (slice(y, y + 1), xs))[0] for t in range(nt)]
    return np.stack(rows)


def xz_section(arr: Any, axes: str, pos: Plane, y: int, xs: slice) -> np.ndarray:
    """``(Z, X)`` section through row ``y`` (columns ``xs``) of a ``z y x`` volume."""
    key = tuple(
        slice(None) if a == "z" else y if a == "y" else xs if a == "x" else pos.get(a, 0)
        for a in axes
    )
    return np.asarray(arr[key], dtype=np.float32)


def window_around(
    centre: tuple[int, int], size: int, shape: tuple[int, ...]
) -> tuple[slice, slice]:
    """A ``size × size`` window of the last two axes around ``centre``, shifted inside the image."""
    out = []
    for c, n in zip(centre, shape[-2:], strict=True):
        s = min(size, n)
        start = min(max(c - s // 2, 0), n - s)
        out.append(slice(start, start + s))
    return out[0], out[1]


def residual(noisy: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """The residual map ``noisy − denoised`` (float32; what the method removed)."""
    a = np.asarray(noisy, dtype=np.float32)
    b = np.asarray(denoised, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"residual of shapes {a.shape} and {b.shape}")
    return a - b


def xz_aspect(sizes: dict[str, float]) -> float:
    """Display height of one z step over the width of one x pixel (``dz / dx``)."""
    dz, dx = float(sizes.get("z", 1.0)), float(sizes.get("x", 1.0))
    return dz / dx if dz > 0 and dx > 0 else 1.0


def xz_display_size(nz: int, nx: int, sizes: dict[str, float], px: float) -> tuple[int, int]:
    """CSS ``(width, height)`` of an ``nz × nx`` XZ section when one x pixel is ``px`` wide."""
    return max(1, round(nx * px)), max(1, round(nz * px * xz_aspect(sizes)))


def open_ground_truth(uri: str, axes: str = "") -> tuple[Any, str]:
    """``(array, axes)`` of a ground-truth image in canonical ``tczyx`` order (lazy when possible)."""
    from denoise.io.axes import canonical_order, transpose_to_canonical
    from denoise.io.readers import open_input

    img = open_input(uri, axes)
    return img.data.transpose(transpose_to_canonical(img.axes)), canonical_order(img.axes)
