"""Histogram noise model: reproduces a known likelihood, interpolates in s, saves, handles clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from denoise.noise.base import load_noise_model, noise_model_from_dict
from denoise.noise.histogram import HistogramNoiseModel

GAIN, SIGMA = 4.0, 3.0


def _pairs(n: int = 400_000, seed: int = 0, s_max: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """Integer clean levels and quantised Poisson-Gaussian observations of them."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, s_max + 1, n).astype(np.float64)
    x = GAIN * rng.poisson(s / GAIN) + rng.normal(0.0, SIGMA, n)
    return np.round(x), s


def _true_pmf(s: float, xs: np.ndarray) -> np.ndarray:
    """Exact probability of each rounded value ``xs`` given ``s`` (Poisson ⊗ Gaussian)."""
    from scipy.stats import norm, poisson

    lam = s / GAIN
    ks = np.arange(0, int(lam + 12 * math.sqrt(lam + 1)) + 2)
    pk = poisson.pmf(ks, lam)
    hi = norm.cdf((xs[:, None] + 0.5 - GAIN * ks[None]) / SIGMA)
    lo = norm.cdf((xs[:, None] - 0.5 - GAIN * ks[None]) / SIGMA)
    return (hi - lo) @ pk


@pytest.fixture(scope="module")
def model() -> HistogramNoiseModel:
    x, s = _pairs()
    return HistogramNoiseModel.fit(x, s)


def test_reproduces_the_true_likelihood(model):
    assert model.x_step == 1.0 and model.s_step == 1.0  # integer data: one bin per value
    for s in (10.0, 40.0, 100.0):
        xs = np.arange(s - 40, s + 41)
        p_true = _true_pmf(s, xs)
        p_hist = model.density(np.array([s]), xs)[0]
        tv = 0.5 * np.abs(p_hist - p_true).sum()
        assert tv < 0.08, (s, tv)  # sampling noise of ~3000 pairs per row
        full = model.x_first + np.arange(model.n_x)
        mean, var = model.moments(np.array([s]), full)
        assert mean[0] == pytest.approx(s, abs=0.5)
        assert var[0] == pytest.approx(GAIN * s + SIGMA**2, rel=0.1)


def test_linear_in_s_between_rows_and_differentiable(model):
    x = torch.tensor([52.0])
    p = lambda sv: float(torch.exp(model.log_prob(x, torch.tensor([sv]))))  # noqa: E731
    mid = p(50.25)
    expected = 0.75 * p(50.0) + 0.25 * p(51.0)
    assert mid == pytest.approx(expected, rel=1e-3)
    s = torch.tensor([50.3, 60.7, 200.0], requires_grad=True)
    lp = model.log_prob(torch.tensor([52.0, 45.0, 120.0]), s)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(s.grad).all()
    assert s.grad[0] != 0  # inside the table: the interpolation weight depends on s


def test_vectorised_over_samples(model):
    x = torch.tensor([[30.0], [80.0]])  # (pixels, 1)
    s = torch.linspace(0, 120, 7)[None].expand(2, -1)  # (pixels, K)
    lp = model.log_prob(x, s)
    assert lp.shape == (2, 7)
    for i in range(2):
        for k in range(7):
            single = model.log_prob(x[i, 0:1], s[i, k : k + 1])
            assert float(lp[i, k]) == pytest.approx(float(single), rel=1e-6)
    # Likelihood peaks near s = x.
    grid = torch.arange(0.0, 121.0)
    best = grid[model.log_prob(torch.tensor(80.0), grid).argmax()]
    assert abs(float(best) - 80.0) <= 6


def test_unseen_values_have_finite_likelihood_and_gradient(model):
    s = torch.tensor([5.0], requires_grad=True)
    lp = model.log_prob(torch.tensor([900.0]), s)  # far beyond anything calibrated
    lp.backward()
    assert torch.isfinite(lp).all() and float(s.grad) > 0  # pulled towards x


