"""Noise2Void / N2V2 training on an OME-Zarr store.

Training is a fixed number of optimiser steps (``epochs × steps_per_epoch``) on random
patches of the data itself, so its cost does not depend on the image size.  Choices where the
papers leave room, written down:

* Loss: MSE at the blind spots between the output and the ORIGINAL normalised noisy value.
* Optimiser: Adam; learning rate warmed up linearly over the first 5 % of the steps, then a
  cosine decay to 1 % of ``learning_rate`` at the last planned step (a schedule fixed in
  advance keeps runs reproducible and resumable; plateau-based schedules are not).
* Validation: a fixed set of masked patches drawn once from the same data with a separate
  seed (``validation_fraction`` of the patches one epoch sees, one batch to 256); its loss
  estimates MSE(prediction, clean) + noise variance, a no-reference quality score comparable
  between runs on the same data (stored per epoch in history.json).
* Reproducibility: every batch (patches, augmentation, masking) is a pure function of
  ``(seed, step)``; weights are initialised after ``torch.manual_seed(seed)``; deterministic
  algorithms are switched on for the duration of training.  On the CPU the same config, seed
  and thread count give bit-identical weights, and a run resumed from ``checkpoints/last.pt``
  equals an uninterrupted one.
* ``max_minutes``: the whole call (setup included) must fit.  Once the measured speed shows
  that the planned steps would not, the plan shrinks to the steps that fit and the cosine decay
  ends there (:class:`StepPlan`), so a time-limited model is still annealed; the stop may fall
  inside an epoch (marked ``partial`` in history.json).  Such a run depends on the machine's
  speed and is not reproducible; a budget that does not bind changes nothing.
* Checkpoints: ``checkpoints/last.pt`` after every whole epoch (model, optimiser, scheduler,
  RNG states, epoch, history), written atomically; resumed when the fingerprint, seed, method
  and every setting except ``max_minutes``/``device``/``threads`` match.

The loop itself (plan, seeding, checkpoints, precision, history) is
:mod:`denoise.training.loop`; this module supplies the N2V family's batch source
(:class:`MaskedPatchSource`) and network.
* 3D models train on ``batch_size_3d`` patches per step (a 3D patch holds ``patch_size_z``
  times the pixels of a 2D one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from denoise.methods.masking import MaskRadius, mask_batch, widen_blind_spots
from denoise.methods.objectives import N2VObjective, Objective
from denoise.methods.patches import MultiStoreSampler, PatchSampler, resolve_mask_radius
from denoise.methods.registry import MethodSpec, PredictRequest, TrainRequest
from denoise.models.unet import UNet
from denoise.settings import Strict, TrainConfig
from denoise.training.batches import SeededBatches
from denoise.training.loop import train_loop


class MaskedPatchSource(SeededBatches):
    """The N2V family's batches: masked patches of one store (or of a sheet group's stores,
    :class:`~denoise.methods.patches.MultiStoreSampler`), pure functions of the step.

    ``(input, target, mask)`` = (patch with blind spots replaced, the original noisy patch,
    where the blind spots are).  Patches, augmentation and masks are drawn from generators
    seeded by ``(seed, stream, index)``, so batch ``i`` does not depend on what came before.
    """

    def __init__(
        self,
        sampler: PatchSampler | MultiStoreSampler,
        cfg: TrainConfig,
        seed: int,
        n2v2: bool,
        mask_radius: int = 0,
    ) -> None:
        self.sampler, self.cfg, self.seed, self.n2v2 = sampler, cfg, seed, n2v2
        self.mask_radius = int(mask_radius)
        self.ndim = sampler.ndim
        self.batch_size = cfg.batch_size_3d if sampler.ndim == 3 else cfg.batch_size

    def make(self, n: int, *key: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` masked patches from the generator keyed by ``(seed, *key)``."""
        rng = np.random.default_rng([self.seed % 2**63, *key])
        clean = torch.from_numpy(self.sampler.sample(rng, n))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        mb = mask_batch(clean, self.cfg.mask_fraction, self.cfg.neighbourhood, self.n2v2, gen)
        mb = widen_blind_spots(mb, clean, self.mask_radius, gen)
        return mb.masked, clean, mb.mask


