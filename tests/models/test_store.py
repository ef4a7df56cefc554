"""Model directory round trip and the whole-image reference predictor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from denoise.models.store import halo_for, load_model, pad_widths, predict_whole, save_model
from denoise.models.unet import UNet


def _meta(ndim: int = 2) -> dict:
    return {
        "method": "n2v",
        "norm": {"mean": [100.0, 10.0], "std": [20.0, 2.0]},
        "axes": "cyx" if ndim == 2 else "zyx",
        "ndim": ndim,
        "train_config": {"depth": 2},
        "fingerprint": "abc123",
    }


def _model(ndim: int = 2, n2v2: bool = False) -> UNet:
    torch.manual_seed(1)
    return UNet(ndim, depth=2, features=4, n2v2=n2v2).eval()


@pytest.mark.parametrize("n2v2", [False, True])
def test_round_trip_identical_outputs(tmp_path, n2v2):
    model = _model(n2v2=n2v2)
    info = save_model(tmp_path / "m", model, _meta())
    loaded, meta = load_model(tmp_path / "m")
    assert not loaded.training
    assert next(loaded.parameters()).device.type == "cpu"
    x = torch.randn(2, 1, 32, 40)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    js = json.loads((tmp_path / "m" / "model.json").read_text())
    assert js["sha256"] == info["sha256"] and len(js["sha256"]) == 64
    for key in (
        "hparams",
        "method",
        "norm",
        "receptive_field",
        "axes",
        "ndim",
        "train_config",
        "fingerprint",
    ):
        assert key in js and key in meta
    assert "state_dict" not in js
    assert meta["receptive_field"] >= 22 and meta["halo"] == halo_for(meta["receptive_field"], 4)
    assert meta["halo"] % 4 == 0 and meta["halo"] >= meta["receptive_field"]
    blob = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert set(blob["state_dict"]) == set(model.state_dict()) and blob["fingerprint"] == "abc123"
    assert not list((tmp_path / "m").glob(".*tmp"))  # no temp files left


def test_tampered_weights_rejected(tmp_path):
    save_model(tmp_path / "m", _model(), _meta())
    with open(tmp_path / "m" / "model.pt", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ValueError, match="checksum"):
        load_model(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="train"):
        load_model(tmp_path / "nothing")


def test_predict_whole_padding_convention(tmp_path):
    model = _model()
    save_model(tmp_path / "m", model, _meta())
    model, meta = load_model(tmp_path / "m")
    img = np.random.default_rng(0).normal(10, 2, (37, 50)).astype(np.float32)
    out = predict_whole(model, meta, img, channel=1)
    assert out.shape == img.shape and out.dtype == np.float32
    h = meta["halo"]
    assert pad_widths(img.shape, h, 4) == [(h, h + 3), (h, h + 2)]
    x = np.pad((img - 10.0) / 2.0, [(h, h + 3), (h, h + 2)], mode="reflect")
    with torch.no_grad():
        y = model(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, y[h : h + 37, h : h + 50] * 2.0 + 10.0, rtol=1e-6, atol=1e-5)
    stack = np.stack([img, img[::-1].copy()])
    both = predict_whole(model, meta, stack, channel=1)  # leading axis: planes one at a time
    np.testing.assert_array_equal(both[0], out)


def test_predict_whole_3d(tmp_path):
    save_model(tmp_path / "m3", _model(ndim=3), _meta(ndim=3))
    model, meta = load_model(tmp_path / "m3")
    vol = np.random.default_rng(1).random((6, 20, 18)).astype(np.float32)
    out = predict_whole(model, meta, vol)
    assert out.shape == vol.shape and np.isfinite(out).all()
    with pytest.raises(ValueError, match="spatial"):
        predict_whole(model, meta, vol[0])
