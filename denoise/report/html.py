"""One self-contained HTML report per run: static PNG panels as data URIs, inline CSS, no JS.

Top to bottom: the run overview (every row's input, method, quality figures, wall time per
stage and links to its stores), one comparison per input (every method run on it side by side
on the same crop and display range, zoom, residual maps, extra outputs, frames and kymograph
of time-lapses, XZ sections of stacks, one panel row per channel, and the ranking), then the
details of each row (metrics, no-reference figures, noise model, training, provenance).  The
report reads the stage sentinels, benchmark tables and stores under the results directory only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from denoise import __version__
from denoise.provenance import atomic_write_text, package_versions
from denoise.report import panels
from denoise.report.fmt import esc, table
from denoise.report.images import compact_png, img_tag
from denoise.report.layout import build_layout, columns_of, main_ranges, residual_ranges
from denoise.report.rows import Row, group_by_input, load_row
from denoise.report.tables import (
    metrics_table,
    no_reference_table,
    noise_table,
    overview_table,
    ranking_block,
    training_table,
)
from denoise.settings import ReportConfig

log = logging.getLogger(__name__)

__all__ = ["build_report", "comparison_section", "dataset_section"]

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1280px;padding:0 1em;color:#222}
h1{border-bottom:2px solid #345}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}
table.overview{font-size:12px}table.overview td:nth-child(-n+3),table.overview td:last-child,
table.overview th:nth-child(-n+3),table.overview th:last-child{text-align:left}
table.ranking td:nth-child(-n+3),table.ranking th:nth-child(-n+3){text-align:left}.wide{overflow-x:auto}
table.kv th{display:none}table.kv td:last-child{text-align:left}
.prow{margin:.6em 0}.ptitle{font-size:13px;color:#345;font-weight:600;margin-bottom:.2em}
.cells{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-start}
figure{margin:0}figure img{display:block;image-rendering:pixelated;margin-bottom:2px}
figcaption{font-size:12px;color:#444;max-width:200px}
.plots img{max-width:48%;vertical-align:top}
details pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:12px}
.note{color:#555;font-size:90%}
"""


