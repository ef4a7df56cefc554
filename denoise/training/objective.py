"""What a training scheme supplies to the shared loop: the :class:`Objective` protocol.

All tensors are in the loop's normalised units (``x_norm = (x_raw - mean) / std`` with the
channel's statistics, passed once through :meth:`Objective.bind`).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Objective(Protocol):
    """What a blind-spot training scheme must provide to the shared training loop."""

    name: str
    out_channels: int

    def bind(self, mean: float, std: float, device: torch.device) -> None:
        """Receive the normalisation (raw = norm·std + mean) and the device before training."""

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters beyond the U-Net's (optimised with the same Adam)."""

    def loss(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Scalar training loss.

        Parameters
        ----------
        out
            Network output ``(N, out_channels, *spatial)`` for the masked input.
        target
            The original (unmasked) normalised noisy patch ``(N, 1, *spatial)``.
        mask
            Boolean ``(N, 1, *spatial)``: True at the blind-spot pixels.
        """

    def val_terms(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
        """(sum, count) of the validation score over the masked pixels of one batch."""

    def state(self) -> dict[str, Any]:
        """Checkpointable state of the extra parameters (tensors allowed)."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`."""

    def meta(self) -> dict[str, Any]:
        """JSON-serialisable description saved in the model (``meta["objective"]``)."""
