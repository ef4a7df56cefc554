"""Histogram noise model from calibration pairs (PN2V, Prakash/Krull et al.).

A 2D histogram of (clean ``s``, noisy ``x``) pairs, one row per ``s`` bin, each row normalised
to a distribution over ``x``; ``p(x | s)`` is read from the ``x`` bin of ``x`` and linearly
interpolated between the two rows whose ``s`` centres bracket ``s``, so it is continuous and
differentiable in ``s`` (the paper's construction, 256 × 256 bins by default).

Choices the paper leaves open, written down:

* Bins: ``bins`` equal bins spanning the data range on each axis; integer-valued data whose
  range holds at most ``bins`` values get one bin per value (e.g. 8-bit data: x = 0…255), so
  the recorded distribution, clipped edge values included, is kept exactly; likewise values
  on any lattice ``lo + d·k`` of at most ``bins`` points (an 8-bit clean image after the
  affine alignment of the calibration) get one row per lattice level.
* Sparse rows: a row with fewer than ``min_count`` pairs borrows from its nearest neighbours
  (symmetric window grown until it holds ``min_count``), each borrowed row shifted along ``x``
  by the difference of the ``s`` centres, so the pooled residual ``x − s`` keeps the right
  location, and stretched about its ``s`` by ``sqrt(v(s_i) / v(s_j))``, where ``v`` is a
  straight line fitted to the variance of the well-filled rows (Poisson-Gaussian noise has a
  variance linear in ``s``), so the borrowed shape also keeps the right spread.  (Shifted
  only, the sparse bright top of an FMD calibration borrowed the narrower darker rows: the
  model's spread there was up to 30 % too small.)  Rows beyond the data get the nearest filled row
  (moved alike).  The ``x`` axis is widened by the largest such shift before pooling, so a
  borrowed row shifted past the calibration's ``x`` range keeps its shape instead of piling
  its mass up in the end bin (that pile-up, read for every brighter ``x``, once put the
  model's mean 24 grey levels above ``s`` at the sparse top of an FMD calibration).
* ``x`` outside the table's bins has no histogram mass (only the wide Gaussian below): a
  lookup clamped to the edge bin would give every brighter (or darker) value the edge bin's
  density.
* Zero bins: the table density is mixed with a small weight ``tail_weight`` of a wide Gaussian
  ``N(s, tail_sigma²)`` (``tail_sigma`` = 3 × the largest row std), so an ``x`` the calibration
  never showed at this ``s`` has a small, finite likelihood whose gradient still pulls the
  samples towards ``x`` (a pure histogram has zero gradient there).
* ``s`` beyond the first/last row centre (a calibration that did not reach the data's
  brightest or darkest levels) reads the edge row shifted along ``x`` by the distance to it,
  the same shift-and-stretch rule as the pooled rows (the stretch follows the variance line),
  interpolated linearly between ``x`` bins so that ``p`` stays differentiable in ``s``: the
  samples are still pulled towards ``x``, with the edge row's noise shape widened as the
  variance grows.  (Clamping instead, as a plain table lookup does, leaves the
  likelihood flat in ``s`` there, so PN2V gets no training signal for pixels brighter than
  the calibration: FMD ``Confocal_BPAE_B`` frames reach 231 while the calibration pair's clean
  image ends at 149.)
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from denoise.noise.interface import NoiseModelBase, finite_pairs

log = logging.getLogger(__name__)

#: Default histogram size per axis (the PN2V paper's 256 × 256).
BINS = 256
#: Pairs a row must hold (after pooling neighbours) for its distribution to be used.
MIN_COUNT = 500
TAIL_WEIGHT = 1e-3
#: Largest spread ratio used to stretch a borrowed or extrapolated row.
MAX_STRETCH = 4.0


def _lattice(values: np.ndarray, bins: int) -> float | None:
    """Spacing ``d`` when ``values`` lie on ``lo + d·k`` with at most ``bins`` lattice points.

    An integer clean image rescaled by :func:`~denoise.noise.calibration.align_signal`
    (``a·s + b``) is such a lattice; binning it at any other width leaves empty rows between
    the levels, which then borrow neighbours shifted by whole ``x`` bins (a one-level error
    that matters where the noise spans one or two recorded values, e.g. a dark background).
    """
    u = np.unique(values)
    if u.size < 2 or u.size > bins:
        return None
    d = float(np.min(np.diff(u)))
    k = (u - u[0]) / d
    if d <= 0 or not np.allclose(k, np.round(k), atol=1e-6) or k[-1] + 1 > bins:
        return None
    return d


def _axis(values: np.ndarray, bins: int) -> tuple[float, float, int]:
    """First bin centre, bin width and bin count covering ``values``."""
    lo, hi = float(values.min()), float(values.max())
    integer = bool(np.all(np.mod(values, 1.0) == 0))
    if integer and hi - lo + 1 <= bins:
        return lo, 1.0, int(hi - lo) + 1
    step = _lattice(values, bins)
    if step is not None:
        return lo, step, round((hi - lo) / step) + 1
    if hi <= lo:
        return lo, 1.0, 1
    width = (hi - lo) / bins
    return lo + 0.5 * width, width, bins


def _bin_index(v: np.ndarray, first: float, width: float, n: int) -> np.ndarray:
    return np.clip(np.floor((v - first) / width + 0.5), 0, n - 1).astype(np.int64)


class HistogramNoiseModel(NoiseModelBase):
    """``p(x | s)`` from a row-normalised 2D histogram, linear in ``s`` between rows.

    Parameters
    ----------
    density
        ``(n_s, n_x)`` table: row ``i`` is the density of ``x`` (per raw unit) at the ``i``-th
        ``s`` centre.
    s_first, s_step
        Centre of the first ``s`` row and the spacing of the rows (raw units).
    x_first, x_step
        Centre of the first ``x`` bin and the bin width (raw units).
    tail_weight, tail_sigma
        Weight and σ (raw units) of the wide Gaussian mixed in (module docstring).
    counts
        Pairs per row before pooling (kept for plots and reports).
    var_line
        ``(a, b, floor)``: the noise variance ``max(a + b·s, floor)`` fitted to the well-filled
        rows, which stretches the edge row beyond the calibrated ``s`` range; ``None``: the
        edge row is only shifted.
    """

    kind = "histogram"

    def __init__(
        self,
        density: np.ndarray,
        s_first: float,
        s_step: float,
        x_first: float,
        x_step: float,
        tail_weight: float = TAIL_WEIGHT,
        tail_sigma: float = 1.0,
        counts: np.ndarray | None = None,
        var_line: tuple[float, float, float] | None = None,
    ) -> None:
        super().__init__()
        table = np.asarray(density, dtype=np.float64)
        if table.ndim != 2 or min(table.shape) < 1:
            raise ValueError(f"histogram table must be 2D (s, x), got shape {table.shape}")
        if not (s_step > 0 and x_step > 0 and tail_sigma > 0 and 0 <= tail_weight < 1):
            raise ValueError("histogram steps and tail_sigma must be > 0, tail_weight in [0, 1)")
        if table.shape[0] == 1:  # one row: duplicate it so interpolation has two rows
            table = np.repeat(table, 2, axis=0)
        self.register_buffer("table", torch.from_numpy(table.astype(np.float32)))
        self.s_first, self.s_step = float(s_first), float(s_step)
        self.x_first, self.x_step = float(x_first), float(x_step)
        self.tail_weight, self.tail_sigma = float(tail_weight), float(tail_sigma)
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self.var_line = None if var_line is None else tuple(float(v) for v in var_line)

    @property
    def n_s(self) -> int:
        return int(self.table.shape[0])

    @property
    def n_x(self) -> int:
        return int(self.table.shape[1])

    def log_prob(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Elementwise ``log p(x | s)``; ``x`` and ``s`` broadcast; differentiable in ``s``."""
        x, s = torch.broadcast_tensors(x, s)
        dtype = s.dtype if s.is_floating_point() else torch.float32
        table = self.table.to(dtype)
        # Columns clamped to [-1, n_x] (both outside the table) before the integer cast.
        ix = torch.floor((x - self.x_first) / self.x_step + 0.5).clamp(-1, self.n_x).long()
        s_last = self.s_first + (self.n_s - 1) * self.s_step
        fs = ((s - self.s_first) / self.s_step).clamp(0.0, self.n_s - 1.0)
        i0 = torch.floor(fs).clamp(max=self.n_s - 2).long()
        t = fs - i0.to(fs.dtype)
        flat = table.reshape(-1)
        p = (1.0 - t) * self._at(flat, i0, ix) + t * self._at(flat, i0 + 1, ix)
        # Beyond the calibrated s range: the edge row moved to s (shifted and stretched).
        s_edge = s.clamp(self.s_first, s_last)
        outside = s != s_edge
        if bool(outside.any()):
            edge = torch.where(s > s_edge, self.n_s - 1, 0)
            c = torch.ones_like(s) if self.var_line is None else self._stretch(s, s_edge)
            pos = (s_edge + (x - s) / c - self.x_first) / self.x_step
            j = torch.floor(pos)
            u = pos - j
            j = j.clamp(-2, self.n_x).long()  # j and j + 1 both stay outside when outside
            q = (1.0 - u) * self._at(flat, edge, j) + u * self._at(flat, edge, j + 1)
            p = torch.where(outside, q / c, p)
        if self.tail_weight > 0:
            # log((1 − w)·p + w·N(x; s, σ²)) in log space: the Gaussian's log stays finite far
            # from every bin, where its density underflows.  where(p > 0, p, 1) keeps the
            # unused branch finite, so its gradient is not NaN.
            z = (x - s) / self.tail_sigma
            log_tail = (
                math.log(self.tail_weight)
                - 0.5 * z * z
                - math.log(self.tail_sigma * math.sqrt(2.0 * math.pi))
            )
            safe = torch.where(p > 0, p, torch.ones_like(p))
            log_hist = torch.where(
                p > 0,
                torch.log(safe) + math.log1p(-self.tail_weight),
                torch.full_like(p, -math.inf),
            )
            return torch.logaddexp(log_hist, log_tail)
        return torch.log(p.clamp(min=1e-30))

    def _stretch(self, s: torch.Tensor, s_from: torch.Tensor) -> torch.Tensor:
        """Spread ratio ``sqrt(v(s) / v(s_from))`` of the variance line (clamped to [1/4, 4])."""
        a, b, floor = self.var_line  # type: ignore[misc]
        v = (a + b * s).clamp(min=floor)
        v0 = (a + b * s_from).clamp(min=floor)
        return torch.sqrt(v / v0).clamp(1.0 / MAX_STRETCH, MAX_STRETCH)

    def _at(self, flat: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        """Table density at ``(row, col)``; 0 for a column outside the ``x`` bins."""
        val = flat[row * self.n_x + col.clamp(0, self.n_x - 1)]
        return torch.where((col >= 0) & (col < self.n_x), val, torch.zeros_like(val))

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        s: np.ndarray,
        bins: int = BINS,
        min_count: int = MIN_COUNT,
        tail_weight: float = TAIL_WEIGHT,
        clip_low: float | None = None,
        clip_high: float | None = None,
    ) -> HistogramNoiseModel:
        """Build the model from calibration pairs.

        Parameters
        ----------
        x, s
            Noisy values and their clean signal (same shape; raw units).  Non-finite pairs are
            dropped.
        bins
            Bins per axis (integer data with a smaller range get one bin per value).
        min_count
            Pairs a row must hold; sparser rows pool shifted neighbours (module docstring).
        tail_weight
            Weight of the wide Gaussian mixed in (0: pure histogram).
        clip_low, clip_high
            The recording's clip levels (e.g. 0 and 255 for 8-bit data), if any: mass of a
            borrowed row shifted past one piles up there, as the detector would record it.
        """
        x, s = finite_pairs(x, s)
        if x.size < 100:
            raise ValueError(
                f"only {x.size} calibration pairs; a histogram noise model needs thousands "
                "(use a larger calibration stack)"
            )
        xf, xw, nx = _axis(x, bins)
        # The s axis may be non-integer (a mean over frames); its bins follow the same rule.
        sf, sw, ns = _axis(s, bins)
        counts = _joint_counts(x, s, (xf, xw, nx), (sf, sw, ns))
        row_n = counts.sum(axis=1)
        need = min(min_count, int(row_n.sum()))
        s_centres = sf + sw * np.arange(ns)
        line = _variance_line(counts, row_n, need, s_centres, xf + xw * np.arange(nx))
        pooled, pad = _pool_sparse_rows(counts, row_n, need, s_centres, xf, xw, sw, line)
        centres = xf + xw * (np.arange(pooled.shape[1]) - pad)
        _pile_up_at_clip_levels(pooled, centres, xw, clip_low, clip_high)
        pooled, xf = _trim_empty_columns(pooled, xf, xw, pad)
        nx = pooled.shape[1]
        dens, tail_sigma = _row_densities(pooled, xf, xw)
        log.info(
            "histogram noise model: %d × %d bins from %d pairs (s %.4g…%.4g, x %.4g…%.4g)",
            ns,
            nx,
            x.size,
            s.min(),
            s.max(),
            x.min(),
            x.max(),
        )
        return cls(dens, sf, sw, xf, xw, tail_weight, tail_sigma, row_n.astype(np.int64), line)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "s_first": self.s_first,
            "s_step": self.s_step,
            "x_first": self.x_first,
            "x_step": self.x_step,
            "tail_weight": self.tail_weight,
            "tail_sigma": self.tail_sigma,
            "shape": [self.n_s, self.n_x],
            "density": [[float(f"{v:.7g}") for v in row] for row in self.table.cpu().tolist()],
            "counts": None if self.counts is None else self.counts.tolist(),
            "var_line": None if self.var_line is None else list(self.var_line),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistogramNoiseModel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(data["density"], dtype=np.float64),
            data["s_first"],
            data["s_step"],
            data["x_first"],
            data["x_step"],
            data.get("tail_weight", TAIL_WEIGHT),
            data.get("tail_sigma", 1.0),
            data.get("counts"),
            data.get("var_line"),
        )


