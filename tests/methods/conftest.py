"""Fixtures shared by the training-method tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from denoise.config import TrainConfig
from denoise.methods.pn2v import PN2VSettings


@pytest.fixture(scope="session")
def tiny_pn2v_config() -> Callable[..., TrainConfig]:
    """Factory of a small, fast PN2V training config (depth-2, 8-feature U-Net, 16 samples,
    3 × 15 steps, one thread); keyword arguments override its fields."""

    def make(**overrides: Any) -> TrainConfig:
        base: dict[str, Any] = dict(
            depth=2,
            features=8,
            patch_size=32,
            batch_size=8,
            epochs=3,
            steps_per_epoch=15,
            learning_rate=3e-3,
            mask_fraction=0.05,
            threads=1,
            validation_fraction=0.0,
        )
        return TrainConfig(**{**base, **overrides})

    return make


@pytest.fixture(scope="session")
def tiny_pn2v_settings() -> Callable[..., PN2VSettings]:
    """Factory of PN2V's own settings for the tiny config: 16 samples; keywords override."""

    def make(**overrides: Any) -> PN2VSettings:
        return PN2VSettings(**{"samples": 16, **overrides})

    return make
