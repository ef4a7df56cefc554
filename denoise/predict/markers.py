"""Per-unit completion markers and the run fingerprint of an output store.

A unit of prediction is *done* only when ``<store>/.denoise_markers/<unit>.json`` exists and
holds the current run fingerprint.  Markers are written atomically (temporary file +
``os.replace``) after the unit's data, so a killed job leaves either a valid marker for fully
written data or no marker at all.  Chunk files are no completion signal: zarr skips writing
chunks that equal the fill value.  The markers live inside the store (the directory is an empty zarr
group, so readers ignore it), and wiping the store for a new fingerprint wipes them too.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from denoise.provenance import STAGE_VERSIONS, atomic_write_json, fingerprint, input_identity

log = logging.getLogger(__name__)

MARKER_DIR = ".denoise_markers"


def marker_dir(store: str | Path) -> Path:
    """Directory of the unit markers of ``store``."""
    return Path(store) / MARKER_DIR


def ensure_marker_dir(store: str | Path) -> Path:
    """Create the marker directory as an empty zarr group.

    Being a valid (empty) group keeps zarr from warning about an unknown member when the
    store's hierarchy is listed; OME-Zarr readers and validators ignore it.
    """
    d = marker_dir(store)
    d.mkdir(parents=True, exist_ok=True)
    meta = d / "zarr.json"
    if not meta.exists():
        atomic_write_json(meta, {"zarr_format": 3, "node_type": "group", "attributes": {"denoise": "unit markers"}})
    return d


def marker_path(store: str | Path, unit: int) -> Path:
    """Marker file of unit ``unit`` (zero-padded id, so listings sort naturally)."""
    return marker_dir(store) / f"u{int(unit):09d}.json"


def write_marker(store: str | Path, unit: int, run_fingerprint: str, info: Mapping[str, Any] | None = None) -> None:
    """Atomically mark ``unit`` of ``store`` as done for ``run_fingerprint``."""
    atomic_write_json(marker_path(store, unit), {"unit": int(unit), "fingerprint": run_fingerprint, **(info or {})})


def done_units(store: str | Path, run_fingerprint: str) -> set[int]:
    """Ids of the units of ``store`` whose marker holds ``run_fingerprint``.

    Markers with another fingerprint, temporary files and unreadable files are ignored (and
    logged), so they count as not done.
    """
    d = marker_dir(store)
    done: set[int] = set()
    stale = 0
    if not d.is_dir():
        return done
    with os.scandir(d) as it:
        for entry in it:
            name = entry.name
            if not (name.startswith("u") and name.endswith(".json")):
                continue
            try:
                info = json.loads(Path(entry.path).read_text())
                unit = int(info["unit"])
            except (OSError, ValueError, KeyError, TypeError):
                stale += 1
                continue
            if info.get("fingerprint") == run_fingerprint and name == marker_path(store, unit).name:
                done.add(unit)
            else:
                stale += 1
    if stale:
        log.warning("%s: %d marker(s) do not match fingerprint %s; those units will be recomputed", store, stale, run_fingerprint)
    return done


def units_done_everywhere(stores: Iterable[str | Path], run_fingerprint: str) -> set[int]:
    """Units done in every one of ``stores`` (a unit writes all outputs before its markers)."""
    result: set[int] | None = None
    for s in stores:
        d = done_units(s, run_fingerprint)
        result = d if result is None else result & d
    return result or set()


def run_fingerprint(
    input_store: str | Path,
    model_checksum: str,
    params: Mapping[str, Any],
    shape: Iterable[int] | None = None,
    dtype: str | None = None,
    axes: str | None = None,
) -> str:
    """Fingerprint of a prediction run.

    Hash of the input identity (path, file count and size; plus shape, dtype and axes when
    given), the model checksum, the parameters that change results (drop ``scatter``,
    ``threads``, ``device`` and ``batch_size`` before passing them: they do not change what is
    computed) and the ``predict`` stage version.
    """
    ident = input_identity(str(input_store))
    if shape is not None:
        ident["shape"] = [int(s) for s in shape]
    if dtype is not None:
        ident["dtype"] = str(dtype)
    if axes is not None:
        ident["axes"] = axes
    return fingerprint("predict", STAGE_VERSIONS["predict"], ident, model_checksum, dict(params))
