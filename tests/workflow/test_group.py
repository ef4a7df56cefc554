"""Train once, predict many: the sheet's ``group`` column (issue 20).

Rows with one ``group`` share one model trained on patches from all of their stores
(:class:`~denoise.methods.patches.MultiStoreSampler`): one train job per group (PN2V: also one
noise model, and for ``gmm_bootstrap`` one bootstrap N2V, per group; DecoNoising: one PSF),
then each row is predicted with that model; a group that cannot share a model stops before any
job.  The group's stores reach its jobs through a members file (``--group-members``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from contextlib import chdir

import numpy as np
import pytest

from denoise.cli.main import main
from denoise.config import RESERVED_NAMES, TrainConfig, read_dataset_sheet
from denoise.io.group_members import read_group_members, write_group_members
from denoise.io.sheet_checks import check_sheet_inputs
from denoise.methods.n2v import MaskedPatchSource
from denoise.methods.patches import MultiStoreSampler
from denoise.settings import ConfigError
from tests.conftest import REPO
from tests.conftest import ingested_store as _store
from tests.workflow.test_workflow import _sm, _workdir

FISH, TL, NUC = ".test/data/fish_noisy.tif", ".test/data/tl_*.png", ".test/data/nuclei3d.tif"



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


def _job_stats(proc) -> dict[str, int]:
    """Jobs per rule in the run's own plan ("Job stats", as `snakemake -n` prints it)."""
    stats = (proc.stdout + proc.stderr).split("Job stats:", 1)[1].split("total", 1)[0]
    return {
        parts[0]: int(parts[1])
        for line in stats.splitlines()
        if len(parts := line.split()) == 2 and parts[1].isdigit()
    }


