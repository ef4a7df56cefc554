"""PN2V prediction: the posterior over the network's prior samples, per pixel.

:class:`PN2VPredictor` is a TiledPredictor built on the public interface of
:class:`~denoise.predict.network.NetworkPredictor` (halo, lattice, device, normalisation,
memory format, precision, fast CPU decoder).  The learnt spread factor is folded into the
output layer; for every pixel the ``K`` samples ``s_k`` of the prior are weighted by the noise
model's likelihood ``p(x | s_k)``: MMSE = Σ w_k s_k, uncertainty = the posterior std.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from denoise.models.store import load_model, save_model
from denoise.noise.base import NoiseModelBase, noise_model_from_dict
from denoise.predict.network import NetworkPredictor, upsample_concat
from denoise.predict.reference import predict_whole_image
from denoise.settings import PredictConfig

log = logging.getLogger(__name__)

#: Bytes of sample maps (and their temporaries) one chunk of the posterior may hold.
CHUNK_BYTES = 256 * 2**20
#: Temporaries per sample value while the posterior of a chunk is computed (measured rough
#: upper bound: samples, log-likelihoods, weights, products, gather indices).
_TEMPS = 8



def rewrite_objective(
    model_dir: str | Path, model: torch.nn.Module, meta: dict[str, Any], objective: dict[str, Any]
) -> dict[str, Any]:
    """Save ``model`` (on the CPU) again with ``meta``'s objective replaced by ``objective``.

    Returns :func:`~denoise.models.store.save_model`'s content of model.json (new ``sha256``).
    """

    new_meta = {k: v for k, v in meta.items() if k not in ("sha256", "halo", "multiple")}
    new_meta["objective"] = objective
    return save_model(model_dir, model.to("cpu"), new_meta)


def unet_features(
    model: torch.nn.Module,
    x: torch.Tensor,
    buffers: dict[int, torch.Tensor] | None = None,
    fused: bool = False,
) -> torch.Tensor:
    """The ``UNet`` forward pass without its 1×1 output layer (``model.head``).

    ``fused`` uses :func:`denoise.predict.network.upsample_concat` in the decoder (what
    :class:`~denoise.predict.network.NetworkPredictor` runs on the CPU), else the module's own
    upsample + concatenation.
    """

    skips = []
    for block, pool in zip(model.down, model.pools, strict=True):
        x = block(x)
        skips.append(x)
        x = pool(x)
    x = model.bottom(x)
    for level, block in zip(reversed(range(model.depth)), model.up, strict=True):
        skip = None if (model.n2v2 and level == 0) else skips[level]
        if fused:
            x = block(upsample_concat(x, skip, buffers))
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(x if skip is None else torch.cat([x, skip], dim=1))
    return x


def posterior_moments(
    samples: torch.Tensor, x: torch.Tensor, noise_model: NoiseModelBase
) -> tuple[torch.Tensor, torch.Tensor]:
    """MMSE and posterior std from all samples at once (reference for the chunked predictor).

    Parameters
    ----------
    samples
        ``(K, *shape)`` prior samples in raw units.
    x
        ``(*shape)`` observed values in raw units.
    """
    acc = _Accumulator(x)
    acc.add(samples, noise_model.log_prob(x[None], samples))
    return acc.result()


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation (``np.interp``: constant beyond the ends) in torch."""
    if xp.numel() == 1:
        return torch.full_like(x, float(fp[0]))
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1 = xp[i - 1], xp[i]
    t = ((x - x0) / (x1 - x0).clamp(min=1e-12)).clamp(0.0, 1.0)
    return fp[i - 1] + t * (fp[i] - fp[i - 1])


