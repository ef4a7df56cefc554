"""Typed configuration: the global workflow config and one row of the dataset sheet.

Every stage of the pipeline receives its settings as one of these pydantic models (the
Snakemake rules pass them as JSON through ``params:``, so a changed value reruns exactly the
stages that use it).  Unknown keys are rejected with the key named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
)

from denoise.io.axes import validate_axes
from denoise.io.readers import InputError, probe_input
from denoise.methods.auto import AUTO, AutoMethodConfig, choose_method
from denoise.methods.registry import all_methods, get_method, method_names
from denoise.settings import (
    ConfigError,
    IngestConfig,
    NoiseModelConfig,
    NoiseModelKind,
    PredictConfig,
    ReportConfig,
    Strict,
    TrainConfig,
    format_validation_error,
    to_json,
)

_Strict = Strict
#: Every registered method name (:mod:`denoise.methods.registry`).
METHODS = method_names()
#: Methods that learn weights in a separate ``train`` stage.
TRAINED_METHODS = tuple(m.name for m in all_methods() if m.trained)
#: Methods that run entirely inside ``predict`` (zero-shot or classical).
UNTRAINED_METHODS = tuple(m.name for m in all_methods() if not m.trained)
Method = Literal[METHODS]  # type: ignore[valid-type]
#: A sheet's ``method`` cell: a method, or ``auto`` (also an empty cell) for the auto_method rules.
MethodOrAuto = Literal[(*METHODS, AUTO)]  # type: ignore[valid-type]

#: Keys of earlier versions and where they live now (an old config fails naming the new key).
MOVED_KEYS = {
    "train.pn2v_samples": "methods.pn2v.samples",
    "train.pn2v_mean_weight": "methods.pn2v.mean_weight",
    "train.pn2v_posterior": "methods.pn2v.posterior",
    "train.psf_sigma": "methods.deconoising.psf_sigma",
    "train.psf_sigma_z": "methods.deconoising.psf_sigma_z",
    "train.learn_psf": "methods.deconoising.learn_psf",
    "train.positivity": "methods.deconoising.positivity",
    "predict.noise2fast_patience": "methods.noise2fast.patience",
    "predict.noise2fast_max_steps": "methods.noise2fast.max_steps",
    "predict.noise2fast_warm_start": "methods.noise2fast.warm_start",
    "predict.noise2fast_validate_every": "methods.noise2fast.validate_every",
    "predict.noise2fast_chequerboard_3d": "methods.noise2fast.chequerboard_3d",
    "predict.noise2fast_planes_at_once": "methods.noise2fast.planes_at_once",
    "predict.noise2fast_train_dtype": "methods.noise2fast.train_dtype",
    "predict.gaussian_sigma": "methods.gaussian.sigma",
}

MethodsConfig = create_model(
    "MethodsConfig",
    __base__=Strict,
    __doc__="Each method's own settings (``methods.<name>``), declared beside its code.",
    **{
        spec.name: (
            spec.settings,
            Field(default_factory=spec.settings, description=f"{spec.name}: {spec.summary}"),
        )
        for spec in all_methods()
    },
)


class DatasetRow(_Strict):
    """One row of the dataset sheet."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Unique dataset name.")
    uri: str = Field(
        ..., description="Input path: TIFF, PNG file/series glob, .npy, zarr or OME-Zarr."
    )
    axes: str = Field(
        "", description="Axes of the input (letters from 'tczyx'); empty: from metadata."
    )
    method: MethodOrAuto = Field(  # type: ignore[valid-type]
        AUTO,
        description=(
            "Denoising method; empty or 'auto': chosen from the input by the auto_method rules "
            "(time-lapses: spatiotemporal; single images and stacks: bm3d_vst; above "
            "auto_method.large_mpix: n2v)."
        ),
    )
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
    model: str = Field(
        "",
        description=(
            "An existing model directory (model.json + model.pt of an earlier run's train stage) "
            "or a BMZ package (.zip: ours from export-bmz, or a foreign N2V-type package whose "
            "rdf.yaml gives the axes and the normalisation, e.g. CAREamics') applied without "
            "training; the row's method must be the model's method (n2v for a foreign package). "
            "Empty: the row trains its own model."
        ),
    )
    group: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description=(
            "Rows with the same group share one model (trained methods: n2v, n2v2, pn2v, "
            "deconoising, spatiotemporal), trained once on patches from all of their stores "
            "(PN2V: with one noise model fitted on the group; DecoNoising: one PSF), then "
            "predicted row by row. Empty: no group."
        ),
    )
    model_each_channel: bool = Field(
        False,
        description=(
            "With 'model': consent to apply a single-channel model to each channel of a "
            "multichannel input (with the model's one set of training statistics)."
        ),
    )

    #: Why the method is what it is ("" when the sheet names it; the auto rule otherwise).
    _chosen_by: str = PrivateAttr("")
    #: The input's (axes, shape) when the auto rule read its header (reused by the sheet check).
    _probed: tuple[str, tuple[int, ...]] | None = PrivateAttr(None)

    @property
    def chosen_by(self) -> str:
        """``"auto: ..."`` when :func:`read_dataset_sheet` chose the method, else ``""``."""
        return self._chosen_by

    @property
    def probed(self) -> tuple[str, tuple[int, ...]] | None:
        """The input's ``(axes, shape)`` if the auto rule already read its header, else None."""
        return self._probed

    @property
    def needs(self) -> frozenset[str]:
        """What the row's method needs beside the image (its registry ``needs``), read by
        :func:`denoise.io.sheet_checks.check_sheet_inputs`."""
        if self.method == AUTO:
            return frozenset()
        return frozenset(get_method(self.method).needs)

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
    auto_method: AutoMethodConfig = Field(
        default_factory=AutoMethodConfig,
        description="What an empty method cell of the dataset sheet chooses.",
    )
    methods: MethodsConfig = Field(  # type: ignore[valid-type]
        default_factory=MethodsConfig, description="Each method's own settings."
    )

    def method_settings(self, method: str) -> BaseModel:
        """The ``methods.<method>`` block (the method's own settings)."""
        get_method(method)
        return getattr(self.methods, method)

    def method_json(self, method: str) -> str:
        """Deterministic JSON of the ``methods.<method>`` block (for params and fingerprints)."""
        return to_json(self.method_settings(method))


