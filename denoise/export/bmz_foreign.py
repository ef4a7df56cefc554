"""A foreign N2V-type BioImage Model Zoo package as a model directory, and its tiled predictor.

:func:`import_foreign` reads the package's spec (:func:`denoise.io.bmz_spec.read_foreign_spec`),
takes its ``torchscript`` weights (or traces its ``pytorch_state_dict`` network, loaded with
bioimageio.core, into TorchScript), measures the receptive field, and writes ``model.pt`` +
``model.json`` with the program inside (:class:`denoise.export.foreign_net.ForeignNetwork`)
and the spec's axes, pre/postprocessing and package checksum in ``model.json``'s
``bmz_foreign`` / ``bmz_package``.  The halo is the largest of the measured receptive field,
the spec's output halo and what the spec's minimum input size needs; tiles are multiples of
the spec's size step.

:class:`ForeignPredictor` is our tiled predictor around it: per-sample statistics are computed
once over each whole input channel (:mod:`denoise.export.bmz_ops`), so every tile sees the
same constants and the blended output equals the whole-image output.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.export import bmz_ops
from denoise.export.foreign_net import (
    ForeignNetwork,
    lattice_step,
    script_reach,
    shift_equivariant,
    to_axes,
)
from denoise.io.bmz_spec import ForeignSpec, read_foreign_spec
from denoise.models.store import load_model, save_model
from denoise.predict.network import NetworkPredictor
from denoise.provenance import file_sha256, read_json
from denoise.settings import PredictConfig

log = logging.getLogger(__name__)


def _canon(spec: ForeignSpec) -> str:
    """Our tiles' axes for this package: ``bcyx`` or ``bczyx``."""
    return "bc" + "zyx"[3 - spec.ndim :]


def _torchscript(package: str | Path, spec: ForeignSpec) -> bytes:
    """The package's ``torchscript`` weights (checked to load)."""
    source = str(spec.raw_weights["torchscript"]["source"]).removeprefix("./")
    with zipfile.ZipFile(package) as zf:
        blob = zf.read(source)
    torch.jit.load(io.BytesIO(blob), map_location="cpu")  # refuses a broken program early
    return blob


