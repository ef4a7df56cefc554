"""The leave-out next-frame score ranks window methods like the truth on a static synthetic
series, and declares itself invalid when the frames move."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from denoise.metrics.noref import (
    MOTION_RATIO_MAX,
    frame_motion_check,
    leave_out_next_frame_score,
    leave_out_window,
    next_frame_score,
)
from denoise.synthetic.timelapse import BENCHMARK_SEEDS, timelapse
from denoise.tiling.grid import reflect_index

#: name -> (k, window -> estimate of the centre frame)
CANDIDATES = {
    "window_mean_k2": (2, lambda w, t: w.mean(axis=0)),
    "window_mean_k1": (1, lambda w, t: w.mean(axis=0)),
    "gaussian_1px": (0, lambda w, t: ndimage.gaussian_filter(w[0], 1.0)),
    "identity": (0, lambda w, t: w[0]),
}


def _true_psnr(fn, k: int, noisy: np.ndarray, truth: np.ndarray) -> float:
    n = noisy.shape[0]
    out = np.stack([fn(noisy[reflect_index(t - k, t + k + 1, n)], t) for t in range(n)])
    rng = float(truth.max() - truth.min())
    return 10 * np.log10(rng**2 / np.mean((out - truth.astype(np.float64)) ** 2))


def test_leave_out_window_never_holds_the_next_frame() -> None:
    for n in (3, 4, 9):
        for k in (0, 1, 2, 4):
            for t in range(n - 1):
                w = leave_out_window(n, t, k)
                assert len(w) == 2 * k + 1 and w[k] == t and t + 1 not in w
    assert list(leave_out_window(9, 4, 2)) == [2, 3, 4, 6, 7]
    assert list(leave_out_window(9, 0, 2)) == [3, 2, 0, 2, 3]  # reflected in the shortened series


@pytest.mark.parametrize("seed", BENCHMARK_SEEDS)
def test_static_series_ranked_in_true_psnr_order(seed: int) -> None:
    s = timelapse(0.0, seed)
    noisy, params = s.noisy, s.noise_params()
    truth = {name: _true_psnr(fn, k, noisy, s.truth) for name, (k, fn) in CANDIDATES.items()}
    scores = {
        name: leave_out_next_frame_score(fn, noisy, k, params) for name, (k, fn) in CANDIDATES.items()
    }
    assert all(r["valid"] and r["reason"] is None for r in scores.values())
    by_truth = sorted(truth, key=lambda m: -truth[m])
    by_score = sorted(scores, key=lambda m: scores[m]["score"])
    assert by_score == by_truth, (truth, {m: r["score"] for m, r in scores.items()})
    # the naive next-frame score of a window method sees frame t+1's own noise: it flatters
    # the window mean so much that it beats the (truly better) Gaussian
    n = noisy.shape[0]
    naive = np.mean([
        next_frame_score(noisy[reflect_index(t - 2, t + 3, n)].mean(0), [noisy[t + 1]]) for t in range(n - 1)
    ])
    assert truth["gaussian_1px"] > truth["window_mean_k2"]
    assert naive < scores["gaussian_1px"]["score"] < scores["window_mean_k2"]["score"]
    # estimated MSE ≈ true MSE against the next frame's signal (identity: the noise itself)
    ident = scores["identity"]
    assert abs(ident["estimated_mse"] / ident["noise_var"] - 1) < 0.15


@pytest.mark.parametrize("seed", BENCHMARK_SEEDS)
def test_moving_series_declared_invalid(seed: int) -> None:
    s = timelapse(5.0, seed)
    k, fn = CANDIDATES["window_mean_k2"]
    res = leave_out_next_frame_score(fn, s.noisy, k, s.noise_params())
    assert res["valid"] is False and "moves or changes" in res["reason"]
    assert res["motion"]["ratio"] > 1.5 > MOTION_RATIO_MAX  # far beyond the threshold (measured 2.0–2.3)


def test_motion_check_on_pure_noise_and_without_noise_model() -> None:
    rng = np.random.default_rng(0)
    params = {"gain": 2.0, "read_var": 16.0, "offset": 100.0}
    s = np.full((8, 64, 64), 300.0)
    x = 100 + 2.0 * rng.poisson((s - 100) / 2.0) + rng.normal(0, 4, s.shape)
    check = frame_motion_check(x, params)
    assert check["valid"] and abs(check["ratio"] - 1) < 0.03
    res = leave_out_next_frame_score(lambda w, t: w[0], x, 0)
    assert res["valid"] is None and res["motion"] is None
    with pytest.raises(ValueError, match="t >= 3"):
        leave_out_next_frame_score(lambda w, t: w[0], x[:2], 0)
