"""Full-reference metrics against the shared data's published protocol and numbers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from denoise.metrics.image import affine_fit, mse, psnr, psnr_255, si_psnr, ssim
from tests.conftest import SHARED


def test_noisy_fish_is_22_08_db(fish_pair):
    noisy, gt = fish_pair
    assert psnr(gt, noisy) == pytest.approx(22.079, abs=5e-4)
    assert psnr_255(gt, noisy) == pytest.approx(22.217, abs=5e-4)
    assert si_psnr(gt, noisy) == pytest.approx(25.094, abs=5e-4)


def test_matches_noisy_psnr_csv_for_fmd_confocal():
    table = SHARED / "noisy_psnr.csv"
    if not table.exists():
        pytest.skip("shared data not available")
    import tifffile

    rows = [r for r in csv.DictReader(table.open()) if r["dataset"] == "fmd_confocal_n2f"]
    assert len(rows) == 5
    for r in rows:
        noisy, gt = tifffile.imread(SHARED / r["noisy"]), tifffile.imread(SHARED / r["gt"])
        assert psnr(gt, noisy) == pytest.approx(float(r["psnr_range"]), abs=5e-4)
        assert psnr_255(gt, noisy) == pytest.approx(float(r["psnr_255"]), abs=5e-4)
        assert si_psnr(gt, noisy) == pytest.approx(float(r["psnr_affine"]), abs=5e-4)


def test_psnr_protocol_float64_no_clipping():
    gt = np.array([[0, 100], [200, 250]], dtype=np.uint8)
    x = gt.astype(np.float64) + np.array([[-3.0, 0], [0, 300.0]])  # out of uint8 range on purpose
    expected = 10 * np.log10(250.0**2 / np.mean(np.array([9.0, 0, 0, 90000.0])))
    assert psnr(gt, x) == pytest.approx(expected, rel=1e-12)
    assert mse(gt, x) == pytest.approx(22502.25)
    assert psnr(gt, gt) == float("inf")
    with pytest.raises(ValueError, match="shape"):
        psnr(gt, x[:1])


def test_si_psnr_invariant_to_scale_and_offset():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (64, 64))
    x = gt + rng.normal(0, 5, gt.shape)
    a, _b = affine_fit(gt, 3.0 * x + 7.0)
    assert a == pytest.approx(1 / 3.0 * affine_fit(gt, x)[0], rel=1e-9)
    assert si_psnr(gt, 3.0 * x + 7.0) == pytest.approx(si_psnr(gt, x), rel=1e-9)
    assert si_psnr(gt, x) >= psnr(gt, x)


def test_ssim_settings_and_plane_average(fish_crop):
    noisy, gt = fish_crop
    g, x = gt.astype(np.float64), noisy.astype(np.float64)
    r = float(g.max() - g.min())
    ref = structural_similarity(
        g, x, data_range=r, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(gt, noisy) == pytest.approx(ref, rel=1e-12)
    # A stack is the mean over its y x planes (one data range for the stack).
    stack_g, stack_x = np.stack([g, g[::-1]]), np.stack([x, x[::-1]])
    rr = float(stack_g.max() - stack_g.min())
    per = [
        structural_similarity(
            a, b, data_range=rr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        for a, b in zip(stack_g, stack_x, strict=True)
    ]
    assert ssim(stack_g, stack_x) == pytest.approx(np.mean(per), rel=1e-12)
    assert ssim(gt, gt) == pytest.approx(1.0)
