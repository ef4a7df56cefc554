"""Plots of noise models against the binned statistics of ``(x, s)`` pairs, for the report.

One row per channel, two panels:

* ``p(x | s)`` at four signal levels (the 10th, 50th, 90th and 99th percentile of ``s``): each
  model's density as a line, and the empirical distribution of ``x`` among the pairs whose
  ``s`` lies near that level as a step curve (log scale, so tails are visible);
* the noise variance against ``s``: each model's ``Var[x | s]`` (summed over a grid of ``x``)
  and the variance of ``x − s`` in equal-count bins of ``s`` (points).

Works for any :class:`~denoise.noise.base.NoiseModel` (the histogram, GMM and
Poisson-Gaussian models), so different kinds fitted to the same channel can be compared.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from denoise.noise.base import NoiseModelBase

log = logging.getLogger(__name__)

LEVELS = (0.10, 0.50, 0.90, 0.99)
_COLOURS = ("tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def x_grid(x: np.ndarray | None, models: Mapping[str, NoiseModelBase]) -> np.ndarray:
    """Evenly spaced ``x`` values covering the data (integer data: every value)."""
    if x is not None and np.asarray(x).size:
        lo, hi = float(np.min(x)), float(np.max(x))
    else:
        lo, hi = np.inf, -np.inf
        for m in models.values():
            if hasattr(m, "x_first"):
                lo = min(lo, m.x_first)
                hi = max(hi, m.x_first + m.x_step * (m.n_x - 1))
        if not np.isfinite(lo):
            lo, hi = 0.0, 255.0
    if x is not None and np.all(np.mod(x, 1.0) == 0) and hi - lo <= 4096:
        return np.arange(lo, hi + 1.0)
    return np.linspace(lo, hi, 512)


def binned_variance(
    x: np.ndarray, s: np.ndarray, bins: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ``s``, variance of ``x − s`` and count in equal-count bins of ``s``."""
    order = np.argsort(s, kind="stable")
    groups = [g for g in np.array_split(order, bins) if g.size > 1]
    m = np.array([s[g].mean() for g in groups])
    v = np.array([np.var(x[g] - s[g]) for g in groups])
    n = np.array([g.size for g in groups])
    return m, v, n


def plot_noise_models(
    models: Sequence[Mapping[str, NoiseModelBase]],
    path: str | Path,
    pairs: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
    title: str = "",
) -> None:
    """Write a PNG comparing noise models (one row per channel) with the data.

    Parameters
    ----------
    models
        Per channel, named models (e.g. ``{"histogram": h, "gmm": g}``).
    path
        PNG file (parent folders are created; written atomically).
    pairs
        Per channel, the ``(x, s)`` pairs to show beside the models (None: models only).
    title
        Figure title.
    """
    n = len(models)
    pairs = list(pairs) if pairs is not None else [None] * n
    fig = Figure(figsize=(11, 3.8 * n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 2, squeeze=False)
    for c, (named, pr) in enumerate(zip(models, pairs, strict=True)):
        x = s = None
        if pr is not None:
            x = np.asarray(pr[0], dtype=np.float64).ravel()
            s = np.asarray(pr[1], dtype=np.float64).ravel()
        grid = x_grid(x, named)
        ax_d, ax_v = axes[c]
        s_lo, s_hi = _plot_densities(ax_d, c, named, grid, x, s)
        _plot_variances(ax_v, c, named, grid, x, s, s_lo, s_hi)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save_png(fig, Path(path))


def _signal_levels(s: np.ndarray | None, grid: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The signal levels of the density panel (:data:`LEVELS` quantiles of ``s``, else the same
    fractions of the ``x`` grid's range) and the range of ``s`` (else of the grid)."""
    if s is not None and s.size:
        levels = np.quantile(s, LEVELS)
        s_lo, s_hi = float(s.min()), float(s.max())
    else:
        s_lo, s_hi = float(grid[0]), float(grid[-1])
        levels = s_lo + (s_hi - s_lo) * np.asarray(LEVELS)
    return levels, s_lo, s_hi


def _plot_densities(
    ax: Axes,
    c: int,
    named: Mapping[str, NoiseModelBase],
    grid: np.ndarray,
    x: np.ndarray | None,
    s: np.ndarray | None,
) -> tuple[float, float]:
    """Panel ``p(x | s)`` of channel ``c``: the data's distribution near each signal level
    (step curves) and each model's density (lines); returns the range of ``s`` shown.

    Parameters
    ----------
    ax
        Matplotlib axes to draw on.
    c
        Channel index (for the title).
    named
        The channel's models by name.
    grid
        ``x`` values the densities are evaluated at (:func:`x_grid`).
    x, s
        The channel's pairs (``None``: models only).
    """
    step = float(grid[1] - grid[0]) if grid.size > 1 else 1.0
    levels, s_lo, s_hi = _signal_levels(s, grid)
    for i, lev in enumerate(levels):
        colour = f"C{i}"
        if x is not None and s is not None:
            near = np.abs(s - lev) <= max(0.5 * step, 0.02 * (s_hi - s_lo))
            if near.sum() > 20:
                h, _ = np.histogram(
                    x[near], bins=np.append(grid - 0.5 * step, grid[-1] + 0.5 * step)
                )
                dens = h / (h.sum() * step)
                ax.step(
                    grid,
                    np.where(dens > 0, dens, np.nan),
                    where="mid",
                    color=colour,
                    alpha=0.45,
                    lw=1,
                )
        for j, (name, m) in enumerate(named.items()):
            p = m.density(np.array([lev]), grid)[0]
            ax.plot(
                grid,
                p,
                ls=("-", "--", ":", "-.")[j % 4],
                color=colour,
                lw=1.2,
                label=f"{name}, s={lev:.3g}",
            )
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-6)
    ax.set_xlabel("recorded value x (raw units)")
    ax.set_ylabel("p(x | s)")
    ax.set_title(f"channel {c}: p(x | s) at the 10/50/90/99th percentile of s", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return s_lo, s_hi


def _plot_variances(
    ax: Axes,
    c: int,
    named: Mapping[str, NoiseModelBase],
    grid: np.ndarray,
    x: np.ndarray | None,
    s: np.ndarray | None,
    s_lo: float,
    s_hi: float,
) -> None:
    """Panel "noise variance" of channel ``c``: the pairs' binned ``var(x − s)`` (points) and
    each model's ``Var[x | s]`` over ``[s_lo, s_hi]`` (lines).  Parameters as
    :func:`_plot_densities`."""
    s_grid = np.linspace(s_lo, s_hi, 64)
    if x is not None and s is not None:
        bm, bv, _ = binned_variance(x, s)
        ax.plot(bm, bv, "o", ms=4, color="tab:blue", label="data: var(x − s), binned")
    for j, (name, m) in enumerate(named.items()):
        _, var = m.moments(s_grid, grid)
        ax.plot(s_grid, var, "-", color=_COLOURS[j % len(_COLOURS)], label=name)
    ax.set_xlabel("signal s (raw units)")
    ax.set_ylabel("Var[x | s] (raw units²)")
    ax.set_title(f"channel {c}: noise variance", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _save_png(fig: Figure, out: Path) -> None:
    """Write ``fig`` to ``out`` as a PNG, atomically (parent folders created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=90, format="png")
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("noise-model plot written to %s", out)
