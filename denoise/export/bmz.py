"""BioImage Model Zoo export of N2V / N2V2 models (``denoise export-bmz``).

The package (a zip that ``bioimageio.core``, deepImageJ, napari and the bioimage.io website
read) holds:

- ``rdf.yaml``: the model description, format 0.5 (the version the installed
  ``bioimageio.spec`` implements);
- two weights entries of one network, :class:`denoise.export.network.RawDenoiser`:
  ``pytorch_state_dict`` with its self-contained architecture file (our U-Net's source plus
  the wrapper's) and ``torchscript`` derived from it;
- test tensors ``test_input.npy`` / ``test_output.npy``: a crop of a sample image and OUR
  prediction of it (:func:`denoise.models.store.predict_whole`, per channel), and the same
  two as TIFF sample tensors for people;
- ``README.md`` (documentation) and ``cover.png`` (input next to output).

Normalisation lives inside the exported network (raw intensities in, raw intensities out,
float32), so the package needs no pre/postprocessing beyond a cast to float32 and reproduces
``predict_whole`` operation for operation.  The input is ``(batch, channel, [z,] y, x)``;
every channel of the training data is an independent sample with its own normalisation.
Output axes declare ``halo`` (the receptive field rounded up to ``2**depth``) so that tiled
prediction in bioimage.io tools is seamless.

:func:`validate_bmz` runs bioimageio.core's validation and test run and measures how far its
reproduction of the test output is from our prediction; :func:`export_bmz` calls it and
raises :class:`BMZExportError` when either fails.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from denoise import __version__
from denoise.export.network import RawDenoiser, architecture_source, scripted
from denoise.methods.registry import all_methods
from denoise.models.store import MODEL_FILE, load_model, predict_whole
from denoise.provenance import file_sha256

log = logging.getLogger(__name__)



def exportable_methods() -> tuple[str, ...]:
    """Methods whose models this exporter handles (declared ``exportable`` in the registry)."""
    return tuple(m.name for m in all_methods() if m.exportable)


INPUT_ID = "raw"
OUTPUT_ID = "denoised"
ARCH_FILE = "denoise_unet.py"
STATE_DICT_FILE = "weights_pytorch_state_dict.pt"
TORCHSCRIPT_FILE = "weights_torchscript.pt"
#: Preferred edge of the 2D test image (pixels); 3D test volumes use the minimum size.
PREFERRED_2D = 128
CITATIONS = (
    (
        "Krull, Buchholz & Jug (2019). Noise2Void - Learning Denoising From Single Noisy "
        "Images. CVPR 2019.",
        "10.1109/CVPR.2019.00223",
    ),
    (
        "Höck, Buchholz, Prakash, Jug et al. (2022). N2V2 - Fixing Noise2Void Checkerboard "
        "Artifacts with Modified Sampling Strategies and a Tweaked Network Architecture.",
        "10.48550/arXiv.2211.08512",
    ),
)
MISSING_CORE = "export-bmz needs the optional package bioimageio.core: pip install 'denoise[bmz]'"


class BMZExportError(RuntimeError):
    """The model cannot be exported, or the exported package fails bioimageio validation."""


# ------------------------------------------------------------------ sizes and samples
def size_limits(meta: Mapping[str, Any]) -> tuple[int, int]:
    """``(min, step)`` of every spatial input axis of the exported model.

    ``min = 2 * halo + 2**depth``: the output keeps at least ``2**depth`` pixels once the
    declared halo is cropped from both sides, and the network's reflect padding (``halo`` plus
    at most ``2**depth - 1``) stays inside the input.  ``step = 2**depth``.
    """
    multiple = int(meta["multiple"])
    return 2 * int(meta["halo"]) + multiple, multiple


def crop_sample(sample: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """Central crop of ``sample`` that is a valid test input, as ``(channel, *spatial)``.

    Parameters
    ----------
    sample
        ``(*spatial)`` for single-channel models or ``(channel, *spatial)`` with one entry per
        channel of the model's normalisation; ``meta["ndim"]`` spatial axes.
    meta
        Model metadata (from :func:`denoise.models.store.load_model`).

    Returns
    -------
    np.ndarray
        float32 ``(channel, *spatial)``; each spatial size is ``min + k * step`` (see
        :func:`size_limits`), at most :data:`PREFERRED_2D` for 2D models where the sample
        allows, the minimum for 3D models.

    Raises
    ------
    ValueError
        Wrong number of axes or channels, or a spatial axis shorter than the minimum.
    """
    ndim = int(meta["ndim"])
    channels = len(meta["norm"]["mean"])
    sample = np.asarray(sample)
    if sample.ndim == ndim:
        sample = sample[None]
    if sample.ndim != ndim + 1:
        raise ValueError(
            f"sample of shape {sample.shape}: expected {ndim} spatial axes, "
            f"optionally preceded by a channel axis"
        )
    if sample.shape[0] != channels:
        raise ValueError(
            f"sample has {sample.shape[0]} channel(s) but the model was trained on {channels}"
        )
    window = _crop_window(sample.shape[1:], meta)
    return np.ascontiguousarray(sample[(slice(None), *window)], dtype=np.float32)


def _crop_window(spatial: Sequence[int], meta: Mapping[str, Any]) -> tuple[slice, ...]:
    low, step = size_limits(meta)
    preferred = max(low, low + -(-(PREFERRED_2D - low) // step) * step)
    target = preferred if int(meta["ndim"]) == 2 else low
    window = []
    for n in spatial:
        if n < low:
            raise ValueError(
                f"sample of spatial shape {tuple(spatial)} is too small: the exported model "
                f"needs at least {low} px per spatial axis (2 × halo {meta['halo']} + "
                f"2**depth {meta['multiple']})"
            )
        size = min(target, low + (n - low) // step * step)
        start = (n - size) // 2
        window.append(slice(start, start + size))
    return tuple(window)


def read_sample(path: str | Path, meta: Mapping[str, Any]) -> np.ndarray:
    """Read a test sample for the model from an image file or OME-Zarr store.

    The first time point, the middle Z plane (2D models) and every channel are used; only the
    central crop (see :func:`crop_sample`) is read.

    Parameters
    ----------
    path
        Anything :func:`denoise.io.readers.open_input` reads (TIFF, PNG, .npy, zarr,
        OME-Zarr), with axes in its metadata.
    meta
        Model metadata.

    Returns
    -------
    np.ndarray
        float32 ``(channel, *spatial)``.
    """
    ndim = int(meta["ndim"])
    spatial_axes = "yx" if ndim == 2 else "zyx"
    img = _open_sample(path, spatial_axes)
    if not set(spatial_axes) <= set(img.axes):
        raise ValueError(
            f"{path}: axes '{img.axes}' lack the model's spatial axes '{spatial_axes}'"
        )
    index: list[Any] = []
    kept = ""
    for ax, n in zip(img.axes, img.data.shape, strict=True):
        if ax in spatial_axes or ax == "c":
            index.append(slice(None))
            kept += ax
        elif ax == "z":
            index.append(n // 2)
        else:
            index.append(0)
    data = img.data[tuple(index)]
    if "c" not in kept:
        data, kept = data[None], "c" + kept
    order = [kept.index(a) for a in "c" + spatial_axes]
    data = data.transpose(order)
    if data.shape[0] != len(meta["norm"]["mean"]):
        raise ValueError(
            f"{path}: {data.shape[0]} channel(s) but the model was trained on "
            f"{len(meta['norm']['mean'])}"
        )
    window = _crop_window(data.shape[1:], meta)
    crop = data[(slice(None), *window)]
    return np.asarray(crop.compute() if hasattr(crop, "compute") else crop, dtype=np.float32)


def _open_sample(path: str | Path, spatial_axes: str) -> Any:
    """``open_input(path)``; files without axes metadata (.npy, plain TIFF) are read as
    ``spatial_axes`` or ``"c" + spatial_axes``, whichever matches their number of axes."""
    from denoise.io.readers import open_input

    try:
        return open_input(str(path))
    except ValueError as first:  # InputError / AxesError: no usable axes metadata
        for axes in (spatial_axes, "c" + spatial_axes):
            try:
                return open_input(str(path), axes)
            except ValueError:
                continue
        raise ValueError(
            f"{first}; a sample without axes metadata must have axes '{spatial_axes}' or "
            f"'c{spatial_axes}'"
        ) from first


def _training_sample(meta: Mapping[str, Any], model_dir: Path) -> np.ndarray | None:
    """The training store's first image, ``None`` when the store cannot be found.

    A relative store path is relative to the run's working directory, which is not necessarily
    the current one: it is looked up under each directory above the model's first
    (``<run>/results/<row>/model`` -> ``<run>/results/<row>/raw.ome.zarr``), then as given.
    """
    store = meta.get("store") or (meta.get("train_config") or {}).get("store")
    if not store:
        return None
    path = Path(store)
    above = [d / path for d in Path(model_dir).resolve().parents]
    candidates = [path] if path.is_absolute() else [*above, path]
    found = next((c for c in candidates if c.exists()), None)
    return read_sample(found, meta) if found is not None else None


# ------------------------------------------------------------------ package pieces
def _cover(raw: np.ndarray, denoised: np.ndarray, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def plane(a: np.ndarray) -> np.ndarray:
        a = a[0, 0]
        return a[a.shape[0] // 2] if a.ndim == 3 else a

    fig = Figure(figsize=(8, 4), dpi=100)  # 2:1, as bioimage.io asks of covers
    FigureCanvasAgg(fig)
    panels = ((plane(raw), "input (raw)"), (plane(denoised), f"output ({title})"))
    for i, (img, label) in enumerate(panels):
        # Each panel on its own 1-99.8 % range: denoising lowers the peaks that noise creates.
        lo, hi = np.percentile(img, [1.0, 99.8])
        hi = hi if hi > lo else lo + 1.0
        ax = fig.add_axes((0.01 + 0.5 * i, 0.02, 0.48, 0.88))
        ax.imshow(img, cmap="magma", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(label, fontsize=11)
        ax.set_axis_off()
    fig.savefig(path, dpi=100, facecolor="white")


def _documentation(meta: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    method = str(meta["method"])
    hp = meta["hparams"]
    norm = meta["norm"]
    spatial = "z, y, x" if int(meta["ndim"]) == 3 else "y, x"
    lines = [
        f"# {info['name']}",
        "",
        f"A {method.upper()} (self-supervised, blind-spot) denoiser for fluorescence "
        f"microscopy, trained and exported with `denoise` {__version__}.",
        "",
        "## Input and output",
        "",
        f"- Input `{INPUT_ID}`: raw intensities, axes (batch, channel, {spatial}), "
        f"{len(norm['mean'])} channel(s).  Any dtype; it is cast to float32.",
        f"- Output `{OUTPUT_ID}`: denoised raw intensities (float32), same shape.",
        f"- Spatial sizes: at least {info['min']} px, in steps of {info['step']} px.",
        f"- Halo: {meta['halo']} px per side (receptive field {meta['receptive_field']} px): "
        "crop it from tiles when predicting tile by tile.",
        "",
        "Normalisation is part of the network: channel *c* is normalised with the training "
        "statistics `(x - mean[c]) / std[c]`, reflect-padded by the halo (plus up to "
        f"{meta['multiple'] - 1} px to a multiple of {meta['multiple']}), denoised, cropped "
        "and scaled back, exactly as `denoise.models.store.predict_whole` does.  "
        "No pre/postprocessing is needed beyond the cast to float32.",
        "",
        "| channel | mean | std |",
        "|---|---|---|",
        *(
            f"| {c} | {m:.6g} | {s:.6g} |"
            for c, (m, s) in enumerate(zip(norm["mean"], norm["std"], strict=True))
        ),
        "",
        "## Network",
        "",
        f"U-Net ({meta['ndim']}D), depth {hp['depth']}, {hp['features']} features in the "
        f"first level, batch norm {'on' if hp['batch_norm'] else 'off'}"
        + (", N2V2 (max-blur-pool, no top skip connection)" if hp["n2v2"] else "")
        + ".  Weights: `pytorch_state_dict` (architecture file "
        f"`{ARCH_FILE}`, callable `RawDenoiser`) and `torchscript`.",
        "",
        "## Training",
        "",
        "```",
        *(f"{k}: {v}" for k, v in sorted((meta.get("train_config") or {}).items())),
        "```",
        "",
        f"Fingerprint `{meta.get('fingerprint', '')}`, model.pt sha256 `{info['sha256']}`.",
        "",
        "## Validation",
        "",
        "`denoise export-bmz` validates every package with bioimageio.core (format "
        "validation, the test run of both weights formats, inference at several input sizes) "
        "and refuses packages whose reproduction of the test output, denoise's own "
        f"prediction of the test input, differs from it by more than {info['atol']:g} (raw "
        "units).  Re-check with `bioimageio test <package>.zip`.",
        "",
        "## Limitations",
        "",
        "Blind-spot denoisers assume pixel-wise independent noise; structured (correlated) "
        "noise is not removed.  The model is specific to the microscope, sample and "
        "acquisition settings of its training data.",
        "",
        "## References",
        "",
        *(f"- {text} doi:{doi}" for text, doi in CITATIONS),
        "",
    ]
    return "\n".join(lines)


def _name(meta: Mapping[str, Any], model_dir: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", model_dir.resolve().name)
    return f"denoise {str(meta['method']).upper()} {meta['ndim']}D {stem}"[:64].rstrip()


def _authors(authors: Sequence[str | Mapping[str, str]]) -> list[Any]:
    from bioimageio.spec.model.v0_5 import Author

    out = [Author(name=a) if isinstance(a, str) else Author(**dict(a)) for a in authors]
    if not out:
        raise ValueError("export_bmz: at least one author is required")
    return out


# ------------------------------------------------------------------ export
def export_bmz(
    model_dir: str | Path,
    out_zip: str | Path,
    *,
    sample: np.ndarray | None = None,
    name: str | None = None,
    authors: Sequence[str | Mapping[str, str]] = ("denoise developers",),
    license: str = "BSD-3-Clause",
    validate: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Write a BioImage Model Zoo package of an N2V / N2V2 model directory.

    Parameters
    ----------
    model_dir
        Model directory written by ``denoise train`` (see ``docs/architecture.md``).
    out_zip
        Package path (a ``.zip``); written atomically.
    sample
        Image for the test tensors: ``(*spatial)`` or ``(channel, *spatial)``, centrally
        cropped by :func:`crop_sample`.  Needed unless the model's metadata names its
        training store (``store``), whose first image is used then.
    name
        Model name (letters, digits, ``_+-()`` and spaces, 5-128 characters); by default
        derived from the method and the directory name.
    authors
        Author names, or mappings with the fields of bioimage.io's author entry (``name``,
        ``affiliation``, ``email``, ``orcid``, ``github_user``).
    license
        SPDX licence identifier of the weights.
    validate
        Run :func:`validate_bmz` on the written package (raises on failure).
    atol
        Largest tolerated absolute difference (raw units) between bioimageio.core's
        reproduction of the test output and our prediction, and the absolute tolerance the
        package declares for its test (next to a relative tolerance of 1e-4).

    Returns
    -------
    Path
        ``out_zip``.

    Raises
    ------
    ImportError
        bioimageio.core (the ``bmz`` extra) is not installed.
    ValueError
        Not an N2V-type model, or no usable sample.
    BMZExportError
        bioimageio rejects the description, or the package fails validation or reproduction.
    """
    try:
        from bioimageio.spec import save_bioimageio_package
        from bioimageio.spec.model import v0_5  # noqa: F401  (the description format)
    except ImportError as exc:
        raise ImportError(MISSING_CORE) from exc

    model_dir, out_zip = Path(model_dir), Path(out_zip)
    model, meta = load_model(model_dir)
    hp = _exportable_hparams(model_dir, meta)
    net = _network_kwargs(meta, hp)
    raw, expected = _test_tensors(model, meta, sample, model_dir)
    wrapper = _wrapper(model, net)
    info = _package_info(meta, model_dir, name, atol)
    with tempfile.TemporaryDirectory(prefix="bmz-") as tmp:
        work = Path(tmp)
        _write_package_files(work, raw, expected, wrapper, meta, info)
        parts = _description_parts(work, meta, net, info["min"], info["step"])
        try:
            descr = _model_descr(work, meta, net, info, authors, license, parts)
        except Exception as exc:  # pydantic.ValidationError: invalid name, licence, ...
            raise BMZExportError(f"bioimageio rejects the model description: {exc}") from exc
        _save_package(save_bioimageio_package, descr, out_zip)
    log.info("wrote BioImage Model Zoo package %s", out_zip)
    if validate:
        _validate_and_log(out_zip, atol)
    return out_zip


