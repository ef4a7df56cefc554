"""Quality benchmark: every denoiser we have, the classical baselines and CAREamics, side by side.

For each ground-truth data set of ``shared/data`` (FMD confocal pairs, FMD test set per
configuration, BSD68 σ = 25, the simulated time-lapse) every method runs on the same machine at
a stated wall-clock budget; the table gives PSNR (range of GT, and at 255), SSIM, the
affine-fitted PSNR, seconds, and the no-reference blind-spot score (``masked_pixel_score``),
with the share of method pairs that the score orders the same way as the true PSNR.  Protocol
and budgets: ``benchmarks/quality/README.md``.  One command from the repository root::

    .venv/bin/python benchmarks/quality/run.py [--sets fmd_confocal,fmd_testset,bsd68,timelapse]
        [--methods n2v,n2v2,...] [--budget-s 60] [--out benchmarks/quality/results] [--quick]

Writes ``quality.csv`` (one row per scored image and method), ``quality.md``,
``ranking_pairs.csv`` and ``quality.png`` into ``--out``.  Optional methods that are not
available (PN2V, DecoNoising, CAREamics, BM3D) are skipped with a printed note.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (a shared 2-core machine); before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import logging
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _p in (str(REPO), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import report  # noqa: E402
from datasets import DATA, SETS, Item, load  # noqa: E402
from methods import LABELS, RUNNERS, SCORE_FRACTION, Context, availability, run_method  # noqa: E402

#: Methods never scored by the no-reference criterion (and why).
UNRANKED = {
    "noisy": "the input itself, not a method",
    "noise2fast": "its denoise_fn would retrain the network on the masked image (minutes)",
    "bm3d_vst_oracle": "a GT-informed reference row; scoring it would cost another BM3D run",
    "auto": "it repeats the chosen method's row (scored there)",
}
#: Methods left out of a set's default plan to keep the whole run under an hour on 2 cores.
_PEER = "time (the peer is compared on fmd_confocal)"
PLAN_SKIPS: dict[str, dict[str, str]] = {
    "fmd_testset": {"noise2fast": "time (12 configurations)", "careamics_n2v": _PEER,
                    "bm3d_vst_oracle": "time"},
    "bsd68": {"careamics_n2v": _PEER},
    "timelapse": {"noise2fast": "time", "careamics_n2v": _PEER, "bm3d_vst_oracle": "time"},
}  # fmt: skip
#: Methods whose tasks run after all others (no time budget; minutes per image under load).
DEFERRED = ("noise2fast",)
#: Methods run without ``--methods``: all but the BM3D oracle row (noise model fitted to
#: noisy − GT), which measured no better than our blind fit on fish (31.65 vs 31.68 dB).
#: N2V2 is left out too (weaker than N2V at these budgets: 28.6 vs 31.9 dB on fmd_confocal at
#: 100 s; ``--methods`` runs it), to keep the default run under an hour on 2 quiet cores.
DEFAULT_METHODS = [m for m in RUNNERS if m not in ("bm3d_vst_oracle", "n2v2")]
#: Training budget of the trained networks per set, as a fraction of ``--budget-s``.
BUDGET_SHARE = {"fmd_confocal": 1.0, "fmd_testset": 0.2, "bsd68": 0.3, "timelapse": 0.5}
TRAINED = ("n2v", "n2v2", "pn2v", "deconoising", "careamics_n2v")

log = logging.getLogger("quality")


def budgets_for(budget_s: float) -> dict[str, float]:
    """Training seconds of the trained networks per set."""
    return {s: round(budget_s * f, 1) for s, f in BUDGET_SHARE.items()}


def planned_seconds(item: Item, method: str, ctx: Context) -> float:
    """Rough wall time of one task on a quiet 2-core machine (for the ETA only)."""
    mpx = item.gt.size / 512**2
    n = len(item.frames)
    if method in TRAINED:
        return ctx.budget(item) + 2.0 * n + (15.0 if method == "careamics_n2v" else 0.0)
    return {"noise2fast": 150.0 * mpx * n, "bm3d_vst": 14.0 * mpx * n, "bm3d_vst_oracle": 7.0 * mpx * n,
            "gaussian": 1.0 * n, "gaussian_oracle": 1.0 * n}.get(method, 0.1)  # fmt: skip


def metrics_row(item: Item, k: int, out: np.ndarray) -> dict[str, float]:
    """PSNR (range of GT and 255), SSIM and affine-fitted PSNR of one scored frame."""
    from denoise.metrics.image import psnr, psnr_255, si_psnr, ssim

    gt = item.gt
    return {"psnr": psnr(gt, out), "psnr_255": psnr_255(gt, out), "ssim": ssim(gt, out),
            "si_psnr": si_psnr(gt, out)}  # fmt: skip


def run_benchmark(
    items: Sequence[Item],
    methods: Sequence[str],
    ctx: Context,
    plan_skips: dict[str, dict[str, str]] | None = None,
    say: Callable[[str], None] = print,
    on_task: Callable[[list[dict[str, Any]], list[str]], None] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run every method on every item and score every scored frame.

    ``on_task(rows, notes)`` is called after every finished task (e.g. to write partial
    tables, so a long run that is interrupted still leaves its results).

    Returns
    -------
    rows, notes
        One row per (scored frame, method) with metrics, seconds and the no-reference score;
        the notes (skipped methods, fallbacks, failures).
    """
    from denoise.metrics.noref import masked_pixel_score, next_frame_score

    plan_skips = plan_skips or {}
    notes: list[str] = []
    usable = []
    for m in methods:
        why = availability(m, ctx)
        if why:
            notes.append(f"{m}: skipped: {why}")
            say(f"NOTE {m} skipped: {why}")
        else:
            usable.append(m)
    tasks = [(it, m) for it in items for m in usable if m not in plan_skips.get(it.set, {})]
    # Unbudgeted, slow methods last: an interrupted run still has every other row.
    tasks.sort(key=lambda t: t[1] in DEFERRED)
    for s in sorted({it.set for it in items}):
        for m, why in plan_skips.get(s, {}).items():
            if m in usable:
                notes.append(f"{m}: not run on {s} ({why})")
    planned = [planned_seconds(it, m, ctx) for it, m in tasks]
    done_planned, done_actual, t_run = 0.0, 0.0, time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, ((item, method), plan) in enumerate(zip(tasks, planned, strict=True)):
        load1 = os.getloadavg()[0]
        say(f"[{i + 1}/{len(tasks)}] {item.set}/{item.name} {method} "
            f"(planned ~{plan:.0f} s, load {load1:.1f}) ...")  # fmt: skip
        t0 = time.perf_counter()
        try:
            out, seconds, extra = run_method(method, item, ctx)
        except Exception as exc:  # a failing method is reported, the benchmark goes on
            traceback.print_exc()
            notes.append(
                f"{method} failed on {item.set}/{item.name}: {exc.__class__.__name__}: {exc}"
            )
            say(f"    FAILED: {exc}")
            continue
        rows.extend(
            _score_rows(item, method, out, seconds, extra, load1, ctx, masked_pixel_score,
                        next_frame_score)
        )  # fmt: skip
        if extra.get("note"):
            notes.append(f"{method} on {item.set}/{item.name}: {extra['note']}")
        took = time.perf_counter() - t0
        done_planned += plan
        done_actual += took
        left = sum(planned[i + 1 :]) * (done_actual / max(done_planned, 1e-9))
        last = [r for r in rows if r["method"] == method and r["image"].startswith(item.name)]
        shown = ", ".join(f"{r['psnr']:.2f}" for r in last)
        say(f"    {took:.1f} s (method {seconds:.1f} s), PSNR {shown} dB; elapsed "
            f"{time.perf_counter() - t_run:.0f} s, ETA {left:.0f} s")  # fmt: skip
        if on_task is not None:
            on_task(rows, notes)
    return rows, notes


