"""The HTML report states the next-frame score of each output and which is lowest."""

from __future__ import annotations

import json

from denoise.config import ReportConfig
from denoise.report.html import dataset_section


def test_report_names_the_output_with_the_lowest_next_frame_score(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    noref = {
        "denoised": {"next_frame_mse": 52.5, "residual_var": 30.0},
        "gaussian": {"next_frame_mse": 49.25, "residual_var": 28.0},
    }
    (d / "metrics.json").write_text(json.dumps({"images": [], "no_reference": noref}))
    page = dataset_section(tmp_path, "ds", ReportConfig())
    assert "Next-frame score" in page
    assert "denoised 52.5, gaussian 49.25; lowest: <b>gaussian</b>" in page
    # Without frames (no next-frame figure) the sentence is left out.
    noref = {"denoised": {"next_frame_mse": None, "residual_var": 30.0}}
    (d / "metrics.json").write_text(json.dumps({"images": [], "no_reference": noref}))
    assert "Next-frame score" not in dataset_section(tmp_path, "ds", ReportConfig())
