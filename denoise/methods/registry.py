"""The method registry: every denoising method declares itself here once, beside its code.

A method is one module that defines ``METHODS``, a tuple of :class:`MethodSpec` (a module may
declare several, e.g. N2V and N2V2), plus one entry in :data:`BUILTIN_MODULES`.  Everything
else reads the registry: the config's ``method`` column and ``methods.<name>`` blocks, the
generated schema, the CLI (``train``, ``predict``), the Snakemake input functions, the BMZ
export check, the quality benchmark and the README's method table.  An unknown name is an
error everywhere (:class:`UnknownMethodError`); there is no default branch.

Extra methods can be plugged in without editing the package: the environment variable
``DENOISE_METHOD_MODULES`` lists further modules (comma-separated, importable from
``PYTHONPATH``) that define ``METHODS`` the same way.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from denoise.settings import NoSettings, PredictConfig, TrainConfig

#: The package's own method modules, in the order the methods are listed.
BUILTIN_MODULES = (
    "denoise.methods.n2v",
    "denoise.methods.pn2v",
    "denoise.methods.deconoising",
    "denoise.methods.noise2fast",
    "denoise.methods.classical",
    "denoise.methods.window_bm3d_vst",
    "denoise.methods.spatiotemporal",
)
#: Environment variable naming plug-in method modules (comma-separated).
PLUGIN_ENV = "DENOISE_METHOD_MODULES"

Kind = Literal["trained", "zero-shot", "classical"]
#: What a method may need beside the image: ``noise_model`` (a fitted PN2V noise model, from
#: the ``fit_noise_model`` stage), ``psf`` (the sheet's optional ``psf`` column is used),
#: ``calibration`` (the sheet's ``calibration`` column is used), ``frames`` (a ``t`` axis).
Need = Literal["noise_model", "psf", "calibration", "frames"]


class UnknownMethodError(ValueError):
    """A method name that this version does not provide."""


@dataclass(frozen=True)
class TrainRequest:
    """Everything a method's train function receives (built by ``denoise train``)."""

    store: str
    model_dir: str
    train: TrainConfig
    settings: BaseModel
    seed: int
    fingerprint: str
    noise_model: str | None = None
    psf: str | None = None
    #: A sheet ``group``: every store of the group (``store`` is the first); empty otherwise.
    stores: tuple[str, ...] = ()


@dataclass(frozen=True)
class PredictRequest:
    """Everything a method's predictor factory receives (built by ``denoise predict``)."""

    predict: PredictConfig
    settings: BaseModel
    seed: int
    model_dir: str | None = None
    noise_model: dict[str, Any] | None = None


@dataclass(frozen=True)
class MethodSpec:
    """One method's declaration.

    Parameters
    ----------
    name
        The ``method`` cell of the dataset sheet and the ``methods.<name>`` config key.
    kind
        ``trained`` (a ``train`` stage writes a model directory), ``zero-shot`` (learns inside
        ``predict``, per plane) or ``classical``.
    summary
        One line for the README's method table.
    predictor
        ``PredictRequest -> TiledPredictor | PlanePredictor`` (:mod:`denoise.predict.protocols`).
    train
        ``TrainRequest -> summary dict`` (trained methods only); writes ``model.json`` last.
    settings
        The method's own pydantic settings model (the ``methods.<name>`` block).
    outputs
        Names of the images it writes (one OME-Zarr store each; ``denoised`` first).
    needs
        What it needs beside the image (see :data:`Need`).
    exportable
        Its models can be exported as a BioImage Model Zoo package.
    """

    name: str
    kind: Kind
    summary: str
    predictor: Callable[[PredictRequest], Any]
    train: Callable[[TrainRequest], dict[str, Any]] | None = None
    settings: type[BaseModel] = NoSettings
    outputs: tuple[str, ...] = ("denoised",)
    needs: frozenset[str] = field(default_factory=frozenset)
    exportable: bool = False

    def __post_init__(self) -> None:
        if (self.kind == "trained") != (self.train is not None):
            raise ValueError(f"method '{self.name}': a train function iff kind is 'trained'")
        if not self.outputs or self.outputs[0] != "denoised":
            raise ValueError(f"method '{self.name}': outputs must start with 'denoised'")

    @property
    def trained(self) -> bool:
        """True when the method has a separate ``train`` stage."""
        return self.kind == "trained"


