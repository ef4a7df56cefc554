"""Gaussian-mixture noise model whose parameters are polynomials in the signal (PPN2V-style).

``p(x | s) = Σ_j w_j(s) · N(x; μ_j(s), σ_j²(s))`` with, for ``u = (s − s_low) / (s_high − s_low)``
clamped to [0, 1] and polynomials ``P`` of degree ``degree`` in ``u``:

* weights ``w = softmax(P_w(u))``;
* means ``μ_j = s + scale · P_μj(u)``, then shifted by a common amount so that ``Σ_j w_j μ_j = s``
  (the signal is by definition the expected recorded value; the mixture only shapes the
  distribution around it);
* variances ``σ_j² = min_var + scale² · softplus(P_σj(u))``.

``scale`` is the residual standard deviation of the calibration pairs, so the coefficients are
of order one.  Quantised (integer) data use interval probabilities and clipped values are
censored (:func:`denoise.noise.base.gaussian_log_prob`).

Fitting maximises the mean log-likelihood of ``(x, s)`` pairs (a fixed random subset of at most
``max_pairs``) with full-batch L-BFGS in float64, deterministic for a seed; the model is then
kept in float32.  A moment penalty ties the mixture's variance to the pairs' binned variance
at every signal level (:func:`level_variances`; squared log ratio, weight ``moment_weight``):
most pixels of a fluorescence image are dark background, and the likelihood alone let them
bend the polynomials at the few bright levels (on FMD fish, N2V-bootstrapped pairs: a spread of
6 grey levels at s = 169 where the pairs show 52).  The pairs come from calibration data
(clean ``s``) or, for "bootstrapped" PN2V without calibration, from an N2V prediction used as
pseudo-clean ``s`` (see :mod:`denoise.noise.calibration`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from denoise.noise.interface import NoiseModelBase, finite_pairs, gaussian_log_prob

log = logging.getLogger(__name__)

N_GAUSSIANS = 5
DEGREE = 2
#: L-BFGS iterations of the fit, and the pairs it uses at most (a fixed random subset).
FIT_STEPS = 100
FIT_PAIRS = 100_000
#: Weight of the moment penalty (module docstring) and the signal bins it compares.
MOMENT_WEIGHT = 1.0
MOMENT_BINS = 16
#: Most recordable values summed over for the recorded (rounded, clipped) variance.
MAX_VALUES = 4096


def _value_grid(quantum: float, lo: float | None, hi: float | None) -> np.ndarray | None:
    """Every recordable value of a rounded, clipped recording (at most :data:`MAX_VALUES`),
    else ``None`` (continuous, unbounded or too many values: the variance is computed as
    continuous)."""
    if quantum > 0 and lo is not None and hi is not None and (hi - lo) / quantum < MAX_VALUES:
        return np.arange(lo, hi + 0.5 * quantum, quantum)
    return None


def _softplus_inv(y: float) -> float:
    return float(y + math.log(-math.expm1(-y))) if y < 20 else float(y)


class GMMNoiseModel(NoiseModelBase):
    """Mixture of Gaussians with signal-dependent weights, means and variances.

    Parameters
    ----------
    coeffs
        ``(3, n_gaussians, degree + 1)``: polynomial coefficients (constant term first) of the
        weight logits, the mean offsets and the variance terms (module docstring).
    s_low, s_high
        Signal range the polynomials are defined on (outside it they are held constant).
    scale
        Raw-unit scale of the mean offsets and variance terms.
    min_var
        Variance floor (raw units²).
    quantum, clip_low, clip_high
        Recording conventions (:func:`denoise.noise.base.recording_conventions`).
    """

    kind = "gmm"

    def __init__(
        self,
        coeffs: np.ndarray | torch.Tensor,
        s_low: float,
        s_high: float,
        scale: float,
        min_var: float,
        quantum: float = 0.0,
        clip_low: float | None = None,
        clip_high: float | None = None,
    ) -> None:
        super().__init__()
        c = torch.as_tensor(np.asarray(coeffs, dtype=np.float64), dtype=torch.float64)
        if c.ndim != 3 or c.shape[0] != 3:
            raise ValueError(
                f"GMM coefficients must have shape (3, G, degree+1), got {tuple(c.shape)}"
            )
        if not (s_high > s_low and scale > 0 and min_var > 0):
            raise ValueError("GMM noise model needs s_high > s_low, scale > 0 and min_var > 0")
        self.register_buffer("coeffs", c.float())
        self.s_low, self.s_high = float(s_low), float(s_high)
        self.scale, self.min_var = float(scale), float(min_var)
        self.quantum = float(quantum)
        self.clip_low = None if clip_low is None else float(clip_low)
        self.clip_high = None if clip_high is None else float(clip_high)

    @property
    def n_gaussians(self) -> int:
        return int(self.coeffs.shape[1])

    @property
    def degree(self) -> int:
        return int(self.coeffs.shape[2]) - 1

    def components(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log w, μ, σ²)`` of every component at ``s``, each of shape ``(*s.shape, G)``."""
        c = self.coeffs.to(s.dtype)
        u = ((s - self.s_low) / (self.s_high - self.s_low)).clamp(0.0, 1.0)
        powers = torch.stack([u**k for k in range(self.degree + 1)], dim=-1)  # (..., D+1)
        poly = torch.einsum("...d,pgd->...pg", powers, c)  # (..., 3, G)
        logw = torch.log_softmax(poly[..., 0, :], dim=-1)
        off = self.scale * poly[..., 1, :]
        off = off - (logw.exp() * off).sum(dim=-1, keepdim=True)
        mu = s[..., None] + off
        var = self.min_var + self.scale**2 * F.softplus(poly[..., 2, :])
        return logw, mu, var

    def log_prob(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Elementwise ``log p(x | s)``; ``x`` and ``s`` broadcast; differentiable in ``s``."""
        x, s = torch.broadcast_tensors(x, s)
        if not s.is_floating_point():
            s = s.float()
        logw, mu, var = self.components(s)
        comp = gaussian_log_prob(
            x[..., None].to(s.dtype), mu, var, self.quantum, self.clip_low, self.clip_high
        )
        return torch.logsumexp(logw + comp, dim=-1)

    def variance(self, s: torch.Tensor) -> torch.Tensor:
        """Variance of the (uncensored, continuous) mixture at ``s``."""
        logw, mu, var = self.components(s)
        w = logw.exp()
        return (w * (var + (mu - s[..., None]) ** 2)).sum(dim=-1)

    def recorded_variance(self, s: torch.Tensor) -> torch.Tensor:
        """Variance of the recorded value at ``s`` (1D): rounded and clipped where the recording
        is (summed over every recordable value), else :meth:`variance` plus the rounding's."""
        values = _value_grid(self.quantum, self.clip_low, self.clip_high)
        if values is not None:
            grid = torch.as_tensor(values, dtype=s.dtype, device=s.device)
            p = torch.softmax(self.log_prob(grid[None, :], s[:, None]), dim=-1)
            mean = (p * grid).sum(-1, keepdim=True)
            return (p * (grid - mean) ** 2).sum(-1)
        return self.variance(s) + self.quantum**2 / 12.0

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        s: np.ndarray,
        n_gaussians: int = N_GAUSSIANS,
        degree: int = DEGREE,
        quantum: float = 0.0,
        clip_low: float | None = None,
        clip_high: float | None = None,
        min_var: float | None = None,
        steps: int = FIT_STEPS,
        max_pairs: int = FIT_PAIRS,
        seed: int = 0,
        moment_weight: float = MOMENT_WEIGHT,
    ) -> GMMNoiseModel:
        """Maximum-likelihood fit to calibration (or pseudo-calibration) pairs.

        Parameters
        ----------
        x, s
            Noisy values and their (pseudo-)clean signal, same shape, raw units.
        n_gaussians, degree
            Components and polynomial degree.
        quantum, clip_low, clip_high
            Recording conventions of ``x``.
        min_var
            Variance floor; default ``max((0.1 · quantum)², 1e-6 · var(x − s))``.
        steps
            L-BFGS iterations (strong-Wolfe line search, full batch).
        max_pairs
            Pairs used at most (a random subset; the fit is full-batch).
        seed
            Seed of the subset and of the symmetry-breaking initialisation.
        moment_weight
            Weight of the moment penalty (module docstring; 0: likelihood only).
        """
        x, s = finite_pairs(x, s)
        if x.size < 100:
            raise ValueError(f"only {x.size} calibration pairs; the GMM fit needs thousands")
        s_low, s_high, scale, min_var = _fit_scales(x, s, quantum, min_var)
        levels = _moment_levels(x, s, s_low, s_high, quantum, clip_low, clip_high)
        init = _initial_coeffs(x, s, s_low, s_high, scale, min_var, n_gaussians, degree, seed)
        model = cls(init, s_low, s_high, scale, min_var, quantum, clip_low, clip_high)
        x, s = _subsample_pairs(x, s, max_pairs, seed)
        xt, st = torch.from_numpy(x), torch.from_numpy(s)
        lv_s, lv_v = (torch.from_numpy(a) for a in levels)
        model.double()
        if steps > 0:
            model._maximise_likelihood(xt, st, lv_s, lv_v, steps, moment_weight)
        model.coeffs.requires_grad_(False)
        with torch.no_grad():
            nll = float(-model.log_prob(xt, st).mean())
        model.float()
        model.fit_nll = nll
        log.info(
            "GMM noise model: %d Gaussians, degree %d, from %d pairs; mean NLL %.4f",
            n_gaussians,
            degree,
            x.size,
            nll,
        )
        return model

    def _maximise_likelihood(
        self,
        xt: torch.Tensor,
        st: torch.Tensor,
        lv_s: torch.Tensor,
        lv_v: torch.Tensor,
        steps: int,
        moment_weight: float,
    ) -> None:
        """Full-batch L-BFGS on the coefficients (float64 model), in place.

        Parameters
        ----------
        xt, st
            Noisy values and signal of the pairs fitted.
        lv_s, lv_v
            Signal levels and binned variances of the moment penalty (:func:`level_variances`).
        steps
            L-BFGS iterations (strong-Wolfe line search).
        moment_weight
            Weight of the moment penalty (0: likelihood only).
        """
        self.coeffs.requires_grad_(True)
        opt = torch.optim.LBFGS(
            [self.coeffs],
            lr=1.0,
            max_iter=steps,
            history_size=20,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = -self.log_prob(xt, st).mean()
            if moment_weight > 0 and lv_s.numel():
                ratio = torch.log(self.recorded_variance(lv_s) / lv_v)
                loss = loss + moment_weight * (ratio * ratio).mean()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "coeffs": self.coeffs.detach().double().cpu().tolist(),
            "s_low": self.s_low,
            "s_high": self.s_high,
            "scale": self.scale,
            "min_var": self.min_var,
            "quantum": self.quantum,
            "clip_low": self.clip_low,
            "clip_high": self.clip_high,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GMMNoiseModel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(data["coeffs"], dtype=np.float64),
            data["s_low"],
            data["s_high"],
            data["scale"],
            data["min_var"],
            data.get("quantum", 0.0),
            data.get("clip_low"),
            data.get("clip_high"),
        )


