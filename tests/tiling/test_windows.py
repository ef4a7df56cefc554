"""Blending windows: zero margins, raised-cosine ramps, partition of unity."""

from __future__ import annotations

import numpy as np
import pytest

from denoise.tiling.grid import plan_grid
from denoise.tiling.windows import axis_window, ramp_up, tile_window


def test_ramps_are_complementary() -> None:
    for r in (1, 4, 8, 24):
        up = ramp_up(r)
        np.testing.assert_allclose(up + up[::-1], 1.0, atol=1e-15)
        assert (up > 0).all() and (up < 1).all()


def test_axis_window_shape() -> None:
    w = axis_window(64, 8, 4, rise=True, fall=False)
    assert (w[:8] == 0).all() and (w[-8:] == 0).all()
    assert (w[12:56] == 1).all()  # flat core and flat towards the side without neighbour
    assert np.all(np.diff(w[8:12]) > 0)


@pytest.mark.parametrize(
    ("start", "stop", "tile", "halo", "m", "ramp"),
    [((0, 0), (200, 150), (64, 48), 8, 4, 4), ((3, 17), (301, 95), (96, 96), 24, 4, 12),
     ((0, 0, 0), (40, 50, 33), (32, 32, 32), 8, 8, 8)],
)
def test_windows_sum_to_one(start, stop, tile, halo, m, ramp) -> None:
    grid = plan_grid(start, stop, tile, halo, m, ramp)
    assert len(grid) > 1
    total = np.zeros(grid.region_shape, dtype=np.float64)
    for idx in grid.tiles():
        keep = [a.keep(k) for a, k in zip(grid.axes, idx, strict=True)]
        w = tile_window(grid, idx)
        # the window is zero over the halo margins (pixels without full context)
        valid = np.zeros(w.shape, dtype=bool)
        valid[tuple(slice(halo, s - halo) for s in w.shape)] = True
        assert (w[~valid] == 0).all()
        total[tuple(k[1] for k in keep)] += w[tuple(k[0] for k in keep)]
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
