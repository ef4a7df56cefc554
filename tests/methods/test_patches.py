"""Patch sampler: reads only crop regions, the right ones, normalised and augmented."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from denoise.methods.patches import PatchSampler, channel_norm, choose_ndim
from denoise.training.prefetch import Prefetcher
from tests.conftest import ingested_store as _store


class CountingArray:
    """Wraps a zarr array and records the shape of every read."""

    def __init__(self, arr):
        self.arr, self.reads = arr, []
        self.shape, self.dtype = arr.shape, arr.dtype

    def __getitem__(self, idx):
        out = self.arr[idx]
        self.reads.append(np.shape(out))
        return out

    def __array__(self, *a, **k):
        raise AssertionError("the whole array was loaded")


def _transforms(a: np.ndarray) -> list[np.ndarray]:
    out = []
    for k in range(4):
        r = np.rot90(a, k, axes=(-2, -1))
        out += [r, r[..., ::-1]]
    return out


def test_reads_only_the_crop_and_the_right_region(tmp_path):
    data = np.arange(2 * 3 * 40 * 48, dtype=np.float32).reshape(2, 3, 40, 48)
    store = _store(tmp_path, data, "tcyx")
    s = PatchSampler(store, 16, 8, 4, norm={"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]})
    assert (s.ndim, s.patch, s.sample_axes, s.n_samples) == (2, (16, 16), "tc", 6)
    s.array = CountingArray(s.array)
    patches = s.sample(np.random.default_rng(0), 20)
    assert patches.shape == (20, 1, 16, 16) and patches.dtype == np.float32
    assert s.array.reads == [(16, 16)] * 20
    seen = set()
    for p in patches[:, 0]:
        t, c, y, x = np.unravel_index(int(p.min()), data.shape)  # arange: min = top-left corner
        crop = data[t, c, y : y + 16, x : x + 16]
        assert any(np.array_equal(p, v) for v in _transforms(crop))
        seen.add(next(i for i, v in enumerate(_transforms(crop)) if np.array_equal(p, v)))
    assert len(seen) > 3  # augmentation uses several of the 8 transforms


def test_normalisation_uses_stored_channel_stats(tmp_path):
    rng = np.random.default_rng(1)
    data = np.stack([rng.normal(100, 5, (64, 64)), rng.normal(1000, 50, (64, 64))]).astype(
        np.float32
    )
    store = _store(tmp_path, data, "cyx")
    norm = channel_norm(store)
    assert norm["mean"][1] == pytest.approx(data[1].mean(), rel=1e-4)
    s = PatchSampler(store, 32, 8, 4)
    p = s.sample(np.random.default_rng(2), 40)
    assert abs(float(p.mean())) < 0.2 and float(p.std()) == pytest.approx(1.0, abs=0.2)


def test_seeded(tmp_path):
    store = _store(tmp_path, np.random.default_rng(3).random((3, 50, 60), dtype=np.float32), "tyx")
    s = PatchSampler(store, 32, 8, 4)
    a = s.sample(np.random.default_rng(7), 5)
    b = s.sample(np.random.default_rng(7), 5)
    c = s.sample(np.random.default_rng(8), 5)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_clamps_patch_with_warning(tmp_path, caplog):
    store = _store(tmp_path, np.zeros((42, 200), np.uint8) + np.arange(200, dtype=np.uint8), "yx")
    with caplog.at_level(logging.WARNING):
        s = PatchSampler(store, 64, 8, 4)
    assert s.patch == (40, 64)
    assert "axis 'y' has 42 pixels" in caplog.text
    assert s.sample(np.random.default_rng(0), 4).shape == (4, 1, 40, 64)  # non-square: no rot90


def test_too_small_raises_naming_store_and_axis(tmp_path):
    store = _store(tmp_path, np.ones((64, 7), np.float32), "yx", "thin")
    with pytest.raises(ValueError, match=r"thin\.ome\.zarr.*axis 'x' has 7 pixels.*8"):
        PatchSampler(store, 64, 8, 4)


def test_3d_and_2d_choice(tmp_path):
    vol = np.random.default_rng(4).random((2, 12, 40, 40), dtype=np.float32)
    store = _store(tmp_path, vol, "czyx")
    s3 = PatchSampler(store, 32, 16, 4)
    assert (s3.ndim, s3.patch, s3.sample_axes) == (3, (12 // 4 * 4, 32, 32), "c")
    assert s3.sample(np.random.default_rng(0), 2).shape == (2, 1, 12, 32, 32)
    s2 = PatchSampler(store, 32, 16, 4, dims="2d")
    assert (s2.ndim, s2.sample_axes, s2.n_samples) == (2, "cz", 24)
    assert choose_ndim("zyx", (1, 10, 10)) == 2
    with pytest.raises(ValueError, match="3d"):
        choose_ndim("tyx", (3, 10, 10), "3d")


def test_prefetcher_order_and_errors():
    with Prefetcher(lambda i: i * i, 2, 7) as it:
        assert list(it) == [4, 9, 16, 25, 36]

    def boom(i: int) -> int:
        if i == 3:
            raise RuntimeError("bad patch")
        return i

    with Prefetcher(boom, 0, 6) as it, pytest.raises(RuntimeError, match="bad patch"):
        list(it)
    early = Prefetcher(lambda i: i, 0, 1000, depth=2)
    assert next(early) == 0
    early.close()
