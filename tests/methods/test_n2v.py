"""Noise2Void training: denoises, reproducible, resumable, 3D, clear errors."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from denoise.config import TrainConfig
from denoise.methods.n2v import train_n2v
from denoise.models.store import load_model, predict_whole
from denoise.training.schedule import StepPlan, lr_factor
from tests.conftest import ingested_store as _store

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



def _smooth(n: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / n
    return (np.sin(2 * np.pi * 2 * xx) * np.cos(2 * np.pi * 1.5 * yy) + 2 * (xx - 0.5) ** 2).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("n2v")
    rng = np.random.default_rng(0)
    return _store(tmp, _smooth(64) + rng.normal(0, 0.3, (64, 64)).astype(np.float32), "yx", "small")


def _weights(model_dir) -> dict[str, torch.Tensor]:
    return torch.load(model_dir / "model.pt", weights_only=True)["state_dict"]


def test_denoises_synthetic_image(tmp_path):
    clean = _smooth(96)
    noisy = clean + np.random.default_rng(1).normal(0, 0.5, clean.shape).astype(np.float32)
    store = _store(tmp_path, noisy, "yx", "syn")
    cfg = TrainConfig(
        depth=2,
        features=8,
        patch_size=32,
        batch_size=8,
        epochs=4,
        steps_per_epoch=12,
        learning_rate=2e-3,
        mask_fraction=0.05,
        threads=1,
    )
    summary = train_n2v(store, tmp_path / "model", cfg, seed=3, progress=False)
    model, meta = load_model(tmp_path / "model")
    pred = predict_whole(model, meta, noisy)
    mse_noisy = float(np.mean((noisy - clean) ** 2))
    mse_pred = float(np.mean((pred - clean) ** 2))
    assert mse_pred < 0.5 * mse_noisy, (mse_pred, mse_noisy)
    assert (
        summary["epochs_done"] == 4
        and summary["steps_done"] == 48
        and summary["stopped"] == "completed"
    )
    assert summary["receptive_field"] >= 22 and summary["device"] == "cpu"
    hist = json.loads((tmp_path / "model" / "history.json").read_text())
    assert [h["epoch"] for h in hist["epochs"]] == [1, 2, 3, 4]
    assert all(h["val_loss"] > 0 for h in hist["epochs"])
    assert (tmp_path / "model" / "training_curve.png").stat().st_size > 1000
    assert (
        summary["sha256"] == json.loads((tmp_path / "model" / "model.json").read_text())["sha256"]
    )


def test_bit_identical_rerun_and_resume(tmp_path, small_store):
    cfg = TrainConfig(**TINY, epochs=4)
    straight = train_n2v(small_store, tmp_path / "a", cfg, seed=5, progress=False, fingerprint="fp")
    again = train_n2v(small_store, tmp_path / "b", cfg, seed=5, progress=False, fingerprint="fp")
    assert straight["sha256"] == again["sha256"]
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    part = train_n2v(
        small_store,
        tmp_path / "c",
        cfg,
        seed=5,
        progress=False,
        fingerprint="fp",
        stop_after_epochs=2,
    )
    assert part["epochs_done"] == 2 and part["stopped"] == "stop_after_epochs"
    assert (tmp_path / "c" / "checkpoints" / "last.pt").is_file()
    resumed = train_n2v(small_store, tmp_path / "c", cfg, seed=5, progress=False, fingerprint="fp")
    assert resumed["resumed_from_epoch"] == 2 and resumed["epochs_done"] == 4
    wc = _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    assert resumed["sha256"] == straight["sha256"]
    hist = json.loads((tmp_path / "c" / "history.json").read_text())["epochs"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    ref = json.loads((tmp_path / "a" / "history.json").read_text())["epochs"]
    assert [h["val_loss"] for h in hist] == [h["val_loss"] for h in ref]

    other = train_n2v(small_store, tmp_path / "d", cfg, seed=6, progress=False, fingerprint="fp")
    assert other["sha256"] != straight["sha256"]
    # a checkpoint from other settings is not resumed
    changed = train_n2v(
        small_store,
        tmp_path / "c",
        TrainConfig(**{**TINY, "learning_rate": 1e-3}, epochs=1),
        seed=5,
        progress=False,
        fingerprint="fp",
    )
    assert changed["resumed_from_epoch"] == 0 and changed["epochs_done"] == 1


def test_time_budget_stops_early(tmp_path, small_store):
    cfg = TrainConfig(**TINY, epochs=50, max_minutes=1e-6)
    s = train_n2v(small_store, tmp_path / "m", cfg, seed=1, progress=False)
    assert s["stopped"] == "max_minutes" and s["steps_done"] == 1 and s["epochs_done"] == 0
    hist = json.loads((tmp_path / "m" / "history.json").read_text())
    assert hist["stopped"] == "max_minutes" and hist["epochs"][0]["partial"] is True
    assert (tmp_path / "m" / "model.pt").is_file()


def test_step_plan_fits_the_budget():
    free = StepPlan(100, None, 0.0)
    assert not any(free.update(i, float(i)) for i in range(1, 100)) and free.total == 100
    roomy = StepPlan(100, 1000.0, 0.0)
    assert not any(roomy.update(i, 5.0 + i) for i in range(1, 100)) and roomy.total == 100
    tight = StepPlan(100, 60.0, 0.0, reserve=3.0)  # 5 s setup, then 1 s per step
    done = next(i for i in range(1, 101) if tight.update(i, 5.0 + i))
    assert done == tight.total == 52  # 5 s + 52 steps + 3 s reserve = 60 s
    assert tight.factor(tight.total - 1) < 0.02  # the cosine decay was compressed to fit


def test_3d_training_on_tiny_volume(tmp_path):
    vol = np.random.default_rng(2).normal(5, 1, (8, 24, 24)).astype(np.float32)
    store = _store(tmp_path, vol, "zyx", "vol")
    cfg = TrainConfig(**{**TINY, "batch_size": 2, "steps_per_epoch": 2}, epochs=1)
    s = train_n2v(store, tmp_path / "m3", cfg, seed=0, n2v2=True, progress=False)
    assert s["ndim"] == 3 and s["patch"] == [8, 16, 16] and s["method"] == "n2v2"
    model, meta = load_model(tmp_path / "m3")
    assert meta["ndim"] == 3 and meta["axes"] == "zyx" and model.n2v2
    out = predict_whole(model, meta, vol)
    assert out.shape == vol.shape and np.isfinite(out).all()


def test_too_small_image_error(tmp_path):
    store = _store(tmp_path, np.ones((6, 64), np.float32), "yx", "tiny")
    with pytest.raises(ValueError, match=r"tiny\.ome\.zarr.*axis 'y' has 6 pixels"):
        train_n2v(store, tmp_path / "m", TrainConfig(**TINY, epochs=1), seed=0, progress=False)


def test_lr_schedule():
    total = 100
    f = [lr_factor(s, total) for s in range(total)]
    assert f[0] == pytest.approx(0.2) and max(f) == pytest.approx(1.0)
    assert f[-1] == pytest.approx(0.01, abs=0.01) and all(
        a >= b for a, b in itertools.pairwise(f[5:])
    )


def test_mask_radius_auto_widens_the_blind_spot_on_correlated_noise(tmp_path):
    # Through the registry (n2v's settings block): a 320² image with noise of lag-1
    # correlation ≈ 0.58 trains with 5×5 blind spots, white noise with the pixel blind spot.
    from denoise.methods.registry import TrainRequest, get_method
    from tests.conftest import correlated_series

    rng = np.random.default_rng(7)
    corr = correlated_series(rng, n_t=1)[0][0]
    white = (250 + np.sqrt(6 * 250) * rng.normal(size=(320, 320))).astype(np.float32)
    cfg = TrainConfig(depth=2, features=8, patch_size=32, batch_size=4, epochs=1,
                      steps_per_epoch=2, threads=1, validation_fraction=0.0)  # fmt: skip
    spec = get_method("n2v")
    assert spec.settings().mask_radius == "auto"
    for name, data, want in (("c", corr, 2), ("w", white, 0)):
        store = _store(tmp_path, data, "yx", name)
        request = TrainRequest(store=str(store), model_dir=str(tmp_path / f"m{name}"), train=cfg,
                               settings=spec.settings(), seed=0, fingerprint="fp")  # fmt: skip
        spec.train(request)
        _, meta = load_model(tmp_path / f"m{name}")
        assert meta["method_settings"] == {"mask_radius": want}
