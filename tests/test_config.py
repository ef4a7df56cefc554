"""Config and dataset-sheet validation: unknown keys and bad values name the key and row."""

from __future__ import annotations

import json

import pytest
import yaml

from denoise.cli.schemas import SCHEMA_DIR, render
from denoise.config import ConfigError, WorkflowConfig, load_workflow_config, read_dataset_sheet
from denoise.io.sheet_checks import check_sheet_inputs
from tests.conftest import REPO


def test_default_config_valid():
    data = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = load_workflow_config(data)
    assert isinstance(cfg, WorkflowConfig) and cfg.seed == 42


def test_unknown_key_named():
    with pytest.raises(ConfigError, match=r"unknown key 'train\.epochz'"):
        load_workflow_config({"train": {"epochz": 3}})


def test_bad_value_named():
    with pytest.raises(ConfigError, match=r"key 'predict\.tile'"):
        load_workflow_config({"predict": {"tile": 3}})


def test_schema_files_match_models():
    for name, text in render().items():
        assert (REPO / SCHEMA_DIR / name).read_text() == text, f"regenerate {name}: python -m denoise.cli.schemas"
    json.loads(text)


def _sheet(tmp_path, rows):
    p = tmp_path / "s.tsv"
    p.write_text("name\turi\taxes\tmethod\tground_truth\tground_truth_axes\n" + "\n".join("\t".join(r) for r in rows) + "\n")
    return p


def test_sheet_unknown_method_and_axis(tmp_path):
    p = _sheet(tmp_path, [("a", "x.tif", "yx", "n3v", "", ""), ("b", "y.tif", "tqx", "n2v", "", "")])
    with pytest.raises(ConfigError) as e:
        read_dataset_sheet(p)
    msg = str(e.value)
    assert "row 1 (a): key 'method'" in msg and "row 2 (b): key 'axes'" in msg and "'q'" in msg


def test_sheet_missing_file_and_axes_mismatch(tmp_path):
    fish = REPO / "demo" / "data" / "fish_noisy.tif"
    p = _sheet(tmp_path, [("a", str(tmp_path / "missing.tif"), "yx", "n2v", "", ""), ("b", str(fish), "tyx", "n2v", "", "")])
    rows = read_dataset_sheet(p)
    with pytest.raises(ConfigError) as e:
        check_sheet_inputs(rows, p)
    msg = str(e.value)
    assert "row 1 (a): key 'uri'" in msg and "not found" in msg
    assert "row 2 (b): key 'uri'" in msg and "3 letters but the image has 2 dimensions" in msg


def test_sheet_duplicate_names(tmp_path):
    p = _sheet(tmp_path, [("a", "x.tif", "yx", "n2v", "", ""), ("a", "y.tif", "yx", "n2v", "", "")])
    with pytest.raises(ConfigError, match="duplicate"):
        read_dataset_sheet(p)


def test_pn2v_without_calibration_is_advised_against(tmp_path, caplog):
    """Issue 19: the sheet check says why uncalibrated PN2V is a poor choice, and what to give."""
    fish = REPO / "demo" / "data" / "fish_noisy.tif"
    p = tmp_path / "s.tsv"
    p.write_text(
        "name\turi\taxes\tmethod\tnoise_model\tcalibration\n"
        f"a\t{fish}\tyx\tpn2v\t\t\n"
        f"b\t{fish}\tyx\tpn2v\tgmm_bootstrap\t\n"
        f"c\t{fish}\tyx\tpn2v\thistogram\t{fish}\n"
        f"d\t{fish}\tyx\tn2v\t\t\n"
    )
    with caplog.at_level("WARNING", logger="denoise.io.sheet_checks"):
        check_sheet_inputs(read_dataset_sheet(p), p)
    advised = [r.getMessage() for r in caplog.records]
    assert len(advised) == 2
    assert "row 1 (a)" in advised[0] and "'poisson_gaussian'" in advised[0]
    assert "row 2 (b)" in advised[1] and "calibration" in advised[1] and "bm3d_vst" in advised[1]
