"""GPU path: exact float32 tiling with TF32 off, bf16 autocast close to float32, OOM back-off,
and a training run on CUDA. The CUDA tests are skipped on machines without a CUDA device; the
out-of-memory back-off also runs on the CPU (with an injected out-of-memory error)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoise.config import PredictConfig, TrainConfig
from denoise.models.unet import UNet
from denoise.predict.network import NetworkPredictor
from denoise.tiling.blend import predict_tiled, reference_predict

needs_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def cuda_only(fn):
    """Mark a test as needing a CUDA device."""
    for mark in needs_cuda:
        fn = mark(fn)
    return fn


def _predictor(precision: str, device: str = "cuda") -> NetworkPredictor:
    torch.manual_seed(0)
    net = UNet(2, depth=2, features=16)
    meta = {"norm": {"mean": [10.0], "std": [3.0]}, "receptive_field": 23, "ndim": 2}
    return NetworkPredictor(net, meta, PredictConfig(device=device, precision=precision, tile=128))


@cuda_only
def test_cuda_tiled_equals_whole_float32():
    pred = _predictor("float32")
    img = np.random.default_rng(0).normal(10, 3, (300, 260)).astype(np.float32)
    whole = reference_predict(pred, img, pred.halo, pred.multiple)
    tiled = predict_tiled(pred, img, pred.halo, pred.multiple, 128)
    assert np.abs(whole - tiled).max() <= 1e-4


@cuda_only
def test_cuda_bf16_close_to_float32():
    img = np.random.default_rng(1).normal(10, 3, (4, 128, 128)).astype(np.float32)
    a, b = _predictor("float32")(img), _predictor("bfloat16")(img)
    assert np.abs(a - b).max() / (np.abs(a).max() + 1e-6) < 0.05


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=needs_cuda),
    ],
)
def test_cuda_oom_backs_off(monkeypatch, device):
    """An out-of-memory pass is split in halves until it fits; the result is unchanged."""
    pred = _predictor("float32", device)
    img = np.random.default_rng(2).normal(10, 3, (8, 64, 64)).astype(np.float32)
    whole = pred(img)
    real = pred._forward
    sizes: list[int] = []

    def limited(x):
        sizes.append(len(x))
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(x)

    monkeypatch.setattr(pred, "_forward", limited)
    out = pred(img)
    assert sizes == [8, 4, 2, 2, 4, 2, 2]  # 8 fails, its halves 4 fail, the quarters fit
    assert out.shape == (8, 1, 64, 64)
    if device == "cpu":
        np.testing.assert_array_equal(out, whole)
    else:  # cuDNN may pick another algorithm for another batch size
        np.testing.assert_allclose(out, whole, rtol=0, atol=1e-4 * float(np.abs(whole).max()))


def test_oom_with_one_tile_is_raised(monkeypatch):
    pred = _predictor("float32", "cpu")

    def never_fits(x):
        raise torch.cuda.OutOfMemoryError("simulated")

    monkeypatch.setattr(pred, "_forward", never_fits)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        pred(np.zeros((4, 64, 64), np.float32))


@cuda_only
def test_cuda_training_runs(tmp_path):
    from denoise.io.ingest import ingest
    from denoise.methods.n2v import train_n2v
    from tests.conftest import REPO

    ingest(str(REPO / ".test" / "data" / "fish_noisy.tif"), tmp_path / "f.ome.zarr")
    cfg = TrainConfig(epochs=1, steps_per_epoch=5, batch_size=8, patch_size=32, device="cuda", precision="bfloat16")
    summary = train_n2v(tmp_path / "f.ome.zarr", tmp_path / "m", cfg, seed=0)
    assert summary["device"].startswith("cuda") and summary["epochs_done"] == 1