def _score_rows(
    item: Item,
    method: str,
    out: np.ndarray,
    seconds: float,
    extra: dict[str, Any],
    load1: float,
    ctx: Context,
    score: Callable[..., float],
    next_score: Callable[..., float],
) -> list[dict[str, Any]]:
    fns = extra.get("score_fns") if method not in UNRANKED else None
    n_t = item.noisy.shape[0] if item.noisy.ndim == 3 else 1
    rows = []
    for j, k in enumerate(item.frames):
        row: dict[str, Any] = {
            "set": item.set, "image": item.image_name(k), "method": method,
            "label": LABELS.get(method, method), "primary": item.primary,
            **metrics_row(item, k, out[j]),
            "seconds_unit": seconds, "frames_scored": len(item.frames),
            "budget": extra.get("budget", ""), "load1": round(load1, 2),
        }  # fmt: skip
        for key in ("sigma", "steps", "stop"):
            val = extra.get(key)
            if isinstance(val, list):
                row[key] = val[j]
            elif val is not None:
                row[key] = val
        t0 = time.perf_counter()
        row["score"] = (
            score(item.plane(k), fns[j], SCORE_FRACTION, ctx.score_seed, 1) if fns else math.nan
        )
        row["score_seconds"] = time.perf_counter() - t0
        # Repeated frames: the estimate against the raw neighbouring frames (needs no masking,
        # so every method but the input itself gets it).
        near = [item.noisy[u] for u in (k - 1, k + 1) if 0 <= u < n_t]
        row["score_next"] = next_score(out[j], near) if near and method != "noisy" else math.nan
        rows.append(row)
    return rows


