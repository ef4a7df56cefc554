"""DecoNoising (Goncharova et al. 2020): blind-spot denoising through a PSF, deconvolution for free.

The U-Net predicts the phantom ``z`` (fluorophore density); the denoised signal is ``s = z * h``
with the PSF ``h`` (:mod:`denoise.models.psf`).  Training reuses the N2V loop
(:func:`denoise.methods.n2v.train_n2v`) with :class:`DecoNoisingObjective`:

* loss = masked MSE between ``s`` and the ORIGINAL noisy value at the blind spots (normalised
  units, as N2V) + ``λ · mean(max(0, −z_raw)) / std`` over all pixels.  The positivity is
  judged in raw intensities (``z_raw = z·std + mean``: zero fluorophores is raw 0, not the data
  mean); dividing by ``std`` puts it on the scale of the normalised MSE, the balance of the
  authors' implementation (raw MSE / std² + λ · raw penalty / std), so ``λ = 1`` means what it
  means in the paper for any intensity range.  The penalty uses the normalisation the loop
  binds (the first channel's statistics for multi-channel data).
* ``s`` is computed with reflect padding at the patch border (as the authors do); blind spots
  near the border therefore see a mirrored ``z``, a small approximation during training only.
* With ``learn_psf`` the Gaussian's ``log σ`` (and ``log σ_z`` in 3D) is an extra parameter of
  the same Adam; the learned σ is saved in the model metadata (``meta["objective"]["psf"]``).

Prediction (:class:`DecoNoisingPredictor`) gives two outputs: ``denoised`` (``s``) and
``deconvolved`` (``z``).  Each tile's ``z`` comes from the wrapped
:class:`~denoise.predict.network.NetworkPredictor`; ``s`` is convolved inside the tile.  The
halo is the network's receptive field plus the PSF radius, rounded up to the pooling lattice,
so every kept ``s`` pixel sees only exact ``z`` values and tiled output equals the whole-image
reference (:meth:`DecoNoisingPredictor.predict_whole`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from denoise.io import omezarr
from denoise.methods.n2v import train_n2v
from denoise.methods.patches import choose_ndim
from denoise.methods.registry import MethodSpec, TrainRequest
from denoise.models.psf import PSFConv, load_psf, match_ndim
from denoise.models.store import load_model
from denoise.predict.network import NetworkPredictor
from denoise.predict.reference import predict_whole_image
from denoise.settings import PredictConfig, Strict, TrainConfig
from denoise.tiling.grid import round_up

log = logging.getLogger(__name__)

NAME = "deconoising"
OUTPUT_NAMES = ("denoised", "deconvolved")


class DecoNoisingSettings(Strict):
    """``methods.deconoising``: the PSF and the positivity penalty."""

    psf_sigma: float = Field(1.0, ge=0, description="Gaussian PSF σ in Y/X (pixels).")
    psf_sigma_z: float | None = Field(
        None, ge=0, description="PSF σ along Z for 3D data (None: same as psf_sigma)."
    )
    learn_psf: bool = Field(False, description="Learn the PSF σ during training.")
    positivity: float = Field(
        1.0, ge=0, description="Weight λ of the positivity penalty mean(max(0, −z))."
    )


def build_psf(cfg: DecoNoisingSettings, ndim: int, psf_path: str | Path | None = None) -> PSFConv:
    """The PSF layer a training run uses: the measured file when given, else a Gaussian.

    ``cfg.learn_psf`` applies to Gaussian PSFs only (a measured PSF is taken as it is).
    """
    if psf_path:
        if cfg.learn_psf:
            log.warning(
                "%s: learn_psf applies to Gaussian PSFs; the measured PSF stays fixed", psf_path
            )
        return PSFConv.from_kernel(load_psf(psf_path, ndim=ndim))
    return PSFConv.gaussian(cfg.psf_sigma, cfg.psf_sigma_z, ndim, learnable=cfg.learn_psf)


def _kernel_digest(psf: PSFConv) -> str:
    """Identity of a fixed PSF (file kernels), to refuse resuming with another file."""
    if psf.kind != "file":
        return "gaussian"
    return hashlib.sha256(psf.kernel().double().cpu().numpy().tobytes()).hexdigest()


class DecoNoisingObjective:
    """The DecoNoising training objective (the :class:`~denoise.methods.objectives.Objective` protocol).

    Parameters
    ----------
    psf
        The PSF layer (fixed, or Gaussian with learnable σ).
    positivity
        λ of the positivity penalty (paper: 1; 0 switches it off).
    """

    name = NAME
    out_channels = 1

    def __init__(self, psf: PSFConv, positivity: float = 1.0) -> None:
        if positivity < 0:
            raise ValueError(f"positivity weight must be >= 0, got {positivity}")
        self.psf = psf
        self.positivity = float(positivity)
        self.mean, self.std = 0.0, 1.0

    def bind(self, mean: float, std: float, device: torch.device) -> None:
        """Take the normalisation (raw = norm·std + mean) and move the PSF to ``device``."""
        self.mean, self.std = float(mean), float(std) if std > 0 else 1.0
        self.psf.to(device)

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """The learnable ``log σ`` when the PSF learns, else nothing."""
        return [p for p in self.psf.parameters() if p.requires_grad]

    def signal(self, out: torch.Tensor) -> torch.Tensor:
        """``s = z * h`` for the network output (normalised units)."""
        return self.psf(out)

    def loss(self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked MSE on ``s`` + ``λ · mean(relu(−z_raw)) / std``."""
        s = self.signal(out)
        diff = (s - target)[mask]
        mse = (diff * diff).mean()
        if self.positivity == 0:
            return mse
        # relu(-(z·std + mean)) / std = relu(-z - mean/std): the raw-unit penalty on the MSE's scale
        neg = torch.relu(-out - self.mean / self.std).mean()
        return mse + self.positivity * neg

    def val_terms(
        self, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[float, int]:
        """Squared blind-spot error of ``s`` (comparable with N2V's validation loss)."""
        diff = (self.signal(out) - target)[mask]
        return float((diff.double() ** 2).sum()), int(mask.sum())

    def state(self) -> dict[str, Any]:
        """The PSF parameters (the learned ``log σ``) and the kernel's identity."""
        return {
            "psf": {k: v.detach().cpu().clone() for k, v in self.psf.state_dict().items()},
            "kernel": _kernel_digest(self.psf),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`; refuses a checkpoint trained with another PSF file."""
        if not state:
            return
        if state.get("kernel") != _kernel_digest(self.psf):
            raise ValueError(
                "the checkpoint was trained with a different PSF; delete MODEL_DIR/checkpoints "
                "to start afresh with the new PSF"
            )
        self.psf.load_state_dict(state["psf"])  # copies in place: device and Adam's params kept

    def meta(self) -> dict[str, Any]:
        """``{"name": "deconoising", "positivity": λ, "psf": {...}}`` (learned σ included)."""
        return {
            "name": self.name,
            "positivity": self.positivity,
            "psf": self.psf.meta(),
        }


def train_deconoising(
    store: str | Path | list[str | Path],
    model_dir: str | Path,
    cfg: TrainConfig,
    seed: int,
    psf_path: str | Path | None = None,
    fingerprint: str = "",
    progress: bool = True,
    stop_after_epochs: int | None = None,
    settings: DecoNoisingSettings | None = None,
) -> dict[str, Any]:
    """Train DecoNoising on ``store`` (the N2V loop with :class:`DecoNoisingObjective`).

    Parameters
    ----------
    store, model_dir, cfg, seed, fingerprint, progress, stop_after_epochs
        As :func:`denoise.methods.n2v.train_n2v` (a list of stores: a sheet group, one model
        and one PSF for all of them).
    settings
        ``methods.deconoising``: ``psf_sigma``, ``psf_sigma_z``, ``learn_psf`` and
        ``positivity`` configure the PSF and the penalty (defaults when None).
    psf_path
        Measured PSF file (``DatasetRow.psf``); empty/None: Gaussian from ``cfg``.  Include the
        file's checksum in ``fingerprint`` so a changed PSF retrains.

    Returns
    -------
    dict
        ``train_n2v``'s summary plus ``psf`` (the saved PSF description: kind, σ learned, radii).
    """

    first = store[0] if isinstance(store, list | tuple) else store
    array, axes = omezarr.open_image(first)
    ndim = choose_ndim(axes, tuple(int(s) for s in array.shape), cfg.dims, where=str(first))
    settings = settings or DecoNoisingSettings()
    objective = DecoNoisingObjective(build_psf(settings, ndim, psf_path), settings.positivity)
    summary = train_n2v(
        store,
        model_dir,
        cfg,
        seed,
        fingerprint=fingerprint,
        progress=progress,
        stop_after_epochs=stop_after_epochs,
        objective=objective,
        settings=settings.model_dump(mode="json"),
    )
    summary["psf"] = (
        objective.psf.meta()
        if objective.psf.kind == "gaussian"
        else {k: v for k, v in objective.psf.meta().items() if k != "kernel"}
    )
    if objective.psf.learnable:
        log.info(
            "learned PSF σ = %.3f px (started at %.3f)", objective.psf.sigma, settings.psf_sigma
        )
    return summary


class DecoNoisingPredictor:
    """TiledPredictor giving ``denoised`` (``s = z * h``) and ``deconvolved`` (``z``).

    Parameters
    ----------
    model, meta
        From :func:`denoise.models.store.load_model`; ``meta["objective"]["psf"]`` describes the
        PSF (see :meth:`DecoNoisingObjective.meta`).
    cfg
        As for :class:`~denoise.predict.network.NetworkPredictor`; ``cfg.halo`` (when set) is the
        total halo and must cover receptive field + PSF radius unless ``cfg.inexact``.

    Attributes
    ----------
    ndim, halo, multiple, output_names
        The TiledPredictor protocol.
    receptive_field
        Reach of ``s``: the network's receptive field plus the PSF radius (px).
    network
        The wrapped NetworkPredictor (computes ``z``).
    psf
        The PSF layer (learned σ frozen).
    """

    kind = "tiled"
    halo_t = 0
    output_names = OUTPUT_NAMES

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], cfg: PredictConfig) -> None:

        objective = meta.get("objective") or {}
        if objective.get("name") != NAME or "psf" not in objective:
            raise ValueError(
                f"model (method {meta.get('method')!r}) was not trained with DecoNoising: "
                "its metadata has no PSF; train it with method 'deconoising'"
            )
        inner = {**meta, "output_names": ("deconvolved",)}
        self.network = NetworkPredictor(
            model, inner, cfg.model_copy(update={"halo": None, "inexact": False})
        )
        self.psf = PSFConv.from_meta(objective["psf"]).eval()
        self.ndim = self.network.ndim
        if self.psf.ndim != self.ndim:
            self.psf = PSFConv.from_kernel(
                match_ndim(self.psf.kernel().double().numpy(), self.ndim)
            )
        self.multiple = self.network.multiple
        self.receptive_field = self.network.receptive_field + self.psf.radius
        want = self.receptive_field if cfg.halo is None else int(cfg.halo)
        self.halo = round_up(want, self.multiple)
        if self.halo < self.receptive_field:
            if not cfg.inexact:
                raise ValueError(
                    f"predict.halo {cfg.halo} is below the DecoNoising reach ({self.network.receptive_field} px "
                    f"receptive field + {self.psf.radius} px PSF radius): tiles would show seams; "
                    "raise the halo, leave it unset, or set predict.inexact: true"
                )
            log.warning("inexact tiling: halo %d px < reach %d px", self.halo, self.receptive_field)
        self.device = self.network.device
        self.psf.to(self.device)
        self.checksum = self.network.checksum
        self.meta = self.network.meta

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, cfg: PredictConfig) -> DecoNoisingPredictor:
        """Load ``MODEL_DIR`` (trained by :func:`train_deconoising`) and wrap it."""

        model, meta = load_model(model_dir)
        return cls(model, meta, cfg)

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        """``(N, *spatial)`` raw tiles → ``(N, 2, *spatial)`` float32: denoised, deconvolved.

        ``s`` is valid ``halo`` pixels away from the tile edges (its border is computed from a
        reflected ``z`` and discarded by the tiling).
        """
        z = self.network(tiles, channel=channel)  # (N, 1, *spatial), raw units
        with torch.inference_mode():
            s = (
                self.psf(torch.from_numpy(np.ascontiguousarray(z)).to(self.device))
                .float()
                .cpu()
                .numpy()
            )
        return np.concatenate([s, z], axis=1).astype(np.float32, copy=False)

    def predict_whole(self, image: np.ndarray, channel: int = 0) -> np.ndarray:
        """Whole-image reference: reflect-pad by ``halo`` (+ lattice end padding), one pass, crop.

        Returns
        -------
        np.ndarray
            ``(2, *image.shape)`` float32: denoised, deconvolved.
        """
        return predict_whole_image(self, np.asarray(image), channel)

    def describe(self) -> dict[str, Any]:
        """Provenance (JSON-serialisable): the network's plus the PSF (learned σ)."""
        info = self.network.describe()
        psf = {k: v for k, v in self.psf.meta().items() if k != "kernel"}
        info.update(
            **{
                "class": type(self).__name__,
                "halo": self.halo,
                "receptive_field": self.receptive_field,
                "psf": psf,
            }
        )
        return json.loads(json.dumps(info, default=str))


def _train(request: TrainRequest) -> dict[str, Any]:
    return train_deconoising(
        list(request.stores) if request.stores else request.store,
        request.model_dir,
        request.train,
        request.seed,
        psf_path=request.psf,
        fingerprint=request.fingerprint,
        settings=request.settings,
    )


METHODS = (
    MethodSpec(
        name="deconoising",
        kind="trained",
        summary=(
            "DecoNoising (Goncharova et al. 2020): N2V loss on z∗PSF plus a positivity penalty; "
            "writes `denoised` and `deconvolved`; Gaussian PSF (`methods.deconoising.psf_sigma`, "
            "optional `learn_psf`) or a measured PSF file (sheet column `psf`)"
        ),
        settings=DecoNoisingSettings,
        train=_train,
        predictor=lambda r: DecoNoisingPredictor.from_model_dir(r.model_dir, r.predict),
        outputs=("denoised", "deconvolved"),
        needs=frozenset({"psf"}),
    ),
)
