"""The default method of an empty ``method`` cell: chosen from the input's axes and size.

A dataset row whose ``method`` cell is empty (or ``auto``) gets a method chosen from the
input's header alone (:func:`denoise.io.readers.probe_input`: axes and shape, no pixels read),
by :func:`choose_method`, with the rules and their settings in ``auto_method`` of the workflow
config (:class:`AutoMethodConfig`):

1. a time-lapse (a ``t`` axis of at least 2 frames) gets ``time_lapse`` (``spatiotemporal``:
   the network that sees the neighbouring frames);
2. any other input (single images, ``z`` stacks, channels) up to ``large_mpix`` megapixels gets
   ``single_image`` (``bm3d_vst``: on every single-image set measured it beats every network we
   train on a CPU budget: the five FMD confocal pairs 33.85 dB vs 33.69 for DecoNoising,
   33.46 Noise2Fast and 33.37 N2V; the Confocal test frames 34.44 vs 34.02; the held-out
   wide-field images 31.89 / 35.95 vs 31.11 / 34.60 for the best network; issue 19);
3. larger inputs get ``large_image`` (``n2v``): measured through the prediction stage on 2
   cores, ``bm3d_vst`` runs at 0.041 MPix/s (6.4 s per 512² plane), 14× N2V's tiled prediction
   time (0.59 MPix/s), so above ``large_mpix`` the default keeps N2V's prediction time: a
   terabyte of uint16 takes ~240 h on 2 cores instead of ~3,400 h
   (``benchmarks/auto_throughput.py``).

Each rule is a setting: set one to another registered method to switch it off (e.g.
``single_image: n2v``); ``enabled: false`` makes an empty cell an error naming the row instead.
The choice and its reason are logged and kept with the row (:attr:`Choice.reason`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field, field_validator

from denoise.methods.registry import get_method
from denoise.settings import Strict

#: The ``method`` cell value (or an empty cell) that asks for the automatic choice.
AUTO = "auto"


class AutoMethodConfig(Strict):
    """``auto_method``: what an empty ``method`` cell of the dataset sheet chooses."""

    enabled: bool = Field(
        True,
        description="Choose a method for rows with an empty method cell (false: such rows are "
        "an error naming the row).",
    )
    time_lapse: str = Field(
        "spatiotemporal", description="Method for inputs with a t axis of at least 2 frames."
    )
    single_image: str = Field(
        "bm3d_vst",
        description="Method for other inputs (single images, z stacks) up to large_mpix.",
    )
    large_image: str = Field(
        "n2v", description="Method for non-time-lapse inputs above large_mpix megapixels."
    )
    large_mpix: float = Field(
        64.0,
        gt=0,
        description="Size (megapixels, all axes) above which single images and stacks get "
        "large_image, whose prediction is cheaper per pixel.",
    )

    @field_validator("time_lapse", "single_image", "large_image")
    @classmethod
    def _registered(cls, v: str) -> str:
        get_method(v)  # raises naming the registered methods
        return v


@dataclass(frozen=True)
class Choice:
    """The method chosen for one input, and why (for logs and provenance)."""

    method: str
    reason: str


def choose_method(
    axes: str, shape: tuple[int, ...], cfg: AutoMethodConfig, group: str = ""
) -> Choice:
    """The method of :class:`AutoMethodConfig`'s rules for an input of ``axes`` and ``shape``.

    A row of a sheet ``group`` (one model trained for all its rows) that is not a time-lapse
    gets ``large_image`` (a trained method), since a classical method has no model to share.
    """
    n_t = shape[axes.index("t")] if "t" in axes else 1
    mpix = math.prod(shape) / 1e6
    if n_t >= 2:
        return Choice(cfg.time_lapse, f"auto: time-lapse ({n_t} frames)")
    if group and not get_method(cfg.single_image).trained:
        return Choice(
            cfg.large_image, f"auto: group '{group}' shares one trained model ({mpix:.2f} MPix)"
        )
    if mpix > cfg.large_mpix:
        return Choice(
            cfg.large_image,
            f"auto: {mpix:.0f} MPix, above auto_method.large_mpix = {cfg.large_mpix:g}",
        )
    return Choice(cfg.single_image, f"auto: single image or stack ({mpix:.2f} MPix)")
