"""Up-front checks of a dataset sheet's inputs, run before any job starts.

Each input is opened once, for its metadata only (:func:`denoise.io.readers.probe_input`: a
TIFF's header, no lazy array built), so a sheet of a thousand rows is checked in seconds:
the file exists and is readable, its axes match its dimensions, the ground truth too, and
the input has what the row's method needs of it (``needs``: ``frames`` wants a ``t`` axis of at
least 2 frames; the row's ``needs`` come from the method registry via ``DatasetRow.needs``),
and a row's ``model`` (an existing model directory applied without training) fits the row:
:func:`model_problems`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from denoise.io.bmz_package import is_bmz_package, package_meta
from denoise.io.readers import InputError, probe_input
from denoise.provenance import read_json
from denoise.settings import ConfigError

if TYPE_CHECKING:
    from denoise.config import DatasetRow

log = logging.getLogger(__name__)

#: PN2V noise models fitted from the data being denoised (no calibration stack).
UNCALIBRATED_PN2V = ("poisson_gaussian", "gmm_bootstrap")


def pn2v_advice(row: DatasetRow, where: str) -> str | None:
    """Why a PN2V row without calibration data is a poor choice, and what to give it instead
    (None for other rows). Measured (issue 19): without a calibration stack, PN2V with the
    bootstrapped GMM scored 29.09 / 33.66 dB on held-out wide-field / 16-bit images against
    30.56 / 34.18 for N2V and 31.89 / 35.95 for bm3d_vst, and 33.25 against N2V's 33.44 on the
    FMD Confocal test frames (with a calibrated histogram model: 33.64)."""
    if row.method != "pn2v" or row.noise_model not in UNCALIBRATED_PN2V:
        return None
    return (
        f"{where}: method 'pn2v' with noise_model '{row.noise_model}' and no calibration stack "
        "is a poor choice: its noise model comes from the noisy data itself, and measured on "
        "single images without calibration PN2V scored up to 1.5 dB below n2v and 2.8 dB below "
        "bm3d_vst. Give it noisy frames of a static scene (columns 'calibration' and "
        "'noise_model' histogram or gmm), or use bm3d_vst (or leave 'method' empty: auto)"
    )


def check_sheet_inputs(rows: list[DatasetRow], sheet: str | Path) -> None:
    """Open every row's input (and ground truth) lazily; raise one error listing all problems.

    Raises
    ------
    ConfigError
        One line per problem: ``<sheet> row <i> (<name>): key '<key>': <problem>``.
    """
    problems = []
    grouped: list[tuple[int, DatasetRow, str, tuple[int, ...]]] = []
    for i, row in enumerate(rows, start=1):
        where = f"{sheet} row {i} ({row.name})"
        advice = pn2v_advice(row, where)
        if advice:
            log.warning(advice)
        for key, uri, axes in (
            ("uri", row.uri, row.axes),
            ("ground_truth", row.ground_truth, row.ground_truth_axes),
        ):
            if not uri:
                continue
            try:
                probed = row.probed if key == "uri" else None  # read once by the auto rule
                found, shape = probed or probe_input(uri, axes)
            except (InputError, ValueError, OSError) as exc:
                problems.append(f"{where}: key '{key}': {exc}")
                continue
            if key == "uri" and row.group:
                grouped.append((i, row, found, shape))
            if key == "uri" and "frames" in row.needs:
                problem = _frames_problem(row.method, found, shape)
                if problem:
                    problems.append(f"{where}: key 'uri': {problem}")
            if key == "uri" and row.model:
                for problem in model_problems(
                    row.model, row.method, found, shape, each_channel=row.model_each_channel
                ):
                    problems.append(f"{where}: key 'model': {problem}")
    problems += group_input_problems(grouped, sheet)
    if problems:
        raise ConfigError("\n".join(problems))


def _input_kind(axes: str, shape: tuple[int, ...]) -> tuple[int, str]:
    """(channel count, "2D" or "3D") of an input as a model trained on it sees it."""
    n_c = shape[axes.index("c")] if "c" in axes else 1
    has_z = "z" in axes and shape[axes.index("z")] > 1
    return n_c, "3D" if has_z else "2D"


def group_input_problems(
    grouped: list[tuple[int, DatasetRow, str, tuple[int, ...]]], sheet: str | Path
) -> list[str]:
    """Rows of one ``group`` share one model: they must agree on channel count and 2D/3D.

    ``grouped``: (row number, row, input axes, input shape) of every row with a group.
    """
    by_group: dict[str, list[tuple[int, str, tuple[int, str]]]] = {}
    for i, row, axes, shape in grouped:
        by_group.setdefault(row.group, []).append((i, row.name, _input_kind(axes, shape)))
    problems = []
    for name, members in by_group.items():
        for what, pos in (("channel count", 0), ("axes kind (2D vs 3D)", 1)):
            if len({kind[pos] for _, _, kind in members}) > 1:
                listed = ", ".join(f"row {i} ({n}): {kind[pos]}" for i, n, kind in members)
                problems.append(
                    f"{sheet}: key 'group': rows of group '{name}' share one model and must "
                    f"agree on {what}: {listed}"
                )
    return problems


def _frames_problem(method: str, axes: str, shape: tuple[int, ...]) -> str | None:
    """Why an input cannot serve a method that needs frames (None when it can)."""
    if "t" not in axes:
        return (
            f"method '{method}' needs frames (a t axis: it uses the neighbouring frames of a "
            f"time-lapse) but the input's axes are '{axes}'; give the time axis in the 'axes' "
            "column (e.g. 'tyx') or choose a single-frame method"
        )
    n = shape[axes.index("t")]
    if n < 2:
        return f"method '{method}' needs frames but the input's t axis has {n} frame"
    return None


#: What a method's model directory must carry in ``model.json``'s ``objective`` to be applied
#: alone: PN2V its noise model, DecoNoising its PSF (both are stored there by training).
CARRIED = {"pn2v": ("noise_model", "its noise model"), "deconoising": ("psf", "its PSF")}


def model_problems(
    model_dir: str | Path,
    method: str | None,
    axes: str,
    shape: tuple[int, ...],
    each_channel: bool = False,
) -> list[str]:
    """Why the model directory ``model_dir`` (or one of our BMZ packages, a ``.zip`` written by
    ``denoise export-bmz``) cannot be applied to an input (empty: it can).

    Reads ``model.json`` only (no weights): the directory holds ``model.json`` and
    ``model.pt``; the model's method equals ``method`` (None: any); a 3D model needs an input
    with a ``z`` axis (a 2D model runs plane by plane on any input); the model's channel count
    (its per-channel training statistics) equals the input's, or is 1 with ``each_channel``
    (explicit consent to apply it to every channel); PN2V / DecoNoising models carry their
    noise model / PSF.
    """
    path = Path(model_dir)
    if is_bmz_package(path):
        try:
            return _meta_problems(path, package_meta(path), method, axes, shape, each_channel)
        except (KeyError, TypeError, ValueError) as exc:
            return [str(exc)]
    if not path.is_dir():
        return [
            f"model directory {path} not found: give the model directory of an earlier run "
            "(e.g. results/<dataset>/model, holding model.json and model.pt)"
        ]
    missing = [f for f in ("model.json", "model.pt") if not (path / f).is_file()]
    if missing:
        return [
            f"{path} has no {' or '.join(missing)}: not a trained model directory (did its "
            "train job finish? give the directory holding model.json and model.pt)"
        ]
    try:
        meta = read_json(path / "model.json")
    except (OSError, ValueError) as exc:
        return [f"{path / 'model.json'} is unreadable ({exc})"]
    return _meta_problems(path, meta, method, axes, shape, each_channel)


def _meta_problems(
    path: Path,
    meta: dict,
    method: str | None,
    axes: str,
    shape: tuple[int, ...],
    each_channel: bool,
) -> list[str]:
    """:func:`model_problems` once the model's metadata (model.json or a package's) is read."""
    problems = []
    m_method = str(meta.get("method", ""))
    if method is not None and m_method != method:
        problems.append(
            f"the model in {path} was trained with method '{m_method}', not '{method}': give "
            f"method '{m_method}' (or name a {method} model)"
        )
    ndim = int(meta.get("ndim", 2))
    if ndim == 3 and "z" not in axes:
        problems.append(
            f"the model in {path} is 3D (zyx) but the input's axes '{axes}' have no z: apply a "
            "2D model, or give the z axis in the 'axes' column"
        )
    n_model = len((meta.get("norm") or {}).get("mean", [])) or 1
    n_input = shape[axes.index("c")] if "c" in axes else 1
    if n_model != n_input and not (n_model == 1 and each_channel):
        hint = (
            "set model_each_channel to true in the row to apply the single-channel model to "
            "each channel (with its one set of training statistics)"
            if n_model == 1
            else "name a model trained on data with as many channels"
        )
        problems.append(
            f"the model in {path} was trained on {n_model} channel(s) but the input has "
            f"{n_input}: {hint}"
        )
    need = CARRIED.get(m_method)
    if need and need[0] not in (meta.get("objective") or {}):
        problems.append(
            f"the {m_method} model in {path} does not carry {need[1]} (objective.{need[0]} in "
            "model.json): retrain it with this version"
        )
    return problems
