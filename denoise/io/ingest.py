"""Ingest: any supported input -> a chunked OME-Zarr 0.5 store in canonical ``tczyx`` order.

The input is read lazily and streamed chunk by chunk (dask), never held in memory.  The store
is written under a temporary name and renamed when complete, so a killed ingest leaves nothing
that looks finished; a rerun removes the leftover and starts again.  A previous store at the
same path is replaced only once the new one is complete, so a failed ingest (disk full,
unreadable input) leaves it intact; the temporary store of a failed ingest is removed.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from denoise.io import omezarr
from denoise.io.axes import canonical_order, transpose_to_canonical
from denoise.io.readers import InputError, LazyImage, open_input
from denoise.provenance import STAGE_VERSIONS, fingerprint, input_identity, package_versions
from denoise.settings import IngestConfig

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


#: OS errors that concern the output (space, permissions), not the input's content.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def first_unreadable_block(img: LazyImage) -> tuple[str, Exception] | None:
    """Read ``img`` block by block; the region of the first block that fails, and its error.

    Used after a read failed, to tell the user where the file is damaged (e.g. a truncated
    zarr chunk or TIFF strip): ``("y 32:64, x 0:32", error)``, or None when every block reads.
    """
    x = img.data
    for idx in np.ndindex(*x.numblocks):
        try:
            x.blocks[idx].compute()
        except Exception as exc:
            region = ", ".join(
                f"{a} {sum(c[:i])}:{sum(c[: i + 1])}"
                for a, c, i in zip(img.axes, x.chunks, idx, strict=True)
            )
            return region, exc
    return None


def _damaged_input_error(img: LazyImage, exc: Exception) -> InputError | None:
    """An :class:`InputError` locating the damaged part of the input, when ``exc`` is one."""
    if isinstance(exc, OSError) and exc.errno in _OUTPUT_ERRNOS:
        return None
    found = first_unreadable_block(img)
    if found is None:
        return None
    region, err = found
    return InputError(
        f"{img.source}: cannot decode the pixels at ({region}): {type(err).__name__}: {err}; "
        "the file is damaged (a truncated or corrupted copy?): copy it again from the source"
    )


def _replace_store(tmp: Path, store: Path) -> None:
    """Move the complete ``tmp`` store to ``store``, removing a previous one only then."""
    old = store.with_name(store.name + ".previous")
    if old.exists():
        shutil.rmtree(old)
    if store.exists():
        store.rename(old)
    tmp.rename(store)
    if old.exists():
        shutil.rmtree(old)


def _convert(
    img: LazyImage,
    uri: str,
    store: Path,
    tmp: Path,
    in_place: bool,
    cfg: IngestConfig,
    allow_nonfinite: bool,
) -> tuple[dict[str, int], da.Array, str, tuple[int, ...], str, dict[str, Any], list]:
    """Check the values, write ``tmp`` and move it to ``store`` (or only add statistics)."""
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
    ident = input_identity(uri)
    fp = fingerprint(
        "ingest", STAGE_VERSIONS["ingest"], ident, axes_c, cfg.model_dump(), allow_nonfinite
    )
    target = store if in_place else tmp
    if not in_place:
        previous = store.with_name(store.name + ".previous")
        if previous.exists() and not store.exists():
            previous.rename(store)  # a replacement interrupted between its two renames
        if tmp.exists():
            log.info("removing leftover %s", tmp)
            shutil.rmtree(tmp)
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
        # A pool of our own: leaving the block waits for every write in flight, so a failed
        # ingest's temporary store can be removed without a late write recreating it.
        with ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="ingest") as pool:
            da.store(data.rechunk(chunks), arr, lock=False, scheduler="threads", pool=pool)
    arr, _ = omezarr.open_image(target)
    stats = channel_stats(da.from_zarr(arr), axes_c)
    for i, s in enumerate(stats):
        if s["max"] == s["min"]:
            log.warning(
                "%s: channel %d is constant (%g); the output will equal the input", uri, i, s["min"]
            )
    try:
        omezarr.set_attributes(omezarr.open_group(target, mode="r+"), {"stats": stats})
    except OSError as exc:
        if not in_place:
            raise
        # An OME-Zarr input used in place may sit on a read-only share: train computes the
        # statistics itself when they are absent.
        log.warning("%s: cannot record statistics in the input store (%s)", store, exc)
    if not in_place:
        _replace_store(tmp, store)
    return counts, data, axes_c, chunks, fp, ident, stats


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
    in_place = Path(uri).resolve() == store.resolve()
    tmp = store.with_name(store.name + ".partial")
    try:
        counts, data, axes_c, chunks, fp, ident, stats = _convert(
            img, uri, store, tmp, in_place, cfg, allow_nonfinite
        )
    except Exception as exc:
        if not in_place:
            shutil.rmtree(tmp, ignore_errors=True)
        located = None if isinstance(exc, InputError) else _damaged_input_error(img, exc)
        if located is not None:
            raise located from exc
        raise
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
