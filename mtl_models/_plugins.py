"""User plugins: modules that register backbones, task kinds or families on import."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType


def is_plugin_path(entry: str) -> bool:
    """Whether a ``plugins`` entry is a path (a ``.py`` file or a package folder), not a module name."""
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def import_plugin(entry: str) -> ModuleType:
    """Import a plugin: a module name (``my_pkg.backbones``, importable as usual) or the
    path of a ``.py`` file or package folder (its folder is put on ``sys.path``; the
    module is named after the file). Where the path does not exist (a cluster node the
    driver shipped the module to), the module is imported by that name.
    """
    if not is_plugin_path(entry):
        return importlib.import_module(entry)
    path = Path(entry).expanduser()
    if path.exists():
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
    return importlib.import_module(path.stem if path.suffix == ".py" else path.name)
