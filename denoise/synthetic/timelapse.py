"""Synthetic dynamic time-lapses with a ground truth for every frame (issue 17).

The parameters are fixed here, before any method is measured on them, and documented in
:class:`TimeLapseParams`; benchmarks use the speeds :data:`SPEEDS` and the seeds
:data:`BENCHMARK_SEEDS`.  One series per speed:

- **Texture**: a random field with a power-law spectrum (white noise times
  ``(f² + texture_f0²)^(−texture_beta / 2)``: structure at every scale, like cells and
  organelles), blurred by a Gaussian PSF of ``texture_psf_sigma`` px (which makes it
  band-limited), periodic over ``texture_period`` px and mapped linearly onto
  ``texture_range`` ADU above the offset; it is translated by ``speed`` px/frame along
  ``direction_deg`` (0° = +x, 90° = +y).  Sub-pixel shifts are Fourier shifts of the periodic
  texture (exact for a band-limited field); the frame is its top-left ``size × size`` crop, so
  the field's period (twice the frame) is never seen twice in one frame.
- **Bright objects**: ``n_objects`` Gaussian blobs (σ ``object_sigma`` px, peak
  ``object_amplitude`` ADU), each moving on its own straight line at ``speed × U(0.5, 1.5)``
  px/frame in a random direction (evaluated analytically at sub-pixel positions): at speed 0
  they stand still.
- **Transients** (calcium-like): ``n_transients`` Gaussian spots (σ ``transient_sigma`` px) at
  fixed positions; each is 0 before its onset frame (drawn in ``[2, frames − 6]``), jumps to
  ``transient_amplitude`` ADU at the onset (the rise takes one frame) and decays as
  ``exp(−(t − onset) / transient_tau)``.
- **Bleaching**: the whole signal (texture, objects, transients) is multiplied by
  ``exp(−t / bleach_tau)``, strictly decreasing.
- **Noise**: Poisson-Gaussian, ``x = offset + gain · Poisson(u / gain) + N(0, read_sd²)`` with
  ``u = s − offset`` the signal above the offset, so ``Var[x | s] = gain · (s − offset) +
  read_sd²`` (the project's noise model, :func:`noise_params`).  Values are not quantised.

Speed 0 is a static scene apart from the transients and the bleaching.  Every draw comes from
``numpy.random.default_rng(seed)`` in a fixed order: the same seed gives the same series on
every machine that has the same numpy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Texture speeds of the benchmark series (px/frame).
SPEEDS: tuple[float, ...] = (0.0, 0.5, 2.0, 5.0)
#: Seeds of the benchmark series.
BENCHMARK_SEEDS: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class TimeLapseParams:
    """Every parameter of a synthetic series (defaults fixed for benchmarks; see module)."""

    frames: int = 16
    size: int = 128
    speed: float = 0.0
    direction_deg: float = 30.0
    texture_period: int = 256
    texture_beta: float = 1.0
    texture_f0: float = 1 / 64
    texture_psf_sigma: float = 1.0
    texture_range: tuple[float, float] = (10.0, 160.0)
    n_objects: int = 4
    object_sigma: float = 2.0
    object_amplitude: float = 150.0
    n_transients: int = 3
    transient_sigma: float = 3.0
    transient_amplitude: float = 200.0
    transient_tau: float = 3.0
    bleach_tau: float = 60.0
    offset: float = 100.0
    gain: float = 2.0
    read_sd: float = 4.0

    def __post_init__(self) -> None:
        if self.frames < 12:
            raise ValueError(f"a synthetic time-lapse has at least 12 frames, got {self.frames}")
        if self.texture_period < self.size:
            raise ValueError("texture_period must be at least the frame size")
        if self.speed < 0:
            raise ValueError(f"speed must be >= 0 px/frame, got {self.speed}")


@dataclass
class TimeLapse:
    """A synthetic series: ``noisy`` and ``truth`` ``(t, y, x)`` float32 and what made them."""

    noisy: np.ndarray
    truth: np.ndarray
    params: TimeLapseParams
    seed: int
    #: ``(dy, dx)`` texture shift per frame (px)
    velocity: tuple[float, float]
    #: bleaching factor per frame, ``exp(−t / bleach_tau)``
    bleach: np.ndarray
    #: per object: ``(y0, x0)``, ``(vy, vx)`` px/frame
    objects: list[dict[str, Any]] = field(default_factory=list)
    #: per transient: ``position`` ``(y, x)``, ``onset`` frame, ``trace`` (before bleaching)
    transients: list[dict[str, Any]] = field(default_factory=list)

    def noise_params(self) -> dict[str, float]:
        """``{"gain", "read_var", "offset"}`` of the noise (:func:`noise_params`)."""
        return noise_params(self.params)

    def describe(self) -> dict[str, Any]:
        """The parameters, seed and velocity as plain JSON-able values."""
        return {**asdict(self.params), "seed": self.seed, "velocity": list(self.velocity)}


def noise_params(params: TimeLapseParams) -> dict[str, float]:
    """The series' noise as the project's Poisson-Gaussian parameters."""
    return {"gain": params.gain, "read_var": params.read_sd**2, "offset": params.offset}


def texture(params: TimeLapseParams, rng: np.random.Generator) -> np.ndarray:
    """The periodic band-limited texture (``texture_period²``), in ADU above the offset."""
    n = params.texture_period
    f = np.fft.fftfreq(n)
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    shape = (f2 + params.texture_f0**2) ** (-params.texture_beta / 2)
    psf = np.exp(-2 * math.pi**2 * params.texture_psf_sigma**2 * f2)
    spectrum = np.fft.fft2(rng.standard_normal((n, n))) * shape * psf
    field_ = np.fft.ifft2(spectrum).real
    lo, hi = params.texture_range
    return lo + (hi - lo) * (field_ - field_.min()) / (field_.max() - field_.min())


def shifted_crop(tex_f: np.ndarray, dy: float, dx: float, size: int) -> np.ndarray:
    """The top-left ``size²`` crop of the periodic texture (given by its FFT) moved by ``(dy, dx)``."""
    n = tex_f.shape[0]
    f = np.fft.fftfreq(n)
    phase = np.exp(-2j * math.pi * (f[:, None] * dy + f[None, :] * dx))
    return np.fft.ifft2(tex_f * phase).real[:size, :size]


def _blob(yy: np.ndarray, xx: np.ndarray, y: float, x: float, sigma: float) -> np.ndarray:
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))


def _draw_objects(p: TimeLapseParams, rng: np.random.Generator) -> list[dict[str, Any]]:
    out = []
    for _ in range(p.n_objects):
        y0, x0 = rng.uniform(0.15 * p.size, 0.85 * p.size, 2)
        v = p.speed * rng.uniform(0.5, 1.5)
        a = rng.uniform(0, 2 * math.pi)
        out.append({"start": (float(y0), float(x0)), "velocity": (v * math.sin(a), v * math.cos(a))})
    return out


def _draw_transients(p: TimeLapseParams, rng: np.random.Generator) -> list[dict[str, Any]]:
    out = []
    t = np.arange(p.frames)
    for _ in range(p.n_transients):
        y, x = rng.uniform(0.1 * p.size, 0.9 * p.size, 2)
        onset = int(rng.integers(2, p.frames - 5))
        trace = np.where(t >= onset, np.exp(-(t - onset) / p.transient_tau), 0.0)
        out.append({"position": (float(y), float(x)), "onset": onset, "trace": trace})
    return out


def timelapse(speed: float = 0.0, seed: int = 0, **overrides: Any) -> TimeLapse:
    """One synthetic series (see the module docstring); ``overrides`` change :class:`TimeLapseParams`."""
    p = TimeLapseParams(speed=float(speed), **overrides)
    rng = np.random.default_rng(seed)
    tex_f = np.fft.fft2(texture(p, rng))
    objects = _draw_objects(p, rng)
    transients = _draw_transients(p, rng)
    a = math.radians(p.direction_deg)
    vy, vx = p.speed * math.sin(a), p.speed * math.cos(a)
    bleach = np.exp(-np.arange(p.frames) / p.bleach_tau)
    yy, xx = np.mgrid[0 : p.size, 0 : p.size].astype(np.float64)
    spots = [_blob(yy, xx, *tr["position"], p.transient_sigma) for tr in transients]
    truth = np.empty((p.frames, p.size, p.size), dtype=np.float64)
    for t in range(p.frames):
        u = shifted_crop(tex_f, vy * t, vx * t, p.size)
        for ob in objects:
            (y0, x0), (oy, ox) = ob["start"], ob["velocity"]
            u += p.object_amplitude * _blob(yy, xx, y0 + oy * t, x0 + ox * t, p.object_sigma)
        for tr, spot in zip(transients, spots, strict=True):
            u += p.transient_amplitude * tr["trace"][t] * spot
        truth[t] = p.offset + bleach[t] * u
    u = np.maximum(truth - p.offset, 0.0)
    noisy = p.offset + p.gain * rng.poisson(u / p.gain) + rng.normal(0.0, p.read_sd, truth.shape)
    return TimeLapse(
        noisy=noisy.astype(np.float32), truth=truth.astype(np.float32), params=p, seed=seed,
        velocity=(vy, vx), bleach=bleach, objects=objects, transients=transients,
    )


def benchmark_series(**overrides: Any) -> list[TimeLapse]:
    """Every benchmark series: one per speed in :data:`SPEEDS` and seed in :data:`BENCHMARK_SEEDS`."""
    return [timelapse(v, s, **overrides) for v in SPEEDS for s in BENCHMARK_SEEDS]
