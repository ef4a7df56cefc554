"""spatiotemporal: the (2k + 1)-frame blind-spot network: its batches, the runner path (equal to
the whole-series reference for scatter 1 and 2, tzyx per z plane, short series), the refusal
of data without frames, bit-identical reruns, and its gain over per-frame N2V on a static
synthetic series."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from denoise.config import PredictConfig, TrainConfig, read_dataset_sheet
from denoise.io.sheet_checks import check_sheet_inputs
from denoise.methods.patches import PatchSampler
from denoise.methods.registry import TrainRequest, build_predictor, get_method
from denoise.methods.spatiotemporal import (
    SpatiotemporalSettings,
    WindowPatchSource,
    train_spatiotemporal,
)
from denoise.predict.reference import predict_whole_series
from denoise.predict.runner import finalize_output, init_output, predict_units
from denoise.settings import ConfigError
from denoise.synthetic.timelapse import timelapse
from denoise.tiling.grid import reflect_index
from tests.conftest import REPO, correlated_series
from tests.predict.conftest import write_store

T, S = 8, 64
TINY = dict(
    depth=2, features=8, patch_size=32, batch_size=8, epochs=1, steps_per_epoch=10,
    learning_rate=3e-3, mask_fraction=0.05, threads=1, validation_fraction=0.1,
)  # fmt: skip


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _psnr(x: np.ndarray, gt: np.ndarray) -> float:
    gt = gt.astype(np.float64)
    return float(10 * np.log10((gt.max() - gt.min()) ** 2 / np.mean((x - gt) ** 2)))


def _series(speed: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    s = timelapse(speed, seed=seed)
    return s.noisy[:T, :S, :S], s.truth[:T, :S, :S]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A 10-step model on an 8 × 64 × 64 synthetic series, trained through the registry."""
    tmp = tmp_path_factory.mktemp("spatiotemporal")
    store = write_store(tmp / "in.ome.zarr", _series(0.5)[0], "tyx", (2, 32, 32))
    request = TrainRequest(
        store=str(store), model_dir=str(tmp / "model"), train=TrainConfig(**TINY),
        settings=SpatiotemporalSettings(k=2), seed=3, fingerprint="fp",
    )  # fmt: skip
    summary = get_method("spatiotemporal").train(request)
    return store, tmp / "model", summary


def test_registry_entry_and_metadata(trained) -> None:
    spec = get_method("spatiotemporal")
    assert spec.kind == "trained" and spec.needs == frozenset({"frames"})
    assert SpatiotemporalSettings().k == 3  # the default, chosen by measurement
    _, model_dir, summary = trained
    assert summary["halo_t"] == 2 and summary["steps_done"] == 10
    pred = build_predictor("spatiotemporal", PredictConfig(), 0, model_dir=model_dir, settings={"k": 2})
    assert (pred.kind, pred.ndim, pred.halo_t) == ("tiled", 2, 2)
    assert pred.meta["objective"]["halo_t"] == 2
    assert pred.meta["method_settings"] == {"k": 2, "mask_radius": 0}  # auto: white noise
    assert pred.meta["hparams"]["in_channels"] == 5
    with pytest.raises(ValueError, match="trained with k = 2"):
        build_predictor(
            "spatiotemporal", PredictConfig(), 0, model_dir=model_dir, settings={"k": 1}
        )


def _run(src: Path, out: Path, pred, scatter: int) -> tuple[np.ndarray, list[dict]]:
    outputs = {"denoised": str(out)}
    init_output(src, outputs, "fp", {})
    cfg = PredictConfig(tile=64, batch_size=3)
    summaries = [predict_units(src, outputs, pred, cfg, "fp", i, scatter) for i in range(scatter)]
    finalize_output(src, outputs, "fp", scatter)
    return zarr.open_group(str(out), mode="r")["s0"][...], summaries


@pytest.mark.parametrize("scatter", [1, 2])
def test_runner_equals_whole_series(trained, tmp_path: Path, scatter: int) -> None:
    """20 frames (two 16-frame units along t for k = 2), 60 × 72 px in 64-px tiles (halo 24)."""
    _, model_dir, _ = trained
    pred = build_predictor("spatiotemporal", PredictConfig(), 0, model_dir=model_dir, settings={"k": 2})
    noisy = timelapse(0.5, seed=2, frames=20).noisy[:, :60, :72]
    src = write_store(tmp_path / "in.ome.zarr", noisy, "tyx", (3, 32, 32))
    got, summaries = _run(src, tmp_path / "out.ome.zarr", pred, scatter)
    assert summaries[0]["n_units"] == 2 and all(
        len(s["computed"]) == 2 // scatter for s in summaries
    )
    ref = predict_whole_series(pred, noisy)[0]
    assert got.shape == noisy.shape
    np.testing.assert_allclose(
        got, ref, rtol=1e-5, atol=1e-3
    )  # float32 rounding of other tile shapes
    assert np.std(got - noisy) > 1.0  # it did something


