"""Like for like: how much of the pick's gain a single-task network tuned the same way recovers.

When the search tunes training hyperparameters (``lr``, ...) the single-task baseline
trains at the experiment's own; a gain can then come from the tuning, not the sharing.
The confirmation phase trains the single-task networks with the shortlist best's tuned
values (``reference: tuned_single_task``, ``search.confirm_configs``) on that config's
seeds. Its Delta_m is the gain tuning alone buys; the pick minus it, paired seed by seed
(both are measured against the same ``B_t``, which cancels), is the gain sharing buys.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mtl_models import format_delta, format_rate
from mtl_models import results_table as rt

from ._results import TUNED_SINGLE_TASK, confirmed

LEVEL = 0.95
# What a search may tune that trains a single-task network too (``space.lr``, ``space.grad_clip``,
# ``space.class_weighting``): a searched config whose values differ from the baselines' was
# trained differently, not only shared differently (``search.confirm_configs`` compares them).
TUNED_TRAINING_KEYS = ("lr", "grad_clip", "class_weighting")
SPLITS = {split: rt.delta_column(split) for split in (rt.VAL, rt.TEST)}  # the selection split, then the held-out one


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with its two-sided 95 % t interval (NaN bounds for one value)."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Interval":
        from scipy import stats  # here: ~1 s of a CPU, not before `run`'s first trial
        n = len(values)
        if n == 0:
            return cls(math.nan, math.nan, math.nan, 0)
        mean = sum(values) / n
        if n < 2:
            return cls(mean, math.nan, math.nan, n)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
        return cls(mean, mean - half, mean + half, n)

    def text(self) -> str:
        """``+1.23 % [-0.51, +2.97] (n=3)``; without the interval for one value."""
        return format_delta(self.mean, self.low, self.high, interval=self.n > 1) + f" (n={self.n})"


@dataclass(frozen=True)
class SplitFigures:
    """One split's figures: the reference's and the pick's Delta_m over their seeds, the
    paired difference pick - reference over the seeds both have, and the share of the
    pick's gain the reference recovers (reference mean / pick mean, in %; None unless the
    pick gains, mean > 0)."""

    split: str
    reference: Interval
    pick: Interval
    difference: Interval
    recovered_pct: float | None
    per_seed: dict[int, tuple[float, float]]  # seed -> (reference, pick)


@dataclass(frozen=True)
class TunedReference:
    """The tuned single-task reference of a run against its pick (``pick_key`` its config)."""

    tuned: dict[str, Any]  # the training hyperparameters it trained with that differ from the baselines
    seeds: list[int]
    pick_key: str | None
    pick_is_reference: bool
    splits: list[SplitFigures]

    def sentence(self) -> str:
        """One line for the run's printed summary."""
        tuned = ", ".join(f"{k} {format_rate(v)}" if isinstance(v, float) else f"{k} {v}" for k, v in self.tuned.items())
        head = f"Like for like: the single-task networks at the searched {tuned}"
        figures = []
        for s in self.splits:
            part = f"{s.split} Delta_m {s.reference.text()}"
            if not self.pick_is_reference and s.difference.n:
                part += f"; the pick gains {s.difference.text()} over it, paired"
                if s.recovered_pct is not None:
                    part += f" (it recovers {s.recovered_pct:.0f} % of the pick's gain)"
            figures.append(part)
        if self.pick_is_reference:
            figures.append("the pick is this reference itself: its gain is the tuning, not sharing")
        return head + ": " + "; ".join(figures) + "."


def tuned_reference(results: pd.DataFrame, pick_key: str | None) -> TunedReference | None:
    """The tuned single-task reference's figures against the config ``pick_key`` (its
    confirmation runs), on validation and, where evaluated, on test; None when the run
    has no such reference."""
    confirm = confirmed(results)
    if "reference" not in confirm:
        return None
    ref = confirm[confirm["reference"] == TUNED_SINGLE_TASK]
    if ref.empty:
        return None
    config = json.loads(ref["config"].iloc[0])
    single = rt.single_task_rows(results, status=None)
    baseline = json.loads(single["config"].iloc[0]) if len(single) else {}
    tuned = {k: config[k] for k in TUNED_TRAINING_KEYS if k in config and (k not in baseline or config[k] != baseline[k])}
    pick = confirm[confirm["config_key"] == pick_key] if pick_key is not None else confirm.iloc[0:0]
    pick_is_reference = pick_key is not None and pick_key == ref["config_key"].iloc[0]
    splits = []
    for split, column in SPLITS.items():
        if column not in ref or ref[column].isna().all():
            continue
        ref_values = _by_seed(ref, column)
        pick_values = _by_seed(pick, column) if column in pick else {}
        shared = sorted(set(ref_values) & set(pick_values))
        pick_mean = Interval.of(list(pick_values.values()))
        reference = Interval.of(list(ref_values.values()))
        recovered = 100.0 * reference.mean / pick_mean.mean if pick_mean.n and pick_mean.mean > 0 else None
        splits.append(SplitFigures(
            split, reference, pick_mean, Interval.of([pick_values[s] - ref_values[s] for s in shared]), recovered,
            {s: (ref_values[s], pick_values[s]) for s in shared},
        ))
    return TunedReference(tuned, sorted(_by_seed(ref, "delta_m")), pick_key, pick_is_reference, splits)


def _by_seed(rows: pd.DataFrame, column: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column]) if not pd.isna(v) and not pd.isna(s)}
