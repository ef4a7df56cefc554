"""Concurrent runs: a second workflow on the same directory is refused by Snakemake's lock, a
stale lock left by a killed Snakemake is reported with the way out, and two scattered predict
jobs running at the same time never write the same unit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.robustness.conftest import Dataset, fish
from tests.workflow.test_workflow import _env, _sm, _workdir

ONE_DATASET = (
    "name\turi\taxes\tmethod\tground_truth\tground_truth_axes\n"
    "fish\t.test/data/fish_noisy.tif\tyx\tn2v\t.test/data/fish_gt.tif\tyx\n"
)
#: Training long enough to hold the lock while the second workflow tries (killed afterwards).
LONG_TRAIN = {"train": {"epochs": 500, "steps_per_epoch": 50, "threads": 1}}


def _start_workflow(wd: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(Path(__file__).parents[2] / "Snakefile"),
           "-d", str(wd), "--cores", "1"]
    log = (wd / "first.log").open("w")
    return subprocess.Popen(cmd, cwd=wd, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                            start_new_session=True)


def _wait_for_lock(wd: Path, first: subprocess.Popen, timeout: float = 180.0) -> None:
    locks = wd / ".snakemake" / "locks"
    deadline = time.monotonic() + timeout
    while not (locks.is_dir() and any(locks.iterdir())):
        if first.poll() is not None:
            pytest.fail("first workflow ended before locking:\n" + (wd / "first.log").read_text()[-3000:])
        assert time.monotonic() < deadline, "first workflow never took the lock"
        time.sleep(0.1)


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)


def test_second_workflow_on_same_directory_is_refused(tmp_path):
    wd = _workdir(tmp_path, config_overrides=LONG_TRAIN, sheet=ONE_DATASET)
    first = _start_workflow(wd)
    try:
        _wait_for_lock(wd, first)
        # Even when told to redo the first one's running (incomplete) jobs, the lock refuses it.
        second = _sm(wd, "--rerun-incomplete", check=False)
        out = second.stdout + second.stderr
        assert second.returncode != 0
        assert "Directory cannot be locked" in out and "--unlock" in out
        # A plain second run is refused too: by the lock, or (once the first one has a job
        # running) by Snakemake's incomplete-output check, which comes before the lock.
        plain = _sm(wd, check=False)
        out = plain.stdout + plain.stderr
        assert plain.returncode != 0
        assert "Directory cannot be locked" in out or "Incomplete files" in out
        assert first.poll() is None, "the first workflow must be unaffected"
    finally:
        _kill_group(first, signal.SIGTERM)


@pytest.mark.slow
def test_stale_lock_after_killed_workflow_names_the_way_out(tmp_path):
    """A Snakemake killed with SIGKILL (node crash) leaves its lock; the next run says how to go on."""
    wd = _workdir(tmp_path, config_overrides=LONG_TRAIN, sheet=ONE_DATASET)
    first = _start_workflow(wd)
    _wait_for_lock(wd, first)
    _kill_group(first, signal.SIGKILL)
    refused = _sm(wd, check=False)
    assert "Directory cannot be locked" in refused.stdout + refused.stderr
    _sm(wd, "--unlock")
    dry = _sm(wd, "-n", "--rerun-incomplete")
    assert "train" in dry.stdout + dry.stderr


WRAPPER = """
import os, sys
from denoise.predict import runner
log = sys.argv[1]
write = runner.UnitRunner.write
def logged(self, unit, result):
    write(self, unit, result)
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()} {unit.id}\\n")
runner.UnitRunner.write = logged
from denoise.cli.main import main
raise SystemExit(main(sys.argv[2:]))
"""


def test_two_scattered_predict_jobs_never_write_the_same_unit(cli, tmp_path):
    frames = np.stack([np.rot90(fish(64), k) for k in range(4)] * 3)  # 12 frames = 12 units
    np.save(tmp_path / "tyx.npy", frames)
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(tmp_path / "tyx.npy", "tyx")).rc == 0
    assert cli(*ds.train_args({"features": 8, "depth": 2})).rc == 0
    assert cli(*ds.init_args()).rc == 0
    log = tmp_path / "writes.log"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    jobs = [
        subprocess.Popen([sys.executable, "-c", WRAPPER, str(log),
                          *map(str, ds.predict_args(index=i, count=2, no_init=True))],
                         stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)
    ]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err[-3000:]
    writes = [line.split() for line in log.read_text().splitlines()]
    by_job: dict[str, list[int]] = {}
    for pid, unit in writes:
        by_job.setdefault(pid, []).append(int(unit))
    assert len(by_job) == 2
    a, b = (sorted(v) for v in by_job.values())
    assert not set(a) & set(b)                       # no unit written by both jobs
    assert sorted(a + b) == list(range(12))          # every unit written exactly once
    assert {tuple(sorted(u % 2 for u in units)) for units in (a, b)} == {(0,) * 6, (1,) * 6}
    assert cli(*ds.gather_args(count=2)).rc == 0 and ds.complete()
    ref = Dataset(tmp_path / "ref")
    ref.store, ref.model = ds.store, ds.model
    assert cli(*ref.predict_args()).rc == 0 and cli(*ref.gather_args()).rc == 0
    assert ds.output().tobytes() == ref.output().tobytes()
    assert json.loads(ds.gather_json.read_text())["n_units"] == 12
