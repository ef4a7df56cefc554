"""BioImage Model Zoo export: bioimageio.core validates the package and reproduces our prediction."""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from denoise.cli.main import main
from denoise.export.bmz import crop_sample, export_bmz, read_sample, size_limits
from denoise.export.network import RawDenoiser, architecture_source, scripted
from denoise.io.ingest import ingest
from denoise.models.store import load_model, predict_whole, receptive_field, save_model
from denoise.models.unet import UNet


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Shared 2-core machine: OpenMP spin-waits make 2 threads far slower under load.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bioimageio() -> None:
    pytest.importorskip(
        "bioimageio.core", reason="bioimageio.core not installed (pip install 'denoise[bmz]')"
    )


def _meta(ndim: int = 2, channels: int = 1, method: str = "n2v") -> dict:
    return {
        "method": method,
        "norm": {"mean": [100.0, 10.0][:channels], "std": [20.0, 2.0][:channels]},
        "axes": "cyx" if ndim == 2 else "zyx",
        "ndim": ndim,
        "train_config": {"depth": 2},
        "fingerprint": "abc123",
    }


@pytest.fixture(scope="module")
def model_and_sample(tmp_path_factory) -> tuple[Path, Path]:
    """An N2V2 model directory for 2-channel data, and a noisy 2-channel image (.npy, cyx)."""
    tmp = tmp_path_factory.mktemp("bmz")
    torch.manual_seed(1)
    save_model(
        tmp / "model", UNet(2, depth=2, features=4, n2v2=True), _meta(2, channels=2, method="n2v2")
    )
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:100] / 96
    clean = np.stack([100 + 40 * np.sin(6 * xx) * np.cos(5 * yy), 10 + 5 * xx])
    noisy = clean + rng.normal(0, 1, clean.shape) * np.array([20.0, 2.0])[:, None, None]
    np.save(tmp / "img.npy", noisy.astype(np.float32))
    return tmp / "model", tmp / "img.npy"


