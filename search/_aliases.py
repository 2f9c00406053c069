"""The module paths of search/ before it was grouped by job (issue 26), resolved to the new ones.

Ray Tune's snapshots and the pickles of Optuna and cloudpickle name classes and functions by
module path (``search._runner._dirname``, ``search._optuna.MTLOptunaSearch``, ...). A run or
cached baselines saved before the grouping unpickle through this finder: ``import
search._phases`` gives the module ``search.run._phases`` itself (one module under two names),
so pickle finds the same functions and classes. Nothing is imported before an old name is
asked for. Written by the regroup script (``MOVED``: old path -> new path).
"""
from __future__ import annotations

import importlib
import importlib.machinery
import sys
from types import ModuleType
from typing import Any, Sequence

MOVED: dict[str, str] = {
    "search._affinity": "search.run._affinity",
    "search._baselines": "search.trial._baselines",
    "search._cache": "search.recovery._cache",
    "search._checkpoints": "search.trial._checkpoints",
    "search._cluster": "search.base._cluster",
    "search._fixed": "search.study._fixed",
    "search._hooks": "search.trial._hooks",
    "search._lock": "search.recovery._lock",
    "search._log": "search.base._log",
    "search._optuna": "search.study._optuna",
    "search._phases": "search.run._phases",
    "search._plan": "search.run._plan",
    "search._progress": "search.results._progress",
    "search._pruning": "search.study._pruning",
    "search._racing": "search.study._racing",
    "search._relocate": "search.recovery._relocate",
    "search._runner": "search.run._runner",
    "search._samplers": "search.study._samplers",
    "search._snapshots": "search.recovery._snapshots",
    "search._start": "search.run._start",
    "search._study": "search.study._study",
    "search._table": "search.results._table",
    "search._trainable": "search.trial._trainable",
}


class _Alias:
    """Loads an old path as the module at its new path, leaving that module's own spec in place
    (a loader by duck type: importlib.abc costs an import of importlib.resources)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # the import system set the alias's spec on it


class OldPaths:
    """Finds the old module paths of ``MOVED``; every other name is left to the other finders."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        return None if new is None else importlib.machinery.ModuleSpec(fullname, _Alias(new))


if not any(type(finder).__name__ == "OldPaths" for finder in sys.meta_path):
    sys.meta_path.append(OldPaths())
