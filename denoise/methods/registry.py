"""Which methods exist, what they output, and how to build their predictors.

The CLI asks this module for a predictor; each method's own module is imported only when
that method is used, so optional dependencies (``bm3d``) are needed only by their method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from denoise.config import METHODS, TRAINED_METHODS, PredictConfig


class UnknownMethodError(ValueError):
    """A method name that this version does not provide."""


def check_method(method: str) -> str:
    """Return ``method`` or raise naming the known methods."""
    if method not in METHODS:
        raise UnknownMethodError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    return method


def needs_training(method: str) -> bool:
    """True when the method has a separate ``train`` stage."""
    return check_method(method) in TRAINED_METHODS


def output_names(method: str) -> tuple[str, ...]:
    """Names of the images the method writes (one OME-Zarr store each)."""
    check_method(method)
    if method == "pn2v":
        return ("denoised", "uncertainty")
    if method == "deconoising":
        return ("denoised", "deconvolved")
    return ("denoised",)


def build_predictor(
    method: str,
    cfg: PredictConfig,
    seed: int,
    model_dir: str | Path | None = None,
    noise_model: dict[str, Any] | None = None,
) -> Any:
    """Build the TiledPredictor / PlanePredictor for ``method``.

    Parameters
    ----------
    model_dir
        Trained model directory (methods with a train stage).
    noise_model
        The ``noise_model`` stage's JSON (Poisson-Gaussian parameters per channel), used by the
        classical baselines' variance-stabilising transform and no-reference σ choice.
    """
    check_method(method)
    if method in TRAINED_METHODS:
        if model_dir is None:
            raise ValueError(f"method '{method}' needs a trained model directory")
        if method == "pn2v":
            from denoise.methods.pn2v import PN2VPredictor

            return PN2VPredictor.from_model_dir(model_dir, cfg)
        if method == "deconoising":
            from denoise.methods.deconoising import DecoNoisingPredictor

            return DecoNoisingPredictor.from_model_dir(model_dir, cfg)
        from denoise.predict.network import NetworkPredictor

        return NetworkPredictor.from_model_dir(model_dir, cfg)
    if method == "noise2fast":
        from denoise.methods.noise2fast import Noise2FastPredictor

        return Noise2FastPredictor(cfg, seed=seed)
    from denoise.methods import classical

    if method == "gaussian":
        return classical.GaussianPredictor(cfg.gaussian_sigma, noise_model)
    return classical.Bm3dVstPredictor(noise_model)
