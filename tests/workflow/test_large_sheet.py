"""Large sheets stay cheap (issue 20): each input is opened once while the DAG is built.

``benchmarks/large_sheet.py`` measures a 1000-row sheet (DAG build time, peak memory, jobs by
rule); here a 20-row sheet in 4 groups is planned with the same instrument
(``tests/workflow/open_counter.py``), and :func:`~denoise.io.readers.probe_input` (the sheet
check's header-only read) is pinned to what :func:`~denoise.io.readers.open_input` reports.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from denoise.io.axes import AxesError
from denoise.io.readers import InputError, open_input, probe_input
from tests.conftest import REPO
from tests.workflow.open_counter import opens_histogram, run_counting_opens
from tests.workflow.test_workflow import _workdir


@pytest.mark.parametrize(
    ("uri", "axes"),
    [
        (".test/data/fish_noisy.tif", "yx"),
        (".test/data/fish_noisy.tif", ""),
        (".test/data/nuclei3d.tif", "zyx"),
        (".test/data/tl_*.png", "tyx"),
    ],
)
def test_probe_input_agrees_with_open_input(uri, axes):
    image = open_input(str(REPO / uri), axes)
    assert probe_input(str(REPO / uri), axes) == (image.axes, tuple(image.data.shape))


def test_probe_input_rejects_what_open_input_rejects(tmp_path):
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    for uri, axes in ((empty, ""), (junk, ""), (stack, "yx"), (tmp_path / "missing.tif", "")):
        with pytest.raises((InputError, AxesError)) as probed:
            probe_input(str(uri), axes)
        with pytest.raises((InputError, AxesError)) as opened:
            open_input(str(uri), axes)
        assert str(probed.value) == str(opened.value)


@pytest.mark.parametrize("method", ["n2v", ""])
def test_twenty_row_sheet_opens_each_input_once(tmp_path, method):
    """Also with empty method cells: the auto rule's header read serves the sheet check, and
    grouped single images get a trained method (n2v), so the groups still train once each."""
    rows, groups = 20, 4
    sheet = ["name\turi\taxes\tmethod\tgroup"]
    data = tmp_path / "inputs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(rows):
        tifffile.imwrite(data / f"in_{i:02d}.tif", rng.poisson(50, (32, 32)).astype(np.uint16))
        sheet.append(f"r{i:02d}\t{data}/in_{i:02d}.tif\tyx\t{method}\tg{i % groups}")
    wd = _workdir(tmp_path, sheet="\n".join(sheet) + "\n")
    shutil.rmtree(wd / ".test")
    args = ["-s", str(REPO / "Snakefile"), "-d", str(wd), "--cores", "2", "-n"]
    proc, counts = run_counting_opens([*args, "--quiet", "rules"], r"in_\d+\.tif$", wd)
    assert proc.returncode == 0, proc.stderr
    assert opens_histogram(counts, sorted(data.glob("in_*.tif"))) == {1: rows}
    jobs = dict(
        line.split()
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.startswith("train_group ")
    )
    assert jobs == {"train_group": str(groups)}
