"""BioImage Model Zoo packages read without weights: ours (``denoise export-bmz``) and foreign.

``rdf.yaml`` alone tells what a package's model is (method, 2D/3D, per-channel training
statistics), so the sheet check (:func:`denoise.io.sheet_checks.model_problems`) can judge a
package named in the ``model`` column before any job runs; the weights are read by
:func:`denoise.export.bmz_import.import_bmz`.  A package without our ``config.denoise`` is a
foreign one: it must be N2V-type (:func:`denoise.io.bmz_spec.read_foreign_spec`) and counts
as an ``n2v`` model with one channel.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from denoise.io.bmz_spec import read_foreign_spec, read_rdf


def is_bmz_package(path: str | Path) -> bool:
    """True for a ``.zip`` file holding an ``rdf.yaml`` (or ``*bioimageio.yaml``)."""
    path = Path(path)
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n == "rdf.yaml" or n.endswith("bioimageio.yaml") for n in zf.namelist())


def is_our_package(path: str | Path) -> bool:
    """True for a package written by ``denoise export-bmz`` (its rdf.yaml has config.denoise)."""
    return bool((read_rdf(path).get("config") or {}).get("denoise"))


def read_package(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(architecture kwargs, config.denoise)`` of one of our packages; ValueError if not ours."""
    rdf = read_rdf(path)
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
    """The model.json-like metadata of a package (no weights read): method, ndim, norm, objective.

    A foreign package is checked as N2V-type (ValueError naming it and what is unsupported)
    and described as a one-channel ``n2v`` model (no training statistics: ``norm`` is empty).
    """
    if not is_our_package(path):
        spec = read_foreign_spec(path)
        return {"method": "n2v", "ndim": spec.ndim, "norm": {}, "objective": {"name": "n2v"}}
    kwargs, ours = read_package(path)
    return {
        "method": ours.get("method", ""),
        "ndim": int(kwargs.get("ndim", 2)),
        "norm": {"mean": list(kwargs["mean"]), "std": list(kwargs["std"])},
        "objective": {"name": ours.get("method", "")},
    }
