"""A large sheet stays cheap to plan: 1000 rows in 10 groups (issue 20).

Writes ``--rows`` distinct small uint16 TIFFs (``--size``² pixels, seeded noise) into a temporary
working directory, a sheet of one ``n2v`` row per image split into ``--groups`` equal groups
(column ``group``) and the tiny ``.test`` config pointed at it, then runs the workflow's dry run
(``snakemake -n --quiet rules``: the DAG build and nothing else) once, under
``/usr/bin/time -v`` (wall time, CPU time and peak RSS of the snakemake process), with the
opens of every input TIFF counted (``tests/workflow/open_counter.py``: Python's ``open`` audit
event), and parses the job count by rule from the dry run's summary table.

The sheet read + input check alone (:func:`denoise.config.read_dataset_sheet` and
:func:`denoise.io.sheet_checks.check_sheet_inputs`, the code at the top of
``workflow/rules/common.smk``) is timed in this process too.  Prints a table and one
``RESULT {json}`` line; exits non-zero when a goal is missed (DAG build over 60 s, peak RSS
over 2 GB, a train_group count other than ``--groups``, an input opened more than once).

    .venv/bin/python benchmarks/large_sheet.py [--rows 1000] [--groups 10] [--keep DIR]

Measured on the 2-core development machine, shared with other work (wall times are upper
bounds; the CPU time is what a free core would take), before (df39e91) and after (91ec5dc)
the sheet check read headers only and ``is_ome_zarr_v05`` was cached (``docs/scaling.md``,
"Large sheets"):

===========================================  ==============  ===========================
1000 rows, 10 groups, 64² uint16 TIFFs       before          after (two runs)
===========================================  ==============  ===========================
load average (1 min) at the start            14.9            10.0 / 6.9
``snakemake -n`` wall                        87.4 s          82.0 s / 60.4 s
``snakemake -n`` CPU (user + sys)            33.1 s          22.7 s / 24.2 s
peak RSS of the snakemake process            476 MB          476 MB / 476 MB
sheet read + input check (in-process)        8.56 s          0.71 s / 0.72 s
opens per input TIFF                         2 (all 1000)    1 (all 1000)
jobs: ingest, noise_model, init_output,      same            1000 each
predict, gather_predict, evaluate
jobs: group_members, train_group             same            10, 10 (report 1, all 1;
                                                             total 6022)
===========================================  ==============  ===========================
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Goals of issue 20.
MAX_WALL_S = 60.0
MAX_RSS_GB = 2.0


def write_inputs(wd: Path, rows: int, groups: int, size: int) -> Path:
    """``rows`` TIFFs under ``wd/data``, the sheet and the config; returns the config path."""
    import tifffile

    data = wd / "data"
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["name\turi\taxes\tmethod\tgroup"]
    per_group = -(-rows // groups)
    for i in range(rows):
        img = rng.poisson(100, (size, size)).astype(np.uint16)
        tifffile.imwrite(data / f"img_{i:04d}.tif", img)
        lines.append(f"r{i:04d}\tdata/img_{i:04d}.tif\tyx\tn2v\tg{i // per_group:02d}")
    (wd / "config").mkdir(exist_ok=True)
    (wd / "config" / "datasets.tsv").write_text("\n".join(lines) + "\n")
    cfg = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    cfg["datasets"] = "config/datasets.tsv"
    cfg["results"] = "results"
    path = wd / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake_args(wd: Path, config: Path) -> list[str]:
    """The dry run: plan every job of the sheet, print the summary table, not each job."""
    return [
        "-s", str(REPO / "Snakefile"), "-d", str(wd), "--configfile", str(config),
        "--cores", "2", "-n", "--quiet", "rules",
    ]  # fmt: skip


def jobs_by_rule(text: str) -> dict[str, int]:
    """The dry run's "Job stats" table (``job  count`` lines) as {rule: count}."""
    counts: dict[str, int] = {}
    in_table = False
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif in_table and counts and not line.strip().startswith("-"):
            break
    return counts


