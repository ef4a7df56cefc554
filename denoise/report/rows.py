"""One sheet row as the report sees it: its sentinels, stores, figures and stage wall times.

Everything is read from the results directory (sentinels written by each stage and the
Snakemake benchmark tables ``results/benchmarks/<row>/<rule>.tsv``); a missing file leaves
the field empty rather than failing the report.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "STAGES",
    "Row",
    "group_by_input",
    "load_row",
    "no_reference_score",
    "ranking",
    "score_of",
    "summary_of",
]

#: Stage columns of the overview (benchmark file stem prefix → column label).
STAGES = (
    ("ingest", "ingest"),
    ("noise_model", "noise model"),
    ("train", "train"),
    ("predict", "predict"),
    ("evaluate", "evaluate"),
)


@dataclass
class Row:
    """The report's view of one sheet row."""

    name: str
    dir: Path
    ingest: dict[str, Any] = field(default_factory=dict)
    predict: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    raw_store: Path | None = None
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """Method name from the prediction (or model) sentinel."""
        return str(self.predict.get("method") or self.model.get("method") or "?")

    @property
    def input_uri(self) -> str:
        """The sheet's input (rows with the same input are compared side by side)."""
        return str(self.ingest.get("source", {}).get("uri") or self.name)

    @property
    def axes(self) -> str:
        """Axes of the input store (``tczyx`` order)."""
        return str(self.ingest.get("axes") or "")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the input store."""
        return tuple(int(n) for n in self.ingest.get("shape") or ())

    @property
    def model_label(self) -> str:
        """The model a row predicted with: its directory (shared by rows trained once)."""
        if not self.model:
            return ""
        where = self.predict.get("model_dir") or self.model.get("model_dir")
        return str(where) if where else f"{self.name}/model"


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _resolve(path: str | None, results: Path, row_dir: Path) -> Path | None:
    """A store path from a sentinel: as written (run directory), or beside the row's files."""
    if not path:
        return None
    p = Path(path)
    for cand in (p, results.parent / p, row_dir / p.name):
        if cand.exists():
            return cand
    return None


def _wall_seconds(bench_dir: Path) -> dict[str, float]:
    """Seconds per stage from the Snakemake benchmark tables (``predict_*`` summed)."""
    out: dict[str, float] = {}
    if not bench_dir.is_dir():
        return out
    for tsv in sorted(bench_dir.glob("*.tsv")):
        try:
            with tsv.open() as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
            secs = float(rows[-1]["s"])
        except (OSError, KeyError, IndexError, ValueError):
            continue
        stem = tsv.stem
        for key, _ in STAGES:
            if stem == key or stem.startswith(f"{key}_"):
                out[key] = out.get(key, 0.0) + secs
                break
        else:  # init_output, gather_predict, bootstrap_n2v, fit_noise_model, ...
            group = "predict" if "predict" in stem or stem == "init_output" else "train"
            group = "noise_model" if "noise_model" in stem else group
            out[group] = out.get(group, 0.0) + secs
    return out


def load_row(results: Path, name: str) -> Row:
    """Read every sentinel of row ``name`` under ``results``."""
    d = results / name
    row = Row(
        name=name,
        dir=d,
        ingest=_read(d / "ingest.json"),
        predict=_read(d / "predict.json"),
        metrics=_read(d / "metrics.json"),
        noise=_read(d / "noise_model.json"),
        model=_read(d / "model" / "model.json"),
        history=_read(d / "model" / "history.json"),
        seconds=_wall_seconds(results / "benchmarks" / name),
    )
    row.raw_store = _resolve(row.ingest.get("store"), results, d) or _resolve(
        str(d / "raw.ome.zarr"), results, d
    )
    outputs = row.predict.get("outputs") or {"denoised": str(d / "denoised.ome.zarr")}
    for out_name, store in outputs.items():
        found = _resolve(store, results, d)
        if found is not None:
            row.outputs[out_name] = found
    return row


def no_reference_score(row: Row) -> float | None:
    """The row's next-frame score (its main output), ``None`` without repeated frames."""
    noref = row.metrics.get("no_reference") or row.predict.get("no_reference") or {}
    main = noref.get("denoised") if isinstance(noref, dict) else None
    value = (main or {}).get("next_frame_mse")
    return float(value) if isinstance(value, (int, float)) else None


def score_of(row: Row, output: str = "denoised") -> dict[str, Any]:
    """The no-reference figures of one output of ``row`` (empty when not computed)."""
    noref = row.metrics.get("no_reference") or row.predict.get("no_reference") or {}
    value = noref.get(output) if isinstance(noref, dict) else None
    return value if isinstance(value, dict) else {}


def summary_of(row: Row, source: str = "denoised") -> dict[str, Any]:
    """Ground-truth metrics (mean over images) of ``source``; empty without ground truth."""
    summary = row.metrics.get("summary") or {}
    value = summary.get(source)
    return value if isinstance(value, dict) else {}


def group_by_input(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows grouped by input uri, groups and rows in sheet order."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.input_uri, []).append(row)
    return groups


def ranking(rows: list[Row]) -> tuple[str, list[tuple[Row, float]]]:
    """Rows of one input, best first, and the figure ranked by.

    The next-frame score (lower is better) when every row has one; else the PSNR against the
    ground truth (higher is better) when every row has one; else ``("", [])``.  The keys
    ``psnr_moving`` / ``moving`` say that the input has frames but its next-frame score was
    declared invalid (the frames move), so it is not ranked by.
    """
    nf = [no_reference_score(r) for r in rows]
    if rows and all(v is not None for v in nf):
        pairs = sorted(zip(rows, nf, strict=True), key=lambda p: p[1])
        return "next_frame_mse", [(r, float(v)) for r, v in pairs]
    moving = any((score_of(r).get("next_frame") or {}).get("valid") is False for r in rows)
    ps = [summary_of(r).get("psnr") for r in rows]
    if rows and all(isinstance(v, (int, float)) for v in ps):
        pairs = sorted(zip(rows, ps, strict=True), key=lambda p: -p[1])
        return "psnr_moving" if moving else "psnr", [(r, float(v)) for r, v in pairs]
    return "moving" if moving else "", []
