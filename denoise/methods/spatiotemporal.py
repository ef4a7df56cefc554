"""``spatiotemporal``: a self-supervised network that sees 2k + 1 frames (issue 17).

Design (SUPPORT-style spatiotemporal blind spot, Eom et al. 2023; option (A) of issue 17):

* Input: a window of ``2k + 1`` frames of one channel and one ``z`` plane as the ``2k + 1``
  input channels of a 2D U-Net (:class:`denoise.models.unet.UNet` with ``in_channels = 2k +
  1``); the output is the centre frame.  Channels are independent samples; ``tzyx`` data are
  denoised per ``z`` plane (the model is always 2D here: ``train.dims: 3d`` is refused).
* Training: N2V blind spots (``train.mask_fraction``, ``train.neighbourhood``, N2V's
  random-neighbour replacement, :func:`denoise.methods.masking.mask_batch`) on the CENTRE frame
  only; the neighbouring frames stay intact (the noise is independent across frames, so they
  carry no information about the centre pixel's noise).  Loss: MSE at the blind spots against
  the raw centre frame (:class:`~denoise.methods.objectives.N2VObjective`).  The network learns
  how much to trust each frame, so motion is handled by the data, not by a rule.
* The price: the centre frame's own pixel is hidden, which a plain window mean keeps.  Option
  (B), DeepCAD-style leave-out (input: the 2k neighbouring frames with the centre frame zeroed,
  target: the raw centre frame, loss on every pixel), sees strictly less (not the centre frame
  at all) but gets a loss on every pixel; measured on the synthetic series (8 × 64 × 64 crop,
  seed 0, k = 2, depth-2 U-Net with 8 features, batch 8 of 32², seed 0), PSNR vs truth:
  speed 0, 200 steps: (A) 33.95 dB, (B) 31.15 dB; speed 0, 600 steps: (A) 34.97, (B) 31.38;
  speed 2, 200 steps: (A) 32.51, (B) 28.26 (noisy 23.6 / 23.9 dB).  (A) is kept.
* Ends: the window's frames beyond the series come by reflection without repeating the edge
  frame (:func:`denoise.tiling.grid.reflect_index`, the runner's rule), in training and in
  prediction, so series shorter than ``2k + 1`` frames work.  Near the ends a reflected window
  can hold the centre frame twice (with k = 2, frame 1's window is frames 1, 0, 1, 2, 3): in
  training the blind spots are then applied (with the same replacement values) to every copy
  of the centre frame, so the network never sees a blind-spot pixel's own value.  Training
  centres are drawn uniformly over all frames, so windows with reflections are trained on
  as they are predicted.
* Spatially correlated noise (``mask_radius``): a neighbour of a blind spot then carries part
  of its noise and the network learns to reproduce it (FMD wide-field, lag-1 correlation 0.6:
  23.02 dB, noisy 22.32).  With ``mask_radius: r`` the (2r+1)² neighbourhood of every blind spot
  on the centre frame is also replaced, by random pixels of the patch
  (:func:`~denoise.methods.masking.widen_blind_spots`, structN2V-like; the other frames stay
  intact, their noise is independent); ``auto`` (the default) takes r = 2 where the noise
  stage's check finds the store's middle frame clearly correlated, else 0 (33.20 dB on that
  series; on white confocal noise r = 2 lost 0.65 dB, so it is not always on).
* Augmentation: one of the 8 flips/rotations of the Y/X square, the same for every frame of a
  window, and a random time reversal of the window (the noise model is symmetric in time).
* Every batch is a pure function of ``(seed, step)`` (:class:`WindowPatchSource`).
* ``k`` (``methods.spatiotemporal.k``, stored in the model's metadata as
  ``objective.halo_t`` and ``method_settings.k``) defaults to 3, chosen by measurement at one
  budget (depth-2 U-Net, 8 features, batch 8 of 32², 1500 steps): on the five FMD Confocal
  4-frame fields of view (all 20 frames, ``benchmarks/st_fmd.py``) k = 1/2/3 gave 35.51/36.33/
  36.71 dB (k = 3 best on every configuration: with 4 frames every k = 3 window holds all of
  them); on the synthetic series (``benchmarks/spatiotemporal.py``, 3 seeds) k = 3 against
  k = 2 was higher at 2 and 5 px/frame on every seed and about level at 0-0.5 px/frame (see
  that benchmark's table).
* Prediction: :class:`WindowNetworkPredictor`, a :class:`~denoise.predict.network.
  NetworkPredictor` with ``halo_t = k`` taking ``(N, 2k + 1, *tile)`` windows (normalisation,
  halo and tiling as for N2V: every frame is normalised with its channel's mean/std).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from denoise.methods.masking import MaskRadius, mask_batch, widen_blind_spots
from denoise.methods.objectives import N2VObjective
from denoise.methods.patches import MultiStoreSampler, PatchSampler, resolve_mask_radius
from denoise.methods.registry import MethodSpec, PredictRequest, TrainRequest
from denoise.models.unet import UNet
from denoise.predict.network import NetworkPredictor, unet_forward
from denoise.settings import PredictConfig, Strict, TrainConfig
from denoise.tiling.grid import reflect_index
from denoise.training.batches import SeededBatches
from denoise.training.loop import train_loop

NAME = "spatiotemporal"


class SpatiotemporalSettings(Strict):
    """``methods.spatiotemporal``: the frame window of the spatiotemporal blind-spot network."""

    k: int = Field(
        3,
        ge=1,
        le=8,
        description=(
            "Frames each side of the centre frame (the network sees 2k+1 frames); 3: best of "
            "1/2/3 on the FMD Confocal 4-frame fields of view and the synthetic series."
        ),
    )
    mask_radius: MaskRadius = Field(
        "auto",
        description=(
            "Blind spot on the centre frame: 0 hides the pixel; r >= 1 also hides its "
            "(2r+1)^2 neighbourhood (structN2V-like, for spatially correlated noise); auto: 2 "
            "when the noise of the store's middle frame is clearly correlated "
            "(denoise.noise.correlation), else 0 (FMD wide-field: 33.20 dB vs 23.02 with a "
            "pixel blind spot; on white confocal noise r=2 lost 0.65 dB)."
        ),
    )


class SpatiotemporalObjective(N2VObjective):
    """N2V's masked MSE on the centre frame; records ``halo_t`` with the model."""

    def __init__(self, k: int) -> None:
        super().__init__(NAME)
        self.k = int(k)

    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "halo_t": self.k, "blind_spot": "centre frame"}


