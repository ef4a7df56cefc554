"""Plot of the fitted noise model: binned variance against mean, with the fitted line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def plot_noise_model(result: dict[str, Any], path: str | Path) -> None:
    """Write a PNG with one panel per channel: binned block variance vs mean and the fit.

    Parameters
    ----------
    result
        Output of :func:`~denoise.noise.poisson_gaussian.estimate_poisson_gaussian` (or one
        channel's dict from :func:`~denoise.noise.poisson_gaussian.estimate_from_array`).
    path
        PNG file to write (parent folders are created).
    """
    # The Agg canvas directly, without pyplot: no global backend switch, no GUI, thread-safe.
    channels = result["channels"] if "channels" in result else [result]
    n = len(channels)
    fig = Figure(figsize=(4.5 * n, 3.8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)
    for i, (ax, ch) in enumerate(zip(axes[0], channels, strict=True)):
        m = np.asarray(ch["bins"]["mean"], dtype=float)
        v = np.asarray(ch["bins"]["var"], dtype=float)
        ax.plot(m, v, "o", ms=4, color="tab:blue", label="binned blocks")
        if m.size:
            lo, hi = min(0.0, float(m.min())), float(m.max())
            grid = np.linspace(lo, hi, 200)
            fit = ch["gain"] * np.maximum(grid - ch["offset"], 0.0) + ch["read_var"]
            ax.plot(grid, fit, "-", color="tab:red", label="fit")
        ax.set_xlabel("local mean (raw units)")
        ax.set_ylabel("noise variance (raw units²)")
        ax.set_title(
            f"channel {ch.get('channel', i)}: gain {ch['gain']:.3g}, σ² {ch['read_var']:.3g}, "
            f"offset {ch['offset']:.3g}",
            fontsize=9,
        )
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=100, format="png")
        tmp.replace(out)
    except BaseException:  # e.g. a full disk: leave no half-written file behind
        tmp.unlink(missing_ok=True)
        raise
    log.info("noise-model plot written to %s", out)