def test_tzyx_per_plane_and_short_series(trained, tmp_path: Path) -> None:
    """tzyx data: every z plane is its own series; a 3-frame series (< 2k + 1) works."""
    _, model_dir, _ = trained
    pred = build_predictor("spatiotemporal", PredictConfig(), 0, model_dir=model_dir, settings={"k": 2})
    noisy = _series(2.0, seed=1)[0]
    tzyx = np.stack([noisy[:3, :40, :48], noisy[3:6, :40, :48]], axis=1)  # (3, 2, 40, 48)
    src = write_store(tmp_path / "tzyx.ome.zarr", tzyx, "tzyx", (1, 1, 40, 48))
    got, _ = _run(src, tmp_path / "out.ome.zarr", pred, 2)
    for z in range(2):
        ref = predict_whole_series(pred, tzyx[:, z])[0]
        np.testing.assert_allclose(got[:, z], ref, rtol=1e-5, atol=1e-3)


def test_batches_hide_every_copy_of_the_centre(tmp_path: Path) -> None:
    """Reflected windows hold the centre frame twice (k = 2, frame 1: 1, 0, 1, 2, 3; a 2-frame
    series: 0, 1, 0, 1, 0): every copy gets the same blind spots, so the network never sees a
    blind spot's own value; batches are pure functions of (seed, step)."""
    for n_t in (2, 8):
        data = np.random.default_rng(n_t).normal(100, 10, (n_t, 32, 32)).astype(np.float32)
        store = write_store(tmp_path / f"s{n_t}.ome.zarr", data, "tyx", (1, 32, 32))
        cfg = TrainConfig(**{**TINY, "batch_size": 32})
        sampler = PatchSampler(store, cfg.patch_size, cfg.patch_size_z, 4, "2d")
        source = WindowPatchSource(sampler, cfg, seed=1, k=2)
        inp, tgt, mask = source.train(5)
        assert inp.shape == (32, 5, 32, 32) and tgt.shape == mask.shape == (32, 1, 32, 32)
        again = source.train(5)
        assert all(torch.equal(a, b) for a, b in zip((inp, tgt, mask), again, strict=True))
        assert not torch.equal(inp, source.train(6)[0])
        m = mask[:, 0]
        assert 0.03 < m.float().mean() < 0.07
        centre = inp[:, 2]
        assert torch.equal(centre[~m], tgt[:, 0][~m]) and not torch.equal(centre[m], tgt[:, 0][m])
        copies = 0
        for b in range(inp.shape[0]):
            for j in (0, 1, 3, 4):
                if torch.equal(inp[b, j][~m[b]], centre[b][~m[b]]):  # a copy of the centre frame
                    copies += 1
                    assert torch.equal(inp[b, j], centre[b])  # with the same blind spots
                else:  # another frame: intact at the blind spots
                    assert not torch.equal(inp[b, j][m[b]], tgt[b, 0][m[b]])
        assert copies > 0  # reflected windows were drawn
        if n_t == 2:  # 0, 1, 0, 1, 0 or 1, 0, 1, 0, 1: two copies each
            assert copies == 2 * inp.shape[0]
    assert list(reflect_index(-1, 4, 8)) == [1, 0, 1, 2, 3]


def test_refuses_data_without_frames(tmp_path: Path) -> None:
    plane = write_store(tmp_path / "plane.ome.zarr", _series()[0][0], "yx", (64, 64))
    with pytest.raises(ValueError, match="needs a t axis"):
        train_spatiotemporal(plane, tmp_path / "m", TrainConfig(**TINY), seed=0, progress=False)
    fish = REPO / "demo" / "data" / "fish_noisy.tif"  # one yx plane
    series = tmp_path / "series.npy"
    np.save(series, np.zeros((3, 8, 8), np.uint16))
    sheet = tmp_path / "s.tsv"
    sheet.write_text(
        "name\turi\taxes\tmethod\n"
        f"plane\t{fish}\tyx\tspatiotemporal\n"
        f"series\t{series}\ttyx\tspatiotemporal\n"
    )
    with pytest.raises(ConfigError) as err:
        check_sheet_inputs(read_dataset_sheet(sheet), sheet)
    lines = str(err.value).splitlines()
    assert (
        len(lines) == 1
        and "row 1 (plane): key 'uri': method 'spatiotemporal' needs frames" in lines[0]
    )