def _validate_and_log(package: Path, atol: float) -> None:
    """:func:`validate_bmz` (raises on failure), and log its result."""
    summary = validate_bmz(package, atol=atol)
    log.info(
        "%s: bioimageio validation %s; max |bioimageio - predict_whole| %s",
        package,
        summary["status"],
        summary["max_abs_diff"],
    )


def _package_info(
    meta: Mapping[str, Any], model_dir: Path, name: str | None, atol: float
) -> dict[str, Any]:
    """What the README and the description state besides the metadata: ``name`` (``name`` or
    one derived from the method and ``model_dir``), ``min`` and ``step`` of the spatial sizes
    (:func:`size_limits`), the model file's ``sha256`` and the test tolerance ``atol``."""
    low, step = size_limits(meta)
    return {
        "name": name or _name(meta, model_dir),
        "min": low,
        "step": step,
        "sha256": file_sha256(model_dir / MODEL_FILE),
        "atol": atol,
    }


def _wrapper(model: torch.nn.Module, net: Mapping[str, Any]) -> RawDenoiser:
    """The exported network: :class:`RawDenoiser` (keyword arguments ``net``) holding the
    trained U-Net's weights, in eval mode."""
    wrapper = RawDenoiser(**net)
    wrapper.net.load_state_dict(model.state_dict())
    wrapper.eval()
    return wrapper


