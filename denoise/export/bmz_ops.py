"""A foreign package's pre/postprocessing as pointwise float32 steps, with whole-input statistics.

Spec semantics (bioimageio model spec 0.5, as bioimageio.core applies them):
``fixed_zero_mean_unit_variance`` and ``zero_mean_unit_variance``: ``(x - mean) / (std + eps)``;
``scale_range``: ``(x - p_lo) / (p_hi - p_lo + eps)`` (linear-interpolated percentiles);
``scale_linear``: ``x * gain + offset``; ``clip``; ``sigmoid``; ``ensure_dtype`` (float) is a
no-op (the network runs in float32).  ``eps`` defaults to 1e-6.

Per-sample statistics (``zero_mean_unit_variance``, ``scale_range``) are computed once over the
whole input channel (every plane and frame of it), never per tile: :func:`resolve` turns the
steps into constants, after which every step is pointwise and tiled prediction stays exact.
The input is read block by block: mean and standard deviation in two passes with float64
sums (memory: one block), percentiles from all values at once (memory: the whole channel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

#: A resolved step: ("affine", (a, b)) is (x - a) / b; ("linear", (gain, offset));
#: ("clip", (lo, hi)); ("sigmoid", ()).
Resolved = tuple[str, tuple[float, ...]]
#: Steps whose constants come from the data.
PER_SAMPLE = ("zero_mean_unit_variance", "scale_range")
EPS = 1e-6


def needs_data(steps: Sequence[tuple[str, dict[str, Any]]]) -> bool:
    """True when a step needs statistics of the whole input."""
    return any(name in PER_SAMPLE for name, _ in steps)


def _scalar(value: Any, key: str) -> float:
    """One number from a scalar or a one-element (per-channel) list."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"{key} has {len(value)} values; a single-channel network needs one")
        value = value[0]
    return float(value)


def resolve_step(name: str, kw: dict[str, Any]) -> Resolved | None:
    """The constants of one step that needs no statistics (None: a no-op)."""
    eps = float(kw.get("eps", EPS))
    if name == "ensure_dtype":
        return None
    if name == "fixed_zero_mean_unit_variance":
        return ("affine", (_scalar(kw["mean"], "mean"), _scalar(kw["std"], "std") + eps))
    if name == "scale_linear":
        return ("linear", (_scalar(kw.get("gain", 1.0), "gain"), _scalar(kw.get("offset", 0.0), "offset")))
    if name == "clip":
        lo, hi = kw.get("min"), kw.get("max")
        return ("clip", (-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi)))
    if name == "sigmoid":
        return ("sigmoid", ())
    raise ValueError(f"unsupported step '{name}'")


def per_sample_step(
    name: str, kw: dict[str, Any], blocks: Callable[[], Iterable[np.ndarray]]
) -> Resolved:
    """The constants of a per-sample step from the whole input, read block by block.

    ``zero_mean_unit_variance``: two passes with float64 sums (memory: one block);
    ``scale_range``: linear-interpolated percentiles of all values (memory: the whole input).
    """
    eps = float(kw.get("eps", EPS))
    if name == "zero_mean_unit_variance":
        n, total = 0, 0.0
        for b in blocks():
            n, total = n + b.size, total + float(b.sum(dtype=np.float64))
        mean = total / max(n, 1)
        sq = sum(float(np.square(b.astype(np.float64) - mean).sum()) for b in blocks())
        return ("affine", (mean, float(np.sqrt(sq / max(n, 1))) + eps))
    if name == "scale_range":
        values = np.concatenate([b.ravel() for b in blocks()])
        lo, hi = np.percentile(
            values, [float(kw.get("min_percentile", 0.0)), float(kw.get("max_percentile", 100.0))]
        )
        return ("affine", (float(lo), float(hi) - float(lo) + eps))
    raise ValueError(f"step '{name}' has no per-sample statistics")


def apply(steps: Sequence[Resolved], x: np.ndarray) -> np.ndarray:
    """Apply resolved steps to ``x`` in float32 (a new array unless ``x`` is float32 already)."""
    x = np.asarray(x, dtype=np.float32)
    for kind, c in steps:
        if kind == "affine":
            x = (x - np.float32(c[0])) / np.float32(c[1])
        elif kind == "linear":
            x = x * np.float32(c[0]) + np.float32(c[1])
        elif kind == "clip":
            x = np.clip(x, np.float32(c[0]), np.float32(c[1]))
        elif kind == "sigmoid":
            x = (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
    return x


def resolve(
    steps: Sequence[tuple[str, dict[str, Any]]],
    blocks: Callable[[], Iterable[np.ndarray]] | None = None,
) -> list[Resolved]:
    """Every step with its constants; per-sample statistics over the whole input after the
    steps before it.

    Parameters
    ----------
    steps
        ``(name, kwargs)`` as :class:`denoise.io.bmz_spec.ForeignSpec` holds them.
    blocks
        Called once per pass over the input: an iterable of float32 blocks that together are
        the whole input channel; needed when :func:`needs_data`.
    """
    out: list[Resolved] = []
    for name, kw in steps:
        if name in PER_SAMPLE:
            if blocks is None:
                raise ValueError(f"step '{name}' needs the input's statistics")
            done = list(out)
            step: Resolved | None = per_sample_step(name, kw, lambda d=done: (apply(d, b) for b in blocks()))
        else:
            step = resolve_step(name, kw)
        if step is not None:
            out.append(step)
    return out


def as_json(steps: Sequence[Resolved]) -> list[list[Any]]:
    """Resolved steps as JSON-friendly lists (for provenance)."""
    return [[kind, [float(v) for v in c]] for kind, c in steps]
