"""The default of an empty ``method`` cell: chosen from the input's axes and size (issue 19)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from denoise.config import load_workflow_config, read_dataset_sheet
from denoise.methods.auto import AutoMethodConfig, choose_method
from denoise.settings import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "data"


@pytest.mark.parametrize(
    ("axes", "shape", "method", "why"),
    [
        ("tyx", (4, 512, 512), "spatiotemporal", "time-lapse (4 frames)"),
        ("tczyx", (12, 2, 5, 64, 64), "spatiotemporal", "time-lapse (12 frames)"),
        ("tyx", (1, 512, 512), "bm3d_vst", "single image or stack"),
        ("yx", (512, 512), "bm3d_vst", "single image or stack (0.26 MPix)"),
        ("czyx", (2, 60, 512, 512), "bm3d_vst", "single image or stack (31.46 MPix)"),
        ("zyx", (300, 512, 512), "n2v", "79 MPix, above auto_method.large_mpix = 64"),
    ],
)
def test_rules(axes, shape, method, why):
    choice = choose_method(axes, shape, AutoMethodConfig())
    assert choice.method == method and why in choice.reason


def test_settings_switch_each_rule():
    cfg = AutoMethodConfig(single_image="n2v", time_lapse="window_bm3d_vst", large_mpix=0.1)
    assert choose_method("tyx", (3, 64, 64), cfg).method == "window_bm3d_vst"
    assert choose_method("yx", (256, 256), cfg).method == "n2v"  # 0.07 MPix <= 0.1
    cfg = AutoMethodConfig(large_image="gaussian", large_mpix=0.1)
    assert choose_method("yx", (512, 512), cfg).method == "gaussian"
    # a group shares one trained model: a classical single-image choice becomes large_image
    assert choose_method("yx", (64, 64), AutoMethodConfig(), group="g").method == "n2v"


def test_unknown_method_in_settings_is_named():
    with pytest.raises(ConfigError, match=r"auto_method\.single_image"):
        load_workflow_config({"auto_method": {"single_image": "bm4d"}})


def _sheet(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "datasets.tsv"
    p.write_text(text)
    return p


def test_sheet_empty_cell_chooses_by_the_input(tmp_path):
    """Real inputs: the demo's FMD fish crop, its BPAE time-lapse PNG series, a 3D stack."""
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 32, 32), np.uint16), photometric="minisblack")
    sheet = _sheet(
        tmp_path,
        "name\turi\taxes\tmethod\tgroup\n"
        f"fish\t{DEMO / 'fish_noisy.tif'}\tyx\t\t\n"
        f"tl\t{DEMO / 'timelapse' / 'frame_*.png'}\ttyx\tauto\t\n"
        f"stack\t{stack}\tzyx\t\t\n"
        f"named\t{DEMO / 'fish_noisy.tif'}\tyx\tgaussian\t\n"
        f"g1\t{DEMO / 'fish_noisy.tif'}\tyx\t\tg\n"
        f"g2\t{DEMO / 'fish_noisy.tif'}\tyx\t\tg\n",
    )
    rows = {r.name: r for r in read_dataset_sheet(sheet)}
    assert rows["fish"].method == "bm3d_vst" and rows["fish"].chosen_by.startswith("auto:")
    assert rows["tl"].method == "spatiotemporal" and "frames" in rows["tl"].needs
    assert rows["stack"].method == "bm3d_vst"
    assert rows["named"].method == "gaussian" and rows["named"].chosen_by == ""
    assert rows["g1"].method == rows["g2"].method == "n2v"
    cfg = AutoMethodConfig(single_image="noise2fast")
    assert {r.name: r.method for r in read_dataset_sheet(sheet, cfg)}["fish"] == "noise2fast"


def test_sheet_auto_off_or_unreadable_input_is_named(tmp_path):
    sheet = _sheet(tmp_path, f"name\turi\taxes\nfish\t{DEMO / 'fish_noisy.tif'}\tyx\n")
    with pytest.raises(ConfigError, match=r"row 1 \(fish\): key 'method': the cell is empty"):
        read_dataset_sheet(sheet, AutoMethodConfig(enabled=False))
    sheet = _sheet(tmp_path, f"name\turi\taxes\nfish\t{tmp_path / 'nope.tif'}\tyx\n")
    with pytest.raises(ConfigError, match=r"row 1 \(fish\): key 'uri': .*nope.tif.*not found"):
        read_dataset_sheet(sheet)
