"""No-reference checks: residual vs noise model, blind-spot masked-pixel score."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from denoise.metrics.noref import (
    lag1_autocorrelation,
    masked_pixel_score,
    next_frame_score,
    rank_methods,
    residual_check,
)
from denoise.noise.poisson_gaussian import phantom, simulate

GAIN, SIGMA = 2.0, 3.0


@pytest.fixture(scope="module")
def synthetic():
    s = GAIN * 200 * phantom((256, 256), seed=2) + 20.0
    return s, simulate(s, GAIN, SIGMA, seed=5)


def test_residual_check_oracle_identity_and_oversmoothing(synthetic):
    s, x = synthetic
    params = {"gain": GAIN, "read_var": SIGMA**2, "offset": 0.0}
    oracle = residual_check(x, s, params)
    assert oracle["ratio"] == pytest.approx(1.0, abs=0.05)
    assert all(b["ratio"] == pytest.approx(1.0, abs=0.2) for b in oracle["bins"])
    assert abs(oracle["autocorrelation"]["x"]) < 0.03 and abs(oracle["autocorrelation"]["y"]) < 0.03
    assert residual_check(x, x, params)["ratio"] == 0.0
    blurred = residual_check(x, ndimage.gaussian_filter(x, 4.0), {"channels": [params]})
    assert blurred["ratio"] > 1.1
    assert blurred["autocorrelation"]["x"] > 0.1 and blurred["autocorrelation"]["y"] > 0.1


def test_lag1_autocorrelation_detects_correlated_noise():
    rng = np.random.default_rng(0)
    white = rng.normal(size=(256, 256))
    ac = lag1_autocorrelation(white)
    assert abs(ac["x"]) < 0.02 and abs(ac["y"]) < 0.02
    along_x = white + np.roll(white, 1, axis=1)  # correlation 0.5 along x only
    ac = lag1_autocorrelation(along_x)
    assert ac["x"] == pytest.approx(0.5, abs=0.03) and abs(ac["y"]) < 0.03


def test_masked_pixel_score_estimates_mse_plus_noise_variance(synthetic):
    s, x = synthetic
    noise_var = float(np.mean(GAIN * s + SIGMA**2))
    # An oracle that ignores its input scores exactly the noise variance (up to sampling).
    assert masked_pixel_score(x, lambda m: s, 1 / 16, seed=1, passes=4) == pytest.approx(
        noise_var, rel=0.05
    )
    for sigma in (1.0, 2.0):
        est = masked_pixel_score(
            x, lambda m, sg=sigma: ndimage.gaussian_filter(m, sg), 1 / 16, seed=1, passes=4
        )
        true_mse = float(np.mean((ndimage.gaussian_filter(x, sigma) - s) ** 2))
        # J-invariant version of the filter vs the filter itself: same order, within 25 % of noise + MSE.
        assert est - noise_var == pytest.approx(true_mse, abs=0.25 * (true_mse + noise_var))


def test_rank_methods_on_real_fish(fish_crop):
    noisy, _gt = fish_crop
    x = noisy.astype(np.float64)
    ranking = rank_methods(
        x,
        {
            "identity": lambda m: m,
            "gauss_1.3": lambda m: ndimage.gaussian_filter(m, 1.3),
            "gauss_6": lambda m: ndimage.gaussian_filter(m, 6.0),
        },
        seed=0,
    )
    assert ranking[0]["method"] == "gauss_1.3"
    assert ranking[-1]["method"] == "identity"


def test_input_validation():
    with pytest.raises(ValueError, match="2D"):
        masked_pixel_score(np.zeros(10), lambda m: m)
    with pytest.raises(ValueError, match="fraction"):
        masked_pixel_score(np.zeros((8, 8)), lambda m: m, fraction=0.9)
    with pytest.raises(ValueError, match="shape"):
        residual_check(np.zeros((8, 8)), np.zeros((8, 9)), {"gain": 1, "read_var": 1, "offset": 0})


@pytest.mark.parametrize("correlated", [False, True])
def test_next_frame_score_is_mse_plus_noise_and_ranks_like_the_truth(correlated):
    # Four frames of one static scene, Poisson-Gaussian noise; optionally correlated along x
    # (lag 1 ≈ 0.3, like a scanning confocal), which the blind-spot score cannot handle.
    s = GAIN * 200 * phantom((192, 192), seed=3) + 20.0
    frames = np.stack([simulate(s, GAIN, SIGMA, seed=10 + t) for t in range(4)])
    if correlated:
        n = frames - s
        frames = s + (n + 0.35 * np.roll(n, 1, axis=-1)) / np.sqrt(1 + 0.35**2)
        assert lag1_autocorrelation(frames - s)["x"] == pytest.approx(0.3, abs=0.03)
    noise_var = float(np.mean((frames - s) ** 2))
    scores, truth = [], []
    for sigma in (0.0, 0.7, 1.0, 1.5, 2.0, 3.0):
        est = [ndimage.gaussian_filter(f, sigma) if sigma else f for f in frames]
        scores.append(
            np.mean([next_frame_score(est[t], [frames[u] for u in (t - 1, t + 1) if 0 <= u < 4])
                     for t in range(4)])
        )  # fmt: skip
        truth.append(float(np.mean([(e - s) ** 2 for e in est])))
    np.testing.assert_allclose(np.array(scores) - truth, noise_var, rtol=0.03)
    assert np.argsort(scores).tolist() == np.argsort(truth).tolist()
    with pytest.raises(ValueError, match="neighbouring frame"):
        next_frame_score(frames[0], [])
