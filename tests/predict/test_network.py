"""NetworkPredictor: normalisation per channel, fused decoder, model directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from denoise.config import PredictConfig
from denoise.models.unet import UNet
from denoise.predict.network import NetworkPredictor, unet_forward


@pytest.mark.parametrize(("ndim", "bn", "n2v2"), [(2, False, False), (2, True, True), (3, True, False)])
def test_fused_decoder_is_bit_identical(ndim: int, bn: bool, n2v2: bool) -> None:
    torch.manual_seed(0)
    model = UNet(ndim=ndim, depth=2, features=4, batch_norm=bn, n2v2=n2v2).eval()
    pred = NetworkPredictor(model, {"ndim": ndim, "receptive_field": 26}, PredictConfig(device="cpu"))
    assert pred.fused and pred.channels_last
    fmt = torch.channels_last if ndim == 2 else torch.channels_last_3d
    x = torch.randn((2, 1) + (16,) * ndim).contiguous(memory_format=fmt)
    with torch.inference_mode():
        assert torch.equal(unet_forward(pred.model, x), pred.model(x))


class _Plain(nn.Module):
    ndim, multiple = 2, 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_other_networks_use_their_own_forward() -> None:
    model = _Plain()
    pred = NetworkPredictor(model, {"receptive_field": 1, "norm": {"mean": [10.0, 20.0], "std": [2.0, 4.0]}},
                            PredictConfig(device="cpu"))
    assert not pred.fused and pred.halo == 1
    x = np.random.default_rng(0).normal(20, 4, size=(3, 12, 12)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy((x - 20) / 4)[:, None]).numpy() * 4 + 20
    np.testing.assert_allclose(pred(x, channel=1), ref, rtol=1e-6, atol=1e-5)
    with pytest.raises(ValueError, match="channel 2"):
        pred(x, channel=2)


def test_from_model_dir(tmp_path: Path) -> None:
    store = pytest.importorskip("denoise.models.store")
    torch.manual_seed(0)
    model = UNet(ndim=2, depth=2, features=4).eval()
    meta = {"method": "n2v", "norm": {"mean": [5.0], "std": [2.0]}, "receptive_field": 23, "axes": "yx",
            "ndim": 2, "train_config": {}, "fingerprint": "x"}
    store.save_model(tmp_path / "m", model, meta)
    pred = NetworkPredictor.from_model_dir(tmp_path / "m", PredictConfig(device="cpu"))
    assert pred.halo == 24 and pred.checksum == store.load_model(tmp_path / "m")[1]["sha256"]
    x = np.random.default_rng(1).normal(5, 2, size=(40, 44)).astype(np.float32)
    whole = store.predict_whole(model, {**meta, "hparams": model.hparams}, x)
    from denoise.tiling.blend import predict_tiled

    tiled = predict_tiled(pred, x, pred.halo, pred.multiple, 64)[0]
    assert np.abs(tiled - whole).max() / 2.0 <= 1e-5
