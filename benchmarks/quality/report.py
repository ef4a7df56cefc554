"""Tables, ranking agreement and the plot of the quality benchmark (CSV, Markdown, PNG)."""

from __future__ import annotations

import csv
import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SET_TITLES = {
    "fmd_confocal": "FMD confocal pairs (Noise2Fast's 5 images, 512×512 uint8, real noise)",
    "fmd_testset": "FMD test set, 12 configurations (4 raw frames each, real noise)",
    "bsd68": "BSD68, Gaussian σ = 25 (the Noise2Fast paper's realisation)",
    "timelapse": "Simulated time-lapse (SRDTrans via FM2S, 10 frames 490×490, synthetic noise)",
}
#: shared/peers.md, measured on this kind of machine: CAREamics N2V (~100 s), Gaussian oracle
#: (σ), BM3D+VST, per FMD confocal image.
PEERS = {
    "fish": (30.36, 31.14, 1.4, 32.06),
    "BPAE_B": (33.37, 35.70, 1.2, 35.75),
    "BPAE_G": (31.37, 32.56, 0.8, 33.06),
    "BPAE_R": (30.15, 30.93, 0.9, 30.82),
    "mice": (36.62, 36.43, 1.2, 36.18),
}
CSV_FIELDS = (
    "set", "image", "method", "label", "primary", "psnr", "psnr_255", "ssim", "si_psnr",
    "seconds_unit", "frames_scored", "score", "score_seconds", "budget", "sigma", "steps",
    "stop", "load1", "score_next",
)  # fmt: skip
#: The no-reference rankings compared with the true metric: the blind-spot score, the
#: next-frame score (sets with repeated frames), and the best available per image (next-frame
#: where the data have frames, else blind-spot).
SCORES = {
    "best": "next-frame where the data have frames, else blind-spot",
    "score": "blind-spot masked-pixel score",
    "score_next": "next-frame score",
}


