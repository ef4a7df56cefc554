"""The Poisson-Gaussian variance ``v(s)`` behind :class:`~denoise.noise.base.PoissonGaussianNoiseModel`.

Gaussian approximation of the Poisson-Gaussian model: ``x | s ~ N(s, v(s))`` with
``v(s) = gain · max(s − offset, 0) + read_var``, floored at ``min_var`` so that a model without
read noise never yields a zero variance (the floor defaults to ``0.1 · gain²``, the Poisson
variance of 0.1 photon in raw units, or ``read_var`` when that is larger).  The likelihood
itself (quantisation, clipping) and the JSON form live in
:class:`~denoise.noise.base.PoissonGaussianNoiseModel`.
"""

from __future__ import annotations

import torch
from torch import nn


class PoissonGaussianLikelihood(nn.Module):
    """Parameters and variance of the fitted Poisson-Gaussian noise model (raw units).

    Parameters
    ----------
    gain
        Raw units per photon (slope of variance vs mean).
    read_var
        Read-noise variance (raw units²).
    offset
        Black level (raw units); see :mod:`denoise.noise.poisson_gaussian` for the convention.
    min_var
        Variance floor; ``None`` picks ``max(read_var, 0.1·gain², 1e-6)``.
    """

    def __init__(
        self, gain: float, read_var: float, offset: float = 0.0, min_var: float | None = None
    ) -> None:
        super().__init__()
        if not gain > 0:
            raise ValueError(f"gain must be > 0, got {gain}")
        if read_var < 0:
            raise ValueError(f"read_var must be ≥ 0, got {read_var}")
        floor = max(read_var, 0.1 * gain * gain, 1e-6) if min_var is None else float(min_var)
        if not floor > 0:
            raise ValueError(f"min_var must be > 0, got {min_var}")
        self.register_buffer("gain", torch.tensor(float(gain), dtype=torch.float64))
        self.register_buffer("read_var", torch.tensor(float(read_var), dtype=torch.float64))
        self.register_buffer("offset", torch.tensor(float(offset), dtype=torch.float64))
        self.register_buffer("min_var", torch.tensor(floor, dtype=torch.float64))

    def variance(self, s: torch.Tensor) -> torch.Tensor:
        """Noise variance at clean level ``s`` (same shape and dtype as ``s``)."""
        g, r, o, m = (b.to(s.dtype) for b in (self.gain, self.read_var, self.offset, self.min_var))
        return (g * torch.clamp(s - o, min=0.0) + r).clamp(min=m)

    def params(self) -> dict[str, float]:
        """The model as plain floats."""
        return {
            "gain": float(self.gain),
            "read_var": float(self.read_var),
            "offset": float(self.offset),
            "min_var": float(self.min_var),
        }
