"""Gaussian-mixture noise model: recovers known mean/variance curves and mixtures, censoring,
quantisation, save/load, and the shared Gaussian helper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from denoise.noise.base import (
    PoissonGaussianNoiseModel,
    gaussian_log_prob,
    load_noise_model,
    recording_conventions,
)
from denoise.noise.gmm import GMMNoiseModel

FAST = dict(steps=60)


def _linear_var_pairs(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.0, 100.0, n)
    x = s + rng.normal(0.0, 1.0, n) * np.sqrt(4.0 + 0.5 * s)
    return x, s


def test_recovers_a_known_variance_polynomial():
    x, s = _linear_var_pairs()
    m = GMMNoiseModel.fit(x, s, n_gaussians=1, degree=2, **FAST)
    levels = torch.tensor([5.0, 30.0, 60.0, 95.0])
    var = m.variance(levels).numpy()
    np.testing.assert_allclose(var, 4.0 + 0.5 * levels.numpy(), rtol=0.1)
    # The mixture mean is the signal by construction.
    logw, mu, _ = m.components(levels)
    np.testing.assert_allclose((logw.exp() * mu).sum(-1).numpy(), levels.numpy(), atol=1e-3)


def test_mixture_fits_a_two_mode_noise_better_than_one_gaussian():
    # A "zero-photon" spike at the black level plus a broad tail, weights changing with s.
    rng = np.random.default_rng(3)
    n = 30_000
    s = rng.uniform(5.0, 60.0, n)
    w_tail = (s - 3.0) / 60.0
    tail = rng.random(n) < w_tail
    x = np.where(tail, 3.0 + rng.exponential(60.0, n), 3.0 + rng.normal(0, 0.7, n))
    held = slice(0, 10_000)
    one = GMMNoiseModel.fit(x[10_000:], s[10_000:], n_gaussians=1, degree=2, **FAST)
    three = GMMNoiseModel.fit(x[10_000:], s[10_000:], n_gaussians=3, degree=2, **FAST)
    xt, st = torch.tensor(x[held]), torch.tensor(s[held])
    nll_one = float(-one.log_prob(xt, st).mean())
    nll_three = float(-three.log_prob(xt, st).mean())
    assert nll_three < nll_one - 0.5, (nll_one, nll_three)


def test_censoring_recovers_the_variance_of_clipped_data():
    rng = np.random.default_rng(4)
    n = 20_000
    s = rng.uniform(20.0, 60.0, n)
    raw = s + rng.normal(0.0, 8.0, n)
    x = np.clip(raw, None, 50.0)  # saturates at 50
    cens = GMMNoiseModel.fit(x, s, n_gaussians=1, degree=1, clip_high=50.0, **FAST)
    plain = GMMNoiseModel.fit(x, s, n_gaussians=1, degree=1, **FAST)
    at = torch.tensor([45.0, 55.0])
    assert np.allclose(cens.variance(at).numpy(), 64.0, rtol=0.15)
    assert not np.allclose(plain.variance(at).numpy(), 64.0, rtol=0.15)
    # p(x = 50 | s = 55) is the probability of saturating: P(N(55, 64) ≥ 50).
    from scipy.stats import norm

    got = float(torch.exp(cens.log_prob(torch.tensor(50.0), torch.tensor(55.0))))
    assert got == pytest.approx(norm.sf((50.0 - 55.0) / 8.0), rel=0.1)


def test_quantised_gaussian_is_normalised_and_censored_tails_add_up():
    xs = torch.arange(0.0, 256.0, dtype=torch.float64)
    for mu, var in ((3.0, 0.2), (120.0, 30.0), (250.0, 40.0)):
        lp = gaussian_log_prob(
            xs,
            torch.tensor(mu, dtype=torch.float64),
            torch.tensor(var, dtype=torch.float64),
            quantum=1.0,
            clip_low=0.0,
            clip_high=255.0,
        )
        assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-6)
    # Continuous data: the density, except the censored ends.
    x = torch.tensor([-5.0, 10.0, 30.0])
    lp = gaussian_log_prob(x, torch.tensor(10.0), torch.tensor(4.0), clip_low=-5.0)
    assert float(lp[1]) == pytest.approx(-0.5 * math.log(2 * math.pi * 4.0), rel=1e-6)
    assert float(lp[0].exp()) == pytest.approx(0.5 * math.erfc(7.5 / math.sqrt(2)), rel=1e-3)


def test_gradients_finite_everywhere():
    x, s = _linear_var_pairs(5_000)
    m = GMMNoiseModel.fit(
        x, s, n_gaussians=3, degree=2, quantum=1.0, clip_low=0.0, clip_high=255.0, steps=10
    )
    sv = torch.tensor([-50.0, 0.0, 3.0, 100.0, 255.0, 400.0], requires_grad=True)
    xv = torch.tensor([0.0, 0.0, 200.0, 101.0, 255.0, 255.0])
    lp = m.log_prob(xv, sv)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(sv.grad).all()


def test_save_load_round_trip(tmp_path):
    x, s = _linear_var_pairs(5_000)
    m = GMMNoiseModel.fit(x, s, n_gaussians=2, degree=1, quantum=1.0, clip_high=255.0, steps=10)
    m.save(tmp_path / "gmm.json")
    again = load_noise_model(tmp_path / "gmm.json")
    assert isinstance(again, GMMNoiseModel) and again.n_gaussians == 2 and again.degree == 1
    xv, sv = torch.tensor([1.0, 50.0, 255.0]), torch.tensor([2.0, 47.0, 260.0])
    assert torch.allclose(m.log_prob(xv, sv), again.log_prob(xv, sv), rtol=1e-6)


def test_poisson_gaussian_model_round_trip_and_conventions(tmp_path):
    conv = recording_conventions(np.uint8)
    assert conv == {"quantum": 1.0, "clip_low": 0.0, "clip_high": 255.0}
    assert recording_conventions(np.float32)["quantum"] == 0.0
    pg = PoissonGaussianNoiseModel(gain=2.0, read_var=4.0, offset=1.0, **conv)
    pg.save(tmp_path / "pg.json")
    again = load_noise_model(tmp_path / "pg.json")
    xv, sv = torch.tensor([0.0, 30.0, 255.0]), torch.tensor([3.0, 28.0, 250.0])
    assert torch.allclose(pg.log_prob(xv, sv), again.log_prob(xv, sv))
    # The estimator's own result (no "kind") loads as the same model.
    from denoise.noise.base import noise_model_from_dict

    est = {"channels": [{"gain": 2.0, "read_var": 4.0, "offset": 1.0}]}
    assert noise_model_from_dict(est).kind == "poisson_gaussian"


def test_gmm_bootstrap_uses_an_n2v_prediction_as_signal(tmp_path):
    from denoise.config import NoiseModelConfig
    from denoise.io.ingest import ingest
    from denoise.models.store import save_model
    from denoise.models.unet import UNet
    from denoise.noise.calibration import fit_noise_model, pairs_from_n2v

    rng = np.random.default_rng(6)
    data = rng.poisson(30.0, (3, 48, 48)).astype(np.uint16)
    np.save(tmp_path / "d.npy", data)
    store = tmp_path / "d.ome.zarr"
    ingest(str(tmp_path / "d.npy"), store, axes="tyx")
    torch.manual_seed(0)
    meta = {
        "method": "n2v",
        "norm": {"mean": [30.0], "std": [5.5]},
        "axes": "tyx",
        "ndim": 2,
        "train_config": {},
        "fingerprint": "t",
    }
    save_model(tmp_path / "n2v", UNet(depth=2, features=4), meta)
    x, s, dtype = pairs_from_n2v(store, tmp_path / "n2v", max_samples=4000)
    assert x.size == s.size == 4000 and dtype == np.uint16
    cfg = NoiseModelConfig(max_samples=10_000)
    (m,) = fit_noise_model("gmm_bootstrap", store, cfg, n2v_model_dir=tmp_path / "n2v")
    assert isinstance(m, GMMNoiseModel) and m.quantum == 1.0 and m.clip_high == 65535.0
    with pytest.raises(ValueError, match="N2V"):
        fit_noise_model("gmm_bootstrap", store, cfg)
    # The stage's file names the fit ("kind": "gmm_bootstrap") and holds one GMM per channel:
    # PN2V training and prediction must load it.
    from denoise.noise.base import noise_model_from_dict

    stage_file = {"kind": "gmm_bootstrap", "channels": [m.to_dict()], "fingerprint": "f"}
    again = noise_model_from_dict(stage_file)
    assert isinstance(again, GMMNoiseModel)
    xv, sv = torch.tensor([20.0, 31.0]), torch.tensor([25.0, 30.0])
    assert torch.allclose(m.log_prob(xv, sv), again.log_prob(xv, sv))


def test_bright_levels_keep_their_spread_when_most_pixels_are_dark():
    # A fluorescence image: most pixels dark background, a few percent bright structure,
    # photon-counting noise (gain 20, read noise 2, 8-bit).  The likelihood alone lets the dark
    # bulk bend the polynomials at the bright levels (std 64 for a true 52 at s = 150); the
    # moment penalty holds the mixture's spread to the pairs' at every level.
    rng = np.random.default_rng(0)
    s = np.clip(rng.lognormal(np.log(15.0), 0.9, 100_000), 1.0, 250.0)
    x = np.clip(np.round(20.0 * rng.poisson(s / 20.0) + rng.normal(0.0, 2.0, s.shape)), 0, 255)
    grid = np.arange(0.0, 256.0)
    kw = dict(quantum=1.0, clip_low=0.0, clip_high=255.0, steps=100, seed=0)
    m = GMMNoiseModel.fit(x, s, **kw)
    plain = GMMNoiseModel.fit(x, s, moment_weight=0.0, **kw)
    off = []
    for level in (15.0, 50.0, 100.0, 150.0):
        sim = 20.0 * rng.poisson(level / 20.0, 200_000) + rng.normal(0.0, 2.0, 200_000)
        true_std = float(np.clip(np.round(sim), 0, 255).std())
        assert math.sqrt(m.moments(np.array([level]), grid)[1][0]) == pytest.approx(
            true_std, rel=0.1
        ), level
        off.append(abs(math.sqrt(plain.moments(np.array([level]), grid)[1][0]) / true_std - 1))
    assert max(off) > 0.15  # without the penalty the bright spread is off (the test can fail)
