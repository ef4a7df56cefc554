"""The workflow on a real (single-node) SLURM through the shipped profile.

A throw-away SLURM (``tests/workflow/slurm_cluster.py``: munged, slurmctld, slurmd of the
Debian packages, no accounting storage, partitions ``cpu`` and ``gpu`` with one counted GPU)
runs a tiny workflow through ``workflow/profiles/slurm`` unchanged; the site keys of the profile
(partition names) already match this cluster.  One SLURM run serves three tests:

* every job goes through ``sbatch`` (slurmctld's log, one submission per rule instance plus the
  two retries below), and the stores are bit-identical to a local ``--cores 2`` run of the same
  config (same torch threads: ``threads: 1``); a second run has nothing to do;
* a running ``predict`` job is ``scancel``-ed once some but not all of its unit markers exist;
  the profile's retry reruns it and it computes only the missing units;
* ``noise_model``'s first attempt asks for too little memory (``--set-resources``, the one
  override of a job resource here) and is killed by SLURM (``OverMemoryKill``); the retry asks
  for ``attempt``-grown memory and succeeds.

Without the Debian packages or root the SLURM tests skip with the reason; in CI (``CI=true``)
they fail instead.  ``test_profile_resources`` needs no SLURM (a dry run).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import DEMO, REPO
from tests.workflow import slurm_cluster
from tests.workflow.test_workflow import _env, _workdir

pytestmark = pytest.mark.cluster

PROFILE = REPO / "workflow" / "profiles" / "slurm"
SHEET = "name\turi\taxes\tmethod\tground_truth\tground_truth_axes\nstack\tdata/stack.npy\ttyx\tn2v\t\t\n"
#: Frames of the time-lapse: one prediction unit each; 3 per predict job with split=2.
FRAMES = 6
#: Seconds before the executor's first status check (the profile's 20 s, shortened for the test).
INIT_STATUS_S = "8"
#: First attempt of noise_model: far below a Python process (killed), then the rule's 4000 MB.
NOISE_MEM = "100 if attempt == 1 else 4000"
#: Rule instances of the tiny workflow (one n2v row, split=2).
EXPECTED = {
    "ingest": 1, "noise_model": 1, "train": 1, "init_output": 1, "predict": 2,
    "gather_predict": 1, "evaluate": 1, "report": 1,
}


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"SLURM is required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node SLURM; stopped after the module."""
    if os.geteuid() != 0:
        _fail_or_skip("starting slurmd and munged needs root")
    missing = slurm_cluster.missing_tools()
    if missing:
        _fail_or_skip(f"SLURM not installed ({', '.join(missing)}): apt-get install slurm-wlm munge")
    try:
        cluster = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except slurm_cluster.SlurmUnavailable as exc:
        _fail_or_skip(str(exc))
    yield cluster
    cluster.stop()


def _tiny_workdir(root: Path) -> Path:
    """The .test config (threads 1) with one n2v time-lapse row: FRAMES crops of `fish`."""
    import tifffile

    wd = _workdir(root, config_overrides={"train": {"threads": 1}, "predict": {"threads": 1}}, sheet=SHEET)
    fish = tifffile.imread(DEMO / "fish_noisy.tif")
    frames = [fish[32 * k : 32 * k + 256, 256 - 32 * k : 512 - 32 * k] for k in range(FRAMES)]
    (wd / "data").mkdir()
    np.save(wd / "data" / "stack.npy", np.stack(frames))
    return wd


def _snakemake(wd: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(wd), *args]


def _markers(store: Path) -> set[int]:
    d = store / ".denoise_markers"
    return {int(p.stem[1:]) for p in d.glob("u*.json")} if d.is_dir() else set()