def test_signal_beyond_the_calibration_reads_the_edge_row_moved_and_stretched():
    """Data brighter than the calibration: p(x | s) keeps its location, its pull on s, and the
    Poisson-Gaussian growth of its spread.

    (A clamped lookup is flat in s beyond the last row, so PN2V gets no training signal for
    pixels brighter than the calibration; a shifted-only edge row keeps the edge's variance,
    4·60 + 9 = 249 instead of 4·140 + 9 = 569 at s = 140.)
    """
    x, s = _pairs(n=200_000, s_max=60)
    m = HistogramNoiseModel.fit(x, s)
    assert m.s_first + (m.n_s - 1) * m.s_step == pytest.approx(60.0)
    assert m.var_line[1] == pytest.approx(GAIN, rel=0.05)  # variance slope = gain
    xs = np.arange(-100.0, 400.0)
    for sv in (100.0, 140.0):
        mean, var = m.moments(np.array([sv]), xs)
        assert mean[0] == pytest.approx(sv, abs=1.0)
        assert var[0] == pytest.approx(GAIN * sv + SIGMA**2, rel=0.05)
    grid = np.arange(20.0, 240.0, 0.25)
    for xv in (100.0, 140.0):
        w = torch.softmax(m.log_prob(torch.tensor(xv), torch.tensor(grid)), 0).numpy()
        truth = np.array([_true_pmf(g, np.array([xv]))[0] for g in grid])
        # The flat-prior posterior mean of s (above x: the spread grows with s) as the truth's.
        assert float((w * grid).sum()) == pytest.approx((truth * grid).sum() / truth.sum(), abs=1.0)
        # At s = x the density is near the truth's, far above the wide tail term.
        at_x = float(torch.exp(m.log_prob(torch.tensor(xv), torch.tensor(xv))))
        assert at_x == pytest.approx(_true_pmf(xv, np.array([xv]))[0], rel=0.15)
        # Pulled towards x: s = x ± 25 are less likely, and the gradient in s is finite and
        # non-zero (its sign bin to bin follows the histogram's sampling noise, as in range).
        at = m.log_prob(torch.tensor(xv), torch.tensor([xv - 25.0, xv, xv + 25.0]))
        assert float(at[1]) > float(at[0]) + 0.3 and float(at[1]) > float(at[2]) + 0.3
        st = torch.tensor(xv + 10.0, requires_grad=True)
        m.log_prob(torch.tensor(xv), st).backward()
        assert math.isfinite(float(st.grad)) and float(st.grad) != 0.0
    # Below the first row likewise (shifted first row), and the in-range lookup is unchanged.
    low = torch.arange(-60.0, 0.0, 0.25)
    w = torch.softmax(m.log_prob(torch.tensor(-30.0), low), 0)
    assert float((w * low).sum()) == pytest.approx(-30.0, abs=3.0)


def test_aligned_integer_signal_gets_one_row_per_level():
    """An 8-bit clean image after the affine alignment (a·s + b) keeps one row per level.

    Equal-width bins over its range instead leave rows between the levels empty; they borrow
    a neighbour shifted by a whole x bin, so where the noise spans one or two recorded values
    (a dark background) p(x | s) lands one value off.
    """
    rng = np.random.default_rng(3)
    level = rng.integers(3, 150, 300_000)
    x = np.round(level + rng.normal(0.0, 0.35, level.size) * (level < 10) +
                 rng.normal(0.0, 3.0, level.size) * (level >= 10))  # fmt: skip
    s = 1.07 * level - 0.4  # what align_signal makes of an integer clean image
    m = HistogramNoiseModel.fit(x, s)
    assert m.s_step == pytest.approx(1.07) and m.n_s == 147
    for lv in (3, 4, 5, 6):
        sv = torch.tensor(1.07 * lv - 0.4)
        p_here = float(torch.exp(m.log_prob(torch.tensor(float(lv)), sv)))
        assert p_here > 0.8  # nearly all of a dark level's values are the level itself


def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "hist.json"
    model.save(path)
    again = load_noise_model(path)
    assert isinstance(again, HistogramNoiseModel)
    x = torch.tensor([3.0, 47.0, 118.0])
    s = torch.tensor([2.5, 44.2, 119.0])
    assert torch.allclose(model.log_prob(x, s), again.log_prob(x, s), rtol=1e-5)
    assert noise_model_from_dict(model.to_dict()).n_s == model.n_s


def test_sparse_rows_keep_their_location():
    x, s = _pairs(n=60_000, s_max=60)
    extra_s = np.full(30, 200.0)  # a bright row with very few pairs
    extra_x = np.round(200.0 + np.random.default_rng(1).normal(0, 30.0, 30))
    m = HistogramNoiseModel.fit(np.append(x, extra_x), np.append(s, extra_s), min_count=500)
    xs = np.arange(m.x_first, m.x_first + m.n_x)
    mean, _ = m.moments(np.array([200.0, 130.0]), xs)
    # Borrowed rows are shifted to the row's own level: the mean stays near s.
    assert mean[0] == pytest.approx(200.0, abs=8.0)
    assert mean[1] == pytest.approx(130.0, abs=8.0)


