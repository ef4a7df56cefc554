"""Ingest: any supported input -> a chunked OME-Zarr 0.5 store in canonical ``tczyx`` order.

The input is read lazily and streamed chunk by chunk (dask), never held in memory.  The store
is written under a temporary name and renamed when complete, so a killed ingest leaves nothing
that looks finished; a rerun removes the leftover and starts again.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from denoise.config import IngestConfig
from denoise.io import omezarr
from denoise.io.axes import canonical_order, transpose_to_canonical
from denoise.io.readers import InputError, LazyImage, open_input
from denoise.provenance import STAGE_VERSIONS, fingerprint, input_identity, package_versions

log = logging.getLogger(__name__)

SUPPORTED_KINDS = "biufc"


def check_values(img: LazyImage, allow_nonfinite: bool = False) -> dict[str, int]:
    """Reject NaN/Inf pixels with their count and first position (float inputs only)."""
    x = img.data
    if x.dtype.kind != "f":
        return {"nan": 0, "inf": 0}
    n_nan, n_inf = dask.compute(da.isnan(x).sum(), da.isinf(x).sum())
    n_nan, n_inf = int(n_nan), int(n_inf)
    if (n_nan or n_inf) and not allow_nonfinite:
        flat = int(da.argmax(~da.isfinite(x).ravel()).compute())
        pos = np.unravel_index(flat, x.shape)
        named = ", ".join(f"{a}={int(p)}" for a, p in zip(img.axes, pos, strict=True))
        raise InputError(
            f"{img.source}: {n_nan} NaN and {n_inf} Inf pixel(s), first at ({named}); "
            "fix the acquisition/export, or pass --allow-nonfinite to replace them by the "
            "image median"
        )
    return {"nan": n_nan, "inf": n_inf}


def channel_stats(x: da.Array, axes: str) -> list[dict[str, float]]:
    """Per-channel min, max, mean, std and percentiles (streamed; one pass)."""
    xs = (
        [x]
        if "c" not in axes
        else [da.take(x, i, axis=axes.index("c")) for i in range(x.shape[axes.index("c")])]
    )
    tasks = []
    for xc in xs:
        f = xc.astype(np.float64)
        tasks.append((f.min(), f.max(), f.mean(), f.std()))
    out = []
    for mn, mx, mean, std in dask.compute(*tasks):
        out.append({"min": float(mn), "max": float(mx), "mean": float(mean), "std": float(std)})
    return out


def ingest(
    uri: str,
    store: str | Path,
    axes: str = "",
    cfg: IngestConfig | None = None,
    allow_nonfinite: bool = False,
) -> dict[str, Any]:
    """Convert ``uri`` into an OME-Zarr 0.5 store at ``store``.

    Parameters
    ----------
    uri
        Input path (TIFF, PNG / PNG series, .npy, zarr, OME-Zarr).
    store
        Output directory; when it equals ``uri`` (an OME-Zarr 0.5 input used in place) only
        statistics are computed.
    axes
        Axes of the input when its metadata has none.
    allow_nonfinite
        Replace NaN/Inf by the median of the finite pixels instead of failing.

    Returns
    -------
    dict
        The summary written to the stage's sentinel (axes, shape, dtype, stats, fingerprint).
    """
    cfg = cfg or IngestConfig()
    store = Path(store)
    img = open_input(uri, axes)
    if img.data.dtype.kind not in SUPPORTED_KINDS or img.data.dtype.kind == "c":
        raise InputError(
            f"{uri}: unsupported pixel type {img.data.dtype}; use integer or float pixels"
        )
    if img.data.dtype == bool:
        raise InputError(f"{uri}: boolean (mask) images cannot be denoised")
    if 0 in img.data.shape:
        raise InputError(f"{uri}: the image is empty (shape {img.data.shape})")
    counts = check_values(img, allow_nonfinite)
    data = img.data.transpose(transpose_to_canonical(img.axes))
    axes_c = canonical_order(img.axes)
    if img.data.dtype == np.float16:
        data = data.astype(np.float32)
    if counts["nan"] or counts["inf"]:
        med = float(
            da.nanmedian(da.where(da.isfinite(data), data, np.nan).ravel(), axis=0).compute()
        )
        data = da.where(da.isfinite(data), data, med)
        log.warning(
            "%s: replaced %d NaN and %d Inf pixels by %g", uri, counts["nan"], counts["inf"], med
        )
    chunks = omezarr.default_chunks(data.shape, axes_c, cfg.chunk_yx, cfg.chunk_z)
    in_place = Path(uri).resolve() == store.resolve()
    ident = input_identity(uri)
    fp = fingerprint(
        "ingest", STAGE_VERSIONS["ingest"], ident, axes_c, cfg.model_dump(), allow_nonfinite
    )
    if not in_place:
        tmp = store.with_name(store.name + ".partial")
        for leftover in (tmp, store):
            if leftover.exists():
                log.info("removing previous %s", leftover)
                shutil.rmtree(leftover)
        attrs = {
            "stage": "ingest",
            "fingerprint": fp,
            "source": ident,
            "source_axes": img.axes,
            "versions": package_versions(),
        }
        arr = omezarr.create_image(
            tmp,
            data.shape,
            data.dtype,
            axes_c,
            chunks,
            scale=img.scale,
            units=img.units,
            attributes=attrs,
            name=Path(uri).name,
        )
        log.info("ingest %s (%s %s %s) -> %s", uri, img.axes, data.shape, data.dtype, store)
        da.store(data.rechunk(chunks), arr, lock=False)
        tmp.rename(store)
    arr, _ = omezarr.open_image(store)
    stats = channel_stats(da.from_zarr(arr), axes_c)
    for i, s in enumerate(stats):
        if s["max"] == s["min"]:
            log.warning(
                "%s: channel %d is constant (%g); the output will equal the input", uri, i, s["min"]
            )
    group = omezarr.open_group(store, mode="r+")
    omezarr.set_attributes(group, {"stats": stats})
    return {
        "stage": "ingest",
        "version": STAGE_VERSIONS["ingest"],
        "fingerprint": fp,
        "store": str(store),
        "axes": axes_c,
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "chunks": list(chunks),
        "stats": stats,
        "nonfinite_replaced": counts,
        "source": ident,
    }