def check_moved_keys(data: dict[str, Any], where: str = "config") -> None:
    """Raise :class:`ConfigError` naming the new key for every key of an earlier version."""
    problems = []
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".")
        if isinstance(data.get(section), dict) and key in data[section]:
            value = data[section][key]
            problems.append(
                f"{where}: key '{old}' has moved to '{new}' (a method's own settings live "
                f"under methods.<name>): write `{new}: {value!r}`"
            )
    if problems:
        raise ConfigError("\n".join(problems))


def load_workflow_config(data: dict[str, Any], where: str = "config") -> WorkflowConfig:
    """Validate a config mapping, raising :class:`ConfigError` with the key named."""
    check_moved_keys(data, where)
    try:
        return WorkflowConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


def read_dataset_sheet(path: str | Path, auto: AutoMethodConfig | None = None) -> list[DatasetRow]:
    """Read and validate a TSV dataset sheet (header row, one dataset per row).

    Rows with an empty (or ``auto``) ``method`` cell get the method of the ``auto`` rules
    (:func:`resolve_auto_methods`; ``None``: the default :class:`AutoMethodConfig`).

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
    problems += resolve_auto_methods(rows, auto or AutoMethodConfig(), path)
    names = [r.name for r in rows]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        problems.append(f"{path}: duplicate dataset names {dups}")
    problems += reserved_name_problems(rows, path)
    if not any(r.method == AUTO for r in rows):  # unresolved rows: their problem is named
        problems += group_sheet_problems(rows, path)
    if not rows and not problems:
        problems.append(f"{path}: the sheet has no dataset rows")
    if problems:
        raise ConfigError("\n".join(problems))
    return rows


def resolve_auto_methods(
    rows: list[DatasetRow], auto: AutoMethodConfig, path: str | Path
) -> list[str]:
    """Give every ``auto`` row its method (:func:`denoise.methods.auto.choose_method`), from
    the input's header only (:func:`denoise.io.readers.probe_input`); returns the problems.

    Rows of one ``group`` share a method: a group's rows are resolved from its first row.
    """
    problems: list[str] = []
    group_choice: dict[str, str] = {}
    for i, r in enumerate(rows, start=1):
        if r.method != AUTO:
            continue
        where = f"{path} row {i} ({r.name}): key 'method'"
        if not auto.enabled:
            problems.append(
                f"{where}: the cell is empty and auto_method.enabled is false: name a method "
                f"({', '.join(METHODS)})"
            )
            continue
        if r.group and r.group in group_choice:
            r.method, r._chosen_by = group_choice[r.group], f"auto: as group '{r.group}'"
            continue
        try:
            axes, shape = probe_input(r.uri, r.axes)
        except (InputError, ValueError, OSError) as exc:
            problems.append(
                f"{path} row {i} ({r.name}): key 'uri': {exc} (the empty method cell is "
                "chosen from this input)"
            )
            continue
        choice = choose_method(axes, shape, auto, r.group)
        r.method, r._chosen_by, r._probed = choice.method, choice.reason, (axes, shape)
        if r.group:
            group_choice[r.group] = choice.method
    return problems


def auto_choice_lines(rows: list[DatasetRow]) -> list[str]:
    """``dataset <name>: method <method> (<reason>)`` for every row whose method the auto rule
    chose (printed at workflow start and by ``denoise check-config``)."""
    return [f"dataset {r.name}: method {r.method} ({r.chosen_by})" for r in rows if r.chosen_by]


#: Methods whose rows may share a ``group`` model: one network per group, and for PN2V one
#: noise model per group (fitted on all the group's stores), for DecoNoising one PSF.
GROUP_METHODS = ("n2v", "n2v2", "pn2v", "deconoising", "spatiotemporal")
#: Row settings the rows of one group must share, with the method need that makes them count:
#: the group has one noise model (PN2V), fitted once, and one PSF (DecoNoising).
GROUP_SHARED = {
    "noise_model": ("noise_model", "one noise model"),
    "calibration": ("calibration", "one noise model, fitted on one calibration stack"),
    "calibration_axes": ("calibration", "one noise model, fitted on one calibration stack"),
    "psf": ("psf", "one PSF"),
}
#: Top-level names the workflow itself writes under the results directory (rules in
#: ``workflow/rules/*.smk``); a dataset may not take one, or its outputs would mix with them.
RESERVED_NAMES = ("groups", "logs", "benchmarks", "report.html")


def reserved_name_problems(rows: list[DatasetRow], path: str | Path) -> list[str]:
    """Rows whose ``name`` is a directory or file the workflow writes under ``results/``."""
    return [
        f"{path} row {i} ({r.name}): key 'name': '{r.name}' is reserved (the workflow writes "
        f"results/{r.name} itself; reserved: {', '.join(RESERVED_NAMES)}): rename the dataset"
        for i, r in enumerate(rows, start=1)
        if r.name.lower() in RESERVED_NAMES
    ]


def _group_row_problems(i: int, r: DatasetRow, path: str | Path) -> list[str]:
    """What is wrong with one grouped row on its own (``model`` set, a method without groups)."""
    where = f"{path} row {i} ({r.name}): key 'group'"
    supported = f"group training supports {', '.join(GROUP_METHODS)}"
    problems = []
    if r.model:
        problems.append(
            f"{where}: a row may not have both 'group' ({r.group!r}) and 'model' "
            "(a group trains its own model; give the model to every row instead)"
        )
    if r.method not in GROUP_METHODS and get_method(r.method).trained:
        problems.append(f"{where}: method '{r.method}': {supported}")
    elif r.method not in GROUP_METHODS:
        problems.append(
            f"{where}: method '{r.method}' trains nothing, so it has no model to share: {supported}"
        )
    return problems


def group_sheet_problems(rows: list[DatasetRow], path: str | Path) -> list[str]:
    """What the sheet alone says is wrong with its ``group`` column (the inputs' channel
    counts and 2D/3D kind are checked by :func:`denoise.io.sheet_checks.check_sheet_inputs`)."""
    problems: list[str] = []
    groups: dict[str, list[tuple[int, DatasetRow]]] = {}
    for i, r in enumerate(rows, start=1):
        if r.group:
            groups.setdefault(r.group, []).append((i, r))
            problems += _group_row_problems(i, r, path)
    for name, members in groups.items():
        needs = get_method(members[0][1].method).needs
        keys = ["method", *(k for k, (need, _) in GROUP_SHARED.items() if need in needs)]
        for key in keys:
            values = sorted({str(getattr(r, key)) for _, r in members})
            if len(values) < 2:
                continue
            listed = ", ".join(
                f"row {i} ({r.name}): {getattr(r, key) or '(empty)'}" for i, r in members
            )
            why = (
                f" (the group has one model and {GROUP_SHARED[key][1]})" if key != "method" else ""
            )
            problems.append(
                f"{path}: key 'group': rows of group '{name}' must share one {key}{why}, "
                f"found {values}: {listed}"
            )
    return problems


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
