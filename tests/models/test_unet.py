"""U-Net shapes and measured receptive field."""

from __future__ import annotations

import pytest
import torch

from denoise.models.receptive_field import measure_receptive_field
from denoise.models.store import receptive_field
from denoise.models.unet import UNet


@pytest.mark.parametrize("n2v2", [False, True])
def test_receptive_field_depth2_at_least_22(n2v2):
    m = UNet(2, depth=2, features=4, n2v2=n2v2)
    assert measure_receptive_field(m, 2, multiple=4) >= 22


def test_receptive_field_is_exact_bound():
    torch.manual_seed(0)
    m = UNet(2, depth=2, features=2).double().eval()
    rf = measure_receptive_field(m, 2, multiple=4)
    n, c = 64, 32
    base = torch.randn(1, 1, n, n, dtype=torch.float64)
    with torch.no_grad():
        ref = m(base)[0, 0, c, c]
        for d in (rf + 1, rf + 4):  # beyond the receptive field: no influence
            x = base.clone()
            x[0, 0, c + d, c] += 10.0
            x[0, 0, c, c - d] += 10.0
            assert m(x)[0, 0, c, c] == ref


@pytest.mark.parametrize(("ndim", "shape"), [(2, (2, 1, 32, 48)), (3, (1, 1, 8, 16, 24))])
@pytest.mark.parametrize("n2v2", [False, True])
def test_shapes(ndim, shape, n2v2):
    m = UNet(ndim, depth=2, features=4, n2v2=n2v2)
    assert m(torch.zeros(shape)).shape == shape


@pytest.mark.parametrize("n2v2", [False, True])
def test_one_feature_twin_has_the_same_receptive_field(n2v2):
    m = UNet(2, depth=2, features=6, n2v2=n2v2)
    assert receptive_field(m) == measure_receptive_field(m, 2, multiple=4)


@pytest.mark.slow
@pytest.mark.parametrize("n2v2", [False, True])
def test_3d_receptive_field_equals_2d_twin(n2v2):
    m = UNet(3, depth=2, features=1, n2v2=n2v2)
    assert receptive_field(m) == measure_receptive_field(m, 3, multiple=4)
