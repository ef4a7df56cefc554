"""Poisson-Gaussian noise estimation: accuracy on synthetic data with known noise, stores, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from denoise.config import NoiseModelConfig
from denoise.io import omezarr
from denoise.noise.poisson_gaussian import (
    channel_params,
    estimate_from_array,
    estimate_poisson_gaussian,
    phantom,
    predicted_variance,
    simulate,
)

#: Photons at the phantom's bright level (99.9th percentile); the background is 0–1 photon.
PEAK_PHOTONS = 500.0


@pytest.fixture(scope="module")
def clean_1024() -> np.ndarray:
    return phantom((1024, 1024), seed=3)


@pytest.mark.parametrize("gain", [0.5, 2.0, 8.0])
@pytest.mark.parametrize("read_sigma", [2.0, 10.0])
def test_gain_and_read_noise_within_10_percent(clean_1024, gain, read_sigma):
    # x = gain·Poisson(s/gain) + N(0, σ²), offset 0, s = gain × photons.
    s = gain * PEAK_PHOTONS * clean_1024
    x = simulate(s, gain, read_sigma, seed=11)
    fit = estimate_from_array(x, NoiseModelConfig(), seed=0)
    sigma_hat = np.sqrt(fit["read_var"])
    assert fit["gain"] == pytest.approx(gain, rel=0.10)
    assert sigma_hat == pytest.approx(read_sigma, rel=0.10)
    assert fit["offset"] == pytest.approx(0.0, abs=0.1 * gain)


def test_set12_natural_image_gain(tmp_path):
    # A textured natural image (Set12 'Lena' 512², scaled to 2–200 photons): the read noise
    # is not identifiable there (no dark pixels), but the gain must still be right.
    from tests.conftest import SHARED

    path = SHARED / "synthetic" / "set12_n2f" / "gt" / "08.tif"
    if not path.exists():
        pytest.skip("shared data not available")
    import tifffile

    img = tifffile.imread(path).astype(np.float64) / 255.0
    gain = 2.0
    x = simulate(gain * (2 + 198 * img), gain, 2.0, seed=1)
    fit = estimate_from_array(x, NoiseModelConfig(), seed=0)
    assert fit["gain"] == pytest.approx(gain, rel=0.10)


def test_offset_convention_with_black_level():
    # A black level of 100 with little read noise gives a negative intercept: reported as
    # read_var = 0 and offset = −intercept/gain, and the variance line is unchanged.
    s = 100 + 2.0 * 300 * phantom((512, 512), seed=1)
    x = simulate(s, 2.0, 1.0, offset=100.0, seed=2)
    fit = estimate_from_array(x, NoiseModelConfig(), seed=0)
    assert fit["intercept"] < 0
    assert fit["read_var"] == 0.0
    assert fit["offset"] == pytest.approx(-fit["intercept"] / fit["gain"])
    assert fit["offset"] == pytest.approx(100.0, abs=10.0)
    levels = np.array([150.0, 400.0])
    np.testing.assert_allclose(
        predicted_variance(fit, levels), fit["gain"] * levels + fit["intercept"]
    )


def test_clipped_pixels_excluded():
    # Saturating a bright part of the image must not bend the fit (clipped blocks dropped).
    gain = 2.0
    s = gain * PEAK_PHOTONS * phantom((512, 512), seed=5)
    x = simulate(s, gain, 5.0, seed=3)
    clip = float(np.round(np.quantile(x, 0.95)))
    xc = np.round(np.clip(x, 0, clip)).astype(np.uint16)
    fit = estimate_from_array(xc, NoiseModelConfig(), seed=0)
    assert clip in fit["clip_levels"]
    assert fit["gain"] == pytest.approx(gain, rel=0.10)


def test_too_few_blocks_raises_clear_error():
    x = simulate(np.full((20, 20), 50.0), 1.0, 1.0)
    with pytest.raises(
        ValueError,
        match=r"too few pixels: \d+ blocks, need ≥ \d+; use a larger image or smaller block",
    ):
        estimate_from_array(x, NoiseModelConfig(), seed=0)


def test_constant_image_raises_clear_error():
    # No noise at all: every block has zero variance and none is usable.
    with pytest.raises(ValueError, match="too few pixels: 0 blocks"):
        estimate_from_array(np.zeros((256, 256)), NoiseModelConfig(), seed=0)


def test_store_per_channel_bounded_sampling_deterministic(tmp_path):
    # Two channels with different noise in a tczyx-subset store (t c y x), small chunks.
    clean = phantom((512, 512), seed=7)
    gains, sigmas = (1.0, 4.0), (3.0, 6.0)
    data = np.stack(
        [
            np.stack(
                [
                    simulate(g * PEAK_PHOTONS * clean, g, sg, seed=10 * t + c)
                    for c, (g, sg) in enumerate(zip(gains, sigmas, strict=True))
                ]
            )
            for t in range(3)
        ]
    ).astype(np.float32)
    store = tmp_path / "img.ome.zarr"
    arr = omezarr.create_image(store, data.shape, np.float32, "tcyx", (1, 1, 128, 128))
    arr[...] = data
    cfg = NoiseModelConfig(max_samples=300_000)
    res = estimate_poisson_gaussian(store, cfg, seed=4)
    json.dumps(res, allow_nan=False)
    assert len(res["channels"]) == 2
    for ch, g, sg in zip(res["channels"], gains, sigmas, strict=True):
        # The last chunk read is trimmed to the budget (to within one 64² window).
        assert cfg.max_samples - 64 * 64 < ch["n_pixels"] <= cfg.max_samples
        assert ch["gain"] == pytest.approx(g, rel=0.15)
        assert np.sqrt(ch["read_var"]) == pytest.approx(sg, rel=0.15)
        assert set(ch) >= {"gain", "read_var", "offset", "n_blocks", "snr_db", "bins"}
    again = estimate_poisson_gaussian(store, cfg, seed=4)
    assert again == res
    assert channel_params(res, 1) == {
        k: res["channels"][1][k] for k in ("gain", "read_var", "offset")
    }
    with pytest.raises(ValueError, match="channel 2 requested"):
        channel_params(res, 2)


def test_store_sampling_trims_big_chunks(tmp_path):
    # One chunk holding a whole z y x stack: only a part of it is taken.
    clean = phantom((256, 256), seed=8)
    data = np.stack([simulate(2.0 * PEAK_PHOTONS * clean, 2.0, 4.0, seed=z) for z in range(6)])
    store = tmp_path / "vol.ome.zarr"
    arr = omezarr.create_image(store, data.shape, np.float64, "zyx", data.shape)
    arr[...] = data
    res = estimate_poisson_gaussian(store, NoiseModelConfig(max_samples=150_000), seed=0)
    ch = res["channels"][0]
    assert ch["n_pixels"] <= 150_000
    assert ch["gain"] == pytest.approx(2.0, rel=0.15)


def test_real_fish_fit_is_plausible(fish_pair):
    # Real FMD confocal data: the noisy-vs-GT residual gives gain ≈ 24 (grey levels per
    # "photon"); the blind fit from the noisy image alone must land near it.  Its spatially
    # correlated noise makes the Haar estimate read somewhat low.
    noisy, gt = fish_pair
    fit = estimate_from_array(noisy, NoiseModelConfig(), seed=0)
    assert 15 < fit["gain"] < 30
    res = noisy.astype(float) - gt.astype(float)
    # Predicted variance at the mean level within 25 % of the residual's variance.
    pred = float(np.mean(predicted_variance(fit, gt.astype(float))))
    assert pred == pytest.approx(res.var(), rel=0.25)
