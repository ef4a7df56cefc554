"""A trained U-Net as a TiledPredictor: per-channel normalisation, halo, batched inference.

Numerics follow the whole-image reference ``denoise.models.store.predict_whole``:
``x = (raw - mean_c) / std_c`` in float32, the network in eval mode under
``torch.inference_mode``, ``y * std_c + mean_c``.  On the CPU the network runs channels-last
(oneDNN's fast convolution layout); results differ from the contiguous layout only by float
rounding.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from denoise.config import PredictConfig
from denoise.tiling.grid import round_up

log = logging.getLogger(__name__)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("predict.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def state_checksum(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's parameters and buffers, in state-dict order."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


class NetworkPredictor:
    """TiledPredictor wrapping a fully convolutional network and its metadata.

    Parameters
    ----------
    model
        A ``denoise.models.unet.UNet`` (any module with ``ndim`` and ``multiple`` works).
    meta
        ``norm`` ({"mean": [...], "std": [...]} per channel, raw units), ``receptive_field``
        (measured, px), ``hparams``; optional ``output_names`` (default ``("denoised",)``,
        one per output channel of the network) and ``sha256`` (model file checksum).
    cfg
        ``halo`` (None: the receptive field rounded up to ``2**depth``), ``inexact``,
        ``device``, ``threads``.

    Attributes
    ----------
    ndim, halo, multiple, output_names
        The TiledPredictor protocol.
    receptive_field
        Measured one-sided reach (px); a halo below it raises unless ``cfg.inexact``.
    checksum
        Identifies the weights (for fingerprints).
    """

    def __init__(self, model: nn.Module, meta: dict[str, Any], cfg: PredictConfig) -> None:
        self.model = model.eval()
        self.ndim = int(meta.get("ndim", getattr(model, "ndim", 2)))
        self.multiple = int(getattr(model, "multiple", meta.get("multiple", 1)))
        rf = meta.get("receptive_field")
        if rf is None:
            from denoise.models.receptive_field import measure_receptive_field

            rf = measure_receptive_field(model, self.ndim, self.multiple)
            log.info("measured receptive field: %d px", rf)
        self.receptive_field = int(rf)
        want = self.receptive_field if cfg.halo is None else int(cfg.halo)
        self.halo = round_up(want, self.multiple)
        if self.halo < self.receptive_field and not cfg.inexact:
            raise ValueError(
                f"predict.halo {cfg.halo} is below the model's receptive field "
                f"({self.receptive_field} px): tiled output would differ from whole-image output; "
                "raise the halo, leave it unset, or set predict.inexact: true"
            )
        if self.halo < self.receptive_field:
            log.warning("inexact tiling: halo %d px < receptive field %d px", self.halo, self.receptive_field)
        self.output_names = tuple(meta.get("output_names", ("denoised",)))
        norm = meta.get("norm") or {"mean": [0.0], "std": [1.0]}
        self.mean = [float(v) for v in norm["mean"]]
        self.std = [float(v) for v in norm["std"]]
        self.device = _device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.channels_last = self.device.type == "cpu"
        self.model.to(self.device)
        if self.channels_last:
            fmt = torch.channels_last if self.ndim == 2 else torch.channels_last_3d
            self.model.to(memory_format=fmt)
        self.checksum = str(meta.get("sha256") or state_checksum(model))
        self.meta = {k: v for k, v in meta.items() if k != "state_dict"}

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, cfg: PredictConfig) -> NetworkPredictor:
        """Load ``MODEL_DIR`` with ``denoise.models.store.load_model`` and wrap it."""
        from denoise.models.store import load_model

        model, meta = load_model(model_dir)
        return cls(model, meta, cfg)

    def _norm(self, channel: int) -> tuple[np.float32, np.float32]:
        if not 0 <= channel < len(self.mean):
            raise ValueError(
                f"channel {channel} has no normalisation statistics (the model was trained on "
                f"{len(self.mean)} channel(s))"
            )
        return np.float32(self.mean[channel]), np.float32(self.std[channel])

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        """Predict a batch of tiles in raw intensity units.

        Parameters
        ----------
        tiles
            ``(N, *spatial)`` raw intensities.
        channel
            Channel (``c`` index) of the tiles: selects the normalisation statistics.

        Returns
        -------
        np.ndarray
            ``(N, len(output_names), *spatial)`` float32.
        """
        mean, std = self._norm(channel)
        x = (np.asarray(tiles, dtype=np.float32) - mean) / std
        t = torch.from_numpy(np.ascontiguousarray(x))[:, None].to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last if self.ndim == 2 else torch.channels_last_3d)
        with torch.inference_mode():
            y = self.model(t)
        y = y.float().cpu().contiguous().numpy()
        if y.shape[1] != len(self.output_names):
            raise ValueError(f"network gives {y.shape[1]} channels for outputs {self.output_names}")
        return (y * std + mean).astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        """Provenance of the predictor (JSON-serialisable)."""
        return json.loads(json.dumps({
            "class": type(self).__name__,
            "checksum": self.checksum,
            "receptive_field": self.receptive_field,
            "halo": self.halo,
            "multiple": self.multiple,
            "hparams": self.meta.get("hparams"),
            "device": str(self.device),
        }, default=str))
