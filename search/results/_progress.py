"""One readable line per trial event, logged by the driver while Tune runs (``mtlsearch.trials``:
the CLI shows them on standard output; ``-q`` hides them)."""
from __future__ import annotations

import logging
import time
from typing import Any

from ray import tune

from mtl_models import describe_config, format_delta, format_metric, format_plain
from mtl_models import results_table as rt

_ENDED = ("TERMINATED", "ERROR")


def trial_number(trial: Any) -> int:
    """The trial's 1-based number in its phase: the counter Tune puts at the front of the
    experiment tag (``"7_family=..."``). Tune restores it with the trial, so a resumed
    run goes on numbering where the interrupted one stopped."""
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) if head.isdigit() else 0


class ProgressPrinter(tune.Callback):
    """Prints each trial's epochs, its end (finished, pruned, errored) and the running count.

    The count is read from Tune's trial list (every trial that ended, before an
    interruption too), not kept here: Tune restores a callback as it was pickled
    when the run started, so a count of its own would start again at 0 on resume.
    """

    def __init__(self, phase: str, total: int, objective: str | None) -> None:
        self.phase = phase
        self.total = total
        self.objective = objective
        self.started = time.monotonic()

    def setup(self, **info: Any) -> None:
        self.started = time.monotonic()  # this driver's start: a resumed run counts from its own

    def _print(self, trial: Any, text: str) -> None:
        elapsed = time.monotonic() - self.started
        # the logger is looked up per call: the callback is pickled with Tune's state
        logging.getLogger("mtlsearch.trials").info(
            "[%s %6.0fs] #%-3d %-44s %s", self.phase, elapsed, trial_number(trial), describe_config(trial.config), text
        )

    def _score(self, result: dict) -> str:
        value = result.get(self.objective) if self.objective else None
        if value is not None:
            return f"{self.objective}={format_delta(value) if self.objective == rt.DELTA_M else format_plain(value)}"
        parsed = ((rt.parse_metric(k), v) for k, v in result.items() if rt.is_metric(k, rt.VAL))
        metrics = [f"{task}/{name}={format_metric(v, name)}" for (_, task, name), v in parsed if isinstance(v, (int, float))]
        return " ".join(metrics[:4])

    def _done(self, trials: list, trial: Any) -> str:
        ended = {t.trial_id for t in trials if t.status in _ENDED} | {trial.trial_id}
        return f"({len(ended)}/{self.total} done)"

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("answered_from"):  # replayed, not trained: said once, when it ends
            return
        self._print(trial, f"epoch {result.get(rt.EPOCH)}/{trial.config.get('epochs')}  {self._score(result)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        epoch, epochs = result.get(rt.EPOCH, 0), trial.config.get("epochs")
        how = "finished" if epoch >= epochs else f"pruned at epoch {epoch}"
        if result.get("answered_from"):
            how = f"answered without training, from run {result['answered_from']} (the same config and seed); {how}"
        self._print(trial, f"{how}  {self._score(result)}  {self._done(trials, trial)}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trial, f"errored (see {trial.path}/error.txt)  {self._done(trials, trial)}")
