"""Poisson-Gaussian likelihood: values, gradients, peak location, variance floor, JSON round trip."""

from __future__ import annotations

import math

import pytest
import torch

from denoise.noise.base import PoissonGaussianNoiseModel, load_noise_model, noise_model_from_dict
from denoise.noise.likelihood import PoissonGaussianLikelihood


def test_log_prob_matches_gaussian_density():
    lik = PoissonGaussianNoiseModel(gain=2.0, read_var=9.0, offset=10.0)
    x = torch.tensor([30.0], dtype=torch.float64)
    s = torch.tensor([25.0], dtype=torch.float64)
    v = 2.0 * (25.0 - 10.0) + 9.0
    expected = -0.5 * (math.log(2 * math.pi * v) + 25.0 / v)
    assert float(lik.log_prob(x, s)) == pytest.approx(expected, rel=1e-12)


def test_gradient_finite_and_peak_near_x():
    lik = PoissonGaussianNoiseModel(gain=1.5, read_var=4.0, offset=0.0)
    x = torch.tensor([5.0, 120.0, 0.0])
    # K samples of s per pixel (PN2V layout), broadcast against x.
    grid = torch.linspace(-20.0, 200.0, 2201)
    s = grid[:, None].expand(-1, 3).clone().requires_grad_(True)
    lp = lik.log_prob(x[None, :], s)
    lp.sum().backward()
    assert torch.isfinite(lp).all()
    assert torch.isfinite(s.grad).all()
    peak = grid[lp.argmax(dim=0)]
    # The mode sits at s ≈ x (shifted by less than half the variance slope, gain/2).
    for p, xv in zip(peak.tolist(), x.tolist(), strict=True):
        assert abs(p - xv) <= 1.0


def test_variance_floor_without_read_noise():
    lik = PoissonGaussianLikelihood(gain=4.0, read_var=0.0, offset=100.0)
    v = lik.variance(torch.tensor([50.0, 100.0, 104.0]))
    assert torch.all(v >= 0.1 * 16.0)
    assert float(v[2]) == pytest.approx(16.0)
    s = torch.tensor([50.0], requires_grad=True)
    PoissonGaussianNoiseModel(gain=4.0, read_var=0.0, offset=100.0).log_prob(
        torch.tensor([52.0]), s
    ).backward()
    assert torch.isfinite(s.grad).all()


def test_json_round_trip_and_from_result(tmp_path):
    model = PoissonGaussianNoiseModel(gain=3.0, read_var=2.5, offset=1.0)
    path = tmp_path / "noise.json"
    model.save(path)
    again = load_noise_model(path)
    assert isinstance(again, PoissonGaussianNoiseModel)
    assert again.to_dict() == model.to_dict()
    result = {
        "channels": [
            {"gain": 1.0, "read_var": 1.0, "offset": 0.0},
            {"gain": 3.0, "read_var": 2.5, "offset": 1.0},
        ]
    }
    assert noise_model_from_dict(result, 1).to_dict()["gain"] == 3.0
    assert noise_model_from_dict(result, 0).to_dict()["gain"] == 1.0


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="gain"):
        PoissonGaussianLikelihood(gain=0.0, read_var=1.0)
    with pytest.raises(ValueError, match="read_var"):
        PoissonGaussianLikelihood(gain=1.0, read_var=-1.0)