def _fit_scales(
    x: np.ndarray, s: np.ndarray, quantum: float, min_var: float | None
) -> tuple[float, float, float, float]:
    """Signal range, residual scale and variance floor of a fit to the pairs ``(x, s)``.

    Returns
    -------
    s_low, s_high
        0.1 and 99.9 percentiles of ``s`` (``s_high`` at least ``s_low + 1``).
    scale
        Standard deviation of ``x − s`` (1 if zero).
    min_var
        ``min_var`` if given, else ``max((0.1 · quantum)², 1e-6 · scale²)``.
    """
    s_low, s_high = float(np.quantile(s, 0.001)), float(np.quantile(s, 0.999))
    if s_high <= s_low:
        s_high = s_low + 1.0
    scale = float(np.std(x - s)) or 1.0
    if min_var is None:
        # Quantised data: interval probabilities stay ≤ 1, so a component may be much
        # narrower than the rounding step (one "spike" value, e.g. a black level).
        min_var = max((0.1 * quantum) ** 2, 1e-6 * scale * scale)
    return s_low, s_high, scale, min_var


def _moment_levels(
    x: np.ndarray,
    s: np.ndarray,
    s_low: float,
    s_high: float,
    quantum: float,
    clip_low: float | None,
    clip_high: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The binned variances the moment penalty compares with (:func:`level_variances`).

    Where the model's variance is the recorded one (censored at the clip levels), the clipped
    bins can be compared too; else they are left out.
    """
    exact = _value_grid(quantum, clip_low, clip_high) is not None
    return level_variances(x, s, s_low, s_high, *((None, None) if exact else (clip_low, clip_high)))


def _subsample_pairs(
    x: np.ndarray, s: np.ndarray, max_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_pairs`` pairs: a fixed random subset (in original order) for ``seed``."""
    if x.size > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(x.size, max_pairs, replace=False))
        x, s = x[keep], s[keep]
    return x, s


