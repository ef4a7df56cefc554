"""Model directories: save/load a trained U-Net with its metadata, and whole-image inference.

Layout (see ``docs/architecture.md``)::

    MODEL_DIR/model.pt    torch.save dict: state_dict, hparams, method, norm, receptive_field,
                          axes, ndim, train_config, fingerprint (+ halo, multiple)
    MODEL_DIR/model.json  the same metadata without weights, plus sha256 of model.pt

Both files are written atomically (temporary file + ``os.replace``), model.pt first, so a
model.json always describes a complete model.pt.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.models.receptive_field import measure_receptive_field
from denoise.models.unet import UNet
from denoise.provenance import atomic_write_json, file_sha256, read_json

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
META_FILE = "model.json"
#: Metadata keys every saved model carries (besides the weights).
META_KEYS = (
    "hparams",
    "method",
    "norm",
    "receptive_field",
    "axes",
    "ndim",
    "train_config",
    "fingerprint",
)


def halo_for(receptive_field: int, multiple: int) -> int:
    """The receptive field rounded UP to a multiple of ``multiple`` (``2**depth``)."""
    return -(-int(receptive_field) // int(multiple)) * int(multiple)


def receptive_field(model: torch.nn.Module) -> int:
    """Measured receptive-field radius of ``model`` (pixels, along every spatial axis).

    The impulse response is measured on a one-feature, 2D twin of the network.  The reach
    depends only on the layer topology, not on the number of features; and every layer of the
    3D U-Net (3×3×3 kernels, 2×2×2 pooling, the separable [1,2,1] blur of N2V2, nearest
    upsampling) reaches exactly as far along each axis as its 2D counterpart, so the 2D twin
    gives the 3D radius too.  This keeps the measurement well under a second (a float64 3D
    impulse response takes tens of seconds on a CPU).
    """
    if not isinstance(model, UNet):  # another architecture: measured on the network itself
        return measure_receptive_field(model, int(model.ndim), multiple=int(model.multiple))
    twin = UNet(**{**model.hparams, "features": 1, "ndim": 2})
    return measure_receptive_field(twin, 2, multiple=model.multiple)


def architecture_of(model: torch.nn.Module) -> str:
    """``module:Class`` of a network, recorded so :func:`load_model` can rebuild it."""
    return f"{type(model).__module__}:{type(model).__qualname__}"


def _architecture(name: str | None) -> type[torch.nn.Module]:
    if not name or name == architecture_of_class(UNet):
        return UNet
    module, _, cls = name.partition(":")
    return getattr(importlib.import_module(module), cls)


def architecture_of_class(cls: type) -> str:
    """``module:Class`` of a network class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` atomically: serialised, written, fsynced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            buf = io.BytesIO()  # serialised first: torch reports a full disk as a cryptic error
            torch.save(obj, buf)
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model_dir: str | Path, model: UNet, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``model.pt`` and ``model.json`` into ``model_dir``.

    Parameters
    ----------
    model_dir
        Directory (created if needed).
    model
        The trained network; its ``hparams`` are stored so :func:`load_model` can rebuild it.
    meta
        ``method``, ``norm`` ({"mean": [...], "std": [...]} per channel, raw units), ``axes``,
        ``ndim``, ``train_config`` (dict) and ``fingerprint``; ``receptive_field`` is measured
        here when absent.

    Returns
    -------
    dict
        The content of model.json (metadata, ``halo``, ``multiple`` and ``sha256``).
    """
    model_dir = Path(model_dir)
    full = dict(meta)
    full["hparams"] = dict(model.hparams)
    if not isinstance(model, UNet):  # the U-Net is the default: its models stay as they were
        full["architecture"] = architecture_of(model)
    full.setdefault("ndim", int(model.ndim))
    if full.get("receptive_field") is None:
        full["receptive_field"] = receptive_field(model)
    full["multiple"] = int(model.multiple)
    full["halo"] = halo_for(full["receptive_field"], model.multiple)
    missing = [k for k in META_KEYS if k not in full]
    if missing:
        raise ValueError(f"save_model: metadata lacks {missing}")
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save({"state_dict": state, **full}, model_dir / MODEL_FILE)
    info = {**full, "sha256": file_sha256(model_dir / MODEL_FILE)}
    atomic_write_json(model_dir / META_FILE, info)
    log.info(
        "saved %s model to %s (receptive field %d px)",
        full["method"],
        model_dir,
        full["receptive_field"],
    )
    return info


def load_model(model_dir: str | Path) -> tuple[UNet, dict[str, Any]]:
    """Load a model directory written by :func:`save_model`.

    Returns
    -------
    (UNet, dict)
        The network in eval mode on the CPU, and its metadata (model.json content when
        present, else the metadata stored in model.pt).

    Raises
    ------
    FileNotFoundError, ValueError
        No model.pt, or its checksum differs from the one model.json records.
    """
    model_dir = Path(model_dir)
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {MODEL_FILE}; train the model first")
    meta_path = model_dir / META_FILE
    if meta_path.is_file():
        meta = read_json(meta_path)
        sha = file_sha256(path)
        if meta.get("sha256") != sha:
            raise ValueError(
                f"{path}: checksum {sha[:12]} differs from {meta_path} ({str(meta.get('sha256'))[:12]}); "
                "the model directory is inconsistent, retrain the model"
            )
    else:
        meta = None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.pop("state_dict")
    if meta is None:
        meta = blob
    model = _architecture(meta.get("architecture"))(**meta["hparams"])
    model.load_state_dict(state)
    model.eval()
    meta.setdefault("multiple", model.multiple)
    meta.setdefault("halo", halo_for(meta["receptive_field"], model.multiple))
    return model, meta


def pad_widths(shape: tuple[int, ...], halo: int, multiple: int) -> list[tuple[int, int]]:
    """Padding per spatial axis: ``halo`` before, ``halo`` + end padding to a multiple after."""
    return [(halo, halo + (-n) % multiple) for n in shape]


def predict_whole(
    model: UNet, meta: dict[str, Any], image: np.ndarray, channel: int = 0
) -> np.ndarray:
    """Whole-image reference inference in raw intensity units.

    Convention (tiled prediction must reproduce it exactly): the image is normalised with
    ``meta["norm"]`` of ``channel`` (``(x - mean) / std``, float32), padded with
    ``np.pad(mode="reflect")`` by ``halo`` pixels on both sides of every spatial axis, where
    ``halo`` is the measured receptive field rounded up to a multiple of ``2**depth``, plus
    ``(-n) % 2**depth`` extra pixels at the end of an axis of length ``n`` so the padded size is a
    multiple of ``2**depth``; the network runs once in eval mode under
    ``torch.inference_mode``; the output is cropped back to the image and de-normalised.

    Parameters
    ----------
    model, meta
        From :func:`load_model` (or training); the model's device is used.
    image
        ``(*lead, *spatial)`` with ``meta["ndim"]`` spatial axes; leading axes (e.g. planes of a
        stack for a 2D model) are processed one at a time.
    channel
        Which channel's normalisation statistics to use.

    Returns
    -------
    np.ndarray
        float32, same shape as ``image``.
    """
    ndim = int(meta["ndim"])
    image = np.asarray(image)
    if image.ndim < ndim:
        raise ValueError(
            f"image of shape {image.shape} has fewer than the model's {ndim} spatial axes"
        )
    if image.ndim > ndim:
        lead = image.shape[: image.ndim - ndim]
        flat = image.reshape(-1, *image.shape[-ndim:])
        out = np.stack([predict_whole(model, meta, p, channel) for p in flat])
        return out.reshape(*lead, *image.shape[-ndim:])
    multiple = int(meta.get("multiple", 2 ** int(meta["hparams"]["depth"])))
    halo = int(meta.get("halo", halo_for(meta["receptive_field"], multiple)))
    mean = np.float32(meta["norm"]["mean"][channel])
    std = np.float32(meta["norm"]["std"][channel])
    constant = meta["norm"].get("constant", ())
    if channel < len(constant) and constant[channel]:
        return image.astype(np.float32)  # a constant channel carries no noise
    x = (image.astype(np.float32) - mean) / std
    widths = pad_widths(image.shape, halo, multiple)
    x = np.pad(x, widths, mode="reflect")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            y = model(torch.from_numpy(np.ascontiguousarray(x))[None, None].to(device))[0, 0]
            y = y.float().cpu().numpy()
    finally:
        model.train(was_training)
    crop = tuple(slice(h, h + n) for (h, _), n in zip(widths, image.shape, strict=True))
    return (y[crop] * std + mean).astype(np.float32)
