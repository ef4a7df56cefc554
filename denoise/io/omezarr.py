"""OME-Zarr 0.5 (Zarr v3) stores: create, open, describe and validate.

The arrays of a store keep the image's axes in canonical ``tczyx`` order.  Level ``s0`` is the
full-resolution image; :func:`build_pyramid` adds ``s1..sN`` by 2× averaging in Y/X.
Stores are created first (arrays and metadata), then filled region by region, so a partly
written store is never mistaken for a complete one: completion is recorded separately (markers
and the ``denoise.complete`` attribute).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr

from denoise.io.axes import validate_axes

log = logging.getLogger(__name__)

AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
DEFAULT_UNITS = {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}


def _axis_entry(name: str, unit: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": AXIS_TYPES[name]}
    if unit and name != "c":
        entry["unit"] = unit
    return entry


def default_chunks(
    shape: Sequence[int], axes: str, chunk_yx: int = 256, chunk_z: int = 16
) -> tuple[int, ...]:
    """Chunks of one plane-block per T/C index, ``chunk_z`` planes and ``chunk_yx`` in Y/X."""
    out = []
    for n, ax in zip(shape, axes, strict=True):
        if ax in "tc":
            out.append(1)
        elif ax == "z":
            out.append(min(n, chunk_z))
        else:
            out.append(min(n, chunk_yx))
    return tuple(out)


def create_image(
    path: str | Path,
    shape: Sequence[int],
    dtype: Any,
    axes: str,
    chunks: Sequence[int],
    *,
    scale: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    fill_value: Any = None,
    attributes: Mapping[str, Any] | None = None,
    name: str = "image",
    overwrite: bool = False,
) -> zarr.Array:
    """Create an empty OME-Zarr 0.5 image group with one full-resolution array ``s0``.

    Parameters
    ----------
    path
        Directory of the store (``*.ome.zarr``).
    shape, dtype, axes, chunks
        The array; ``axes`` in canonical order (e.g. ``"tyx"``).
    scale, units
        Physical pixel size and unit per axis (defaults: 1 and micrometer/second).
    fill_value
        Value of never-written regions (use NaN for float outputs so gaps are visible).
    attributes
        Extra JSON attributes stored under the ``denoise`` key (provenance).
    overwrite
        Replace an existing store.  Never pass this for a partly written result that should
        be resumed.
    """
    axes = validate_axes(axes, len(shape), where=str(path))
    path = Path(path)
    if path.exists() and overwrite:
        shutil.rmtree(path)
    scale = dict(scale or {})
    units = {**DEFAULT_UNITS, **(units or {})}
    group = zarr.open_group(str(path), mode="w-" if not overwrite else "w", zarr_format=3)
    arr = group.create_array(
        "s0",
        shape=tuple(int(s) for s in shape),
        chunks=tuple(int(c) for c in chunks),
        dtype=np.dtype(dtype),
        fill_value=fill_value,
        dimension_names=list(axes),
    )
    write_multiscales(group, axes, [scale_vector(axes, scale)], units=units, name=name)
    if attributes:
        set_attributes(group, dict(attributes))
    return arr


def scale_vector(axes: str, scale: Mapping[str, float], factor: float = 1.0) -> list[float]:
    """Per-axis scale list, with Y/X (and nothing else) multiplied by ``factor``."""
    return [float(scale.get(a, 1.0)) * (factor if a in "yx" else 1.0) for a in axes]


def write_multiscales(
    group: zarr.Group,
    axes: str,
    scales: Sequence[Sequence[float]],
    units: Mapping[str, str] | None = None,
    name: str = "image",
) -> None:
    """Write the OME-NGFF 0.5 ``multiscales`` metadata for levels ``s0..s{len(scales)-1}``."""
    units = {**DEFAULT_UNITS, **(units or {})}
    datasets = [
        {
            "path": f"s{i}",
            "coordinateTransformations": [{"type": "scale", "scale": list(map(float, s))}],
        }
        for i, s in enumerate(scales)
    ]
    ome = dict(group.attrs.get("ome", {}))
    ome.update(
        {
            "version": "0.5",
            "multiscales": [
                {
                    "name": name,
                    "axes": [_axis_entry(a, units.get(a)) for a in axes],
                    "datasets": datasets,
                }
            ],
        }
    )
    group.attrs["ome"] = ome


def set_attributes(group: zarr.Group, attrs: Mapping[str, Any]) -> None:
    """Merge ``attrs`` into the group's ``denoise`` attribute block."""
    block = dict(group.attrs.get("denoise", {}))
    block.update(attrs)
    group.attrs["denoise"] = block


def open_group(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open an OME-Zarr group, with a clear error when it is not one."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: OME-Zarr store not found")
    try:
        return zarr.open_group(str(p), mode=mode)
    except Exception as exc:  # zarr raises several types for a broken store
        raise ValueError(f"{p}: not a readable zarr group ({exc})") from exc


