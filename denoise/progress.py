"""One progress bar for every long stage: a total, a rate, an ETA, and a time budget.

Every long loop of the package (training steps, prediction units, Noise2Fast planes, evaluation
images) logs through :func:`progress`: a :mod:`tqdm` bar with the planned number of steps as its
total, so it shows ``n/total``, the rate and the ETA.  Under a wall-clock budget
(``budget_s``) the bar also shows the budget left (``budget 41s left``) and the ETA becomes the
smaller of "steps left at the current rate" and "budget left"; a loop that stops on its budget
calls :meth:`Progress.stop` so the last line says why it ended before its total.

Usage::

    from denoise.progress import progress

    with progress(total=epochs * steps_per_epoch, desc="n2v", unit="step",
                  budget_s=max_minutes * 60) as bar:
        for step in range(start, total):
            ...
            bar.update(1, loss=f"{loss:.4f}")      # postfix fields are optional
            if bar.out_of_budget():                 # True once budget_s has passed
                bar.stop("budget")
                break

``total`` may shrink later (``bar.set_total(n)``), e.g. when a resumed run has fewer steps
left.  When stderr is not a terminal (a Snakemake log file) the bar refreshes at most every
10 s, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from tqdm import tqdm

__all__ = ["Progress", "progress"]


def _clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) of a number of seconds."""
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A tqdm bar with a total, an ETA and an optional wall-clock budget.

    Parameters
    ----------
    total
        Planned number of steps (units, planes, images).
    desc
        Label at the start of the line (the stage or method).
    unit
        Name of one step.
    budget_s
        Wall-clock budget in seconds (``None``: no budget).
    enabled
        ``False`` makes every call a no-op (e.g. ``progress=False`` in tests).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "step",
        budget_s: float | None = None,
        enabled: bool = True,
    ) -> None:
        self.budget_s = float(budget_s) if budget_s else None
        self.t0 = time.perf_counter()
        self.stopped: str | None = None
        tty = sys.stderr.isatty()
        self.bar = tqdm(
            total=int(total),
            desc=desc,
            unit=unit,
            disable=not enabled,
            dynamic_ncols=True,
            mininterval=0.5 if tty else 10.0,
            # tqdm's own ETA is replaced by the budget-aware one in the postfix.
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]",
        )
        self._fields: dict[str, Any] = {}
        self._refresh_eta()

    # ------------------------------------------------------------------ state
    def elapsed(self) -> float:
        """Seconds since the bar started."""
        return time.perf_counter() - self.t0

    def budget_left(self) -> float | None:
        """Seconds of the budget left (``None`` without a budget)."""
        return None if self.budget_s is None else max(0.0, self.budget_s - self.elapsed())

    def out_of_budget(self) -> bool:
        """``True`` once the wall-clock budget has passed."""
        left = self.budget_left()
        return left is not None and left <= 0

    def eta(self) -> float | None:
        """Seconds to the end: steps left at the current rate, capped by the budget left."""
        return self._eta(self.bar.n)

    def _eta(self, n: int) -> float | None:
        """:meth:`eta` with ``n`` steps done."""
        total = self.bar.total or 0
        rate_eta = self.elapsed() / n * (total - n) if n else None
        left = self.budget_left()
        if rate_eta is None:
            return left
        return rate_eta if left is None else min(rate_eta, left)

    # ---------------------------------------------------------------- updates
    def update(self, n: int = 1, **fields: Any) -> None:
        """Advance by ``n`` steps; ``fields`` (e.g. ``loss=...``) are shown after the rate."""
        self._fields.update(fields)
        self._refresh_eta(ahead=n)  # the line tqdm draws in update() already counts these n
        self.bar.update(n)

    def set_total(self, total: int, refresh: bool = True) -> None:
        """Change the planned number of steps (e.g. fewer left after a resume, or a plan
        refitted to a time budget); ``refresh=False`` leaves the redraw to the next update
        (for a total re-estimated at every step)."""
        self.bar.total = int(total)
        self._refresh_eta()
        if refresh:
            self.bar.refresh()

    def stop(self, reason: str) -> None:
        """Record why the loop ended before its total (shown on the last line)."""
        self.stopped = reason
        self._fields["stopped"] = reason
        self._refresh_eta()
        self.bar.refresh()

    def _refresh_eta(self, ahead: int = 0) -> None:
        """Set the postfix (fields, budget left, ETA) for ``ahead`` more steps than done."""
        post = dict(self._fields)
        left = self.budget_left()
        if left is not None:
            post["budget"] = f"{_clock(left)} left"
        eta = self._eta(self.bar.n + ahead)
        post["ETA"] = _clock(eta) if eta is not None else "?"
        self.bar.set_postfix(post, refresh=False)

    # ----------------------------------------------------------- context use
    def close(self) -> None:
        """Close the bar (final line)."""
        self._refresh_eta()
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress(
    total: int,
    desc: str,
    unit: str = "step",
    budget_s: float | None = None,
    enabled: bool = True,
) -> Progress:
    """A :class:`Progress` bar (use as a context manager); see the module docstring."""
    return Progress(total, desc, unit=unit, budget_s=budget_s, enabled=enabled)