class WindowPatchSource(SeededBatches):
    """Batches of ``(2k + 1)``-frame patches, blind spots on the centre frame.

    ``(input, target, mask)`` = ``(B, 2k+1, y, x)`` windows with the centre frame's blind spots
    replaced (in every copy of the centre frame), ``(B, 1, y, x)`` raw centre frames,
    ``(B, 1, y, x)`` blind-spot positions.  Drawn from generators seeded by ``(seed, stream,
    index)``.
    """

    def __init__(
        self,
        sampler: PatchSampler | MultiStoreSampler,
        cfg: TrainConfig,
        seed: int,
        k: int,
        mask_radius: int = 0,
    ) -> None:
        # a sheet group: each window first picks its store, in proportion to the store's size
        self.parts = sampler.samplers if isinstance(sampler, MultiStoreSampler) else [sampler]
        for part in self.parts:
            if "t" not in part.axes:
                raise ValueError(
                    f"{part.store}: method {NAME} needs a t axis (axes are '{part.axes}')"
                )
        self.sampler, self.cfg, self.seed, self.k = sampler, cfg, seed, int(k)
        self.mask_radius = int(mask_radius)
        self.ndim = 2
        self.batch_size = cfg.batch_size

    def window(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One normalised, augmented ``(2k + 1, *patch)`` window and its frame indices."""
        s = self.parts[0]
        if len(self.parts) > 1:
            s = self.parts[int(rng.choice(len(self.parts), p=self.sampler.weights))]
        k = self.k
        others = [a for a in s.sample_axes if a != "t"]  # c and z: samples
        other_shape = tuple(s.shape[s.axes.index(a)] for a in others)
        n_t = s.shape[s.axes.index("t")]
        t = int(rng.integers(n_t))
        flat = int(rng.integers(int(np.prod(other_shape, dtype=np.int64))))
        other = (
            dict(zip(others, np.unravel_index(flat, other_shape), strict=True)) if others else {}
        )
        spatial = [s.shape[s.axes.index(a)] for a in s.spatial_axes]
        origin = [int(rng.integers(n - p + 1)) for n, p in zip(spatial, s.patch, strict=True)]
        rot = int(rng.integers(4)) if s.square else 2 * int(rng.integers(2))
        flip, reverse = bool(rng.integers(2)), bool(rng.integers(2))
        idx = reflect_index(t - k, t + k + 1, n_t)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        sel: list[Any] = []
        for a in s.axes:
            if a == "t":
                sel.append(slice(lo, hi))
            elif a in s.spatial_axes:
                o = origin[s.spatial_axes.index(a)]
                sel.append(slice(o, o + s.patch[s.spatial_axes.index(a)]))
            else:
                sel.append(int(other[a]))
        block = np.asarray(s.array[tuple(sel)])[idx - lo]  # (2k+1, y, x)
        c = int(other.get("c", 0))
        w = (block.astype(np.float32) - np.float32(s.norm["mean"][c])) / np.float32(
            s.norm["std"][c]
        )
        w = np.rot90(w, rot, axes=(-2, -1))
        if flip:
            w = w[..., ::-1]
        if reverse:
            w, idx = w[::-1], idx[::-1]
        return np.ascontiguousarray(w), idx == t

    def make(self, n: int, *key: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` masked windows from the generator keyed by ``(seed, *key)``."""
        rng = np.random.default_rng([self.seed % 2**63, *key])
        wins, centre = zip(*(self.window(rng) for _ in range(n)), strict=True)
        x = torch.from_numpy(np.stack(wins))
        k = self.k
        target = x[:, k : k + 1].clone()
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        mb = mask_batch(target, self.cfg.mask_fraction, self.cfg.neighbourhood, False, gen)
        mb = widen_blind_spots(mb, target, self.mask_radius, gen)
        inp = x.clone()
        copies = torch.from_numpy(np.stack(centre))  # (n, 2k+1) True where the frame is the centre
        inp[copies] = mb.masked[:, 0].repeat_interleave(copies.sum(1), dim=0)
        return inp, target, mb.mask

    def patch_shape(self) -> list[int]:
        """``[2k + 1, *spatial patch]``: the window of frames around each patch."""
        return [2 * self.k + 1, *self.sampler.patch]


def train_spatiotemporal(
    store: str | Path | list[str | Path],
    model_dir: str | Path,
    cfg: TrainConfig,
    seed: int,
    k: int = 2,
    mask_radius: int | str = "auto",
    fingerprint: str = "",
    progress: bool = True,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train the spatiotemporal blind-spot U-Net on ``store`` (a ``t`` axis is required).

    A list of stores is a sheet group: windows from all of them (each window's store drawn in
    proportion to its size, :class:`~denoise.methods.patches.MultiStoreSampler`'s pooled
    normalisation).  Returns :func:`~denoise.training.loop.train_loop`'s summary with
    ``halo_t`` added.
    """
    if cfg.dims == "3d":
        raise ValueError(
            f"method {NAME} is 2D (frames × y × x, per z plane); set train.dims to auto or 2d"
        )
    settings = SpatiotemporalSettings(k=k, mask_radius=mask_radius)
    sampler: PatchSampler | MultiStoreSampler
    if isinstance(store, list | tuple) and len(store) > 1:
        sampler = MultiStoreSampler(
            list(store), cfg.patch_size, cfg.patch_size_z, 2**cfg.depth, "2d"
        )
    else:
        one = store[0] if isinstance(store, list | tuple) else store
        sampler = PatchSampler(one, cfg.patch_size, cfg.patch_size_z, 2**cfg.depth, "2d")
    radius = resolve_mask_radius(settings.mask_radius, sampler)
    settings = settings.model_copy(update={"mask_radius": radius})
    source = WindowPatchSource(sampler, cfg, seed, settings.k, radius)
    objective = SpatiotemporalObjective(settings.k)

    def build() -> UNet:
        return UNet(
            ndim=2,
            depth=cfg.depth,
            features=cfg.features,
            batch_norm=cfg.batch_norm,
            in_channels=2 * settings.k + 1,
            out_channels=1,
        )

    summary = train_loop(
        model_dir, build, objective, source, cfg, seed,
        fingerprint=fingerprint, progress=progress, stop_after_epochs=stop_after_epochs,
        settings=settings.model_dump(),
    )  # fmt: skip
    return {**summary, "halo_t": settings.k}


class WindowNetworkPredictor(NetworkPredictor):
    """TiledPredictor with ``halo_t = k``: ``(N, 2k + 1, *tile)`` raw windows -> the centre
    frame's ``(N, 1, *tile)`` denoised values (every frame normalised with the channel's
    mean/std, as in training)."""

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], cfg: PredictConfig) -> None:
        self.halo_t = int(meta["objective"]["halo_t"])
        super().__init__(model, meta, cfg)
        if self.channels_last:  # the parent checks the fused forward with one input channel
            x = torch.randn(
                (1, 2 * self.halo_t + 1, 2 * self.multiple, 2 * self.multiple),
                generator=torch.Generator().manual_seed(0),
            ).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                self.fused = bool(torch.equal(self.model(x), unet_forward(self.model, x)))

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, cfg: PredictConfig) -> WindowNetworkPredictor:
        from denoise.models.store import load_model

        model, meta = load_model(model_dir)
        if meta.get("method") != NAME or "halo_t" not in meta.get("objective", {}):
            raise ValueError(f"{model_dir}: not a {NAME} model (method {meta.get('method')!r})")
        return cls(model, meta, cfg)

    def as_input(self, x_norm: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x_norm).to(self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        tiles = np.asarray(tiles, dtype=np.float32)
        w = 2 * self.halo_t + 1
        if tiles.ndim != 4 or tiles.shape[1] != w:
            raise ValueError(f"{NAME} predictor needs (N, {w}, y, x) windows, got {tiles.shape}")
        mean, std = self.norm(channel)
        if self.is_constant(channel):
            return np.repeat(
                tiles[:, self.halo_t : self.halo_t + 1], len(self.output_names), axis=1
            )
        y = self._forward_batches(np.ascontiguousarray((tiles - mean) / std))
        return (y * std + mean).astype(np.float32, copy=False)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self.autocast():
            y = unet_forward(self.model, t, self.buffers()) if self.fused else self.model(t)
        return y.float().cpu().contiguous().numpy()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "halo_t": self.halo_t}


def spatiotemporal_predictor(request: PredictRequest) -> WindowNetworkPredictor:
    """The predictor of a trained model; its ``k`` must equal the requested setting's."""
    pred = WindowNetworkPredictor.from_model_dir(str(request.model_dir), request.predict)
    want = int(getattr(request.settings, "k", pred.halo_t))
    if want != pred.halo_t:
        raise ValueError(
            f"{request.model_dir}: the model was trained with k = {pred.halo_t} frames each side, "
            f"methods.{NAME}.k is {want}; retrain or set k to {pred.halo_t}"
        )
    return pred


def _train_request(request: TrainRequest) -> dict[str, Any]:
    return train_spatiotemporal(
        list(request.stores) if request.stores else request.store,
        request.model_dir, request.train, request.seed,
        k=int(request.settings.k), mask_radius=request.settings.mask_radius,
        fingerprint=request.fingerprint,
    )  # fmt: skip


METHODS = (
    MethodSpec(
        name=NAME,
        kind="trained",
        summary=(
            "time-lapses: 2D U-Net on 2k+1 frames (per channel and z plane) predicting the "
            "centre frame; SUPPORT-style blind spots on the centre frame only, reflected ends"
        ),
        settings=SpatiotemporalSettings,
        train=_train_request,
        predictor=spatiotemporal_predictor,
        needs=frozenset({"frames"}),
    ),
)
