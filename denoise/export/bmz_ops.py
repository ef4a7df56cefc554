"""A foreign package's pre/postprocessing as pointwise float32 steps, with whole-input statistics.

Spec semantics (bioimageio model spec 0.5, as bioimageio.core applies them):
``fixed_zero_mean_unit_variance`` and ``zero_mean_unit_variance``: ``(x - mean) / (std + eps)``;
``scale_range``: ``(x - p_lo) / (p_hi - p_lo + eps)`` (linear-interpolated percentiles);
``scale_linear``: ``x * gain + offset``; ``clip``; ``sigmoid``; ``ensure_dtype`` (float) is a
no-op (the network runs in float32).  ``eps`` defaults to 1e-6.

Per-sample statistics (``zero_mean_unit_variance``, ``scale_range``) are computed once over the
whole input channel (every plane and frame of it), never per tile: :func:`resolve` turns the
steps into constants, after which every step is pointwise and tiled prediction stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def resolve_step(name: str, kw: dict[str, Any], data: np.ndarray | None) -> Resolved | None:
    """The constants of one step (``data``: the whole input channel, for per-sample steps)."""
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
    if data is None:
        raise ValueError(f"step '{name}' needs the input's statistics")
    if name == "zero_mean_unit_variance":
        return ("affine", (float(data.mean(dtype=np.float64)), float(data.std(dtype=np.float64)) + eps))
    if name == "scale_range":
        lo, hi = np.percentile(
            data, [float(kw.get("min_percentile", 0.0)), float(kw.get("max_percentile", 100.0))]
        )
        return ("affine", (float(lo), float(hi) - float(lo) + eps))
    raise ValueError(f"unsupported step '{name}'")


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
    steps: Sequence[tuple[str, dict[str, Any]]], data: np.ndarray | None = None
) -> list[Resolved]:
    """Every step with its constants; per-sample statistics over ``data`` after the steps before.

    Parameters
    ----------
    steps
        ``(name, kwargs)`` as :class:`denoise.io.bmz_spec.ForeignSpec` holds them.
    data
        The whole input channel (any shape), needed when :func:`needs_data`.
    """
    out: list[Resolved] = []
    cur = None if data is None else np.asarray(data, dtype=np.float32)
    for i, (name, kw) in enumerate(steps):
        step = resolve_step(name, kw, cur)
        if step is None:
            continue
        out.append(step)
        if cur is not None and needs_data(steps[i + 1 :]):
            cur = apply([step], cur)
    return out


def as_json(steps: Sequence[Resolved]) -> list[list[Any]]:
    """Resolved steps as JSON-friendly lists (for provenance)."""
    return [[kind, [float(v) for v in c]] for kind, c in steps]
