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
import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from denoise.noise.likelihood import PoissonGaussianLikelihood

_LOG_2PI = math.log(2.0 * math.pi)


@runtime_checkable
class NoiseModel(Protocol):
    """``log p(x | s)`` of one channel in raw units (see the module docstring)."""

    kind: str

    def log_prob(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Elementwise log-likelihood; ``x`` and ``s`` broadcast; differentiable in ``s``."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description with a ``"kind"`` field."""
        ...

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON."""
        ...

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """Move the model's tensors (``torch.nn.Module.to``)."""
        ...


class NoiseModelBase(nn.Module):
    """Shared helpers: JSON save, and plotting/inspection on a grid of ``x`` values."""

    kind: str = ""

    def log_prob(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} does not define log_prob")

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, s)

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} does not define to_dict")

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as JSON (atomically)."""
        from denoise.provenance import atomic_write_json

        atomic_write_json(path, self.to_dict())

    def density(self, s: np.ndarray, x_grid: np.ndarray) -> np.ndarray:
        """``p(x | s)`` on ``x_grid`` for every ``s`` value: ``(len(s), len(x_grid))`` float64."""
        dev = _device_of(self)
        sv = torch.as_tensor(np.asarray(s, dtype=np.float64), device=dev)[:, None]
        xv = torch.as_tensor(np.asarray(x_grid, dtype=np.float64), device=dev)[None, :]
        with torch.no_grad():
            return torch.exp(self.log_prob(xv, sv)).cpu().numpy()

    def moments(self, s: np.ndarray, x_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of ``x | s`` by summation over ``x_grid`` (for plots and checks).

        ``x_grid`` should be evenly spaced and cover the data range (e.g. every recorded
        value); mass outside it is ignored.
        """
        p = self.density(s, x_grid)
        w = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
        mean = w @ x_grid
        var = w @ (x_grid**2) - mean**2
        return mean, np.maximum(var, 0.0)


def _device_of(module: nn.Module) -> torch.device:
    for t in list(module.buffers()) + list(module.parameters()):
        return t.device
    return torch.device("cpu")


def _log_diff_ndtr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Φ(b) − Φ(a))`` for ``a ≤ b`` (±inf allowed), accurate in both tails."""
    # Work on the side where the CDF is small: for a > 0, Φ(b) − Φ(a) = Φ(−a) − Φ(−b).
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    # log_lo ≤ log_hi; the difference is ≤ 0 and −inf when lo = −inf (expm1 → −1).
    gap = (log_lo - log_hi).clamp(max=-1e-12)
    return log_hi + torch.log(-torch.expm1(gap))


def gaussian_log_prob(
    x: torch.Tensor,
    mu: torch.Tensor,
    var: torch.Tensor,
    quantum: float = 0.0,
    clip_low: float | None = None,
    clip_high: float | None = None,
) -> torch.Tensor:
    """``log p(x)`` of ``N(mu, var)`` with optional quantisation and censoring (module docstring).

    Parameters
    ----------
    x, mu, var
        Broadcastable tensors in raw units (``var`` > 0).
    quantum
        Rounding step of the recorded values (0: continuous density).
    clip_low, clip_high
        Clip levels; ``x`` at or beyond them gets the tail probability (divided by
        ``quantum`` when it is > 0, so it stays comparable with the interior values).
    """
    sd = torch.sqrt(var)
    if quantum <= 0 and clip_low is None and clip_high is None:
        return -0.5 * (_LOG_2PI + torch.log(var) + (x - mu) ** 2 / var)
    half = 0.5 * quantum
    a = (x - half - mu) / sd
    b = (x + half - mu) / sd
    if clip_low is not None:
        a = torch.where(x <= clip_low, torch.full_like(a, -math.inf), a)
    if clip_high is not None:
        b = torch.where(x >= clip_high, torch.full_like(b, math.inf), b)
    if quantum > 0:
        return _log_diff_ndtr(a, b) - math.log(quantum)
    # Continuous interior values keep the density; only the clipped ones are censored.
    dens = -0.5 * (_LOG_2PI + torch.log(var) + (x - mu) ** 2 / var)
    tail = _log_diff_ndtr(a, b)
    censored = torch.zeros_like(dens, dtype=torch.bool)
    if clip_low is not None:
        censored = censored | (x <= clip_low)
    if clip_high is not None:
        censored = censored | (x >= clip_high)
    return torch.where(censored, tail, dens)


def recording_conventions(dtype: np.dtype | str, data: np.ndarray | None = None) -> dict[str, Any]:
    """``quantum``, ``clip_low``, ``clip_high`` for data of ``dtype``.

    Integer data: quantum 1 and the dtype's limits as clip levels (only those reached by
    ``data``, when given; a limit never recorded cannot have clipped anything).  Float data:
    continuous, no clip levels.
    """
    dt = np.dtype(dtype)
    if not np.issubdtype(dt, np.integer):
        return {"quantum": 0.0, "clip_low": None, "clip_high": None}
    info = np.iinfo(dt)
    lo, hi = float(info.min), float(info.max)
    if data is not None and np.asarray(data).size:
        arr = np.asarray(data)
        lo = lo if float(arr.min()) <= lo else None  # type: ignore[assignment]
        hi = hi if float(arr.max()) >= hi else None  # type: ignore[assignment]
    return {"quantum": 1.0, "clip_low": lo, "clip_high": hi}


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
        from denoise.noise.histogram import HistogramNoiseModel

        return HistogramNoiseModel.from_dict(data)
    if kind == "gmm":
        from denoise.noise.gmm import GMMNoiseModel

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
    from denoise.provenance import atomic_write_json

    atomic_write_json(path, {"kind": "channels", "channels": [m.to_dict() for m in models]})


def load_noise_models(path: str | Path) -> list[NoiseModelBase]:
    """Read every channel's model from a file written by :func:`save_noise_models` (or one model)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data.get("channels"), list):  # same test as noise_model_from_dict
        return [noise_model_from_dict(data, c) for c in range(len(data["channels"]))]
    return [noise_model_from_dict(data)]
