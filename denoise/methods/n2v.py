"""Noise2Void / N2V2 training on an OME-Zarr store.

Training is a fixed number of optimiser steps (``epochs × steps_per_epoch``) on random
patches of the data itself, so its cost does not depend on the image size.  Choices where the
papers leave room, written down:

* Loss: MSE at the blind spots between the output and the ORIGINAL normalised noisy value.
* Optimiser: Adam; learning rate warmed up linearly over the first 5 % of the steps, then a
  cosine decay to 1 % of ``learning_rate`` at the last planned step (a schedule fixed in
  advance keeps runs reproducible and resumable; plateau-based schedules are not).
* Validation: a fixed set of masked patches drawn once from the same data with a separate
  seed (``validation_fraction`` of the patches one epoch sees, one batch to 256); its loss
  estimates MSE(prediction, clean) + noise variance, a no-reference quality score comparable
  between runs on the same data (stored per epoch in history.json).
* Reproducibility: every batch (patches, augmentation, masking) is a pure function of
  ``(seed, step)``; weights are initialised after ``torch.manual_seed(seed)``; deterministic
  algorithms are switched on for the duration of training.  On the CPU the same config, seed
  and thread count give bit-identical weights, and a run resumed from ``checkpoints/last.pt``
  equals an uninterrupted one.
* ``max_minutes``: the whole call (setup included) must fit.  Once the measured speed shows
  that the planned steps would not, the plan shrinks to the steps that fit and the cosine decay
  ends there (:class:`StepPlan`), so a time-limited model is still annealed; the stop may fall
  inside an epoch (marked ``partial`` in history.json).  Such a run depends on the machine's
  speed and is not reproducible; a budget that does not bind changes nothing.
* Checkpoints: ``checkpoints/last.pt`` after every whole epoch (model, optimiser, scheduler,
  RNG states, epoch, history), written atomically; resumed when the fingerprint, seed, method
  and every setting except ``max_minutes``/``device``/``threads`` match.
* 3D models train on ``batch_size_3d`` patches per step (a 3D patch holds ``patch_size_z``
  times the pixels of a 2D one).
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from denoise.methods.curves import plot_training_curve
from denoise.methods.masking import mask_batch
from denoise.methods.objectives import N2VObjective, Objective
from denoise.methods.patches import PatchSampler, Prefetcher
from denoise.methods.registry import MethodSpec, PredictRequest, TrainRequest
from denoise.models.store import halo_for, receptive_field, save_model
from denoise.models.unet import UNet
from denoise.provenance import atomic_write_json
from denoise.settings import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "last.pt"
#: Config fields that do not change what is computed (excluded from the resume check).
_RUNTIME_FIELDS = {"max_minutes", "device", "threads"}
#: Settings applied after the training loop (the checkpoint does not depend on them).
_POST_TRAINING_FIELDS = {"pn2v_posterior"}
_TRAIN_STREAM, _VAL_STREAM = 1, 2


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "device 'cuda' requested but no CUDA device is available; use device 'auto' or 'cpu'"
        )
    return torch.device(device)


def lr_factor(step: int, total: int, warmup_of: int | None = None) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: linear warm-up, then cosine to 0.01.

    The warm-up lasts 5 % of ``warmup_of`` steps (default ``total``).
    """
    warm = max(1, round(0.05 * (warmup_of or total)))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


class StepPlan:
    """How many optimiser steps to take, fitted to a wall-clock budget when one binds.

    Without a budget (or while the planned steps fit in it) the plan is the configured
    ``epochs × steps_per_epoch`` and training is reproducible.  When the measured speed says
    the plan would overrun the budget, the plan shrinks to the steps that fit and the cosine
    decay is compressed to end there, so a time-limited model is still an annealed one.

    Parameters
    ----------
    planned
        Configured number of steps.
    budget
        Seconds available from ``t_start`` (None: no limit).
    t_start
        ``time.perf_counter()`` when training started (setup counts against the budget).
    reserve
        Seconds kept for the final validation and for writing the model.
    """

    def __init__(
        self, planned: int, budget: float | None, t_start: float, reserve: float = 3.0
    ) -> None:
        self.planned = self.total = planned
        self.budget, self.t_start, self.reserve = budget, t_start, reserve
        self._first: tuple[int, float] | None = None

    def factor(self, step: int) -> float:
        """LR multiplier for ``step`` (0-based) under the current plan."""
        return lr_factor(step, self.total, self.planned)

    def update(self, done: int, now: float) -> bool:
        """Record that ``done`` steps are finished at ``now``; True when training must stop."""
        if self.budget is None:
            return False
        if self._first is None or done <= self._first[0]:
            self._first = (done, now)  # the first step of a run is not timed (warm-up)
        else:
            per_step = (now - self._first[1]) / (done - self._first[0])
            left = self.budget - (now - self.t_start) - self.reserve
            self.total = max(done, min(self.planned, done + int(left / per_step)))
        return done >= self.total or now - self.t_start >= self.budget


