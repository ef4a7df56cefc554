"""One runner per method for the quality benchmark.

Every runner takes an :class:`~datasets.Item` and a :class:`Context` and returns
``(denoised, seconds, extra)``: ``denoised`` is ``(n_frames, y, x)`` float32 for the item's
scored frames (raw units), ``seconds`` the method's wall time for the whole unit (training,
noise fit and prediction of the scored frames), and ``extra`` a dict with ``budget`` (text),
optional ``note``/per-frame details, and ``score_fns``: one cheap ``denoise_fn`` per scored
frame for the no-reference blind-spot score (absent when re-running the method is too
expensive, e.g. Noise2Fast, which would have to retrain).

Optional methods (PN2V, DecoNoising, CAREamics, BM3D) report themselves unavailable through
:func:`availability` instead of failing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Item

from denoise.metrics.image import psnr

#: Fraction of pixels masked by the no-reference score (one pixel per 4×4 cell).
SCORE_FRACTION = 1 / 16
#: Offset of the score's mask seed from the run seed: the blind Gaussian picks its σ with a
#: blind-spot mask drawn from the run seed, and must not be scored on that same mask.
SCORE_SEED_OFFSET = 1

Runner = Callable[[Item, "Context"], tuple[np.ndarray, float, dict[str, Any]]]


@dataclass
class Context:
    """Settings shared by the runners of one benchmark run.

    Attributes
    ----------
    work
        Scratch directory (stores, model directories, CAREamics exchange files).
    seed
        Seed of every method and of the blind-spot masks.
    budgets
        Training wall-clock budget in seconds per data set for the trained networks.
    careamics_python
        Python of the CAREamics venv (None or missing: CAREamics is skipped).
    n2f_max_steps
        Noise2Fast step cap (its own stopping rule normally ends training long before).
    steps_per_second
        Planned N2V steps per second of budget (4: CAREamics' speed on a quiet 2-core
        machine, shared/peers.md).  The plan must not be much larger than what the budget
        affords: the learning-rate warm-up lasts 5 % of the *planned* steps, also when the
        budget stops training early (with 10000 planned steps and 75 done under load, the
        learning rate never left the warm-up: 24.1 dB on fish instead of ~30).
    """

    work: Path
    seed: int = 0
    budgets: dict[str, float] = field(default_factory=dict)
    careamics_python: Path | None = None
    n2f_max_steps: int = 4000
    steps_per_second: float = 4.0
    _noise: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The current unit's results by method (:func:`run_method`), reset when the unit changes.
    _results: dict[str, Any] = field(default_factory=dict)

    @property
    def score_seed(self) -> int:
        """Seed of the no-reference score's masks (the same for every method)."""
        return self.seed + SCORE_SEED_OFFSET

    def budget(self, item: Item) -> float:
        """Training budget (s) of the trained networks on ``item``'s set."""
        return float(self.budgets.get(item.set, self.budgets.get("default", 100.0)))


def _planes(item: Item) -> list[np.ndarray]:
    return [item.plane(k) for k in item.frames]


def masked_input(plane: np.ndarray, seed: int, fraction: float = SCORE_FRACTION) -> np.ndarray:
    """The masked image :func:`masked_pixel_score` builds for ``plane`` and ``seed`` (one pass)."""
    from denoise.metrics.noref import masked_pixel_score

    box: list[np.ndarray] = []

    def record(m: np.ndarray) -> np.ndarray:
        box.append(np.array(m, copy=True))
        return m

    masked_pixel_score(plane, record, fraction, seed, 1)
    return box[0]


# --------------------------------------------------------------------------- classical


