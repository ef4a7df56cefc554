"""Panel rows of a comparison section: frames / planes, zoom, residuals, extra outputs,
kymographs.  Each panel is one embedded PNG at native resolution, scaled by CSS.
"""

from __future__ import annotations

import numpy as np

from denoise.report import views
from denoise.report.fmt import esc
from denoise.report.images import (
    colour_png,
    display_range,
    grey_to_rgb,
    img_tag,
    mark_box,
    mark_row,
    png_bytes,
    to_rgb,
)
from denoise.report.layout import Column, Layout

__all__ = ["extra_rows", "kymograph_rows", "main_rows", "residual_rows", "zoom_rows"]

ZOOM_COLOUR = (255, 210, 0)
LINE_COLOUR = (0, 220, 255)
RESIDUAL_CMAP = "RdBu_r"


def _img(pixels: np.ndarray | bytes, alt: str, width: float, height: float) -> str:
    """An embedded panel: ``uint8`` pixels (grey or RGB) or ready PNG bytes."""
    data = pixels if isinstance(pixels, bytes) else png_bytes(pixels)
    return img_tag(data, alt, round(width), round(height))


def _png(img: np.ndarray, vrange: tuple[float, float], cmap: str = "gray") -> bytes:
    return png_bytes(to_rgb(img, vrange)) if cmap == "gray" else colour_png(img, vrange, cmap)


def _figure(imgs: list[str], caption: str) -> str:
    return f"<figure>{''.join(imgs)}<figcaption>{esc(caption)}</figcaption></figure>"


def panel_row(title: str, cells: list[str]) -> str:
    """A titled row of panels (wraps on narrow screens)."""
    return f'<div class="prow"><div class="ptitle">{title}</div><div class="cells">{"".join(cells)}</div></div>'


def _channel(lay: Layout, c: int) -> str:
    return f"c={c}, " if len(lay.channels) > 1 else ""


def _marked(pixels: np.ndarray, lay: Layout) -> np.ndarray:
    """The input panel with the zoom window (box) and the kymograph / XZ row (dotted line)."""
    wy, wx = lay.window
    zy, zx = lay.zoom
    local = (
        slice(zy.start - wy.start, zy.stop - wy.start),
        slice(zx.start - wx.start, zx.stop - wx.start),
    )
    rgb = mark_box(grey_to_rgb(pixels), local, ZOOM_COLOUR)
    if lay.n_frames > 1 or lay.z is not None:
        rgb = mark_row(rgb, lay.line_y - wy.start, LINE_COLOUR)
    return rgb


def _xz(col: Column, lay: Layout, c: int, vrange: tuple[float, float], cmap: str) -> str:
    """The XZ section of ``col`` through the marked row, with the aspect of the pixel sizes."""
    sec = views.xz_section(col.arr, col.axes, lay.pos(c), lay.line_y, lay.window[1])
    w, h = views.xz_display_size(sec.shape[0], sec.shape[1], lay.sizes, lay.px)
    return _img(_png(sec, vrange, cmap), f"{col.label} XZ", w, h)


def _cell(col: Column, lay: Layout, c: int, t: int, first: bool) -> str:
    img = col.plane(lay.pos(c, t), lay.window)
    pix = to_rgb(img, lay.ranges[c])
    if col.kind == "input" and first:
        pix = _marked(pix, lay)
    imgs = [_img(pix, col.label, img.shape[1] * lay.px, img.shape[0] * lay.px)]
    if lay.z is not None and "z" in col.axes:
        imgs.append(_xz(col, lay, c, lay.ranges[c], "gray"))
    return _figure(imgs, col.label)


def main_rows(cols: list[Column], lay: Layout) -> list[str]:
    """One row per channel and shown frame: input, every method, ground truth (+ XZ for stacks)."""
    out = []
    for c in lay.channels:
        for i, t in enumerate(lay.frames):
            title = _channel(lay, c) + (f"frame t={t}" if "t" in lay.axes else "")
            if lay.z is not None:
                title += f"{', ' if title else ''}XY at z={lay.z}, XZ at y={lay.line_y} (below)"
            main = [col for col in cols if col.kind != "extra"]
            out.append(
                panel_row(esc(title or "crop"), [_cell(col, lay, c, t, i == 0) for col in main])
            )
    return out


