"""Numbers rounded to what they mean, and small HTML table helpers."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["esc", "num", "seconds", "table"]


def esc(v: Any) -> str:
    """HTML-escaped ``str(v)``."""
    return html.escape(str(v))


def num(v: Any, kind: str = "sig") -> str:
    """``v`` rounded for reading: ``db`` 2 decimals, ``ssim`` 3, ``gain`` signed, else 3 sig. figs."""
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return "–"
    if kind == "db":
        return f"{v:.2f}"
    if kind == "gain":
        return f"{v:+.2f}"
    if kind == "ssim":
        return f"{v:.3f}"
    if kind == "ratio":
        return f"{v:.2f}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def seconds(v: Any) -> str:
    """Wall time: ``7 s``, ``1 min 23 s``; ``–`` when unknown."""
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "–"
    if v < 10:
        return f"{v:.1f} s"
    if v < 60:
        return f"{v:.0f} s"
    m, s = divmod(round(v), 60)
    return f"{m} min {s:02d} s"


def table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """An HTML table; cells are inserted as given (escape them first)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><tr>{th}</tr>{body}</table>"
