"""Provenance and fingerprints: atomic JSON writes, checksums, package versions.

A *fingerprint* identifies what a stage computed: input identity, parameters and the stage's
version.  It is stored in every sentinel, store attribute and resume marker; it never holds
timestamps, so identical reruns produce identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

#: Bump a stage's version when a code change alters what it computes.
STAGE_VERSIONS = {
    "ingest": "1",
    "noise_model": "3",  # 2: histogram pooling/out-of-range x fixed; 3: rows stretched along the variance line
    "train": "1",
    "predict": "1",
    "evaluate": "1",
    "report": "1",
}

_PACKAGES = ("denoise", "numpy", "torch", "zarr", "dask", "scipy", "tifffile", "ome-zarr-models")


def package_versions() -> dict[str, str]:
    """Versions of the packages that influence results, plus Python."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON: equal objects give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(*parts: Any) -> str:
    """SHA-256 (hex, 16 chars) of the canonical JSON of ``parts``."""
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:16]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file (streamed) or of every file below a directory, in sorted order."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with f.open("rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def input_identity(uri: str) -> dict[str, Any]:
    """Cheap identity of an input (paths, sizes; content hash for files up to 256 MiB)."""
    p = Path(uri)
    ident: dict[str, Any] = {"uri": str(uri)}
    if p.is_file():
        ident["size"] = p.stat().st_size
        if ident["size"] <= 256 << 20:
            ident["sha256"] = file_sha256(p)
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".denoise"))
        ident["n_files"] = len(files)
        ident["size"] = sum(f.stat().st_size for f in files)
    return ident


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Mapping[str, Any]) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON file written by :func:`atomic_write_json`."""
    return json.loads(Path(path).read_text())
