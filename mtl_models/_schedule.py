"""Learning-rate schedules: the factor that multiplies every parameter group's learning rate.

A schedule is a function of the optimisation step, so a trial checkpointed after an
epoch resumes at exactly the learning rate it stopped at. ``cosine`` (the default) ends
training at a learning rate near zero, so the last epoch's weights, the ones that are
scored, barely move between steps: the final-epoch metric is a stable estimate rather
than one noisy sample of a model still taking full-size steps (a constant rate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class LRSchedule:
    """``factor(step)`` for ``total`` steps: linear warmup over ``warmup`` steps, then

    - ``constant``: 1;
    - ``cosine``: ``0.5 (1 + cos(pi p))`` with ``p`` the fraction of the post-warmup steps done
      (Loshchilov & Hutter 2017, without restarts), from 1 down to 0 at the last step;
    - ``step``: ``gamma ** (number of milestones passed)``, milestones as fractions of ``total``.
    """

    name: str
    total: int
    warmup: int = 0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(SCHEDULES)}, got {self.name!r}.")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.name == "constant":
            return 1.0
        if self.name == "cosine":
            span = max(self.total - self.warmup - 1, 1)
            done = min(max(step - self.warmup, 0) / span, 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * done))
        passed = sum(step >= m * self.total for m in self.milestones)
        return self.gamma**passed


def schedule_from_config(config: dict[str, Any], steps_per_epoch: int) -> LRSchedule:
    """The schedule a trial config asks for (``lr_schedule``, ``warmup_epochs``,
    ``lr_milestones``, ``lr_gamma``; default cosine without warmup) over its ``epochs``."""
    epochs = int(config.get("epochs", 1))
    milestones: Sequence[float] = config.get("lr_milestones") or (0.5, 0.75)
    return LRSchedule(
        name=config.get("lr_schedule") or "cosine",
        total=max(epochs * steps_per_epoch, 1),
        warmup=int(round(float(config.get("warmup_epochs") or 0.0) * steps_per_epoch)),
        milestones=tuple(float(m) for m in milestones),
        gamma=float(config.get("lr_gamma", 0.1)),
    )


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: LRSchedule) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR``: every group's rate is its base rate times ``schedule(step)``."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Optimiser steps in one epoch over ``rows`` examples (a last batch of one example is skipped)."""
    full, rest = divmod(rows, batch_size)
    return full + (1 if rest >= 2 else 0)
