"""A Tune search algorithm that runs a given list of configs, as they are."""
from __future__ import annotations

import io
import json
import os
import pickle
from typing import Any

from ray.tune.search import Searcher


class FixedConfigs(Searcher):
    """Suggests ``configs`` in order, then reports the search finished.

    Tune's ``BasicVariantGenerator(points_to_evaluate=...)`` only accepts points whose
    keys are in the param space; the baselines' configs are complete dicts with
    nested values, so they are handed to Tune unchanged through this searcher.
    Its own checkpoint is JSON (nothing read back from a run directory runs code);
    one pickled by an older version is migrated through an unpickler that builds
    plain containers only and refuses any class or function.
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
        with open(checkpoint_path, "w", encoding="utf-8") as f:
            json.dump({"format": "mtlsearch.fixed_configs/1", "configs": self._configs, "next": self._next}, f, default=_plain)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            raw = f.read()
        if raw[:1] == b"\x80":  # a pickle (protocol 2+) written before the JSON format
            state = _plain_unpickle(raw, checkpoint_path)
        else:
            state = json.loads(raw)
        self._configs, self._next = list(state["configs"]), int(state["next"])


def _plain(value: Any) -> Any:
    """numpy scalars as numbers and paths as text; a config holds nothing else that JSON lacks."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"a baseline config holds a {type(value).__name__}, which JSON cannot store")


class _PlainUnpickler(pickle.Unpickler):
    """Dicts, lists, tuples, strings and numbers only: any global (class, function) is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refers to {module}.{name}")


def _plain_unpickle(raw: bytes, path: str) -> dict[str, Any]:
    try:
        state = _PlainUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(
            f"{path!r}: the baselines' searcher state (an old pickle) holds more than plain data ({exc}); "
            "refused without loading it, since unpickling it could run code"
        ) from None
    if not isinstance(state, dict) or "configs" not in state or "next" not in state:
        raise ValueError(f"{path!r}: not a baselines' searcher state")
    return state
