"""Open any supported input lazily as a dask array with its axes.

Supported: TIFF / OME-TIFF (tifffile, read through its zarr view, so nothing is loaded up
front), a single PNG or a PNG series (a glob pattern or a directory; one lazy read per file),
``.npy`` (memory-mapped), plain zarr arrays and OME-Zarr 0.4 / 0.5 groups.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import imageio.v3 as iio
import numpy as np
import tifffile
import zarr

from denoise.io import omezarr
from denoise.io.axes import AxesError, validate_axes


class InputError(ValueError):
    """An input that cannot be read, with the file and the problem named."""


_RECOPY = "check that the export or copy finished, and copy the file again"


@dataclass
class LazyImage:
    """A lazily read image: dask data, its axes letters and what we know about it."""

    data: da.Array
    axes: str
    source: str
    scale: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def _resolve_axes(given: str, found: str | None, ndim: int, where: str) -> str:
    if given:
        return validate_axes(given, ndim, where=where)
    if found:
        try:
            return validate_axes(found, ndim, where=where)
        except AxesError:
            pass
    if ndim == 2:
        return "yx"
    raise InputError(
        f"{where}: the file has {ndim} dimensions and no usable axes metadata; "
        "give the axes in the dataset sheet (e.g. 'tyx', 'zyx', 'czyx')"
    )


def _tiff_axes(series_axes: str) -> str:
    # tifffile letters: Q/I = generic, S = samples (colour), C channel, Z, T, Y, X.
    # Generic letters (Q, I) say nothing about the physical axis: the sheet must give it.
    mapping = {"T": "t", "C": "c", "S": "c", "Z": "z", "Y": "y", "X": "x"}
    out = "".join(mapping.get(ch, "?") for ch in series_axes)
    return out if "?" not in out and len(set(out)) == len(out) else ""


def _tiff_header(path: Path, lazy: bool) -> tuple[tuple[int, ...], str, Any]:
    """Shape and tifffile axes of the first series, and (``lazy``) its zarr store, from one
    open of the file; a truncated file fails here (the last page's data offsets are read)."""
    where = str(path)
    if path.stat().st_size == 0:
        raise InputError(f"{where}: the file is empty (0 bytes); {_RECOPY}")
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            last = series.keyframe if len(series.pages) == 1 else series.pages[-1]
            if last is not None and hasattr(last, "dataoffsets") and last.dataoffsets:
                end = max(
                    o + c for o, c in zip(last.dataoffsets, last.databytecounts, strict=False)
                )
                if end > path.stat().st_size:
                    raise InputError(
                        f"{where}: the TIFF is truncated (image data ends at byte {end}, "
                        f"file has {path.stat().st_size}); re-copy or re-export the file"
                    )
            # The store as imread(aszarr=True) builds it; reads reopen the file (tifffile's
            # file cache), so checking and reading an input opens it once here.
            return tuple(series.shape), series.axes, tf.aszarr() if lazy else None
    except InputError:
        raise
    except Exception as exc:
        raise _unreadable(where, exc) from exc


def _unreadable(where: str, exc: Exception) -> InputError:
    return InputError(f"{where}: not a readable TIFF ({type(exc).__name__}: {exc}); {_RECOPY}")


def read_tiff(path: Path, axes: str = "") -> LazyImage:
    where = str(path)
    shape, taxes, store = _tiff_header(path, lazy=True)
    try:
        arr = zarr.open(store, mode="r")
        if hasattr(arr, "array_keys"):  # a multiscale/group view: take level 0
            arr = arr[next(iter(arr.array_keys()))]
        data = da.from_zarr(arr)
    except Exception as exc:
        raise _unreadable(where, exc) from exc
    ax = _resolve_axes(axes, _tiff_axes(taxes), data.ndim, where)
    if data.shape != shape:
        data = data.reshape(shape)
    return LazyImage(data, ax, where, scale={}, meta={"tiff_axes": taxes})


def probe_input(uri: str, axes: str = "") -> tuple[str, tuple[int, ...]]:
    """Axes and shape of an input as :func:`open_input` gives them, without building the lazy
    array where the format allows it (a TIFF: its header only, one open of the file).

    Raises
    ------
    InputError
        As :func:`open_input`.
    """
    p = Path(uri)
    if uri.lower().endswith((".tif", ".tiff")) and p.is_file():
        shape, taxes, _ = _tiff_header(p, lazy=False)
        return _resolve_axes(axes, _tiff_axes(taxes), len(shape), str(p)), shape
    image = open_input(uri, axes)
    return image.axes, tuple(image.data.shape)


def read_png_series(pattern: str, axes: str = "") -> LazyImage:
    p = Path(pattern)
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() == ".png")
    elif any(ch in pattern for ch in "*?["):
        files = sorted(glob.glob(pattern))
    else:
        files = [pattern]
    if not files:
        raise InputError(f"{pattern}: no PNG files matched")
    shapes = {}
    for f in files:
        if Path(f).stat().st_size == 0:
            raise InputError(f"{f}: the file is empty (0 bytes); {_RECOPY}")
        try:
            props = iio.improps(f)
        except Exception as exc:
            raise InputError(f"{f}: not a readable PNG ({exc}); {_RECOPY}") from exc
        shapes[f] = (tuple(props.shape), np.dtype(props.dtype))
    distinct = set(shapes.values())
    if len(distinct) > 1:
        first = files[0]
        odd = next(f for f in files if shapes[f] != shapes[first])
        raise InputError(
            f"{pattern}: PNG series with mismatched images: {first} is {shapes[first][0]} "
            f"{shapes[first][1]} but {odd} is {shapes[odd][0]} {shapes[odd][1]}; "
            "all frames must share size and dtype"
        )
    shape, dtype = shapes[files[0]]
    frames = [da.from_delayed(dask.delayed(iio.imread)(f), shape=shape, dtype=dtype) for f in files]
    data = frames[0] if len(frames) == 1 else da.stack(frames)
    default = (
        ("yx" if len(shape) == 2 else "yxc")
        if len(frames) == 1
        else ("tyx" if len(shape) == 2 else "tyxc")
    )
    ax = validate_axes(axes, data.ndim, where=pattern) if axes else default
    return LazyImage(data, ax, pattern, meta={"files": files})