def _joint_counts(
    x: np.ndarray,
    s: np.ndarray,
    x_axis: tuple[float, float, int],
    s_axis: tuple[float, float, int],
) -> np.ndarray:
    """``(n_s, n_x)`` float64 histogram of the pairs on the bins ``(first, width, n)`` of
    each axis (:func:`_axis`)."""
    xf, xw, nx = x_axis
    sf, sw, ns = s_axis
    ix = _bin_index(x, xf, xw, nx)
    i_s = _bin_index(s, sf, sw, ns)
    return np.bincount(i_s * nx + ix, minlength=ns * nx).reshape(ns, nx).astype(np.float64)


def _pool_sparse_rows(
    counts: np.ndarray,
    row_n: np.ndarray,
    need: int,
    s_centres: np.ndarray,
    x_first: float,
    x_step: float,
    s_step: float,
    line: tuple[float, float, float] | None,
) -> tuple[np.ndarray, int]:
    """Rows with fewer than ``need`` pairs pooled from their moved neighbours (module docstring).

    Returns
    -------
    pooled
        The table widened by ``pad`` bins on both sides of the ``x`` axis, so no moved mass
        leaves it.
    pad
        Bins added on each side.
    """
    ns, nx = counts.shape
    stretch = np.ones(ns) if line is None else np.sqrt(_line(line, s_centres))
    windows = _pool_windows(row_n, need)
    pad = max(
        (_reach(i, lo, hi, s_step, x_step, nx, stretch) for i, (lo, hi) in windows.items()),
        default=0,
    )
    padded = np.pad(counts, ((0, 0), (pad, pad)))
    # Position of each row's s on the padded x axis, in bins.
    at = (s_centres - x_first) / x_step + pad
    return _pool_rows(padded, row_n, windows, at, stretch), pad


