"""A trained U-Net as a TiledPredictor: per-channel normalisation, halo, batched inference.

Numerics follow the whole-image reference ``denoise.models.store.predict_whole``:
``x = (raw - mean_c) / std_c`` in float32, the network in eval mode under
``torch.inference_mode``, ``y * std_c + mean_c``.  On the CPU the network runs channels-last
(oneDNN's fast convolution layout); results differ from the contiguous layout only by float
rounding.  For a ``UNet`` the decoder's nearest-upsample + concatenation is done as one copy
into a channels-last buffer (:func:`upsample_concat`), which is bit-identical to the module's
own forward (checked once when the predictor is built) and saves one pass over the largest
tensors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from denoise.models.device import resolve_device
from denoise.settings import PredictConfig
from denoise.tiling.grid import round_up

log = logging.getLogger(__name__)


def state_checksum(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's parameters and buffers, in state-dict order."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_retained = False


def retain_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Make glibc's ``malloc`` reuse freed memory instead of unmapping it.

    Every large tensor of a forward pass (hundreds of MB for a 1024² tile) is a fresh ``mmap``
    by default, and the kernel zero-fills its pages on first touch: on a 2-core machine that
    page-faulting costs as much as a third of the pass.  With ``mmap`` disabled and a high trim
    threshold, the next pass reuses the same (already faulted) heap.  Peak memory does not grow
    (the same sizes are reused); freed memory up to ``trim_threshold`` bytes stays with the
    process.  Process-wide; a no-op (returns False) where the C library is not glibc.
    """
    global _retained
    if _retained:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _retained = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)))
    log.debug("glibc malloc keeps freed memory: %s", _retained)
    return _retained


def upsample_concat(
    x: torch.Tensor, skip: torch.Tensor | None, buffers: dict[int, torch.Tensor] | None = None
) -> torch.Tensor:
    """``cat([interpolate(x, 2, "nearest"), skip], 1)`` written once, channels-last.

    Parameters
    ----------
    x
        ``(N, C1, *spatial)`` decoder features (any memory format).
    skip
        ``(N, C2, *2·spatial)`` encoder features, or ``None``.
    buffers
        Reusable output buffers, one per decoder level (keyed by channel count): the result
        is written into (and stays owned by) this cache, so it must not be kept beyond the
        next call with the same cache.  Reuse avoids the page faults of a fresh
        multi-hundred-MB allocation per tile.

    Returns
    -------
    torch.Tensor
        ``(N, C1 + C2, *2·spatial)`` in channels-last memory format.
    """
    nd = x.ndim - 2
    n, c1 = x.shape[:2]
    sp = x.shape[2:]
    c2 = 0 if skip is None else skip.shape[1]
    shape = (n, *(2 * s for s in sp), c1 + c2)
    out = buffers.get(c1 + c2) if buffers is not None else None  # one buffer per decoder level
    if out is None or out.shape != shape or out.dtype != x.dtype or out.device != x.device:
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
        if buffers is not None:
            buffers[c1 + c2] = out
    pairs = [d for s in sp for d in (s, 2)]
    ones = [d for s in sp for d in (s, 1)]
    last = (0, *range(2, nd + 2), 1)
    out.view(n, *pairs, c1 + c2)[..., :c1] = x.permute(last).reshape(n, *ones, c1)
    if skip is not None:
        out[..., c1:] = skip.permute(last)
    return out.permute(0, nd + 1, *range(1, nd + 1))


