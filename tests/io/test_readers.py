"""Readers: every format opens lazily with the right axes; bad files fail with the file named."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from denoise.io.axes import AxesError, canonical_order, validate_axes
from denoise.io.readers import InputError, open_input


def test_tiff_2d_real(fish_pair, tmp_path):
    noisy, _ = fish_pair
    p = tmp_path / "a.tif"
    tifffile.imwrite(p, noisy)
    img = open_input(str(p))
    assert img.axes == "yx"
    np.testing.assert_array_equal(img.data.compute(), noisy)


def test_tiff_3d_without_metadata_needs_axes(tmp_path):
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(InputError, match="give the axes"):
        open_input(str(p))
    assert open_input(str(p), "zyx").axes == "zyx"


def test_ome_tiff_axes_from_metadata(tmp_path):
    p = tmp_path / "s.ome.tif"
    tifffile.imwrite(p, np.zeros((2, 3, 8, 8), np.uint16), metadata={"axes": "TZYX"})
    img = open_input(str(p))
    assert img.axes == "tzyx"


def test_axes_not_matching_dims(tmp_path):
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(AxesError, match="3 dimensions"):
        open_input(str(p), "yx")


@pytest.mark.parametrize("axes,msg", [("tqx", "unknown letter"), ("yyx", "repeats"), ("tz", "both 'y' and 'x'")])
def test_bad_axes_strings(axes, msg):
    with pytest.raises(AxesError, match=msg):
        validate_axes(axes)


def test_canonical_order():
    assert canonical_order("yxzt") == "tzyx"


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_input(str(tmp_path / "nope.tif"))
    e = tmp_path / "empty.tif"
    e.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        open_input(str(e))


def test_truncated_and_corrupt_tiff(fish_pair, tmp_path):
    noisy, _ = fish_pair
    p = tmp_path / "t.tif"
    tifffile.imwrite(p, noisy)
    data = p.read_bytes()
    (tmp_path / "trunc.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"trunc\.tif"):
        open_input(str(tmp_path / "trunc.tif"))
    (tmp_path / "junk.tif").write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(InputError, match=r"junk\.tif: not a readable TIFF"):
        open_input(str(tmp_path / "junk.tif"))


def test_png_series_and_mismatch(tmp_path):
    import imageio.v3 as iio

    for k in range(3):
        iio.imwrite(tmp_path / f"f_{k}.png", np.full((10, 12), k, np.uint8))
    img = open_input(str(tmp_path / "f_*.png"))
    assert img.axes == "tyx" and img.data.shape == (3, 10, 12)
    assert img.data[2].compute().max() == 2
    iio.imwrite(tmp_path / "f_9.png", np.zeros((11, 12), np.uint8))
    with pytest.raises(InputError, match="mismatched"):
        open_input(str(tmp_path / "f_*.png"))


def test_npy_and_plain_zarr(tmp_path):
    a = np.arange(2 * 16 * 16, dtype=np.int16).reshape(2, 16, 16)
    np.save(tmp_path / "a.npy", a)
    img = open_input(str(tmp_path / "a.npy"), "cyx")
    assert img.axes == "cyx"
    np.testing.assert_array_equal(img.data.compute(), a)
    z = zarr.create_array(str(tmp_path / "p.zarr"), shape=a.shape, chunks=(1, 8, 8), dtype=a.dtype, dimension_names=["t", "y", "x"])
    z[:] = a
    img = open_input(str(tmp_path / "p.zarr"))
    assert img.axes == "tyx"
    np.testing.assert_array_equal(img.data.compute(), a)


def test_unsupported_format(tmp_path):
    p = tmp_path / "x.jpgx"
    p.write_bytes(b"1")
    with pytest.raises(InputError, match="unsupported format"):
        open_input(str(p))
