"""The ``rdf.yaml`` of a foreign (not ours) N2V-type BioImage Model Zoo package, read without weights.

A package qualifies when its spec (model format 0.5, or 0.4) states one input and one output
tensor with axes from ``b c z y x`` (``y`` and ``x`` required, ``z`` for 3D), one channel in
and out, a parameterized spatial size (``min`` a multiple of ``step``) or a fixed one (as
CAREamics writes the size of its export example; the network's lattice step is then found at
import, and the network must be fully convolutional), pre/postprocessing
from :data:`PRE_OPS` / :data:`POST_OPS`, and ``torchscript`` or ``pytorch_state_dict``
weights.  :func:`read_foreign_spec` turns it into a :class:`ForeignSpec` or raises
``ValueError`` naming the package and what is unsupported.  The sheet check and
:mod:`denoise.export.bmz_foreign` (which runs the weights) both read it through here.
"""

from __future__ import annotations

import importlib.util
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: Preprocessing steps run on the input (statistics of per-sample steps: the whole input channel).
PRE_OPS = (
    "ensure_dtype",
    "fixed_zero_mean_unit_variance",
    "zero_mean_unit_variance",
    "scale_linear",
    "scale_range",
    "clip",
)
#: Postprocessing steps: pointwise with constants only (statistics of the whole output would
#: break tiling's exactness, so ``scale_mean_variance`` and per-sample steps are refused).
POST_OPS = ("ensure_dtype", "fixed_zero_mean_unit_variance", "scale_linear", "clip", "sigmoid")
#: Weight formats that can be run, in order of preference.
WEIGHTS = ("torchscript", "pytorch_state_dict")
ALLOWED_AXES = "bczyx"


@dataclass(frozen=True)
class ForeignSpec:
    """What a foreign N2V-type package states (see the module docstring)."""

    name: str
    format_version: str
    in_axes: str
    out_axes: str
    ndim: int
    min_size: tuple[int, ...]
    #: lattice step of the input sizes (0: a fixed size was stated, the step is found at import)
    step: int
    halo: int
    pre: tuple[tuple[str, dict[str, Any]], ...]
    post: tuple[tuple[str, dict[str, Any]], ...]
    weights: tuple[str, ...]
    raw_weights: dict[str, Any]


def read_rdf(path: str | Path) -> dict[str, Any]:
    """The parsed ``rdf.yaml`` (or ``*.bioimageio.yaml``) of a package ``.zip``."""
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n == "rdf.yaml" or n.endswith("bioimageio.yaml")]
        if not names:
            raise ValueError(f"{path}: no rdf.yaml in the package; not a BioImage Model Zoo package")
        data = yaml.safe_load(zf.read(names[0]))
    if not isinstance(data, dict) or data.get("type") != "model":
        raise ValueError(f"{path}: rdf.yaml does not describe a model (type: model)")
    return data


