"""Probabilistic Noise2Void (Krull, Vičar, Prakash, Lalit, Jug 2020): training objective and predictor.

The U-Net outputs ``K`` values per pixel, read as samples ``s^k`` of the prior of the clean
signal given the pixel's surroundings.  With a noise model ``p(x | s)``
(:mod:`denoise.noise.base`):

* training (blind-spot masking as in N2V, shared loop :func:`denoise.methods.n2v.train_n2v`)
  minimises, over the masked pixels, ``−log((1/K) Σ_k p(x_i | s_i^k))``, computed in RAW units
  (samples and target de-normalised with the channel's mean/std) with ``logsumexp``;
* prediction (no masking) weighs the samples by the likelihood of the observed value:
  ``MMSE = Σ_k p(x|s^k) s^k / Σ_k p(x|s^k)``, and the posterior standard deviation
  ``sqrt(Σ_k p(x|s^k) (s^k − MMSE)² / Σ_k p(x|s^k))`` is written as a second output
  (``"uncertainty"``), an uncertainty map in raw units.

Memory at prediction is bounded for any ``K``: the network body runs once per batch of
tiles, then the 1×1 output layer is applied ``k_chunk`` samples at a time and the weighted
sums are accumulated with a running maximum (a streaming log-sum-exp), so at most
``k_chunk`` sample maps of one tile are held.  Every step is per pixel, so tiled output equals
whole-image output exactly as for N2V (same halo and lattice).

Choices the paper leaves open, written down:

* Sample spread: the loss sees ``s_k = ō + α·(o_k − ō)`` of the output channels ``o_k``, with a
  learnt global factor ``α`` starting at 0.1, so training starts from nearly coincident samples
  (:class:`PN2VObjective`; measured on FMD confocal data, much faster to train than the plain
  parametrisation at CPU budgets).  The predictor folds ``α`` into the output layer.
* Prior calibration: after training, one spread factor per intensity level is fitted on
  blind-spot pixels with the same likelihood score (:func:`calibrate_prior`); no ground truth.
* The loss is averaged over masked pixels; the validation score is the same negative
  log-likelihood.
* Posterior tuning (optional, ``methods.pn2v.posterior: frames``): the samples' spread and the
  likelihood's temperature chosen by next-frame MSE on repeated frames
  (:mod:`denoise.methods.pn2v_tuning`); no ground truth.
* A store with several channels is refused: the shared loop binds one channel's
  normalisation, and each channel has its own noise model, so train one model per channel.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from denoise.io.omezarr import open_image
from denoise.methods.masking import mask_batch
from denoise.methods.n2v import train_n2v
from denoise.methods.patches import MultiStoreSampler, PatchSampler
from denoise.methods.pn2v_predictor import PN2VPredictor, rewrite_objective
from denoise.methods.pn2v_tuning import reset_posterior, tune_posterior
from denoise.methods.registry import MethodSpec, TrainRequest
from denoise.models.store import load_model
from denoise.noise.base import (
    NoiseModelBase,
    load_noise_model,
    noise_model_from_dict,
    recording_conventions,
)
from denoise.settings import PredictConfig, Strict, TrainConfig

__all__ = ["PN2VObjective", "PN2VPredictor", "PN2VSettings", "train_pn2v"]

log = logging.getLogger(__name__)

#: Initial sample-spread factor α (see :class:`PN2VObjective`).
SPREAD = 0.1
#: α = exp(SPREAD_RATE · γ): Adam moves γ by about the learning rate per step, so log α moves
#: SPREAD_RATE times faster than a network weight (the one global spread can adapt within a
#: short training run).
SPREAD_RATE = 10.0
#: Prior calibration after training: masked patches (batches of ``cfg.batch_size``), the
#: fraction of their pixels masked, and the equal-count bins of the prior mean.
CALIBRATION_BATCHES = 16
CALIBRATION_MASK = 0.05
CALIBRATION_BINS = 16
#: Range the calibration factors are clipped to.
CALIBRATION_LIMITS = (0.2, 5.0)
#: Factors tried (log-spaced over CALIBRATION_LIMITS).
CALIBRATION_GRID = 13


class PN2VSettings(Strict):
    """``methods.pn2v``: Probabilistic Noise2Void's own settings."""

    samples: int = Field(
        64, ge=2, description="Samples K the network outputs per pixel (paper: 800 on a GPU)."
    )
    mean_weight: float = Field(
        0.0, ge=0, description="Weight of an N2V loss on the samples' centre (0: the paper's loss)."
    )
    posterior: Literal["paper", "frames"] = Field(
        "paper",
        description=(
            "'paper' (MMSE as published) or 'frames' (sample spread and likelihood temperature "
            "chosen by next-frame MSE; needs >= 2 frames of a static scene)."
        ),
    )


