"""A full disk and a read-only output directory: a clear error that names the path and says what
to do, and the previous complete result left exactly as it was.

Disk full is real where a small tmpfs can be mounted (root), and injected (zarr's store raises
``ENOSPC``) everywhere.  Read-only uses ``chmod 555`` when not root; as root (where chmod does
not stop writes) a read-only bind mount, or an injected ``PermissionError`` where mounting is
not allowed (see :func:`tests.robustness.conftest.read_only`).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess

import numpy as np
import pytest
from zarr.storage import LocalStore

from denoise.predict import markers
from tests.robustness.conftest import (
    DATA,
    Dataset,
    assert_refused,
    fill_disk,
    fish,
    read_only,
    tmpfs,
    tree_digest,
)

DISK_FULL = ("No space left on device", "the disk is full: free space and rerun")


def _snapshot(*paths) -> dict:
    return {str(p): tree_digest(p) for p in paths}


# ----------------------------------------------------------------------------- real tmpfs
def test_disk_full_during_ingest_keeps_previous_store(cli, tmp_path):
    with tmpfs(tmp_path / "disk", 320) as disk:
        ds = Dataset(disk / "d")
        assert cli(*ds.ingest_args(DATA / "fish_noisy.tif", "yx")).rc == 0
        before = _snapshot(ds.store, ds.ingest_json)
        big = np.random.default_rng(0).integers(0, 65535, (512, 512), dtype=np.uint16)  # 512 KiB
        np.save(tmp_path / "big.npy", big)
        res = cli(*ds.ingest_args(tmp_path / "big.npy", "yx"))
        assert_refused(res, *DISK_FULL, str(ds.store))
        assert _snapshot(ds.store, ds.ingest_json) == before
        assert ds.leftovers() == ["raw.ome.zarr"]  # the partial copy was removed: space is free
        # More space, rerun: the new input replaces the old one completely.
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        assert cli(*ds.ingest_args(tmp_path / "big.npy", "yx")).rc == 0
        assert np.array_equal(ds.raw(), big) and ds.leftovers() == ["raw.ome.zarr"]


def test_disk_full_during_noise_model_keeps_previous_result(cli, tmp_path):
    with tmpfs(tmp_path / "disk", 512) as disk:
        ds = Dataset(disk / "d")
        assert cli(*ds.ingest_args(DATA / "fish_noisy.tif", "yx")).rc == 0
        assert cli(*ds.noise_args(seed=1)).rc == 0
        before = _snapshot(ds.noise_json, ds.noise_png)
        filler = fill_disk(disk)
        res = cli(*ds.noise_args(seed=2))
        assert_refused(res, *DISK_FULL)
        assert _snapshot(ds.noise_json, ds.noise_png) == before
        assert not [p for p in ds.root.iterdir() if p.name.startswith(".")]  # no temporary files
        filler.unlink()
        assert cli(*ds.noise_args(seed=2)).rc == 0
        assert json.loads(ds.noise_json.read_text())["seed"] == 2


def test_disk_full_during_training_keeps_previous_model(cli, tmp_path):
    with tmpfs(tmp_path / "disk", 1024) as disk:
        ds = Dataset(disk / "d")
        assert cli(*ds.ingest_args(DATA / "fish_noisy.tif", "yx")).rc == 0
        assert cli(*ds.train_args()).rc == 0
        before = _snapshot(ds.model / "model.pt", ds.model / "model.json")
        fill_disk(disk)
        res = cli(*ds.train_args({"learning_rate": 1e-3}))
        assert_refused(res, *DISK_FULL, str(ds.model))
        assert _snapshot(ds.model / "model.pt", ds.model / "model.json") == before
        assert not list((ds.model / "checkpoints").glob(".*"))  # no half-written checkpoint


def test_disk_full_during_predict_keeps_finished_units_and_resumes(cli, tmp_path):
    frames = np.stack([np.rot90(fish(64), k) for k in range(4)] * 4)  # 16 units of 16 KiB
    np.save(tmp_path / "tyx.npy", frames)
    work = Dataset(tmp_path / "work")
    assert cli(*work.ingest_args(tmp_path / "tyx.npy", "tyx")).rc == 0
    assert cli(*work.train_args()).rc == 0
    with tmpfs(tmp_path / "disk", 1024) as disk:
        ds = Dataset(disk / "d")
        ds.store, ds.model = work.store, work.model
        assert cli(*ds.init_args()).rc == 0
        filler = fill_disk(disk, leave=100 * 1024)  # room for a few units only
        res = cli(*ds.predict_args(no_init=True))
        assert_refused(res, *DISK_FULL)
        assert not ds.predict_json.exists() and not ds.complete()
        fp = json.loads((ds.root / "predict" / "init.json").read_text())["fingerprint"]
        done = markers.done_units(ds.denoised, fp)
        assert 0 < len(done) < 16
        filler.unlink()
        res = cli(*ds.predict_args(no_init=True))
        assert res.rc == 0 and f"{len(done)} already done, {16 - len(done)} to compute" in res.log
        assert cli(*ds.gather_args()).rc == 0 and ds.complete()
        out = ds.output()
    ref = Dataset(tmp_path / "ref")
    ref.store, ref.model = work.store, work.model
    assert cli(*ref.predict_args()).rc == 0
    assert out.tobytes() == ref.output().tobytes()


# ----------------------------------------------------------------------------- injected
def _enospc_after(monkeypatch: pytest.MonkeyPatch, n_ok: int) -> list[str]:
    """zarr's local store raises ENOSPC after ``n_ok`` successful chunk/metadata writes."""
    real = LocalStore.set
    calls: list[str] = []

    async def set_(self, key, value, *a, **k):
        calls.append(key)
        if len(calls) > n_ok:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return await real(self, key, value, *a, **k)

    monkeypatch.setattr(LocalStore, "set", set_)
    return calls


