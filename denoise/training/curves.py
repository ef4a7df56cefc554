"""Training-curve figure (train and validation loss per epoch) as a PNG.

Uses matplotlib's object API with the Agg canvas, so no GUI backend and no global pyplot
state are touched (safe in worker processes and threads).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def plot_training_curve(
    history: Sequence[dict[str, Any]], path: str | Path, title: str = ""
) -> Path:
    """Plot ``train_loss`` and ``val_loss`` against ``epoch`` and write a PNG atomically.

    Parameters
    ----------
    history
        One dict per epoch with ``epoch``, ``train_loss`` and optionally ``val_loss`` (None when
        no validation set was used).
    path
        Output PNG.
    title
        Figure title (e.g. the method and dataset).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(5.0, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(epochs, [h["train_loss"] for h in history], marker=".", label="train (masked MSE)")
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val:
        ax.plot(
            [e for e, _ in val],
            [v for _, v in val],
            marker=".",
            label="validation (blind-spot MSE)",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised units²)")
    ax.grid(True, alpha=0.3)
    if history:
        ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", metadata={"Software": None})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
