"""Smoke test of the quality benchmark's core (benchmarks/quality/run.py) on a 64×64 crop."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

QUALITY = REPO / "benchmarks" / "quality"


@pytest.fixture(scope="module")
def quality():
    """The benchmark's run.py loaded as a module (it puts its own folder on sys.path)."""
    spec = importlib.util.spec_from_file_location("quality_run", QUALITY / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["quality_run"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_table_on_a_crop(quality, fish_pair, tmp_path: Path) -> None:
    pytest.importorskip("bm3d")
    datasets = sys.modules["datasets"]
    methods = sys.modules["methods"]
    report = sys.modules["report"]
    noisy, gt = fish_pair
    item = datasets.Item("fish", noisy[224:288, 224:288].copy(), gt[224:288, 224:288].copy(),
                         "yx", "smoke")  # fmt: skip
    ctx = methods.Context(work=tmp_path / "work", seed=0, budgets={"smoke": 1.0},
                          careamics_python=tmp_path / "absent" / "python", n2f_max_steps=16)  # fmt: skip
    wanted = ["noisy", "gaussian_oracle", "gaussian", "bm3d_vst", "n2v", "n2v2", "noise2fast",
              "careamics_n2v", "auto"]  # fmt: skip
    lines: list[str] = []
    rows, notes = quality.run_benchmark([item], wanted, ctx, say=lines.append)

    ran = [r["method"] for r in rows]
    expected = ["noisy", "gaussian_oracle", "gaussian", "bm3d_vst", "n2v", "n2v2", "auto"]
    if not methods.availability("noise2fast", ctx):
        expected.append("noise2fast")
    assert ran == expected
    assert any(n.startswith("careamics_n2v: skipped") for n in notes)
    assert not any("failed" in n for n in notes), notes
    by = {r["method"]: r for r in rows}
    assert by["noisy"]["psnr"] == pytest.approx(
        10 * np.log10(float(np.ptp(item.gt.astype(float))) ** 2
                      / np.mean((item.gt.astype(float) - item.noisy) ** 2))
    )  # fmt: skip
    assert by["gaussian_oracle"]["psnr"] > by["noisy"]["psnr"]
    # the default of an empty method cell on a single image is bm3d_vst: the same numbers
    assert by["auto"]["psnr"] == pytest.approx(by["bm3d_vst"]["psnr"], abs=1e-4)
    assert np.isnan(by["auto"]["score"])
    for m in ("gaussian_oracle", "gaussian", "bm3d_vst", "n2v", "n2v2"):
        assert np.isfinite(by[m]["score"]), m
    assert all(np.isnan(by[m]["score"]) for m in ("noisy", "noise2fast") if m in by)

    info = {"command": "smoke", "wall_s": 1.0, "cpu_s": 1.0, "load_start": (0.0, 0.0, 0.0),
            "load_end": (0.0, 0.0, 0.0), "cores": 2, "seed": 0}  # fmt: skip
    paths = report.write_outputs(rows, notes, info, tmp_path / "out")
    assert all(p.is_file() for p in paths)
    with paths[0].open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["method"] for r in table] == ran
    assert {"psnr", "psnr_255", "ssim", "si_psnr", "seconds_unit", "score", "budget"} <= set(
        table[0]
    )
    md = paths[2].read_text()
    assert (
        "| method | images | PSNR (dB) | PSNR@255 | SSIM | SI-PSNR | s / unit | no-ref score | budget"
        in md
    )
    assert "No-reference ranking vs true PSNR" in md
    agree = report.ranking_agreement(rows)
    assert agree["overall"]["pairs"] == 10  # 5 scored methods → 10 pairs on one image
    assert 0 <= agree["overall"]["agree"] <= 10
    # the CSV round-trips (what --merge re-renders from)
    again = report.read_csv(paths[0])
    assert report.ranking_agreement(again)["overall"]["agree"] == agree["overall"]["agree"]
