"""Make the committed CAREamics N2V package (run with the CAREamics venv, see README.md).

Trains a tiny CAREamics 0.3.5 Noise2Void model (depth 2, 8 initial features, a few steps) on
the 96x96 ``.test/data/fish_noisy.tif`` (patches 32x32, batch 4, 2 epochs), exports it with CAREamics' own
``export_to_bmz`` (``careamics_n2v_pure.zip``: rdf.yaml, pytorch_state_dict weights whose
architecture is imported from the ``careamics`` library), then adds TorchScript weights, the
eval-mode network traced (``careamics_n2v.zip``; rdf.yaml otherwise unchanged).

Usage (from the repository root)::

    .venv-careamics/bin/python tests/data/careamics_n2v/make_package.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def train_and_export(work: Path) -> Path:
    """Train the tiny model and export it with CAREamics; returns the package path."""
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    crop = tifffile.imread(ROOT / ".test/data/fish_noisy.tif").astype(np.float32)
    cfg = create_advanced_n2v_config(
        experiment_name="tiny_n2v",
        data_type="array",
        axes="YX",
        patch_size=[32, 32],
        n_val_patches=2,
        batch_size=4,
        num_epochs=2,
        model_params={"depth": 2, "num_channels_init": 8},
        num_workers=0,
        seed=1,
    )
    careamist = CAREamist(cfg, work_dir=str(work), enable_progress_bar=False)
    careamist.train(train_data=crop)
    out = work / "careamics_n2v_pure.zip"
    careamist.export_to_bmz(
        path_to_archive=out,
        friendly_model_name="tiny_careamics_n2v",
        input_array=crop,
        authors=[{"name": "denoise test fixture"}],
        general_description="Tiny CAREamics N2V (test fixture of the denoise project).",
        data_description="96x96 crop of an FMD confocal zebrafish image (noisy).",
    )
    return out


def add_torchscript(pure: Path, out: Path) -> None:
    """Add TorchScript weights (the eval-mode network traced) to the CAREamics package.

    bioimageio.core 0.11's ``pytorch_to_torchscript.convert`` traces the network as
    ``load_torch_model`` returns it, in training mode: its batch norms then use each call's
    batch statistics (and update their running statistics), which denoise's import refuses as
    not shift-equivariant.  So the conversion is done here, the same way but after ``eval()``.
    """
    from bioimageio.core.backends.pytorch_backend import load_torch_model
    from bioimageio.spec import load_model_description, save_bioimageio_package
    from bioimageio.spec.model.v0_5 import TorchscriptWeightsDescr, Version, WeightsDescr

    descr = load_model_description(pure)
    net = load_torch_model(descr.weights.pytorch_state_dict, load_state=True, devices=["cpu"]).eval()
    example = [torch.from_numpy(a) for a in descr.get_input_test_arrays()]
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        path = Path(tmp) / "weights_torchscript.pt"
        torch.jit.trace(net, example).save(str(path))
        ts = TorchscriptWeightsDescr(
            source=path,
            pytorch_version=Version(torch.__version__),
            parent="pytorch_state_dict",
            comment="traced in eval mode by denoise's tests/data/careamics_n2v/make_package.py",
        )
        descr.weights = WeightsDescr(pytorch_state_dict=descr.weights.pytorch_state_dict, torchscript=ts)
        save_bioimageio_package(descr, output_path=out)


def main() -> int:
    torch.manual_seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        pure = train_and_export(Path(tmp))
        shutil.copy(pure, HERE / "careamics_n2v_pure.zip")
        add_torchscript(pure, HERE / "careamics_n2v.zip")
    for name in ("careamics_n2v_pure.zip", "careamics_n2v.zip"):
        print(name, (HERE / name).stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
