"""``window_bm3d_vst``: the classical temporal baseline for time-lapses (issue 17).

Frame ``t`` is estimated from the sliding-window mean of frames ``t − k … t + k`` (reflected at
the series' ends by the prediction runner, ``docs/architecture.md``: the window holds
``2k + 1`` entries, some of them the same frame near the ends), denoised by BM3D after the
generalised Anscombe transform (:func:`denoise.methods.classical.bm3d_vst`, the code path of
``bm3d_vst``) with the noise model *of the mean*:

For independent frames of one static signal ``s`` with ``Var[x | s] = gain·(s − offset) +
read_var``, a weighted mean ``Σ w_j x_j`` (``Σ w_j = 1``, one weight per distinct frame) has
``Var = Σ w_j² · (gain·(s − offset) + read_var) = (gain·(s − offset) + read_var) / n_eff`` with
``n_eff = 1 / Σ w_j²``, i.e. the same Poisson-Gaussian form with

    gain' = gain / n_eff,    read_var' = read_var / n_eff,    offset' = offset

(:func:`mean_noise_params`).  Inside the series all ``2k + 1`` frames are distinct and
``n_eff = 2k + 1``; near the ends reflected entries repeat a frame (frame 0 with ``k = 2``
averages frames 2, 1, 0, 1, 2: weights 1/5, 2/5, 2/5, ``n_eff = 25/9``).  Repeated entries are
recognised by equality (:func:`window_mean`).

BM3D gets the noise power spectrum where the mean's noise is clearly spatially correlated
(``noise_psd="auto"`` of :func:`denoise.methods.classical.bm3d_vst`, the gate of
:mod:`denoise.noise.correlation`); white otherwise.

The rule assumes the scene does not change within the window: motion blurs the mean, which the
noise model does not know (the ``spatiotemporal`` network is meant to learn how much to trust
each frame).  ``k`` defaults to 3, the same as ``spatiotemporal`` (measured: ``benchmarks/st_fmd.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from pydantic import Field

from denoise.methods.classical import bm3d_vst, import_bm3d
from denoise.methods.registry import MethodSpec
from denoise.noise.poisson_gaussian import channel_params
from denoise.settings import Strict

log = logging.getLogger(__name__)


def mean_noise_params(p: dict[str, float], n_eff: float) -> dict[str, float]:
    """Poisson-Gaussian parameters of a mean of ``n_eff`` (effective) independent frames:
    ``gain / n_eff``, ``read_var / n_eff``, the same ``offset`` (module docstring)."""
    if not n_eff >= 1:
        raise ValueError(f"a mean of frames has n_eff >= 1, got {n_eff}")
    return {"gain": p["gain"] / n_eff, "read_var": p["read_var"] / n_eff, "offset": p["offset"]}


def window_mean(window: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean of the window's ``2k + 1`` entries and its ``n_eff = 1 / Σ w_j²`` over distinct
    frames (entries equal to an earlier one are the same frame, reflected)."""
    w = np.asarray(window, dtype=np.float64)
    counts: list[int] = []
    firsts: list[int] = []
    for i in range(w.shape[0]):
        for g, j in enumerate(firsts):
            if np.array_equal(w[i], w[j]):
                counts[g] += 1
                break
        else:
            firsts.append(i)
            counts.append(1)
    weights = np.asarray(counts, dtype=np.float64) / w.shape[0]
    return w.mean(axis=0), float(1.0 / np.sum(weights**2))


class WindowBm3dVstPredictor:
    """PlanePredictor with ``halo_t = k``: BM3D+VST of the ``2k + 1``-frame window mean.

    Parameters
    ----------
    noise_params
        A full noise-model result (``index["c"]`` selects the channel) or one channel's
        ``{"gain", "read_var", "offset"}`` (of single raw frames).
    k
        Frames each side.
    """

    ndim = 2
    kind = "plane"
    output_names: tuple[str, ...] = ("denoised",)

    def __init__(self, noise_params: dict[str, Any] | None, k: int = 2) -> None:
        if noise_params is None:
            raise ValueError(
                "method window_bm3d_vst needs the fitted noise model (gain, read_var, offset): "
                "run the noise_model stage first and pass its JSON"
            )
        if k < 1:
            raise ValueError(f"window_bm3d_vst needs k >= 1 frames each side, got {k}")
        channel_params(noise_params, 0)  # validate early, with a clear message
        self.noise_params = noise_params
        self.halo_t = int(k)
        self._bm3d = import_bm3d("window_bm3d_vst")
        #: Per frame (key: sorted ``index`` items as text): ``n_eff`` and seconds.
        self.info: dict[str, dict[str, float]] = {}

    def __call__(self, window: np.ndarray, index: dict[str, int]) -> np.ndarray:
        w = np.asarray(window)
        if w.ndim != 3 or w.shape[0] != 2 * self.halo_t + 1:
            raise ValueError(
                f"WindowBm3dVstPredictor needs ({2 * self.halo_t + 1}, y, x) windows, got {w.shape}"
            )
        t0 = time.perf_counter()
        mean, n_eff = window_mean(w)
        p = mean_noise_params(channel_params(self.noise_params, int(index.get("c", 0))), n_eff)
        out = bm3d_vst(mean, p, self._bm3d)
        key = ",".join(f"{a}={v}" for a, v in sorted(index.items())) or "plane"
        self.info[key] = {"n_eff": n_eff, "seconds": time.perf_counter() - t0}
        return out.astype(np.float32)[None]


class WindowBm3dVstSettings(Strict):
    """``methods.window_bm3d_vst``: the temporal classical baseline."""

    k: int = Field(
        3, ge=1, le=16,
        description="Frames each side of the sliding-window mean (2k+1 frames; 3, the same as "
        "spatiotemporal's: best of 1/2/3 on the FMD Confocal 4-frame fields of view).",
    )


METHODS = (
    MethodSpec(
        name="window_bm3d_vst",
        kind="classical",
        summary=(
            "time-lapses: mean of 2k+1 neighbouring frames (reflected ends), then BM3D+VST with "
            "the noise model of that mean (gain/n, read_var/n)"
        ),
        settings=WindowBm3dVstSettings,
        predictor=lambda r: WindowBm3dVstPredictor(r.noise_model, r.settings.k),
        needs=frozenset({"frames"}),
    ),
)
