"""A Tune search algorithm that runs a given list of configs, as they are."""
from __future__ import annotations

import pickle
from typing import Any

from ray.tune.search import Searcher


class FixedConfigs(Searcher):
    """Suggests ``configs`` in order, then reports the search finished.

    Tune's ``BasicVariantGenerator(points_to_evaluate=...)`` only accepts points whose
    keys are in the param space; the baselines' configs are complete dicts with
    nested values, so they are handed to Tune unchanged through this searcher.
    """

    def __init__(self, configs: list[dict[str, Any]]) -> None:
        super().__init__()
        self._configs = list(configs)
        self._next = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._next >= len(self._configs):
            return Searcher.FINISHED
        config = self._configs[self._next]
        self._next += 1
        return dict(config)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"configs": self._configs, "next": self._next}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self._configs, self._next = state["configs"], state["next"]
