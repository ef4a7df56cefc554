"""evaluate(): per-image metrics over stores, GT broadcasting, volumes, tables, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from denoise.io import omezarr
from denoise.metrics.evaluate import evaluate, write_tables
from denoise.metrics.image import psnr, si_psnr, ssim


def _store(path, data, axes):
    chunks = omezarr.default_chunks(data.shape, axes, chunk_yx=64)
    arr = omezarr.create_image(path, data.shape, data.dtype, axes, chunks)
    arr[...] = data
    return path


@pytest.fixture
def timelapse(tmp_path, fish_crop):
    """A 2-frame t y x store of real noisy fish crops (static scene), a denoised output, a yx GT."""
    noisy, gt = fish_crop
    frames = np.stack([noisy, np.clip(noisy.astype(int) + 2, 0, 255).astype(np.uint8)])
    den = np.stack([ndimage.gaussian_filter(f.astype(np.float32), 1.2) for f in frames])
    raw = _store(tmp_path / "raw.ome.zarr", frames, "tyx")
    out = _store(tmp_path / "gauss.ome.zarr", den, "tyx")
    gt_path = tmp_path / "gt.tif"
    tifffile.imwrite(gt_path, gt)
    return raw, out, str(gt_path), frames, den, gt


def test_timelapse_with_broadcast_gt(timelapse):
    raw, out, gt_path, frames, den, gt = timelapse
    res = evaluate(raw, {"gaussian": out}, gt_path, "yx")
    assert res["unit_axes"] == "t" and len(res["images"]) == 2
    for t, im in enumerate(res["images"]):
        assert im["index"] == {"t": t}
        m_raw, m_out = im["metrics"]["raw"], im["metrics"]["gaussian"]
        assert m_raw["psnr"] == pytest.approx(psnr(gt, frames[t]), rel=1e-12)
        assert m_out["psnr"] == pytest.approx(psnr(gt, den[t]), rel=1e-12)
        assert m_out["si_psnr"] == pytest.approx(si_psnr(gt, den[t]), rel=1e-9)
        assert m_out["ssim"] == pytest.approx(ssim(gt, den[t]), rel=1e-12)
        assert "psnr_255" in m_raw  # 8-bit GT
    s = res["summary"]
    assert s["gaussian"]["psnr"] == pytest.approx(np.mean([psnr(gt, d) for d in den]))
    assert res["gain_db"]["gaussian"] == pytest.approx(s["gaussian"]["psnr"] - s["raw"]["psnr"])
    assert res["gain_db"]["gaussian"] > 3


def test_volume_metrics_and_tables(tmp_path, fish_crop):
    noisy, gt = fish_crop
    vol_gt = np.stack([gt, gt[::-1], gt[:, ::-1]]).astype(np.uint16)
    vol_noisy = np.stack([noisy, noisy[::-1], noisy[:, ::-1]]).astype(np.uint16)
    raw = _store(tmp_path / "v.ome.zarr", vol_noisy, "zyx")
    np.save(tmp_path / "gt.npy", vol_gt)
    res = evaluate(raw, {}, str(tmp_path / "gt.npy"), "zyx")
    assert res["volume"] and len(res["images"]) == 1
    m = res["images"][0]["metrics"]["raw"]
    assert m["psnr"] == pytest.approx(psnr(vol_gt, vol_noisy), rel=1e-12)
    assert m["si_psnr"] == pytest.approx(si_psnr(vol_gt, vol_noisy), rel=1e-9)
    assert m["ssim"] == pytest.approx(ssim(vol_gt, vol_noisy), rel=1e-12)
    assert "psnr_255" not in m  # 16-bit GT
    j1, t1 = tmp_path / "a.json", tmp_path / "a.tsv"
    write_tables(res, j1, t1)
    write_tables(
        evaluate(raw, {}, str(tmp_path / "gt.npy"), "zyx"), tmp_path / "b.json", tmp_path / "b.tsv"
    )
    assert j1.read_bytes() == (tmp_path / "b.json").read_bytes()
    assert t1.read_bytes() == (tmp_path / "b.tsv").read_bytes()
    rows = t1.read_text().splitlines()
    assert rows[0].split("\t")[:3] == ["image", "source", "psnr"]
    assert rows[-1].startswith("mean\traw\t")
    assert json.loads(j1.read_text())["summary"]["raw"]["psnr"] == pytest.approx(m["psnr"])


def test_errors_are_clear(tmp_path, timelapse):
    raw, _out, gt_path, _frames, den, gt = timelapse
    np.save(tmp_path / "gt_t3.npy", np.stack([gt] * 3))
    with pytest.raises(ValueError, match="ground truth has t=3 but the data have t=2"):
        evaluate(raw, {}, str(tmp_path / "gt_t3.npy"), "tyx")
    np.save(tmp_path / "gt_z.npy", np.stack([gt] * 2))
    with pytest.raises(ValueError, match="that the data"):
        evaluate(raw, {}, str(tmp_path / "gt_z.npy"), "zyx")
    bad = den.copy()
    bad[1, :4, :4] = np.nan
    nan_store = _store(tmp_path / "nan.ome.zarr", bad, "tyx")
    with pytest.raises(ValueError, match="non-finite"):
        evaluate(raw, {"partial": nan_store}, gt_path, "yx")
    other = _store(tmp_path / "small.ome.zarr", den[:, :64], "tyx")
    with pytest.raises(ValueError, match="shape"):
        evaluate(raw, {"small": other}, gt_path, "yx")


def test_without_ground_truth_gives_no_reference_figures(tmp_path, timelapse):
    raw, out, _gt_path, frames, den, _gt = timelapse
    params = {"channels": [{"gain": 21.0, "read_var": 0.0, "offset": 3.3}]}
    res = evaluate(raw, {"gaussian": out}, "", "", noise_params=params)
    assert res["images"] == [] and res["summary"] == {}
    nr = res["no_reference"]["gaussian"]
    r = frames.astype(np.float64) - den
    assert nr["residual_var"] == pytest.approx(np.mean([f.var() for f in r]), rel=1e-9)
    assert 0.3 < nr["variance_ratio"] < 3
    assert -0.5 < nr["autocorrelation"]["x"] < 0.5
    # Two frames: denoised frame 0 against raw frame 1 (the only frame with a next frame).
    f64 = frames.astype(np.float64)
    expect = np.mean((den[0] - f64[1]) ** 2)
    assert nr["next_frame"]["frames"] == [0] and nr["next_frame"]["estimate"] == "stored output"
    assert nr["next_frame"]["score"] == pytest.approx(expect, rel=1e-9)
    assert nr["next_frame_mse"] == (expect if nr["next_frame"]["valid"] else None)
    assert (
        evaluate(raw, {"gaussian": out}, "")["no_reference"]["gaussian"]["variance_ratio"] is None
    )
    write_tables(res, tmp_path / "n.json", tmp_path / "n.tsv")
    rows = (tmp_path / "n.tsv").read_text().splitlines()
    assert rows[0].startswith("source\tresidual_var") and rows[1].startswith("gaussian\t")
    with_gt = evaluate(raw, {"gaussian": out}, _gt_path, "yx", noise_params=params)
    assert with_gt["no_reference"] == res["no_reference"] and len(with_gt["images"]) == 2