def _exportable_hparams(model_dir: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The model's hyper-parameters, after checking that this exporter handles it
    (an exportable method, one input and one output channel); raises ``ValueError`` if not."""
    method = str(meta.get("method"))
    hp = dict(meta["hparams"])
    if (
        method not in exportable_methods()
        or hp.get("in_channels", 1) != 1
        or hp.get("out_channels", 1) != 1
    ):
        raise ValueError(
            f"{model_dir}: export-bmz handles single-channel N2V-type models "
            f"({', '.join(exportable_methods())}), not method '{method}' with hparams {hp}"
        )
    return hp


def _network_kwargs(meta: Mapping[str, Any], hp: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :class:`RawDenoiser` (and of the package's architecture entry):
    per-channel ``mean``, ``std`` and ``constant`` flags, ``halo``, and the U-Net's ``hp``."""
    mean = [float(v) for v in meta["norm"]["mean"]]
    std = [float(v) for v in meta["norm"]["std"]]
    constant = [bool(v) for v in meta["norm"].get("constant", ())][: len(mean)]
    constant += [False] * (len(mean) - len(constant))
    return {"mean": mean, "std": std, "halo": int(meta["halo"]), "constant": constant, **hp}


def _test_tensors(
    model: torch.nn.Module,
    meta: Mapping[str, Any],
    sample: np.ndarray | None,
    model_dir: Path,
) -> tuple[np.ndarray, np.ndarray]:
    """Test input ``(1, channel, *spatial)`` (``sample`` cropped, else the training store's
    first image) and our prediction of it (:func:`predict_whole`, channel by channel), float32."""
    if sample is None:
        raw = _training_sample(meta, model_dir)
        if raw is None:
            raise ValueError(
                f"{model_dir}: the model does not record its training store; pass a sample "
                "image (export-bmz --sample PATH)"
            )
    else:
        raw = crop_sample(sample, meta)
    raw = raw[None]  # (1, channel, *spatial)
    expected = np.stack(
        [predict_whole(model, meta, raw[0, c], channel=c) for c in range(raw.shape[1])]
    )[None].astype(np.float32)
    return raw, expected


def _write_package_files(
    work: Path,
    raw: np.ndarray,
    expected: np.ndarray,
    wrapper: RawDenoiser,
    meta: Mapping[str, Any],
    info: Mapping[str, Any],
) -> None:
    """Write the package's files into ``work``: test and sample tensors, architecture source,
    both weights formats, cover and README."""
    ndim, multiple = int(meta["ndim"]), int(meta["multiple"])
    np.save(work / "test_input.npy", raw.astype(np.float32))
    np.save(work / "test_output.npy", expected)
    tifffile.imwrite(work / "sample_input.tif", raw[0].astype(np.float32))
    tifffile.imwrite(work / "sample_output.tif", expected[0])
    (work / ARCH_FILE).write_text(architecture_source())
    torch.save(wrapper.state_dict(), work / STATE_DICT_FILE)
    example = torch.zeros((1, 1, *([2 * multiple] * ndim)))
    scripted(wrapper, example).save(str(work / TORCHSCRIPT_FILE))
    _cover(raw, expected, work / "cover.png", str(meta["method"]).upper())
    (work / "README.md").write_text(_documentation(meta, info))


def _description_parts(
    work: Path, meta: Mapping[str, Any], net: Mapping[str, Any], low: int, step: int
) -> dict[str, Any]:
    """The pieces of the description built before it (their errors are not bioimageio
    rejections): ``in_axes`` (batch, channel, spatial sizes ``low + k * step``), ``out_axes``
    (sizes of the input, with the halo), ``torch_version``, ``arch`` (the architecture file
    with :class:`RawDenoiser`'s keyword arguments ``net``) and ``tags``."""
    from bioimageio.spec.model import v0_5 as bmz

    ndim = int(meta["ndim"])
    spatial_ids = ["z", "y", "x"][3 - ndim :]
    channel_names = [f"channel{c}" for c in range(len(net["mean"]))]
    in_axes: list[Any] = [
        bmz.BatchAxis(),
        bmz.ChannelAxis(channel_names=channel_names),
        *(
            bmz.SpaceInputAxis(id=bmz.AxisId(a), size=bmz.ParameterizedSize(min=low, step=step))
            for a in spatial_ids
        ),
    ]
    out_axes: list[Any] = [
        bmz.BatchAxis(),
        bmz.ChannelAxis(channel_names=channel_names),
        *(
            bmz.SpaceOutputAxisWithHalo(
                id=bmz.AxisId(a),
                halo=net["halo"],
                size=bmz.SizeReference(tensor_id=bmz.TensorId(INPUT_ID), axis_id=bmz.AxisId(a)),
            )
            for a in spatial_ids
        ),
    ]
    torch_version = bmz.Version(torch.__version__.split("+")[0])
    arch = bmz.ArchitectureFromFileDescr(
        source=work / ARCH_FILE, callable=bmz.Identifier("RawDenoiser"), kwargs=dict(net)
    )
    tags = [
        "denoising",
        "noise2void",
        "self-supervised",
        "unet",
        "pytorch",
        "fluorescence-light-microscopy",
        f"{ndim}d",
        *(["n2v2"] if net.get("n2v2") else []),
    ]
    return {
        "in_axes": in_axes,
        "out_axes": out_axes,
        "torch_version": torch_version,
        "arch": arch,
        "tags": tags,
    }


def _input_descr(work: Path, axes: list[Any]) -> Any:
    """The input tensor entry, with its test and sample tensors in ``work``."""
    from bioimageio.spec.model import v0_5 as bmz

    return bmz.InputTensorDescr(
        id=bmz.TensorId(INPUT_ID),
        description="raw intensities (any dtype, cast to float32)",
        axes=axes,
        test_tensor=bmz.FileDescr(source=work / "test_input.npy"),
        sample_tensor=bmz.FileDescr(source=work / "sample_input.tif"),
        data=bmz.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[bmz.EnsureDtypeDescr(kwargs=bmz.EnsureDtypeKwargs(dtype="float32"))],
    )


def _output_descr(work: Path, axes: list[Any]) -> Any:
    """The output tensor entry, with its test and sample tensors in ``work``."""
    from bioimageio.spec.model import v0_5 as bmz

    return bmz.OutputTensorDescr(
        id=bmz.TensorId(OUTPUT_ID),
        description="denoised raw intensities",
        axes=axes,
        test_tensor=bmz.FileDescr(source=work / "test_output.npy"),
        sample_tensor=bmz.FileDescr(source=work / "sample_output.tif"),
        data=bmz.IntervalOrRatioDataDescr(type="float32"),
    )


def _weights_descr(work: Path, arch: Any, torch_version: Any) -> Any:
    """The ``pytorch_state_dict`` entry (architecture ``arch``) and the ``torchscript`` entry
    derived from it."""
    from bioimageio.spec.model import v0_5 as bmz

    return bmz.WeightsDescr(
        pytorch_state_dict=bmz.PytorchStateDictWeightsDescr(
            source=work / STATE_DICT_FILE,
            architecture=arch,
            pytorch_version=torch_version,
        ),
        torchscript=bmz.TorchscriptWeightsDescr(
            source=work / TORCHSCRIPT_FILE,
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
        ),
    )


def _package_config(
    meta: Mapping[str, Any], net: Mapping[str, Any], info: Mapping[str, Any]
) -> Any:
    """The ``config`` entry: bioimage.io's test tolerance and labels, and our provenance."""
    from bioimageio.spec.model import v0_5 as bmz

    return bmz.Config(
        bioimageio=bmz.BioimageioConfig(
            reproducibility_tolerance=[
                bmz.ReproducibilityTolerance(
                    absolute_tolerance=info["atol"],
                    relative_tolerance=1e-4,
                    mismatched_elements_per_million=0,
                )
            ],
            architecture_type=f"{int(meta['ndim'])}D U-Net",
            modality="fluorescence microscopy",
            task="denoising",
        ),
        denoise={
            "version": __version__,
            "method": str(meta.get("method")),
            "fingerprint": meta.get("fingerprint", ""),
            "model_sha256": info["sha256"],
            "receptive_field": int(meta["receptive_field"]),
            "halo": net["halo"],
            "norm": {"mean": net["mean"], "std": net["std"]},
        },
    )


def _model_descr(
    work: Path,
    meta: Mapping[str, Any],
    net: Mapping[str, Any],
    info: Mapping[str, Any],
    authors: Sequence[str | Mapping[str, str]],
    license: str,
    parts: Mapping[str, Any],
) -> Any:
    """The package's model description (``rdf.yaml``), pointing at the files in ``work``;
    ``parts`` from :func:`_description_parts`.

    Raises whatever bioimageio.spec raises for an invalid field (name, licence, ...).
    """
    from bioimageio.spec.model import v0_5 as bmz

    method, ndim = str(meta.get("method")), int(meta["ndim"])
    return bmz.ModelDescr(
        name=info["name"],
        description=(
            f"{method.upper()} self-supervised denoiser ({ndim}D U-Net) for "
            "fluorescence microscopy; raw intensities in, denoised raw intensities "
            f"out. Exported by denoise {__version__}."
        ),
        authors=_authors(authors),
        cite=[bmz.CiteEntry(text=t, doi=bmz.Doi(d)) for t, d in CITATIONS],
        license=bmz.LicenseId(license),
        documentation=bmz.FileDescr(source=work / "README.md"),
        covers=[bmz.FileDescr(source=work / "cover.png")],
        tags=parts["tags"],
        inputs=[_input_descr(work, parts["in_axes"])],
        outputs=[_output_descr(work, parts["out_axes"])],
        weights=_weights_descr(work, parts["arch"], parts["torch_version"]),
        config=_package_config(meta, net, info),
    )


def _save_package(save: Any, descr: Any, out_zip: Path) -> None:
    """Write the package of ``descr`` with ``save`` (``save_bioimageio_package``) to
    ``out_zip``, atomically (a temporary zip beside it, then renamed)."""
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=out_zip.parent, prefix=f".{out_zip.name}.", suffix=".zip")
    os.close(fd)
    try:
        save(descr, output_path=Path(part))
        os.replace(part, out_zip)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise


