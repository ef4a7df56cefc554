"""The noise-model interface shared by every kind: protocol, base class, Gaussian helpers.

The lowest module of :mod:`denoise.noise`: the concrete kinds (Poisson-Gaussian in
:mod:`denoise.noise.base`, :mod:`denoise.noise.histogram`, :mod:`denoise.noise.gmm`) import it,
and :mod:`denoise.noise.base` dispatches on ``"kind"`` over them, so nothing here imports a
concrete kind (no import cycle).  The conventions are described in :mod:`denoise.noise.base`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from denoise.provenance import atomic_write_json

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


def finite_pairs(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calibration pairs as flat float64 arrays, pairs with a non-finite member dropped.

    Parameters
    ----------
    x, s
        Noisy values and their (pseudo-)clean signal, same size.

    Returns
    -------
    x, s
        1D float64 arrays of the finite pairs, in their original order.

    Raises
    ------
    ValueError
        ``x`` and ``s`` differ in size.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if x.shape != s.shape:
        raise ValueError(f"calibration pairs differ in size: x {x.shape}, s {s.shape}")
    ok = np.isfinite(x) & np.isfinite(s)
    return x[ok], s[ok]