class _Canceller(threading.Thread):
    """Watches job 1-of-2 of ``predict``: once some but not all of its units are marked done,
    ``scancel`` it, wait until SLURM has ended it, and record which units were marked then."""

    def __init__(self, cluster: slurm_cluster.Cluster, store: Path, deadline_s: float = 400):
        super().__init__(daemon=True)
        self.cluster, self.store, self.deadline = cluster, store, time.monotonic() + deadline_s
        self.owned = set(range(0, FRAMES, 2))
        self.job_id: str | None = None
        self.marked_at_cancel: set[int] = set()
        self.marked_after: set[int] = set()
        self.final_state = ""

    def _job(self) -> dict[str, str] | None:
        out = self.cluster.run("squeue", "-h", "-o", "%i|%T|%k", check=False).stdout
        for line in out.splitlines():
            jid, state, comment = line.split("|", 2)
            if comment.startswith("rule_predict") and "1-of-2" in comment and state == "RUNNING":
                return {"id": jid, "state": state}
        return None

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            done = _markers(self.store) & self.owned
            if 0 < len(done) < len(self.owned):
                job = self._job()
                if job is not None:
                    self.cluster.run("scancel", job["id"], check=False)
                    self.job_id, self.marked_at_cancel = job["id"], done
                    break
            time.sleep(0.05)
        if self.job_id is None:
            return
        while time.monotonic() < self.deadline:
            states = {j["id"]: j["state"] for j in self.cluster.jobs()}
            if states.get(self.job_id) not in ("RUNNING", "COMPLETING", "PENDING"):
                self.final_state = states.get(self.job_id, "")
                self.marked_after = _markers(self.store) & self.owned
                return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def slurm_run(slurm, tmp_path_factory):
    """The tiny workflow through the SLURM profile (with the scancel and the failing first
    attempt), a local ``--cores 2`` run of the same config beside it, and the dry rerun."""
    root = tmp_path_factory.mktemp("slurm_run")
    wd, local = _tiny_workdir(root / "slurm"), _tiny_workdir(root / "local")
    env = {**_env(), "SLURM_CONF": str(slurm.conf)}
    env["PATH"] = slurm.env["PATH"].split(os.pathsep, 1)[0] + os.pathsep + env["PATH"]
    t0 = time.monotonic()
    # The local run fills the SLURM run's idle polling time: niced, so the SLURM jobs (the
    # critical path) go first.
    local_proc = subprocess.Popen(
        ["nice", "-n", "10", *_snakemake(local, "--cores", "2", "--set-scatter", "split=2")],
        cwd=local, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    canceller = _Canceller(slurm, wd / "results" / "stack" / "denoised.ome.zarr")
    canceller.start()
    proc = subprocess.run(
        _snakemake(
            wd, "--workflow-profile", str(PROFILE), "--set-scatter", "split=2",
            "--slurm-init-seconds-before-status-checks", INIT_STATUS_S,
            "--set-resources", f"noise_model:mem_mb={NOISE_MEM}",
        ),
        cwd=wd, env=env, capture_output=True, text=True, timeout=600,
    )
    slurm_s = time.monotonic() - t0
    local_out = local_proc.communicate(timeout=600)[0]
    canceller.join(timeout=30)
    rerun = subprocess.run(
        _snakemake(wd, "--workflow-profile", str(PROFILE), "--set-scatter", "split=2", "-n"),
        cwd=wd, env=env, capture_output=True, text=True, timeout=300,
    )
    timeline = [ln for ln in slurm.log().splitlines() if "submit_batch_job" in ln or "_job_complete" in ln]
    Path(os.environ.get("DENOISE_SLURM_TIMELINE", os.devnull)).write_text(
        "\n".join(timeline) + "\n" + proc.stdout + proc.stderr
    )
    return {
        "wd": wd, "local": local, "proc": proc, "local_rc": local_proc.returncode,
        "local_out": local_out, "rerun": rerun, "canceller": canceller, "slurm_s": slurm_s,
        "jobs": slurm.jobs(), "submitted": slurm.submitted_job_ids(),
    }


def _log(run) -> str:
    return (run["proc"].stdout + run["proc"].stderr)[-6000:]


def _rule_of(comment: str) -> str:
    m = re.match(r"rule_(.+?)(_wildcards_.*)?$", comment)
    return m.group(1) if m else comment


def _chunk_files(store: Path) -> dict[str, bytes]:
    """Every array chunk of an OME-Zarr store, by relative path (metadata and markers aside)."""
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != "zarr.json" and ".denoise_markers" not in p.parts
    }


