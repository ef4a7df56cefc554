"""Measure a network's receptive field by impulse response.

The radius is what tiled prediction needs as halo: every output pixel kept from a tile must
see this many real pixels on each side.  Analytic formulas miss blur-pool kernels and
interpolation; measuring is exact for the model actually built.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def measure_receptive_field(
    model: nn.Module, ndim: int, multiple: int = 1, size: int | None = None
) -> int:
    """One-sided receptive-field radius (pixels) of ``model`` along Y/X (and Z).

    All convolution weights of a copy are made positive and biases zero, batch norm becomes
    the identity, so an impulse propagates to every output pixel it can influence.  Impulses at
    every offset modulo ``multiple`` are tried (pooling makes the reach position-dependent);
    the largest reach is returned.
    """
    m = copy.deepcopy(model).double().eval()
    for mod in m.modules():
        if isinstance(
            mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
        ):
            mod.weight.copy_(mod.weight.abs() + 1e-3)
            if mod.bias is not None:
                mod.bias.zero_()
        elif isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm3d)):
            mod.running_mean.zero_()
            mod.running_var.fill_(1.0)
            mod.eps = 0.0
            if mod.affine:
                mod.weight.fill_(1.0)
                mod.bias.zero_()
    in_ch = next(p for p in m.parameters()).shape[1]
    return impulse_reach(m, ndim, in_ch, multiple, size, dtype=torch.float64)


@torch.no_grad()
def impulse_reach(
    forward: Callable[[torch.Tensor], torch.Tensor],
    ndim: int,
    in_ch: int = 1,
    multiple: int = 1,
    size: int | None = None,
    dtype: torch.dtype = torch.float32,
    max_tile: int | None = None,
    subtract_zero: bool = False,
) -> int:
    """One-sided reach (px) of a network whose weights were made positive: the farthest output
    pixel an impulse at the tile centre (every offset modulo ``multiple``) changes, on tiles
    doubled from ``size`` (64) until the reach stays clear of the border.

    ``subtract_zero``: compare with the all-zero input's output (networks with a constant
    term).  ``max_tile``: give up past this edge with a ValueError (a reach that grows with the
    tile: not a local network); None: no limit.
    """
    reach = 0
    grow = size or 64
    while max_tile is None or grow <= max_tile:
        n = max(grow, 4 * multiple) // multiple * multiple
        c = n // 2
        shape = (1, in_ch) + (n,) * ndim
        zero = forward(torch.zeros(shape, dtype=dtype)) if subtract_zero else 0.0
        for off in range(multiple):
            x = torch.zeros(shape, dtype=dtype)
            x[(0, slice(None)) + (c + off,) * ndim] = 1.0
            y = (forward(x) - zero).abs().sum(dim=(0, 1))
            nz = torch.nonzero(y > 0)
            if nz.numel():
                reach = max(reach, int((nz - (c + off)).abs().max().item()))
        if reach < n // 2 - multiple:
            return reach
        grow = n * 2
    raise ValueError(f"the reach grows with the tile beyond {max_tile // 2} px")
