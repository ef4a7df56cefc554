"""Compare the raw input and each denoised output with a ground truth, image by image.

An *image* is one ``y x`` plane per ``t``/``c`` index, or one ``z y x`` volume per ``t``/``c``
when the data have a Z axis (PSNR over the volume with the volume's GT range, SSIM averaged over
its planes).  The ground truth may have fewer axes than the data and is then broadcast: a ``yx``
GT serves every frame of a ``tyx`` time-lapse; a GT axis of length 1 is broadcast too.
Planes are read one at a time, so memory stays at a few planes whatever the data size.
A progress bar (:mod:`denoise.progress`) counts the images scored (and, for the
no-reference figures, the planes read) against their total.

Metrics per image and source (:mod:`denoise.metrics.image`): ``mse``, ``psnr`` (range of the
image's GT), ``si_psnr`` (after the least-squares fit ``a·x + b``), ``ssim`` and, for 8-bit GT,
``psnr_255``.  The summary averages each metric over images (the papers' convention).
Output is deterministic (no timestamps); non-finite values (a perfect match) are written as null.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from denoise.io.omezarr import open_image
from denoise.io.readers import open_input
from denoise.metrics.image import psnr_from_mse, ssim
from denoise.metrics.next_frame import WindowPredictor, next_frame_figures
from denoise.progress import progress

log = logging.getLogger(__name__)

METRICS = ("psnr", "ssim", "si_psnr", "mse", "psnr_255")


class _Accumulator:
    """Running sums for MSE and the affine-fit PSNR of one source over one image."""

    def __init__(self) -> None:
        self.n = 0
        self.sse = 0.0
        self.sx = self.sg = self.sxx = self.sxg = self.sgg = 0.0
        self.shift_x: float | None = None
        self.shift_g = 0.0
        self.ssim: list[float] = []

    def add(self, g: np.ndarray, x: np.ndarray) -> None:
        if (
            self.shift_x is None
        ):  # shifting by the first plane's means keeps the sums well conditioned
            self.shift_x, self.shift_g = float(x.mean()), float(g.mean())
        self.sse += float(np.sum((g - x) ** 2))
        xs, gs = x - self.shift_x, g - self.shift_g
        self.n += x.size
        self.sx += float(xs.sum())
        self.sg += float(gs.sum())
        self.sxx += float(np.dot(xs.ravel(), xs.ravel()))
        self.sxg += float(np.dot(xs.ravel(), gs.ravel()))
        self.sgg += float(np.dot(gs.ravel(), gs.ravel()))

    def affine_sse(self) -> float:
        n = self.n
        cxx = self.sxx - self.sx * self.sx / n
        cxg = self.sxg - self.sx * self.sg / n
        cgg = self.sgg - self.sg * self.sg / n
        if cxx <= 0:
            return max(cgg, 0.0)
        return max(cgg - cxg * cxg / cxx, 0.0)


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _gt_indexer(
    gt_axes: str, gt_shape: tuple[int, ...], axes: str, shape: tuple[int, ...], where: str
):
    """Map a data index ``{axis: i}`` to the GT's index tuple (broadcasting missing/length-1 axes)."""
    extra = [a for a in gt_axes if a not in axes]
    if extra:
        raise ValueError(
            f"{where}: ground-truth axes '{gt_axes}' have {extra} that the data ('{axes}') lack"
        )
    for a, n in zip(gt_axes, gt_shape, strict=True):
        m = shape[axes.index(a)]
        if n != m and not (n == 1 and a not in "yx"):
            raise ValueError(
                f"{where}: ground truth has {a}={n} but the data have {a}={m}; "
                "they must match (or the GT axis must be absent or of length 1 to broadcast)"
            )

    def index(idx: Mapping[str, int]) -> tuple[Any, ...]:
        out: list[Any] = []
        for a, n in zip(gt_axes, gt_shape, strict=True):
            out.append(slice(None) if a in "yx" else (0 if n == 1 else idx[a]))
        return tuple(out)

    return index