def read_npy(path: Path, axes: str = "") -> LazyImage:
    where = str(path)
    if path.stat().st_size == 0:
        raise InputError(f"{where}: the file is empty (0 bytes); {_RECOPY}")
    try:
        arr = np.load(path, mmap_mode="r")
    except Exception as exc:
        raise InputError(f"{where}: not a readable .npy file ({exc}); {_RECOPY}") from exc
    data = da.from_array(arr, chunks="auto")
    return LazyImage(data, _resolve_axes(axes, None, data.ndim, where), where)


def read_zarr(path: Path, axes: str = "") -> LazyImage:
    where = str(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{where}: not a readable zarr store ({exc})") from exc
    if isinstance(node, zarr.Array):
        names = getattr(node.metadata, "dimension_names", None)
        found = "".join(names).lower() if names and all(names) else ""
        return LazyImage(da.from_zarr(node), _resolve_axes(axes, found, node.ndim, where), where)
    try:
        found, scales, units = omezarr.read_axes(node, where=where)
        arr = node[omezarr.dataset_paths(node)[0]]
    except Exception as exc:
        raise InputError(
            f"{where}: a zarr group without usable OME-NGFF multiscales ({exc})"
        ) from exc
    ax = _resolve_axes(axes, found, arr.ndim, where)
    scale = dict(zip(ax, scales[0], strict=False))
    return LazyImage(da.from_zarr(arr), ax, where, scale=scale, units=units)


def open_input(uri: str, axes: str = "") -> LazyImage:
    """Open ``uri`` lazily, taking axes from the file's metadata or from ``axes``.

    Raises
    ------
    InputError
        Naming the file and the problem (missing, empty, corrupt, wrong axes).
    """
    p = Path(uri)
    low = uri.lower().rstrip("/")
    if (
        any(ch in uri for ch in "*?[")
        or low.endswith(".png")
        or (p.is_dir() and any(p.glob("*.png")))
    ):
        return read_png_series(uri, axes)
    if not p.exists():
        raise InputError(
            f"{uri}: file not found; check the path (relative paths start at {Path.cwd()})"
        )
    if low.endswith((".tif", ".tiff")):
        return read_tiff(p, axes)
    if low.endswith(".npy"):
        return read_npy(p, axes)
    if low.endswith(".zarr") or (
        p.is_dir()
        and ((p / "zarr.json").exists() or (p / ".zgroup").exists() or (p / ".zarray").exists())
    ):
        return read_zarr(p, axes)
    raise InputError(f"{uri}: unsupported format; use TIFF, PNG, .npy, zarr or OME-Zarr")
