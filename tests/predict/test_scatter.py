"""Scatter: N jobs, each owning units u % N == i, give the same store as one job."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr

from denoise.config import PredictConfig
from denoise.models.unet import UNet
from denoise.predict.network import NetworkPredictor
from denoise.predict.runner import finalize_output, predict_units


def _levels(path: Path) -> list[bytes]:
    group = zarr.open_group(str(path), mode="r")
    return [group[k][...].tobytes() for k in sorted(group.array_keys())]


def _predictor(cfg: PredictConfig) -> NetworkPredictor:
    torch.manual_seed(0)
    model = UNet(ndim=2, depth=2, features=4).eval()
    meta = {"ndim": 2, "receptive_field": 23, "norm": {"mean": [50.0], "std": [10.0]}, "hparams": model.hparams}
    return NetworkPredictor(model, meta, cfg)


def test_scatter_1_and_4_bit_identical(make_store, tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(50, 10, size=(2, 150, 140)).astype(np.float32)
    src = make_store(data, "tyx", (1, 64, 64))
    cfg = PredictConfig(tile=96, batch_size=2)
    pred = _predictor(cfg)
    chunks = (1, 64, 64)
    from denoise.predict.runner import init_output

    one = {"denoised": str(tmp_path / "one.ome.zarr")}
    init_output(src, one, "fp", {}, chunks=chunks)
    s1 = predict_units(src, one, pred, cfg, "fp")
    assert sorted(s1["computed"]) == list(range(18))
    f1 = finalize_output(src, one, "fp", 1)

    four = {"denoised": str(tmp_path / "four.ome.zarr")}
    init_output(src, four, "fp", {}, chunks=chunks)
    # the four jobs run concurrently, like four cluster jobs writing one store
    with ThreadPoolExecutor(4) as ex:
        parts = list(ex.map(lambda i: predict_units(src, four, pred, cfg, "fp", i, 4), range(4)))
    owned = [sorted(p["computed"]) for p in parts]
    assert owned == [list(range(i, 18, 4)) for i in range(4)]
    f4 = finalize_output(src, four, "fp", 4)

    assert f1["n_units"] == f4["n_units"] == 18
    assert f1["outputs"]["denoised"]["levels"] == f4["outputs"]["denoised"]["levels"]
    assert _levels(Path(one["denoised"])) == _levels(Path(four["denoised"]))
    assert not np.isnan(zarr.open_group(one["denoised"], mode="r")["s0"][...]).any()


def test_concurrent_jobs_create_the_store_once(make_store, tmp_path: Path) -> None:
    """Jobs started without an init step: the directory lock lets one of them create it."""
    data = np.random.default_rng(1).normal(50, 10, size=(4, 40, 40)).astype(np.float32)
    src = make_store(data, "tyx", (1, 40, 40))
    cfg = PredictConfig(tile=64)
    pred = _predictor(cfg)
    out = {"denoised": str(tmp_path / "race.ome.zarr")}
    with ThreadPoolExecutor(3) as ex:
        parts = list(ex.map(lambda i: predict_units(src, out, pred, cfg, "fp", i, 3), range(3)))
    assert sorted(u for p in parts for u in p["computed"]) == [0, 1, 2, 3]
    finalize_output(src, out, "fp", 3)
