"""Blind-spot masking for Noise2Void (N2V) and N2V2, vectorised in torch.

Masked positions lie on a stratified (jittered) grid: every axis is cut into boxes of
``mask_fraction ** (-1 / ndim)`` pixels on average (integer box edges ``floor(k * side)``, so
7 or 8 px in 2D for 2 %; boxes cut by the patch border are narrower) and one position is drawn
uniformly inside every box.  About ``mask_fraction`` of the pixels are masked, no position twice,
and blind spots never cluster.

Each masked pixel's input value is replaced by

* N2V: the value of one random pixel of the ``neighbourhood`` window around it, the centre
  excluded (the N2V paper's "uniform without centre pixel" scheme);
* N2V2: the median of that window without the centre (for the even count of 24 or 124
  neighbours, the lower of the two middle values, as ``torch.median`` returns).

Near the patch border a window offset that would leave the patch is mirrored (``-offset``
is used instead), so the replacement source is always inside the patch and never the centre.
The loss compares the network output at the masked positions with the ORIGINAL values.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field

log = logging.getLogger(__name__)


class MaskedBatch(NamedTuple):
    """Result of :func:`mask_batch`.

    Attributes
    ----------
    masked
        ``(B, 1, *spatial)`` input with the blind spots replaced.
    mask
        ``(B, 1, *spatial)`` bool, True at the blind spots.
    coords
        ``(K, 1 + ndim)`` long: batch index then spatial coordinates of each blind spot.
    sources
        ``(K, 1 + ndim)`` long: the pixel whose value replaced each blind spot (N2V); for N2V2
        the same as ``coords`` (the value is a median, not one pixel's).
    """

    masked: torch.Tensor
    mask: torch.Tensor
    coords: torch.Tensor
    sources: torch.Tensor


def grid_coordinates(
    batch: int, shape: tuple[int, ...], fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Stratified blind-spot positions for ``batch`` patches of spatial ``shape``.

    Returns
    -------
    torch.Tensor
        ``(K, 1 + ndim)`` long: batch index, then one coordinate per spatial axis.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"mask fraction must be in (0, 1), got {fraction}")
    ndim = len(shape)
    side = fraction ** (-1.0 / ndim)
    starts, widths = [], []
    for n in shape:
        k = torch.arange(int(-(-n // side)), dtype=torch.float64)  # ceil(n / side) boxes
        lo = torch.floor(k * side).long()
        hi = torch.clamp(torch.floor((k + 1) * side).long(), max=n)
        starts.append(lo)
        widths.append(hi - lo)
    lo = torch.stack(
        [g.reshape(-1) for g in torch.meshgrid(*starts, indexing="ij")], dim=1
    )  # (M, ndim)
    wd = torch.stack([g.reshape(-1) for g in torch.meshgrid(*widths, indexing="ij")], dim=1)
    jitter = torch.rand((batch, lo.shape[0], ndim), generator=generator, dtype=torch.float64)
    pos = lo[None] + torch.floor(jitter * wd[None]).long()  # (B, M, ndim), one per box
    bidx = torch.arange(batch)[:, None].expand(batch, lo.shape[0])
    return torch.cat([bidx.reshape(-1, 1), pos.reshape(-1, ndim)], dim=1)


def _window_offsets(ndim: int, neighbourhood: int) -> torch.Tensor:
    """All offsets of the ``neighbourhood``-wide window except the centre, ``(W, ndim)``."""
    r = neighbourhood // 2
    axes = torch.meshgrid(*[torch.arange(-r, r + 1)] * ndim, indexing="ij")
    off = torch.stack([a.reshape(-1) for a in axes], dim=1)
    return off[(off != 0).any(dim=1)]


def _mirror(pos: torch.Tensor, off: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """``pos + off`` with offsets that leave the patch mirrored per axis (``pos - off``)."""
    tgt = pos + off
    out = (tgt < 0) | (tgt >= shape)
    return torch.where(out, pos - off, tgt)


def _flat(coords: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Linear index into a ``(B, *shape)`` tensor from ``(..., 1 + ndim)`` coordinates."""
    idx = coords[..., 0]
    for axis, n in enumerate(shape, start=1):
        idx = idx * n + coords[..., axis]
    return idx


def mask_batch(
    x: torch.Tensor,
    fraction: float,
    neighbourhood: int = 5,
    n2v2: bool = False,
    generator: torch.Generator | None = None,
) -> MaskedBatch:
    """Apply N2V (or N2V2) blind-spot masking to a batch of single-channel patches.

    Parameters
    ----------
    x
        ``(B, 1, *spatial)`` float tensor, 2 or 3 spatial axes, each at least
        ``neighbourhood // 2 * 2 + 1`` pixels.
    fraction
        Fraction of pixels masked per patch (e.g. 0.02).
    neighbourhood
        Odd edge of the replacement window (5: offsets −2..2).
    n2v2
        Replace by the window median (N2V2) instead of a random neighbour (N2V).
    generator
        Torch RNG for reproducibility (CPU generator).

    Returns
    -------
    MaskedBatch
        Masked input, boolean mask, blind-spot coordinates and replacement sources.
    """
    if x.ndim not in (4, 5) or x.shape[1] != 1:
        raise ValueError(
            f"expected (B, 1, *spatial) with 2 or 3 spatial axes, got {tuple(x.shape)}"
        )
    if neighbourhood < 3 or neighbourhood % 2 == 0:
        raise ValueError(f"neighbourhood must be odd and >= 3, got {neighbourhood}")
    shape = tuple(int(s) for s in x.shape[2:])
    ndim = len(shape)
    r = neighbourhood // 2
    if min(shape) <= 2 * r:
        raise ValueError(f"patch {shape} too small for a {neighbourhood}-wide neighbourhood")
    batch = x.shape[0]
    coords = grid_coordinates(batch, shape, fraction, generator)  # (K, 1+ndim)
    pos = coords[:, 1:]
    limit = torch.tensor(shape, dtype=torch.long)
    offsets = _window_offsets(ndim, neighbourhood)  # (W, ndim)
    flat_x = x.reshape(batch, -1)
    src_flat = x.detach().reshape(-1)
    if n2v2:
        nb = _mirror(pos[:, None, :], offsets[None], limit)  # (K, W, ndim)
        full = torch.cat([coords[:, None, :1].expand(-1, nb.shape[1], 1), nb], dim=-1)
        values = src_flat[_flat(full, shape)].median(dim=1).values
        sources = coords
    else:
        pick = torch.randint(0, offsets.shape[0], (coords.shape[0],), generator=generator)
        nb = _mirror(pos, offsets[pick], limit)
        sources = torch.cat([coords[:, :1], nb], dim=1)
        values = src_flat[_flat(sources, shape)]
    masked = flat_x.clone().reshape(-1)
    mask = torch.zeros(masked.shape, dtype=torch.bool)
    lin = _flat(coords, shape)
    masked[lin] = values.to(masked.dtype)
    mask[lin] = True
    return MaskedBatch(masked.reshape(x.shape), mask.reshape(x.shape), coords, sources)


def widen_blind_spots(
    mb: MaskedBatch, x: torch.Tensor, radius: int, generator: torch.Generator | None = None
) -> MaskedBatch:
    """Hide the neighbours of every blind spot too, for spatially correlated noise.

    With correlated noise a blind spot's neighbours carry part of its noise, and a network that
    sees them learns to reproduce the noise (structN2V, Broaddus et al. 2020).  Every pixel
    within ``radius`` (Chebyshev distance) of a blind spot, the blind spots excepted, is
    replaced by a pixel drawn uniformly from the same patch, which carries no information about
    the blind spot's noise.  The blind spots, their values and the mask are unchanged (the loss
    stays on the blind spots).  ``radius = 0`` returns ``mb`` as it is.
    """
    if radius < 0:
        raise ValueError(f"blind-spot radius must be >= 0, got {radius}")
    if radius == 0:
        return mb
    batch, ndim = x.shape[0], x.ndim - 2
    pool = F.max_pool2d if ndim == 2 else F.max_pool3d
    near = pool(mb.mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0
    near &= ~mb.mask
    flat = x.detach().reshape(batch, -1)
    idx = torch.randint(0, flat.shape[1], flat.shape, generator=generator)
    random = torch.gather(flat, 1, idx).reshape(x.shape).to(mb.masked.dtype)
    masked = torch.where(near, random, mb.masked)
    return mb._replace(masked=masked)


#: The ``mask_radius`` setting of the blind-spot methods: 0-4, or ``"auto"``.
MaskRadius = Annotated[int, Field(ge=0, le=4)] | Literal["auto"]

#: ``mask_radius: auto`` where the noise is correlated (FMD wide-field, spatiotemporal k = 3:
#: r = 1 32.46 dB, r = 2 33.20, pixel blind spot 23.02).
CORRELATED_MASK_RADIUS = 2


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the blind spots only (the N2V loss)."""
    diff = (prediction - target)[mask]
    return (diff * diff).mean()
