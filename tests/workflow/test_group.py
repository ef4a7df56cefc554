"""Train once, predict many: the sheet's ``group`` column (issue 20).

Rows with one ``group`` share one N2V-family model trained on patches from all of their stores
(:class:`~denoise.methods.patches.MultiStoreSampler`): one train job per group, then each row
is predicted with that model; a group that cannot share a model stops before any job.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import chdir

import numpy as np
import pytest

from denoise.config import TrainConfig, read_dataset_sheet
from denoise.io.ingest import ingest
from denoise.io.sheet_checks import check_sheet_inputs
from denoise.methods.n2v import MaskedPatchSource
from denoise.methods.patches import MultiStoreSampler
from denoise.settings import ConfigError
from tests.workflow.test_workflow import _sm, _workdir

FISH, TL, NUC = ".test/data/fish_noisy.tif", ".test/data/tl_*.png", ".test/data/nuclei3d.tif"


def _store(tmp_path, data: np.ndarray, axes: str, name: str):
    src = tmp_path / f"{name}.npy"
    np.save(src, data)
    store = tmp_path / f"{name}.ome.zarr"
    ingest(str(src), store, axes=axes)
    return store


def test_multistore_draws_in_proportion_and_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    datas = {
        "a": (rng.normal(10, 2, (64, 64)).astype(np.float32), "yx"),  # 4096 px
        "b": (rng.normal(50, 5, (3, 64, 64)).astype(np.float32), "tyx"),  # 12288 px
        "c": (rng.normal(90, 1, (128, 128)).astype(np.float32), "yx"),  # 16384 px
    }
    stores = [_store(tmp_path, d, ax, n) for n, (d, ax) in datas.items()]
    sampler = MultiStoreSampler(stores, 32, 8, 4)
    counts: Counter[int] = Counter()

    def counting(j, inner):
        def read(sample, origin):
            counts.update([j])
            return inner(sample, origin)

        return read

    for j, s in enumerate(sampler.samplers):
        s.read = counting(j, s.read)
    cfg = TrainConfig(batch_size=8, patch_size=32, depth=2)
    source = MaskedPatchSource(sampler, cfg, seed=3, n2v2=False)
    first = [source.train(step) for step in range(100)]
    total = sum(counts.values())
    assert total == 800
    share = np.array([counts[j] / total for j in range(3)])
    assert np.allclose(share, [1 / 8, 3 / 8, 4 / 8], atol=0.05), share
    # batches are a pure function of (seed, step): a new source, other order, same tensors
    again = MaskedPatchSource(MultiStoreSampler(stores, 32, 8, 4), cfg, seed=3, n2v2=False)
    for step in (57, 0, 99):
        assert all(np.array_equal(x, y) for x, y in zip(again.train(step), first[step], strict=True))
    assert not np.array_equal(first[0][1], first[1][1])
    # pooled normalisation: the mean/std of every pixel of the three stores together
    pixels = np.concatenate([d.ravel().astype(np.float64) for d, _ in datas.values()])
    assert np.isclose(sampler.norm["mean"][0], pixels.mean(), rtol=1e-4)
    assert np.isclose(sampler.norm["std"][0], pixels.std(), rtol=1e-3)


HEADER = "name\turi\taxes\tmethod\tgroup\tmodel\n"


def test_group_trains_once_and_predicts_every_row(tmp_path):
    sheet = HEADER + "".join(
        f"{n}\t{uri}\t{ax}\tn2v\tg1\t\n"
        for n, uri, ax in (("fa", FISH, "yx"), ("fb", FISH, "yx"), ("tl", TL, "tyx"))
    )
    wd = _workdir(tmp_path, sheet=sheet)
    targets = [f"results/{n}/predict.json" for n in ("fa", "fb", "tl")]
    # the run's own plan ("Job stats", as `snakemake -n` prints it): jobs per rule
    proc = _sm(wd, *targets)
    stats = (proc.stdout + proc.stderr).split("Job stats:", 1)[1].split("total", 1)[0]
    jobs = {
        parts[0]: int(parts[1])
        for line in stats.splitlines()
        if len(parts := line.split()) == 2 and parts[1].isdigit()
    }
    assert jobs.get("train_group") == 1 and "train" not in jobs, jobs
    assert jobs["predict"] == 3 and jobs["ingest"] == 3, jobs
    model = wd / "results" / "groups" / "g1" / "model"
    meta = json.loads((model / "model.json").read_text())
    assert all(f"results/{n}/raw.ome.zarr" in meta["store"] for n in ("fa", "fb", "tl"))
    for name in ("fa", "fb", "tl"):
        assert (wd / "results" / name / "denoised.ome.zarr").is_dir()
        assert not (wd / "results" / name / "model").exists()
        info = json.loads((wd / "results" / name / "predict.json").read_text())
        assert info["model"] == {"path": str(model.resolve()), "sha256": meta["sha256"]}


def test_bad_group_stops_before_any_job(tmp_path):
    sheet = HEADER + (
        f"fa\t{FISH}\tyx\tn2v\tmix\t\n"
        f"fb\t{FISH}\tyx\tn2v2\tmix\t\n"
        f"pn\t{FISH}\tyx\tpn2v\tother\t\n"
        f"both\t{FISH}\tyx\tn2v\tthird\t{tmp_path}\n"
    )
    proc = _sm(_workdir(tmp_path / "a", sheet=sheet), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and not (tmp_path / "a" / "wd" / "results").exists()
    assert "key 'group': rows of group 'mix' must share one method" in out
    assert "row 1 (fa): n2v, row 2 (fb): n2v2" in out
    assert "row 3 (pn): key 'group': method 'pn2v': group training supports n2v/n2v2 for now" in out
    assert "row 4 (both): key 'group': a row may not have both 'group'" in out
    # channel count and 2D/3D come from the inputs: the same check snakemake runs first
    wd = _workdir(tmp_path / "b", sheet=HEADER + f"fish\t{FISH}\tyx\tn2v\tg\t\nnuc\t{NUC}\tzyx\tn2v\tg\t\n")
    sheet_path = wd / "config" / "datasets.tsv"
    with pytest.raises(ConfigError) as err, chdir(wd):
        check_sheet_inputs(read_dataset_sheet(sheet_path), sheet_path)
    out = str(err.value)
    assert "key 'group': rows of group 'g' share one model and must agree on axes kind" in out
    assert "row 1 (fish): 2D, row 2 (nuc): 3D" in out
