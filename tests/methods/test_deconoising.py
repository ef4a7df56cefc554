"""DecoNoising: objective, training through the N2V loop, exact tiled prediction of s and z."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from denoise.config import PredictConfig, TrainConfig
from denoise.io import omezarr
from denoise.methods.deconoising import (
    DecoNoisingObjective,
    DecoNoisingPredictor,
    DecoNoisingSettings,
    train_deconoising,
)
from denoise.methods.masking import masked_mse
from denoise.methods.n2v import train_n2v
from denoise.models.psf import PSFConv, gaussian_psf
from denoise.predict.runner import predict_units
from denoise.tiling.blend import predict_tiled, reference_predict
from tests.conftest import ingested_store as _store

TINY = dict(
    depth=2,
    features=8,
    patch_size=32,
    batch_size=8,
    epochs=4,
    steps_per_epoch=12,
    learning_rate=2e-3,
    mask_fraction=0.05,
    threads=1,
)



def _blobs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Non-negative phantom of point-like sources, blurred by a σ = 1 px Gaussian PSF, + 10."""
    rng = np.random.default_rng(seed)
    z = np.zeros(shape)
    idx = tuple(rng.integers(0, s, n) for s in shape)
    np.add.at(z, idx, rng.uniform(100, 300, n))
    return ndimage.gaussian_filter(ndimage.gaussian_filter(z, 1.5), 1.0) + 10.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deco")
    clean = _blobs((96, 96), 60, seed=0)
    noisy = (clean + np.random.default_rng(1).normal(0, 4, clean.shape)).astype(np.float32)
    store = _store(tmp, noisy, "yx", "syn")
    summary = train_deconoising(store, tmp / "model", TrainConfig(**TINY), seed=3, progress=False)
    return {
        "clean": clean,
        "noisy": noisy,
        "store": store,
        "model": tmp / "model",
        "summary": summary,
    }


def test_loss_is_masked_mse_on_blurred_output_plus_raw_positivity():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(2, 1, 16, 16, generator=gen)
    target = torch.randn(2, 1, 16, 16, generator=gen)
    mask = torch.rand(2, 1, 16, 16, generator=gen) < 0.1
    ident = DecoNoisingObjective(PSFConv.gaussian(0.0), positivity=0.0)
    ident.bind(50.0, 10.0, torch.device("cpu"))
    assert torch.allclose(ident.loss(out, target, mask), masked_mse(out, target, mask))
    blur = PSFConv.gaussian(1.0)
    obj = DecoNoisingObjective(blur, positivity=2.0)
    obj.bind(50.0, 10.0, torch.device("cpu"))
    # z_raw = out·10 + 50 is negative only where out < -5: none here, so no penalty
    assert torch.allclose(obj.loss(out, target, mask), masked_mse(blur(out), target, mask))
    out_neg = out.clone()
    out_neg[0, 0, 0, 0] = -7.0  # z_raw = -20 raw units → penalty 20 / std / N pixels
    expected = masked_mse(blur(out_neg), target, mask) + 2.0 * (20.0 / 10.0) / out.numel()
    assert torch.allclose(obj.loss(out_neg, target, mask), expected)
    total, count = obj.val_terms(out, target, mask)
    assert count == int(mask.sum())
    assert total / count == pytest.approx(float(masked_mse(blur(out), target, mask)), rel=1e-5)
    assert obj.extra_parameters() == [] and obj.meta()["psf"]["sigma"] == 1.0


def test_learnable_objective_state_round_trip_and_psf_file_check():
    obj = DecoNoisingObjective(PSFConv.gaussian(2.0, learnable=True))
    (param,) = obj.extra_parameters()
    with torch.no_grad():
        param.fill_(0.0)  # σ = 1
    state = obj.state()
    other = DecoNoisingObjective(PSFConv.gaussian(2.0, learnable=True))
    other.load_state(state)
    assert other.psf.sigma == pytest.approx(1.0) and other.meta()["psf"]["sigma"] == 1.0
    fixed = DecoNoisingObjective(PSFConv.from_kernel(gaussian_psf(1.0)))
    moved = DecoNoisingObjective(PSFConv.from_kernel(gaussian_psf(1.5)))
    with pytest.raises(ValueError, match="different PSF"):
        moved.load_state(fixed.state())


def test_training_denoises_and_records_psf(trained):
    model_dir, noisy, clean = trained["model"], trained["noisy"], trained["clean"]
    pred = DecoNoisingPredictor.from_model_dir(model_dir, PredictConfig(threads=1))
    s, z = pred.predict_whole(noisy)
    mse_noisy = float(np.mean((noisy - clean) ** 2))
    assert float(np.mean((s - clean) ** 2)) < 0.5 * mse_noisy
    meta = pred.meta
    assert meta["method"] == "deconoising"
    assert meta["objective"]["psf"] == {
        "kind": "gaussian", "ndim": 2, "radii": [4, 4], "radius": 4,
        "sigma": 1.0, "sigma_z": None, "learnable": False,
    }  # fmt: skip
    assert trained["summary"]["psf"]["sigma"] == 1.0
    # s is z seen through the PSF: it has less high-frequency energy than the phantom
    assert np.abs(np.diff(s, axis=1)).mean() < np.abs(np.diff(z, axis=1)).mean()