def _pile_up_at_clip_levels(
    table: np.ndarray,
    centres: np.ndarray,
    x_step: float,
    clip_low: float | None,
    clip_high: float | None,
) -> None:
    """Move (in place) the mass of ``x`` bins beyond a clip level into that level's bin, as
    the detector would record it; ``centres`` are the ``x`` centres of the table's columns."""
    for level, side in ((clip_low, -1.0), (clip_high, 1.0)):
        if level is None:
            continue
        beyond = side * (centres - level) > x_step / 2
        if beyond.any():
            clip_bin = int(np.argmin(np.abs(centres - level)))
            table[:, clip_bin] += table[:, beyond].sum(axis=1)
            table[:, beyond] = 0.0


def _trim_empty_columns(
    table: np.ndarray, x_first: float, x_step: float, pad: int
) -> tuple[np.ndarray, float]:
    """The table without its empty leading and trailing ``x`` columns, and the centre of its
    new first column (``x_first`` is the centre of the first column before ``pad``)."""
    used = np.flatnonzero(table.sum(axis=0) > 0)
    return table[:, used[0] : used[-1] + 1], x_first + (used[0] - pad) * x_step


def _row_densities(table: np.ndarray, x_first: float, x_step: float) -> tuple[np.ndarray, float]:
    """Rows of counts as densities per raw unit, and the wide Gaussian's ``tail_sigma``
    (3 × the largest row standard deviation, at least 3 bins)."""
    dens = table / np.maximum(table.sum(axis=1, keepdims=True), 1e-300) / x_step
    centres = x_first + x_step * np.arange(table.shape[1])
    _, var = _row_moments(dens * x_step, centres)
    return dens, 3.0 * float(np.sqrt(max(np.max(var), x_step * x_step)))


