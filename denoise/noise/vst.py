"""The generalised Anscombe transform of the Poisson-Gaussian model and its unbiased inverse.

Used by the classical methods (BM3D+VST) and by the noise stage's correlation check, which
measures the noise of the stabilised plane (:mod:`denoise.noise.correlation`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["anscombe_forward", "anscombe_inverse"]


def anscombe_forward(x: np.ndarray, gain: float, read_var: float, offset: float) -> np.ndarray:
    """Generalised Anscombe transform: noise of variance ``gain·(s − offset) + read_var`` → ≈ 1.

    ``z = (2 / gain) · sqrt(max(gain·x + 3/8·gain² + read_var − gain·offset, 0))``.
    """
    arg = gain * np.asarray(x, dtype=np.float64) + 0.375 * gain * gain + read_var - gain * offset
    return (2.0 / gain) * np.sqrt(np.maximum(arg, 0.0))


def anscombe_inverse(d: np.ndarray, gain: float, read_var: float, offset: float) -> np.ndarray:
    """Unbiased inverse of :func:`anscombe_forward` (closed-form approximation, Mäkitalo & Foi).

    In photon units ``x̃ = (x − offset)/gain`` with ``σ̃² = read_var/gain²`` the inverse of
    ``D = E[2·sqrt(x̃ + 3/8 + σ̃²)]`` is approximated by the exact unbiased Anscombe inverse
    ``D²/4 + √(3/2)/(4D) − 11/(8D²) + 5√(3/2)/(8D³) − 1/8`` minus ``σ̃²``, floored at 0 (the
    level cannot fall below the black level).  ``D`` below ``2·√(3/8)`` (where the expansion
    reaches 0 and then turns back up) maps to 0.
    """
    dd = np.maximum(np.asarray(d, dtype=np.float64), 2.0 * math.sqrt(0.375))
    r = math.sqrt(1.5)
    photons = 0.25 * dd**2 + 0.25 * r / dd - 1.375 / dd**2 + 0.625 * r / dd**3 - 0.125
    photons = np.maximum(photons - read_var / (gain * gain), 0.0)
    return gain * photons + offset
