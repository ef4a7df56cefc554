"""The synthetic time-lapse generator has the properties its docstring states."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.filters import window
from skimage.registration import phase_cross_correlation

from denoise.synthetic.timelapse import BENCHMARK_SEEDS, SPEEDS, TimeLapseParams, timelapse


def _shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dy, dx) taking frame a to frame b, by phase correlation of Hann-windowed frames."""
    w = window("hann", a.shape)
    a, b = a.astype(np.float64), b.astype(np.float64)
    return phase_cross_correlation((b - b.mean()) * w, (a - a.mean()) * w, upsample_factor=50)[0]


def test_benchmark_grid_is_fixed() -> None:
    assert SPEEDS == (0.0, 0.5, 2.0, 5.0) and BENCHMARK_SEEDS == (0, 1, 2)
    p = TimeLapseParams()
    assert p.frames >= 12 and (p.gain, p.read_sd, p.offset) == (2.0, 4.0, 100.0)
    with pytest.raises(ValueError, match="at least 12 frames"):
        TimeLapseParams(frames=8)


@pytest.mark.parametrize("speed", SPEEDS)
def test_speed_measured_by_phase_correlation(speed: float) -> None:
    s = timelapse(speed, seed=1)
    shifts = np.array([_shift(s.truth[t], s.truth[t + 1]) for t in range(s.params.frames - 1)])
    measured = np.hypot(shifts[:, 0], shifts[:, 1])
    assert np.all(np.abs(measured - speed) < 0.05), measured
    if speed:
        a = math.radians(s.params.direction_deg)
        np.testing.assert_allclose(np.median(shifts, 0), [speed * math.sin(a), speed * math.cos(a)], atol=0.05)


def test_noise_variance_matches_the_model() -> None:
    s = timelapse(0.5, seed=0)
    p = s.noise_params()
    r = (s.noisy - s.truth).astype(np.float64).ravel()
    level = s.truth.astype(np.float64).ravel()
    assert abs(r.mean()) < 0.1
    order = np.argsort(level)
    for idx in np.array_split(order, 8):
        predicted = p["gain"] * np.mean(level[idx] - p["offset"]) + p["read_var"]
        assert abs(np.var(r[idx]) / predicted - 1) < 0.05


def test_transients_rise_fast_and_decay() -> None:
    s = timelapse(0.0, seed=2)
    p = s.params
    assert len(s.transients) == p.n_transients
    for tr in s.transients:
        y, x = (round(c) for c in tr["position"])
        t0 = tr["onset"]
        assert 2 <= t0 <= p.frames - 6
        jump = s.truth[t0, y, x] - s.truth[t0 - 1, y, x]
        assert jump > 0.8 * p.transient_amplitude * s.bleach[t0]  # the rise takes one frame
        above = s.truth[t0:, y, x] - s.truth[0, y, x] * s.bleach[t0:]
        decay = above[1:4] / above[:3]
        expected = math.exp(-1 / p.transient_tau)
        assert np.all(np.abs(decay - expected) < 0.05), decay


def test_bleaching_is_monotone_and_scales_the_signal() -> None:
    s = timelapse(0.0, seed=0)
    assert np.all(np.diff(s.bleach) < 0) and s.bleach[0] == 1.0
    u = s.truth.astype(np.float64) - s.params.offset
    far = np.ones(u.shape[1:], bool)  # pixels away from every transient
    yy, xx = np.mgrid[: u.shape[1], : u.shape[2]]
    for tr in s.transients:
        far &= np.hypot(yy - tr["position"][0], xx - tr["position"][1]) > 5 * s.params.transient_sigma
    for t in range(s.params.frames):
        np.testing.assert_allclose(u[t][far], s.bleach[t] * u[0][far], rtol=1e-4, atol=1e-3)  # float32 truth
    assert np.all(np.diff(u[:, far].mean(1)) < 0)


def test_seeded_and_a_truth_per_frame() -> None:
    a, b, c = timelapse(2.0, 0), timelapse(2.0, 0), timelapse(2.0, 1)
    assert a.noisy.tobytes() == b.noisy.tobytes() and a.truth.tobytes() == b.truth.tobytes()
    assert not np.array_equal(a.truth, c.truth)
    assert a.truth.shape == a.noisy.shape == (16, 128, 128) and a.truth.dtype == np.float32
    assert np.all(a.truth >= a.params.offset)
    # objects move with the series (speed 0: static), each on its own line
    v = [np.hypot(*o["velocity"]) for o in a.objects]
    assert all(1.0 <= x <= 3.0 for x in v) and len(set(np.round(v, 6))) == len(v)
    assert all(np.hypot(*o["velocity"]) == 0 for o in timelapse(0.0, 0).objects)
