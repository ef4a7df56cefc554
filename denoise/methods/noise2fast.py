"""Noise2Fast (Lequyer et al., Nat. Mach. Intell. 2022): zero-shot denoising of one plane.

The network trains on the single image it denoises.  Chequerboard downsampling splits the image
into its even pixels (``i + j`` even) and its odd pixels, squeezed either along X ("up", shape
``(m, n/2)``) or along Y ("left", shape ``(m/2, n)``); the four training pairs map even→odd and
odd→even for both squeezes.  A small full-resolution CNN (no pooling; 3×3 convolutions with
ReLU, then a 1×1 convolution and a sigmoid) is trained with binary cross-entropy on the plane
scaled to [0, 1] by its own min/max, with Adam (lr 1e-3).  The full noisy image is the
validation set: the score is ``-MSE(f(x), x)``; training stops when it has not improved for
``patience`` validations, and the result is the mean of the outputs from the best validation up
to the stop (the authors average their last ~100 outputs, i.e. the best one and the ones after
it).  When a run that stopped itself returns a constant image, the plane is retrained from
scratch with a much smaller learning rate (the authors' fallback; not applied after the step
cap, where a constant output means "not trained yet" rather than "collapsed").

Deviations from the authors' script, all for speed, none changing the model or the loss:
the chequerboard tensors are built once with array indexing (no Python loop over pixels);
the full-image validation runs every ``validate_every`` steps under ``torch.inference_mode``
(``patience`` counts validations, so patience × validate_every ≈ the authors' 100 steps);
activations are channels-last.  Odd sizes: like the authors, training pairs come from the
plane cropped to even sizes (last row/column dropped); validation and output use the whole
plane, which the fully convolutional network handles at any size.

Public API: :func:`chequerboard_downsample`, :func:`training_pairs`, :class:`Noise2FastNet`,
:func:`denoise_plane` (2D), :func:`denoise_volume` (3D chequerboard), :func:`denoise_planes`
(many planes trained at once, for GPUs) and :class:`Noise2FastPredictor` (the PlanePredictor).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from denoise.methods.registry import MethodSpec, PredictRequest
from denoise.models.device import resolve_device
from denoise.progress import progress
from denoise.settings import PredictConfig, Strict

log = logging.getLogger(__name__)

#: Channels of the authors' released network (``N2F.py``): eight 3×3 convolutions, all 64 wide.
#: The paper's text describes 32→64→128→256 (pass ``widths=PAPER_WIDTHS``), 4.5× the FLOPs; the
#: reference figures this module is compared with come from the released network.
RELEASED_WIDTHS: tuple[int, ...] = (64, 64, 64, 64)
PAPER_WIDTHS: tuple[int, ...] = (32, 64, 128, 256)
#: The authors' learning rate and the one they retrain with when the output collapses.
LEARNING_RATE = 1e-3
FALLBACK_LEARNING_RATE = 5e-6
#: Collapse test: at most this many interior pixels lie above the mean by more than half a grey
#: level on a 0-255 scale of the plane's range (the authors' test, made independent of units).
COLLAPSE_MAX_PIXELS = 25
#: Edge of the random window each training pair is cut to per step (None: whole pairs).
DEFAULT_WINDOW: int | None = 128


# --------------------------------------------------------------------------- chequerboard


def chequerboard_downsample(x: torch.Tensor, axis: int, parity: int, ndim: int = 2) -> torch.Tensor:
    """Keep the pixels whose index sum has ``parity`` and squeeze them along ``axis``.

    Parameters
    ----------
    x
        ``(..., *spatial)`` tensor whose last ``ndim`` axes are spatial; ``axis`` has even size.
    axis
        Negative index of the squeezed spatial axis: ``-1`` (X) gives the paper's "up" images
        of shape ``(m, n/2)``, ``-2`` (Y) the "left" images ``(m/2, n)``, ``-3`` squeezes Z.
    parity
        0 for the even pixels (index sum even), 1 for the odd ones.
    ndim
        Number of trailing spatial axes whose indices enter the parity (2 or 3).

    Returns
    -------
    torch.Tensor
        ``out[..., k, ...] = x[..., 2k + ((s + parity) mod 2), ...]`` along ``axis``, where
        ``s`` is the sum of the pixel's other spatial indices.
    """
    if not -ndim <= axis <= -1:
        raise ValueError(f"axis must be one of the last {ndim} axes (negative), got {axis}")
    ax = x.ndim + axis
    n = x.shape[ax]
    if n % 2:
        raise ValueError(f"axis {axis} has odd size {n}; crop to even sizes first")
    pairs = x.unflatten(ax, (n // 2, 2))
    low, high = pairs.select(ax + 1, 0), pairs.select(ax + 1, 1)
    other = torch.zeros((), dtype=torch.int64, device=x.device)
    for d in range(low.ndim - ndim, low.ndim):
        if d == ax:
            continue
        shape = [1] * low.ndim
        shape[d] = low.shape[d]
        other = other + torch.arange(low.shape[d], device=x.device).reshape(shape)
    return torch.where((other + parity) % 2 == 1, high, low)


def training_pairs(
    x: torch.Tensor, axes: Sequence[int] = (-1, -2)
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The Noise2Fast training set: per squeeze axis, (even, odd) stacked with (odd, even).

    Parameters
    ----------
    x
        ``(1, 1, *spatial)`` plane scaled to [0, 1], even sizes.
    axes
        Squeeze axes (negative).  2D: ``(-1, -2)``, the four pairs of the paper; 3D adds ``-3``.

    Returns
    -------
    list of (inputs, targets)
        One entry per axis, each a batch of 2 (``(2, 1, *squeezed)``): the pairs even→odd and
        odd→even, which have the same shape and so train as one batch.
    """
    out = []
    ndim = x.ndim - 2
    for a in axes:
        even = chequerboard_downsample(x, a, 0, ndim)
        odd = chequerboard_downsample(x, a, 1, ndim)
        out.append((torch.cat([even, odd]), torch.cat([odd, even])))
    return out


