"""The report of a tiny run, rendered in a real headless Chromium: no console errors, every
image decodes, each comparison section has the panels its input calls for; a screenshot is
saved.  With ``CI=true`` a missing Chromium fails the test instead of skipping it.

Set ``REPORT_SCREENSHOT`` to a path to keep a copy of the full-page screenshot.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.report.browser import Browser, check_images, find_binaries
from tests.report.tiny import SPECS, Spec

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_browser(chromium: str | None, driver: str | None, in_ci: bool) -> None:
    """Fail (in CI) or skip (elsewhere, with the reason) when Chromium or its driver is missing."""
    if chromium is None or driver is None:
        msg = "headless Chromium needs the Debian packages chromium and chromium-driver"
        if in_ci:
            pytest.fail(f"{msg}, missing in CI (CI=true)")
        pytest.skip(f"{msg} (apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium, driver = find_binaries()
    require_browser(chromium, driver, IN_CI)
    with Browser(chromium, driver, tmp_path_factory.mktemp("chromium") / "profile") as b:
        yield b


def test_missing_chromium_fails_in_ci_and_skips_elsewhere():
    with pytest.raises(pytest.fail.Exception, match="missing in CI"):
        require_browser(None, "/usr/bin/chromedriver", in_ci=True)
    with pytest.raises(pytest.skip.Exception, match="apt-get install"):
        require_browser("/usr/bin/chromium", None, in_ci=False)
    require_browser("/usr/bin/chromium", "/usr/bin/chromedriver", in_ci=True)  # no exception


def _errors(browser: Browser) -> list[str]:
    return [e["message"] for e in browser.console() if e.get("level") in ("SEVERE", "ERROR")]


def expected_panels(
    specs: tuple[Spec, ...], frames: dict[str, int] | None = None
) -> dict[str, int]:
    """Images per comparison section, counted from the sheet (not from the report code).

    Per channel: every shown frame (first / middle / last of a time-lapse, else one) has the
    input, each method and the ground truth, each with an XZ section below for stacks; one
    zoom row of the same; one residual per method; each extra output (XY, + XZ for stacks); for
    time-lapses one kymograph per image with a time axis (a 2D ground truth has none).
    """
    extras = {"pn2v": 1, "deconoising": 1}
    channels = {"two_channel.npy": 2}
    frames = {"tl_*.png": 3} if frames is None else frames  # frames shown per time-lapse input
    groups: dict[str, list[Spec]] = {}
    for s in specs:
        groups.setdefault(s.uri, []).append(s)
    out = {}
    for i, (uri, rows) in enumerate(groups.items()):
        m, gt = len(rows), int(any(s.gt for s in rows))
        stack = int("z" in rows[0].axes)
        main = 1 + m + gt
        n = frames.get(uri, 1) * main * (1 + stack) + main + m
        n += sum(extras.get(s.method, 0) for s in rows) * (1 + stack)
        if "t" in rows[0].axes:
            n += 1 + m
        out[f"input-{i}"] = n * channels.get(uri, 1)
    return out


def test_expected_panels_of_the_tiny_sheet():
    # fish: 3 methods + input + GT (5), zoom 5, 3 residuals, PN2V uncertainty.
    # time-lapse: 3 frames × 4, zoom 4, 2 residuals, 3 kymographs.  Stack: 3 cells × (XY + XZ),
    # zoom 3, 2 residuals, deconvolved XY + XZ.  Two channels × (2 + 2 zoom + 1 residual).
    assert expected_panels(SPECS) == {"input-0": 14, "input-1": 21, "input-2": 13, "input-3": 10}


def test_report_in_chromium(browser, tiny_report, tmp_path):
    browser.open(tiny_report.resolve().as_uri())
    images = check_images(browser)
    assert images and not any("error" in i for i in images), images[:1]
    broken = [i for i in images if not i["ok"]]
    assert not broken, f"images that did not decode: {broken}"
    per_section = Counter(i["section"] for i in images if i["section"])
    assert dict(per_section) == expected_panels(SPECS)
    # Outside the comparisons: a noise-model plot per row, a training curve per trained row, the
    # PN2V noise model.
    trained = sum(s.method in ("n2v", "n2v2", "pn2v", "deconoising") for s in SPECS)
    assert sum(1 for i in images if i["section"] is None) == len(SPECS) + trained + 1
    assert min(i["w"] for i in images) > 0
    title = browser.execute("return document.title")
    assert title == "denoise report"
    n_rows = browser.execute("return document.querySelectorAll('table.overview tr').length")
    assert n_rows == len(SPECS) + 1
    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.stat().st_size > 50_000
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["REPORT_SCREENSHOT"])
    assert _errors(browser) == []


def test_checker_catches_broken_images_and_console_errors(browser, tmp_path):
    """Negative control: the same checks flag a corrupt image, a missing one and a script error."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>bad</title></head><body>'
        '<section class="compare" id="s"><img alt="corrupt" src="data:image/png;base64,iVBORw0KGgoAAAA">'
        f'<img alt="missing" src="{(tmp_path / "nope.png").as_uri()}"></section>'
        "<script>console.error('boom'); undefined_function();</script></body></html>"
    )
    browser.open(page.as_uri())
    images = check_images(browser)
    assert [(i["alt"], i["ok"]) for i in images] == [("corrupt", False), ("missing", False)]
    errors = " ".join(_errors(browser))
    assert "boom" in errors and "undefined_function" in errors and "nope.png" in errors


def test_report_is_self_contained_and_readable(tiny_report: Path):
    text = tiny_report.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert text.count('src="data:image/png;base64,') == text.count("<img")
    # JSON only in the collapsed provenance blocks.
    body = text.split("<details>")[0]
    assert '": {' not in body and '"next_frame_mse"' not in body
    assert text.count('<section class="compare"') == 4
    assert text.count("<details><summary>Provenance") == len(SPECS)
