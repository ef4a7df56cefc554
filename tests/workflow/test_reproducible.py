"""Two complete runs of the same config give bit-identical denoised stores and metrics (CPU)."""

from __future__ import annotations

import json

import numpy as np

from tests.workflow.test_workflow import _sm, _workdir


def test_two_runs_bit_identical(tmp_path):
    from denoise.io import omezarr

    sheet = (
        "name\turi\taxes\tmethod\tground_truth\tground_truth_axes\n"
        "fish\t.test/data/fish_noisy.tif\tyx\tn2v\t.test/data/fish_gt.tif\tyx\n"
    )
    dirs = [_workdir(tmp_path / f"run{i}", sheet=sheet) for i in range(2)]
    for wd in dirs:
        _sm(wd)
    a, b = (omezarr.open_image(wd / "results" / "fish" / "denoised.ome.zarr")[0][:] for wd in dirs)
    assert np.array_equal(a, b, equal_nan=True)
    ma, mb = (json.loads((wd / "results" / "fish" / "metrics.json").read_text()) for wd in dirs)
    assert ma["summary"] == mb["summary"]
    wa, wb = ((wd / "results" / "fish" / "model" / "model.json").read_text() for wd in dirs)
    assert json.loads(wa)["sha256"] == json.loads(wb)["sha256"]
