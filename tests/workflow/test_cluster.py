"""The cluster submission path without SLURM: Snakemake's cluster-generic executor submits
every job through workflow/scripts/local_submit.sh, which runs it as its own process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.workflow.test_workflow import _sm, _workdir

# Slow since the real SLURM tests (test_slurm.py) cover the submission path in the default run.
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_cluster_generic_one_submission_per_job(tmp_path, monkeypatch):
    sheet = (
        "name\turi\taxes\tmethod\tground_truth\tground_truth_axes\n"
        "fish\t.test/data/fish_noisy.tif\tyx\tn2v\t.test/data/fish_gt.tif\tyx\n"
    )
    wd = _workdir(tmp_path, sheet=sheet)
    shutil.copytree(REPO / "workflow" / "scripts", wd / "workflow" / "scripts")
    log = tmp_path / "submissions.log"
    monkeypatch.setenv("DENOISE_SUBMIT_LOG", str(log))
    proc = _sm(
        wd,
        "--workflow-profile", str(REPO / "workflow" / "profiles" / "local-cluster"),
        "--set-scatter", "split=2",
        "--jobs", "2",
    )
    out = proc.stdout + proc.stderr
    assert (wd / "results" / "report.html").is_file()
    # Every rule instance except the local `all` target was submitted exactly once.
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    expected = {
        "ingest": 1, "noise_model": 1, "train": 1, "init_output": 1, "predict": 2,
        "gather_predict": 1, "evaluate": 1, "report": 1,
    }
    assert len(lines) == sum(expected.values()), (lines, out[-3000:])
    for rule, n in expected.items():
        got = sum(1 for ln in lines if f"snakejob.{rule}." in ln)
        assert got == n, f"{rule}: {got} submissions, expected {n}"
    assert Path(wd / "results" / "fish" / "denoised.ome.zarr").is_dir()