def _pool_windows(row_n: np.ndarray, min_count: int) -> dict[int, tuple[int, int]]:
    """For every row with fewer than ``min_count`` pairs, the row range ``[lo, hi)`` it pools:
    a symmetric window (cut at the ends) grown until it holds ``min_count`` pairs."""
    ns = row_n.size
    cum = np.concatenate([[0.0], np.cumsum(row_n)])
    windows = {}
    for i in range(ns):
        if row_n[i] >= min_count:
            continue
        h = 0
        while True:
            lo, hi = max(0, i - h), min(ns, i + h + 1)
            if cum[hi] - cum[lo] >= min_count or (lo == 0 and hi == ns):
                break
            h += 1
        windows[i] = (lo, hi)
    return windows


def _variance_line(
    counts: np.ndarray,
    row_n: np.ndarray,
    need: int,
    s_centres: np.ndarray,
    x_centres: np.ndarray,
) -> tuple[float, float, float] | None:
    """``(a, b, floor)``: least-squares line ``a + b·s`` through the variance of the rows that
    hold ``need`` pairs (``None`` with fewer than three such rows or a falling line); ``floor``
    is the smallest of those variances (the line may cross zero at the dark end)."""
    full = row_n >= max(need, 1)
    if full.sum() < 3:
        return None
    _, var = _row_moments(counts[full] / row_n[full, None], x_centres)
    b, a = np.polyfit(s_centres[full], var, 1)
    if not (np.isfinite(a) and np.isfinite(b)) or b < 0:
        return None
    floor = max(float(var.min()), 1e-12)
    return float(a), float(b), floor


