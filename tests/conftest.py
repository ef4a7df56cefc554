"""Shared fixtures: paths to the shared evaluation data and small real crops of it."""

from __future__ import annotations

import os
from pathlib import Path

# Before any test module imports torch (see denoise/__init__.py for why).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEMO = REPO / "demo" / "data"


def ingested_store(tmp_path: Path, data: np.ndarray, axes: str, name: str = "img") -> Path:
    """``data`` saved as ``<name>.npy`` and ingested into ``<name>.ome.zarr`` under ``tmp_path``
    (the ingest stage's own path)."""
    from denoise.io.ingest import ingest

    src = tmp_path / f"{name}.npy"
    np.save(src, data)
    store = tmp_path / f"{name}.ome.zarr"
    ingest(str(src), store, axes=axes)
    return store


def _read(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path)


@pytest.fixture(scope="session")
def fish_pair() -> tuple[np.ndarray, np.ndarray]:
    """The real FMD confocal `fish` image (noisy, ground truth), 512×512 uint8 (demo copy)."""
    return _read(DEMO / "fish_noisy.tif"), _read(DEMO / "fish_gt.tif")


@pytest.fixture(scope="session")
def fish_crop(fish_pair) -> tuple[np.ndarray, np.ndarray]:
    """A 128×128 crop of `fish` with structure (noisy, ground truth)."""
    noisy, gt = fish_pair
    return noisy[192:320, 192:320].copy(), gt[192:320, 192:320].copy()
