"""PSFs: Gaussian construction, measured-file loading (centring, errors), the convolution layer."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from denoise.models.psf import (
    PSFConv,
    center_psf,
    gaussian_psf,
    kernel_from_meta,
    load_psf,
    match_ndim,
)


def _impulse_response(sigma: float | tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    d = np.zeros(shape)
    d[tuple(n // 2 for n in shape)] = 1.0
    return ndimage.gaussian_filter(d, sigma, truncate=8.0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_gaussian_psf_is_normalised_centred_and_matches_scipy(sigma):
    k = gaussian_psf(sigma)
    r = int(np.ceil(4 * sigma))
    assert k.shape == (2 * r + 1, 2 * r + 1)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.unravel_index(np.argmax(k), k.shape) == (r, r)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)
    ref = _impulse_response(sigma, (41, 41))[20 - r : 21 + r, 20 - r : 21 + r]
    np.testing.assert_allclose(k, ref / ref.sum(), atol=1e-6)


def test_gaussian_psf_zero_sigma_is_delta_and_3d_has_own_z():
    k = gaussian_psf(0.0)
    assert k.shape == (1, 1) and k[0, 0] == 1.0
    k3 = gaussian_psf(1.0, sigma_z=2.0, ndim=3)
    assert k3.shape == (17, 9, 9) and k3.sum() == pytest.approx(1.0)
    ref = _impulse_response((2.0, 1.0, 1.0), (41, 41, 41))[12:29, 16:25, 16:25]
    np.testing.assert_allclose(k3, ref / ref.sum(), atol=1e-6)
    assert gaussian_psf(1.0, radius=2).shape == (5, 5)
    assert gaussian_psf(1.0, ndim=3, radius=(1, 2, 2)).shape == (3, 5, 5)
    with pytest.raises(ValueError, match="2D or 3D"):
        gaussian_psf(1.0, ndim=4)
    with pytest.raises(ValueError, match=">= 0"):
        gaussian_psf(-1.0)


def test_load_psf_npy_and_tiff_even_size_off_centre(tmp_path):
    k = np.zeros((8, 10), dtype=np.float32)  # even sizes, peak off centre
    k[2, 6] = 4.0
    k[3, 6] = 2.0
    k[2, 7] = 1.0
    np.save(tmp_path / "p.npy", k)
    tifffile.imwrite(tmp_path / "p.tif", k[None])  # a singleton Z axis is dropped
    for name in ("p.npy", "p.tif"):
        psf = load_psf(tmp_path / name)
        assert all(n % 2 == 1 for n in psf.shape)
        c = tuple(n // 2 for n in psf.shape)
        assert np.unravel_index(np.argmax(psf), psf.shape) == c
        assert psf.sum() == pytest.approx(1.0)
        assert psf[c] == pytest.approx(4 / 7) and psf[c[0] + 1, c[1]] == pytest.approx(2 / 7)
        assert psf[c[0], c[1] + 1] == pytest.approx(1 / 7)
    cropped = load_psf(tmp_path / "p.npy", max_radius=1)
    assert cropped.shape == (3, 3) and cropped.sum() == pytest.approx(1.0)


def test_center_psf_keeps_a_centred_odd_kernel():
    k = gaussian_psf(1.0)
    np.testing.assert_array_equal(center_psf(k), k)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((5, 5)), "all zeros"),
        (-gaussian_psf(1.0), "<= 0"),
        (np.full((5, 5), np.nan), "NaN"),
        (np.ones(7), "2D"),
    ],
)
def test_load_psf_refuses_files_that_cannot_be_normalised(tmp_path, data, message):
    np.save(tmp_path / "bad.npy", data)
    with pytest.raises(ValueError, match=message) as info:
        load_psf(tmp_path / "bad.npy")
    assert "bad.npy" in str(info.value)


def test_load_psf_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_psf(tmp_path / "missing.npy")
    (tmp_path / "p.png").write_bytes(b"")
    with pytest.raises(ValueError, match="unsupported"):
        load_psf(tmp_path / "p.png")


def test_match_ndim_takes_the_focal_plane_or_adds_z():
    k3 = gaussian_psf(1.0, sigma_z=2.0, ndim=3)
    k2 = match_ndim(k3, 2)
    np.testing.assert_allclose(k2, gaussian_psf(1.0), atol=1e-12)
    assert match_ndim(k2, 3).shape == (1, *k2.shape)


def test_psfconv_matches_scipy_correlate_2d_and_3d():
    rng = np.random.default_rng(0)
    img = rng.random((30, 41))
    layer = PSFConv.gaussian(1.3)
    s = layer(torch.from_numpy(img)[None, None])[0, 0].numpy()
    ref = ndimage.correlate(img, gaussian_psf(1.3), mode="mirror")
    np.testing.assert_allclose(s, ref, atol=1e-6)
    vol = rng.random((12, 20, 22))
    k3 = gaussian_psf(0.8, sigma_z=1.5, ndim=3)
    layer3 = PSFConv.from_kernel(k3)
    assert layer3.radii == (6, 4, 4) and layer3.radius == 6
    s3 = layer3(torch.from_numpy(vol).float()[None, None])[0, 0].numpy()
    np.testing.assert_allclose(s3, ndimage.correlate(vol, k3, mode="mirror"), atol=1e-5)


def test_psfconv_identity_and_short_axes():
    x = torch.randn(2, 1, 9, 9)
    assert torch.equal(PSFConv.gaussian(0.0)(x), x)
    tiny = torch.ones(1, 1, 3, 3)  # shorter than the radius: replicate padding, constant stays
    out = PSFConv.gaussian(2.0)(tiny)
    assert torch.allclose(out, tiny)


def test_learnable_sigma_gets_gradient_and_meta_round_trips():
    layer = PSFConv.gaussian(2.0, learnable=True)
    assert layer.radius == 12 and layer.sigma == pytest.approx(2.0)
    x = torch.randn(1, 1, 32, 32)
    target = PSFConv.gaussian(1.0)(x)
    loss = ((layer(x) - target) ** 2).mean()
    loss.backward()
    assert (
        layer.log_sigma.grad is not None and float(layer.log_sigma.grad[0]) > 0
    )  # σ should shrink
    rebuilt = PSFConv.from_meta(layer.meta())
    np.testing.assert_allclose(
        kernel_from_meta(layer.meta()), gaussian_psf(2.0, radius=12), atol=1e-6
    )
    assert not rebuilt.learnable and rebuilt.radii == layer.radii
    assert torch.allclose(rebuilt.kernel(), layer.kernel().detach())
    fixed = PSFConv.from_kernel(gaussian_psf(1.0, sigma_z=1.5, ndim=3))
    again = PSFConv.from_meta(fixed.meta())
    assert again.kind == "file" and torch.allclose(again.kernel(), fixed.kernel())
    with pytest.raises(ValueError, match="σ > 0"):
        PSFConv.gaussian(0.0, learnable=True)
    with pytest.raises(ValueError, match="even"):
        PSFConv.from_kernel(np.ones((4, 5)))
