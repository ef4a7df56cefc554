"""Figures for the report: before / after (/ ground truth) crops as PNG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from denoise.io import omezarr


def representative_plane(arr, axes: str) -> tuple[tuple, str]:
    """Index of a representative 2D plane (first t/c, middle z) and a label for it."""
    idx: list[int | slice] = []
    label = []
    for ax, n in zip(axes, arr.shape, strict=True):
        if ax in "tc":
            idx.append(0)
            label.append(f"{ax}=0")
        elif ax == "z":
            idx.append(n // 2)
            label.append(f"z={n // 2}")
        else:
            idx.append(slice(None))
    return tuple(idx), ", ".join(label)


def crop_window(shape: tuple[int, int], size: int) -> tuple[slice, slice]:
    """A centred ``size``×``size`` window (clipped to the image)."""
    out = []
    for n in shape:
        s = min(size, n)
        start = (n - s) // 2
        out.append(slice(start, start + s))
    return out[0], out[1]


def read_crop(store: str | Path, size: int) -> tuple[np.ndarray, str]:
    """The centred crop of the representative plane of an OME-Zarr store, as float32."""
    arr, axes = omezarr.open_image(store)
    idx, label = representative_plane(arr, axes)
    plane = np.asarray(arr[idx], dtype=np.float32)
    wy, wx = crop_window(plane.shape, size)
    return plane[wy, wx], label


def png_panel(
    images: list[tuple[str, np.ndarray]], vrange: tuple[float, float] | None = None
) -> bytes:
    """Side-by-side greyscale panels sharing one display range (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if vrange is None:
        ref = images[0][1]
        finite = ref[np.isfinite(ref)]
        vrange = (
            (float(np.percentile(finite, 0.5)), float(np.percentile(finite, 99.7)))
            if finite.size
            else (0.0, 1.0)
        )
    fig, axs = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.4), squeeze=False)
    for ax, (title, img) in zip(axs[0], images, strict=True):
        ax.imshow(img, cmap="gray", vmin=vrange[0], vmax=vrange[1], interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def read_gt_crop(uri: str, axes: str, size: int) -> np.ndarray:
    """The same centred crop of a ground-truth image (any format ``open_input`` reads)."""
    from denoise.io.axes import canonical_order, transpose_to_canonical
    from denoise.io.readers import open_input

    img = open_input(uri, axes)
    data = img.data.transpose(transpose_to_canonical(img.axes))
    idx, _ = representative_plane(data, canonical_order(img.axes))
    plane = np.asarray(data[idx], dtype=np.float32)
    wy, wx = crop_window(plane.shape, size)
    return plane[wy, wx]
