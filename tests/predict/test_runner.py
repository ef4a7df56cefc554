"""End-to-end prediction over OME-Zarr: exactness, metadata, plane predictors, fingerprints."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from scipy import ndimage

from denoise.config import PredictConfig
from denoise.io import omezarr
from denoise.models.unet import UNet
from denoise.predict import markers
from denoise.predict.network import NetworkPredictor
from denoise.predict.runner import finalize_output, init_output, predict_units
from denoise.tiling.blend import reference_predict

TOL = 1e-5


def _unet(ndim: int = 2, depth: int = 2, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(ndim=ndim, depth=depth, features=4).eval()


def _meta(model: UNet, mean: list[float], std: list[float]) -> dict:
    return {"ndim": model.ndim, "receptive_field": 23 if model.depth == 2 else 51,
            "norm": {"mean": mean, "std": std}, "hparams": model.hparams}


def _read(path: str | Path) -> np.ndarray:
    return omezarr.open_image(path)[0][...]


def test_network_tiled_equals_whole_image_per_channel(make_store, tmp_path: Path) -> None:
    """tcyx input, per-channel normalisation, units smaller than the image, several chunkings."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, size=(2, 2, 70, 90)).astype(np.uint16)
    src = make_store(data, "tcyx", (1, 1, 32, 32))
    model = _unet()
    meta = _meta(model, [2000.0, 1000.0], [1100.0, 600.0])
    cfg = PredictConfig(tile=64, batch_size=3)
    pred = NetworkPredictor(model, meta, cfg)
    assert pred.halo == 24 and pred.multiple == 4
    for chunks in [(1, 1, 40, 48), (1, 1, 70, 90)]:
        out = {"denoised": str(tmp_path / f"out{chunks[-1]}.ome.zarr")}
        init_output(src, out, "fp", {}, chunks=chunks)
        predict_units(src, out, pred, cfg, "fp")
        got = _read(out["denoised"])
        for t in range(2):
            for c in range(2):
                mean, std = meta["norm"]["mean"][c], meta["norm"]["std"][c]
                ref = reference_predict(lambda x, c=c: pred(x, channel=c), data[t, c], 24, 4)[0]
                # compare in normalised units (the network's own scale)
                assert np.abs(got[t, c] - ref).max() / std <= TOL
                assert abs(float(np.mean(got[t, c])) - mean) < 5 * std


def test_3d_network_with_thin_z(make_store, tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(100, 10, size=(1, 37, 29)).astype(np.float32)
    src = make_store(data, "zyx", (1, 16, 16))
    model = _unet(ndim=3)
    cfg = PredictConfig(tile=48, tile_z=8)
    pred = NetworkPredictor(model, _meta(model, [100.0], [10.0]), cfg)
    out = {"denoised": str(tmp_path / "o.ome.zarr")}
    init_output(src, out, "fp", {}, chunks=(1, 20, 16))
    predict_units(src, out, pred, cfg, "fp")
    ref = reference_predict(pred, data, 24, 4)[0]
    assert np.abs(_read(out["denoised"]) - ref).max() / 10.0 <= TOL


def test_2d_network_on_a_stack_loops_z(make_store, tmp_path: Path) -> None:
    data = np.random.default_rng(2).normal(size=(3, 33, 41)).astype(np.float32)
    src = make_store(data, "zyx", (2, 16, 16))
    model = _unet()
    cfg = PredictConfig(tile=64)
    pred = NetworkPredictor(model, _meta(model, [0.0], [1.0]), cfg)
    out = {"denoised": str(tmp_path / "o.ome.zarr")}
    summary = predict_units(src, out, pred, cfg, "fp")
    assert summary["tiling"]["chunks"] == [3, 33, 41]  # default chunks, clipped to the image
    got = _read(out["denoised"])
    for z in range(3):
        assert np.abs(got[z] - reference_predict(pred, data[z], 24, 4)[0]).max() <= TOL


def test_output_store_metadata_and_readers(make_store, tmp_path: Path, predictors) -> None:
    data = np.random.default_rng(3).integers(0, 255, size=(3, 1, 50, 60)).astype(np.uint8)
    src = make_store(data, "tcyx", (1, 1, 25, 30))
    out = {"denoised": str(tmp_path / "d.ome.zarr"), "doubled": str(tmp_path / "dd.ome.zarr")}
    cfg = PredictConfig()
    init_output(src, out, "fp1", {"predict_config": cfg.model_dump(mode="json"), "method": "test"},
                chunks=(1, 1, 25, 30))
    predict_units(src, out, predictors["two"](), cfg, "fp1")
    summary = finalize_output(src, out, "fp1", 1)
    assert summary["n_units"] == 3 * 4
    np.testing.assert_array_equal(_read(out["denoised"]), data.astype(np.float32))
    np.testing.assert_array_equal(_read(out["doubled"]), 2 * data.astype(np.float32))
    group = zarr.open_group(out["denoised"], mode="r")
    arr = group["s0"]
    assert arr.dtype == np.float32 and np.isnan(arr.fill_value)
    axes, scales, units = omezarr.read_axes(group)
    s_axes, s_scales, s_units = omezarr.read_axes(zarr.open_group(str(src), mode="r"))
    assert axes == s_axes and scales[0] == s_scales[0] and units == s_units
    attrs = dict(group.attrs)["denoise"]
    assert attrs["fingerprint"] == "fp1" and attrs["complete"] is True and attrs["method"] == "test"
    assert "torch" in attrs["versions"] and attrs["predict_config"]["tile"] == cfg.tile
    omezarr.validate_store(out["denoised"])
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(out["denoised"]))()))
    assert tuple(node.data[0].shape) == data.shape
    xa = omezarr.as_xarray(out["denoised"])
    assert xa.dims == ("t", "c", "y", "x") and float(xa.isel(t=1, c=0, y=2, x=3)) == float(data[1, 0, 2, 3])


