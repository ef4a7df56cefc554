"""One self-contained HTML report per run (images embedded as base64 PNG).

Per dataset: the metrics table (when a ground truth exists), the noise-model plot, the
training curve, before / after (/ ground truth) crops, and the provenance of every stage.
The report reads the stage sentinels and stores under the results directory only.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from denoise import __version__
from denoise.provenance import atomic_write_text, package_versions
from denoise.report.figures import png_panel, read_crop, read_gt_crop
from denoise.settings import ReportConfig

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{border-bottom:2px solid #345}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}
img{max-width:100%}.figs{display:flex;flex-wrap:wrap;gap:1em}.figs figure{margin:0}
details pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:12px}
.note{color:#555;font-size:90%}
"""


def _img_tag(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _file_img(path: Path, alt: str) -> str:
    return (
        _img_tag(path.read_bytes(), alt)
        if path.is_file()
        else f'<p class="note">({alt}: not available)</p>'
    )


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _metrics_table(metrics: dict[str, Any]) -> str:
    rows = metrics.get("summary", {})
    if not rows:
        return '<p class="note">No ground truth: see the no-reference figures below.</p>'
    cols = ["psnr", "psnr_255", "ssim", "si_psnr"]
    head = "".join(f"<th>{c}</th>" for c in ["image", *cols, "gain (dB)"])
    gains = metrics.get("gain_db", {})
    body = []
    for name, vals in rows.items():
        cells = "".join(
            f"<td>{vals[c]:.3f}</td>" if isinstance(vals.get(c), (int, float)) else "<td>–</td>" for c in cols
        )
        gain = gains.get(name)
        cells += f"<td>{gain:+.2f}</td>" if isinstance(gain, (int, float)) else "<td>–</td>"
        label = "noisy input" if name == "raw" else name
        body.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    n_img = len(metrics.get("images", []))
    note = f'<p class="note">Mean over {n_img} image(s); per-image values in metrics.tsv.</p>'
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def _noise_table(noise: dict[str, Any]) -> str:
    rows = []
    for i, ch in enumerate(noise.get("channels", [])):
        rows.append(
            "<tr>"
            f"<td>{i}</td><td>{ch.get('gain', float('nan')):.4g}</td>"
            f"<td>{ch.get('read_var', float('nan')):.4g}</td><td>{ch.get('offset', float('nan')):.4g}</td>"
            f"<td>{ch.get('snr_db', float('nan')):.2f}</td></tr>"
        )
    return (
        "<table><tr><th>channel</th><th>gain</th><th>read-noise variance</th><th>offset</th>"
        f"<th>SNR (dB)</th></tr>{''.join(rows)}</table>"
    )


def _training_summary(model: dict[str, Any], history: dict[str, Any] | None) -> str:
    epochs = (history or {}).get("epochs", [])
    last = epochs[-1] if epochs else {}
    rows = {
        "method": model.get("method"),
        "epochs done / planned": f"{model.get('epochs_done', len(epochs))} / {(history or {}).get('epochs_planned', '–')}",
        "stopped": (history or {}).get("stopped", "–"),
        "optimiser steps": last.get("steps", "–"),
        "training seconds": last.get("seconds", "–"),
        "final train loss (masked MSE)": f"{last['train_loss']:.4f}" if "train_loss" in last else "–",
        "final validation loss (blind-spot MSE)": f"{last['val_loss']:.4f}" if "val_loss" in last else "–",
        "receptive field (px)": model.get("receptive_field"),
        "halo used for tiling (px)": model.get("halo"),
        "network": json.dumps(model.get("hparams", {}), sort_keys=True),
        "objective (PSF σ, samples K, noise model)": json.dumps(
            {k: v for k, v in (model.get("objective") or {}).items() if k != "noise_model"}, sort_keys=True
        )[:400],
    }
    cells = "".join(f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{cells}</table>"


def dataset_section(results: Path, name: str, cfg: ReportConfig) -> str:
    """HTML of one dataset's section."""
    d = results / name
    ingest = _read(d / "ingest.json") or {}
    predict = _read(d / "predict.json") or {}
    noise = _read(d / "noise_model.json")
    metrics = _read(d / "metrics.json")
    model = _read(d / "model" / "model.json")
    parts = [f'<h2 id="{html.escape(name)}">{html.escape(name)}</h2>']
    method = predict.get("method") or (model or {}).get("method") or "?"
    parts.append(
        f"<p>Input <code>{html.escape(str(ingest.get('source', {}).get('uri', '?')))}</code>, axes "
        f"<code>{ingest.get('axes', '?')}</code>, shape {ingest.get('shape', '?')}, {ingest.get('dtype', '?')}; "
        f"method <b>{html.escape(str(method))}</b>.</p>"
    )
    parts.append("<h3>Quality</h3>")
    parts.append(_metrics_table(metrics or {}))
    noref = (metrics or {}).get("no_reference") or predict.get("no_reference")
    if noref:
        parts.append(
            "<details open><summary>No-reference figures</summary><pre>"
            f"{html.escape(json.dumps(noref, indent=1, sort_keys=True))}</pre></details>"
        )
        nf = {k: v.get("next_frame_mse") for k, v in noref.items() if isinstance(v, dict)}
        nf = {k: v for k, v in nf.items() if v is not None}
        if nf:
            best = min(nf, key=nf.__getitem__)
            parts.append(
                "<p>Next-frame score (each denoised frame against the raw neighbouring frames; "
                "it estimates MSE to the signal + the noise variance, so lower is better and "
                "differences between outputs are differences of their true MSE, for a static "
                "scene): "
                + ", ".join(f"{html.escape(k)} {v:.4g}" for k, v in nf.items())
                + f"; lowest: <b>{html.escape(best)}</b>.</p>"
            )
    # Before / after crops.
    outputs = predict.get("outputs") or {"denoised": str(d / "denoised.ome.zarr")}
    store = ingest.get("store")
    panels: list[tuple[str, np.ndarray]] = []
    label = ""
    try:
        if store:
            raw, label = read_crop(store, cfg.crop)
            panels.append(("noisy input", raw))
        for out_name, out_store in outputs.items():
            crop, _ = read_crop(out_store, cfg.crop)
            panels.append((out_name, crop))
        gt = (metrics or {}).get("ground_truth") or {}
        if gt.get("uri"):
            panels.append(("ground truth", read_gt_crop(gt["uri"], gt.get("axes", ""), cfg.crop)))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        log.warning("%s: crops unavailable (%s)", name, exc)
    figs = []
    if panels:
        figs.append(
            f"<figure>{_img_tag(png_panel(panels), 'before/after')}<figcaption>Centre crop"
            f" ({html.escape(label) or 'plane'}); one display range for all panels.</figcaption></figure>"
        )
    parts.append('<div class="figs">' + "".join(figs) + "</div>")
    parts.append("<h3>Noise model</h3>")
    if noise:
        parts.append(_noise_table(noise))
    parts.append(_file_img(d / "noise_model.png", "noise model"))
    if (d / "pn2v_noise_model.png").is_file():
        parts.append("<h4>PN2V noise model p(x|s)</h4>")
        parts.append(_file_img(d / "pn2v_noise_model.png", "PN2V noise model"))
    if model:
        parts.append("<h3>Training</h3>")
        parts.append(_training_summary(model, _read(d / "model" / "history.json")))
        parts.append(_file_img(d / "model" / "training_curve.png", "training curve"))
    prov = {
        "ingest": ingest,
        "model": model,
        "predict": predict,
        "noise_model_fingerprint": (noise or {}).get("fingerprint"),
    }
    parts.append(
        "<details><summary>Provenance (sentinels)</summary><pre>"
        f"{html.escape(json.dumps(prov, indent=1, sort_keys=True, default=str))}</pre></details>"
    )
    return "\n".join(parts)


def build_report(
    results: str | Path, datasets: list[str], out: str | Path, cfg: ReportConfig | None = None
) -> None:
    """Write the report for ``datasets`` found under ``results`` to ``out`` (atomically)."""
    cfg = cfg or ReportConfig()
    results = Path(results)
    toc = "".join(f'<li><a href="#{html.escape(n)}">{html.escape(n)}</a></li>' for n in datasets)
    sections = [dataset_section(results, n, cfg) for n in datasets]
    versions = html.escape(json.dumps(package_versions(), indent=1, sort_keys=True))
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>denoise report</title><style>{CSS}</style></head>
<body><h1>Denoising report</h1>
<p>denoise {__version__}. Datasets:</p><ul>{toc}</ul>
<p class="note">PSNR = 10·log10(range(GT)²/MSE) with range = max(GT) − min(GT), float64, no clipping;
psnr_255 fixes the range to 255; si_psnr first fits a·x+b to the ground truth.</p>
{"".join(sections)}
<h2>Software</h2><pre>{versions}</pre>
</body></html>
"""
    atomic_write_text(out, doc)
    log.info("report written to %s", out)