def run_noisy(item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """The noisy input itself (the bar every method must clear); not ranked."""
    return np.stack([p.astype(np.float32) for p in _planes(item)]), 0.0, {"budget": "–"}


def run_gaussian_oracle(item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Gaussian filter with σ swept against GT (grid 0.5–3.0 px): an upper bound, not a method.

    ``seconds`` is one filter at the chosen σ; the sweep, which needs GT, is not counted.
    """
    from scipy import ndimage

    from denoise.methods.classical import SIGMA_GRID

    gt = item.gt.astype(np.float64)
    outs, sigmas, secs, fns = [], [], 0.0, []
    for p in _planes(item):
        x = p.astype(np.float64)
        best = max(SIGMA_GRID, key=lambda s: psnr(gt, ndimage.gaussian_filter(x, s)))
        t0 = time.perf_counter()
        outs.append(ndimage.gaussian_filter(x, best).astype(np.float32))
        secs += time.perf_counter() - t0
        sigmas.append(best)
        fns.append(lambda m, s=best: ndimage.gaussian_filter(np.asarray(m, np.float64), s))
    return np.stack(outs), secs, {"budget": "σ from GT", "sigma": sigmas, "score_fns": fns}


def run_gaussian(item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Our ``gaussian`` method: σ chosen per plane by the blind-spot score (no GT).

    Its score function is the filter with the σ it chose (fitted to the image, like a trained
    network's weights); the score's masks come from another seed than the σ choice's.
    """
    from scipy import ndimage

    from denoise.methods.classical import GaussianPredictor

    outs, sigmas, fns = [], [], []
    t0 = time.perf_counter()
    for k, p in zip(item.frames, _planes(item), strict=True):
        pred = GaussianPredictor(None, None, seed=ctx.seed)
        outs.append(pred(p.astype(np.float32), {"t": k})[0])
        sigmas.append(next(iter(pred.chosen.values()))["sigma"])
        fns.append(lambda m, s=sigmas[-1]: ndimage.gaussian_filter(np.asarray(m, np.float64), s))
    secs = time.perf_counter() - t0
    return np.stack(outs), secs, {"budget": "σ blind", "sigma": sigmas, "score_fns": fns}


def noise_fit(item: Item, ctx: Context) -> dict[str, Any]:
    """Poisson-Gaussian fit of the whole unit (cached per unit)."""
    from denoise.config import NoiseModelConfig
    from denoise.noise.poisson_gaussian import estimate_from_array

    key = f"{item.set}/{item.name}/{item.noisy.shape}"
    if key not in ctx._noise:
        ctx._noise[key] = estimate_from_array(item.noisy, NoiseModelConfig(), seed=ctx.seed)
    return ctx._noise[key]


def positive_gain(fit: dict[str, Any], floor: float = 1e-3) -> dict[str, Any]:
    """``fit`` with its gain raised to ``floor`` when the estimate is not positive.

    Signal-independent noise (BSD68's Gaussian σ = 25) fits a gain ≤ 0, which PN2V's
    Poisson-Gaussian noise model refuses; a tiny gain with ``read_var`` = the fitted intercept
    is the Gaussian model the data show.
    """
    if fit["gain"] > 0:
        return fit
    return {**fit, "gain": floor, "read_var": max(float(fit["intercept"]), 1e-12), "offset": 0.0}


def gt_noise_fit(item: Item) -> dict[str, Any]:
    """Poisson-Gaussian line fitted to the residual ``noisy − GT`` (an oracle noise model).

    Equal-count bins of the level ``E[noisy]`` (GT plus the bin's mean residual); per bin the
    residual variance; ``var = gain · level + intercept`` by least squares weighted with the
    bin counts; reported in the minimal-offset convention of ``denoise.noise``.
    """
    x = np.asarray(item.noisy, np.float64).reshape(-1, *item.gt.shape)
    g = np.broadcast_to(item.gt.astype(np.float64), x.shape)
    r = (x - g).ravel()
    order = np.argsort(g.ravel(), kind="stable")
    lev, var = [], []
    for idx in np.array_split(order, 32):
        lev.append(float(np.mean(g.ravel()[idx] + r[idx])))
        var.append(float(np.var(r[idx])))
    gain, intercept = np.polyfit(lev, var, 1)
    gain, intercept = float(gain), float(intercept)
    if intercept >= 0 or gain <= 0:
        return {
            "gain": gain,
            "read_var": max(intercept, 0.0),
            "offset": 0.0,
            "intercept": intercept,
        }
    return {"gain": gain, "read_var": 0.0, "offset": -intercept / gain, "intercept": intercept}


def _bm3d(item: Item, fit: dict[str, Any], t0: float) -> tuple[np.ndarray, float, dict[str, Any]]:
    """BM3D after the generalised Anscombe VST with ``fit``, on every scored frame.

    When the fitted gain is not positive (signal-independent noise, e.g. BSD68's Gaussian
    σ = 25) the VST degenerates to a division by the read-noise σ, so plain BM3D runs with
    σ = √read_var instead, and the note says so.
    """
    import bm3d

    from denoise.methods.classical import Bm3dVstPredictor

    extra: dict[str, Any] = {"budget": "–", "gain": fit["gain"], "read_var": fit["read_var"],
                             "offset": fit["offset"]}  # fmt: skip
    if fit["gain"] > 0:
        pred = Bm3dVstPredictor(fit)

        def fn(m: np.ndarray) -> np.ndarray:
            return pred(np.asarray(m, np.float32), {"c": 0})[0]
    else:
        sigma = float(np.sqrt(max(fit["read_var"], 1e-12)))
        extra["note"] = f"gain {fit['gain']:.3g} ≤ 0: plain BM3D, σ = {sigma:.1f}"

        def fn(m: np.ndarray) -> np.ndarray:
            return np.asarray(bm3d.bm3d(np.asarray(m, np.float64), sigma), np.float32)

    outs = np.stack([fn(p) for p in _planes(item)])
    extra["score_fns"] = [fn] * len(item.frames)
    return outs, time.perf_counter() - t0, extra


def run_bm3d_vst(item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """BM3D after the generalised Anscombe VST built from our blind Poisson-Gaussian estimate."""
    t0 = time.perf_counter()
    return _bm3d(item, noise_fit(item, ctx), t0)


def run_bm3d_vst_oracle(item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """BM3D+VST with the noise model fitted to ``noisy − GT``: what a perfect estimate gives.

    Tells the VST/BM3D pipeline apart from the blind noise estimate (which reads the variance
    low on spatially correlated noise).  ``seconds`` excludes the GT fit.
    """
    fit = gt_noise_fit(item)
    out, secs, extra = _bm3d(item, fit, time.perf_counter())
    extra["budget"] = "noise model from GT"
    return out, secs, extra


# --------------------------------------------------------------------------- trained networks


def _store(item: Item, ctx: Context) -> Path:
    """The unit ingested into an OME-Zarr store (once per unit)."""
    from denoise.io.ingest import ingest

    base = ctx.work / item.set / item.name.replace("/", "_")
    store = base / "input.ome.zarr"
    if not store.exists():
        base.mkdir(parents=True, exist_ok=True)
        np.save(base / "input.npy", item.noisy)
        ingest(str(base / "input.npy"), store, axes=item.axes)
    return store


def train_config(seconds: float, ctx: Context) -> Any:
    """TrainConfig of the benchmark: defaults, CPU, ``max_minutes`` = the budget.

    Planned steps: ``ctx.steps_per_second`` × budget, in whole epochs of the default 25 steps,
    so on a quiet machine the budget and the plan end together and under load the budget
    stops training earlier (the schedule is then compressed to the steps that fit).
    """
    from denoise.config import TrainConfig

    spe = TrainConfig().steps_per_epoch
    epochs = max(1, math.ceil(ctx.steps_per_second * seconds / spe))
    return TrainConfig(epochs=epochs, max_minutes=seconds / 60.0, device="cpu")


def _network_result(
    item: Item, predict: Callable[[np.ndarray], np.ndarray], t_start: float, extra: dict[str, Any]
) -> tuple[np.ndarray, float, dict[str, Any]]:
    outs = np.stack([predict(p).astype(np.float32) for p in _planes(item)])
    extra["score_fns"] = [predict] * len(item.frames)
    return outs, time.perf_counter() - t_start, extra


def run_trained(item: Item, ctx: Context, method: str) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Any trained method of the registry: its own train function on the unit for the set's
    budget (default ``methods.<name>`` settings), then whole-image prediction with its own
    predictor (output ``denoised``)."""
    from denoise.config import PredictConfig
    from denoise.methods.registry import PredictRequest, TrainRequest, get_method
    from denoise.predict.reference import predict_whole_image

    spec = get_method(method)
    budget = ctx.budget(item)
    store = _store(item, ctx)
    settings = spec.settings()
    noise = positive_gain(noise_fit(item, ctx)) if "noise_model" in spec.needs else None
    request = TrainRequest(
        store=str(store), model_dir=str(store.parent / method), train=train_config(budget, ctx),
        settings=settings, seed=ctx.seed, fingerprint=f"quality:{item.set}:{item.name}",
        noise_model=noise,  # a fitted Poisson-Gaussian model (dict) where the method needs one
    )  # fmt: skip
    t0 = time.perf_counter()
    summary = spec.train(request)
    train_s = time.perf_counter() - t0
    pred = spec.predictor(PredictRequest(
        predict=PredictConfig(device="cpu"), settings=settings, seed=ctx.seed,
        model_dir=request.model_dir,
    ))  # fmt: skip
    out_index = spec.outputs.index("denoised")

    def predict(m: np.ndarray) -> np.ndarray:
        return predict_whole_image(pred, np.asarray(m, np.float32))[out_index]

    extra = {"budget": f"{budget:g} s training", "train_s": train_s,
             "steps": summary.get("steps_done"), "steps_per_s": summary.get("steps_per_second"),
             "predictor": f"{type(pred).__name__}[denoised]"}  # fmt: skip
    return _network_result(item, predict, t0, extra)


def run_noise2fast(item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Noise2Fast per scored frame with its own stopping rule (PredictConfig defaults).

    Not ranked by the no-reference score: its ``denoise_fn`` would be a full retraining.
    """
    from denoise.config import PredictConfig
    from denoise.methods.noise2fast import Noise2FastPredictor, Noise2FastSettings

    cfg = Noise2FastSettings(max_steps=ctx.n2f_max_steps)
    pred = Noise2FastPredictor(PredictConfig(device="cpu"), seed=ctx.seed, settings=cfg)
    t0 = time.perf_counter()
    outs, steps, stops = [], [], []
    for k, p in zip(item.frames, _planes(item), strict=True):
        outs.append(pred(p.astype(np.float32), {"t": k})[0])
        steps.append(pred.last_info.get("steps"))
        stops.append(pred.last_info.get("stop_reason"))
    extra = {"budget": f"own stop (patience {cfg.patience}×"
                       f"{cfg.validate_every} steps, ≤ {ctx.n2f_max_steps} steps)",
             "steps": steps, "stop": stops}  # fmt: skip
    return np.stack(outs), time.perf_counter() - t0, extra


def run_careamics(item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """CAREamics 0.3.5 N2V in its own venv (subprocess), same budget as our N2V.

    The masked images of the no-reference score are predicted in the same subprocess, so the
    score uses the trained CAREamics model's forward pass like the other networks.
    """
    from careamics_runner import run_careamics_subprocess

    budget = ctx.budget(item)
    planes = _planes(item)
    masked = [masked_input(p, ctx.score_seed) for p in planes]
    preds, info = run_careamics_subprocess(
        ctx.careamics_python, item.noisy, item.axes, planes + masked, budget, ctx.seed,
        ctx.work / item.set / item.name.replace("/", "_") / "careamics",
    )  # fmt: skip
    n = len(planes)

    def lookup(m: np.ndarray, i: int) -> np.ndarray:
        if not np.array_equal(np.asarray(m, masked[i].dtype), masked[i]):
            raise ValueError("CAREamics score: the masked image differs from the precomputed one")
        return preds[n + i]

    fns = [lambda m, i=i: lookup(m, i) for i in range(n)]
    extra = {"budget": f"{budget:g} s training", "score_fns": fns, **info}
    return np.stack(preds[:n]).astype(np.float32), float(info["seconds"]), extra


def _runners() -> dict[str, Runner]:
    """References and peers, then every registered method (trained ones run generically)."""
    from denoise.methods.registry import all_methods

    own: dict[str, Runner] = {
        "gaussian": run_gaussian,
        "bm3d_vst": run_bm3d_vst,
        "noise2fast": run_noise2fast,
    }
    runners: dict[str, Runner] = {
        "noisy": run_noisy,
        "gaussian_oracle": run_gaussian_oracle,
        "bm3d_vst_oracle": run_bm3d_vst_oracle,
    }
    for spec in all_methods():
        if "frames" in spec.needs:
            continue  # time-lapse methods: this benchmark scores single images (issue 17)
        if spec.trained:
            runners[spec.name] = lambda item, ctx, m=spec.name: run_trained(item, ctx, m)
        elif spec.name in own:
            runners[spec.name] = own[spec.name]
        else:
            raise KeyError(f"quality benchmark: no runner for the {spec.kind} method '{spec.name}'")
    runners["careamics_n2v"] = run_careamics
    return runners


RUNNERS: dict[str, Runner] = _runners()


def run_auto(item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """The default of an empty ``method`` cell (:mod:`denoise.methods.auto`) for a scored
    frame as a single image: runs the chosen method's runner (the ``auto`` row repeats it)."""
    from denoise.methods.auto import AutoMethodConfig, choose_method

    choice = choose_method("yx", item.gt.shape, AutoMethodConfig())
    out, secs, extra = run_method(choice.method, item, ctx)
    return out, secs, {**extra, "auto": f"{choice.method} ({choice.reason})"}


RUNNERS["auto"] = run_auto


def run_method(method: str, item: Item, ctx: Context) -> tuple[np.ndarray, float, dict[str, Any]]:
    """``RUNNERS[method]`` on ``item``, run once per unit: the ``auto`` row reuses the result
    of the method it chose when that row already ran on the unit (no second BM3D)."""
    unit = f"{item.set}/{item.name}/{item.noisy.shape}"
    if ctx._results.get("unit") != unit:
        ctx._results = {"unit": unit}
    if method not in ctx._results:
        ctx._results[method] = RUNNERS[method](item, ctx)
    return ctx._results[method]

LABELS: dict[str, str] = {
    "noisy": "noisy input",
    "gaussian_oracle": "Gaussian, σ from GT (oracle)",
    "gaussian": "Gaussian, blind σ (ours)",
    "bm3d_vst": "BM3D + GAT VST, blind noise fit (ours)",
    "bm3d_vst_oracle": "BM3D + GAT VST, noise model from GT",
    "n2v": "N2V (ours)",
    "n2v2": "N2V2 (ours)",
    "pn2v": "PN2V (ours)",
    "deconoising": "DecoNoising (ours)",
    "noise2fast": "Noise2Fast (ours)",
    "careamics_n2v": "CAREamics 0.3.5 N2V",
    "auto": "the default (empty method cell: auto_method rules)",
}


def availability(method: str, ctx: Context) -> str:
    """Empty when ``method`` can run here, else why not (printed as a note, never an error)."""
    if method in ("bm3d_vst", "bm3d_vst_oracle", "auto"):
        try:
            import bm3d  # noqa: F401
        except ImportError:
            return "PyPI package bm3d not installed (pip install bm3d)"
    if method == "careamics_n2v":
        py = ctx.careamics_python
        if py is None or not Path(py).exists():
            return (f"CAREamics venv not found ({py}); install it with the recipe in "
                    "shared/peers.md")  # fmt: skip
    return ""