def dry_run(wd: Path, config: Path) -> dict:
    """Wall time, CPU time, peak RSS, job counts and opens per input of one ``snakemake -n``
    under ``/usr/bin/time -v``, its opens counted by ``tests/workflow/open_counter.py``."""
    from tests.workflow.open_counter import opens_histogram, run_counting_opens

    t0 = time.perf_counter()
    proc, counts = run_counting_opens(
        snakemake_args(wd, config), r"img_\d+\.tif$", wd, prefix=("/usr/bin/time", "-v")
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{proc.stdout}\n{proc.stderr}")

    def field(name: str) -> float:
        return float(re.search(rf"{name}: ([\d.]+)", proc.stderr).group(1))

    cpu = field(r"User time \(seconds\)") + field(r"System time \(seconds\)")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(field(r"Maximum resident set size \(kbytes\)") / 1024, 1),
        "jobs": jobs_by_rule(proc.stdout + proc.stderr),
        "opens": opens_histogram(counts, sorted((wd / "data").glob("img_*.tif"))),
    }


def check_in_process(wd: Path) -> float:
    """Seconds to read the sheet and check every input as ``common.smk`` does."""
    from denoise.config import read_dataset_sheet
    from denoise.io.sheet_checks import check_sheet_inputs

    cwd = os.getcwd()
    os.chdir(wd)
    try:
        t0 = time.perf_counter()
        rows = read_dataset_sheet("config/datasets.tsv")
        check_sheet_inputs(rows, "config/datasets.tsv")
        return round(time.perf_counter() - t0, 2)
    finally:
        os.chdir(cwd)


def report(result: dict) -> None:
    """Print the table and the RESULT line."""
    jobs = ", ".join(f"{k} {v}" for k, v in result["jobs"].items() if k != "total")
    print(f"rows {result['rows']}, groups {result['groups']}, load average {result['load_1m']}")
    print(f"snakemake -n wall (DAG build)   {result['wall_s']} s (goal < {MAX_WALL_S:.0f} s)")
    print(f"  CPU time (user + sys)         {result['cpu_s']} s")
    print(f"peak RSS of snakemake           {result['peak_rss_mb']} MB (goal < 2 GB)")
    print(f"sheet read + input check        {result['check_s']} s (in-process)")
    print(f"jobs by rule                    {jobs}; total {result['jobs'].get('total')}")
    print(f"opens per input TIFF            {result['opens']} (opens: inputs)")
    print("RESULT " + json.dumps(result))


def failures(result: dict, groups: int) -> list[str]:
    """The goals the run missed."""
    bad = []
    if result["wall_s"] > MAX_WALL_S:
        bad.append(
            f"dry run took {result['wall_s']} s (> {MAX_WALL_S} s; CPU {result['cpu_s']} s, "
            f"load average {result['load_1m']:.1f})"
        )
    if result["peak_rss_mb"] > MAX_RSS_GB * 1024:
        bad.append(f"peak RSS {result['peak_rss_mb']} MB (> {MAX_RSS_GB} GB)")
    if result["jobs"].get("train_group") != groups:
        bad.append(f"{result['jobs'].get('train_group')} train_group jobs, not {groups}")
    if set(result["opens"]) != {1}:
        bad.append(f"inputs opened {result['opens']} times (opens: inputs), not once each")
    return bad


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--groups", type=int, default=10)
    p.add_argument("--size", type=int, default=64, help="Edge of each square input image.")
    p.add_argument("--keep", default=None, help="Build under this directory and keep it.")
    args = p.parse_args()
    wd = Path(args.keep or tempfile.mkdtemp(prefix="large_sheet_"))
    try:
        config = write_inputs(wd, args.rows, args.groups, args.size)
        result = {"rows": args.rows, "groups": args.groups, "load_1m": os.getloadavg()[0]}
        result |= dry_run(wd, config)
        result["check_s"] = check_in_process(wd)
        report(result)
    finally:
        if not args.keep:
            shutil.rmtree(wd, ignore_errors=True)
    bad = failures(result, args.groups)
    if bad:
        raise SystemExit("; ".join(bad))


if __name__ == "__main__":
    main()