def evaluate(
    raw_store: str | Path,
    outputs: Mapping[str, str | Path],
    gt_uri: str = "",
    gt_axes: str = "",
    noise_params: Mapping[str, Any] | None = None,
    window: WindowPredictor | None = None,
) -> dict[str, Any]:
    """Metrics of the raw input and every output against the ground truth, per image and overall.

    Without a ground truth (``gt_uri`` empty) only the no-reference residual figures are
    computed; they are also added when ``noise_params`` is given.

    Parameters
    ----------
    raw_store
        OME-Zarr of the noisy input.
    outputs
        ``{name: OME-Zarr store}`` of denoised results (same axes and shape as the input).
    gt_uri
        Ground-truth image (any format :func:`denoise.io.readers.open_input` reads).
    gt_axes
        Axes of the ground truth; empty: from its metadata.
    noise_params
        Noise-model result (per channel) for the no-reference residual check.
    window
        The predictor of a method that sees neighbouring frames (``halo_t > 0``), for its
        leave-out next-frame score (:func:`denoise.metrics.next_frame.window_predictor`).

    Returns
    -------
    dict
        ``axes``, ``gt``, ``gt_axes``, ``sources``, ``images`` (``index``, ``gt_range``,
        ``metrics[source][metric]``), ``summary[source][metric]`` (mean over images),
        ``gain_db[name]`` (mean PSNR gain of each output over the raw input) and, without GT or
        with ``noise_params``, ``no_reference`` (see :func:`no_reference`).
    """
    raw, axes, arrays = _open_sources(raw_store, outputs)
    base: dict[str, Any] = {"axes": axes, "shape": [int(n) for n in raw.shape]}
    noref = (
        no_reference(raw, axes, {k: arrays[k] for k in outputs}, noise_params, window)
        if noise_params is not None or not gt_uri
        else None
    )
    if not gt_uri:
        return {
            **base,
            "gt": None,
            "gt_axes": None,
            "sources": list(arrays),
            "images": [],
            "summary": {},
            "gain_db": {},
            "no_reference": noref,
        }
    gt = open_input(str(gt_uri), gt_axes)
    gidx = _gt_indexer(gt.axes, tuple(gt.data.shape), axes, tuple(raw.shape), str(gt_uri))
    with_255 = np.dtype(gt.data.dtype) == np.uint8
    unit_axes = [a for a in axes if a in "tc"]
    images = _score_images(raw.shape, axes, unit_axes, arrays, gt.data, gidx, with_255)
    summary = _summary(arrays, images, with_255)
    out = {
        **base,
        "gt": str(gt_uri),
        "gt_axes": gt.axes,
        "unit_axes": "".join(unit_axes),
        "volume": "z" in axes,
        "sources": list(arrays),
        "psnr_definition": "10*log10(range(GT)^2/MSE), range = max(GT) - min(GT) per image, float64, no clipping",
        "images": images,
        "summary": summary,
        "gain_db": _gain_db(summary, outputs),
    }
    if noref is not None:
        out["no_reference"] = noref
    return out


def _open_sources(
    raw_store: str | Path, outputs: Mapping[str, str | Path]
) -> tuple[Any, str, dict[str, Any]]:
    """Open the input and every output store, checking that they agree in axes and shape.

    Returns
    -------
    raw, axes
        The input array and its axes.
    arrays
        ``{"raw": raw, name: output array}``, in that order.
    """
    raw, axes = open_image(raw_store)
    arrays: dict[str, Any] = {"raw": raw}
    for name, store in outputs.items():
        if name == "raw":
            raise ValueError("an output may not be named 'raw' (reserved for the noisy input)")
        arr, ax = open_image(store)
        if ax != axes or tuple(arr.shape) != tuple(raw.shape):
            raise ValueError(
                f"output '{name}' ({store}) has axes '{ax}' shape {tuple(arr.shape)}, "
                f"but the input has axes '{axes}' shape {tuple(raw.shape)}"
            )
        arrays[name] = arr
    return raw, axes, arrays


def _score_images(
    shape: tuple[int, ...],
    axes: str,
    unit_axes: list[str],
    arrays: Mapping[str, Any],
    gt: Any,
    gidx: Callable[[Mapping[str, int]], tuple[Any, ...]],
    with_255: bool,
) -> list[dict[str, Any]]:
    """Metrics of every image (one per ``unit_axes`` index), with a progress bar over them.

    Parameters
    ----------
    shape, axes
        Shape and axes of the data.
    unit_axes
        The axes that index images (``t``, ``c``); ``z`` planes form one volume.
    arrays
        ``{source: array}`` to score.
    gt, gidx
        Ground-truth array, and the map of a data index to its index (:func:`_gt_indexer`).
    with_255
        Add ``psnr_255`` (8-bit ground truth).

    Returns
    -------
    list of dict
        Per image, as :func:`_image_metrics`.
    """
    zs = range(shape[axes.index("z")]) if "z" in axes else [None]
    combos = list(itertools.product(*(range(shape[axes.index(a)]) for a in unit_axes)))
    images = []
    with progress(len(combos), "evaluate", unit="image") as bar:
        for combo in combos:
            unit = dict(zip(unit_axes, combo, strict=True))
            planes = [dict(unit, **({"z": z} if z is not None else {})) for z in zs]
            gt_planes = [np.asarray(gt[gidx(p)], dtype=np.float64) for p in planes]
            images.append(_image_metrics(unit, planes, gt_planes, arrays, axes, with_255))
            bar.update(1)
    return images


