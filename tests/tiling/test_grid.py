"""Tile grids: lattice, coverage, reflect mapping."""

from __future__ import annotations

import numpy as np
import pytest

from denoise.tiling.grid import AxisTiles, pad_widths, plan_axis, plan_grid, reflect_index


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 37])
@pytest.mark.parametrize("width", [0, 1, 4, 24, 61])
def test_reflect_index_equals_np_pad(n: int, width: int) -> None:
    a = np.arange(n) * 10
    extra = 3
    ref = np.pad(a, (width, width + extra), mode="reflect")
    got = a[reflect_index(-width, n + width + extra, n)]
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize(
    ("start", "stop", "tile", "halo", "m"),
    [(0, 37, 256, 24, 4), (0, 1, 64, 24, 4), (0, 2048, 256, 24, 4), (64, 130, 96, 24, 4),
     (30, 101, 80, 8, 8), (0, 333, 136, 56, 8), (5, 6, 32, 0, 1), (0, 1000, 1072, 24, 4)],
)
def test_plan_axis_covers_on_lattice(start: int, stop: int, tile: int, halo: int, m: int) -> None:
    ax = plan_axis(start, stop, tile, halo, m, ramp=m)
    assert all(o % m == 0 for o in ax.origins)
    assert ax.size % m == 0 and ax.size <= max(tile, 2 * halo + 3 * m)
    covered = np.zeros(stop - start, dtype=int)
    for k in range(ax.count):
        tsl, osl = ax.keep(k)
        assert tsl.start >= halo and tsl.stop <= ax.size - halo  # only context-complete pixels
        covered[osl] += 1
    assert covered.min() >= 1
    assert covered.max() <= 2  # neighbours overlap over the ramp only


def test_small_image_single_tile() -> None:
    ax = plan_axis(0, 37, 256, 24, 4, ramp=4)
    assert ax.count == 1 and ax.size == 40 + 48 and ax.origins == (-24,)


def test_tile_too_small_for_halo_is_raised() -> None:
    ax = plan_axis(0, 100, 32, 24, 4, ramp=4)
    assert ax.size >= 2 * 24 + 4


def test_off_lattice_grid_rejected() -> None:
    good = plan_axis(0, 200, 96, 24, 8, ramp=8)
    shifted = tuple(o + 3 for o in good.origins)
    with pytest.raises(ValueError, match="lattice"):
        AxisTiles(good.start, good.stop, shifted, good.size, good.halo, good.ramp, good.multiple)
    with pytest.raises(ValueError, match="multiples"):
        AxisTiles(good.start, good.stop, good.origins, good.size + 4, good.halo, good.ramp, good.multiple)
    with pytest.raises(ValueError, match="multiples"):
        plan_axis(0, 200, 96, 20, 8, ramp=8)


def test_grid_shape_and_read_box() -> None:
    g = plan_grid((0, 10), (50, 90), (64, 64), 8, 4)
    assert g.region_shape == (50, 80)
    assert all(lo % 4 == 0 for lo in g.read_lo)
    assert len(g) == len(list(g.tiles()))


def test_pad_widths_halo_before_halo_and_multiple_after():
    assert pad_widths((13, 16, 1), 8, 4) == [(8, 11), (8, 8), (8, 11)]
    for n in range(1, 40):
        ((lo, hi),) = pad_widths((n,), 8, 8)
        assert lo == 8 and hi >= 8 and (lo + n + hi) % 8 == 0 and hi - 8 < 8
