"""Typed configuration: the global workflow config and one row of the dataset sheet.

Every stage of the pipeline receives its settings as one of these pydantic models (the
Snakemake rules pass them as JSON through ``params:``, so a changed value reruns exactly the
stages that use it).  Unknown keys are rejected with the key named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from denoise.io.axes import validate_axes

#: Methods that learn weights in a separate ``train`` stage.
TRAINED_METHODS = ("n2v", "n2v2", "pn2v", "deconoising")
#: Methods that run entirely inside ``predict`` (zero-shot or classical).
UNTRAINED_METHODS = ("noise2fast", "gaussian", "bm3d_vst")
METHODS = TRAINED_METHODS + UNTRAINED_METHODS
Method = Literal["n2v", "n2v2", "pn2v", "deconoising", "noise2fast", "gaussian", "bm3d_vst"]
NoiseModelKind = Literal["poisson_gaussian", "histogram", "gmm", "gmm_bootstrap"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class IngestConfig(_Strict):
    """How input images are converted to OME-Zarr."""

    chunk_yx: int = Field(256, ge=16, description="Chunk edge along Y and X (pixels).")
    chunk_z: int = Field(16, ge=1, description="Chunk depth along Z (planes).")
    reuse_ome_zarr: bool = Field(
        True, description="Use an existing OME-Zarr 0.5 input in place instead of copying it."
    )


class NoiseModelConfig(_Strict):
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


class TrainConfig(_Strict):
    """Noise2Void / N2V2 training."""

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
    pn2v_samples: int = Field(
        64, ge=2, description="PN2V: samples K the network outputs per pixel (paper: 800 on a GPU)."
    )
    pn2v_mean_weight: float = Field(
        0.0,
        ge=0,
        description="PN2V: weight of an N2V loss on the samples' centre (0: the paper's loss).",
    )
    pn2v_posterior: Literal["paper", "frames"] = Field(
        "paper",
        description=(
            "PN2V posterior: 'paper' (MMSE as published) or 'frames' (sample spread and "
            "likelihood temperature chosen by next-frame MSE; needs >= 2 frames of a static scene)."
        ),
    )
    psf_sigma: float = Field(1.0, ge=0, description="DecoNoising: Gaussian PSF σ in Y/X (pixels).")
    psf_sigma_z: float | None = Field(
        None, ge=0, description="DecoNoising: PSF σ along Z for 3D data (None: same as psf_sigma)."
    )
    learn_psf: bool = Field(False, description="DecoNoising: learn the PSF σ during training.")
    positivity: float = Field(
        1.0, ge=0, description="DecoNoising: weight λ of the positivity penalty mean(max(0, −z))."
    )

    @field_validator("neighbourhood")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("neighbourhood must be odd")
        return v


class PredictConfig(_Strict):
    """Tiled prediction over the OME-Zarr store."""

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
    # Noise2Fast / classical knobs live here because those methods run inside predict.
    noise2fast_patience: int = Field(
        6, ge=1, description="Noise2Fast: validations without improvement before stopping."
    )
    noise2fast_max_steps: int = Field(4000, ge=1, description="Noise2Fast: step cap per plane.")
    noise2fast_warm_start: bool = Field(
        False, description="Noise2Fast: start each frame from the previous frame's weights."
    )
    noise2fast_validate_every: int = Field(
        16, ge=1, description="Noise2Fast: optimiser steps between full-plane validations."
    )
    noise2fast_chequerboard_3d: bool = Field(
        False, description="Noise2Fast: denoise whole Z stacks with 3D chequerboard neighbours."
    )
    noise2fast_planes_at_once: bool = Field(
        False,
        description="Noise2Fast: train the Z planes of a stack side by side, each independently (GPU).",
    )
    noise2fast_train_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Noise2Fast: training-pass precision; 'auto' uses bfloat16 on CPUs with native support.",
    )
    gaussian_sigma: float | None = Field(
        None,
        gt=0,
        description="Gaussian method: σ in pixels; None chooses it without ground truth.",
    )


class ReportConfig(_Strict):
    """HTML report."""

    crop: int = Field(192, ge=16, description="Edge of the before/after crops (pixels).")


class DatasetRow(_Strict):
    """One row of the dataset sheet."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Unique dataset name.")
    uri: str = Field(
        ..., description="Input path: TIFF, PNG file/series glob, .npy, zarr or OME-Zarr."
    )
    axes: str = Field(
        "", description="Axes of the input (letters from 'tczyx'); empty: from metadata."
    )
    method: Method = Field("n2v", description="Denoising method.")
    ground_truth: str = Field("", description="Optional ground-truth image for metrics.")
    ground_truth_axes: str = Field(
        "", description="Axes of the ground truth; empty: from metadata."
    )
    noise_model: NoiseModelKind = Field(
        "poisson_gaussian",
        description="PN2V noise model: poisson_gaussian, histogram, gmm or gmm_bootstrap.",
    )
    calibration: str = Field(
        "", description="PN2V histogram/gmm: calibration stack (noisy frames of a static scene)."
    )
    calibration_axes: str = Field("", description="Axes of the calibration stack.")
    psf: str = Field("", description="DecoNoising: measured PSF file (TIFF/npy); empty: Gaussian.")

    @field_validator("axes", "ground_truth_axes", "calibration_axes")
    @classmethod
    def _axes(cls, v: str) -> str:
        v = v.strip().lower()
        if v:
            validate_axes(v)
        return v


