"""The training loop every trained method shares.

A method hands the loop three things: a network factory (called after seeding, so weights are
a function of the seed), an :class:`~denoise.training.objective.Objective` (loss, validation
terms, extra parameters, what the predictor needs later) and a :class:`BatchSource` yielding
``(input, target, mask)`` batches: masked single-frame patches for the N2V family, input/target
pairs of frames, or patches drawn from several stores alike.  The loop owns the rest:

* Steps: ``epochs × steps_per_epoch``, fitted to ``max_minutes`` by :class:`StepPlan` when the
  budget binds (then the run depends on the machine's speed and is not reproducible).
* Optimiser: Adam on the network's and the objective's parameters; linear warm-up over 5 % of
  the steps, cosine decay to 1 % (:func:`lr_factor`), so runs are reproducible and resumable.
* Reproducibility: deterministic algorithms, seeded generators; every batch is a pure function
  of ``(seed, step)`` (the source's job).  On the CPU the same config, seed and thread count
  give bit-identical weights, and a run resumed from ``checkpoints/last.pt`` equals an
  uninterrupted one.
* Checkpoints after every whole epoch (model, optimiser, scheduler, RNG states, objective,
  history), atomic; resumed when the resume key (settings except runtime ones, seed, method,
  fingerprint, dimensionality) matches.
* Precision: float32, or bf16/fp16 autocast (fp16 with a gradient scaler on CUDA).
* History (``history.json``, ``training_curve.png``) and a progress bar
  (:mod:`denoise.progress`): ``n/total`` with the step plan's total (the steps left after a
  resume; refitted when a budget binds), rate and ETA; under ``max_minutes`` also the budget
  left, and ``stopped=budget`` on the last line when the budget ended the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from denoise.models.device import resolve_device
from denoise.models.store import halo_for, receptive_field, save_model
from denoise.progress import Progress, progress
from denoise.provenance import atomic_write_json
from denoise.settings import TrainConfig
from denoise.training.curves import plot_training_curve
from denoise.training.objective import Objective
from denoise.training.prefetch import Prefetcher
from denoise.training.schedule import StepPlan
from denoise.training.state import (
    load_checkpoint,
    rng_states,
    save_checkpoint,
    seed_all,
    set_rng_states,
    torch_settings,
)

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "last.pt"
#: Config fields that do not change what is computed (excluded from the resume check).
RUNTIME_FIELDS = frozenset({"max_minutes", "device", "threads"})

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class BatchSource(Protocol):
    """Where training batches come from: ``(input, target, mask)``, pure functions of the step.

    ``describe()`` returns what the model must record: ``norm`` (per-channel mean/std),
    ``axes``, ``store`` and, for the log, ``patch`` and ``n_samples``.
    """

    batch_size: int
    ndim: int

    def train(self, step: int) -> Batch:
        """The batch of optimiser step ``step`` (0-based, global)."""

    def validation(self) -> list[Batch]:
        """A fixed validation set (may be empty)."""

    def describe(self) -> dict[str, Any]:
        """``norm``, ``axes``, ``store``, ``patch``, ``n_samples``."""


@dataclass
class _Run:
    """The state of one training run (what the epoch loop reads and updates)."""

    model: torch.nn.Module
    objective: Objective
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    low: torch.dtype | None
    device: torch.device
    plan: StepPlan
    key: dict[str, Any]
    ckpt_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    prev_seconds: float = 0.0
    run_steps: int = 0


def resume_key(
    cfg: TrainConfig,
    seed: int,
    method: str,
    fingerprint: str,
    ndim: int,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed (settings that change the weights)."""
    conf = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in RUNTIME_FIELDS}
    key = {"config": conf, "seed": seed, "method": method, "fingerprint": fingerprint, "ndim": ndim}
    if settings:
        key["settings"] = settings
    return key