def merge(csvs: Sequence[str], out: Path, argv: Sequence[str]) -> int:
    """Re-render tables, agreement and plot from several ``quality.csv`` files."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in csvs:
        for row in report.read_csv(Path(path)):
            merged[(row["set"], row["image"], row["method"])] = row
    order = {s: i for i, s in enumerate(SETS)}
    rows = sorted(merged.values(), key=lambda r: order.get(r["set"], len(order)))
    loads = [float(r["load1"]) for r in rows if isinstance(r.get("load1"), float)]
    mean_load = float(np.mean(loads)) if loads else math.nan
    info = {"command": " ".join([".venv/bin/python", "benchmarks/quality/run.py", *argv]),
            "merged_from": list(csvs), "wall_s": math.nan, "cpu_s": math.nan,
            "load_start": (mean_load,) * 3, "load_end": (mean_load,) * 3,
            "cores": os.cpu_count(), "seed": 0}  # fmt: skip
    notes = [f"{m}: not in the no-reference ranking ({why})" for m, why in UNRANKED.items()]
    paths = report.write_outputs(rows, notes, info, out)
    for key in report.SCORES:
        text = report.ranking_agreement(rows, key)["overall"]["text"]
        print(f"no-reference ranking agreement ({report.SCORES[key]}): {text}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sets", default=",".join(SETS), help="comma-separated subset of " + ",".join(SETS)
    )
    ap.add_argument("--images", default="", help="keep only these unit names (comma-separated)")
    ap.add_argument("--methods", default="", help="comma-separated subset of " + ",".join(RUNNERS)
                    + " (default: all, minus the per-set plan skips)")  # fmt: skip
    ap.add_argument("--budget-s", type=float, default=60.0,
                    help="training seconds per image for the trained networks on fmd_confocal; "
                         "other sets get fixed shares (fmd_testset 0.2, bsd68 0.3, timelapse 0.5)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--quick", action="store_true",
                    help="one unit and one frame per set, 10 %% of the budgets, Noise2Fast ≤ 200 steps")  # fmt: skip
    ap.add_argument("--n2f-max-steps", type=int, default=None,
                    help="cap on Noise2Fast's steps (default: PredictConfig's 4000, i.e. its own "
                         "stopping rule; 320 is what the authors' script did in 18 min on fish)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--careamics-python", type=Path, default=REPO / ".venv-careamics" / "bin" / "python"
    )
    ap.add_argument("--work", type=Path, default=None, help="keep stores and models here")
    ap.add_argument("-v", "--verbose", action="store_true", help="log the methods' INFO lines")
    ap.add_argument("--merge", default="",
                    help="only re-render: merge these quality.csv files (comma-separated; a later "
                         "file's rows replace an earlier one's for the same set/image/method) "
                         "into --out")  # fmt: skip
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge.split(","), args.out, sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip
    sets = [s for s in args.sets.split(",") if s]
    unknown = [m for m in args.methods.split(",") if m and m not in RUNNERS]
    if unknown or any(s not in SETS for s in sets):
        ap.error(f"unknown method(s) {unknown} or set(s) in {sets}")
    methods = [m for m in args.methods.split(",") if m] or DEFAULT_METHODS
    skips = {} if args.methods else PLAN_SKIPS
    budget = args.budget_s * (0.1 if args.quick else 1.0)
    t_start, load_start = time.perf_counter(), os.getloadavg()
    items = [it for s in sets for it in load(s, args.data, args.quick)]
    if args.images:
        keep = set(args.images.split(","))
        items = [it for it in items if it.name in keep]
    command = " ".join(
        [".venv/bin/python", "benchmarks/quality/run.py", *(sys.argv[1:] if argv is None else argv)]
    )
    extra_notes = [f"{m}: not in the no-reference ranking ({why})" for m, why in UNRANKED.items()
                   if m in methods]  # fmt: skip

    def info() -> dict[str, Any]:
        t = os.times()
        return {"command": command, "wall_s": time.perf_counter() - t_start,
                "cpu_s": t.user + t.system + t.children_user + t.children_system,
                "load_start": load_start, "load_end": os.getloadavg(), "cores": os.cpu_count(),
                "budgets": budgets_for(budget), "seed": args.seed, "quick": args.quick}  # fmt: skip

    def partial(rows: list[dict[str, Any]], notes: list[str]) -> None:
        report.write_outputs(rows, [*notes, *extra_notes, "PARTIAL: the run is still going"],
                             info(), args.out)  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="quality_") as tmp:
        ctx = Context(work=args.work or Path(tmp), seed=args.seed, budgets=budgets_for(budget),
                      careamics_python=args.careamics_python,
                      n2f_max_steps=args.n2f_max_steps or (200 if args.quick else 4000))  # fmt: skip
        rows, notes = run_benchmark(items, methods, ctx, skips, on_task=partial)
    final = info()
    paths = report.write_outputs(rows, [*notes, *extra_notes], final, args.out)
    for key in report.SCORES:
        text = report.ranking_agreement(rows, key)["overall"]["text"]
        print(f"no-reference ranking agreement ({report.SCORES[key]}): {text}")
    print(f"wall {final['wall_s']:.0f} s, CPU {final['cpu_s']:.0f} s, load average start "
          f"{load_start[0]:.2f} end {final['load_end'][0]:.2f}; wrote "
          f"{', '.join(str(p) for p in paths)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
