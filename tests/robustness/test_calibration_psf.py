"""Bad calibration sets and PSF files through the CLI: clear error, nothing written."""

from __future__ import annotations

import numpy as np
import pytest

from denoise.cli.main import main
from denoise.io.ingest import ingest


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.poisson(50, (2, 48, 48)).astype(np.uint16)  # two channels
    np.save(tmp_path / "d.npy", data)
    ingest(str(tmp_path / "d.npy"), tmp_path / "d.ome.zarr", axes="cyx")
    return tmp_path / "d.ome.zarr"


def _run(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def test_calibration_with_fewer_channels_than_the_data(store, tmp_path, capsys):
    cal = np.random.default_rng(1).poisson(50, (12, 48, 48)).astype(np.uint16)  # one channel
    np.save(tmp_path / "cal.npy", cal)
    out = tmp_path / "nm.json"
    code, err = _run(
        ["fit-noise-model", "--kind", "histogram", "--store", str(store), "--calibration",
         str(tmp_path / "cal.npy"), "--calibration-axes", "tyx", "--out", str(out)],
        capsys,
    )
    assert code == 1 and "cal.npy: calibration has one channel; channel 1 was requested" in err
    assert not out.exists()


def test_calibration_that_is_not_a_stack(store, tmp_path, capsys):
    np.save(tmp_path / "one.npy", np.zeros((2, 48, 48), np.uint16))
    out = tmp_path / "nm.json"
    code, err = _run(
        ["fit-noise-model", "--kind", "gmm", "--store", str(store), "--calibration",
         str(tmp_path / "one.npy"), "--calibration-axes", "cyx", "--out", str(out)],
        capsys,
    )
    assert code == 1 and "needs several noisy frames" in err and not out.exists()


@pytest.mark.parametrize("kernel", [np.zeros((5, 5)), -np.ones((3, 3)), np.full((3, 3), np.nan)])
def test_psf_that_cannot_be_normalised(store, tmp_path, capsys, kernel):
    np.save(tmp_path / "psf.npy", kernel)
    model_dir = tmp_path / "model"
    code, err = _run(
        ["train", "--store", str(store), "--model-dir", str(model_dir), "--method", "deconoising",
         "--psf", str(tmp_path / "psf.npy"), "--params", '{"epochs": 1, "steps_per_epoch": 1}'],
        capsys,
    )
    assert code == 1 and "psf.npy" in err
    assert not (model_dir / "model.json").exists()