def test_injected_enospc_during_ingest_keeps_previous_store(cli, tmp_path, monkeypatch):
    ds = Dataset(tmp_path / "d")
    assert cli(*ds.ingest_args(DATA / "fish_noisy.tif", "yx")).rc == 0
    before = _snapshot(ds.store, ds.ingest_json)
    np.save(tmp_path / "other.npy", fish()[::-1].copy())
    calls = _enospc_after(monkeypatch, 4)
    res = cli(*ds.ingest_args(tmp_path / "other.npy", "yx"))
    assert len(calls) > 4
    assert_refused(res, *DISK_FULL, str(ds.store))
    assert _snapshot(ds.store, ds.ingest_json) == before and ds.leftovers() == ["raw.ome.zarr"]


def test_injected_enospc_during_predict_then_resume(cli, tmp_path, monkeypatch):
    frames = np.stack([np.rot90(fish(64), k) for k in range(4)] * 2)  # 8 units
    np.save(tmp_path / "tyx.npy", frames)
    ds = Dataset(tmp_path / "d")
    assert cli(*ds.ingest_args(tmp_path / "tyx.npy", "tyx")).rc == 0
    assert cli(*ds.train_args()).rc == 0
    assert cli(*ds.init_args()).rc == 0
    with monkeypatch.context() as m:
        _enospc_after(m, 3)  # three unit chunks land, the fourth does not
        res = cli(*ds.predict_args(no_init=True))
    assert_refused(res, *DISK_FULL, str(ds.root))
    assert not ds.predict_json.exists() and not ds.complete()
    res = cli(*ds.predict_args(no_init=True))
    assert res.rc == 0 and "3 already done, 5 to compute" in res.log
    assert cli(*ds.gather_args()).rc == 0 and ds.complete() and np.isfinite(ds.output()).all()


# ----------------------------------------------------------------------------- read-only
STAGES = ["ingest", "noise-model", "train", "predict"]


@pytest.mark.parametrize("stage", STAGES)
def test_read_only_output_directory(cli, tmp_path, monkeypatch, stage):
    ds = Dataset(tmp_path / "results" / "d")
    runs = {
        "ingest": (ds.ingest_args(DATA / "fish_noisy.tif", "yx"), [ds.store, ds.ingest_json]),
        "noise-model": (ds.noise_args(), [ds.noise_json, ds.noise_png]),
        "train": (ds.train_args(), [ds.model / "model.pt", ds.model / "model.json"]),
        "predict": (ds.predict_args(), [ds.denoised, ds.predict_json]),
    }
    for name in STAGES[: STAGES.index(stage) + 1]:  # a complete previous result of every stage
        assert cli(*runs[name][0]).rc == 0
    outputs = runs[stage][1]
    before = _snapshot(*outputs)
    if stage == "ingest":  # rerun with a changed input or setting
        np.save(tmp_path / "new.npy", fish()[::-1].copy())
        rerun = ds.ingest_args(tmp_path / "new.npy", "yx")
    elif stage == "noise-model":
        rerun = ds.noise_args(seed=99)
    elif stage == "train":
        rerun = ds.train_args({"learning_rate": 1e-3})
    else:
        rerun = ds.predict_args(params={"batch_size": 2, "tile": 64})
    with read_only(ds.root, monkeypatch) as how:
        res = cli(*rerun)
    if how == "read-only bind mount":
        needles = ("Read-only file system", "make it writable or choose another results directory")
    else:  # chmod 555 or the injected refusal
        needles = ("Permission denied", "fix the permissions or choose another results directory")
    assert_refused(res, *needles, str(ds.root))
    assert _snapshot(*outputs) == before