class _Accumulator:
    """Streaming likelihood-weighted mean and variance over sample chunks (log-sum-exp)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.m = torch.full_like(x, -math.inf)
        self.a = torch.zeros_like(x)
        self.b = torch.zeros_like(x)
        self.c = torch.zeros_like(x)

    def add(self, s: torch.Tensor, logp: torch.Tensor) -> None:
        logp = torch.nan_to_num(logp, nan=-1e30, neginf=-1e30)
        new_m = torch.maximum(self.m, logp.amax(dim=0))
        keep = torch.exp(self.m - new_m)
        w = torch.exp(logp - new_m)
        d = s - self.x  # residuals around x: no cancellation in the variance
        self.a = self.a * keep + w.sum(dim=0)
        self.b = self.b * keep + (w * d).sum(dim=0)
        self.c = self.c * keep + (w * d * d).sum(dim=0)
        self.m = new_m

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean_d = self.b / self.a
        var = (self.c / self.a - mean_d * mean_d).clamp(min=0.0)
        return self.x + mean_d, torch.sqrt(var)


class PN2VPredictor:
    """TiledPredictor for a PN2V model: outputs ``("denoised", "uncertainty")`` in raw units.

    Wraps a :class:`~denoise.predict.network.NetworkPredictor` (its halo, lattice multiple,
    device, normalisation and fast CPU decoder are reused unchanged) and replaces the output
    step by the posterior over the ``K`` samples (module docstring).  The learnt spread
    factor is folded into the output layer; the prior calibration (:func:`calibrate_prior`),
    when the model has one, rescales each pixel's samples around their mean.

    Parameters
    ----------
    model, meta, cfg
        As for ``NetworkPredictor``; ``meta["objective"]`` holds ``samples``, ``spread``,
        ``noise_model`` and optionally ``calibration`` (written by :func:`train_pn2v`).
    noise_model
        Overrides the model's stored noise model (e.g. a recalibrated one).
    chunk_bytes
        Memory allowed for one chunk of sample maps (sets ``k_chunk`` per tile size).
    """

    kind = "tiled"
    halo_t = 0
    output_names: tuple[str, ...] = ("denoised", "uncertainty")

    def __init__(
        self,
        model: torch.nn.Module,
        meta: dict[str, Any],
        cfg: PredictConfig,
        noise_model: NoiseModelBase | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:

        objective = meta.get("objective") or {}
        if noise_model is None:
            if "noise_model" not in objective:
                raise ValueError(
                    "this model has no PN2V noise model in its metadata (meta['objective']); "
                    "was it trained with method pn2v?"
                )
            noise_model = noise_model_from_dict(objective["noise_model"])
        self.net = NetworkPredictor(model, meta, cfg)
        self.ndim, self.halo, self.multiple = self.net.ndim, self.net.halo, self.net.multiple
        self.receptive_field = self.net.receptive_field
        self.samples = int(model.head.out_channels)
        self.spread = float(objective.get("spread", 1.0))
        self.noise_model = noise_model.to(self.net.device)
        self.chunk_bytes = int(chunk_bytes)
        self.checksum = self.net.checksum
        # s_k = ō + α(o_k − ō) is linear in the features: fold it into the 1×1 output layer.
        head = model.head
        w = head.weight.detach().float().to(self.net.device)
        b = (
            head.bias.detach().float().to(self.net.device)
            if head.bias is not None
            else torch.zeros(w.shape[0], device=self.net.device)
        )
        self.weight = w.mean(0, keepdim=True) + self.spread * (w - w.mean(0, keepdim=True))
        self.bias = b.mean() + self.spread * (b - b.mean())
        post = objective.get("posterior") or {}
        self.posterior_scale = float(post.get("scale", 1.0))
        self.temperature = float(post.get("temperature", 1.0))
        cal = objective.get("calibration")
        self.calibration: tuple[torch.Tensor, torch.Tensor] | None = None
        if cal:
            self.calibration = (
                torch.tensor(cal["levels"], dtype=torch.float32, device=self.net.device),
                torch.tensor(cal["factors"], dtype=torch.float32, device=self.net.device),
            )

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, cfg: PredictConfig) -> PN2VPredictor:
        """Load ``MODEL_DIR`` (``denoise.models.store.load_model``) and wrap it."""

        model, meta = load_model(model_dir)
        return cls(model, meta, cfg)

    def k_chunk(self, pixels: int) -> int:
        """Samples per chunk for a tile of ``pixels`` pixels."""
        return max(1, min(self.samples, self.chunk_bytes // max(1, pixels * 4 * _TEMPS)))

    def features(self, x: np.ndarray) -> torch.Tensor:
        """Network body on normalised tiles ``(N, *spatial)`` -> ``(N, F, *spatial)``."""
        net = self.net
        t = net.as_input(x)
        with torch.inference_mode(), net.autocast():
            return unet_features(net.model, t, net.buffers(), net.fused).float()

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        """MMSE estimate and posterior std of a batch of tiles.

        Parameters
        ----------
        tiles
            ``(N, *spatial)`` raw intensities.
        channel
            Channel (``c`` index) of the tiles: selects the normalisation statistics.

        Returns
        -------
        np.ndarray
            ``(N, 2, *spatial)`` float32: ``[:, 0]`` denoised (MMSE), ``[:, 1]`` uncertainty.
        """
        mean, std = self.net.norm(channel)
        raw = np.asarray(tiles, dtype=np.float32)
        if self.net.is_constant(channel):
            return np.stack([raw, np.zeros_like(raw)], axis=1)
        feats = self.features(np.ascontiguousarray((raw - mean) / std))
        out = np.empty((raw.shape[0], 2, *raw.shape[1:]), dtype=np.float32)
        for i in range(raw.shape[0]):
            x = torch.from_numpy(raw[i]).to(self.net.device)
            mmse, sd = self.posterior(feats[i : i + 1], x, mean, std)
            out[i, 0] = mmse.cpu().numpy()
            out[i, 1] = sd.cpu().numpy()
        return out

    def posterior(
        self,
        feat: torch.Tensor,
        x: torch.Tensor,
        mean: float,
        std: float,
        scale: float | None = None,
        temperature: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MMSE and posterior std of one tile from its features ``(1, F, *spatial)``.

        ``scale`` multiplies the samples' spread around their mean (on top of the prior
        calibration) and ``temperature`` the log-likelihood; ``None``: the model's tuned values
        (:func:`denoise.methods.pn2v_tuning.tune_posterior`; 1 and 1 when untuned, the paper's
        posterior).
        """
        t = self.temperature if temperature is None else float(temperature)
        return self.posteriors(feat, x, mean, std, scale, (t,))[0]

    def posteriors(
        self,
        feat: torch.Tensor,
        x: torch.Tensor,
        mean: float,
        std: float,
        scale: float | None,
        temperatures: tuple[float, ...],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`posterior` for several temperatures at once (the likelihood is evaluated once)."""
        scale = self.posterior_scale if scale is None else float(scale)
        weight, bias = self.weight, self.bias
        conv = F.conv2d if self.ndim == 2 else F.conv3d
        kc = self.k_chunk(int(x.numel()))
        with torch.inference_mode():
            accs = [_Accumulator(x) for _ in temperatures]
            centre = None
            factor: torch.Tensor | float = scale
            if self.calibration is not None or scale != 1.0:
                # The prior mean is linear in the features: one extra 1×1 convolution.
                w_mean = weight.mean(0, keepdim=True)
                centre = conv(feat, w_mean, bias.mean().reshape(1))[0]
                centre = centre * float(std) + float(mean)
                if self.calibration is not None:
                    factor = scale * _interp(centre, *self.calibration)
            for k0 in range(0, self.samples, kc):
                k1 = min(self.samples, k0 + kc)
                s = conv(feat, weight[k0:k1], bias[k0:k1])[0]
                s = s * float(std) + float(mean)
                if centre is not None:
                    s = centre + factor * (s - centre)
                logp = self.noise_model.log_prob(x[None], s)
                for acc, t in zip(accs, temperatures, strict=True):
                    acc.add(s, logp if t == 1.0 else float(t) * logp)
            return [acc.result() for acc in accs]

    def predict_image(self, image: np.ndarray, channel: int = 0) -> np.ndarray:
        """Whole-image prediction ``(*spatial)`` -> ``(2, *spatial)`` (the reference convention,
        :func:`denoise.predict.reference.predict_whole_image`, which tiled output equals)."""
        img = np.asarray(image, dtype=np.float32)
        if img.ndim != self.ndim:
            raise ValueError(f"expected a {self.ndim}D image, got shape {img.shape}")
        return predict_whole_image(self, img, channel)

    def describe(self) -> dict[str, Any]:
        """Provenance of the predictor (JSON-serialisable)."""
        return {
            **self.net.describe(),
            "class": type(self).__name__,
            "samples": self.samples,
            "spread": self.spread,
            "calibrated": self.calibration is not None,
            "posterior_scale": self.posterior_scale,
            "temperature": self.temperature,
            "noise_model": self.noise_model.kind,
        }