def _initial_coeffs(
    x: np.ndarray,
    s: np.ndarray,
    s_low: float,
    s_high: float,
    scale: float,
    min_var: float,
    n_gaussians: int,
    degree: int,
    seed: int,
) -> np.ndarray:
    """Start the components on slices of the residual distribution, bin by bin.

    The pairs are cut into 24 equal-count bins of ``s``; in each, the residuals ``x − s`` are
    sorted and cut into ``n_gaussians`` equal-count slices, whose means and variances start the
    components (a discrete "zero-photon" spike and a broad tail get separate components from
    the start).  Polynomials in ``u`` are least-squares fits over the bins; weights start equal.
    """
    u = np.clip((s - s_low) / (s_high - s_low), 0.0, 1.0)
    order = np.argsort(u, kind="stable")
    groups = [g for g in np.array_split(order, 24) if g.size >= n_gaussians]
    um = np.array([u[g].mean() for g in groups])
    off = np.zeros((len(groups), n_gaussians))
    var = np.zeros((len(groups), n_gaussians))
    for b, g in enumerate(groups):
        r = np.sort(x[g] - s[g])
        for j, sl in enumerate(np.array_split(r, n_gaussians)):
            off[b, j] = sl.mean()
            var[b, j] = sl.var()
    deg = min(degree, max(0, um.size - 1))
    coeffs = np.zeros((3, n_gaussians, degree + 1))
    rng = np.random.default_rng(seed)
    for j in range(n_gaussians):
        coeffs[1, j, : deg + 1] = np.polyfit(um, off[:, j] / scale, deg)[::-1]
        v = np.maximum(var[:, j] - min_var, 1e-3 * scale * scale) / scale**2
        target = np.array([_softplus_inv(float(vi)) for vi in v])
        coeffs[2, j, : deg + 1] = np.polyfit(um, target, deg)[::-1]
        coeffs[0, j, 0] = 0.01 * rng.standard_normal()
    return coeffs


