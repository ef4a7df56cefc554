"""The learning-rate schedule and the step plan that fits a wall-clock budget."""

from __future__ import annotations

import math


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
