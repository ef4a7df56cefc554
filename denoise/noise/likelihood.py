"""Differentiable Poisson-Gaussian likelihood ``p(x | s)`` for probabilistic denoisers (PN2V).

Gaussian approximation of the Poisson-Gaussian model: ``x | s ~ N(s, v(s))`` with
``v(s) = gain · max(s − offset, 0) + read_var``, floored at ``min_var`` so that a model without
read noise never yields a zero variance (the floor defaults to ``0.1 · gain²``, the Poisson
variance of 0.1 photon in raw units, or ``read_var`` when that is larger).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from denoise.noise.poisson_gaussian import channel_params

log = logging.getLogger(__name__)

_LOG_2PI = math.log(2.0 * math.pi)


class PoissonGaussianLikelihood(nn.Module):
    """``log p(x | s)`` under the fitted Poisson-Gaussian noise model (raw units).

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

    def log_prob(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Elementwise ``log p(x | s)``; ``x`` and ``s`` broadcast (e.g. ``s`` with a sample axis).

        Differentiable with respect to ``s`` (and ``x``).
        """
        v = self.variance(s)
        return -0.5 * (_LOG_2PI + torch.log(v) + (x - s) ** 2 / v)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, s)

    def params(self) -> dict[str, float]:
        """The model as plain floats."""
        return {
            "gain": float(self.gain),
            "read_var": float(self.read_var),
            "offset": float(self.offset),
            "min_var": float(self.min_var),
        }

    def save(self, path: str | Path) -> None:
        """Write the parameters as JSON (atomically)."""
        from denoise.provenance import atomic_write_json

        atomic_write_json(path, {"model": "poisson_gaussian_likelihood", **self.params()})

    @classmethod
    def load(cls, path: str | Path) -> PoissonGaussianLikelihood:
        """Read a model written by :meth:`save` (or a noise-model result with ``channels``)."""
        data = json.loads(Path(path).read_text())
        if "channels" in data:
            return cls.from_result(data)
        return cls(data["gain"], data["read_var"], data.get("offset", 0.0), data.get("min_var"))

    @classmethod
    def from_result(cls, result: dict[str, Any], channel: int = 0) -> PoissonGaussianLikelihood:
        """Build from :func:`~denoise.noise.poisson_gaussian.estimate_poisson_gaussian` output."""
        p = channel_params(result, channel)
        return cls(p["gain"], p["read_var"], p["offset"])