def _traced_state_dict(package: str | Path, spec: ForeignSpec) -> bytes:
    """The ``pytorch_state_dict`` network (bioimageio.core builds it) traced to TorchScript."""
    try:
        from bioimageio.core.backends.pytorch_backend import load_torch_model
        from bioimageio.spec import load_model_description
    except ImportError as exc:
        raise ValueError(
            "its pytorch_state_dict weights need bioimageio.core to build the architecture: "
            "pip install 'denoise[bmz]'"
        ) from exc
    descr = load_model_description(str(package), perform_io_checks=False)
    net = load_torch_model(descr.weights.pytorch_state_dict, load_state=True, devices=["cpu"]).eval()
    step = spec.step or 64  # a fixed-size spec: 64 is a multiple of every lattice step tried
    size = [-(-max(m, 64) // step) * step for m in spec.min_size]
    gen = torch.Generator().manual_seed(0)
    first = to_axes(torch.randn((1, 1, *size), generator=gen), _canon(spec), spec.in_axes)
    second = to_axes(torch.randn((1, 1, *(s + step for s in size)), generator=gen), _canon(spec), spec.in_axes)
    with torch.no_grad():
        traced = torch.jit.trace(net, first, check_trace=False)
        if not torch.allclose(traced(second), net(second), atol=1e-5, rtol=1e-5):
            raise ValueError("its network does not trace to TorchScript (shape-dependent code)")
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    return buf.getvalue()


def program_of(package: str | Path, spec: ForeignSpec) -> tuple[bytes, str]:
    """``(TorchScript bytes, weights format used)``; ValueError naming the package when none runs."""
    errors = []
    for fmt in spec.weights:
        try:
            load = _torchscript if fmt == "torchscript" else _traced_state_dict
            return load(package, spec), fmt
        except Exception as exc:  # every reason is reported below
            errors.append(f"{fmt}: {exc}")
    raise ValueError(f"BMZ package {package}: no weights could be loaded ({'; '.join(errors)})")


def _checked_network(blob: bytes, spec: ForeignSpec) -> tuple[ForeignNetwork, int]:
    """The network on its lattice step (the spec's, checked; or found) and its receptive field."""
    probe = ForeignNetwork.from_bytes(blob, spec.ndim, spec.step or 1, spec.in_axes, spec.out_axes)
    reach = script_reach(probe)  # at one phase only: a lattice step m adds less than m px
    step = spec.step or lattice_step(probe, reach)
    if spec.step and not shift_equivariant(probe, step, reach + step):
        raise ValueError(
            f"the network is not shift-equivariant on the spec's step {step} px: tiled "
            "prediction cannot reproduce it"
        )
    net = ForeignNetwork.from_bytes(blob, spec.ndim, step, spec.in_axes, spec.out_axes)
    return net, script_reach(net)


def import_foreign(package: str | Path, model_dir: str | Path) -> dict[str, Any]:
    """Write ``model_dir`` (model.pt + model.json) from a foreign N2V-type package; returns model.json."""
    spec = read_foreign_spec(package)
    blob, fmt = program_of(package, spec)
    try:
        net, reach = _checked_network(blob, spec)
    except Exception as exc:
        raise ValueError(f"BMZ package {package}: {exc}") from exc
    need = -(-(max(spec.min_size) - net.multiple) // 2)  # 2 * halo + step >= the spec's minimum
    sha = file_sha256(package)
    meta = {
        "method": "n2v",
        "norm": {},
        "receptive_field": max(reach, spec.halo, need),
        "axes": "zyx" if spec.ndim == 3 else "yx",
        "ndim": spec.ndim,
        "train_config": {},
        "fingerprint": sha,
        "objective": {"name": "n2v"},
        "bmz_package": {"path": str(Path(package).resolve()), "sha256": sha},
        "bmz_foreign": {
            "name": spec.name,
            "format_version": spec.format_version,
            "weights": fmt,
            "in_axes": spec.in_axes,
            "out_axes": spec.out_axes,
            "pre": [list(s) for s in spec.pre],
            "post": [list(s) for s in spec.post],
            "measured_receptive_field": reach,
            "spec_halo": spec.halo,
            "min_size": list(spec.min_size),
            "spec_step": spec.step,
        },
    }
    return save_model(model_dir, net, meta)


def is_foreign_model(model_dir: str | Path) -> bool:
    """True for a model directory imported from a foreign package."""
    path = Path(model_dir) / "model.json"
    return path.is_file() and "bmz_foreign" in read_json(path)


def channel_blocks(store: str | Path, channel: int) -> Iterator[np.ndarray]:
    """One channel of an OME-Zarr image (level 0) as float32 blocks, one chunk thick along the
    first other axis: together every pixel of the channel, once."""
    from denoise.io import omezarr

    arr, axes = omezarr.open_image(store)
    lead = next(i for i, a in enumerate(axes) if a != "c")
    step = int(arr.chunks[lead])
    for start in range(0, arr.shape[lead], step):
        index = tuple(
            channel if a == "c" else slice(start, start + step) if i == lead else slice(None)
            for i, a in enumerate(axes)
        )
        yield np.asarray(arr[index], dtype=np.float32)


class ForeignPredictor(NetworkPredictor):
    """Our tiled predictor around a foreign package's network (module docstring).

    Parameters
    ----------
    model, meta, cfg
        As :class:`denoise.predict.network.NetworkPredictor` (``meta`` carries ``bmz_foreign``).
    store
        The input OME-Zarr image: per-sample statistics are taken over each whole channel.
    """

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], cfg: PredictConfig, store: str | Path) -> None:
        super().__init__(model, meta, cfg)
        spec = meta["bmz_foreign"]
        pre = [(str(n), dict(k)) for n, k in spec["pre"]]
        self.post = bmz_ops.resolve([(str(n), dict(k)) for n, k in spec["post"]])
        if bmz_ops.needs_data(pre):
            from denoise.io import omezarr

            arr, axes = omezarr.open_image(store)
            n_c = arr.shape[axes.index("c")] if "c" in axes else 1
            self.pre = [
                bmz_ops.resolve(pre, lambda c=c: channel_blocks(store, c)) for c in range(n_c)
            ]
        else:
            self.pre = [bmz_ops.resolve(pre)]
        for c, steps in enumerate(self.pre):
            log.info("BMZ package %s, channel %d: preprocessing %s, postprocessing %s",
                     spec["name"], c, bmz_ops.as_json(steps), bmz_ops.as_json(self.post))

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        """Raw tiles ``(N, *spatial)`` of ``channel`` -> ``(N, 1, *spatial)`` postprocessed output."""
        pre = self.pre[channel if len(self.pre) > 1 else 0]
        y = self._forward_batches(np.ascontiguousarray(bmz_ops.apply(pre, tiles)))
        if y.shape[1] != 1:
            raise ValueError(f"the package's network gave {y.shape[1]} channels; expected 1")
        return bmz_ops.apply(self.post, y)

    def describe(self) -> dict[str, Any]:
        """Provenance: NetworkPredictor's, plus the resolved steps of every channel."""
        out = super().describe()
        out["bmz_pre"] = [bmz_ops.as_json(s) for s in self.pre]
        out["bmz_post"] = bmz_ops.as_json(self.post)
        return out


def foreign_predictor(model_dir: str | Path, cfg: PredictConfig, store: str | Path) -> ForeignPredictor:
    """Load an imported foreign model directory and wrap it for the input ``store``."""
    model, meta = load_model(model_dir)
    return ForeignPredictor(model, meta, cfg, store)