def _file_img(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    return img_tag(compact_png(path.read_bytes()), alt)


def _next_frame_sentence(row: Row) -> str:
    noref = row.metrics.get("no_reference") or row.predict.get("no_reference") or {}
    reasons = {(v.get("next_frame") or {}).get("reason") for v in noref.values() if isinstance(v, dict)}
    reasons.discard(None)
    if reasons:
        return f"<p>Next-frame score withheld: {esc(sorted(reasons)[0])}.</p>"
    nf = {k: v.get("next_frame_mse") for k, v in noref.items() if isinstance(v, dict)}
    nf = {k: float(v) for k, v in nf.items() if isinstance(v, (int, float))}
    if not nf:
        return ""
    best = min(nf, key=nf.__getitem__)
    scores = ", ".join(f"{esc(k)} {v:.4g}" for k, v in nf.items())
    return (
        f"<p>Next-frame score of each output (lower is better; see the ranking note of the "
        f"comparison): {scores}; lowest: <b>{esc(best)}</b>.</p>"
    )


def dataset_section(results: Path, name: str, cfg: ReportConfig, row: Row | None = None) -> str:
    """HTML of one row's details: metrics, no-reference figures, noise model, training, provenance."""
    row = row or load_row(Path(results), name)
    shape = "×".join(str(n) for n in row.shape) or "?"
    parts = [
        f'<h3 id="row-{esc(name)}">{esc(name)}</h3>',
        f"<p>Input <code>{esc(row.input_uri)}</code>, axes <code>{esc(row.axes or '?')}</code>, "
        f"shape {shape}, {esc(row.ingest.get('dtype', '?'))}; method <b>{esc(row.method)}</b>.</p>",
        metrics_table(row),
        no_reference_table(row),
        _next_frame_sentence(row),
    ]
    plots = [_file_img(row.dir / "noise_model.png", "noise model")]
    plots.append(_file_img(row.dir / "pn2v_noise_model.png", "PN2V noise model p(x|s)"))
    if row.noise:
        parts.append("<h4>Noise model</h4>" + noise_table(row.noise))
    if row.model:
        parts.append("<h4>Training</h4>" + training_table(row.model, row.history))
        plots.append(_file_img(row.dir / "model" / "training_curve.png", "training curve"))
    parts.append(f'<div class="plots">{"".join(plots)}</div>')
    prov = {
        "ingest": row.ingest,
        "model": row.model,
        "predict": row.predict,
        "noise_model_fingerprint": row.noise.get("fingerprint"),
    }
    parts.append(
        "<details><summary>Provenance (stage sentinels, raw)</summary><pre>"
        f"{esc(json.dumps(prov, indent=1, sort_keys=True, default=str))}</pre></details>"
    )
    return "\n".join(p for p in parts if p)


def comparison_section(rows: list[Row], results: Path, cfg: ReportConfig, anchor: str) -> str:
    """The ranking of the methods run on one input, then all of them side by side."""
    uri = rows[0].input_uri
    head = f'<section class="compare" id="{esc(anchor)}"><h3>{esc(uri)}</h3>'
    try:
        cols = columns_of(rows, Path(results))
        if not cols or cols[0].kind != "input":
            raise FileNotFoundError("the input store is missing")
        lay = build_layout(cols, cfg.crop)
        lay.ranges = main_ranges(cols, lay)
        res_ranges = residual_ranges(cols, lay)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s: comparison unavailable (%s)", uri, exc)
        return f'{head}<p class="note">Panels unavailable: {esc(exc)}</p>{ranking_block(rows)}</section>'
    wy, wx = lay.window
    lo, hi = lay.ranges[lay.channels[0]]
    note = (
        f"Axes <code>{esc(lay.axes)}</code>, shape {'×'.join(map(str, lay.shape))}. Crop y {wy.start}–"
        f"{wy.stop - 1}, x {wx.start}–{wx.stop - 1}; one display range per channel for every panel "
        f"(the {0.5}–{99.7} percentiles of all panels pooled; channel {lay.channels[0]}: "
        f"{lo:.3g}–{hi:.3g}). Yellow box: zoom window; dotted cyan line: row of the kymograph / XZ section."
    )
    body = [
        ranking_block(rows),
        f'<p class="note">{note}</p>',
        *panels.main_rows(cols, lay),
        *panels.zoom_rows(cols, lay),
        *panels.residual_rows(cols, lay, res_ranges),
        *panels.extra_rows(cols, lay),
        *panels.kymograph_rows(cols, lay),
    ]
    return head + "\n".join(body) + "</section>"


def _software() -> str:
    rows = [[esc(k), esc(v)] for k, v in sorted(package_versions().items())]
    return table(["package", "version"], rows)


def build_report(
    results: str | Path, datasets: list[str], out: str | Path, cfg: ReportConfig | None = None
) -> None:
    """Write the report for ``datasets`` found under ``results`` to ``out`` (atomically)."""
    cfg = cfg or ReportConfig()
    results = Path(results)
    rows = [load_row(results, n) for n in datasets]
    groups = group_by_input(rows)
    anchors = {uri: f"input-{i}" for i, uri in enumerate(groups)}
    toc = "".join(
        f'<li><a href="#{anchors[uri]}">{esc(uri)}</a>: {esc(", ".join(f"{r.method} ({r.name})" for r in g))}</li>'
        for uri, g in groups.items()
    )
    comparisons = [comparison_section(g, results, cfg, anchors[uri]) for uri, g in groups.items()]
    details = [dataset_section(results, r.name, cfg, r) for r in rows]
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>denoise report</title><style>{CSS}</style></head>
<body><h1>Denoising report</h1>
<p>denoise {esc(__version__)}; {len(rows)} row(s) on {len(groups)} input(s).</p>
<h2 id="overview">Run overview</h2>
<div class="wide">{overview_table(rows, Path(out).resolve().parent)}</div>
<p class="note">PSNR / SSIM / gain (over the noisy input) of the main output against the ground truth,
where the row has one; PSNR = 10·log10(range(GT)²/MSE), range = max(GT) − min(GT), float64, no
clipping. Next-frame score and residual / noise variance: see the ranking notes below. Wall time
per stage from the Snakemake benchmark tables (predict: init + every scattered job + gather).</p>
<h2 id="comparisons">Comparisons by input</h2><ul>{toc}</ul>
{"".join(comparisons)}
<h2 id="rows">Details per row</h2>
{"".join(details)}
<h2 id="software">Software</h2>{_software()}
</body></html>
"""
    atomic_write_text(out, doc)
    log.info("report written to %s", out)
