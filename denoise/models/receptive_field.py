"""Measure a network's receptive field by impulse response.

The radius is what tiled prediction needs as halo: every output pixel kept from a tile must
see this many real pixels on each side.  Analytic formulas miss blur-pool kernels and
interpolation; measuring is exact for the model actually built.
"""

from __future__ import annotations

import copy

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
    reach = 0
    grow = size or 64
    while True:
        n = max(grow, 4 * multiple) // multiple * multiple
        c = n // 2
        for off in range(multiple):
            shape = (1, in_ch) + (n,) * ndim
            x = torch.zeros(shape, dtype=torch.float64)
            idx = (0, slice(None)) + (c + off,) * ndim
            x[idx] = 1.0
            y = m(x).abs().sum(dim=(0, 1))
            nz = torch.nonzero(y > 0)
            if nz.numel():
                d = (nz - (c + off)).abs().max().item()
                reach = max(reach, int(d))
        if reach < n // 2 - multiple:
            return reach
        grow = n * 2
