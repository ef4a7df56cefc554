"""Our BioImage Model Zoo packages (``denoise export-bmz``) read without weights.

``rdf.yaml`` alone tells what a package's model is (method, 2D/3D, per-channel training
statistics), so the sheet check (:func:`denoise.io.sheet_checks.model_problems`) can judge a
package named in the ``model`` column before any job runs; the weights are read by
:func:`denoise.export.bmz_import.import_bmz`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import yaml


def is_bmz_package(path: str | Path) -> bool:
    """True for a ``.zip`` file holding an ``rdf.yaml``."""
    path = Path(path)
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as zf:
        return "rdf.yaml" in zf.namelist()


def read_package(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(architecture kwargs, config.denoise)`` of one of our packages; ValueError if not ours."""
    with zipfile.ZipFile(path) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
    ours = ((rdf.get("config") or {}).get("denoise")) or None
    weights = (rdf.get("weights") or {}).get("pytorch_state_dict") or {}
    kwargs = (weights.get("architecture") or {}).get("kwargs")
    if ours is None or not kwargs:
        raise ValueError(
            f"{path}: not a package written by `denoise export-bmz` (no config.denoise or no "
            "pytorch_state_dict architecture kwargs); only our own packages can serve as a model"
        )
    return kwargs, ours


def package_meta(path: str | Path) -> dict[str, Any]:
    """The model.json-like metadata of a package (no weights read): method, ndim, norm, objective."""
    kwargs, ours = read_package(path)
    return {
        "method": ours.get("method", ""),
        "ndim": int(kwargs.get("ndim", 2)),
        "norm": {"mean": list(kwargs["mean"]), "std": list(kwargs["std"])},
        "objective": {"name": ours.get("method", "")},
    }
