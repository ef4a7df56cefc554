"""Noise2Fast: chequerboard downsampling, a known-answer denoising test, determinism, warm start,
odd sizes and the PlanePredictor contract (all small, a few seconds on 2 cores)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoise.config import PredictConfig
from denoise.methods import noise2fast as n2f

SMALL = (8, 8)  # a narrow network where the test is about plumbing, not denoising quality


def _ramp(shape: tuple[int, int], seed: int, sigma: float = 5.0) -> np.ndarray:
    """A smooth ramp plus Gaussian noise (structure, so the output does not collapse)."""
    ramp = np.add.outer(np.linspace(0, 60, shape[0]), np.linspace(0, 40, shape[1]))
    return (ramp + np.random.default_rng(seed).normal(0, sigma, shape)).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread avoids OpenMP barrier costs on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_chequerboard_up_and_left_on_known_array():
    x = torch.arange(24).reshape(4, 6)
    up_even = n2f.chequerboard_downsample(x, -1, 0)  # squeezed along X: (m, n/2)
    up_odd = n2f.chequerboard_downsample(x, -1, 1)
    left_even = n2f.chequerboard_downsample(x, -2, 0)  # squeezed along Y: (m/2, n)
    left_odd = n2f.chequerboard_downsample(x, -2, 1)
    assert up_even.shape == (4, 3) and left_even.shape == (2, 6)
    assert up_even.tolist() == [[0, 2, 4], [7, 9, 11], [12, 14, 16], [19, 21, 23]]
    assert up_odd.tolist() == [[1, 3, 5], [6, 8, 10], [13, 15, 17], [18, 20, 22]]
    assert left_even.tolist() == [[0, 7, 2, 9, 4, 11], [12, 19, 14, 21, 16, 23]]
    assert left_odd.tolist() == [[6, 1, 8, 3, 10, 5], [18, 13, 20, 15, 22, 17]]
    # Each split holds exactly the pixels of one parity, each once.
    rows, cols = np.divmod(np.arange(24), 6)
    even = set(np.flatnonzero((rows + cols) % 2 == 0).tolist())
    for e, o in ((up_even, up_odd), (left_even, left_odd)):
        assert set(e.flatten().tolist()) == even
        assert set(o.flatten().tolist()) == set(range(24)) - even


def test_chequerboard_3d_parity_and_odd_axis_rejected():
    x = torch.arange(2 * 4 * 4).reshape(2, 4, 4)
    z, y, xx = np.unravel_index(np.arange(x.numel()), x.shape)
    parity = (z + y + xx) % 2
    for axis in (-1, -2, -3):
        for p in (0, 1):
            sub = n2f.chequerboard_downsample(x, axis, p, ndim=3)
            assert sub.numel() == x.numel() // 2
            assert set(parity[sub.flatten().numpy()].tolist()) == {p}
    with pytest.raises(ValueError, match="odd size"):
        n2f.chequerboard_downsample(torch.zeros(5, 4), -2, 0)


def test_training_pairs_are_the_four_swapped_pairs():
    x = torch.rand(1, 1, 6, 8)
    (up_in, up_t), (left_in, left_t) = n2f.training_pairs(x)
    assert up_in.shape == (2, 1, 6, 4) and left_in.shape == (2, 1, 3, 8)
    torch.testing.assert_close(up_in[0], up_t[1])
    torch.testing.assert_close(up_in[1], up_t[0])
    torch.testing.assert_close(left_in[0], left_t[1])


def test_pure_gaussian_noise_on_constant_image_is_flattened():
    rng = np.random.default_rng(0)
    noisy = (100.0 + rng.normal(0.0, 10.0, (64, 64))).astype(np.float32)
    out, info = n2f.denoise_plane(noisy, seed=1, patience=4, max_steps=30, validate_every=5)
    assert out.dtype == np.float32 and out.shape == noisy.shape
    assert noisy.std() / out.std() >= 5.0, (noisy.std(), out.std(), info["steps"])
    assert abs(float(out.mean()) - 100.0) < 5.0


def test_same_seed_bit_identical_other_seed_differs():
    img = np.random.default_rng(3).poisson(20.0, (24, 32)).astype(np.uint16)
    kw = dict(patience=3, max_steps=12, validate_every=3, widths=SMALL)
    a, ia = n2f.denoise_plane(img, seed=7, **kw)
    b, ib = n2f.denoise_plane(img, seed=7, **kw)
    c, _ = n2f.denoise_plane(img, seed=8, **kw)
    np.testing.assert_array_equal(a, b)
    assert ia["steps"] == ib["steps"] and ia["scores"] == ib["scores"]
    assert not np.array_equal(a, c)


def test_output_in_raw_units_not_rounded_and_odd_sizes_work():
    img = (np.random.default_rng(4).poisson(30.0, (21, 17)) + 1000).astype(np.uint16)
    out, _ = n2f.denoise_plane(img, seed=0, patience=2, max_steps=6, validate_every=2, widths=SMALL)
    assert out.shape == (21, 17) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert img.min() - 1 <= out.min() and out.max() <= img.max() + 1
    assert np.any(out != np.round(out))
    vol, _ = n2f.denoise_volume(
        img[None].repeat(3, 0), seed=0, patience=2, max_steps=4, validate_every=2, widths=SMALL
    )
    assert vol.shape == (3, 21, 17)


def test_constant_plane_returned_unchanged():
    img = np.full((8, 9), 5.0, np.float32)
    out, info = n2f.denoise_plane(img, seed=0)
    np.testing.assert_array_equal(out, img)
    assert info["stop_reason"] == "constant_input"


def test_stopping_rule_and_averaging():
    img = _ramp((32, 32), 5)
    _, info = n2f.denoise_plane(img, seed=0, patience=2, max_steps=400, validate_every=1, widths=SMALL)
    assert info["stop_reason"] == "patience"
    steps = [s for s, _ in info["scores"]]
    assert steps[-1] - info["best_step"] == 2 and info["averaged"] == 3
    _, capped = n2f.denoise_plane(img, seed=0, patience=50, max_steps=5, validate_every=2, widths=SMALL)
    assert capped["stop_reason"] == "max_steps" and capped["steps"] == 5


def test_collapse_detection():
    flat = torch.full((1, 1, 16, 16), 0.5)
    assert n2f._collapsed(flat)
    assert not n2f._collapsed(torch.rand(1, 1, 16, 16))


def test_warm_start_reuses_state():
    img = _ramp((12, 12), 6)
    kw = dict(patience=2, max_steps=8, validate_every=2, widths=SMALL)
    _, first = n2f.denoise_plane(img, seed=0, **kw)
    _, warm = n2f.denoise_plane(img, seed=0, init_state=first["state_dict"], **kw)
    assert warm["scores"][0][0] == 0  # the inherited weights are validated before training
    settings = n2f.Noise2FastSettings(warm_start=True, max_steps=4, validate_every=2, patience=1)
    pred = n2f.Noise2FastPredictor(PredictConfig(device="cpu"), seed=0, settings=settings)
    used = []
    img = img[:8, :8]
    for idx in ({"t": 0, "c": 0}, {"t": 1, "c": 0}, {"t": 0, "c": 1}, {"t": 2, "c": 0}, {"t": 4, "c": 0}):
        pred(img, idx)
        used.append(pred.last_info["warm_started"])
    assert used == [False, True, False, True, False]


def test_plane_predictor_contract():
    cfg = PredictConfig(device="cpu")
    settings = n2f.Noise2FastSettings(max_steps=4, validate_every=2)
    pred = n2f.Noise2FastPredictor(cfg, seed=0, settings=settings)
    assert pred.ndim == 2 and pred.output_names == ("denoised",)
    plane = _ramp((12, 10), 7)
    out = pred(plane, {"t": 0, "c": 0})
    assert out.shape == (1, 12, 10) and out.dtype == np.float32
    np.testing.assert_array_equal(out, pred(plane, {"t": 0, "c": 0}))  # seeded per index
    with pytest.raises(ValueError, match="2D units"):
        pred(plane[None], {"t": 0})
    pred3 = n2f.Noise2FastPredictor(
        cfg, 0, settings.model_copy(update={"chequerboard_3d": True})
    )
    assert pred3.ndim == 3
    assert pred3(np.stack([plane] * 4), {"t": 0, "c": 0}).shape == (1, 4, 12, 10)


def test_planes_trained_at_once_match_planes_trained_alone():
    rng = np.random.default_rng(8)
    planes = np.stack([rng.poisson(lam, (16, 12)) for lam in (5.0, 40.0, 12.0)]).astype(np.float32)
    planes[2] = 3.0  # a constant plane is passed through
    kw = dict(patience=2, max_steps=9, validate_every=3, widths=SMALL)
    together, infos = n2f.denoise_planes(planes, seeds=[1, 2, 3], **kw)
    for k, seed in enumerate((1, 2, 3)):
        alone, info = n2f.denoise_plane(planes[k], seed=seed, **kw)
        np.testing.assert_allclose(together[k], alone, rtol=0, atol=1e-3 * (np.ptp(planes[k]) + 1))
        assert infos[k]["steps"] == info["steps"] and infos[k]["stop_reason"] == info["stop_reason"]
    state = infos[0]["state_dict"]
    assert state["head.weight"].shape == (1, SMALL[-1], 1, 1)