def level_variances(
    x: np.ndarray,
    s: np.ndarray,
    s_low: float,
    s_high: float,
    clip_low: float | None = None,
    clip_high: float | None = None,
    bins: int = MOMENT_BINS,
    min_pairs: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``s`` and variance of ``x − s`` in equal-width ``s`` bins over ``[s_low, s_high]``.

    Bins with fewer than ``min_pairs`` pairs are left out, and so are bins with more than 1 %
    of their ``x`` at a given clip level (pass the clip levels only where the model's variance
    is not computed as recorded, i.e. censored: censoring shrinks the recorded variance).
    """
    idx = np.clip(((s - s_low) / (s_high - s_low) * bins).astype(np.int64), 0, bins - 1)
    clipped = np.zeros(x.shape, dtype=bool)
    if clip_low is not None:
        clipped |= x <= clip_low
    if clip_high is not None:
        clipped |= x >= clip_high
    out_s, out_v = [], []
    for b in range(bins):
        k = idx == b
        n = int(k.sum())
        if n < min_pairs or clipped[k].mean() > 0.01:
            continue
        v = float(np.var(x[k] - s[k]))
        if v > 0:
            out_s.append(float(s[k].mean()))
            out_v.append(v)
    return np.asarray(out_s, dtype=np.float64), np.asarray(out_v, dtype=np.float64)