def test_slurm_every_job_through_sbatch_bit_identical(slurm, slurm_run):
    """Every rule instance went through sbatch; the stores equal a local run's bit for bit;
    a second run has nothing to do."""
    from denoise.io import omezarr

    proc = slurm_run["proc"]
    assert proc.returncode == 0, _log(slurm_run)
    assert slurm_run["local_rc"] == 0, slurm_run["local_out"][-4000:]
    jobs = slurm_run["jobs"]
    # slurmctld accepted exactly the jobs squeue lists, one per rule instance, plus the two
    # retried ones (noise_model's first attempt, the cancelled predict job).
    assert sorted(int(j["id"]) for j in jobs) == sorted(slurm_run["submitted"])
    counts: dict[str, int] = {}
    for j in jobs:
        counts[_rule_of(j["comment"])] = counts.get(_rule_of(j["comment"]), 0) + 1
    expected = dict(EXPECTED, noise_model=2, predict=3)
    assert counts == expected, (counts, _log(slurm_run))
    assert len(re.findall(r"has been submitted with SLURM jobid", proc.stdout + proc.stderr)) == sum(expected.values())
    # Network jobs on the GPU partition with one GPU; everything else on the CPU partition.
    for j in jobs:
        rule = _rule_of(j["comment"])
        want = "gpu" if rule in ("train", "predict") else "cpu"
        assert j["partition"] == want, j
        assert j["cpus"] == ("2" if rule == "ingest" else "1"), j
    # Bit-identical to the local run: input store, model, denoised store (every level).
    res, ref = slurm_run["wd"] / "results" / "stack", slurm_run["local"] / "results" / "stack"
    for store in ("raw.ome.zarr", "denoised.ome.zarr"):
        a, b = _chunk_files(res / store), _chunk_files(ref / store)
        assert a.keys() == b.keys() and a, store
        assert all(a[k] == b[k] for k in a), f"{store}: chunks differ"
    assert (res / "model" / "model.pt").read_bytes() == (ref / "model" / "model.pt").read_bytes()
    arr_a = omezarr.open_image(res / "denoised.ome.zarr")[0][:]
    arr_b = omezarr.open_image(ref / "denoised.ome.zarr")[0][:]
    assert np.isfinite(arr_a).all() and np.array_equal(arr_a, arr_b)
    rerun = slurm_run["rerun"]
    assert "Nothing to be done" in rerun.stdout + rerun.stderr, rerun.stdout[-2000:]
    # Why the profile polls with squeue: without accounting storage sacct cannot answer.
    assert slurm.run("sacct", check=False).returncode != 0
    print(f"SLURM run {slurm_run['slurm_s']:.0f} s, {len(jobs)} sbatch jobs {counts}")


def test_slurm_scancel_predict_resumes_missing_units(slurm_run):
    """A predict job cancelled with some units marked: the retry computes only the others, and
    the store equals the uninterrupted local run's (checked above, chunk by chunk)."""
    c = slurm_run["canceller"]
    assert slurm_run["proc"].returncode == 0, _log(slurm_run)
    assert c.job_id is not None, "predict 1-of-2 never ran with some but not all units marked"
    assert c.final_state == "CANCELLED", c.final_state
    assert 0 < len(c.marked_after) < len(c.owned), (c.marked_at_cancel, c.marked_after)
    log = (slurm_run["wd"] / "results" / "logs" / "stack" / "predict_1-of-2.log").read_text()
    m = re.search(r"job 0/2: (\d+) of (\d+) units owned, (\d+) already done, (\d+) to compute", log)
    assert m, log[-2000:]
    owned, _, skipped, computed = map(int, m.groups())
    assert owned == len(c.owned)
    assert skipped == len(c.marked_after) and computed == owned - len(c.marked_after), (m.group(0), c.marked_after)
    assert _markers(slurm_run["wd"] / "results" / "stack" / "denoised.ome.zarr") == set(range(FRAMES))
    print(f"cancelled SLURM job {c.job_id} with units {sorted(c.marked_after)} of {sorted(c.owned)} done; "
          f"the retry: {m.group(0)}")


def test_slurm_failed_first_attempt_retried_with_more_memory(slurm, slurm_run):
    """noise_model's first attempt is killed by SLURM for exceeding --mem; the retry's
    attempt-grown request succeeds."""
    assert slurm_run["proc"].returncode == 0, _log(slurm_run)
    jobs = sorted((j for j in slurm_run["jobs"] if _rule_of(j["comment"]) == "noise_model"),
                  key=lambda j: int(j["id"]))
    assert [j["mem"] for j in jobs] == ["100M", "4000M"], jobs
    assert jobs[0]["state"] in ("OUT_OF_MEMORY", "FAILED", "CANCELLED"), jobs
    assert jobs[1]["state"] == "COMPLETED", jobs
    assert "exceeded memory limit" in slurm.log("slurmd") + _log(slurm_run) or jobs[0]["state"] == "OUT_OF_MEMORY"
    assert (slurm_run["wd"] / "results" / "stack" / "noise_model.json").is_file()


