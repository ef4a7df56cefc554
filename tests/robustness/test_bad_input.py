"""Bad input through the ``denoise`` CLI: one test per case, asserting what the user gets.

Input that cannot be processed: a non-zero exit, one error line that names the file / key /
axis and says what to do, no traceback, and no sentinel or store left that looks finished.
Input that can: a correct result.  (The library-level checks live in tests/io and
tests/test_config.py; these run the stages as a user or the workflow does.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from tests.robustness.conftest import DATA, Dataset, assert_refused, fish


def _nothing_written(ds: Dataset) -> None:
    assert not ds.ingest_json.exists()
    assert ds.leftovers() == [], ds.leftovers()


# ----------------------------------------------------------------------------- files
def test_missing_file(cli, tmp_path):
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(tmp_path / "nope.tif", "yx"))
    assert_refused(res, f"{tmp_path / 'nope.tif'}: file not found", "check the path")
    _nothing_written(ds)


def test_empty_file(cli, tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(tmp_path / "empty.tif", "yx"))
    assert_refused(res, "empty.tif: the file is empty (0 bytes)", "copy the file again")
    _nothing_written(ds)


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_truncated_or_corrupt_tiff(cli, tmp_path, damage):
    good = (DATA / "fish_noisy.tif").read_bytes()
    bad = tmp_path / f"{damage}.tif"
    bad.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"II*\0garbage" * 40)
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(bad, "yx"))
    if damage == "truncated":
        assert_refused(res, f"{bad}: the TIFF is truncated", "re-copy or re-export")
    else:
        assert_refused(res, f"{bad}: not a readable TIFF", "copy the file again")
    _nothing_written(ds)


@pytest.mark.parametrize("in_place", [False, True], ids=["copied", "used-in-place"])
def test_truncated_zarr_chunk(cli, tmp_path, in_place):
    # An OME-Zarr input with 9 chunks, one of them cut short (an interrupted copy).
    src = Dataset(tmp_path / "src")
    assert cli(*src.ingest_args(DATA / "fish_noisy.tif", "yx")).rc == 0
    victim = src.store / "s0" / "c" / "1" / "2"
    victim.write_bytes(victim.read_bytes()[:7])
    ds = Dataset(tmp_path / "results" / "d")
    if in_place:
        ds.store = src.store  # reuse_ome_zarr: the workflow passes the input as the store
    res = cli(*ds.ingest_args(src.store, ""))
    assert_refused(res, f"{src.store}: cannot decode the pixels at (y 32:64, x 64:96)",
                   "copy it again from the source")
    assert not ds.ingest_json.exists()
    if not in_place:
        assert ds.leftovers() == []


def test_png_series_with_mismatched_sizes(cli, tmp_path):
    import imageio.v3 as iio

    frames = tmp_path / "frames"
    frames.mkdir()
    img = fish(64)
    iio.imwrite(frames / "f_0.png", img)
    iio.imwrite(frames / "f_1.png", img)
    iio.imwrite(frames / "f_2.png", img[:60])
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(f"{frames}/f_*.png", "tyx"))
    assert_refused(res, f"{frames / 'f_0.png'} is (64, 64)", f"{frames / 'f_2.png'} is (60, 64)",
                   "all frames must share size and dtype")
    _nothing_written(ds)


# ----------------------------------------------------------------------------- axes
@pytest.mark.parametrize(
    ("axes", "needle"),
    [("yqx", "axes 'yqx' has unknown letter(s) ['q']; use letters from 'tczyx'"),
     ("yyx", "axes 'yyx' repeats ['y']; each axis may appear once")],
)
def test_axes_with_unknown_or_repeated_letter(cli, tmp_path, axes, needle):
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(DATA / "fish_noisy.tif", axes))
    assert_refused(res, str(DATA / "fish_noisy.tif"), needle)
    _nothing_written(ds)


@pytest.mark.parametrize(("src", "axes", "needle"), [
    ("fish_noisy.tif", "tyx", "axes 'tyx' has 3 letters but the image has 2 dimensions"),
    ("nuclei3d.tif", "yx", "axes 'yx' has 2 letters but the image has 3 dimensions"),
])
def test_axes_not_matching_dimensions(cli, tmp_path, src, axes, needle):
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(DATA / src, axes))
    assert_refused(res, str(DATA / src), needle, "give one letter per dimension")
    _nothing_written(ds)


# ----------------------------------------------------------------------------- values
def test_nan_and_inf_rejected_or_replaced_with_option(cli, tmp_path):
    img = fish(64).astype(np.float32)
    img[5, 6], img[9, 2], img[40, 1] = np.nan, np.inf, np.nan
    np.save(tmp_path / "nan.npy", img)
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(tmp_path / "nan.npy", "yx"))
    assert_refused(res, "nan.npy: 2 NaN and 1 Inf pixel(s), first at (y=5, x=6)",
                   "pass --allow-nonfinite")
    _nothing_written(ds)
    # The explicit option masks them with the median of the finite pixels.
    res = cli(*ds.ingest_args(tmp_path / "nan.npy", "yx"), "--allow-nonfinite")
    assert res.rc == 0, res.err
    assert "replaced 2 NaN and 1 Inf pixels" in res.log
    raw = ds.raw()
    median = np.median(img[np.isfinite(img)])
    assert np.isfinite(raw).all() and raw[5, 6] == raw[9, 2] == raw[40, 1] == median
    assert json.loads(ds.ingest_json.read_text())["nonfinite_replaced"] == {"nan": 2, "inf": 1}


def test_constant_image(cli, tmp_path):
    np.save(tmp_path / "const.npy", np.full((64, 64), 7, np.uint16))
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(tmp_path / "const.npy", "yx"))
    assert res.rc == 0 and "channel 0 is constant (7)" in res.log
    # The noise model has nothing to fit: a clear refusal, nothing written.
    res = cli(*ds.noise_args())
    assert_refused(res, f"{ds.store} channel 0: the image is constant (every sampled pixel is 7)",
                   "no noise to model", "check the acquisition")
    assert not ds.noise_json.exists() and not ds.noise_png.exists()
    # Training and prediction still work and give back the constant exactly.
    assert cli(*ds.train_args()).rc == 0
    assert cli(*ds.predict_args()).rc == 0
    assert cli(*ds.gather_args()).rc == 0
    out = ds.output()
    # exact up to the float32 rounding of the tile blending (before the fix: 7.31 everywhere)
    assert out.dtype == np.float32 and np.abs(out - 7).max() <= 2 * np.spacing(np.float32(7))


@pytest.mark.parametrize(("shape", "axes", "params", "axis", "clamped"), [
    ((24, 40), "yx", {"patch_size": 32, "depth": 2}, "y", "axis 'y' has 24 pixels < patch 32; using patch 24"),
    ((6, 32, 32), "zyx", {"patch_size_z": 8, "depth": 1}, "z", "axis 'z' has 6 pixels < patch 8; using patch 6"),
], ids=["y", "z"])
def test_image_smaller_than_patch_is_clamped(cli, tmp_path, shape, axes, params, axis, clamped):
    img = np.random.default_rng(3).poisson(50, shape).astype(np.uint16)
    np.save(tmp_path / "small.npy", img)
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(tmp_path / "small.npy", axes)).rc == 0
    res = cli(*ds.train_args(params))
    assert res.rc == 0, res.err
    assert clamped in res.log
    assert [a for a in "zyx" if f"axis '{a}' has" in res.log] == [axis]  # only that axis
    meta = json.loads((ds.model / "model.json").read_text())
    assert meta["ndim"] == len(axes) and meta["train_config"] == {**meta["train_config"], **params}
    assert cli(*ds.predict_args()).rc == 0 and cli(*ds.gather_args()).rc == 0
    assert ds.output().shape == shape and np.isfinite(ds.output()).all()


SMALLER_DEPTH = "use a smaller depth, train 2D (dims='2d') for thin stacks, or use a larger image"


@pytest.mark.parametrize(("shape", "axes", "params", "needles"), [
    ((6, 40), "yx", {"depth": 2},
     ("axis 'y' has 6 pixels, fewer than the 8 a U-Net of this depth needs", SMALLER_DEPTH)),
    ((3, 32, 32), "zyx", {"depth": 1, "dims": "3d"},
     ("axis 'z' has 3 pixels, fewer than the 4 a U-Net of this depth needs", SMALLER_DEPTH)),
    ((1, 32, 32), "zyx", {"dims": "3d"},
     ("dims='3d' needs a Z axis with more than one plane (axes 'zyx', shape (1, 32, 32))",)),
], ids=["y-below-2^(depth+1)", "z-below-2^(depth+1)", "3d-on-one-plane"])
def test_image_too_small_for_the_network(cli, tmp_path, shape, axes, params, needles):
    np.save(tmp_path / "tiny.npy", np.random.default_rng(0).integers(0, 200, shape, np.uint8))
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(tmp_path / "tiny.npy", axes)).rc == 0
    res = cli(*ds.train_args(params))
    assert_refused(res, str(ds.store), *needles)
    assert not (ds.model / "model.json").exists() and not (ds.model / "model.pt").exists()


def test_one_plane_z_stack(cli, tmp_path):
    np.save(tmp_path / "z1.npy", fish(64)[None])
    ds = Dataset(tmp_path / "results" / "d")
    res = cli(*ds.ingest_args(tmp_path / "z1.npy", "zyx"))
    assert res.rc == 0 and json.loads(ds.ingest_json.read_text())["shape"] == [1, 64, 64]
    assert cli(*ds.train_args()).rc == 0
    assert json.loads((ds.model / "model.json").read_text())["ndim"] == 2  # 2D fallback
    assert cli(*ds.predict_args()).rc == 0 and cli(*ds.gather_args()).rc == 0
    out = ds.output()
    assert out.shape == (1, 64, 64) and np.isfinite(out).all()


# ----------------------------------------------------------------------------- dtypes
def _dtype_case(name: str) -> np.ndarray:
    base = fish(64).astype(np.int64)  # 2..255, real structure and noise
    if name == "negative":
        return (base - 200).astype(np.int16)
    if name == "near_2**31":
        return (base * 3 + 2**31 - 1000).astype(np.int32)  # up to 2**31 - 241
    if name == "float32_negative":
        return (base.astype(np.float32) - 300.0) / 7.0
    return base.astype(name)


DTYPE_CASES = ["uint8", "uint16", "int16", "int32", "float16", "float32", "float64", "negative",
               "near_2**31", "float32_negative"]


@pytest.mark.parametrize("case", DTYPE_CASES)
def test_dtype_round_trip(cli, tmp_path, case):
    """Every pixel type is accepted, stored exactly, and denoised into its own value range."""
    img = _dtype_case(case)
    np.save(tmp_path / "img.npy", img)
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(tmp_path / "img.npy", "yx")).rc == 0
    raw = ds.raw()
    expect_dtype = np.float32 if img.dtype == np.float16 else img.dtype
    assert raw.dtype == expect_dtype and np.array_equal(raw, img.astype(expect_dtype))
    lo, hi = float(img.min()), float(img.max())
    # the output is float32: near 2**31 its values are multiples of 128
    slack = float(np.spacing(np.float32(max(abs(lo), abs(hi))))) * 2
    # classical baseline (no training): a positive smoothing kernel stays inside [min, max]
    g = Dataset(tmp_path / "results" / "g")
    g.store = ds.store
    sigma = {"sigma": 1.0}
    assert cli(*g.predict_args("gaussian", method_params=sigma)).rc == 0
    assert cli(*g.gather_args("gaussian", method_params=sigma)).rc == 0
    out = g.output()
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert lo - slack <= out.min() and out.max() <= hi + slack
    mean_err = abs(out.astype(np.float64).mean() - img.astype(np.float64).mean())
    assert mean_err < max(0.01 * (hi - lo), slack / 2)
    # trained N2V: normalised inside, de-normalised back into the raw units
    assert cli(*ds.train_args()).rc == 0
    assert cli(*ds.predict_args()).rc == 0 and cli(*ds.gather_args()).rc == 0
    out = ds.output()
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert lo - slack <= out.min() and out.max() <= hi + slack
    assert abs(out.astype(np.float64).mean() - img.astype(np.float64).mean()) < 0.5 * img.astype(np.float64).std()


# ----------------------------------------------------------------------------- config
def test_unknown_method(cli, tmp_path):
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(DATA / "fish_noisy.tif", "yx")).rc == 0
    res = cli(*ds.train_args(method="n2v3"))
    assert_refused(res, "unknown method 'n2v3'; choose one of n2v, n2v2")
    assert not (ds.model / "model.json").exists()
    res = cli(*ds.predict_args(method="n2v3"))
    assert_refused(res, "unknown method 'n2v3'")
    assert not ds.denoised.exists() and not ds.predict_json.exists()
    # in the dataset sheet: the row and the key are named, before any job runs
    sheet = tmp_path / "datasets.tsv"
    sheet.write_text("name\turi\taxes\tmethod\nfish\t" + str(DATA / "fish_noisy.tif") + "\tyx\tn2v3\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"datasets": str(sheet)}))
    res = cli("check-config", tmp_path / "config.yaml")
    assert_refused(res, f"{sheet} row 1 (fish): key 'method'", rc=2)


def test_unknown_config_key(cli, tmp_path):
    sheet = tmp_path / "datasets.tsv"
    sheet.write_text("name\turi\taxes\nfish\t" + str(DATA / "fish_noisy.tif") + "\tyx\n")
    cfg = {"datasets": str(sheet), "results": str(tmp_path / "results"), "train": {"epochz": 3}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = cli("check-config", tmp_path / "config.yaml")
    assert_refused(res, f"{tmp_path / 'config.yaml'}: unknown key 'train.epochz'", rc=2)
    assert not (tmp_path / "results").exists()
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(DATA / "fish_noisy.tif", "yx")).rc == 0
    res = cli(*ds.train_args({"epochz": 3}))
    assert_refused(res, "train --params: unknown key 'epochz'", rc=2)
    assert not (ds.model / "model.json").exists()


def test_noise_model_on_too_few_pixels(cli, tmp_path):
    np.save(tmp_path / "small.npy", fish(24))
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(tmp_path / "small.npy", "yx")).rc == 0
    res = cli(*ds.noise_args())
    assert_refused(res, f"{ds.store} channel 0: noise model fit on too few pixels",
                   "use a larger image or smaller block")
    assert not ds.noise_json.exists() and not ds.noise_png.exists()


def test_sheet_relative_path_missing_names_the_directory(cli, tmp_path, monkeypatch):
    """A relative ``uri`` that does not exist says where it was looked for."""
    monkeypatch.chdir(tmp_path)
    ds = Dataset(Path("results") / "d")
    res = cli(*ds.ingest_args("data/fish.tif", "yx"))
    assert_refused(res, "data/fish.tif: file not found", f"relative paths start at {tmp_path}")
    _nothing_written(ds)


def test_good_input_gives_a_complete_result(cli, tmp_path):
    """The control row: the same helpers on a good TIFF give every sentinel and a valid store."""
    from denoise.io import omezarr

    ds = Dataset(tmp_path / "results" / "d")
    for args in (ds.ingest_args(DATA / "fish_noisy.tif", "yx"), ds.noise_args({"max_samples": 10_000}),
                 ds.train_args(), ds.predict_args(), ds.gather_args()):
        res = cli(*args)
        assert res.rc == 0 and res.error == "", res.err
    omezarr.validate_store(ds.denoised)
    assert ds.complete() and ds.output().shape == tifffile.imread(DATA / "fish_noisy.tif").shape
    assert json.loads(ds.gather_json.read_text())["stage"] == "gather"
