"""Up-front checks of a dataset sheet's inputs, run before any job starts.

Opening an input lazily reads only its metadata, so every row can be checked in seconds:
the file exists and is readable, its axes match its dimensions, the ground truth too, and
the input has what the row's method needs of it (``needs``: ``frames`` wants a ``t`` axis of at
least 2 frames; the row's ``needs`` come from the method registry via ``DatasetRow.needs``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from denoise.io.readers import InputError, open_input
from denoise.settings import ConfigError

if TYPE_CHECKING:
    from denoise.config import DatasetRow


def check_sheet_inputs(rows: list[DatasetRow], sheet: str | Path) -> None:
    """Open every row's input (and ground truth) lazily; raise one error listing all problems.

    Raises
    ------
    ConfigError
        One line per problem: ``<sheet> row <i> (<name>): key '<key>': <problem>``.
    """
    problems = []
    for i, row in enumerate(rows, start=1):
        where = f"{sheet} row {i} ({row.name})"
        for key, uri, axes in (
            ("uri", row.uri, row.axes),
            ("ground_truth", row.ground_truth, row.ground_truth_axes),
        ):
            if not uri:
                continue
            try:
                image = open_input(uri, axes)
            except (InputError, ValueError, OSError) as exc:
                problems.append(f"{where}: key '{key}': {exc}")
                continue
            if key == "uri" and "frames" in getattr(row, "needs", ()):
                problem = _frames_problem(row.method, image.axes, image.data.shape)
                if problem:
                    problems.append(f"{where}: key 'uri': {problem}")
    if problems:
        raise ConfigError("\n".join(problems))


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
