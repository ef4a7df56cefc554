"""Noise-model plot: a PNG is written for one or several channels."""

from __future__ import annotations

import numpy as np

from denoise.config import NoiseModelConfig
from denoise.noise.plot import plot_noise_model
from denoise.noise.poisson_gaussian import estimate_from_array, phantom, simulate


def test_plot_writes_png(tmp_path):
    fits = [
        estimate_from_array(
            simulate(g * 300 * phantom((256, 256), seed=g), g, 3.0, seed=1), NoiseModelConfig(), 0
        )
        for g in (1, 2)
    ]
    result = {"channels": [dict(f, channel=i) for i, f in enumerate(fits)]}
    out = tmp_path / "sub" / "noise.png"
    plot_noise_model(result, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    single = tmp_path / "one.png"
    plot_noise_model(fits[0], single)
    assert single.stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp.png"))
    assert np.isfinite(fits[0]["gain"])
