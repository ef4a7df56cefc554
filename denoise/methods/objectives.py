"""Training objectives: what a blind-spot network is trained to minimise.

The training loop (:func:`denoise.training.loop.train_loop`) is shared by every trained
method; an objective (:class:`denoise.training.objective.Objective`) supplies the parts that differ:

- ``out_channels``: the U-Net's output channels (1 for N2V/DecoNoising, K samples for PN2V);
- ``loss``: the training loss on a masked batch;
- ``val_terms``: (sum, count) of the validation score on a masked batch, so the loop can average
  over batches (for N2V the blind-spot MSE, a no-reference quality score);
- ``extra_parameters``: trainable parameters outside the U-Net (a learnable PSF width);
- ``meta``: what the predictor needs later (K, noise model, PSF), saved with the model.

All tensors are in the loop's normalised units: ``x_norm = (x_raw - mean) / std`` with the
channel's statistics, which the loop passes once through :meth:`Objective.bind`.
"""

from __future__ import annotations

from typing import Any

import torch

from denoise.methods.masking import masked_mse
from denoise.training.objective import Objective

__all__ = ["N2VObjective", "Objective"]


class N2VObjective:
    """Noise2Void: MSE between the output and the original noisy value at masked pixels."""

    out_channels = 1

    def __init__(self, name: str = "n2v") -> None:
        self.name = name

    def bind(self, mean: float, std: float, device: torch.device) -> None:
        """N2V needs neither the normalisation nor the device."""

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return []

    def loss(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_mse(out, target, mask)

    def val_terms(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
        diff = (out - target)[mask]
        return float((diff.double() ** 2).sum()), int(mask.sum())

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""

    def meta(self) -> dict[str, Any]:
        return {"name": self.name}