@pytest.mark.parametrize("ndim", [2, 3])
def test_plane_predictor(make_store, tmp_path: Path, ndim: int, predictors) -> None:
    data = np.random.default_rng(4).normal(size=(2, 5, 30, 26)).astype(np.float32)
    src = make_store(data, "tzyx", (1, 2, 16, 16))
    pred = predictors["gauss"](ndim=ndim)
    out = {"denoised": str(tmp_path / "g.ome.zarr")}
    summary = predict_units(src, out, pred, PredictConfig(), "fp")
    got = _read(out["denoised"])
    if ndim == 2:
        assert summary["n_units"] == 2  # t × one z chunk (default 32 planes, clipped to 5)
        assert len(pred.calls) == 10 and {"t", "z"} == set(pred.calls[0])
        ref = np.stack([[ndimage.gaussian_filter(p, 1.5) for p in v] for v in data])
    else:
        assert summary["n_units"] == 2 and pred.calls == [{"t": 0}, {"t": 1}]
        ref = np.stack([ndimage.gaussian_filter(v, 1.5) for v in data])
    np.testing.assert_allclose(got, ref, atol=1e-6)
    finalize_output(src, out, "fp", 1)


def test_unwritten_regions_are_nan_and_finalize_names_missing_jobs(make_store, tmp_path: Path, predictors) -> None:
    data = np.ones((4, 20, 20), dtype=np.float32)
    src = make_store(data, "tyx", (1, 20, 20))
    out = {"denoised": str(tmp_path / "o.ome.zarr")}
    predict_units(src, out, predictors["box"](), PredictConfig(), "fp", scatter_index=1, scatter_count=2)
    got = _read(out["denoised"])
    assert np.isnan(got[0]).all() and np.isnan(got[2]).all()
    assert np.allclose(got[1], 1.0) and np.allclose(got[3], 1.0)
    with pytest.raises(RuntimeError, match=r"2 of 4 units .* job\(s\) \[0\] of 2"):
        finalize_output(src, out, "fp", 2)


def test_changed_fingerprint_wipes_and_says_so(make_store, tmp_path: Path, caplog, predictors) -> None:
    data = np.random.default_rng(5).normal(size=(3, 20, 24)).astype(np.float32)
    src = make_store(data, "tyx", (1, 20, 24))
    out = {"denoised": str(tmp_path / "o.ome.zarr")}
    first = predict_units(src, out, predictors["box"](), PredictConfig(), "fp1")
    again = predict_units(src, out, predictors["box"](), PredictConfig(), "fp1")
    assert first["computed"] == [0, 1, 2] and again["computed"] == [] and again["skipped"] == [0, 1, 2]
    with caplog.at_level(logging.WARNING, logger="denoise.predict.runner"):
        changed = predict_units(src, out, predictors["box"](), PredictConfig(), "fp2")
    assert "fingerprint changed (fp1 -> fp2): wiping" in caplog.text
    assert changed["computed"] == [0, 1, 2]
    assert markers.done_units(out["denoised"], "fp2") == {0, 1, 2}
    assert markers.done_units(out["denoised"], "fp1") == set()


def test_foreign_store_is_never_wiped(make_store, tmp_path: Path) -> None:
    data = np.zeros((8, 8), dtype=np.float32)
    src = make_store(data, "yx", (8, 8))
    other = make_store(data, "yx", (8, 8), name="precious.ome.zarr")
    with pytest.raises(FileExistsError, match="not a denoise prediction store"):
        init_output(src, {"denoised": str(other)}, "fp", {})
    assert other.exists()


def test_halo_below_receptive_field_refused_unless_inexact() -> None:
    model = _unet()
    meta = _meta(model, [0.0], [1.0])
    with pytest.raises(ValueError, match="receptive field"):
        NetworkPredictor(model, meta, PredictConfig(halo=16))
    pred = NetworkPredictor(model, meta, PredictConfig(halo=16, inexact=True))
    assert pred.halo == 16
    assert NetworkPredictor(model, meta, PredictConfig(halo=21)).halo == 24  # rounded up to 2**depth
