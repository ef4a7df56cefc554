"""Probabilistic Noise2Void: loss, posterior, predictor (memory-bounded, tiling-exact), training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from denoise.config import PredictConfig, TrainConfig
from denoise.methods.pn2v import (
    PN2VObjective,
    PN2VPredictor,
    as_noise_model,
    train_pn2v,
)
from denoise.methods.pn2v_predictor import posterior_moments
from denoise.models.store import load_model, save_model
from denoise.models.unet import UNet
from denoise.noise.base import PoissonGaussianNoiseModel
from tests.conftest import ingested_store as _store

CPU = PredictConfig(device="cpu", threads=1)


def _pg(gain: float = 1.0, read_var: float = 4.0) -> PoissonGaussianNoiseModel:
    return PoissonGaussianNoiseModel(gain=gain, read_var=read_var)



def test_loss_is_negative_log_mean_likelihood_in_raw_units():
    nm = _pg()
    obj = PN2VObjective(nm, samples=3, spread=1.0, learn_spread=False)
    obj.bind(mean=10.0, std=2.0, device=torch.device("cpu"))
    out = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])[None, :, None, :]  # (1, K=3, 1, 2)
    target = torch.tensor([[1.5, 0.0]])[None, None]  # (1, 1, 1, 2)
    mask = torch.tensor([[True, True]])[None, None]
    loss = obj.loss(out, target, mask)
    expected = []
    for j in range(2):
        x = float(target[0, 0, 0, j]) * 2 + 10
        ps = [
            math.exp(
                float(nm.log_prob(torch.tensor(x), torch.tensor(float(out[0, k, 0, j]) * 2 + 10)))
            )
            for k in range(3)
        ]
        expected.append(-math.log(sum(ps) / 3))
    assert float(loss) == pytest.approx(sum(expected) / 2, rel=1e-5)
    total, count = obj.val_terms(out, target, mask)
    assert count == 2 and total == pytest.approx(sum(expected), rel=1e-5)


def test_mean_weight_adds_the_n2v_loss_of_the_sample_centre():
    out = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])[None, :, None, :]  # (1, K=3, 1, 2)
    target = torch.tensor([[1.5, 0.0]])[None, None]
    mask = torch.tensor([[True, False]])[None, None]  # only the first pixel is masked
    plain = PN2VObjective(_pg(), samples=3, spread=0.5)
    mixed = PN2VObjective(_pg(), samples=3, spread=0.5, mean_weight=2.0)
    for obj in (plain, mixed):
        obj.bind(mean=10.0, std=2.0, device=torch.device("cpu"))
    # centre of pixel 0 = (1 + 0 + 3) / 3, target 1.5 (normalised units)
    extra = 2.0 * (4.0 / 3.0 - 1.5) ** 2
    diff = (mixed.loss(out, target, mask) - plain.loss(out, target, mask)).detach()
    assert float(diff) == pytest.approx(extra, rel=1e-5)
    # Validation stays the likelihood alone (comparable across weights).
    assert mixed.val_terms(out, target, mask) == pytest.approx(plain.val_terms(out, target, mask))
    assert mixed.meta()["mean_weight"] == 2.0
    with pytest.raises(ValueError, match="mean_weight"):
        PN2VObjective(_pg(), samples=3, mean_weight=-1.0)


def test_loss_is_finite_when_every_sample_is_implausible():
    obj = PN2VObjective(_pg(read_var=0.01), samples=4)
    obj.bind(0.0, 1.0, torch.device("cpu"))
    out = torch.full((1, 4, 2, 2), 1000.0, requires_grad=True)  # far from x = 0
    target = torch.zeros(1, 1, 2, 2)
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    loss = obj.loss(out, target, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(out.grad).all()
    assert (out.grad > 0).all()  # pushes the samples down towards x


def test_meta_round_trips_the_noise_model():
    nm = _pg(2.0, 3.0)
    meta = PN2VObjective(nm, samples=8).meta()
    assert meta["name"] == "pn2v" and meta["samples"] == 8
    again = as_noise_model(meta["noise_model"])
    x, s = torch.tensor([1.0, 9.0]), torch.tensor([2.0, 7.0])
    assert torch.allclose(again.log_prob(x, s), nm.log_prob(x, s))


def test_posterior_of_one_sample_is_that_sample():
    s = torch.tensor([[3.0, 50.0, -2.0]])
    x = torch.tensor([10.0, 40.0, 0.0])
    mmse, sd = posterior_moments(s, x, _pg())
    assert torch.allclose(mmse, s[0]) and torch.all(sd == 0)


def test_posterior_weights_samples_by_the_likelihood():
    nm = _pg(gain=1e-6, read_var=1.0)  # Gaussian noise, σ = 1
    s = torch.tensor([[0.0], [2.0]])
    x = torch.tensor([2.0])
    mmse, sd = posterior_moments(s, x, nm)
    w = torch.softmax(torch.tensor([-2.0, 0.0]), 0)  # log p ∝ −(x − s)²/2
    assert float(mmse) == pytest.approx(float(w[1] * 2.0), rel=1e-5)
    assert float(sd) == pytest.approx(2.0 * math.sqrt(float(w[0] * w[1])), rel=1e-5)


def _pn2v_model(tmp_path, k: int, ndim: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    net = UNet(ndim=ndim, depth=2, features=4, out_channels=k)
    meta = {
        "method": "pn2v",
        "norm": {"mean": [20.0], "std": [5.0]},
        "axes": "yx" if ndim == 2 else "zyx",
        "ndim": ndim,
        "train_config": {},
        "fingerprint": "test",
        "objective": PN2VObjective(_pg(), k).meta(),
    }
    save_model(tmp_path / "m", net, meta)
    return tmp_path / "m"


def test_single_sample_model_outputs_its_sample(tmp_path):
    model, meta = load_model(_pn2v_model(tmp_path, k=1))
    pred = PN2VPredictor(model, meta, CPU)
    img = np.random.default_rng(0).normal(20, 5, (40, 36)).astype(np.float32)
    out = pred.predict_image(img)
    from denoise.models.store import predict_whole

    sample = predict_whole(model, meta, img)
    assert out.shape == (2, 40, 36)
    np.testing.assert_allclose(out[0], sample, atol=1e-4)
    assert np.all(out[1] == 0)


def test_chunked_posterior_equals_all_at_once_and_tiles_are_exact(tmp_path):
    model, meta = load_model(_pn2v_model(tmp_path, k=24))
    img = np.random.default_rng(1).normal(20, 5, (96, 96)).astype(np.float32)
    big = PN2VPredictor(model, meta, CPU)
    tiny = PN2VPredictor(model, meta, CPU, chunk_bytes=1)  # one sample at a time
    assert tiny.k_chunk(96 * 96) == 1 and big.k_chunk(96 * 96) == 24
    whole = big.predict_image(img)
    np.testing.assert_allclose(tiny.predict_image(img), whole, rtol=1e-4, atol=2e-3)
    # A tile with its halo reproduces the whole-image result inside.
    h = big.halo
    y0, x0, n = 16, 20, 32
    assert 96 >= y0 + n + h
    pad = np.pad(img, h, mode="reflect")
    tile = pad[y0 : y0 + n + 2 * h, x0 : x0 + n + 2 * h]
    out = big(tile[None])[0][:, h : h + n, h : h + n]
    np.testing.assert_allclose(out, whole[:, y0 : y0 + n, x0 : x0 + n], rtol=1e-4, atol=1e-3)


def test_3d_predictor(tmp_path):
    model, meta = load_model(_pn2v_model(tmp_path, k=5, ndim=3))
    pred = PN2VPredictor(model, meta, CPU, chunk_bytes=1)
    vol = np.random.default_rng(2).normal(20, 5, (8, 20, 20)).astype(np.float32)
    out = pred.predict_image(vol)
    assert out.shape == (2, 8, 20, 20) and np.isfinite(out).all() and (out[1] >= 0).all()
    # One sample at a time equals all samples at once, and tiles reproduce the whole volume.
    whole = PN2VPredictor(model, meta, CPU).predict_image(vol)
    np.testing.assert_allclose(out, whole, rtol=1e-4, atol=2e-3)
    from denoise.tiling.blend import predict_tiled

    tiled = predict_tiled(pred, vol, pred.halo, pred.multiple, tile=(4, 8, 12), batch_size=3)
    np.testing.assert_allclose(tiled, whole, rtol=1e-4, atol=2e-3)
    assert float(np.abs(whole[0] - vol).max()) > 0.1  # not the identity
    assert float(out[1].max()) > 0  # a spread of samples, not a collapsed posterior


def _phantom(n: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / n
    return 40.0 + 30.0 * np.sin(2 * np.pi * 1.5 * xx) * np.cos(2 * np.pi * yy)


def test_pn2v_denoises_and_uncertainty_follows_the_noise(
    tmp_path, tiny_pn2v_config, tiny_pn2v_settings
):
    """Poisson-Gaussian noise whose variance grows with the signal: PN2V beats the noisy
    input, and its uncertainty is larger where the signal (hence the noise) is larger."""
    clean = _phantom(64)
    gain = 1.5
    rng = np.random.default_rng(0)
    noisy = (gain * rng.poisson(clean / gain) + rng.normal(0, 1.0, clean.shape)).astype(np.float32)
    store = _store(tmp_path, noisy, "yx")
    cfg = tiny_pn2v_config()
    nm = PoissonGaussianNoiseModel(gain=gain, read_var=1.0)
    summary = train_pn2v(
        store, tmp_path / "pn2v", cfg, seed=0, noise_model=nm, progress=False,
        settings=tiny_pn2v_settings(),
    )  # fmt: skip
    assert summary["samples"] == 16 and summary["method"] == "pn2v"
    pred = PN2VPredictor.from_model_dir(tmp_path / "pn2v", CPU)
    assert pred.output_names == ("denoised", "uncertainty")
    den, unc = pred.predict_image(noisy)
    assert np.mean((den - clean) ** 2) < 0.5 * np.mean((noisy - clean) ** 2)
    bright, dark = clean > 55, clean < 25
    assert unc[bright].mean() > unc[dark].mean()


def test_train_refuses_several_channels(tmp_path):
    store = _store(tmp_path, np.zeros((2, 32, 32), np.float32), "cyx", "two")
    with pytest.raises(ValueError, match="one channel at a time"):
        train_pn2v(store, tmp_path / "m", TrainConfig(), 0, _pg())