class PN2VObjective:
    """PN2V loss for :func:`denoise.methods.n2v.train_n2v` (the ``Objective`` protocol).

    Sample spread: the samples are ``s_k = ō + α · (o_k − ō)`` of the network's ``K`` output
    channels ``o_k`` (``ō`` their mean), with a learnable spread factor ``α`` (parametrised
    as ``exp(SPREAD_RATE · γ)``) that starts at ``spread`` (< 1).  The family of sample sets is unchanged (any ``α`` can be
    absorbed in the output layer, which :class:`PN2VPredictor` does), but a freshly
    initialised network then starts with nearly coincident samples that move together like an
    N2V prediction, and spread out where the likelihood asks for it.  Starting from the
    default initialisation instead (independent samples spread over much of the intensity
    range) takes many more steps to contract, mostly in dark regions where the likelihood is
    flat over a wide range of ``s`` (measured on FMD confocal data; see
    ``benchmarks/pn2v_fmd.py``).  ``spread = 1`` and ``learn_spread = False`` give the
    paper's plain parametrisation.

    Parameters
    ----------
    noise_model
        ``log p(x | s)`` of the channel being trained (raw units).
    samples
        K, the samples the network outputs per pixel.
    spread
        Initial ``α``.
    learn_spread
        Train ``γ = log α`` with the network (else ``α`` stays fixed).
    mean_weight
        Weight ``β`` of an N2V term on the samples' centre: the loss adds
        ``β · mean((ō − x)²)`` over the masked pixels (normalised units).  The centre is the
        prior mean ``E[s | surroundings]``, which is also what the N2V loss estimates, so the
        term does not move the optimum; it gives the centre N2V's direct gradient, which the
        likelihood term alone provides only weakly where one observation says little (e.g. a
        few photons).  0: the paper's loss.
    """

    name = "pn2v"

    def __init__(
        self,
        noise_model: NoiseModelBase,
        samples: int,
        spread: float = SPREAD,
        learn_spread: bool = True,
        mean_weight: float = 0.0,
    ) -> None:
        if samples < 1:
            raise ValueError(f"PN2V needs at least one sample per pixel, got {samples}")
        if not spread > 0:
            raise ValueError(f"PN2V sample spread must be > 0, got {spread}")
        self.noise_model = noise_model
        self.out_channels = int(samples)
        self.mean, self.std = 0.0, 1.0
        self.log_spread = torch.nn.Parameter(
            torch.tensor(math.log(spread) / SPREAD_RATE), requires_grad=learn_spread
        )
        self.learn_spread = learn_spread
        if not mean_weight >= 0:
            raise ValueError(f"PN2V mean_weight must be >= 0, got {mean_weight}")
        self.mean_weight = float(mean_weight)

    def bind(self, mean: float, std: float, device: torch.device) -> None:
        """Keep the normalisation (raw = norm·std + mean) and move the noise model to ``device``."""
        self.mean, self.std = float(mean), float(std)
        self.noise_model.to(device)
        self.log_spread.data = self.log_spread.data.to(device)

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        return [self.log_spread] if self.learn_spread else []

    def samples(self, out: torch.Tensor) -> torch.Tensor:
        """Samples (normalised units) from the network output ``(N, K, ...)``."""
        centre = out.mean(dim=1, keepdim=True)
        return centre + self.spread() * (out - centre)

    def spread(self) -> torch.Tensor:
        """The current spread factor α."""
        return torch.exp(SPREAD_RATE * self.log_spread)

    def _masked(
        self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``(M, K)`` and observed values ``(M,)`` of the masked pixels, raw units."""
        m = mask[:, 0]
        s = self.samples(out.float()).movedim(1, -1)[m] * self.std + self.mean
        x = target[:, 0][m].float() * self.std + self.mean
        return s, x

    def _nll(self, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel ``−log mean_k p(x | s_k)``, shape ``(M,)``."""
        lp = self.noise_model.log_prob(x[:, None], s)
        return math.log(s.shape[1]) - torch.logsumexp(lp, dim=1)

    def loss(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over masked pixels of ``−log((1/K) Σ_k p(x | s_k))`` (+ the centre's N2V term)."""
        s, x = self._masked(out, target, mask)
        loss = self._nll(s, x).mean()
        if self.mean_weight > 0:
            # The samples' mean is the centre ō (the spread acts around it); normalised units.
            loss = loss + self.mean_weight * ((s.mean(dim=1) - x) / self.std).pow(2).mean()
        return loss

    def val_terms(
        self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[float, int]:
        """(sum, count) of the same negative log-likelihood."""
        nll = self._nll(*self._masked(out, target, mask))
        return float(nll.detach().double().sum()), int(nll.numel())

    def state(self) -> dict[str, Any]:
        return {"log_spread": self.log_spread.detach().cpu().clone()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore the spread factor."""
        if "log_spread" in state:
            with torch.no_grad():
                self.log_spread.copy_(state["log_spread"].to(self.log_spread.device))

    def meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "samples": self.out_channels,
            "spread": float(self.spread().detach().cpu()),
            "mean_weight": self.mean_weight,
            "noise_model": self.noise_model.to_dict(),
        }


def as_noise_model(
    noise_model: NoiseModelBase | list[NoiseModelBase] | dict[str, Any] | str | Path,
    dtype: np.dtype | str | None = None,
) -> NoiseModelBase:
    """One channel's noise model from a model, a one-element list, a JSON dict or a JSON file.

    A Poisson-Gaussian estimate without recording conventions (the estimator's result) gets
    them from ``dtype`` (integer data: quantum 1, censored at the dtype's limits).
    """
    if isinstance(noise_model, list | tuple):
        if len(noise_model) != 1:
            raise ValueError(
                f"PN2V trains one channel at a time; got {len(noise_model)} noise models"
            )
        noise_model = noise_model[0]
    if isinstance(noise_model, NoiseModelBase):
        return noise_model
    if isinstance(noise_model, str | Path):
        return load_noise_model(noise_model)
    data = dict(noise_model)
    if "channels" in data and len(data["channels"]) != 1:
        raise ValueError(
            f"PN2V trains one channel at a time; the noise model has {len(data['channels'])} channels"
        )
    if "channels" in data:
        data = dict(data["channels"][0])
    if data.get("kind", "poisson_gaussian") == "poisson_gaussian" and "quantum" not in data:
        if dtype is not None:
            data.update(recording_conventions(dtype))
    return noise_model_from_dict(data)


def _check_store(store: str | Path, settings: PN2VSettings) -> np.dtype:
    """One channel, and a second frame when the posterior is tuned on frames; the dtype."""
    arr, axes = open_image(store)
    if "c" in axes and arr.shape[axes.index("c")] > 1:
        raise ValueError(
            f"{store}: PN2V trains one channel at a time (the store has "
            f"{arr.shape[axes.index('c')]} channels, each with its own noise model); "
            "split the channels into separate datasets"
        )
    if settings.posterior == "frames" and ("t" not in axes or arr.shape[axes.index("t")] < 2):
        raise ValueError(
            f"{store}: methods.pn2v.posterior 'frames' tunes the posterior on repeated frames, "
            f"but the store has axes {axes!r} with no second frame along t; use 'paper'"
        )
    return arr.dtype


def train_pn2v(
    store: str | Path | list[str | Path],
    model_dir: str | Path,
    cfg: TrainConfig,
    seed: int,
    noise_model: NoiseModelBase | list[NoiseModelBase] | dict[str, Any] | str | Path,
    fingerprint: str = "",
    progress: bool = True,
    stop_after_epochs: int | None = None,
    spread: float = SPREAD,
    learn_spread: bool = True,
    calibrate: bool = True,
    settings: PN2VSettings | None = None,
) -> dict[str, Any]:
    """Train PN2V on ``store`` (one channel) with ``settings.samples`` samples per pixel.

    Parameters
    ----------
    store, model_dir, cfg, seed, fingerprint, progress, stop_after_epochs
        As for :func:`denoise.methods.n2v.train_n2v` (same loop, checkpoints and budgets); a
        list of stores is a sheet group (one network on all, pooled normalisation; the prior
        is calibrated on all of them, the posterior tuned on the first one's frames).
    noise_model
        The channel's noise model (:func:`denoise.noise.calibration.fit_noise_model`), its
        JSON dict or file, or a Poisson-Gaussian estimate.
    spread, learn_spread
        Initial sample-spread factor and whether it is learnt (:class:`PN2VObjective`).
    calibrate
        Calibrate the prior's spread per intensity level on blind-spot pixels after training
        (:func:`calibrate_prior`); the factors are stored with the model.
    settings
        ``methods.pn2v`` (samples K, N2V-term weight, posterior mode); defaults when None.

    Returns
    -------
    dict
        ``train_n2v``'s summary plus ``samples`` and ``noise_model`` (its kind).  The model
        directory's metadata holds ``objective = {"name": "pn2v", "samples": K,
        "noise_model": {...}}`` for :class:`PN2VPredictor`.
    """
    settings = settings or PN2VSettings()
    stores = list(store) if isinstance(store, list | tuple) else [store]
    dtypes = [_check_store(s, settings) for s in stores]  # every store, the first's dtype
    dtype = dtypes[0]
    model = as_noise_model(noise_model, dtype)
    objective = PN2VObjective(model, settings.samples, spread, learn_spread, settings.mean_weight)
    summary = train_n2v(
        store,
        model_dir,
        cfg,
        seed,
        fingerprint=fingerprint,
        progress=progress,
        stop_after_epochs=stop_after_epochs,
        objective=objective,
        # the posterior mode acts after training: not part of the resume key
        settings=settings.model_dump(mode="json", exclude={"posterior"}),
    )
    out = {
        **summary,
        "samples": settings.samples,
        "spread": objective.meta()["spread"],
        "noise_model": model.kind,
    }
    if calibrate:
        cal = calibrate_prior(model_dir, store, cfg, seed, model)
        out["sha256"] = cal.pop("sha256")
        out["calibration"] = cal
    if settings.posterior == "frames":
        pcfg = PredictConfig(device=cfg.device, threads=cfg.threads)
        tuned = tune_posterior(model_dir, stores[0], pcfg)
        out["sha256"] = tuned.pop("sha256")
        out["posterior"] = tuned
    elif (sha := reset_posterior(model_dir)) is not None:
        out["sha256"] = sha  # a model tuned by an earlier run with 'frames'
    return out


def _prior_samples(
    model: torch.nn.Module, x: torch.Tensor, spread: float, mean: float, std: float
) -> torch.Tensor:
    """Raw-unit samples ``(N, K, *spatial)`` of a trained model on normalised input."""
    out = model(x)
    centre = out.mean(dim=1, keepdim=True)
    return (centre + spread * (out - centre)) * std + mean


def _calibration_sampler(
    store: str | Path | list[str | Path], cfg: TrainConfig, multiple: int, norm: dict[str, Any]
) -> PatchSampler | MultiStoreSampler:
    """Blind-spot patches for :func:`calibrate_prior`, normalised as in training: one store, or
    a group's stores (drawn in proportion to their size, pooled statistics = the model's)."""
    if isinstance(store, list | tuple) and len(store) > 1:
        return MultiStoreSampler(list(store), cfg.patch_size, cfg.patch_size_z, multiple, cfg.dims)
    one = store[0] if isinstance(store, list | tuple) else store
    return PatchSampler(one, cfg.patch_size, cfg.patch_size_z, multiple, cfg.dims, norm=norm)


def calibrate_prior(
    model_dir: str | Path,
    store: str | Path | list[str | Path],
    cfg: TrainConfig,
    seed: int,
    noise_model: NoiseModelBase,
) -> dict[str, Any]:
    """Calibrate the spread of the prior samples per intensity level, without ground truth.

    On blind-spot pixels (masked as in training, so the network does not see ``x``), the
    samples of each pixel are rescaled around their mean ``m`` by a factor ``f`` and scored
    with the training loss, the held-out ``−log mean_k p(x | m + f·(s_k − m))``.  In
    equal-count bins of ``m``, the ``f`` on a log grid over :data:`CALIBRATION_LIMITS` with the
    lowest mean score is kept (then a running median over three bins); the predictor
    interpolates ``f`` linearly in ``m``.  A short training run leaves the prior too wide in
    some intensity ranges and too narrow in others (the loss is nearly flat in the prior's
    width where the noise dominates, so training corrects it slowly); the width then gives
    the likelihood too much or too little weight in the MMSE.  This is a proper-scoring-rule
    fit of one number per intensity bin on pixels the network did not see, so it needs no
    ground truth.  The model files are rewritten with ``objective.calibration``.

    Returns
    -------
    dict
        ``levels``, ``factors``, ``pixels`` and the new ``sha256`` of model.pt.
    """

    model, meta = load_model(model_dir)  # on the CPU, like the noise model from here on
    noise_model.to("cpu")
    objective = dict(meta["objective"])
    spread = float(objective.get("spread", 1.0))
    mean, std = float(meta["norm"]["mean"][0]), float(meta["norm"]["std"][0])
    sampler = _calibration_sampler(store, cfg, model.multiple, meta["norm"])
    bs = cfg.batch_size_3d if sampler.ndim == 3 else cfg.batch_size
    rng = np.random.default_rng([seed % 2**63, 3])
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    samples, xs = [], []
    with torch.inference_mode():
        for _ in range(CALIBRATION_BATCHES):
            clean = torch.from_numpy(sampler.sample(rng, bs))
            mb = mask_batch(clean, CALIBRATION_MASK, cfg.neighbourhood, False, gen)
            s = _prior_samples(model, mb.masked, spread, mean, std)
            samples.append(s.movedim(1, -1)[mb.mask[:, 0]])  # (n, K) raw
            xs.append(clean[:, 0][mb.mask[:, 0]] * std + mean)
        sk = torch.cat(samples)
        x = torch.cat(xs)
        m = sk.mean(dim=1)
        grid = np.exp(
            np.linspace(
                math.log(CALIBRATION_LIMITS[0]), math.log(CALIBRATION_LIMITS[1]), CALIBRATION_GRID
            )
        )
        nll = np.empty((grid.size, x.numel()))
        for j, f in enumerate(grid):
            lp = noise_model.log_prob(x[:, None], m[:, None] + float(f) * (sk - m[:, None]))
            nll[j] = (-torch.logsumexp(lp, dim=1)).double().numpy()
    m_np = m.double().numpy()
    order = np.argsort(m_np, kind="stable")
    groups = [g for g in np.array_split(order, CALIBRATION_BINS) if g.size]
    levels = [float(m_np[g].mean()) for g in groups]
    raw_factors = [math.log(grid[int(np.argmin(nll[:, g].mean(axis=1)))]) for g in groups]
    # A running median over three bins (in log) keeps one noisy bin from setting its range.
    padded = [raw_factors[0], *raw_factors, raw_factors[-1]]
    factors = [float(math.exp(np.median(padded[i : i + 3]))) for i in range(len(raw_factors))]
    pixels = int(x.numel())
    objective["calibration"] = {"levels": levels, "factors": factors}
    info = rewrite_objective(model_dir, model, meta, objective)
    log.info(
        "PN2V prior calibrated on %d blind-spot pixels: factors %s at levels %s",
        pixels,
        np.round(factors, 2).tolist(),
        np.round(levels, 3).tolist(),
    )
    return {"levels": levels, "factors": factors, "pixels": pixels, "sha256": info["sha256"]}


def _train(request: TrainRequest) -> dict[str, Any]:
    if not request.noise_model:
        raise ValueError("method 'pn2v' needs --noise-model (from `denoise fit-noise-model`)")
    return train_pn2v(
        list(request.stores) if request.stores else request.store,
        request.model_dir,
        request.train,
        request.seed,
        noise_model=request.noise_model,
        fingerprint=request.fingerprint,
        settings=request.settings,
    )


METHODS = (
    MethodSpec(
        name="pn2v",
        kind="trained",
        summary=(
            "Probabilistic N2V (Krull et al. 2020): the U-Net gives `methods.pn2v.samples` "
            "samples of the prior per pixel, trained with the noise model's likelihood; writes "
            "the MMSE estimate (`denoised`) and the posterior standard deviation "
            "(`uncertainty`). Noise model per row (`noise_model` column): `poisson_gaussian` "
            "(default, from the data), `histogram` / `gmm` from a `calibration` stack, "
            "`gmm_bootstrap` fitted to an N2V prediction. With `methods.pn2v.posterior: frames` "
            "the posterior is tuned on repeated frames after training (no ground truth)"
        ),
        settings=PN2VSettings,
        train=_train,
        predictor=lambda r: PN2VPredictor.from_model_dir(r.model_dir, r.predict),
        outputs=("denoised", "uncertainty"),
        needs=frozenset({"noise_model", "calibration"}),
    ),
)
