"""Up-front checks of a dataset sheet's inputs, run before any job starts.

Opening an input lazily reads only its metadata, so every row can be checked in seconds:
the file exists and is readable, its axes match its dimensions, the ground truth too.
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
                open_input(uri, axes)
            except (InputError, ValueError, OSError) as exc:
                problems.append(f"{where}: key '{key}': {exc}")
    if problems:
        raise ConfigError("\n".join(problems))