class WorkflowConfig(_Strict):
    """The whole ``config/config.yaml``."""

    datasets: str = Field("config/datasets.tsv", description="Path of the dataset sheet (TSV).")
    results: str = Field("results", description="Directory for every output.")
    seed: int = Field(42, description="Seed for every random number generator.")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    noise_model: NoiseModelConfig = Field(default_factory=NoiseModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)


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


class ConfigError(ValueError):
    """A config or dataset-sheet problem, with the offending key or row named."""


def load_workflow_config(data: dict[str, Any], where: str = "config") -> WorkflowConfig:
    """Validate a config mapping, raising :class:`ConfigError` with the key named."""
    try:
        return WorkflowConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


def read_dataset_sheet(path: str | Path) -> list[DatasetRow]:
    """Read and validate a TSV dataset sheet (header row, one dataset per row).

    Raises
    ------
    ConfigError
        Naming the sheet, the row number and the key for every problem found.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset sheet {path}: file not found")
    rows: list[DatasetRow] = []
    problems: list[str] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(
            (line for line in fh if not line.lstrip().startswith("#")), delimiter="\t"
        )
        for i, raw in enumerate(reader, start=1):
            clean = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            # An empty cell means "use the default" (name and uri have none: they stay required).
            clean = {k: v for k, v in clean.items() if v != ""}
            try:
                rows.append(DatasetRow.model_validate(clean))
            except ValidationError as err:
                name = clean.get("name", "?")
                problems.append(format_validation_error(err, f"{path} row {i} ({name})"))
    names = [r.name for r in rows]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        problems.append(f"{path}: duplicate dataset names {dups}")
    if not rows and not problems:
        problems.append(f"{path}: the sheet has no dataset rows")
    if problems:
        raise ConfigError("\n".join(problems))
    return rows


def to_json(model: BaseModel) -> str:
    """Deterministic JSON (sorted keys) of a config model, for params and fingerprints."""
    return json.dumps(model.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def json_schema() -> dict[str, Any]:
    """JSON schema of :class:`WorkflowConfig` (the source of ``workflow/schemas``)."""
    schema = WorkflowConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def dataset_row_schema() -> dict[str, Any]:
    """JSON schema of one dataset-sheet row (:class:`DatasetRow`)."""
    schema = DatasetRow.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