def _dry_run_resources(wd: Path, *extra: str) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, wildcards) -> resources and threads, from a dry run's job listing."""
    proc = subprocess.run(
        _snakemake(wd, "--workflow-profile", str(PROFILE), "-n", *extra),
        cwd=wd, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs: dict[tuple[str, str], dict[str, str]] = {}
    rule = wild = None
    for line in proc.stdout.splitlines():
        text = line.strip()
        if text.startswith(("rule ", "localrule ")):
            rule, wild = text.split()[1].rstrip(":"), ""
        elif rule and text.startswith("wildcards:"):
            wild = text.split(":", 1)[1].strip()
        elif rule and text.startswith("threads:"):
            jobs.setdefault((rule, wild), {})["threads"] = text.split(":", 1)[1].strip()
        elif rule and text.startswith("resources:"):
            items = text.split(":", 1)[1].split(", ")
            jobs.setdefault((rule, wild), {}).update(kv.split("=", 1) for kv in items if "=" in kv)
    return jobs


def test_profile_resources(tmp_path):
    """The profile sets no cores and no conda; GPUs only for network rows; memory and runtime
    from the input's size; threads from the config (no SLURM needed: a dry run)."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert "cores" not in profile and "software-deployment-method" not in profile
    assert profile["slurm-status-command"] == "squeue"
    # A small real image and a 4 GiB sparse one (nothing is read in a dry run).
    sheet = (
        "name\turi\taxes\tmethod\tground_truth\tground_truth_axes\n"
        "small\t.test/data/fish_noisy.tif\tyx\tn2v\t\t\n"
        "gauss\t.test/data/fish_noisy.tif\tyx\tgaussian\t\t\n"
        "n2f\t.test/data/fish_noisy.tif\tyx\tnoise2fast\t\t\n"
        "big\tbig.npy\ttyx\tn2v\t\t\n"
        "zbig\tzbig.ome.zarr\ttyx\tn2v\t\t\n"
    )
    wd = _workdir(tmp_path, sheet=sheet)
    big = np.lib.format.open_memmap(wd / "big.npy", mode="w+", dtype=np.uint16, shape=(2048, 1024, 1024))
    del big
    # The same size as an OME-Zarr 0.5 without a chunk written: sized from its metadata.
    from denoise.io import omezarr

    omezarr.create_image(wd / "zbig.ome.zarr", (2048, 1024, 1024), np.uint16, "tyx", (1, 256, 256))
    # Site keys given on the command line (they replace the profile's config entries).
    jobs = _dry_run_resources(
        wd, "--set-scatter", "split=4",
        "--config", "slurm_gpu_partition=gpu_site", "slurm_gpu_extra=--constraint=h200",
    )

    def res(rule: str, dataset: str) -> dict[str, str]:
        return next(v for (r, w), v in jobs.items() if r == rule and f"dataset={dataset}" in w)

    for row in ("small", "n2f", "big"):
        assert res("predict", row)["gpu"] == "1" and res("predict", row)["slurm_partition"] == "gpu_site"
        assert res("predict", row)["slurm_extra"] == "--constraint=h200"
    gauss = res("predict", "gauss")
    assert gauss["gpu"] == "0" and gauss["slurm_partition"] == "cpu" and gauss["slurm_extra"] == ""
    assert res("train", "small")["gpu"] == "1" and res("train", "small")["slurm_partition"] == "gpu_site"
    for rule in ("ingest", "noise_model", "init_output"):
        assert "gpu" not in res(rule, "small") and res(rule, "small")["slurm_partition"] == "cpu"
    # Runtime grows with the input: ingest 10 min + 2 min/GB; predict 15 min + 1 GB per
    # 1024/60 min of this job's quarter (4 GiB sparse file, its size before ingest).
    gb = (wd / "big.npy").stat().st_size / 1e6 / 1024
    assert int(res("ingest", "big")["runtime"]) == math.ceil(10 + 2 * gb)
    assert int(res("predict", "big")["runtime"]) == math.ceil(15 + 1024 / 60 * gb / 4)
    assert int(res("predict", "small")["runtime"]) == 16
    assert int(res("evaluate", "big")["runtime"]) == math.ceil(10 + 2 * gb)
    gb_zarr = 2048 * 1024 * 1024 * 2 / 1e6 / 1024
    assert int(res("gather_predict", "zbig")["runtime"]) == math.ceil(10 + 2 * gb_zarr)
    # Memory: flat where the stage streams (predict: bounded by the unit of work).
    assert res("predict", "big")["mem_mb"] == res("predict", "small")["mem_mb"] == "8000"
    assert res("train", "big")["mem_mb"] == "12000"