_NUMERIC = ("psnr", "psnr_255", "ssim", "si_psnr", "seconds_unit", "frames_scored", "score",
            "score_seconds", "sigma", "steps", "load1", "score_next")  # fmt: skip


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``quality.csv`` (numbers parsed; empty cells dropped)."""
    rows = []
    with Path(path).open(newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {k: v for k, v in raw.items() if v != ""}
            for k in _NUMERIC:
                if k in row:
                    try:
                        row[k] = float(row[k])
                    except ValueError:
                        pass
            rows.append(row)
    return rows


def _order(rows: Sequence[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r["method"] not in seen:
            seen.append(r["method"])
    return seen


def _finite(v: Any) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def ranking_agreement(rows: Sequence[dict[str, Any]], key: str = "best") -> dict[str, Any]:
    """How often a no-reference score orders two methods as the true metric does.

    Within every scored image, every pair of methods that both have a finite score is
    compared: the pair agrees when the lower score goes with the higher primary metric (PSNR,
    or the affine-fitted PSNR where the set says so).  Computed from the scores alone; the
    ground truth enters only through the metric it is compared with.  ``key`` is a column
    (``score``: blind-spot, ``score_next``: next-frame) or ``best``: per image, the next-frame
    score when every method of the image has one, else the blind-spot score (:data:`SCORES`).

    Returns
    -------
    dict
        ``overall`` and ``sets[set]``, each ``{"pairs", "agree", "percent", "text"}``, and
        ``pairs``: one dict per compared pair.
    """
    by_image: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["method"] != "noisy":
            by_image.setdefault((r["set"], r["image"]), []).append(r)
    pairs = []
    for (s, image), all_rs in by_image.items():
        col = key
        if key == "best":
            with_next = [r for r in all_rs if _finite(r.get("score_next"))]
            col = "score_next" if with_next and len(with_next) == len(all_rs) else "score"
        rs = [r for r in all_rs if _finite(r.get(col))]
        for a, b in itertools.combinations(rs, 2):
            metric = a["primary"]
            dm, ds = a[metric] - b[metric], a[col] - b[col]
            pairs.append({"set": s, "image": image, "a": a["method"], "b": b["method"],
                          "metric": metric, "score": col, "delta_metric": dm, "delta_score": ds,
                          "agree": bool(dm * ds < 0 or (dm == 0 and ds == 0))})  # fmt: skip

    def summary(ps: list[dict[str, Any]]) -> dict[str, Any]:
        n, k = len(ps), sum(p["agree"] for p in ps)
        pct = 100.0 * k / n if n else math.nan
        return {"pairs": n, "agree": k, "percent": pct,
                "text": f"{pct:.1f} % ({k}/{n} method pairs)" if n else "no pairs"}  # fmt: skip

    sets = {
        s: summary([p for p in pairs if p["set"] == s])
        for s in dict.fromkeys(p["set"] for p in pairs)
    }
    return {"overall": summary(pairs), "sets": sets, "pairs": pairs}


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float:
    vals = [float(r[key]) for r in rows if r.get(key) is not None and not _nan(r.get(key))]
    return float(np.mean(vals)) if vals else math.nan


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _f(v: float, fmt: str = "{:.2f}") -> str:
    return "–" if v is None or _nan(v) else fmt.format(v)


def _unit_seconds(rs: Sequence[dict[str, Any]]) -> float:
    units = {r["image"].split("/t")[0]: r["seconds_unit"] for r in rs}
    return float(np.mean(list(units.values()))) if units else math.nan


def summary_table(rows: Sequence[dict[str, Any]], set_name: str) -> list[str]:
    """Markdown table of one set: means over its scored images, best primary metric first.

    ``images`` counts the scored images behind each mean (methods that failed, or a merged
    partial run, may cover fewer than the others: compare their means with care).
    """
    rs = [r for r in rows if r["set"] == set_name]
    primary = rs[0]["primary"]
    lines = ["| method | images | PSNR (dB) | PSNR@255 | SSIM | SI-PSNR | s / unit | no-ref score "
             "| budget | steps |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    stats = []
    for m in _order(rs):
        mr = [r for r in rs if r["method"] == m]
        stats.append((m, mr, _mean(mr, primary)))
    for _, mr, _ in sorted(stats, key=lambda t: -t[2] if not _nan(t[2]) else math.inf):
        lines.append(
            f"| {mr[0]['label']} | {len(mr)} | {_f(_mean(mr, 'psnr'))} | {_f(_mean(mr, 'psnr_255'))} | "
            f"{_f(_mean(mr, 'ssim'), '{:.3f}')} | {_f(_mean(mr, 'si_psnr'))} | "
            f"{_f(_unit_seconds(mr), '{:.1f}')} | {_f(_mean(mr, 'score'), '{:.2f}')} | "
            f"{mr[0]['budget']} | {_f(_mean(mr, 'steps'), '{:.0f}')} |"
        )
    return lines


def per_image_table(rows: Sequence[dict[str, Any]], set_name: str) -> list[str]:
    """Markdown table of the primary metric per image (rows) and method (columns)."""
    rs = [r for r in rows if r["set"] == set_name]
    methods = _order(rs)
    images = list(dict.fromkeys(r["image"] for r in rs))
    peers = set_name == "fmd_confocal" and any(i in PEERS for i in images)
    head = ["image", *methods] + (
        ["peers.md: CAREamics / Gauss oracle (σ) / BM3D+VST"] if peers else []
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for image in [*images, "mean"]:
        cells = [image]
        for m in methods:
            mr = [r for r in rs if r["method"] == m and (image == "mean" or r["image"] == image)]
            v = _mean(mr, mr[0]["primary"]) if mr else math.nan
            extra = ""
            if m == "gaussian_oracle" and mr and image != "mean" and mr[0].get("sigma") is not None:
                extra = f" ({mr[0]['sigma']:g})"
            cells.append(_f(v) + extra)
        if peers:
            p = PEERS.get(image)
            if image == "mean":
                vals = [PEERS[i] for i in images if i in PEERS]
                cells.append(" / ".join(f"{np.mean([v[j] for v in vals]):.2f}" for j in (0, 1, 3)))
            else:
                cells.append(f"{p[0]:.2f} / {p[1]:.2f} ({p[2]}) / {p[3]:.2f}" if p else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def budgets_line(rows: Sequence[dict[str, Any]], set_name: str) -> str:
    """The budgets of one set, as stated in its header."""
    rs = [r for r in rows if r["set"] == set_name]
    parts = {}
    for r in rs:
        parts.setdefault(r["budget"], []).append(r["method"])
    units = len({r["image"].split("/t")[0] for r in rs})
    frames = len({r["image"] for r in rs})
    txt = "; ".join(
        f"{', '.join(dict.fromkeys(ms))}: {b}" for b, ms in parts.items() if b not in ("", "–")
    )
    return f"{units} unit(s), {frames} scored image(s). Budgets per unit — {txt}."


def write_outputs(
    rows: Sequence[dict[str, Any]], notes: Sequence[str], info: dict[str, Any], out: Path
) -> list[Path]:
    """Write quality.csv, ranking_pairs.csv, quality.md and quality.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        out / "quality.csv",
        out / "ranking_pairs.csv",
        out / "quality.md",
        out / "quality.png",
    ]
    with paths[0].open("w", newline="") as fh:
        w = csv.DictWriter(fh, CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    agree = ranking_agreement(rows)
    with paths[1].open("w", newline="") as fh:
        fields = ["set", "image", "a", "b", "metric", "score", "delta_metric", "delta_score",
                  "agree"]  # fmt: skip
        w = csv.DictWriter(fh, fields)
        w.writeheader()
        for p in agree["pairs"]:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()})
    paths[2].write_text("\n".join(markdown(rows, notes, info, agree)) + "\n")
    plot(rows, paths[3])
    return paths


