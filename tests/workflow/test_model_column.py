"""Train once, predict many: the sheet's ``model`` column and ``denoise apply`` (issue 20).

One tiny workflow run (the `.test` settings, one n2v row) trains a model and predicts with it;
that model, named in a second run's ``model`` column or given to ``denoise apply``, must give
bit-identical output; a bad ``model`` stops the run before any job, naming the row and key.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from denoise.cli.main import main as cli
from tests.workflow.test_workflow import _sm, _workdir

HEADER = "name\turi\taxes\tmethod\tmodel\n"
FISH = ".test/data/fish_noisy.tif"
TARGET = "results/fish/predict.json"


def _array(store: Path) -> np.ndarray:
    from denoise.io import omezarr

    return omezarr.open_image(store)[0][:]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    """A first run that trains the fish row's n2v model and predicts inside the run."""
    wd = _workdir(tmp_path_factory.mktemp("first"), sheet=HEADER + f"fish\t{FISH}\tyx\tn2v\t\n")
    _sm(wd, TARGET)
    return wd


def test_model_column_is_bit_identical(first_run, tmp_path):
    model = first_run / "results" / "fish" / "model"
    wd = _workdir(tmp_path, sheet=HEADER + f"fish\t{FISH}\tyx\tn2v\t{model}\n")
    planned = _sm(wd, "-n", TARGET).stdout
    assert "rule train" not in planned and "rule predict" in planned
    _sm(wd, TARGET)
    assert not (wd / "results" / "fish" / "model").exists()
    ref = _array(first_run / "results" / "fish" / "denoised.ome.zarr")
    got = _array(wd / "results" / "fish" / "denoised.ome.zarr")
    assert np.array_equal(ref, got)
    sha = json.loads((model / "model.json").read_text())["sha256"]
    info = json.loads((wd / "results" / "fish" / "predict.json").read_text())
    assert info["model"] == {"path": str(model.resolve()), "sha256": sha}
    import zarr

    attrs = dict(zarr.open_group(str(wd / "results" / "fish" / "denoised.ome.zarr")).attrs)
    assert f'"sha256": "{sha}"' in json.dumps(attrs) and str(model.resolve()) in json.dumps(attrs)


def test_apply_is_bit_identical_and_warns_off_range(first_run, tmp_path, capsys, caplog):
    import tifffile

    model = first_run / "results" / "fish" / "model"
    out = tmp_path / "out"
    args = ["apply", "--model", str(model), "--input", str(first_run / FISH), "--axes", "yx"]
    # the .test config's ingest chunks and predict tile, as in the first run
    tiny = [
        "--ingest-params",
        '{"chunk_yx": 32, "chunk_z": 8}',
        "--params",
        '{"tile": 64, "tile_z": 16}',
    ]
    assert cli([*args, "--output-dir", str(out), *tiny]) == 0
    ref = _array(first_run / "results" / "fish" / "denoised.ome.zarr")
    assert np.array_equal(ref, _array(out / "denoised.ome.zarr"))
    assert "training std" not in caplog.text
    # 50 times brighter: far outside the training statistics -> a warning, still a result
    bright = tmp_path / "bright.tif"
    tifffile.imwrite(bright, tifffile.imread(first_run / FISH).astype(np.float32) * 50)
    args[4] = str(bright)
    assert cli([*args, "--output-dir", str(tmp_path / "out2")]) == 0
    assert "lies 28.2 training std from the model's training mean" in caplog.text
    # a method other than the model's is refused before anything is written
    assert cli([*args, "--output-dir", str(tmp_path / "out3"), "--method", "pn2v"]) == 2
    assert "not 'pn2v'" in capsys.readouterr().err and not (tmp_path / "out3").exists()


def test_bad_model_stops_before_any_job(first_run, tmp_path):
    model = first_run / "results" / "fish" / "model"
    fake3d = tmp_path / "model3d"
    shutil.copytree(model, fake3d)
    meta = json.loads((fake3d / "model.json").read_text())
    (fake3d / "model.json").write_text(json.dumps({**meta, "ndim": 3}))
    sheet = (
        HEADER
        + f"missing\t{FISH}\tyx\tn2v\t{tmp_path / 'nope'}\n"
        + f"three_d\t{FISH}\tyx\tn2v\t{fake3d}\n"
        + f"other_method\t{FISH}\tyx\tn2v2\t{model}\n"
        + f"fine\t{FISH}\tyx\tn2v\t{model}\n"
    )
    wd = _workdir(tmp_path / "b", sheet=sheet)
    proc = _sm(wd, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "row 1 (missing): key 'model': model directory" in out
    assert "row 2 (three_d): key 'model': the model in" in out and "is 3D" in out
    assert "row 3 (other_method): key 'model'" in out and "method 'n2v', not 'n2v2'" in out
    assert "row 4 (fine)" not in out
    assert not (wd / "results").exists()
