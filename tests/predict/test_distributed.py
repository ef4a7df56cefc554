"""The same unit function on a dask distributed cluster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from denoise.config import PredictConfig
from denoise.models.unet import UNet
from denoise.predict.distributed import predict_distributed
from denoise.predict.network import NetworkPredictor
from denoise.predict.runner import finalize_output, init_output, predict_units

distributed = pytest.importorskip("distributed")


def _predictor(cfg: PredictConfig) -> NetworkPredictor:
    torch.manual_seed(0)
    model = UNet(ndim=2, depth=2, features=4).eval()
    meta = {"ndim": 2, "receptive_field": 23, "norm": {"mean": [0.0], "std": [1.0]}, "hparams": model.hparams}
    return NetworkPredictor(model, meta, cfg)


def test_distributed_equals_local(make_store, tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(size=(3, 70, 50)).astype(np.float32)
    src = make_store(data, "tyx", (1, 35, 50))
    cfg = PredictConfig(tile=64)
    pred = _predictor(cfg)
    local = {"denoised": str(tmp_path / "local.ome.zarr")}
    dist = {"denoised": str(tmp_path / "dist.ome.zarr")}
    for out in (local, dist):
        init_output(src, out, "fp", {}, chunks=(1, 35, 50))
    predict_units(src, local, pred, cfg, "fp")
    # a unit already done is skipped on the cluster too
    predict_units(src, dist, pred, cfg, "fp", scatter_index=0, scatter_count=6)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        summary = predict_distributed(src, dist, pred, cfg, "fp", client=client, max_in_flight=3)
    assert summary["skipped"] == [0] and sorted(summary["computed"]) == [1, 2, 3, 4, 5]
    finalize_output(src, dist, "fp", 1)
    finalize_output(src, local, "fp", 1)
    from denoise.io import omezarr

    a = omezarr.open_image(local["denoised"])[0][...]
    b = omezarr.open_image(dist["denoised"])[0][...]
    assert a.tobytes() == b.tobytes()


def test_runner_and_predictor_pickle(make_store, tmp_path: Path) -> None:
    import pickle

    from denoise.predict.runner import make_runner

    data = np.random.default_rng(1).normal(size=(40, 40)).astype(np.float32)
    src = make_store(data, "yx", (40, 40))
    cfg = PredictConfig(tile=64)
    pred = _predictor(cfg)
    out = {"denoised": str(tmp_path / "p.ome.zarr")}
    init_output(src, out, "fp", {})
    runner = make_runner(src, out, pred, cfg, "fp")
    runner.source()  # opened arrays are dropped when pickled, reopened on the worker
    clone, pred2 = pickle.loads(pickle.dumps((runner, pred)))
    assert clone.layout == runner.layout and not clone._arrays
    x = np.random.default_rng(2).normal(size=(2, 64, 64)).astype(np.float32)
    assert np.array_equal(pred(x), pred2(x))


@pytest.mark.slow
def test_local_cluster_with_processes(make_store, tmp_path: Path) -> None:
    data = np.random.default_rng(3).normal(size=(4, 40, 40)).astype(np.float32)
    src = make_store(data, "tyx", (1, 40, 40))
    cfg = PredictConfig(tile=64)
    pred = _predictor(cfg)
    local = {"denoised": str(tmp_path / "local.ome.zarr")}
    dist = {"denoised": str(tmp_path / "dist.ome.zarr")}
    predict_units(src, local, pred, cfg, "fp")
    summary = predict_distributed(src, dist, pred, cfg, "fp", n_workers=2)
    assert sorted(summary["computed"]) == [0, 1, 2, 3]
    from denoise.io import omezarr

    a = omezarr.open_image(local["denoised"])[0][...]
    b = omezarr.open_image(dist["denoised"])[0][...]
    np.testing.assert_allclose(a, b, atol=1e-5)
