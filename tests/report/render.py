"""Render a workflow's ``report.html`` in headless Chromium and check it against its sheet.

Shared by the tiny workflow's end-to-end test and the demo's report test: every image decodes,
the panel count of each comparison section is the one the sheet calls for (counted by
:func:`tests.report.test_browser.expected_panels`, not by the report code), no console errors,
and a full-page screenshot.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tests.report.browser import Browser, check_images, find_binaries
from tests.report.test_browser import IN_CI, expected_panels, require_browser
from tests.report.tiny import Spec


def sheet_specs(sheet: Path) -> tuple[Spec, ...]:
    """The rows of a dataset sheet as :class:`Spec` (the input named by its file name)."""
    with sheet.open() as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return tuple(
        Spec(
            r["name"],
            Path(r["uri"]).name,
            r["axes"],
            r["method"],
            r.get("ground_truth") or "",
            r.get("ground_truth_axes") or "",
        )
        for r in rows
    )


def assert_report_renders(
    report: Path, specs: tuple[Spec, ...], workdir: Path, frames: dict[str, int] | None = None
) -> Path:
    """Open ``report`` in Chromium, assert what the module docstring says; the screenshot path.

    ``frames``: frames shown per time-lapse input file name (first / middle / last: 3 from three
    frames on), as :func:`expected_panels` takes it.
    """
    chromium, driver = find_binaries()
    require_browser(chromium, driver, IN_CI)  # fails in CI, skips elsewhere when missing
    workdir.mkdir(parents=True, exist_ok=True)
    with Browser(chromium, driver, workdir / "profile") as browser:
        browser.open(report.resolve().as_uri())
        images = check_images(browser)
        broken = [i for i in images if not i["ok"]]
        assert images and not broken, broken[:3]
        per_section: dict[str, int] = {}
        for i in images:
            if i["section"]:
                per_section[i["section"]] = per_section.get(i["section"], 0) + 1
        assert per_section == expected_panels(specs, frames)
        errors = [e["message"] for e in browser.console() if e.get("level") in ("SEVERE", "ERROR")]
        assert errors == []
        shot = browser.screenshot(workdir / "report.png")
        assert shot.stat().st_size > 50_000
        return shot