def _start(
    build_model: Callable[[], torch.nn.Module],
    objective: Objective,
    source: BatchSource,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    plan: StepPlan,
    key: dict[str, Any],
    ckpt_path: Path,
) -> tuple[_Run, int]:
    """Seed, build the network and optimiser, resume a matching checkpoint."""
    seed_all(seed)
    model = build_model()
    rf = receptive_field(model)
    model.to(device).train()
    norm = source.describe()["norm"]
    objective.bind(float(norm["mean"][0]), float(norm["std"][0]), device)
    opt = torch.optim.Adam(
        [*model.parameters(), *objective.extra_parameters()], lr=cfg.learning_rate
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, plan.factor)
    low = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.precision)
    scaler = torch.amp.GradScaler(
        device.type, enabled=low is torch.float16 and device.type == "cuda"
    )
    run = _Run(model, objective, opt, sched, scaler, low, device, plan, key, ckpt_path)
    ckpt = load_checkpoint(ckpt_path, key)
    if ckpt:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_states(ckpt["rng"])
        objective.load_state(ckpt.get("objective", {}))
        run.start_epoch, run.history = int(ckpt["epoch"]), list(ckpt["history"])
        run.prev_seconds = float(ckpt["seconds"])
        log.info("%s: resuming at epoch %d/%d", ckpt_path, run.start_epoch, cfg.epochs)
    elif ckpt is not None:
        log.warning("%s: from other settings or data; starting afresh", ckpt_path)
    return run, rf


