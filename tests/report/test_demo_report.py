"""The demo's report (README's first command) in headless Chromium: the whole demo workflow
runs (about 9 minutes on 2 cores, hence ``slow``), then every image decodes, each comparison
section has the panels the demo sheet calls for, and the console has no errors.

Set ``REPORT_SCREENSHOT`` to a path to keep a copy of the full-page screenshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.report.render import assert_report_renders, sheet_specs

pytestmark = pytest.mark.slow


def test_demo_report_in_chromium(tmp_path: Path) -> None:
    wd = tmp_path / "demo"
    shutil.copytree(REPO / "config", wd / "config")
    shutil.copytree(REPO / "demo", wd / "demo")
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run(
        [str(snakemake), "-s", str(REPO / "Snakefile"), "-d", str(wd), "--cores", "2"],
        cwd=wd,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    shot = assert_report_renders(
        wd / "results" / "report.html", sheet_specs(wd / "config" / "datasets.tsv"),
        tmp_path / "chromium",
        frames={"frame_*.png": 3},  # 4 frames: first, middle, last
    )
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["REPORT_SCREENSHOT"])