def test_group_trains_once_and_predicts_every_row(tmp_path):
    sheet = HEADER + "".join(
        f"{n}\t{uri}\t{ax}\tn2v\tg1\t\n"
        for n, uri, ax in (("fa", FISH, "yx"), ("fb", FISH, "yx"), ("tl", TL, "tyx"))
    )
    wd = _workdir(tmp_path, sheet=sheet)
    targets = [f"results/{n}/predict.json" for n in ("fa", "fb", "tl")]
    jobs = _job_stats(_sm(wd, *targets))
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
        f"gs\t{FISH}\tyx\tgaussian\tother\t\n"
        f"both\t{FISH}\tyx\tn2v\tthird\t{tmp_path}\n"
    )
    proc = _sm(_workdir(tmp_path / "a", sheet=sheet), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and not (tmp_path / "a" / "wd" / "results").exists()
    assert "key 'group': rows of group 'mix' must share one method" in out
    assert "row 1 (fa): n2v, row 2 (fb): n2v2" in out
    assert (
        "row 3 (gs): key 'group': method 'gaussian' trains nothing, so it has no model to "
        "share: group training supports n2v, n2v2, pn2v, deconoising, spatiotemporal"
    ) in out
    assert "row 4 (both): key 'group': a row may not have both 'group'" in out
    # channel count and 2D/3D come from the inputs: the same check snakemake runs first
    wd = _workdir(tmp_path / "b", sheet=HEADER + f"fish\t{FISH}\tyx\tn2v\tg\t\nnuc\t{NUC}\tzyx\tn2v\tg\t\n")
    sheet_path = wd / "config" / "datasets.tsv"
    with pytest.raises(ConfigError) as err, chdir(wd):
        check_sheet_inputs(read_dataset_sheet(sheet_path), sheet_path)
    out = str(err.value)
    assert "key 'group': rows of group 'g' share one model and must agree on axes kind" in out
    assert "row 1 (fish): 2D, row 2 (nuc): 3D" in out


def test_members_file_roundtrip_and_errors(tmp_path):
    path = tmp_path / "g" / "members.tsv"
    write_group_members(path, [("a b.ome.zarr", "a/ingest.json"), ("c.ome.zarr", "")])
    members = read_group_members(path)
    assert [(m.store, m.ingest) for m in members] == [("a b.ome.zarr", "a/ingest.json"), ("c.ome.zarr", "")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("path\tingest\nx\ty\n")
    with pytest.raises(ConfigError, match=r"bad.tsv: the first line must be the header 'store<TAB>ingest'"):
        read_group_members(bad)
    bad.write_text("store\tingest\nx\ty\n\tz\n")
    with pytest.raises(ConfigError, match=r"bad.tsv row 2: expected 'store<TAB>ingest'"):
        read_group_members(bad)
    with pytest.raises(ConfigError, match="file not found"):
        read_group_members(tmp_path / "nope.tsv")


def test_train_with_members_file_equals_store_flags(tmp_path):
    """`--group-members FILE` trains the very model `--store/--group-store` flags train."""
    rng = np.random.default_rng(1)
    stores, ingests = [], []
    for name, shape, axes in (("a", (3, 48, 48), "tyx"), ("b", (2, 40, 40), "tyx")):
        src = tmp_path / f"{name}.npy"
        np.save(src, rng.poisson(20, shape).astype(np.uint16))
        stores.append(str(tmp_path / f"{name}.ome.zarr"))
        ingests.append(str(tmp_path / f"{name}.json"))
        assert main(["ingest", "--input", str(src), "--axes", axes, "--store", stores[-1], "--sentinel", ingests[-1]]) == 0
    write_group_members(tmp_path / "members.tsv", list(zip(stores, ingests, strict=True)))
    params = json.dumps(
        {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "patch_size": 32, "features": 4,
         "device": "cpu", "threads": 1}
    )  # fmt: skip
    common = ["--method", "n2v", "--params", params, "--seed", "3"]
    by_file = ["train", "--group-members", str(tmp_path / "members.tsv"), "--model-dir", str(tmp_path / "m1")]
    by_flags = ["train", "--store", stores[0], "--ingest", ingests[0], "--group-store", stores[1],
                "--group-ingest", ingests[1], "--model-dir", str(tmp_path / "m2")]  # fmt: skip
    assert main([*by_file, *common]) == 0 and main([*by_flags, *common]) == 0
    m1, m2 = (json.loads((tmp_path / m / "model.json").read_text()) for m in ("m1", "m2"))
    assert m1["store"] == "; ".join(stores)
    assert m1["fingerprint"] == m2["fingerprint"] and m1["sha256"] == m2["sha256"]
    # the time-lapse method trains one model on windows of both stores too
    by_file[-1] = str(tmp_path / "m3")
    assert main([*by_file, *common[2:], "--method", "spatiotemporal"]) == 0
    m3 = json.loads((tmp_path / "m3" / "model.json").read_text())
    assert m3["store"] == "; ".join(stores) and m3["method"] == "spatiotemporal"
    assert m3["norm"] == m1["norm"]  # the pooled statistics of both stores


def test_reserved_dataset_names(tmp_path):
    # every top-level name the rules write under results/ is reserved
    written = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        written |= set(re.findall(r"\{RES\}/([A-Za-z0-9_.-]+)", smk.read_text()))
    assert written and written <= set(RESERVED_NAMES), written - set(RESERVED_NAMES)
    sheet = tmp_path / "datasets.tsv"
    sheet.write_text(HEADER + f"ok\t{FISH}\tyx\tn2v\t\t\ngroups\t{FISH}\tyx\tn2v\t\t\nLogs\t{FISH}\tyx\tn2v\t\t\n")
    with pytest.raises(ConfigError) as err:
        read_dataset_sheet(sheet)
    out = str(err.value)
    assert f"{sheet} row 2 (groups): key 'name': 'groups' is reserved" in out
    assert "row 3 (Logs): key 'name'" in out and "rename the dataset" in out
    assert "row 1 (ok)" not in out


def test_group_rows_share_noise_model_and_psf(tmp_path):
    sheet = tmp_path / "datasets.tsv"
    sheet.write_text(
        "name\turi\taxes\tmethod\tgroup\tnoise_model\tpsf\n"
        f"pa\t{FISH}\tyx\tpn2v\tp\tgmm_bootstrap\t\n"
        f"pb\t{FISH}\tyx\tpn2v\tp\t\t\n"
        f"da\t{FISH}\tyx\tdeconoising\td\t\tpsf.tif\n"
        f"db\t{FISH}\tyx\tdeconoising\td\t\t\n"
        f"na\t{FISH}\tyx\tn2v\tn\t\tpsf.tif\n"
        f"nb\t{FISH}\tyx\tn2v\tn\tgmm\t\n"
    )
    with pytest.raises(ConfigError) as err:
        read_dataset_sheet(sheet)
    out = str(err.value)
    assert "key 'group': rows of group 'p' must share one noise_model (the group has one model and one noise model)" in out
    assert "row 1 (pa): gmm_bootstrap, row 2 (pb): poisson_gaussian" in out
    assert "rows of group 'd' must share one psf (the group has one model and one PSF)" in out
    assert "row 3 (da): psf.tif, row 4 (db): (empty)" in out
    assert "group 'n'" not in out  # n2v uses neither: no constraint


@pytest.mark.slow  # a whole workflow run (~2 min); `pytest -m slow` runs it
def test_pn2v_and_deconoising_groups_train_once_and_share(tmp_path):
    """A PN2V group (N2V-bootstrapped GMM) and a DecoNoising group, two rows each: one train
    job per group, one bootstrap N2V and one noise model for the PN2V group, none per row;
    every row predicted with its group's model, which carries the group's noise model / PSF."""
    rows = [("pa", FISH, "yx", "pn2v", "gp"), ("pb", TL, "tyx", "pn2v", "gp"),
            ("da", FISH, "yx", "deconoising", "gd"), ("db", TL, "tyx", "deconoising", "gd")]  # fmt: skip
    sheet = "name\turi\taxes\tmethod\tgroup\tnoise_model\n" + "".join(
        f"{n}\t{u}\t{a}\t{m}\t{g}\t{'gmm_bootstrap' if m == 'pn2v' else ''}\n" for n, u, a, m, g in rows
    )
    wd = _workdir(tmp_path, {"methods": {"pn2v": {"samples": 8}}}, sheet=sheet)
    jobs = _job_stats(_sm(wd, *(f"results/{r[0]}/predict.json" for r in rows)))
    assert jobs["train_group"] == 2 and jobs["group_members"] == 2, jobs
    assert jobs["bootstrap_group_n2v"] == 1 and jobs["fit_group_noise_model"] == 1, jobs
    assert not {"train", "bootstrap_n2v", "fit_noise_model"} & set(jobs), jobs
    assert jobs["predict"] == 4, jobs
    res = wd / "results"
    members = read_group_members(res / "groups" / "gp" / "members.tsv")
    assert [m.store for m in members] == ["results/pa/raw.ome.zarr", "results/pb/raw.ome.zarr"]
    boot = json.loads((res / "groups" / "gp" / "bootstrap_n2v" / "model.json").read_text())
    assert boot["store"] == "results/pa/raw.ome.zarr; results/pb/raw.ome.zarr"
    noise = json.loads((res / "groups" / "gp" / "pn2v_noise_model.json").read_text())
    assert noise["kind"] == "gmm_bootstrap"
    for group, names, outputs in (("gp", ("pa", "pb"), "uncertainty"), ("gd", ("da", "db"), "deconvolved")):
        model = res / "groups" / group / "model"
        meta = json.loads((model / "model.json").read_text())
        assert meta["store"] == "; ".join(f"results/{n}/raw.ome.zarr" for n in names)
        for name in names:
            info = json.loads((res / name / "predict.json").read_text())
            assert info["model"] == {"path": str(model.resolve()), "sha256": meta["sha256"]}
            assert (res / name / f"{outputs}.ome.zarr").is_dir() and not (res / name / "model").exists()
            assert not (res / name / "pn2v_noise_model.json").exists()
    pn2v = json.loads((res / "groups" / "gp" / "model" / "model.json").read_text())["objective"]
    fitted = {k: v for k, v in noise["channels"][0].items() if k != "kind"}
    assert all(pn2v["noise_model"][k] == v for k, v in fitted.items()), (pn2v["noise_model"], fitted)
    deco = json.loads((res / "groups" / "gd" / "model" / "model.json").read_text())["objective"]
    assert deco["psf"]["kind"] == "gaussian" and deco["psf"]["sigma"] == 1.0


def test_calibrated_pn2v_and_spatiotemporal_groups_plan(tmp_path):
    """Dry run: a PN2V group with a `histogram` noise model fits it once from the rows' shared
    calibration stack (no bootstrap), and a spatiotemporal group trains once; the group jobs get
    their stores from the members file, the calibration on the command line."""
    sheet = "name\turi\taxes\tmethod\tgroup\tnoise_model\tcalibration\tcalibration_axes\n" + "".join(
        f"{n}\t{u}\t{a}\t{m}\t{g}\t{nm}\t{cal}\t{'tyx' if cal else ''}\n"
        for n, u, a, m, g, nm, cal in (
            ("ha", FISH, "yx", "pn2v", "gh", "histogram", TL),
            ("hb", TL, "tyx", "pn2v", "gh", "histogram", TL),
            ("sa", TL, "tyx", "spatiotemporal", "gs", "", ""),
            ("sb", TL, "tyx", "spatiotemporal", "gs", "", ""),
        )
    )
    wd = _workdir(tmp_path, sheet=sheet)
    proc = _sm(wd, "-n", "-p", *(f"results/{n}/predict.json" for n in ("ha", "hb", "sa", "sb")))
    jobs = _job_stats(proc)
    assert jobs["train_group"] == 2 and jobs["fit_group_noise_model"] == 1, jobs
    assert not {"train", "bootstrap_group_n2v", "bootstrap_n2v", "fit_noise_model"} & set(jobs)
    out = proc.stdout + proc.stderr
    fit = next(line for line in out.splitlines() if "denoise fit-noise-model" in line)
    assert "--kind histogram --group-members results/groups/gh/members.tsv" in fit
    assert f"--calibration '{TL}' --calibration-axes 'tyx'" in fit
    train = [line for line in out.splitlines() if "denoise train" in line]
    assert len(train) == 2 and all("--group-members results/groups/" in t for t in train)
    assert any("--noise-model results/groups/gh/pn2v_noise_model.json" in t for t in train)