def read_foreign_spec(path: str | Path) -> ForeignSpec:
    """Check and summarise a foreign package's spec; ``ValueError`` naming what is unsupported."""
    rdf = read_rdf(path)
    where = f"BMZ package {path}"
    version = str(rdf.get("format_version", ""))
    if not version.startswith(("0.4", "0.5")):
        raise ValueError(f"{where}: model format_version '{version}' is not supported (0.4 or 0.5)")
    ins, outs = rdf.get("inputs") or [], rdf.get("outputs") or []
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(
            f"{where}: has {len(ins)} input and {len(outs)} output tensors; an N2V-type package "
            "has one of each"
        )
    v05 = version.startswith("0.5")
    read = _tensor_05 if v05 else _tensor_04
    in_axes, n_in, min_size, step, _ = read(ins[0], where, "input")
    out_axes, n_out, _, _, halo = read(outs[0], where, "output")
    sp = sorted(in_axes.replace("b", "").replace("c", ""))
    out_sp = sorted(out_axes.replace("b", "").replace("c", ""))
    if sp not in (["x", "y"], ["x", "y", "z"]) or out_sp != sp or len(set(in_axes)) != len(in_axes):
        raise ValueError(
            f"{where}: input axes '{in_axes}' / output axes '{out_axes}' are not N2V-type: "
            "supported are the same spatial axes y, x (and z) in and out, in any order, plus b, c"
        )
    if n_in != 1 or n_out != 1:
        raise ValueError(
            f"{where}: the network takes {n_in} channel(s) jointly and gives {n_out}; only "
            "single-channel networks are supported (apply one to each channel with "
            "model_each_channel)"
        )
    weights = tuple(w for w in WEIGHTS if (rdf.get("weights") or {}).get(w))
    if not weights:
        have = ", ".join(sorted(rdf.get("weights") or {})) or "none"
        raise ValueError(
            f"{where}: no usable weights format (it has: {have}); supported: {', '.join(WEIGHTS)}"
        )
    if weights == ("pytorch_state_dict",):
        problem = _architecture_problem(rdf["weights"]["pytorch_state_dict"], path)
        if problem:
            raise ValueError(f"{where}: its only weights are pytorch_state_dict and {problem}")
    return ForeignSpec(
        name=str(rdf.get("name", Path(path).stem)),
        format_version=version,
        in_axes=in_axes,
        out_axes=out_axes,
        ndim=len(sp),
        min_size=min_size,
        step=step,
        halo=halo,
        pre=_steps(ins[0].get("preprocessing") or [], PRE_OPS, v05, where, "preprocessing"),
        post=_steps(outs[0].get("postprocessing") or [], POST_OPS, v05, where, "postprocessing"),
        weights=weights,
        raw_weights=dict(rdf["weights"]),
    )


def _architecture_problem(weights: dict[str, Any], path: str | Path) -> str | None:
    """Why the ``pytorch_state_dict`` network cannot be built here (None: it can)."""
    if importlib.util.find_spec("bioimageio") is None or importlib.util.find_spec("bioimageio.core") is None:
        return "building its network needs bioimageio.core: pip install 'denoise[bmz]'"
    arch = weights.get("architecture")
    if isinstance(arch, dict):  # 0.5: {callable, source | import_from}
        module = arch.get("import_from")
        source = arch.get("source")
    else:  # 0.4: "file.py:Callable" or "module.path.Callable"
        text = str(arch or "")
        source = text.split(":")[0] if ".py:" in text else None
        module = None if source else text.rpartition(".")[0]
    if module:
        root = str(module).split(".")[0]
        if importlib.util.find_spec(root) is None:
            return f"its architecture comes from the module '{module}', which is not installed"
        return None
    if source and "://" not in str(source):
        with zipfile.ZipFile(path) as zf:
            if str(source).removeprefix("./") not in zf.namelist():
                return f"its architecture file '{source}' is not in the package"
    return None


def _letter(axis: dict[str, Any], where: str) -> str:
    """The letter (b, c, z, y, x) of a 0.5 axis; ValueError for time, index or other axes."""
    kind = str(axis.get("type", ""))
    if kind in ("batch", "channel"):
        return kind[0]
    if kind == "space" and str(axis.get("id", "")) in ("x", "y", "z"):
        return str(axis["id"])
    raise ValueError(
        f"{where}: axis {axis.get('id', kind)!r} of type '{kind}' is not N2V-type "
        f"(supported: batch, channel, space z/y/x)"
    )


def _tensor_05(t: dict[str, Any], where: str, role: str) -> tuple[str, int, tuple[int, ...], int, int]:
    """(axes, channels, min sizes, step, halo) of a 0.5 tensor description."""
    axes = [a if isinstance(a, dict) else {"type": str(a)} for a in t.get("axes") or []]
    letters = "".join(_letter(a, where) for a in axes)
    chan = [a for a in axes if a.get("type") == "channel"]
    n_c = len(chan[0].get("channel_names") or []) if chan else 1
    space = [a for a in axes if a.get("type") == "space"]
    halo = max([int(a.get("halo", 0) or 0) for a in space] or [0])
    if role == "output":
        return letters, n_c, (), 1, halo
    mins, steps = [], []
    for a in space:
        size = a.get("size")
        if isinstance(size, dict) and "min" in size:
            mins.append(int(size["min"]))
            steps.append(int(size.get("step", 0) or 0))
        elif isinstance(size, int):  # a fixed size: the exported example's (CAREamics)
            mins.append(0)
            steps.append(0)
        else:
            raise ValueError(
                f"{where}: input axis '{a.get('id')}' has size {size!r}; supported: a number or "
                "a parameterized size (min, step)"
            )
    return letters, n_c, tuple(mins), _step(mins, steps, where), halo


