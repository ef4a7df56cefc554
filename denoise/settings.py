"""Shared settings blocks of the workflow config (one pydantic model per stage).

These are the settings every method shares: ``ingest``, ``noise_model``, ``train`` (steps,
batch, patch, learning rate, budget, device, precision, threads, the U-Net and blind-spot
masking), ``predict`` (tiling, batch, device, scatter) and ``report``.  A method's own options
live in its own settings model, beside its code (``denoise.methods.<module>``), and appear in
the config under ``methods.<name>``; :mod:`denoise.config` assembles the whole config from
these blocks and the method registry.  This module imports nothing from the package, so any
layer may use it.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

NoiseModelKind = Literal["poisson_gaussian", "histogram", "gmm", "gmm_bootstrap"]


class ConfigError(ValueError):
    """A config or dataset-sheet problem, with the offending key or row named."""


class Strict(BaseModel):
    """A settings model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class IngestConfig(Strict):
    """How input images are converted to OME-Zarr."""

    chunk_yx: int = Field(256, ge=16, description="Chunk edge along Y and X (pixels).")
    chunk_z: int = Field(16, ge=1, description="Chunk depth along Z (planes).")
    reuse_ome_zarr: bool = Field(
        True, description="Use an existing OME-Zarr 0.5 input in place instead of copying it."
    )


class NoiseModelConfig(Strict):
    """Poisson-Gaussian noise-model estimation from the noisy data alone."""

    block: int = Field(
        8, ge=4, description="Edge of the local blocks whose mean/variance are fitted."
    )
    max_samples: int = Field(
        2_000_000,
        ge=10_000,
        description="Pixels sampled at most per channel (keeps memory bounded).",
    )
    smooth_quantile: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Keep this fraction of blocks with the lowest local gradient energy (smooth regions).",
    )


class TrainConfig(Strict):
    """Training settings every trained method shares (the U-Net, patches, steps, masking)."""

    depth: int = Field(2, ge=1, le=4, description="U-Net depth (number of poolings).")
    features: int = Field(32, ge=4, description="Features in the first U-Net level.")
    batch_norm: bool = Field(False, description="Use batch norm in the U-Net.")
    patch_size: int = Field(64, ge=16, description="Training patch edge in Y/X (pixels).")
    patch_size_z: int = Field(16, ge=4, description="Training patch depth for 3D data.")
    batch_size: int = Field(16, ge=1, description="Patches per training step.")
    batch_size_3d: int = Field(
        2, ge=1, description="Patches per training step for 3D models (each holds patch_size_z planes)."
    )
    epochs: int = Field(
        8, ge=1, description="Number of epochs (8 × 25 = 200 steps: 30.8-31.0 dB on FMD confocal fish)."
    )
    steps_per_epoch: int = Field(25, ge=1, description="Optimiser steps per epoch.")
    learning_rate: float = Field(4e-4, gt=0, description="Adam learning rate.")
    mask_fraction: float = Field(
        0.02, gt=0, lt=0.5, description="Fraction of pixels masked (blind spots) per patch."
    )
    neighbourhood: int = Field(5, ge=3, description="Window for the replacement value (odd).")
    validation_fraction: float = Field(
        0.05, ge=0, lt=0.5, description="Fraction of patches held out for the validation loss."
    )
    max_minutes: float | None = Field(
        None, gt=0, description="Stop training after this wall-clock budget (minutes)."
    )
    dims: Literal["auto", "2d", "3d"] = Field(
        "auto", description="2D or 3D network; 'auto' picks 3D when the data has a Z axis > 1."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Compute device.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: all cores).")
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Training precision: float32, or bf16/fp16 autocast (GPU speed)."
    )

    @field_validator("neighbourhood")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("neighbourhood must be odd")
        return v


class PredictConfig(Strict):
    """Tiled prediction over the OME-Zarr store (settings every method shares)."""

    tile: int = Field(
        1072,
        ge=16,
        description="Tile edge in Y/X (multiple of 2**depth); the default holds one 1024² unit plus its halo.",
    )
    tile_z: int = Field(32, ge=1, description="Tile depth for 3D models.")
    halo: int | None = Field(
        None, ge=0, description="Halo in pixels; None uses the model's measured receptive field."
    )
    inexact: bool = Field(False, description="Allow a halo below the receptive field.")
    batch_size: int = Field(4, ge=1, description="Tiles per forward pass.")
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Prediction precision: float32 (exact tiling) or bf16/fp16 autocast (GPU speed).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Compute device.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: all cores).")
    scatter: int = Field(1, ge=1, description="Number of predict jobs a dataset is split into.")


class ReportConfig(Strict):
    """HTML report."""

    crop: int = Field(192, ge=16, description="Edge of the before/after crops (pixels).")


def format_validation_error(err: ValidationError, where: str) -> str:
    """Turn a pydantic error into one line per problem, naming the key."""
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{key}'")
        else:
            lines.append(f"{where}: key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def to_json(model: BaseModel) -> str:
    """Deterministic JSON (sorted keys) of a config model, for params and fingerprints."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class NoSettings(Strict):
    """A method without settings of its own (its ``methods.<name>`` block is empty)."""
