"""Predictors that see neighbouring frames (``halo_t = k > 0``): windows of 2k + 1 frames,
reflected at the series' ends, equal to a whole-series numpy reference for any scatter count."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr
from scipy import ndimage

from denoise.config import PredictConfig
from denoise.predict.reference import predict_whole_series
from denoise.predict.runner import finalize_output, init_output, predict_units
from denoise.predict.units import UnitLayout, t_block
from denoise.tiling.grid import reflect_index


class TemporalMeanPlanes:
    """PlanePredictor: mean of the 2k + 1 frames, then a Gaussian in space, times (1 + c)."""

    kind = "plane"
    output_names = ("denoised",)

    def __init__(self, k: int, ndim: int = 2) -> None:
        self.halo_t, self.ndim = k, ndim
        self.windows: list[tuple[dict[str, int], tuple[int, ...]]] = []

    def __call__(self, window: np.ndarray, index: dict[str, int]) -> np.ndarray:
        self.windows.append((dict(index), window.shape))
        assert window.shape[0] == 2 * self.halo_t + 1
        mean = window.mean(axis=0, dtype=np.float32)
        return (ndimage.gaussian_filter(mean, 1.0, mode="mirror") * (1 + index.get("c", 0)))[None]


class TemporalMeanTiles:
    """TiledPredictor: mean of the 2k + 1 frames, then a 3 × 3 box in space (context 1 px)."""

    kind = "tiled"
    ndim = 2
    halo, multiple, receptive_field = 4, 4, 1
    output_names = ("denoised", "centre")

    def __init__(self, k: int) -> None:
        self.halo_t = k

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        assert tiles.ndim == 4 and tiles.shape[1] == 2 * self.halo_t + 1
        mean = tiles.mean(axis=1, dtype=np.float32)
        box = ndimage.uniform_filter(mean, size=(1, 3, 3), mode="nearest") * (1 + channel)
        return np.stack([box, tiles[:, self.halo_t]], axis=1)


def _series(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 20, size=shape).astype(np.float32)


def _windows_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Sliding mean over 2k + 1 frames of axis 0, np.pad reflect at the ends."""
    pad = np.pad(x, [(k, k)] + [(0, 0)] * (x.ndim - 1), mode="reflect")
    return np.stack([pad[t : t + 2 * k + 1].mean(axis=0, dtype=np.float32) for t in range(x.shape[0])])


def _run(src: Path, out: Path, predictor, cfg: PredictConfig, scatter: int, chunks=None) -> dict:
    outputs = {n: str(out.with_name(f"{out.name}.{n}.ome.zarr")) for n in predictor.output_names}
    init_output(src, outputs, "fp", {}, chunks=chunks)
    with ThreadPoolExecutor(scatter) as ex:
        parts = list(ex.map(lambda i: predict_units(src, outputs, predictor, cfg, "fp", i, scatter), range(scatter)))
    finalize_output(src, outputs, "fp", scatter)
    return {"parts": parts, **{n: zarr.open_group(p, mode="r")["s0"][...] for n, p in outputs.items()}}


def test_reflect_rule_matches_numpy_pad_for_any_length() -> None:
    """The rule: np.pad(mode='reflect') (edge frame not repeated), repeated for short series."""
    for n in (1, 2, 3, 5):
        for k in (1, 2, 4):
            frames = np.arange(n)
            padded = np.pad(frames, k, mode="reflect") if n > 1 else np.zeros(n + 2 * k, int)
            for t in range(n):
                assert list(reflect_index(t - k, t + k + 1, n)) == list(padded[t : t + 2 * k + 1])
    assert list(reflect_index(-2, 3, 3)) == [2, 1, 0, 1, 2]  # frame 0 of 3, k = 2
    assert list(reflect_index(0, 5, 2)) == [0, 1, 0, 1, 0]  # frame 2 (virtual) of a 2-frame series


