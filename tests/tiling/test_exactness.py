"""Tiled prediction equals whole-image prediction (random-weight U-Nets, float32, CPU)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from denoise.tiling.blend import predict_tiled, reference_predict
from denoise.tiling.grid import round_up

log = logging.getLogger(__name__)

TOL = 1e-5

# (ndim, depth, batch_norm, n2v2, image shape, tile edges, regions per axis ("chunkings"))
CASES = [
    (2, 2, False, False, (61, 77), [60, 80, 256], [1, 3]),
    (2, 2, True, False, (50, 33), [64, 96], [1, 2]),
    (2, 3, False, False, (47, 90), [136, 160], [1, 2]),
    (2, 3, True, False, (129, 41), [144], [2]),
    (2, 2, False, True, (45, 70), [72], [1, 2]),
    (3, 2, False, False, (6, 30, 27), [64], [2]),
    (3, 2, True, False, (1, 21, 35), [60], [1]),
    (3, 3, True, False, (3, 30, 17), [120], [1]),
    (3, 3, False, False, (2, 17, 30), [120], [1]),
]


def _regions(shape: tuple[int, ...], parts: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Split the image into ``parts`` boxes per axis (uneven, like chunks clipped at the end)."""
    edges = [np.unique(np.linspace(0, n, parts + 1).astype(int)) for n in shape]
    boxes = []
    for idx in np.ndindex(*(len(e) - 1 for e in edges)):
        lo = tuple(int(e[i]) for e, i in zip(edges, idx, strict=True))
        hi = tuple(int(e[i + 1]) for e, i in zip(edges, idx, strict=True))
        boxes.append((lo, hi))
    return boxes


@pytest.mark.parametrize(("ndim", "depth", "bn", "n2v2", "shape", "tiles", "chunkings"), CASES)
def test_tiled_equals_whole_image(unet_tools, ndim, depth, bn, n2v2, shape, tiles, chunkings) -> None:
    random_unet, receptive_field, as_fn = unet_tools
    model = random_unet(ndim, depth, bn, n2v2)
    fn = as_fn(model)
    rf = receptive_field(depth, n2v2)
    halo = round_up(rf, model.multiple)
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    ref = reference_predict(fn, image, halo, model.multiple)
    assert np.isfinite(ref).all() and ref.std() > 0
    worst = 0.0
    for tile in tiles:
        for parts in chunkings:
            out = np.full_like(ref, np.nan)
            for lo, hi in _regions(shape, parts):
                box = (slice(None), *(slice(a, b) for a, b in zip(lo, hi, strict=True)))
                out[box] = predict_tiled(fn, image, halo, model.multiple, tile, region=(lo, hi), batch_size=3)
            err = float(np.abs(out - ref).max())
            worst = max(worst, err)
            assert err <= TOL, f"tile {tile}, {parts} regions/axis: max abs error {err:.3g}"
    log.warning("exactness %dD depth %d bn=%s n2v2=%s rf=%d halo=%d: output std %.3g, max abs error %.3g",
                ndim, depth, bn, n2v2, rf, halo, float(ref.std()), worst)


def test_reference_matches_predict_whole(unet_tools) -> None:
    """Our reference and denoise.models.store.predict_whole follow one convention."""
    store = pytest.importorskip("denoise.models.store")
    random_unet, receptive_field, as_fn = unet_tools
    model = random_unet(2, 2, False)
    rf = receptive_field(2, False)
    meta = {"ndim": 2, "receptive_field": rf, "norm": {"mean": [0.0], "std": [1.0]}, "hparams": model.hparams}
    image = np.random.default_rng(2).normal(size=(37, 50)).astype(np.float32)
    whole = store.predict_whole(model, meta, image)
    ours = reference_predict(as_fn(model), image, round_up(rf, 4), 4)[0]
    assert np.abs(whole - ours).max() <= TOL


def test_halo_below_receptive_field_is_detectably_inexact(unet_tools) -> None:
    """The comparison has teeth: one lattice step less halo gives visible errors."""
    random_unet, receptive_field, as_fn = unet_tools
    model = random_unet(2, 2, False)
    fn = as_fn(model)
    halo = round_up(receptive_field(2, False), 4)
    image = np.random.default_rng(3).normal(size=(90, 90)).astype(np.float32)
    ref = reference_predict(fn, image, halo, 4)
    out = predict_tiled(fn, image, halo - 8, 4, 48)
    assert np.abs(out - ref).max() > 100 * TOL