def train_n2v(
    store: str | Path | list[str | Path],
    model_dir: str | Path,
    cfg: TrainConfig,
    seed: int,
    n2v2: bool = False,
    fingerprint: str = "",
    progress: bool = True,
    stop_after_epochs: int | None = None,
    objective: Objective | None = None,
    settings: dict[str, Any] | None = None,
    mask_radius: int | str | None = None,
) -> dict[str, Any]:
    """Train a Noise2Void (or N2V2) U-Net on ``store`` and write the model directory.

    Parameters
    ----------
    store
        OME-Zarr image to denoise (T, C and, for 2D models, Z are independent samples), or a
        list of stores (a sheet ``group``): patches from all of them
        (:class:`~denoise.methods.patches.MultiStoreSampler`, pooled normalisation).
    model_dir, cfg, seed, fingerprint, progress, stop_after_epochs
        As :func:`denoise.training.loop.train_loop`.
    n2v2
        N2V2: blur-pool U-Net without top skip connection, median replacement.
    objective
        What the network learns (:mod:`denoise.methods.objectives`): N2V's masked MSE by
        default; PN2V and DecoNoising plug their losses, output channels and extra
        parameters in here and reuse the masked patches and the loop.
    settings
        The method's own settings that change the weights (resume key, model metadata).
    mask_radius
        ``None``: the pixel blind spot (PN2V, DecoNoising); an int or ``"auto"``
        (:func:`~denoise.methods.patches.resolve_mask_radius`): blind spots widened to their
        (2r+1) neighbourhood for spatially correlated noise, recorded in ``settings``.

    Returns
    -------
    dict
        :func:`~denoise.training.loop.train_loop`'s summary.
    """
    if objective is None:
        objective = N2VObjective("n2v2" if n2v2 else "n2v")
    sampler: PatchSampler | MultiStoreSampler
    if isinstance(store, list | tuple) and len(store) > 1:
        sampler = MultiStoreSampler(
            list(store), cfg.patch_size, cfg.patch_size_z, 2**cfg.depth, cfg.dims
        )
    else:
        one = store[0] if isinstance(store, list | tuple) else store
        sampler = PatchSampler(one, cfg.patch_size, cfg.patch_size_z, 2**cfg.depth, cfg.dims)
    radius = 0
    if mask_radius is not None:
        radius = resolve_mask_radius(mask_radius, sampler)
        settings = {**(settings or {}), "mask_radius": radius}

    def build() -> UNet:
        return UNet(
            ndim=sampler.ndim,
            depth=cfg.depth,
            features=cfg.features,
            batch_norm=cfg.batch_norm,
            n2v2=n2v2,
            out_channels=objective.out_channels,
        )

    return train_loop(
        model_dir,
        build,
        objective,
        MaskedPatchSource(sampler, cfg, seed, n2v2, radius),
        cfg,
        seed,
        fingerprint=fingerprint,
        progress=progress,
        stop_after_epochs=stop_after_epochs,
        settings=settings,
    )


def _train_request(request: TrainRequest, n2v2: bool) -> dict[str, Any]:
    return train_n2v(
        list(request.stores) if request.stores else request.store,
        request.model_dir,
        request.train,
        request.seed,
        n2v2=n2v2,
        fingerprint=request.fingerprint,
        mask_radius=request.settings.mask_radius,
    )


class N2VSettings(Strict):
    """``methods.n2v`` / ``methods.n2v2``: the blind spot."""

    mask_radius: MaskRadius = Field(
        "auto",
        description=(
            "0 hides the blind-spot pixel; r >= 1 also hides its (2r+1)-wide neighbourhood "
            "(structN2V-like, for spatially correlated noise); auto: 2 when the noise of the "
            "store's middle plane is clearly correlated (denoise.noise.correlation), else 0 "
            "(FMD wide-field, lag-1 noise correlation 0.6: 29.07 dB vs 22.85 with a pixel "
            "blind spot, noisy 22.32)."
        ),
    )


def network_predictor(request: PredictRequest) -> Any:
    """The tiled predictor of a trained single-output network (N2V, N2V2)."""
    from denoise.predict.network import NetworkPredictor

    return NetworkPredictor.from_model_dir(request.model_dir, request.predict)


METHODS = (
    MethodSpec(
        name="n2v",
        kind="trained",
        summary=(
            "Noise2Void (Krull et al. 2019): blind-spot U-Net; 2 % stratified blind spots, "
            "8-fold augmentation, cosine schedule"
        ),
        settings=N2VSettings,
        train=lambda r: _train_request(r, n2v2=False),
        predictor=network_predictor,
        exportable=True,
    ),
    MethodSpec(
        name="n2v2",
        kind="trained",
        summary=(
            "N2V2 (Höck et al. 2022): max-blur-pool, no top skip connection, median replacement"
        ),
        settings=N2VSettings,
        train=lambda r: _train_request(r, n2v2=True),
        predictor=network_predictor,
        exportable=True,
    ),
)
