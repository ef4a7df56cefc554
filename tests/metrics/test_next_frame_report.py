"""The report shows a next-frame score withheld by the motion check, and does not rank by it."""

from __future__ import annotations

import json
from pathlib import Path

from denoise.config import ReportConfig
from denoise.report.html import dataset_section
from denoise.report.rows import Row, ranking
from denoise.report.tables import SCORE_NOTES, next_frame_cell, ranking_block

REASON = "consecutive raw frames differ by 2.31× what their noise explains (> 1.1): moves"


def _nr(score: float, valid: bool | None) -> dict:
    nf = {"score": score, "valid": valid, "reason": None if valid is not False else REASON,
          "motion_ratio": 2.31 if valid is False else 1.02}
    return {"next_frame_mse": None if valid is False else score, "next_frame": nf}


def _row(name: str, nr: dict, psnr: float | None = None) -> Row:
    metrics: dict = {"no_reference": {"denoised": nr}}
    if psnr is not None:
        metrics["summary"] = {"denoised": {"psnr": psnr}}
    return Row(name=name, dir=Path(name), ingest={"source": {"uri": "tl"}},
               predict={"method": name}, metrics=metrics)


def test_withheld_score_is_flagged_and_not_ranked(tmp_path: Path) -> None:
    moving = [_row("st", _nr(40.0, False), 30.0), _row("n2v", _nr(50.0, False), 31.0)]
    key, ranked = ranking(moving)
    assert key == "psnr_moving" and [r.name for r, _ in ranked] == ["n2v", "st"]
    block = ranking_block(moving)
    assert SCORE_NOTES["psnr_moving"] in block.replace("&#x27;", "'")
    assert "invalid: motion (2.31× noise)" in block and "<td>40</td>" not in block
    assert ranking([_row("st", _nr(40.0, False)), _row("n2v", _nr(50.0, False))]) == ("moving", [])
    # valid scores rank, lowest first, and are shown as numbers
    still = [_row("st", _nr(40.0, True)), _row("n2v", _nr(50.0, True))]
    key, ranked = ranking(still)
    assert key == "next_frame_mse" and [r.name for r, _ in ranked] == ["st", "n2v"]
    assert next_frame_cell(still[0].metrics["no_reference"]["denoised"]) == "40"
    # the row's details say why the score is withheld
    d = tmp_path / "ds"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({"images": [], "no_reference": {"denoised": _nr(40.0, False)}}))
    page = dataset_section(tmp_path, "ds", ReportConfig())
    assert "Next-frame score withheld" in page and "2.31× what their noise explains" in page
