"""A sheet group's members file: one ``store`` and ``ingest`` sentinel per row, tab-separated.

The stages that work on a whole group (``denoise train`` and ``denoise fit-noise-model`` with
``--group-members FILE``) read their stores from this file rather than from the command line,
so a group of any size keeps a short command.  The workflow writes it (rule ``group_members``,
``results/groups/<group>/members.tsv``); by hand it is::

    store<TAB>ingest
    results/a/raw.ome.zarr<TAB>results/a/ingest.json
    results/b/raw.ome.zarr<TAB>results/b/ingest.json

``ingest`` may be left empty (the store's path then stands for its content in fingerprints).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from denoise.settings import ConfigError

HEADER = ("store", "ingest")


@dataclass(frozen=True)
class GroupMember:
    """One row of a group: its OME-Zarr store and ingest sentinel ("" when not given)."""

    store: str
    ingest: str = ""


def write_group_members(path: str | Path, members: list[tuple[str, str]]) -> None:
    """Write ``members`` (store, ingest) as a members file (atomically: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows([str(s), str(i)] for s, i in members)
    tmp.replace(path)


def read_group_members(path: str | Path) -> list[GroupMember]:
    """The members of a members file, in file order.

    Raises
    ------
    ConfigError
        The file is missing, its header is not ``store<TAB>ingest``, a row has no store, or
        it lists no member; the message names the file and row.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"--group-members {path}: file not found (a TSV with columns store, ingest: one "
            "row per member of the group)"
        )
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t") if r and any(c.strip() for c in r)]
    if not rows or tuple(c.strip() for c in rows[0][:2]) != HEADER:
        raise ConfigError(
            f"--group-members {path}: the first line must be the header 'store<TAB>ingest'"
        )
    members = []
    for i, row in enumerate(rows[1:], start=1):
        cells = [c.strip() for c in row] + ["", ""]
        if not cells[0] or len(row) > 2:
            raise ConfigError(
                f"--group-members {path} row {i}: expected 'store<TAB>ingest' (a store path, "
                f"then its ingest sentinel or nothing), got {row!r}"
            )
        members.append(GroupMember(cells[0], cells[1]))
    if not members:
        raise ConfigError(
            f"--group-members {path}: the file lists no member (no row after the header)"
        )
    return members
