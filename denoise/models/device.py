"""Which torch device a stage runs on (one resolver for training and prediction)."""

from __future__ import annotations

import torch


def resolve_device(device: str, key: str = "device") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU is an error.

    Parameters
    ----------
    device
        ``auto``, ``cpu`` or ``cuda`` (the ``train.device`` / ``predict.device`` setting).
    key
        The config key named in the error message.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"{key} is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'"
        )
    return torch.device(device)
