"""Random training patches read straight from an OME-Zarr store.

Only the crop region of each patch is read (zarr decodes just the chunks it touches), so
training memory does not depend on the data size.  Patches are normalised with the stored
per-channel mean/std (``denoise.stats`` written by ingest; computed streamed with dask when
absent) and augmented with one of the 8 flips/rotations of the Y/X square.

Which axes are samples and which are spatial:

* 2D model (``yx``, ``tyx``, ``cyx``, ``tcyx`` data, or any data with ``dims="2d"``):
  patches are Y/X crops; T, C and Z index independent samples.
* 3D model (data with Z > 1 and ``dims`` ``"auto"`` or ``"3d"``): patches are Z/Y/X crops
  (``patch_size_z`` along Z); T and C index samples.

Randomness comes from the ``numpy.random.Generator`` passed to :meth:`PatchSampler.sample`, so
a batch is a pure function of its generator's seed; :class:`Prefetcher` builds batches in a
background thread without changing what they contain.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from denoise.io import omezarr
from denoise.methods.masking import CORRELATED_MASK_RADIUS
from denoise.noise.poisson_gaussian import estimate_from_array
from denoise.settings import NoiseModelConfig

log = logging.getLogger(__name__)

_SPATIAL = {2: "yx", 3: "zyx"}


def choose_ndim(
    axes: str, shape: tuple[int, ...], dims: Literal["auto", "2d", "3d"] = "auto", where: str = ""
) -> int:
    """Spatial dimensionality of the model for data with ``axes`` and ``shape``.

    Raises
    ------
    ValueError
        ``dims="3d"`` on data without a Z axis longer than 1.
    """
    has_z = "z" in axes and shape[axes.index("z")] > 1
    if dims == "3d":
        if not has_z:
            raise ValueError(
                f"{where}: dims='3d' needs a Z axis with more than one plane (axes '{axes}', shape {shape})"
            )
        return 3
    if dims == "2d":
        return 2
    return 3 if has_z else 2


def fit_patch(size: int, wanted: int, multiple: int, axis: str, where: str) -> int:
    """Patch edge along one axis: ``wanted``, or the largest multiple that fits the image.

    Raises
    ------
    ValueError
        When the image is shorter than ``2 * multiple`` along the axis.
    """
    if size < 2 * multiple:
        raise ValueError(
            f"{where}: axis '{axis}' has {size} pixels, fewer than the {2 * multiple} a U-Net of this "
            f"depth needs (2 × 2**depth = {2 * multiple}); use a smaller depth, train 2D (dims='2d') "
            "for thin stacks, or use a larger image"
        )
    wanted = max(multiple, wanted // multiple * multiple)
    if size >= wanted:
        return wanted
    fitted = size // multiple * multiple
    log.warning(
        "%s: axis '%s' has %d pixels < patch %d; using patch %d", where, axis, size, wanted, fitted
    )
    return fitted


def channel_norm(
    store: str | Path, group_attrs: dict[str, Any] | None = None
) -> dict[str, list[float]]:
    """Per-channel mean and std of a store: ingest's ``denoise.stats``, else computed streamed.

    A channel with zero std gets std 1 (constant data: normalisation only shifts it) and is
    listed in ``constant`` (present only then): predictors return such a channel unchanged.
    """
    attrs = group_attrs if group_attrs is not None else dict(omezarr.open_group(store).attrs)
    stats = attrs.get("denoise", {}).get("stats")
    if not stats:
        from denoise.io.ingest import channel_stats

        data, axes = omezarr.as_dask(store)
        log.info("%s: no stored statistics; computing per-channel mean/std", store)
        stats = channel_stats(data, axes)
    mean = [float(s["mean"]) for s in stats]
    std, constant = [], []
    for i, s in enumerate(stats):
        sd = float(s["std"])
        constant.append(not np.isfinite(sd) or sd <= 0)
        if constant[-1]:
            log.warning("%s: channel %d has zero spread; normalising with std 1", store, i)
            sd = 1.0
        std.append(sd)
    norm: dict[str, list] = {"mean": mean, "std": std}
    if any(constant):
        norm["constant"] = constant
    return norm


class PatchSampler:
    """Draws normalised, augmented random patches from level 0 of an OME-Zarr store.

    Parameters
    ----------
    store
        OME-Zarr image (axes in canonical ``tczyx`` order).
    patch_size, patch_size_z
        Wanted patch edge in Y/X and along Z (3D models); clamped to the image.
    multiple
        Patch edges are multiples of this (the U-Net's ``2**depth``).
    dims
        ``"auto"`` (3D when Z > 1), ``"2d"`` or ``"3d"``.
    norm
        ``{"mean": [...], "std": [...]}`` per channel; read from the store when None.

    Attributes
    ----------
    array
        The zarr array read from (tests may wrap it to count reads).
    ndim, patch, spatial_axes, sample_axes, norm
        Model dimensionality, patch shape, and which store axes are spatial / samples.
    """

    def __init__(
        self,
        store: str | Path,
        patch_size: int,
        patch_size_z: int,
        multiple: int,
        dims: Literal["auto", "2d", "3d"] = "auto",
        norm: dict[str, list[float]] | None = None,
    ) -> None:
        self.store = str(store)
        group = omezarr.open_group(store)
        self.array, self.axes = omezarr.open_image(store)
        shape = tuple(int(s) for s in self.array.shape)
        self.shape = shape
        self.ndim = choose_ndim(self.axes, shape, dims, where=self.store)
        self.spatial_axes = _SPATIAL[self.ndim]
        self.sample_axes = "".join(a for a in self.axes if a not in self.spatial_axes)
        self.sample_shape = tuple(shape[self.axes.index(a)] for a in self.sample_axes)
        wanted = {"z": patch_size_z, "y": patch_size, "x": patch_size}
        self.patch = tuple(
            fit_patch(shape[self.axes.index(a)], wanted[a], multiple, a, self.store)
            for a in self.spatial_axes
        )
        self.norm = norm if norm is not None else channel_norm(store, dict(group.attrs))
        n_c = shape[self.axes.index("c")] if "c" in self.axes else 1
        if len(self.norm["mean"]) != n_c:
            raise ValueError(
                f"{self.store}: {n_c} channel(s) but statistics for {len(self.norm['mean'])}"
            )
        self.square = self.patch[-1] == self.patch[-2]

    @property
    def n_samples(self) -> int:
        """Number of independent samples (product of the T/C/(Z) sizes)."""
        return int(np.prod(self.sample_shape, dtype=np.int64)) if self.sample_shape else 1

    def read(self, sample: tuple[int, ...], origin: tuple[int, ...]) -> np.ndarray:
        """Read one raw patch: sample indices (per sample axis) and spatial origin."""
        idx: list[Any] = []
        it_s, it_o = iter(sample), iter(origin)
        for a in self.axes:
            if a in self.spatial_axes:
                o = next(it_o)
                idx.append(slice(o, o + self.patch[self.spatial_axes.index(a)]))
            else:
                idx.append(int(next(it_s)))
        return np.asarray(self.array[tuple(idx)])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` normalised, augmented patches as ``(n, 1, *patch)`` float32."""
        out = np.empty((n, 1, *self.patch), dtype=np.float32)
        spatial_size = [self.shape[self.axes.index(a)] for a in self.spatial_axes]
        for i in range(n):
            flat = int(rng.integers(self.n_samples))
            sample = np.unravel_index(flat, self.sample_shape) if self.sample_shape else ()
            origin = tuple(
                int(rng.integers(s - p + 1)) for s, p in zip(spatial_size, self.patch, strict=True)
            )
            k = int(rng.integers(4)) if self.square else 2 * int(rng.integers(2))
            flip = bool(rng.integers(2))
            raw = self.read(tuple(int(s) for s in sample), origin)
            c = int(sample[self.sample_axes.index("c")]) if "c" in self.sample_axes else 0
            p = (raw.astype(np.float32) - np.float32(self.norm["mean"][c])) / np.float32(
                self.norm["std"][c]
            )
            p = np.rot90(p, k, axes=(-2, -1))
            if flip:
                p = p[..., ::-1]
            out[i, 0] = p
        return out


def pooled_norm(norms: list[dict[str, list[float]]], counts: list[int]) -> dict[str, list]:
    """Per-channel mean/std of several stores pooled (``counts``: pixels per channel of each):
    the mean and std of all their pixels together, from each store's own mean and std."""
    total = float(sum(counts))
    mean, std = [], []
    for c in range(len(norms[0]["mean"])):
        m = sum(n * s["mean"][c] for n, s in zip(counts, norms, strict=True)) / total
        second = sum(
            n * (s["std"][c] ** 2 + s["mean"][c] ** 2) for n, s in zip(counts, norms, strict=True)
        ) / total
        mean.append(float(m))
        std.append(float(np.sqrt(max(second - m * m, 0.0))) or 1.0)
    return {"mean": mean, "std": std}


class MultiStoreSampler:
    """Patches from several OME-Zarr stores (the rows of a sheet ``group``), one model's data.

    Each patch first picks its store with probability proportional to the store's size (pixels
    of level 0), then draws from that store's :class:`PatchSampler`; both draws come from the
    generator handed to :meth:`sample`, so a batch stays a pure function of its seed.  Only the
    stores' metadata is held open: memory is bounded by the batch, not by the number of stores.
    Every patch is normalised with the statistics of all stores pooled (:func:`pooled_norm`).
    The patch shape is the smallest any store allows, so every store can serve every draw.

    Raises
    ------
    ValueError
        Stores of different dimensionality (2D vs 3D model) or channel count.
    """

    def __init__(
        self,
        stores: list[str | Path],
        patch_size: int,
        patch_size_z: int,
        multiple: int,
        dims: Literal["auto", "2d", "3d"] = "auto",
    ) -> None:
        samplers = [PatchSampler(s, patch_size, patch_size_z, multiple, dims) for s in stores]
        ndims = {s.ndim for s in samplers}
        n_cs = {len(s.norm["mean"]) for s in samplers}
        if len(ndims) > 1 or len(n_cs) > 1:
            raise ValueError(
                "a group's stores must share dimensionality and channel count: "
                + ", ".join(f"{s.store}: {s.ndim}D, {len(s.norm['mean'])} ch" for s in samplers)
            )
        patch = tuple(min(s.patch[k] for s in samplers) for k in range(len(samplers[0].patch)))
        if any(s.patch != patch for s in samplers):
            yx, z = min(patch[-2:]), patch[0] if len(patch) == 3 else patch_size_z
            samplers = [PatchSampler(s, yx, z, multiple, dims) for s in stores]
        sizes = [int(np.prod(s.shape, dtype=np.int64)) for s in samplers]
        n_c = len(samplers[0].norm["mean"])
        self.norm = pooled_norm([s.norm for s in samplers], [n // n_c for n in sizes])
        for s in samplers:
            s.norm = self.norm
        self.samplers = samplers
        self.weights = np.asarray(sizes, dtype=np.float64) / float(sum(sizes))
        first = samplers[0]
        self.ndim, self.patch, self.axes = first.ndim, first.patch, first.axes
        self.stores = [s.store for s in samplers]
        self.store = "; ".join(self.stores)

    @property
    def n_samples(self) -> int:
        """Independent samples of all stores together."""
        return sum(s.n_samples for s in self.samplers)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` normalised, augmented patches as ``(n, 1, *patch)`` float32 (stores drawn in
        proportion to their size)."""
        which = rng.choice(len(self.samplers), size=n, p=self.weights)
        out = np.empty((n, 1, *self.patch), dtype=np.float32)
        for i, j in enumerate(which):
            out[i] = self.samplers[int(j)].sample(rng, 1)[0]
        return out


def resolve_mask_radius(setting: int | str, sampler: PatchSampler | MultiStoreSampler) -> int:
    """A blind-spot method's ``mask_radius`` setting as trained: an int as given; ``auto``:
    :data:`~denoise.methods.masking.CORRELATED_MASK_RADIUS` if the noise of the (first) store's
    middle ``y x`` plane (the middle of every other axis, channel 0; only its central 512² is
    read) is clearly spatially correlated (the noise stage's check,
    :func:`denoise.noise.poisson_gaussian.estimate_from_array`), else 0."""
    if setting != "auto":
        return int(setting)
    part = sampler.samplers[0] if isinstance(sampler, MultiStoreSampler) else sampler
    shape = part.array.shape

    def pick(i: int, a: str) -> int | slice:
        if a in "yx":  # the central 512 (read only that, however large the plane)
            lo = max(0, (shape[i] - 512) // 2)
            return slice(lo, lo + 512)
        return 0 if a == "c" else shape[i] // 2

    index = tuple(pick(i, a) for i, a in enumerate(part.axes))
    plane = np.asarray(part.array[index], dtype=np.float32)
    try:
        corr = estimate_from_array(plane, NoiseModelConfig(), seed=0).get("spatial_correlation")
    except ValueError:  # too small or flat to fit: the pixel blind spot
        return 0
    return CORRELATED_MASK_RADIUS if corr and corr["correlated"] else 0
