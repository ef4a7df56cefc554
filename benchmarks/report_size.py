"""Size of the HTML report of a 50-row sheet (it must stay under 10 MB).

Builds a 50-row results directory from the tiny ``.test`` data: the inputs are copied under
several names (each copy is its own input, so the report has one comparison section per copy),
and every input is run with fast methods (``gaussian``, ``bm3d_vst``) and a few trained ones
with the tiny config's few steps (``n2v``, ``pn2v`` with its uncertainty output,
``deconoising`` with its deconvolved output on the stacks).  The stages run in-process through
the ``denoise`` CLI (``tests/report/tiny.py``), then ``build_report`` writes the report with the
default ``report.crop``.  Prints one ``RESULT {json}`` line.

    .venv/bin/python benchmarks/report_size.py [--rows 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LIMIT = 10 * 1024 * 1024

#: (input file(s), axes, ground truth, methods) of each copied input.
INPUTS = (
    ("fish_noisy.tif", "yx", "fish_gt.tif", ("gaussian", "bm3d_vst", "n2v", "pn2v")),
    ("tl_*.png", "tyx", "timelapse_gt.png", ("gaussian", "bm3d_vst", "n2v")),
    ("nuclei3d.tif", "zyx", "", ("gaussian", "deconoising", "n2v")),
)


def copy_inputs(src: Path, data: Path, copies: int) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """``copies`` renamed copies of every tiny input (a PNG series copied as a directory)."""
    import shutil

    data.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(copies):
        for uri, axes, gt, methods in INPUTS:
            if "*" in uri:
                (data / f"tl{k}").mkdir(parents=True, exist_ok=True)
                for f in sorted(src.glob(uri)):
                    shutil.copy(f, data / f"tl{k}" / f.name)
                new = f"tl{k}/{uri}"
            else:
                new = f"{Path(uri).stem}_{k}{Path(uri).suffix}"
                shutil.copy(src / uri, data / new)
            if gt:
                shutil.copy(src / gt, data / gt)
            out.append((new, axes, gt, methods))
    return out


def sheet(inputs: list[tuple[str, str, str, tuple[str, ...]]], n_rows: int) -> list:
    """The first ``n_rows`` rows, input by input (every input with all its methods)."""
    from tests.report.tiny import Spec

    specs = []
    for i, (uri, axes, gt, methods) in enumerate(inputs):
        for m in methods:
            pn = "poisson_gaussian" if m == "pn2v" else ""
            specs.append(Spec(f"in{i}_{m}", uri, axes, m, gt, "yx" if gt else "", pn))
    return specs[:n_rows]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=50)
    p.add_argument("--keep", default=None, help="Build under this directory and keep it.")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from denoise.report.html import build_report
    from denoise.settings import ReportConfig
    from tests.report.tiny import TEST_DATA, _blocks, run_row

    root = Path(args.keep or tempfile.mkdtemp(prefix="report_size_"))
    data, res = root / "data", root / "results"
    per_copy = sum(len(m) for *_, m in INPUTS)
    inputs = copy_inputs(TEST_DATA, data, -(-args.rows // per_copy))
    specs = sheet(inputs, args.rows)
    t0 = time.perf_counter()
    blocks = _blocks()
    for spec in specs:
        run_row(spec, data, res, blocks)
    t1 = time.perf_counter()
    out = root / "report.html"
    build_report(res, [s.name for s in specs], out, ReportConfig())
    t2 = time.perf_counter()
    size = out.stat().st_size
    result = {
        "rows": len(specs),
        "inputs": len({s.uri for s in specs}),
        "report_bytes": size,
        "report_mb": round(size / 1024 / 1024, 2),
        "limit_mb": LIMIT // 1024 // 1024,
        "images": out.read_text().count("<img"),
        "run_s": round(t1 - t0, 1),
        "report_s": round(t2 - t1, 1),
        "report": str(out),
    }
    print("RESULT " + json.dumps(result))
    if size >= LIMIT:
        raise SystemExit(f"report of {len(specs)} rows is {size} bytes, over the 10 MB limit")


if __name__ == "__main__":
    main()
