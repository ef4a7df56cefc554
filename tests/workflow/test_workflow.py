"""The Snakemake workflow: lint, dry runs, up-front sheet errors, and a real tiny end-to-end run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from tests.conftest import REPO
from tests.report.render import assert_report_renders, sheet_specs

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, env=_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _workdir(tmp_path: Path, config_overrides: dict | None = None, sheet: str | None = None) -> Path:
    """A working directory with the tiny .test config and data, as a user would lay it out."""
    wd = tmp_path / "wd"
    (wd / "config").mkdir(parents=True)
    shutil.copytree(REPO / ".test" / "data", wd / ".test" / "data")
    cfg = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    cfg["datasets"] = "config/datasets.tsv"
    cfg["results"] = "results"
    for key, val in (config_overrides or {}).items():
        cfg.setdefault(key, {}).update(val) if isinstance(val, dict) else cfg.__setitem__(key, val)
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    text = sheet if sheet is not None else (REPO / ".test" / "config" / "datasets.tsv").read_text()
    (wd / "config" / "datasets.tsv").write_text(text)
    return wd


def _sm(wd: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["-s", str(REPO / "Snakefile"), "-d", str(wd), "--cores", "2", *extra], cwd=wd, check=check)


def _planned(wd: Path, override: dict) -> set[tuple[str | None, str]]:
    """(dataset, rule) of every job ``snakemake -n`` plans after ``override``; config restored."""
    path = wd / "config" / "config.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    for section, values in override.items():
        for key, val in values.items():
            cfg.setdefault(section, {}).setdefault(key, {})
            if isinstance(val, dict):
                cfg[section][key].update(val)
            else:
                cfg[section][key] = val
    path.write_text(yaml.safe_dump(cfg))
    try:
        out = _sm(wd, "-n").stdout
    finally:
        path.write_text(original)
    jobs: set[tuple[str | None, str]] = set()
    rule = None
    for line in out.splitlines():
        text = line.strip()
        if text.startswith(("rule ", "localrule ")) and text.endswith(":"):
            if rule is not None:
                jobs.add((None, rule))
            rule = text.split()[1].rstrip(":")
        elif rule is not None and text.startswith("wildcards:"):
            wild = dict(w.split("=", 1) for w in text[len("wildcards:") :].replace(" ", "").split(","))
            jobs.add((wild.get("dataset"), rule))
            rule = None
    if rule is not None:
        jobs.add((None, rule))
    return jobs


def test_lint_clean():
    proc = _run(["--lint"], cwd=REPO, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_default_config(tmp_path):
    proc = _run(["-n", "--quiet", "rules", "--config", f"results={tmp_path / 'results'}"], cwd=REPO)
    assert "train" in proc.stdout and "gather_predict" in proc.stdout


def test_bad_sheet_fails_before_any_job(tmp_path):
    sheet = (
        "name\turi\taxes\tmethod\tground_truth\tground_truth_axes\n"
        "good\t.test/data/fish_noisy.tif\tyx\tn2v\t\t\n"
        "wrongdims\t.test/data/fish_noisy.tif\ttyx\tn2v\t\t\n"
        "missing\t.test/data/nope.tif\tyx\tn2v\t\t\n"
    )
    wd = _workdir(tmp_path, sheet=sheet)
    proc = _sm(wd, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "row 2 (wrongdims): key 'uri'" in out and "row 3 (missing): key 'uri'" in out
    assert not (wd / "results").exists()
    bad_method = sheet.splitlines()[0] + "\nx\t.test/data/fish_noisy.tif\tyx\tn9v\t\t\n"
    proc = _sm(_workdir(tmp_path / "b", sheet=bad_method), check=False)
    assert proc.returncode != 0 and "row 1 (x): key 'method'" in proc.stdout + proc.stderr
    proc = _sm(_workdir(tmp_path / "c", sheet=sheet.replace("\tyx\t", "\tyqx\t", 1)), check=False)
    assert proc.returncode != 0 and "key 'axes'" in proc.stdout + proc.stderr


def test_end_to_end_tiny(tmp_path):
    """The full workflow on small real crops: outputs valid, rerun is a no-op, predict-only change."""
    from denoise.io import omezarr

    wd = _workdir(tmp_path)
    _sm(wd)
    res = wd / "results"
    assert (res / "report.html").stat().st_size > 10_000
    # One row per method family: n2v, n2v2 (time-lapse), deconoising (3D), gaussian, pn2v with
    # the N2V-bootstrapped GMM noise model, noise2fast (time-lapse, warm start).
    for name in ("fish", "timelapse", "nuclei3d", "fish_gauss", "fish_pn2v", "timelapse_n2f"):
        store = res / name / "denoised.ome.zarr"
        omezarr.validate_store(store)
        arr, axes = omezarr.open_image(store)
        raw, raw_axes = omezarr.open_image(res / name / "raw.ome.zarr")
        assert axes == raw_axes and arr.shape == raw.shape and arr.dtype == np.float32
        assert np.isfinite(arr[:]).all(), f"{name}: unwritten (NaN) regions"
        assert json.loads((res / name / "predict.json").read_text())["stage"] == "gather"
    # The workflow's own report in headless Chromium (panels per input as the sheet calls for).
    assert_report_renders(
        res / "report.html", sheet_specs(REPO / ".test" / "config" / "datasets.tsv"), tmp_path / "chromium"
    )
    metrics = json.loads((res / "fish_gauss" / "metrics.json").read_text())
    flat = json.dumps(metrics)
    assert "psnr" in flat
    # PN2V: its noise model came from the bootstrap N2V, its store has the uncertainty map.
    assert (res / "fish_pn2v" / "bootstrap_n2v" / "model.json").exists()
    nm = json.loads((res / "fish_pn2v" / "pn2v_noise_model.json").read_text())
    assert "gmm" in json.dumps(nm).lower()
    # The second outputs: PN2V's posterior std (>= 0) and DecoNoising's deconvolved image.
    for name, extra in (("fish_pn2v", "uncertainty"), ("nuclei3d", "deconvolved")):
        store = res / name / f"{extra}.ome.zarr"
        omezarr.validate_store(store)
        arr = omezarr.open_image(store)[0][:]
        assert np.isfinite(arr).all(), f"{name}/{extra}"
        if extra == "uncertainty":
            assert arr.min() >= 0 and arr.max() > 0
    # A rerun does nothing.
    proc = _sm(wd, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # A method's own setting reruns that method's rows only; a shared train key, the trained rows.
    rows = {"fish", "timelapse", "nuclei3d", "fish_gauss", "fish_pn2v", "timelapse_n2f"}
    jobs = _planned(wd, {"methods": {"deconoising": {"psf_sigma": 1.5}}})
    assert jobs == {
        *(("nuclei3d", r) for r in ("train", "init_output", "predict", "gather_predict", "evaluate")),
        (None, "report"),
        (None, "all"),
    }, jobs
    jobs = _planned(wd, {"train": {"learning_rate": 1e-3}})
    trained = {"fish", "timelapse", "nuclei3d", "fish_pn2v"}
    assert {d for d, _ in jobs if d} == trained, jobs
    assert ("fish_pn2v", "bootstrap_n2v") in jobs
    assert {(d, "train") for d in trained} <= jobs
    assert not {d for d, _ in jobs} & (rows - trained)
    jobs = _planned(wd, {"methods": {"noise2fast": {"patience": 3}}})
    assert {d for d, _ in jobs if d} == {"timelapse_n2f"} and ("timelapse_n2f", "train") not in jobs
    # A predict-only change reruns prediction and what follows, not training.
    cfg = yaml.safe_load((wd / "config" / "config.yaml").read_text())
    cfg["predict"]["batch_size"] = 2
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = _sm(wd, "-n", "--quiet", "rules")
    out = proc.stdout + proc.stderr
    assert "predict" in out and "report" in out
    assert " train " not in out.replace("\n", " ")
