"""The noise-model interface ``log p(x | s)`` shared by PN2V and the noise-model plots.

A noise model describes, for one channel, the distribution of the recorded value ``x`` given
the clean signal ``s``, both in raw intensity units.  Every implementation is a small
``torch.nn.Module`` (its tables and coefficients are buffers, so ``.to(device)`` moves them)
with:

* ``log_prob(x, s)``: elementwise, broadcasting (PN2V passes ``s`` with a sample axis),
  differentiable with respect to ``s``;
* ``to_dict()`` / ``save(path)``: a JSON description whose ``"kind"`` names the class;
  :func:`noise_model_from_dict` / :func:`load_noise_model` dispatch on it.

Conventions shared by the parametric models (Poisson-Gaussian here, the Gaussian mixture in
:mod:`denoise.noise.gmm`):

* ``quantum`` > 0 (integer data: 1): ``x`` is a rounded value, so ``p(x | s)`` is the
  probability of the interval ``[x − q/2, x + q/2]`` divided by ``q`` (a density, comparable
  between models).  This caps the likelihood of very narrow components on quantised data.
* ``clip_low`` / ``clip_high``: values at or beyond a clip level (the integer dtype's limits,
  e.g. 0 and 255 or 65535) are censored: ``p(x = clip_high | s) = P(X ≥ clip_high − q/2 | s)``,
  so a saturated pixel says "at least this bright" instead of "exactly this bright".

The histogram model (:mod:`denoise.noise.histogram`) handles both naturally: its bins are the
recorded values and the edge bins collect the clipped ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from denoise.noise.gmm import GMMNoiseModel
from denoise.noise.histogram import HistogramNoiseModel
from denoise.noise.interface import (
    NoiseModel,
    NoiseModelBase,
    gaussian_log_prob,
    recording_conventions,
)
from denoise.noise.likelihood import PoissonGaussianLikelihood
from denoise.provenance import atomic_write_json

__all__ = [
    "GMMNoiseModel",
    "HistogramNoiseModel",
    "NoiseModel",
    "NoiseModelBase",
    "PoissonGaussianNoiseModel",
    "gaussian_log_prob",
    "load_noise_model",
    "noise_model_from_dict",
    "recording_conventions",
    "save_noise_models",
]


class PoissonGaussianNoiseModel(NoiseModelBase):
    """The data-only Poisson-Gaussian fit as a noise model (Gaussian approximation).

    ``x | s ~ N(s, v(s))`` with ``v`` from :class:`~denoise.noise.likelihood.PoissonGaussianLikelihood`
    (``gain · max(s − offset, 0) + read_var``, floored), plus quantisation and censoring.

    Parameters
    ----------
    gain, read_var, offset, min_var
        As in :class:`~denoise.noise.likelihood.PoissonGaussianLikelihood`.
    quantum, clip_low, clip_high
        Recording conventions (:func:`recording_conventions`).
    """

    kind = "poisson_gaussian"

    def __init__(
        self,
        gain: float,
        read_var: float,
        offset: float = 0.0,
        min_var: float | None = None,
        quantum: float = 0.0,
        clip_low: float | None = None,
        clip_high: float | None = None,
    ) -> None:
        super().__init__()
        self.likelihood = PoissonGaussianLikelihood(gain, read_var, offset, min_var)
        self.quantum = float(quantum)
        self.clip_low = None if clip_low is None else float(clip_low)
        self.clip_high = None if clip_high is None else float(clip_high)

    def variance(self, s: torch.Tensor) -> torch.Tensor:
        """Noise variance at clean level ``s`` (raw units²)."""
        return self.likelihood.variance(s)

    def log_prob(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Elementwise ``log p(x | s)`` (see the class docstring)."""
        return gaussian_log_prob(
            x, s, self.variance(s), self.quantum, self.clip_low, self.clip_high
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            **self.likelihood.params(),
            "quantum": self.quantum,
            "clip_low": self.clip_low,
            "clip_high": self.clip_high,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoissonGaussianNoiseModel:
        """Inverse of :meth:`to_dict`; also reads a legacy likelihood JSON or one channel's fit."""
        return cls(
            float(data["gain"]),
            float(data["read_var"]),
            float(data.get("offset", 0.0)),
            data.get("min_var"),
            float(data.get("quantum", 0.0)),
            data.get("clip_low"),
            data.get("clip_high"),
        )


def noise_model_from_dict(data: dict[str, Any], channel: int = 0) -> NoiseModelBase:
    """Build a noise model from its JSON description.

    Accepts :meth:`to_dict` output of any model (dispatching on ``"kind"``), a per-channel file
    written by :func:`save_noise_models` (``channel`` selects one), a legacy
    ``poisson_gaussian_likelihood`` JSON, and the Poisson-Gaussian estimator's result
    (``{"channels": [...]}`` or one channel's fit).
    """
    if isinstance(data.get("channels"), list):  # a per-channel file (its "kind" names the fit)
        chans = data["channels"]
        if not 0 <= channel < len(chans):
            raise ValueError(
                f"noise model has {len(chans)} channel(s); channel {channel} was requested"
            )
        return noise_model_from_dict(chans[channel])
    kind = data.get("kind")
    if kind is None and ("gain" in data and "read_var" in data):
        kind = "poisson_gaussian"
    if kind == "poisson_gaussian":
        return PoissonGaussianNoiseModel.from_dict(data)
    if kind == "histogram":
        return HistogramNoiseModel.from_dict(data)
    if kind == "gmm":
        return GMMNoiseModel.from_dict(data)
    raise ValueError(
        f"unknown noise-model kind {kind!r}; expected poisson_gaussian, histogram or gmm"
    )


def load_noise_model(path: str | Path, channel: int = 0) -> NoiseModelBase:
    """Read a noise-model JSON file (any kind; ``channel`` for per-channel files)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the noise model ({exc})") from None
    return noise_model_from_dict(data, channel)


def save_noise_models(models: list[NoiseModelBase], path: str | Path) -> None:
    """Write one model per channel as ``{"kind": "channels", "channels": [...]}``."""
    atomic_write_json(path, {"kind": "channels", "channels": [m.to_dict() for m in models]})
