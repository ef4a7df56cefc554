"""Ingest: streamed, atomic, canonical axes, dtype preserving, clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from denoise.io import omezarr
from denoise.io.ingest import ingest
from denoise.io.readers import InputError


def test_ingest_real_fish_valid_ome_zarr(fish_pair, tmp_path):
    noisy, _ = fish_pair
    src = tmp_path / "fish.tif"
    tifffile.imwrite(src, noisy)
    s = ingest(str(src), tmp_path / "fish.ome.zarr")
    assert s["axes"] == "yx" and s["shape"] == [512, 512] and s["dtype"] == "uint8"
    omezarr.validate_store(tmp_path / "fish.ome.zarr")
    arr, _axes = omezarr.open_image(tmp_path / "fish.ome.zarr")
    np.testing.assert_array_equal(arr[:], noisy)
    assert abs(s["stats"][0]["mean"] - noisy.mean()) < 1e-6
    # Deterministic: same input -> same fingerprint.
    s2 = ingest(str(src), tmp_path / "fish2.ome.zarr")
    assert s2["fingerprint"] == s["fingerprint"]


def test_ingest_reorders_to_canonical(tmp_path):
    a = np.random.default_rng(0).integers(0, 1000, (8, 9, 3), dtype=np.uint16)  # y x t
    np.save(tmp_path / "a.npy", a)
    s = ingest(str(tmp_path / "a.npy"), tmp_path / "a.ome.zarr", axes="yxt")
    assert s["axes"] == "tyx" and s["shape"] == [3, 8, 9]
    arr, _ = omezarr.open_image(tmp_path / "a.ome.zarr")
    np.testing.assert_array_equal(arr[:], a.transpose(2, 0, 1))


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "float16", "float32", "float64"])
def test_dtypes_round_trip(dtype, tmp_path):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (info.min, info.max) if info else (-1e3, 1e3)
    a = rng.uniform(max(lo, -2**31 + 2), min(hi, 2**31 - 2), (16, 16)).astype(dtype)
    np.save(tmp_path / "a.npy", a)
    s = ingest(str(tmp_path / "a.npy"), tmp_path / "a.ome.zarr", axes="yx")
    arr, _ = omezarr.open_image(tmp_path / "a.ome.zarr")
    expect = a.astype(np.float32) if dtype == "float16" else a
    np.testing.assert_array_equal(arr[:], expect)
    assert s["stats"][0]["max"] == pytest.approx(float(a.max()), rel=1e-6)


def test_nan_rejected_with_count_and_position(tmp_path):
    a = np.ones((10, 10), np.float32)
    a[3, 4] = np.nan
    a[7, 1] = np.inf
    np.save(tmp_path / "n.npy", a)
    with pytest.raises(InputError, match=r"1 NaN and 1 Inf pixel\(s\), first at \(y=3, x=4\)"):
        ingest(str(tmp_path / "n.npy"), tmp_path / "n.ome.zarr", axes="yx")
    assert not (tmp_path / "n.ome.zarr").exists()
    s = ingest(str(tmp_path / "n.npy"), tmp_path / "n.ome.zarr", axes="yx", allow_nonfinite=True)
    arr, _ = omezarr.open_image(tmp_path / "n.ome.zarr")
    assert np.isfinite(arr[:]).all() and s["nonfinite_replaced"] == {"nan": 1, "inf": 1}


def test_killed_ingest_leaves_nothing_complete(tmp_path):
    # A leftover partial store from a killed run is removed, never mistaken for a result.
    a = np.zeros((8, 8), np.uint8)
    np.save(tmp_path / "a.npy", a)
    partial = tmp_path / "a.ome.zarr.partial"
    partial.mkdir()
    (partial / "junk").write_text("x")
    ingest(str(tmp_path / "a.npy"), tmp_path / "a.ome.zarr", axes="yx")
    assert not partial.exists() and (tmp_path / "a.ome.zarr").exists()


def test_truncated_zarr_chunk_fails_clearly(tmp_path):
    a = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    np.save(tmp_path / "a.npy", a)
    ingest(str(tmp_path / "a.npy"), tmp_path / "src.ome.zarr", axes="yx")
    # Re-chunk small so there are several chunks, then truncate one.
    ingest(str(tmp_path / "src.ome.zarr"), tmp_path / "copy.ome.zarr")
    chunks = sorted(p for p in Path(tmp_path / "src.ome.zarr/s0").rglob("*") if p.is_file() and p.name != "zarr.json")
    victim = chunks[0]
    victim.write_bytes(victim.read_bytes()[:5])
    with pytest.raises(Exception, match=r"(?i)(decompress|corrupt|error|frame|src.ome.zarr)"):
        ingest(str(tmp_path / "src.ome.zarr"), tmp_path / "bad.ome.zarr")
    assert not (tmp_path / "bad.ome.zarr").exists()


def test_pyramid_and_xarray(tmp_path, fish_pair):
    noisy, _ = fish_pair
    np.save(tmp_path / "f.npy", np.stack([noisy, noisy]))
    ingest(str(tmp_path / "f.npy"), tmp_path / "f.ome.zarr", axes="tyx")
    assert omezarr.build_pyramid(tmp_path / "f.ome.zarr") == 4
    omezarr.validate_store(tmp_path / "f.ome.zarr")
    xa = omezarr.as_xarray(tmp_path / "f.ome.zarr")
    assert xa.dims == ("t", "y", "x") and xa.shape == (2, 512, 512)
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(tmp_path / "f.ome.zarr")))())
    assert nodes[0].data[0].shape == (2, 512, 512) and len(nodes[0].data) == 4
