"""The noise-correlation estimate on synthetic planes with a known autocovariance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from denoise.noise.correlation import estimate_noise_correlation, noise_psd, psd_from_acov
from tests.conftest import correlated_noise, correlated_series


def _signal(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth positive plane with blobs (levels 8-20 in stabilised units)."""
    s = ndimage.gaussian_filter(rng.normal(size=shape), 12)
    return 14 + 6 * s / np.abs(s).max()


def _correlated(
    shape: tuple[int, int], rng: np.random.Generator, width: float
) -> tuple[np.ndarray, float]:
    """Correlated noise of variance 6 (the FMD wide-field level) and its lag-1 correlation."""
    return correlated_noise(shape, rng, width, variance=6.0)


def test_white_noise_reads_unit_variance_and_no_correlation():
    rng = np.random.default_rng(0)
    z = _signal((256, 256), rng) + rng.normal(size=(256, 256))
    est = estimate_noise_correlation(z)
    assert est is not None
    assert 0.85 < est["variance"] < 1.1
    assert abs(est["lag1"]) < 0.1
    psd, info = noise_psd(z)
    assert psd is None and info["used"] is False


@pytest.mark.parametrize("width", [0.6, 0.8])
def test_correlated_noise_variance_and_lag1_are_recovered(width):
    rng = np.random.default_rng(1)
    n, rho = _correlated((256, 256), rng, width)
    est = estimate_noise_correlation(_signal((256, 256), rng) + n)
    assert est is not None
    # Selecting the flattest quarter of the blocks reads the variance low, more so the longer
    # the correlation (measured 5.2-5.3 at width 0.7, 4.7-4.9 at width 1.0, seeds 1-3 of this test).
    assert 0.75 * 6.0 < est["variance"] < 1.02 * 6.0
    assert est["lag1"] == pytest.approx(rho, abs=0.05)
    psd, info = noise_psd(_signal((256, 256), rng) + n)
    assert info["used"] is True and psd.shape == (256, 256)


def test_psd_of_white_autocovariance_is_flat_in_bm3d_convention():
    acov = np.zeros((9, 9))
    acov[4, 4] = 2.5
    p = psd_from_acov(acov, (64, 32))
    np.testing.assert_allclose(p, 2.5 * 64 * 32)


def test_dark_or_clipped_planes_give_no_estimate():
    rng = np.random.default_rng(2)
    z = np.maximum(rng.normal(0.5, 1.0, size=(128, 128)), 0.0)  # mostly at the floor
    assert estimate_noise_correlation(z) is None
    psd, info = noise_psd(z)
    assert psd is None and "too few" in info["reason"]


def test_texture_without_noise_correlation_keeps_the_white_model():
    # Dense fine texture everywhere and weak white noise: the flattest blocks still hold
    # texture, which reads as a slowly decaying "correlation"; the range test refuses it.
    rng = np.random.default_rng(3)
    tex = ndimage.gaussian_filter(rng.normal(size=(256, 256)), 1.5)
    z = 20 + 40 * tex / tex.std() * 0.1 + 0.5 * rng.normal(size=(256, 256))
    est = estimate_noise_correlation(z)
    assert est is not None and est["lag2"] > 0.5 * est["lag1"]
    assert noise_psd(z)[0] is None


def test_noise_fit_records_the_correlation_and_the_report_shows_it():
    # The noise stage's fit carries the summary; the report's noise table says it in words.
    from denoise.noise.poisson_gaussian import estimate_from_array
    from denoise.report.tables import noise_table
    from denoise.settings import NoiseModelConfig

    rng = np.random.default_rng(4)
    shape = (320, 320)
    series, sig = correlated_series(rng, n_t=1, size=shape[0])
    x = series[0]  # variance 6·s, lag-1 0.58
    fit = estimate_from_array(x.astype(np.float32), NoiseModelConfig(), seed=0)
    c = fit["spatial_correlation"]
    assert c is not None and c["correlated"] is True and c["lag1"] > 0.3
    assert "<b>correlated</b>" in noise_table({"channels": [fit]})
    white = (sig + np.sqrt(6 * sig) * rng.normal(size=shape)).astype(np.float32)
    cw = estimate_from_array(white, NoiseModelConfig(), seed=0)["spatial_correlation"]
    assert cw is not None and cw["correlated"] is False and abs(cw["lag1"]) < 0.1
    assert "none detected" in noise_table({"channels": [{"spatial_correlation": cw}]})