def markdown(
    rows: Sequence[dict[str, Any]],
    notes: Sequence[str],
    info: dict[str, Any],
    agree: dict[str, Any],
) -> list[str]:
    """The Markdown report."""
    ls, le = info["load_start"], info["load_end"]
    lines = ["# Denoising quality benchmark", "", f"Command: `{info['command']}`  "]
    if info.get("merged_from"):
        lines.append(
            "Rows merged from: " + ", ".join(f"`{m}`" for m in info["merged_from"])
            + f" (see each run's own quality.md for its wall time); {info['cores']} CPU cores, "
            f"no GPU; mean 1-min load average over the tasks {ls[0]:.2f} (a load above the core "
            "count inflates every timing and shrinks what the time budgets buy).  "
        )  # fmt: skip
    else:
        lines.append(
            f"Run {time.strftime('%Y-%m-%d %H:%M')}, {info['cores']} CPU cores, no GPU; wall "
            f"time {info['wall_s'] / 60:.1f} min (CPU time {info.get('cpu_s', math.nan) / 60:.1f} "
            f"min); load average (1/5/15 min) at start {ls[0]:.2f}/{ls[1]:.2f}/{ls[2]:.2f}, at end "
            f"{le[0]:.2f}/{le[1]:.2f}/{le[2]:.2f} (a load above the core count inflates every "
            "timing and shrinks what the time budgets buy).  "
        )  # fmt: skip
    lines += [
        f"Seed {info['seed']}{' — QUICK run (reduced budgets)' if info.get('quick') else ''}. "
        "Protocol: `benchmarks/quality/README.md` (PSNR = 10·log10(range(GT)²/MSE), float64, "
        "no clipping; PSNR@255 with the range fixed at 255; SI-PSNR after a least-squares "
        "a·x+b fit to GT). 's / unit' is the method's wall time for one training unit "
        "(training + prediction of its scored frames; the oracle's GT sweep is not counted). "
        "'no-ref score' = blind-spot masked-pixel score (lower is better, GT not used).",
        "",
    ]
    for s in dict.fromkeys(r["set"] for r in rows):
        primary = next(r["primary"] for r in rows if r["set"] == s)
        lines += [f"## {s}: {SET_TITLES.get(s, s)}", "", budgets_line(rows, s)
                  + (" Ranked by SI-PSNR (the noisy frames carry an offset)." if primary == "si_psnr" else ""),
                  "", *summary_table(rows, s), "",
                  f"Per image ({'SI-PSNR' if primary == 'si_psnr' else 'PSNR'}, dB):", "",
                  *per_image_table(rows, s), ""]  # fmt: skip
    ranked = sorted({p["a"] for p in agree["pairs"]} | {p["b"] for p in agree["pairs"]})
    blind, nxt = ranking_agreement(rows, "score"), ranking_agreement(rows, "score_next")
    lines += ["## No-reference ranking vs true PSNR", "",
              f"Methods ranked: {', '.join(ranked) or '–'}. Per image, every pair of methods is "
              "compared; a pair agrees when the lower no-reference score goes with the higher "
              "PSNR (SI-PSNR on the time-lapse). Scores (GT not used): blind-spot masked-pixel "
              "score; next-frame score (mean squared difference to the raw neighbouring frames, "
              "sets with repeated frames only); 'best available' = next-frame where the data "
              "have frames, else blind-spot (what the pipeline reports).", "",
              "| set | pairs | best available: agree | % | blind-spot: agree / pairs | % "
              "| next-frame: agree / pairs | % |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def cell(a: dict[str, Any], s: str | None) -> str:
        x = a["overall"] if s is None else a["sets"].get(s)
        if not x or not x["pairs"]:
            return "– | –"
        return f"{x['agree']} / {x['pairs']} | {_f(x['percent'], '{:.1f}')}"

    for s, a in agree["sets"].items():
        lines.append(f"| {s} | {a['pairs']} | {a['agree']} | {_f(a['percent'], '{:.1f}')} | "
                     f"{cell(blind, s)} | {cell(nxt, s)} |")  # fmt: skip
    o = agree["overall"]
    lines += [f"| **all** | {o['pairs']} | {o['agree']} | **{_f(o['percent'], '{:.1f}')}** | "
              f"{cell(blind, None)} | {cell(nxt, None)} |", ""]  # fmt: skip
    bad = [p for p in agree["pairs"] if not p["agree"]]
    if bad:
        lines += ["Disagreeing pairs of the best-available ranking (Δ metric dB, Δ score):", ""]
        lines += [f"- {p['set']}/{p['image']}: {p['a']} vs {p['b']} "
                  f"({p['delta_metric']:+.2f}, {p['delta_score']:+.3g})" for p in bad[:40]]  # fmt: skip
        if len(bad) > 40:
            lines.append(f"- … {len(bad) - 40} more in ranking_pairs.csv")
        lines.append("")
    if notes:
        lines += ["## Notes (skipped methods, fallbacks)", "", *[f"- {n}" for n in notes], ""]
    lines += ["![PSNR per method per set](quality.png)"]
    return lines


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Bar chart of the mean primary metric per method, one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(r["set"] for r in rows))
    fig, axes = plt.subplots(
        1, max(1, len(sets)), figsize=(4.2 * max(1, len(sets)), 4.6), squeeze=False
    )
    cmap = plt.get_cmap("tab10")
    colours = {m: cmap(i % 10) for i, m in enumerate(_order(rows))}
    for ax, s in zip(axes[0], sets, strict=False):
        rs = [r for r in rows if r["set"] == s]
        primary = rs[0]["primary"]
        ms = _order(rs)
        vals = [_mean([r for r in rs if r["method"] == m], primary) for m in ms]
        ax.bar(range(len(ms)), vals, color=[colours[m] for m in ms])
        finite = [v for v in vals if math.isfinite(v)]
        if finite:
            ax.set_ylim(min(finite) - 1.0, max(finite) + 1.0)
        ax.set_xticks(range(len(ms)), ms, rotation=60, ha="right", fontsize=8)
        ax.set_title(s, fontsize=10)
        ax.set_ylabel(("SI-PSNR" if primary == "si_psnr" else "PSNR") + " (dB, mean)")
        for x, v in enumerate(vals):
            if math.isfinite(v):
                ax.text(x, v + 0.05, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
