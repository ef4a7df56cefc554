"""A BioImage Model Zoo package of ours (``denoise export-bmz``) back into a model directory.

The package's ``pytorch_state_dict`` weights are :class:`denoise.export.network.RawDenoiser`'s
state (the U-Net's under ``net.``) and its architecture kwargs hold the U-Net's
hyper-parameters and the per-channel training statistics; ``config.denoise`` holds the method,
receptive field and the original model's checksum.  :func:`import_bmz` rebuilds the U-Net from
them and writes ``model.pt`` + ``model.json`` with :func:`denoise.models.store.save_model`, so
a package serves as the sheet's ``model`` (or ``denoise apply --model``) like a model directory.
Packages written by our exporter carry ``config.denoise``; any other package is imported as a
foreign N2V-type package by :func:`denoise.export.bmz_foreign.import_foreign`.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml

from denoise.export.bmz_foreign import import_foreign
from denoise.io.bmz_package import is_our_package, read_package
from denoise.models.store import save_model
from denoise.models.unet import UNet
from denoise.provenance import file_sha256

#: Keyword arguments of RawDenoiser that are not the U-Net's.
WRAPPER_KWARGS = ("mean", "std", "halo", "constant")


def import_bmz(package: str | Path, model_dir: str | Path) -> dict[str, Any]:
    """Write ``model_dir`` (model.pt + model.json) from a BMZ package; returns model.json.

    Our packages give back the U-Net; a foreign N2V-type package its TorchScript program
    (:func:`denoise.export.bmz_foreign.import_foreign`).
    """
    if not is_our_package(package):
        return import_foreign(package, model_dir)
    kwargs, ours = read_package(package)
    with zipfile.ZipFile(package) as zf:
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        source = rdf["weights"]["pytorch_state_dict"]["source"]
        blob = zf.read(source)
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    hparams = {k: v for k, v in kwargs.items() if k not in WRAPPER_KWARGS}
    model = UNet(**hparams)
    model.load_state_dict({k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
    model.eval()
    ndim = int(hparams.get("ndim", 2))
    meta = {
        "method": ours["method"],
        "norm": {
            "mean": [float(v) for v in kwargs["mean"]],
            "std": [float(v) for v in kwargs["std"]],
            "constant": [bool(v) for v in kwargs.get("constant", ())],
        },
        "receptive_field": int(ours["receptive_field"]),
        "axes": "zyx" if ndim == 3 else "yx",
        "ndim": ndim,
        "train_config": {},
        "fingerprint": ours.get("fingerprint", ""),
        "objective": {"name": ours["method"]},
        "bmz_package": {"path": str(Path(package).resolve()), "sha256": file_sha256(package)},
        "source_model_sha256": ours.get("model_sha256", ""),
    }
    return save_model(model_dir, model, meta)
