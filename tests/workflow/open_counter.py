"""Count how often a Snakemake run opens each of some files (the sheet's inputs).

The run is ``python -c HOOK <snakemake arguments>``: the hook adds a :func:`sys.addaudithook`
listener for Python's ``open`` audit event (raised by ``open``, ``io.open``, ``os.open``, so by
tifffile, imageio, zarr's local store, numpy's ``load``) and counts, by absolute path, the opened
files whose path matches a regular expression; the counts are written as JSON when the process
exits.  It sees the Snakemake process only (a dry run starts no other), and costs one regular
expression match per opened file.  Used by ``tests/workflow/test_large_sheet.py`` and
``benchmarks/large_sheet.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HOOK = """
import atexit, collections, json, os, re, sys
_pattern = re.compile(os.environ["OPEN_COUNT_PATTERN"])
_counts = collections.Counter()
def _hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if _pattern.search(path):
            _counts[path] += 1
sys.addaudithook(_hook)
def _dump():
    with open(os.environ["OPEN_COUNT_OUT"], "w") as fh:
        json.dump(_counts, fh)
atexit.register(_dump)
from snakemake.cli import main
sys.argv[0] = "snakemake"
main()
"""


def run_counting_opens(
    args: list[str], pattern: str, cwd: Path, prefix: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess, Counter[str]]:
    """Run ``snakemake *args`` (after ``prefix``, e.g. ``/usr/bin/time -v``) in ``cwd``.

    Returns
    -------
    tuple
        The finished process (text output captured) and {absolute path: opens} of the files
        whose path matches ``pattern``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "opens.json"
        env = dict(os.environ, OPEN_COUNT_PATTERN=pattern, OPEN_COUNT_OUT=str(out))
        cmd = [*prefix, sys.executable, "-c", HOOK, *args]
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        counts = Counter(json.loads(out.read_text())) if out.is_file() else Counter()
    return proc, counts


def opens_histogram(counts: Counter[str], paths: list[Path]) -> dict[int, int]:
    """{number of opens: number of ``paths`` opened that many times} (0: never opened)."""
    per_path = Counter(counts.get(str(p.resolve()), 0) for p in paths)
    return dict(sorted(per_path.items()))
