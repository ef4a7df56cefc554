"""GPU path: exact float32 tiling with TF32 off, bf16 autocast close to float32, OOM back-off,
and a training run on CUDA. Skipped on machines without a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoise.config import PredictConfig, TrainConfig
from denoise.models.unet import UNet
from denoise.predict.network import NetworkPredictor
from denoise.tiling.blend import predict_tiled, reference_predict

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _predictor(precision: str) -> NetworkPredictor:
    torch.manual_seed(0)
    net = UNet(2, depth=2, features=16)
    meta = {"norm": {"mean": [10.0], "std": [3.0]}, "receptive_field": 23, "ndim": 2}
    return NetworkPredictor(net, meta, PredictConfig(device="cuda", precision=precision, tile=128))


def test_cuda_tiled_equals_whole_float32():
    pred = _predictor("float32")
    img = np.random.default_rng(0).normal(10, 3, (300, 260)).astype(np.float32)
    whole = reference_predict(pred, img, pred.halo, pred.multiple)
    tiled = predict_tiled(pred, img, pred.halo, pred.multiple, 128)
    assert np.abs(whole - tiled).max() <= 1e-4


def test_cuda_bf16_close_to_float32():
    img = np.random.default_rng(1).normal(10, 3, (4, 128, 128)).astype(np.float32)
    a, b = _predictor("float32")(img), _predictor("bfloat16")(img)
    assert np.abs(a - b).max() / (np.abs(a).max() + 1e-6) < 0.05


def test_cuda_oom_backs_off(monkeypatch):
    pred = _predictor("float32")
    real = pred._forward

    def limited(x):
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(x)

    monkeypatch.setattr(pred, "_forward", limited)
    img = np.random.default_rng(2).normal(10, 3, (8, 64, 64)).astype(np.float32)
    out = pred(img)
    assert out.shape == (8, 1, 64, 64)


def test_cuda_training_runs(tmp_path):
    from denoise.io.ingest import ingest
    from denoise.methods.n2v import train_n2v
    from tests.conftest import REPO

    ingest(str(REPO / ".test" / "data" / "fish_noisy.tif"), tmp_path / "f.ome.zarr")
    cfg = TrainConfig(epochs=1, steps_per_epoch=5, batch_size=8, patch_size=32, device="cuda", precision="bfloat16")
    summary = train_n2v(tmp_path / "f.ome.zarr", tmp_path / "m", cfg, seed=0)
    assert summary["device"].startswith("cuda") and summary["epochs_done"] == 1
