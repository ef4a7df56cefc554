"""Point spread functions (PSFs) for DecoNoising: construction, loading and a convolution layer.

A PSF here is a non-negative-sum kernel of odd size along every axis, centred (its centre pixel
is the origin) and normalised to sum 1, so convolving with it preserves the mean intensity
and commutes with the affine ``(x - mean) / std`` normalisation of the network.

* :func:`gaussian_psf`: a sampled Gaussian ``exp(-d² / 2σ²)`` (the same sampling as
  ``scipy.ndimage.gaussian_filter``), 2D or 3D with its own ``σ_z``, truncated at ``radius``
  (default ``ceil(4σ)`` per axis, the scipy default) and renormalised.  ``σ = 0`` is a delta.
* :func:`load_psf`: a measured PSF from ``.npy`` or TIFF, 2D or 3D; centred on its brightest
  pixel and zero-padded to an odd size symmetric about it, optionally cropped to a radius,
  normalised to sum 1.  Files that cannot be normalised (all zero, non-positive sum, NaN/inf)
  are refused with a message naming the file.
* :class:`PSFConv`: ``s = z * h`` as a torch module; reflect padding keeps the output the size of
  the input (the same boundary rule the whole-image reference uses for the image itself).  A
  Gaussian PSF can learn ``log σ`` (and ``log σ_z`` in 3D) during training; the kernel size is
  fixed when the layer is built, so the learned kernel is truncated at the built radius.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: Gaussian truncation in σ (scipy's default): the mass left out is below 1e-4 per axis.
TRUNCATE = 4.0
#: Radius of a learnable Gaussian, in units of its initial σ: room to grow by 1.5x.
LEARNABLE_TRUNCATE = 6.0
#: A learnable σ is stored as ``log σ / LOG_SIGMA_GAIN``.  Adam moves a parameter by about the
#: learning rate per step whatever its gradient's size, so with the U-Net's rate (4e-4) a plain
#: ``log σ`` could change by only ~0.05 in a 200-step run; the gain lets σ travel a factor of
#: ~2-3 in such a run while the network's weights keep their own step size.
LOG_SIGMA_GAIN = 25.0


def _radii(
    sigmas: Sequence[float], radius: int | Sequence[int] | None, truncate: float
) -> tuple[int, ...]:
    if radius is None:
        return tuple(math.ceil(truncate * s) if s > 0 else 0 for s in sigmas)
    if isinstance(radius, int | np.integer):
        return (int(radius),) * len(sigmas)
    radii = tuple(int(r) for r in radius)
    if len(radii) != len(sigmas):
        raise ValueError(f"radius {radius} has {len(radii)} values for {len(sigmas)} axes")
    return radii


def _axis_sigmas(sigma: float, sigma_z: float | None, ndim: int) -> tuple[float, ...]:
    if ndim not in (2, 3):
        raise ValueError(f"PSFs are 2D or 3D, got ndim={ndim}")
    if sigma < 0 or (sigma_z is not None and sigma_z < 0):
        raise ValueError(f"PSF σ must be >= 0 pixels, got σ={sigma}, σ_z={sigma_z}")
    if ndim == 2:
        return (float(sigma), float(sigma))
    return (float(sigma if sigma_z is None else sigma_z), float(sigma), float(sigma))


def gaussian_psf(
    sigma: float,
    sigma_z: float | None = None,
    ndim: int = 2,
    radius: int | Sequence[int] | None = None,
) -> np.ndarray:
    """Normalised, centred Gaussian PSF.

    Parameters
    ----------
    sigma
        Standard deviation in Y/X (pixels); 0 gives a delta along Y/X.
    sigma_z
        Standard deviation along Z (3D only; None: ``sigma``).
    ndim
        2 (``yx``) or 3 (``zyx``).
    radius
        Half-size per axis (one int for all, or one per axis in ``zyx`` order); default
        ``ceil(4σ)`` per axis.

    Returns
    -------
    np.ndarray
        float64 kernel of shape ``2·radius + 1`` per axis, summing to 1.
    """
    sigmas = _axis_sigmas(sigma, sigma_z, ndim)
    radii = _radii(sigmas, radius, TRUNCATE)
    kernel = np.ones((1,) * ndim)
    for ax, (s, r) in enumerate(zip(sigmas, radii, strict=True)):
        d = np.arange(-r, r + 1, dtype=np.float64)
        g = np.exp(-0.5 * (d / s) ** 2) if s > 0 else (d == 0).astype(np.float64)
        shape = [1] * ndim
        shape[ax] = d.size
        kernel = kernel * (g / g.sum()).reshape(shape)
    return kernel / kernel.sum()


def _read_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    raise ValueError(f"{path}: unsupported PSF file type '{suffix}'; use a .npy or .tif/.tiff file")


def center_psf(kernel: np.ndarray, max_radius: int | None = None) -> np.ndarray:
    """Zero-pad ``kernel`` so its brightest pixel is the centre of an odd-sized array.

    Parameters
    ----------
    kernel
        Any-sized array (an even size has no centre pixel; padding gives it one).
    max_radius
        Crop to at most this radius around the peak (per axis).

    Returns
    -------
    np.ndarray
        float64, odd size along every axis, peak in the middle (not normalised).
    """
    k = np.asarray(kernel, dtype=np.float64)
    peak = np.unravel_index(int(np.argmax(k)), k.shape)
    pads, crops = [], []
    for p, n in zip(peak, k.shape, strict=True):
        r = max(p, n - 1 - p)
        if max_radius is not None:
            r = min(r, int(max_radius))
        lo, hi = p - r, p + r + 1  # wanted range in the file's coordinates
        crops.append(slice(max(lo, 0), min(hi, n)))
        pads.append((max(0, -lo), max(0, hi - n)))
    return np.pad(k[tuple(crops)], pads)


def load_psf(
    path: str | Path, ndim: int | None = None, max_radius: int | None = None
) -> np.ndarray:
    """Read a measured PSF (``.npy`` or TIFF, 2D or 3D), centred and normalised to sum 1.

    Parameters
    ----------
    path
        The file.  Singleton axes are dropped; what remains must be 2D (``yx``) or 3D (``zyx``).
    ndim
        Dimensionality wanted (the model's): see :func:`match_ndim`.  None keeps the file's.
    max_radius
        Crop to at most this radius around the peak.

    Raises
    ------
    ValueError
        Unsupported file type or dimensionality; NaN/inf values; all zeros; a sum <= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PSF file {path} does not exist")
    raw = np.squeeze(np.asarray(_read_array(path)))
    if raw.ndim not in (2, 3):
        raise ValueError(
            f"{path}: PSF has shape {raw.shape}; expected a 2D (y x) or 3D (z y x) array"
        )
    k = raw.astype(np.float64)
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{path}: PSF contains NaN or infinite values; fix or re-export the file")
    if not np.any(k):
        raise ValueError(f"{path}: PSF is all zeros; it cannot be normalised to sum 1")
    if k.sum() <= 0:
        raise ValueError(
            f"{path}: PSF sums to {k.sum():.4g} <= 0 (background over-subtracted?); "
            "a PSF must have a positive sum to be normalised"
        )
    if np.any(k < 0):
        log.warning("%s: PSF has negative values (min %.3g); kept as they are", path, k.min())
    k = center_psf(k, max_radius)
    if ndim is not None:
        k = match_ndim(k, ndim, where=str(path))
    if k.sum() <= 0:
        raise ValueError(
            f"{path}: PSF sums to {k.sum():.4g} <= 0 after cropping; use a larger radius"
        )
    return k / k.sum()


def match_ndim(kernel: np.ndarray, ndim: int, where: str = "PSF") -> np.ndarray:
    """A PSF for a model of ``ndim`` spatial axes.

    A 3D PSF for a 2D model keeps its central (in-focus) plane; a 2D PSF for a 3D model acts
    within each plane (Z extent 1).  The result is renormalised to sum 1.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim == ndim:
        return k
    if k.ndim == 3 and ndim == 2:
        k = k[k.shape[0] // 2]
    elif k.ndim == 2 and ndim == 3:
        k = k[None]
    else:
        raise ValueError(f"{where}: cannot use a {k.ndim}D PSF for a {ndim}D model")
    if k.sum() <= 0:
        raise ValueError(f"{where}: the in-focus plane of the PSF sums to {k.sum():.4g} <= 0")
    return k / k.sum()


class PSFConv(nn.Module):
    """``s = z * h``: convolution of ``(N, C, *spatial)`` with a PSF, same size out.

    Build with :meth:`gaussian`, :meth:`from_kernel` or :meth:`from_meta`.  Borders are
    reflect-padded (replicate where an axis is too short to reflect).

    Attributes
    ----------
    ndim
        Spatial dimensionality (2 or 3).
    radii
        Kernel half-size per axis (``zyx`` order in 3D).
    learnable
        True when ``log σ`` is a trainable parameter.
    log_sigma
        Gaussian only: ``log σ / gain`` for Y/X (and Z in 3D); ``gain`` is
        :data:`LOG_SIGMA_GAIN` when learnable, else 1.
    """

    def __init__(
        self,
        ndim: int,
        radii: Sequence[int],
        kernel: np.ndarray | None = None,
        sigmas: Sequence[float] | None = None,
        learnable: bool = False,
    ) -> None:
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"PSFConv is 2D or 3D, got ndim={ndim}")
        self.ndim = int(ndim)
        self.radii = tuple(int(r) for r in radii)
        self.learnable = bool(learnable)
        self.kind = "file" if kernel is not None else "gaussian"
        if kernel is not None:
            k = torch.as_tensor(np.asarray(kernel, dtype=np.float32))
            if k.ndim != ndim or tuple(k.shape) != tuple(2 * r + 1 for r in self.radii):
                raise ValueError(
                    f"kernel of shape {tuple(k.shape)} does not match radii {self.radii}"
                )
            self.register_buffer("fixed_kernel", k)
            self.log_sigma = None
            self.gain = 1.0
        else:
            assert sigmas is not None
            self.register_buffer("fixed_kernel", None)
            # One σ for Y/X, one for Z in 3D; stored as log so it stays positive when learned.
            values = [sigmas[-1]] if ndim == 2 else [sigmas[-1], sigmas[0]]
            if learnable and min(values) <= 0:
                raise ValueError("a learnable PSF needs σ > 0 to start from")
            self.gain = LOG_SIGMA_GAIN if learnable else 1.0
            logs = torch.tensor([math.log(v) if v > 0 else -math.inf for v in values])
            self.log_sigma = nn.Parameter(logs / self.gain, requires_grad=learnable)

    # ------------------------------------------------------------------ construction
    @classmethod
    def gaussian(
        cls,
        sigma: float,
        sigma_z: float | None = None,
        ndim: int = 2,
        radius: int | Sequence[int] | None = None,
        learnable: bool = False,
    ) -> PSFConv:
        """Gaussian PSF layer; ``radius`` default ``ceil(4σ)`` (``ceil(6σ)`` when learnable)."""
        sigmas = _axis_sigmas(sigma, sigma_z, ndim)
        radii = _radii(sigmas, radius, LEARNABLE_TRUNCATE if learnable else TRUNCATE)
        return cls(ndim, radii, sigmas=sigmas, learnable=learnable)

    @classmethod
    def from_kernel(cls, kernel: np.ndarray) -> PSFConv:
        """Fixed PSF layer from a centred, odd-sized kernel (normalised here to sum 1)."""
        k = np.asarray(kernel, dtype=np.float64)
        if any(n % 2 == 0 for n in k.shape):
            raise ValueError(
                f"PSF kernel of shape {k.shape} has an even size; centre it (center_psf)"
            )
        if not np.all(np.isfinite(k)) or k.sum() <= 0:
            raise ValueError("PSF kernel must be finite with a positive sum")
        return cls(k.ndim, tuple(n // 2 for n in k.shape), kernel=k / k.sum())

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> PSFConv:
        """Rebuild the (fixed) layer a model was trained with from :meth:`meta`."""
        if meta.get("kind") == "file":
            return cls.from_kernel(np.asarray(meta["kernel"], dtype=np.float64))
        if meta.get("kind") != "gaussian":
            raise ValueError(f"unknown PSF kind {meta.get('kind')!r} in the model metadata")
        ndim = int(meta["ndim"])
        return cls.gaussian(float(meta["sigma"]), meta.get("sigma_z"), ndim, meta["radii"][-ndim:])

    # ------------------------------------------------------------------ properties
    @property
    def radius(self) -> int:
        """Largest half-size over the axes: the extra halo the PSF needs."""
        return max(self.radii)

    @property
    def sigma(self) -> float | None:
        """Current Y/X σ in pixels (None for a file PSF)."""
        return (
            None
            if self.log_sigma is None
            else float(torch.exp(self.gain * self.log_sigma[0].detach()))
        )

    @property
    def sigma_z(self) -> float | None:
        """Current Z σ in pixels (3D Gaussian only)."""
        if self.log_sigma is None or self.ndim == 2:
            return None
        return float(torch.exp(self.gain * self.log_sigma[1].detach()))

    def kernel(self) -> torch.Tensor:
        """The PSF as a ``(*2·radii+1)`` tensor summing to 1 (differentiable in ``log σ``)."""
        if self.fixed_kernel is not None:
            return self.fixed_kernel
        assert self.log_sigma is not None
        sig = torch.exp(self.gain * self.log_sigma)
        per_axis = [sig[1] if (self.ndim == 3 and ax == 0) else sig[0] for ax in range(self.ndim)]
        k: torch.Tensor | None = None
        for ax, (s, r) in enumerate(zip(per_axis, self.radii, strict=True)):
            d = torch.arange(-r, r + 1, dtype=sig.dtype, device=sig.device)
            if float(s.detach()) > 0:
                g = torch.exp(-0.5 * (d / s) ** 2)
            else:
                g = (d == 0).to(sig.dtype)
            g = g / g.sum()
            shape = [1] * self.ndim
            shape[ax] = d.numel()
            k = g.reshape(shape) if k is None else k * g.reshape(shape)
        assert k is not None
        return k

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Convolve ``z`` ``(N, C, *spatial)`` with the PSF (each channel alone)."""
        if z.ndim != self.ndim + 2:
            raise ValueError(
                f"PSFConv{self.ndim}D expects (N, C, *spatial), got shape {tuple(z.shape)}"
            )
        if self.radius == 0:
            return z
        k = self.kernel().to(dtype=z.dtype, device=z.device)
        c = z.shape[1]
        weight = k.expand(c, 1, *k.shape)
        pad: list[int] = []
        for r in reversed(self.radii):  # F.pad lists the last axis first
            pad += [r, r]
        short = any(r >= n for r, n in zip(self.radii, z.shape[2:], strict=True))
        zp = F.pad(z, pad, mode="replicate" if short else "reflect")
        conv = F.conv2d if self.ndim == 2 else F.conv3d
        return conv(zp, weight, groups=c)

    def meta(self) -> dict[str, Any]:
        """JSON description (learned σ included) that :meth:`from_meta` rebuilds."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "ndim": self.ndim,
            "radii": list(self.radii),
            "radius": self.radius,
        }
        if self.kind == "gaussian":
            out.update(sigma=self.sigma, sigma_z=self.sigma_z, learnable=self.learnable)
        else:
            out["kernel"] = self.kernel().double().cpu().numpy().tolist()
        return out

    def extra_repr(self) -> str:
        if self.kind == "file":
            return f"file, radii={self.radii}"
        return f"gaussian σ={self.sigma:.3f}, σ_z={self.sigma_z}, radii={self.radii}, learnable={self.learnable}"


def kernel_from_meta(meta: dict[str, Any]) -> np.ndarray:
    """The PSF a model was trained with, from its ``meta["objective"]["psf"]`` (for reports).

    Returns
    -------
    np.ndarray
        float64 kernel (``yx`` or ``zyx``), summing to 1; a Gaussian at its learned σ.
    """
    return PSFConv.from_meta(meta).kernel().detach().double().cpu().numpy()
