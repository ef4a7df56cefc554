"""SIGKILL during each stage, then a rerun: nothing looks finished after the kill, the rerun
redoes (ingest, noise model) or resumes (train by epoch, predict by unit), and the final result
equals an uninterrupted run's, bit for bit (every stage is deterministic on the CPU).

The killed run is a real ``denoise`` process; the rerun and the uninterrupted reference run
in-process (same code, same settings, one torch thread in both).
"""

from __future__ import annotations

import json

import numpy as np
import torch

from denoise.predict import markers
from tests.robustness.conftest import DATA, Dataset, kill_when, start, tree_digest


def _checkpoint_epoch(model_dir) -> int:
    return int(torch.load(model_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"])


def test_kill_during_ingest_then_rerun(cli, tmp_path):
    img = np.random.default_rng(0).integers(0, 4000, (640, 640), dtype=np.uint16)
    np.save(tmp_path / "big.npy", img)
    ds = Dataset(tmp_path / "results" / "d")
    partial = ds.store.with_name("raw.ome.zarr.partial")
    proc = start(*ds.ingest_args(tmp_path / "big.npy", "yx"), stderr=tmp_path / "ingest.log")

    def some_chunks_written() -> bool:
        rows = partial / "s0" / "c"
        return rows.is_dir() and sum(1 for _ in rows.iterdir()) >= 3

    kill_when(proc, some_chunks_written, "3 rows of chunks", log=tmp_path / "ingest.log")
    # Killed mid-write: only the temporary store, no store under the final name, no sentinel.
    assert partial.is_dir() and not ds.store.exists() and not ds.ingest_json.exists()

    res = cli(*ds.ingest_args(tmp_path / "big.npy", "yx"))
    assert res.rc == 0, res.err
    assert f"removing leftover {partial}" in res.log
    assert ds.leftovers() == ["raw.ome.zarr"]
    assert np.array_equal(ds.raw(), img)
    ref = Dataset(tmp_path / "ref")
    assert cli(*ref.ingest_args(tmp_path / "big.npy", "yx")).rc == 0
    a, b = (json.loads(d.ingest_json.read_text()) for d in (ds, ref))
    assert a.pop("store") != b.pop("store") and a == b
    assert tree_digest(ds.store) == tree_digest(ref.store)


def test_kill_during_noise_model_then_rerun(cli, tmp_path):
    rng = np.random.default_rng(1)
    levels = rng.uniform(20, 400, (4, 1, 1)) * np.linspace(0.5, 1.5, 512)[None, None, :]
    img = rng.poisson(levels * np.ones((4, 512, 1))).astype(np.uint16)
    np.save(tmp_path / "cyx.npy", img)
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(tmp_path / "cyx.npy", "cyx", {"chunk_yx": 128})).rc == 0
    params = {"max_samples": 2_000_000}
    log = tmp_path / "noise.log"
    proc = start(*ds.noise_args(params), stderr=log)
    kill_when(proc, lambda: "noise model: gain" in log.read_text(), "channel 0 fitted", log=log)
    assert not ds.noise_json.exists() and not ds.noise_png.exists()

    assert cli(*ds.noise_args(params)).rc == 0
    ref = Dataset(tmp_path / "ref")
    ref.store = ds.store
    assert cli(*ref.noise_args(params)).rc == 0
    assert ds.noise_json.read_bytes() == ref.noise_json.read_bytes()
    assert len(json.loads(ds.noise_json.read_text())["channels"]) == 4
    assert sorted(p.name for p in ds.root.iterdir()) == sorted(
        ["ingest.json", "noise_model.json", "noise_model.png", "raw.ome.zarr"])


TRAIN_KILL = {"epochs": 4, "steps_per_epoch": 8, "batch_size": 4, "patch_size": 32,
              "features": 8, "depth": 2}


def test_kill_during_training_resumes_from_checkpoint(cli, tmp_path):
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(DATA / "fish_noisy.tif", "yx")).rc == 0
    ckpt = ds.model / "checkpoints" / "last.pt"
    log = tmp_path / "train.log"
    proc = start(*ds.train_args(TRAIN_KILL), stderr=log)
    kill_when(proc, ckpt.is_file, "a checkpoint", log=log)
    done = _checkpoint_epoch(ds.model)
    assert 1 <= done < TRAIN_KILL["epochs"]
    assert not (ds.model / "model.json").exists() and not (ds.model / "model.pt").exists()

    res = cli(*ds.train_args(TRAIN_KILL))
    assert res.rc == 0, res.err
    assert f"resuming at epoch {done}/{TRAIN_KILL['epochs']}" in res.log
    assert f'"resumed_from_epoch": {done}' in res.log
    history = json.loads((ds.model / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in history] == [1, 2, 3, 4]  # continued, not restarted

    ref = Dataset(tmp_path / "ref")
    ref.store = ds.store
    assert cli(*ref.train_args(TRAIN_KILL)).rc == 0
    ref_history = json.loads((ref.model / "history.json").read_text())["epochs"]
    assert [e["train_loss"] for e in history] == [e["train_loss"] for e in ref_history]
    a = torch.load(ds.model / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(ref.model / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_during_predict_resumes_by_unit(cli, tmp_path):
    import tifffile

    fish = tifffile.imread(DATA / "fish_noisy.tif")[:64, :64]
    frames = np.stack([np.rot90(fish, k % 4) if k % 2 else fish[::-1] for k in range(24)])
    np.save(tmp_path / "tyx.npy", frames)
    ds = Dataset(tmp_path / "results" / "d")
    assert cli(*ds.ingest_args(tmp_path / "tyx.npy", "tyx")).rc == 0
    assert cli(*ds.train_args({"features": 8, "depth": 2})).rc == 0
    init = cli(*ds.init_args())
    assert init.rc == 0, init.err
    fp = json.loads((ds.root / "predict" / "init.json").read_text())["fingerprint"]
    n_units = 24  # one unit per frame

    log = tmp_path / "predict.log"
    proc = start(*ds.predict_args(no_init=True), stderr=log)
    kill_when(proc, lambda: len(markers.done_units(ds.denoised, fp)) >= 3, "3 units", log=log)
    done = markers.done_units(ds.denoised, fp)
    assert 3 <= len(done) < n_units
    assert not ds.predict_json.exists() and not ds.complete()
    res = cli(*ds.gather_args())  # gather refuses the incomplete store
    assert res.rc == 1 and f"{n_units - len(done)} of {n_units} units have no valid marker" in res.err
    assert not ds.gather_json.exists() and not ds.complete()

    res = cli(*ds.predict_args(no_init=True))
    assert res.rc == 0, res.err
    assert f"{len(done)} already done, {n_units - len(done)} to compute" in res.log
    assert cli(*ds.gather_args()).rc == 0 and ds.complete()

    ref = Dataset(tmp_path / "ref")
    ref.store, ref.model = ds.store, ds.model
    assert cli(*ref.predict_args()).rc == 0 and cli(*ref.gather_args()).rc == 0
    out = ds.output()
    assert np.isfinite(out).all() and out.tobytes() == ref.output().tobytes()