@contextmanager
def _torch_settings(threads: int | None, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms and thread count for the duration of training, then restored."""
    prev = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.get_num_threads(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        if threads:
            torch.set_num_threads(threads)
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.set_num_threads(prev[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[3], prev[4]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seed legacy global state too
    torch.manual_seed(seed)


def _rng_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    random.setstate(_as_tuple(states["python"]))


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, list | tuple) else x


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            buf = io.BytesIO()  # serialised first: torch reports a full disk as a cryptic error
            torch.save(obj, buf)
            fh.write(buf.getbuffer())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Batches:
    """Training and validation batches: pure functions of ``(seed, stream, index)``."""

    def __init__(self, sampler: PatchSampler, cfg: TrainConfig, seed: int, n2v2: bool) -> None:
        self.sampler, self.cfg, self.seed, self.n2v2 = sampler, cfg, seed, n2v2
        self.batch_size = cfg.batch_size_3d if sampler.ndim == 3 else cfg.batch_size

    def make(self, n: int, *key: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed % 2**63, *key])
        clean = torch.from_numpy(self.sampler.sample(rng, n))
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        mb = mask_batch(clean, self.cfg.mask_fraction, self.cfg.neighbourhood, self.n2v2, gen)
        return mb.masked, clean, mb.mask

    def train(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.make(self.batch_size, _TRAIN_STREAM, step)

    def validation(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        cfg = self.cfg
        if cfg.validation_fraction <= 0:
            return []
        bs = self.batch_size
        n = int(min(256, max(bs, round(cfg.validation_fraction * cfg.steps_per_epoch * bs))))
        sizes = [min(bs, n - i) for i in range(0, n, bs)]
        return [self.make(s, _VAL_STREAM, j) for j, s in enumerate(sizes)]


def _validate(
    model: UNet, batches: list, device: torch.device, objective: Objective
) -> float | None:
    if not batches:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for inp, tgt, mask in batches:
            out = model(inp.to(device))
            s, c = objective.val_terms(out, tgt.to(device), mask.to(device))
            total += s
            count += c
    model.train()
    return total / max(count, 1)


def _resume_key(
    cfg: TrainConfig, seed: int, method: str, fingerprint: str, ndim: int
) -> dict[str, Any]:
    skip = _RUNTIME_FIELDS | _POST_TRAINING_FIELDS
    conf = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in skip}
    return {
        "config": conf,
        "seed": seed,
        "method": method,
        "fingerprint": fingerprint,
        "ndim": ndim,
    }


def train_n2v(
    store: str | Path,
    model_dir: str | Path,
    cfg: TrainConfig,
    seed: int,
    n2v2: bool = False,
    fingerprint: str = "",
    progress: bool = True,
    stop_after_epochs: int | None = None,
    objective: Objective | None = None,
) -> dict[str, Any]:
    """Train a Noise2Void (or N2V2) U-Net on ``store`` and write the model directory.

    Parameters
    ----------
    store
        OME-Zarr image to denoise (T, C and, for 2D models, Z are independent samples).
    model_dir
        Output directory: model.pt, model.json, history.json, training_curve.png,
        checkpoints/last.pt.  A checkpoint whose fingerprint and training settings match is
        resumed; any other is replaced.
    cfg
        Training settings; ``max_minutes``, ``device`` and ``threads`` do not affect resuming.
    seed
        Seed of every random choice (weights, patches, augmentation, masks, validation set).
    n2v2
        N2V2: blur-pool U-Net without top skip connection, median replacement.
    fingerprint
        Identifies the run (stored in the model and checkpoint).
    progress
        Show a tqdm progress bar (steps/s and ETA); per-epoch lines are logged either way.
    stop_after_epochs
        Stop once this many epochs are done in total, leaving a resumable checkpoint (as an
        interruption would); the model files are still written.
    objective
        What the network learns (:mod:`denoise.methods.objectives`): N2V's masked MSE by
        default; PN2V and DecoNoising plug their losses, output channels and extra
        parameters in here and reuse sampling, seeding, checkpointing and budgets.

    Returns
    -------
    dict
        Summary for the stage sentinel: fingerprint, method, epochs_done, steps_done, final
        train/val loss, receptive_field, halo, seconds, steps_per_second, sha256, device,
        stopped ("completed", "max_minutes" or "stop_after_epochs").  ``seconds`` and
        ``steps_per_second`` are timings (not reproducible).
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if objective is None:
        objective = N2VObjective("n2v2" if n2v2 else "n2v")
    method = objective.name
    device = resolve_device(cfg.device)
    multiple = 2**cfg.depth
    sampler = PatchSampler(store, cfg.patch_size, cfg.patch_size_z, multiple, cfg.dims)
    key = _resume_key(cfg, seed, method, fingerprint, sampler.ndim)
    spe = cfg.steps_per_epoch
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes else None
    plan = StepPlan(cfg.epochs * spe, budget, t_start)
    with _torch_settings(cfg.threads, device):
        _seed_all(seed)
        model = UNet(
            ndim=sampler.ndim,
            depth=cfg.depth,
            features=cfg.features,
            batch_norm=cfg.batch_norm,
            n2v2=n2v2,
            out_channels=objective.out_channels,
        )
        rf = receptive_field(model)
        model.to(device).train()
        objective.bind(float(sampler.norm["mean"][0]), float(sampler.norm["std"][0]), device)
        opt = torch.optim.Adam(
            [*model.parameters(), *objective.extra_parameters()], lr=cfg.learning_rate
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, plan.factor)
        # Mixed precision (GPU speed): bf16 autocast, or fp16 with a gradient scaler.
        low = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.precision)
        scaler = torch.amp.GradScaler(device.type, enabled=low is torch.float16 and device.type == "cuda")
        batches = _Batches(sampler, cfg, seed, n2v2)
        history: list[dict[str, Any]] = []
        start_epoch, prev_seconds = 0, 0.0
        ckpt_path = model_dir / CHECKPOINT
        if ckpt_path.is_file():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            if ckpt.get("key") == key:
                model.load_state_dict(ckpt["model"])
                opt.load_state_dict(ckpt["optimizer"])
                sched.load_state_dict(ckpt["scheduler"])
                _set_rng_states(ckpt["rng"])
                objective.load_state(ckpt.get("objective", {}))
                start_epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
                prev_seconds = float(ckpt["seconds"])
                log.info("%s: resuming at epoch %d/%d", ckpt_path, start_epoch, cfg.epochs)
            else:
                log.warning("%s: from other settings or data; starting afresh", ckpt_path)
        val_batches = batches.validation()
        end_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
        log.info(
            "%s %dD on %s: patch %s × %d, %d sample(s), %d epochs × %d steps, "
            "receptive field %d px, device %s%s",
            method,
            sampler.ndim,
            store,
            sampler.patch,
            batches.batch_size,
            sampler.n_samples,
            cfg.epochs,
            spe,
            rf,
            device,
            f", budget {budget:.0f} s" if budget else "",
        )
        stopped = "completed"
        run_steps, t_loop = 0, time.perf_counter()
        bar = tqdm(
            total=(end_epoch - start_epoch) * spe,
            disable=not progress,
            desc=method,
            unit="step",
            dynamic_ncols=True,
        )
        try:
            for epoch in range(start_epoch, end_epoch):
                loss_sum, n = torch.zeros((), dtype=torch.float64), 0
                first = epoch * spe
                out_of_time = False
                with Prefetcher(batches.train, first, first + spe) as loader:
                    for inp, tgt, mask in loader:
                        if device.type == "cuda":
                            inp = inp.pin_memory()
                        with torch.autocast(device.type, dtype=low or torch.float32, enabled=low is not None):
                            out = model(inp.to(device, non_blocking=True))
                            loss = objective.loss(out.float(), tgt.to(device), mask.to(device))
                        opt.zero_grad(set_to_none=True)
                        scaler.scale(loss).backward()
                        scaler.step(opt)
                        scaler.update()
                        loss_sum += loss.detach().double().cpu()
                        n += 1
                        run_steps += 1
                        out_of_time = plan.update(first + n, time.perf_counter())
                        sched.step()
                        bar.total = min(bar.total, plan.total - start_epoch * spe)
                        bar.update(1)
                        if out_of_time:
                            break
                val_loss = _validate(model, val_batches, device, objective)
                now = time.perf_counter()
                seconds = prev_seconds + (now - t_start)
                entry = {
                    "epoch": epoch + 1,
                    "train_loss": float(loss_sum) / max(n, 1),
                    "val_loss": val_loss,
                    "lr": float(sched.get_last_lr()[0]),
                    "steps": first + n,
                    "seconds": round(seconds, 3),
                }
                if n < spe:
                    entry["partial"] = True
                history.append(entry)
                bar.set_postfix(
                    loss=f"{entry['train_loss']:.4f}",
                    val=f"{val_loss:.4f}" if val_loss is not None else "-",
                )
                log.info(
                    "epoch %d/%d%s train %.5f val %s  %.2f steps/s",
                    epoch + 1,
                    cfg.epochs,
                    " (partial)" if n < spe else "",
                    entry["train_loss"],
                    f"{val_loss:.5f}" if val_loss is not None else "-",
                    run_steps / max(now - t_loop, 1e-9),
                )
                if n == spe:  # only whole epochs are checkpointed: resuming stays exact
                    _atomic_torch_save(
                        {
                            "key": key,
                            "epoch": epoch + 1,
                            "history": history,
                            "seconds": seconds,
                            "model": model.state_dict(),
                            "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(),
                            "rng": _rng_states(),
                            "objective": objective.state(),
                        },
                        ckpt_path,
                    )
                if out_of_time and first + n < cfg.epochs * spe:
                    stopped = "max_minutes"
                    log.warning(
                        "%s: stopped by the %.2f min budget after %d of %d steps",
                        model_dir,
                        cfg.max_minutes,
                        first + n,
                        cfg.epochs * spe,
                    )
                    break
        finally:
            bar.close()
        last = history[-1] if history else {"epoch": 0, "steps": 0}
        epochs_done = last["epoch"] - (1 if last.get("partial") else 0)
        if stopped == "completed" and epochs_done < cfg.epochs:
            stopped = "stop_after_epochs"
        model.eval()
        meta = {
            "method": method,
            "norm": sampler.norm,
            "receptive_field": rf,
            "axes": sampler.axes,
            "ndim": sampler.ndim,
            "train_config": cfg.model_dump(mode="json"),
            "fingerprint": fingerprint,
            "seed": seed,
            "steps_done": last["steps"],
            "objective": objective.meta(),
            "store": str(store),
        }
        info = save_model(model_dir, model.cpu(), meta)
    loop_seconds = time.perf_counter() - t_loop
    atomic_write_json(
        model_dir / "history.json",
        {
            "method": method,
            "fingerprint": fingerprint,
            "epochs_planned": cfg.epochs,
            "steps_planned": cfg.epochs * spe,
            "stopped": stopped,
            "epochs": history,
        },
    )
    plot_training_curve(
        history, model_dir / "training_curve.png", title=f"{method} — {Path(store).name}"
    )
    return {
        "fingerprint": fingerprint,
        "method": method,
        "ndim": sampler.ndim,
        "patch": list(sampler.patch),
        "batch_size": batches.batch_size,
        "epochs_planned": cfg.epochs,
        "epochs_done": epochs_done,
        "steps_done": last["steps"],
        "resumed_from_epoch": start_epoch,
        "stopped": stopped,
        "final_train_loss": last.get("train_loss"),
        "final_val_loss": last.get("val_loss"),
        "receptive_field": rf,
        "halo": halo_for(rf, multiple),
        "seconds": round(prev_seconds + (time.perf_counter() - t_start), 3),
        "steps_per_second": round(run_steps / max(loop_seconds, 1e-9), 3),
        "sha256": info["sha256"],
        "device": device.type,
    }


def _train_request(request: TrainRequest, n2v2: bool) -> dict[str, Any]:
    return train_n2v(
        request.store,
        request.model_dir,
        request.train,
        request.seed,
        n2v2=n2v2,
        fingerprint=request.fingerprint,
    )


def network_predictor(request: PredictRequest) -> Any:
    """The tiled predictor of a trained single-output network (N2V, N2V2)."""
    from denoise.predict.network import NetworkPredictor

    return NetworkPredictor.from_model_dir(request.model_dir, request.predict)


METHODS = (
    MethodSpec(
        name="n2v",
        kind="trained",
        summary=(
            "Noise2Void (Krull et al. 2019): blind-spot U-Net; 2 % stratified blind spots, "
            "8-fold augmentation, cosine schedule"
        ),
        train=lambda r: _train_request(r, n2v2=False),
        predictor=network_predictor,
        exportable=True,
    ),
    MethodSpec(
        name="n2v2",
        kind="trained",
        summary=(
            "N2V2 (Höck et al. 2022): max-blur-pool, no top skip connection, median replacement"
        ),
        train=lambda r: _train_request(r, n2v2=True),
        predictor=network_predictor,
        exportable=True,
    ),
)
