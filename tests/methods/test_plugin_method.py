"""A new trained method is one module plus its registry entry, with no edit anywhere else.

The toy method below (a one-layer network with its own settings block) is written to a
temporary directory and named in ``DENOISE_METHOD_MODULES``; the CLI, the schema, the
fingerprints and the tiny Snakemake workflow pick it up from the registry alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from tests.conftest import REPO

TOY = '''
"""Toy trained method: one convolution trained with the N2V loss (a test plug-in)."""
import torch
from pydantic import Field

from denoise.methods.n2v import MaskedPatchSource
from denoise.methods.objectives import N2VObjective
from denoise.methods.patches import PatchSampler
from denoise.methods.registry import MethodSpec
from denoise.settings import Strict
from denoise.training.loop import train_loop


class ToySettings(Strict):
    """methods.toy: the toy's own settings."""

    kernel: int = Field(3, ge=1, description="Edge of the single convolution (odd).")


class OneLayer(torch.nn.Module):
    def __init__(self, ndim=2, kernel=3, multiple=1):
        super().__init__()
        self.hparams = {"ndim": ndim, "kernel": kernel, "multiple": multiple}
        self.ndim, self.multiple = ndim, multiple
        self.conv = torch.nn.Conv2d(1, 1, kernel, padding=kernel // 2)

    def forward(self, x):
        return self.conv(x)


def _train(request):
    cfg, k = request.train, request.settings.kernel
    sampler = PatchSampler(request.store, cfg.patch_size, cfg.patch_size_z, 1, "2d")
    return train_loop(
        request.model_dir,
        lambda: OneLayer(2, k),
        N2VObjective("toy"),
        MaskedPatchSource(sampler, cfg, request.seed, False),
        cfg,
        request.seed,
        fingerprint=request.fingerprint,
        settings=request.settings.model_dump(mode="json"),
    )


def _predictor(request):
    from denoise.predict.network import NetworkPredictor

    return NetworkPredictor.from_model_dir(request.model_dir, request.predict)


METHODS = (
    MethodSpec(
        name="toy",
        kind="trained",
        summary="one convolution, N2V loss (test plug-in)",
        settings=ToySettings,
        train=_train,
        predictor=_predictor,
    ),
)
'''

TRAIN = {"epochs": 4, "steps_per_epoch": 15, "batch_size": 8, "patch_size": 32,
         "learning_rate": 0.02, "threads": 1}  # fmt: skip


@pytest.fixture
def plugin(tmp_path) -> dict[str, str]:
    """Environment that registers the toy method (module on PYTHONPATH, named in the env)."""
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "toy_denoise_method.py").write_text(TOY)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "plug"), str(REPO)])
    env["DENOISE_METHOD_MODULES"] = "toy_denoise_method"
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "denoise.cli.main", *map(str, args)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_toy_method_through_the_cli(tmp_path, plugin, fish_crop):
    noisy, gt = fish_crop
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    table = _cli(plugin, "methods").stdout
    assert "| `toy` | trained |" in table and "| `n2v` |" in table
    schema = json.loads(_cli(plugin, "schema").stdout)
    toy = schema["$defs"]["ToySettings"]["properties"]["kernel"]
    assert toy["default"] == 3
    store, model = tmp_path / "raw.ome.zarr", tmp_path / "model"
    _cli(plugin, "ingest", "--input", tmp_path / "noisy.tif", "--axes", "yx", "--store", store,
         "--sentinel", tmp_path / "ingest.json")  # fmt: skip
    common = ["--store", store, "--ingest", tmp_path / "ingest.json", "--seed", 3]
    for kernel in (5, 3):
        _cli(plugin, "train", *common, "--model-dir", model / str(kernel), "--method", "toy",
             "--params", json.dumps(TRAIN), "--method-params", json.dumps({"kernel": kernel}))  # fmt: skip
    metas = {k: json.loads((model / str(k) / "model.json").read_text()) for k in (5, 3)}
    assert metas[5]["method_settings"] == {"kernel": 5} and metas[5]["hparams"]["kernel"] == 5
    assert metas[5]["architecture"] == "toy_denoise_method:OneLayer"
    assert metas[5]["receptive_field"] == 2 and metas[3]["receptive_field"] == 1
    assert metas[5]["fingerprint"] != metas[3]["fingerprint"]  # the setting is in the fingerprint
    out = tmp_path / "out"
    args = [*common, "--output-dir", out, "--method", "toy", "--model-dir", model / "5",
            "--params", json.dumps({"tile": 64, "device": "cpu"})]  # fmt: skip
    _cli(plugin, "predict", *args, "--sentinel", tmp_path / "p.json")
    _cli(plugin, "gather", *args, "--sentinel", tmp_path / "g.json")
    from denoise.io import omezarr

    den = omezarr.open_image(out / "denoised.ome.zarr")[0][:]
    x, y, g = noisy.astype(np.float64), den.astype(np.float64), gt.astype(np.float64)
    # A learnt 5×5 linear blind-spot filter denoises: well below the noisy input's error.
    assert np.mean((y - g) ** 2) < 0.6 * np.mean((x - g) ** 2)
    proc = subprocess.run(
        [sys.executable, "-m", "denoise.cli.main", "train", *map(str, common), "--model-dir",
         model / "x", "--method", "toy", "--method-params", '{"kernal": 3}'],
        env=plugin, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown key 'kernal'" in proc.stderr


@pytest.mark.slow  # a whole workflow run (~2 min); `pytest -m slow` runs it
def test_toy_method_through_the_workflow(tmp_path, plugin):
    wd = tmp_path / "wd"
    (wd / "config").mkdir(parents=True)
    shutil.copytree(REPO / ".test" / "data", wd / ".test" / "data")
    cfg = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    cfg.update(datasets="config/datasets.tsv", results="results")
    cfg["methods"] = {"toy": {"kernel": 5}}
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (wd / "config" / "datasets.tsv").write_text(
        "name\turi\taxes\tmethod\tground_truth\tground_truth_axes\n"
        "fish_toy\t.test/data/fish_noisy.tif\tyx\ttoy\t.test/data/fish_gt.tif\tyx\n"
    )
    sm = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(wd), "--cores", "2"]

    def run(*extra: str) -> str:
        proc = subprocess.run([*sm, *extra], cwd=wd, env=plugin, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    run()
    res = wd / "results" / "fish_toy"
    meta = json.loads((res / "model" / "model.json").read_text())
    assert meta["method"] == "toy" and meta["method_settings"] == {"kernel": 5}
    metrics = json.loads((res / "metrics.json").read_text())
    assert "psnr" in json.dumps(metrics)
    assert "Nothing to be done" in run("-n")
    cfg["methods"]["toy"]["kernel"] = 3
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    planned = run("-n")
    assert "rule train:" in planned and "rule evaluate:" in planned