def test_tiled_equals_whole_image_for_both_outputs(trained):
    pred = DecoNoisingPredictor.from_model_dir(trained["model"], PredictConfig(threads=1))
    assert pred.output_names == ("denoised", "deconvolved")
    assert pred.receptive_field == pred.network.receptive_field + 4
    assert pred.halo >= pred.receptive_field and pred.halo % pred.multiple == 0
    noisy = trained["noisy"][:90, :83]  # not a multiple of the lattice
    whole = reference_predict(pred, noisy, pred.halo, pred.multiple)
    np.testing.assert_array_equal(whole, pred.predict_whole(noisy))
    tile = pred.halo * 2 + 16  # many tiles with seams inside the image
    tiled = predict_tiled(pred, noisy, pred.halo, pred.multiple, tile)
    for k in range(2):
        rel = np.abs(tiled[k] - whole[k]).max() / np.abs(whole[k]).max()
        assert rel <= 1e-4, (pred.output_names[k], rel)


def test_runner_writes_both_stores_matching_whole_image(trained, tmp_path):
    cfg = PredictConfig(tile=80, threads=1, batch_size=2)
    pred = DecoNoisingPredictor.from_model_dir(trained["model"], cfg)
    outputs = {n: tmp_path / f"{n}.ome.zarr" for n in pred.output_names}
    predict_units(trained["store"], outputs, pred, cfg, "fp")
    whole = pred.predict_whole(trained["noisy"])
    for k, name in enumerate(pred.output_names):
        got = np.asarray(omezarr.open_image(outputs[name])[0])
        assert np.abs(got - whole[k]).max() / np.abs(whole[k]).max() <= 1e-4, name


def test_halo_below_reach_is_refused(trained):
    with pytest.raises(ValueError, match="PSF radius"):
        DecoNoisingPredictor.from_model_dir(trained["model"], PredictConfig(halo=8, threads=1))
    inexact = DecoNoisingPredictor.from_model_dir(
        trained["model"], PredictConfig(halo=8, inexact=True, threads=1)
    )
    assert inexact.halo == 8


def test_predictor_refuses_an_n2v_model(tmp_path, trained):
    cfg = TrainConfig(**{**TINY, "epochs": 1, "steps_per_epoch": 1})
    train_n2v(trained["store"], tmp_path / "n2v", cfg, seed=0, progress=False)
    with pytest.raises(ValueError, match="not trained with DecoNoising"):
        DecoNoisingPredictor.from_model_dir(tmp_path / "n2v", PredictConfig(threads=1))


def test_3d_measured_psf_file_trains_and_tiles_exactly(tmp_path):
    clean = _blobs((16, 40, 40), 40, seed=2)
    noisy = (clean + np.random.default_rng(3).normal(0, 4, clean.shape)).astype(np.float32)
    store = _store(tmp_path, noisy, "zyx", "vol")
    psf = gaussian_psf(0.8, sigma_z=1.2, ndim=3, radius=(3, 2, 2))
    np.save(tmp_path / "psf.npy", np.pad(psf, ((0, 1), (0, 1), (0, 1))))  # even-sized file
    cfg = TrainConfig(
        **{**TINY, "depth": 1, "features": 4, "patch_size": 16, "patch_size_z": 8,
           "batch_size_3d": 2, "epochs": 1, "steps_per_epoch": 3}
    )  # fmt: skip
    summary = train_deconoising(store, tmp_path / "m3", cfg, seed=0, psf_path=tmp_path / "psf.npy")
    assert summary["ndim"] == 3 and summary["psf"]["kind"] == "file"
    assert summary["psf"]["radii"] == [4, 3, 3]  # re-centred on the peak: a zero rim added
    pred = DecoNoisingPredictor.from_model_dir(tmp_path / "m3", PredictConfig(tile_z=8, threads=1))
    np.testing.assert_allclose(pred.psf.kernel().double().numpy(), np.pad(psf, 1), atol=1e-7)
    vol = noisy[:, :36, :36]
    whole = pred.predict_whole(vol)
    tiled = predict_tiled(pred, vol, pred.halo, pred.multiple, pred.halo * 2 + 16)
    for k in range(2):
        assert np.abs(tiled[k] - whole[k]).max() / np.abs(whole[k]).max() <= 1e-4


@pytest.mark.slow
def test_learned_sigma_moves_toward_the_true_psf(tmp_path):
    """σ starts at 2 px on point sources blurred with σ = 1 px and must come most of the way down.

    Positivity makes the PSF identifiable here: a non-negative phantom seen through σ > 1 px
    cannot reproduce spots as narrow as σ = 1 px.
    """
    rng = np.random.default_rng(4)
    z = np.zeros((128, 128))
    np.add.at(z, tuple(rng.integers(0, 128, (2, 200))), rng.uniform(200, 600, 200))
    clean = ndimage.gaussian_filter(z, 1.0) + 5.0
    noisy = (clean + rng.normal(0, 3, clean.shape)).astype(np.float32)
    store = _store(tmp_path, noisy, "yx", "learn")
    cfg = TrainConfig(**{**TINY, "epochs": 10, "steps_per_epoch": 20})
    settings = DecoNoisingSettings(learn_psf=True, psf_sigma=2.0)
    summary = train_deconoising(store, tmp_path / "m", cfg, seed=0, progress=False, settings=settings)
    assert summary["psf"]["sigma"] < 1.5, summary["psf"]