def unet_forward(model: nn.Module, x: torch.Tensor, buffers: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """The ``UNet`` forward pass with :func:`upsample_concat` in the decoder."""
    skips = []
    for block, pool in zip(model.down, model.pools, strict=True):
        x = block(x)
        skips.append(x)
        x = pool(x)
    x = model.bottom(x)
    for level, block in zip(reversed(range(model.depth)), model.up, strict=True):
        x = block(upsample_concat(x, None if (model.n2v2 and level == 0) else skips[level], buffers))
    return model.head(x)


def _fused_forward_ok(model: nn.Module, ndim: int, multiple: int, fmt: torch.memory_format) -> bool:
    """True when :func:`unet_forward` reproduces ``model`` bit for bit on a random input."""
    needed = ("down", "pools", "bottom", "up", "head", "depth", "n2v2")
    if not all(hasattr(model, a) for a in needed):
        return False
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, 1) + (2 * multiple,) * ndim, generator=gen).contiguous(memory_format=fmt)
    try:
        with torch.inference_mode():
            return bool(torch.equal(model(x), unet_forward(model, x)))
    except Exception as exc:  # a model that looks like a UNet but is not one
        log.info("fused U-Net forward unavailable (%s); using the module's forward", exc)
        return False


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

    kind = "tiled"
    halo_t = 0

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
        self.constant = [bool(v) for v in norm.get("constant", ())]
        self.device = resolve_device(cfg.device, "predict.device")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.channels_last = self.device.type == "cpu"
        self.model.to(self.device)
        self.fused = False
        if self.device.type == "cpu":
            retain_freed_memory()
        if self.channels_last:
            fmt = torch.channels_last if self.ndim == 2 else torch.channels_last_3d
            self.model.to(memory_format=fmt)
            self.fused = _fused_forward_ok(self.model, self.ndim, self.multiple, fmt)
        self.checksum = str(meta.get("sha256") or state_checksum(model))
        self.meta = {k: v for k, v in meta.items() if k != "state_dict"}
        self.precision = getattr(cfg, "precision", "float32")
        if self.device.type == "cuda" and self.precision == "float32":
            # TF32 would change float32 results by ~1e-3: keep tiled == whole-image exact.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    def buffers(self) -> dict[int, torch.Tensor]:
        """This thread's decoder buffers (threads sharing the predictor never share them)."""
        local = self.__dict__.setdefault("_local", threading.local())
        if not hasattr(local, "buffers"):
            local.buffers = {}
        return local.buffers

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, cfg: PredictConfig) -> NetworkPredictor:
        """Load ``MODEL_DIR`` with ``denoise.models.store.load_model`` and wrap it."""
        from denoise.models.store import load_model

        model, meta = load_model(model_dir)
        return cls(model, meta, cfg)

    def is_constant(self, channel: int) -> bool:
        """True when the channel was constant in training (it is passed through unchanged)."""
        return channel < len(self.constant) and self.constant[channel]

    def as_input(self, x_norm: np.ndarray) -> torch.Tensor:
        """Normalised tiles ``(N, *spatial)`` as the network's input tensor on its device."""
        t = torch.from_numpy(x_norm)[:, None].to(self.device)
        if self.channels_last:
            fmt = torch.channels_last if self.ndim == 2 else torch.channels_last_3d
            t = t.contiguous(memory_format=fmt)
        return t

    def autocast(self) -> Any:
        """The forward pass's precision context (float32, or bf16/fp16 autocast)."""
        low = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.precision)
        return torch.autocast(
            self.device.type, dtype=low or torch.float32, enabled=low is not None
        )

    def norm(self, channel: int) -> tuple[np.float32, np.float32]:
        """The channel's normalisation ``(mean, std)``: ``x_norm = (x_raw - mean) / std``."""
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
        mean, std = self.norm(channel)
        if channel < len(self.constant) and self.constant[channel]:
            # A constant channel carries no noise: its denoised value is the value itself.
            same = np.asarray(tiles, dtype=np.float32)[:, None]
            return np.repeat(same, len(self.output_names), axis=1)
        x = (np.asarray(tiles, dtype=np.float32) - mean) / std
        y = self._forward_batches(np.ascontiguousarray(x))
        if y.shape[1] != len(self.output_names):
            raise ValueError(f"network gives {y.shape[1]} channels for outputs {self.output_names}")
        return (y * std + mean).astype(np.float32, copy=False)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """One forward pass of normalised tiles ``(N, *spatial)`` -> ``(N, C, *spatial)``."""
        t = torch.from_numpy(x)[:, None]
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last if self.ndim == 2 else torch.channels_last_3d)
        low = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.precision)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=low or torch.float32, enabled=low is not None):
            y = unet_forward(self.model, t, self.buffers()) if self.fused else self.model(t)
        return y.float().cpu().contiguous().numpy()

    def _forward_batches(self, x: np.ndarray) -> np.ndarray:
        """:meth:`_forward`, halving the batch on CUDA out-of-memory until one tile fits."""
        try:
            return self._forward(x)
        except torch.cuda.OutOfMemoryError:
            if len(x) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(x) // 2
            log.warning("CUDA out of memory with %d tiles per pass: retrying with %d", len(x), half)
            return np.concatenate([self._forward_batches(x[:half]), self._forward_batches(x[half:])])

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
            "precision": self.precision,
        }, default=str))
