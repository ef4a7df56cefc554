"""Fixtures for tiling tests: random-weight U-Nets and their measured receptive fields."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache

import numpy as np
import pytest
import torch

from denoise.models.receptive_field import measure_receptive_field
from denoise.models.unet import UNet


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # The test machine is shared: OpenMP spin-waits make 2 threads far slower under load.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@cache
def receptive_field(depth: int, n2v2: bool) -> int:
    """Measured radius; kernels are isotropic, so a thin 2D twin gives the 3D value too."""
    torch.manual_seed(0)
    twin = UNet(ndim=2, depth=depth, features=2, n2v2=n2v2)
    return measure_receptive_field(twin, 2, multiple=twin.multiple)


def random_unet(ndim: int, depth: int, batch_norm: bool, n2v2: bool = False, features: int = 4, seed: int = 0) -> UNet:
    """A U-Net with random weights and, with batch norm, random running statistics.

    Convolutions get He-normal weights and random biases so the signal keeps unit scale
    through the depth (PyTorch's default init shrinks it ~6× per layer, which would make any
    error look small).
    """
    torch.manual_seed(seed)
    model = UNet(ndim=ndim, depth=depth, features=features, batch_norm=batch_norm, n2v2=n2v2)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Conv3d)):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu", generator=gen)
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                mod.running_mean.copy_(torch.rand(mod.running_mean.shape, generator=gen) - 0.5)
                # gain <= 1 per layer: keeps activations O(1), where float32 rounding is ~1e-6
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) + 1.0)
                mod.weight.copy_(0.5 * torch.rand(mod.weight.shape, generator=gen) + 0.5)
                mod.bias.copy_(torch.rand(mod.bias.shape, generator=gen) - 0.5)
    return model.eval()


def as_predict_fn(model: UNet) -> Callable[[np.ndarray], np.ndarray]:
    """``(N, *spatial) -> (N, C, *spatial)`` numpy wrapper of a network."""

    def fn(tiles: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32))[:, None]).numpy()

    return fn


@pytest.fixture(scope="session")
def unet_tools() -> tuple[Callable[..., UNet], Callable[[int, bool], int], Callable[[UNet], Callable]]:
    """``(random_unet, receptive_field, as_predict_fn)``."""
    return random_unet, receptive_field, as_predict_fn
