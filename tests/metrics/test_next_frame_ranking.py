"""evaluate's no-reference next-frame score ranks time-lapse methods like the truth (issue 17).

Every method runs through the real path: the prediction runner writes an output store (its
``denoise`` attributes record the predict configuration), :func:`window_predictor` rebuilds the
predictor of a method that sees neighbouring frames from them, and :func:`evaluate` scores the
store (leave-out windows for ``halo_t > 0``, the stored output otherwise).  On the synthetic
series of :mod:`denoise.synthetic.timelapse` (12 × 64 × 64, known truth, see ``SHAPE``), for every speed where
the score does not declare itself invalid, every pair of methods whose true PSNR differs by
>= 0.3 dB must be ordered by the score as by the truth.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from denoise.config import PredictConfig, TrainConfig
from denoise.io import omezarr
from denoise.methods.registry import build_predictor
from denoise.methods.spatiotemporal import SpatiotemporalSettings
from denoise.metrics.evaluate import evaluate
from denoise.metrics.next_frame import WindowPredictor, sample_frames, window_predictor
from denoise.metrics.noref import leave_out_window
from denoise.predict.runner import init_output, predict_units
from denoise.synthetic.timelapse import SPEEDS, timelapse

#: 12 × 64 × 64 series with one transient and one bright object: the feature density of the
#: benchmark's 128² frames (3 transients, 4 objects).  With the default counts crammed into a
#: 64² frame the transients alone make the static series "move" (motion ratio 1.20–1.24 at
#: speed 0, seeds 0–2, above MOTION_RATIO_MAX = 1.1); with these 1.08–1.10.
SHAPE = {"frames": 12, "size": 64, "n_transients": 1, "n_objects": 1}
#: Pairs closer than this in true PSNR may come in either order.
MARGIN_DB = 0.3
#: Frames each side for spatiotemporal and window_bm3d_vst in the ranking test: the default.
K = SpatiotemporalSettings().k


class WindowMean:
    """PlanePredictor with ``halo_t = k``: the mean of the window (a cheap window method)."""

    kind, ndim, output_names = "plane", 2, ("denoised",)

    def __init__(self, k: int) -> None:
        self.halo_t = k
        self.calls: list[list[float]] = []

    def __call__(self, window: np.ndarray, index: dict[str, int]) -> np.ndarray:
        self.calls.append([float(f.mean()) for f in window])
        return window.mean(axis=0)[None]


def _store(path: Path, data: np.ndarray) -> str:
    arr = omezarr.create_image(path, data.shape, data.dtype, "tyx", (1, *data.shape[1:]))
    arr[...] = data
    return str(path)


def _predict(raw: str, out: Path, predictor: Any, settings: dict[str, Any]) -> str:
    """Run the prediction runner into ``out`` (attributes as ``denoise init-output`` writes)."""
    cfg = PredictConfig(threads=1)
    attrs = {"predict_config": cfg.model_dump(mode="json"), "method_settings": settings, "seed": 0}
    init_output(raw, {"denoised": str(out)}, "test", attrs)
    predict_units(raw, {"denoised": str(out)}, predictor, cfg, "test")
    return str(out)


def _psnr(store: str, truth: np.ndarray) -> float:
    out = np.asarray(omezarr.open_image(store)[0][...], dtype=np.float64)
    rng = float(truth.max() - truth.min())
    return float(10 * np.log10(rng**2 / np.mean((out - truth.astype(np.float64)) ** 2)))


def _misordered(psnr: dict[str, float], score: dict[str, float]) -> list[str]:
    """Pairs >= MARGIN_DB apart in true PSNR that the score (lower is better) orders wrongly."""
    bad = []
    for a, b in itertools.combinations(psnr, 2):
        if abs(psnr[a] - psnr[b]) >= MARGIN_DB and (psnr[a] > psnr[b]) != (score[a] < score[b]):
            bad.append(f"{a} {psnr[a]:.2f} dB / {score[a]:.2f} vs {b} {psnr[b]:.2f} dB / {score[b]:.2f}")
    return bad


def _score_rows(raw: str, rows: dict[str, tuple[str, WindowPredictor | None]], noise: dict) -> dict:
    """``{name: no_reference['denoised']}`` of every row (output store, window predictor)."""
    return {
        name: evaluate(raw, {"denoised": out}, "", "", noise, window)["no_reference"]["denoised"]
        for name, (out, window) in rows.items()
    }


def test_sample_frames_spread_and_bounded() -> None:
    assert sample_frames(1) == [] and sample_frames(2) == [0] and sample_frames(9) == list(range(8))
    many = sample_frames(1000)
    assert len(many) == 8 and many[0] == 0 and many[-1] == 998
    assert all(b - a > 100 for a, b in itertools.pairwise(many))


def test_leave_out_score_through_evaluate_and_moving_series_flagged(tmp_path: Path) -> None:
    """Fast: a per-frame Gaussian and 2k+1 window means through the runner and evaluate."""
    found = {}
    for speed in (0.0, 5.0):
        s = timelapse(speed, 0, **SHAPE)
        noise = {"channels": [s.noise_params()]}
        raw = _store(tmp_path / f"raw{speed:g}.ome.zarr", s.noisy)
        rows = {
            "gaussian": (_predict(raw, tmp_path / f"g{speed:g}", build_predictor(
                "gaussian", PredictConfig(threads=1), 0, noise_model=noise), {}), None),
        }
        for k in (1, 2):
            out = _predict(raw, tmp_path / f"w{k}_{speed:g}", WindowMean(k), {})
            rows[f"window_mean_k{k}"] = (out, WindowPredictor(WindowMean(k)))
        found[speed] = (_score_rows(raw, rows, noise), {n: _psnr(o, s.truth) for n, (o, _) in rows.items()})
    still, moving = found[0.0][0], found[5.0][0]
    for name, nr in still.items():
        nf = nr["next_frame"]
        assert nf["valid"] is True and nr["next_frame_mse"] == nf["score"]
        assert nf["frames"] == sample_frames(12) and len(nf["frames"]) == 8
        assert nf["estimate"] == ("stored output" if name == "gaussian" else "leave-out window")
    assert not _misordered(found[0.0][1], {n: v["next_frame_mse"] for n, v in still.items()})
    for nr in moving.values():
        assert nr["next_frame"]["valid"] is False and nr["next_frame_mse"] is None
        assert "moves or changes" in nr["next_frame"]["reason"]
        assert nr["next_frame"]["motion_ratio"] > 1.5


def test_window_method_never_sees_the_frame_it_is_scored_against(tmp_path: Path) -> None:
    """The leave-out estimate is the predictor on leave_out_window; frame t+1 never enters."""
    s = timelapse(0.0, 1, **SHAPE)
    raw = _store(tmp_path / "raw.ome.zarr", s.noisy)
    out = _predict(raw, tmp_path / "w2", WindowMean(2), {})
    spy = WindowMean(2)
    nr = evaluate(raw, {"denoised": out}, "", "", None, WindowPredictor(spy))["no_reference"]
    nf = nr["denoised"]["next_frame"]
    assert nf["valid"] is None and nr["denoised"]["next_frame_mse"] == nf["score"]
    means = [float(f.mean()) for f in s.noisy]
    expect, biased = [], []
    for call, t in zip(spy.calls, nf["frames"], strict=True):
        assert call == pytest.approx([means[i] for i in leave_out_window(12, t, 2)], rel=1e-6)
        est = s.noisy[leave_out_window(12, t, 2)].astype(np.float64).mean(0)
        expect.append(np.mean((est - s.noisy[t + 1]) ** 2))
        lo, hi = max(0, t - 2), t + 3
        biased.append(np.mean((s.noisy[lo:hi].astype(np.float64).mean(0) - s.noisy[t + 1]) ** 2))
    assert nf["score"] == pytest.approx(np.mean(expect), rel=1e-6)
    assert np.mean(biased) < 0.9 * nf["score"]  # what the stored output would have scored


def test_window_predictor_rebuilt_from_what_predict_recorded_or_was_given(tmp_path: Path) -> None:
    s = timelapse(0.0, 0, **SHAPE)
    noise = {"channels": [s.noise_params()]}
    raw = _store(tmp_path / "raw.ome.zarr", s.noisy)
    out = _predict(raw, tmp_path / "w", WindowMean(2), {"k": 2})
    assert window_predictor("gaussian", out, None, noise) is None  # per-frame: stored output
    rec = window_predictor("window_bm3d_vst", out, None, noise)
    assert rec is not None and rec.halo_t == 2 and rec.predictor.kind == "plane"
    given = window_predictor("window_bm3d_vst", out, None, noise, given={"method_settings": {"k": 1}})
    assert given is not None and given.halo_t == 1
    bare = _store(tmp_path / "bare.ome.zarr", s.noisy)  # no prediction attributes
    with pytest.raises(ValueError, match="--params and --method-params"):
        window_predictor("window_bm3d_vst", bare, None, noise)
    cfg = PredictConfig(threads=1).model_dump(mode="json")
    ok = window_predictor("window_bm3d_vst", bare, None, noise,
                          given={"predict_config": cfg, "method_settings": {"k": 3}})
    assert ok is not None and ok.halo_t == 3


def _train(method: str, store: str, model_dir: Path) -> None:
    from denoise.methods.n2v import train_n2v
    from denoise.methods.spatiotemporal import train_spatiotemporal

    cfg = TrainConfig(
        depth=2, features=8, patch_size=32, batch_size=8, epochs=1, steps_per_epoch=300,
        learning_rate=3e-3, mask_fraction=0.05, threads=1, validation_fraction=0.0,
    )  # fmt: skip
    if method == "spatiotemporal":
        train_spatiotemporal(store, model_dir, cfg, seed=0, k=K, progress=False)
    else:
        train_n2v(store, model_dir, cfg, seed=0, progress=False)


def _four_methods(raw: str, work: Path, noise: dict) -> dict[str, tuple[str, WindowPredictor | None]]:
    """spatiotemporal, n2v, bm3d_vst and window_bm3d_vst (k = K) through runner and rebuild."""
    rows = {}
    for method in ("spatiotemporal", "n2v", "bm3d_vst", "window_bm3d_vst"):
        model = work / f"{method}_model"
        settings = {"k": K} if method in ("spatiotemporal", "window_bm3d_vst") else {}
        if method in ("spatiotemporal", "n2v"):
            _train(method, raw, model)
        pred = build_predictor(
            method, PredictConfig(threads=1), 0, model_dir=model if model.exists() else None,
            noise_model=noise, settings=settings,
        )
        out = _predict(raw, work / method, pred, settings)
        rows[method] = (out, window_predictor(method, out, model if model.exists() else None, noise))
        assert (rows[method][1] is not None) == (settings != {})
    return rows


@pytest.mark.slow
def test_four_methods_ranked_like_the_truth_at_every_valid_speed(tmp_path: Path) -> None:
    """Slow: two 300-step networks and BM3D per speed (22 min on the 2-core machine at load 12,
    3 min at load 1.5).

    With the default k = 3 (c9c3969, seed 0; true PSNR dB / score): speed 0 (valid):
    spatiotemporal 37.23 / 208.3, n2v 34.60 / 217.5, bm3d_vst 34.61 / 217.9, window_bm3d_vst
    34.75 / 219.9 (its pairs with n2v and bm3d_vst are within MARGIN_DB); speed 0.5 (valid):
    36.59 / 215.3, 34.84 / 225.7, 34.72 / 226.0, 33.75 / 233.5; speeds 2 and 5 declared invalid.
    With k = 2 (the figures below) it passed as well.

    Measured (df39e91, seed 0; true PSNR dB / score): speed 0 (valid): spatiotemporal 37.27 /
    207.7, n2v 34.60 / 217.5, bm3d_vst 34.61 / 217.9, window_bm3d_vst 35.50 / 212.0; speed 0.5
    (valid): 36.78 / 216.8, 34.84 / 225.7, 34.72 / 226.0, 34.98 / 220.4; speeds 2 and 5
    declared invalid (there window_bm3d_vst, the worst by 5–8 dB, would have the lowest score
    at speed 5).  At 0.5 px/frame the score still puts window_bm3d_vst 5.2 below n2v, as at
    speed 0, although their true PSNR gap shrank from 0.9 to 0.14 dB: the leave-out window
    (frames t−2, t−1, t, t+2, t+3) leans towards t+1, which flatters window methods on moving
    scenes; pairs that close are below MARGIN_DB here.
    """
    torch.set_num_threads(1)
    report, failures, valid = [], [], {}
    for speed in SPEEDS:
        s = timelapse(speed, 0, **SHAPE)
        noise = {"channels": [s.noise_params()]}
        work = tmp_path / f"v{speed:g}"
        raw = _store(work / "raw.ome.zarr", s.noisy)
        rows = _four_methods(raw, work, noise)
        nr = _score_rows(raw, rows, noise)
        psnr = {n: _psnr(o, s.truth) for n, (o, _) in rows.items()}
        flags = {n: v["next_frame"]["valid"] for n, v in nr.items()}
        assert len(set(flags.values())) == 1, flags  # one verdict per input
        valid[speed] = flags["n2v"]
        score = {n: v["next_frame"]["score"] for n, v in nr.items()}
        report.append(f"speed {speed:g} valid {valid[speed]}: " + ", ".join(
            f"{n} {psnr[n]:.2f} dB / {score[n]:.2f}" for n in psnr))
        if valid[speed]:
            failures += [f"speed {speed:g}: {b}" for b in _misordered(psnr, score)]
        else:
            assert all(v["next_frame_mse"] is None for v in nr.values())
    print("\n".join(report))
    assert valid[0.0] and not valid[5.0], report
    assert not failures, "\n".join(failures + report)
