"""A headless Chromium driven through chromedriver's W3C WebDriver HTTP API (standard library
only: no selenium, no websocket client).

It loads a page, returns the browser console log (every ``SEVERE`` entry is an error: failed
resources, uncaught exceptions, ``console.error``), evaluates JavaScript in the page (image
checks), and takes full-page screenshots through the DevTools ``Page.captureScreenshot``
command that chromedriver forwards.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

#: The Debian package's real binary (``/usr/bin/chromium`` is a shell wrapper around it).
CHROMIUM_CANDIDATES = (
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
)
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def find_binaries() -> tuple[str | None, str | None]:
    """``(chromium, chromedriver)`` paths, ``None`` where not installed."""
    chromium = next((p for p in CHROMIUM_CANDIDATES if os.access(p, os.X_OK)), None)
    driver = next((p for p in CHROMEDRIVER_CANDIDATES if os.access(p, os.X_OK)), None)
    return chromium, driver or shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WebDriverError(RuntimeError):
    """chromedriver answered with an error."""


class Browser:
    """One headless Chromium session (use as a context manager)."""

    def __init__(
        self, chromium: str, driver: str, profile: Path, width: int = 1400, height: int = 1000
    ):
        self.port = _free_port()
        self.log = open(profile.parent / "chromedriver.log", "w")
        self.proc = subprocess.Popen(
            [driver, f"--port={self.port}"], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self._wait_ready()
        opts = {
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
            ],
        }
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": opts,
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        self.session = value["sessionId"]

    def _wait_ready(self, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            time.sleep(0.1)
        raise WebDriverError(f"chromedriver did not start on port {self.port}")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise WebDriverError(
                f"{method} {path}: {err.read().decode(errors='replace')[:2000]}"
            ) from None
        return payload.get("value")

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def open(self, url: str) -> None:
        """Load ``url`` and wait for the page (and its images) to finish loading."""
        self._call("POST", self._s("/url"), {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments`` holds ``args``) and return its value."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def console(self) -> list[dict[str, Any]]:
        """Browser console entries since the last call (``level``, ``message``, ``source``)."""
        return self._call("POST", self._s("/se/log"), {"type": "browser"}) or []

    def cdp(self, cmd: str, params: dict[str, Any] | None = None) -> Any:
        """A Chrome DevTools protocol command (forwarded by chromedriver)."""
        return self._call(
            "POST", self._s("/goog/cdp/execute"), {"cmd": cmd, "params": params or {}}
        )

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """PNG of the page (the whole scrollable page when ``full_page``) written to ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.cdp("Page.getLayoutMetrics")["cssContentSize"]
            params |= {
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            }
        data = self.cdp("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """End the session and chromedriver (only the processes this object started)."""
        try:
            self._call("DELETE", self._s(""))
        except (OSError, WebDriverError):
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Per image: loaded and decoded (``complete`` with a natural width), its section and alt text.
IMAGE_CHECK = """
const out = [];
for (const d of document.querySelectorAll('details')) d.open = true;
for (const img of document.images) {
  let ok = img.complete && img.naturalWidth > 0 && img.naturalHeight > 0;
  if (ok) { try { await img.decode(); } catch (e) { ok = false; } }
  const sec = img.closest('section.compare');
  out.push({alt: img.alt, ok: ok, w: img.naturalWidth, h: img.naturalHeight,
            section: sec ? sec.id : null, src: img.src.slice(0, 40)});
}
return out;
"""


def check_images(browser: Browser) -> list[dict[str, Any]]:
    """Every ``<img>`` of the loaded page: whether it decoded, and which section holds it."""
    return browser._call(
        "POST",
        browser._s("/execute/async"),
        {
            "script": "const done = arguments[arguments.length - 1];"
            f"(async () => {{ {IMAGE_CHECK} }})().then(done, e => done([{{error: String(e)}}]));",
            "args": [],
        },
    )