def zoom_rows(cols: list[Column], lay: Layout) -> list[str]:
    """The zoom window (yellow box) of every main panel, magnified to the panel size."""
    (zy, zx), wx = lay.zoom, lay.window[1]
    scale = (wx.stop - wx.start) * lay.px / max(1, zx.stop - zx.start)
    out = []
    for c in lay.channels:
        cells = []
        for col in (col for col in cols if col.kind != "extra"):
            img = col.plane(lay.pos(c, lay.frames[0]), lay.zoom)
            cells.append(
                _figure(
                    [
                        _img(
                            to_rgb(img, lay.ranges[c]),
                            f"{col.label} zoom",
                            img.shape[1] * scale,
                            img.shape[0] * scale,
                        )
                    ],
                    col.label,
                )
            )
        title = f"{_channel(lay, c)}zoom ×{scale / lay.px:.3g}: y {zy.start}–{zy.stop - 1}, x {zx.start}–{zx.stop - 1}"
        out.append(panel_row(esc(title), cells))
    return out


def residual_rows(
    cols: list[Column], lay: Layout, ranges: dict[int, tuple[float, float]]
) -> list[str]:
    """Residual maps ``noisy − output`` of every method (red: removed brightness, blue: added)."""
    noisy, out = cols[0], []
    for c in lay.channels:
        pos = lay.pos(c, lay.frames[0])
        x = noisy.plane(pos, lay.window)
        cells = []
        for col in (col for col in cols if col.kind == "method"):
            res = views.residual(x, col.plane(pos, lay.window))
            pix = _png(res, ranges[c], RESIDUAL_CMAP)
            cells.append(
                _figure(
                    [
                        _img(
                            pix,
                            f"{col.label} residual",
                            res.shape[1] * lay.px,
                            res.shape[0] * lay.px,
                        )
                    ],
                    col.label,
                )
            )
        lo, hi = ranges[c]
        title = f"{_channel(lay, c)}residual noisy − output, range {lo:.3g} to {hi:+.3g}"
        if cells:
            out.append(panel_row(esc(title), cells))
    return out


def extra_rows(cols: list[Column], lay: Layout) -> list[str]:
    """Extra outputs (PN2V uncertainty, DecoNoising deconvolved), each with its own range."""
    extras = [col for col in cols if col.kind == "extra"]
    out = []
    for c in lay.channels if extras else []:
        cells = []
        for col in extras:
            img = col.plane(lay.pos(c, lay.frames[0]), lay.window)
            vr = display_range(img)
            cmap = "magma" if "uncertainty" in col.label else "gray"
            imgs = [
                _img(_png(img, vr, cmap), col.label, img.shape[1] * lay.px, img.shape[0] * lay.px)
            ]
            if lay.z is not None and "z" in col.axes:
                imgs.append(_xz(col, lay, c, vr, cmap))
            cells.append(_figure(imgs, f"{col.label}, range {vr[0]:.3g}–{vr[1]:.3g}"))
        out.append(panel_row(esc(f"{_channel(lay, c)}extra outputs (own display range)"), cells))
    return out


def kymograph_rows(cols: list[Column], lay: Layout) -> list[str]:
    """Time-lapses: row ``line_y`` (dotted line) of every frame stacked top to bottom (t down)."""
    if lay.n_frames < 2:
        return []
    row_h = max(lay.px, 96 / lay.n_frames)
    out = []
    for c in lay.channels:
        cells = []
        for col in (col for col in cols if col.kind != "extra" and col.has_t):
            ky = views.kymograph(col.arr, col.axes, lay.pos(c), lay.line_y, lay.window[1])
            img = _img(
                to_rgb(ky, lay.ranges[c]),
                f"{col.label} kymograph",
                ky.shape[1] * lay.px,
                ky.shape[0] * row_h,
            )
            cells.append(_figure([img], col.label))
        title = f"{_channel(lay, c)}kymograph at y={lay.line_y}: t=0 (top) to {lay.n_frames - 1} (bottom)"
        out.append(panel_row(esc(title), cells))
    return out
