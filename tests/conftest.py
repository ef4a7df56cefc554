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


def correlated_noise(
    shape: tuple[int, int], rng: np.random.Generator, width: float, variance: float = 1.0
) -> tuple[np.ndarray, float]:
    """White noise blurred by a Gaussian of ``width`` px, scaled to ``variance``; its lag-1
    correlation (exact for the sampled kernel)."""
    from scipy import ndimage

    k = np.exp(-0.5 * (np.arange(-6, 7) / width) ** 2)
    k2 = np.outer(k, k)
    n = ndimage.convolve(rng.normal(size=shape), k2, mode="wrap")
    rho = float(np.sum(k2[:, 1:] * k2[:, :-1]) / np.sum(k2 * k2))
    return n * np.sqrt(variance / np.sum(k2 * k2)), rho


def correlated_series(
    rng: np.random.Generator, n_t: int = 3, size: int = 320
) -> tuple[np.ndarray, np.ndarray]:
    """``(n_t, size, size)`` float32 frames of a static smooth scene ``s`` (100-400) with noise
    of variance 6·s and lag-1 correlation ≈ 0.58 (:func:`correlated_noise`, width 0.7 px), as on
    the FMD wide-field camera; and ``s``."""
    from scipy import ndimage

    base = ndimage.gaussian_filter(rng.normal(size=(size, size)), 16)
    sig = 250 + 150 * base / np.abs(base).max()
    frames = [sig + np.sqrt(6 * sig) * correlated_noise(sig.shape, rng, 0.7)[0] for _ in range(n_t)]
    return np.stack(frames).astype(np.float32), sig


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
