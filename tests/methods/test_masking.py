"""Blind-spot masking: fraction, stratification, replacement sources, N2V2 median."""

from __future__ import annotations

import pytest
import torch

from denoise.methods.masking import grid_coordinates, mask_batch, masked_mse


def _unique(shape: tuple[int, ...]) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    return torch.randperm(n, generator=torch.Generator().manual_seed(0)).float().reshape(shape)


@pytest.mark.parametrize(
    ("shape", "fraction"),
    [((8, 1, 64, 64), 0.02), ((4, 1, 16, 32, 32), 0.05), ((8, 1, 50, 70), 0.1)],
)
def test_fraction_and_mask_consistency(shape, fraction):
    x = _unique(shape)
    mb = mask_batch(x, fraction, 5, generator=torch.Generator().manual_seed(1))
    frac = mb.mask.float().mean().item()
    assert abs(frac - fraction) < 0.25 * fraction
    assert int(mb.mask.sum()) == mb.coords.shape[0]  # no position drawn twice
    # every patch gets blind spots, and about the same number (stratified grid)
    per_patch = torch.bincount(mb.coords[:, 0], minlength=shape[0]).float()
    assert per_patch.min() > 0
    assert (per_patch.max() - per_patch.min()) <= 0.1 * per_patch.mean() + 2
    assert torch.equal(mb.masked[~mb.mask], x[~mb.mask])


def test_stratified_one_per_box():
    coords = grid_coordinates(3, (64, 64), 1 / 64, torch.Generator().manual_seed(2))  # box side 8
    boxes = coords[:, 0] * 64 + (coords[:, 1] // 8) * 8 + coords[:, 2] // 8
    assert boxes.unique().numel() == coords.shape[0] == 3 * 64


@pytest.mark.parametrize("shape", [(16, 1, 16, 16), (4, 1, 8, 12, 12)])
def test_n2v_replacement_is_a_neighbour_never_the_centre(shape):
    x = _unique(shape)
    ndim = len(shape) - 2
    mb = mask_batch(x, 0.2, 5, n2v2=False, generator=torch.Generator().manual_seed(3))
    src, dst = mb.sources, mb.coords
    assert torch.equal(src[:, 0], dst[:, 0])
    d = (src[:, 1:] - dst[:, 1:]).abs()
    assert (d.max(dim=1).values >= 1).all()  # never the centre position
    assert (d <= 2).all()  # within the 5-wide window
    limit = torch.tensor(shape[2:])
    assert ((src[:, 1:] >= 0) & (src[:, 1:] < limit)).all()
    idx_d = (dst[:, 0], torch.zeros_like(dst[:, 0]), *dst[:, 1:].T)
    idx_s = (src[:, 0], torch.zeros_like(src[:, 0]), *src[:, 1:].T)
    assert torch.equal(mb.masked[idx_d], x[idx_s])
    assert (mb.masked[idx_d] != x[idx_d]).all()  # unique values: really replaced
    # offsets are spread over the window, not a fixed neighbour
    assert len({tuple(v) for v in (src[:, 1:] - dst[:, 1:]).tolist()}) > 3**ndim


def test_n2v2_median_excludes_centre():
    x = _unique((6, 1, 20, 20))
    mb = mask_batch(x, 0.1, 3, n2v2=True, generator=torch.Generator().manual_seed(4))
    xp = x[:, 0]
    for b, y, xx in mb.coords.tolist():
        vals = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == dx == 0:
                    continue
                yy = y + dy if 0 <= y + dy < 20 else y - dy
                xq = xx + dx if 0 <= xx + dx < 20 else xx - dx
                vals.append(float(xp[b, yy, xq]))
        expected = sorted(vals)[(len(vals) - 1) // 2]  # lower median of 8 values
        assert float(mb.masked[b, 0, y, xx]) == expected


def test_seeded_and_errors():
    x = torch.randn(2, 1, 32, 32)
    a = mask_batch(x, 0.05, generator=torch.Generator().manual_seed(5))
    b = mask_batch(x, 0.05, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.masked, b.masked) and torch.equal(a.mask, b.mask)
    with pytest.raises(ValueError, match="B, 1"):
        mask_batch(torch.zeros(2, 32, 32), 0.05)
    with pytest.raises(ValueError, match="odd"):
        mask_batch(x, 0.05, neighbourhood=4)
    with pytest.raises(ValueError, match="too small"):
        mask_batch(torch.zeros(1, 1, 4, 32), 0.05, neighbourhood=5)


def test_masked_mse_only_counts_blind_spots():
    pred = torch.zeros(1, 1, 4, 4)
    tgt = torch.ones(1, 1, 4, 4)
    tgt[0, 0, 0, 0] = 3.0
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0, 0] = True
    mask[0, 0, 1, 1] = True
    assert masked_mse(pred, tgt, mask).item() == pytest.approx((9 + 1) / 2)


def test_widen_blind_spots_hides_the_neighbourhood_only():
    from denoise.methods.masking import widen_blind_spots

    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)  # all distinct
    mb = mask_batch(x, 0.01, 5, False, g)
    assert widen_blind_spots(mb, x, 0) is mb
    wide = widen_blind_spots(mb, x, 1, torch.Generator().manual_seed(1))
    assert torch.equal(wide.mask, mb.mask) and torch.equal(wide.masked[mb.mask], mb.masked[mb.mask])
    near = torch.nn.functional.max_pool2d(mb.mask.float(), 3, stride=1, padding=1) > 0
    ring = near & ~mb.mask
    assert torch.equal(wide.masked[~near], x[~near])  # unchanged away from the blind spots
    changed = (wide.masked[ring] != x[ring]).float().mean()
    assert changed > 0.95  # replaced (a random draw may hit its own value: 1 in 1024)
    for b in range(2):  # replacements come from the same patch
        vals = wide.masked[b][ring[b]]
        assert bool(((vals >= x[b].min()) & (vals <= x[b].max())).all())
    with pytest.raises(ValueError, match="radius must be >= 0"):
        widen_blind_spots(mb, x, -1)