def _image_metrics(
    unit: dict[str, int],
    planes: list[dict[str, int]],
    gt_planes: list[np.ndarray],
    arrays: Mapping[str, Any],
    axes: str,
    with_255: bool,
) -> dict[str, Any]:
    """Metrics of every source over one image (a plane, or the planes of a volume).

    Parameters
    ----------
    unit
        The image's ``t``/``c`` index.
    planes, gt_planes
        Index of each of its planes, and the matching ground-truth planes (float64).
    arrays
        ``{source: array}`` to score.
    axes
        Axes of the arrays.
    with_255
        Add ``psnr_255`` (8-bit ground truth).

    Returns
    -------
    dict
        ``index``, ``gt_range`` and ``metrics[source][metric]``.
    """
    lo = min(float(g.min()) for g in gt_planes)
    hi = max(float(g.max()) for g in gt_planes)
    rng = hi - lo
    accs = {name: _Accumulator() for name in arrays}
    for p, g in zip(planes, gt_planes, strict=True):
        key = tuple(p[a] if a in p else slice(None) for a in axes)
        for name, arr in arrays.items():
            x = np.asarray(arr[key], dtype=np.float64)
            bad = int(np.count_nonzero(~np.isfinite(x)))
            if bad:
                raise ValueError(
                    f"{name}: {bad} non-finite (unwritten?) pixels in plane {p}; "
                    "finish the prediction before evaluating"
                )
            accs[name].add(g, x)
            if rng > 0:
                accs[name].ssim.append(ssim(g, x, rng))
    metrics = {name: _source_metrics(acc, rng, with_255) for name, acc in accs.items()}
    log.info("evaluate %s: %s", unit or "image", {n: m["psnr"] for n, m in metrics.items()})
    return {"index": unit, "gt_range": rng, "metrics": metrics}


def _source_metrics(acc: _Accumulator, rng: float, with_255: bool) -> dict[str, float | None]:
    """``mse``, ``psnr``, ``si_psnr``, ``ssim`` (and ``psnr_255``) of one source over one image
    from its accumulated sums; ``rng`` is the image's ground-truth range."""
    err = acc.sse / acc.n
    m = {
        "mse": err,
        "psnr": _finite(psnr_from_mse(err, rng)),
        "si_psnr": _finite(psnr_from_mse(acc.affine_sse() / acc.n, rng)),
        "ssim": float(np.mean(acc.ssim)) if acc.ssim else None,
    }
    if with_255:
        m["psnr_255"] = _finite(psnr_from_mse(err, 255.0))
    return m


def _summary(
    sources: Mapping[str, Any], images: list[dict[str, Any]], with_255: bool
) -> dict[str, dict[str, float | None]]:
    """Per source, the mean of each metric over the images where it is defined."""
    summary: dict[str, dict[str, float | None]] = {}
    for name in sources:
        summary[name] = {}
        for k in METRICS:
            vals = [im["metrics"][name].get(k) for im in images]
            vals = [v for v in vals if v is not None]
            summary[name][k] = float(np.mean(vals)) if vals else None
        summary[name] = {k: v for k, v in summary[name].items() if with_255 or k != "psnr_255"}
    return summary


def _gain_db(
    summary: Mapping[str, Mapping[str, float | None]], outputs: Mapping[str, Any]
) -> dict[str, float | None]:
    """Mean PSNR of each output minus the raw input's (``None`` where either is undefined)."""
    raw_psnr = summary["raw"]["psnr"]
    return {
        name: (summary[name]["psnr"] - raw_psnr)
        if summary[name]["psnr"] is not None and raw_psnr is not None
        else None
        for name in outputs
    }