def _step(run: _Run, inp: torch.Tensor, tgt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One optimiser step; returns the detached float64 loss on the CPU."""
    device, low = run.device, run.low
    if device.type == "cuda":
        inp = inp.pin_memory()
    with torch.autocast(device.type, dtype=low or torch.float32, enabled=low is not None):
        out = run.model(inp.to(device, non_blocking=True))
        loss = run.objective.loss(out.float(), tgt.to(device), mask.to(device))
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    return loss.detach().double().cpu()


def _validate(run: _Run, batches: list[Batch]) -> float | None:
    if not batches:
        return None
    model, device = run.model, run.device
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for inp, tgt, mask in batches:
            out = model(inp.to(device))
            s, c = run.objective.val_terms(out, tgt.to(device), mask.to(device))
            total += s
            count += c
    model.train()
    return total / max(count, 1)


def _epoch(
    run: _Run, source: BatchSource, epoch: int, spe: int, bar: Progress, end_step: int
) -> tuple[dict[str, Any], bool]:
    """Train one epoch (or until the budget ends); returns its history entry and out_of_time.

    ``end_step`` is the global step this run ends at without a budget: the bar's total is the
    steps from the run's first step to the smaller of it and the step plan's total.
    """
    loss_sum, n = torch.zeros((), dtype=torch.float64), 0
    first = epoch * spe
    out_of_time = False
    with Prefetcher(source.train, first, first + spe) as loader:
        for inp, tgt, mask in loader:
            loss_sum += _step(run, inp, tgt, mask)
            n += 1
            run.run_steps += 1
            out_of_time = run.plan.update(first + n, time.perf_counter())
            run.sched.step()
            bar.set_total(min(end_step, run.plan.total) - run.start_epoch * spe, refresh=False)
            bar.update(1)
            if out_of_time:
                break
    return {"loss_sum": loss_sum, "n": n, "first": first}, out_of_time


def _record(
    run: _Run, raw: dict[str, Any], val_loss: float | None, epoch: int, spe: int, t_start: float
) -> dict[str, Any]:
    """Append the epoch's history entry and checkpoint whole epochs."""
    n, first = raw["n"], raw["first"]
    seconds = run.prev_seconds + (time.perf_counter() - t_start)
    entry = {
        "epoch": epoch + 1,
        "train_loss": float(raw["loss_sum"]) / max(n, 1),
        "val_loss": val_loss,
        "lr": float(run.sched.get_last_lr()[0]),
        "steps": first + n,
        "seconds": round(seconds, 3),
    }
    if n < spe:
        entry["partial"] = True
    run.history.append(entry)
    if n == spe:  # only whole epochs are checkpointed: resuming stays exact
        save_checkpoint(
            run.ckpt_path,
            key=run.key,
            epoch=epoch + 1,
            history=run.history,
            seconds=seconds,
            model=run.model.state_dict(),
            optimizer=run.opt.state_dict(),
            scheduler=run.sched.state_dict(),
            rng=rng_states(),
            objective=run.objective.state(),
        )
    return entry


def _epochs(
    run: _Run,
    source: BatchSource,
    cfg: TrainConfig,
    end_epoch: int,
    bar: Progress,
    t_start: float,
    where: Path,
) -> str:
    """The epoch loop; returns why it stopped ("completed" or "max_minutes")."""
    spe, t_loop = cfg.steps_per_epoch, time.perf_counter()
    val_batches = source.validation()
    for epoch in range(run.start_epoch, end_epoch):
        raw, out_of_time = _epoch(run, source, epoch, spe, bar, end_epoch * spe)
        val_loss = _validate(run, val_batches)
        entry = _record(run, raw, val_loss, epoch, spe, t_start)
        val = f"{val_loss:.4f}" if val_loss is not None else "-"
        bar.update(0, loss=f"{entry['train_loss']:.4f}", val=val)
        log.info(
            "epoch %d/%d%s train %.5f val %s  %.2f steps/s",
            epoch + 1,
            cfg.epochs,
            " (partial)" if raw["n"] < spe else "",
            entry["train_loss"],
            f"{val_loss:.5f}" if val_loss is not None else "-",
            run.run_steps / max(time.perf_counter() - t_loop, 1e-9),
        )
        if out_of_time and entry["steps"] < cfg.epochs * spe:
            log.warning(
                "%s: stopped by the %.2f min budget after %d of %d steps",
                where,
                cfg.max_minutes,
                entry["steps"],
                cfg.epochs * spe,
            )
            return "max_minutes"
    return "completed"


def train_loop(
    model_dir: str | Path,
    build_model: Callable[[], torch.nn.Module],
    objective: Objective,
    source: BatchSource,
    cfg: TrainConfig,
    seed: int,
    fingerprint: str = "",
    progress: bool = True,
    stop_after_epochs: int | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``build_model()`` on ``source`` with ``objective``; write the model directory.

    ``model_dir`` gets model.pt, model.json, history.json, training_curve.png and
    checkpoints/last.pt (a checkpoint whose resume key matches is resumed).  ``build_model`` is
    called once, right after seeding; the network needs ``hparams``, ``ndim`` and ``multiple``
    (:mod:`denoise.models.store`).  ``settings``: the method's own settings that change the
    weights (resume key, model metadata).  ``stop_after_epochs`` leaves a resumable
    checkpoint, as an interruption would.  Returns the stage sentinel's summary.
    """
    t_start = time.perf_counter()
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    method, device, spe = objective.name, resolve_device(cfg.device, "train.device"), cfg.steps_per_epoch
    key = resume_key(cfg, seed, method, fingerprint, source.ndim, settings)
    budget = cfg.max_minutes * 60.0 if cfg.max_minutes else None
    plan = StepPlan(cfg.epochs * spe, budget, t_start)
    info_src = source.describe()
    with torch_settings(cfg.threads, device):
        run, rf = _start(
            build_model, objective, source, cfg, seed, device, plan, key, model_dir / CHECKPOINT
        )
        end_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
        _log_start(method, source, info_src, cfg, rf, device, budget)
        t_loop = time.perf_counter()
        total = (end_epoch - run.start_epoch) * spe
        bar = _progress_bar(method, total, progress, budget, t_start, plan.reserve)
        try:
            stopped = _epochs(run, source, cfg, end_epoch, bar, t_start, model_dir)
            if stopped == "max_minutes":
                bar.stop("budget")
        finally:
            bar.close()
        last = run.history[-1] if run.history else {"epoch": 0, "steps": 0}
        epochs_done = last["epoch"] - (1 if last.get("partial") else 0)
        if stopped == "completed" and epochs_done < cfg.epochs:
            stopped = "stop_after_epochs"
        run.model.eval()
        meta = {
            "method": method,
            "norm": info_src["norm"],
            "receptive_field": rf,
            "axes": info_src["axes"],
            "ndim": source.ndim,
            "train_config": cfg.model_dump(mode="json"),
            "fingerprint": fingerprint,
            "seed": seed,
            "steps_done": last["steps"],
            "objective": objective.meta(),
            "store": str(info_src["store"]),
            **({"method_settings": settings} if settings else {}),
        }
        saved = save_model(model_dir, run.model.cpu(), meta)
    loop_seconds = time.perf_counter() - t_loop
    _write_history(model_dir, run, cfg, fingerprint, stopped, info_src["store"])
    summary = {
        "fingerprint": fingerprint,
        "method": method,
        "ndim": source.ndim,
        "patch": list(info_src["patch"]),
        "batch_size": source.batch_size,
        "seconds": round(run.prev_seconds + (time.perf_counter() - t_start), 3),
        "steps_per_second": round(run.run_steps / max(loop_seconds, 1e-9), 3),
        "sha256": saved["sha256"],
        "device": device.type,
    }
    return _summary(summary, run, cfg, last, epochs_done, stopped, rf)


def _summary(
    head: dict[str, Any],
    run: _Run,
    cfg: TrainConfig,
    last: dict[str, Any],
    epochs_done: int,
    stopped: str,
    rf: int,
) -> dict[str, Any]:
    """The stage sentinel's summary (``seconds`` and ``steps_per_second`` are timings)."""
    out = {k: head[k] for k in ("fingerprint", "method", "ndim", "patch", "batch_size")}
    out.update(
        epochs_planned=cfg.epochs,
        epochs_done=epochs_done,
        steps_done=last["steps"],
        resumed_from_epoch=run.start_epoch,
        stopped=stopped,
        final_train_loss=last.get("train_loss"),
        final_val_loss=last.get("val_loss"),
        receptive_field=rf,
        halo=halo_for(rf, run.model.multiple),
    )
    out.update({k: head[k] for k in ("seconds", "steps_per_second", "sha256", "device")})
    return out


def _log_start(
    method: str,
    source: BatchSource,
    info: dict[str, Any],
    cfg: TrainConfig,
    rf: int,
    device: torch.device,
    budget: float | None,
) -> None:
    log.info(
        "%s %dD on %s: patch %s × %d, %d sample(s), %d epochs × %d steps, "
        "receptive field %d px, device %s%s",
        method, source.ndim, info["store"], info["patch"], source.batch_size,
        info["n_samples"], cfg.epochs, cfg.steps_per_epoch, rf, device,
        f", budget {budget:.0f} s" if budget else "",
    )  # fmt: skip


def _progress_bar(
    method: str, total: int, enabled: bool, budget: float | None, t_start: float, reserve: float
) -> Progress:
    """Bar over the run's ``total`` steps.  ``budget`` (seconds from ``t_start``; None: no
    budget) counts setup too, and the step plan keeps :attr:`StepPlan.reserve` of it for the
    final validation and the model's writing: the bar gets what is left for the steps."""
    left = None
    if budget is not None:
        left = max(budget - reserve - (time.perf_counter() - t_start), 1e-6)
    return progress(total, method, unit="step", budget_s=left, enabled=enabled)


def _write_history(
    model_dir: Path, run: _Run, cfg: TrainConfig, fingerprint: str, stopped: str, store: Any
) -> None:
    atomic_write_json(
        model_dir / "history.json",
        {
            "method": run.objective.name,
            "fingerprint": fingerprint,
            "epochs_planned": cfg.epochs,
            "steps_planned": cfg.epochs * cfg.steps_per_epoch,
            "stopped": stopped,
            "epochs": run.history,
        },
    )
    plot_training_curve(
        run.history,
        model_dir / "training_curve.png",
        title=f"{run.objective.name} — {Path(store).name}",
    )
