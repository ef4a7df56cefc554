"""Train and validation batches of a source whose every batch is a pure function of its index.

A batch source subclasses :class:`SeededBatches` and writes ``make(n, stream, index)``: ``n``
samples of batch ``index`` of stream ``stream`` (training or validation), drawn from a
generator seeded by ``(seed, stream, index)`` only, so a resumed run draws the same batches.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from denoise.settings import TrainConfig

__all__ = ["SeededBatches"]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class SeededBatches(ABC):
    """``train(step)``, ``validation()`` and ``describe()`` of the
    :class:`~denoise.training.loop.BatchSource` protocol, from the subclass's ``make`` and its
    patch ``sampler`` (a :class:`~denoise.methods.patches.PatchSampler` or a multi-store one)."""

    TRAIN_STREAM, VAL_STREAM = 1, 2
    batch_size: int
    cfg: TrainConfig
    sampler: Any

    @abstractmethod
    def make(self, n: int, stream: int, index: int) -> Batch:
        """``(input, target, mask)`` of ``n`` samples: batch ``index`` of ``stream``."""

    def patch_shape(self) -> Any:
        """Shape of one network input patch, as logged and recorded with the model."""
        return self.sampler.patch

    def describe(self) -> dict[str, Any]:
        """Normalisation, axes and store recorded with the model; patch shape for the log."""
        s = self.sampler
        return {
            "norm": s.norm,
            "axes": s.axes,
            "store": s.store,
            "patch": self.patch_shape(),
            "n_samples": s.n_samples,
        }

    def train(self, step: int) -> Batch:
        """The batch of optimiser step ``step``."""
        return self.make(self.batch_size, self.TRAIN_STREAM, step)

    def validation(self) -> list[Batch]:
        """``validation_fraction`` of an epoch's samples (at most 256), drawn once."""
        cfg = self.cfg
        if cfg.validation_fraction <= 0:
            return []
        bs = self.batch_size
        n = int(min(256, max(bs, round(cfg.validation_fraction * cfg.steps_per_epoch * bs))))
        sizes = [min(bs, n - i) for i in range(0, n, bs)]
        return [self.make(s, self.VAL_STREAM, j) for j, s in enumerate(sizes)]