def validate_bmz(package: str | Path, *, atol: float = 1e-4) -> dict[str, Any]:
    """Validate a package with bioimageio.core and measure its reproduction of our prediction.

    Runs ``bioimageio.core.test_model``: format validation, the test run of every weights
    format (test input → output, compared with the package's test output under the declared
    tolerance) and inference at several input sizes and batch sizes.  The outputs of the test
    runs, which bioimageio.core saves into a working directory, are then compared with the
    test output (our ``predict_whole`` prediction) to give the largest absolute difference.

    Parameters
    ----------
    package
        The zip written by :func:`export_bmz` (or its rdf.yaml).
    atol
        Largest tolerated absolute difference per weights format.

    Returns
    -------
    dict
        ``status`` ("passed"), ``format_version``, ``max_abs_diff`` {weights format: float},
        ``tests`` [{name, status}] (one per bioimageio check).

    Raises
    ------
    ImportError
        bioimageio.core is not installed.
    BMZExportError
        Validation failed or a difference exceeds ``atol``; the message holds bioimageio's
        report.
    """
    try:
        from bioimageio.core import load_description, test_model
        from bioimageio.core.digest_spec import get_test_output_sample
    except ImportError as exc:
        raise ImportError(MISSING_CORE) from exc

    with tempfile.TemporaryDirectory(prefix="bmz-test-") as tmp:
        summary = test_model(package, working_dir=tmp)
        if summary.status != "passed":
            raise BMZExportError(
                f"{package}: bioimageio.core validation {summary.status}:\n{summary.format()}"
            )
        descr = load_description(package, perform_io_checks=False)
        expected_outputs = {
            str(m): t.data.to_numpy() for m, t in get_test_output_sample(descr).members.items()
        }
        diffs: dict[str, float] = {}
        for weights_format, entry in descr.weights:
            if entry is None:
                continue
            worst = 0.0
            for member, expected in expected_outputs.items():
                actual_path = Path(tmp) / f"actual_output_{member}_{weights_format}.npy"
                if not actual_path.is_file():
                    raise BMZExportError(
                        f"{package}: bioimageio.core saved no test-run output {actual_path.name}"
                    )
                actual = np.load(actual_path)
                if actual.shape != expected.shape:
                    raise BMZExportError(
                        f"{package}: {weights_format} test-run output {actual.shape} differs "
                        f"in shape from the test output {expected.shape}"
                    )
                diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
                worst = max(worst, float(diff.max()))
            diffs[weights_format] = worst
    if not max(diffs.values()) <= atol:
        raise BMZExportError(
            f"{package}: bioimageio.core reproduces our prediction only to "
            f"{max(diffs.values()):.3g} (> {atol:g}): {diffs}"
        )
    return {
        "status": summary.status,
        "format_version": str(descr.format_version),
        "max_abs_diff": diffs,
        "tests": [{"name": d.name, "status": d.status} for d in summary.details],
    }