def test_sparse_top_rows_shifted_past_the_data_keep_their_shape():
    # An FMD-like calibration: most of the clean image dark, a sparse bright top (a few pairs
    # per row), and the noisy values ending (at 173) well below the dtype's limit.  Before the
    # fix the model's mean at s = 160 was 199.  Pooled rows shifted
    # up past the last recorded x must not pile their mass into the end bin, and an x above
    # the table must not read that bin's density: the model's mean stays at s.
    rng = np.random.default_rng(5)
    s = np.round(np.clip(rng.lognormal(np.log(12.0), 0.6, 250_000), 4, 170))
    x = np.clip(np.round(s + rng.normal(0.0, 1.0, s.size) * np.sqrt(0.5 * s + 4.0)), 0, 255)
    m = HistogramNoiseModel.fit(x, s, min_count=500, clip_low=0.0, clip_high=255.0)
    grid = np.arange(0.0, 256.0)
    levels = np.array([100.0, 130.0, 150.0, 160.0])  # 1, 0, 0, 0 pairs each
    assert (np.bincount(s.astype(int), minlength=171)[levels.astype(int)] < 500).all()
    mean, var = m.moments(levels, grid)
    np.testing.assert_allclose(mean / levels, 1.0, atol=0.03)
    # (Borrowed from darker rows, the spread is somewhat narrow: within 30 %.)
    np.testing.assert_allclose(np.sqrt(var), np.sqrt(0.5 * levels + 4.0), rtol=0.3)
    # Far above every recorded x: only the small wide-Gaussian tail is left.
    beyond = float(x.max()) + 40.0
    assert float(torch.exp(m.log_prob(torch.tensor(beyond), torch.tensor(20.0)))) < 1e-4


def test_borrowed_mass_shifted_past_a_clip_level_saturates_there():
    # Sparse bright rows near saturation borrow darker rows shifted up past 255: that mass is
    # what an 8-bit detector records as 255, so p(255 | s) is the saturation probability.
    from scipy.stats import norm

    rng = np.random.default_rng(6)
    s = np.concatenate([rng.integers(150, 200, 100_000), rng.integers(200, 251, 300)]).astype(float)
    x = np.clip(np.round(s + rng.normal(0.0, 10.0, s.size)), 0, 255)
    m = HistogramNoiseModel.fit(x, s, min_count=500, clip_low=0.0, clip_high=255.0)
    assert m.x_first + (m.n_x - 1) * m.x_step == 255.0  # nothing kept beyond the clip level
    got = float(torch.exp(m.log_prob(torch.tensor(255.0), torch.tensor(250.0))))
    assert got == pytest.approx(norm.sf((254.5 - 250.0) / 10.0), rel=0.15)


def test_clipped_values_collect_in_the_edge_bin():
    rng = np.random.default_rng(2)
    s = rng.integers(200, 256, 200_000).astype(np.float64)
    raw = s + rng.normal(0, 20.0, s.size)
    x = np.clip(np.round(raw), 0, 255)
    m = HistogramNoiseModel.fit(x, s)
    # p(x = 255 | s) is the probability of saturating (per unit of x), not a Gaussian density.
    for level in (230.0, 250.0):
        from scipy.stats import norm

        p_sat = norm.sf((254.5 - level) / 20.0)
        got = float(torch.exp(m.log_prob(torch.tensor(255.0), torch.tensor(level))))
        assert got == pytest.approx(p_sat, rel=0.1)


def test_fit_noise_model_from_a_calibration_stack_and_plot(tmp_path):
    from denoise.config import NoiseModelConfig
    from denoise.io.ingest import ingest
    from denoise.noise.calibration import fit_noise_model, pairs_from_stack
    from denoise.noise.plot_models import plot_noise_models

    rng = np.random.default_rng(5)
    clean = np.tile(np.linspace(0, 100, 64), (64, 1))
    frames = GAIN * rng.poisson(clean / GAIN, (40, 64, 64)) + rng.normal(0, SIGMA, (40, 64, 64))
    cal = tmp_path / "cal.npy"
    np.save(cal, np.clip(np.round(frames + 10), 0, 255).astype(np.uint8))
    np.save(tmp_path / "data.npy", np.clip(np.round(frames[0] + 10), 0, 255).astype(np.uint8))
    store = tmp_path / "data.ome.zarr"
    ingest(str(tmp_path / "data.npy"), store, axes="yx")
    cfg = NoiseModelConfig(max_samples=100_000)
    (m,) = fit_noise_model("histogram", store, cfg, str(cal), "tyx", seed=0)
    assert isinstance(m, HistogramNoiseModel)
    x, s, dtype = pairs_from_stack(cal, "tyx", max_samples=100_000)
    assert x.size <= 100_000 and dtype == np.uint8
    xs = m.x_first + np.arange(m.n_x)
    _, var = m.moments(np.array([60.0]), xs)  # s = 50 + the black level 10
    assert var[0] == pytest.approx((GAIN * 50 + SIGMA**2) * (1 - 1 / 40), rel=0.15)
    plot_noise_models([{"histogram": m}], tmp_path / "nm.png", pairs=[(x, s)], title="test")
    assert (tmp_path / "nm.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="calibration stack"):
        fit_noise_model("histogram", store, cfg)
