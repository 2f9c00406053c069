"""One readable line per trial event, printed by the driver while Tune runs."""
from __future__ import annotations

import sys
import time
from typing import Any

from ray import tune

from mtl_models import describe_config


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
            f"[{self.phase} {elapsed:6.0f}s] #{number:<3} {describe_config(trial.config):<44} {text}",
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
