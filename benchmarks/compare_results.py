"""Compare two results directories: every array of every ``*.ome.zarr`` store bit for bit, and
every numeric value of every ``metrics.json`` (timings left out).

Used to show that a refactor changed no number: run the same config with two commits (e.g. two
``git worktree`` checkouts, each with ``PYTHONPATH`` set to its own tree, ``--cores 2``), then::

    python benchmarks/compare_results.py OLD/results-test NEW/results-test

Exits 1 when anything differs.
"""
import json
import sys
from pathlib import Path

import numpy as np
import zarr

a, b = Path(sys.argv[1]), Path(sys.argv[2])
bad = 0
n = 0
for store in sorted(a.glob("*/*.ome.zarr")):
    other = b / store.relative_to(a)
    ga, gb = zarr.open_group(str(store), mode="r"), zarr.open_group(str(other), mode="r")
    for name, arr in ga.arrays():
        x, y = arr[...], gb[name][...]
        same = x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
        n += 1
        if not same:
            bad += 1
            print("DIFF", store.relative_to(a), name, x.dtype, y.dtype, float(np.nanmax(np.abs(x.astype(float) - y.astype(float)))))
        else:
            print("same", store.relative_to(a), name, x.shape, x.dtype)
def flat(d, p=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from flat(v, f"{p}.{k}")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield p, d
for m in sorted(a.glob("*/metrics.json")):
    ma = dict(flat(json.loads(m.read_text())))
    mb = dict(flat(json.loads((b / m.relative_to(a)).read_text())))
    keys = [k for k in ma if k in mb and not any(s in k for s in ("seconds", "time", "elapsed"))]
    diffs = [(k, ma[k], mb[k]) for k in keys if ma[k] != mb[k]]
    print("metrics", m.parent.name, len(keys), "values compared;", "identical" if not diffs else f"DIFF {diffs[:5]}", "| only old:", sorted(set(ma) - set(mb))[:5], "only new:", sorted(set(mb) - set(ma))[:5])
    bad += bool(diffs)
print(f"{n} arrays compared, {bad} differences")
sys.exit(1 if bad else 0)