# --------------------------------------------------------------------------- network


class Noise2FastNet(nn.Module):
    """The Noise2Fast CNN: per width, two 3×3(×3) convolutions with ReLU; 1×1 conv; sigmoid.

    Parameters
    ----------
    ndim
        2 (planes) or 3 (volumes, for the 3D chequerboard option).
    widths
        Channels of each pair of convolutions (default: the authors' released network).
    groups
        Independent networks evaluated side by side as grouped convolutions: channel ``i`` of
        the input goes through network ``i`` only (many planes trained at once on a GPU).
    """

    def __init__(
        self, ndim: int = 2, widths: Sequence[int] = RELEASED_WIDTHS, groups: int = 1
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        layers: list[nn.Module] = []
        cin = 1
        for w in widths:
            for _ in range(2):
                layers += [conv(cin * groups, w * groups, 3, padding=1, groups=groups)]
                layers += [nn.ReLU(inplace=True)]
                cin = w
        self.body = nn.Sequential(*layers)
        self.head = conv(cin * groups, groups, 1, groups=groups)
        self.ndim, self.widths, self.groups = ndim, tuple(widths), groups

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid output (the loss is BCE on logits: the same loss, computed stably)."""
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoised image in [0, 1] for input in [0, 1], ``(N, groups, *spatial)``."""
        return torch.sigmoid(self.logits(x))


def _adam_step(moments: dict[str, dict[str, torch.Tensor]]) -> float:
    return float(next(iter(moments.values()))["step"])


def _take_groups(t: torch.Tensor, groups: int, keep: Sequence[int]) -> torch.Tensor:
    """Rows of the networks ``keep`` from a grouped parameter (or Adam moment) tensor."""
    return t.unflatten(0, (groups, -1))[list(keep)].flatten(0, 1).contiguous()


# --------------------------------------------------------------------------- training


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic algorithms for the duration (restores the caller's setting)."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_before = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_before)


def _scale(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The plane scaled to [0, 1] by its own min/max (float32), with the min and the range."""
    img = np.asarray(image)
    if not np.all(np.isfinite(img)):
        raise ValueError("Noise2Fast: the plane contains NaN or Inf values; fix or mask them first")
    lo = float(img.min())
    rng = float(img.max()) - lo
    scaled = (img.astype(np.float64) - lo) / (rng if rng > 0 else 1.0)
    return scaled.astype(np.float32), lo, rng


def _collapsed(out: torch.Tensor) -> bool:
    """The authors' test for an output that collapsed to a constant (see COLLAPSE_MAX_PIXELS)."""
    inner = out.double()[tuple(slice(1, -1) if s > 2 else slice(None) for s in out.shape)]
    above = torch.round((inner - inner.mean()) * 255.0) > 0
    return int(above.sum()) <= COLLAPSE_MAX_PIXELS


class _Tracker:
    """Per-network stopping rule: best agreement, patience counter and the running mean."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best, self.best_step, self.since = -math.inf, 0, 0
        self.acc: torch.Tensor | None = None
        self.n = 0
        self.scores: list[tuple[int, float]] = []

    def update(self, step: int, score: float, out: torch.Tensor) -> bool:
        """Record a validation; True when patience is exhausted."""
        if not math.isfinite(score):
            raise FloatingPointError(
                f"Noise2Fast: the network output is not finite at step {step}; "
                "rerun with train_dtype 'float32'"
            )
        self.scores.append((step, score))
        if score > self.best:
            self.best, self.best_step, self.since = score, step, 0
            self.acc, self.n = out.clone(), 1
        else:
            self.since += 1
            assert self.acc is not None
            self.acc += out
            self.n += 1
        return self.since >= self.patience


def _train(
    x: torch.Tensor,
    *,
    seeds: Sequence[int],
    patience: int,
    max_steps: int,
    validate_every: int,
    init_states: Sequence[dict[str, Any] | None],
    learning_rate: float,
    widths: Sequence[int],
    batch_pairs: bool,
    channels_last: bool,
    train_dtype: str,
    label: str,
    window: int | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """Train one network per channel of ``x`` (``(1, G, *spatial)`` in [0, 1]).

    Returns, per channel, the mean output ``(*spatial)`` from its best validation to its stop,
    and its info.  Networks that stop are dropped from the group (weights and Adam moments
    sliced), so the others carry on at the cost of the remaining ones only.
    """
    group = _Group(
        x, seeds=seeds, patience=patience, init_states=init_states,
        learning_rate=learning_rate, widths=widths, channels_last=channels_last,
        train_dtype=train_dtype, callback=callback,
    )
    pick = group.pick
    if any(s is not None for s in init_states):
        group.drop(group.validate(0), 0, "patience")
    step = 0
    last_log = group.t0
    bar = progress(max_steps, label, unit="step")  # total = the step cap; patience stops early
    while group.active and step < max_steps:
        step += 1
        bar.update(1, nets=len(group.active))
        group.train_step(pick, batch_pairs, window)
        if step % validate_every == 0 or step == max_steps:
            done = group.validate(step)
            if done:
                group.drop(done, step, "patience")
            now = time.perf_counter()
            if group.active and now - last_log > 10.0:
                group.log_speed(label, step, now)
                last_log = now
    if group.active:
        group.drop(list(range(len(group.active))), step, "max_steps")
    else:
        bar.stop("patience")
    bar.close()
    return [group.results[g] for g in range(group.groups)]


def _grouped_network(
    ndim: int,
    widths: Sequence[int],
    seeds: Sequence[int],
    init_states: Sequence[dict[str, Any] | None],
    learning_rate: float,
    device: torch.device,
    fmt: torch.memory_format,
) -> tuple[Noise2FastNet, torch.optim.Adam]:
    """One grouped network of ``len(seeds)`` networks and its Adam optimiser.

    Network ``i`` is initialised under ``torch.manual_seed(seeds[i])``, or from
    ``init_states[i]`` (a ``warm_state`` with weights and Adam moments, or bare weights).
    When every network brings Adam moments of the same step count, the optimiser starts from
    them.
    """
    net = Noise2FastNet(ndim, widths, len(seeds))
    parts, moments = [], []
    for seed, init in zip(seeds, init_states, strict=True):
        torch.manual_seed(seed)
        one = Noise2FastNet(ndim, widths)
        if init is not None:
            one.load_state_dict(init.get("model", init))
        parts.append(one.state_dict())
        moments.append(init.get("adam") if init is not None else None)
    net.load_state_dict({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    net = net.to(device=device, memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    if all(m is not None for m in moments) and len({_adam_step(m) for m in moments}) == 1:
        # Warm start with the previous run's Adam moments: training continues smoothly
        # instead of restarting with bias-corrected unit-size steps.
        for name, prm in net.named_parameters():
            opt.state[prm] = {
                "step": moments[0][name]["step"].clone(),
                "exp_avg": torch.cat([m[name]["exp_avg"] for m in moments]).to(device),
                "exp_avg_sq": torch.cat([m[name]["exp_avg_sq"] for m in moments]).to(device),
            }
    return net, opt


class _Group:
    """The networks of one :func:`_train` call, trained side by side as one grouped network.

    Holds the grouped network, its optimiser, the training pairs and validation image of the
    networks still training (``active``), their :class:`_Tracker` and the finished results.

    Parameters
    ----------
    x
        ``(1, G, *spatial)`` images in [0, 1], one per network.
    seeds, init_states, learning_rate, widths
        Per network seed and optional warm start; Adam learning rate; network widths.
    patience
        Validations without improvement before a network stops.
    channels_last
        Channels-last activations.
    train_dtype
        ``"float32"`` or ``"bfloat16"`` (2D only) for the convolutions.
    callback
        Called with ``(network, step, output)`` at every validation.
    """

    def __init__(
        self,
        x: torch.Tensor,
        *,
        seeds: Sequence[int],
        patience: int,
        init_states: Sequence[dict[str, Any] | None],
        learning_rate: float,
        widths: Sequence[int],
        channels_last: bool,
        train_dtype: str,
        callback: Callable[[int, int, torch.Tensor], None] | None,
    ) -> None:
        ndim = x.ndim - 2
        dev = x.device
        even = x[(..., *(slice(0, s - s % 2) for s in x.shape[2:]))]
        if min(even.shape[2:]) < 2:
            raise ValueError(f"Noise2Fast needs >= 2 pixels along every axis, got {tuple(x.shape[2:])}")
        fmt = (torch.channels_last if ndim == 2 else torch.channels_last_3d) if channels_last else (
            torch.contiguous_format
        )
        axes = tuple(range(-1, -ndim - 1, -1))
        self.pairs = [(i.contiguous(memory_format=fmt), t.contiguous(memory_format=fmt))
                      for i, t in training_pairs(even, axes)]
        self.x_val = x.contiguous(memory_format=fmt)
        self.groups = groups = x.shape[1]
        self.red = (0, *range(2, x.ndim))  # per-network means: over the batch and the spatial axes
        self.net, self.opt = _grouped_network(
            ndim, widths, seeds, init_states, learning_rate, dev, fmt
        )
        self.pick = np.random.default_rng(seeds[0])
        self.cuda = dev.type == "cuda"
        if train_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"train_dtype must be 'float32' or 'bfloat16', got {train_dtype!r}")
        self.low = train_dtype == "bfloat16"
        if self.low and ndim != 2:
            # bfloat16 Conv3d backward on CPU gave NaN gradients (torch 2.13); 3D stays float32.
            raise ValueError("bfloat16 training is supported for 2D planes only")
        self.ndim, self.widths, self.dev, self.fmt = ndim, widths, dev, fmt
        self.learning_rate, self.callback = learning_rate, callback
        self.active = list(range(groups))
        self.trackers = [_Tracker(patience) for _ in range(groups)]
        self.results: dict[int, tuple[torch.Tensor, dict[str, Any]]] = {}
        self.t0 = time.perf_counter()
        self.validate_seconds = 0.0

    def train_step(self, pick: np.random.Generator, batch_pairs: bool, window: int | None) -> None:
        """One Adam step on all pairs (``batch_pairs``) or one random pair, each cut to a
        random ``window`` when given (the draws come from ``pick``)."""
        net, pairs, red = self.net, self.pairs, self.red
        self.opt.zero_grad(set_to_none=True)
        chosen = pairs if batch_pairs else [pairs[int(pick.integers(len(pairs)))]]
        loss = 0.0
        for i, t in chosen:
            if not batch_pairs:
                k = int(pick.integers(2))
                i, t = i[k : k + 1], t[k : k + 1]
            if window:  # a random window of the pair (same for its two directions)
                win = []
                for n in i.shape[2:]:
                    c = min(window, n)
                    o = int(pick.integers(n - c + 1))
                    win.append(slice(o, o + c))
                i, t = i[(..., *win)], t[(..., *win)]
            with torch.autocast(self.dev.type, torch.bfloat16, enabled=self.low):
                z = net.logits(i)
            bce = F.binary_cross_entropy_with_logits(z.float(), t, reduction="none")
            loss = loss + bce.mean(dim=red).sum() / len(chosen)
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        self.opt.step()

    def validate(self, step: int) -> list[int]:
        """Score every active network on the full image; positions (in ``active``) of those
        whose patience is exhausted."""
        tv = time.perf_counter()
        net, x_val, dev = self.net, self.x_val, self.dev
        with torch.inference_mode():
            if self.cuda or self.low:  # half precision convolutions, float32 sigmoid
                with torch.autocast(dev.type, torch.float16 if self.cuda else torch.bfloat16):
                    z = net.logits(x_val)
                out = torch.sigmoid(z.float())
            else:
                out = net(x_val)
        mse = ((out.double() - x_val.double()) ** 2).mean(dim=self.red).tolist()
        stopped = []
        for j, g in enumerate(self.active):
            if self.callback is not None:
                self.callback(g, step, out[0, j])
            if self.trackers[g].update(step, -mse[j], out[0, j]):
                stopped.append(j)
        self.validate_seconds += time.perf_counter() - tv
        return stopped

    def finish(self, j: int, step: int, reason: str) -> None:
        """Store the result of the network at position ``j`` of ``active`` (mean output, info
        with its weights and Adam moments on the CPU)."""
        g, tr = self.active[j], self.trackers[self.active[j]]
        assert tr.acc is not None
        n = len(self.active)
        state = {k: _take_groups(v, n, [j]).detach().to("cpu", copy=True)
                 for k, v in self.net.state_dict().items()}
        adam = {}
        for name, prm in self.net.named_parameters():
            st = self.opt.state.get(prm)
            if st:
                adam[name] = {"step": st["step"].detach().to("cpu", copy=True),
                              **{m: _take_groups(st[m], n, [j]).detach().to("cpu", copy=True)
                                 for m in ("exp_avg", "exp_avg_sq")}}
        self.results[g] = (tr.acc / tr.n, {
            "steps": step, "stop_reason": reason, "best_step": tr.best_step,
            "best_score": tr.best, "averaged": tr.n, "scores": tr.scores,
            "learning_rate": self.learning_rate, "state_dict": state,
            "warm_state": {"model": state, "adam": adam or None},
            "train_seconds": time.perf_counter() - self.t0,
            "validate_seconds": self.validate_seconds,
        })

    def drop(self, done: list[int], step: int, reason: str) -> None:
        """Finish the networks at positions ``done`` of ``active`` and carry on without them:
        the grouped network, its Adam moments and the data are sliced to the others."""
        for j in done:
            self.finish(j, step, reason)
        keep = [j for j in range(len(self.active)) if j not in done]
        if not keep:
            self.active = []
            return
        n, fmt = len(self.active), self.fmt
        new = Noise2FastNet(self.ndim, self.widths, len(keep))
        new.load_state_dict({k: _take_groups(v, n, keep) for k, v in self.net.state_dict().items()})
        new = new.to(device=self.dev, memory_format=fmt)
        new_opt = torch.optim.Adam(new.parameters(), lr=self.learning_rate)
        for p_old, p_new in zip(self.net.parameters(), new.parameters(), strict=True):
            st = self.opt.state.get(p_old)
            if st:
                new_opt.state[p_new] = {
                    "step": st["step"].clone(),
                    "exp_avg": _take_groups(st["exp_avg"], n, keep),
                    "exp_avg_sq": _take_groups(st["exp_avg_sq"], n, keep),
                }
        self.net, self.opt = new, new_opt
        self.pairs = [(i[:, keep].contiguous(memory_format=fmt), t[:, keep].contiguous(memory_format=fmt))
                      for i, t in self.pairs]
        self.x_val = self.x_val[:, keep].contiguous(memory_format=fmt)
        self.active = [self.active[j] for j in keep]

    def log_speed(self, label: str, step: int, now: float) -> None:
        """Log the speed and the first active network's agreement (every ~10 s)."""
        tr = self.trackers[self.active[0]]
        log.info(
            "%s step %d: %.2f steps/s, %d network(s) training, agreement %.3f dB "
            "(best at step %d)", label, step, step / (now - self.t0), len(self.active),
            -10 * math.log10(max(-tr.scores[-1][1], 1e-30)), tr.best_step,
        )


def _denoise(
    images: np.ndarray,
    ndim: int,
    *,
    seeds: Sequence[int],
    init_states: Sequence[dict[str, Any] | None],
    device: str | torch.device,
    label: str,
    **kwargs: Any,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Scale each of ``images`` (``(G, *spatial)``), train, collapse fallback, map back."""
    if images.ndim != ndim + 1:
        raise ValueError(f"Noise2Fast {ndim}D expects {ndim}D planes, got shape {images.shape[1:]}")
    if min(kwargs["patience"], kwargs["max_steps"], kwargs["validate_every"]) < 1:
        raise ValueError("patience, max_steps and validate_every must be >= 1")
    t0 = time.perf_counter()
    scaled = [_scale(im) for im in images]
    out = np.empty(images.shape, np.float32)
    infos: list[dict[str, Any]] = [{} for _ in scaled]
    todo = []
    for g, (_, _, rng) in enumerate(scaled):
        if rng == 0:
            out[g] = images[g]
            infos[g] = {"steps": 0, "stop_reason": "constant_input", "warm_state": init_states[g],
                        "state_dict": None if init_states[g] is None else init_states[g].get("model", init_states[g]),
                        "fallback": False, "best_step": 0, "averaged": 0, "scores": []}
        else:
            todo.append(g)
    dev = torch.device(device)
    kwargs["train_dtype"] = _train_dtype(kwargs["train_dtype"], dev, ndim)
    with _deterministic():
        for attempt, lr in enumerate((kwargs.pop("learning_rate"), FALLBACK_LEARNING_RATE)):
            if not todo:
                break
            x = torch.from_numpy(np.stack([scaled[g][0] for g in todo]))[None].to(dev)
            res = _train(
                x, seeds=[seeds[g] for g in todo], learning_rate=lr, label=label,
                init_states=[init_states[g] if attempt == 0 else None for g in todo], **kwargs,
            )
            again = []
            for g, (avg, info) in zip(todo, res, strict=True):
                info["fallback"] = attempt == 1
                if attempt == 1:
                    info["steps"] += infos[g]["steps"]
                infos[g] = info
                if attempt == 0 and info["stop_reason"] == "patience" and _collapsed(avg):
                    log.warning("%s: output %d collapsed to a constant; retraining from scratch "
                                "with lr %g", label, g, FALLBACK_LEARNING_RATE)
                    again.append(g)
                _, lo, rng = scaled[g]
                out[g] = (avg.double().cpu().numpy() * rng + lo).astype(np.float32)
            todo = again
    seconds = time.perf_counter() - t0
    for info in infos:
        info["seconds"] = seconds
        log.info("%s: %d steps in %.1f s, stop: %s, best at step %d, %d outputs averaged%s",
                 label, info["steps"], seconds, info["stop_reason"], info["best_step"],
                 info["averaged"], " (lr fallback)" if info["fallback"] else "")
    return out, infos


def denoise_plane(
    image: np.ndarray,
    *,
    seed: int,
    patience: int = 6,
    max_steps: int = 4000,
    validate_every: int = 16,
    init_state: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    learning_rate: float = LEARNING_RATE,
    widths: Sequence[int] = RELEASED_WIDTHS,
    batch_pairs: bool = True,
    channels_last: bool = True,
    train_dtype: str = "auto",
    window: int | None = DEFAULT_WINDOW,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Denoise one 2D plane with Noise2Fast, trained on the plane itself.

    Parameters
    ----------
    image
        ``(Y, X)`` plane in raw units (any real dtype, any size ≥ 2×2; odd sizes are fine).
    seed
        Seeds the weights and the pair order: the same seed gives bit-identical output on CPU.
    patience
        Validations without a better agreement score before training stops.
    max_steps
        Cap on optimiser steps.
    validate_every
        Optimiser steps between validations on the full plane.
    init_state
        Warm start, e.g. from the previous time frame: its ``info["warm_state"]`` (weights and
        Adam moments, so training continues smoothly) or a bare ``info["state_dict"]``
        (weights only, fresh Adam); ``None`` starts from random weights.  With a warm start
        the initial weights are validated too, so a frame the inherited weights already
        denoise well stops after ``patience`` validations.
    device
        Torch device (``"cpu"``, ``"cuda"``); on CUDA the validation runs in float16.
    learning_rate, widths, batch_pairs, channels_last
        Adam learning rate; network widths; True trains all pairs in each step (one batch per
        squeeze direction), False takes one random pair per step as the authors do;
        channels-last activations.
    train_dtype
        ``"float32"``; ``"bfloat16"`` runs the convolutions of the training passes and of the
        validation under bfloat16 autocast (weights, Adam, loss, sigmoid and the averaged
        output stay float32); ``"auto"`` picks bfloat16 for 2D on CPUs with native support.
    window
        Each step trains on a random ``window``-pixel square of each pair instead of the
        whole pair (``None``), at a fraction of the cost; see the module notes.

    Returns
    -------
    denoised : np.ndarray
        float32, same shape, raw units (not rounded).
    info : dict
        ``steps``, ``seconds``, ``stop_reason`` (``"patience"``, ``"max_steps"``,
        ``"constant_input"``), ``best_step``, ``scores`` (step, -MSE in [0, 1] units),
        ``averaged``, ``fallback``, ``state_dict`` (final weights, CPU), ``warm_state``
        (weights and Adam moments, for the next frame's ``init_state``) and timings.
    """
    out, infos = _denoise(
        np.asarray(image)[None], 2, seeds=[seed], init_states=[init_state], device=device,
        label="noise2fast 2D", patience=patience, max_steps=max_steps,
        validate_every=validate_every, learning_rate=learning_rate, widths=widths,
        batch_pairs=batch_pairs, channels_last=channels_last, train_dtype=train_dtype,
        window=window,
    )
    return out[0], infos[0]


def denoise_planes(
    images: np.ndarray,
    *,
    seeds: Sequence[int],
    patience: int = 6,
    max_steps: int = 4000,
    validate_every: int = 16,
    init_states: Sequence[dict[str, Any] | None] | None = None,
    device: str | torch.device = "cpu",
    learning_rate: float = LEARNING_RATE,
    widths: Sequence[int] = RELEASED_WIDTHS,
    batch_pairs: bool = True,
    channels_last: bool = True,
    train_dtype: str = "auto",
    window: int | None = DEFAULT_WINDOW,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Denoise ``(N, Y, X)`` planes independently, training their N networks at once.

    Each plane gets its own network (grouped convolutions), seed, scaling, stopping rule and
    result, as :func:`denoise_plane` would give it (up to floating-point summation order); a
    network that stops leaves the group.  Worth it on a GPU, where one small plane does not
    fill the device.  Parameters as :func:`denoise_plane`, with one seed (and optionally one
    initial state) per plane; returns the ``(N, Y, X)`` float32 result and one info per plane.
    """
    images = np.asarray(images)
    inits = list(init_states) if init_states is not None else [None] * len(images)
    return _denoise(
        images, 2, seeds=list(seeds), init_states=inits, device=device,
        label=f"noise2fast 2D x{len(images)}", patience=patience, max_steps=max_steps,
        validate_every=validate_every, learning_rate=learning_rate, widths=widths,
        batch_pairs=batch_pairs, channels_last=channels_last, train_dtype=train_dtype,
        window=window,
    )


def denoise_volume(
    volume: np.ndarray,
    *,
    seed: int,
    patience: int = 6,
    max_steps: int = 4000,
    validate_every: int = 16,
    init_state: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    learning_rate: float = LEARNING_RATE,
    widths: Sequence[int] = RELEASED_WIDTHS,
    batch_pairs: bool = True,
    channels_last: bool = True,
    train_dtype: str = "auto",
    window: int | None = DEFAULT_WINDOW,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Denoise a ``(Z, Y, X)`` volume with 3D chequerboard neighbours and a 3D network.

    The parity is ``z + y + x``; squeezing along X, Y and Z gives six training pairs, and the
    network uses 3×3×3 convolutions.  The volume is scaled by its own min/max.  Parameters and
    returns as :func:`denoise_plane` (every axis needs at least 2 voxels).
    """
    out, infos = _denoise(
        np.asarray(volume)[None], 3, seeds=[seed], init_states=[init_state], device=device,
        label="noise2fast 3D", patience=patience, max_steps=max_steps,
        validate_every=validate_every, learning_rate=learning_rate, widths=widths,
        batch_pairs=batch_pairs, channels_last=channels_last, train_dtype=train_dtype,
        window=window,
    )
    return out[0], infos[0]


# --------------------------------------------------------------------------- predictor


def plane_seed(seed: int, index: dict[str, int]) -> int:
    """A per-plane seed from the run seed and the plane's t/c/z position (order independent)."""
    key = [seed & 0xFFFFFFFF] + [int(index.get(a, -1)) + 1 for a in ("t", "c", "z")]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def _train_dtype(name: str, device: torch.device, ndim: int) -> str:
    """``"auto"``: bfloat16 training passes for 2D on CPUs with native bfloat16, else float32."""
    if name != "auto":
        return name
    if ndim == 2 and device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bfloat16"
    return "float32"


class Noise2FastSettings(Strict):
    """``methods.noise2fast``: the zero-shot Noise2Fast method (trains inside ``predict``)."""

    patience: int = Field(6, ge=1, description="Validations without improvement before stopping.")
    max_steps: int = Field(4000, ge=1, description="Step cap per plane.")
    warm_start: bool = Field(False, description="Start each frame from the previous frame's weights.")
    validate_every: int = Field(
        16, ge=1, description="Optimiser steps between full-plane validations."
    )
    chequerboard_3d: bool = Field(
        False, description="Denoise whole Z stacks with 3D chequerboard neighbours."
    )
    planes_at_once: bool = Field(
        False, description="Train the Z planes of a stack side by side, each independently (GPU)."
    )
    train_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Training-pass precision; 'auto' uses bfloat16 on CPUs with native support.",
    )


class Noise2FastPredictor:
    """PlanePredictor running Noise2Fast zero-shot on every plane (or volume) it is given.

    Each call trains fresh networks on that unit alone, so units are independent and the
    runner can resume and scatter them like any other unit.  Modes (``cfg``):

    - default: ``ndim = 2``, one plane per call;
    - ``chequerboard_3d``: ``ndim = 3``, a whole ``zyx`` volume per call, one 3D
      network with 3D chequerboard neighbours;
    - ``planes_at_once``: ``ndim = 3``, a whole ``zyx`` volume per call whose Z
      planes are denoised independently (as in the default mode) but trained side by side
      (grouped convolutions, worthwhile on a GPU).

    With ``warm_start`` a plane (or volume) at time ``t`` starts from the weights
    this predictor finished time ``t - 1`` of the same channel (and Z plane) with; any other
    predecessor (a new sequence, another channel, a unit done by another scattered job or
    before a restart) starts from random weights.

    Parameters
    ----------
    cfg
        Prediction settings (``device``, ``threads``).
    seed
        Run seed; each plane's seed is derived from it and the plane's t/c/z index, so results
        do not depend on the order or the job a plane is processed in.
    """

    kind = "plane"
    halo_t = 0
    output_names: tuple[str, ...] = ("denoised",)

    def __init__(
        self, cfg: PredictConfig, seed: int, settings: Noise2FastSettings | None = None
    ) -> None:
        self.settings = settings = settings or Noise2FastSettings()
        self.seed = int(seed)
        self.volume_3d = settings.chequerboard_3d
        self.ndim = 3 if (settings.chequerboard_3d or settings.planes_at_once) else 2
        self.device = resolve_device(cfg.device, "predict.device")
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self._previous: dict[tuple[tuple[str, int], ...], tuple[int, dict[str, Any]]] = {}
        self.last_info: dict[str, Any] = {}

    def _init(self, key: tuple[tuple[str, int], ...], t: int | None) -> dict[str, Any] | None:
        if not self.settings.warm_start or t is None:
            return None
        prev = self._previous.get(key)
        return prev[1] if prev is not None and prev[0] == t - 1 else None

    def __call__(self, plane: np.ndarray, index: dict[str, int]) -> np.ndarray:
        """Denoise ``plane`` (``(*spatial)`` float32) → ``(1, *spatial)`` float32, raw units."""
        plane = np.asarray(plane)
        if plane.ndim != self.ndim:
            raise ValueError(
                f"Noise2Fast predictor works on {self.ndim}D units, got shape {plane.shape} at {index}"
            )
        cfg = self.settings
        t = int(index["t"]) if "t" in index else None
        if self.ndim == 2 or self.volume_3d:
            planes = plane[None]
            indices = [dict(index)]
        else:
            planes = plane
            indices = [{**index, "z": k} for k in range(plane.shape[0])]
        keys = [tuple(sorted((k, int(v)) for k, v in i.items() if k != "t")) for i in indices]
        inits = [self._init(k, t) for k in keys]
        seeds = [plane_seed(self.seed, i) for i in indices]
        common = dict(
            patience=cfg.patience, max_steps=cfg.max_steps,
            validate_every=cfg.validate_every, device=self.device,
            train_dtype=_train_dtype(cfg.train_dtype, self.device, 3 if self.volume_3d else 2),
        )
        if self.volume_3d:
            out, info = denoise_volume(plane, seed=seeds[0], init_state=inits[0], **common)
            outs, infos = out[None], [info]
        else:
            outs, infos = denoise_planes(planes, seeds=seeds, init_states=inits, **common)
        for key, init, info in zip(keys, inits, infos, strict=True):
            info["warm_started"] = init is not None
            if cfg.warm_start and t is not None and info.get("warm_state") is not None:
                self._previous[key] = (t, info["warm_state"])
            else:
                self._previous.pop(key, None)
        self.last_info = {k: v for k, v in infos[0].items() if k not in ("state_dict", "warm_state")}
        result = outs[0] if self.ndim == 2 or self.volume_3d else outs
        return result[None].astype(np.float32, copy=False)


def _predictor(request: PredictRequest) -> Noise2FastPredictor:
    return Noise2FastPredictor(request.predict, request.seed, request.settings)


METHODS = (
    MethodSpec(
        name="noise2fast",
        kind="zero-shot",
        summary=(
            "Noise2Fast (Lequyer et al. 2022), per plane inside `predict`; optional warm start "
            "from the previous frame, 3D chequerboard for stacks"
        ),
        settings=Noise2FastSettings,
        predictor=_predictor,
    ),
)
