"""PN2V posterior tuned on repeated frames: the next-frame score ranks like the true MSE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from denoise.config import PredictConfig
from denoise.io.ingest import ingest
from denoise.methods.pn2v import PN2VPredictor, train_pn2v
from denoise.methods.pn2v_tuning import SCALES, TEMPERATURES, posterior_scores
from denoise.models.store import load_model
from denoise.noise.base import PoissonGaussianNoiseModel

CPU = PredictConfig(device="cpu", threads=1)
GAIN, READ_VAR = 1.5, 1.0


def _clean(n: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:n, 0:n] / n
    return 40.0 + 30.0 * np.sin(2 * np.pi * 1.5 * xx) * np.cos(2 * np.pi * yy)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_pn2v_config, tiny_pn2v_settings):
    """4 frames of one static scene, independent Poisson-Gaussian noise; PN2V tuned on them."""
    tmp = tmp_path_factory.mktemp("tuning")
    clean = _clean()
    rng = np.random.default_rng(0)
    frames = np.stack(
        [GAIN * rng.poisson(clean / GAIN) + rng.normal(0, READ_VAR**0.5, clean.shape) for _ in range(4)]
    ).astype(np.float32)
    np.save(tmp / "frames.npy", frames)
    store = tmp / "frames.ome.zarr"
    ingest(str(tmp / "frames.npy"), store, axes="tyx")
    nm = PoissonGaussianNoiseModel(gain=GAIN, read_var=READ_VAR)
    cfg = tiny_pn2v_config(epochs=2)
    settings = tiny_pn2v_settings(posterior="frames")
    summary = train_pn2v(store, tmp / "m", cfg, 0, nm, progress=False, settings=settings)
    return tmp, store, nm, clean, frames, summary, (cfg, settings)


def test_next_frame_score_is_the_true_mse_plus_the_noise(trained):
    tmp, _, _, clean, frames, _, _ = trained
    model, meta = load_model(tmp / "m")
    pred = PN2VPredictor(model, meta, CPU)
    scores = posterior_scores(pred, frames)
    assert [(s, t) for s, t, _ in scores] == [(s, t) for s in SCALES for t in TEMPERATURES]
    mean, std = pred.net.norm(0)
    true = []
    for s, t, _ in scores:
        est = np.stack([_estimate(pred, f, mean, std, s, t) for f in frames])
        true.append(float(np.mean((est - clean) ** 2)))
    score = np.array([r[2] for r in scores])
    true = np.array(true)
    # E‖f(x_i) − x_j‖² = MSE + the noise variance (gain·s + read variance), for every candidate.
    noise_var = float(np.mean(GAIN * clean + READ_VAR))
    np.testing.assert_allclose(score - true, noise_var, rtol=0.06)
    assert spearmanr(score, true).statistic > 0.8
    chosen = int(np.argmin(score))
    assert true[chosen] <= 1.05 * true.min()
    # The candidates differ by more than the tolerance above (the test can fail).
    assert true.max() > 1.2 * true.min()


def _estimate(pred, frame, mean, std, scale, temperature):
    from denoise.models.store import pad_widths

    widths = pad_widths(frame.shape, pred.halo, pred.multiple)
    padded = np.pad(frame, widths, mode="reflect")
    feat = pred.features(np.ascontiguousarray((padded[None] - mean) / std))
    mmse, _ = pred.posterior(feat, torch.from_numpy(padded), mean, std, scale, temperature)
    crop = tuple(slice(a, a + n) for (a, _), n in zip(widths, frame.shape, strict=True))
    return mmse.numpy()[crop]


def test_training_with_frames_stores_the_choice_and_the_predictor_uses_it(trained):
    tmp, store, nm, _, frames, summary, cfg = trained
    post = summary["posterior"]
    best = min(post["scores"], key=lambda r: r[2])
    assert (post["scale"], post["temperature"]) == (best[0], best[1])
    assert post["frames"] == 4 and len(post["scores"]) == len(SCALES) * len(TEMPERATURES)
    pred = PN2VPredictor.from_model_dir(tmp / "m", CPU)
    assert (pred.posterior_scale, pred.temperature) == (post["scale"], post["temperature"])
    assert pred.describe()["posterior_scale"] == post["scale"]
    mean, std = pred.net.norm(0)
    tuned = pred.predict_image(frames[0])[0]
    np.testing.assert_allclose(
        tuned, _estimate(pred, frames[0], mean, std, post["scale"], post["temperature"]), atol=1e-4
    )
    if (post["scale"], post["temperature"]) != (1.0, 1.0):
        assert not np.allclose(tuned, _estimate(pred, frames[0], mean, std, 1.0, 1.0), atol=1e-3)
    # The same training with the paper's posterior resumes the finished checkpoint (the
    # setting acts after training) and drops the tuned values.
    train_cfg, settings = cfg
    paper = settings.model_copy(update={"posterior": "paper"})
    again = train_pn2v(store, tmp / "m", train_cfg, 0, nm, progress=False, settings=paper)
    assert again["steps_done"] == summary["steps_done"] and "posterior" not in again
    pred = PN2VPredictor.from_model_dir(tmp / "m", CPU)
    assert (pred.posterior_scale, pred.temperature) == (1.0, 1.0)
    assert "posterior" not in load_model(tmp / "m")[1]["objective"]


def test_frames_posterior_needs_a_second_frame(tmp_path, tiny_pn2v_config, tiny_pn2v_settings):
    np.save(tmp_path / "one.npy", np.zeros((32, 32), np.float32))
    store = tmp_path / "one.ome.zarr"
    ingest(str(tmp_path / "one.npy"), store, axes="yx")
    with pytest.raises(ValueError, match=r"one\.ome\.zarr.*no second frame along t"):
        train_pn2v(
            store,
            tmp_path / "m",
            tiny_pn2v_config(),
            0,
            PoissonGaussianNoiseModel(1.0, 1.0),
            settings=tiny_pn2v_settings(posterior="frames"),
        )
