"""One readable line per trial event, printed by the driver while Tune runs."""
from __future__ import annotations

import sys
import time
from typing import Any

from ray import tune


def describe(config: dict[str, Any]) -> str:
    """A short label of a trial config: ``hard_split(k=2)``, ``cross_stitch(0.90/0.10, x120)``, ..."""
    family = config.get("family")
    if family == "hard_split":
        return f"hard_split(k={config.get('split_point')})"
    if family == "cross_stitch":
        return (
            f"cross_stitch({config.get('alpha_same', 0):.2f}/{config.get('alpha_diff', 0):.2f},"
            f" lr x{config.get('lr_multiplier', 1):.0f})"
        )
    if family == "single_task":
        return f"single_task({config.get('task')}, seed {config.get('seed')})"
    return str(family)


class ProgressPrinter(tune.Callback):
    """Prints each trial's epochs, its end (finished, pruned, errored) and the running count."""

    def __init__(self, phase: str, total: int, objective: str | None) -> None:
        self.phase = phase
        self.total = total
        self.objective = objective
        self.done = 0
        self.started = time.monotonic()
        self.numbers: dict[str, int] = {}

    def _print(self, trial: Any, text: str) -> None:
        number = self.numbers.setdefault(trial.trial_id, len(self.numbers) + 1)
        elapsed = time.monotonic() - self.started
        print(
            f"[{self.phase} {elapsed:6.0f}s] #{number:<3} {describe(trial.config):<40} {text}",
            file=sys.stdout,  # looked up per call: the callback is pickled with Tune's state
            flush=True,
        )

    def _score(self, result: dict) -> str:
        value = result.get(self.objective) if self.objective else None
        if value is not None:
            return f"{self.objective}={value:+.2f}"
        metrics = [f"{k[4:]}={v:.4g}" for k, v in result.items() if k.startswith("val/")]
        return " ".join(metrics[:4])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._print(trial, f"epoch {result.get('epoch')}/{trial.config.get('epochs')}  {self._score(result)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        result = trial.last_result or {}
        epoch, epochs = result.get("epoch", 0), trial.config.get("epochs")
        how = "finished" if epoch >= epochs else f"pruned at epoch {epoch}"
        self._print(trial, f"{how}  {self._score(result)}  ({self.done}/{self.total} done)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        self._print(trial, f"errored (see {trial.path}/error.txt)  ({self.done}/{self.total} done)")
