"""Arrays to small embedded images: greyscale / colour-mapped PNG as base64 ``<img>`` tags.

Every panel is its own ``<img>`` at native resolution (CSS scales it up with nearest-neighbour
interpolation), so the report stays small and a browser test can count panels.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from PIL import Image

__all__ = [
    "colour_png",
    "compact_png",
    "display_range",
    "grey_to_rgb",
    "img_tag",
    "mark_box",
    "mark_row",
    "png_bytes",
    "symmetric_range",
    "to_rgb",
]


def display_range(img: np.ndarray, lo_q: float = 0.5, hi_q: float = 99.7) -> tuple[float, float]:
    """Percentile display range of the finite values of ``img`` (``(0, 1)`` when empty)."""
    finite = np.asarray(img, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [lo_q, hi_q]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def symmetric_range(img: np.ndarray, k: float = 3.0) -> tuple[float, float]:
    """``±k`` standard deviations of ``img``'s finite values around zero (for residual maps)."""
    finite = np.asarray(img, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    s = float(np.std(finite)) if finite.size else 1.0
    s = s if s > 0 else 1.0
    return -k * s, k * s


def to_rgb(img: np.ndarray, vrange: tuple[float, float], cmap: str = "gray") -> np.ndarray:
    """``uint8`` image: greyscale ``(Y, X)`` for ``gray``, else ``(Y, X, 3)`` from a colormap."""
    lo, hi = vrange
    a = np.asarray(img, dtype=np.float64)
    scaled = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    scaled = np.where(np.isfinite(scaled), scaled, 0.0)
    if cmap == "gray":
        return np.round(scaled * 255).astype(np.uint8)
    from matplotlib import colormaps

    rgba = colormaps[cmap](scaled, bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG of a ``uint8`` greyscale or RGB array (maximum compression)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def img_tag(
    data: bytes, alt: str, width: int | None = None, height: int | None = None, mime: str = "png"
) -> str:
    """``<img>`` with the data embedded; ``width``/``height`` are CSS pixels."""
    style = ""
    if width:
        style += f"width:{int(width)}px;"
    if height:
        style += f"height:{int(height)}px;"
    src = f"data:image/{mime};base64,{base64.b64encode(data).decode()}"
    return f'<img alt="{html.escape(alt)}" style="{style}" src="{src}">'


def mark_box(
    rgb: np.ndarray, window: tuple[slice, slice], colour: tuple[int, int, int]
) -> np.ndarray:
    """``rgb`` with a one-pixel outline of ``window`` (``(y, x)`` slices, image coordinates)."""
    out = rgb.copy()
    ny, nx = out.shape[:2]
    y0, y1 = max(window[0].start, 0), min(window[0].stop, ny) - 1
    x0, x1 = max(window[1].start, 0), min(window[1].stop, nx) - 1
    out[y0, x0 : x1 + 1] = colour
    out[y1, x0 : x1 + 1] = colour
    out[y0 : y1 + 1, x0] = colour
    out[y0 : y1 + 1, x1] = colour
    return out


def mark_row(rgb: np.ndarray, y: int, colour: tuple[int, int, int], step: int = 2) -> np.ndarray:
    """``rgb`` with a dotted horizontal line along row ``y`` (every ``step``-th pixel)."""
    out = rgb.copy()
    if 0 <= y < out.shape[0]:
        out[y, ::step] = colour
    return out


def grey_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """A ``uint8`` greyscale image as ``(Y, X, 3)`` RGB (RGB input is returned as is)."""
    return pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)


def compact_png(data: bytes, max_colours: int = 256) -> bytes:
    """A plot PNG re-encoded with a palette when that is smaller (plots have few colours)."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except OSError:
        return data
    if img.mode not in ("RGB", "RGBA"):
        return data
    pal = img.convert("RGB").quantize(colors=max_colours, method=Image.Quantize.MEDIANCUT)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", optimize=True)
    return buf.getvalue() if buf.tell() < len(data) else data


def colour_png(img: np.ndarray, vrange: tuple[float, float], cmap: str) -> bytes:
    """PNG of ``img`` through a 256-entry colormap as a palette image (1 byte per pixel)."""
    from matplotlib import colormaps

    lut = colormaps[cmap](np.linspace(0.0, 1.0, 256), bytes=True)[:, :3]
    pal = Image.fromarray(to_rgb(img, vrange, "gray"), mode="L")
    pal.putpalette(lut.astype(np.uint8).tobytes())
    buf = io.BytesIO()
    pal.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