def _row_moments(prob: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``x`` per row of ``prob`` (rows of probabilities over ``centres``)."""
    mean = prob @ centres
    return mean, prob @ centres**2 - mean**2


def _line(line: tuple[float, float, float], s: np.ndarray) -> np.ndarray:
    a, b, floor = line
    return np.maximum(a + b * s, floor)


def _ratio(stretch: np.ndarray, i: int, j: int) -> float:
    """Spread ratio of row ``i`` to row ``j`` (``stretch`` holds the rows' standard deviations)."""
    return float(np.clip(stretch[i] / stretch[j], 1.0 / MAX_STRETCH, MAX_STRETCH))


def _reach(
    i: int, lo: int, hi: int, s_step: float, x_step: float, nx: int, stretch: np.ndarray
) -> int:
    """Padding (x bins) that keeps every row of ``[lo, hi)`` moved to row ``i`` on the axis."""
    ratio = s_step / x_step
    reach = 0.0
    for j in (lo, hi - 1):
        reach = max(reach, abs((i - j) * ratio) + abs(_ratio(stretch, i, j) - 1.0) * nx)
    return math.ceil(reach) + 1


def _pool_rows(
    counts: np.ndarray,
    row_n: np.ndarray,
    windows: dict[int, tuple[int, int]],
    at: np.ndarray,
    stretch: np.ndarray,
) -> np.ndarray:
    """Rows with a window (:func:`_pool_windows`) pool its rows, moved (module docstring).

    ``at[j]`` is row ``j``'s ``s`` on the (padded) ``x`` axis in bins and ``stretch[j]`` its
    standard deviation on the variance line: row ``j`` moved to row ``i`` keeps its mass at
    ``at[i] + r·(k − at[j])`` for bin ``k``, ``r`` the spread ratio.  ``counts`` is padded so
    that no mass leaves it.
    """
    out = counts.copy()
    for i, (lo, hi) in windows.items():
        acc = np.zeros(counts.shape[1])
        for j in range(lo, hi):
            if row_n[j] == 0:
                continue
            acc += _move(counts[j], at[j], at[i], _ratio(stretch, i, j))
        out[i] = acc
    return out


def _move(row: np.ndarray, src: float, dst: float, ratio: float) -> np.ndarray:
    """``row`` with its mass moved from about ``src`` to about ``dst`` and spread by ``ratio``.

    A pure shift moves by whole bins (``round(dst − src)``), so integer data stay on their
    values; a stretch splits each bin's mass linearly between the two bins nearest its new
    position.
    """
    k = np.flatnonzero(row)
    out = np.zeros_like(row)
    if ratio == 1.0:
        np.add.at(out, k + round(dst - src), row[k])
        return out
    pos = dst + ratio * (k - src)
    j = np.floor(pos).astype(np.int64)
    u = pos - j
    np.add.at(out, j, row[k] * (1.0 - u))
    np.add.at(out, j + 1, row[k] * u)
    return out
