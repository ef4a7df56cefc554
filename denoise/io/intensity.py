"""Does new data lie within a trained model's intensity range?  (A warning, never an error.)

A model applied to data it was not trained on normalises that data with its stored training
statistics (``norm``: per-channel mean and std, raw units).  The rule: for each channel, the
input's robust mean (the median of a bounded sample: the store's coarsest pyramid level, the
middle plane of every axis other than c, y and x, a centred window of at most 1024 x 1024) more
than ``K_STD`` = 5 training standard deviations away from the training mean is reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from denoise.io import omezarr

#: How many training standard deviations the input's robust mean may lie from the training mean.
K_STD = 5.0
#: Largest side of the centred window sampled per spatial axis.
WINDOW = 1024


def robust_means(store: str | Path) -> list[float]:
    """The median of a bounded sample of each channel of an OME-Zarr store (see module doc)."""
    group = omezarr.open_group(store)
    axes, _, _ = omezarr.read_axes(group, where=str(store))
    arr = group[omezarr.dataset_paths(group)[-1]]
    index: list[Any] = []
    for ax, n in zip(axes, arr.shape, strict=True):
        if ax == "c":
            index.append(slice(None))
        elif ax in "yx":
            lo = max(0, (n - WINDOW) // 2)
            index.append(slice(lo, lo + min(n, WINDOW)))
        else:
            index.append(n // 2)
    sample = np.asarray(arr[tuple(index)], dtype=np.float64)
    kept = [a for a in axes if a in "cyx"]
    if "c" not in kept:
        return [float(np.median(sample))]
    sample = np.moveaxis(sample, kept.index("c"), 0)
    return [float(np.median(ch)) for ch in sample]


def range_warnings(
    store: str | Path, norm: dict[str, Any], each_channel: bool = False
) -> list[str]:
    """One line per channel whose robust mean lies more than ``K_STD`` training std from the
    training mean (``norm`` = the model's ``{"mean": [...], "std": [...]}``)."""
    means = robust_means(store)
    out = []
    for c, value in enumerate(means):
        m = 0 if each_channel else min(c, len(norm["mean"]) - 1)
        mean, std = float(norm["mean"][m]), float(norm["std"][m])
        distance = abs(value - mean) / std if std > 0 else (0.0 if value == mean else np.inf)
        if distance > K_STD:
            out.append(
                f"channel {c}: the input's robust mean {value:.4g} lies {distance:.1f} training "
                f"std from the model's training mean {mean:.4g} (std {std:.4g}; warned above "
                f"{K_STD:g}): the data's intensity range is far outside what the model was "
                "trained on, so its output may be unreliable (retrain on this data, or check "
                "the acquisition settings)"
            )
    return out
