"""Progress bars (denoise.progress): the budget-aware ETA, and the bars of training and evaluation.

The training tests read the bar's last line from stderr: ``n/total`` with the step plan's
total, ``ETA``, the budget left and ``stopped=budget`` when the time budget ended the run.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch

import denoise.progress as progress_mod
import denoise.training.loop as loop
from denoise.config import TrainConfig
from denoise.io import omezarr
from denoise.io.ingest import ingest
from denoise.methods.n2v import train_n2v
from denoise.metrics.evaluate import evaluate
from denoise.progress import Progress

TINY = dict(
    depth=2,
    features=4,
    patch_size=16,
    patch_size_z=8,
    batch_size=4,
    steps_per_epoch=3,
    validation_fraction=0.1,
    threads=1,
)


class _Clock:
    """A ``time.perf_counter`` that only moves when told to."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _last_line(err: str) -> str:
    """The bar's last state: tqdm separates its redraws with ``\\r`` and ends with ``\\n``."""
    return [s for s in re.split(r"[\r\n]", err) if s.strip()][-1]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("progress")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    img = np.sin(4 * np.pi * xx) * np.cos(3 * np.pi * yy) + rng.normal(0, 0.3, (64, 64))
    np.save(tmp / "s.npy", img.astype(np.float32))
    ingest(str(tmp / "s.npy"), tmp / "s.ome.zarr", axes="yx")
    return tmp / "s.ome.zarr"


def test_eta_is_the_smaller_of_rate_and_budget(monkeypatch, capsys):
    clock = _Clock()
    monkeypatch.setattr(progress_mod, "time", SimpleNamespace(perf_counter=clock))
    bar = Progress(100, "t", budget_s=100)
    assert bar.eta() == 100.0  # no step yet: only the budget is known
    clock.t += 20
    bar.update(10)
    # rate: 20 s for 10 steps -> 180 s for the 90 left; the budget has 80 s left
    assert bar.budget_left() == pytest.approx(80.0)
    assert bar.eta() == pytest.approx(80.0)
    clock.t += 60
    bar.update(80)
    # rate: 80 s for 90 steps -> 8.9 s for the 10 left, now below the 20 s of budget left
    assert bar.eta() == pytest.approx(80 / 90 * 10)
    assert not bar.out_of_budget()
    clock.t += 21
    assert bar.out_of_budget() and bar.eta() == 0.0
    bar.stop("budget")
    bar.close()
    line = _last_line(capsys.readouterr().err)
    assert "90/100" in line and "stopped=budget" in line
    assert "budget=0:00 left" in line and "ETA=0:00" in line

    free = Progress(10, "t")
    clock.t += 5
    free.update(5)
    assert free.budget_left() is None and free.eta() == pytest.approx(5.0)
    assert "ETA=0:05" in free.bar.postfix  # the line drawn by update() counts its own steps
    free.close()


def test_training_bar_shows_planned_total_and_budget_stop(tmp_path, small_store, capsys):
    """A budget that ends the run after its first step: 1 of the 50 × 3 planned steps."""
    cfg = TrainConfig(**TINY, epochs=50, max_minutes=1e-6)
    s = train_n2v(small_store, tmp_path / "m", cfg, seed=1, progress=True)
    assert s["stopped"] == "max_minutes" and s["steps_done"] == 1
    line = _last_line(capsys.readouterr().err)
    assert line.startswith("n2v:") and "1/150" in line, line
    assert "ETA=" in line and "budget=" in line and "stopped=budget" in line, line


def test_training_bar_total_follows_a_refitted_plan(tmp_path, small_store, capsys, monkeypatch):
    """The demo's ``n2v: 189step [01:23, ...]``: the plan shrank, then grew back as the steps got
    faster, and the bar's total only ever shrank, so tqdm dropped the total and the ETA.

    A fake clock: 2 s per step for 10 steps, then 0.5 s, under a 60 s budget; the plan
    (:class:`StepPlan`) shrinks to 28 steps after the slow start and ends at 83.
    """
    clock = _Clock(0.0)
    fake_time = SimpleNamespace(perf_counter=clock)
    monkeypatch.setattr(loop, "time", fake_time)
    monkeypatch.setattr(progress_mod, "time", fake_time)
    steps = []
    real_step = loop._step

    def timed_step(run, inp, tgt, mask):
        steps.append(None)
        clock.t += 2.0 if len(steps) <= 10 else 0.5
        return real_step(run, inp, tgt, mask)

    monkeypatch.setattr(loop, "_step", timed_step)
    cfg = TrainConfig(**TINY, epochs=50, max_minutes=1.0)
    s = train_n2v(small_store, tmp_path / "m", cfg, seed=1, progress=True)
    assert s["stopped"] == "max_minutes" and s["steps_done"] == len(steps) == 83
    line = _last_line(capsys.readouterr().err)
    assert "83/83" in line and "stopped=budget" in line, line
    assert "budget=0:00 left" in line and "ETA=0:00" in line, line


def test_bar_leaves_training_unchanged(tmp_path, small_store, capsys):
    cfg = TrainConfig(**TINY, epochs=2)
    train_n2v(small_store, tmp_path / "on", cfg, seed=3, progress=True)
    train_n2v(small_store, tmp_path / "off", cfg, seed=3, progress=False)
    line = _last_line(capsys.readouterr().err)
    assert "6/6" in line and "stopped" not in line, line
    on = torch.load(tmp_path / "on" / "model.pt", weights_only=True)["state_dict"]
    off = torch.load(tmp_path / "off" / "model.pt", weights_only=True)["state_dict"]
    assert on.keys() == off.keys() and all(torch.equal(on[k], off[k]) for k in on)


def test_evaluate_bar_counts_images(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, (32, 40)).astype(np.uint8)
    raw = np.clip(gt + rng.normal(0, 20, (3, 2, 32, 40)), 0, 255).astype(np.uint8)
    path = tmp_path / "raw.ome.zarr"
    arr = omezarr.create_image(
        path, raw.shape, raw.dtype, "tcyx", omezarr.default_chunks(raw.shape, "tcyx", chunk_yx=64)
    )
    arr[...] = raw
    tifffile.imwrite(tmp_path / "gt.tif", gt)
    res = evaluate(path, {}, str(tmp_path / "gt.tif"), "yx")
    assert len(res["images"]) == 6
    line = _last_line(capsys.readouterr().err)
    assert line.startswith("evaluate:") and "6/6" in line and "image" in line, line