def read_axes(group: zarr.Group, where: str = "") -> tuple[str, list[list[float]], dict[str, str]]:
    """Axes letters, per-level scales and units from OME-NGFF 0.4 or 0.5 metadata."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # 0.5 nests under "ome"; 0.4 keeps multiscales at top level
    ms = ome.get("multiscales")
    if not ms:
        raise ValueError(f"{where}: no OME-NGFF 'multiscales' metadata")
    m = ms[0]
    names = "".join(a["name"] if isinstance(a, dict) else a for a in m["axes"]).lower()
    units = {a["name"]: a["unit"] for a in m["axes"] if isinstance(a, dict) and a.get("unit")}
    scales = []
    for d in m["datasets"]:
        s = [1.0] * len(names)
        for tr in d.get("coordinateTransformations", []):
            if tr.get("type") == "scale":
                s = [float(v) for v in tr["scale"]]
        scales.append(s)
    return names, scales, units


def dataset_paths(group: zarr.Group) -> list[str]:
    """Array paths of the multiscale levels, full resolution first."""
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    return [d["path"] for d in ome["multiscales"][0]["datasets"]]


def open_image(path: str | Path, mode: str = "r") -> tuple[zarr.Array, str]:
    """Open level 0 of an OME-Zarr image; returns ``(array, axes)``."""
    group = open_group(path, mode=mode)
    axes, _, _ = read_axes(group, where=str(path))
    arr = group[dataset_paths(group)[0]]
    validate_axes(axes, arr.ndim, where=str(path))
    return arr, axes


def as_dask(path: str | Path) -> tuple[da.Array, str]:
    """Level 0 as a lazy dask array, chunked like the store."""
    arr, axes = open_image(path)
    return da.from_zarr(arr), axes


def as_xarray(path: str | Path):  # -> xarray.DataArray
    """Level 0 as a labelled, lazy ``xarray.DataArray`` (dims from the axes, scaled coords)."""
    import xarray as xr

    group = open_group(path)
    axes, scales, units = read_axes(group, where=str(path))
    data = da.from_zarr(group[dataset_paths(group)[0]])
    coords = {}
    for i, a in enumerate(axes):
        if a in "zyx" or a == "t":
            coords[a] = (
                "" + a,
                np.arange(data.shape[i]) * scales[0][i],
                {"units": units.get(a, "")},
            )
    return xr.DataArray(
        data, dims=list(axes), coords=coords, attrs=dict(group.attrs.get("denoise", {}))
    )


def build_pyramid(path: str | Path, levels: int | None = None, min_size: int = 64) -> int:
    """Add 2× Y/X-downsampled levels ``s1..`` to a complete store; returns the level count.

    Levels are computed with dask from the level above (block means, NaN-aware for floats)
    and written chunk by chunk, so memory stays bounded.
    """
    group = open_group(path, mode="r+")
    axes, scales, units = read_axes(group, where=str(path))
    base = group["s0"]
    for key in list(group.array_keys()):
        if key != "s0":
            del group[key]
    iy, ix = axes.index("y"), axes.index("x")
    n_levels = 1
    src = da.from_zarr(base)
    shape = list(base.shape)
    while levels is None or n_levels < levels:
        if min(shape[iy], shape[ix]) // 2 < min_size:
            break
        factors = {i: (2 if i in (iy, ix) else 1) for i in range(len(axes))}
        trimmed = src[
            tuple(slice(0, (s // factors[i]) * factors[i]) for i, s in enumerate(src.shape))
        ]
        reduced = da.coarsen(
            np.nanmean if np.issubdtype(base.dtype, np.floating) else np.mean, trimmed, factors
        )
        reduced = reduced.astype(base.dtype)
        chunks = tuple(min(c, s) for c, s in zip(base.chunks, reduced.shape, strict=True))
        arr = group.create_array(
            f"s{n_levels}",
            shape=reduced.shape,
            chunks=chunks,
            dtype=base.dtype,
            fill_value=base.fill_value,
            dimension_names=list(axes),
        )
        with warnings.catch_warnings():
            # Blocks that were never written (NaN) average to NaN, which is what we want.
            warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
            da.store(reduced.rechunk(chunks), arr, lock=False)
        shape = list(reduced.shape)
        src = da.from_zarr(arr)
        n_levels += 1
    all_scales = [
        scale_vector(axes, dict(zip(axes, scales[0], strict=True)), 2.0**i) for i in range(n_levels)
    ]
    name = dict(group.attrs)["ome"]["multiscales"][0].get("name", "image")
    write_multiscales(group, axes, all_scales, units=units, name=name)
    return n_levels


def validate_store(path: str | Path) -> None:
    """Validate OME-NGFF 0.5 metadata with ``ome-zarr-models``; raises ValueError if invalid."""
    from ome_zarr_models.v05.image import Image

    try:
        Image.from_zarr(open_group(path))
    except Exception as exc:
        raise ValueError(f"{path}: OME-Zarr 0.5 validation failed: {exc}") from exc


def is_ome_zarr_v05(path: str | Path) -> bool:
    """True when ``path`` is a zarr v3 group carrying OME-NGFF 0.5 multiscales."""
    if Path(path).is_file():  # a TIFF, PNG, .npy...: a group is a directory (or a URL)
        return False
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:
        return False
    ome = dict(group.attrs).get("ome", {})
    return isinstance(ome, dict) and ome.get("version") == "0.5" and bool(ome.get("multiscales"))