_REGISTRY: dict[str, MethodSpec] | None = None


def _modules() -> list[str]:
    extra = [m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip()]
    return [*BUILTIN_MODULES, *extra]


def _load() -> dict[str, MethodSpec]:
    global _REGISTRY
    if _REGISTRY is None:
        found: dict[str, MethodSpec] = {}
        for name in _modules():
            module = importlib.import_module(name)
            specs = getattr(module, "METHODS", None)
            if not specs:
                raise ImportError(f"method module {name} defines no METHODS tuple")
            for spec in specs:
                if spec.name in found:
                    raise ValueError(f"method '{spec.name}' declared twice ({name})")
                found[spec.name] = spec
        _REGISTRY = found
    return _REGISTRY


def method_names() -> tuple[str, ...]:
    """Every registered method name, in declaration order."""
    return tuple(_load())


def all_methods() -> tuple[MethodSpec, ...]:
    """Every registered method."""
    return tuple(_load().values())


def get_method(name: str) -> MethodSpec:
    """The method called ``name``; :class:`UnknownMethodError` naming the known ones."""
    methods = _load()
    if name not in methods:
        raise UnknownMethodError(
            f"unknown method '{name}'; choose one of {', '.join(methods)}"
        )
    return methods[name]


def check_method(method: str) -> str:
    """Return ``method`` or raise naming the known methods."""
    return get_method(method).name


def needs_training(method: str) -> bool:
    """True when the method has a separate ``train`` stage."""
    return get_method(method).trained


def output_names(method: str) -> tuple[str, ...]:
    """Names of the images the method writes (one OME-Zarr store each)."""
    return get_method(method).outputs


def build_predictor(
    method: str,
    cfg: PredictConfig,
    seed: int,
    model_dir: str | Path | None = None,
    noise_model: dict[str, Any] | None = None,
    settings: BaseModel | dict[str, Any] | None = None,
) -> Any:
    """Build the TiledPredictor / PlanePredictor for ``method``.

    Parameters
    ----------
    model_dir
        Trained model directory (methods with a train stage).
    noise_model
        The ``noise_model`` stage's JSON (Poisson-Gaussian parameters per channel), used by the
        classical baselines' variance-stabilising transform and no-reference σ choice.
    settings
        The method's own settings (its ``methods.<name>`` block); defaults when None.
    """
    spec = get_method(method)
    if spec.trained and model_dir is None:
        raise ValueError(f"method '{method}' needs a trained model directory")
    request = PredictRequest(
        predict=cfg,
        settings=method_settings(method, settings),
        seed=seed,
        model_dir=None if model_dir is None else str(model_dir),
        noise_model=noise_model,
    )
    return spec.predictor(request)


def method_settings(method: str, settings: BaseModel | dict[str, Any] | None) -> BaseModel:
    """Validate ``settings`` (a dict, a model or None for the defaults) for ``method``."""
    model = get_method(method).settings
    if isinstance(settings, model):
        return settings
    if isinstance(settings, BaseModel):
        settings = settings.model_dump()
    return model.model_validate(settings or {})


def markdown_table() -> str:
    """The README's method table, generated from the registry."""
    lines = ["| `method` | kind | outputs | needs | notes |", "|---|---|---|---|---|"]
    for spec in all_methods():
        needs = ", ".join(sorted(spec.needs)) or "–"
        outs = ", ".join(spec.outputs)
        lines.append(f"| `{spec.name}` | {spec.kind} | {outs} | {needs} | {spec.summary} |")
    return "\n".join(lines)


def markdown_settings_table() -> str:
    """The README's table of every method's own settings (``methods.<name>.<key>``)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for spec in all_methods():
        for key, info in spec.settings.model_fields.items():
            default = "none" if info.default is None else f"`{info.default}`"
            lines.append(f"| `methods.{spec.name}.{key}` | {default} | {info.description or ''} |")
    return "\n".join(lines)
