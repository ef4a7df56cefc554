"""Fixtures of the report tests: one tiny results directory (CLI stages run in-process) and
its report, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from denoise.report.html import build_report
from denoise.settings import ReportConfig
from tests.report.tiny import SPECS, build_results

CROP = 48  #: .test/config/config.yaml report.crop


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``results/`` of the tiny run (8 rows on 4 inputs), with benchmark tables."""
    return build_results(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_report(tiny_results: Path) -> Path:
    """The report of the tiny run, ``report.html`` beside ``results/``."""
    out = tiny_results.parent / "report.html"
    build_report(tiny_results, [s.name for s in SPECS], out, ReportConfig(crop=CROP))
    return out
