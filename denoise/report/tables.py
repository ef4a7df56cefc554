"""The report's tables: run overview, ranking of one input's methods, and per-row figures.

Numbers are rounded to what they mean (:mod:`denoise.report.fmt`): dB to 0.01, SSIM to 0.001,
scores and ratios to 3 significant figures, wall times to the second.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from denoise.report.fmt import esc, num, seconds, table
from denoise.report.rows import STAGES, Row, ranking, score_of, summary_of

__all__ = [
    "SCORE_NOTES",
    "metrics_table",
    "next_frame_cell",
    "no_reference_table",
    "noise_table",
    "overview_table",
    "ranking_block",
    "training_table",
]

#: One line per ranking figure: what it means and when it is valid.
SCORE_NOTES = {
    "next_frame_mse": (
        "Ranked by the next-frame score, lower is better: the mean squared difference between "
        "the estimate of frame t and raw frame t+1, on up to 8 frames spread over the series "
        "(the same frames for every method). A method that sees neighbouring frames is rerun "
        "for these frames with frame t+1 left out of its input, so no method sees the frame it "
        "is scored against. It estimates the MSE to the clean signal plus the noise variance, "
        "so differences between methods are differences of their true MSE. Valid for a static "
        "scene with noise independent between frames; it is withheld when consecutive raw "
        "frames differ by more than their noise explains."
    ),
    "psnr": (
        "Ranked by PSNR against the ground truth, higher is better. No no-reference ranking: "
        "the next-frame score needs two or more frames of a static scene, and this input has "
        "a single frame (per plane)."
    ),
    "psnr_moving": (
        "Ranked by PSNR against the ground truth, higher is better. No no-reference ranking: "
        "consecutive raw frames differ by more than their noise explains (motion or change), "
        "so the next-frame score would mostly measure that change (see each row's reason)."
    ),
    "moving": (
        "Not ranked: consecutive raw frames differ by more than their noise explains (motion "
        "or change), so the next-frame score would mostly measure that change (see each row's "
        "reason), and there is no ground truth."
    ),
    "": (
        "Not ranked: the next-frame score needs two or more frames of a static scene and there "
        "is no ground truth. The residual / noise variance ratio is a check, not a score: "
        "≈ 1 one noise's worth removed, ≪ 1 noise left, > 1 with lag-1 autocorrelation above "
        "the input's own, signal removed too."
    ),
}


def next_frame_cell(nr: dict[str, Any]) -> str:
    """The next-frame score of one output, or why it is withheld (the motion check)."""
    nf = nr.get("next_frame") or {}
    if nf.get("valid") is False:
        ratio = num(nf.get("motion_ratio"), "ratio")
        return f'<span title="{esc(nf.get("reason") or "")}">invalid: motion ({ratio}× noise)</span>'
    return num(nr.get("next_frame_mse"))


def _link(path: Path | None, label: str, base: Path) -> str:
    if path is None:
        return ""
    return f'<a href="{esc(os.path.relpath(Path(path).resolve(), base))}">{esc(label)}</a>'


def overview_table(rows: list[Row], base: Path) -> str:
    """Every row: input, method, quality figures, wall time per stage and links to the stores."""
    head = [
        "row",
        "input",
        "method",
        "PSNR (dB)",
        "SSIM",
        "gain (dB)",
        "next-frame score",
        "residual / noise var.",
    ]
    head += [label for _, label in STAGES] + ["total", "stores"]
    body = []
    for r in rows:
        gt, nr = summary_of(r), score_of(r)
        gain = (r.metrics.get("gain_db") or {}).get("denoised")
        secs = [seconds(r.seconds.get(key)) for key, _ in STAGES]
        links = [_link(r.raw_store, "input", base)] + [
            _link(p, n, base) for n, p in r.outputs.items()
        ]
        body.append(
            [
                f'<a href="#row-{esc(r.name)}">{esc(r.name)}</a>',
                f"<code>{esc(r.input_uri)}</code>",
                esc(r.method),
                num(gt.get("psnr"), "db"),
                num(gt.get("ssim"), "ssim"),
                num(gain, "gain"),
                next_frame_cell(nr),
                num(nr.get("variance_ratio"), "ratio"),
                *secs,
                seconds(sum(r.seconds.values()) if r.seconds else None),
                "<br>".join(x for x in links if x),
            ]
        )
    return table(head, body, "overview")


def ranking_block(rows: list[Row]) -> str:
    """The methods run on one input, best first, with one line on the figure ranked by."""
    key, ranked = ranking(rows)
    order = [r for r, _ in ranked] + [r for r in rows if r not in [x for x, _ in ranked]]
    head = [
        "rank",
        "row",
        "method",
        "next-frame score",
        "PSNR (dB)",
        "SSIM",
        "residual / noise var.",
        "lag-1 autocorr. x",
    ]
    body = []
    for i, r in enumerate(order):
        gt, nr = summary_of(r), score_of(r)
        best = i == 0 and bool(ranked)
        name = f"<b>{esc(r.name)}</b>" if best else esc(r.name)
        body.append(
            [
                str(i + 1) if ranked else "–",
                name,
                esc(r.method),
                next_frame_cell(nr),
                num(gt.get("psnr"), "db"),
                num(gt.get("ssim"), "ssim"),
                num(nr.get("variance_ratio"), "ratio"),
                num((nr.get("autocorrelation") or {}).get("x"), "ratio"),
            ]
        )
    return f'{table(head, body, "ranking")}<p class="note">{esc(SCORE_NOTES[key])}</p>'


def metrics_table(row: Row) -> str:
    """Ground-truth metrics of the noisy input and every output (mean over images)."""
    summary = row.metrics.get("summary") or {}
    if not summary:
        return '<p class="note">No ground truth for this row.</p>'
    gains = row.metrics.get("gain_db") or {}
    body = [
        [
            "noisy input" if name == "raw" else esc(name),
            num(vals.get("psnr"), "db"),
            num(vals.get("psnr_255"), "db"),
            num(vals.get("ssim"), "ssim"),
            num(vals.get("si_psnr"), "db"),
            num(gains.get(name), "gain"),
        ]
        for name, vals in sorted(summary.items(), key=lambda kv: kv[0] != "raw")
    ]
    n_img = len(row.metrics.get("images") or [])
    note = f'<p class="note">Mean over {n_img} image(s); per-image values in metrics.tsv.</p>'
    return (
        table(["image", "PSNR (dB)", "PSNR 0–255 (dB)", "SSIM", "SI-PSNR (dB)", "gain (dB)"], body)
        + note
    )


def no_reference_table(row: Row) -> str:
    """No-reference figures of every output (residual check, next-frame score)."""
    noref = row.metrics.get("no_reference") or {}
    if not isinstance(noref, dict) or not noref:
        return ""
    body = [
        [
            esc(name),
            next_frame_cell(v),
            num(v.get("residual_var")),
            num(v.get("variance_ratio"), "ratio"),
            num((v.get("autocorrelation") or {}).get("y"), "ratio"),
            num((v.get("autocorrelation") or {}).get("x"), "ratio"),
        ]
        for name, v in noref.items()
        if isinstance(v, dict)
    ]
    head = [
        "output",
        "next-frame score",
        "residual var.",
        "residual / noise var.",
        "lag-1 autocorr. y",
        "lag-1 autocorr. x",
    ]
    return table(head, body)


def noise_table(noise: dict[str, Any]) -> str:
    """Poisson-Gaussian parameters per channel."""
    body = [
        [
            str(i),
            num(ch.get("gain")),
            num(ch.get("read_var")),
            num(ch.get("offset")),
            num(ch.get("snr_db"), "db"),
            _correlation_cell(ch.get("spatial_correlation")),
        ]
        for i, ch in enumerate(noise.get("channels") or [])
    ]
    head = ["channel", "gain", "read-noise variance", "offset", "SNR (dB)", "spatial correlation"]
    return table(head, body)


def _correlation_cell(c: dict[str, Any] | None) -> str:
    """The noise-correlation summary in words (``denoise.noise.correlation``)."""
    if not c:
        return "–"
    if not c.get("correlated"):
        return "none detected"
    text = f"lag-1 {c['lag1']:.2f}, variance {c['variance']:.1f}× the pixel-wise fit"
    return (
        f"<b>correlated</b>: {esc(text)}; pn2v assumes independent pixels (bm3d_vst, n2v, "
        "n2v2 and spatiotemporal account for it)"
    )


def _kv(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in sorted(d.items()) if not isinstance(v, (dict, list)))


def training_table(model: dict[str, Any], history: dict[str, Any]) -> str:
    """What was trained, for how long, and how far the losses got."""
    epochs = history.get("epochs") or []
    last = epochs[-1] if epochs else {}
    items = {
        "method": esc(model.get("method", "–")),
        "epochs done / planned": f"{model.get('epochs_done', len(epochs))} / {history.get('epochs_planned', '–')}",
        "stopped": esc(history.get("stopped", "–")),
        "optimiser steps": esc(last.get("steps", model.get("steps_done", "–"))),
        "training time": seconds(last.get("seconds")),
        "final train loss": num(last.get("train_loss")),
        "final validation loss": num(last.get("val_loss")),
        "receptive field / halo (px)": f"{model.get('receptive_field', '–')} / {model.get('halo', '–')}",
        "network": esc(_kv(model.get("hparams") or {})) or "–",
        "objective": esc(_kv(model.get("objective") or {})) or "–",
    }
    return table(["", ""], [[k, v] for k, v in items.items()], "kv")