def test_deterministic_rerun(trained, tmp_path: Path) -> None:
    store, model_dir, summary = trained
    again = train_spatiotemporal(
        store,
        tmp_path / "again",
        TrainConfig(**TINY),
        seed=3,
        k=2,
        fingerprint="fp",
        progress=False,
    )
    assert again["sha256"] == summary["sha256"]
    a = torch.load(model_dir / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "again" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    other = train_spatiotemporal(
        store,
        tmp_path / "other",
        TrainConfig(**TINY),
        seed=4,
        k=2,
        fingerprint="fp",
        progress=False,
    )
    assert other["sha256"] != summary["sha256"]


def test_beats_per_frame_n2v_on_a_static_series(tmp_path: Path) -> None:
    """Same data (speed 0, 8 × 64 × 64, transients and bleaching kept), same U-Net width and
    steps (200 × 8 patches of 32²): measured +1.75 / +1.60 / +1.76 dB for training seeds
    0 / 1 / 2 (spatiotemporal 33.95 / 33.55 / 33.91 dB, n2v 32.20 / 31.95 / 32.15 dB, noisy
    23.61 dB); the test asks for +1.0 dB."""
    from denoise.methods.n2v import train_n2v

    noisy, truth = _series(0.0)
    store = write_store(tmp_path / "in.ome.zarr", noisy, "tyx", (1, S, S))
    cfg = TrainConfig(**{**TINY, "steps_per_epoch": 200, "validation_fraction": 0.0})
    train_spatiotemporal(store, tmp_path / "st", cfg, seed=0, k=2, progress=False)
    train_n2v(store, tmp_path / "n2v", cfg, seed=0, progress=False)
    st = build_predictor("spatiotemporal", PredictConfig(), 0, model_dir=tmp_path / "st", settings={"k": 2})
    n2v = build_predictor("n2v", PredictConfig(), 0, model_dir=tmp_path / "n2v")
    p_st = _psnr(predict_whole_series(st, noisy)[0], truth)
    p_n2v = _psnr(predict_whole_series(n2v, noisy)[0], truth)
    print(
        f"PSNR vs truth: noisy {_psnr(noisy, truth):.2f}, spatiotemporal {p_st:.2f}, n2v {p_n2v:.2f} dB"
    )
    assert p_st - p_n2v > 1.0, (p_st, p_n2v)


def test_mask_radius_auto_follows_the_noise_correlation(tmp_path: Path) -> None:
    from denoise.methods.masking import CORRELATED_MASK_RADIUS
    from denoise.methods.patches import resolve_mask_radius

    rng = np.random.default_rng(5)
    corr = write_store(tmp_path / "c.ome.zarr", correlated_series(rng)[0], "tyx", (1, 320, 320))
    white_data = (250 + np.sqrt(6 * 250) * rng.normal(size=(3, 320, 320))).astype(np.float32)
    white = write_store(tmp_path / "w.ome.zarr", white_data, "tyx", (1, 320, 320))
    cfg = TrainConfig(**TINY)
    for store, want in ((corr, CORRELATED_MASK_RADIUS), (white, 0)):
        sampler = PatchSampler(store, cfg.patch_size, cfg.patch_size_z, 4, "2d")
        assert resolve_mask_radius("auto", sampler) == want
        assert resolve_mask_radius(1, sampler) == 1
    # The resolved radius is what the batches use and what the model records.
    summary = train_spatiotemporal(corr, tmp_path / "m", TrainConfig(**{**TINY, "steps_per_epoch": 2}),
                                   seed=0, k=1, progress=False)  # fmt: skip
    pred = build_predictor("spatiotemporal", PredictConfig(), 0, model_dir=tmp_path / "m", settings={"k": 1})
    assert summary["steps_done"] == 2 and pred.meta["method_settings"]["mask_radius"] == 2
    sampler = PatchSampler(corr, cfg.patch_size, cfg.patch_size_z, 4, "2d")
    inp, tgt, mask = WindowPatchSource(sampler, cfg, seed=1, k=1, mask_radius=2).train(0)
    near = torch.nn.functional.max_pool2d(mask.float(), 5, stride=1, padding=2)[:, 0] > 0
    far = ~near
    assert torch.equal(inp[:, 1][far], tgt[:, 0][far])  # untouched away from the blind spots
    ring = near & ~mask[:, 0]
    assert (inp[:, 1][ring] != tgt[:, 0][ring]).float().mean() > 0.9  # hidden around them
