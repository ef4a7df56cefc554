"""A 2D/3D U-Net for blind-spot denoising, with the N2V2 variant.

Fully convolutional and free of per-instance statistics (no GroupNorm/InstanceNorm), so tiled
prediction on the global ``2**depth`` lattice equals whole-image prediction (see
``denoise.tiling``).  N2V2 (Höck et al. 2022) swaps max-pooling for max-blur-pooling and drops
the top skip connection, which removes N2V's checkerboard artefacts.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv(ndim: int) -> type[nn.Module]:
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _bn(ndim: int) -> type[nn.Module]:
    return nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d


class ConvBlock(nn.Module):
    """Two 3×3(×3) convolutions, each followed by optional batch norm and ReLU."""

    def __init__(self, ndim: int, cin: int, cout: int, batch_norm: bool) -> None:
        super().__init__()
        conv, bn = _conv(ndim), _bn(ndim)
        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(conv(cin if i == 0 else cout, cout, 3, padding=1))
            if batch_norm:
                layers.append(bn(cout))
            layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MaxBlurPool(nn.Module):
    """Max-pool with stride 1, then a [1,2,1] binomial blur with stride 2 (N2V2)."""

    def __init__(self, ndim: int, channels: int) -> None:
        super().__init__()
        self.ndim = ndim
        k1 = torch.tensor([1.0, 2.0, 1.0])
        k = (
            k1[:, None] * k1[None, :]
            if ndim == 2
            else k1[:, None, None] * k1[None, :, None] * k1[None, None, :]
        )
        k = (k / k.sum()).expand(channels, 1, *k.shape).contiguous()
        self.register_buffer("kernel", k)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ndim == 2:
            x = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, stride=1)
            return F.conv2d(x, self.kernel.to(x.dtype), stride=2, padding=1, groups=self.channels)
        x = F.max_pool3d(F.pad(x, (0, 1, 0, 1, 0, 1), mode="replicate"), 2, stride=1)
        return F.conv3d(x, self.kernel.to(x.dtype), stride=2, padding=1, groups=self.channels)


class UNet(nn.Module):
    """U-Net mapping ``(N, in_channels, *spatial)`` to ``(N, out_channels, *spatial)``.

    Parameters
    ----------
    ndim
        2 or 3 spatial dimensions.
    in_channels, out_channels
        Channels in and out (``out_channels`` = K samples for PN2V).
    depth
        Number of poolings; spatial sizes must be multiples of ``2**depth``.
    features
        Features in the first level, doubled at each level down.
    batch_norm
        Batch norm after each convolution (inference uses running statistics).
    n2v2
        Max-blur-pool and no top skip connection.
    """

    def __init__(
        self,
        ndim: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 2,
        features: int = 32,
        batch_norm: bool = False,
        n2v2: bool = False,
    ) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3, got {ndim}")
        self.ndim, self.depth, self.n2v2 = ndim, depth, n2v2
        self.hparams = dict(
            ndim=ndim,
            in_channels=in_channels,
            out_channels=out_channels,
            depth=depth,
            features=features,
            batch_norm=batch_norm,
            n2v2=n2v2,
        )
        conv = _conv(ndim)
        chans = [features * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        cin = in_channels
        for i in range(depth):
            self.down.append(ConvBlock(ndim, cin, chans[i], batch_norm))
            self.pools.append(
                MaxBlurPool(ndim, chans[i])
                if n2v2
                else (nn.MaxPool2d(2) if ndim == 2 else nn.MaxPool3d(2))
            )
            cin = chans[i]
        self.bottom = ConvBlock(ndim, chans[depth - 1], chans[depth], batch_norm)
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            skip = 0 if (n2v2 and i == 0) else chans[i]
            self.up.append(ConvBlock(ndim, chans[i + 1] + skip, chans[i], batch_norm))
        self.head = conv(chans[0], out_channels, 1)

    @property
    def multiple(self) -> int:
        """Spatial sizes must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block, pool in zip(self.down, self.pools, strict=True):
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for level, block in zip(reversed(range(self.depth)), self.up, strict=True):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            if not (self.n2v2 and level == 0):
                x = torch.cat([x, skips[level]], dim=1)
            x = block(x)
        return self.head(x)