@pytest.mark.parametrize("scatter", [1, 3])
def test_plane_windows_equal_numpy_reference(make_store, tmp_path: Path, scatter: int) -> None:
    k = 2
    data = _series((23, 2, 20, 24))  # t c y x: 23 frames, two channels
    src = make_store(data, "tcyx", (1, 1, 10, 12))
    pred = TemporalMeanPlanes(k)
    res = _run(src, tmp_path / "plane", pred, PredictConfig(), scatter)
    mean = _windows_mean(data, k)
    ref = np.stack(
        [[ndimage.gaussian_filter(mean[t, c], 1.0, mode="mirror") * (1 + c) for c in range(2)] for t in range(23)]
    )
    np.testing.assert_array_equal(res["denoised"], ref)
    # the one whole-series reference agrees too, channel by channel
    for c in range(2):
        np.testing.assert_array_equal(res["denoised"][:, c], predict_whole_series(pred, data[:, c], c)[0])
    # every output frame was predicted once, from a (2k + 1, y, x) window with its t/c index
    seen = sorted((i["t"], i["c"]) for i, _ in pred.windows[: 2 * 23])
    assert seen == [(t, c) for t in range(23) for c in range(2)]
    assert {shape for _, shape in pred.windows} == {(2 * k + 1, 20, 24)}
    n_units = 2 * -(-23 // t_block(k, 23))  # blocks of 16 frames per channel
    assert sorted(u for p in res["parts"] for u in p["computed"]) == list(range(n_units))


@pytest.mark.parametrize("scatter", [1, 3])
def test_tiled_windows_equal_numpy_reference(make_store, tmp_path: Path, scatter: int) -> None:
    k = 1
    data = _series((11, 37, 45), seed=1)
    src = make_store(data, "tyx", (1, 16, 16))
    pred = TemporalMeanTiles(k)
    cfg = PredictConfig(tile=16, batch_size=3)  # many tiles per frame: blending along y, x
    res = _run(src, tmp_path / "tiled", pred, cfg, scatter, chunks=(1, 16, 16))
    mean = _windows_mean(data, k)
    ref = ndimage.uniform_filter(mean, size=(1, 3, 3), mode="mirror")
    np.testing.assert_allclose(res["denoised"], ref, rtol=2e-6, atol=1e-4)
    np.testing.assert_allclose(res["centre"], data, rtol=1e-6)  # blending: Σ w·p / Σ w
    whole = predict_whole_series(pred, data)
    np.testing.assert_allclose(res["denoised"], whole[0], rtol=2e-6, atol=1e-4)


def test_scatter_1_and_3_bit_identical_and_3d_volumes(make_store, tmp_path: Path) -> None:
    k = 1
    data = _series((9, 6, 12, 10), seed=2)  # t z y x: a 3D plane predictor sees (3, z, y, x)
    src = make_store(data, "tzyx", (1, 6, 12, 10))
    one = _run(src, tmp_path / "one", TemporalMeanPlanes(k, ndim=3), PredictConfig(), 1)
    three = _run(src, tmp_path / "three", TemporalMeanPlanes(k, ndim=3), PredictConfig(), 3)
    assert one["denoised"].tobytes() == three["denoised"].tobytes()
    mean = _windows_mean(data, k)
    ref = np.stack([ndimage.gaussian_filter(m, 1.0, mode="mirror") for m in mean])
    np.testing.assert_array_equal(one["denoised"], ref)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_series_shorter_than_the_window(make_store, tmp_path: Path, n: int) -> None:
    k = 2
    data = _series((n, 8, 8), seed=3)
    src = make_store(data, "tyx", (1, 8, 8))
    res = _run(src, tmp_path / f"short{n}", TemporalMeanPlanes(k), PredictConfig(), 1)
    idx = [reflect_index(t - k, t + k + 1, n) for t in range(n)]
    mean = np.stack([data[i].mean(axis=0, dtype=np.float32) for i in idx])
    ref = np.stack([ndimage.gaussian_filter(m, 1.0, mode="mirror") for m in mean])
    np.testing.assert_array_equal(res["denoised"], ref)


def test_frames_are_read_about_once(make_store, tmp_path: Path) -> None:
    """Blocks of 8k frames: the input is read ≤ 1.25× (not 2k + 1 = 5× with one-frame units)."""
    k = 2
    data = _series((64, 16, 16), seed=4)
    src = make_store(data, "tyx", (1, 16, 16))
    res = _run(src, tmp_path / "bytes", TemporalMeanPlanes(k), PredictConfig(), 4)
    read = sum(p["bytes_read"]["box"] for p in res["parts"])
    assert read == sum(p["bytes_read"]["chunks"] for p in res["parts"])  # whole chunks only
    assert data.nbytes <= read <= 1.25 * data.nbytes
    assert res["parts"][0]["tiling"]["t_block"] == 16 and res["parts"][0]["tiling"]["halo_t"] == k


def test_t_block_and_layout() -> None:
    assert t_block(0, 100) == 1 and t_block(2, 100) == 16 and t_block(2, 5) == 5
    assert t_block(1, 100, chunk_t=3) == 9
    lay = UnitLayout((40, 8, 8), (1, 8, 8), "tyx", 2, whole_planes=True, halo_t=2)
    assert len(lay) == 3 and lay.unit(2).region[0] == slice(32, 40)
    with pytest.raises(ValueError, match="no t axis"):
        UnitLayout((8, 8), (8, 8), "yx", 2, whole_planes=True, halo_t=1)


def test_no_t_axis_is_refused(make_store, tmp_path: Path) -> None:
    src = make_store(_series((8, 8)), "yx", (8, 8))
    outputs = {"denoised": str(tmp_path / "o.ome.zarr")}
    with pytest.raises(ValueError, match="no t axis"):
        predict_units(src, outputs, TemporalMeanPlanes(1), PredictConfig(), "fp")


def test_resume_skips_finished_frame_blocks(make_store, tmp_path: Path) -> None:
    """Job 0 of 2 ran (then the run stopped): a rerun computes only the other blocks."""
    k = 1
    data = _series((30, 8, 8), seed=5)
    src = make_store(data, "tyx", (1, 8, 8))
    pred = TemporalMeanPlanes(k)
    outputs = {"denoised": str(tmp_path / "resume.ome.zarr")}
    init_output(src, outputs, "fp", {})
    first = predict_units(src, outputs, pred, PredictConfig(), "fp", 0, 2)
    assert first["computed"] == [0, 2] and first["tiling"]["t_block"] == 8  # blocks of 8 frames
    rest = predict_units(src, outputs, pred, PredictConfig(), "fp", 0, 1)
    assert rest["skipped"] == [0, 2] and rest["computed"] == [1, 3]
    assert rest["bytes_read"]["box"] < data.nbytes
    finalize_output(src, outputs, "fp", 1)
    got = zarr.open_group(outputs["denoised"], mode="r")["s0"][...]
    ref = np.stack([ndimage.gaussian_filter(m, 1.0, mode="mirror") for m in _windows_mean(data, k)])
    np.testing.assert_array_equal(got, ref)