def test_cli_export_validates_and_reproduces_predict_whole(model_and_sample, tmp_path, capsys):
    _bioimageio()
    model_dir, sample = model_and_sample
    out = tmp_path / "pkg" / "model.zip"
    assert main(["export-bmz", str(model_dir), str(out), "--sample", str(sample)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "passed" and summary["format_version"].startswith("0.5")
    assert set(summary["max_abs_diff"]) == {"pytorch_state_dict", "torchscript"}
    assert max(summary["max_abs_diff"].values()) <= 1e-4, summary["max_abs_diff"]
    assert all(t["status"] == "passed" for t in summary["tests"]) and len(summary["tests"]) > 3

    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {
            "rdf.yaml",
            "README.md",
            "cover.png",
            "denoise_unet.py",
            "test_input.npy",
            "test_output.npy",
            "sample_input.tif",
            "sample_output.tif",
            "weights_pytorch_state_dict.pt",
            "weights_torchscript.pt",
        } <= names
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        arch = zf.read("denoise_unet.py").decode()
        x = np.load(zf.open("test_input.npy"))
        y = np.load(zf.open("test_output.npy"))

    model, meta = load_model(model_dir)
    low, step = size_limits(meta)
    # The test output is OUR prediction of the test input (per channel, own normalisation).
    assert x.shape == y.shape and x.shape[:2] == (1, 2)
    assert all(s >= low and (s - low) % step == 0 for s in x.shape[2:])
    ours = np.stack([predict_whole(model, meta, x[0, c], channel=c) for c in range(2)])[None]
    np.testing.assert_array_equal(y, ours)

    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5")
    assert [a.get("id", a["type"]) for a in rdf["inputs"][0]["axes"]] == [
        "batch",
        "channel",
        "y",
        "x",
    ]
    assert all(a.get("halo") == meta["halo"] for a in rdf["outputs"][0]["axes"][2:])
    assert {c["doi"] for c in rdf["cite"]} == {
        "10.1109/CVPR.2019.00223",
        "10.48550/arXiv.2211.08512",
    }
    assert rdf["weights"]["torchscript"]["parent"] == "pytorch_state_dict"
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == "RawDenoiser"
    assert "import denoise" not in arch and "from denoise" not in arch


def test_exported_network_matches_predict_whole_3d():
    torch.manual_seed(2)
    unet = UNet(3, depth=1, features=2, n2v2=True).eval()
    meta = {**_meta(3, channels=2), "hparams": unet.hparams, "multiple": 2}
    meta["receptive_field"] = receptive_field(unet)
    meta["halo"] = -(-meta["receptive_field"] // 2) * 2
    wrapper = RawDenoiser(meta["norm"]["mean"], meta["norm"]["std"], meta["halo"], **unet.hparams)
    wrapper.net.load_state_dict(unet.state_dict())
    wrapper.eval()
    script = scripted(wrapper, torch.zeros(1, 1, 4, 4, 4))
    low, _ = size_limits(meta)
    x = np.random.default_rng(3).normal(50, 10, (1, 2, low + 1, low, low + 3)).astype(np.float32)
    ours = np.stack([predict_whole(unet, meta, x[0, c], channel=c) for c in range(2)])[None]
    with torch.no_grad():
        eager = wrapper(torch.from_numpy(x)).numpy()
        traced = script(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(eager - ours)) <= 1e-4 and np.max(np.abs(traced - ours)) <= 1e-4
    ns: dict = {}
    exec(compile(architecture_source(), "denoise_unet.py", "exec"), ns)
    assert {"RawDenoiser", "UNet"} <= set(ns)


def test_crop_sample_sizes_and_errors():
    meta = {**_meta(2, channels=2), "halo": 24, "multiple": 4}
    low, step = size_limits(meta)
    assert (low, step) == (52, 4)
    big = np.zeros((2, 300, 61), np.uint16)
    crop = crop_sample(big, meta)
    assert crop.dtype == np.float32 and crop.shape == (2, 128, 60)
    with pytest.raises(ValueError, match="at least 52 px"):
        crop_sample(np.zeros((2, 51, 80)), meta)
    with pytest.raises(ValueError, match="1 channel"):
        crop_sample(np.zeros((80, 80)), meta)
    with pytest.raises(ValueError, match="spatial axes"):
        crop_sample(np.zeros((1, 2, 80, 80)), meta)


def test_rejects_non_n2v_models_and_missing_sample(tmp_path):
    _bioimageio()
    torch.manual_seed(0)
    save_model(tmp_path / "pn2v", UNet(2, depth=2, features=4), _meta(method="pn2v"))
    with pytest.raises(ValueError, match="N2V-type"):
        export_bmz(tmp_path / "pn2v", tmp_path / "a.zip", sample=np.zeros((64, 64)))
    save_model(tmp_path / "n2v", UNet(2, depth=2, features=4), _meta())
    with pytest.raises(ValueError, match="--sample"):
        export_bmz(tmp_path / "n2v", tmp_path / "b.zip")
    assert not (tmp_path / "a.zip").exists() and not (tmp_path / "b.zip").exists()


def test_cli_names_the_missing_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)  # import fails as if absent
    assert main(["export-bmz", str(tmp_path / "m"), str(tmp_path / "m.zip")]) == 1
    err = capsys.readouterr().err
    assert "export-bmz needs the optional package bioimageio.core" in err
    assert "pip install 'denoise[bmz]'" in err


def test_read_sample_takes_first_time_point_all_channels_central_crop(tmp_path):
    data = np.arange(2 * 2 * 70 * 81, dtype=np.float32).reshape(2, 2, 70, 81)
    np.save(tmp_path / "tc.npy", data)
    ingest(str(tmp_path / "tc.npy"), tmp_path / "tc.ome.zarr", axes="tcyx")
    meta = {**_meta(2, channels=2), "halo": 24, "multiple": 4}
    got = read_sample(tmp_path / "tc.ome.zarr", meta)  # axes from the store's metadata
    assert got.dtype == np.float32 and got.shape == (2, 68, 80)
    np.testing.assert_array_equal(got, data[0, :, 1:69, 0:80])
    np.save(tmp_path / "cyx.npy", data[1])  # no axes metadata: read as cyx
    np.testing.assert_array_equal(read_sample(tmp_path / "cyx.npy", meta), data[1, :, 1:69, 0:80])
    with pytest.raises(ValueError, match="2 channel"):
        read_sample(tmp_path / "tc.ome.zarr", {**meta, "norm": {"mean": [0.0], "std": [1.0]}})


def test_constant_channels_pass_through_unchanged():
    torch.manual_seed(0)
    wrapper = RawDenoiser([5.0, 3.0], [2.0, 0.0], 8, constant=[False, True], depth=2, features=2)
    wrapper.eval()
    script = scripted(wrapper, torch.zeros(1, 1, 8, 8))
    x = torch.full((2, 2, 20, 21), 3.0)
    x[:, 0] = torch.randn(2, 20, 21)
    with torch.no_grad():
        for net in (wrapper, script):
            y = net(x)
            assert y.shape == x.shape and torch.isfinite(y).all()
            assert torch.equal(y[:, 1], x[:, 1]) and not torch.equal(y[:, 0], x[:, 0])