def _tensor_04(t: dict[str, Any], where: str, role: str) -> tuple[str, int, tuple[int, ...], int, int]:
    """(axes, channels, min sizes, step, halo) of a 0.4 tensor description."""
    letters = str(t.get("axes", ""))
    bad = sorted(set(letters) - set(ALLOWED_AXES))
    if bad:
        raise ValueError(
            f"{where}: {role} axes '{letters}' have {bad}: not N2V-type (supported: b, c, z, y, x)"
        )
    sp = [i for i, a in enumerate(letters) if a in "zyx"]
    halo = max([int((t.get("halo") or [0] * len(letters))[i]) for i in sp] or [0])
    shape = t.get("shape")
    ci = letters.find("c")
    if role == "output":
        n_c = int(shape[ci]) if ci >= 0 and isinstance(shape, list) else 1
        if ci >= 0 and isinstance(shape, dict):  # implicit: reference shape × scale + 2·offset
            n_c = round(float(shape["scale"][ci]) + 2 * float(shape.get("offset", [0] * 9)[ci]))
        return letters, n_c, (), 1, halo
    if isinstance(shape, list):  # a fixed shape: the exported example's
        n_c = int(shape[ci]) if ci >= 0 else 1
        return letters, n_c, (0,) * len(sp), 0, halo
    if not isinstance(shape, dict) or "min" not in shape:
        raise ValueError(f"{where}: the input's shape {shape!r} is neither a list nor min/step")
    n_c = int(shape["min"][ci]) if ci >= 0 else 1
    mins = [int(shape["min"][i]) for i in sp]
    steps = [int(shape["step"][i]) for i in sp]
    return letters, n_c, tuple(mins), _step(mins, steps, where), halo


def _step(mins: list[int], steps: list[int], where: str) -> int:
    """One lattice step for every spatial axis (lcm of the steps); 0: unknown (fixed sizes,
    found by :func:`denoise.export.foreign_net.lattice_step` at import); refuses unusable sizes."""
    if any(s <= 0 for s in steps):
        return 0
    step = math.lcm(*steps)
    if any(m % s for m, s in zip(mins, steps, strict=True)):
        raise ValueError(
            f"{where}: input sizes min {mins} are not multiples of their steps {steps}; "
            "unsupported (tiles are multiples of the step)"
        )
    return step


def _steps(
    steps: list[dict[str, Any]], allowed: tuple[str, ...], v05: bool, where: str, what: str
) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Pre/postprocessing as (0.5 name, kwargs); a clear error for a step not in ``allowed``."""
    out = []
    for step in steps:
        name = str(step.get("id" if v05 else "name", step.get("name", step.get("id", ""))))
        kwargs = dict(step.get("kwargs") or {})
        if not v05 and name in ("zero_mean_unit_variance", "scale_range", "scale_mean_variance"):
            mode = kwargs.pop("mode", "per_sample")
            if name == "zero_mean_unit_variance" and mode == "fixed":
                name = "fixed_zero_mean_unit_variance"
        if name == "ensure_dtype" and not str(kwargs.get("dtype", "float32")).startswith("float"):
            name = f"ensure_dtype to {kwargs.get('dtype')}"
        if kwargs.get("reference_tensor"):
            name = f"{name} with reference_tensor"
        if name not in allowed:
            raise ValueError(
                f"{where}: {what} step '{name}' is not supported here (supported: "
                f"{', '.join(allowed)}); per-sample statistics of the output or of another "
                "tensor would make tiled prediction inexact"
            )
        out.append((name, kwargs))
    return tuple(out)
