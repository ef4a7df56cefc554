"""What a comparison section shows of one input: its columns (input, methods, ground truth,
extra outputs) and the planes, windows and display ranges they share.

Every panel of one input uses the same crop, zoom window and display range (per channel), so
differences between panels are differences between the methods.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from denoise.report import views
from denoise.report.images import display_range, symmetric_range
from denoise.report.rows import Row

log = logging.getLogger(__name__)

__all__ = ["Column", "Layout", "build_layout", "columns_of", "main_ranges", "residual_ranges"]

#: Percentiles of the pooled main panels that give one input's display range.
PERCENTILES = (0.5, 99.7)


@dataclass
class Column:
    """One image of a comparison: the noisy input, a method's output or the ground truth."""

    label: str
    arr: Any
    axes: str
    kind: str  #: ``input``, ``method``, ``gt`` or ``extra``
    row: Row | None = None
    path: Path | None = None

    def plane(self, pos: views.Plane, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """One (cropped) ``y x`` plane at ``pos``; axes this image lacks are ignored."""
        return views.plane(self.arr, self.axes, pos, window)

    @property
    def has_t(self) -> bool:
        """Whether this image has a time axis of its own (a 2D ground truth has none)."""
        return "t" in self.axes


@dataclass
class Layout:
    """Planes, windows and scale shared by every panel of one input."""

    axes: str
    shape: tuple[int, ...]
    window: tuple[slice, slice]
    zoom: tuple[slice, slice]
    line_y: int  #: image row of the kymograph and the XZ section
    frames: list[int]
    channels: list[int]
    z: int | None
    sizes: dict[str, float]
    px: float  #: CSS pixels per image pixel of the main panels
    ranges: dict[int, tuple[float, float]] = field(default_factory=dict)

    def pos(self, c: int, t: int = 0) -> views.Plane:
        """The plane position of channel ``c``, frame ``t`` (middle z for stacks)."""
        return {"c": c, "t": t, **({"z": self.z} if self.z is not None else {})}

    @property
    def n_frames(self) -> int:
        """Number of frames of the input (1 without a time axis)."""
        return self.shape[self.axes.index("t")] if "t" in self.axes else 1


def _resolve(uri: str, results: Path) -> str | None:
    for cand in (Path(uri), results.parent / uri):
        if cand.exists() or any(ch in uri for ch in "*?["):
            return str(cand)
    return None


def _ground_truth(rows: list[Row], results: Path) -> Column | None:
    for row in rows:
        uri = row.metrics.get("gt") or (row.metrics.get("ground_truth") or {}).get("uri")
        found = _resolve(str(uri), results) if uri else None
        if found is None:
            continue
        try:
            arr, axes = views.open_ground_truth(found, str(row.metrics.get("gt_axes") or ""))
        except (OSError, ValueError) as exc:
            log.warning("ground truth %s unreadable (%s)", uri, exc)
            continue
        return Column("ground truth", arr, axes, "gt")
    return None


def columns_of(rows: list[Row], results: Path) -> list[Column]:
    """Input, each row's main output, the ground truth, then the extra outputs (in that order)."""
    cols: list[Column] = []
    raw = next((r.raw_store for r in rows if r.raw_store is not None), None)
    if raw is not None:
        arr, axes = views.open_store(raw)
        cols.append(Column("noisy input", arr, axes, "input", path=raw))
    for row in rows:
        if "denoised" in row.outputs:
            arr, axes = views.open_store(row.outputs["denoised"])
            cols.append(Column(f"{row.method} ({row.name})", arr, axes, "method", row))
    gt = _ground_truth(rows, results)
    if gt is not None:
        cols.append(gt)
    for row in rows:
        for name, store in row.outputs.items():
            if name != "denoised":
                arr, axes = views.open_store(store)
                cols.append(Column(f"{row.method} {name} ({row.name})", arr, axes, "extra", row))
    return cols


def build_layout(cols: list[Column], crop: int, panel_px: int = 192) -> Layout:
    """Crop, zoom window and kymograph / XZ row (on the brightest structure), planes, scale."""
    ref = cols[0]
    axes, shape = ref.axes, tuple(int(n) for n in ref.arr.shape)
    window = views.crop_window(shape, crop)
    z = shape[axes.index("z")] // 2 if "z" in axes else None
    lay = Layout(
        axes=axes,
        shape=shape,
        window=window,
        zoom=window,
        line_y=(window[0].start + window[0].stop) // 2,
        frames=views.frame_indices(shape[axes.index("t")]) if "t" in axes else [0],
        channels=list(range(shape[axes.index("c")])) if "c" in axes else [0],
        z=z,
        sizes=_sizes(ref),
        px=max(1.0, panel_px / max(1, window[1].stop - window[1].start)),
    )
    size = max(16, (window[1].stop - window[1].start) // 4)
    by, bx = views.bright_point(_focus_image(cols, lay), margin=size // 2)
    centre = (by + window[0].start, bx + window[1].start)
    lay.zoom = views.window_around(centre, size, shape)
    lay.line_y = centre[0]
    return lay


def _focus_image(cols: list[Column], lay: Layout) -> np.ndarray:
    """Where to zoom: the ground truth, else the mean of the methods' outputs (each scaled to
    its own 0.5–99.7 percentiles, so one flat output does not hide the others' structure)."""
    pos = lay.pos(lay.channels[0], lay.frames[0])
    gt = [c for c in cols if c.kind == "gt"]
    pick = gt or [c for c in cols if c.kind == "method"] or cols[:1]
    imgs = []
    for col in pick:
        img = col.plane(pos, lay.window).astype(np.float64)
        lo, hi = display_range(img, *PERCENTILES)
        imgs.append(np.clip((img - lo) / (hi - lo), 0, 1))
    return np.mean(imgs, axis=0)


def _sizes(col: Column) -> dict[str, float]:
    try:
        return views.pixel_sizes(col.path) if col.path is not None else {}
    except (OSError, ValueError, KeyError):
        return {}


def main_ranges(cols: list[Column], lay: Layout) -> dict[int, tuple[float, float]]:
    """One display range per channel: percentiles of every main panel of the input pooled."""
    out = {}
    for c in lay.channels:
        crops = [
            col.plane(lay.pos(c, t), lay.window).ravel()
            for col in cols
            if col.kind != "extra"
            for t in (lay.frames if col.has_t else lay.frames[:1])
        ]
        out[c] = display_range(np.concatenate(crops), *PERCENTILES)
    return out


def residual_ranges(cols: list[Column], lay: Layout) -> dict[int, tuple[float, float]]:
    """One symmetric range per channel for the residual maps of every method (±3 SD pooled)."""
    noisy = cols[0]
    out = {}
    for c in lay.channels:
        pos = lay.pos(c, lay.frames[0])
        res = [
            views.residual(noisy.plane(pos, lay.window), col.plane(pos, lay.window)).ravel()
            for col in cols
            if col.kind == "method"
        ]
        out[c] = symmetric_range(np.concatenate(res)) if res else (-1.0, 1.0)
    return out
