"""Fixtures for prediction tests: small OME-Zarr inputs and simple predictors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from denoise.io import omezarr


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Shared 2-core machine: OpenMP spin-waits make 2 threads far slower under load.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_store(
    path: Path, data: np.ndarray, axes: str, chunks: tuple[int, ...], scale: dict[str, float] | None = None
) -> Path:
    """Write ``data`` as an OME-Zarr 0.5 image and return its path."""
    arr = omezarr.create_image(
        path, data.shape, data.dtype, axes, chunks,
        scale=scale or {a: 0.5 for a in axes if a in "zyx"}, units={"t": "millisecond"},
    )
    arr[...] = data
    return path


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """``make_store(data, axes, chunks, name="in.ome.zarr")`` → path of a new input store."""

    def make(data: np.ndarray, axes: str, chunks: tuple[int, ...], name: str = "in.ome.zarr") -> Path:
        return write_store(tmp_path / name, data, axes, chunks)

    return make


class BoxPredictor:
    """TiledPredictor: per-channel scaled 5×5 box mean (receptive field 2 px)."""

    kind, halo_t = "tiled", 0
    ndim = 2
    halo = 4
    multiple = 4
    receptive_field = 2
    output_names = ("denoised",)

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        out = ndimage.uniform_filter(tiles.astype(np.float32), size=(1, 5, 5), mode="nearest")
        return (out * (1 + channel))[:, None]


class TwoOutputs:
    """TiledPredictor with two outputs: identity and doubled (no context needed)."""

    kind, halo_t = "tiled", 0
    ndim = 2
    halo = 0
    multiple = 1
    output_names = ("denoised", "doubled")

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        t = tiles.astype(np.float32)
        return np.stack([t, 2 * t], axis=1)


class GaussianPlanes:
    """PlanePredictor: a fixed Gaussian filter over whole planes (2D) or volumes (3D)."""

    kind, halo_t = "plane", 0
    output_names = ("denoised",)

    def __init__(self, ndim: int = 2, sigma: float = 1.5) -> None:
        self.ndim = ndim
        self.sigma = sigma
        self.calls: list[dict[str, int]] = []

    def __call__(self, plane: np.ndarray, index: dict[str, int]) -> np.ndarray:
        self.calls.append(dict(index))
        return ndimage.gaussian_filter(plane.astype(np.float32), self.sigma)[None]


@pytest.fixture
def predictors() -> dict[str, type]:
    """The simple predictor classes above, by name."""
    return {"box": BoxPredictor, "two": TwoOutputs, "gauss": GaussianPlanes}