def no_reference(
    raw: Any,
    axes: str,
    outputs: Mapping[str, Any],
    noise_params: Mapping[str, Any] | None,
    window: WindowPredictor | None = None,
) -> dict[str, Any]:
    """Residual figures of every output, plane by plane, and its next-frame score.

    Per output: the residual ``raw − output`` variance over the noise model's predicted variance
    (pooled over planes; ``None`` without a noise model) and the residual's lag-1
    autocorrelation along ``y`` and ``x`` (mean over planes); see
    :func:`denoise.metrics.noref.residual_check` for how to read them.  With two frames or more
    along ``t``, also ``next_frame`` (:func:`denoise.metrics.next_frame.next_frame_figures`:
    the estimate of sampled frames ``t`` against raw frame ``t + 1``, frame ``t + 1`` left out
    of the input of a method that sees neighbouring frames (``window``); ``MSE + noise
    variance`` for a static scene, the same quantity for every method) and ``next_frame_mse``,
    its score when the motion check does not declare it invalid (else None: not to rank by).
    """
    from denoise.metrics.noref import lag1_autocorrelation
    from denoise.noise.poisson_gaussian import channel_params, predicted_variance

    lead = [a for a in axes if a not in "yx"]
    combos = list(itertools.product(*(range(raw.shape[axes.index(a)]) for a in lead)))
    result: dict[str, Any] = {}
    bar = progress(len(outputs) * len(combos), "evaluate (no reference)", unit="plane")
    for name, arr in outputs.items():
        res_sq = pred_sum = 0.0
        n = 0
        acy, acx = [], []
        for combo in combos:
            bar.update(1)
            idx = dict(zip(lead, combo, strict=True))
            key = tuple(idx[a] if a in idx else slice(None) for a in axes)
            x = np.asarray(raw[key], dtype=np.float64)
            d = np.asarray(arr[key], dtype=np.float64)
            r = x - d
            res_sq += float(np.sum((r - r.mean()) ** 2))
            n += r.size
            if noise_params is not None:
                p = channel_params(dict(noise_params), int(idx.get("c", 0)))
                pred_sum += float(np.sum(predicted_variance(p, d)))
            ac = lag1_autocorrelation(r)
            acy.append(ac["y"])
            acx.append(ac["x"])
        result[name] = {
            "residual_var": res_sq / n,
            "variance_ratio": (res_sq / pred_sum)
            if noise_params is not None and pred_sum > 0
            else None,
            "autocorrelation": {"y": float(np.mean(acy)), "x": float(np.mean(acx))},
        }
    bar.close()
    for name, arr in outputs.items():
        nf = next_frame_figures(raw, axes, arr, noise_params, window, name)
        result[name]["next_frame"] = nf
        result[name]["next_frame_mse"] = nf["score"] if nf and nf["valid"] is not False else None
    return result


def _fmt(v: Any) -> str:
    if v is None:
        return "NA"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_tables(result: Mapping[str, Any], json_path: str | Path, tsv_path: str | Path) -> None:
    """Write the evaluation as JSON and as a TSV; both files are written atomically.

    With a ground truth the TSV has one row per image and source, then the means; without one
    it has one row per output with the no-reference residual figures.
    """
    from denoise.provenance import atomic_write_json, atomic_write_text

    if result["images"] or not result.get("no_reference"):
        cols = [k for k in METRICS if any(k in m for m in result["summary"].values())]
        lines = ["\t".join(["image", "source", *cols])]
        for im in result["images"]:
            label = ",".join(f"{k}={v}" for k, v in im["index"].items()) or "image"
            for src in result["sources"]:
                lines.append(
                    "\t".join([label, src, *(_fmt(im["metrics"][src].get(k)) for k in cols)])
                )
        for src in result["sources"]:
            lines.append(
                "\t".join(["mean", src, *(_fmt(result["summary"][src].get(k)) for k in cols)])
            )
    else:
        lines = [
            "\t".join(
                [
                    "source",
                    "residual_var",
                    "variance_ratio",
                    "autocorr_y",
                    "autocorr_x",
                    "next_frame_mse",
                    "next_frame_valid",
                ]
            )
        ]
        for src, m in result["no_reference"].items():
            ac = m["autocorrelation"]
            vals = [m["residual_var"], m["variance_ratio"], ac["y"], ac["x"]]
            vals += [m.get("next_frame_mse"), (m.get("next_frame") or {}).get("valid")]
            lines.append("\t".join([src, *(_fmt(v) for v in vals)]))
    atomic_write_json(json_path, dict(result))
    atomic_write_text(tsv_path, "\n".join(lines) + "\n")
